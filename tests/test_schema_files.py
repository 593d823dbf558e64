"""Every captured schema file follows docs/SCHEMAS.md and compiles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from wanmock.schemas import CANONICAL_STATES, catalog
from wanmock.schemas.catalog import ROOT

SCHEMA_FILES = sorted(p for p in ROOT.glob("*/*.json") if p.name != "manifest.json")
MANIFESTS = sorted(ROOT.glob("*/manifest.json"))
MANIFEST_SCHEMA = json.loads((ROOT / "manifest.schema.json").read_text())
SOURCES = Draft202012Validator(MANIFEST_SCHEMA["$defs"]["sources"])


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def test_all_four_providers_are_captured() -> None:
    assert set(catalog().providers) == {"modellix", "aimlapi", "apiyi", "dashscope"}


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_schema_file_is_valid_2020_12_with_provenance(path: Path) -> None:
    doc = _load(path)
    Draft202012Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"] == f"https://wanmock.dev/schemas/{path.parent.name}/{path.name}"
    assert doc["title"].strip()
    assert list(SOURCES.iter_errors(doc["x-source"])) == []
    for conflict in doc.get("x-conflicts", []):
        assert {"about", "values", "chosen", "reason"} <= set(conflict), conflict
    assert all(isinstance(s, str) and s for s in doc.get("x-not-found", []))


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.parent.name)
def test_manifest_matches_manifest_schema(path: Path) -> None:
    errors = [e.message for e in Draft202012Validator(MANIFEST_SCHEMA).iter_errors(_load(path))]
    assert errors == []


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.parent.name)
def test_documented_errors_cite_the_manifest_and_agree_with_error_json(path: Path) -> None:
    """Each ``errors`` entry cites refs of the manifest's own x-source, and error.json's x-codes
    has the same answer (keyed by the code, the status or the situation) with the same status."""
    manifest = _load(path)
    refs = {source["ref"] for source in manifest["x-source"]}
    codes = json.loads((path.parent / "error.json").read_text())["x-codes"]
    assert manifest["errors"]  # every shipped provider documents its "insufficient balance" answer
    for situation, answer in manifest["errors"].items():
        assert set(answer["sources"]) <= refs, situation
        keys = {answer.get("code"), str(answer["status"]), situation}
        statuses = {
            entry.get("status", int(key) if key.isdigit() else None) for key, entry in codes.items() if key in keys
        }
        assert statuses == {answer["status"]}, (situation, statuses)


@pytest.mark.parametrize("provider", sorted(catalog().providers))
def test_every_message_compiles_and_resolves_its_refs(provider: str) -> None:
    cat = catalog()
    for message, kind, state, _file in cat.messages(provider):
        schema = cat.load(provider, message, kind, state)
        # Touch every $ref: validating an empty object walks the required/ref chains.
        assert schema.reference_issues({}) != [] or message == "error"


@pytest.mark.parametrize("provider", sorted(catalog().providers))
def test_states_have_distinct_words_and_canonical_names(provider: str) -> None:
    p = catalog().provider(provider)
    words = [s.word for s in p.states.values()]
    assert len(set(words)) == len(words)
    assert set(p.states) <= set(CANONICAL_STATES)
    assert {"queued", "running", "succeeded", "failed"} <= set(p.states)


@pytest.mark.parametrize("provider", sorted(catalog().providers))
def test_model_ids_are_unique_across_kinds(provider: str) -> None:
    ids = [i for m in catalog().provider(provider).models.values() for i in m.ids]
    assert len(set(ids)) == len(ids)


def test_resellers_spell_resolution_their_own_way() -> None:
    cat = catalog()
    for provider, expected in [("aimlapi", "720p"), ("modellix", "720P"), ("apiyi", "720P")]:
        body_ok = {
            "aimlapi": {"model": "alibaba/wan-2-7-t2v", "prompt": "x", "resolution": expected},
            "modellix": {"prompt": "x", "resolution": expected},
            "apiyi": {
                "model": "wan2.7-t2v",
                "input": {"prompt": "x"},
                "parameters": {"resolution": expected},
            },
        }[provider]
        assert cat.validate(provider, "submit", body_ok, kind="t2v") == []
