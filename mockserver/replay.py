"""Replay a cassette recorded by ``wanmock record`` (format: ``wanmock.mockserver.cassette``) as a server.

``create_replay_app(cassette_dir, clock)`` serves the cassette's provider at the root and under
``/<provider>/``, through the same request pipeline as the mock (``pipeline.py``): an unknown
path, a wrong method, a missing key or a body the provider's schema refuses is answered in the
provider's shape (by its profile, or with the recorded probe answer where the cassette holds
one: refused key, invalid body, unknown task id). Only the operation stage differs:

* A submit returns the next recorded submit answer for a task of the request's kind, cycling when
  the recorded ones are used up, and registers a replay task at the clock's "now". Its id is the
  recorded one the first time, then a fresh one in the provider's id format.
* A poll of a replay task answers the recorded poll answers in order by elapsed time: answer i
  applies from its recorded ``elapsed`` seconds after the replay submit (the first one also
  before), and the last one is sticky. Status codes, bodies and harmless headers are replayed.
* In every replayed body the recorded task id becomes the replay task's, the recorded base URL
  the replay server's, and the result URL a download from this server:
  ``/__files/<provider>/<task_id>.mp4``: an MP4 of the size and length the recorded submission's
  request implies (what the replayed answers describe).
* A poll of an unknown id gets the recorded unknown-id answer (with the id substituted) if the
  cassette has one, else the provider's documented missing-task answer.

Control plane (the mock's own handlers): ``GET /__admin/health``, ``GET /__admin/clock``,
``POST /__admin/clock/advance``.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from wanmock.mockserver import admin
from wanmock.mockserver.cassette import REDACTED, Cassette
from wanmock.mockserver.clock import Clock
from wanmock.mockserver.config import ServerConfig
from wanmock.mockserver.dispatch import Dispatcher, ProviderFirstRouter
from wanmock.mockserver.errors import ApiError
from wanmock.mockserver.files import NO_SUCH_KEY, send_video, signature_refused, storage_refusal, storage_request_id
from wanmock.mockserver.http import until_shutdown
from wanmock.mockserver.media import MediaCache, VideoSpec
from wanmock.mockserver.pipeline import Pipeline, RequestContext
from wanmock.mockserver.profiles import profile_for
from wanmock.mockserver.ratelimit import RateLimiter
from wanmock.mockserver.results import FILES_PREFIX, ResultLinks, output_size
from wanmock.mockserver.routing import Match, Router
from wanmock.mockserver.state import AppState, Served
from wanmock.mockserver.store import MemoryStore
from wanmock.schemas import resolve_pointer

DROPPED_HEADERS = frozenset(
    {"content-length", "content-encoding", "transfer-encoding", "connection", "keep-alive", "content-type"}
    | {"date", "server", "set-cookie"}
)
# Elapsed times are recorded to the millisecond; an epoch clock's float sums drift by ~1e-7 s.
TOLERANCE = 0.0005
FALLBACK_SPEC = VideoSpec(width=1280, height=720, duration=5.0, audio=False)


def _pointer(body: Any, pointer: str) -> Any:
    try:
        return resolve_pointer(body, pointer)
    except (KeyError, IndexError, ValueError, TypeError):
        return None


@dataclass
class ReplayTask:
    id: str
    recorded_id: str
    kind: str
    submitted_at: float
    answers: list[tuple[float, Mapping[str, Any]]]  # (elapsed, recorded response), in order
    spec: VideoSpec

    def answer_at(self, now: float) -> Mapping[str, Any]:
        chosen = self.answers[0][1]
        for elapsed, response in self.answers:
            if now - self.submitted_at + TOLERANCE >= elapsed:
                chosen = response
        return chosen


def rewriter(replacements: Mapping[str, str], exact: Mapping[str, str]) -> Callable[[Any], Any]:
    def rewrite(value: Any) -> Any:
        if isinstance(value, str):
            if value in exact:
                return exact[value]
            for old, new in replacements.items():
                value = value.replace(old, new)
            return value
        if isinstance(value, dict):
            return {k: rewrite(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rewrite(v) for v in value]
        return value

    return rewrite


def unchanged(value: Any) -> Any:
    return value


class Replay:
    """The replay's operation stage: answers from the cassette instead of the task lifecycle."""

    def __init__(self, cassette: Cassette, state: AppState) -> None:
        self.cassette = cassette
        self.state = state
        self.profile = state.served[cassette.provider].profile
        self.provider = self.profile.provider
        self.router = state.served[cassette.provider].router
        self.pipeline = Pipeline(state, cassette.provider, self, journal=False)
        self.tasks: dict[str, ReplayTask] = {}
        self.cursor: dict[str, int] = {}

    @property
    def media(self) -> MediaCache:
        return self.state.media

    def respond(self, rc: RequestContext, recorded: Mapping[str, Any], rewrite: Callable[[Any], Any]) -> Response:
        """A recorded answer, its body rewritten for this server and task."""
        status = int(recorded["status"])
        headers = {
            k: str(v)
            for k, v in dict(recorded.get("headers") or {}).items()
            if k.lower() not in DROPPED_HEADERS and REDACTED not in str(v)
        }
        body = rewrite(recorded.get("body"))
        if rc.method == "HEAD":
            return Response(status_code=status, headers=headers)
        if isinstance(body, dict | list):
            return JSONResponse(body, status_code=status, headers=headers)
        recorded_type = dict(recorded.get("headers") or {}).get("content-type", "text/plain")
        return Response("" if body is None else str(body), status, headers, media_type=recorded_type)

    def refusal(self, rc: RequestContext, error: ApiError) -> Response | None:
        if error.kind == "unauthorized" and self.cassette.refused is not None:
            return self.respond(rc, self.cassette.refused, unchanged)
        return None

    async def run(self, rc: RequestContext) -> None:
        if rc.endpoint == "submit":
            self.submit(rc)
        elif rc.endpoint == "poll":
            self.poll(rc)
        else:
            raise ApiError("not_found", f"wanmock replay: the cassette holds no {rc.endpoint} answer")

    def submit(self, rc: RequestContext) -> None:
        assert rc.match is not None
        body = self.pipeline.json_object(rc)
        model = self.profile.model_for(rc.match.params, body)
        try:
            self.profile.validate(model, body)
        except ApiError:
            if self.cassette.invalid is None:
                raise
            rc.response = self.respond(rc, self.cassette.invalid, unchanged)
            return
        recorded = self.cassette.by_kind.get(model.kind)
        if not recorded:
            raise ApiError("not_found", f"wanmock replay: the cassette holds no {model.kind} submission")
        turn = self.cursor.get(model.kind, 0)
        self.cursor[model.kind] = turn + 1
        recorded_id = recorded[turn % len(recorded)]
        task_id = recorded_id
        while task_id in self.tasks:
            task_id = self.profile.new_task_id(self.state.rng)
        task = ReplayTask(
            task_id, recorded_id, model.kind, rc.now, self.cassette.answers(recorded_id), self.spec(recorded_id)
        )
        self.tasks[task_id] = task
        rc.task_id = task_id
        submit = self.cassette.submission(recorded_id)["response"]
        rc.response = self.respond(rc, submit, self.task_rewriter(task, rc, submit["body"]))

    def spec(self, recorded_id: str) -> VideoSpec:
        """The MP4 of a recorded task: the size and length its recorded request implies (what
        the replayed answers describe); a small 1280x720 one if that request cannot be read."""
        request = self.cassette.submission(recorded_id)["request"]
        found = self.router.match("POST", str(request.get("path")))
        body = request.get("body")
        try:
            if not isinstance(found, Match) or not isinstance(body, dict):
                return FALLBACK_SPEC
            params = self.profile.video_params(self.profile.model_for(found.params, body), body)
            width, height = output_size(params.resolution, params.ratio)
            return VideoSpec(width, height, params.duration, params.audio)
        except (ApiError, KeyError, ValueError, TypeError):
            return FALLBACK_SPEC

    def task_rewriter(self, task: ReplayTask, rc: RequestContext, body: Any) -> Callable[[Any], Any]:
        base_url = rc.ctx.base_url
        download = f"{base_url}{FILES_PREFIX}/{self.provider.name}/{task.id}.mp4"
        recorded_url = _pointer(body, self.provider.task_fields["result_url_in_poll"])
        exact = {recorded_url: download} if isinstance(recorded_url, str) else {}
        return rewriter({self.cassette.base_url: base_url + rc.prefix, task.recorded_id: task.id}, exact)

    def poll(self, rc: RequestContext) -> None:
        assert rc.task_id is not None  # the poll endpoint always names one
        task = self.tasks.get(rc.task_id)
        if task is None:
            if self.cassette.unknown is None:
                rc.reply(*self.profile.missing_task(rc.task_id, rc.ctx))
                return
            unknown_id, response = self.cassette.unknown
            rc.response = self.respond(rc, response, rewriter({unknown_id: rc.task_id}, {}))
            return
        answer = task.answer_at(rc.now)
        rc.response = self.respond(rc, answer, self.task_rewriter(task, rc, answer.get("body")))

    # -- downloads ------------------------------------------------------------------------

    async def download(self, request: Request) -> Response:
        request_id = storage_request_id(self.state)
        name = request.path_params["name"]
        task = self.tasks.get(name.removesuffix(".mp4")) if name.endswith(".mp4") else None
        if request.path_params["provider"] != self.provider.name or task is None or not self.succeeded(task):
            return storage_refusal(request_id, 404, "NoSuchKey", NO_SUCH_KEY)
        refused = signature_refused(request_id, self.provider, request)
        if refused is not None:
            return refused
        return await send_video(self.state, request, task.spec)

    def succeeded(self, task: ReplayTask) -> bool:
        answer = task.answer_at(self.state.now())
        word = _pointer(answer.get("body"), self.provider.task_fields["status_in_poll"])
        state = self.provider.state_for_word(word) if isinstance(word, str) else None
        return state is not None and state.canonical == "succeeded"

    def banner(self, origin: str) -> str:
        name = self.provider.name
        return (
            f"wanmock replaying {name} from {self.cassette.path} on {origin}\n"
            f"  {name:<10} {origin} (also {origin}/{name})\n  control    {origin}/__admin/health\n"
        )


class _NoAdmin:
    """Any other control-plane path, with any method: what a replay server does not have."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        message = f"no control-plane endpoint {request.method} {request.url.path} in a replay server"
        await JSONResponse({"error": message}, 404)(scope, receive, send)


def replay_state(cassette: Cassette, clock: Clock, media_dir: Path | None) -> AppState:
    config = ServerConfig(providers=(cassette.provider,), clock=clock)
    store = MemoryStore()
    state = AppState(
        config=config,
        store=store,
        faults=store.fault_rules(),
        limiter=RateLimiter(config.rate_limits),
        links=ResultLinks(b"wanmock-replay"),
        media=MediaCache(media_dir, config.media_max_bytes),
        rng=random.Random(0),
        about={"mode": "replay", "cassette": str(cassette.path)},
    )
    profile = profile_for(cassette.provider, config)
    state.served[cassette.provider] = Served(profile, Router(profile.provider))
    return state


def create_replay_app(cassette_dir: Path, clock: Clock, *, media_dir: Path | None = None) -> Starlette:
    """The replay server for ``cassette_dir/cassette.json`` on ``clock`` (an ASGI app).

    Raises OSError or ValueError when the cassette cannot be read."""
    cassette = Cassette(Path(cassette_dir))
    state = replay_state(cassette, clock, media_dir)
    replay = Replay(cassette, state)
    dispatcher = Dispatcher(state, {cassette.provider: replay.pipeline}, prefixed=True)
    routes = [
        Route("/__admin/health", admin.health, methods=["GET"]),
        Route("/__admin/clock", admin.clock, methods=["GET"]),
        Route("/__admin/clock/advance", admin.clock_advance, methods=["POST"]),
        Route("/__admin", _NoAdmin()),
        Route("/__admin/{rest:path}", _NoAdmin()),
        Route(FILES_PREFIX + "/{provider}/{name}", replay.download, methods=["GET", "HEAD"]),
        Route("/{path:path}", dispatcher),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with until_shutdown():
            yield
        state.media.close()

    app = Starlette(lifespan=lifespan)
    app.router = ProviderFirstRouter(dispatcher, routes, lifespan)  # every other path: the provider's
    app.state.wanmock = state
    app.state.replay = replay
    return app
