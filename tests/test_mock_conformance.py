"""The mock answers like each provider: documented requests succeed, documented violations
are refused in the provider's envelope, and every response in every state matches its schema."""

from __future__ import annotations

from typing import Any

import pytest
from wanmock.mockserver.media import probe
from wanmock.mockserver.results import output_size
from wanmock.schemas import catalog

from tests.conftest import AUTH, PROVIDERS, Mock, corpus, example_body


def assert_schema(provider: str, message: str, body: Any, state: str | None = None) -> None:
    issues = catalog().validate(provider, message, body, state=state)
    assert issues == [], f"{provider} {message} outside its schema: {issues}\n{body}"


def kinds(provider: str) -> list[str]:
    return list(catalog().provider(provider).models)


VALID_REQUESTS = [(p, c) for p in PROVIDERS for c in corpus(p)]
INVALID_REQUESTS = [(p, c) for p in PROVIDERS for c in corpus(p, valid=False)]


@pytest.mark.parametrize(("provider", "case"), VALID_REQUESTS, ids=lambda v: v if isinstance(v, str) else v["name"])
def test_every_documented_request_is_accepted(mock: Mock, provider: str, case: dict[str, Any]) -> None:
    kind = catalog().provider(provider).models[case["model"]].kind
    response = mock.submit(provider, kind, case["instance"])
    assert response.status_code == 200, response.text
    assert_schema(provider, "submit-response", response.json())


@pytest.mark.parametrize(("provider", "case"), INVALID_REQUESTS, ids=lambda v: v if isinstance(v, str) else v["name"])
def test_every_documented_violation_is_refused_in_the_providers_shape(
    mock: Mock, provider: str, case: dict[str, Any]
) -> None:
    kind = catalog().provider(provider).models[case["model"]].kind
    response = mock.submit(provider, kind, case["instance"])
    assert 400 <= response.status_code < 500, response.text
    assert_schema(provider, "error", response.json())
    field = case["error_at"].removeprefix("$.")
    named = case["error_at"] in response.text or f"parameter '{field}' is required" in response.text  # Modellix [M6]
    assert named or case["error_at"] == "$"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_lifecycle_moves_forward_and_every_state_matches_its_schema(mock: Mock, provider: str) -> None:
    for kind in kinds(provider):
        submitted = mock.submit(provider, kind, example_body(provider, kind))
        task_id = mock.task_id(provider, submitted)
        seen = []
        for _ in range(6):
            poll = mock.poll(provider, task_id)
            assert poll.status_code == 200
            assert_schema(provider, "poll-response", poll.json())
            seen.append(mock.status_word(provider, poll))
            mock.advance(1.0)
        p = catalog().provider(provider)
        order = [p.states[s].word for s in ("queued", "running", "succeeded")]
        assert seen == sorted(seen, key=order.index), seen
        assert set(seen) == set(order), seen
        mock.advance(3600)
        assert mock.status_word(provider, mock.poll(provider, task_id)) == order[-1]  # sticky


@pytest.mark.parametrize("provider", PROVIDERS)
def test_forced_failure_and_cancel_answer_in_schema(mock: Mock, provider: str) -> None:
    kind = kinds(provider)[0]
    task_id = mock.task_id(provider, mock.submit(provider, kind, example_body(provider, kind)))
    failed = mock.post(
        f"/__admin/tasks/{provider}/{task_id}/fail",
        json={"code": "InvalidParameter", "message": "bad"},
    )
    assert failed.status_code == 200, failed.text
    poll = mock.poll(provider, task_id)
    assert_schema(provider, "poll-response", poll.json())
    assert mock.status_word(provider, poll) == catalog().provider(provider).states["failed"].word
    again = mock.post(f"/__admin/tasks/{provider}/{task_id}/succeed")
    assert again.status_code == 409  # terminal states are sticky


@pytest.mark.parametrize("provider", PROVIDERS)
def test_expired_and_unknown_tasks_answer_as_documented(mock: Mock, provider: str) -> None:
    p = catalog().provider(provider)
    kind = kinds(provider)[0]
    task_id = mock.task_id(provider, mock.submit(provider, kind, example_body(provider, kind)))
    mock.advance(5)
    mock.advance(float(p.task_fields["retention_seconds"] or 86_400))
    expired, unknown = mock.poll(provider, task_id), mock.poll(provider, "no-such-task")
    for response in (expired, unknown):
        if "unknown" in p.states:  # DashScope and APIYI: 200 with UNKNOWN
            assert response.status_code == 200
            assert_schema(provider, "poll-response", response.json())
            assert mock.status_word(provider, response) == p.states["unknown"].word
        else:  # Modellix documents 404; AI/ML API's answer is configurable (404 by default)
            assert response.status_code == 404
            assert_schema(provider, "error", response.json())


def test_dashscope_cancels_only_pending_tasks(mock: Mock) -> None:
    body = example_body("dashscope", "t2v")
    first = mock.task_id("dashscope", mock.submit("dashscope", "t2v", body))
    canceled = mock.post(f"/dashscope/api/v1/tasks/{first}/cancel", headers=AUTH)
    assert canceled.status_code == 200
    poll = mock.poll("dashscope", first)
    assert poll.json()["output"]["task_status"] == "CANCELED"
    assert_schema("dashscope", "poll-response", poll.json())
    second = mock.task_id("dashscope", mock.submit("dashscope", "t2v", body))
    mock.advance(1.5)
    refused = mock.post(f"/dashscope/api/v1/tasks/{second}/cancel", headers=AUTH)
    assert refused.status_code == 400
    assert_schema("dashscope", "error", refused.json())
    assert refused.json()["code"] == "UnsupportedOperation"  # the documented answer [D3]
    assert refused.json()["message"] == "Failed to cancel the task, please confirm if the task is in PENDING status."


SIZES = [
    (
        "dashscope",
        "t2v",
        {"resolution": "1080P", "ratio": "9:16", "duration": 2},
        (1080, 1920),
        2.0,
    ),
    ("modellix", "t2v", {"resolution": "720P", "ratio": "4:3", "duration": 3}, (1104, 832), 3.0),
    ("apiyi", "t2v", {"resolution": "720P", "ratio": "1:1", "duration": 2}, (960, 960), 2.0),
    (
        "aimlapi",
        "t2v",
        {"resolution": "720p", "aspect_ratio": "3:4", "duration": 5},
        (832, 1104),
        5.0,
    ),
]


@pytest.mark.parametrize(("provider", "kind", "params", "size", "seconds"), SIZES)
def test_result_is_a_real_mp4_of_the_documented_size_and_length(
    mock: Mock,
    provider: str,
    kind: str,
    params: dict[str, Any],
    size: tuple[int, int],
    seconds: float,
) -> None:
    body = example_body(provider, kind)
    if "parameters" in body or provider in ("dashscope", "apiyi"):
        body["parameters"] = {**body.get("parameters", {}), **params}
    else:
        body.update(params)
    task_id = mock.task_id(provider, mock.submit(provider, kind, body))
    mock.advance(10)
    url = mock.result_url(provider, mock.poll(provider, task_id))
    video = mock.get(url.removeprefix("http://mock"))
    assert video.status_code == 200
    assert video.headers["content-type"] == "video/mp4"
    assert int(video.headers["content-length"]) == len(video.content)
    info = probe(video.content)
    assert (
        (info["width"], info["height"])
        == size
        == output_size(params.get("resolution", "").upper(), params.get("ratio") or params["aspect_ratio"])
    )
    assert info["video_codec"] == "h264"
    assert abs(info["duration"] - seconds) <= 0.125
    assert info["audio"] is True
    ranged = mock.get(url.removeprefix("http://mock"), headers={"Range": "bytes=0-99"})
    assert ranged.status_code == 206
    assert ranged.content == video.content[:100]


def test_apiyi_result_url_refuses_an_authorization_header(mock: Mock) -> None:
    task_id = mock.task_id("apiyi", mock.submit("apiyi", "t2v", example_body("apiyi", "t2v")))
    mock.advance(10)
    url = mock.result_url("apiyi", mock.poll("apiyi", task_id)).removeprefix("http://mock")
    refused = mock.get(url, headers=AUTH)
    assert refused.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in refused.text
    assert mock.get(url).status_code == 200


def test_result_urls_expire_and_cannot_be_forged(mock: Mock) -> None:
    task_id = mock.task_id("dashscope", mock.submit("dashscope", "t2v", example_body("dashscope", "t2v")))
    mock.advance(10)
    url = mock.result_url("dashscope", mock.poll("dashscope", task_id)).removeprefix("http://mock")
    forged = url.replace("Signature=", "Signature=0")
    assert mock.get(forged).status_code == 403
    mock.advance(86_400)
    expired = mock.get(url)
    assert expired.status_code == 403
    assert "<Code>AccessDenied</Code>" in expired.text


def test_apiyi_undocumented_query_path_is_a_404_in_apiyis_shape(mock: Mock) -> None:
    task_id = mock.task_id("apiyi", mock.submit("apiyi", "t2v", example_body("apiyi", "t2v")))
    response = mock.get(f"/apiyi/wan/api/v1/tasks/{task_id}", headers=AUTH)
    assert response.status_code == 404
    assert_schema("apiyi", "error", response.json())


@pytest.mark.parametrize("provider", ["apiyi", "dashscope"])
def test_create_without_the_async_header_is_refused(mock: Mock, provider: str) -> None:
    response = mock.post(mock.submit_path(provider, "t2v"), json=example_body(provider, "t2v"), headers=AUTH)
    assert response.status_code == (403 if provider == "dashscope" else 400)  # DashScope: a live probe (7.1)
    assert_schema(provider, "error", response.json())
    assert "does not support synchronous calls" in response.text


def test_modellix_accepts_the_submit_path_with_and_without_async(mock: Mock) -> None:
    body = example_body("modellix", "t2v")
    for path in (
        "/api/v1/alibaba/wan2.7-t2v/async",
        "/api/v1/alibaba/wan2.7-t2v",
        "/modellix/api/v1/alibaba/wan2.7-t2v",
    ):
        response = mock.post(path, json=body, headers=AUTH)
        assert response.status_code == 200, (path, response.text)
        assert response.json()["data"]["get_result"]["url"].startswith("http://mock/")


def test_instant_timing_finishes_at_once(make_mock: Any) -> None:
    m = make_mock(timing="instant")
    task_id = m.task_id("dashscope", m.submit("dashscope", "t2v", example_body("dashscope", "t2v")))
    assert m.status_word("dashscope", m.poll("dashscope", task_id)) == "SUCCEEDED"


def test_realistic_timing_uses_the_documented_durations(make_mock: Any) -> None:
    m = make_mock(timing="realistic", providers=("apiyi",))
    body = example_body("apiyi", "t2v")
    body["parameters"] = {"resolution": "720P", "duration": 5}
    task_id = m.task_id("apiyi", m.submit("apiyi", "t2v", body))
    task = m.state.store.get("apiyi", task_id)
    assert task is not None
    run = task.finished_at - task.started_at
    assert 95 <= run <= 105  # "t2v 720P/5 s typically 100-120 s" [Y2], low end for 720P/5 s
    m.advance(60)
    assert m.status_word("apiyi", m.poll("apiyi", task_id)) == "in_progress"
    m.advance(60)
    assert m.status_word("apiyi", m.poll("apiyi", task_id)) == "completed"


def test_seed_makes_task_ids_reproducible(make_mock: Any) -> None:
    ids = []
    for _ in range(2):
        m = make_mock(seed=42)
        ids.append([m.task_id(p, m.submit(p, "t2v", example_body(p, "t2v"))) for p in PROVIDERS])
    assert ids[0] == ids[1]
    assert make_mock(seed=43).task_id("apiyi", make_mock(seed=43).submit("apiyi", "t2v", example_body("apiyi", "t2v")))


def test_single_provider_is_served_at_the_root(make_mock: Any) -> None:
    m = make_mock(providers=("dashscope",))
    response = m.submit("dashscope", "t2v", example_body("dashscope", "t2v"))
    assert response.status_code == 200
    assert (
        m.post(
            "/dashscope/api/v1/services/aigc/video-generation/video-synthesis",
            json={},
            headers=AUTH,
        ).status_code
        == 404
    )
