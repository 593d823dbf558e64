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
