"""Replay a cassette recorded by ``wanmock record`` (format: ``wanmock.contracts.tools.recording``) as a server.

``create_replay_app(cassette_dir, clock)`` serves the cassette's provider at the root and under
``/<provider>/``, strict like the mock: an unknown path, a wrong method, a missing key or a body
the provider's schema refuses is answered in the provider's shape (by its profile, or with the
recorded probe answer where the cassette holds one: refused key, invalid body, unknown task id).

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

Control plane: ``GET /__admin/health``, ``GET /__admin/clock``, ``POST /__admin/clock/advance``.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from wanmock.mockserver.admin import MAX_ADVANCE_SECONDS
from wanmock.mockserver.app import bearer_token, decode_json
from wanmock.mockserver.clock import Clock, ManualClock
from wanmock.mockserver.config import ServerConfig
from wanmock.mockserver.errors import ApiError
from wanmock.mockserver.media import MediaCache, VideoSpec, file_response
from wanmock.mockserver.profiles import Context, Profile, profile_for
from wanmock.mockserver.results import FILES_PREFIX, output_size, storage_error
from wanmock.mockserver.routing import Match, Router, WrongMethod
from wanmock.schemas import catalog, resolve_pointer

CASSETTE_FILE = "cassette.json"
REDACTED = "<redacted>"
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


class Cassette:
    """A cassette file, read and indexed: tasks by kind, the recorded probe answers."""

    def __init__(self, directory: Path) -> None:
        path = directory / CASSETTE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not JSON: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("interactions"), list):
            raise ValueError(f"{path} is not a wanmock cassette (no interactions)")
        if data.get("provider") not in catalog().providers:
            raise ValueError(f"{path}: unknown provider {data.get('provider')!r}")
        self.path = path
        self.provider: str = data["provider"]
        self.base_url = str(data.get("base_url") or catalog().provider(self.provider).base_url).rstrip("/")
        self.interactions: list[dict[str, Any]] = data["interactions"]
        self.tasks: dict[str, dict[str, Any]] = dict(data.get("tasks") or {})
        self.by_kind: dict[str, list[str]] = {}
        for task_id, task in sorted(self.tasks.items(), key=lambda item: int(item[1]["submit"])):
            if self.answers(task_id):
                self.by_kind.setdefault(str(task["kind"]), []).append(task_id)
        self.refused = self.probe("refused-key")
        self.invalid = self.probe("invalid-body")
        self.unknown = next(
            (
                (str(i["task_id"]), i["response"])
                for i in self.interactions
                if i.get("endpoint") == "poll" and i.get("response") and i.get("task_id") not in self.tasks
            ),
            None,
        )

    def probe(self, label: str) -> Mapping[str, Any] | None:
        found = (i["response"] for i in self.interactions if i.get("probe") == label and i.get("response"))
        return next((r for r in found if int(r["status"]) >= 400), None)

    def answers(self, task_id: str) -> list[tuple[float, Mapping[str, Any]]]:
        picked = (self.interactions[i] for i in self.tasks[task_id]["polls"])
        return [(float(i["elapsed"]), i["response"]) for i in picked if i.get("response")]


class Replay:
    def __init__(self, cassette: Cassette, clock: Clock, media: MediaCache) -> None:
        self.cassette = cassette
        self.clock = clock
        self.media = media
        self.profile: Profile = profile_for(
            cassette.provider, ServerConfig(providers=(cassette.provider,), clock=clock)
        )
        self.provider = self.profile.provider
        self.router = Router(self.provider)
        self.rng = random.Random(0)
        self.tasks: dict[str, ReplayTask] = {}
        self.cursor: dict[str, int] = {}

    # -- answers --------------------------------------------------------------------------

    def respond(self, request: Request, recorded: Mapping[str, Any], rewrite: Callable[[Any], Any]) -> Response:
        status = int(recorded["status"])
        headers = {
            k: str(v)
            for k, v in dict(recorded.get("headers") or {}).items()
            if k.lower() not in DROPPED_HEADERS and REDACTED not in str(v)
        }
        body = rewrite(recorded.get("body"))
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers)
        if isinstance(body, dict | list):
            return JSONResponse(body, status_code=status, headers=headers)
        recorded_type = dict(recorded.get("headers") or {}).get("content-type", "text/plain")
        return Response("" if body is None else str(body), status, headers, media_type=recorded_type)

    def error(self, request: Request, error: ApiError, ctx: Context) -> Response:
        status, body = self.profile.error_answer(error, ctx)
        headers = {"Allow": error.detail.rpartition("allowed: ")[2]} if error.kind == "method_not_allowed" else {}
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers)
        return JSONResponse(body, status_code=status, headers=headers)

    def rewriter(self, replacements: Mapping[str, str], exact: Mapping[str, str]) -> Callable[[Any], Any]:
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

    # -- the provider's endpoints ---------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        path, prefix = request.url.path, ""
        head = f"/{self.provider.name}"
        if path == head or path.startswith(head + "/"):
            path, prefix = path[len(head) :] or "/", head
        origin = str(request.base_url).rstrip("/")
        ctx = Context(self.clock.now(), origin, prefix, path, self.profile.new_task_id(self.rng), lambda _: "")
        try:
            found = self.router.match(request.method, path)
            if found is None:
                raise ApiError("not_found", f"no such endpoint: {request.method} {path}")
            if isinstance(found, WrongMethod):
                raise ApiError(
                    "method_not_allowed", f"{request.method} not allowed; allowed: {', '.join(found.allowed)}"
                )
            token = bearer_token(request)
            if not token or not self.profile.config.key_accepted(token):
                if self.cassette.refused is not None:
                    return self.respond(request, self.cassette.refused, lambda body: body)
                raise ApiError("unauthorized", "missing Authorization header" if token is None else "invalid API key")
            if found.endpoint.name == "submit":
                return await self.submit(request, found, ctx)
            if found.endpoint.name == "poll":
                return self.poll(request, found, ctx)
            raise ApiError("not_found", f"wanmock replay: the cassette holds no {found.endpoint.name} answer")
        except ApiError as error:
            return self.error(request, error, ctx)

    async def submit(self, request: Request, found: Match, ctx: Context) -> Response:
        for header, value in found.endpoint.headers.items():
            if request.headers.get(header, "").strip().lower() != value.lower():
                raise ApiError("missing_async_header", f"the header {header}: {value} is required")
        try:
            body = decode_json(await request.body())
        except (ValueError, RecursionError) as exc:
            raise ApiError("invalid_json", f"invalid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise ApiError("invalid_request", "the body must be a JSON object")
        model = self.profile.model_for(found.params, body)
        try:
            self.profile.validate(model, body)
        except ApiError:
            if self.cassette.invalid is None:
                raise
            return self.respond(request, self.cassette.invalid, lambda recorded: recorded)
        recorded = self.cassette.by_kind.get(model.kind)
        if not recorded:
            raise ApiError("not_found", f"wanmock replay: the cassette holds no {model.kind} submission")
        turn = self.cursor.get(model.kind, 0)
        self.cursor[model.kind] = turn + 1
        recorded_id = recorded[turn % len(recorded)]
        task_id = recorded_id
        while task_id in self.tasks:
            task_id = self.profile.new_task_id(self.rng)
        answers = self.cassette.answers(recorded_id)
        self.tasks[task_id] = ReplayTask(task_id, recorded_id, model.kind, ctx.now, answers, self.spec(recorded_id))
        submit = self.cassette.interactions[int(self.cassette.tasks[recorded_id]["submit"])]["response"]
        return self.respond(request, submit, self.task_rewriter(self.tasks[task_id], ctx, submit["body"]))

    def spec(self, recorded_id: str) -> VideoSpec:
        """The MP4 of a recorded task: the size and length its recorded request implies (what
        the replayed answers describe); a small 1280x720 one if that request cannot be read."""
        request = self.cassette.interactions[int(self.cassette.tasks[recorded_id]["submit"])]["request"]
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

    def task_rewriter(self, task: ReplayTask, ctx: Context, body: Any) -> Callable[[Any], Any]:
        download = f"{ctx.base_url}{FILES_PREFIX}/{self.provider.name}/{task.id}.mp4"
        recorded_url = _pointer(body, self.provider.task_fields["result_url_in_poll"])
        exact = {recorded_url: download} if isinstance(recorded_url, str) else {}
        replacements = {self.cassette.base_url: ctx.base_url + ctx.prefix, task.recorded_id: task.id}
        return self.rewriter(replacements, exact)

    def task_id_of(self, request: Request, found: Match) -> str:
        for param, placeholder in found.endpoint.query.items():
            if placeholder == "{task_id}":
                value = request.query_params.get(param)
                if not value:
                    raise ApiError("invalid_request", f"the query parameter '{param}' is required")
                return value
        return found.params["task_id"]

    def poll(self, request: Request, found: Match, ctx: Context) -> Response:
        task_id = self.task_id_of(request, found)
        task = self.tasks.get(task_id)
        if task is None:
            if self.cassette.unknown is None:
                status, body = self.profile.missing_task(task_id, ctx)
                return JSONResponse(body, status_code=status)
            unknown_id, response = self.cassette.unknown
            return self.respond(request, response, self.rewriter({unknown_id: task_id}, {}))
        answer = task.answer_at(ctx.now)
        return self.respond(request, answer, self.task_rewriter(task, ctx, answer.get("body")))

    # -- downloads ------------------------------------------------------------------------

    async def download(self, request: Request) -> Response:
        def refuse(status: int, code: str, message: str) -> Response:
            body = storage_error(code, message, self.profile.new_task_id(self.rng).replace("-", "").upper()[:24])
            return Response(body, status, media_type="application/xml")

        name = request.path_params["name"]
        task = self.tasks.get(name.removesuffix(".mp4")) if name.endswith(".mp4") else None
        if request.path_params["provider"] != self.provider.name or task is None or not self.succeeded(task):
            return refuse(404, "NoSuchKey", "The specified key does not exist.")
        if self.provider.task_fields.get("result_auth") == "forbidden" and "authorization" in request.headers:
            return refuse(403, "SignatureDoesNotMatch", "The request signature we calculated does not match.")
        path = await run_in_threadpool(self.media.path_for, task.spec)
        return file_response(path, request)

    def succeeded(self, task: ReplayTask) -> bool:
        answer = task.answer_at(self.clock.now())
        word = _pointer(answer.get("body"), self.provider.task_fields["status_in_poll"])
        state = self.provider.state_for_word(word) if isinstance(word, str) else None
        return state is not None and state.canonical == "succeeded"

    # -- control plane --------------------------------------------------------------------

    def health(self, _: Request) -> Response:
        manual = isinstance(self.clock, ManualClock)
        return JSONResponse(
            {
                "status": "ok",
                "mode": "replay",
                "providers": [self.provider.name],
                "cassette": str(self.cassette.path),
                "clock": "manual" if manual else "system",
                "now": self.clock.now(),
            }
        )

    def clock_view(self, _: Request) -> Response:
        return JSONResponse(
            {"clock": "manual" if isinstance(self.clock, ManualClock) else "system", "now": self.clock.now()}
        )

    async def advance(self, request: Request) -> Response:
        if not isinstance(self.clock, ManualClock):
            return JSONResponse({"error": "the server runs on the system clock; start it with --clock manual"}, 409)
        try:
            body = decode_json(await request.body() or b"{}")
        except (ValueError, RecursionError):
            body = None
        seconds = body.get("seconds") if isinstance(body, dict) else None
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= MAX_ADVANCE_SECONDS:
            return JSONResponse({"error": f'the body must be {{"seconds": N}}, 0 <= N <= {MAX_ADVANCE_SECONDS}'}, 400)
        return JSONResponse({"clock": "manual", "now": self.clock.advance(float(seconds))})

    def banner(self, origin: str) -> str:
        name = self.provider.name
        return (
            f"wanmock replaying {name} from {self.cassette.path} on {origin}\n"
            f"  {name:<10} {origin} (also {origin}/{name})\n  control    {origin}/__admin/health\n"
        )


class _Provider:
    """An ASGI app (not an endpoint function), so every method reaches the provider's router."""

    def __init__(self, replay: Replay) -> None:
        self.replay = replay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.replay.handle(Request(scope, receive))
        await response(scope, receive, send)


class _NoAdmin:
    """Any other control-plane path, with any method: what a replay server does not have."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        message = f"no control-plane endpoint {request.method} {request.url.path} in a replay server"
        await JSONResponse({"error": message}, 404)(scope, receive, send)


def create_replay_app(cassette_dir: Path, clock: Clock, *, media_dir: Path | None = None) -> Starlette:
    """The replay server for ``cassette_dir/cassette.json`` on ``clock`` (an ASGI app).

    Raises OSError or ValueError when the cassette cannot be read."""
    replay = Replay(Cassette(Path(cassette_dir)), clock, MediaCache(media_dir))
    provider = _Provider(replay)
    routes = [
        Route("/__admin/health", replay.health, methods=["GET"]),
        Route("/__admin/clock", replay.clock_view, methods=["GET"]),
        Route("/__admin/clock/advance", replay.advance, methods=["POST"]),
        Route("/__admin", _NoAdmin()),
        Route("/__admin/{rest:path}", _NoAdmin()),
        Route(FILES_PREFIX + "/{provider}/{name}", replay.download, methods=["GET", "HEAD"]),
        Route("/{path:path}", provider),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        replay.media.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.router.default = provider  # a path "{path:path}" misses (a %0A in it) still gets the provider's shape
    app.state.replay = replay
    return app
