"""`wanmock proxy`: a wanmock is the upstream (never a live provider). In-process through
httpx.ASGITransport by default; real sockets where the socket is the point (the official SDK,
the command and its signals, a dropped connection)."""

from __future__ import annotations

import base64
import json
import signal
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
from wanmock.contracts.tools.launcher import ServeProcess
from wanmock.contracts.tools.proxy import Proxy, create_proxy_app, passed_headers
from wanmock.contracts.tools.traffic import Exchange, Findings, TrafficChecker, judge, value_at
from wanmock.mockserver.app import create_app
from wanmock.mockserver.cassette import write_cassette
from wanmock.mockserver.cli import main
from wanmock.mockserver.clock import ManualClock
from wanmock.mockserver.config import ServerConfig
from wanmock.mockserver.profiles import profile_for
from wanmock.mockserver.replay import create_replay_app
from wanmock.mockserver.serve import listen
from wanmock.schemas import catalog

from tests.conftest import example_body, submit_headers
from tests.test_drift import SIMULATED

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

# the same simulated kinds and gradings as `wanmock drift` (one list, tests/test_drift.py)


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
        assert f["endpoint"]
        assert f["path"]
        assert f["expected"]
        assert f["seen"]
        assert f["count"] >= 1
        assert f["first_seen"] <= f["last_seen"]


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


# -- the request checks and enforce mode -------------------------------------------------------


def invalid_body(provider: str) -> dict[str, Any]:
    body = example_body(provider, "t2v")
    target = body.setdefault("parameters", {}) if "input" in body else body
    target["duration"] = 99
    return body


@pytest.mark.parametrize("provider", PROVIDERS)
def test_enforce_answers_a_refused_body_itself_as_the_provider_would(rig: Any, provider: str) -> None:
    r = rig(provider, mode="enforce")
    answer = r.submit(invalid_body(provider))
    assert answer.headers["x-wanmock-proxy"] == "refused by the contract (enforce mode)"
    assert r.journal() == []  # never reached the provider
    direct = r.admin.post(answer.request.url.path, json=invalid_body(provider), headers=submit_headers(provider))
    assert answer.status_code == direct.status_code
    volatile = {"request_id", "requestId", "timestamp"}
    assert {k: v for k, v in answer.json().items() if k not in volatile} == {
        k: v for k, v in direct.json().items() if k not in volatile
    }  # the same envelope, code and message
    findings = r.findings()["findings"]
    assert [(f["severity"], f["direction"], f["kind"]) for f in findings] == [
        ("breaking", "request", "request refused by the schema")
    ]
    assert findings[0]["path"].endswith("duration")
    assert findings[0]["seen"] == "99"


def test_enforce_forwards_what_the_contract_accepts(rig: Any) -> None:
    r = rig("dashscope", mode="enforce")
    lifecycle(r)
    assert r.findings()["findings"] == []
    assert next(e["endpoint"] for e in r.journal()) == "submit"


def test_observe_forwards_a_refused_body_and_reports_the_applications_mistake(rig: Any) -> None:
    r = rig("dashscope")
    answer = r.submit(invalid_body("dashscope"), headers={"X-DashScope-Async": "disable"})
    assert answer.status_code == 403  # DashScope without X-DashScope-Async: AccessDenied (providers.md 7.1)
    assert "x-wanmock-proxy" not in answer.headers
    assert [e["endpoint"] for e in r.journal()] == ["submit"]
    kinds = {(f["kind"], f["path"]) for f in r.findings()["findings"] if f["direction"] == "request"}
    assert ("missing required header", "X-DashScope-Async") in kinds
    assert ("request refused by the schema", "$.parameters.duration") in kinds


def test_enforce_refuses_a_request_without_a_key_in_the_providers_shape(rig: Any) -> None:
    r = rig("modellix", mode="enforce")
    answer = r.http.get("/api/v1/tasks/abc")
    assert answer.status_code == 401
    assert answer.json()["code"] == 401
    assert r.journal() == []


def test_a_provider_more_lenient_than_the_contract_is_a_warning() -> None:
    body = invalid_body("dashscope")
    upstream_accepts = Proxy("dashscope", "http://x")  # a judge only
    found = upstream_accepts.checker.match("POST", "/api/v1/services/aigc/video-generation/video-synthesis")
    assert found is not None
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json", "x-dashscope-async": "enable"}
    judgement = judge(upstream_accepts.profile, found, headers, json.dumps(body).encode())
    ex = Exchange("POST", found.endpoint.paths[0], {}, headers, json.dumps(body).encode(), 0.0, 200)
    ex.response_headers = {"content-type": "application/json"}
    ex.response_body = json.dumps({"request_id": "r", "output": {"task_id": "t", "task_status": "PENDING"}}).encode()
    upstream_accepts.checker.check(ex, found, judgement)
    kinds = {(f.severity, f.kind) for f in upstream_accepts.findings.snapshot()}
    assert ("warning", "accepted a request the contract refuses") in kinds


# -- keys never written ------------------------------------------------------------------------


def forms(key: str) -> list[str]:
    raw = key.encode()
    return [
        key,
        quote(key, safe=""),
        quote_plus(key),
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
    ]


@pytest.mark.parametrize("key", [SECRET, "sk/live+SECRET=789"])
def test_the_key_appears_in_no_finding_report_or_cassette_in_any_encoding(rig: Any, tmp_path: Path, key: str) -> None:
    from wanmock.contracts.tools.proxy_cli import report_text

    r = rig("dashscope", record=True)
    for i, value in enumerate(forms(key)):  # the provider echoes the key in new fields
        rule = {"provider": "dashscope", "kind": "add_field", "pointer": f"/output/echo{i}", "value": value}
        assert r.admin.post("/__admin/drift", json=rule).status_code == 201
    lifecycle(r, key=key, prompt=f"a cat {key} {base64.b64encode(key.encode()).decode()}")
    r.http.get("/api/v1/tasks/none", params={"api_key": key}, headers={"Authorization": f"Bearer {key}"})
    r.submit(invalid_body("dashscope"), headers={"Authorization": f"Bearer {key}", "X-Api-Key": key})
    document = r.findings()
    assert any(f["kind"] == "new field" for f in document["findings"])
    outputs = {"findings": json.dumps(document)}
    for fmt in ("text", "json", "junit", "markdown"):
        outputs[fmt] = report_text(r.proxy, fmt)
    cassette = r.proxy.cassette()
    assert cassette is not None
    assert cassette["tasks"]
    outputs["cassette"] = write_cassette(tmp_path / "cassette", cassette).read_text(encoding="utf-8")
    for name, text in outputs.items():
        for form in forms(key):
            assert form not in text, (name, form)
            assert form.rstrip("=") not in text, (name, form)


# -- recording ---------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_recorded_traffic_replays_and_checks_offline(
    rig: Any, tmp_path: Path, provider: str, capsys: pytest.CaptureFixture[str]
) -> None:
    r = rig(provider, record=True)
    lifecycle(r)
    cassette = r.proxy.cassette()
    assert cassette is not None
    [(task_id, task)] = cassette["tasks"].items()
    assert task["kind"] == "t2v"
    polls = [cassette["interactions"][i] for i in task["polls"]]
    assert len(polls) >= 2
    assert [p["elapsed"] for p in polls] == sorted(p["elapsed"] for p in polls)
    assert polls[-1]["elapsed"] > 0
    directory = tmp_path / "recorded"
    write_cassette(directory, cassette)
    assert main(["drift", "--provider", provider, "--cassette", str(directory), "--fail-on", "warning"]) == 0
    capsys.readouterr()
    clock = ManualClock()
    replay = ASGIThreadTransport(create_replay_app(directory, clock))
    try:
        wan = WanClient(
            provider, KEY, base_url="http://replay.test", transport=replay, sleep=clock.advance, clock=clock.now
        )
        with wan:
            done = wan.wait(
                wan.submit(TextToVideo("a red ball on a table", resolution="720P", duration=5)), timeout=3000
            )
    finally:
        replay.shutdown()
    assert done.state == "succeeded"
    assert done.task_id == task_id


# -- fault rules on proxied traffic -------------------------------------------------------------


def test_an_error_rule_answers_for_the_provider_with_retry_after(rig: Any) -> None:
    r = rig("dashscope")
    rule = {"action": "error", "status": 429, "retry_after": 7, "endpoint": "submit", "count": 1}
    added = r.http.post("/__proxy/faults", json=rule)
    assert added.status_code == 201, added.text
    refused = r.submit(example_body("dashscope", "t2v"))
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "7"
    assert refused.json()["code"] == "Throttling.RateQuota"  # DashScope's documented code [D3]
    assert r.journal() == []  # the provider never saw it
    assert r.submit(example_body("dashscope", "t2v")).status_code == 200  # count spent
    assert r.http.get("/__proxy/faults").json() == {"rules": []}


def test_latency_rules_fire_on_proxied_polls_and_fail_rules_are_refused(rig: Any) -> None:
    r = rig("dashscope")
    r.http.post("/__proxy/faults", json={"action": "latency", "latency_seconds": 0.01, "endpoint": "poll"})
    lifecycle(r)
    [rule] = r.http.get("/__proxy/faults").json()["rules"]
    assert rule["hits"] >= 2
    refused = r.http.post("/__proxy/faults", json={"action": "fail", "endpoint": "submit"})
    assert refused.status_code == 400
    other = r.http.post("/__proxy/faults", json={"action": "drop", "provider": "modellix"})
    assert other.status_code == 400
    assert r.http.delete("/__proxy/faults").status_code == 200


# -- the control plane -------------------------------------------------------------------------


def test_the_control_plane_needs_the_token_refuses_web_pages_and_wants_json(tmp_path: Path) -> None:
    proxy = Proxy("dashscope", "http://127.0.0.1:9", admin_token="s3cret")
    transport = ASGIThreadTransport(create_proxy_app(proxy))
    token = {"X-Wanmock-Admin-Token": "s3cret"}
    try:
        with httpx.Client(transport=transport, base_url="http://proxy.test") as http:
            assert http.get("/__proxy/health").status_code == 200
            assert http.get("/__proxy/findings").status_code == 401
            assert http.get("/__proxy/findings", headers=token).status_code == 200
            assert http.get("/__proxy/findings", headers={**token, "Origin": "http://evil.test"}).status_code == 403
            text = http.post("/__proxy/faults", content=b'{"action": "drop"}', headers=token)
            assert text.status_code == 415
            assert http.get("/__proxy/nothing").status_code == 404
    finally:
        transport.shutdown()


# -- over real sockets -------------------------------------------------------------------------


class Threaded:
    """An ASGI app served by uvicorn on 127.0.0.1, port 0, in a thread (ready when started)."""

    def __init__(self, app: Any) -> None:
        self.sock = listen("127.0.0.1", 0)
        self.origin = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise AssertionError("the server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Any]:
    """A DashScope mock (realistic timing, manual clock) and a proxy in front of it, on sockets."""
    clock = ManualClock()
    config = ServerConfig(providers=("dashscope",), timing="realistic", seed=4, clock=clock, media_dir=tmp_path)
    upstream_app = create_app(config)
    upstream = Threaded(upstream_app)
    proxy = Proxy("dashscope", upstream.origin, now=clock.now)
    front = Threaded(create_proxy_app(proxy))
    yield clock, upstream, proxy, front
    front.stop()
    upstream.stop()
    upstream_app.state.wanmock.media.close()


@pytest.mark.slow
def test_the_official_sdk_through_the_proxy_yields_no_finding(served: Any) -> None:
    import dashscope
    from dashscope import VideoSynthesis
    from wanmock.mockserver.media import probe

    clock, _, _proxy, front = served
    previous = dashscope.base_http_api_url
    dashscope.base_http_api_url = f"{front.origin}/api/v1"
    try:
        created = VideoSynthesis.async_call(
            model="wan2.7-i2v",
            api_key=KEY,
            media=[{"type": "first_frame", "url": "https://example.com/a.png"}],
            resolution="720P",
            duration=3,
        )
        assert created.status_code == 200, created
        clock.advance(400)
        done = VideoSynthesis.wait(created, api_key=KEY)
        fetched = VideoSynthesis.fetch(created.output.task_id, api_key=KEY)
    finally:
        dashscope.base_http_api_url = previous
    assert done.output.task_status == fetched.output.task_status == "SUCCEEDED"
    info = probe(httpx.get(done.output.video_url, timeout=30).content)
    assert (info["width"], info["height"], info["duration"]) == (1280, 720, 3.0)
    document = httpx.get(f"{front.origin}/__proxy/findings").json()
    assert document["findings"] == []
    assert document["exchanges"] == 3


@pytest.mark.slow
def test_a_drop_rule_breaks_the_connection(served: Any) -> None:
    _, upstream, _, front = served
    httpx.post(f"{front.origin}/__proxy/faults", json={"action": "drop", "endpoint": "poll", "count": 1})
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{front.origin}/api/v1/tasks/abc", headers={"Authorization": f"Bearer {KEY}"})
    after = httpx.get(f"{front.origin}/api/v1/tasks/abc", headers={"Authorization": f"Bearer {KEY}"})
    assert after.json()["output"]["task_status"] == "UNKNOWN"
    assert len(httpx.get(f"{upstream.origin}/__admin/journal").json()["entries"]) == 1


class ProxyCommand:
    """`wanmock proxy --port 0` through the one launcher, ready when its health endpoint answers."""

    def __init__(self, *args: str) -> None:
        command = [sys.executable, "-m", "wanmock.mockserver", "proxy", "--port", "0", *args]
        self.launched = ServeProcess(command=command, ready_path="/__proxy/health").start()
        self.origin = self.launched.origin

    def stop(self, sig: int = signal.SIGINT) -> tuple[int | None, str, str]:
        """Stop it with ``sig`` first; its exit status, standard output and error."""
        code = self.launched.stop(timeout=30, first=sig)
        return code, self.launched.output(), self.launched.errors()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_the_command_reports_on_a_signal_and_exits_by_fail_on(served: Any, tmp_path: Path, sig: int) -> None:
    _, upstream, _, _ = served
    report = tmp_path / "report.json"
    command = ProxyCommand(
        "--provider",
        "dashscope",
        "--upstream",
        upstream.origin,
        "--report",
        str(report),
        "--format",
        "json",
        "--record",
        str(tmp_path / "cassette"),
    )
    answer = httpx.post(
        f"{command.origin}/api/v1/services/aigc/video-generation/video-synthesis",
        json=invalid_body("dashscope"),
        headers={**submit_headers("dashscope"), "Authorization": f"Bearer {SECRET}"},
    )
    assert answer.status_code == 400
    code, out, err = command.stop(sig)
    assert code == 1, err
    assert "Traceback" not in err
    document = json.loads(report.read_text(encoding="utf-8"))
    assert document["exchanges"] == 1
    assert document["findings"][0]["kind"] == "request refused by the schema"
    assert (tmp_path / "cassette" / "cassette.json").is_file()
    for text in (out, err, report.read_text(encoding="utf-8"), (tmp_path / "cassette" / "cassette.json").read_text()):
        assert SECRET not in text


@pytest.mark.slow
def test_the_command_exits_0_without_findings_and_2_on_usage_errors(served: Any, tmp_path: Path) -> None:
    _, upstream, _, _ = served
    command = ProxyCommand("--provider", "dashscope", "--upstream", upstream.origin, "--fail-on", "warning")
    code, out, err = command.stop()
    assert (code, "Traceback" in err) == (0, False)
    assert "no proxy finding" in out
    assert main(["proxy", "--provider", "dashscope", "--upstream", "ftp://nowhere"]) == 2
    (tmp_path / "cassette.json").write_text("{}")
    assert main(["proxy", "--provider", "dashscope", "--record", str(tmp_path)]) == 2


def test_a_large_body_is_streamed_upstream_unchanged_and_not_checked() -> None:
    upstream = Starlette()
    upstream.router.default = echo
    proxy = Proxy("dashscope", "http://upstream.test", transport=httpx.ASGITransport(app=upstream))
    transport = ASGIThreadTransport(create_proxy_app(proxy))
    body = b'{"prompt": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    try:
        with httpx.Client(transport=transport, base_url="http://proxy.test") as http:
            answer = http.post(
                "/api/v1/services/aigc/video-generation/video-synthesis",
                content=body,
                headers={**submit_headers("dashscope"), "Content-Type": "application/json"},
            )
    finally:
        transport.shutdown()
    assert answer.json()["body"].encode() == body
    # the body was too large to judge: only what the headers show is checked
    assert [f.kind for f in proxy.findings.snapshot() if f.direction == "request"] == []


def test_a_compressed_answer_passes_compressed_and_is_checked_decoded(rig: Any) -> None:
    import asyncio
    import gzip

    from starlette.middleware.gzip import GZipMiddleware

    r = rig("dashscope")
    r.proxy.client._transport = httpx.ASGITransport(app=GZipMiddleware(r.upstream, minimum_size=0))
    r.admin.post("/__admin/drift", json={"provider": "dashscope", "kind": "add_field", "pointer": "/output/zz"})

    async def submit() -> tuple[httpx.Headers, bytes]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=r.app), base_url="http://proxy.test") as http:
            headers = {**submit_headers("dashscope"), "Accept-Encoding": "gzip"}
            path = "/api/v1/services/aigc/video-generation/video-synthesis"
            async with http.stream("POST", path, json=example_body("dashscope", "t2v"), headers=headers) as answer:
                return answer.headers, b"".join([chunk async for chunk in answer.aiter_raw()])

    headers, raw = asyncio.run(submit())
    assert headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(raw))["output"]["zz"] == "wanmock-drift"  # passed through compressed
    assert [f["kind"] for f in r.findings()["findings"]] == ["new field"]  # and checked decoded


def test_help_shows_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["proxy", "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert "examples:" in shown
    assert "wanmock proxy --provider dashscope" in shown
