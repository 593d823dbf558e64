"""Stores under faults and races: a frozen or locked store is answered within seconds in each
provider's own 503 envelope and recovers; transitions are compare-and-set on every store (a
terminal state is never overwritten, the loser gets the provider's answer or 409); the memory
store stays flat at its cap (O(1) eviction, compact records the collector does not track)."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import shutil
import signal
import sqlite3
import threading
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from wanmock.mockserver.app import create_app
from wanmock.mockserver.clock import ManualClock
from wanmock.mockserver.errors import DEFAULT_STATUS
from wanmock.mockserver.profiles import PROFILES
from wanmock.mockserver.sqlite_store import SQLiteStore
from wanmock.mockserver.store import MemoryStore, TaskStore, store_from_url
from wanmock.mockserver.tasks import Task, TransitionError
from wanmock.schemas import catalog

from tests.conftest import AUTH, PROVIDERS, example_body, submit_headers
from tests.test_stores import (  # noqa: F401 (fixtures)
    RedisServer,
    StoreFactory,
    StoreMock,
    entry,
    open_store,
    redis_server,
    task,
)

ANSWER_WITHIN = 5.0  # seconds: "quickly", for a store whose timeout is 1 s
TRIALS = 20


def unavailable_status(provider: str) -> int:
    return PROFILES[provider].STATUS.get("unavailable", DEFAULT_STATUS["unavailable"])


def assert_unavailable(provider: str, response: httpx.Response) -> None:
    assert response.status_code == unavailable_status(provider), response.text
    assert catalog().validate(provider, "error", response.json()) == [], response.text


def all_providers(store: TaskStore, media: Path) -> StoreMock:
    mock = StoreMock(store, ManualClock(), media)
    mock.config.providers = tuple(PROVIDERS)
    mock.app = create_app(mock.config, store)
    mock.state = mock.app.state.wanmock
    mock.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=mock.app), base_url="http://mock")
    return mock


def timed(call: Any, *args: Any, **kwargs: Any) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    response = call(*args, **kwargs)
    return time.monotonic() - started, response


# -- a frozen Redis (SIGSTOP), a locked SQLite file ---------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own: it is paused, so it cannot be the session's."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not on PATH; install it (Debian: apt-get install redis-server)", pytrace=False)
    server = RedisServer(binary, tmp_path)
    yield server
    os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


def test_a_frozen_redis_is_answered_with_each_providers_503_within_seconds_and_recovers(
    own_redis: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = store_from_url(own_redis.url("frozen:") + "&timeout=1")
    mock = all_providers(store, tmp_path / "media")
    try:
        assert mock.get("/__admin/health").json()["store_state"]["state"] == "ok"
        before = {p: mock.task_id(p, mock.submit(p, "t2v", example_body(p, "t2v"))) for p in PROVIDERS}
        os.kill(own_redis.process.pid, signal.SIGSTOP)
        with caplog.at_level(logging.ERROR, logger="wanmock"):
            for provider in PROVIDERS:
                elapsed, response = timed(mock.submit, provider, "t2v", example_body(provider, "t2v"))
                assert elapsed < ANSWER_WITHIN, (provider, elapsed)
                assert_unavailable(provider, response)
                elapsed, response = timed(mock.poll, provider, before[provider])
                assert elapsed < ANSWER_WITHIN, (provider, elapsed)
                assert_unavailable(provider, response)
            elapsed, health = timed(mock.get, "/__admin/health")
            assert elapsed < ANSWER_WITHIN
            assert health.status_code == 503
            assert health.json()["store_state"]["state"] == "unavailable"
        lines = [r for r in caplog.records if r.name == "wanmock"]
        assert lines
        assert all(r.exc_info is None for r in lines)  # one line each, no tracebacks
        assert len(lines) <= 4, [r.getMessage() for r in lines]  # rate-limited: one per kind of failure
        os.kill(own_redis.process.pid, signal.SIGCONT)
        assert mock.get("/__admin/health").status_code == 200
        for provider in PROVIDERS:
            assert mock.poll(provider, before[provider]).status_code == 200
            assert mock.submit(provider, "t2v", example_body(provider, "t2v")).status_code == 200
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)
        mock.close()
        store.close()


def test_a_locked_sqlite_store_answers_503_quickly_and_recovers(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "tasks.db", timeout=0.5)
    mock = StoreMock(store, ManualClock(), tmp_path / "media")
    provider = "dashscope"
    try:
        locker = sqlite3.connect(tmp_path / "tasks.db", isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # another process holding the write lock (and readers out)
        elapsed, response = timed(mock.submit, provider, "t2v", example_body(provider, "t2v"))
        assert elapsed < ANSWER_WITHIN
        assert_unavailable(provider, response)
        assert mock.get("/__admin/health").status_code == 503
        locker.execute("ROLLBACK")
        locker.close()
        assert mock.get("/__admin/health").json()["store_state"] == {"state": "ok", "error": None, "since": None}
        assert mock.submit(provider, "t2v", example_body(provider, "t2v")).status_code == 200
    finally:
        mock.close()
        store.close()


class JournalFails(SQLiteStore):
    """A store whose journal writes fail (a full disk, say) while tasks are written."""

    def append(self, entry: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    def append_many(self, entries: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")


def test_a_submit_whose_task_was_written_succeeds_even_if_the_journal_write_fails(tmp_path: Path) -> None:
    store = JournalFails(tmp_path / "tasks.db")
    mock = StoreMock(store, ManualClock(), tmp_path / "media")
    try:
        for provider in PROVIDERS:
            mock.config.providers = (provider,)
            mock.app = create_app(mock.config, store)
            mock.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=mock.app), base_url="http://mock")
            response = mock.submit(provider, "t2v", example_body(provider, "t2v"))
            assert response.status_code == 200, response.text
            assert store.get(provider, mock.task_id(provider, response)) is not None  # a retry would pay twice
    finally:
        mock.close()
        store.close()


# -- transitions are compare-and-set -------------------------------------------------------------


def queued_task(store: TaskStore, n: int) -> Task:
    # started_at far ahead: the task stays queued, so a cancel is allowed until something ends it
    return store.add(task(0, at=1000.0, id=f"race-{n}-{uuid.uuid4().hex[:6]}", started_at=5000.0, finished_at=6000.0))


def cancel_if_queued(task: Task) -> None:
    if task.state_at(1500.0) != "queued":
        raise TransitionError("only a queued task can be canceled")
    task.finish(1500.0, "canceled")


def succeed(task: Task) -> None:
    task.finish(1500.0, "succeeded")


def race(
    barrier: threading.Barrier, won: dict[str, Task | None], created: Task, store: TaskStore, name: str, change: Any
) -> None:
    barrier.wait()
    try:
        won[name] = store.transition(created.provider, created.id, change)
    except TransitionError:
        won[name] = None


def test_a_cancel_racing_a_succeed_is_won_by_exactly_one_on_every_store(open_store: StoreFactory) -> None:  # noqa: F811
    """Two handles (for SQLite and Redis, two connections as two processes would have) race a
    client's cancel against a forced succeed, 20 times: exactly one wins each time, and the
    stored final state is the winner's."""
    first, second = open_store(), open_store()
    doubles = 0
    for n in range(TRIALS):
        created = queued_task(first, n)
        barrier = threading.Barrier(2)
        won: dict[str, Task | None] = {}

        threads = [
            threading.Thread(target=race, args=(barrier, won, created, first, "cancel", cancel_if_queued)),
            threading.Thread(target=race, args=(barrier, won, created, second, "succeed", succeed)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [name for name, result in won.items() if result is not None]
        doubles += len(winners) > 1
        assert len(winners) == 1, won
        final = first.get(created.provider, created.id)
        assert final is not None
        assert final.final_state == {"cancel": "canceled", "succeed": "succeeded"}[winners[0]]
    assert doubles == 0


def test_the_loser_of_a_cancel_succeed_race_gets_the_providers_answer_or_409(tmp_path: Path) -> None:
    """In one process, a client's cancel and a forced succeed run concurrently (the succeed awaits
    its body between reading and writing, where a stale write used to land): one wins, the other
    is refused — by the provider's own answer for a cancel, by 409 for the control plane."""
    store = MemoryStore()
    mock = StoreMock(store, ManualClock(), tmp_path / "media")
    provider = "dashscope"
    cancel = catalog().provider(provider).endpoints["cancel"]
    outcomes = set()
    try:
        for _ in range(TRIALS):
            submitted = mock.submit(provider, "t2v", example_body(provider, "t2v"))
            task_id = mock.task_id(provider, submitted)
            cancel_path = mock.prefix(provider) + cancel.paths[0].replace("{task_id}", task_id)

            async def both(task_id: str = task_id, cancel_path: str = cancel_path) -> list[httpx.Response]:
                return list(
                    await asyncio.gather(
                        mock.client.post(f"/__admin/tasks/{provider}/{task_id}/succeed", json={}),
                        mock.client.post(cancel_path, headers=AUTH),
                    )
                )

            forced, canceled = mock._loop.run_until_complete(both())
            assert (forced.status_code == 200) != (canceled.status_code == 200), (forced.text, canceled.text)
            final = store.get(provider, task_id)
            assert final is not None
            if forced.status_code == 200:
                assert final.final_state == "succeeded"
                assert canceled.status_code == PROFILES[provider].STATUS.get("conflict", DEFAULT_STATUS["conflict"])
                assert catalog().validate(provider, "error", canceled.json()) == []
                outcomes.add("succeed won")
            else:
                assert final.final_state == "canceled"
                assert forced.status_code == 409
                outcomes.add("cancel won")
    finally:
        mock.close()
    assert outcomes  # every trial had exactly one winner


# -- the memory store stays flat ----------------------------------------------------------------


def test_the_memory_store_drops_its_oldest_task_at_the_cap() -> None:
    store = MemoryStore(task_limit=1000)
    for n in range(1, 5001):
        store.add(task(n, id=f"t{n}", seq=0))
    assert store.count() == 1000
    assert store.get("dashscope", "t4000") is None
    assert [t.id for t in store.tasks()][:2] == ["t4001", "t4002"]
    assert len(store._order) <= 2 * 1000 + 1024  # the queue of keys does not grow without bound


def test_memory_store_records_are_untracked_by_the_collector_and_under_a_kibibyte() -> None:
    count = 20_000
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        store = MemoryStore()
        for n in range(count):
            store.add(task(n, id=str(uuid.UUID(int=n)), seq=0))
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    per_task = (used - base) / count
    assert per_task <= 1024, per_task
    gc.collect()
    assert not any(gc.is_tracked(record) for record in list(store._tasks.values())[:100])


def test_a_polled_task_is_built_once_per_record_and_few_are_kept() -> None:
    from wanmock.mockserver.store import _PEEK_LIMIT

    store = MemoryStore()
    store.add(task(1, id="a"))
    first = store.peek("dashscope", "a")
    assert first is not None
    assert first == store.get("dashscope", "a")
    assert store.peek("dashscope", "a") is first  # the record is unchanged: the same object
    assert store.get("dashscope", "a") is not first  # a reader that may change its task gets its own
    store.transition("dashscope", "a", lambda t: t.finish(1002.0, "canceled"))
    changed = store.peek("dashscope", "a")
    assert changed is not None
    assert changed is not first
    assert changed.final_state == "canceled"
    assert first.final_state == "succeeded"  # what a poll read before is left as it was
    store.save(task(1, id="a", final_state="failed"))
    saved = store.peek("dashscope", "a")
    assert saved is not None
    assert saved.final_state == "failed"
    assert store.peek("dashscope", "missing") is None
    for n in range(2, 2 + 3 * _PEEK_LIMIT):
        store.add(task(n, id=f"t{n}"))
        store.peek("dashscope", f"t{n}")
    assert len(store._peeked) == _PEEK_LIMIT  # the most recently built ones
    assert f"dashscope/t{1 + 3 * _PEEK_LIMIT}" in store._peeked


def test_a_canceled_apiyi_task_polls_alike_and_is_not_changed_by_the_poll(make_mock: Any) -> None:
    """APIYI shows a canceled task as failed: the poll words it so without changing the task
    (a polled task is shared between polls while its record is unchanged)."""
    mock = make_mock(providers=("apiyi",))
    created = mock.post(
        mock.submit_path("apiyi", "t2v"), json=example_body("apiyi", "t2v"), headers=submit_headers("apiyi")
    )
    task_id = created.json()["output"]["task_id"]
    assert mock.post(f"/__admin/tasks/apiyi/{task_id}/cancel", json={}).status_code == 200
    poll = catalog().provider("apiyi").endpoints["poll"].paths[0].replace("{task_id}", task_id)
    answers = [mock.get(poll, headers=AUTH).json() for _ in range(2)]
    assert answers[0] == answers[1]
    assert answers[0]["status"] == "failed"
    assert "Canceled" in answers[0]["fail_reason"]
    stored = mock.state.store.get("apiyi", task_id)
    assert (stored.final_state, stored.error_code, stored.error_message) == ("canceled", None, None)
    polled = mock.state.store.peek("apiyi", task_id)
    assert (polled.error_code, polled.error_message) == (None, None)


def test_requests_leave_nothing_the_collector_tracks_in_the_memory_store(make_mock: Any) -> None:
    """Tasks and journal entries are kept as flat tuples: however many requests a server has
    answered, a full collection has no more objects to walk (the store stays flat), and a read
    journal entry is still scrubbed."""
    mock = make_mock(providers=("dashscope",))
    path, body = mock.submit_path("dashscope", "t2v"), example_body("dashscope", "t2v")

    def tracked_after(requests: int) -> int:
        for _ in range(requests):
            created = mock.post(path, json=body, headers=submit_headers("dashscope"))
            mock.get(f"/api/v1/tasks/{created.json()['output']['task_id']}", headers=AUTH)
        for _ in range(4):  # a tuple is untracked when the collector finds only atoms in it
            gc.collect()
        return len(gc.get_objects())

    tracked_after(50)
    before = tracked_after(0)
    assert tracked_after(400) - before < 100  # 800 requests: 400 tasks and 800 journal entries
    entries = mock.state.store.journal()
    assert len(entries) >= 900
    assert "Bearer" not in json.dumps([e.to_dict() for e in entries[-4:]])


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_add_and_append_number_what_has_no_seq(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if kind == "sqlite":
        store: TaskStore = SQLiteStore(tmp_path / "tasks.db")
    else:
        store = store_from_url(request.getfixturevalue("redis_server").url(f"n{uuid.uuid4().hex[:8]}:"))
    try:
        first = store.add(task(0, id="a", seq=0))
        second = store.add(task(0, id="b", seq=0))
        assert 0 < first.seq < second.seq
        again = store.get("dashscope", "b")
        assert again is not None
        assert again.seq == second.seq
        assert [t.id for t in store.tasks()] == ["a", "b"]
    finally:
        store.close()


def test_append_many_numbers_in_order_and_keeps_the_bound(open_store: StoreFactory) -> None:  # noqa: F811
    store = open_store(journal_limit=5)
    store.append_many([entry(0, test_id="m") for _ in range(4)])
    store.append_many([entry(0, test_id="m") for _ in range(4)])
    seqs = [e.seq for e in store.journal()]
    assert len(seqs) == 5
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 5


def test_concurrent_requests_journal_every_exchange_once(tmp_path: Path) -> None:
    """Journal entries queued together are written in one go: none lost, none twice, each numbered."""
    store = SQLiteStore(tmp_path / "tasks.db")
    mock = StoreMock(store, ManualClock(), tmp_path / "media")
    provider = "dashscope"
    try:

        async def many() -> list[httpx.Response]:
            body = example_body(provider, "t2v")
            path = mock.submit_path(provider, "t2v")
            headers = {**submit_headers(provider), "X-Wanmock-Test": "many"}
            return list(await asyncio.gather(*(mock.client.post(path, json=body, headers=headers) for _ in range(40))))

        answers = mock._loop.run_until_complete(many())
        assert all(a.status_code == 200 for a in answers)
        entries = mock.get("/__admin/journal", params={"test": "many"}).json()["entries"]
        assert len(entries) == 40
        assert len({e["seq"] for e in entries}) == 40
        assert sorted(e["task_id"] for e in entries) == sorted(mock.task_id(provider, a) for a in answers)
    finally:
        mock.close()
        store.close()


def test_a_header_value_with_a_nul_is_journaled_whole(make_mock: Any) -> None:
    """The journal joins header names and values with NUL to keep a record flat; a value that
    holds a NUL itself (an HTTP parser would refuse it, an ASGI caller may not) is kept apart."""
    mock = make_mock(providers=("dashscope",))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/v1/tasks/no-such-task",
        "raw_path": b"/api/v1/tasks/no-such-task",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"mock"), (b"authorization", b"Bearer test-key"), (b"x-odd", b"a\x00b")],
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 5555),
    }
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    asyncio.run(mock.app(scope, receive, send))
    entry = mock.state.store.journal()[-1].to_dict()
    assert entry["status"] == sent[0]["status"] == 200  # DashScope answers an unknown id with UNKNOWN
    assert entry["request_headers"]["x-odd"] == "a\x00b"
    assert entry["request_headers"]["authorization"].startswith("<redacted sha256:")
