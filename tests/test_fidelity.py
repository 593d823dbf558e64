"""Fidelity round 2 (shared/providers.md §7): accept what each provider accepts, say so, refuse the rest.

Each test names the §7 line it shows. Bodies come from the corpus where one holds the fact.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from wanmock.contracts.testing.checks import Case, Exchange, run_checks
from wanmock.contracts.testing.runner import Report, Result, summary
from wanmock.mockserver.cli import main
from wanmock.mockserver.config import Options
from wanmock.schemas.catalog import ROOT

from tests.conftest import Mock

WARNING = "x-wanmock-warning"


def case(provider: str, name: str) -> dict[str, Any]:
    return json.loads((ROOT / "corpus" / provider / f"{name}.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def journal(mock: Mock) -> list[dict[str, Any]]:
    return mock.get("/__admin/journal").json()["entries"]  # type: ignore[no-any-return]


# -- 7.0 / 7.1: accepted, but said -----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("valid-t2v-sdk-shot-type", "shot_type"),
        ("valid-t2v-wan26-size", "parameters.size is a wan2.6 field"),
        ("valid-t2v-unknown-input-field", "input.enable_thinking"),
        ("valid-i2v-first-frame-data-uri", "base64 data URI"),
        ("valid-i2v-ratio-ignored", "follows the input image"),
    ],
)
def test_dashscope_accepts_undocumented_input_and_warns(make_mock: Any, name: str, words: str) -> None:
    mock = make_mock(providers=("dashscope",))
    example = case("dashscope", name)
    kind = example["model"]
    answer = mock.submit("dashscope", kind, example["instance"])
    assert answer.status_code == 200, answer.text
    warnings = answer.headers.get_list(WARNING)
    assert len(warnings) == len(example["warnings_at"])
    assert any(words in w for w in warnings), warnings
    entry = [e for e in journal(mock) if e["endpoint"] == "submit"][-1]
    assert entry["warnings"] == warnings
    assert mock.status_word("dashscope", mock.poll("dashscope", mock.task_id("dashscope", answer))) == "PENDING"


def test_a_valid_body_carries_no_warning(make_mock: Any) -> None:
    mock = make_mock(providers=("dashscope",))
    answer = mock.submit("dashscope", "t2v", {"model": "wan2.7-t2v", "input": {"prompt": "a cat"}})
    assert answer.status_code == 200
    assert WARNING not in answer.headers
    assert journal(mock)[-1]["warnings"] == []


def test_refuse_undocumented_makes_the_mock_strict(make_mock: Any) -> None:
    mock = make_mock(providers=("dashscope",), options=Options(refuse_undocumented=True))
    answer = mock.submit("dashscope", "t2v", case("dashscope", "valid-t2v-sdk-shot-type")["instance"])
    assert answer.status_code == 400
    assert answer.json()["code"] == "InvalidParameter"
    assert "$.parameters.shot_type" in answer.json()["message"]


def test_what_the_provider_refuses_stays_refused(make_mock: Any) -> None:
    mock = make_mock(providers=("dashscope",))
    for name in ("invalid-i2v-driving-audio-data-uri", "invalid-t2v-unknown-top-level-field"):
        example = case("dashscope", name)
        answer = mock.submit("dashscope", example["model"], example["instance"])
        assert answer.status_code == 400, name
        assert example["error_at"] in answer.json()["message"]


def test_a_warning_header_is_printable_ascii(make_mock: Any) -> None:
    mock = make_mock(providers=("dashscope",))
    body = {"model": "wan2.7-t2v", "input": {"prompt": "a cat"}, "parameters": {"größe\n": 1}}
    answer = mock.submit("dashscope", "t2v", body)
    assert answer.status_code == 200
    (warning,) = answer.headers.get_list(WARNING)
    assert warning.isascii()
    assert warning.isprintable()
    assert "\\u00f6" in warning


# -- 7.4: APIYI ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["valid_i2v_ratio_ignored", "valid_videoedit_ratio", "valid_i2v_data_uri"])
def test_apiyi_accepts_ratio_and_data_uris_with_a_warning(make_mock: Any, name: str) -> None:
    mock = make_mock(providers=("apiyi",))
    example = case("apiyi", name)
    answer = mock.submit("apiyi", example["model"], example["instance"])
    assert answer.status_code == 200, answer.text
    assert len(answer.headers.get_list(WARNING)) == 1


def test_apiyi_refuses_a_fraction_where_go_decodes_an_int(make_mock: Any) -> None:
    mock = make_mock(providers=("apiyi",))
    answer = mock.submit("apiyi", "t2v", case("apiyi", "invalid_duration_float")["instance"])
    assert answer.status_code == 400
    message = answer.json()["error"]["message"]
    assert "json: cannot unmarshal number 5.0 into Go struct field ... of type int" in message
    ok = mock.submit("apiyi", "t2v", case("apiyi", "valid_duration_integer")["instance"])
    assert ok.status_code == 200


# -- wanmock schemas validate ------------------------------------------------------------------


def test_schemas_validate_prints_warnings_and_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = tmp_path / "body.json"
    body.write_text(json.dumps(case("dashscope", "valid-t2v-sdk-shot-type")["instance"]))
    argv = ["schemas", "validate", "--provider", "dashscope", "--operation", "submit", "--model", "t2v", str(body)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "with 1 warning(s)" in out
    assert "warning: parameters.shot_type" in out
    assert main([*argv[:-1], "--strict", str(body)]) == 1
    assert "$.parameters.shot_type" in capsys.readouterr().out


# -- the warning-level contract check ------------------------------------------------------------


def _case_with(body: dict[str, Any]) -> Case:
    headers = {"Authorization": "Bearer k", "X-DashScope-Async": "enable"}
    exchange = Exchange("POST", "http://mock/x", headers, body, 200, endpoint="submit")
    return Case("dashscope", "t2v", "valid", exchanges=[exchange])


def test_the_documented_fields_check_warns_without_failing_unless_strict() -> None:
    found = run_checks(_case_with(case("dashscope", "valid-t2v-sdk-shot-type")["instance"]))
    warned = [f for f in found if f.check == "client_sends_only_documented_fields"]
    assert [f.severity for f in warned] == ["warning"]
    assert not [f for f in found if f.check == "request_conformance"]
    result = Result("dashscope", "t2v", failures=warned)
    lenient, strict = Report("in-process", 1, [result]), Report("in-process", 1, [result], strict=True)
    assert lenient.passed
    assert not strict.passed
    printed = io.StringIO()
    summary(lenient, printed)
    assert printed.getvalue().startswith("WARN")
    assert "all checks passed, 1 warning(s)" in printed.getvalue()
    assert "<failure" not in lenient.junit()
    assert "<failure" in strict.junit()
    clean = run_checks(_case_with({"model": "wan2.7-t2v", "input": {"prompt": "a cat"}}))
    assert not [f for f in clean if f.check == "client_sends_only_documented_fields"]


# -- 7.1: DashScope, to the letter ----------------------------------------------------------

DS_SUBMIT = "/api/v1/services/aigc/video-generation/video-synthesis"
T2V = {"model": "wan2.7-t2v", "input": {"prompt": "a cat"}}


def test_dashscope_without_the_async_header_is_access_denied(make_mock: Any) -> None:
    mock = make_mock(providers=("dashscope",))
    answer = mock.post(DS_SUBMIT, json=T2V, headers={"Authorization": "Bearer k"})
    assert answer.status_code == 403
    assert answer.json()["code"] == "AccessDenied"
    assert answer.json()["message"] == "current user api does not support synchronous calls"
    old = make_mock(
        providers=("dashscope",), options=Options(dashscope_sync_status=400, dashscope_sync_code="InvalidParameter")
    )
    assert old.post(DS_SUBMIT, json=T2V, headers={"Authorization": "Bearer k"}).status_code == 400


def test_dashscope_401_texts_are_the_documented_ones(make_mock: Any) -> None:
    mock = make_mock(providers=("dashscope",))
    missing = mock.post(DS_SUBMIT, json=T2V, headers={"X-DashScope-Async": "enable"})
    refused = mock.post(DS_SUBMIT, json=T2V, headers={"X-DashScope-Async": "enable", "Authorization": "Bearer invalid"})
    assert (missing.status_code, missing.json()["code"], missing.json()["message"]) == (
        401,
        "InvalidApiKey",
        "No API-key provided.",
    )
    assert (refused.status_code, refused.json()["message"]) == (401, "Invalid API-key provided.")


def test_dashscope_cancel_answers_as_documented(make_mock: Any) -> None:
    mock = make_mock(providers=("dashscope",))
    task = mock.task_id("dashscope", mock.submit("dashscope", "t2v", T2V))
    canceled = mock.post(f"/api/v1/tasks/{task}/cancel", headers={"Authorization": "Bearer k"})
    assert canceled.status_code == 200
    assert set(canceled.json()) == {"request_id"}
    again = mock.post(f"/api/v1/tasks/{task}/cancel", headers={"Authorization": "Bearer k"})
    assert again.status_code == 400
    assert again.json()["code"] == "UnsupportedOperation"
    assert again.json()["message"] == "Failed to cancel the task, please confirm if the task is in PENDING status."


def test_dashscope_throttling_is_rate_quota(make_mock: Any) -> None:
    from wanmock.mockserver.config import RateLimit

    mock = make_mock(providers=("dashscope",), rate_limits={"dashscope": RateLimit(rpm=1)})
    assert mock.submit("dashscope", "t2v", T2V).status_code == 200
    throttled = mock.submit("dashscope", "t2v", T2V)
    assert throttled.status_code == 429
    assert throttled.json()["code"] == "Throttling.RateQuota"
    assert throttled.json()["message"] == "Requests rate limit exceeded, please try again later."


def test_dashscope_wrong_service_path_is_url_error(make_mock: Any) -> None:
    mock = make_mock(providers=("dashscope",))
    body = case("dashscope", "valid-i2v-first_frame")["instance"]
    headers = {"Authorization": "Bearer k", "X-DashScope-Async": "enable"}
    answer = mock.post("/api/v1/services/aigc/image2video/video-synthesis", json=body, headers=headers)
    assert answer.status_code == 400
    assert answer.json()["code"] == "InvalidParameter"
    assert answer.json()["message"] == "url error, please check url!"
    assert mock.get("/api/v1/nothing", headers=headers).status_code == 404


def test_dashscope_task_list_is_the_documented_one(make_mock: Any) -> None:
    from wanmock.schemas import catalog

    mock = make_mock(providers=("dashscope",))
    auth = {"Authorization": "Bearer k"}
    first = mock.task_id("dashscope", mock.submit("dashscope", "t2v", T2V))
    mock.advance(3600)
    i2v = mock.submit("dashscope", "i2v", case("dashscope", "valid-i2v-first_frame")["instance"])
    second = mock.task_id("dashscope", i2v)
    listed = mock.get("/api/v1/tasks", headers=auth).json()
    schema = catalog().load("dashscope", "list-response")
    assert schema.issues(listed) == []
    assert (listed["total"], listed["total_page"], listed["page_no"], listed["page_size"]) == (2, 1, 1, 10)
    assert [row["task_id"] for row in listed["data"]] == [second, first]
    row = listed["data"][1]
    assert row["status"] == "SUCCEEDED"
    assert "task_status" not in row
    assert row["gmt_create"] < row["start_time"] <= row["end_time"]
    assert {"region", "api_key_id", "caller_uid", "caller_parent_id", "request_id", "user_api_unique_key"} <= set(row)

    def ids(**query: Any) -> list[str]:
        answer = mock.get("/api/v1/tasks", headers=auth, params=query)
        assert answer.status_code == 200, answer.text
        return [row["task_id"] for row in answer.json()["data"]]

    assert ids(task_id=first) == [first]
    assert ids(model_name="wan2.7-i2v") == [second]
    assert ids(status="PENDING") == [second]
    assert ids(page_size=1, page_no=2) == [first]
    from datetime import datetime

    from wanmock.mockserver.profiles.dashscope import UTC8

    def stamp(seconds: float) -> str:
        return datetime.fromtimestamp(seconds, UTC8).strftime("%Y%m%d%H%M%S")

    now = mock.clock.now()
    assert ids(start_time=stamp(now - 60), end_time=stamp(now + 60)) == [second]
    assert ids(end_time=stamp(now - 1800)) == [first]
    for bad in ({"start_time": stamp(now - 90000), "end_time": stamp(now)}, {"start_time": "2026-11-30"}):
        refused = mock.get("/api/v1/tasks", headers=auth, params=bad)
        assert refused.status_code == 400
        assert refused.json()["code"] == "InvalidParameter"


def test_dashscope_upload_policy_and_upload_host(make_mock: Any) -> None:
    from wanmock.schemas import catalog

    mock = make_mock(providers=("dashscope",))
    auth = {"Authorization": "Bearer k"}
    policy = mock.get("/api/v1/uploads", headers=auth, params={"action": "getPolicy", "model": "wan2.7-i2v"})
    assert policy.status_code == 200
    assert catalog().load("dashscope", "upload-policy-response").issues(policy.json()) == []
    data = policy.json()["data"]
    host = data["upload_host"].removeprefix("http://mock")
    form = {"key": data["upload_dir"] + "/a.png", "policy": data["policy"], "success_action_status": "200"}
    stored = mock.post(host, data=form, files={"file": ("a.png", b"\x89PNG", "image/png")})
    assert (stored.status_code, stored.content) == (200, b"")
    nokey = mock.post(host, data={"policy": "x"}, files={"file": ("a.png", b"x", "image/png")})
    assert nokey.status_code == 400
    assert b"<Code>InvalidArgument</Code>" in nokey.content
    body = {"model": "wan2.7-i2v", "input": {"media": [{"type": "first_frame", "url": f"oss://{form['key']}"}]}}
    resolved = mock.submit("dashscope", "i2v", body, headers={"X-DashScope-OssResourceResolve": "enable"})
    assert resolved.status_code == 200


def test_dashscope_usage_may_carry_fps_and_the_images_ratio() -> None:
    from wanmock.schemas import catalog

    ok = case("dashscope", "valid-poll-succeeded-fps-image-ratio")
    assert catalog().validate("dashscope", "poll-response", ok["instance"]) == []


def test_dashscope_regional_hosts_are_in_the_manifest_and_the_openapi_servers() -> None:
    from wanmock.schemas import catalog
    from wanmock.schemas.openapi import openapi_document

    regions = catalog().provider("dashscope").manifest["regions"]
    urls = [r["url"] for r in regions]
    assert urls[:3] == [
        "https://dashscope.aliyuncs.com",
        "https://dashscope-intl.aliyuncs.com",
        "https://dashscope-us.aliyuncs.com",
    ]
    servers = [s["url"] for s in openapi_document("dashscope")["servers"]]
    assert servers == urls


# -- 6: conflicts stay visible ------------------------------------------------------------------


def test_i2v_without_media_is_refused_by_default_or_fails_the_task(make_mock: Any) -> None:
    body = {"model": "wan2.7-i2v", "input": {"prompt": "a cat"}}
    strict = make_mock(providers=("dashscope",))
    refused = strict.submit("dashscope", "i2v", body)
    assert refused.status_code == 400
    assert "$.input.media" in refused.json()["message"]
    later = make_mock(providers=("dashscope",), options=Options(i2v_missing_media="fail_task"))
    accepted = later.submit("dashscope", "i2v", body)
    assert accepted.status_code == 200
    assert "fail with 'Field required: input.media'" in accepted.headers[WARNING]
    later.advance(3600)
    polled = later.poll("dashscope", later.task_id("dashscope", accepted)).json()
    assert polled["output"]["task_status"] == "FAILED"
    assert polled["output"]["message"] == "Field required: input.media"


def test_apiyi_reference_image_count_follows_the_page_or_the_upstream(make_mock: Any) -> None:
    five = case("apiyi", "valid_videoedit_five_references")["instance"]
    video_only = {**five, "input": {**five["input"], "media": five["input"]["media"][:1]}}
    page = make_mock(providers=("apiyi",))
    assert page.submit("apiyi", "videoedit", five).status_code == 200
    assert page.submit("apiyi", "videoedit", video_only).status_code == 400
    upstream = make_mock(providers=("apiyi",), options=Options(apiyi_reference_images="0-4"))
    assert upstream.submit("apiyi", "videoedit", five).status_code == 400
    assert upstream.submit("apiyi", "videoedit", video_only).status_code == 200


def test_options_are_checked() -> None:
    for bad in ({"i2v_missing_media": "sometimes"}, {"apiyi_reference_images": "2-6"}, {"apiyi_error_shape": "x"}):
        with pytest.raises(ValueError, match="option"):
            Options(**bad)


# -- 7.2: Modellix ---------------------------------------------------------------------------


def test_modellix_account_endpoints_the_cli_calls(make_mock: Any) -> None:
    from wanmock.schemas import catalog

    mock = make_mock(providers=("modellix",), keys=frozenset({"good"}), options=Options(modellix_balance=12.5))
    good, bad = {"Authorization": "Bearer good"}, {"Authorization": "Bearer bad"}
    models = mock.get("/api/v1/models", headers=good)
    assert catalog().load("modellix", "models-response").issues(models.json()) == []
    slugs = [m["slug"] for m in models.json()["models"]]
    assert "alibaba/wan2.7-t2v" in slugs
    assert models.json()["data"]["models"] == models.json()["models"]
    valid = mock.get("/api/v1/apikey/validate", headers=good).json()
    invalid = mock.get("/api/v1/apikey/validate", headers=bad).json()
    assert (valid["code"], valid["data"]["is_valid"], invalid["data"]["is_valid"]) == (0, True, False)
    assert catalog().load("modellix", "apikey-validate-response").issues(invalid) == []
    balance = mock.get("/api/v1/team/balance", headers=good).json()
    assert balance == {"code": 0, "message": "success", "data": {"balance": 12.5}}
    assert mock.get("/api/v1/team/balance", headers=bad).status_code == 401
    assert mock.get("/api/v1/apikey/validate").status_code == 401


def test_modellix_missing_field_message_is_the_documented_one(make_mock: Any) -> None:
    mock = make_mock(providers=("modellix",))
    answer = mock.submit("modellix", "t2v", {})
    assert answer.status_code == 400
    assert answer.json()["message"] == "Invalid parameters: parameter 'prompt' is required"


@pytest.mark.parametrize(
    ("kind", "body", "field"),
    [
        ("t2v", {"prompt": "x", "audio_url": "ftp://example.com/a.mp3"}, "$.audio_url"),
        ("i2v", {"prompt": "x", "first_frame": "https://example.com/a.png\n"}, "$.first_frame"),
        (
            "videoedit",
            {"video_url": "https://example.com/in.mp4", "reference_images": ["file:///a.png"]},
            "$.reference_images[0]",
        ),
    ],
)
def test_modellix_url_fields_take_only_what_it_can_fetch(
    make_mock: Any, kind: str, body: dict[str, Any], field: str
) -> None:
    mock = make_mock(providers=("modellix",))
    answer = mock.submit("modellix", kind, body)
    assert answer.status_code == 400
    assert field in answer.json()["message"]


# -- 7.3: AI/ML API ----------------------------------------------------------------------------


def test_aimlapi_answers_carry_meta_usage(make_mock: Any) -> None:
    from wanmock.schemas import catalog

    mock = make_mock(providers=("aimlapi",))
    submitted = mock.submit("aimlapi", "t2v", {"model": "alibaba/wan-2-7-t2v", "prompt": "a cat", "duration": 10})
    usage = submitted.json()["meta"]["usage"]
    assert usage == {"credits_used": 3900000, "usd_spent": 1.95}  # the documented example's rate
    assert catalog().validate("aimlapi", "submit-response", submitted.json()) == []
    task = mock.task_id("aimlapi", submitted)
    for _ in range(3):
        polled = mock.poll("aimlapi", task).json()
        assert polled["meta"]["usage"]["credits_used"] == 3900000
        assert catalog().validate("aimlapi", "poll-response", polled) == []
        mock.advance(400)


def test_aimlapi_error_path_is_the_providers_whatever_the_mount(mock: Mock) -> None:
    answer = mock.post(
        "/aimlapi/v2/video/generations", json={"model": "alibaba/wan-2-7-t2v"}, headers={"Authorization": "Bearer k"}
    )
    assert answer.status_code == 400
    assert answer.json()["path"] == "/v2/video/generations"


def test_serve_takes_the_new_options_by_name() -> None:
    import argparse

    from wanmock.mockserver.serve import add_parser, config_from

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    argv = ["serve", "--set", "options.refuse_undocumented=true", "--set", "i2v_missing_media=fail_task"]
    argv += ["--set", "modellix_balance=12.5", "--set", "apiyi_reference_images=0-4"]
    options = config_from(parser.parse_args(argv)).options
    assert (options.refuse_undocumented, options.i2v_missing_media) == (True, "fail_task")
    assert (options.modellix_balance, options.apiyi_reference_images) == (12.5, "0-4")
    with pytest.raises(ValueError, match="i2v_missing_media"):
        config_from(parser.parse_args(["serve", "--set", "i2v_missing_media=sometimes"]))
