"""The dashboard at /__admin/ui: static files shipped in this package, plus the few read
endpoints the page needs that the control plane did not have.

* ``GET /__admin/ui/`` (and its ``app.js``, ``style.css``): served without the admin token, so
  the page can load and then ask for it; every call the page makes goes to ``/__admin/*`` with
  the token in ``X-Wanmock-Admin-Token``.
* ``GET /__admin/changes?since=V[&journal=1]``: a cheap "did anything change" poll. ``version``
  digests what the page shows (tasks and their states at "now", fault and drift rules, and with
  ``journal=1`` the journal's length and newest entry); the page refetches only when it moves.
* ``GET /__admin/catalog``: the names the page's forms offer (providers, models, fault actions
  and endpoints, drift kinds), read from the code that enforces them.
* ``GET /__admin/tasks/{provider}/{task_id}/result``: the signed result URL of a succeeded task,
  as a poll would hand it out (so the page can play it in a ``<video>``).

Everything is read through the store and the app state, never kept here: every worker of a
shared store answers alike.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from wanmock.mockserver.clock import ManualClock
from wanmock.mockserver.drift import KINDS as DRIFT_KINDS
from wanmock.mockserver.faults import ACTIONS as FAULT_ACTIONS
from wanmock.mockserver.faults import ENDPOINTS as FAULT_ENDPOINTS
from wanmock.mockserver.guard import public_base
from wanmock.mockserver.http import base_url
from wanmock.mockserver.state import AppState
from wanmock.mockserver.storeio import StoreUnavailable

UI_PATH = "/__admin/ui"
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# The page is not a document to cache for long: an upgraded wanmock must serve its own page.
STATIC_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; media-src 'self' http: https:; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.wanmock
    return state


def asset(name: str) -> bytes:
    return resources.files(__name__).joinpath(name).read_bytes()


async def ui_redirect(request: Request) -> Response:
    return RedirectResponse(UI_PATH + "/", status_code=308)


async def ui_asset(request: Request) -> Response:
    name = request.path_params.get("name") or "index.html"
    if name not in ASSETS:
        return JSONResponse({"error": f"no dashboard file {name!r}"}, status_code=404)
    body = asset(name)
    if request.method == "HEAD":
        body = b""
    return Response(body, media_type=ASSETS[name], headers=STATIC_HEADERS)


def version_of(state: AppState, now: float, with_journal: bool) -> tuple[str, dict[str, Any]]:
    """A digest of what the dashboard shows at ``now``, and a few counts to show beside it
    (store reads: run it through ``state.io``)."""
    digest = hashlib.sha256()
    tasks = state.store.tasks()
    for task in tasks:
        line = (task.provider, task.id, task.state_at(now), task.started_at, task.finished_at, task.expired_at)
        digest.update(repr(line).encode())
    for rule in state.faults.rules():
        digest.update(repr(("fault", rule.id, rule.hits, rule.count)).encode())
    digest.update(json.dumps([r.to_dict() for r in state.drift.rules()], sort_keys=True, default=str).encode())
    counts: dict[str, Any] = {"tasks": len(tasks)}
    if with_journal:
        entries = list(state.store.journal())
        newest = entries[-1].seq if entries else 0
        digest.update(repr(("journal", len(entries), newest)).encode())
        counts["journal"] = len(entries)
    return digest.hexdigest()[:16], counts


def unavailable(exc: StoreUnavailable) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=503)


async def changes(request: Request) -> JSONResponse:
    state = _state(request)
    with_journal = request.query_params.get("journal") in ("1", "true")
    try:
        now = await state.anow()
        version, counts = await state.io.run(version_of, state, now, with_journal)
    except StoreUnavailable as exc:
        return unavailable(exc)
    manual = isinstance(state.config.clock, ManualClock)
    return JSONResponse(
        {
            "version": version,
            "changed": request.query_params.get("since") != version,
            "clock": "manual" if manual else "system",
            "now": now,
            **counts,
        }
    )


async def catalog_view(request: Request) -> JSONResponse:
    state = _state(request)
    providers = {}
    for name, served in state.served.items():
        provider = served.profile.provider
        providers[name] = {
            "models": {kind: list(model.ids) for kind, model in provider.models.items()},
            "states": {canonical: s.word for canonical, s in provider.states.items()},
        }
    return JSONResponse(
        {
            "providers": providers,
            "fault_actions": list(FAULT_ACTIONS),
            "fault_endpoints": list(FAULT_ENDPOINTS),
            "drift_kinds": list(DRIFT_KINDS),
        }
    )


async def result_link(request: Request) -> JSONResponse:
    state = _state(request)
    provider = request.path_params["provider"]
    served = state.served.get(provider)
    try:
        task = await state.io.run(state.store.get, provider, request.path_params["task_id"]) if served else None
        now = await state.anow()
    except StoreUnavailable as exc:
        return unavailable(exc)
    if served is None or task is None:
        return JSONResponse({"error": "no such task"}, status_code=404)
    current = task.state_at(now)
    if current != "succeeded":
        return JSONResponse({"error": f"task {task.id} is {current}; only a succeeded task has a result"}, 409)
    host = request.headers.get("host")  # as a poll builds it: --public-url or a served origin, never a foreign Host
    base = public_base(state.config.origins, state.config.public_url, host, base_url(request.scope, host))
    url = state.links.url(base, task, task.created_at + served.profile.retention_seconds)
    return JSONResponse({"url": url})


def dashboard_routes() -> list[BaseRoute]:
    """The dashboard's routes, to be placed before the control plane's catch-all."""
    return [
        Route(UI_PATH, ui_redirect, methods=["GET", "HEAD"]),
        Route(UI_PATH + "/", ui_asset, methods=["GET", "HEAD"]),
        Route(UI_PATH + "/{name}", ui_asset, methods=["GET", "HEAD"]),
        Route("/__admin/changes", changes, methods=["GET"]),
        Route("/__admin/catalog", catalog_view, methods=["GET"]),
        Route("/__admin/tasks/{provider}/{task_id}/result", result_link, methods=["GET"]),
    ]
