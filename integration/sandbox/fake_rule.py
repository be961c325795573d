"""A local fake of Rule's v2 API (stdlib only, no Django): validates like Rule, keeps subscribers, records requests.

Serves `/api/v2`: POST /subscribers, GET /subscribers/<id>, DELETE /subscribers/<id>,
DELETE /subscribers/<id>/tags/<tag>, GET /tags. Test controls: GET/DELETE /_fake/requests (the recorded
requests, Authorization masked), POST /_fake/control {"status", "times", "latency_ms", "retry_after", "body",
"clear_failures", "calls_per_minute", "outage_seconds"},
GET /_fake/subscribers, GET /_fake/stats (counts for benchmarks: see `FakeRule.stats`), GET /_fake/arrivals (when
each subscriber call arrived, and the emails it named). The same controls exist in Python on `FakeRule`.

Rule's budget, as far as it is known (rule-api.md): with `calls_per_minute` set, each API key may make that many
calls in any rolling minute; one more is answered 429 with a Stockholm-time Retry-After (`YYYY-MM-DD HH:MM:SS`,
when the oldest call of the minute leaves it), and every answer carries `RequestsCount-Allowed`/`-Current` and
`X-ErrorPercent-Limit` (49)/`-Current` (the share of error answers in the minute). An outage (`outage(seconds)`)
answers 503 to every API call until it ends.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo

API_PREFIX = "/api/v2"
MAX_SUBSCRIBERS = 1000
MAX_SYNC_SUBSCRIBERS = 100
# Without sync_subscribers, Rule runs automations only for batches smaller than this.
AUTOMATION_BATCH_BELOW = 20
MAX_GROUP_BYTES = 65 * 1024
FIELD_TYPES = ("text", "date", "datetime", "multiple", "json")
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
AUTOMATIONS = (False, "reset", "force")
BUDGET_WINDOW = 60.0  # seconds: the budget counts calls in any rolling minute
ERROR_PERCENT_LIMIT = 49
STOCKHOLM = ZoneInfo("Europe/Stockholm")


class RuleError(Exception):
    """An answer in Rule's error shape."""

    def __init__(self, status: int, error: str, message: str = "", fields: dict | None = None) -> None:
        super().__init__(message or error)
        self.status, self.body = status, {"error": error}
        if message:
            self.body["message"] = message
        if fields:
            self.body["fields"] = fields


def mask_authorization(value: str) -> str:
    """`Bearer ****1234`: enough to tell keys apart in a log, never the key."""
    scheme, _, secret = value.partition(" ")
    if not secret:
        scheme, secret = "", scheme
    shown = secret[-4:] if len(secret) > 8 else ""
    return f"{scheme} ****{shown}".strip()


class FakeRule:
    """The fake's state and controls; `start()` serves it on 127.0.0.1 in a daemon thread."""

    def __init__(
        self,
        api_key: str = "fake-rule-key",
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: int = 0,
        on_request: Callable[[dict], None] | None = None,
        calls_per_minute: int | None = None,
    ) -> None:
        self.api_key = api_key
        self.host, self.port = host, port
        self.latency_ms = latency_ms
        self.on_request = on_request
        self._lock = threading.RLock()
        self._requests: list[dict] = []
        self._failures: list[dict] = []
        self._subscribers: dict[int, dict] = {}
        self._by_email: dict[str, int] = {}  # lower-cased email -> id, so a lookup is not a scan of everyone
        self._by_phone: dict[str, int] = {}  # phone number -> id of the first subscriber holding it
        self._tags: dict[int, str] = {}
        self._automations: list[tuple[int, str]] = []  # (subscriber id, tag) for each automation started
        self._next_id = 1000
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._reset_budget(calls_per_minute)

    # ------------------------------------------------------------ lifecycle

    def _make_server(self) -> ThreadingHTTPServer:
        fake = self

        class Handler(_Handler):
            rule = fake

        server = ThreadingHTTPServer((self.host, self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        return server

    def start(self) -> FakeRule:
        """Serve in a daemon thread; returns self."""
        server = self._make_server()
        self._thread = threading.Thread(target=server.serve_forever, name="fake-rule", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread (the management command)."""
        self._make_server().serve_forever()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{API_PREFIX}"

    # ------------------------------------------------------------ controls

    @property
    def requests(self) -> list[dict]:
        """Every request received (API and not), oldest first, with Authorization masked."""
        with self._lock:
            return [dict(r) for r in self._requests if not r["path"].startswith("/_fake")]

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def fail(self, status: int, times: int = 1, retry_after: str | None = None, body: dict | None = None) -> None:
        """Answer the next `times` API requests with `status` (and Retry-After / body if given)."""
        with self._lock:
            self._failures.append(
                {"status": int(status), "times": int(times), "retry_after": retry_after, "body": body}
            )

    def clear_failures(self) -> None:
        """Forget the failures not yet answered (an outage ends)."""
        with self._lock:
            self._failures.clear()

    def set_latency(self, ms: int) -> None:
        self.latency_ms = int(ms)

    def reset(self) -> None:
        """Forget requests, failures, subscribers and tags."""
        with self._lock:
            self._requests.clear()
            self._failures.clear()
            self._subscribers.clear()
            self._by_email.clear()
            self._by_phone.clear()
            self._tags.clear()
            self._automations.clear()
            self.latency_ms = 0
        self._reset_budget(None)

    def stats(self) -> dict:
        """What a benchmark checks without fetching every body: API calls by answer, the (time, status) of each
        call, and the subscribers of the accepted POST /subscribers calls (in all, and distinct by email or
        phone with the call's tags: equal counts mean no subscriber reached Rule twice for the same tags)."""
        with self._lock:
            calls = [r for r in self._requests if not r["path"].startswith("/_fake")]
            statuses: dict[str, int] = {}
            endpoints: dict[str, int] = {}
            accepted = 0
            distinct: set[tuple] = set()
            for call in calls:
                statuses[str(call["status"])] = statuses.get(str(call["status"]), 0) + 1
                # "POST /subscribers", "DELETE /subscribers/{id}/tags/{tag}": the call's kind, not its ids
                parts = call["path"][len(API_PREFIX) :].strip("/").split("/")
                kind = "/".join(p if i % 2 == 0 else "{}" for i, p in enumerate(parts))
                endpoints[f"{call['method']} /{kind}"] = endpoints.get(f"{call['method']} /{kind}", 0) + 1
                body = call["json"]
                if call["method"] != "POST" or not 200 <= call["status"] < 300 or not isinstance(body, dict):
                    continue
                raw = body.get("subscribers")
                tags = tuple(sorted(str(t) for t in body.get("tags") or []))
                for sub in [raw] if isinstance(raw, dict) else raw or []:
                    accepted += 1
                    distinct.add(((sub.get("email") or "").lower() or sub.get("phone_number"), tags))
            return {
                "calls": len(calls),
                "statuses": statuses,
                "endpoints": endpoints,
                "times": [[round(c["at"], 3), c["status"]] for c in calls],
                "subscribers_accepted": accepted,
                "subscribers_distinct": len(distinct),
            }

    @property
    def automations_started(self) -> list[tuple[int, str]]:
        """(subscriber id, tag) for every automation a call started (a tag given with automation on)."""
        with self._lock:
            return list(self._automations)

    def subscriber(self, identifier: str, identified_by: str = "email") -> dict | None:
        """A copy of a stored subscriber (tags as a sorted list), or None."""
        with self._lock:
            found = self._find(identifier, identified_by)
            return _public(found) if found else None

    def add_tag(self, name: str) -> int:
        """Make a tag known (so its numeric id is accepted); returns the id."""
        with self._lock:
            for tag_id, tag_name in self._tags.items():
                if tag_name == name:
                    return tag_id
            self._next_id += 1
            self._tags[self._next_id] = name
            return self._next_id

    # ------------------------------------------------------------ Rule's budget and outages

    def _reset_budget(self, calls_per_minute: int | None) -> None:
        with self._lock:
            self.calls_per_minute = calls_per_minute
            self._calls: dict[str, deque] = {}  # key -> (time, counts against the allowance, was an error)
            self._outage_until = 0.0

    def set_budget(self, calls_per_minute: int | None) -> None:
        """Allow each key this many API calls in any rolling minute (None: no limit, and no counter headers)."""
        with self._lock:
            self.calls_per_minute = int(calls_per_minute) if calls_per_minute else None
            self._calls.clear()

    def outage(self, seconds: float) -> None:
        """Answer 503 to every API call for the next `seconds` (0 ends an outage)."""
        with self._lock:
            self._outage_until = time.monotonic() + float(seconds) if seconds else 0.0

    @property
    def in_outage(self) -> bool:
        return time.monotonic() < self._outage_until

    def _window(self, key: str, now: float) -> deque:
        calls = self._calls.setdefault(key, deque())
        while calls and calls[0][0] <= now - BUDGET_WINDOW:
            calls.popleft()
        return calls

    def _limited(self, key: str) -> tuple[int, dict, dict] | None:
        """The outage's 503 or the budget's 429 for this call, else None."""
        with self._lock:
            if self.in_outage:
                return 503, {"error": "UnexpectedError", "message": "fake outage"}, {}
            if not self.calls_per_minute:
                return None
            now = time.monotonic()
            allowed = [t for t, counts, _ in self._window(key, now) if counts]
            if len(allowed) < self.calls_per_minute:
                return None
            free_at = time.time() + (allowed[0] + BUDGET_WINDOW - now)
            stamp = datetime.fromtimestamp(math.ceil(free_at), STOCKHOLM).strftime("%Y-%m-%d %H:%M:%S")
            message = f"At most {self.calls_per_minute} requests a minute"
            return 429, {"error": "TooManyRequests", "message": message}, {"Retry-After": stamp}

    def _counted(self, key: str, status: int) -> dict:
        """Count one API answer against the key's minute; the counter headers Rule sends (when a budget is set)."""
        with self._lock:
            if not self.calls_per_minute:
                return {}
            now = time.monotonic()
            calls = self._window(key, now)
            calls.append((now, status != 429, status >= 400))
            used = sum(1 for _, counts, _ in calls if counts)
            errors = 100 * sum(1 for _, _, failed in calls if failed) / len(calls)
            return {
                "RequestsCount-Allowed": str(self.calls_per_minute),
                "RequestsCount-Current": str(used),
                "X-ErrorPercent-Limit": str(ERROR_PERCENT_LIMIT),
                "X-ErrorPercent-Current": f"{errors:.1f}",
            }

    # ------------------------------------------------------------ internals used by the handler

    def _record(self, entry: dict) -> None:
        with self._lock:
            self._requests.append(entry)
        if self.on_request:
            self.on_request(entry)

    def _take_failure(self) -> dict | None:
        with self._lock:
            while self._failures:
                failure = self._failures[0]
                if failure["times"] <= 0:
                    self._failures.pop(0)
                    continue
                failure["times"] -= 1
                return dict(failure)
        return None

    def _find(self, identifier: str, identified_by: str) -> dict | None:
        if identified_by == "email":
            # Every email is indexed when it is set; an entry left by a delete or reset no longer matches.
            sub = self._subscribers.get(self._by_email.get(identifier.lower(), -1))
            return sub if sub is not None and (sub.get("email") or "").lower() == identifier.lower() else None
        if identified_by == "phone_number":
            # Indexed too: a batch of new subscribers with phone numbers was a scan of everyone for each of them.
            held = self._by_phone.get(identifier)
            if held is None:
                return None  # nobody was ever given this number
            sub = self._subscribers.get(held)
            if sub is not None and sub.get("phone_number") == identifier:
                return sub
            # its first holder was deleted or changed number: look for another (rare)
        for sub in self._subscribers.values():
            if identified_by == "id" and str(sub["id"]) == identifier:
                return sub
            if identified_by == "phone_number" and sub.get("phone_number") == identifier:
                return sub
        return None

    def _tag_name(self, tag: object) -> str:
        text = str(tag)
        if text.isdigit():
            if int(text) not in self._tags:
                raise RuleError(404, "NotFound", f"Tag with id {text} not found")
            return self._tags[int(text)]
        self.add_tag(text)
        return text

    def handle_api(self, method: str, path: str, query: dict, body: object) -> tuple[int, dict]:
        """Rule's answer to one authorised API request (raises RuleError for error answers)."""
        parts = [unquote(p) for p in path.split("/") if p]
        identified_by = (query.get("identified_by") or ["email"])[0]
        with self._lock:
            if parts == ["subscribers"] and method == "POST":
                return self._post_subscribers(body)
            if parts == ["tags"] and method == "GET":
                limit = int((query.get("limit") or ["100"])[0] or 100)
                if limit > 100:
                    raise RuleError(400, "LimitExceed", "limit can be at most 100")
                page = max(int((query.get("page") or ["1"])[0] or 1), 1)
                tags = [{"id": i, "name": n} for i, n in sorted(self._tags.items())]
                return 200, {"tags": tags[(page - 1) * limit : page * limit], "meta": {"total": len(tags)}}
            if len(parts) == 2 and parts[0] == "subscribers" and method in ("GET", "DELETE"):
                sub = self._find(parts[1], identified_by)
                if sub is None:
                    raise RuleError(404, "NotFound", "Subscriber not found")
                if method == "DELETE":
                    del self._subscribers[sub["id"]]
                    return 200, {"success": True}
                return 200, {"subscriber": _public(sub)}
            if len(parts) == 4 and parts[0] == "subscribers" and parts[2] == "tags" and method == "DELETE":
                sub = self._find(parts[1], identified_by)
                if sub is None:
                    raise RuleError(404, "NotFound", "Subscriber not found")
                tag = parts[3]
                name = self._tags.get(int(tag)) if tag.isdigit() else tag
                if name not in sub["tags"]:
                    raise RuleError(404, "NotFound", f"Subscriber does not have tag {tag}")
                sub["tags"].discard(name)
                return 200, {"success": True}
        raise RuleError(404, "NotFound", f"No route for {method} {API_PREFIX}{path}")

    def _refuse_duplicates(self, subscribers: list[dict]) -> None:
        """Without update_on_duplicate a subscriber that exists refuses the whole call (409, no index given),
        before anyone of the call is stored."""
        for sub in subscribers:
            existing = self._find(sub["email"], "email") if sub.get("email") else None
            if existing is None and sub.get("phone_number"):
                existing = self._find(sub["phone_number"], "phone_number")
            if existing is not None:
                raise RuleError(409, "Conflict", "Subscriber already exists")

    def _post_subscribers(self, body: object) -> tuple[int, dict]:
        if not isinstance(body, dict):
            raise RuleError(400, "BadRequest", "The body must be a JSON object")
        if "subscribers" not in body:
            raise RuleError(400, "BadRequest", "subscribers is required", {"subscribers": ["required"]})
        subscribers, single = _batch_subscribers(body)
        tags = body.get("tags")
        if not isinstance(tags, list) or not tags:
            raise RuleError(400, "BadRequest", "tags must be a non-empty list", {"tags": ["required"]})
        if any(not isinstance(t, str | int) or str(t) == "" for t in tags):
            raise RuleError(400, "BadRequest", "tags must be names or ids", {"tags": ["invalid"]})
        if len({str(t) for t in tags}) != len(tags):
            raise RuleError(400, "BadRequest", "tags contains duplicates", {"tags": ["duplicate"]})
        if body.get("automation", False) not in AUTOMATIONS:
            raise RuleError(400, "BadRequest", "automation must be false, reset or force", {"automation": ["invalid"]})
        sync = body.get("sync_subscribers")
        update = body.get("update_on_duplicate") is True
        tag_names = [self._tag_name(t) for t in tags]
        # Which calls start the merchant's automations, as Rule decides it (rule-api.md): never with automation
        # false; with sync_subscribers true always; omitted, only for batches of fewer than 20.
        starts_automation = body.get("automation", False) is not False and (
            sync is True or (sync is None and len(subscribers) < AUTOMATION_BATCH_BELOW)
        )
        if not update:
            self._refuse_duplicates(subscribers)
        created = updated = 0
        ids = []
        for sub in subscribers:
            existing = self._find(sub["email"], "email") if sub.get("email") else None
            if existing is None and sub.get("phone_number"):
                existing = self._find(sub["phone_number"], "phone_number")
            if existing is not None and not update:
                raise RuleError(409, "Conflict", "Subscriber already exists")
            if existing is None:
                self._next_id += 1
                existing = self._subscribers[self._next_id] = {
                    "id": self._next_id,
                    "email": None,
                    "phone_number": None,
                    "language": None,
                    "fields": {},
                    "tags": set(),
                }
                created += 1
            else:
                updated += 1
            for key in ("email", "phone_number", "language"):
                if sub.get(key):
                    existing[key] = sub[key]
            if existing.get("email"):
                self._by_email[existing["email"].lower()] = existing["id"]
            phone = existing.get("phone_number")
            if phone:
                holder = self._subscribers.get(self._by_phone.get(phone, -1))
                if holder is None or holder.get("phone_number") != phone:
                    self._by_phone[phone] = existing["id"]
            for field in sub.get("fields") or []:
                existing["fields"][field["key"]] = {"value": field["value"], "type": field.get("type", "text")}
            existing["tags"].update(tag_names)
            ids.append(existing["id"])
            if starts_automation:
                self._automations.extend((existing["id"], tag) for tag in tag_names)
        if single:
            return 200, {"subscriber": {"id": ids[0]}}
        return 200, {
            "success": True,
            "subscribers_created": created,
            "subscribers_updated": updated,
            "subscribers_suppressed": 0,
        }


def _batch_subscribers(body: dict) -> tuple[list, bool]:
    """The request's subscribers validated as Rule does for one or a batch: `subscribers` an object or an array,
    at most 1000 per call (413), at most 100 with `sync_subscribers: true` (400 naming it), each subscriber
    valid on its own (errors name its index: `subscribers.37.phone_number`). Returns (subscribers, single)."""
    raw = body["subscribers"]
    single = isinstance(raw, dict)
    if not single and not isinstance(raw, list):
        raise RuleError(400, "BadRequest", "subscribers must be an object or an array", {"subscribers": ["invalid"]})
    subscribers = [raw] if single else raw
    if len(subscribers) > MAX_SUBSCRIBERS:
        raise RuleError(413, "TooManySubscribers", f"At most {MAX_SUBSCRIBERS} subscribers per request")
    if not subscribers:
        raise RuleError(400, "BadRequest", "subscribers is empty", {"subscribers": ["empty"]})
    sync = body.get("sync_subscribers")
    if sync is not None and not isinstance(sync, bool):
        raise RuleError(400, "BadRequest", "sync_subscribers must be a boolean", {"sync_subscribers": ["invalid"]})
    if sync is True and len(subscribers) > MAX_SYNC_SUBSCRIBERS:
        raise RuleError(
            400,
            "BadRequest",
            f"At most {MAX_SYNC_SUBSCRIBERS} subscribers with sync_subscribers, got {len(subscribers)}",
            {"sync_subscribers": ["too_many_subscribers"]},
        )
    for index, sub in enumerate(subscribers):
        _validate_subscriber(sub, None if single else index)
    return subscribers, single


def _public(sub: dict) -> dict:
    return {**sub, "fields": {k: dict(v) for k, v in sub["fields"].items()}, "tags": sorted(sub["tags"])}


def _validate_subscriber(sub: object, index: int | None) -> None:
    prefix = "" if index is None else f"subscribers.{index}."
    if not isinstance(sub, dict):
        raise RuleError(400, "BadRequest", "A subscriber must be an object", {prefix + "subscriber": ["invalid"]})
    email, phone = sub.get("email"), sub.get("phone_number")
    if not email and not phone:
        raise RuleError(
            400, "BadRequest", "A subscriber needs an email or a phone_number", {prefix + "email": ["required"]}
        )
    if email and (not isinstance(email, str) or not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", email)):
        raise RuleError(400, "BadRequest", "Invalid email", {prefix + "email": ["invalid"]})
    if phone and (not isinstance(phone, str) or not E164.match(phone)):
        raise RuleError(400, "BadRequest", "Invalid phone number", {prefix + "phone_number": ["invalid"]})
    language = sub.get("language")
    if language is not None and (not isinstance(language, str) or not re.match(r"^[a-z]{2}$", language)):
        raise RuleError(400, "BadRequest", "language must be ISO 639-1", {prefix + "language": ["invalid"]})
    fields = sub.get("fields", [])
    if not isinstance(fields, list):
        raise RuleError(400, "BadRequest", "fields must be an array", {prefix + "fields": ["invalid"]})
    group_bytes: dict[str, int] = {}
    for n, field in enumerate(fields):
        where = f"{prefix}fields.{n}"
        if not isinstance(field, dict) or "key" not in field or "value" not in field:
            raise RuleError(400, "BadRequest", "A field needs key and value", {where: ["invalid"]})
        key, value, kind = field["key"], field["value"], field.get("type", "text")
        if not isinstance(key, str) or key.count(".") != 1 or key.startswith(".") or key.endswith("."):
            raise RuleError(400, "BadRequest", f"Field key {key!r} must be Group.Field", {where + ".key": ["invalid"]})
        if kind not in FIELD_TYPES:
            raise RuleError(400, "BadRequest", f"Unknown field type {kind!r}", {where + ".type": ["invalid"]})
        if not _value_ok(kind, value):
            raise RuleError(400, "BadRequest", f"Value of {key} is not a valid {kind}", {where + ".value": ["invalid"]})
        group = key.split(".", 1)[0]
        encoded = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        group_bytes[group] = group_bytes.get(group, 0) + len(encoded.encode("utf-8"))
        if group_bytes[group] > MAX_GROUP_BYTES:
            raise RuleError(400, "BadRequest", f"Field group {group} exceeds 65 KiB", {where + ".value": ["too_large"]})


def _value_ok(kind: str, value: object) -> bool:
    if kind == "multiple":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if not isinstance(value, str):
        return kind == "text" and isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "date":
        return bool(DATE.match(value))
    if kind == "datetime":
        return bool(DATETIME.match(value))
    if kind == "json":
        try:
            json.loads(value)
        except ValueError:
            return False
    return True


def subscriber_arrivals(requests: list[dict]) -> list[dict]:
    """When each subscriber call arrived (epoch seconds, before any latency) and the emails it named:
    `[{"at", "emails"}]` (`GET /_fake/arrivals`, for end-to-end latency measured from outside)."""
    found = []
    for entry in requests:
        if entry["method"] != "POST" or entry["path"] != API_PREFIX + "/subscribers":
            continue
        body = entry["json"] if isinstance(entry["json"], dict) else {}
        subscribers = body.get("subscribers")
        subscribers = subscribers if isinstance(subscribers, list) else [subscribers]
        emails = [s["email"] for s in subscribers if isinstance(s, dict) and isinstance(s.get("email"), str)]
        found.append({"at": entry["at"], "emails": emails})
    return found


class _Handler(BaseHTTPRequestHandler):
    rule: FakeRule
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, a keep-alive client's delayed ACK held the body
    # back by about 40 ms per answer (measured by tests/bench: 46 ms per request at "0 ms", 1.3 ms without).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args) -> None:
        """Silent: the recorded requests are the log."""

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        query = parse_qs(split.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", errors="replace")
        headers = {k: (mask_authorization(v) if k.lower() == "authorization" else v) for k, v in self.headers.items()}
        entry = {
            "method": self.command,
            "path": split.path,
            "query": {k: v[0] if len(v) == 1 else v for k, v in query.items()},
            "headers": headers,
            "json": body,
            "at": time.time(),
        }
        status, payload, extra = self._answer(split.path, query, body)
        if split.path.startswith(API_PREFIX + "/"):
            extra = {**extra, **self.rule._counted(self.headers.get("Authorization", ""), status)}
        entry["status"] = status
        self.rule._record(entry)
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (a timeout test): nobody to answer

    def _answer(self, path: str, query: dict, body: object) -> tuple[int, object, dict]:
        rule = self.rule
        if path == "/_fake/requests":
            if self.command == "DELETE":
                rule.clear()
                return 200, {"cleared": True}, {}
            return 200, rule.requests, {}
        if path == "/_fake/stats":
            return 200, rule.stats(), {}
        if path == "/_fake/arrivals":
            return 200, subscriber_arrivals(rule.requests), {}
        if path == "/_fake/subscribers":
            with rule._lock:
                return 200, [_public(s) for s in rule._subscribers.values()], {}
        if path == "/_fake/control" and self.command == "POST":
            body = body if isinstance(body, dict) else {}
            if body.get("clear_failures"):
                rule.clear_failures()
            if "latency_ms" in body:
                rule.set_latency(int(body["latency_ms"]))
            if body.get("status"):
                rule.fail(int(body["status"]), int(body.get("times", 1)), body.get("retry_after"), body.get("body"))
            if "calls_per_minute" in body:
                rule.set_budget(body["calls_per_minute"])
            if "outage_seconds" in body:
                rule.outage(float(body["outage_seconds"] or 0))
            return 200, {"ok": True}, {}
        if not path.startswith(API_PREFIX + "/"):
            return 404, {"error": "NotFound", "message": "Not an API path"}, {}
        if rule.latency_ms:
            time.sleep(rule.latency_ms / 1000)
        limited = rule._limited(self.headers.get("Authorization", ""))
        if limited:
            return limited
        failure = rule._take_failure()
        if failure:
            extra = {"Retry-After": failure["retry_after"]} if failure["retry_after"] else {}
            default = {
                "error": "UnexpectedError" if failure["status"] >= 500 else "Error",
                "message": f"fake failure {failure['status']}",
            }
            return failure["status"], failure["body"] or default, extra
        if self.headers.get("Authorization", "") != f"Bearer {rule.api_key}":
            return 401, {"error": "NotAuthorized"}, {}
        try:
            status, payload = rule.handle_api(self.command, path[len(API_PREFIX) :], query, body)
        except RuleError as exc:
            return exc.status, exc.body, {}
        return status, payload, {}

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _dispatch
