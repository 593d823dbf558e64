"""The wanmock pytest plugin: the Wan 2.7 mock in your own test suite, no network, no waiting.

Installed with wanmock (entry point ``pytest11: wanmock``), so ``pip install wanmock`` is all a
suite needs; disable it with ``-p no:wanmock``. It gives:

``wanmock`` (function scope)
    This test's view of an in-process mock (one app, manual clock and transport per session,
    per xdist worker). ``wanmock.client("dashscope")`` is a ``wanmock.contracts.client.engine.WanClient`` wired
    to it (key ``test-key``; its sleeps advance the manual clock, so ``wait()`` returns at once);
    ``async_client`` the ``AsyncWanClient``. ``transport`` / ``async_transport`` are httpx
    transports into the app for your own client, ``base_url(provider)`` where to point it
    (``http://wanmock/<provider>``). ``advance(seconds)`` moves the clock; ``fault(**rule)``,
    ``faults()``, ``clear_faults()``; ``journal(**filters)``, ``tasks(provider)``, ``task()``;
    forced transitions ``fail()``, ``succeed()``, ``cancel()``, ``expire()``. ``app``, ``clock``
    and ``state`` are the ASGI app, its ``ManualClock`` and its ``AppState``.
``wanmock_clock``, ``wanmock_faults``
    The same mock's ``ManualClock``, and a helper for this test's fault rules
    (``add(**rule)``, ``error(status, **scope)``, ``latency``, ``drop``, ``fail_next``, ``clear``).
``wanmock_server`` (session scope, started on first use)
    A real ``wanmock serve --port 0 --clock manual --timing fast`` subprocess, for clients that
    need a socket: ``origin``, ``base_url(provider)``, ``advance(seconds)``, ``now()``, and
    ``scoped(test_id)``; ``wanmock_server_scope`` is that scope for the running test (the same
    helpers as ``wanmock``, over HTTP), reset when the test ends.
``@pytest.mark.live("dashscope")``
    A test that calls the real provider: skipped, naming the variable, unless its key
    (``DASHSCOPE_API_KEY``, ``MODELLIX_API_KEY``, ``AIMLAPI_API_KEY``, ``APIYI_API_KEY``) is set.
``@pytest.mark.wanmock(**config)``
    This test gets a private in-process mock built from ``ServerConfig(**config)`` (e.g.
    ``timing="instant"``, ``rate_limits=...``, ``options=Options(...)``) instead of the shared
    one; override the ``wanmock_config`` fixture to change the shared one.

Scoping: every request sent through a fixture's clients and transports carries
``X-Wanmock-Test: <the test's node id>``; the mock files tasks, journal entries and fault rules
under it, and every helper above reads and writes only that test's share. At teardown the
fixture resets its test id (tasks, journal, rules). Tests of one process run one at a time on
the shared mock; under pytest-xdist each worker has its own mock (and its own server). The
clock is shared and only moves forward: a task's lifecycle is relative to its own submit.

    from wanmock.contracts.client.errors import RateLimitedError
    from wanmock.contracts.client.models import TextToVideo

    def test_retries_after_429(wanmock):
        wanmock.fault(action="error", provider="dashscope", endpoint="submit", status=429, count=1)
        client = wanmock.client("dashscope")
        with pytest.raises(RateLimitedError):
            client.submit(TextToVideo("a cat"))
        assert client.wait(client.submit(TextToVideo("a cat"))).state == "succeeded"
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import httpx
import pytest
from wanmock.contracts.tools import control
from wanmock.contracts.tools.control import Control
from wanmock.contracts.tools.launcher import LaunchError, ServeProcess

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from wanmock.contracts.client.engine import AsyncWanClient, WanClient
    from wanmock.contracts.client.transport import ASGIThreadTransport
    from wanmock.mockserver.clock import ManualClock
    from wanmock.mockserver.config import ServerConfig
    from wanmock.mockserver.state import AppState

TEST_HEADER = "X-Wanmock-Test"  # wanmock.mockserver.app.TEST_HEADER, spelt as sent
DEFAULT_KEY = "test-key"
IN_PROCESS_ORIGIN = "http://wanmock"
SERVER_START_SECONDS = 30.0
JOURNAL_FILTERS = ("provider", "path", "task", "endpoint", "status")
# Characters sent as they are in a test id; anything else (non-ASCII, control characters, %) is
# percent-encoded so the id is a valid header value.
_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


_T = TypeVar("_T")


class ControlPlaneError(RuntimeError):
    """The mock's control plane refused a request (unknown task, finished task, bad rule...)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@contextmanager
def _refusals() -> Iterator[None]:
    """The control-plane client's refusals (``wanmock.contracts.tools.control``), raised as this
    plugin's ControlPlaneError (with the same message and status)."""
    try:
        yield
    except control.ControlPlaneError as exc:
        raise ControlPlaneError(str(exc), exc.status) from exc


def _checked(call: Callable[[], _T]) -> _T:
    with _refusals():
        return call()


def wanmock_test_id(nodeid: str) -> str:
    """The X-Wanmock-Test value for a pytest node id: the id itself, percent-encoding anything
    a header cannot carry."""
    return quote(nodeid, safe=_HEADER_SAFE)


def live_key_variable(provider: str) -> str:
    """The environment variable holding ``provider``'s API key (as wanmock.contracts.client.engine reads it)."""
    from wanmock.contracts.client.engine import api_key_variable

    return api_key_variable(provider)


# -- transports that stamp the test id ---------------------------------------------------


class ScopedTransport(httpx.BaseTransport):
    """Adds ``X-Wanmock-Test`` to every request, then hands it to ``inner``. Closing it leaves
    ``inner`` open (it is shared, or owned by whoever made it)."""

    def __init__(self, inner: httpx.BaseTransport, test_id: str) -> None:
        self.inner = inner
        self.test_id = test_id

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.headers[TEST_HEADER] = self.test_id
        return self.inner.handle_request(request)

    def close(self) -> None:
        """Leave the inner transport to its owner."""


class ScopedAsyncTransport(httpx.AsyncBaseTransport):
    """The async twin of ScopedTransport; ``owns_inner`` closes ``inner`` with it."""

    def __init__(self, inner: httpx.AsyncBaseTransport, test_id: str, *, owns_inner: bool = False) -> None:
        self.inner = inner
        self.test_id = test_id
        self.owns_inner = owns_inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers[TEST_HEADER] = self.test_id
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        if self.owns_inner:
            await self.inner.aclose()


# -- one test's view of a mock -----------------------------------------------------------


class MockScope:
    """What one test sees of a mock, in-process or over a socket: clients whose requests carry
    its test id, and control-plane helpers that read and change only that test's share."""

    def __init__(self, test_id: str, admin: Control, providers: tuple[str, ...]) -> None:
        self.test_id = test_id
        self.providers = providers
        self._admin = admin  # the one control-plane client, scoped to this test
        self._clients: list[WanClient] = []

    # -- to be provided by the kind of mock --

    def base_url(self, provider: str) -> str:
        raise NotImplementedError

    def advance(self, seconds: float) -> float:
        """Move the mock's clock forward ``seconds``; the new time."""
        raise NotImplementedError

    def now(self) -> float:
        """The mock's current time."""
        raise NotImplementedError

    def _sync_transport(self) -> httpx.BaseTransport:
        raise NotImplementedError

    def _async_transport(self) -> httpx.AsyncBaseTransport:
        raise NotImplementedError

    # -- clients --

    @property
    def headers(self) -> dict[str, str]:
        """The header that files a request under this test (for a client you build yourself)."""
        return {TEST_HEADER: self.test_id}

    def _check_provider(self, provider: str) -> None:
        if provider not in self.providers:
            raise ValueError(f"the mock does not serve {provider!r}; it serves {', '.join(self.providers)}")

    def client(self, provider: str, api_key: str = DEFAULT_KEY, **kwargs: Any) -> WanClient:
        """A WanClient on this mock: its requests carry the test id, its sleeps advance the mock's
        clock and its clock reads it. ``kwargs`` go to WanClient (and may override any of that)."""
        from wanmock.contracts.client.engine import WanClient

        self._check_provider(provider)
        kwargs.setdefault("base_url", self.base_url(provider))
        kwargs.setdefault("transport", self._sync_transport())
        kwargs.setdefault("sleep", self.advance)
        kwargs.setdefault("clock", self.now)
        client = WanClient(provider, api_key, **kwargs)
        self._clients.append(client)
        return client

    def async_client(self, provider: str, api_key: str = DEFAULT_KEY, **kwargs: Any) -> AsyncWanClient:
        """The AsyncWanClient twin of ``client()``; use it as ``async with``."""
        from wanmock.contracts.client.engine import AsyncWanClient

        self._check_provider(provider)
        kwargs.setdefault("base_url", self.base_url(provider))
        kwargs.setdefault("transport", self._async_transport())
        kwargs.setdefault("sleep", self.advance)
        kwargs.setdefault("clock", self.now)
        return AsyncWanClient(provider, api_key, **kwargs)

    # -- the control plane, scoped to this test --

    def fault(self, **rule: Any) -> dict[str, Any]:
        """Add a fault rule (see README: action, provider, endpoint, model, task_id, status, code,
        message, retry_after, latency_seconds, count) that fires only for this test's requests."""
        if rule.get("test_id", self.test_id) != self.test_id:
            raise ValueError(f"a rule added here is scoped to this test ({self.test_id}), not {rule['test_id']!r}")
        return _checked(lambda: self._admin.fault(**rule))  # Control adds this test's id

    def faults(self) -> list[dict[str, Any]]:
        """This test's fault rules still in force."""
        return _checked(self._admin.faults)

    def remove_fault(self, rule_id: str) -> None:
        if rule_id not in {rule["id"] for rule in self.faults()}:
            raise ControlPlaneError(f"{rule_id} is not a fault rule of this test")
        _checked(lambda: self._admin.delete_fault(rule_id))

    def clear_faults(self) -> None:
        _checked(self._admin.clear_faults)

    def journal(self, **filters: Any) -> list[dict[str, Any]]:
        """The requests this test sent, oldest first; filter by ``provider``, ``path`` (a
        substring), ``task`` (or ``task_id``), ``endpoint`` (submit, poll...) and ``status``."""
        if "task_id" in filters:
            filters["task"] = filters.pop("task_id")
        unknown = sorted(set(filters) - set(JOURNAL_FILTERS))
        if unknown:
            raise TypeError(f"unknown journal filter(s) {unknown}; known: {', '.join(JOURNAL_FILTERS)}")
        params = {name: str(value) for name, value in filters.items() if value is not None}
        return _checked(lambda: self._admin.journal(**params))

    def tasks(self, provider: str | None = None) -> list[dict[str, Any]]:
        """This test's tasks, oldest first, each with its current ``state`` and ``status_word``."""
        return _checked(lambda: self._admin.tasks(provider=provider or None))

    def task(self, provider: str, task_id: str) -> dict[str, Any]:
        """One of this test's tasks (ControlPlaneError for another test's or an unknown one)."""
        try:
            view = self._admin.task(provider, task_id)
        except control.ControlPlaneError as exc:
            if exc.status == 404:  # a scoped control plane shows no other test's task
                raise ControlPlaneError(
                    f"{provider} task {task_id} is unknown or belongs to another test", exc.status
                ) from exc
            raise ControlPlaneError(str(exc), exc.status) from exc
        if view.get("test_id") != self.test_id:
            raise ControlPlaneError(f"{provider} task {task_id} belongs to another test ({view.get('test_id')})")
        return view

    def _transition(
        self, provider: str, task_id: str, action: str, body: dict[str, str] | None = None
    ) -> dict[str, Any]:
        self.task(provider, task_id)
        return _checked(lambda: self._admin.transition(provider, task_id, action, body))

    def fail(self, provider: str, task_id: str, code: str | None = None, message: str | None = None) -> dict[str, Any]:
        """End the task failed now, with the provider's error ``code`` and ``message``."""
        body = {name: value for name, value in (("code", code), ("message", message)) if value is not None}
        return self._transition(provider, task_id, "fail", body)

    def succeed(self, provider: str, task_id: str) -> dict[str, Any]:
        return self._transition(provider, task_id, "succeed")

    def cancel(self, provider: str, task_id: str) -> dict[str, Any]:
        return self._transition(provider, task_id, "cancel")

    def expire(self, provider: str, task_id: str) -> dict[str, Any]:
        """Put the task past its retention: the provider answers as for an expired task."""
        return self._transition(provider, task_id, "expire")

    def step(self, provider: str, task_id: str) -> dict[str, Any]:
        """Move the task to its next state now (queued -> running -> succeeded)."""
        return self._transition(provider, task_id, "advance")

    def reset(self) -> None:
        """Forget this test's tasks, journal entries and fault rules."""
        _checked(self._admin.reset)

    def close(self) -> None:
        """Close the clients made here and reset this test's share of the mock."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        self.reset()


class FaultHelper:
    """``wanmock_faults``: shorthands for this test's fault rules."""

    def __init__(self, scope: MockScope) -> None:
        self.scope = scope

    def add(self, **rule: Any) -> dict[str, Any]:
        return self.scope.fault(**rule)

    def error(self, status: int, **scope: Any) -> dict[str, Any]:
        """Answer ``status`` in the provider's envelope (``code``, ``message``, ``retry_after``)."""
        return self.scope.fault(action="error", status=status, **scope)

    def latency(self, seconds: float, **scope: Any) -> dict[str, Any]:
        return self.scope.fault(action="latency", latency_seconds=seconds, **scope)

    def drop(self, **scope: Any) -> dict[str, Any]:
        """Break the connection mid-response."""
        return self.scope.fault(action="drop", **scope)

    def fail_next(self, code: str | None = None, message: str | None = None, **scope: Any) -> dict[str, Any]:
        """The next task submitted (matching ``scope``) ends failed with ``code``."""
        fields = {name: value for name, value in (("code", code), ("message", message)) if value is not None}
        return self.scope.fault(action="fail", **fields, **scope)

    def rules(self) -> list[dict[str, Any]]:
        return self.scope.faults()

    def remove(self, rule_id: str) -> None:
        self.scope.remove_fault(rule_id)

    def clear(self) -> None:
        self.scope.clear_faults()


# -- the in-process mock -------------------------------------------------------------------


class MockInstance:
    """One in-process mock app on a manual clock, with a sync transport into it (a daemon thread
    running the app's event loop). Shared by the tests of a session (of an xdist worker)."""

    def __init__(self, config: ServerConfig) -> None:
        from wanmock.contracts.client.transport import ASGIThreadTransport
        from wanmock.mockserver.app import base_urls, create_app
        from wanmock.mockserver.clock import ManualClock

        clock = config.clock
        if not isinstance(clock, ManualClock):
            clock = ManualClock()
            config = dataclasses.replace(config, clock=clock)
        self.config = config
        self.clock: ManualClock = clock
        self.app: Starlette = create_app(config)
        self.state: AppState = self.app.state.wanmock
        self.transport: ASGIThreadTransport = ASGIThreadTransport(self.app)
        self.urls = dict(base_urls(config, IN_PROCESS_ORIGIN))

    def scope(self, test_id: str) -> InProcessMock:
        return InProcessMock(self, test_id)

    def close(self) -> None:
        self.transport.shutdown()
        self.state.media.close()


class InProcessMock(MockScope):
    """The ``wanmock`` fixture: one test's view of an in-process mock."""

    def __init__(self, instance: MockInstance, test_id: str) -> None:
        from wanmock.contracts.client.transport import SocketLikeASGITransport

        self.instance = instance
        self.app = instance.app
        self.clock = instance.clock
        self.state = instance.state
        self.shared_transport = instance.transport
        self.transport = ScopedTransport(instance.transport, test_id)
        self.async_transport = ScopedAsyncTransport(SocketLikeASGITransport(app=instance.app), test_id)
        admin = Control(IN_PROCESS_ORIGIN, transport=self.transport, test_id=test_id, timeout=10.0)
        super().__init__(test_id, admin, tuple(instance.config.providers))

    def base_url(self, provider: str) -> str:
        self._check_provider(provider)
        return self.instance.urls[provider]

    def advance(self, seconds: float) -> float:
        return self.clock.advance(seconds)

    def now(self) -> float:
        return self.clock.now()

    def _sync_transport(self) -> httpx.BaseTransport:
        return self.transport

    def _async_transport(self) -> httpx.AsyncBaseTransport:
        return self.async_transport

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._admin.close()

    def __repr__(self) -> str:
        return f"<wanmock in-process test={self.test_id!r} now={self.clock.now()}>"


# -- the subprocess server -------------------------------------------------------------------


class WanmockServer:
    """A real ``wanmock serve`` subprocess on a free port, manual clock, fast timing, started and
    stopped by the one launcher (``wanmock.contracts.tools.launcher.ServeProcess``); its clock and
    health through the one control-plane client (``wanmock.contracts.tools.control.Control``)."""

    def __init__(self, launched: ServeProcess) -> None:
        from wanmock.mockserver.guard import admin_token

        assert launched.process is not None
        self.launched = launched
        self.process = launched.process
        self.origin = launched.origin
        self.providers: tuple[str, ...] = launched.providers
        self.token = admin_token(launched.token)  # the --admin-token given, else $WANMOCK_ADMIN_TOKEN
        self._admin = Control(self.origin, token=self.token, timeout=10.0)

    @classmethod
    def start(cls, log_dir: Path, *args: str, timeout: float = SERVER_START_SECONDS) -> WanmockServer:
        """Start ``python -m wanmock.mockserver serve --port 0 --clock manual --timing fast *args`` and
        return once ``/__admin/health`` answers 200 (polled; never a blind sleep). Its standard
        output and error are kept in ``log_dir`` (``serve.out``, ``serve.err``)."""
        launched = ServeProcess("--clock", "manual", "--timing", "fast", *args, ready_timeout=timeout, log_dir=log_dir)
        try:
            launched.start()
        except LaunchError as exc:
            raise RuntimeError(str(exc)) from exc
        try:
            return cls(launched)
        except BaseException:
            launched.stop()
            raise

    def base_url(self, provider: str) -> str:
        if provider not in self.providers:
            raise ValueError(f"the server does not serve {provider!r}; it serves {', '.join(self.providers)}")
        return f"{self.origin}/{provider}"

    def health(self) -> dict[str, Any]:
        return _checked(self._admin.health)

    def advance(self, seconds: float) -> float:
        """Advance the server's manual clock (POST /__admin/clock/advance); the new time."""
        return _checked(lambda: self._admin.advance(seconds))

    def now(self) -> float:
        return _checked(self._admin.now)

    def scoped(self, test_id: str) -> ServerScope:
        """A view of the server for one test: clients and helpers scoped to ``test_id``."""
        return ServerScope(self, test_id)

    def stop(self) -> None:
        try:
            self._admin.close()
        finally:
            self.launched.stop()

    def __repr__(self) -> str:
        return f"<wanmock server {self.origin} pid={self.process.pid}>"


class ServerScope(MockScope):
    """``wanmock_server_scope``: one test's view of the server, over HTTP."""

    def __init__(self, server: WanmockServer, test_id: str) -> None:
        self.server = server
        self.origin = server.origin
        self._http = httpx.HTTPTransport()
        self._owned: list[httpx.Client] = []
        self.transport = ScopedTransport(self._http, test_id)
        admin = Control(server.origin, transport=self.transport, token=server.token, test_id=test_id, timeout=10.0)
        super().__init__(test_id, admin, server.providers)

    def base_url(self, provider: str) -> str:
        return self.server.base_url(provider)

    def advance(self, seconds: float) -> float:
        return self.server.advance(seconds)

    def now(self) -> float:
        return self.server.now()

    def http(self, **kwargs: Any) -> httpx.Client:
        """An httpx.Client on the server's origin whose requests carry this test's id."""
        kwargs.setdefault("base_url", self.origin)
        kwargs.setdefault("transport", self.transport)
        client = httpx.Client(**kwargs)
        self._owned.append(client)
        return client

    def _sync_transport(self) -> httpx.BaseTransport:
        return self.transport

    def _async_transport(self) -> httpx.AsyncBaseTransport:
        return ScopedAsyncTransport(httpx.AsyncHTTPTransport(), self.test_id, owns_inner=True)

    def close(self) -> None:
        try:
            super().close()
        finally:
            for client in self._owned:
                client.close()
            self._admin.close()
            self._http.close()


# -- pytest hooks and fixtures -------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "live(provider): calls the real provider API; skipped unless the provider's key "
        "(<PROVIDER>_API_KEY, e.g. DASHSCOPE_API_KEY) is set in the environment",
    )
    config.addinivalue_line(
        "markers",
        "wanmock(**config): give the test a private in-process wanmock built from ServerConfig(**config)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a ``live`` test whose provider key is missing (before its fixtures are set up)."""
    markers = list(item.iter_markers(name="live"))
    if not markers:
        return
    from wanmock.schemas import catalog

    known = catalog().providers
    for marker in markers:
        providers = [*marker.args, *([marker.kwargs["provider"]] if "provider" in marker.kwargs else [])]
        if not providers:
            pytest.fail("@pytest.mark.live needs a provider, e.g. @pytest.mark.live('dashscope')", pytrace=False)
        for provider in providers:
            if provider not in known:
                pytest.fail(
                    f"@pytest.mark.live({provider!r}): unknown provider; known: {', '.join(sorted(known))}",
                    pytrace=False,
                )
            variable = live_key_variable(provider)
            if not os.environ.get(variable):
                pytest.skip(f"live test against {provider}: set {variable} to run it")


@pytest.fixture(scope="session")
def wanmock_config(tmp_path_factory: pytest.TempPathFactory) -> ServerConfig:
    """The configuration of the session's in-process mock (override it in your conftest.py).
    Every provider, fast timing, a manual clock (one is put in if another is given)."""
    from wanmock.mockserver.clock import ManualClock
    from wanmock.mockserver.config import ServerConfig

    return ServerConfig(timing="fast", clock=ManualClock(), media_dir=tmp_path_factory.mktemp("wanmock-media"))


@pytest.fixture(scope="session")
def wanmock_session(wanmock_config: ServerConfig) -> Iterator[MockInstance]:
    """The in-process mock the session's (the xdist worker's) tests share."""
    instance = MockInstance(wanmock_config)
    yield instance
    instance.close()


@pytest.fixture
def wanmock(request: pytest.FixtureRequest) -> Iterator[InProcessMock]:
    """This test's view of the in-process mock (see the module docstring)."""
    private: MockInstance | None = None
    marker = request.node.get_closest_marker("wanmock")
    if marker is not None:
        from wanmock.mockserver.config import ServerConfig

        if marker.args:
            pytest.fail("@pytest.mark.wanmock takes ServerConfig keywords only, e.g. timing='instant'", pytrace=False)
        shared_config: ServerConfig = request.getfixturevalue("wanmock_config")
        settings: dict[str, Any] = {"media_dir": shared_config.media_dir, **marker.kwargs}
        private = MockInstance(ServerConfig(**settings))
        instance = private
    else:
        instance = request.getfixturevalue("wanmock_session")
    scope = instance.scope(wanmock_test_id(request.node.nodeid))
    try:
        yield scope
    finally:
        try:
            scope.close()
        finally:
            if private is not None:
                private.close()


@pytest.fixture
def wanmock_clock(wanmock: InProcessMock) -> ManualClock:
    """The in-process mock's manual clock."""
    return wanmock.clock


@pytest.fixture
def wanmock_faults(wanmock: InProcessMock) -> FaultHelper:
    """This test's fault rules on the in-process mock."""
    return FaultHelper(wanmock)


@pytest.fixture(scope="session")
def wanmock_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WanmockServer]:
    """A real ``wanmock serve`` subprocess for the session (per xdist worker), started when a
    test first asks for it and stopped at the end."""
    server = WanmockServer.start(tmp_path_factory.mktemp("wanmock-server"))
    yield server
    server.stop()


@pytest.fixture
def wanmock_server_scope(wanmock_server: WanmockServer, request: pytest.FixtureRequest) -> Iterator[ServerScope]:
    """``wanmock_server`` as this test sees it: clients, ``http()``, faults, journal and tasks
    scoped to the test id; reset when the test ends."""
    scope = wanmock_server.scoped(wanmock_test_id(request.node.nodeid))
    try:
        yield scope
    finally:
        scope.close()
