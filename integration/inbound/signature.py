"""Centra's webhook signature: `X-Centra-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`."""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Centra-Signature"


class SignatureError(Exception):
    """The signature is missing, malformed, stale, or matches none of the secrets."""


def compute(secret: str, timestamp: int | str, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The header value Centra would send for `body` (used by the fakes and the tests)."""
    ts = int(time.time()) if timestamp is None else timestamp
    return f"t={ts},v1={compute(secret, ts, body)}"


def parse_header(value: str) -> tuple[int, list[str]]:
    timestamp, signatures = None, []
    for part in (value or "").split(","):
        key, _, val = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(val)
            except ValueError as exc:
                raise SignatureError("signature timestamp is not a number") from exc
        elif key == "v1" and val:
            signatures.append(val.lower())
    if timestamp is None or not signatures:
        raise SignatureError(f"{HEADER} must look like t=<unix seconds>,v1=<hex>")
    return timestamp, signatures


def verify_signature(
    header: str | None, body: bytes, secrets: list[str], tolerance: int | None = 300, now: float | None = None
) -> None:
    """Raise SignatureError unless `header` signs these exact bytes with one of `secrets` within `tolerance` s."""
    if not secrets:
        raise SignatureError("the connection has no signing secret")
    if not header:
        raise SignatureError(f"missing {HEADER} header")
    timestamp, signatures = parse_header(header)
    if tolerance is not None:
        current = time.time() if now is None else now
        if abs(current - timestamp) > tolerance:
            raise SignatureError(f"signature timestamp is outside +-{tolerance} s")
    for secret in secrets:
        expected = compute(secret, timestamp, body)
        if any(hmac.compare_digest(expected, sig) for sig in signatures):
            return
    raise SignatureError("signature does not match")
