"""Rule's v2 REST API over `requests`: one session per (base URL, key), Bearer auth, no redirects, no secrets out."""

from __future__ import annotations

import hashlib
import json as jsonlib
import threading

import requests
from django.conf import settings

from integration import upstream

USER_AGENT = "centra-rule-bridge/1.0"
DEFAULT_TIMEOUT = (3.0, 20.0)
_CACHE_LIMIT = 64


class RuleRequestError(Exception):
    """No HTTP answer from Rule (timeout, refused, DNS, TLS); the message never holds the API key."""

    def __init__(self, message: str, *, kind: str, may_have_arrived: bool = False) -> None:
        super().__init__(message)
        self.kind = kind  # "timeout", "connection" or "refused" (integration/upstream.py: nothing was sent)
        # True when the request was sent before the answer failed to come (a read timeout, a connection cut
        # mid-answer): Rule may have acted on it, so a retry can be a duplicate.
        self.may_have_arrived = may_have_arrived


def scrub(text: str, secret: str) -> str:
    """`text` with every occurrence of `secret` (and its start, as libraries sometimes cut it) masked."""
    if not secret:
        return text
    text = text.replace(secret, "[api key]")
    if len(secret) >= 12:
        text = text.replace(secret[:12], "[api key]")
    return text


def configured_timeout() -> tuple[float, float]:
    """(connect, read) seconds from the RULE_CONNECT_TIMEOUT / RULE_READ_TIMEOUT settings, else (3, 20)."""
    return (
        float(getattr(settings, "RULE_CONNECT_TIMEOUT", DEFAULT_TIMEOUT[0])),
        float(getattr(settings, "RULE_READ_TIMEOUT", DEFAULT_TIMEOUT[1])),
    )


def error_message(response: requests.Response, limit: int = 500) -> str:
    """Rule's own words for a non-2xx answer: `<status> <error>: <message> (fields: ...)`."""
    try:
        data = response.json()
    except ValueError:
        data = None
    parts = [str(response.status_code)]
    if isinstance(data, dict):
        if data.get("error"):
            parts.append(f"{data['error']}:" if data.get("message") else str(data["error"]))
        if data.get("message"):
            parts.append(str(data["message"]))
        if data.get("fields"):
            parts.append(f"(fields: {jsonlib.dumps(data['fields'], ensure_ascii=False, sort_keys=True)})")
    else:
        parts.append(response.reason or "")
        text = (response.text or "").strip()
        if text:
            parts.append(text[:200])
    return " ".join(p for p in parts if p)[:limit]


class RuleClient:
    """A client for one Rule account; the key travels only in the Authorization header."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout: tuple[float, float] | None = None,
        *,
        key_origin: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout or configured_timeout()
        self._api_key = api_key
        # The origin the key was entered for; None only for a key that was never stored (tests, tools).
        self.key_origin = key_origin
        self.session = upstream.checked_session()
        self.session.headers.update(
            {"Authorization": f"Bearer {api_key}", "Accept": "application/json", "User-Agent": USER_AGENT}
        )
        # What requests reads from the environment on every call (the proxy for this URL, the CA bundle), read
        # once here: scanning the environment was an eighth of a lone delivery's CPU. (No ~/.netrc either: it
        # would replace the Bearer header.)
        settled = self.session.merge_environment_settings(self.base_url, {}, None, None, None)
        self.session.proxies.update(settled["proxies"])
        self.session.verify = settled["verify"]
        self.session.trust_env = False

    def __repr__(self) -> str:
        return f"RuleClient({self.base_url!r})"

    @classmethod
    def for_connection(cls, connection) -> RuleClient:
        """A client for the connection's Rule account, its key bound to the origin it was entered for."""
        return cls(connection.rule_base_url, connection.rule_api_key or "", key_origin=connection.rule_api_key_origin)

    def refusal(self) -> str:
        """Why the key must not go to this client's URL ("" when it may)."""
        if self._api_key and self.key_origin is not None and upstream.origin(self.base_url) != self.key_origin:
            where = self.key_origin or "no address (it predates address binding)"
            return (
                f"refused: the Rule API key was entered for {where}, not {upstream.origin(self.base_url)}; "
                "enter the key again for this address"
            )
        return ""

    def send(self, method: str, path: str, json: object = None, params: dict | None = None) -> requests.Response:
        """One HTTP call; any answer (3xx included, never followed) is returned, no answer raises RuleRequestError."""
        url = self.base_url + (path if path.startswith("/") else "/" + path)
        refused = self.refusal()
        if refused:
            raise RuleRequestError(refused, kind="refused")
        try:
            return self.session.request(
                method.upper(), url, json=json, params=params, timeout=self.timeout, allow_redirects=False
            )
        except upstream.RefusedRequest as exc:
            raise RuleRequestError(scrub(str(exc), self._api_key), kind="refused") from None
        except requests.Timeout as exc:
            message = scrub(f"timeout: {exc.__class__.__name__}: {exc}", self._api_key)
            sent = not isinstance(exc, requests.ConnectTimeout)
            raise RuleRequestError(message, kind="timeout", may_have_arrived=sent) from None
        except requests.RequestException as exc:
            message = scrub(f"connection error: {exc.__class__.__name__}: {exc}", self._api_key)
            # "Connection aborted" (the peer closed after we sent): Rule may have read the request.
            sent = "aborted" in str(exc).lower() or "RemoteDisconnected" in str(exc)
            raise RuleRequestError(message, kind="connection", may_have_arrived=sent) from None

    def verify_key(self) -> tuple[bool, str]:
        """Whether Rule accepts the key (a cheap GET /tags?limit=1), with a message fit for the admin."""
        if not self._api_key:
            return False, "No Rule API key is set."
        try:
            response = self.send("GET", "/tags", params={"limit": 1})
        except RuleRequestError as exc:
            return False, f"Rule could not be reached: {exc}"
        if 200 <= response.status_code < 300:
            return True, "Rule accepted the API key."
        if response.status_code in (401, 403):
            return False, f"Rule rejected the API key ({error_message(response)})."
        if 300 <= response.status_code < 400:
            return False, f"Rule answered with a redirect ({response.status_code}); use the https API URL."
        return False, f"Rule answered {error_message(response)}."


_clients: dict[tuple[str, str, tuple[float, float], str | None], RuleClient] = {}
_clients_lock = threading.Lock()


def get_client(base_url: str, api_key: str, key_origin: str | None = None) -> RuleClient:
    """The worker process's cached client for this account (keeps its connection pool warm)."""
    timeout = configured_timeout()
    # The cache key holds a digest of the API key, never the key itself.
    cache_key = (base_url.rstrip("/"), hashlib.sha256(api_key.encode()).hexdigest(), timeout, key_origin)
    with _clients_lock:
        client = _clients.get(cache_key)
        if client is None:
            if len(_clients) >= _CACHE_LIMIT:
                _clients.pop(next(iter(_clients))).session.close()
            client = _clients[cache_key] = RuleClient(base_url, api_key, timeout, key_origin=key_origin)
        return client


def client_for(connection) -> RuleClient:
    """The cached client for a connection (`get_client` with the origin its key is bound to)."""
    return get_client(connection.rule_base_url, connection.rule_api_key or "", connection.rule_api_key_origin)
