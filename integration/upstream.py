"""Where a stored secret may be sent: Rule and Centra only, over https, at public addresses.

A Rule API key or a Centra token is bound to the origin (scheme, host, port) it was entered for
(`Connection.rule_api_key_origin`, `.centra_api_token_origin`); the clients refuse to send it anywhere else.
Addresses in private, loopback, link-local and other non-public ranges are refused twice: when a URL is saved
(after resolving its name) and when a connection is opened (the address really connected to, so a name that
resolves differently later gains nothing). `ALLOW_PRIVATE_UPSTREAMS=1` lifts the address rule (the fakes on
loopback: tests, `make run`); plain http is accepted only in development (DEBUG or SANDBOX).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError

DEFAULT_PORTS = {"http": 80, "https": 443}


class UpstreamRefused(ValueError):
    """A URL or address the secrets must not go to; the message says why and what to change."""


class RefusedRequest(requests.exceptions.ConnectionError):
    """A call refused before anything was sent (the policy above); a requests error, so callers that handle
    connection errors handle it too."""


def origin(url: str) -> str:
    """`scheme://host[:port]` of a URL, lower-cased, default port left out; "" for an empty URL."""
    if not url:
        return ""
    parts = urlsplit(url.strip())
    scheme = (parts.scheme or "").lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if ":" in host:
        host = f"[{host}]"
    suffix = f":{port}" if port and port != DEFAULT_PORTS.get(scheme) else ""
    return f"{scheme}://{host}{suffix}"


def http_allowed() -> bool:
    """Plain http only in development (DEBUG, or the SANDBOX of tests and `make run`)."""
    return bool(settings.DEBUG or getattr(settings, "SANDBOX", False))


def private_allowed() -> bool:
    return bool(getattr(settings, "ALLOW_PRIVATE_UPSTREAMS", False))


def check_address(address: str, host: str = "") -> None:
    """UpstreamRefused unless `address` is a public (global) unicast address, or ALLOW_PRIVATE_UPSTREAMS is set."""
    if private_allowed():
        return
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        raise UpstreamRefused(f"{address!r} is not an IP address") from None
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_global and not ip.is_multicast:
        return
    name = f"{host} ({ip})" if host and host != str(ip) else str(ip)
    raise UpstreamRefused(
        f"{name} is a private, loopback, link-local or otherwise non-public address; secrets are only sent to "
        "public addresses (ALLOW_PRIVATE_UPSTREAMS=1 allows others, for local fakes)"
    )


def check_url(url: str, *, resolve: bool = True) -> None:
    """UpstreamRefused unless `url` may receive a secret: https (http only in development), no credentials in
    it, and (with `resolve`) every address its name resolves to public. A name that does not resolve now is
    accepted: the check when connecting still applies."""
    parts = urlsplit(url.strip())
    scheme = (parts.scheme or "").lower()
    if scheme not in DEFAULT_PORTS:
        raise UpstreamRefused(f"use an https:// URL, not {scheme or 'no scheme'}")
    if scheme == "http" and not http_allowed():
        raise UpstreamRefused("use https://: plain http is only accepted in development")
    if parts.username or parts.password:
        raise UpstreamRefused("leave user and password out of the URL")
    host = parts.hostname
    if not host:
        raise UpstreamRefused("the URL has no host")
    if not resolve or private_allowed():
        return
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError):
        return
    for info in infos:
        check_address(str(info[4][0]), host)


# --- the check when connecting --------------------------------------------------------------------------------


class RefusedConnection(NewConnectionError):
    """Raised inside urllib3 when the connected address is refused (turned into RefusedRequest below)."""

    def __init__(self, conn, detail: str) -> None:
        super().__init__(conn, detail)
        self.detail = detail


class _PeerChecked:
    def _new_conn(self):
        sock = super()._new_conn()
        try:
            check_address(str(sock.getpeername()[0]), str(self.host))
        except UpstreamRefused as exc:
            sock.close()
            raise RefusedConnection(self, f"refused: {exc}") from None
        return sock


class CheckedHTTPConnection(_PeerChecked, HTTPConnection):
    """An http connection that checks the address it reached."""


class CheckedHTTPSConnection(_PeerChecked, HTTPSConnection):
    """An https connection that checks the address it reached."""


class CheckedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = CheckedHTTPConnection


class CheckedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = CheckedHTTPSConnection


POOL_CLASSES = {"http": CheckedHTTPConnectionPool, "https": CheckedHTTPSConnectionPool}


def _refusal(exc: BaseException) -> RefusedConnection | None:
    """The RefusedConnection somewhere inside a requests/urllib3 error, if any."""
    seen: set[int] = set()
    stack: list[object] = [exc]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, RefusedConnection):
            return item
        stack.extend([*item.args, getattr(item, "reason", None), item.__cause__, item.__context__])
    return None


class CheckedAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections check the scheme before sending and the address after connecting."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = POOL_CLASSES

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = POOL_CLASSES
        return manager

    def send(self, request, *args, **kwargs):
        try:
            check_url(request.url, resolve=False)
        except UpstreamRefused as exc:
            raise RefusedRequest(f"refused: {exc}", request=request) from None
        try:
            return super().send(request, *args, **kwargs)
        except requests.exceptions.ConnectionError as exc:
            refusal = _refusal(exc)
            if refusal is None:
                raise
            raise RefusedRequest(refusal.detail, request=request) from None


def checked_session() -> requests.Session:
    """A requests Session for calls that carry a secret: every connection goes through the checks above."""
    session = requests.Session()
    adapter = CheckedAdapter()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
