"""Signals the core sends; optional apps answer them from their AppConfig.ready() (the core imports none of them).

`subscriber_forgotten`: `forget_subscriber` is erasing a person. Sent with `email` (normalized: trimmed, lower
case), `connection` (a Connection, or None for every connection) and `mentions(text) -> bool` (whether a text
holds the email, the same test the core uses). Each receiver erases what its app stores about the person and
returns a dict of counts, e.g. `{"backinstock_watchers_deleted": 2}`, which `forget_subscriber` prints.

`hold_lifted`: a connection's hold (the breaker's wait for Rule) ended early, inside the caller's transaction.
Sent with `connection` and `old_hold` (the moment the hold would have ended); the delivery engine answers by
sending what the hold pushed back (the Rule client layer knows nothing of deliveries)."""

from django.dispatch import Signal

subscriber_forgotten = Signal()
hold_lifted = Signal()
