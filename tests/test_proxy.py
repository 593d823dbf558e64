"""`wanmock proxy`: a wanmock is the upstream (never a live provider). In-process through
httpx.ASGITransport by default; real sockets where the socket is the point (the official SDK,
the command and its signals, a dropped connection)."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from wanmock.contracts.client import TextToVideo, WanClient
from wanmock.contracts.client.transport import ASGIThreadTransport
from wanmock.contracts.tools.proxy import Proxy, create_proxy_app, passed_headers
from wanmock.contracts.tools.recording import write_cassette
from wanmock.contracts.tools.traffic import Exchange, Findings, TrafficChecker, judge, value_at
from wanmock.mockserver.app import create_app
from wanmock.mockserver.cli import main
from wanmock.mockserver.clock import ManualClock
from wanmock.mockserver.config import ServerConfig
from wanmock.mockserver.profiles import profile_for
from wanmock.mockserver.replay import create_replay_app
from wanmock.mockserver.serve import listen
from wanmock.schemas import catalog

from tests.conftest import example_body, submit_headers

KEY = "test-key"
SECRET = "sk-live-SECRET-123456"
PROVIDERS = sorted(catalog().providers)


class Rig:
    """A mock (manual clock) as the upstream of a proxy on the same clock, both in-process."""

    def __init__(
        self, provider: str, tmp: Path, *, mode: str = "observe", record: bool = False, timing: str = "realistic"
    ) -> None:
        self.provider = provider
        self.clock = ManualClock()
        config = ServerConfig(providers=(provider,), timing=timing, seed=3, clock=self.clock, media_dir=tmp)
        self.upstream = create_app(config)
        self.proxy = Proxy(
            provider,
            "http://upstream.test",
            mode=mode,
            record=record,
            transport=httpx.ASGITransport(app=self.upstream),
            now=self.clock.now,
        )
        self.app = create_proxy_app(self.proxy)
        self.transport = ASGIThreadTransport(self.app)
        self.http = httpx.Client(transport=self.transport, base_url="http://proxy.test")
        self.admin_transport = ASGIThreadTransport(self.upstream)
        self.admin = httpx.Client(transport=self.admin_transport, base_url="http://upstream.test")

    def client(self, key: str = KEY) -> WanClient:
        return WanClient(
            self.provider,
            key,
            base_url="http://proxy.test",
            transport=self.transport,
            sleep=self.clock.advance,
            clock=self.clock.now,
        )

    def findings(self) -> dict[str, Any]:
        answer = self.http.get("/__proxy/findings")
        assert answer.status_code == 200
        return answer.json()  # type: ignore[no-any-return]

    def journal(self) -> list[dict[str, Any]]:
        return self.admin.get("/__admin/journal").json()["entries"]  # type: ignore[no-any-return]

    def submit(self, body: Any, headers: dict[str, str] | None = None, kind: str = "t2v") -> httpx.Response:
        p = catalog().provider(self.provider)
        path = p.endpoints["submit"].paths[0].replace("{model}", p.models[kind].id)
        return self.http.post(path, json=body, headers={**submit_headers(self.provider), **(headers or {})})

    def close(self) -> None:
        self.http.close()
        self.admin.close()
        self.transport.shutdown()
        self.admin_transport.shutdown()
        self.upstream.state.wanmock.media.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Any]:
    made: list[Rig] = []

    def make(provider: str = "dashscope", **kwargs: Any) -> Rig:
        made.append(Rig(provider, tmp_path, **kwargs))
        return made[-1]

    yield make
    for r in made:
        r.close()


def lifecycle(r: Rig, key: str = KEY, prompt: str = "a red ball on a table") -> str:
    with r.client(key) as wan:
        status = wan.wait(wan.submit(TextToVideo(prompt, resolution="720P", duration=5)), timeout=3000)
    assert status.state == "succeeded", status
    return status.task_id


# -- clean traffic ----------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_clean_lifecycle_yields_no_finding(rig: Any, provider: str) -> None:
    r = rig(provider)
    lifecycle(r)
    traffic(r)  # a refused key too
    document = r.findings()
    assert document["findings"] == []
    assert document["exchanges"] >= 6


def test_findings_report_exchanges_and_the_mode(rig: Any) -> None:
    r = rig()
    health = r.http.get("/__proxy/health")
    assert health.status_code == 200
    assert health.json()["mode"] == "observe"
    assert r.findings()["exchanges"] == 0


# -- faithful forwarding -----------------------------------------------------------------------


async def echo(scope: Any, receive: Any, send: Any) -> None:
    """An upstream that answers what it received, with awkward headers."""
    request = Request(scope, receive)
    body = await request.body()
    seen = {
        "method": request.method,
        "raw_path": scope["raw_path"].decode(),
        "query": scope["query_string"].decode(),
        "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
        "body": body.decode(),
    }
    response = Response(json.dumps(seen), 207, media_type="application/json")
    response.raw_headers += [
        (b"set-cookie", b"a=1; Path=/"),
        (b"set-cookie", b"b=2; Path=/"),
        (b"x-upstream", b"yes"),
        (b"keep-alive", b"timeout=5"),
    ]
    await response(scope, receive, send)


def test_requests_and_answers_pass_unchanged() -> None:
    upstream = Starlette()
    upstream.router.default = echo
    proxy = Proxy("dashscope", "http://upstream.test/base", transport=httpx.ASGITransport(app=upstream))
    transport = ASGIThreadTransport(create_proxy_app(proxy))
    try:
        with httpx.Client(transport=transport, base_url="http://proxy.test") as http:
            answer = http.request(
                "PATCH",
                "/api/v1/odd%2Fpath/x%20y?b=2&a=1&a=%2F",
                content=b'{"raw": true,  "spaces": 1}',
                headers=[
                    ("Authorization", f"Bearer {SECRET}"),
                    ("X-Custom", "one"),
                    ("X-Custom", "two"),
                    ("Connection", "keep-alive, X-Hop"),
                    ("X-Hop", "must not pass"),
                    ("Proxy-Authorization", "Basic for-the-proxy"),
                    ("Content-Type", "text/plain"),
                ],
            )
    finally:
        transport.shutdown()
    assert answer.status_code == 207
    assert answer.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert answer.headers["x-upstream"] == "yes"
    assert "keep-alive" not in answer.headers
    seen = answer.json()
    assert seen["method"] == "PATCH"
    assert seen["raw_path"] == "/base/api/v1/odd%2Fpath/x%20y"
    assert seen["query"] == "b=2&a=1&a=%2F"
    assert seen["body"] == '{"raw": true,  "spaces": 1}'
    headers = seen["headers"]
    assert ["authorization", f"Bearer {SECRET}"] in headers
    assert [h for h in headers if h[0] == "x-custom"] == [["x-custom", "one"], ["x-custom", "two"]]
    assert ["host", "upstream.test"] in headers
    dropped = {"host", "connection", "x-hop", "proxy-authorization"}
    sent = [[k.decode().lower(), v.decode()] for k, v in answer.request.headers.raw]
    assert [h for h in headers if h[0] != "host"] == [h for h in sent if h[0] not in dropped]


def test_hop_by_hop_headers_are_dropped_and_named_ones_too() -> None:
    raw = [(b"Connection", b"close, X-Secret-Hop"), (b"X-Secret-Hop", b"1"), (b"TE", b"trailers"), (b"X-Kept", b"1")]
    assert passed_headers(raw) == [(b"X-Kept", b"1")]


def test_an_unreachable_upstream_is_a_bad_gateway_in_the_providers_envelope() -> None:
    proxy = Proxy("dashscope", "http://127.0.0.1:9")  # the discard port: nothing listens
    transport = ASGIThreadTransport(create_proxy_app(proxy))
    try:
        with httpx.Client(transport=transport, base_url="http://proxy.test") as http:
            answer = http.get("/api/v1/tasks/abc", headers={"Authorization": f"Bearer {KEY}"})
    finally:
        transport.shutdown()
    assert answer.status_code == 502
    assert answer.json()["code"] == "InternalError"  # DashScope's code for a server-side failure
    assert "upstream" in answer.headers["x-wanmock-proxy"]


# -- the answer checks: each simulated drift kind upstream -------------------------------------

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


def traffic(r: Rig, key: str = KEY) -> None:
    """What an application sends: a refused key, a submit, polls while running and when done."""
    body = example_body(r.provider, "t2v")
    r.submit(body, headers={"Authorization": "Bearer invalid"})
    submitted = r.submit(body, headers={"Authorization": f"Bearer {key}"})
    assert submitted.status_code == 200, submitted.text
    task_id = r.admin.get("/__admin/tasks").json()["tasks"][-1]["id"]
    poll = catalog().provider(r.provider).endpoints["poll"]
    path = poll.paths[0].replace("{task_id}", task_id)
    params = {k: v.replace("{task_id}", task_id) for k, v in poll.query.items()}
    for seconds in (30, 1000):
        r.clock.advance(seconds)
        assert r.http.get(path, params=params, headers={"Authorization": f"Bearer {key}"}).status_code == 200


@pytest.mark.parametrize(
    ("provider", "rule", "severity", "kind"), SIMULATED, ids=[f"{s[0]}-{s[1]['kind']}" for s in SIMULATED]
)
def test_each_simulated_drift_upstream_is_reported_with_its_severity(
    rig: Any, provider: str, rule: dict[str, Any], severity: str, kind: str
) -> None:
    r = rig(provider)
    assert r.admin.post("/__admin/drift", json={"provider": provider, **rule}).status_code == 201
    traffic(r)
    findings = r.findings()["findings"]
    matching = [f for f in findings if f["kind"] == kind and f["direction"] == "answer"]
    assert matching, findings
    assert {f["severity"] for f in matching} == {severity}
    for f in matching:
        assert f["endpoint"] and f["path"] and f["expected"] and f["seen"]
        assert f["count"] >= 1 and f["first_seen"] <= f["last_seen"]


def test_findings_are_deduplicated_and_counted(rig: Any) -> None:
    r = rig("dashscope")
    r.admin.post("/__admin/drift", json={"provider": "dashscope", "kind": "add_field", "pointer": "/output/x"})
    traffic(r)
    traffic(r)
    new = [f for f in r.findings()["findings"] if f["kind"] == "new field"]
    assert len(new) == 2  # one in submit answers, one in poll answers
    assert sorted(f["count"] for f in new) == [2, 4]
    assert r.http.delete("/__proxy/findings").status_code == 200
    assert r.findings() == {**r.findings(), "exchanges": 0, "findings": []}


# -- lifecycles (the pure checker) -------------------------------------------------------------


def exchange(
    method: str, path: str, status: int, body: Any, at: float, query: dict[str, str] | None = None
) -> Exchange:
    return Exchange(
        method,
        path,
        query or {},
        {"authorization": f"Bearer {KEY}", "content-type": "application/json", "x-dashscope-async": "enable"},
        json.dumps({"model": "wan2.7-t2v", "input": {"prompt": "a cat"}}).encode() if method == "POST" else b"",
        at,
        status,
        {"content-type": "application/json"},
        json.dumps(body).encode(),
    )


def observe(checker: TrafficChecker, ex: Exchange) -> None:
    found = checker.match(ex.method, ex.path)
    assert found is not None
    checker.check(ex, found, judge(checker.profile, found, ex.headers, ex.body))


def dashscope_poll(word: str, **output: Any) -> dict[str, Any]:
    base = {"task_id": "t1", "task_status": word, "submit_time": "2026-01-01 00:00:00.000"}
    if word in ("RUNNING", "SUCCEEDED", "FAILED"):
        base["scheduled_time"] = "2026-01-01 00:00:07.000"
    if word in ("SUCCEEDED", "FAILED"):
        base["end_time"] = "2026-01-01 00:02:00.000"
    if word == "SUCCEEDED":
        base["video_url"] = "https://example.com/v.mp4"
        return {"request_id": "r", "output": {**base, **output}, "usage": {"duration": 5, "video_count": 1, "SR": 720}}
    return {"request_id": "r", "output": {**base, **output}}


LIFECYCLES = [
    (["RUNNING", "PENDING"], "status went backwards", "breaking"),
    (["SUCCEEDED", "RUNNING"], "terminal state left", "breaking"),
    (["FAILED", "SUCCEEDED"], "terminal state left", "breaking"),
    (["RUNNING", "UNKNOWN"], "task forgotten", "warning"),
]


@pytest.mark.parametrize(
    ("words", "kind", "severity"), LIFECYCLES, ids=[c[1] + "-" + "-".join(c[0]) for c in LIFECYCLES]
)
def test_lifecycle_breaches_are_found(words: list[str], kind: str, severity: str) -> None:
    findings = Findings("dashscope")
    checker = TrafficChecker("dashscope", findings, profile_for("dashscope", ServerConfig()))
    submit = {"request_id": "r", "output": {"task_id": "t1", "task_status": "PENDING"}}
    observe(checker, exchange("POST", "/api/v1/services/aigc/video-generation/video-synthesis", 200, submit, 0))
    for i, word in enumerate(words, start=1):
        body = dashscope_poll(word, code="InternalError", message="x") if word == "FAILED" else dashscope_poll(word)
        observe(checker, exchange("GET", "/api/v1/tasks/t1", 200, body, 100.0 * i))
    found = [f for f in findings.snapshot() if f.kind == kind]
    assert [(f.severity, f.direction) for f in found] == [(severity, "lifecycle")], findings.snapshot()


def test_a_result_url_outside_succeeded_and_timings_are_checked() -> None:
    findings = Findings("dashscope")
    checker = TrafficChecker("dashscope", findings, profile_for("dashscope", ServerConfig()))
    submit = {"request_id": "r", "output": {"task_id": "t1", "task_status": "PENDING"}}
    observe(checker, exchange("POST", "/api/v1/services/aigc/video-generation/video-synthesis", 200, submit, 0))
    observe(
        checker, exchange("GET", "/api/v1/tasks/t1", 200, dashscope_poll("RUNNING", video_url="https://x/v.mp4"), 1)
    )
    observe(checker, exchange("GET", "/api/v1/tasks/t1", 200, dashscope_poll("SUCCEEDED"), 2))
    kinds = {f.kind: f for f in findings.snapshot()}
    assert kinds["result URL outside succeeded"].severity == "breaking"
    assert kinds["timing outside the documented range"].severity == "warning"
    assert kinds["timing outside the documented range"].seen == "2 s"
    # terminal -> UNKNOWN after the documented retention is expiry, not a breach
    observe(
        checker,
        exchange(
            "GET",
            "/api/v1/tasks/t1",
            200,
            {"request_id": "r", "output": {"task_id": "t1", "task_status": "UNKNOWN"}},
            86_500,
        ),
    )
    assert "terminal state left" not in {f.kind for f in findings.snapshot()}


def test_json_paths_resolve() -> None:
    body = {"a": {"b c": [1, {"d": "x"}]}}
    assert value_at(body, '$.a["b c"][1].d') == "x"
    with pytest.raises(KeyError):
        value_at(body, "$.a.zz")
