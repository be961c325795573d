"""Centra's webhook signature: `X-Centra-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time

HEADER = "X-Centra-Signature"
# The header is read as the sender wrote it; anything outside this shape is refused before any arithmetic or
# comparison (a non-ASCII signature made hmac.compare_digest raise, a 400-digit timestamp made the window check
# overflow).
MAX_HEADER_LENGTH = 1000
MAX_SIGNATURES = 8
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")


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
    """(timestamp, hex signatures) of a header value; SignatureError naming what is wrong with its shape."""
    shape = f"{HEADER} must look like t=<unix seconds>,v1=<64 hex digits>"
    if len(value or "") > MAX_HEADER_LENGTH:
        raise SignatureError(f"{HEADER} is longer than {MAX_HEADER_LENGTH} characters")
    timestamp, signatures = None, []
    for part in (value or "").split(","):
        key, _, val = part.strip().partition("=")
        if key == "t":
            if not _TIMESTAMP.fullmatch(val):
                raise SignatureError("signature timestamp is not a number of unix seconds")
            timestamp = int(val)
        elif key == "v1" and val:
            if not _HEX_SIGNATURE.fullmatch(val):
                raise SignatureError("signature v1 is not 64 hex digits")
            signatures.append(val.lower())
    if timestamp is None or not signatures:
        raise SignatureError(shape)
    if len(signatures) > MAX_SIGNATURES:
        raise SignatureError(f"at most {MAX_SIGNATURES} v1 signatures")
    return timestamp, signatures


def verify_signature(
    header: str | None, body: bytes, secrets: list[str], tolerance: int | None = 300, now: float | None = None
) -> int:
    """The signed timestamp when `header` signs these exact bytes with one of `secrets` within `tolerance` s;
    SignatureError otherwise."""
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
        expected = compute(secret, timestamp, body).encode()
        if any(hmac.compare_digest(expected, sig.encode()) for sig in signatures):
            return timestamp
    raise SignatureError("signature does not match")


def generate_secret() -> str:
    """A new signing secret: 256 random bits, URL-safe, prefixed so it is recognisable when pasted."""
    return "whsec_" + secrets.token_urlsafe(32)
