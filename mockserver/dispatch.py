"""Which provider a path belongs to: ``/<provider>/...`` always (with every provider on one
port, or where ``prefixed``), and at the root either the single served provider or the root
providers whose paths claim it (manifest ``root``: the providers whose paths collide with no
other's, the first path segments that guess each, and the fallback)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from wanmock.mockserver.files import is_files_path, no_such_file
from wanmock.mockserver.pipeline import Pipeline
from wanmock.mockserver.state import AppState


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

    async def endpoint(self, request: Request) -> Response:
        if is_files_path(request.url.path):
            return no_such_file(self.state, request)
        pipeline, prefix, path = self.resolve(request.url.path)
        return await pipeline.handle(request, prefix, path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.endpoint(Request(scope, receive))
        await response(scope, receive, send)
