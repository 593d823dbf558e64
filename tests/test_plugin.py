"""The pytest plugin (wanmock.contracts.testing.plugin) as a user's suite meets it: sample projects run with
pytester (in-process, and in a subprocess under pytest-xdist), plus direct checks of test-id
scoping on one shared in-process mock."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from wanmock.contracts.client.engine import WanClient
from wanmock.contracts.client.errors import ServerError
from wanmock.contracts.client.models import TextToVideo
from wanmock.contracts.testing.plugin import ControlPlaneError, InProcessMock, MockInstance, wanmock_test_id
from wanmock.mockserver.clock import ManualClock
from wanmock.mockserver.config import ServerConfig

pytest_plugins = ["pytester"]

# The inner runs are as strict as this one: warnings are errors, markers must be registered.
INNER_INI = """
[pytest]
addopts = --strict-markers -p no:cacheprovider -ra
filterwarnings = error
"""
# The wanmock plugin loads through its pytest11 entry point, as in a user's project (an explicit
# "-p wanmock" in-process would warn: the `wanmock` namespace is already imported). Hypothesis's
# plugin is left out of the inner runs: pytester forgets the modules each run imports, and
# re-importing hypothesis (assertion-rewritten, as a plugin's distribution) costs a second a run.
PLUGIN = ("-p", "no:hypothesispytest")


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(INNER_INI)
    return pytester


def basetemp(pytester: pytest.Pytester) -> list[str]:
    return sorted(p.name for p in (pytester.path.parent / "basetemp").iterdir())


# -- a user's suite on the in-process mock --------------------------------------------------

SAMPLE = """
import asyncio

import httpx
import pytest

from wanmock.contracts.client.errors import RateLimitedError, TaskFailedError
from wanmock.contracts.client.models import TextToVideo


def test_text_to_video_runs_to_success(wanmock):
    client = wanmock.client("dashscope")
    handle = client.submit(TextToVideo("a cat in the moonlight", duration=5))
    assert wanmock.tasks("dashscope")[0]["state"] == "queued"
    wanmock.advance(5)
    assert wanmock.tasks("dashscope")[0]["state"] == "succeeded"
    status = client.wait(handle, timeout=60)
    assert status.state == "succeeded"
    assert status.result_url.startswith("http://wanmock/")


def test_a_429_on_submit_then_success_on_retry(wanmock):
    wanmock.fault(
        action="error", provider="dashscope", endpoint="submit", status=429, code="Throttling", retry_after=3, count=1
    )
    client = wanmock.client("dashscope")
    with pytest.raises(RateLimitedError) as caught:
        client.submit(TextToVideo("a cat"))
    assert caught.value.retry_after == 3
    assert wanmock.faults() == []  # count 1: used up
    handle = client.submit(TextToVideo("a cat"))
    assert client.wait(handle).state == "succeeded"
    assert [e["status"] for e in wanmock.journal(endpoint="submit")] == [429, 200]


def test_journal_sees_only_this_tests_requests(wanmock):
    # the same app, but not this test: a request without the header, and another test's scope
    with httpx.Client(transport=wanmock.shared_transport, base_url=wanmock.base_url("modellix")) as anonymous:
        anonymous.post(
            "/api/v1/alibaba/wan2.7-t2v/async", json={"prompt": "not mine"}, headers={"Authorization": "Bearer k"}
        )
    other = wanmock.instance.scope("someone-else")
    other.client("modellix").submit(TextToVideo("not mine either"))

    handle = wanmock.client("modellix").submit(TextToVideo("mine"))
    entries = wanmock.journal()
    assert [(e["endpoint"], e["task_id"]) for e in entries] == [("submit", handle.task_id)]
    assert {e["request_headers"]["x-wanmock-test"] for e in entries} == {wanmock.test_id}
    assert [t["id"] for t in wanmock.tasks()] == [handle.task_id]
    other.close()


def test_earlier_tests_left_nothing_behind(wanmock):
    leftovers = [t.test_id for t in wanmock.state.store.tasks()]
    assert leftovers == [None]  # only the anonymous task above, which no test owns
    assert wanmock.state.faults.rules() == []


def test_clock_and_fault_fixtures(wanmock, wanmock_clock, wanmock_faults):
    assert wanmock_clock is wanmock.clock
    wanmock_faults.fail_next(code="DataInspectionFailed", message="flagged", provider="dashscope")
    client = wanmock.client("dashscope")
    with pytest.raises(TaskFailedError) as caught:
        client.wait(client.submit(TextToVideo("a cat")))
    assert caught.value.code == "DataInspectionFailed"
    handle = client.submit(TextToVideo("a dog"))
    wanmock.expire("dashscope", handle.task_id)
    assert client.poll(handle).state == "unknown"


def test_async_client(wanmock):
    async def run():
        async with wanmock.async_client("aimlapi") as client:
            handle = await client.submit(TextToVideo("a cat"))
            return await client.wait(handle)

    assert asyncio.run(run()).state == "succeeded"
    assert {e["endpoint"] for e in wanmock.journal()} == {"submit", "poll"}


@pytest.mark.wanmock(timing="instant", providers=("apiyi",))
def test_a_private_mock_from_the_marker(wanmock):
    assert wanmock.base_url("apiyi") == "http://wanmock"
    client = wanmock.client("apiyi")
    assert client.poll(client.submit(TextToVideo("a cat"))).state == "succeeded"
"""


def test_sample_suite_on_the_in_process_mock(project: pytest.Pytester) -> None:
    project.makepyfile(test_sample=SAMPLE)
    result = project.runpytest(*PLUGIN)
    result.assert_outcomes(passed=7, warnings=0)
    assert not any(name.startswith("wanmock-server") for name in basetemp(project))  # never started


# -- the live marker ------------------------------------------------------------------------

LIVE = """
import os

import pytest


@pytest.mark.live("dashscope")
def test_calls_dashscope():
    assert os.environ["DASHSCOPE_API_KEY"]  # a real test would call the provider here
"""


def test_live_test_is_skipped_without_its_key(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    project.makepyfile(test_live=LIVE)
    result = project.runpytest(*PLUGIN)
    result.assert_outcomes(skipped=1, warnings=0)
    result.stdout.fnmatch_lines(["SKIPPED *live test against dashscope: set DASHSCOPE_API_KEY to run it"])


def test_live_test_runs_with_its_key(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-not-a-real-key")
    project.makepyfile(test_live=LIVE)
    project.runpytest(*PLUGIN).assert_outcomes(passed=1, warnings=0)


def test_live_marker_needs_a_known_provider(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_live="""
        import pytest

        @pytest.mark.live("openai")
        def test_typo():
            pass
        """
    )
    result = project.runpytest(*PLUGIN)
    result.assert_outcomes(errors=1, warnings=0)
    result.stdout.fnmatch_lines(["*live('openai'): unknown provider; known: aimlapi, apiyi, dashscope, modellix*"])


# -- the session server ---------------------------------------------------------------------

SERVER_SAMPLE = """
from pathlib import Path

import httpx

from wanmock.contracts.client.models import TextToVideo


def test_seed_request_over_a_socket(wanmock_server, wanmock_server_scope):
    Path("server.pid").write_text(str(wanmock_server.process.pid))
    assert wanmock_server.origin.startswith("http://127.0.0.1:")
    headers = {**wanmock_server_scope.headers, "Authorization": "Bearer test-key"}
    with httpx.Client(base_url=wanmock_server.base_url("modellix"), headers=headers) as http:
        seed = {"prompt": "A cute cat running in the moonlight"}
        submitted = http.post("/api/v1/alibaba/wan2.7-t2v/async", json=seed)
        assert submitted.status_code == 200, submitted.text
        task_id = submitted.json()["data"]["task_id"]
        assert http.get(f"/api/v1/tasks/{task_id}").json()["data"]["status"] == "pending"
        wanmock_server.advance(5)
        polled = http.get(f"/api/v1/tasks/{task_id}")
    assert polled.json()["data"]["status"] == "success"
    assert [e["endpoint"] for e in wanmock_server_scope.journal()] == ["submit", "poll", "poll"]
    assert [t["state"] for t in wanmock_server_scope.tasks()] == ["succeeded"]


def test_the_server_is_shared_but_its_state_is_per_test(wanmock_server, wanmock_server_scope):
    assert Path("server.pid").read_text() == str(wanmock_server.process.pid)
    assert wanmock_server_scope.journal() == [] and wanmock_server_scope.tasks() == []
    wanmock_server_scope.fault(action="error", provider="dashscope", endpoint="poll", status=503, count=1)
    client = wanmock_server_scope.client("dashscope")
    assert client.wait(client.submit(TextToVideo("a cat"))).state == "succeeded"
    assert [e["status"] for e in wanmock_server_scope.journal(endpoint="poll")][:2] == [503, 200]
"""


@pytest.mark.slow
def test_session_server_over_a_real_socket(project: pytest.Pytester) -> None:
    project.makepyfile(test_server=SERVER_SAMPLE)
    result = project.runpytest(*PLUGIN)
    result.assert_outcomes(passed=2, warnings=0)
    assert any(name.startswith("wanmock-server") for name in basetemp(project))  # started once, on demand
    pid = int((project.path / "server.pid").read_text())
    with pytest.raises(ProcessLookupError):  # terminated (and reaped) at the end of the session
        os.kill(pid, 0)


# -- in parallel, under pytest-xdist --------------------------------------------------------

PARALLEL = """
import pytest

from wanmock.contracts.client.models import TextToVideo

CASES = [(provider, n) for provider in ("modellix", "aimlapi", "apiyi", "dashscope") for n in (1, 2)]


@pytest.mark.parametrize(("provider", "n"), CASES)
def test_own_tasks_journal_and_rules(wanmock, provider, n):
    rule = wanmock.fault(action="error", provider=provider, endpoint="poll", status=503, count=1)
    kept = wanmock.fault(action="latency", provider=provider, endpoint="cancel", latency_seconds=0)
    assert [r["id"] for r in wanmock.faults()] == [rule["id"], kept["id"]]
    client = wanmock.client(provider)
    handles = [client.submit(TextToVideo(f"{provider} {i}")) for i in range(n)]
    assert all(client.wait(h).state == "succeeded" for h in handles)
    mine = {h.task_id for h in handles}
    assert [t["id"] for t in wanmock.tasks()] == [h.task_id for h in handles]
    entries = wanmock.journal()
    assert {e["test_id"] for e in entries} == {wanmock.test_id}
    assert {e["task_id"] for e in entries} == mine
    assert [e["status"] for e in entries if e["endpoint"] == "poll"].count(503) == 1
    assert [r["id"] for r in wanmock.faults()] == [kept["id"]]


@pytest.mark.parametrize("provider", ["modellix", "dashscope"])
def test_over_the_workers_server(wanmock_server_scope, provider):
    client = wanmock_server_scope.client(provider)
    handle = client.submit(TextToVideo("a cat"))
    assert client.wait(handle).state == "succeeded"
    assert {e["task_id"] for e in wanmock_server_scope.journal()} == {handle.task_id}
"""


@pytest.mark.slow
def test_parallel_suite_under_xdist(project: pytest.Pytester) -> None:
    project.makepyfile(test_parallel=PARALLEL)
    result = project.runpytest_subprocess(*PLUGIN, "-n", "2", "-p", "xdist")
    result.assert_outcomes(passed=10, warnings=0)
    result.stdout.fnmatch_lines(["*2 workers*"])


# -- scoping, directly ------------------------------------------------------------------------


@pytest.fixture
def shared() -> Iterator[MockInstance]:
    instance = MockInstance(ServerConfig(timing="fast", seed=3))
    yield instance
    instance.close()


def test_two_tests_on_one_mock_see_only_their_own(shared: MockInstance) -> None:
    assert isinstance(shared.clock, ManualClock)  # put in for the system clock
    a, b = shared.scope("tests/a.py::test_a"), shared.scope("tests/b.py::test_b")
    a.fault(action="error", provider="modellix", endpoint="submit", status=500)
    task_b = b.client("modellix").submit(TextToVideo("b")).task_id  # a's rule does not fire for b
    with pytest.raises(ServerError):
        a.client("modellix").submit(TextToVideo("a"))
    assert [r["test_id"] for r in a.faults()] == ["tests/a.py::test_a"]
    assert b.faults() == []
    assert [e["status"] for e in a.journal()] == [500]
    assert [e["task_id"] for e in b.journal()] == [task_b]
    assert a.tasks() == []
    assert [t["id"] for t in b.tasks()] == [task_b]
    with pytest.raises(ControlPlaneError, match="belongs to another test"):
        a.fail("modellix", task_b, code="X")
    a.close()  # teardown resets a's share only
    assert shared.state.faults.rules() == []
    assert [t.id for t in shared.state.store.tasks()] == [task_b]
    b.close()
    assert shared.state.store.tasks() == []
    assert list(shared.state.store.journal()) == []


def test_helpers_refuse_what_would_escape_the_scope(shared: MockInstance) -> None:
    scope = shared.scope("t")
    with pytest.raises(ValueError, match="scoped to this test"):
        scope.fault(action="drop", test_id="another")
    with pytest.raises(TypeError, match="unknown journal filter"):
        scope.journal(tset="t")
    with pytest.raises(ValueError, match="does not serve"):
        scope.client("openai")
    with pytest.raises(ControlPlaneError, match="400"):
        scope.fault(action="explode")
    scope.close()


def test_node_ids_become_header_values() -> None:
    assert wanmock_test_id("tests/test_x.py::test_y[a b-1.5]") == "tests/test_x.py::test_y[a b-1.5]"
    assert wanmock_test_id("tests/tést.py::t[\x01%]") == "tests/t%C3%A9st.py::t[%01%25]"


def test_the_fixture_in_this_suite(wanmock: InProcessMock, request: pytest.FixtureRequest) -> None:
    assert wanmock.test_id == request.node.nodeid
    client = wanmock.client("dashscope")
    assert isinstance(client, WanClient)
    assert client.wait(client.submit(TextToVideo("a cat"))).state == "succeeded"
    assert wanmock.journal()[0]["request_headers"]["x-wanmock-test"] == wanmock.test_id
