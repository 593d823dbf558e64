"""The control plane under /__admin/: health, journal, tasks and forced transitions, fault
rules, the clock, reset. Answers are plain JSON (`{"error": ...}` on a mistake), never a
provider's shape.

A test id (header X-Wanmock-Test or ?test=) is a scope: a scoped call sees and changes only
that test's tasks, journal entries and fault rules (another test's task is "no such task"); a
body's ``test_id`` must be the caller's; drift rules (global) cannot be changed from a scope.
A reset of everything needs ``?all=1``. Who may call at all is decided in front of these
routes (wanmock.mockserver.guard)."""

from __future__ import annotations

import os
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Receive, Scope, Send
from wanmock.mockserver.bodies import decode_json
from wanmock.mockserver.clock import ManualClock
from wanmock.mockserver.dashboard import dashboard_routes  # the page at /__admin/ui and its reads
from wanmock.mockserver.drift import DriftRule, DriftRuleError
from wanmock.mockserver.faults import FaultRule, RuleError
from wanmock.mockserver.guard import ADMIN_BODY_LIMIT
from wanmock.mockserver.http import TEST_HEADER
from wanmock.mockserver.limits import entry_size
from wanmock.mockserver.state import AppState
from wanmock.mockserver.storeio import StoreUnavailable
from wanmock.mockserver.tasks import EXPIRED, Task, TransitionError

ACTIONS = ("advance", "succeed", "fail", "cancel", "expire")
FAIL_FIELDS = ("code", "message")
ALL_ADMIN_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
MAX_ADVANCE_SECONDS = 10 * 365 * 86400


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.wanmock
    return state


def _test_id(request: Request) -> str | None:
    return request.query_params.get("test") or request.headers.get(TEST_HEADER)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _json_body(request: Request) -> Any:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > ADMIN_BODY_LIMIT:
            raise RuleError(f"the body exceeds {ADMIN_BODY_LIMIT} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        return {}
    try:
        return decode_json(raw)
    except (ValueError, RecursionError) as exc:
        raise RuleError(f"the body is not JSON: {exc}") from exc


def task_view(state: AppState, task: Task) -> dict[str, Any]:
    now = state.now()
    current = task.state_at(now)
    profile = state.served[task.provider].profile
    view = task.to_dict()
    view["state"] = current
    view["status_word"] = profile.word(current) if current in profile.provider.states else None
    return view


async def health(request: Request) -> JSONResponse:
    """200 when the store answers, 503 (same fields) when it does not: within the store's timeout."""
    state = _state(request)
    config = state.config
    store = await state.io.check()
    return JSONResponse(
        {
            "status": "ok" if store["state"] == "ok" else "store unavailable",
            "providers": list(config.providers),
            "timing": config.timing,
            "clock": "manual" if isinstance(config.clock, ManualClock) else "system",
            "now": await state.anow(),
            "store": type(state.store).__name__,
            "store_state": store,
            "pid": os.getpid(),  # which worker answered (wanmock serve --workers N)
            **state.about,
        },
        status_code=200 if store["state"] == "ok" else 503,
    )


JOURNAL_PAGE_DEFAULT = 1000
JOURNAL_PAGE_MAX = 10_000
JOURNAL_PAGE_BYTES = 8 * 1024 * 1024  # a page stops growing past this (the next one goes on)


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12 or not low <= int(raw) <= high:
        raise RuleError(f"?{name}= must be an integer from {low} to {high}")
    return int(raw)


async def journal(request: Request) -> JSONResponse:
    """One page of the journal, oldest first: ``?limit=`` entries (default 1000) after
    ``?cursor=`` (a ``seq``; the answer's ``next_cursor`` continues), or ``?page=`` (from 1).
    A page also stops at about 8 MB; ``next_cursor`` is null on the last page."""
    state, query = _state(request), request.query_params
    test_id = _test_id(request)
    try:
        limit = _int_param(request, "limit", JOURNAL_PAGE_DEFAULT, 1, JOURNAL_PAGE_MAX)
        cursor = _int_param(request, "cursor", 0, 0, 2**62)
        page = _int_param(request, "page", 0, 1, 2**31) if query.get("page") else 0
    except RuleError as exc:
        return _error(400, str(exc))
    skip = (page - 1) * limit if page else 0
    entries: list[dict[str, Any]] = []
    size, more, last = 0, False, cursor
    for entry in state.store.journal():
        if entry.seq <= cursor:
            continue
        if test_id is not None and entry.test_id != test_id:
            continue
        if query.get("provider") and entry.provider != query["provider"]:
            continue
        if query.get("path") and query["path"] not in entry.path:
            continue
        if query.get("task") and entry.task_id != query["task"]:
            continue
        if query.get("endpoint") and entry.endpoint != query["endpoint"]:
            continue
        if query.get("status") and str(entry.status) != query["status"]:
            continue
        if skip:
            skip -= 1
            continue
        if len(entries) >= limit or (entries and size >= JOURNAL_PAGE_BYTES):
            more = True
            break
        data = entry.to_dict()
        size += entry_size(data)
        entries.append(data)
        last = entry.seq
    return JSONResponse({"entries": entries, "next_cursor": last if more else None})


async def tasks(request: Request) -> JSONResponse:
    state = _state(request)
    found = state.store.tasks(request.query_params.get("provider"), _test_id(request))
    return JSONResponse({"tasks": [task_view(state, t) for t in found]})


class _OutOfScope(Exception):
    """A scoped caller named another test's task."""


def _scoped_task(request: Request) -> Task | None:
    """The task the path names, if the caller's scope (its test id, when it sends one) holds it."""
    task = _state(request).store.get(request.path_params["provider"], request.path_params["task_id"])
    test_id = _test_id(request)
    return None if task is None or (test_id is not None and task.test_id != test_id) else task


async def task_detail(request: Request) -> JSONResponse:
    state = _state(request)
    task = _scoped_task(request)
    if task is None:
        return _error(404, "no such task")
    return JSONResponse(task_view(state, task))


async def transition(request: Request) -> JSONResponse:
    state = _state(request)
    action = request.path_params["action"]
    if action not in ACTIONS:
        return _error(404, f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
    try:
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise RuleError("the body must be a JSON object")
        allowed = FAIL_FIELDS if action == "fail" else ()
        unknown = sorted(set(body) - set(allowed))
        if unknown:
            known = f"known: {', '.join(allowed)}" if allowed else f"{action} takes no fields"
            raise RuleError(f"unknown field(s) {unknown}; {known}")
        code, message = body.get("code"), body.get("message")
        if not all(v is None or isinstance(v, str) for v in (code, message)):
            raise RuleError("code and message must be strings")
    except RuleError as exc:
        return _error(400, str(exc))
    now = await state.anow()

    test_id = _test_id(request)

    def apply(task: Task) -> None:  # run atomically by the store: read, change, write (compare-and-set)
        if test_id is not None and task.test_id != test_id:
            raise _OutOfScope  # another test's task: not this caller's to change
        if action == "advance":
            task.advance(now)
        elif action in ("succeed", "fail", "cancel"):
            final = {"succeed": "succeeded", "fail": "failed", "cancel": "canceled"}[action]
            task.finish(now, final, code, message)  # refuses a terminal task: terminal states are sticky
        elif task.state_at(now) == EXPIRED:
            raise TransitionError(f"task {task.id} is already expired")
        else:
            task.expire(now)

    provider, task_id = request.path_params["provider"], request.path_params["task_id"]
    try:
        task = await state.io.run(state.store.transition, provider, task_id, apply)
    except TransitionError as exc:
        return _error(409, str(exc))
    except _OutOfScope:
        return _error(404, "no such task")
    except StoreUnavailable as exc:
        return _error(503, str(exc))
    if task is None:
        return _error(404, "no such task")
    return JSONResponse(task_view(state, task))


async def faults(request: Request) -> JSONResponse:
    state = _state(request)
    test_id = _test_id(request)
    if request.method == "GET":
        return JSONResponse({"rules": [r.to_dict() for r in state.faults.rules(test_id)]})
    if request.method == "DELETE":
        state.faults.clear(test_id)
        return JSONResponse({"rules": []})
    try:
        body = await _json_body(request)
        if isinstance(body, dict) and test_id is not None:
            if body.get("test_id", test_id) != test_id:
                raise RuleError(f"the body's test_id {body['test_id']!r} is not the caller's test ({test_id!r})")
            body = {**body, "test_id": test_id}
        rule = state.faults.add(FaultRule.parse(body))
    except RuleError as exc:
        return _error(400, str(exc))
    return JSONResponse(rule.to_dict(), status_code=201)


async def fault_detail(request: Request) -> JSONResponse:
    faults, test_id = _state(request).faults, _test_id(request)
    rule_id = request.path_params["rule_id"]
    if test_id is not None and not any(r.id == rule_id for r in faults.rules(test_id)):
        return _error(404, "no such rule")
    if faults.remove(rule_id):
        return JSONResponse({"deleted": request.path_params["rule_id"]})
    return _error(404, "no such rule")


async def clock(request: Request) -> JSONResponse:
    state = _state(request)
    manual = isinstance(state.config.clock, ManualClock)
    return JSONResponse({"clock": "manual" if manual else "system", "now": state.now()})


async def clock_advance(request: Request) -> JSONResponse:
    state = _state(request)
    if not isinstance(state.config.clock, ManualClock):
        return _error(409, "the server runs on the system clock; start it with --clock manual")
    try:
        body = await _json_body(request)
    except RuleError as exc:
        return _error(400, str(exc))
    seconds = body.get("seconds") if isinstance(body, dict) else None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= MAX_ADVANCE_SECONDS:
        return _error(
            400,
            f'the body must be {{"seconds": <a non-negative number>}}, at most {MAX_ADVANCE_SECONDS} (ten years)',
        )
    return JSONResponse({"clock": "manual", "now": state.config.clock.advance(float(seconds))})


async def reset(request: Request) -> JSONResponse:
    state = _state(request)
    test_id = _test_id(request)
    if test_id is None and request.query_params.get("all") not in ("1", "true"):
        return _error(
            400,
            "a reset without a test id clears every test's tasks, journal and rules: send "
            "X-Wanmock-Test (or ?test=) to reset one test, or ?all=1 to reset everything",
        )
    state.store.reset(test_id)
    state.faults.clear(test_id)
    if test_id is None:
        state.limiter.reset()
        state.drift.clear()
    return JSONResponse({"reset": test_id or "all"})


async def drift(request: Request) -> JSONResponse:
    state = _state(request)
    if request.method == "GET":
        return JSONResponse({"rules": [r.to_dict() for r in state.drift.rules()]})
    if _test_id(request) is not None:
        return _error(403, "drift rules apply to every test; change them without X-Wanmock-Test")
    if request.method == "DELETE":
        state.drift.clear()
        return JSONResponse({"rules": []})
    try:
        rule = state.drift.add(DriftRule.parse(await _json_body(request)))
    except (RuleError, DriftRuleError) as exc:
        return _error(400, str(exc))
    return JSONResponse(rule.to_dict(), status_code=201)


ROUTES = [
    Route("/__admin/health", health, methods=["GET"]),
    Route("/__admin/journal", journal, methods=["GET"]),
    Route("/__admin/tasks", tasks, methods=["GET"]),
    Route("/__admin/tasks/{provider}/{task_id}", task_detail, methods=["GET"]),
    Route("/__admin/tasks/{provider}/{task_id}/{action}", transition, methods=["POST"]),
    Route("/__admin/faults", faults, methods=["GET", "POST", "DELETE"]),
    Route("/__admin/faults/{rule_id}", fault_detail, methods=["DELETE"]),
    Route("/__admin/clock", clock, methods=["GET"]),
    Route("/__admin/clock/advance", clock_advance, methods=["POST"]),
    Route("/__admin/reset", reset, methods=["POST"]),
    Route("/__admin/drift", drift, methods=["GET", "POST", "DELETE"]),
]


async def unknown(request: Request) -> JSONResponse:
    """404 for a path the control plane does not have; 405 (with Allow) for a wrong method."""
    allowed = sorted(
        {
            method
            for route in request.app.router.routes  # the control plane's and the dashboard's
            if isinstance(route, Route) and route.methods and route.matches(request.scope)[0] is not Match.NONE
            for method in route.methods
        }
    )
    if allowed:
        response = _error(405, f"{request.method} not allowed here; allowed: {', '.join(allowed)}")
        response.headers["Allow"] = ", ".join(allowed)
        return response
    return _error(404, f"no control-plane endpoint {request.method} {request.url.path}")


class _Fallback:
    """An ASGI app (not an endpoint function), so every method — TRACE, PROPFIND... — reaches it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await unknown(Request(scope, receive))
        await response(scope, receive, send)


def admin_routes() -> list[BaseRoute]:
    return [*ROUTES, *dashboard_routes(), Route("/__admin", _Fallback()), Route("/__admin/{rest:path}", _Fallback())]
