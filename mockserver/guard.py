"""The control plane's gate: who may call ``/__admin``, and from where.

An ASGI middleware in front of the whole app. On every ``/__admin`` request, in this order:

1. with ``admin_port`` set, the control plane answers only on that port (and only it there);
2. ``Host`` must name one of the server's own origins (``127.0.0.1``, ``localhost`` and ``[::1]``
   with the served port, the bound address, ``--public-url``) — a DNS-rebinding page sends its own
   name and is refused;
3. an ``Origin`` header must be one of those origins (the same-origin dashboard is accepted, any
   other web page is refused);
4. with an admin token (``--admin-token`` or ``WANMOCK_ADMIN_TOKEN``), every data and action
   endpoint needs ``X-Wanmock-Admin-Token`` (compared in constant time); the dashboard's static
   files under ``/__admin/ui`` do not;
5. a declared ``Content-Length`` above the control plane's limit is refused before any byte is
   read;
6. a write (POST, PUT, PATCH, DELETE) with a body, or with any ``Content-Type``, needs
   ``Content-Type: application/json`` — so a cross-origin ``text/plain`` "simple" POST, which a
   browser sends without a CORS preflight, is refused.

Refusals are plain JSON ``{"error": ...}``, as every control-plane answer. An app built without
served origins (``create_app`` in-process, where there is no socket) skips the Host check and
compares ``Origin`` with the request's own ``Host``.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send
from wanmock.mockserver.limits import declared_length

ADMIN_PREFIX = "/__admin"
UI_PREFIX = "/__admin/ui"
ADMIN_TOKEN_HEADER = "X-Wanmock-Admin-Token"
ADMIN_TOKEN_VARIABLE = "WANMOCK_ADMIN_TOKEN"
ADMIN_BODY_LIMIT = 1024 * 1024  # control-plane bodies are small JSON objects
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def admin_token(option: str | None = None) -> str | None:
    """The admin token: the option when given, else ``WANMOCK_ADMIN_TOKEN`` (None when neither)."""
    return option or os.environ.get(ADMIN_TOKEN_VARIABLE) or None


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def served_origins(host: str, port: int, public_url: str | None = None) -> tuple[str, ...]:
    """The origins a server bound to ``host``:``port`` answers as: the loopback names with the
    port, the bound address itself (when it is a specific one), and ``public_url``."""
    origins = [f"http://{name}:{port}" for name in LOOPBACK_HOSTS]
    if host not in ("0.0.0.0", "::", "") and not is_loopback(host):
        shown = f"[{host}]" if ":" in host else host
        origins.append(f"http://{shown}:{port}")
    if public_url:
        origins.append(origin_of(public_url))
    return tuple(dict.fromkeys(origins))


def origin_of(url: str) -> str:
    parts = urlsplit(url.strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def hosts_of(origins: Iterable[str]) -> frozenset[str]:
    """The Host header values naming ``origins`` (a default port may be left out)."""
    found: set[str] = set()
    for origin in origins:
        parts = urlsplit(origin)
        netloc = parts.netloc.lower()
        found.add(netloc)
        default = {"http": 80, "https": 443}.get(parts.scheme)
        if parts.port is None and default is not None:
            found.add(f"{netloc}:{default}")
        elif parts.port == default:
            found.add(netloc.rpartition(":")[0])
    return frozenset(found)


class AdminGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None = None,
        origins: tuple[str, ...] | None = None,
        admin_port: int | None = None,
    ) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.origins = None if origins is None else frozenset(origin_of(o) for o in origins)
        self.hosts = None if origins is None else hosts_of(origins)
        self.admin_port = admin_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        admin = path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")
        refusal = self.check(scope, admin)
        if refusal is not None:
            status, message = refusal
            body = json.dumps({"error": message}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            if status == 413:
                headers.append((b"connection", b"close"))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)

    def check(self, scope: Scope, admin: bool) -> tuple[int, str] | None:
        if self.admin_port is not None:
            server = scope.get("server")
            on_admin_port = server is not None and server[1] == self.admin_port
            if admin != on_admin_port:
                where = "the admin port" if admin else "the provider port"
                return 404, f"no such endpoint on this port: {scope['path']} is served on {where}"
        if not admin:
            return None
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.lower(), value)
        host = headers.get(b"host", b"").decode("latin-1").lower()
        if self.hosts is not None and host not in self.hosts:
            return 403, (
                f"Host {host or '(none)'!r} is not one of this server's origins "
                f"({', '.join(sorted(self.origins or ()))}); serve under another name with --public-url"
            )
        origin = headers.get(b"origin")
        if origin is not None:
            allowed = self.origins if self.origins is not None else {f"{scope.get('scheme', 'http')}://{host}"}
            if origin_of(origin.decode("latin-1")) not in allowed or origin.strip() == b"null":
                return 403, "the control plane does not answer other web origins (Origin refused)"
        method = scope["method"]
        ui = path_under(scope["path"], UI_PREFIX) and method in ("GET", "HEAD")
        if self.token is not None and not ui:
            sent = headers.get(ADMIN_TOKEN_HEADER.lower().encode())
            if sent is None or not hmac.compare_digest(sent, self.token):
                return 401, f"this control plane needs its admin token: send the {ADMIN_TOKEN_HEADER} header"
        length = declared_length(scope["headers"])
        if length is not None and length > ADMIN_BODY_LIMIT:
            return 413, f"the body is {length} bytes; the control plane accepts at most {ADMIN_BODY_LIMIT}"
        if method in WRITES:
            content_type = headers.get(b"content-type")
            has_body = (length or 0) > 0 or b"transfer-encoding" in headers
            if content_type is not None or has_body:
                mime = (content_type or b"").split(b";")[0].strip().lower()
                if mime != b"application/json":
                    shown = (content_type or b"none").decode("latin-1")
                    return 415, f"control-plane writes take Content-Type: application/json, got {shown}"
        return None


def path_under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def public_base(origins: tuple[str, ...] | None, public_url: str | None, host: str | None, fallback: str) -> str:
    """Where result URLs point: ``public_url`` when configured; else the request's origin when
    its Host is one of the served origins; else the first served origin (never a foreign Host).
    An in-process app (no served origins) uses ``fallback``, the request's own base URL."""
    if public_url:
        return public_url.rstrip("/")
    if not origins:
        return fallback
    if host is not None and host.lower() in hosts_of(origins):
        for origin in origins:
            if host.lower() in hosts_of([origin]):
                return origin
    return origins[0]
