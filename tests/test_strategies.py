"""Schema-generated strategies: valid bodies validate, mutations break them where they say,
normalised requests are expressible, and the strategies restate no schema fact."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from wanmock.contracts.client.dialects import dialect_for
from wanmock.contracts.client.models import ImageToVideo
from wanmock.contracts.testing import strategies
from wanmock.contracts.testing.strategies import (
    MUTATIONS,
    Mutation,
    applicable_mutations,
    from_schema,
    invalid_requests,
    paths_related,
    requests,
    video_requests,
)
from wanmock.schemas import catalog, resolve_pointer

PROVIDERS = sorted(catalog().providers)
PAIRS = [(p, k) for p in PROVIDERS for k in catalog().provider(p).models]
FAST = settings(max_examples=50, deadline=None)
COLLECT = settings(max_examples=100, deadline=None, derandomize=True, database=None)

FIRST_FRAME = frozenset({"first_frame"})
FIRST_FRAME_AUDIO = frozenset({"first_frame", "driving_audio"})
SIX_MODES = {
    FIRST_FRAME,
    FIRST_FRAME_AUDIO,
    frozenset({"first_frame", "last_frame"}),
    frozenset({"first_frame", "last_frame", "driving_audio"}),
    frozenset({"first_clip"}),
    frozenset({"first_clip", "last_frame"}),
}
I2V_MODES = {"dashscope": SIX_MODES, "modellix": SIX_MODES, "apiyi": {FIRST_FRAME, FIRST_FRAME_AUDIO}}
I2V_MODES["aimlapi"] = I2V_MODES["apiyi"]


# -- every draw holds ----------------------------------------------------------------------


@pytest.mark.parametrize(("provider", "kind"), PAIRS)
@FAST
@given(data=st.data())
def test_every_drawn_request_validates(provider: str, kind: str, data: st.DataObject) -> None:
    body = data.draw(requests(provider, kind))
    assert catalog().validate(provider, "submit", body, kind=kind) == []


@pytest.mark.parametrize(("provider", "kind"), PAIRS)
@FAST
@given(data=st.data())
def test_every_mutation_is_rejected_where_it_says(provider: str, kind: str, data: st.DataObject) -> None:
    mutated: Mutation = data.draw(invalid_requests(provider, kind))
    assert mutated.mutation in MUTATIONS
    assert mutated.path.startswith("$")
    issues = catalog().validate(provider, "submit", mutated.body, kind=kind)
    assert issues, mutated
    assert any(paths_related(issue.path, mutated.path) for issue in issues), (mutated, issues)


@pytest.mark.parametrize("provider", PROVIDERS)
@FAST
@given(data=st.data())
def test_every_normalised_request_can_be_prepared(provider: str, data: st.DataObject) -> None:
    request = data.draw(video_requests(provider))
    prepared = dialect_for(provider).prepare_submit(request)
    assert prepared.body is not None
    assert catalog().validate(provider, "submit", prepared.body, kind=request.kind) == []
    assert request.resolution is None or request.resolution == request.resolution.upper()


# -- coverage over many draws --------------------------------------------------------------


@pytest.mark.parametrize(("provider", "kind"), PAIRS)
def test_every_applicable_mutation_occurs(provider: str, kind: str) -> None:
    seen: set[str] = set()

    @COLLECT
    @given(invalid_requests(provider, kind))
    def collect(mutated: Mutation) -> None:
        seen.add(mutated.mutation)

    collect()
    applicable = applicable_mutations(provider, kind)
    assert seen <= applicable
    # The mixed strategy picks mutations at random: a rare one may miss 100 draws on a loaded machine
    # (hypothesis shrinks its effort when examples are slow). Each one that did not show up must still
    # be reachable through the strategy restricted to it.
    for mutation in sorted(applicable - seen):
        assert _mutations_drawn(invalid_requests(provider, kind, [mutation])) == {mutation}


def _mutations_drawn(strategy: st.SearchStrategy[Mutation]) -> set[str]:
    found: set[str] = set()

    @settings(max_examples=5, deadline=None, derandomize=True, database=None)
    @given(strategy)
    def draw(mutated: Mutation) -> None:
        found.add(mutated.mutation)

    draw()
    return found


def test_applicable_mutations_follow_the_schema_keywords() -> None:
    everything = set(MUTATIONS)
    # DashScope truncates over-long prompts (x-truncated-after) instead of rejecting them
    assert applicable_mutations("dashscope", "i2v") == everything - {"too_long"}
    assert applicable_mutations("modellix", "i2v") == everything - {"too_many_items"}
    assert "too_long" in applicable_mutations("modellix", "t2v")
    # AI/ML API states no range and no cross-field rule
    assert applicable_mutations("aimlapi", "t2v").isdisjoint(
        {"above_maximum", "below_minimum", "forbidden_combination"}
    )
    with pytest.raises(ValueError, match="none of"):
        invalid_requests("dashscope", "t2v", ["too_long"])


def test_only_the_mutations_asked_for_are_made() -> None:
    seen: set[str] = set()

    @COLLECT
    @given(invalid_requests("dashscope", "videoedit", ["too_many_items", "forbidden_combination"]))
    def collect(mutated: Mutation) -> None:
        assert mutated.path == "$.input.media"
        seen.add(mutated.mutation)

    collect()
    assert seen == {"too_many_items", "forbidden_combination"}


def test_dashscope_i2v_bodies_cover_the_six_media_modes() -> None:
    modes: set[frozenset[str]] = set()

    @COLLECT
    @given(requests("dashscope", "i2v"))
    def collect(body: dict[str, Any]) -> None:
        modes.add(frozenset(item["type"] for item in body["input"]["media"]))

    collect()
    assert modes == SIX_MODES


@pytest.mark.parametrize("provider", PROVIDERS)
def test_normalised_i2v_requests_cover_every_mode_the_provider_offers(provider: str) -> None:
    modes: set[frozenset[str]] = set()

    @COLLECT
    @given(video_requests(provider, "i2v"))
    def collect(request: ImageToVideo) -> None:
        modes.add(frozenset(request.mode.split("+")))

    collect()
    assert modes == I2V_MODES[provider]


# -- the generic generator -----------------------------------------------------------------

TOY: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"$ref": "#/$defs/name"},
        "size": {"type": ["integer", "null"], "minimum": 1, "maximum": 9},
        "a": {"type": "boolean"},
        "b": {"type": "boolean"},
        "tags": {
            "type": "array",
            "maxItems": 4,
            "items": {
                "type": "object",
                "required": ["kind"],
                "additionalProperties": False,
                "properties": {"kind": {"enum": ["x", "y", "z"]}, "v": {"type": "string"}},
                "allOf": [
                    {"if": {"properties": {"kind": {"const": "x"}}}, "then": {"properties": {"v": {"pattern": "^x-"}}}}
                ],
            },
            "contains": {"properties": {"kind": {"const": "x"}}},
            "minContains": 1,
            "maxContains": 2,
        },
    },
    "allOf": [{"oneOf": [{"required": ["a"]}, {"required": ["b"]}]}],
    "$defs": {"name": {"type": "string", "pattern": "^[a-z]+$", "minLength": 2, "maxLength": 6}},
}


def _toy_resolve(ref: str) -> Mapping[str, Any]:
    found: Mapping[str, Any] = resolve_pointer(TOY, ref.partition("#")[2])
    return found


@FAST
@given(from_schema(TOY, _toy_resolve))
def test_from_schema_generates_valid_values_without_a_filter(value: Any) -> None:
    assert Draft202012Validator(TOY).is_valid(value), value


def test_paths_relate_only_along_a_path() -> None:
    assert paths_related("$.input", "$.input.media[0].url")
    assert paths_related("$.input.media[0]", "$.input.media")
    assert paths_related("$", "$.model")
    assert not paths_related("$.input.prompt", "$.input.prompt_extend")
    assert not paths_related("$.input.media[1]", "$.input.media[10]")


# -- strategies.py restates no schema fact -------------------------------------------------

KEYWORDS = {"type", "items", "required", "properties", "enum", "const", "pattern", "contains", "default"}


def _facts(node: Any, document: Mapping[str, Any], documents: Mapping[str, Any]) -> Iterator[Any]:
    """Enum and const values, property names, patterns and bounds reachable from a request schema."""
    if isinstance(node, list):
        for child in node:
            yield from _facts(child, document, documents)
    if not isinstance(node, Mapping):
        return
    for key, value in node.items():
        if key == "$ref":
            file, _, pointer = value.partition("#")
            target = documents[file] if file else document
            yield from _facts(resolve_pointer(target, pointer), target, documents)
        elif key in ("enum", "const"):
            yield from value if key == "enum" else [value]
        elif key in ("pattern", "minimum", "maximum", "minLength", "maxLength", "maxItems"):
            yield value
        elif key == "properties":
            yield from (name for name in value if name not in KEYWORDS)
            yield from _facts(list(value.values()), document, documents)
        elif not key.startswith("x-") and key not in ("description", "examples", "title", "$id", "$schema"):
            yield from _facts(value, document, documents)


def test_strategies_restate_no_schema_fact() -> None:
    facts: set[Any] = set()
    for name in PROVIDERS:
        provider = catalog().provider(name)
        for model in provider.models.values():
            document = provider.documents[model.schema_file]
            facts.update(_facts(document, document, provider.documents))
            facts.update(model.ids)
    source = Path(strategies.__file__).read_text(encoding="utf-8")
    constants = {n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant)}
    texts = {f for f in facts if isinstance(f, str)}
    numbers = {f for f in facts if isinstance(f, int) and not isinstance(f, bool) and f > 10}
    assert {"720P", "first_frame", "wan2.7-t2v", "16:9", "negative_prompt"} <= texts  # the scan sees them
    assert texts & {c for c in constants if isinstance(c, str)} == set()
    assert numbers & {c for c in constants if type(c) is int} == set()
    distinctive = sorted(f for f in texts if re.search(r"[\d_:./-]", f))  # 720P, first_frame, 16:9...
    assert [f for f in distinctive if f in source] == []
