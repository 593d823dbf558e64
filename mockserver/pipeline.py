"""One provider request, in explicit stages, shared by the live mock and the replay.

    route -> authenticate -> read and decode the body (once) -> faults -> the operation
          -> drift -> journal -> respond

A ``RequestContext`` is built when the request arrives and carries everything a later stage
needs: the matched endpoint, the key's owner, the raw and decoded body, the task id, the answer.
The operation — the mock's task lifecycle (``operations.py``) or a cassette (``replay.py``) — is
the only stage that differs. Every refusal is an ``ApiError``, answered by the provider's profile
in its own envelope; nothing a client sends can produce a bare 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from itertools import chain
from types import MappingProxyType
from typing import Any, Generic, Protocol, TypeVar, overload

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from wanmock.mockserver.bodies import NUL, decoded_or_raw, dumps, join_flat, journal_form, loads, split_flat, text_of
from wanmock.mockserver.errors import ApiError
from wanmock.mockserver.faults import fault_error
from wanmock.mockserver.guard import public_base
from wanmock.mockserver.http import (
    ONE_WRITE,
    TEST_HEADER,
    WRITE_ANSWER,
    ConnectionDropped,
    DroppedResponse,
    base_url,
    bearer_token,
    header_map,
    json_refusal,
    read_body,
    server_offer,
    take_body,
    url_path,
    url_query,
)
from wanmock.mockserver.limits import (
    ENTRY_OVERHEAD,
    JOURNAL_BODY_BYTES,
    JOURNAL_HEADER_BYTES,
    JOURNAL_TARGET,
    bounded,
    bounded_headers,
    cut,
    length_of,
)
from wanmock.mockserver.profiles import Context
from wanmock.mockserver.routing import Match, WrongMethod
from wanmock.mockserver.scrub import Fingerprint, Scrubber, request_secrets
from wanmock.mockserver.state import AppState
from wanmock.mockserver.store import JournalEntry, Parts
from wanmock.mockserver.storeio import StoreUnavailable
from wanmock.mockserver.tasks import Task
from wanmock.mockserver.undocumented import WARNING_HEADER, header_text

log = logging.getLogger("wanmock")
_T = TypeVar("_T")
MAX_ORIGINS = 64  # result-link functions kept per pipeline (one per origin a client used)
JSON_TYPE = (b"content-type", b"application/json")


class once(Generic[_T]):  # a decorator, lower-case as functools.cached_property
    """``functools.cached_property`` without its lock: Python 3.11's takes one at every first
    read, and a request context is only ever read by the request's own coroutine."""

    def __init__(self, compute: Callable[[Any], _T]) -> None:
        self.compute, self.name, self.__doc__ = compute, compute.__name__, compute.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type) -> once[_T]: ...
    @overload
    def __get__(self, instance: object, owner: type) -> _T: ...
    def __get__(self, instance: object, owner: type) -> _T | once[_T]:
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.compute(instance)
        return value


EMPTY: Mapping[str, Any] = MappingProxyType({})  # a field's default until a stage sets it


class RequestContext:
    """One request on its way through the pipeline: what the stages learnt and the answer.

    Read from the ASGI scope directly (headers once into a dict, the path and query as the
    server gave them); a Starlette ``request`` is built only if a stage asks for one. A plain
    class (its later fields are class-level defaults until a stage sets them): built on every
    request, it costs less than a dataclass's ``__init__`` of every field."""

    match: Match | None = None
    token: str | None = None
    owner: str = ""  # the key's fingerprint
    raw: bytes = b""
    body: Any = None  # the decoded JSON body (None: no body, or not JSON: see body_error)
    body_error: ApiError | None = None
    task_id: str | None = None
    scope: Mapping[str, str | None] = EMPTY  # what fault rules match on (set, never changed)
    rules_set: bool = True  # any fault rule was set when the request arrived (else none is taken)
    status: int = 200
    answer: Any = None
    headers: Mapping[str, str] = EMPTY  # the answer's extra headers (set, never changed)
    response: Response | None = None  # a ready response (a recorded answer, a dropped connection)
    warnings: Sequence[str] = ()  # accepted-but-undocumented input, told back
    prefetched: tuple[Task | None] | None = None  # a poll's task, read with the fault rules
    endpoint: str | None = None  # the matched endpoint's name (set with ``match``)

    def __init__(
        self,
        asgi: Scope,
        receive: Receive,
        request_headers: dict[str, str],  # by lower-case name
        prefix: str,  # where the provider is mounted ("" or "/dashscope")
        path: str,  # the path below the prefix, which the provider's router matches
        now: float,
        test_id: str | None,
    ) -> None:
        self.asgi, self.receive, self.request_headers = asgi, receive, request_headers
        self.prefix, self.path, self.now, self.test_id = prefix, path, now, test_id
        self.method: str = asgi["method"]
        self.ctx: Context  # what the provider's profile needs to answer (set by Pipeline.begin)

    @once
    def request(self) -> Request:
        return Request(self.asgi, self.receive)

    @once
    def query_params(self) -> QueryParams:
        return QueryParams(self.asgi.get("query_string", b""))

    @once
    def url_path(self) -> str:
        return url_path(self.asgi)

    @once
    def secrets(self) -> tuple[str, ...]:
        """The credential values this request presents (its headers' and its query's)."""
        return tuple(request_secrets(self.request_headers.items(), url_query(self.asgi)))

    @once
    def joined_secrets(self) -> str | tuple[str, ...]:
        """The same, as one flat value (``join_flat``): what a task's and a journal's records keep."""
        return join_flat(self.secrets)

    @once
    def clean_body(self) -> Any:
        """The request body as the journal and a task dump keep it: bounded (limits.py), with
        this request's credentials removed."""
        body = self.body if self.body is not None or not self.raw else text_of(self.raw)
        return bounded(body, clean=Scrubber.cached(self.secrets))

    @once
    def body_bytes(self) -> bytes:
        """The answer's JSON body (encoded once, for the journal's size and the response)."""
        return b"" if self.answer is None and self.response is not None else dumps(self.answer)

    def reply(self, status: int, answer: Any, headers: Mapping[str, str] | None = None) -> None:
        self.status, self.answer, self.headers = status, answer, headers or EMPTY


def rules_and_task(
    rules: Callable[[], list[Any]], get: Callable[[str, str], Task | None], provider: str, task_id: str
) -> tuple[list[Any], Task | None]:
    """The fault rules and a task, read in one store call (run on the store's thread)."""
    return rules(), get(provider, task_id)


def format_exchange(fingerprint: Fingerprint, raw: tuple[Any, ...]) -> Parts:
    """A journal entry's target, bodies and headers as the control plane shows them, from the
    flat parts ``Pipeline.journal`` kept: decoded as the request was, scrubbed of every
    credential the request presented (in any form; scrub.py), and bounded (limits.py)."""
    path, query, target_done, body, body_bounded, response, joined_headers, known = raw
    parts = split_flat(joined_headers)
    headers = list(zip(parts[::2], parts[1::2], strict=True))
    secrets = tuple(request_secrets(headers, query)) if known is None else split_flat(known)
    clean = Scrubber.cached(secrets, fingerprint)
    # a large body was bounded and scrubbed when the exchange was recorded
    request_body = loads(body) if body_bounded else journal_form(decoded_or_raw(body), clean)
    return (
        path if target_done else cut(clean.text(path), JOURNAL_TARGET),
        query if target_done else cut(clean.query(query), JOURNAL_TARGET),
        request_body,
        bounded(loads(response), clean=clean) if response else None,
        clean.headers(bounded_headers(headers)),
    )


class Operation(Protocol):
    """The stage that differs between the mock and the replay: answer a routed, authenticated
    request (set ``rc.status``/``rc.answer``, or ``rc.response``) or raise ApiError."""

    async def run(self, rc: RequestContext) -> None: ...

    def refusal(self, rc: RequestContext, error: ApiError) -> Response | None:
        """A ready answer to ``error`` instead of the profile's (a replay's recorded one)."""
        ...


class Pipeline:
    """The stages of one provider's requests; ``operation`` answers the routed ones."""

    def __init__(self, state: AppState, name: str, operation: Operation, *, journal: bool = True) -> None:
        self.state = state
        self.name = name
        self.profile = state.served[name].profile
        self.router = state.served[name].router
        self.operation = operation
        self.journaled = journal
        # one formatter per pipeline: an entry then holds only flat values (untracked by the GC)
        self.format_exchange = functools.partial(format_exchange, state.fingerprint)
        self._result_urls: dict[str, Callable[[Task], str]] = {}
        self._bases: dict[tuple[str | None, str], str] = {}  # (Host, request origin) -> result-link origin
        self._origins: dict[tuple[Any, ...], tuple[str, Callable[[Task], str]]] = {}  # begin's, by scope

    def begin(
        self, scope: Scope, receive: Receive, prefix: str, path: str, now: float, full_path: str | None = None
    ) -> RequestContext:
        headers = header_map(scope["headers"])
        host = headers.get("host")
        server = scope.get("server")
        # what base_url reads from the scope: the origin's result-link base, once per origin
        origin = (
            host,
            scope.get("scheme"),
            server if type(server) is not list else tuple(server),
            scope.get("root_path"),
            scope.get("app_root_path"),
        )
        found = self._origins.get(origin)
        if found is None:
            fallback = base_url(scope, host)
            base = self._bases.get((host, fallback))
            if base is None:  # result URLs: --public-url or a served origin, never a foreign Host
                config = self.state.config
                base = public_base(config.origins, config.public_url, host, fallback)
                if len(self._bases) < MAX_ORIGINS:
                    self._bases[(host, fallback)] = base
            found = (base, self.result_url(base))
            if len(self._origins) < MAX_ORIGINS:
                self._origins[origin] = found
        rc = RequestContext(scope, receive, headers, prefix, path, now, headers.get(TEST_HEADER))
        if full_path is not None:  # the dispatcher read it already
            rc.__dict__["url_path"] = full_path
        rc.ctx = Context(now, found[0], prefix, rc.url_path, self.state.request_id, found[1])
        return rc

    def result_url(self, base: str) -> Callable[[Task], str]:
        """The signed result link of a task served from ``base`` (one function per origin)."""
        found = self._result_urls.get(base)
        if found is None:
            retention, links = self.profile.retention_seconds, self.state.links

            def found(task: Task) -> str:
                return links.url(base, task, task.created_at + retention)

            if len(self._result_urls) < MAX_ORIGINS:
                self._result_urls[base] = found
        return found

    async def handle(
        self, scope: Scope, receive: Receive, send: Send, prefix: str, path: str, full_path: str | None = None
    ) -> None:
        """Answer one request: ``path`` is below ``prefix``; ``full_path`` is the whole URL path
        when the caller has read it (``url_path(scope)``)."""
        state = self.state
        now = state.now() if state.local_clock else await state.anow()
        rc = self.begin(scope, receive, prefix, path, now, full_path)
        try:
            try:
                self.route(rc)
                self.authenticate(rc)
                if rc.method == "POST" and not self.take_body(rc):
                    await self.read_body(rc)
                self.name_task(rc)
                if not state.io.direct or state.faults.rules():  # else no rule to apply: none set
                    await self.faults(rc)
                else:
                    rc.rules_set = False
                await self.operation.run(rc)
            except StoreUnavailable as exc:  # answered in the provider's envelope, as its outages are
                raise ApiError("unavailable", "the service is temporarily unavailable; try again later") from exc
        except ApiError as error:
            self.refuse(rc, error)
        except ConnectionDropped:
            await self.journal(rc, dropped=True)
            await DroppedResponse()(scope, receive, send)
            return
        except Exception:  # a bug must still answer in the provider's shape, never a bare 500
            log.exception("wanmock: internal error answering %s %s", rc.method, rc.url_path)
            rc.reply(*self.profile.error_answer(ApiError("server_error", "wanmock internal error"), rc.ctx))
        if state.drift.active:
            self.drift(rc)
        entry = self.record(rc)
        if entry is not None:
            await self.keep(entry)
        if not self.write_answer(rc, send):
            await self.respond(rc, send)

    # -- the stages, in order -------------------------------------------------------------

    def route(self, rc: RequestContext) -> None:
        given = rc.request_headers.get("content-length")  # the first, as declared_length reads it
        if given is None:
            declared = None
        elif len(given) < 10 and given.isdigit() and given.isascii():  # the usual case: plain digits
            declared = int(given)
        else:
            declared = length_of(given.encode("latin-1"))
        limit = self.profile.config.max_body_bytes  # refused before a byte is read (2^63 too)
        if declared is not None and declared > limit:
            raise ApiError("payload_too_large", f"request body is {declared} bytes; at most {limit} accepted")
        found = self.router.match(rc.method, rc.path)
        if found is None:
            raise ApiError("not_found", f"no such endpoint: {rc.method} {rc.path}")
        if isinstance(found, WrongMethod):
            allowed = ", ".join(found.allowed)
            raise ApiError("method_not_allowed", f"{rc.method} not allowed; allowed: {allowed}")
        rc.match, rc.endpoint = found, found.endpoint.name

    def authenticate(self, rc: RequestContext) -> None:
        token = rc.token = bearer_token(rc.request_headers)
        any_key = rc.match is not None and rc.match.endpoint.auth == "any-key"  # a key check answers itself
        if not token or not (any_key or self.profile.config.key_accepted(token)):
            raise ApiError("unauthorized", "missing Authorization header" if token is None else "invalid API key")
        rc.owner = self.state.owner_of(token)

    def take_body(self, rc: RequestContext) -> bool:
        """Take a POST body that has all arrived from the server at once (wanmock's own:
        ``http.TAKE_BODY``) and decode it; False where it must be read (``read_body``)."""
        raw = take_body(rc.receive, self.profile.config.max_body_bytes)
        if raw is None:
            return False
        self.decode_body(rc, raw)
        return True

    async def read_body(self, rc: RequestContext) -> None:
        """Read a POST body (size capped) and decode it, once: a body that is not JSON is kept
        with the reason, for the operations that need JSON to refuse it."""
        if rc.method != "POST":
            return
        self.decode_body(rc, await read_body(rc.receive, rc.request_headers, self.profile.config.max_body_bytes))

    def decode_body(self, rc: RequestContext, raw: bytes) -> None:
        rc.raw = raw
        if raw:
            try:
                rc.body = loads(raw)
            except (ValueError, RecursionError) as exc:
                rc.body_error = json_refusal(exc)

    def name_task(self, rc: RequestContext) -> None:
        """The task id the request names, in its path or (AI/ML API) its query."""
        assert rc.match is not None
        if "task_id" in rc.match.params:
            rc.task_id = rc.match.params["task_id"]
            return
        for param, placeholder in rc.match.endpoint.query.items():
            if placeholder == "{task_id}":
                value = rc.query_params.get(param)
                if not value:
                    raise ApiError("invalid_request", f"the query parameter '{param}' is required")
                rc.task_id = value

    async def faults(self, rc: RequestContext) -> None:
        """Apply the latency, drop and error rules that fire; keep the scope, so that fail rules
        can be taken once a task is really created."""
        assert rc.match is not None
        rules, io = self.state.faults, self.state.io
        # one store read; with no rule set (the usual case), the only one
        if io.direct:
            listed = rules.rules()
        elif rc.task_id is not None and rc.endpoint == "poll" and getattr(io.store, "prefetch_polls", False):
            # a poll on a shared store reads the rules and its task in one trip to the store's
            # thread; the task is used when no rule is set (nothing could delay the answer)
            listed, task = await io.run(rules_and_task, rules.rules, io.store.get, self.name, rc.task_id)
            rc.prefetched = (task,) if not listed else None
        else:
            listed = await io.run(rules.rules)
        rc.rules_set = bool(listed)
        if not listed:
            return
        body = rc.body
        model_id = rc.match.params.get("model") or (body.get("model") if isinstance(body, dict) else None)
        if model_id is None and rc.task_id is not None and any(r.model for r in listed):
            task = await io.run(self.state.store.get, self.name, rc.task_id)  # only a model-scoped rule needs it
            model_id = task.model_id if task else None
        model = self.profile.provider.model_for_id(model_id) if isinstance(model_id, str) else None
        rc.scope = {
            "provider": self.name,
            "endpoint": rc.endpoint,
            "task_id": rc.task_id,
            "test_id": rc.test_id,
            "kind": model.kind if model else None,
            "model_id": model_id if isinstance(model_id, str) else None,
        }
        fired = await io.run(rules.take, rc.scope, ("latency", "drop", "error"))
        for rule in fired:
            if rule.action == "latency":
                await asyncio.sleep(rule.latency_seconds)
        for rule in fired:
            if rule.action == "drop":
                raise ConnectionDropped(rule.id)
            if rule.action == "error":
                raise fault_error(rule)

    def refuse(self, rc: RequestContext, error: ApiError) -> None:
        recorded = self.operation.refusal(rc, error)
        if recorded is not None:
            rc.response = recorded
            return
        status, body = self.profile.error_answer(error, rc.ctx)
        headers = dict(error.headers)
        if error.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(error.retry_after)))
        if error.kind == "method_not_allowed":
            headers.setdefault("Allow", error.detail.rpartition("allowed: ")[2])
        rc.reply(status, body, headers)

    def drift(self, rc: RequestContext) -> None:
        if rc.response is None:
            rc.status, rc.answer = self.state.drift.apply(self.profile.provider, rc.endpoint, rc.status, rc.answer)

    async def journal(self, rc: RequestContext, *, dropped: bool = False) -> None:
        """Record the exchange; a store failure here never changes the answer (a submit whose
        task was written is a success even if its journal entry is lost; the failure is logged)."""
        entry = self.record(rc, dropped=dropped)
        if entry is not None:
            await self.keep(entry)

    async def keep(self, entry: JournalEntry) -> None:
        """Append an entry ``record`` made to a shared store (a failure is logged, not raised)."""
        with contextlib.suppress(StoreUnavailable):
            await self.state.io.append(entry)

    def record(self, rc: RequestContext, *, dropped: bool = False) -> JournalEntry | None:
        """Record the exchange in a store on this thread (the memory store: as its flat record),
        or return the entry for ``keep`` to send to a shared store.

        The entry's target, bodies and headers are scrubbed and bounded when first read
        (:func:`format_exchange`), not here: the entry keeps the raw body (a large one bounded
        now), the answer's bytes as sent and the headers, as flat values."""
        if not self.journaled:
            return None
        # the headers, names and values in turn, as one NUL-joined string (a flat record)
        request_headers = rc.request_headers
        joined: str | tuple[str, ...] = NUL.join(chain.from_iterable(request_headers.items()))
        strings = 2 * len(request_headers)
        headers_size = len(joined) + 2 * strings + 1 if strings else 0  # their lengths, + 6 per header
        if headers_size > JOURNAL_HEADER_BYTES:  # many or long headers: only the bounded few are kept
            joined = join_flat(tuple(chain.from_iterable(bounded_headers(request_headers.items()))))
            headers_size = JOURNAL_HEADER_BYTES
        elif strings and joined.count(NUL) != strings - 1:  # a NUL in one of them: kept as a tuple
            joined = join_flat(tuple(chain.from_iterable(request_headers.items())))
        body: bytes = rc.raw
        body_bounded = len(body) > JOURNAL_BODY_BYTES
        if body_bounded:  # a large body is bounded (and scrubbed) now: an entry never holds more of it
            body = dumps(rc.clean_body)
        path, query = rc.url_path, url_query(rc.asgi)
        target_done = len(path) + len(query) > 2 * JOURNAL_TARGET
        if target_done:  # a huge target is cut now (scrubbed first), so the entry never holds it
            early = Scrubber.cached(rc.secrets, self.state.fingerprint)
            path, query = cut(early.text(path), JOURNAL_TARGET), cut(early.query(query), JOURNAL_TARGET)
        response = b"" if dropped or rc.response is not None else rc.body_bytes
        # the credentials, when the body or the target needed them already
        known = rc.joined_secrets if "secrets" in rc.__dict__ else None
        # flat atoms: the collector untracks the record's tuple at its first collection
        raw = (path, query, target_done, body, body_bounded, response, joined, known)
        size = ENTRY_OVERHEAD + len(body) + len(response) + headers_size + len(path) + len(query)
        status = 0 if dropped else rc.status
        test_id, task_id = rc.test_id, rc.task_id
        if test_id is not None and len(test_id) > JOURNAL_TARGET:
            test_id = cut(test_id, JOURNAL_TARGET)
        if task_id is not None and len(task_id) > JOURNAL_TARGET:
            task_id = cut(task_id, JOURNAL_TARGET)
        endpoint, io = rc.endpoint, self.state.io
        if io.memory is not None:  # kept as its flat record, no entry built
            io.memory.append_flat(
                self.format_exchange, rc.now, self.name, rc.method, status, test_id, task_id, endpoint, rc.warnings,
                size, raw,
            )  # fmt: skip
            return None
        entry = JournalEntry(  # numbered by the store as it appends (one round trip)
            0, rc.now, self.name, rc.method, "", "", status, test_id, task_id, endpoint,
            warnings=tuple(rc.warnings), formatter=self.format_exchange, raw=raw, size_hint=size,
        )  # fmt: skip
        if io.direct:
            io.store.append(entry)
            return None
        return entry

    def write_answer(self, rc: RequestContext, send: Send) -> bool:
        """Write a JSON answer at once through the server (wanmock's own: ``http.WRITE_ANSWER``);
        False where ``respond`` must send it as ASGI messages."""
        write = server_offer(send, WRITE_ANSWER)
        return write is not None and rc.response is None and write(rc.status, self.answer_headers(rc), rc.body_bytes)

    async def respond(self, rc: RequestContext, send: Send) -> None:
        """Send the answer: a ready response as it is; else JSON, headed as Starlette's
        JSONResponse heads it (for HEAD, the length of the body a GET gets, and no body)."""
        if rc.response is not None:
            await rc.response(rc.asgi, rc.receive, send)
            return
        raw = self.answer_headers(rc)
        await send({"type": "http.response.start", "status": rc.status, "headers": raw, ONE_WRITE: True})
        await send({"type": "http.response.body", "body": b"" if rc.method == "HEAD" else rc.body_bytes})

    def answer_headers(self, rc: RequestContext) -> list[tuple[bytes, bytes]]:
        """A JSON answer's headers, as Starlette's JSONResponse heads it."""
        body = rc.body_bytes  # HEAD: its length is told, the body itself not sent
        if not rc.headers and rc.status >= 200 and rc.status not in (204, 304):  # most answers
            raw = [(b"content-length", b"%d" % len(body)), JSON_TYPE]
        else:
            raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in rc.headers.items()]
            names = {k for k, _ in raw}
            if b"content-length" not in names and not (rc.status < 200 or rc.status in (204, 304)):
                raw.append((b"content-length", str(len(body)).encode("latin-1")))
            if b"content-type" not in names:
                raw.append(JSON_TYPE)
        if rc.warnings:
            raw += [(WARNING_HEADER.lower().encode("latin-1"), header_text(w).encode("latin-1")) for w in rc.warnings]
        return raw

    # -- shared by the operations ---------------------------------------------------------

    def json_object(self, rc: RequestContext) -> dict[str, Any]:
        """The submit body as a JSON object, after the endpoint's required headers and content
        type; refused as the provider would refuse it otherwise."""
        assert rc.match is not None
        headers = rc.request_headers
        for header, value in rc.match.endpoint.headers.items():
            if headers.get(header.lower(), "").strip().lower() != value.lower():
                raise ApiError("missing_async_header", f"the header {header}: {value} is required")
        expected = rc.match.endpoint.content_type or "application/json"
        content_type = headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != expected:
            raise ApiError("unsupported_media_type", f"Content-Type must be {expected}, got {content_type or 'none'}")
        if not rc.raw:
            raise ApiError("invalid_json", "the request body is empty")
        if rc.body_error is not None:
            raise rc.body_error
        if not isinstance(rc.body, dict):
            raise ApiError("invalid_request", f"the body must be a JSON object, not {type(rc.body).__name__}")
        return rc.body
