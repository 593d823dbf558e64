"""The contract suite passes a correct client and catches realistic wrong ones, by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.dom.minidom
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from wanmock.contracts.client import errors
from wanmock.contracts.client.dialects import AimlApi, DashScope, Modellix, dialect_for
from wanmock.contracts.client.engine import WanClient
from wanmock.contracts.client.models import PreparedRequest, TaskStatus, VideoRequest
from wanmock.contracts.testing.runner import Report, Runner, in_process_target
from wanmock.mockserver.cli import main
from wanmock.schemas import catalog

from tests.test_serve_cli import Server


def run(provider: str, examples: int = 12, seed: int = 1, **factory: Any) -> Report:
    report = Report("in-process", seed)
    with in_process_target(provider, seed) as target:
        runner = Runner(target, seed=seed, **factory)
        for kind in catalog().provider(provider).models:
            report.results.append(runner.run(kind, examples))
    return report


def messages(report: Report) -> str:
    return "\n".join(f.render() for r in report.results for f in r.failures)


@pytest.mark.parametrize("provider", sorted(catalog().providers))
def test_the_reference_client_passes_every_check(provider: str) -> None:
    report = run(provider, examples=25)
    assert report.passed, messages(report)
    assert all(r.cases >= 25 for r in report.results)


# -- planted mistakes ------------------------------------------------------------------------


class UpperCaseAimlApi(AimlApi):
    """Sends DashScope's 1080P to AI/ML API (which spells it 1080p), without checking first."""

    def convert(self, name: str, value: Any) -> Any:
        return value

    def prepare_submit(self, request: VideoRequest, *, validate: bool = True) -> PreparedRequest:
        return super().prepare_submit(request, validate=False)


class ResourcesFallbackModellix(Modellix):
    """Reads the video URL from data.resources (an old fallback), not data.result.resources."""

    def parse_poll(self, task_id: str, status: int, headers: Any, body: Any) -> TaskStatus:
        parsed = super().parse_poll(task_id, status, headers, body)
        wrong = (body.get("data") or {}).get("resources") if isinstance(body, dict) else None
        url = wrong[0]["url"] if wrong else None
        return TaskStatus(parsed.provider, parsed.task_id, parsed.state, parsed.word, url, raw=parsed.raw)


class SyncDashScope(DashScope):
    """Forgets X-DashScope-Async: enable on create."""

    def prepare_body(self, kind: str, body: dict[str, Any]) -> PreparedRequest:
        prepared = super().prepare_body(kind, body)
        headers = {k: v for k, v in prepared.headers.items() if k != "X-DashScope-Async"}
        return PreparedRequest(prepared.method, prepared.path, headers, prepared.body)


class RetryingClient(WanClient):
    """Retries a submit after a transport error — which can bill twice."""

    def submit(self, request: VideoRequest) -> Any:
        try:
            return super().submit(request)
        except errors.TransportError:
            return super().submit(request)


def with_dialect(dialect: type) -> dict[str, Any]:
    def factory(*args: Any, **kwargs: Any) -> WanClient:
        return WanClient(*args, dialect=dialect(), **kwargs)

    return {"client_factory": factory}


PLANTED = [
    ("aimlapi", with_dialect(UpperCaseAimlApi), "request_conformance", ["$.resolution", '"1080P" is not one of']),
    ("modellix", with_dialect(ResourcesFallbackModellix), "client_reads_what_the_provider_said", ["wrong place"]),
    ("dashscope", with_dialect(SyncDashScope), "request_conformance", ["X-DashScope-Async: enable"]),
    ("apiyi", {"client_factory": RetryingClient}, "no_blind_submit_retry", ["sent 2 times", "bill twice"]),
]


@pytest.mark.parametrize(("provider", "factory", "check", "words"), PLANTED, ids=[p[2] + "-" + p[0] for p in PLANTED])
def test_the_contract_run_catches_a_wrong_client(
    provider: str, factory: dict[str, Any], check: str, words: list[str]
) -> None:
    report = run(provider, examples=15, **factory)
    assert not report.passed
    failures = [f for r in report.results for f in r.failures if f.check == check]
    assert failures, messages(report)
    text = failures[0].render()
    for word in words:
        assert word in text, text
    assert "seed:" in text
    assert "test-key" not in text  # the curl line carries $API_KEY, never the key


# -- the command line ------------------------------------------------------------------------


def test_cli_writes_reports_that_parse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report, junit = tmp_path / "r.json", tmp_path / "r.xml"
    code = main(["contract", "--provider", "modellix", "--model", "t2v", "--examples", "20", "--seed", "4",
                 "--report", str(report), "--junit", str(junit)])  # fmt: skip
    assert code == 0
    data = json.loads(report.read_text())
    assert data["passed"] is True
    assert data["seed"] == 4
    assert data["results"][0]["examples"] == 20
    suites = xml.dom.minidom.parse(str(junit)).getElementsByTagName("testsuite")
    assert suites[0].getAttribute("name") == "wanmock.modellix.t2v"
    assert suites[0].getAttribute("failures") == "0"
    assert "all checks passed" in capsys.readouterr().out


def test_cli_refuses_what_it_cannot_do(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["contract", "--provider", "aimlapi", "--model", "videoedit"]) == 2
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    assert main(["contract", "--provider", "dashscope", "--live"]) == 2
    assert "DASHSCOPE_API_KEY" in capsys.readouterr().err


@pytest.fixture(scope="module")
def modellix_server() -> Iterator[Server]:
    """Modellix alone at the root, instant timing on the system clock: what a live API looks like."""
    server = Server("--provider", "modellix", "--timing", "instant", "--seed", "2")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def manual_server() -> Iterator[Server]:
    server = Server("--timing", "fast", "--clock", "manual", "--seed", "3")
    yield server
    server.stop()


def contract_subprocess(*args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    if key:
        env["MODELLIX_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "wanmock.mockserver", "contract", "--provider", "modellix", *args],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip


@pytest.mark.slow
def test_live_mode_spends_nothing_unless_allowed(modellix_server: Server) -> None:
    def submits() -> list[dict[str, Any]]:
        entries = modellix_server.client.get("/__admin/journal", params={"endpoint": "submit"}).json()["entries"]
        return [e for e in entries if e["status"] == 200]

    before = len(submits())
    free = contract_subprocess("--live", "--target", modellix_server.origin, key="test-key")
    assert free.returncode == 0, free.stdout + free.stderr
    assert len(submits()) == before  # free probes only: no task was created
    paid = contract_subprocess("--live", "--target", modellix_server.origin, "--max-paid-tasks", "1", key="test-key")
    assert paid.returncode == 0, paid.stdout + paid.stderr
    created = submits()[before:]
    assert len(created) == 1
    assert created[0]["request_body"]["resolution"] == "720P"  # the cheapest parameters
    assert created[0]["request_body"]["duration"] == 2


@pytest.mark.slow
def test_contract_against_a_server_over_a_socket(manual_server: Server, tmp_path: Path) -> None:
    junit = tmp_path / "j.xml"
    done = contract_subprocess("--target", manual_server.origin, "--examples", "30", "--junit", str(junit))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all checks passed" in done.stdout
    xml.dom.minidom.parse(str(junit))


@pytest.mark.slow
def test_contract_refuses_a_target_on_the_system_clock(modellix_server: Server) -> None:
    done = contract_subprocess("--target", modellix_server.origin, "--examples", "5")
    assert done.returncode == 2
    assert "--clock manual" in done.stderr


def test_dialect_lookup_is_strict() -> None:
    with pytest.raises(errors.WanError, match="unknown provider"):
        dialect_for("openai")


@pytest.mark.parametrize("provider", sorted(catalog().providers))
def test_realistic_timing_is_no_false_failure(provider: str) -> None:
    """Regression: against `wanmock serve --timing realistic --clock manual` the status the client's
    wait() returned was paired with the first of its many polls and reported as misread."""
    report = Report("in-process", 3)
    with in_process_target(provider, 3, timing="realistic") as target:
        runner = Runner(target, seed=3)
        report.results.append(runner.run(next(iter(catalog().provider(provider).models)), 3))
    assert report.passed, messages(report)
