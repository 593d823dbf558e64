"""A provider is its schema files, one profile and one dialect: nothing else changes.

``tests/fixtures/fictional/acme/`` holds a provider that does not exist — a manifest, its schema
files, ``profile.py`` (how the mock builds its bodies) and ``dialect.py`` (how the client speaks
it), the two named by the manifest's ``implementation``. Pointed at with ``WANMOCK_SCHEMA_PATH``,
it is served by the mock, fuzzed by the strategies, driven by the reference client and checked
by the contract runner, with no change to any module of wanmock.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from wanmock.contracts.client import errors
from wanmock.contracts.client.engine import WanClient
from wanmock.contracts.client.models import TextToVideo, VideoRequest
from wanmock.contracts.client.transport import ASGIThreadTransport
from wanmock.contracts.testing import strategies
from wanmock.contracts.testing.runner import Report, Runner, balance_fault, in_process_target
from wanmock.contracts.tools.control import Control
from wanmock.mockserver.app import create_app
from wanmock.mockserver.clock import ManualClock
from wanmock.mockserver.config import ServerConfig
from wanmock.mockserver.media import probe
from wanmock.schemas import catalog

FICTIONAL = Path(__file__).resolve().parent / "fixtures" / "fictional"


@pytest.fixture
def acme(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[ASGIThreadTransport]:
    """The mock serving only the fictional provider, in-process, on a manual clock."""
    monkeypatch.setenv("WANMOCK_SCHEMA_PATH", str(FICTIONAL))
    clock = ManualClock()
    app = create_app(ServerConfig(providers=("acme",), clock=clock, timing="fast", seed=1, media_dir=tmp_path))
    transport = ASGIThreadTransport(app)
    transport.clock = clock  # type: ignore[attr-defined]
    yield transport
    transport.shutdown()


def test_the_catalog_finds_it_beside_the_shipped_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "acme" not in catalog().providers
    monkeypatch.setenv("WANMOCK_SCHEMA_PATH", str(FICTIONAL))
    assert {"acme", "dashscope", "modellix"} <= set(catalog().providers)
    acme = catalog().provider("acme")
    assert acme.state_for_word("rendering").canonical == "running"  # type: ignore[union-attr]
    assert catalog().validate("acme", "submit", {"model": "acme-t2v-1", "text": "a cat"}, kind="t2v") == []
    [issue] = catalog().validate("acme", "submit", {"model": "acme-t2v-1", "text": "a cat", "seconds": 5}, kind="t2v")
    assert issue.path == "$.seconds"


def test_the_mock_serves_it_in_its_own_words(acme: ASGIThreadTransport) -> None:
    clock: ManualClock = acme.clock  # type: ignore[attr-defined]
    with httpx.Client(transport=acme, base_url="http://mock", headers={"Authorization": "Bearer k"}) as http:
        submitted = http.post("/v1/videos", json={"model": "acme-t2v-1", "text": "a cat", "seconds": 8})
        assert submitted.status_code == 200
        assert submitted.json()["state"] == "waiting"
        job = submitted.json()["job"]
        assert http.get(f"/v1/videos/{job}").json()["state"] == "waiting"
        clock.advance(1.5)
        assert http.get(f"/v1/videos/{job}").json()["state"] == "rendering"
        clock.advance(5)
        done = http.get(f"/v1/videos/{job}").json()
        assert done["state"] == "done"
        refused = http.post("/v1/videos", json={"model": "acme-t2v-1", "text": "a cat", "seconds": 5})
        assert refused.status_code == 400
        assert set(refused.json()["error"]) == {"kind", "text"}  # Acme's envelope, from its profile
        assert http.get("/v1/videos/no-such-job").status_code == 404
        unauthorised = http.post("/v1/videos", json={"model": "acme-t2v-1", "text": "x"}, headers={"Authorization": ""})
        assert unauthorised.status_code == 401
        video = http.get(done["output"]["url"])
        assert video.status_code == 200
        assert video.headers["content-type"] == "video/mp4"


def test_the_client_drives_it(acme: ASGIThreadTransport, tmp_path: Path) -> None:
    clock: ManualClock = acme.clock  # type: ignore[attr-defined]
    with WanClient("acme", "k", base_url="http://mock", transport=acme, sleep=clock.advance, clock=clock.now) as client:
        handle = client.submit(TextToVideo("a cat", resolution="1080P", ratio="9:16", duration=4))
        status = client.wait(handle, timeout=60)
        assert (status.state, status.word) == ("succeeded", "done")
        info = probe(client.download(status, tmp_path / "acme.mp4"))
        assert (info["width"], info["height"]) == (1080, 1920)
        with pytest.raises(errors.UnsupportedRequest):
            client.submit(TextToVideo("a cat", duration=5))  # refused before any request: 4 or 8


def test_the_strategies_fuzz_it(acme: ASGIThreadTransport, monkeypatch: pytest.MonkeyPatch) -> None:
    with httpx.Client(transport=acme, base_url="http://mock", headers={"Authorization": "Bearer k"}) as http:

        @settings(max_examples=25, database=None, deadline=None, suppress_health_check=list(HealthCheck))
        @given(request=strategies.video_requests("acme", "t2v"), mutation=strategies.invalid_requests("acme", "t2v"))
        def check(request: VideoRequest, mutation: strategies.Mutation) -> None:
            body = WanClient("acme", "k").dialect.body(request)
            assert http.post("/v1/videos", json=body).status_code == 200
            assert http.post("/v1/videos", json=mutation.body).status_code == 400, mutation.description

        check()


def test_the_contract_runner_checks_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANMOCK_SCHEMA_PATH", str(FICTIONAL))
    report = Report("in-process", 5)
    with in_process_target("acme", 5) as target:
        report.results.append(Runner(target, seed=5).run("t2v", 15))
    assert report.passed, "\n".join(f.render() for r in report.results for f in r.failures)
    assert report.results[0].cases >= 15


def test_its_balance_error_is_read_from_its_manifest(acme: ASGIThreadTransport) -> None:
    """The runner stages, and the client recognises, the "insufficient balance" answer its
    manifest documents (``errors.insufficient_balance``), with no code naming it."""
    clock: ManualClock = acme.clock  # type: ignore[attr-defined]
    fault = balance_fault("acme")
    assert fault == {"status": 402, "code": "no_credit"}  # tests/fixtures/fictional/acme/manifest.json
    with Control("http://mock", transport=acme) as control:
        control.fault(action="error", provider="acme", endpoint="submit", count=1, **fault)
    with WanClient("acme", "k", base_url="http://mock", transport=acme, sleep=clock.advance, clock=clock.now) as client:
        with pytest.raises(errors.InsufficientBalanceError) as raised:
            client.submit(TextToVideo("a cat", duration=4))
        assert (raised.value.status, raised.value.code) == (402, "no_credit")
        with Control("http://mock", transport=acme) as control:  # another 402 is not a balance error
            control.fault(action="error", provider="acme", endpoint="submit", count=1, status=402, code="other")
        with pytest.raises(errors.InvalidRequestError):
            client.submit(TextToVideo("a cat", duration=4))


def test_no_module_names_a_shipped_provider_outside_its_profile_and_dialect() -> None:
    """Provider facts live in the schema files: no string in wanmock's code is a provider's name,
    except in a provider's own profile (mockserver/profiles/) and dialect classes."""
    root = FICTIONAL.parent.parent.parent
    names = set(catalog().providers)
    found = [
        f"{path.relative_to(root)}:{node.lineno} {node.value!r}"
        for base in ("schemas", "mockserver", "contracts")
        for path in sorted((root / base).rglob("*.py"))
        if "profiles" not in path.parts and path.name != "dialects.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.lower() in names
    ]
    assert found == []


def test_nothing_outside_its_own_files_names_it() -> None:
    root = FICTIONAL.parent.parent.parent
    outside = [
        str(path.relative_to(root))
        for base in ("schemas", "mockserver", "contracts")
        for path in (root / base).rglob("*")
        if path.is_file() and path.suffix in (".py", ".json") and "acme" in path.read_text(encoding="utf-8").lower()
    ]
    assert outside == []


@pytest.mark.slow
def test_wanmock_serve_serves_it() -> None:
    import os

    from wanmock.contracts.tools.launcher import ServeProcess

    env = {**os.environ, "WANMOCK_SCHEMA_PATH": str(FICTIONAL)}
    with ServeProcess("--provider", "acme", env=env) as server:
        assert server.providers == ("acme",)
        with httpx.Client(base_url=server.origin, timeout=10, headers={"Authorization": "Bearer k"}) as http:
            answer = http.post("/v1/videos", json={"model": "acme-t2v-1", "text": "a cat"})
            assert answer.status_code == 200
            assert answer.json()["state"] == "waiting"
    assert server.returncode == 130
