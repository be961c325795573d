"""Signals the core sends; optional apps answer them from their AppConfig.ready() (the core imports none of them).

`subscriber_forgotten`: `forget_subscriber` is erasing a person. Sent with `email` (normalized: trimmed, lower
case), `connection` (a Connection, or None for every connection) and `mentions(text) -> bool` (whether a text
holds the email, the same test the core uses). Each receiver erases what its app stores about the person and
returns a dict of counts, e.g. `{"backinstock_watchers_deleted": 2}`, which `forget_subscriber` prints."""

from django.dispatch import Signal

subscriber_forgotten = Signal()
