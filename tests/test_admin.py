"""The control plane under /__admin/: health, the journal, test-id scoping, forced transitions,
the clock and reset. Answers are plain JSON with {"error": ...} on a mistake."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from wanmock.mockserver.app import create_app
from wanmock.mockserver.clock import SystemClock
from wanmock.mockserver.config import ServerConfig
from wanmock.mockserver.http import fingerprint
from wanmock.schemas import catalog

from tests.conftest import AUTH, KEY, PROVIDERS, Mock, example_body

TEST = "X-Wanmock-Test"


def word(provider: str, state: str) -> str:
    return catalog().provider(provider).states[state].word


def assert_schema(provider: str, message: str, body: Any) -> None:
    issues = catalog().validate(provider, message, body)
    assert issues == [], f"{provider} {message} outside its schema: {issues}\n{body}"


def submit(mock: Mock, provider: str, kind: str = "t2v", test: str | None = None) -> str:
    headers = {TEST: test} if test else None
    response = mock.submit(provider, kind, example_body(provider, kind), headers=headers)
    assert response.status_code == 200, response.text
    return mock.task_id(provider, response)


def force(mock: Mock, provider: str, task_id: str, action: str, **kwargs: Any) -> httpx.Response:
    return mock.post(f"/__admin/tasks/{provider}/{task_id}/{action}", **kwargs)


def journal(mock: Mock, headers: dict[str, str] | None = None, /, **params: str) -> list[Any]:
    response = mock.get("/__admin/journal", params=params, headers=headers)
    assert response.status_code == 200, response.text
    entries: list[Any] = response.json()["entries"]
    return entries


def task_ids(mock: Mock, **params: str) -> set[str]:
    response = mock.get("/__admin/tasks", params=params)
    assert response.status_code == 200, response.text
    return {t["id"] for t in response.json()["tasks"]}


def detail(mock: Mock, provider: str, task_id: str) -> dict[str, Any]:
    response = mock.get(f"/__admin/tasks/{provider}/{task_id}")
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


def assert_admin_error(response: httpx.Response, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"], str)
    assert body["error"]
    for fragment in fragments:
        assert fragment in body["error"], body


# -- health -------------------------------------------------------------------------------


def test_health_reports_providers_timing_and_clock(mock: Mock, make_mock: Any) -> None:
    response = mock.get("/__admin/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["providers"] == PROVIDERS
    assert body["clock"] == "manual"
    assert body["timing"] == "fast"
    assert body["now"] == mock.clock.now()
    single = make_mock(providers=("apiyi",), timing="instant").get("/__admin/health").json()
    assert (single["providers"], single["timing"]) == (["apiyi"], "instant")


# -- journal ------------------------------------------------------------------------------


def test_journal_records_every_provider_request(mock: Mock) -> None:
    task_id = submit(mock, "dashscope", test="j1")
    mock.poll("dashscope", task_id, headers={TEST: "j1"})
    mock.poll("dashscope", "no-such-task")
    mock.get("/dashscope/api/v1/tasks/x", headers={"Authorization": "Bearer invalid"})
    mock.get("/dashscope/api/v9/nowhere", headers=AUTH)
    mock.get("/__admin/tasks")  # the control plane itself is not journaled

    entries = journal(mock)
    seen = [(e["method"], e["path"], e["status"], e["endpoint"], e["task_id"], e["test_id"]) for e in entries]
    seen[3] = (*seen[3][:4], "?", seen[3][5])  # a 401 is refused before the task id is read
    assert seen == [
        ("POST", mock.submit_path("dashscope", "t2v"), 200, "submit", task_id, "j1"),
        ("GET", f"/dashscope/api/v1/tasks/{task_id}", 200, "poll", task_id, "j1"),
        ("GET", "/dashscope/api/v1/tasks/no-such-task", 200, "poll", "no-such-task", None),
        ("GET", "/dashscope/api/v1/tasks/x", 401, "poll", "?", None),
        ("GET", "/dashscope/api/v9/nowhere", 404, None, None, None),
    ]
    assert all(e["provider"] == "dashscope" for e in entries)
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)
    first = entries[0]
    assert first["request_body"] == example_body("dashscope", "t2v")
    assert first["response_body"]["output"]["task_id"] == task_id
    assert first["at"] == mock.clock.now()


def test_journal_reads_the_task_id_from_a_query_parameter(mock: Mock) -> None:
    task_id = submit(mock, "aimlapi")
    mock.poll("aimlapi", task_id)
    [entry] = journal(mock, endpoint="poll")
    assert entry["path"] == "/aimlapi/v2/video/generations"
    assert entry["query"] == f"generation_id={task_id}"
    assert entry["task_id"] == task_id
    assert [e["endpoint"] for e in journal(mock, task=task_id)] == ["submit", "poll"]


def test_journal_filters_work_and_combine(mock: Mock) -> None:
    ds = submit(mock, "dashscope", test="f1")
    ap = submit(mock, "apiyi", test="f2")
    mock.poll("dashscope", ds, headers={TEST: "f1"})
    mock.poll("apiyi", ap)
    mock.poll("dashscope", "missing")
    mock.get("/modellix/api/v1/tasks/x")  # 401, no key

    def paths(**params: str) -> list[str]:
        return [f"{e['method']} {e['path']}" for e in journal(mock, **params)]

    ds_poll = f"GET /dashscope/api/v1/tasks/{ds}"
    ap_poll = f"GET /apiyi/v1/tasks/{ap}"
    ds_submit = "POST " + mock.submit_path("dashscope", "t2v")
    ap_submit = "POST " + mock.submit_path("apiyi", "t2v")
    missing = "GET /dashscope/api/v1/tasks/missing"
    assert paths(provider="dashscope") == [ds_submit, ds_poll, missing]
    assert paths(provider="apiyi") == [ap_submit, ap_poll]
    assert paths(endpoint="submit") == [ds_submit, ap_submit]
    assert paths(task=ds) == [ds_submit, ds_poll]
    assert paths(status="401") == ["GET /modellix/api/v1/tasks/x"]
    assert paths(path="/v1/tasks/") == [ds_poll, ap_poll, missing, "GET /modellix/api/v1/tasks/x"]
    assert paths(test="f1") == [ds_submit, ds_poll]
    assert paths(provider="dashscope", endpoint="poll") == [ds_poll, missing]
    assert paths(provider="dashscope", endpoint="poll", test="f1") == [ds_poll]
    assert paths(endpoint="poll", status="200", path="apiyi") == [ap_poll]
    assert paths(provider="apiyi", status="404") == []
    by_header = journal(mock, {TEST: "f2"})
    assert [e["task_id"] for e in by_header] == [ap]
    assert len(journal(mock)) == 6


def test_journal_never_holds_the_api_key(mock: Mock) -> None:
    task_id = submit(mock, "modellix")
    mock.poll("modellix", task_id)
    mock.get("/modellix/api/v1/tasks/x", headers={"Authorization": KEY})  # no scheme
    mock.get("/modellix/api/v1/tasks/x", headers={"Authorization": f"bearer {KEY}"})
    mock.get("/modellix/api/v1/tasks/x", headers={**AUTH, "X-Api-Key": KEY})
    mock.get("/modellix/api/v1/tasks/x", headers={**AUTH, "Cookie": f"session={KEY}"})

    text = mock.get("/__admin/journal").text
    assert KEY not in text
    assert KEY not in mock.get("/__admin/tasks").text
    redacted = f"<redacted sha256:{fingerprint(KEY)}>"
    entries = json.loads(text)["entries"]
    assert len(entries) == 6
    for entry in entries:
        assert entry["request_headers"]["authorization"] == redacted
    assert entries[-2]["request_headers"]["x-api-key"] == redacted
    assert entries[-1]["request_headers"]["cookie"].startswith("<redacted sha256:")


def test_journal_shortens_a_one_megabyte_data_uri(mock: Mock) -> None:
    body = example_body("modellix", "i2v")
    data_uri = "data:image/png;base64," + "A" * 1_000_000
    body["last_frame"] = data_uri
    response = mock.submit("modellix", "i2v", body)
    assert response.status_code == 200, response.text[:500]

    [entry] = journal(mock, provider="modellix")
    stored = entry["request_body"]["last_frame"]
    assert stored.startswith("data:image/png;base64,AAAA")
    assert len(stored) < 1_000
    assert str(len(data_uri)) in stored  # says how long the original was
    assert entry["request_body"]["seed"] == body["seed"]  # the rest is kept as sent
    assert len(mock.get("/__admin/journal").content) < 20_000
    task_id = mock.task_id("modellix", response)
    assert len(json.dumps(detail(mock, "modellix", task_id)["request"])) < 2_000


# -- test-id scoping ----------------------------------------------------------------------


def test_test_ids_scope_journal_tasks_rules_and_reset(mock: Mock) -> None:
    a_dashscope = submit(mock, "dashscope", test="a")
    a_tasks = {a_dashscope, submit(mock, "modellix", test="a")}
    b_tasks = {submit(mock, "dashscope", test="b"), submit(mock, "apiyi", test="b")}
    untagged = submit(mock, "aimlapi")
    rule_a = mock.post("/__admin/faults", json={"action": "latency"}, headers={TEST: "a"})
    rule_b = mock.post("/__admin/faults?test=b", json={"action": "latency"})
    assert (rule_a.status_code, rule_b.status_code) == (201, 201)
    assert (rule_a.json()["test_id"], rule_b.json()["test_id"]) == ("a", "b")

    assert {e["task_id"] for e in journal(mock, test="a")} == a_tasks
    assert {e["task_id"] for e in journal(mock, {TEST: "b"})} == b_tasks
    assert task_ids(mock, test="a") == a_tasks
    assert task_ids(mock, test="b") == b_tasks
    assert task_ids(mock, test="b", provider="apiyi") == b_tasks - task_ids(mock, provider="dashscope")
    scoped = mock.get("/__admin/tasks", headers={TEST: "a"}).json()["tasks"]
    assert {t["id"] for t in scoped} == a_tasks
    assert {t["test_id"] for t in scoped} == {"a"}
    listed = mock.get("/__admin/faults", headers={TEST: "a"}).json()["rules"]
    assert [r["id"] for r in listed] == [rule_a.json()["id"]]

    reset = mock.post("/__admin/reset?test=a")
    assert reset.status_code == 200
    assert reset.json() == {"reset": "a"}
    assert journal(mock, test="a") == []
    assert task_ids(mock, test="a") == set()
    assert task_ids(mock) == b_tasks | {untagged}
    assert {e["task_id"] for e in journal(mock, test="b")} == b_tasks
    assert len(journal(mock)) == 3
    rules = mock.get("/__admin/faults").json()["rules"]
    assert [r["id"] for r in rules] == [rule_b.json()["id"]]
    poll = mock.poll("dashscope", a_dashscope)
    assert mock.status_word("dashscope", poll) == word("dashscope", "unknown")

    assert mock.post("/__admin/reset", headers={TEST: "b"}).json() == {"reset": "b"}
    assert task_ids(mock) == {untagged}


def test_reset_without_a_test_id_forgets_everything(mock: Mock) -> None:
    submit(mock, "dashscope", test="a")
    submit(mock, "apiyi")
    mock.post("/__admin/faults", json={"action": "latency"})
    assert mock.post("/__admin/reset").json() == {"reset": "all"}
    assert task_ids(mock) == set()
    assert journal(mock) == []
    assert mock.get("/__admin/faults").json() == {"rules": []}


# -- tasks and forced transitions ---------------------------------------------------------


def test_task_listing_and_detail(mock: Mock) -> None:
    ds = submit(mock, "dashscope")
    ml = submit(mock, "modellix")
    assert task_ids(mock) == {ds, ml}
    assert task_ids(mock, provider="dashscope") == {ds}
    view = detail(mock, "dashscope", ds)
    assert view["id"] == ds
    assert view["provider"] == "dashscope"
    assert view["state"] == "queued"
    assert view["status_word"] == word("dashscope", "queued")
    assert view["model_id"] == example_body("dashscope", "t2v")["model"]
    assert view["owner"] == fingerprint(KEY)
    mock.advance(1.5)
    assert detail(mock, "dashscope", ds)["state"] == "running"
    assert_admin_error(mock.get(f"/__admin/tasks/apiyi/{ds}"), 404, "no such task")
    assert_admin_error(mock.get("/__admin/tasks/nowhere/x"), 404)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_advance_moves_queued_to_running_to_succeeded(mock: Mock, provider: str) -> None:
    task_id = submit(mock, provider)
    assert mock.status_word(provider, mock.poll(provider, task_id)) == word(provider, "queued")
    for state in ("running", "succeeded"):
        response = force(mock, provider, task_id, "advance")
        assert response.status_code == 200, response.text
        assert response.json()["state"] == state
        assert response.json()["status_word"] == word(provider, state)
        poll = mock.poll(provider, task_id)
        assert poll.status_code == 200
        assert_schema(provider, "poll-response", poll.json())
        assert mock.status_word(provider, poll) == word(provider, state)
    assert mock.result_url(provider, poll).startswith("http://mock/")
    assert_admin_error(force(mock, provider, task_id, "advance"), 409, "succeeded")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_succeed_finishes_a_queued_task_at_once(mock: Mock, provider: str) -> None:
    task_id = submit(mock, provider)
    response = force(mock, provider, task_id, "succeed")
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "succeeded"
    poll = mock.poll(provider, task_id)
    assert_schema(provider, "poll-response", poll.json())
    assert mock.status_word(provider, poll) == word(provider, "succeeded")
    assert mock.result_url(provider, poll).startswith(f"http://mock/__files/{provider}/{task_id}")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_fail_shows_the_given_code_in_the_providers_words(mock: Mock, provider: str) -> None:
    task_id = submit(mock, provider)
    mock.advance(1.5)  # running
    response = force(
        mock,
        provider,
        task_id,
        "fail",
        json={"code": "DataInspectionFailed", "message": "Inappropriate content."},
    )
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "failed"
    assert response.json()["error_code"] == "DataInspectionFailed"
    poll = mock.poll(provider, task_id)
    assert poll.status_code == 200
    body = poll.json()
    assert_schema(provider, "poll-response", body)
    assert mock.status_word(provider, poll) == word(provider, "failed")
    if provider == "dashscope":
        assert body["output"]["code"] == "DataInspectionFailed"
        assert body["output"]["message"] == "Inappropriate content."
    elif provider == "apiyi":
        assert body["error"]["message"] == "[DataInspectionFailed] Inappropriate content."
    elif provider == "aimlapi":
        assert body["error"] == {
            "name": "DataInspectionFailed",
            "message": "Inappropriate content.",
        }
    mock.advance(3600)
    assert mock.status_word(provider, mock.poll(provider, task_id)) == word(provider, "failed")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_forced_cancel_answers_in_the_providers_words(mock: Mock, provider: str) -> None:
    """DashScope says CANCELED; the others document no canceled word and show it as failed
    (README: "A canceled task on Modellix / AI/ML API ... shown as failed / error")."""
    task_id = submit(mock, provider)
    response = force(mock, provider, task_id, "cancel")
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "canceled"
    poll = mock.poll(provider, task_id)
    assert poll.status_code == 200, poll.text
    assert_schema(provider, "poll-response", poll.json())
    expected = "canceled" if "canceled" in catalog().provider(provider).states else "failed"
    assert mock.status_word(provider, poll) == word(provider, expected)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_expire_makes_the_provider_answer_as_for_an_expired_task(mock: Mock, provider: str) -> None:
    task_id = submit(mock, provider)
    force(mock, provider, task_id, "succeed")
    response = force(mock, provider, task_id, "expire")
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "expired"
    poll = mock.poll(provider, task_id)
    if provider in ("dashscope", "apiyi"):
        assert poll.status_code == 200
        assert_schema(provider, "poll-response", poll.json())
        assert mock.status_word(provider, poll) == word(provider, "unknown") == "UNKNOWN"
    else:  # Modellix documents 404; AI/ML API answers 404 by default
        assert poll.status_code == 404
        assert_schema(provider, "error", poll.json())
    assert_admin_error(force(mock, provider, task_id, "expire"), 409, "expired")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_terminal_tasks_refuse_transitions_with_409(mock: Mock, provider: str) -> None:
    task_id = submit(mock, provider)
    assert force(mock, provider, task_id, "succeed").status_code == 200
    for action in ("advance", "succeed", "fail", "cancel"):
        assert_admin_error(force(mock, provider, task_id, action), 409, task_id)
    assert detail(mock, provider, task_id)["state"] == "succeeded"  # nothing changed
    assert force(mock, provider, task_id, "expire").status_code == 200  # retention still ends
    for action in ("advance", "succeed", "fail", "cancel", "expire"):
        assert_admin_error(force(mock, provider, task_id, action), 409, "expired")


def test_unknown_tasks_and_actions_are_404(mock: Mock) -> None:
    for action in ("advance", "succeed", "fail", "cancel", "expire"):
        assert_admin_error(force(mock, "dashscope", "no-such-task", action), 404, "no such task")
    task_id = submit(mock, "dashscope")
    assert_admin_error(force(mock, "apiyi", task_id, "succeed"), 404)  # another provider's
    assert_admin_error(force(mock, "nowhere", task_id, "succeed"), 404)
    assert_admin_error(force(mock, "dashscope", task_id, "explode"), 404, "advance", "expire")
    assert detail(mock, "dashscope", task_id)["state"] == "queued"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"[1]", "JSON object"),
        (b'"failed"', "JSON object"),
        (b'{"code": 5}', "strings"),
        (b'{"code": "X", "message": ["m"]}', "strings"),
        (b"not json", "not JSON"),
        (b'{"code": "X", "msg": "typo"}', "msg"),
    ],
    ids=["array", "string", "code-not-string", "message-not-string", "not-json", "unknown-field"],
)
def test_bad_fail_bodies_are_400_and_change_nothing(mock: Mock, body: bytes, fragment: str) -> None:
    task_id = submit(mock, "dashscope")
    response = force(mock, "dashscope", task_id, "fail", content=body, headers={"Content-Type": "application/json"})
    assert_admin_error(response, 400, fragment)
    assert detail(mock, "dashscope", task_id)["state"] == "queued"


def test_fail_without_a_body_uses_the_providers_default_code(mock: Mock) -> None:
    task_id = submit(mock, "dashscope")
    assert force(mock, "dashscope", task_id, "fail").status_code == 200
    output = mock.poll("dashscope", task_id).json()["output"]
    assert output["task_status"] == "FAILED"
    assert output["code"]  # a non-empty documented-looking default


def test_other_actions_refuse_fields_they_do_not_take(mock: Mock) -> None:
    task_id = submit(mock, "dashscope")
    response = force(mock, "dashscope", task_id, "succeed", json={"code": "X"})
    assert_admin_error(response, 400, "code")
    assert detail(mock, "dashscope", task_id)["state"] == "queued"


# -- the clock ----------------------------------------------------------------------------


def test_clock_advance_moves_lifecycles(mock: Mock) -> None:
    start = mock.get("/__admin/clock").json()
    assert start == {"clock": "manual", "now": mock.clock.now()}
    task_id = submit(mock, "dashscope")
    moved = mock.post("/__admin/clock/advance", json={"seconds": 1.5})
    assert moved.status_code == 200
    assert moved.json() == {"clock": "manual", "now": start["now"] + 1.5}
    assert mock.status_word("dashscope", mock.poll("dashscope", task_id)) == "RUNNING"
    mock.post("/__admin/clock/advance", json={"seconds": 3})
    assert mock.status_word("dashscope", mock.poll("dashscope", task_id)) == "SUCCEEDED"
    assert mock.post("/__admin/clock/advance", json={"seconds": 0}).status_code == 200
    assert mock.get("/__admin/clock").json()["now"] == start["now"] + 4.5 == mock.clock.now()
    mock.post("/__admin/clock/advance", json={"seconds": 86_400})
    expired = mock.poll("dashscope", task_id)
    assert mock.status_word("dashscope", expired) == "UNKNOWN"


@pytest.mark.parametrize(
    "body",
    [
        None,
        b"",
        b"{}",
        b'{"seconds": -1}',
        b'{"seconds": true}',
        b'{"seconds": false}',
        b'{"seconds": "5"}',
        b'{"seconds": null}',
        b"[5]",
        b"5",
        b'{"seconds": 1e12}',
        b'{"seconds": NaN}',
        b"{not json",
    ],
    ids=lambda body: "no-body" if body is None else body.decode() or "empty",
)
def test_clock_advance_refuses_bad_seconds(mock: Mock, body: bytes | None) -> None:
    before = mock.clock.now()
    response = mock.post("/__admin/clock/advance", content=body)
    assert_admin_error(response, 400)
    assert mock.clock.now() == before


def test_clock_advance_is_409_on_the_system_clock(tmp_path: Path) -> None:
    # make_mock(clock=SystemClock()) cannot be used: conftest's Mock swaps any clock that is
    # not a ManualClock for a ManualClock, so the app is built here directly.
    app = create_app(ServerConfig(providers=("dashscope",), clock=SystemClock(), seed=1, media_dir=tmp_path))

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mock") as client:
            return [
                await client.get("/__admin/clock"),
                await client.post("/__admin/clock/advance", json={"seconds": 5}),
                await client.get("/__admin/health"),
            ]

    try:
        clock, advance, health = asyncio.run(run())
    finally:
        app.state.wanmock.media.close()
    assert clock.json()["clock"] == "system"
    assert_admin_error(advance, 409, "system clock")
    assert health.json()["clock"] == "system"


# -- unknown paths and methods ------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/__admin/nope"),
        ("GET", "/__admin/"),
        ("GET", "/__admin"),
        ("POST", "/__admin/tasks/dashscope/x/y/z"),
        ("PUT", "/__admin/whatever/deeper"),
    ],
)
def test_unknown_admin_paths_are_404_json(mock: Mock, method: str, path: str) -> None:
    assert_admin_error(mock.request(method, path), 404, "no control-plane endpoint")


def test_a_wrong_method_on_an_admin_path_is_405_json(mock: Mock) -> None:
    response = mock.post("/__admin/health")
    assert_admin_error(response, 405, "GET")
    assert "GET" in response.headers["allow"]
    response = mock.get("/__admin/tasks/dashscope/x/advance")
    assert_admin_error(response, 405, "POST")
    assert response.headers["allow"] == "POST"
    assert_admin_error(mock.request("DELETE", "/__admin/faults/rule-404"), 404, "no such rule")
