"""The shared inbound security suite: every bad request both endpoints must refuse, as a table.

In the manner of django-anymail's tests/webhook_cases.py: `InboundSecurityCases` holds the cases and the
assertions; each endpoint's test class (tests/test_inbound_security.py) inherits it and says only how a valid
request of its own looks (`document`, `encode`, `with_raw_value`). For every case the suite asserts what a
sender would check: the status, a JSON body naming the problem, nothing stored and nothing queued, and that a
valid event is still accepted right afterwards.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count

import pytest
from django.urls import reverse
from django_q.models import OrmQ

from integration.inbound.signature import sign
from integration.models import Delivery, InboundEvent

SECRET = "whsec-test-1"  # the ConnectionFactory's signing secret
_serial = count(1)


@dataclass(frozen=True)
class Case:
    """One bad request: `send(endpoint)` makes it; the answer must be `status` with `says` in its body."""

    id: str
    send: Callable
    status: int
    says: str

    def __str__(self) -> str:
        return self.id


def cases(*table: tuple) -> list:
    return [pytest.param(Case(*row), id=row[0]) for row in table]


def fresh_id() -> str:
    return f"evt-{next(_serial)}-{time.monotonic_ns()}"


def now_header(body: bytes, secret: str = SECRET) -> str:
    return sign(secret, body)


# --- the cases both endpoints share ---------------------------------------------------------------------------

SIGNATURE = cases(
    ("signature/missing", lambda ep: ep.send(ep.valid_body(), signature=None), 401, "missing"),
    ("signature/empty", lambda ep: ep.send(ep.valid_body(), signature=""), 401, "missing"),
    ("signature/garbage", lambda ep: ep.send(ep.valid_body(), signature="garbage"), 401, "must look like"),
    (
        "signature/non-ascii v1",
        lambda ep: ep.send(ep.valid_body(), signature=f"t={int(time.time())},v1=ééé"),
        401,
        "hex",
    ),
    (
        "signature/non-ascii 64 chars",
        lambda ep: ep.send(ep.valid_body(), signature=f"t={int(time.time())},v1={'é' * 64}"),
        401,
        "hex",
    ),
    ("signature/non-ascii t", lambda ep: ep.send(ep.valid_body(), signature="t=١٢٣,v1=" + "0" * 64), 401, "timestamp"),
    (
        "signature/NUL",
        lambda ep: ep.send(ep.valid_body(), signature=f"t={int(time.time())}\x00,v1=00"),
        401,
        "timestamp",
    ),
    (
        "signature/huge t",
        lambda ep: ep.send(ep.valid_body(), signature="t=" + "9" * 400 + ",v1=" + "0" * 64),
        401,
        "timestamp",
    ),
    ("signature/negative t", lambda ep: ep.send(ep.valid_body(), signature="t=-5,v1=" + "0" * 64), 401, "timestamp"),
    ("signature/t only", lambda ep: ep.send(ep.valid_body(), signature=f"t={int(time.time())}"), 401, "must look like"),
    ("signature/v1 only", lambda ep: ep.send(ep.valid_body(), signature="v1=" + "0" * 64), 401, "must look like"),
    ("signature/short hex", lambda ep: ep.send(ep.valid_body(), signature=f"t={int(time.time())},v1=abc"), 401, "hex"),
    (
        "signature/wrong",
        lambda ep: ep.send(ep.valid_body(), signature=f"t={int(time.time())},v1={'0' * 64}"),
        401,
        "does not match",
    ),
    ("signature/other secret", lambda ep: ep.send(ep.valid_body(), secret="someone-else"), 401, "does not match"),
    ("signature/stale", lambda ep: ep.send_stale(ep.valid_body(), -400), 401, "outside"),
    ("signature/future", lambda ep: ep.send_stale(ep.valid_body(), 400), 401, "outside"),
    ("signature/body changed", lambda ep: ep.send_tampered(), 401, "does not match"),
    (
        "signature/too many v1",
        lambda ep: ep.send(ep.valid_body(), signature=f"t={int(time.time())}," + ",".join(["v1=" + "0" * 64] * 9)),
        401,
        "at most",
    ),
    ("signature/too long", lambda ep: ep.send(ep.valid_body(), signature="t=1," + "x" * 2000), 401, "longer than"),
)

TOKEN = cases(
    ("token/unknown", lambda ep: ep.send(ep.valid_body(), path=ep.path("x" * 43)), 404, "unknown endpoint"),
    ("token/NUL", lambda ep: ep.send(ep.valid_body(), path=ep.path("%00")), 404, "unknown endpoint"),
    ("token/NUL inside", lambda ep: ep.send(ep.valid_body(), path=ep.path(ep.token + "%00")), 404, "unknown endpoint"),
    ("token/non-ascii", lambda ep: ep.send(ep.valid_body(), path=ep.path("%C3%A9t%C3%A9")), 404, "unknown endpoint"),
    ("token/surrogate bytes", lambda ep: ep.send(ep.valid_body(), path=ep.path("%ED%A0%80")), 404, "unknown endpoint"),
    ("token/too long", lambda ep: ep.send(ep.valid_body(), path=ep.path("a" * 5000)), 404, "unknown endpoint"),
    ("token/quote", lambda ep: ep.send(ep.valid_body(), path=ep.path("%27%20OR%201=1--")), 404, "unknown endpoint"),
    ("token/percent", lambda ep: ep.send(ep.valid_body(), path=ep.path("%25")), 404, "unknown endpoint"),
)

METHOD = cases(
    ("method/GET", lambda ep: ep.send(b"", method="get"), 405, "POST"),
    ("method/PUT", lambda ep: ep.send(ep.valid_body(), method="put"), 405, "POST"),
    ("method/PATCH", lambda ep: ep.send(ep.valid_body(), method="patch"), 405, "POST"),
    ("method/DELETE", lambda ep: ep.send(b"", method="delete"), 405, "POST"),
    ("method/HEAD", lambda ep: ep.send(b"", method="head"), 405, ""),
)

SIZE = cases(
    ("size/over the limit", lambda ep: ep.send(ep.padded_body(1_100_000)), 413, "larger than"),
    (
        "size/declared over the limit",
        lambda ep: ep.send(ep.valid_body(), meta={"CONTENT_LENGTH": "99999999"}),
        413,
        "larger",
    ),
    ("size/empty", lambda ep: ep.send(b""), 400, ""),
    (
        "size/declared length not a number",
        lambda ep: ep.send(ep.valid_body(), meta={"CONTENT_LENGTH": "abc"}),
        400,
        "Content-Length",
    ),
    (
        "size/declared length negative",
        lambda ep: ep.send(ep.valid_body(), meta={"CONTENT_LENGTH": "-1"}),
        400,
        "Content-Length",
    ),
    (
        "size/declared length non-ascii",
        lambda ep: ep.send(ep.valid_body(), meta={"CONTENT_LENGTH": "１２"}),
        400,
        "Content-Length",
    ),
)

ENCODING = cases(
    ("encoding/latin-1 bytes", lambda ep: ep.send(ep.raw_text_body('{"a": "caf\xe9"}', "latin-1")), 400, "UTF-8"),
    ("encoding/invalid utf-8", lambda ep: ep.send(ep.raw_text_body_bytes(b'{"a": "\xff\xfe"}')), 400, "UTF-8"),
    ("encoding/utf-16", lambda ep: ep.send(ep.raw_text_body('{"a": 1}', "utf-16")), 400, ""),
    ("encoding/utf-8 BOM", lambda ep: ep.send(ep.raw_text_body_bytes(b'\xef\xbb\xbf{"a": 1}')), 400, "JSON"),
    ("encoding/encoded surrogate", lambda ep: ep.send(ep.raw_text_body_bytes(b'{"a": "\xed\xa0\x80"}')), 400, "UTF-8"),
    ("encoding/not JSON", lambda ep: ep.send(ep.raw_text_body("{not json", "utf-8")), 400, "JSON"),
    ("encoding/JSON array", lambda ep: ep.send(ep.raw_text_body("[1, 2]", "utf-8")), 400, "object"),
    ("encoding/JSON string", lambda ep: ep.send(ep.raw_text_body('"hello"', "utf-8")), 400, "object"),
    ("encoding/JSON null", lambda ep: ep.send(ep.raw_text_body("null", "utf-8")), 400, "object"),
    (
        "encoding/wrong content type",
        lambda ep: ep.send(ep.valid_body(), content_type="text/plain"),
        415,
        "Content-Type",
    ),
    ("encoding/no content type", lambda ep: ep.send(ep.valid_body(), content_type=""), 415, "Content-Type"),
    (
        "encoding/the other endpoint's type",
        lambda ep: ep.send(ep.valid_body(), content_type=ep.other_content_type),
        415,
        "Content-Type",
    ),
)

NESTING = cases(
    ("nesting/arrays 5000 deep", lambda ep: ep.send(ep.with_raw_value("[" * 5000 + "]" * 5000)), 400, "deeper than"),
    (
        "nesting/objects 2000 deep",
        lambda ep: ep.send(ep.with_raw_value('{"a":' * 2000 + "1" + "}" * 2000)),
        400,
        "deeper",
    ),
    ("nesting/900 deep", lambda ep: ep.send(ep.with_raw_value("[" * 900 + "]" * 900)), 400, "deeper than"),
    ("nesting/40 deep", lambda ep: ep.send(ep.with_raw_value("[" * 40 + "]" * 40)), 400, "deeper than"),
    ("nesting/unbalanced", lambda ep: ep.send(ep.with_raw_value("[" * 5000)), 400, ""),
)

NUMBERS = cases(
    ("numbers/1e400", lambda ep: ep.send(ep.with_raw_value("1e400")), 400, "out of range"),
    ("numbers/-1e400", lambda ep: ep.send(ep.with_raw_value("-1e400")), 400, "out of range"),
    ("numbers/1e400 in a list", lambda ep: ep.send(ep.with_raw_value("[1, 2, 1e400]")), 400, "out of range"),
    ("numbers/NaN", lambda ep: ep.send(ep.with_raw_value("NaN")), 400, "NaN"),
    ("numbers/Infinity", lambda ep: ep.send(ep.with_raw_value("Infinity")), 400, "Infinity"),
    ("numbers/-Infinity", lambda ep: ep.send(ep.with_raw_value("-Infinity")), 400, "Infinity"),
    ("numbers/10**30", lambda ep: ep.send(ep.with_raw_value(str(10**30))), 400, "out of range"),
    ("numbers/5000 digits", lambda ep: ep.send(ep.with_raw_value("9" * 5000)), 400, "out of range"),
    ("numbers/-2**63-1", lambda ep: ep.send(ep.with_raw_value(str(-(2**63) - 1))), 400, "out of range"),
    ("numbers/hex", lambda ep: ep.send(ep.with_raw_value("0x10")), 400, "JSON"),
    ("numbers/leading zero", lambda ep: ep.send(ep.with_raw_value("012")), 400, "JSON"),
)

STRINGS = cases(
    ("strings/lone surrogate", lambda ep: ep.send(ep.with_raw_value('"\\ud800"')), 400, "surrogate"),
    ("strings/low surrogate", lambda ep: ep.send(ep.with_raw_value('"a\\udfffb"')), 400, "surrogate"),
    ("strings/surrogate in a key", lambda ep: ep.send(ep.with_raw_value('{"\\ud800": 1}')), 400, "surrogate"),
    ("strings/NUL", lambda ep: ep.send(ep.with_raw_value('"a\\u0000b"')), 400, "NUL"),
    ("strings/NUL in a key", lambda ep: ep.send(ep.with_raw_value('{"a\\u0000": 1}')), 400, "NUL"),
    ("strings/NUL deep", lambda ep: ep.send(ep.with_raw_value('[[{"x": ["\\u0000"]}]]')), 400, "NUL"),
    ("strings/raw control character", lambda ep: ep.send(ep.with_raw_value('"a\x01b"')), 400, "JSON"),
    ("strings/unterminated", lambda ep: ep.send(ep.with_raw_value('"abc')), 400, "JSON"),
    ("strings/bad escape", lambda ep: ep.send(ep.with_raw_value('"\\x41"')), 400, "JSON"),
)

SHARED = [*SIGNATURE, *TOKEN, *METHOD, *SIZE, *ENCODING, *NESTING, *NUMBERS, *STRINGS]


class InboundSecurityCases:
    """Abstract: an endpoint's test class inherits every case and defines how its valid requests look."""

    url_name: str
    content_type: str
    other_content_type: str

    @pytest.fixture(autouse=True)
    def _endpoint(self, client, connection):
        self.client = client
        self.connection = connection
        self.token = connection.token

    # --- what each endpoint defines -------------------------------------------------------------------------

    def document(self) -> dict:
        """A valid JSON document with a fresh identity (accepted as 1 new event)."""
        raise AssertionError("each endpoint's test class defines document()")

    def encode(self, document: dict) -> bytes:
        raise AssertionError("each endpoint's test class defines encode()")

    def raw_text_body_bytes(self, raw_json: bytes) -> bytes:
        raise AssertionError("each endpoint's test class defines raw_text_body_bytes()")

    def with_raw_value(self, value_text: str) -> bytes:
        """A body that is valid but for one extra key holding `value_text` as written (raw JSON)."""
        raise AssertionError("each endpoint's test class defines with_raw_value()")

    # --- helpers ---------------------------------------------------------------------------------------------

    def path(self, token: str | None = None) -> str:
        if token is None:
            return reverse(self.url_name, args=[self.token])
        return reverse(self.url_name, args=["TOKEN"]).replace("TOKEN", token)

    def valid_body(self) -> bytes:
        return self.encode(self.document())

    def raw_text_body(self, text: str, encoding: str) -> bytes:
        return self.raw_text_body_bytes(text.encode(encoding))

    def padded_body(self, size: int) -> bytes:
        document = self.document()
        document["padding"] = "x" * size
        return self.encode(document)

    def send(
        self,
        body: bytes,
        *,
        signature: str | None | bool = True,
        secret: str = SECRET,
        method: str = "post",
        path: str | None = None,
        content_type: str | None = None,
        meta: dict | None = None,
    ):
        headers = {}
        if signature is True:
            headers["X-Centra-Signature"] = now_header(body, secret)
        elif signature is not None:
            headers["X-Centra-Signature"] = signature
        content_type = self.content_type if content_type is None else content_type
        call = getattr(self.client, method)
        # The test client sets no Content-Type for an empty body; a sender may well send one.
        extra = {"CONTENT_TYPE": content_type} | (meta or {})
        return call(path or self.path(), data=body, content_type=content_type, headers=headers, **extra)

    def send_stale(self, body: bytes, offset: int):
        header = sign(SECRET, body, timestamp=int(time.time()) + offset)
        return self.send(body, signature=header)

    def send_tampered(self):
        body = self.valid_body()
        header = now_header(body)
        return self.send(body.replace(b"evt-", b"evX-").replace(b"update", b"updatf"), signature=header)

    def assert_refused(self, response, status: int, says: str) -> None:
        assert response.status_code == status, response.content[:500]
        if response.request["REQUEST_METHOD"] != "HEAD":
            body = response.json()
            assert body["error"], body
            assert says in json.dumps(body, ensure_ascii=False), body
        assert not InboundEvent.objects.exists()
        assert not OrmQ.objects.exists()
        assert not Delivery.objects.exists()

    def assert_still_accepting(self) -> None:
        response = self.send(self.valid_body())
        assert response.status_code == 200, response.content[:500]
        assert response.json() == {"accepted": 1, "duplicates": 0}

    # --- the tests -------------------------------------------------------------------------------------------

    def check(self, case: Case) -> None:
        self.assert_refused(case.send(self), case.status, case.says)
        self.assert_still_accepting()

    @pytest.mark.parametrize("case", SHARED)
    def test_refused_and_nothing_stored(self, case: Case):
        self.check(case)
