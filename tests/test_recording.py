"""`wanmock record` and replay: a recording through the mock (standing in for the live provider)
with a secret key and a budget of one task keeps nothing secret, holds the ordered poll answers,
and replays them — by elapsed time on a manual clock — as the provider gave them."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import httpx
import pytest
from wanmock.contracts.client.dialects import dialect_for
from wanmock.contracts.client.transport import ASGIThreadTransport
from wanmock.contracts.tools.probes import UNKNOWN_TASK_ID, cheapest_duration, cheapest_request
from wanmock.contracts.tools.recording import (
    CASSETTE_FILE,
    add_parser,
    record,
    scrub,
    write_cassette,
)
from wanmock.mockserver.app import create_app
from wanmock.mockserver.clock import ManualClock
from wanmock.mockserver.config import ServerConfig
from wanmock.mockserver.media import probe
from wanmock.mockserver.profiles import profile_for
from wanmock.mockserver.replay import create_replay_app
from wanmock.mockserver.results import output_size
from wanmock.schemas import catalog, resolve_pointer

from tests.conftest import submit_headers
from tests.test_serve_cli import Server

SECRET = "sk-live-SECRET-123456"
PROVIDERS = sorted(catalog().providers)
UNREDACTED_SIGNATURE = re.compile(r"Signature=(?!<redacted>)", re.I)
BEARER_VALUE = re.compile(r"bearer\s+(?!<redacted>)[\w.-]", re.I)


def word(provider: str, body: Any) -> str:
    return str(resolve_pointer(body, catalog().provider(provider).task_fields["status_in_poll"]))


def assert_nothing_secret(directory: Path) -> None:
    files = [path for path in directory.rglob("*") if path.is_file()]
    assert files, f"{directory} is empty"
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert SECRET not in text, path
        assert "authorization: bearer" not in text.lower(), path
        bearer = BEARER_VALUE.search(text)
        assert bearer is None, text[bearer.start() :][:80]
        signature = UNREDACTED_SIGNATURE.search(text)
        assert signature is None, text[signature.start() :][:80]


# -- a recording through the mock ----------------------------------------------------------


@dataclass
class Recorded:
    provider: str
    directory: Path
    cassette: dict[str, Any]

    @property
    def task(self) -> tuple[str, dict[str, Any]]:
        (task_id, task), *_ = self.cassette["tasks"].items()
        return task_id, task

    def interaction(self, index: int) -> dict[str, Any]:
        return self.cassette["interactions"][index]  # type: ignore[no-any-return]

    def polls(self) -> list[dict[str, Any]]:
        return [self.interaction(i) for i in self.task[1]["polls"]]


def record_through_mock(
    provider: str, media: Path, *, leaky: bool = False, budget: int = 1, kind: str = "t2v"
) -> dict[str, Any]:
    clock = ManualClock()
    app = create_app(ServerConfig(clock=clock, timing="fast", seed=11, media_dir=media))
    inner = ASGIThreadTransport(app)
    transport: httpx.BaseTransport = LeakyTransport(inner) if leaky else inner
    try:
        return record(
            provider,
            api_key=SECRET,
            base_url=f"http://wanmock/{provider}",
            transport=transport,
            budget=budget,
            kind=kind,
            sleep=clock.advance,
            now=clock.now,
        )
    finally:
        inner.shutdown()
        app.state.wanmock.media.close()


@pytest.fixture(scope="module", params=PROVIDERS)
def recorded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    provider: str = request.param
    cassette = record_through_mock(provider, tmp_path_factory.mktemp("media"))
    directory = tmp_path_factory.mktemp(f"cassette-{provider}")
    write_cassette(directory, cassette)
    return Recorded(provider, directory, json.loads((directory / CASSETTE_FILE).read_text(encoding="utf-8")))


def test_the_cassette_keeps_nothing_secret(recorded: Recorded) -> None:
    assert_nothing_secret(recorded.directory)
    text = (recorded.directory / CASSETTE_FILE).read_text(encoding="utf-8")
    assert "Signature=<redacted>" in text  # the signed result URL was recorded, and scrubbed
    for interaction in recorded.cassette["interactions"]:
        assert interaction["request"]["headers"]["authorization"] == "<redacted>"


class LeakyTransport(httpx.BaseTransport):
    """A provider that leaks: echoes the key, sets cookies, hands out pre-signed S3 and OSS URLs."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        body = response.json()
        s3 = (
            "https://bucket.s3.amazonaws.com/v.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE"
            "&X-Amz-Signature=0f1e2d3c4b5a&width=1280"
        )
        oss = "https://x.oss-cn-beijing.aliyuncs.com/v.mp4?OSSAccessKeyId=LTAI5t&Expires=1790086400&Signature=a%2Bb%3D"
        if isinstance(body, dict):
            body["debug"] = {
                "echo": f"your key {SECRET} was accepted",
                "urls": [s3, oss, f"https://cdn.example.com/v.mp4?token={'t' * 50}&ok=1"],
                "escaped": "https://x.example.com/v.mp4?Expires=1\\u0026Signature=deadbeef",
                "request_id": "req-1234-keep-me",
            }
        headers = {
            **{k: v for k, v in response.headers.items() if k.lower() != "content-length"},
            "Set-Cookie": "session=s3cr3t; HttpOnly",
            "X-Echo-Authorization": f"Bearer {SECRET}",
            "Location": s3,
        }
        return httpx.Response(response.status_code, headers=headers, json=body, request=request)


def test_what_a_leaky_provider_answers_is_scrubbed(tmp_path: Path) -> None:
    cassette = record_through_mock("dashscope", tmp_path / "media", leaky=True)
    write_cassette(tmp_path / "cassette", cassette)
    assert_nothing_secret(tmp_path / "cassette")
    text = (tmp_path / "cassette" / CASSETTE_FILE).read_text(encoding="utf-8")
    for leaked in ("s3cr3t", "AKIAEXAMPLE", "0f1e2d3c4b5a", "LTAI5t", "deadbeef", "t" * 50):
        assert leaked not in text
    assert "req-1234-keep-me" in text  # request ids stay
    assert "width=1280" in text  # what is not a signature stays
    assert "ok=1" in text


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            {"Authorization": "Bearer sk-1", "X-Api-Key": "k", "Cookie": "a=b"},
            dict.fromkeys(("Authorization", "X-Api-Key", "Cookie"), "<redacted>"),
        ),
        ({"message": f"key {SECRET} refused"}, {"message": "key <redacted> refused"}),
        (
            "https://b.oss-cn-beijing.aliyuncs.com/v.mp4?OSSAccessKeyId=LTAI&Expires=17&Signature=abc&security-token=x",
            "https://b.oss-cn-beijing.aliyuncs.com/v.mp4?OSSAccessKeyId=<redacted>&Expires=<redacted>"
            "&Signature=<redacted>&security-token=<redacted>",
        ),
        (
            "see https://s3.amazonaws.com/b/v.mp4?X-Amz-Date=1&X-Amz-SignedHeaders=host&AccessKeyId=A&n=2 now",
            "see https://s3.amazonaws.com/b/v.mp4?X-Amz-Date=<redacted>&X-Amz-SignedHeaders=<redacted>"
            "&AccessKeyId=<redacted>&n=2 now",
        ),
        (f"https://x.com/v?id={'a' * 41}&short={'b' * 40}", f"https://x.com/v?id=<redacted>&short={'b' * 40}"),
        ("https://user:pw@host.com/path", "https://<redacted>@host.com/path"),
        ({"request_id": "7a2c-11", "requestId": "r-2"}, {"request_id": "7a2c-11", "requestId": "r-2"}),
        (
            [1, None, True, {"url": "http://h/v.mp4?Signature=s"}],
            [1, None, True, {"url": "http://h/v.mp4?Signature=<redacted>"}],
        ),
    ],
)
def test_scrub(given: Any, expected: Any) -> None:
    assert scrub(given, [SECRET]) == expected


def test_the_cassette_has_the_documented_shape(recorded: Recorded) -> None:
    cassette = recorded.cassette
    assert cassette["provider"] == recorded.provider
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", cassette["recorded_at"])
    assert cassette["wanmock_version"]
    for interaction in cassette["interactions"]:
        assert set(interaction) >= {"request", "response", "elapsed", "task_id", "endpoint"}
        assert set(interaction["request"]) == {"method", "path", "query", "headers", "body"}
        assert set(interaction["response"]) == {"status", "headers", "body"}
        assert interaction["endpoint"] in ("submit", "poll", "other")
        assert not interaction["request"]["path"].startswith(f"/{recorded.provider}/")  # relative to the base
    probes = {i["probe"]: i for i in cassette["interactions"]}
    assert probes["refused-key"]["response"]["status"] == 401
    assert probes["invalid-body"]["response"]["status"] == 400
    assert probes["unknown-task"]["task_id"] == UNKNOWN_TASK_ID
    assert UNKNOWN_TASK_ID not in cassette["tasks"]


def test_the_cassette_holds_the_ordered_poll_answers(recorded: Recorded) -> None:
    provider = catalog().provider(recorded.provider)
    task_id, task = recorded.task
    assert list(recorded.cassette["tasks"]) == [task_id]  # --budget 1: one billable task
    assert task["kind"] == "t2v"
    submit = recorded.interaction(task["submit"])
    assert (submit["endpoint"], submit["task_id"], submit["elapsed"]) == ("submit", task_id, 0.0)
    assert task["polls"] == sorted(task["polls"])
    assert task["polls"][0] > task["submit"]
    polls = recorded.polls()
    assert all(p["endpoint"] == "poll" and p["task_id"] == task_id for p in polls)
    elapsed = [p["elapsed"] for p in polls]
    assert elapsed == sorted(elapsed)
    assert elapsed[-1] > 0
    words = [word(recorded.provider, p["response"]["body"]) for p in polls]
    assert words[0] == provider.states["queued"].word
    assert words[-1] == provider.states["succeeded"].word


def test_the_billable_task_is_the_cheapest(recorded: Recorded) -> None:
    body = recorded.interaction(recorded.task[1]["submit"])["request"]["body"]
    dialect = dialect_for(recorded.provider)
    assert str(resolve_pointer(body, dialect.FIELDS["t2v"]["resolution"])).upper() == "720P"
    assert resolve_pointer(body, dialect.FIELDS["t2v"]["duration"]) == cheapest_duration(recorded.provider, "t2v")


@pytest.mark.parametrize(("provider", "kind"), [(p, k) for p in PROVIDERS for k in catalog().provider(p).models])
def test_the_cheapest_request_is_one_the_provider_takes(provider: str, kind: str) -> None:
    prepared = dialect_for(provider).prepare_submit(cheapest_request(provider, kind))  # validated here
    assert prepared.body is not None


OTHER_KINDS = [("modellix", "i2v"), ("apiyi", "videoedit"), ("dashscope", "videoedit")]


@pytest.mark.parametrize(("provider", "kind"), OTHER_KINDS)
def test_other_kinds_are_recorded_and_replayed(provider: str, kind: str, tmp_path: Path) -> None:
    cassette = record_through_mock(provider, tmp_path / "media", kind=kind)
    write_cassette(tmp_path / "cassette", cassette)
    recorded = Recorded(provider, tmp_path / "cassette", cassette)
    assert recorded.task[1]["kind"] == kind
    client = ReplayClient(tmp_path / "cassette", tmp_path / "replay-media")
    try:
        submitted = submit_recorded(recorded, client)
        assert submitted.status_code == 200
        client.clock.advance(recorded.polls()[-1]["elapsed"])
        task_id = resolve_pointer(submitted.json(), catalog().provider(provider).task_fields["id_in_submit"])
        done = poll(provider, client, task_id).json()
        assert word(provider, done) == catalog().provider(provider).states["succeeded"].word
        t2v = dialect_for(provider).prepare_submit(cheapest_request(provider, "t2v"))
        other = client.request("POST", t2v.path, json=t2v.body, headers=submit_headers(provider))
        assert other.status_code == 404  # no t2v was recorded: said in the provider's shape
        assert "holds no t2v submission" in other.text
        assert catalog().validate(provider, "error", other.json()) == []
    finally:
        client.close()


def test_a_zero_budget_spends_nothing(tmp_path: Path) -> None:
    cassette = record_through_mock("aimlapi", tmp_path / "media", budget=0)
    assert cassette["tasks"] == {}
    assert [i["probe"] for i in cassette["interactions"]] == ["refused-key", "invalid-body", "unknown-task"]
    assert all(i["response"]["status"] != 200 for i in cassette["interactions"])


# -- replay --------------------------------------------------------------------------------


class ReplayClient:
    def __init__(self, directory: Path, media: Path) -> None:
        self.clock = ManualClock()
        self.app = create_replay_app(directory, self.clock, media_dir=media)
        self._loop = asyncio.new_event_loop()
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://replay")

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self._loop.run_until_complete(self.http.request(method, url, **kwargs))

    def close(self) -> None:
        self._loop.run_until_complete(self.http.aclose())
        self.app.state.replay.media.close()
        self._loop.close()


@pytest.fixture
def replay(recorded: Recorded, tmp_path: Path) -> Iterator[ReplayClient]:
    client = ReplayClient(recorded.directory, tmp_path)
    yield client
    client.close()


def submit_recorded(recorded: Recorded, client: ReplayClient, prefix: str = "") -> httpx.Response:
    request = recorded.interaction(recorded.task[1]["submit"])["request"]
    return client.request(
        "POST", prefix + request["path"], json=request["body"], headers=submit_headers(recorded.provider)
    )


def poll(provider: str, client: ReplayClient, task_id: str, key: str = "any-key") -> httpx.Response:
    endpoint = catalog().provider(provider).endpoints["poll"]
    params = {k: v.replace("{task_id}", task_id) for k, v in endpoint.query.items()}
    path = endpoint.paths[0].replace("{task_id}", task_id)
    return client.request("GET", path, params=params, headers={"Authorization": f"Bearer {key}"})


def test_replay_answers_the_recorded_sequence_by_elapsed_time(recorded: Recorded, replay: ReplayClient) -> None:
    provider = recorded.provider
    submitted = submit_recorded(recorded, replay)
    assert submitted.status_code == recorded.interaction(recorded.task[1]["submit"])["response"]["status"]
    assert catalog().validate(provider, "submit-response", submitted.json()) == []
    task_id = resolve_pointer(submitted.json(), catalog().provider(provider).task_fields["id_in_submit"])
    start = replay.clock.now()
    seen, expected, previous = [], [], None
    for answer in recorded.polls():
        if previous is not None and answer["elapsed"] - previous["elapsed"] > 0.5:  # just before: the one before
            replay.clock.advance(start + answer["elapsed"] - 0.25 - replay.clock.now())
            early = poll(provider, replay, task_id)
            assert word(provider, early.json()) == word(provider, previous["response"]["body"])
        replay.clock.advance(start + answer["elapsed"] - replay.clock.now())
        polled = poll(provider, replay, task_id)
        assert polled.status_code == answer["response"]["status"]
        assert catalog().validate(provider, "poll-response", polled.json()) == []
        seen.append(word(provider, polled.json()))
        expected.append(word(provider, answer["response"]["body"]))
        previous = answer
    assert seen == expected
    replay.clock.advance(86_400 * 3)  # the last answer is sticky
    assert word(provider, poll(provider, replay, task_id).json()) == expected[-1]


def test_millisecond_elapsed_times_survive_an_epoch_clock(recorded: Recorded, tmp_path: Path) -> None:
    """Stepping a clock at ~1.8e9 s by recorded differences drifts by ~1e-7 s: still on time."""
    cassette = json.loads(json.dumps(recorded.cassette))
    polls = cassette["tasks"][recorded.task[0]]["polls"]
    for n, index in enumerate(polls):
        cassette["interactions"][index]["elapsed"] = round(n * 1.001 + 0.003, 3)
    write_cassette(tmp_path / "cassette", cassette)
    client = ReplayClient(tmp_path / "cassette", tmp_path / "media")
    try:
        submitted = submit_recorded(recorded, client)
        task_id = resolve_pointer(submitted.json(), catalog().provider(recorded.provider).task_fields["id_in_submit"])
        seen, at = [], 0.0
        for index in polls:
            elapsed = cassette["interactions"][index]["elapsed"]
            client.clock.advance(elapsed - at)
            at = elapsed
            seen.append(word(recorded.provider, poll(recorded.provider, client, task_id).json()))
    finally:
        client.close()
    assert seen == [word(recorded.provider, cassette["interactions"][i]["response"]["body"]) for i in polls]


def test_the_replayed_result_url_serves_the_recorded_video(recorded: Recorded, replay: ReplayClient) -> None:
    provider = catalog().provider(recorded.provider)
    submitted = submit_recorded(recorded, replay, prefix=f"/{recorded.provider}")  # also under /<provider>/
    task_id = resolve_pointer(submitted.json(), provider.task_fields["id_in_submit"])
    replay.clock.advance(recorded.polls()[-1]["elapsed"])
    done = poll(recorded.provider, replay, task_id)
    url = resolve_pointer(done.json(), provider.task_fields["result_url_in_poll"])
    assert url == f"http://replay/__files/{recorded.provider}/{task_id}.mp4"
    video = replay.request("GET", url)
    assert video.status_code == 200
    info = probe(video.content)
    assert (info["width"], info["height"]) == output_size("720P", "16:9")
    assert abs(info["duration"] - cheapest_duration(recorded.provider, "t2v")) <= 0.125  # type: ignore[operator]
    assert replay.request("GET", f"/__files/{recorded.provider}/no-such-task.mp4").status_code == 404


def test_replay_cycles_the_recorded_submissions(recorded: Recorded, replay: ReplayClient) -> None:
    provider = catalog().provider(recorded.provider)
    first = resolve_pointer(submit_recorded(recorded, replay).json(), provider.task_fields["id_in_submit"])
    replay.clock.advance(recorded.polls()[-1]["elapsed"])
    second = resolve_pointer(submit_recorded(recorded, replay).json(), provider.task_fields["id_in_submit"])
    assert first == recorded.task[0]
    assert second != first
    assert word(recorded.provider, poll(recorded.provider, replay, first).json()) == provider.states["succeeded"].word
    again = poll(recorded.provider, replay, second).json()
    assert word(recorded.provider, again) == provider.states["queued"].word  # its own timeline
    assert second in json.dumps(again)
    assert first not in json.dumps(again)


def test_an_unknown_id_gets_the_recorded_answer(recorded: Recorded, replay: ReplayClient) -> None:
    answer = next(i for i in recorded.cassette["interactions"] if i["probe"] == "unknown-task")["response"]
    polled = poll(recorded.provider, replay, "task-never-submitted")
    assert polled.status_code == answer["status"]
    expected = json.loads(json.dumps(answer["body"]).replace(UNKNOWN_TASK_ID, "task-never-submitted"))
    assert polled.json() == expected


def test_without_a_recorded_unknown_answer_the_profile_answers(recorded: Recorded, tmp_path: Path) -> None:
    cassette = json.loads(json.dumps(recorded.cassette))
    cassette["interactions"] = [
        {**i, "endpoint": "other"} if i["probe"] == "unknown-task" else i for i in cassette["interactions"]
    ]
    write_cassette(tmp_path / "cassette", cassette)
    client = ReplayClient(tmp_path / "cassette", tmp_path / "media")
    try:
        polled = poll(recorded.provider, client, "task-never-submitted")
    finally:
        client.close()
    profile = profile_for(recorded.provider, ServerConfig(providers=(recorded.provider,)))
    status, body = profile.missing_task("task-never-submitted", _context())
    assert polled.status_code == status
    assert sorted(polled.json()) == sorted(body)


def _context() -> Any:
    from wanmock.mockserver.profiles import Context

    return Context(0.0, "http://replay", "", "/", "req", lambda _: "")


def test_replay_answers_refusals_as_recorded(recorded: Recorded, replay: ReplayClient) -> None:
    probes = {i["probe"]: i for i in recorded.cassette["interactions"]}
    refused = poll(recorded.provider, replay, "any", key="invalid")
    assert (refused.status_code, refused.json()) == (401, probes["refused-key"]["response"]["body"])
    invalid = probes["invalid-body"]["request"]
    answered = replay.request("POST", invalid["path"], json=invalid["body"], headers=submit_headers(recorded.provider))
    assert (answered.status_code, answered.json()) == (400, probes["invalid-body"]["response"]["body"])


def test_replay_is_strict_like_the_mock(recorded: Recorded, replay: ReplayClient) -> None:
    missing = replay.request("GET", "/no/such/path", headers={"Authorization": "Bearer k"})
    assert missing.status_code == 404
    assert catalog().validate(recorded.provider, "error", missing.json()) == []
    submit = catalog().provider(recorded.provider).endpoints["submit"]
    if submit.headers:  # APIYI and DashScope require X-DashScope-Async on create
        request = recorded.interaction(recorded.task[1]["submit"])["request"]
        sync = replay.request("POST", request["path"], json=request["body"], headers={"Authorization": "Bearer k"})
        assert sync.status_code == (403 if recorded.provider == "dashscope" else 400)  # DashScope: 7.1


def test_the_replay_control_plane(recorded: Recorded, replay: ReplayClient) -> None:
    health = replay.request("GET", "/__admin/health").json()
    assert (health["mode"], health["providers"], health["clock"]) == ("replay", [recorded.provider], "manual")
    advanced = replay.request("POST", "/__admin/clock/advance", json={"seconds": 30})
    assert advanced.json()["now"] == health["now"] + 30
    assert replay.request("POST", "/__admin/clock/advance", json={"seconds": -1}).status_code == 400
    assert replay.request("POST", "/__admin/reset").status_code == 404  # not a replay server's


def test_a_missing_or_broken_cassette_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        create_replay_app(tmp_path, ManualClock())
    (tmp_path / CASSETTE_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        create_replay_app(tmp_path, ManualClock())
    (tmp_path / CASSETTE_FILE).write_text(json.dumps({"provider": "openai", "interactions": []}))
    with pytest.raises(ValueError, match="unknown provider"):
        create_replay_app(tmp_path, ManualClock())


# -- the commands ----------------------------------------------------------------------------


def record_command(*args: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="wanmock")
    add_parser(parser.add_subparsers())
    parsed = parser.parse_args(["record", *args])
    out, err = io.StringIO(), io.StringIO()
    code: int = parsed.handler(parsed, out, err)
    return code, out.getvalue(), err.getvalue()


def test_record_is_a_wanmock_command() -> None:
    found = {e.name: e.value for e in entry_points(group="wanmock.commands")}
    assert found.get("record") == "wanmock.contracts.tools.recording:add_parser"


def test_record_refuses_what_it_cannot_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    assert record_command("--provider", "dashscope", "--live", "--out", str(tmp_path))[0] == 2
    assert "DASHSCOPE_API_KEY" in record_command("--provider", "dashscope", "--live", "--out", str(tmp_path))[2]
    assert "0 or more" in record_command("--provider", "apiyi", "--live", "--out", str(tmp_path), "--budget", "-1")[2]
    assert (
        "does not offer"
        in record_command("--provider", "aimlapi", "--live", "--out", str(tmp_path), "--model", "videoedit")[2]
    )
    monkeypatch.setenv("DASHSCOPE_API_KEY", SECRET)
    needs_media = record_command(
        "--provider", "dashscope", "--live", "--out", str(tmp_path), "--budget", "1", "--model", "i2v"
    )
    assert "--media" in needs_media[2]
    unreachable = record_command("--provider", "dashscope", "--target", "http://127.0.0.1:9", "--out", str(tmp_path))
    assert "cannot reach http://127.0.0.1:9" in unreachable[2]
    assert not (tmp_path / CASSETTE_FILE).exists()
    (tmp_path / CASSETTE_FILE).write_text("{}")
    assert (
        "--force"
        in record_command("--provider", "dashscope", "--target", "http://127.0.0.1:9", "--out", str(tmp_path))[2]
    )


def test_serve_refuses_a_missing_cassette(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "wanmock.mockserver", "serve", "--port", "0", "--cassette", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "cassette.json" in done.stderr


@pytest.mark.slow
def test_record_from_a_served_mock_then_serve_the_cassette(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = "modellix"
    live = Server("--clock", "manual", "--timing", "fast", "--seed", "5")  # stands in for the provider
    try:
        monkeypatch.setenv("MODELLIX_API_KEY", SECRET)
        code, out, err = record_command(
            "--provider", provider, "--target", live.origin, "--out", str(tmp_path / "cassette"), "--budget", "1"
        )
    finally:
        live.stop()
    assert code == 0, err
    assert "1 task(s)" in out
    assert "pending -> processing" in out
    assert_nothing_secret(tmp_path / "cassette")
    recorded = Recorded(
        provider, tmp_path / "cassette", json.loads((tmp_path / "cassette" / CASSETTE_FILE).read_text())
    )

    served = Server("--cassette", str(tmp_path / "cassette"), "--clock", "manual")
    try:
        assert "replaying modellix" in served.banner[0]
        assert served.client.get("/__admin/health").json()["mode"] == "replay"
        request = recorded.interaction(recorded.task[1]["submit"])["request"]
        submitted = served.client.post(request["path"], json=request["body"], headers=submit_headers(provider))
        task_id = submitted.json()["data"]["task_id"]
        words, clock = [], 0.0
        for answer in recorded.polls():
            served.client.post("/__admin/clock/advance", json={"seconds": answer["elapsed"] - clock})
            clock = answer["elapsed"]
            polled = served.client.get(f"/api/v1/tasks/{task_id}", headers={"Authorization": "Bearer k"})
            assert catalog().validate(provider, "poll-response", polled.json()) == []
            words.append(polled.json()["data"]["status"])
        assert words == [a["response"]["body"]["data"]["status"] for a in recorded.polls()]
        url = polled.json()["data"]["result"]["resources"][0]["url"]
        assert url.startswith(served.origin + "/__files/")
        assert probe(httpx.get(url, timeout=30).content)["width"] == 1280
    finally:
        served.stop()


def test_a_path_with_a_newline_is_answered_in_the_providers_shape(recorded: Recorded, replay: ReplayClient) -> None:
    """As in the live mock: Starlette's catch-all route stops at a newline (%0A)."""
    answer = poll(recorded.provider, replay, "a%0Ab")
    assert answer.headers["content-type"].startswith("application/json"), answer.text
    message = "poll-response" if answer.status_code == 200 else "error"
    assert catalog().validate(recorded.provider, message, answer.json()) == []
