"""Shared fixtures: an in-process mock on a manual clock, and request builders read from the
catalog (paths, headers, example bodies come from schemas/, never restated here)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpcore  # noqa: F401 - see below
import httpx
import pytest
from wanmock.mockserver.app import create_app
from wanmock.mockserver.clock import ManualClock
from wanmock.mockserver.config import ServerConfig
from wanmock.mockserver.state import AppState
from wanmock.schemas import catalog
from wanmock.schemas.catalog import ROOT

# httpcore is imported here, before any test, so that the whole session has one httpcore. httpx
# imports it lazily and keeps its exception classes in a table on first use; pytester's in-process
# runs (tests/test_plugin.py) forget every module first imported during a run, so an httpcore first
# imported there was imported again afterwards and its errors (a refused connection, a dropped one)
# escaped httpx unmapped, as httpcore.ConnectError, in whatever test came next.

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
PROVIDERS = sorted(catalog().providers)


class Mock:
    """A mock server app driven synchronously through httpx.ASGITransport."""

    def __init__(self, config: ServerConfig, media_dir: Path) -> None:
        self.clock = config.clock if isinstance(config.clock, ManualClock) else ManualClock()
        config.clock = self.clock
        config.media_dir = media_dir
        self.config = config
        self.app = create_app(config)
        self.state: AppState = self.app.state.wanmock
        self._loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://mock")

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self._loop.run_until_complete(self.client.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def close(self) -> None:
        self._loop.run_until_complete(self.client.aclose())
        self.state.media.close()
        self._loop.close()

    # -- provider requests built from the manifest ----------------------------------------

    def prefix(self, provider: str) -> str:
        return f"/{provider}" if len(self.config.providers) > 1 else ""

    def submit(
        self, provider: str, kind: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return self.post(
            self.submit_path(provider, kind),
            json=body,
            headers={**submit_headers(provider), **(headers or {})},
        )

    def submit_path(self, provider: str, kind: str) -> str:
        p = catalog().provider(provider)
        path = p.endpoints["submit"].paths[0].replace("{model}", p.models[kind].id)
        return self.prefix(provider) + path

    def poll(self, provider: str, task_id: str, headers: dict[str, str] | None = None) -> httpx.Response:
        endpoint = catalog().provider(provider).endpoints["poll"]
        path = self.prefix(provider) + endpoint.paths[0].replace("{task_id}", task_id)
        params = {k: v.replace("{task_id}", task_id) for k, v in endpoint.query.items()}
        return self.get(path, params=params, headers={**AUTH, **(headers or {})})

    def task_id(self, provider: str, response: httpx.Response) -> str:
        from wanmock.schemas import resolve_pointer

        return str(resolve_pointer(response.json(), catalog().provider(provider).task_fields["id_in_submit"]))

    def status_word(self, provider: str, response: httpx.Response) -> str:
        from wanmock.schemas import resolve_pointer

        return str(resolve_pointer(response.json(), catalog().provider(provider).task_fields["status_in_poll"]))

    def result_url(self, provider: str, response: httpx.Response) -> str:
        from wanmock.schemas import resolve_pointer

        return str(resolve_pointer(response.json(), catalog().provider(provider).task_fields["result_url_in_poll"]))


def submit_headers(provider: str) -> dict[str, str]:
    return {**AUTH, **catalog().provider(provider).endpoints["submit"].headers}


def corpus(provider: str, message: str = "submit", valid: bool = True) -> list[dict[str, Any]]:
    cases = []
    for path in sorted((ROOT / "corpus" / provider).glob("*.json")):
        case = json.loads(path.read_text())
        if case["message"] == message and case["valid"] is valid:
            case["name"] = path.stem
            cases.append(case)
    return cases


def example_body(provider: str, kind: str) -> dict[str, Any]:
    """The first documented valid request of ``kind`` in the corpus."""
    for case in corpus(provider):
        if catalog().provider(provider).models[case["model"]].kind == kind:
            return dict(case["instance"])
    raise LookupError(f"no valid {kind} example for {provider}")


@pytest.fixture
def mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mock]:
    """Every provider, fast timing, manual clock, seeded."""
    m = Mock(ServerConfig(timing="fast", seed=7), tmp_path_factory.mktemp("media"))
    yield m
    m.close()


@pytest.fixture
def make_mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    made: list[Mock] = []

    def factory(**kwargs: Any) -> Mock:
        kwargs.setdefault("seed", 7)
        m = Mock(ServerConfig(**kwargs), tmp_path_factory.mktemp("media"))
        made.append(m)
        return m

    yield factory
    for m in made:
        m.close()
