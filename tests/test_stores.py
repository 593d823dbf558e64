"""Task stores behind one interface: the same behaviour from the memory store, SQLite (a file
several processes share, that survives a restart) and Redis (a real redis-server on loopback,
started here; several hosts share it). Subprocess tests run `wanmock serve` on each shared store:
a restart mid-lifecycle, two servers on one Redis, and `--workers 2`."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from wanmock.contracts.tools.launcher import serve_command
from wanmock.mockserver.app import create_app
from wanmock.mockserver.clock import ManualClock, StoredManualClock
from wanmock.mockserver.config import ServerConfig
from wanmock.mockserver.faults import FaultRule
from wanmock.mockserver.serve import BALANCED_PORTS
from wanmock.mockserver.store import JournalEntry, MemoryStore, StoreError, TaskStore, store_from_url
from wanmock.mockserver.tasks import Task, VideoParams
from wanmock.schemas import catalog, resolve_pointer

from tests.conftest import AUTH, Mock, example_body, submit_headers
from tests.test_serve_cli import Server

STORES = ("memory", "sqlite", "redis")
SHARED = ("sqlite", "redis")
REDIS_START_SECONDS = 15.0


# -- a real Redis server -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """``redis-server`` on a free loopback port, in memory only (no RDB, no AOF)."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + REDIS_START_SECONDS
        while not self.ready():  # poll for readiness; never sleep and hope
            if self.process.poll() is not None or time.monotonic() > deadline:
                output = self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{output}")
            time.sleep(0.05)

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def url(self, prefix: str) -> str:
        return f"redis://127.0.0.1:{self.port}/0?prefix={prefix}"

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
        output, _ = self.process.communicate(timeout=10)
        return output or ""


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server for this session (per xdist worker). Missing or broken, the Redis
    tests FAIL with the reason: they never pass silently. `.ci/run` installs it."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not on PATH, so the Redis store cannot be tested; install it "
            "(Debian: apt-get install redis-server — .ci/run does) and run again",
            pytrace=False,
        )
    try:
        server = RedisServer(binary, tmp_path_factory.mktemp("redis"))
    except (OSError, RuntimeError) as exc:
        pytest.fail(f"redis-server could not be started: {exc}", pytrace=False)
    yield server
    server.stop()


# -- stores -----------------------------------------------------------------------------------

StoreFactory = Callable[..., TaskStore]


@pytest.fixture(params=STORES)
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens the parametrized store; every call opens another handle on the SAME data (as another
    process would) — for the memory store, which lives in one process, the same object."""
    kind: str = request.param
    prefix = f"t{uuid.uuid4().hex[:12]}:"
    url = {
        "memory": "memory://",
        "sqlite": f"sqlite:///{tmp_path / 'tasks.db'}",
        "redis": request.getfixturevalue("redis_server").url(prefix) if kind == "redis" else "",
    }[kind]
    opened: list[TaskStore] = []
    memory: dict[str, TaskStore] = {}

    def factory(**options: Any) -> TaskStore:
        query = "&".join(f"{k}={v}" for k, v in options.items())
        full = url + (("&" if "?" in url else "?") + query if query else "")
        if kind == "memory":
            if "store" not in memory:
                memory["store"] = store_from_url(full)
            return memory["store"]
        store = store_from_url(full)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


def task(n: int, *, provider: str = "dashscope", test_id: str | None = None, at: float = 1000.0, **kw: Any) -> Task:
    params = VideoParams(resolution="720P", ratio="16:9", duration=5.0, audio=True, prompt=f"cat {n}")
    values: dict[str, Any] = {
        "id": f"task-{n}",
        "provider": provider,
        "kind": "t2v",
        "model_id": "wan2.7-t2v",
        "params": params,
        "created_at": at,
        "started_at": at + 1,
        "finished_at": at + 4,
        "retention_seconds": 86_400.0,
        "test_id": test_id,
        "owner": "abc",
        "request": {"prompt": f"cat {n}", "nested": {"list": [1, 2.5, None, "x"]}},
        "seq": n,
    }
    values.update(kw)
    return Task(**values)


def entry(seq: int, test_id: str | None = None) -> JournalEntry:
    return JournalEntry(
        seq=seq,
        at=1000.0 + seq,
        provider="dashscope",
        method="POST",
        path="/api/v1/services/aigc/video-generation/video-synthesis",
        query="",
        status=200,
        test_id=test_id,
        task_id=f"task-{seq}",
        endpoint="submit",
        request_body={"model": "wan2.7-t2v", "input": {"prompt": "a cat"}},
        response_body={"output": {"task_status": "PENDING"}},
        request_headers={"authorization": "<redacted sha256:abc>"},
    )


# -- the same behaviour from every store ----------------------------------------------------


def test_add_get_and_save_round_trip_a_task(open_store: StoreFactory) -> None:
    store = open_store()
    original = task(1, test_id="t1")
    store.add(original)
    other = open_store()  # another process's view
    found = other.get("dashscope", "task-1")
    assert found == original
    assert found is not original
    assert other.get("dashscope", "task-2") is None
    assert other.get("modellix", "task-1") is None  # keyed by (provider, id)
    assert found is not None
    found.finish(1002.0, "failed", "InvalidParameter", "no")
    other.save(found)
    again = store.get("dashscope", "task-1")
    assert again is not None
    assert (again.final_state, again.error_code, again.finished_at) == ("failed", "InvalidParameter", 1002.0)
    assert again.state_at(1003.0) == "failed"


def test_tasks_filter_by_provider_and_test_id_in_seq_order(open_store: StoreFactory) -> None:
    store = open_store()
    for n, provider, test_id in [
        (3, "dashscope", "a"),
        (1, "modellix", "a"),
        (2, "dashscope", None),
        (4, "apiyi", "b"),
    ]:
        store.add(task(n, provider=provider, test_id=test_id))
    other = open_store()
    assert [t.seq for t in other.tasks()] == [1, 2, 3, 4]
    assert [t.seq for t in other.tasks("dashscope")] == [2, 3]
    assert [t.seq for t in other.tasks(test_id="a")] == [1, 3]
    assert [t.seq for t in other.tasks("dashscope", "a")] == [3]
    assert other.tasks("aimlapi") == []
    assert other.tasks(test_id="nobody") == []


def test_journal_keeps_order_and_its_bound(open_store: StoreFactory) -> None:
    store = open_store(journal_limit=5)
    for seq in range(1, 9):
        store.append(entry(seq, test_id="j"))
    entries = list(open_store(journal_limit=5).journal())
    assert [e.seq for e in entries] == [4, 5, 6, 7, 8]  # the oldest went first
    assert entries[-1] == entry(8, test_id="j")  # every field survives


def test_reset_by_test_id_forgets_only_that_test(open_store: StoreFactory) -> None:
    store = open_store()
    store.add(task(1, test_id="keep"))
    store.add(task(2, test_id="drop"))
    store.add(task(3, provider="modellix", test_id="drop"))
    store.add(task(4))
    for seq, test_id in [(5, "keep"), (6, "drop"), (7, None), (8, "drop")]:
        store.append(entry(seq, test_id))
    open_store().reset("drop")
    assert [t.seq for t in store.tasks()] == [1, 4]
    assert store.tasks(test_id="drop") == []
    assert store.get("modellix", "task-3") is None
    assert [e.seq for e in store.journal()] == [5, 7]
    store.add(task(9, test_id="drop"))  # the test id is usable again
    assert [t.seq for t in store.tasks(test_id="drop")] == [9]
    store.reset()
    assert (store.tasks(), list(store.journal())) == ([], [])
    assert store.get("dashscope", "task-1") is None


def test_seq_is_unique_across_threads_and_handles(open_store: StoreFactory) -> None:
    stores = [open_store(), open_store()]  # two handles: as two processes would
    seen: list[int] = []
    lock = threading.Lock()

    def draw(store: TaskStore) -> None:
        mine = [store.next_seq() for _ in range(100)]
        with lock:
            seen.extend(mine)

    threads = [threading.Thread(target=draw, args=(stores[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == len(set(seen)) == 800


def test_tasks_are_evicted_after_their_retention(open_store: StoreFactory) -> None:
    store = open_store(evict_grace=5)
    store.add(task(1, retention_seconds=10.0))
    store.add(task(2, retention_seconds=None))  # no retention: kept
    store.add(task(3, at=1014.0))  # retention + grace not over yet
    assert store.get("dashscope", "task-1") is not None
    store.add(task(4, at=1015.0))  # a write sweeps: 1000 + 10 + 5 has come
    assert store.get("dashscope", "task-1") is None
    assert [t.seq for t in store.tasks()] == [2, 3, 4]
    expired = task(5, at=1015.0, retention_seconds=None)
    expired.expire(1016.0)  # expired by the control plane, without a retention
    store.add(expired)
    store.add(task(6, at=1021.0))
    assert store.get("dashscope", "task-5") is None


def test_fault_rules_count_down_and_scope_by_test(open_store: StoreFactory) -> None:
    rules = open_store().fault_rules()
    scope: dict[str, str | None] = {"provider": "dashscope", "endpoint": "submit", "test_id": "f"}
    first = rules.add(FaultRule(action="error", status=500, count=2, provider="dashscope"))
    latency = rules.add(FaultRule(action="latency", latency_seconds=0.01, test_id="f"))
    other = rules.add(FaultRule(action="drop", test_id="g"))
    assert len({first.id, latency.id, other.id}) == 3
    peer = open_store().fault_rules()  # another worker
    assert [r.id for r in peer.rules()] == [first.id, latency.id, other.id]
    assert [r.id for r in peer.rules("f")] == [latency.id]
    assert [r.id for r in peer.take(scope)] == [first.id, latency.id]
    fired = rules.take(scope)
    assert [(r.id, r.count, r.hits) for r in fired] == [(first.id, 0, 2), (latency.id, None, 2)]
    assert [r.id for r in peer.rules()] == [latency.id, other.id]  # the exhausted rule is gone
    assert [r.id for r in peer.take(scope, actions=("error",))] == []
    peer.clear("f")
    assert [r.id for r in rules.rules()] == [other.id]
    assert rules.remove(other.id)
    assert not peer.remove(other.id)
    assert not rules.remove("rule-x")
    rules.add(FaultRule(action="drop"))
    peer.clear()
    assert rules.rules() == []


def test_a_counted_rule_fires_exactly_count_times_under_contention(open_store: StoreFactory) -> None:
    rules = [open_store().fault_rules(), open_store().fault_rules()]
    rules[0].add(FaultRule(action="error", status=503, count=25))
    fired: list[str] = []
    lock = threading.Lock()

    def hammer(i: int) -> None:
        for _ in range(10):
            got = rules[i % 2].take({"provider": "dashscope", "endpoint": "poll"})
            with lock:
                fired.extend(r.id for r in got)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(fired) == 25
    assert rules[1].rules() == []


def test_a_store_keeps_the_first_link_secret(open_store: StoreFactory) -> None:
    assert open_store().link_secret(b"first") == b"first"
    assert open_store().link_secret(b"second") == b"first"


@pytest.mark.parametrize("kind", SHARED)
def test_a_stored_manual_clock_is_shared_and_adds_up(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = (
        f"sqlite:///{tmp_path / 'clock.db'}"
        if kind == "sqlite"
        else request.getfixturevalue("redis_server").url(f"c{uuid.uuid4().hex[:8]}:")
    )
    stores = [store_from_url(url), store_from_url(url)]
    try:
        clocks = [StoredManualClock(s) for s in stores]  # type: ignore[arg-type]
        assert clocks[0].now() == clocks[1].now() == ManualClock.DEFAULT_START
        threads = [threading.Thread(target=lambda c=c: [c.advance(0.5) for _ in range(20)]) for c in clocks * 2]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert clocks[1].now() == clocks[0].now() == ManualClock.DEFAULT_START + 40
        with pytest.raises(ValueError, match="only moves forward"):
            clocks[0].advance(-1)
        assert isinstance(clocks[0], ManualClock)  # the control plane treats it as the manual clock
    finally:
        for store in stores:
            store.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mongodb://localhost/0", "unsupported store"),
        ("sqlite://", "sqlite:///relative.db"),
        ("sqlite:///x.db?wal=off", "no options"),
        ("memory://here", "memory store takes no path"),
        ("memory://?journal_limit=0", "journal_limit must be >= 1"),
        ("memory://?journal_limit=many", "journal_limit must be an integer"),
        ("sqlite:///no-such-directory/x.db", "relative to"),
        ("redis://127.0.0.1:1/0", "cannot use the Redis store"),
    ],
)
def test_store_urls_that_cannot_work_are_refused_clearly(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        store_from_url(url)


def test_store_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wanmock.mockserver.sqlite_store import SQLiteStore

    assert isinstance(store_from_url("memory"), MemoryStore)
    assert isinstance(store_from_url("memory://?journal_limit=3&evict_grace=0"), MemoryStore)
    monkeypatch.chdir(tmp_path)
    relative = store_from_url("sqlite:///relative.db")
    absolute = store_from_url(f"sqlite:///{tmp_path / 'sub.db'}")  # four slashes: an absolute path
    try:
        assert isinstance(relative, SQLiteStore)
        assert relative.path == Path("relative.db")
        assert isinstance(absolute, SQLiteStore)
        assert absolute.path == tmp_path / "sub.db"
        assert (tmp_path / "relative.db").exists()
    finally:
        relative.close()
        absolute.close()


def test_workers_build_their_app_from_the_options_serve_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from wanmock.mockserver.serve import OPTIONS_VARIABLE, app_from_env, decode_options, encode_options

    keys = tmp_path / "keys.txt"
    keys.write_text("k-one\n")
    args = argparse.Namespace(
        provider="dashscope",
        timing="instant",
        seed=None,
        keys=keys,
        clock="manual",
        max_body_bytes=4096,
        store=f"sqlite:///{tmp_path / 'w.db'}",
        cassette=None,
        handler=print,  # not an option: left out
        media_dir=str(tmp_path / "media"),
    )
    text = encode_options(args)
    assert decode_options(text) == argparse.Namespace(**{k: v for k, v in vars(args).items() if k != "handler"})
    monkeypatch.delenv(OPTIONS_VARIABLE, raising=False)
    with pytest.raises(RuntimeError, match=OPTIONS_VARIABLE):
        app_from_env()
    monkeypatch.setenv(OPTIONS_VARIABLE, text)
    state = app_from_env().state.wanmock
    try:
        assert isinstance(state.config.clock, StoredManualClock)
        assert state.config.keys == frozenset({"k-one"})
        assert (state.config.providers, state.config.max_body_bytes) == (("dashscope",), 4096)
        assert state.media.directory == tmp_path / "media"
    finally:
        state.media.close()
        state.store.close()


# -- apps on one store: a task submitted through one is finished through another ----------------


class StoreMock(Mock):
    """The conftest Mock, on a given store and clock."""

    def __init__(self, store: TaskStore, clock: ManualClock, media_dir: Path) -> None:
        import asyncio

        self.clock = clock
        self.config = ServerConfig(timing="fast", clock=clock, media_dir=media_dir)
        self.app = create_app(self.config, store)
        self.state = self.app.state.wanmock
        self._loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://mock")


@pytest.fixture
def two_apps(open_store: StoreFactory, tmp_path: Path) -> Iterator[tuple[StoreMock, StoreMock]]:
    stores = [open_store(), open_store()]
    shared = ManualClock()
    clocks = [StoredManualClock(s) if s.shared else shared for s in stores]  # type: ignore[arg-type]
    apps = (StoreMock(stores[0], clocks[0], tmp_path / "media"), StoreMock(stores[1], clocks[1], tmp_path / "media"))
    yield apps
    for app in apps:
        app.close()


@pytest.mark.parametrize("provider", ["dashscope", "modellix"])
def test_a_task_submitted_on_one_app_finishes_on_another(two_apps: tuple[StoreMock, StoreMock], provider: str) -> None:
    a, b = two_apps
    submitted = a.submit(provider, "t2v", example_body(provider, "t2v"), headers={"X-Wanmock-Test": "x"})
    assert submitted.status_code == 200, submitted.text
    task_id = a.task_id(provider, submitted)
    b.advance(10)  # one clock: advancing through either moves both
    assert a.clock.now() == b.clock.now()
    polled = b.poll(provider, task_id)
    assert polled.status_code == 200, polled.text
    assert b.status_word(provider, polled) == catalog().provider(provider).states["succeeded"].word
    url = b.result_url(provider, polled)
    assert a.get(url).status_code == 200  # signed by B, accepted by A: one secret per store
    assert [t["id"] for t in b.get("/__admin/tasks", params={"test": "x"}).json()["tasks"]] == [task_id]
    journal = a.get("/__admin/journal", params={"test": "x"}).json()["entries"]
    assert [e["endpoint"] for e in journal] == ["submit"]


def test_fault_rules_and_forced_transitions_reach_every_app(two_apps: tuple[StoreMock, StoreMock]) -> None:
    a, b = two_apps
    rule = a.post("/__admin/faults", json={"action": "error", "provider": "dashscope", "status": 429, "count": 1})
    assert rule.status_code == 201, rule.text
    body = example_body("dashscope", "t2v")
    assert b.submit("dashscope", "t2v", body).status_code == 429  # B spends A's rule...
    created = a.submit("dashscope", "t2v", body)  # ...once
    assert created.status_code == 200
    task_id = a.task_id("dashscope", created)
    assert b.post(f"/__admin/tasks/dashscope/{task_id}/fail", json={"code": "DataInspectionFailed"}).status_code == 200
    failed = a.poll("dashscope", task_id)
    assert failed.json()["output"]["code"] == "DataInspectionFailed"
    assert b.get("/__admin/faults").json() == {"rules": []}


# -- wanmock serve on a shared store (real processes) ----------------------------------------


class Serve(Server):
    """`wanmock serve` with helpers to submit and poll through it."""

    def submit(self, provider: str = "dashscope", **headers: str) -> str:
        p = catalog().provider(provider)
        path = p.endpoints["submit"].paths[0].replace("{model}", p.models["t2v"].id)
        response = self.client.post(
            f"/{provider}{path}", json=example_body(provider, "t2v"), headers={**submit_headers(provider), **headers}
        )
        assert response.status_code == 200, response.text
        return str(resolve_pointer(response.json(), p.task_fields["id_in_submit"]))

    def poll(self, task_id: str, provider: str = "dashscope", client: httpx.Client | None = None) -> httpx.Response:
        endpoint = catalog().provider(provider).endpoints["poll"]
        return (client or self.client).get(
            f"/{provider}" + endpoint.paths[0].replace("{task_id}", task_id),
            params={k: v.replace("{task_id}", task_id) for k, v in endpoint.query.items()},
            headers=AUTH,
        )


def result_url(response: httpx.Response, provider: str = "dashscope") -> str:
    return str(resolve_pointer(response.json(), catalog().provider(provider).task_fields["result_url_in_poll"]))


def status(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return str(response.json()["output"]["task_status"])


@pytest.mark.slow
def test_restarting_with_the_sqlite_store_mid_lifecycle_loses_no_task(tmp_path: Path) -> None:
    args = ("--store", f"sqlite:///{tmp_path / 'tasks.db'}", "--clock", "manual")
    first = Serve(*args)
    try:
        task_id = first.submit()
        first.client.post("/__admin/clock/advance", json={"seconds": 2})
        assert status(first.poll(task_id)) == "RUNNING"
    finally:
        first.stop()
    second = Serve(*args)
    try:
        assert status(second.poll(task_id)) == "RUNNING"  # the clock survived too
        second.client.post("/__admin/clock/advance", json={"seconds": 5})
        done = second.poll(task_id)
        assert status(done) == "SUCCEEDED"
        assert httpx.get(result_url(done), timeout=30).status_code == 200
        journal = second.client.get("/__admin/journal").json()["entries"]
        assert [e["endpoint"] for e in journal] == ["submit", "poll", "poll", "poll"]
        assert second.client.get("/__admin/health").json()["store"] == "SQLiteStore"
    finally:
        second.stop()


@pytest.mark.slow
def test_two_servers_on_one_redis_serve_one_fleet(redis_server: RedisServer) -> None:
    url = redis_server.url(f"fleet{uuid.uuid4().hex[:8]}:")
    a = Serve("--store", url, "--clock", "manual")
    try:
        b = Serve("--store", url, "--clock", "manual")
        try:
            assert a.origin != b.origin
            rule = {"action": "error", "provider": "dashscope", "endpoint": "poll", "status": 500, "count": 1}
            assert a.client.post("/__admin/faults", json=rule).status_code == 201
            task_id = a.submit(**{"X-Wanmock-Test": "fleet"})
            assert b.poll(task_id).status_code == 500  # A's rule, spent on B
            b.client.post("/__admin/clock/advance", json={"seconds": 5})
            assert a.client.get("/__admin/clock").json() == b.client.get("/__admin/clock").json()
            done = b.poll(task_id)
            assert status(done) == "SUCCEEDED"
            video = result_url(done).replace(b.origin, a.origin)
            assert httpx.get(video, timeout=30).status_code == 200  # signed on B, served by A
            entries = a.client.get("/__admin/journal", params={"test": "fleet"}).json()["entries"]
            assert [e["endpoint"] for e in entries] == ["submit"]
        finally:
            b.stop()
    finally:
        a.stop()


@pytest.mark.slow
def test_workers_share_tasks_across_many_requests(tmp_path: Path) -> None:
    server = Serve("--store", f"sqlite:///{tmp_path / 'tasks.db'}", "--workers", "2", "--clock", "manual")
    try:
        host, port = server.origin.removeprefix("http://").split(":")

        def on_a_fresh_connection(method: str, path: str, **kwargs: Any) -> tuple[httpx.Response, int]:
            """The answer, and the pid of the worker that gave it (same connection, same worker)."""
            request = server.client.build_request(method, path, **kwargs)
            connection = http.client.HTTPConnection(host, int(port), timeout=20)
            try:
                target = request.url.raw_path.decode()
                connection.request(method, target, body=request.read(), headers=dict(request.headers))
                raw = connection.getresponse()
                response = httpx.Response(raw.status, headers=raw.getheaders(), content=raw.read())
                connection.request("GET", "/__admin/health")
                pid = int(json.loads(connection.getresponse().read())["pid"])
            finally:
                connection.close()
            return response, pid

        deadline, pids = time.monotonic() + 20, set[int]()
        while len(pids) < 2:  # both workers are up and taking connections
            assert time.monotonic() < deadline, f"only worker(s) {pids} ever answered"
            pids.add(on_a_fresh_connection("GET", "/__admin/health")[1])
        made: dict[tuple[str, str], int] = {}
        for i in range(40):
            provider = ("dashscope", "modellix")[i % 2]
            p = catalog().provider(provider)
            path = p.endpoints["submit"].paths[0].replace("{model}", p.models["t2v"].id)
            created, pid = on_a_fresh_connection(
                "POST", f"/{provider}{path}", json=example_body(provider, "t2v"), headers=submit_headers(provider)
            )
            assert created.status_code == 200, created.text
            made[(provider, str(resolve_pointer(created.json(), p.task_fields["id_in_submit"])))] = pid
        assert on_a_fresh_connection("POST", "/__admin/clock/advance", json={"seconds": 5})[0].status_code == 200
        crossed = 0
        for (provider, task_id), creator in made.items():
            endpoint = catalog().provider(provider).endpoints["poll"]
            polled, pid = on_a_fresh_connection(
                "GET",
                f"/{provider}" + endpoint.paths[0].replace("{task_id}", task_id),
                params={k: v.replace("{task_id}", task_id) for k, v in endpoint.query.items()},
                headers=AUTH,
            )
            assert polled.status_code == 200, polled.text
            word = resolve_pointer(polled.json(), catalog().provider(provider).task_fields["status_in_poll"])
            assert word == catalog().provider(provider).states["succeeded"].word
            crossed += pid != creator
        listed = server.client.get("/__admin/tasks").json()["tasks"]
        assert sorted((t["provider"], t["id"]) for t in listed) == sorted(made)
        assert len(set(made.values())) == 2, "one worker created every task"
        assert crossed > 0, "no task was polled on a worker other than the one that created it"
    finally:
        server.stop()
    assert server.process.returncode == 0
    children = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _parent(p) == server.process.pid]
    assert children == [], "workers outlived the server"


@pytest.mark.slow
def test_workers_each_take_a_share_of_connections_that_arrive_at_once(tmp_path: Path) -> None:
    """Each worker listens on a socket of its own (SO_REUSEPORT): 64 connections opened at once,
    as wrk opens them, are spread over both workers. Sharing the parent's socket, the first
    worker to wake took every waiting connection. Where the kernel does not balance a port's
    sockets (not Linux), the workers share the parent's socket, and every connection is still
    answered."""
    server = Serve("--store", f"sqlite:///{tmp_path / 'tasks.db'}", "--workers", "2")
    try:
        host, port = server.origin.removeprefix("http://").split(":")
        deadline, pids = time.monotonic() + 20, set[int]()
        while len(pids) < 2:  # both workers are up
            assert time.monotonic() < deadline, f"only worker(s) {pids} ever answered"
            pids.add(httpx.get(server.origin + "/__admin/health", timeout=20).json()["pid"])
        connections = [socket.create_connection((host, int(port)), timeout=20) for _ in range(64)]
        try:
            request = f"GET /__admin/health HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
            for connection in connections:
                connection.sendall(request)
            answered: dict[int, int] = {}
            for connection in connections:
                response = http.client.HTTPResponse(connection)
                response.begin()
                pid = json.loads(response.read())["pid"]
                answered[pid] = answered.get(pid, 0) + 1
        finally:
            for connection in connections:
                connection.close()
        assert sum(answered.values()) == 64
        assert set(answered) <= pids
        if BALANCED_PORTS:  # Linux: the kernel spreads connections over the workers' own sockets
            assert sorted(answered) == sorted(pids)
            assert min(answered.values()) >= 12, answered  # hashed: a split below 12/52 is a 1 in 10^6 event
            assert listening_sockets(int(port)) == 2  # one per worker, not the parent's shared by both
    finally:
        server.stop()
    assert server.process.returncode == 0


@pytest.mark.slow
def test_a_second_server_with_workers_on_the_same_port_is_refused(tmp_path: Path) -> None:
    """The workers' port is shared among their own sockets only: a second `wanmock serve
    --workers` on it (whose sockets would also carry SO_REUSEPORT) is refused, not let in."""
    server = Serve("--store", f"sqlite:///{tmp_path / 'a.db'}", "--workers", "2")
    try:
        port = server.origin.rsplit(":", 1)[1]
        command = serve_command("--port", port, "--store", f"sqlite:///{tmp_path / 'b.db'}", "--workers", "2")
        second = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        assert second.returncode == 2, second.stderr
        assert f"cannot listen on 127.0.0.1:{port}" in second.stderr
        if BALANCED_PORTS:  # one socket per worker of the first server (/proc: Linux)
            assert listening_sockets(int(port)) == 2
    finally:
        server.stop()


def listening_sockets(port: int) -> int:
    """How many TCP sockets listen on ``port`` (any address), from /proc/net/tcp and tcp6."""
    found = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            found += int(local.rsplit(":", 1)[1], 16) == port and state == "0A"  # 0A: LISTEN
    return found


def _parent(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


# -- SQLite group commit: one transaction per store-thread batch ------------------------------


def test_a_sqlite_batch_commits_its_writes_at_once_and_undoes_a_refused_one_alone(tmp_path: Path) -> None:
    from wanmock.mockserver.sqlite_store import SQLiteStore

    path = tmp_path / "batch.db"
    store, other = SQLiteStore(path), SQLiteStore(path)

    def refuse(t: Task) -> None:
        t.final_state = "canceled"
        raise ValueError("refused")

    try:
        store.add(task(1))
        with store.batched():
            store.add(task(2))
            with pytest.raises(ValueError, match="refused"):
                store.transition("dashscope", "task-1", refuse)  # its write is rolled back alone
            store.append(entry(0))
            store.add(task(3))
            assert other.get("dashscope", "task-2") is None  # nothing is visible before the batch commits
        assert {t.id for t in other.tasks()} == {"task-1", "task-2", "task-3"}
        assert other.get("dashscope", "task-1").final_state == "succeeded"  # type: ignore[union-attr]
        assert len(other.journal()) == 1

        def broken_batch() -> None:
            with store.batched():
                store.add(task(4))
                raise RuntimeError("the batch broke")

        with pytest.raises(RuntimeError):  # a batch that fails writes nothing
            broken_batch()
        assert other.get("dashscope", "task-4") is None
        store.add(task(5))  # and the write lock is free again
        assert other.get("dashscope", "task-5") is not None
    finally:
        store.close()
        other.close()


def test_a_failed_sqlite_batch_fails_every_call_of_it(tmp_path: Path) -> None:
    """When a batch's commit fails, none of its callers is told it succeeded."""
    import asyncio

    from wanmock.mockserver.sqlite_store import SQLiteStore
    from wanmock.mockserver.storeio import StoreIO, StoreUnavailable

    store = SQLiteStore(tmp_path / "fail.db")
    commits = 0
    real_end = store._end

    def failing_end(db: Any, *, commit: bool) -> None:
        nonlocal commits
        if commit:
            commits += 1
            real_end(db, commit=False)
            raise sqlite3.OperationalError("disk I/O error")
        real_end(db, commit=commit)

    store._end = failing_end  # type: ignore[method-assign]
    io = StoreIO(store)

    async def both() -> list[Any]:
        return await asyncio.gather(io.run(store.add, task(1)), io.run(store.add, task(2)), return_exceptions=True)

    try:
        outcomes = asyncio.run(both())
        assert commits >= 1
        assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes
        store._end = real_end  # type: ignore[method-assign]
        assert store.tasks() == []
    finally:
        io.close()
        store.close()


# -- Redis: a store thread's batch in one pipeline --------------------------------------------


def test_a_redis_batch_runs_in_order_in_one_pipeline(redis_server: RedisServer) -> None:
    import functools

    from wanmock.mockserver.redis_store import RedisStore

    store = store_from_url(redis_server.url(f"t{uuid.uuid4().hex[:12]}:"))
    assert isinstance(store, RedisStore)
    rules = store.fault_rules()
    sent: list[int] = []
    real_pipeline = store.redis.pipeline

    def counting_pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = real_pipeline(*args, **kwargs)
        execute = pipe.execute

        def counted(*a: Any, **k: Any) -> Any:
            sent.append(len(pipe.command_stack))
            return execute(*a, **k)

        pipe.execute = counted
        return pipe

    store.redis.pipeline = counting_pipeline  # type: ignore[method-assign]

    def cancel(t: Task) -> None:
        t.final_state = "canceled"

    try:
        calls = [
            functools.partial(rules.rules),
            functools.partial(store.add, task(0, seq=0)),
            functools.partial(store.get, "dashscope", "task-0"),  # sees the add before it
            functools.partial(store.transition, "dashscope", "task-0", cancel),  # alone, after those
            functools.partial(store.get, "dashscope", "task-0"),  # sees the transition
            functools.partial(store.get, "dashscope", "no-such-task"),
        ]
        outcomes = store.run_calls(calls)
        assert [error for error, _ in outcomes] == [None] * 6
        found_rules, added, got, changed, after, missing = (value for _, value in outcomes)
        assert found_rules == []
        assert added.seq > 0
        assert got.id == "task-0"
        assert got.seq == added.seq
        assert got.final_state == "succeeded"
        assert changed.final_state == after.final_state == "canceled"
        assert missing is None
        assert sent[0] == 3  # rules, add and get went in one round trip (transition is a transaction)
    finally:
        store.close()


def test_a_lost_redis_fails_every_call_of_the_pipeline_and_nothing_else(redis_server: RedisServer) -> None:
    import functools

    import redis as redis_client
    from wanmock.mockserver.redis_store import RedisStore

    store = store_from_url(redis_server.url(f"t{uuid.uuid4().hex[:12]}:"))
    assert isinstance(store, RedisStore)
    real_pipeline = store.redis.pipeline

    def broken_pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = real_pipeline(*args, **kwargs)

        def lost(*a: Any, **k: Any) -> Any:
            raise redis_client.ConnectionError("Connection reset by peer")

        pipe.execute = lost
        return pipe

    store.redis.pipeline = broken_pipeline  # type: ignore[method-assign]
    try:
        outcomes = store.run_calls(
            [functools.partial(store.add, task(1)), functools.partial(store.get, "dashscope", "x")]
        )
        assert all(isinstance(error, redis_client.ConnectionError) for error, _ in outcomes)
        assert all(isinstance(error, store.failures) for error, _ in outcomes)  # answered 503 by StoreIO
    finally:
        store.close()
