"""The conformance corpus: documented examples validate, documented violations do not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from wanmock.schemas import catalog, resolve_pointer
from wanmock.schemas.catalog import ROOT

CASES = sorted((ROOT / "corpus").glob("*/*.json"))


def _case(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_corpus_case(path: Path) -> None:
    case = _case(path)
    provider = path.parent.name
    verdict = catalog().check(provider, case["message"], case["instance"], kind=case["model"], state=case["state"])
    issues = verdict.errors
    warned = sorted(f.issue.path for f in verdict.warnings)
    assert warned == sorted(case.get("warnings_at", [])), f"warnings {[str(f) for f in verdict.warnings]}"
    assert all(f.warning and "{" not in f.warning for f in verdict.warnings)
    if case["valid"]:
        assert issues == [], f"{case['source']}: documented example rejected"
    else:
        paths = [i.path for i in issues]
        assert case["error_at"] in paths, f"expected an error at {case['error_at']}, got {issues}"
        assert all(i.message for i in issues)


def test_corpus_has_a_valid_and_an_invalid_case_per_request_schema() -> None:
    cat = catalog()
    seen: dict[tuple[str, str], set[bool]] = {}
    for path in CASES:
        case = _case(path)
        if case["message"] == "submit":
            kind = cat.provider(path.parent.name).models[case["model"]].kind
            seen.setdefault((path.parent.name, kind), set()).add(case["valid"])
    for name, provider in cat.providers.items():
        for kind in provider.models:
            assert seen.get((name, kind)) == {True, False}, f"{name} {kind}"


def test_every_seed_page_example_is_in_the_corpus() -> None:
    seeds = {
        src["seed"]
        for provider in catalog().providers.values()
        for doc in provider.documents.values()
        for src in doc.get("x-source", [])
        if "seed" in src
    }
    assert len(seeds) == 5, seeds
    cited = " ".join(_case(p)["source"] for p in CASES if _case(p)["valid"])
    assert [s for s in sorted(seeds) if s not in cited] == []


def test_every_state_of_every_provider_has_a_valid_example() -> None:
    cat = catalog()
    covered: set[tuple[str, str]] = set()
    for path in CASES:
        case = _case(path)
        if case["message"] == "poll-response" and case["valid"]:
            p = cat.provider(path.parent.name)
            word = p.task_fields["status_in_poll"]
            state = p.state_for_word(resolve_pointer(case["instance"], word))
            assert state is not None
            covered.add((path.parent.name, state.canonical))
    missing = [
        (name, canonical)
        for name, p in cat.providers.items()
        for canonical in p.states
        if (name, canonical) not in covered
    ]
    assert missing == []
