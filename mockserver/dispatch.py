"""Which provider a path belongs to: ``/<provider>/...`` always (with every provider on one
port, or where ``prefixed``), and at the root either the single served provider or the root
providers whose paths claim it (manifest ``root``: the providers whose paths collide with no
other's, the first path segments that guess each, and the fallback)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import BaseRoute, Router
from starlette.types import Lifespan, Receive, Scope, Send
from wanmock.mockserver.files import is_files_path, no_such_file
from wanmock.mockserver.http import url_path
from wanmock.mockserver.netguard import enter_task
from wanmock.mockserver.pipeline import Pipeline
from wanmock.mockserver.results import FILES_PREFIX, UPLOADS_PREFIX
from wanmock.mockserver.state import AppState

CONTROL_PREFIXES = ("/__admin", FILES_PREFIX, UPLOADS_PREFIX)  # what the app's routes answer; all else is a provider's


class Dispatcher:
    """An ASGI app (not a function route), so every method (TRACE, PROPFIND...) reaches the
    provider's router and is answered in its shape; a function route would only take listed ones."""

    def __init__(self, state: AppState, pipelines: Mapping[str, Pipeline], *, prefixed: bool = False) -> None:
        self.state = state
        self.pipelines = dict(pipelines)
        self.first = next(iter(self.pipelines.values()))
        self.multi = len(self.pipelines) > 1
        self.prefixed = prefixed or self.multi
        roots: list[Pipeline] = []
        self.guesses: dict[str, Pipeline] = {}
        fallback: Pipeline | None = None
        for pipeline in self.pipelines.values():
            root: Mapping[str, Any] | None = pipeline.profile.provider.manifest.get("root")
            if root is None:
                continue
            roots.append(pipeline)
            self.guesses.update({head: pipeline for head in root.get("heads", [])})
            if root.get("fallback"):
                fallback = pipeline
        self.roots = roots
        self.fallback = fallback or (roots[0] if roots else self.first)

    def resolve(self, path: str) -> tuple[Pipeline, str, str]:
        """(the provider's pipeline, the prefix it is mounted at, the path below it)."""
        if not self.prefixed:
            return self.first, "", path
        head, _, rest = path.lstrip("/").partition("/")
        if head in self.pipelines:
            return self.pipelines[head], f"/{head}", "/" + rest
        if not self.multi:
            return self.first, "", path
        for pipeline in self.roots:
            if pipeline.router.claims(path):
                return pipeline, "", path
        return self.guesses.get(head, self.fallback), "", path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = url_path(scope)
        if is_files_path(path):
            await enter_task()
            await no_such_file(self.state, Request(scope, receive))(scope, receive, send)
            return
        pipeline, prefix, below = self.resolve(path)
        await pipeline.handle(scope, receive, send, prefix, below, path)


class ProviderFirstRouter(Router):
    """Starlette's router, except that a request outside ``/__admin`` and ``/__files`` goes
    straight to the dispatcher: one dispatch for provider paths, not a regex try of every
    control-plane route first. (The app's middleware still runs before it.) ``routes`` may be a
    function that builds them: it is called when they are first needed (by a request the
    dispatcher does not take, or a reader of ``routes``), so start-up does not import them."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        routes: Sequence[BaseRoute] | Callable[[], Sequence[BaseRoute]],
        lifespan: Lifespan[Any],
    ) -> None:
        self._build: Callable[[], Sequence[BaseRoute]] | None = routes if callable(routes) else None
        super().__init__(routes=[] if callable(routes) else routes, lifespan=lifespan, default=dispatcher)
        self.dispatcher = dispatcher

    @property  # Starlette's is a plain attribute: built on first read here
    def routes(self) -> list[BaseRoute]:
        if self._build is not None:
            build, self._build = self._build, None
            self._routes = list(build())
        return self._routes

    @routes.setter
    def routes(self, routes: list[BaseRoute]) -> None:
        self._routes = list(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(CONTROL_PREFIXES):
            scope.setdefault("router", self)
            await self.dispatcher(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class MockApp(Starlette):
    """The app: a provider request (outside ``/__admin``, ``/__files`` and uploads) goes
    straight to the dispatcher, past Starlette's middleware stack, whose jobs the pipeline does
    itself (it answers every error in the provider's shape); the control plane and the files go
    through the stack (the admin guard, Starlette's error handling). With a separate admin
    port, every request goes through the stack, whose guard keeps each port to its own paths."""

    dispatcher: Dispatcher
    direct: bool = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.direct and scope["type"] == "http" and not scope["path"].startswith(CONTROL_PREFIXES):
            scope["app"] = self
            await self.dispatcher(scope, receive, send)
            return
        await enter_task()  # the control plane's stack may need a task (anyio); a provider's path never does
        await super().__call__(scope, receive, send)
