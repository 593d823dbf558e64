"""Fault rules (error, latency, drop, fail; scoped and counted) and per-key rate limits, each
answered in the provider's own envelope."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest
from wanmock.mockserver.config import RateLimit
from wanmock.mockserver.http import ConnectionDropped
from wanmock.schemas import catalog

from tests.conftest import AUTH, PROVIDERS, Mock, example_body

TEST = "X-Wanmock-Test"
OTHER_KEY = {"Authorization": "Bearer another-key"}


def word(provider: str, state: str) -> str:
    return catalog().provider(provider).states[state].word


def assert_error_envelope(provider: str, response: httpx.Response, status: int) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert catalog().validate(provider, "error", body) == [], body
    return body


def add_rule(mock: Mock, headers: dict[str, str] | None = None, **rule: Any) -> dict[str, Any]:
    response = mock.post("/__admin/faults", json=rule, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def rules(mock: Mock) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = mock.get("/__admin/faults").json()["rules"]
    return listed


def submit(mock: Mock, provider: str, kind: str = "t2v", **kwargs: Any) -> httpx.Response:
    return mock.submit(provider, kind, example_body(provider, kind), **kwargs)


def new_task(mock: Mock, provider: str, kind: str = "t2v") -> str:
    response = submit(mock, provider, kind)
    assert response.status_code == 200, response.text
    return mock.task_id(provider, response)


# -- error rules --------------------------------------------------------------------------


def test_error_rule_answers_in_the_envelope_with_retry_after_and_fires_count_times(
    mock: Mock,
) -> None:
    rule = add_rule(
        mock,
        action="error",
        provider="dashscope",
        endpoint="submit",
        status=429,
        code="Throttling",
        retry_after=7,
        count=2,
    )
    assert rule["id"]
    assert (rule["count"], rule["hits"]) == (2, 0)
    first = submit(mock, "dashscope")
    body = assert_error_envelope("dashscope", first, 429)
    assert body["code"] == "Throttling"
    assert first.headers["Retry-After"] == "7"
    assert [(r["count"], r["hits"]) for r in rules(mock)] == [(1, 1)]
    second = submit(mock, "dashscope")
    assert assert_error_envelope("dashscope", second, 429)["code"] == "Throttling"
    assert second.headers["Retry-After"] == "7"
    assert rules(mock) == []  # used up, so gone
    third = submit(mock, "dashscope")
    assert third.status_code == 200, third.text
    assert "retry-after" not in third.headers
    statuses = [e["status"] for e in mock.get("/__admin/journal").json()["entries"]]
    assert statuses == [429, 429, 200]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(("status", "code"), [(429, "Throttling"), (503, "ServiceUnavailable")])
def test_error_rule_uses_each_providers_envelope(mock: Mock, provider: str, status: int, code: str) -> None:
    add_rule(mock, action="error", provider=provider, status=status, code=code, count=1)
    body = assert_error_envelope(provider, submit(mock, provider), status)
    if provider == "dashscope":
        assert body["code"] == code
    elif provider == "apiyi":
        assert body["error"]["code"] == code
    elif provider == "modellix":
        assert body["code"] == status
        assert re.match(r"^[^:]+: .", body["message"])
    else:
        assert body["statusCode"] in (status, str(status))
    assert submit(mock, provider).status_code == 200


@pytest.mark.parametrize("provider", PROVIDERS)
def test_error_rule_message_reaches_the_client(mock: Mock, provider: str) -> None:
    """AI/ML API lists several 500 texts ("The model is under maintenance, ..."); a rule's
    message is how a test picks one, so every provider must show it."""
    message = "The model is under maintenance, please contact us at help@aimlapi.com."
    add_rule(mock, action="error", provider=provider, status=500, message=message)
    body = assert_error_envelope(provider, mock.poll(provider, "x"), 500)
    shown = body["error"]["message"] if provider == "apiyi" else body["message"]
    assert message in shown, body


def test_a_rule_without_count_fires_until_deleted(mock: Mock) -> None:
    rule = add_rule(mock, action="error", provider="apiyi", endpoint="poll", status=502)
    for _ in range(3):
        assert mock.poll("apiyi", "x").status_code == 502
    assert rules(mock)[0]["hits"] == 3
    deleted = mock.request("DELETE", f"/__admin/faults/{rule['id']}")
    assert deleted.status_code == 200
    assert deleted.json() == {"deleted": rule["id"]}
    assert mock.poll("apiyi", "x").status_code == 200
    assert mock.request("DELETE", f"/__admin/faults/{rule['id']}").status_code == 404


def test_delete_all_rules(mock: Mock) -> None:
    add_rule(mock, action="error", status=500)
    add_rule(mock, action="latency", latency_seconds=0)
    cleared = mock.request("DELETE", "/__admin/faults")
    assert cleared.status_code == 200
    assert rules(mock) == []
    assert mock.poll("dashscope", "x").status_code == 200


def test_only_the_first_matching_error_rule_fires_and_the_next_keeps_its_count(
    mock: Mock,
) -> None:
    add_rule(mock, action="error", provider="dashscope", status=500, count=1)
    add_rule(mock, action="error", provider="dashscope", status=503, count=1)
    statuses = [mock.poll("dashscope", "x").status_code for _ in range(3)]
    assert statuses == [500, 503, 200]


# -- scoping ------------------------------------------------------------------------------


def test_rule_scoped_by_provider(mock: Mock) -> None:
    add_rule(mock, action="error", provider="dashscope", status=500)
    assert submit(mock, "dashscope").status_code == 500
    for provider in ("apiyi", "modellix", "aimlapi"):
        assert submit(mock, provider).status_code == 200


def test_rule_scoped_by_endpoint(mock: Mock) -> None:
    add_rule(mock, action="error", provider="dashscope", endpoint="poll", status=500)
    task_id = new_task(mock, "dashscope")  # submit is untouched
    assert mock.poll("dashscope", task_id).status_code == 500
    listed = mock.get("/dashscope/api/v1/tasks", headers=AUTH)
    assert listed.status_code == 200
    canceled = mock.post(f"/dashscope/api/v1/tasks/{task_id}/cancel", headers=AUTH)
    assert canceled.status_code == 200
    mock.request("DELETE", "/__admin/faults")
    add_rule(mock, action="error", provider="dashscope", endpoint="cancel", status=503)
    add_rule(mock, action="error", provider="dashscope", endpoint="list", status=504)
    other = new_task(mock, "dashscope")
    assert mock.post(f"/dashscope/api/v1/tasks/{other}/cancel", headers=AUTH).status_code == 503
    assert mock.get("/dashscope/api/v1/tasks", headers=AUTH).status_code == 504
    assert mock.poll("dashscope", other).status_code == 200


def test_rule_scoped_by_model_kind(mock: Mock) -> None:
    add_rule(mock, action="error", model="i2v", status=500)
    for provider in PROVIDERS:
        assert submit(mock, provider, "t2v").status_code == 200, provider
        assert submit(mock, provider, "i2v").status_code == 500, provider


@pytest.mark.parametrize(
    ("model_id", "hit"),
    [
        ("alibaba/wan2.7-t2v", "modellix"),  # the model in the path
        ("alibaba/wan-2-7-t2v", "aimlapi"),  # the model in the body
        ("wan2.7-t2v-2026-06-12", "dashscope"),  # a dated snapshot id
    ],
)
def test_rule_scoped_by_model_id(mock: Mock, model_id: str, hit: str) -> None:
    tasks = {p: new_task(mock, p) for p in PROVIDERS}  # made before the rule
    add_rule(mock, action="error", model=model_id, status=500)
    for provider in PROVIDERS:
        expected = 500 if provider == hit else 200
        assert submit(mock, provider).status_code == expected, provider
        # a poll carries no model; the rule finds it through the task
        assert mock.poll(provider, tasks[provider]).status_code == expected, provider


def test_rule_scoped_by_task_id(mock: Mock) -> None:
    target, other = new_task(mock, "modellix"), new_task(mock, "modellix")
    add_rule(mock, action="error", task_id=target, status=503, count=1)
    assert mock.poll("modellix", other).status_code == 200
    assert_error_envelope("modellix", mock.poll("modellix", target), 503)
    assert mock.poll("modellix", target).status_code == 200


def test_rule_scoped_by_test_id(mock: Mock) -> None:
    by_header = add_rule(mock, {TEST: "a"}, action="error", status=500)
    assert by_header["test_id"] == "a"
    assert submit(mock, "dashscope").status_code == 200
    assert submit(mock, "dashscope", headers={TEST: "b"}).status_code == 200
    assert submit(mock, "dashscope", headers={TEST: "a"}).status_code == 500
    assert mock.poll("dashscope", "x", headers={TEST: "a"}).status_code == 500
    refused = mock.post("/__admin/faults", json={"action": "error", "status": 503, "test_id": "b"}, headers={TEST: "a"})
    assert refused.status_code == 400  # test a cannot plant a rule that fires on test b
    explicit = add_rule(mock, {}, action="error", status=503, test_id="b")
    assert explicit["test_id"] == "b"
    assert submit(mock, "dashscope", headers={TEST: "b"}).status_code == 503
    assert [r["id"] for r in mock.get("/__admin/faults?test=a").json()["rules"]] == [by_header["id"]]
    mock.request("DELETE", "/__admin/faults", headers={TEST: "a"})
    assert [r["id"] for r in rules(mock)] == [explicit["id"]]
    assert submit(mock, "dashscope", headers={TEST: "a"}).status_code == 200


# -- latency, drop, fail ------------------------------------------------------------------


def test_latency_rule_delays_the_answer(mock: Mock) -> None:
    task_id = new_task(mock, "dashscope")
    add_rule(mock, action="latency", provider="dashscope", endpoint="poll", latency_seconds=0.05, count=1)
    started = time.perf_counter()
    response = mock.poll("dashscope", task_id)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    assert 0.045 <= elapsed < 2.0
    assert rules(mock) == []


def test_latency_and_error_rules_combine(mock: Mock) -> None:
    add_rule(mock, action="latency", endpoint="poll", latency_seconds=0.05, count=1)
    add_rule(mock, action="error", endpoint="poll", status=500, count=1)
    started = time.perf_counter()
    response = mock.poll("apiyi", "x")
    assert time.perf_counter() - started >= 0.045
    assert_error_envelope("apiyi", response, 500)
    assert rules(mock) == []


def test_drop_rule_breaks_the_connection_once(mock: Mock) -> None:
    task_id = new_task(mock, "dashscope")
    add_rule(mock, action="drop", provider="dashscope", endpoint="poll", count=1)
    with pytest.raises(ConnectionDropped):
        mock.poll("dashscope", task_id)
    after = mock.poll("dashscope", task_id)
    assert after.status_code == 200
    assert after.json()["output"]["task_id"] == task_id
    dropped = mock.get("/__admin/journal?status=0").json()["entries"]
    assert [(e["endpoint"], e["task_id"]) for e in dropped] == [("poll", task_id)]


def test_drop_rule_on_submit_creates_no_task(mock: Mock) -> None:
    add_rule(mock, action="drop", provider="aimlapi", endpoint="submit", count=1)
    with pytest.raises(ConnectionDropped):
        submit(mock, "aimlapi")
    assert mock.get("/__admin/tasks").json()["tasks"] == []
    assert submit(mock, "aimlapi").status_code == 200


@pytest.mark.parametrize("provider", PROVIDERS)
def test_fail_rule_makes_the_next_submitted_task_fail(mock: Mock, provider: str) -> None:
    add_rule(
        mock,
        action="fail",
        provider=provider,
        code="DataInspectionFailed",
        message="Inappropriate content.",
        count=1,
    )
    mock.poll(provider, "x")  # a poll does not use the rule up
    doomed = submit(mock, provider)
    assert doomed.status_code == 200  # the submit itself is accepted
    doomed_id = mock.task_id(provider, doomed)
    healthy = new_task(mock, provider)
    mock.advance(10)
    poll = mock.poll(provider, doomed_id)
    assert catalog().validate(provider, "poll-response", poll.json()) == []
    assert mock.status_word(provider, poll) == word(provider, "failed")
    if provider == "dashscope":
        assert poll.json()["output"]["code"] == "DataInspectionFailed"
    elif provider == "aimlapi":
        assert poll.json()["error"]["name"] == "DataInspectionFailed"
    elif provider == "apiyi":
        assert poll.json()["error"]["message"] == "[DataInspectionFailed] Inappropriate content."
    assert mock.status_word(provider, mock.poll(provider, healthy)) == word(provider, "succeeded")


def test_fail_rule_waits_for_a_submit_that_creates_a_task(mock: Mock) -> None:
    """A submit refused for its body creates no task, so it must not use up a fail rule."""
    add_rule(mock, action="fail", provider="dashscope", code="DataInspectionFailed", count=1)
    refused = mock.submit("dashscope", "t2v", {"model": "wan2.7-t2v", "input": {}})
    assert refused.status_code == 400
    task_id = new_task(mock, "dashscope")
    mock.advance(10)
    output = mock.poll("dashscope", task_id).json()["output"]
    assert output["task_status"] == "FAILED"
    assert output["code"] == "DataInspectionFailed"


def test_an_error_rule_shadows_a_fail_rule_which_keeps_its_count(mock: Mock) -> None:
    add_rule(mock, action="error", provider="dashscope", endpoint="submit", status=500, count=1)
    add_rule(mock, action="fail", provider="dashscope", count=1)
    assert submit(mock, "dashscope").status_code == 500
    task_id = new_task(mock, "dashscope")
    mock.advance(10)
    assert mock.status_word("dashscope", mock.poll("dashscope", task_id)) == "FAILED"


# -- downloads ----------------------------------------------------------------------------


def result_path(mock: Mock, provider: str) -> tuple[str, str]:
    task_id = new_task(mock, provider)
    mock.post(f"/__admin/tasks/{provider}/{task_id}/succeed")
    url = mock.result_url(provider, mock.poll(provider, task_id))
    return task_id, url.removeprefix("http://mock")


def test_download_faults(mock: Mock) -> None:
    task_id, path = result_path(mock, "modellix")
    other_id, other_path = result_path(mock, "modellix")
    add_rule(mock, action="error", endpoint="download", task_id=task_id, status=503, count=1)
    add_rule(mock, action="error", endpoint="poll", status=500)  # not a download rule
    refused = mock.get(path)
    assert refused.status_code == 503
    assert refused.headers["content-type"] == "application/xml"
    assert "<Code>InternalError</Code>" in refused.text
    assert other_id != task_id
    add_rule(mock, action="error", endpoint="download", status=404, code="NoSuchKey", count=1)
    assert "<Code>NoSuchKey</Code>" in mock.get(other_path).text
    add_rule(mock, action="drop", endpoint="download", provider="modellix", count=1)
    with pytest.raises(ConnectionDropped):
        mock.get(path)
    video = mock.get(path, headers={"Range": "bytes=0-9"})
    assert video.status_code == 206
    assert rules(mock)[0]["endpoint"] == "poll"  # the download rules are used up


def test_download_error_rule_sends_retry_after(mock: Mock) -> None:
    _, path = result_path(mock, "dashscope")
    add_rule(mock, action="error", endpoint="download", status=503, code="SlowDown", retry_after=3)
    refused = mock.get(path, headers={"Range": "bytes=0-9"})
    assert refused.status_code == 503
    assert "<Code>SlowDown</Code>" in refused.text
    assert refused.headers.get("Retry-After") == "3"


# -- invalid rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        pytest.param(
            {"action": "error", "status": 500, "colour": "red"}, "unknown field(s) ['colour']", id="unknown-field"
        ),
        pytest.param({"action": "explode"}, "action must be one of", id="bad-action"),
        pytest.param({"status": 500}, "needs an action", id="no-action"),
        pytest.param({"action": "error"}, "needs an integer status", id="error-without-status"),
        pytest.param({"action": "error", "status": 200}, "400 to 599", id="status-200"),
        pytest.param({"action": "error", "status": "500"}, "400 to 599", id="status-string"),
        pytest.param({"action": "error", "status": 500, "count": 0}, "count must be a positive integer", id="count-0"),
        pytest.param(
            {"action": "error", "status": 500, "count": -1}, "count must be a positive integer", id="count-negative"
        ),
        pytest.param(
            {"action": "error", "status": 500, "count": 1.5}, "count must be a positive integer", id="count-float"
        ),
        pytest.param({"action": "fail", "count": True}, "boolean", id="count-bool"),
        pytest.param({"action": "latency", "latency_seconds": 500}, "latency_seconds", id="latency-too-long"),
        pytest.param({"action": "latency", "latency_seconds": "1"}, "latency_seconds", id="latency-string"),
        pytest.param({"action": "error", "status": 429, "retry_after": -1}, "retry_after", id="retry-after-negative"),
        pytest.param(
            {"action": "error", "status": 500, "endpoint": "upload"}, "endpoint must be one of", id="bad-endpoint"
        ),
        pytest.param(
            {"action": "error", "status": 500, "provider": "dashscop"}, "unknown provider", id="unknown-provider"
        ),
        pytest.param({"action": "error", "status": 500, "model": "t2x"}, "unknown model", id="unknown-model"),
        pytest.param(
            {"action": "error", "status": 500, "provider": "aimlapi", "model": "videoedit"},
            "t2v",
            id="model-of-another-provider",
        ),
        pytest.param({"action": "error", "status": 500, "code": 42}, "code must be", id="code-not-string"),
        pytest.param({"action": "fail", "endpoint": "poll"}, "submit", id="fail-on-poll"),
        pytest.param({"action": "latency", "endpoint": "download", "model": "t2v"}, "download", id="model-on-download"),
        pytest.param([{"action": "error", "status": 500}], "JSON object", id="not-an-object"),
    ],
)
def test_invalid_rules_are_400_with_a_helpful_message(mock: Mock, rule: Any, fragment: str) -> None:
    response = mock.post("/__admin/faults", json=rule)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]
    assert rules(mock) == []


JSON = {"Content-Type": "application/json"}


def test_a_rule_body_that_is_not_json_is_400(mock: Mock) -> None:
    response = mock.post("/__admin/faults", content=b"{action: error}", headers=JSON)
    assert response.status_code == 400
    assert "not JSON" in response.json()["error"]


# -- rate limits --------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_fourth_request_in_a_minute_is_429_in_the_providers_shape(make_mock: Any, provider: str) -> None:
    m = make_mock(rate_limits={provider: RateLimit(rpm=3)})
    now = m.clock.now()
    task_id = new_task(m, provider)  # submits and polls share the budget
    m.advance(10)
    assert m.poll(provider, task_id).status_code == 200
    assert m.poll(provider, task_id).status_code == 200
    refused = submit(m, provider)
    body = assert_error_envelope(provider, refused, 429)
    assert refused.headers["Retry-After"] == "50"  # the first request leaves the window at +60
    if provider == "modellix":
        assert refused.headers["X-RateLimit-Limit"] == "3"
        assert refused.headers["X-RateLimit-Remaining"] == "0"
        assert refused.headers["X-RateLimit-Reset"] == str(int(now + 60))
        assert body["code"] == 429
        assert body["message"].startswith("Rate limit exceeded: ")
        assert "3 requests per minute" in body["message"]
    elif provider == "aimlapi":
        assert body["message"] == "Too Many Requests"
        assert body["statusCode"] in (429, "429")
    elif provider == "dashscope":  # the documented code and text [D3]
        assert body["code"] == "Throttling.RateQuota"
        assert body["message"] == "Requests rate limit exceeded, please try again later."
    assert m.poll(provider, task_id).status_code == 429  # polls are limited too
    assert len(m.get("/__admin/tasks").json()["tasks"]) == 1
    m.advance(50)  # 60 s after the first request
    assert m.poll(provider, task_id).status_code == 200
    m.advance(60)
    assert submit(m, provider).status_code == 200


def test_rate_limits_are_per_key(make_mock: Any) -> None:
    m = make_mock(rate_limits={"dashscope": RateLimit(rpm=2)})
    for _ in range(2):
        assert m.poll("dashscope", "x").status_code == 200
    assert m.poll("dashscope", "x").status_code == 429
    assert m.poll("dashscope", "x", headers=OTHER_KEY).status_code == 200
    assert m.poll("apiyi", "x").status_code == 200  # another provider has no limit


def test_rate_limit_windows_slide(make_mock: Any) -> None:
    m = make_mock(rate_limits={"apiyi": RateLimit(rpm=2)})
    assert m.poll("apiyi", "x").status_code == 200
    m.advance(30)
    assert m.poll("apiyi", "x").status_code == 200
    m.advance(29)
    refused = m.poll("apiyi", "x")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    m.advance(1)  # the first request is now 60 s old
    assert m.poll("apiyi", "x").status_code == 200
    assert m.poll("apiyi", "x").status_code == 429


def test_reset_clears_rate_limit_windows(make_mock: Any) -> None:
    m = make_mock(rate_limits={"modellix": RateLimit(rpm=1)})
    assert m.poll("modellix", "x").status_code == 404
    assert m.poll("modellix", "x").status_code == 429
    m.post("/__admin/reset?all=1")
    assert m.poll("modellix", "x").status_code == 404  # unknown task, no longer limited


def test_concurrency_limit_counts_unfinished_tasks_of_the_same_key(make_mock: Any) -> None:
    m = make_mock(rate_limits={"dashscope": RateLimit(concurrency=2)})
    first = new_task(m, "dashscope")
    new_task(m, "dashscope")
    refused = submit(m, "dashscope")
    body = assert_error_envelope("dashscope", refused, 429)
    assert body["code"] == "Throttling.RateQuota"  # DashScope's documented throttling answer [D3]
    assert body["message"] == "Requests rate limit exceeded, please try again later."
    assert refused.headers["Retry-After"]
    other = submit(m, "dashscope", headers=OTHER_KEY)  # another key has its own budget
    assert other.status_code == 200, other.text
    assert m.poll("dashscope", first).status_code == 200  # polls are not counted
    assert m.post(f"/__admin/tasks/dashscope/{first}/cancel").status_code == 200
    assert submit(m, "dashscope").status_code == 200  # a finished task frees its slot
    assert submit(m, "dashscope").status_code == 429
    m.advance(10)  # every task finishes
    assert submit(m, "dashscope").status_code == 200
    assert submit(m, "dashscope").status_code == 200
    assert submit(m, "dashscope").status_code == 429


def test_limits_are_off_by_default(mock: Mock) -> None:
    for provider in PROVIDERS:
        statuses = {submit(mock, provider).status_code for _ in range(8)}
        statuses |= {mock.poll(provider, "x").status_code for _ in range(8)}
        assert 429 not in statuses, provider
        assert statuses <= {200, 404}, statuses
