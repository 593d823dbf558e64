"""The Starlette app: every provider's endpoints, result downloads and the control plane.

``create_app`` wires the parts: the state (``state.py``), a pipeline per provider
(``pipeline.py`` with the task operations of ``operations.py``), the dispatcher that picks the
provider of a path (``dispatch.py``), the result-file host (``files.py``) and the control plane
(``admin.py``). docs/ARCHITECTURE.md follows one request through them.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import random
import secrets
from collections.abc import AsyncIterator, Mapping

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route
from wanmock.mockserver.config import ServerConfig
from wanmock.mockserver.dispatch import Dispatcher, MockApp, ProviderFirstRouter
from wanmock.mockserver.files import download
from wanmock.mockserver.guard import AdminGuard
from wanmock.mockserver.http import until_shutdown
from wanmock.mockserver.media import MediaCache
from wanmock.mockserver.operations import TaskOperations
from wanmock.mockserver.profiles import profile_for
from wanmock.mockserver.ratelimit import RateLimiter
from wanmock.mockserver.results import FILES_PREFIX, ResultLinks
from wanmock.mockserver.routing import Router
from wanmock.mockserver.scrub import Fingerprint
from wanmock.mockserver.state import AppState, Served
from wanmock.mockserver.store import MemoryStore, TaskStore
from wanmock.mockserver.uploads import UPLOADS_PREFIX, upload


def create_app(config: ServerConfig | None = None, store: TaskStore | None = None) -> MockApp:
    """The mock server as an ASGI app (run it with uvicorn, or call it through httpx)."""
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
        # salted by the store's own secret: every worker on it agrees, nothing outside can test a guess
        fingerprint=Fingerprint.from_secret(store.link_secret(secrets.token_bytes(32))),
    )
    for name in config.providers:
        profile = profile_for(name, config)
        state.served[name] = Served(profile, Router(profile.provider))
    dispatcher = Dispatcher(state, {name: TaskOperations(state, name).pipeline for name in state.served})

    def routes() -> list[BaseRoute]:
        """The control plane's routes, built (and admin.py, with the dashboard, imported) when
        the first request outside the providers' paths arrives: start-up does not pay for them."""
        from wanmock.mockserver.admin import admin_routes

        return [
            *admin_routes(),
            Route(FILES_PREFIX + "/{provider}/{name}", download, methods=["GET", "HEAD"]),
            Route(UPLOADS_PREFIX + "/{provider}", upload, methods=["POST"]),
            Route("/{path:path}", dispatcher),
        ]

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        gc.collect()
        gc.freeze()  # start-up objects (schemas, modules) leave the collector's full passes
        async with until_shutdown():
            yield
        state.io.close()
        state.media.close()

    app = MockApp(lifespan=lifespan)
    app.dispatcher, app.direct = dispatcher, config.admin_port is None
    # Provider paths go straight to the dispatcher; and a path no route matches (Starlette's
    # "{path:path}" stops at a newline) still reaches the provider, which answers in its shape.
    app.router = ProviderFirstRouter(dispatcher, routes, lifespan)
    origins = None if config.origins is None else (*config.origins, *([config.public_url] if config.public_url else []))
    app.add_middleware(AdminGuard, token=config.admin_token, origins=origins, admin_port=config.admin_port)
    app.state.wanmock = state
    return app


def base_urls(config: ServerConfig, origin: str) -> Mapping[str, str]:
    """Where each provider is served, for a server at ``origin`` (``http://127.0.0.1:8000``)."""
    if len(config.providers) == 1:
        return {config.providers[0]: origin}
    return {name: f"{origin}/{name}" for name in config.providers}
