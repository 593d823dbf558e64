"""`wanmock proxy`: a validating proxy between an application and its provider (an ASGI app).

Every request is forwarded upstream as it came (method, raw path, query, headers — the key
included — and the body, streamed) and every answer is streamed back as it came (status,
headers, body). Only hop-by-hop headers (RFC 9110 §7.6.1: ``Connection`` and the headers it
names, ``Keep-Alive``, ``Proxy-*``, ``TE``, ``Trailer``, ``Transfer-Encoding``, ``Upgrade``)
and ``Host`` are not passed on; no header is added.

Once an answer has been sent, the exchange is checked (:mod:`wanmock.contracts.tools.traffic`)
and, with ``record``, kept in a cassette (:class:`~wanmock.contracts.tools.recording.Recorder`,
the format and the scrubber of `wanmock record`). In ``enforce`` mode a request the contract
says the provider would refuse is answered here, in the provider's own envelope and status
(the mock's profile builds it), and never reaches upstream. Fault rules (the mock's: latency,
error with Retry-After, dropped connection) apply to the proxied exchanges.

Control plane (never forwarded): ``GET /__proxy/health``; ``GET|DELETE /__proxy/findings``
(``{"exchanges": N, "findings": [...]}``); ``GET|POST|DELETE /__proxy/faults`` and
``DELETE /__proxy/faults/{id}``, shaped like the mock's ``/__admin/faults``. With an admin
token, every control call but health needs it in ``X-Wanmock-Admin-Token``; a request that
carries an ``Origin`` header (a web page) is refused; writes need ``Content-Type: application/json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send
from wanmock.contracts.tools.recording import Recorder, scrub_url
from wanmock.contracts.tools.traffic import (
    Exchange,
    Findings,
    Judgement,
    TrafficChecker,
    bearer,
    decoded,
    json_or_text,
    judge,
)
from wanmock.mockserver.config import ServerConfig
from wanmock.mockserver.errors import ApiError
from wanmock.mockserver.faults import FaultRule, FaultRules, RuleError, fault_error
from wanmock.mockserver.http import DroppedResponse, until_shutdown
from wanmock.mockserver.profiles import Context, profile_for
from wanmock.mockserver.routing import Match

MODES = ("observe", "enforce")
CONTROL = "/__proxy"
TOKEN_HEADER = "x-wanmock-admin-token"
TEST_HEADER = "x-wanmock-test"
PROXY_HEADER = "X-Wanmock-Proxy"  # only on answers the proxy gives itself (enforce, fault rules)
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection"}
    | {"te", "trailer", "transfer-encoding", "upgrade", "host"}
)
CHECK_BYTES = 4 * 1024 * 1024  # a request or answer body longer than this is forwarded, not checked
MAX_CONTROL_BODY = 64 * 1024


class ClientGone(Exception):
    """The client disconnected before its request body was read."""


def passed_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``raw`` headers without the hop-by-hop ones (and those ``Connection`` names), in order."""
    named = {
        token.strip().lower()
        for name, value in raw
        if name.lower() == b"connection"
        for token in value.split(b",")
        if token.strip()
    }
    return [(n, v) for n, v in raw if n.lower().decode("latin-1") not in HOP_BY_HOP and n.lower() not in named]


async def read_prefix(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The request body up to ``limit`` bytes, and whether that is all of it."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True
        if size > limit:
            return b"".join(chunks), False


async def the_rest(prefix: bytes, receive: Receive) -> AsyncIterator[bytes]:
    """``prefix``, then the rest of the request body as it arrives."""
    yield prefix
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


class Proxy:
    """The forwarding shell around :class:`TrafficChecker` (see the module docstring)."""

    def __init__(
        self,
        provider: str,
        upstream: str,
        *,
        mode: str = "observe",
        record: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
        now: Callable[[], float] = time.time,
        admin_token: str | None = None,
        timeout: float = 300.0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        self.mode = mode
        self.now = now
        self.admin_token = admin_token
        self.upstream = httpx.URL(upstream.rstrip("/"))
        if self.upstream.scheme not in ("http", "https") or not self.upstream.host:
            raise ValueError(f"the upstream must be an http(s) URL, not {upstream!r}")
        self.shown_upstream = scrub_url(str(self.upstream))
        self.profile = profile_for(provider, ServerConfig(providers=(provider,)))
        self.findings = Findings(provider)
        self.checker = TrafficChecker(provider, self.findings, self.profile)
        self.faults = FaultRules()
        self.recorder = Recorder(provider, str(self.upstream), keys=(), now=now) if record else None
        self.rng = random.Random()
        self.counts = {"forwarded": 0, "enforced": 0, "faulted": 0, "unreachable": 0}
        self.client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=30.0),
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )
        # Never keep a cookie from one answer to send with another client's request.
        self.client.cookies = httpx.Cookies(CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])))

    # -- answers the proxy gives itself -----------------------------------------------------

    def provider_answer(self, error: ApiError, path: str, why: str) -> Response:
        ctx = Context(self.now(), str(self.upstream), "", path, self.profile.new_task_id(self.rng), lambda _: "")
        status, body = self.profile.error_answer(error, ctx)
        headers = {**error.headers, PROXY_HEADER: why}
        if error.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(error.retry_after)))
        return JSONResponse(body, status_code=status, headers=headers)

    async def apply_faults(
        self, found: Match | None, judgement: Judgement | None, task_id: str | None, request: Request
    ) -> Response | None:
        """Latency rules wait; an error or drop rule that fires answers instead of the provider."""
        kind, model_id = (judgement.kind, judgement.model_id) if judgement else (None, None)
        if kind is None and task_id is not None:
            tracked = self.checker.tasks.get(task_id)
            kind = tracked.kind if tracked else None
        scope = {
            "provider": self.profile.name,
            "endpoint": found.endpoint.name if found else None,
            "task_id": task_id,
            "test_id": request.headers.get(TEST_HEADER),
            "kind": kind,
            "model_id": model_id,
        }
        fired = self.faults.take(scope, actions=("latency", "drop", "error"))
        for rule in fired:
            if rule.action == "latency":
                await asyncio.sleep(rule.latency_seconds)
        for rule in fired:
            if rule.action == "drop":
                self.counts["faulted"] += 1
                return DroppedResponse()
            if rule.action == "error":
                self.counts["faulted"] += 1
                return self.provider_answer(fault_error(rule), request.url.path, f"fault rule {rule.id}")
        return None

    # -- forwarding -------------------------------------------------------------------------

    def upstream_url(self, scope: Scope) -> httpx.URL:
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        query: bytes = scope.get("query_string", b"")
        base = self.upstream.raw_path.split(b"?")[0].rstrip(b"/")
        return self.upstream.copy_with(raw_path=base + raw_path + (b"?" + query if query else b""))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1003})
            return
        try:
            await self.forward(scope, receive, send)
        except ClientGone:
            return

    async def forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope)
        sent_at = self.now()
        method, path = request.method, request.url.path
        headers = {k.lower(): v for k, v in request.headers.items()}
        token = bearer(headers)
        if token:
            self.findings.saw_key(token)
        self.findings.counted()
        has_body = "content-length" in headers or "transfer-encoding" in headers
        prefix, complete = await read_prefix(receive, CHECK_BYTES) if has_body else (b"", True)
        found = self.checker.match(method, path)
        query = dict(request.query_params)
        judgement = judge(self.profile, found, headers, prefix if complete else None) if found else None
        task_id = self.checker.task_id_of(found, query) if found else None
        exchange = Exchange(method, path, query, headers, prefix if complete else None, sent_at)
        faulted = await self.apply_faults(found, judgement, task_id, request)
        if faulted is not None:
            await faulted(scope, receive, send)
            return
        if self.mode == "enforce" and found is not None and judgement is not None and judgement.refusal is not None:
            self.counts["enforced"] += 1
            answer = self.provider_answer(judgement.refusal, path, "refused by the contract (enforce mode)")
            await answer(scope, receive, send)
            self.checker.check(exchange, found, judgement, answered_by_proxy=True)
            return
        content: bytes | AsyncIterator[bytes] | None = None
        if has_body:
            content = prefix if complete else the_rest(prefix, receive)
        outgoing = httpx.Request(
            method, self.upstream_url(scope), headers=passed_headers(scope["headers"]), content=content
        )
        try:
            upstream = await self.client.send(outgoing, stream=True)
        except httpx.TimeoutException as exc:
            self.counts["unreachable"] += 1
            answer = self.provider_answer(ApiError("timeout", f"upstream timed out: {exc}"), path, "upstream timed out")
            await answer(scope, receive, send)
            return
        except httpx.HTTPError as exc:
            self.counts["unreachable"] += 1
            why = f"cannot reach the upstream: {type(exc).__name__}"
            await self.provider_answer(ApiError("bad_gateway", why), path, why)(scope, receive, send)
            return
        self.counts["forwarded"] += 1
        captured = await self.relay(upstream, send)
        if found is None or judgement is None:
            return
        exchange.status = upstream.status_code
        exchange.response_headers = {k.lower(): v for k, v in upstream.headers.items()}
        exchange.response_body = captured
        self.checker.check(exchange, found, judgement)
        if self.recorder is not None:
            self.keep(exchange, request)

    async def relay(self, upstream: httpx.Response, send: Send) -> bytes | None:
        """Stream ``upstream`` to the client unchanged; its body (None when longer than kept)."""
        chunks: list[bytes] = []
        size = 0
        try:
            start: Message = {
                "type": "http.response.start",
                "status": upstream.status_code,
                "headers": passed_headers(upstream.headers.raw),
            }
            await send(start)
            async for chunk in upstream.aiter_raw():
                size += len(chunk)
                if size <= CHECK_BYTES:
                    chunks.append(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await upstream.aclose()
        return b"".join(chunks) if size <= CHECK_BYTES else None

    def keep(self, exchange: Exchange, request: Request) -> None:
        """Record ``exchange`` in the cassette (scrubbed by the recorder)."""
        assert self.recorder is not None
        self.recorder.keys = tuple(self.findings.secrets())
        response_raw = decoded(exchange.response_body, exchange.response_headers.get("content-encoding"))
        endpoint = self.recorder.classify(exchange.method, exchange.path, exchange.query)[0]
        probe = "proxied"
        if endpoint == "submit" and exchange.status in (401, 403):
            probe = "refused-key"
        elif endpoint == "submit" and exchange.status in (400, 422):
            probe = "invalid-body"
        self.recorder.add(
            method=exchange.method,
            path=self.recorder.relative(exchange.path),
            query=request.query_params.multi_items(),
            headers=exchange.headers,
            body=json_or_text(exchange.body),
            status=exchange.status,
            response_headers=exchange.response_headers,
            response_body=json_or_text(response_raw),
            sent=exchange.sent,
            probe=probe,
        )

    def cassette(self) -> dict[str, Any] | None:
        return self.recorder.cassette() if self.recorder is not None else None

    def findings_document(self) -> dict[str, Any]:
        return {**self.findings.to_dict(), **self.counts, "mode": self.mode}


# -- the control plane ----------------------------------------------------------------------


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _proxy(request: Request) -> Proxy:
    proxy: Proxy = request.app.state.proxy
    return proxy


def _refused(request: Request, *, write: bool = False) -> JSONResponse | None:
    """Why a control call is refused (None: it is not)."""
    proxy = _proxy(request)
    if "origin" in request.headers:
        return _error(403, "the proxy's control plane does not answer web pages (an Origin header was sent)")
    if proxy.admin_token is not None:
        given = request.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(given.encode(), proxy.admin_token.encode()):
            return _error(401, f"this control call needs the admin token in {TOKEN_HEADER}")
    if write and request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        return _error(415, "send JSON with Content-Type: application/json")
    return None


async def health(request: Request) -> JSONResponse:
    proxy = _proxy(request)
    return JSONResponse(
        {
            "status": "ok",
            "provider": proxy.profile.name,
            "upstream": proxy.shown_upstream,
            "mode": proxy.mode,
            "recording": proxy.recorder is not None,
        }
    )


async def findings(request: Request) -> JSONResponse:
    refused = _refused(request)
    if refused is not None:
        return refused
    proxy = _proxy(request)
    if request.method == "DELETE":
        proxy.findings.clear()
        return JSONResponse({"cleared": True})
    return JSONResponse(proxy.findings_document())


async def faults(request: Request) -> JSONResponse:
    refused = _refused(request, write=request.method == "POST")
    if refused is not None:
        return refused
    proxy = _proxy(request)
    if request.method == "GET":
        return JSONResponse({"rules": [r.to_dict() for r in proxy.faults.rules()]})
    if request.method == "DELETE":
        proxy.faults.clear()
        return JSONResponse({"cleared": True})
    raw = await request.body()
    if len(raw) > MAX_CONTROL_BODY:
        return _error(413, f"a fault rule is at most {MAX_CONTROL_BODY} bytes")
    try:
        rule = FaultRule.parse(json.loads(raw))
    except (ValueError, RuleError) as exc:
        return _error(400, str(exc))
    if rule.action == "fail":
        return _error(400, "a fail rule needs the mock's own tasks; the proxy cannot make a real task fail")
    if rule.provider not in (None, proxy.profile.name):
        return _error(400, f"this proxy forwards {proxy.profile.name}, not {rule.provider}")
    return JSONResponse(proxy.faults.add(rule).to_dict(), status_code=201)


async def fault_detail(request: Request) -> JSONResponse:
    refused = _refused(request)
    if refused is not None:
        return refused
    if _proxy(request).faults.remove(request.path_params["rule_id"]):
        return JSONResponse({"deleted": request.path_params["rule_id"]})
    return _error(404, f"no fault rule {request.path_params['rule_id']}")


async def unknown(request: Request) -> JSONResponse:
    known = "health, findings, faults"
    return _error(404, f"no control endpoint {request.url.path}; {CONTROL}/ has {known}")


def create_proxy_app(proxy: Proxy) -> Starlette:
    """The proxy as an ASGI app: the control plane under /__proxy/, everything else forwarded."""

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with until_shutdown():
            yield
        await proxy.client.aclose()

    routes = [
        Route(f"{CONTROL}/health", health, methods=["GET"]),
        Route(f"{CONTROL}/findings", findings, methods=["GET", "DELETE"]),
        Route(f"{CONTROL}/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route(f"{CONTROL}/faults/{{rule_id}}", fault_detail, methods=["DELETE"]),
        Route(f"{CONTROL}/{{rest:path}}", unknown),
        Route(CONTROL, unknown),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.router.default = proxy
    app.state.proxy = proxy
    return app
