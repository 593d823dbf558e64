"""Drift detection end to end, offline: the mock drifts on command, `wanmock drift` notices."""

from __future__ import annotations

import json
import xml.dom.minidom
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from wanmock.contracts.tools.drift import Observation, compare
from wanmock.mockserver.cli import main
from wanmock.schemas import catalog

from tests.test_serve_cli import Server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server("--timing", "fast", "--clock", "manual", "--seed", "9")
    yield s
    s.stop()


@pytest.fixture
def drifted(server: Server) -> Iterator[Any]:
    def add(**rule: Any) -> None:
        response = server.client.post("/__admin/drift", json=rule)
        assert response.status_code == 201, response.text

    yield add
    server.client.delete("/__admin/drift")


def drift(server: Server, capsys: pytest.CaptureFixture[str], provider: str, *args: str) -> tuple[int, str]:
    code = main(["drift", "--provider", provider, "--target", server.origin, *args])
    return code, capsys.readouterr().out


@pytest.mark.parametrize("provider", sorted(catalog().providers))
def test_no_drift_reports_nothing_and_exits_0(
    server: Server, capsys: pytest.CaptureFixture[str], provider: str
) -> None:
    code, out = drift(server, capsys, provider, "--fail-on", "warning")
    assert code == 0, out
    assert "no drift" in out


SIMULATED = [
    ("dashscope", {"kind": "move_result_url"}, "breaking", "result URL moved"),
    ("apiyi", {"kind": "move_result_url"}, "breaking", "result URL moved"),
    ("modellix", {"kind": "remove_field", "pointer": "/data/task_id"}, "breaking", "required field missing"),
    (
        "aimlapi",
        {"kind": "rename_field", "pointer": "/id", "to": "/generation_id"},
        "breaking",
        "required field missing",
    ),
    (
        "dashscope",
        {"kind": "add_status_word", "state": "running", "word": "PAUSED"},
        "breaking",
        "status word outside the vocabulary",
    ),
    ("modellix", {"kind": "change_error_envelope"}, "breaking", "error envelope changed"),
    (
        "aimlapi",
        {"kind": "change_status_code", "from_status": 401, "to_status": 403},
        "breaking",
        "status code changed",
    ),
    ("apiyi", {"kind": "add_field", "pointer": "/queue_position", "value": 3}, "warning", "new field"),
    ("dashscope", {"kind": "add_field", "pointer": "/output/progress", "value": 30}, "warning", "new field"),
]


@pytest.mark.parametrize(
    ("provider", "rule", "severity", "kind"), SIMULATED, ids=[f"{s[0]}-{s[1]['kind']}" for s in SIMULATED]
)
def test_each_simulated_drift_is_reported_with_its_severity(
    server: Server,
    drifted: Any,
    capsys: pytest.CaptureFixture[str],
    provider: str,
    rule: dict[str, Any],
    severity: str,
    kind: str,
) -> None:
    drifted(provider=provider, **rule)
    code, out = drift(server, capsys, provider, "--format", "json", "--fail-on", "breaking")
    findings = json.loads(out)["findings"]
    matching = [f for f in findings if f["kind"] == kind]
    assert matching, findings
    assert {f["severity"] for f in matching} == {severity}
    assert code == (1 if severity == "breaking" else 0)
    if severity == "warning":
        assert drift(server, capsys, provider, "--fail-on", "warning")[0] == 1


def test_reports_in_every_format(
    server: Server, drifted: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    drifted(provider="dashscope", kind="add_status_word")
    code, markdown = drift(server, capsys, "dashscope", "--format", "markdown")
    assert code == 1
    assert "| **breaking** | poll t2v | status word outside the vocabulary |" in markdown
    junit = tmp_path / "drift.xml"
    assert drift(server, capsys, "dashscope", "--format", "junit", "--output", str(junit))[0] == 1
    suite = xml.dom.minidom.parse(str(junit)).getElementsByTagName("testsuite")[0]
    assert int(suite.getAttribute("failures")) >= 1
    code, text = drift(server, capsys, "dashscope")
    assert "BREAKING" in text
    assert "PAUSED" in text


def test_volatile_values_never_count() -> None:
    body = {
        "request_id": "a-different-id",
        "output": {
            "task_id": "another",
            "task_status": "SUCCEEDED",
            "video_url": "https://elsewhere.example/x.mp4?Expires=1&Signature=zzz",
            "end_time": "2030-01-01 00:00:00.000",
        },
        "usage": {"video_count": 1},
    }
    assert compare(Observation("dashscope", "poll", "poll-response", 200, body, expected_status=200)) == []


def test_cassettes_are_compared_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    interactions = [
        {
            "endpoint": "submit",
            "response": {
                "status": 200,
                "headers": {"content-type": "application/json"},
                "body": {"output": {"task_id": "t", "task_status": "PENDING"}, "request_id": "r"},
            },
        },
        {"endpoint": "poll", "response": {"status": 200, "headers": {}, "body": {"status": "done", "task_id": "t"}}},
    ]
    (tmp_path / "cassette.json").write_text(json.dumps({"provider": "apiyi", "interactions": interactions}))
    code = main(["drift", "--provider", "apiyi", "--cassette", str(tmp_path), "--format", "json"])
    findings = json.loads(capsys.readouterr().out)["findings"]
    assert code == 1
    assert [f["kind"] for f in findings] == ["status word outside the vocabulary"]


def test_live_drift_needs_a_key(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MODELLIX_API_KEY", raising=False)
    assert main(["drift", "--provider", "modellix", "--live"]) == 2
    assert "MODELLIX_API_KEY" in capsys.readouterr().err


def test_drift_rules_are_validated(server: Server) -> None:
    bad = httpx.post(f"{server.origin}/__admin/drift", json={"provider": "dashscope", "kind": "explode"})
    assert bad.status_code == 400
    assert "kind must be one of" in bad.json()["error"]
