"""The Starlette app: every provider's endpoints, result downloads and the control plane.

A request to a provider goes through one pipeline: route (manifest paths) -> auth -> fault
rules -> rate limits -> required headers -> body (size cap, content type, JSON) -> model ->
schema validation -> lifecycle. Every rejection is an ApiError, answered by the provider's
profile in its own envelope; nothing a client sends can produce a bare 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import random
import re
import secrets
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from wanmock.mockserver import timing
from wanmock.mockserver.config import ServerConfig
from wanmock.mockserver.drift import Drift
from wanmock.mockserver.errors import ApiError, kind_for_status
from wanmock.mockserver.faults import FaultRuleSet
from wanmock.mockserver.media import MediaCache, VideoSpec, file_response
from wanmock.mockserver.profiles import Context, Profile, profile_for
from wanmock.mockserver.ratelimit import RateLimiter
from wanmock.mockserver.results import FILES_PREFIX, ResultLinks, output_size, storage_error
from wanmock.mockserver.routing import Match, Router, WrongMethod
from wanmock.mockserver.store import JournalEntry, MemoryStore, TaskStore
from wanmock.mockserver.tasks import Task
from wanmock.mockserver.undocumented import WARNING_HEADER, header_text

log = logging.getLogger("wanmock")
TEST_HEADER = "x-wanmock-test"
ROOT_PROVIDERS = ("modellix", "aimlapi", "apiyi")  # their paths do not collide
JOURNAL_STRING_LIMIT = 256
JOURNAL_DEPTH_LIMIT = 32
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # after decoding, a valid pair is one character


class ConnectionDropped(Exception):
    """Raised after the response has started, so the client sees the connection break."""


@dataclass
class Served:
    profile: Profile
    router: Router


@dataclass
class AppState:
    config: ServerConfig
    store: TaskStore
    faults: FaultRuleSet
    limiter: RateLimiter
    links: ResultLinks
    media: MediaCache
    rng: random.Random
    served: dict[str, Served] = field(default_factory=dict)
    drift: Drift = field(default_factory=Drift)

    def now(self) -> float:
        return self.config.clock.now()

    def request_id(self) -> str:
        return Profile.new_task_id(self.served[next(iter(self.served))].profile, self.rng)


# -- helpers ------------------------------------------------------------------------------


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def scrubbed_headers(request: Request) -> dict[str, str]:
    out = {}
    for name, value in request.headers.items():
        if name in ("authorization", "cookie", "x-api-key"):
            token = value.partition(" ")[2] or value
            value = f"<redacted sha256:{fingerprint(token)}>"
        out[name] = value
    return out


def shorten(value: Any, depth: int = 0) -> Any:
    """A copy of a JSON value fit for the journal: long strings (data URIs) cut short, deep
    nesting cut off, NaN and Infinity spelt as strings (the control plane answers strict JSON)."""
    if isinstance(value, str) and len(value) > JOURNAL_STRING_LIMIT:
        return value[:JOURNAL_STRING_LIMIT] + f"...<{len(value)} characters>"
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(value)
    if isinstance(value, dict | list) and depth >= JOURNAL_DEPTH_LIMIT:
        return f"<nested deeper than {JOURNAL_DEPTH_LIMIT} levels>"
    if isinstance(value, dict):
        return {k: shorten(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [shorten(v, depth + 1) for v in value]
    return value


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    digits = (declared or "").lstrip("0")
    if declared and declared.isascii() and declared.isdigit() and (len(digits) > 18 or int(digits or 0) > limit):
        raise ApiError("payload_too_large", f"request body is {declared} bytes; at most {limit} accepted")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError("payload_too_large", f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_json(raw: bytes) -> Any:
    """The body as JSON (UTF-8 only). A lone UTF-16 surrogate escape ("\\ud800") becomes U+FFFD,
    as Go's encoding/json reads it: a str that cannot be encoded as UTF-8 would break schema
    validation, the journal and every answer that echoes it."""
    value = json.loads(raw.decode("utf-8"))
    if SURROGATE_ESCAPE.search(raw):
        text = json.dumps(value, ensure_ascii=False)
        if LONE_SURROGATE.search(text):
            value = json.loads(LONE_SURROGATE.sub("\ufffd", text))
    return value


def parse_json(raw: bytes) -> Any:
    try:
        return decode_json(raw)
    except UnicodeDecodeError as exc:
        raise ApiError("invalid_json", f"the body is not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise ApiError("invalid_json", f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except ValueError as exc:  # an integer with more digits than Python converts
        limit = sys.get_int_max_str_digits()
        raise ApiError("invalid_json", f"invalid JSON: a number has more than {limit} digits") from exc
    except RecursionError as exc:
        raise ApiError("invalid_json", "invalid JSON: nested too deeply") from exc


class DroppedResponse(Response):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"1000")],
            }
        )
        raise ConnectionDropped("wanmock fault rule: connection dropped")


# -- the provider pipeline ----------------------------------------------------------------


class ProviderHandler:
    def __init__(self, state: AppState, name: str) -> None:
        self.state = state
        self.name = name
        self.profile = state.served[name].profile
        self.router = state.served[name].router

    def context(self, request: Request, prefix: str, now: float) -> Context:
        base = str(request.base_url).rstrip("/")

        def result_url(task: Task) -> str:
            return self.state.links.url(base, task, task.created_at + self.profile.retention_seconds)

        return Context(now, base, prefix, request.url.path, self.state.request_id(), result_url)

    async def handle(self, request: Request, prefix: str, path: str) -> Response:
        now = self.state.now()
        ctx = self.context(request, prefix, now)
        test_id = request.headers.get(TEST_HEADER)
        entry: dict[str, Any] = {"endpoint": None, "task_id": None, "request_body": None, "warnings": []}
        try:
            status, body, headers = await self.pipeline(request, path, ctx, test_id, entry)
        except ApiError as error:
            status, body = self.profile.error_answer(error, ctx)
            headers = dict(error.headers)
            if error.retry_after is not None:
                headers["Retry-After"] = str(max(1, round(error.retry_after)))
            if error.kind == "method_not_allowed":
                headers.setdefault("Allow", error.detail.rpartition("allowed: ")[2])
        except ConnectionDropped:
            self.journal(request, ctx, 0, None, test_id, entry)
            return DroppedResponse()
        except Exception:  # a bug must still answer in the provider's shape, never a bare 500
            log.exception("wanmock: internal error answering %s %s", request.method, request.url.path)
            status, body = self.profile.error_answer(ApiError("server_error", "wanmock internal error"), ctx)
            headers = {}
        status, body = self.state.drift.apply(self.profile.provider, entry["endpoint"], status, body)
        self.journal(request, ctx, status, body, test_id, entry)
        if request.method == "HEAD":
            response: Response = Response(status_code=status, headers=headers, media_type="application/json")
        else:
            response = JSONResponse(body, status_code=status, headers=headers)
        for text in entry["warnings"]:
            response.headers.append(WARNING_HEADER, header_text(text))
        return response

    def journal(
        self,
        request: Request,
        ctx: Context,
        status: int,
        body: Any,
        test_id: str | None,
        entry: dict[str, Any],
    ) -> None:
        self.state.store.append(
            JournalEntry(
                seq=self.state.store.next_seq(),
                at=ctx.now,
                provider=self.name,
                method=request.method,
                path=request.url.path,
                query=request.url.query,
                status=status,
                test_id=test_id,
                task_id=entry["task_id"],
                endpoint=entry["endpoint"],
                request_body=entry["request_body"],
                response_body=shorten(body),
                request_headers=scrubbed_headers(request),
                warnings=list(entry["warnings"]),
            )
        )

    async def pipeline(
        self, request: Request, path: str, ctx: Context, test_id: str | None, entry: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str]]:
        found = self.router.match(request.method, path)
        if found is None:
            raise ApiError("not_found", f"no such endpoint: {request.method} {path}")
        if isinstance(found, WrongMethod):
            allowed = ", ".join(found.allowed)
            raise ApiError("method_not_allowed", f"{request.method} not allowed; allowed: {allowed}")
        entry["endpoint"] = found.endpoint.name
        token = bearer_token(request)
        if not token or not self.state.config.key_accepted(token):
            detail = "missing Authorization header" if token is None else "invalid API key"
            raise ApiError("unauthorized", detail)
        owner = fingerprint(token)
        raw = await read_body(request, self.state.config.max_body_bytes) if request.method == "POST" else b""
        body: Any = None
        if raw:
            try:
                body = decode_json(raw)
            except (ValueError, RecursionError):
                body = None
            entry["request_body"] = shorten(body) if body is not None else shorten(raw.decode("utf-8", "replace"))
        task_id = self.task_id_of(found, request)
        entry["task_id"] = task_id
        scope = await self.apply_faults(found, body, task_id, test_id)
        name = found.endpoint.name
        if name == "submit":
            return await self.submit(request, found, raw, ctx, test_id, owner, entry, scope)
        self.state.limiter.check(self.name, owner, ctx.now)
        if name == "poll":
            return self.poll(task_id, ctx, owner)
        if name == "cancel":
            return self.cancel(task_id, ctx)
        return self.list_tasks(request, ctx, test_id)

    def task_id_of(self, found: Match, request: Request) -> str | None:
        if "task_id" in found.params:
            return found.params["task_id"]
        for param, placeholder in found.endpoint.query.items():
            if placeholder == "{task_id}":
                value = request.query_params.get(param)
                if not value:
                    raise ApiError("invalid_request", f"the query parameter '{param}' is required")
                return value
        return None

    async def apply_faults(
        self, found: Match, body: Any, task_id: str | None, test_id: str | None
    ) -> dict[str, str | None]:
        """Apply the latency, drop and error rules that fire; return the scope, so that fail
        rules can be taken once a task is really created."""
        model_id = found.params.get("model") or (body.get("model") if isinstance(body, dict) else None)
        if model_id is None and task_id is not None and any(r.model for r in self.state.faults.rules()):
            task = self.state.store.get(self.name, task_id)  # only a model-scoped rule needs the task's model
            model_id = task.model_id if task else None
        model = self.profile.provider.model_for_id(model_id) if isinstance(model_id, str) else None
        scope = {
            "provider": self.name,
            "endpoint": found.endpoint.name,
            "task_id": task_id,
            "test_id": test_id,
            "kind": model.kind if model else None,
            "model_id": model_id if isinstance(model_id, str) else None,
        }
        fired = self.state.faults.take(scope, actions=("latency", "drop", "error"))
        for rule in fired:
            if rule.action == "latency":
                await asyncio.sleep(rule.latency_seconds)
        for rule in fired:
            if rule.action == "drop":
                raise ConnectionDropped(rule.id)
            if rule.action == "error":
                status = rule.status or 500
                raise ApiError(
                    kind_for_status(status),
                    rule.message or f"wanmock fault rule {rule.id}",
                    status=status,
                    code=rule.code,
                    retry_after=rule.retry_after,
                    verbatim=rule.message is not None,
                )
        return scope

    async def submit(
        self,
        request: Request,
        found: Match,
        raw: bytes,
        ctx: Context,
        test_id: str | None,
        owner: str,
        entry: dict[str, Any],
        scope: dict[str, str | None],
    ) -> tuple[int, Any, dict[str, str]]:
        limit = self.state.config.rate_limits.get(self.name)
        unfinished = None
        if limit is not None and limit.concurrency is not None:  # a shared store would load every task
            unfinished = sum(
                1 for t in self.state.store.tasks(self.name) if t.owner == owner and not t.is_terminal(ctx.now)
            )
        self.state.limiter.check(self.name, owner, ctx.now, unfinished)
        for header, value in found.endpoint.headers.items():
            if request.headers.get(header, "").strip().lower() != value.lower():
                raise ApiError("missing_async_header", f"the header {header}: {value} is required")
        expected = found.endpoint.content_type or "application/json"
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != expected:
            shown = content_type or "none"
            raise ApiError("unsupported_media_type", f"Content-Type must be {expected}, got {shown}")
        if not raw:
            raise ApiError("invalid_json", "the request body is empty")
        body = parse_json(raw)
        if not isinstance(body, dict):
            raise ApiError("invalid_request", f"the body must be a JSON object, not {type(body).__name__}")
        model = self.profile.model_for(found.params, body)
        entry["warnings"] = self.profile.validate(model, body)
        params = self.profile.video_params(model, body)
        queue, run = timing.plan(self.state.config.timing, self.profile.provider, model.kind, params, self.state.rng)
        requested_id = found.params.get("model") or body.get("model") or model.id
        task = Task(
            id=self.profile.new_task_id(self.state.rng),
            provider=self.name,
            kind=model.kind,
            model_id=str(requested_id),
            params=params,
            created_at=ctx.now,
            started_at=ctx.now + queue,
            finished_at=ctx.now + queue + run,
            retention_seconds=self.profile.retention_seconds,
            test_id=test_id,
            owner=owner,
            request=shorten(body),
            seq=self.state.store.next_seq(),
        )
        scope = {**scope, "kind": model.kind, "model_id": str(requested_id)}
        for rule in self.state.faults.take(scope, actions=("fail",)):
            task.final_state, task.error_code, task.error_message = (
                "failed",
                rule.code,
                rule.message,
            )
        self.state.store.add(task)
        entry["task_id"] = task.id
        return 200, self.profile.submit_body(task, ctx), {}

    def poll(self, task_id: str | None, ctx: Context, owner: str) -> tuple[int, Any, dict[str, str]]:
        assert task_id is not None  # the poll endpoint always names one
        task = self.state.store.get(self.name, task_id)
        hidden = task is not None and self.name == "modellix" and self.state.config.options.modellix_tasks_per_key
        if task is None or (hidden and task.owner != owner):
            status, body = self.profile.missing_task(task_id, ctx)
        else:
            status, body = self.profile.answer(task, ctx)
        return status, body, {}

    def cancel(self, task_id: str | None, ctx: Context) -> tuple[int, Any, dict[str, str]]:
        assert task_id is not None
        task = self.state.store.get(self.name, task_id)
        if task is None or task.is_expired(ctx.now):
            raise ApiError("not_found", f"task {task_id} not found")
        state = task.state_at(ctx.now)
        if state != "queued":
            word = self.profile.word(state) if state in self.profile.provider.states else state
            raise ApiError(
                "conflict",
                f"only a {self.profile.word('queued')} task can be canceled; it is {word}",
            )
        task.finish(ctx.now, "canceled")
        self.state.store.save(task)
        return 200, {"request_id": ctx.request_id}, {}

    def list_tasks(self, request: Request, ctx: Context, test_id: str | None) -> tuple[int, Any, dict[str, str]]:
        query = request.query_params
        try:
            page_no = int(query.get("page_no", "1"))
            page_size = int(query.get("page_size", "10"))
        except ValueError as exc:
            raise ApiError("invalid_request", "page_no and page_size must be integers") from exc
        if page_no < 1 or not 1 <= page_size <= 100:
            raise ApiError("invalid_request", "page_no must be >= 1 and page_size from 1 to 100")
        rows = []
        for task in reversed(self.state.store.tasks(self.name, test_id)):
            state = task.state_at(ctx.now)
            if state == "expired":
                continue
            word = self.profile.word(state)
            if query.get("status") and query["status"] != word:
                continue
            if query.get("model_name") and query["model_name"] != task.model_id:
                continue
            rows.append({"task_id": task.id, "task_status": word, "model_name": task.model_id})
        page = rows[(page_no - 1) * page_size : page_no * page_size]
        total = len(rows)
        body = {
            "request_id": ctx.request_id,
            "data": page,
            "total": total,
            "page_no": page_no,
            "page_size": page_size,
        }
        return 200, body, {}


# -- dispatch -----------------------------------------------------------------------------


class Dispatcher:
    """Routes a path to a provider: ``/<provider>/...`` always, and at the root either the
    single served provider or (with all) the root providers whose paths claim it."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.handlers = {name: ProviderHandler(state, name) for name in state.served}
        self.multi = len(state.served) > 1

    def resolve(self, path: str) -> tuple[ProviderHandler, str, str]:
        if self.multi:
            head, _, rest = path.lstrip("/").partition("/")
            if head in self.handlers:
                return self.handlers[head], f"/{head}", "/" + rest
            roots = [self.handlers[n] for n in ROOT_PROVIDERS if n in self.handlers]
            for handler in roots:
                if handler.router.claims(path):
                    return handler, "", path
            guess = {"api": "modellix", "v2": "aimlapi", "wan": "apiyi", "v1": "apiyi"}.get(head, "modellix")
            return (
                self.handlers.get(guess, roots[0] if roots else next(iter(self.handlers.values()))),
                "",
                path,
            )
        return next(iter(self.handlers.values())), "", path

    async def endpoint(self, request: Request) -> Response:
        if request.url.path == FILES_PREFIX or request.url.path.startswith(FILES_PREFIX + "/"):
            return no_such_file(self.state, request)
        handler, prefix, path = self.resolve(request.url.path)
        return await handler.handle(request, prefix, path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Mounted as an ASGI app, so every method (TRACE, PROPFIND...) reaches the provider's
        router and is answered in its shape; a function route would only take listed ones."""
        response = await self.endpoint(Request(scope, receive))
        await response(scope, receive, send)


def no_such_file(state: AppState, request: Request) -> Response:
    """The result host's XML for anything but GET/HEAD /__files/<provider>/<name>: a nested or
    traversing name is no key, another method is not allowed; never a provider's envelope."""
    request_id = state.request_id().upper().replace("-", "")[:24]
    if request.method in ("GET", "HEAD"):
        body = storage_error("NoSuchKey", "The specified key does not exist.", request_id)
        return Response(body, 404, media_type="application/xml")
    message = "The specified method is not allowed against this resource."
    body = storage_error("MethodNotAllowed", message, request_id)
    return Response(body, 405, headers={"Allow": "GET, HEAD"}, media_type="application/xml")


async def download(request: Request) -> Response:
    state: AppState = request.app.state.wanmock
    provider = request.path_params["provider"]
    name = request.path_params["name"]
    request_id = state.request_id().upper().replace("-", "")[:24]
    now = state.now()

    def refuse(status: int, code: str, message: str) -> Response:
        return Response(storage_error(code, message, request_id), status, media_type="application/xml")

    served = state.served.get(provider)
    if served is None or not name.endswith(".mp4"):
        return refuse(404, "NoSuchKey", "The specified key does not exist.")
    task_id = name[: -len(".mp4")]
    rules = state.faults.take(
        {
            "provider": provider,
            "endpoint": "download",
            "task_id": task_id,
            "test_id": request.headers.get(TEST_HEADER),
        }
    )
    for rule in rules:
        if rule.action == "latency":
            await asyncio.sleep(rule.latency_seconds)
        elif rule.action == "drop":
            return DroppedResponse()
        elif rule.action == "error" and rule.status:
            refused = refuse(rule.status, rule.code or "InternalError", rule.message or "wanmock fault rule")
            if rule.retry_after is not None:
                refused.headers["Retry-After"] = str(max(1, round(rule.retry_after)))
            return refused
    if served.profile.provider.task_fields.get("result_auth") == "forbidden" and "authorization" in request.headers:
        return refuse(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        )
    expires = request.query_params.get("Expires")
    signature = request.query_params.get("Signature")
    if not (expires or "").isascii() or len(expires or "") > 20 or not (signature or "").isascii():
        expires = signature = None  # not what a signed link carries (int() and hmac would raise)
    check = state.links.check(provider, task_id, expires, signature, now)
    if not check.ok:
        if check.reason == "expired":
            return refuse(403, "AccessDenied", "Request has expired.")
        return refuse(403, "SignatureDoesNotMatch", "The request signature does not match.")
    task = state.store.get(provider, task_id)
    if task is None or task.state_at(now) != "succeeded":
        return refuse(404, "NoSuchKey", "The specified key does not exist.")
    width, height = output_size(task.params.resolution, task.params.ratio)
    spec = VideoSpec(width=width, height=height, duration=task.params.duration, audio=task.params.audio)
    path = await run_in_threadpool(state.media.path_for, spec)
    return file_response(path, request)


def create_app(config: ServerConfig | None = None, store: TaskStore | None = None) -> Starlette:
    """The mock server as an ASGI app (run it with uvicorn, or call it through httpx)."""
    from wanmock.mockserver.admin import admin_routes

    config = config or ServerConfig()
    seed = config.seed if config.seed is not None else secrets.randbits(64)
    store = store or MemoryStore()
    secret, rng = hashlib.sha256(f"wanmock-{seed}".encode()).digest(), random.Random(seed)
    if config.seed is None:  # a store keeps the first secret: every app (worker) on it signs alike
        secret = store.link_secret(secret)
    if store.shared:  # no two workers (or restarts) draw the same task ids
        rng = random.Random(f"{seed}/{store.next_seq()}")
    state = AppState(
        config=config,
        store=store,
        faults=store.fault_rules(),
        limiter=RateLimiter(config.rate_limits),
        links=ResultLinks(secret),
        media=MediaCache(config.media_dir, config.media_max_bytes),
        rng=rng,
    )
    for name in config.providers:
        profile = profile_for(name, config)
        state.served[name] = Served(profile, Router(profile.provider))
    dispatcher = Dispatcher(state)
    routes = [
        *admin_routes(),
        Route(FILES_PREFIX + "/{provider}/{name}", download, methods=["GET", "HEAD"]),
        Route("/{path:path}", dispatcher),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        state.media.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    # A path no route matches (Starlette's "{path:path}" stops at a newline, e.g. a task id with
    # %0A in it) still reaches the provider, which answers in its own shape, not text/plain.
    app.router.default = dispatcher
    app.state.wanmock = state
    return app


def base_urls(config: ServerConfig, origin: str) -> Mapping[str, str]:
    """Where each provider is served, for a server at ``origin`` (``http://127.0.0.1:8000``)."""
    if len(config.providers) == 1:
        return {config.providers[0]: origin}
    urls = {name: f"{origin}/{name}" for name in config.providers}
    return urls
