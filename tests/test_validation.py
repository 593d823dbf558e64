"""The loader's validators: readable issues, and the fast gate agreeing with jsonschema."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from wanmock.schemas import SchemaNotFound, catalog, json_path
from wanmock.schemas.catalog import ROOT

CASES = [(p.parent.name, json.loads(p.read_text())) for p in sorted((ROOT / "corpus").glob("*/*.json"))]


def _schema_literals(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("enum", "examples") and isinstance(value, list):
                yield from value
            elif key in ("const", "default"):
                yield value
            else:
                yield from _schema_literals(value)
    elif isinstance(node, list):
        for item in node:
            yield from _schema_literals(item)


LITERALS = sorted(
    {json.dumps(v) for p in catalog().providers.values() for doc in p.documents.values() for v in _schema_literals(doc)}
)
URLS = [
    "https://example.com/a.png",
    "oss://b/x.png",
    "data:image/png;base64,AAAA",
    "ftp://x",
    "http://e",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(URLS)
    | st.sampled_from(LITERALS).map(json.loads)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def _locations(value: Any, here: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield here
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _locations(child, (*here, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _locations(child, (*here, index))


def _replace(value: Any, where: tuple[Any, ...], new: Any) -> Any:
    if not where:
        return new
    copy = json.loads(json.dumps(value))
    node = copy
    for part in where[:-1]:
        node = node[part]
    if new is _DELETE and isinstance(node, dict):
        del node[where[-1]]
    elif new is _DELETE:
        node.pop(where[-1])
    else:
        node[where[-1]] = new
    return copy


_DELETE = object()


@st.composite
def mutated_cases(draw: st.DrawFn) -> tuple[str, dict[str, Any], Any]:
    provider, case = draw(st.sampled_from(CASES))
    instance = case["instance"]
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        where = draw(st.sampled_from(list(_locations(instance))))
        new = draw(json_values | st.just(_DELETE)) if where else draw(json_values)
        instance = _replace(instance, where, new)
    return provider, case, instance


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_cases())
def test_fast_gate_agrees_with_jsonschema(drawn: tuple[str, dict[str, Any], Any]) -> None:
    provider, case, instance = drawn
    cat = catalog()
    if case["message"] == "poll-response":
        state = case["state"] or "queued"
        schema = cat.load(provider, "poll-response", state=state)
    else:
        schema = cat.load(provider, case["message"], case["model"], None)
    assert schema.fast is not None
    reference = schema.reference_issues(instance)
    assert schema.is_valid(instance) == (reference == []), reference
    assert schema.issues(instance) == reference


@example(value=2**64)
@example(value=5.0)
@example(value=2**63 + 0.5)
@given(st.integers() | st.floats(allow_nan=False, allow_infinity=False))
def test_fast_gate_agrees_on_numbers_at_every_range_edge(value: float) -> None:
    schema = catalog().load("dashscope", "submit", "t2v")
    body = {
        "model": "wan2.7-t2v",
        "input": {"prompt": "x"},
        "parameters": {"seed": value, "duration": 5},
    }
    assert schema.is_valid(body) == (schema.reference_issues(body) == [])


def test_required_and_unexpected_properties_point_at_the_field() -> None:
    issues = catalog().validate(
        "dashscope", "submit", {"model": "wan2.7-t2v", "input": {}, "size": "1280*720"}, kind="t2v"
    )
    assert [(i.path, i.keyword) for i in issues] == [
        ("$.input.prompt", "required"),
        ("$.size", "additionalProperties"),
    ]
    assert "allowed here: input, model, parameters" in issues[1].message


def test_cross_field_rules_explain_themselves() -> None:
    body = {
        "model": "wan2.7-i2v",
        "input": {"media": [{"type": "last_frame", "url": "https://e/x.png"}]},
    }
    [issue] = catalog().validate("dashscope", "submit", body, kind="i2v")
    assert issue.path == "$.input.media"
    assert "exactly one of first_frame or first_clip" in issue.message


def test_poll_response_dispatches_on_the_status_word() -> None:
    cat = catalog()
    [issue] = cat.validate("dashscope", "poll-response", {"request_id": "r", "output": {"task_id": "t"}})
    assert (issue.path, issue.message) == ("$.output.task_status", "is required")
    [issue] = cat.validate(
        "dashscope",
        "poll-response",
        {"request_id": "r", "output": {"task_id": "t", "task_status": "DONE"}},
    )
    assert issue.path == "$.output.task_status"
    assert '"SUCCEEDED"' in issue.message


def test_kind_accepts_the_providers_own_model_id() -> None:
    cat = catalog()
    assert cat.schema_file("dashscope", "submit", "wan2.7-i2v") == "submit.i2v.json"
    with pytest.raises(SchemaNotFound, match="offers no model"):
        cat.schema_file("aimlapi", "submit", "videoedit")
    with pytest.raises(SchemaNotFound, match="unknown provider"):
        cat.load("openai", "error")


def test_json_path_quotes_keys_that_are_not_identifiers() -> None:
    assert json_path(["input", "media", 0, "url"]) == "$.input.media[0].url"
    assert json_path(["16:9", "a b"]) == '$["16:9"]["a b"]'


def test_a_one_megabyte_data_uri_validates(tmp_path: Path) -> None:
    image = "data:image/png;base64," + "A" * 1_000_000
    body = {"first_frame": image, "prompt": "x"}
    assert catalog().validate("modellix", "submit", body, kind="i2v") == []


def test_field_schemas_follow_refs_across_and_within_files() -> None:
    p = catalog().provider("dashscope")
    assert p.field_schema("submit.t2v.json", "/parameters/seed")["maximum"] == 2147483647  # via defs.json
    assert p.field_schema("submit.t2v.json", "/parameters/nothing") == {}
    local, within = p.deref({"$ref": "#/$defs/at_most_one_first_frame"}, "submit.i2v.json")
    assert (local["maxContains"], within) == (1, "submit.i2v.json")  # resolved in its own file, not the node
