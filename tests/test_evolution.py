"""Schema evolution: diff classification on copies of the real schema files, inference, proposals
that never touch the captured file, and the `wanmock schemas diff|propose` exit codes."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from wanmock.mockserver.cli import main
from wanmock.schemas import catalog
from wanmock.schemas.catalog import ROOT
from wanmock.schemas.evolution import Change, diff, diff_dirs, diff_files, infer, propose, resolver_for, write_proposal

PROVIDERS = sorted(catalog().providers)
POLL = "poll-response.succeeded.json"


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _edit(directory: Path, name: str, change: Callable[[Any], None]) -> Path:
    path = directory / name
    document = _read(path)
    change(document)
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return path


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """Two copies of the captured DashScope directory: the old contract and one to modify."""
    old, new = tmp_path / "old" / "dashscope", tmp_path / "new" / "dashscope"
    shutil.copytree(ROOT / "dashscope", old)
    shutil.copytree(ROOT / "dashscope", new)
    return old, new


def _only(changes: list[Change], kind: str) -> Change:
    found = [c for c in changes if c.kind == kind]
    assert len(found) == 1, changes
    return found[0]


def _validator(schema: Any) -> Draft202012Validator:
    return Draft202012Validator(schema, registry=catalog().registry)


def _poll_bodies() -> list[dict[str, Any]]:
    base = {"request_id": "r-1", "output": {"task_id": "t-1", "task_status": "SUCCEEDED"}}
    bodies = [copy.deepcopy(base) for _ in range(3)]
    for i, body in enumerate(bodies):
        body["output"].update(video_url=f"https://example.com/{i}.mp4", progress=100)
        body["usage"] = {"video_count": 1, "duration": 5 + i * 0.5, "SR": 720}
    bodies[2]["output"]["end_time"] = "2026-11-21 10:00:00.000"
    return bodies


# -- diff: unchanged ---------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_directory_compared_with_its_copy_has_no_changes(provider: str, tmp_path: Path) -> None:
    shutil.copytree(ROOT / provider, tmp_path / provider)
    assert diff_dirs(ROOT / provider, tmp_path / provider) == []


# -- diff: requests ----------------------------------------------------------------------------


def _set_duration_maximum(value: int) -> Callable[[Any], None]:
    def change(doc: Any) -> None:
        doc["properties"]["parameters"]["properties"]["duration"]["maximum"] = value

    return change


def test_lowering_the_t2v_duration_maximum_breaks_clients(dirs: tuple[Path, Path]) -> None:
    old, new = dirs
    _edit(new, "submit.t2v.json", _set_duration_maximum(10))
    [change] = diff_files(old / "submit.t2v.json", new / "submit.t2v.json")
    assert change.breaking
    assert (change.kind, change.path) == ("maximum-lowered", "properties.parameters.properties.duration.maximum")
    assert change.instance == "$.parameters.duration"
    assert change.file == "submit.t2v.json"
    assert "from 15 to 10" in change.reason
    assert "rejected" in change.reason


def test_raising_the_t2v_duration_maximum_is_not_breaking(dirs: tuple[Path, Path]) -> None:
    old, new = dirs
    _edit(new, "submit.t2v.json", _set_duration_maximum(20))
    [change] = diff_files(old / "submit.t2v.json", new / "submit.t2v.json")
    assert change.kind == "maximum-raised"
    assert not change.breaking


def test_request_rules_narrowing_breaks_widening_does_not() -> None:
    old = _read(ROOT / "dashscope" / "submit.t2v.json")
    resolve = resolver_for(ROOT / "dashscope")
    cases: list[tuple[Callable[[Any], None], str, bool]] = [
        (lambda d: d["properties"]["input"]["required"].append("negative_prompt"), "required-added", True),
        (lambda d: d["properties"]["input"]["properties"].pop("audio_url"), "property-removed", True),
        (lambda d: d["properties"]["model"]["enum"].pop(), "enum-value-removed", True),
        (lambda d: d["properties"]["model"]["enum"].append("wan2.8-t2v"), "enum-value-added", False),
        (
            lambda d: d["properties"]["parameters"]["properties"].update(fps={"type": "integer"}),
            "property-added",
            False,
        ),
        (lambda d: d["properties"]["input"].pop("required"), "required-removed", False),
        (lambda d: d["properties"]["parameters"]["properties"]["duration"].update(minimum=3), "minimum-raised", True),
        (lambda d: d["properties"]["parameters"]["properties"]["duration"].update(minimum=1), "minimum-lowered", False),
        (lambda d: d["properties"]["parameters"]["properties"]["duration"].update(type="string"), "type-changed", True),
        (lambda d: d["properties"]["input"]["properties"]["prompt"].update(maxLength=100), "maxLength-added", True),
        (lambda d: d["properties"]["parameters"].pop("additionalProperties"), "opened", False),
    ]
    for change, kind, breaking in cases:
        new = copy.deepcopy(old)
        change(new)
        found = _only(diff(old, new, resolve_old=resolve, resolve_new=resolve), kind)
        assert found.breaking is breaking, found


def test_a_change_in_a_sibling_defs_file_is_reported_through_the_ref(dirs: tuple[Path, Path]) -> None:
    old, new = dirs
    _edit(new, "defs.json", lambda d: d["$defs"]["ratio"]["enum"].remove("4:3"))
    _edit(new, "defs.json", lambda d: d["$defs"]["url"].update(pattern="^https://."))
    changes = diff_files(old / "submit.t2v.json", new / "submit.t2v.json")
    removed = _only(changes, "enum-value-removed")
    assert removed.breaking
    assert removed.path == "properties.parameters.properties.ratio.enum"
    assert '"4:3"' in removed.reason
    pattern = _only(changes, "pattern-changed")
    assert pattern.breaking
    assert pattern.instance == "$.input.audio_url"


def test_refs_inside_one_document_resolve_without_a_resolver() -> None:
    old = {"$defs": {"n": {"type": "integer", "maximum": 5}}, "properties": {"n": {"$ref": "#/$defs/n"}}}
    new = copy.deepcopy(old)
    new["$defs"]["n"]["maximum"] = 4
    [change] = diff(old, new, direction="request")
    assert (change.kind, change.breaking, change.path) == ("maximum-lowered", True, "properties.n.maximum")
    [change] = diff(old, new, direction="response")
    assert not change.breaking  # the provider answers less: every answer clients handle stays handled


def test_renaming_a_request_field_is_a_breaking_removal_plus_an_addition(dirs: tuple[Path, Path]) -> None:
    old, new = dirs

    def rename(doc: Any) -> None:
        props = doc["properties"]["parameters"]["properties"]
        props["length"] = props.pop("duration")

    _edit(new, "submit.t2v.json", rename)
    changes = diff_files(old / "submit.t2v.json", new / "submit.t2v.json")
    assert _only(changes, "property-removed").breaking
    assert "renamed to 'length'?" in _only(changes, "property-removed").reason
    assert not _only(changes, "property-added").breaking
    assert any(c.breaking for c in changes)


def test_direction_can_be_forced_and_must_be_known() -> None:
    old = {"type": "object", "properties": {"a": {"enum": ["x", "y"]}}}
    new = {"type": "object", "properties": {"a": {"enum": ["x"]}}}
    assert diff(old, new, direction="request")[0].breaking
    assert not diff(old, new)[0].breaking  # auto: no "submit." in $id or title, so a response
    with pytest.raises(ValueError, match="direction"):
        diff(old, new, direction="sideways")


# -- diff: responses ---------------------------------------------------------------------------


def test_removing_video_url_from_the_succeeded_poll_breaks_clients(dirs: tuple[Path, Path]) -> None:
    old, new = dirs

    def drop(doc: Any) -> None:
        doc["properties"]["output"]["required"].remove("video_url")
        del doc["properties"]["output"]["properties"]["video_url"]

    _edit(new, POLL, drop)
    [change] = diff_files(old / POLL, new / POLL)
    assert (change.kind, change.breaking) == ("required-property-removed", True)
    assert change.path == "properties.output.properties.video_url"
    assert change.instance == "$.output.video_url"


def test_making_a_required_response_field_optional_breaks_clients(dirs: tuple[Path, Path]) -> None:
    old, new = dirs
    _edit(new, POLL, lambda d: d["properties"]["output"]["required"].remove("video_url"))
    [change] = diff_files(old / POLL, new / POLL)
    assert (change.kind, change.breaking, change.instance) == ("required-removed", True, "$.output.video_url")
    assert "unconditionally" in change.reason


def test_adding_an_optional_response_field_is_not_breaking(dirs: tuple[Path, Path]) -> None:
    old, new = dirs
    _edit(new, POLL, lambda d: d["properties"]["output"]["properties"].update(progress={"type": "integer"}))
    [change] = diff_files(old / POLL, new / POLL)
    assert (change.kind, change.breaking) == ("property-added", False)
    assert "must ignore fields" in change.reason


def test_adding_a_status_word_breaks_clients_that_switch_on_status(dirs: tuple[Path, Path]) -> None:
    old, new = dirs
    name = "poll-response.running.json"
    _edit(
        new, name, lambda d: d["properties"]["output"]["properties"].update(task_status={"enum": ["RUNNING", "PAUSED"]})
    )
    [change] = diff_files(old / name, new / name)
    assert (change.kind, change.breaking) == ("enum-value-added", True)
    assert change.path == "properties.output.properties.task_status.enum"
    assert '"PAUSED"' in change.reason
    assert "clients that switch on task_status" in change.reason


def test_a_new_state_file_is_a_new_status_word(dirs: tuple[Path, Path]) -> None:
    old, new = dirs
    shutil.copy(new / "poll-response.running.json", new / "poll-response.paused.json")
    _edit(
        new,
        "poll-response.paused.json",
        lambda d: d["properties"]["output"]["properties"].update(task_status={"const": "PAUSED"}),
    )
    [change] = diff_dirs(old, new)
    assert (change.kind, change.file, change.breaking) == ("file-added", "poll-response.paused.json", True)
    assert "switch on the status word" in change.reason


def test_adding_a_value_to_a_response_field_that_is_no_status_is_a_warning(dirs: tuple[Path, Path]) -> None:
    old, new = dirs
    _edit(new, POLL, lambda d: d["properties"]["usage"]["properties"]["SR"]["enum"].append(480))
    [change] = diff_files(old / POLL, new / POLL)
    assert (change.kind, change.breaking) == ("enum-value-added", False)
    assert "fallback" in change.reason


def test_response_type_change_breaks_and_new_guarantees_do_not(dirs: tuple[Path, Path]) -> None:
    old, new = dirs

    def change(doc: Any) -> None:
        usage = doc["properties"]["usage"]
        usage["properties"]["video_count"]["type"] = "string"
        usage["required"].append("duration")

    _edit(new, POLL, change)
    changes = diff_files(old / POLL, new / POLL)
    assert _only(changes, "type-changed").breaking
    assert not _only(changes, "required-added").breaking


def test_renaming_a_response_field_is_a_removal_plus_an_addition(dirs: tuple[Path, Path]) -> None:
    old, new = dirs

    def rename(doc: Any) -> None:
        output = doc["properties"]["output"]
        output["properties"]["result_url"] = output["properties"].pop("video_url")
        output["required"] = ["task_id", "task_status", "result_url"]

    _edit(new, POLL, rename)
    changes = diff_files(old / POLL, new / POLL)
    assert [(c.kind, c.breaking) for c in changes] == [
        ("required-property-removed", True),
        ("required-property-added", False),
    ]
    assert "renamed to 'result_url'?" in changes[0].reason


# -- diff: directories -------------------------------------------------------------------------


def test_a_directory_diff_reports_a_removed_file(dirs: tuple[Path, Path]) -> None:
    old, new = dirs
    (new / "submit.videoedit.json").unlink()
    _edit(new, "submit.t2v.json", _set_duration_maximum(20))
    changes = diff_dirs(old, new)
    assert [(c.file, c.kind, c.breaking) for c in changes] == [
        ("submit.t2v.json", "maximum-raised", False),
        ("submit.videoedit.json", "file-removed", True),
    ]


def test_a_defs_change_is_reported_once_per_message_that_uses_it(dirs: tuple[Path, Path]) -> None:
    old, new = dirs
    _edit(new, "defs.json", lambda d: d["$defs"]["seed"].update(maximum=1000))
    changes = diff_dirs(old, new)
    assert {c.file for c in changes} == {"submit.t2v.json", "submit.i2v.json", "submit.videoedit.json"}
    assert all(c.kind == "maximum-lowered" and c.breaking for c in changes)


# -- infer and propose -------------------------------------------------------------------------


def test_infer_accepts_every_sample() -> None:
    samples = _poll_bodies()
    schema = infer(samples)
    Draft202012Validator.check_schema(schema)
    assert all(Draft202012Validator(schema).is_valid(s) for s in samples)
    output = schema["properties"]["output"]
    assert output["required"] == ["task_id", "task_status", "video_url", "progress"]  # end_time: one sample only
    assert schema["properties"]["usage"]["properties"]["duration"]["type"] == "number"  # 5 and 5.5 merge
    assert "enum" not in output["properties"]["task_status"]  # no captured schema to say it is an enum


def test_infer_merges_array_items_and_adds_enums_only_where_the_captured_schema_has_them() -> None:
    captured = _read(ROOT / "dashscope" / POLL)
    schema = infer(_poll_bodies(), like=captured, resolve=resolver_for(ROOT / "dashscope"))
    assert schema["properties"]["output"]["properties"]["task_status"]["enum"] == ["SUCCEEDED"]
    assert "enum" not in schema["properties"]["output"]["properties"]["video_url"]
    items = infer([{"media": [{"type": "a"}, {"type": "b", "url": "u"}]}, {"media": []}])["properties"]["media"]
    assert items["items"] == {
        "type": "object",
        "properties": {"type": {"type": "string"}, "url": {"type": "string"}},
        "required": ["type"],
    }


def test_propose_declares_an_extra_response_field_and_keeps_the_rest() -> None:
    captured = _read(ROOT / "dashscope" / POLL)
    samples = _poll_bodies()
    proposal = propose(captured, samples, resolve=resolver_for(ROOT / "dashscope"))
    check = _validator(proposal)
    assert all(check.is_valid(s) for s in samples)
    assert proposal["properties"]["output"]["properties"]["progress"] == {"type": "integer"}
    assert "progress" not in proposal["properties"]["output"]["required"]
    [change] = proposal["x-proposed-changes"]
    assert change["at"] == "$.output.progress"
    assert (change["evidence"], change["of"]) == (3, 3)
    assert "x-proposed-unresolved" not in proposal
    wrong_word = copy.deepcopy(samples[0])
    wrong_word["output"]["task_status"] = "DONE"
    assert not _validator(captured).is_valid(wrong_word)
    assert not check.is_valid(wrong_word)  # what the captured schema rejects elsewhere stays rejected
    no_url = copy.deepcopy(samples[0])
    del no_url["output"]["video_url"]
    assert not check.is_valid(no_url)


def test_propose_widens_enums_and_relaxes_required_only_with_evidence() -> None:
    captured = _read(ROOT / "dashscope" / POLL)
    samples = _poll_bodies()
    samples[0]["usage"]["SR"] = 480
    del samples[1]["usage"]
    proposal = propose(captured, samples, resolve=resolver_for(ROOT / "dashscope"))
    assert all(_validator(proposal).is_valid(s) for s in samples)
    assert proposal["properties"]["usage"]["properties"]["SR"]["enum"] == [720, 1080, 480]
    assert proposal["required"] == ["request_id", "output"]
    assert proposal["properties"]["output"]["required"] == captured["properties"]["output"]["required"]
    by_path = {c["path"]: c for c in proposal["x-proposed-changes"]}
    assert by_path["required"]["evidence"] == 1
    assert by_path["properties.usage.properties.SR.enum"]["evidence"] == 1
    assert by_path["properties.output.properties.progress"]["evidence"] == 3


def test_propose_on_a_closed_request_inlines_a_ref_only_when_it_must_widen_it() -> None:
    captured = _read(ROOT / "dashscope" / "submit.t2v.json")
    samples = [
        {"model": "wan2.7-t2v", "input": {"prompt": "a"}, "parameters": {"ratio": "21:9", "fps": 24}},
        {"model": "wan2.7-t2v", "input": {"prompt": "b"}, "parameters": {"duration": 20, "seed": 1}},
    ]
    assert not any(_validator(captured).is_valid(s) for s in samples)
    proposal = propose(captured, samples, resolve=resolver_for(ROOT / "dashscope"))
    assert all(_validator(proposal).is_valid(s) for s in samples)
    params = proposal["properties"]["parameters"]
    assert params["additionalProperties"] is False
    assert params["properties"]["ratio"]["enum"][-1] == "21:9"
    assert params["properties"]["seed"] == {"$ref": "defs.json#/$defs/seed"}  # nothing to widen: kept
    assert params["properties"]["duration"]["maximum"] == 20
    assert not _validator(proposal).is_valid({"model": "wan2.7-t2v", "input": {"prompt": "c"}, "extra": 1})


def test_write_proposal_leaves_the_captured_file_byte_for_byte(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    captured = dirs[0] / POLL
    before = captured.read_bytes()
    written = write_proposal(captured, _poll_bodies())
    assert written == captured.with_name("poll-response.succeeded.proposed.json")
    assert captured.read_bytes() == before
    proposal = _read(written)
    assert proposal["$id"] == "https://wanmock.dev/schemas/dashscope/poll-response.succeeded.proposed.json"
    assert proposal["x-proposed-changes"]
    assert diff_dirs(dirs[1], dirs[0]) == []  # a proposal lying beside the captured files is no contract change
    [change] = diff_files(captured, written)  # the proposal reviewed like any other schema change
    assert (change.kind, change.breaking, change.instance) == ("property-added", False, "$.output.progress")
    elsewhere = write_proposal(captured, _poll_bodies(), out_dir=tmp_path / "out")
    assert elsewhere == tmp_path / "out" / written.name
    assert captured.read_bytes() == before


# -- CLI ---------------------------------------------------------------------------------------


def test_cli_diff_exits_1_on_a_breaking_change_and_0_otherwise(
    dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = dirs
    _edit(new, "submit.t2v.json", _set_duration_maximum(20))
    assert main(["schemas", "diff", str(old / "submit.t2v.json"), str(new / "submit.t2v.json")]) == 0
    printed = capsys.readouterr().out
    assert "ok" in printed
    assert "properties.parameters.properties.duration.maximum" in printed
    _edit(new, "submit.t2v.json", _set_duration_maximum(10))
    assert main(["schemas", "diff", str(old), str(new)]) == 1
    printed = capsys.readouterr().out
    assert "BREAKING  submit.t2v.json: properties.parameters.properties.duration.maximum" in printed
    assert "1 change(s), 1 breaking" in printed
    assert main(["schemas", "diff", "--json", str(old), str(new)]) == 1
    [change] = json.loads(capsys.readouterr().out)
    assert (change["kind"], change["breaking"], change["file"]) == ("maximum-lowered", True, "submit.t2v.json")


def test_cli_diff_usage_errors_exit_2(dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    old, new = dirs
    assert main(["schemas", "diff", str(old), str(new / "submit.t2v.json")]) == 2
    assert main(["schemas", "diff", str(old / "nope.json"), str(new / "nope.json")]) == 2
    (new / "broken.json").write_text("{", encoding="utf-8")
    assert main(["schemas", "diff", str(new / "broken.json"), str(new / "broken.json")]) == 2
    assert main(["schemas", "diff", "--direction", "request", str(old), str(new)]) == 2
    assert "must be two files or two directories" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["schemas", "diff", str(old)])
    assert exc.value.code == 2


def test_cli_propose_writes_into_out_and_prints_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    samples = tmp_path / "polls.json"
    samples.write_text(json.dumps(_poll_bodies()), encoding="utf-8")
    captured = ROOT / "dashscope" / POLL
    before = captured.read_bytes()
    args = ["schemas", "propose", "--provider", "dashscope", "--operation", "poll-response"]
    assert main([*args, "--out", str(tmp_path / "out"), str(samples)]) == 0  # state read from the samples
    captured_io = capsys.readouterr()
    written = Path(captured_io.out.strip())
    assert written == tmp_path / "out" / "poll-response.succeeded.proposed.json"
    assert "$.output.progress" in captured_io.err
    assert "progress" in _read(written)["properties"]["output"]["properties"]
    assert captured.read_bytes() == before
    assert not captured.with_name(written.name).exists()
    single = tmp_path / "one.json"
    single.write_text(json.dumps({"model": "wan2.7-t2v", "input": {"prompt": "x"}, "fps": 24}), encoding="utf-8")
    submit = ["schemas", "propose", "--provider", "dashscope", "--operation", "submit", "--model", "t2v"]
    assert main([*submit, "--out", str(tmp_path / "out"), str(single)]) == 0
    assert capsys.readouterr().out.strip().endswith("submit.t2v.proposed.json")


def test_cli_propose_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mixed = tmp_path / "mixed.json"
    bodies = _poll_bodies()
    bodies[0]["output"]["task_status"] = "RUNNING"
    mixed.write_text(json.dumps(bodies), encoding="utf-8")
    args = ["schemas", "propose", "--provider", "dashscope", "--out", str(tmp_path)]
    assert main([*args, "--operation", "poll-response", str(mixed)]) == 2
    assert "pass --state" in capsys.readouterr().err
    assert main([*args, "--operation", "submit", str(mixed)]) == 2  # submit needs --model
    assert main([*args, "--operation", "error", str(tmp_path / "missing.json")]) == 2
    assert list(tmp_path.glob("*.proposed.json")) == []


def test_cli_propose_writes_beside_the_samples_never_into_the_package(tmp_path: Path) -> None:
    samples = tmp_path / "answers"
    samples.mkdir()
    sample = samples / "one.json"
    sample.write_text(json.dumps(_poll_bodies()), encoding="utf-8")
    package = set((ROOT / "dashscope").iterdir())
    args = ["schemas", "propose", "--provider", "dashscope", "--operation", "poll-response", str(sample)]
    assert main(args) == 0
    assert (samples / "poll-response.succeeded.proposed.json").is_file()
    assert set((ROOT / "dashscope").iterdir()) == package
