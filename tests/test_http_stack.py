"""The HTTP stack under `wanmock serve` (issue 12): the event loop it picks, and a provider's
answer written to the socket in one write (netguard.CoalescingCycle), with the connection
protocol fed bytes directly, no socket."""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import importlib.util
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState
from wanmock.mockserver.app import create_app
from wanmock.mockserver.config import ServerConfig
from wanmock.mockserver.http import ONE_WRITE
from wanmock.mockserver.serve import DEFAULT_LOOP, add_parser, http_stack

HELD_START = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")], ONE_WRITE: True}


def serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    return parser


def serve_args(*argv: str) -> argparse.Namespace:
    return serve_parser().parse_args(["serve", *argv])


class RecordingTransport(asyncio.Transport):
    """Records each write; a connection from 127.0.0.1:5555 to 127.0.0.1:8000."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 5555)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def exchange(app: Any, request: bytes, *, writes: int = 1) -> RecordingTransport:
    """Feed ``request`` to the guarded httptools protocol serving ``app``; the transport once
    ``writes`` writes were made (or the cycle finished)."""
    from wanmock.mockserver.netguard import GuardedHttpToolsProtocol

    config = uvicorn.Config(app, http=GuardedHttpToolsProtocol, lifespan="off", log_level="warning")
    config.load()
    protocol = GuardedHttpToolsProtocol(config, ServerState(), {})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(request)
    for _ in range(200):
        await asyncio.sleep(0)
        if len(transport.writes) >= writes and protocol.cycle is not None and protocol.cycle.response_complete:
            break
    protocol.connection_lost(None)
    return transport


def http_request(method: str, path: str, body: bytes = b"", **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1:8000", f"Content-Length: {len(body)}"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def head_and_body(written: bytes) -> tuple[bytes, bytes]:
    head, _, body = written.partition(b"\r\n\r\n")
    return head, body


def test_a_provider_answer_is_one_write_head_and_body() -> None:
    asyncio.run(_test_a_provider_answer_is_one_write_head_and_body())


async def _test_a_provider_answer_is_one_write_head_and_body() -> None:
    app = create_app(ServerConfig(providers=("modellix",), seed=1))
    body = b'{"prompt": "a red ball", "first_clip": "oss://bucket/clip.mp4", "seed": 0}'
    submit = http_request(
        "POST", "/api/v1/alibaba/wan2.7-i2v/async", body, Authorization="Bearer k", Content_Type="application/json"
    )
    transport = await exchange(app, submit)
    assert len(transport.writes) == 1, transport.writes
    head, answer = head_and_body(transport.writes[0])
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert f"content-length: {len(answer)}".encode() in head
    assert answer.startswith(b'{"code":0,"message":"success","data":{"status":"pending"')
    # an error answer too, in the provider's shape
    transport = await exchange(app, http_request("GET", "/api/v1/tasks/task-none", Authorization="Bearer k"))
    assert len(transport.writes) == 1
    head, answer = head_and_body(transport.writes[0])
    assert head.split(b" ")[1] != b"200"
    assert b'"code"' in answer


def test_a_head_request_gets_its_head_alone_in_one_write() -> None:
    asyncio.run(_test_a_head_request_gets_its_head_alone_in_one_write())


async def _test_a_head_request_gets_its_head_alone_in_one_write() -> None:
    app = create_app(ServerConfig(providers=("modellix",), seed=1))
    path = "/api/v1/tasks/task-none"
    got = await exchange(app, http_request("GET", path, Authorization="Bearer k"))
    head = await exchange(app, http_request("HEAD", path, Authorization="Bearer k"))
    assert len(head.writes) == 1
    assert head.writes[0].endswith(b"\r\n\r\n")  # no body
    get_head, get_body = head_and_body(got.writes[0])
    assert f"content-length: {len(get_body)}".encode() in head.writes[0]
    assert head.writes[0].split(b"\r\n")[0] == get_head.split(b"\r\n")[0]


def test_a_response_that_does_not_ask_is_written_as_its_messages_come() -> None:
    asyncio.run(_test_a_response_that_does_not_ask_is_written_as_its_messages_come())


async def _test_a_response_that_does_not_ask_is_written_as_its_messages_come() -> None:
    """Without the key (the control plane, a streamed file), the head is not held back."""
    steps: list[int] = []

    async def streamed(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        steps.append(1)
        await send({"type": "http.response.body", "body": b"ab", "more_body": True})
        await send({"type": "http.response.body", "body": b"cd"})

    transport = await exchange(streamed, http_request("GET", "/file"), writes=3)
    assert steps == [1]
    assert [head_and_body(transport.writes[0])[1], *transport.writes[1:]] == [b"", b"ab", b"cd"]


def test_a_held_head_goes_out_with_the_first_body_message_and_on_a_failure() -> None:
    asyncio.run(_test_a_held_head_goes_out_with_the_first_body_message_and_on_a_failure())


async def _test_a_held_head_goes_out_with_the_first_body_message_and_on_a_failure() -> None:
    async def chunked(scope: Scope, receive: Receive, send: Send) -> None:
        await send(HELD_START)
        await send({"type": "http.response.body", "body": b"ab", "more_body": True})
        await send({"type": "http.response.body", "body": b"cd"})

    transport = await exchange(chunked, http_request("GET", "/x"), writes=2)
    assert len(transport.writes) == 2
    assert head_and_body(transport.writes[0])[1] == b"ab"
    assert transport.writes[1] == b"cd"

    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        await send(HELD_START)
        raise RuntimeError("the app failed after its head")

    transport = await exchange(broken, http_request("GET", "/x"))
    assert transport.closed
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")


def test_the_default_loop_is_asyncio_and_uvloop_is_a_choice() -> None:
    args = serve_args()
    assert args.loop == DEFAULT_LOOP == "asyncio"
    assert http_stack(args) == {"loop": "asyncio", "http": "httptools", "access_log": False}
    assert http_stack(serve_args("--loop", "uvloop"))["loop"] == "uvloop"  # uvloop is a dependency
    with pytest.raises(SystemExit):
        serve_args("--loop", "trio")


def test_loop_uvloop_without_uvloop_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from wanmock.mockserver import serve

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvloop" else real(name, *a))
    err = io.StringIO()
    assert serve.run(serve_args("--loop", "uvloop", "--port", "0"), io.StringIO(), err) == 2
    assert err.getvalue().startswith("wanmock serve: --loop uvloop: uvloop is not installed")
    assert err.getvalue().count("\n") == 1
    with pytest.raises(ValueError, match="uvloop is not installed"):
        http_stack(argparse.Namespace(loop="uvloop"))


def test_a_router_remembers_a_path_and_answers_it_alike() -> None:
    """The router keeps the matches of the paths it saw (polls repeat one path): a kept path
    answers exactly as a fresh match would, each time with its own params."""
    from wanmock.mockserver.routing import Match, Router, WrongMethod
    from wanmock.schemas import catalog

    provider = catalog().provider("dashscope")
    kept, fresh = Router(provider), Router(provider)
    poll = provider.endpoints["poll"].paths[0].replace("{task_id}", "t-1")
    submit = provider.endpoints["submit"].paths[0]
    for method, path in (("GET", poll), ("POST", submit), ("DELETE", poll), ("GET", "/nowhere"), ("GET", poll + "x")):
        first, second = kept.match(method, path), kept.match(method, path)
        assert first == second == fresh.match(method, path)
    again = kept.match("GET", poll)
    assert isinstance(again, Match)
    assert again.params == {"task_id": "t-1"}
    again.params["task_id"] = "changed"  # a caller's change never reaches the next answer
    assert kept.match("GET", poll) == Match(again.endpoint, {"task_id": "t-1"})
    assert isinstance(kept.match("DELETE", poll), WrongMethod)


async def connected(
    app: Any, *, taskless: bool = False, reset_contextvars: bool = False, access_log: bool = True
) -> tuple[Any, RecordingTransport]:
    from wanmock.mockserver.netguard import GuardedHttpToolsProtocol

    config = uvicorn.Config(
        app, http=GuardedHttpToolsProtocol, lifespan="off", log_level="warning", access_log=access_log
    )
    config.load()
    config.wanmock_taskless = taskless  # type: ignore[attr-defined]  # as `wanmock serve` sets it
    config.reset_contextvars = reset_contextvars  # uvicorn's option (an attribute: older uvicorns lack it)
    protocol = GuardedHttpToolsProtocol(config, ServerState(), {})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    return protocol, transport


async def answered(transport: RecordingTransport, count: int) -> None:
    for _ in range(200):
        if len(transport.writes) >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{len(transport.writes)} answers, not {count}")


def test_an_idle_keep_alive_connection_is_closed_by_the_tick_not_a_timer_per_answer() -> None:
    asyncio.run(_test_an_idle_keep_alive_connection_is_closed_by_the_tick_not_a_timer_per_answer())


async def _test_an_idle_keep_alive_connection_is_closed_by_the_tick_not_a_timer_per_answer() -> None:
    loop = asyncio.get_running_loop()
    real_time, skipped = loop.time, [0.0]
    loop.time = lambda: real_time() + skipped[0]  # type: ignore[method-assign]  # the loop's clock, moved by hand
    app = create_app(ServerConfig(providers=("modellix",), seed=1))
    poll = http_request("GET", "/api/v1/tasks/task-none", Authorization="Bearer k")
    protocol, transport = await connected(app)
    protocol.data_received(poll)
    await answered(transport, 1)
    assert protocol.timeout_keep_alive_task is None  # no timer armed per answer
    keep_alive = protocol.timeout_keep_alive
    assert keep_alive == uvicorn.Config(app).timeout_keep_alive  # uvicorn's setting, kept
    skipped[0] += keep_alive - 1
    protocol._tick()
    assert not transport.closed  # not idle long enough yet
    skipped[0] += 1.5
    protocol._tick()
    assert transport.closed
    assert len(transport.writes) == 1  # closed quietly, as uvicorn closes an idle connection
    protocol.connection_lost(None)

    # a connection that sent part of its next request is not idle: the header timeout applies
    protocol, transport = await connected(app)
    protocol.data_received(poll)
    await answered(transport, 1)
    skipped[0] += 1
    protocol.data_received(poll[:10])
    skipped[0] += keep_alive + 1
    protocol._tick()
    assert not transport.closed
    skipped[0] += protocol.limits.header_timeout + 1
    protocol._tick()
    assert transport.closed
    assert transport.writes[-1].startswith(b"HTTP/1.1 408 ")
    protocol.connection_lost(None)


def test_pipelined_requests_are_each_answered_in_order() -> None:
    asyncio.run(_test_pipelined_requests_are_each_answered_in_order())


async def _test_pipelined_requests_are_each_answered_in_order() -> None:
    app = create_app(ServerConfig(providers=("modellix",), seed=1))
    protocol, transport = await connected(app)
    paths = [f"/api/v1/tasks/task-{n}" for n in range(3)]
    protocol.data_received(b"".join(http_request("GET", p, Authorization="Bearer k") for p in paths))
    await answered(transport, 3)
    assert len(transport.writes) == 3
    assert all(w.startswith(b"HTTP/1.1 ") for w in transport.writes)
    assert protocol.server_state.total_requests == 3
    assert not transport.closed
    protocol.connection_lost(None)


SUBMIT_BODY = b'{"prompt": "a red ball", "first_clip": "oss://bucket/clip.mp4", "seed": 0}'


def submit_request(body: bytes = SUBMIT_BODY) -> bytes:
    return http_request(
        "POST", "/api/v1/alibaba/wan2.7-i2v/async", body, Authorization="Bearer k", Content_Type="application/json"
    )


def test_serve_runs_the_mock_without_a_task_per_request_on_the_memory_store(tmp_path: Path) -> None:
    from wanmock.mockserver import serve
    from wanmock.mockserver.netguard import GuardedHttpToolsProtocol

    args = serve_args("--provider", "modellix")
    assert serve.mock_config(serve.build_app(args), args).wanmock_taskless
    shared = serve_args("--provider", "modellix", "--store", f"sqlite:///{tmp_path / 'tasks.db'}")
    app = serve.build_app(shared)
    assert not serve.mock_config(app, shared).wanmock_taskless  # its requests wait for the store's thread
    app.state.wanmock.io.close()
    assert not serve.uvicorn_config(app, args).wanmock_taskless  # nor another app's (the replay's)
    assert GuardedHttpToolsProtocol._batch is None


def test_requests_of_one_turn_are_answered_in_one_batch_without_tasks() -> None:
    asyncio.run(_test_requests_of_one_turn_are_answered_in_one_batch_without_tasks())


async def _test_requests_of_one_turn_are_answered_in_one_batch_without_tasks() -> None:
    loop = asyncio.get_running_loop()
    created: list[Any] = []
    create_task = loop.create_task

    def counted(coro: Any, **kwargs: Any) -> Any:
        created.append(coro)
        return create_task(coro, **kwargs)

    loop.create_task = counted  # type: ignore[method-assign]
    app = create_app(ServerConfig(providers=("modellix",), seed=1))
    connections = [await connected(app, taskless=True) for _ in range(3)]
    for protocol, _ in connections:
        protocol.data_received(submit_request())
    assert not any(t.writes for _, t in connections)  # the turn's reads first; its answers at the next
    await asyncio.sleep(0)
    for protocol, transport in connections:
        assert len(transport.writes) == 1
        assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
        assert b'"status":"pending"' in transport.writes[0]
        assert not protocol.tasks
    assert created == []  # no task for a request that never waited
    # the next request on a connection: the same, answered in its own turn
    protocol, transport = connections[0]
    protocol.data_received(http_request("GET", "/api/v1/tasks/task-none", Authorization="Bearer k"))
    await asyncio.sleep(0)
    assert len(transport.writes) == 2
    assert b'"code"' in transport.writes[1]
    assert created == []
    for protocol, _ in connections:
        protocol.connection_lost(None)


def test_a_request_that_waits_goes_on_in_a_task_from_where_it_stopped() -> None:
    asyncio.run(_test_a_request_that_waits_goes_on_in_a_task_from_where_it_stopped())


async def _test_a_request_that_waits_goes_on_in_a_task_from_where_it_stopped() -> None:
    app = create_app(ServerConfig(providers=("modellix",), seed=1))
    protocol, transport = await connected(app, taskless=True)
    request = submit_request()
    protocol.data_received(request[:-10])  # the body's last bytes are still on their way
    for _ in range(3):
        await asyncio.sleep(0)
    assert transport.writes == []
    (task,) = protocol.tasks  # waiting for the body, in a task tracked as uvicorn tracks its own
    protocol.data_received(request[-10:])
    await answered(transport, 1)
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert b'"status":"pending"' in transport.writes[0]
    await asyncio.sleep(0)
    assert task.done()
    assert not protocol.tasks
    # a latency rule waits on the loop's timer: the request is answered after it, in a task
    admin = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000")
    rule = {"action": "latency", "latency_seconds": 0.03, "endpoint": "submit", "count": 1}
    assert (await admin.post("/__admin/faults", json=rule)).status_code in (200, 201)
    started = asyncio.get_running_loop().time()
    protocol.data_received(request)
    for _ in range(3):
        await asyncio.sleep(0)
    assert len(transport.writes) == 1
    assert len(protocol.tasks) == 1
    while len(transport.writes) < 2:
        await asyncio.sleep(0.005)
    assert asyncio.get_running_loop().time() - started >= 0.03
    assert transport.writes[1].startswith(b"HTTP/1.1 200 OK\r\n")
    protocol.connection_lost(None)


def test_a_path_that_needs_a_task_enters_one() -> None:
    asyncio.run(_test_a_path_that_needs_a_task_enters_one())


async def _test_a_path_that_needs_a_task_enters_one() -> None:
    """A rendered video is read in a worker thread (anyio, which asks for the current task): the
    app enters a task before the control plane's and the files' stack."""
    from wanmock.mockserver.clock import ManualClock

    app = create_app(ServerConfig(providers=("modellix",), seed=1, clock=ManualClock()))
    protocol, transport = await connected(app, taskless=True)

    async def ask(request: bytes) -> tuple[bytes, bytes]:
        first = len(transport.writes)
        protocol.data_received(request)
        await asyncio.sleep(0)
        for _ in range(2000):
            if protocol.cycle.response_complete:
                return head_and_body(b"".join(transport.writes[first:]))
            await asyncio.sleep(0.005)
        raise AssertionError("no answer")

    _, submitted = await ask(submit_request())
    task_id = json.loads(submitted)["data"]["task_id"]
    advance = json.dumps({"seconds": 3600}).encode()
    head, _ = await ask(http_request("POST", "/__admin/clock/advance", advance, Content_Type="application/json"))
    assert head.startswith(b"HTTP/1.1 200 ")
    _, polled = await ask(http_request("GET", f"/api/v1/tasks/{task_id}", Authorization="Bearer k"))
    url = json.loads(polled)["data"]["result"]["resources"][0]["url"]
    head, body = await ask(http_request("GET", httpx.URL(url).raw_path.decode()))
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
    assert body[4:8] == b"ftyp"  # an MP4
    assert not transport.closed
    for _ in range(2000):  # the file's task closes it once the answer is sent
        if not protocol.tasks:
            break
        await asyncio.sleep(0.005)
    assert not protocol.tasks
    protocol.connection_lost(None)
    app.state.wanmock.media.close()  # (what the app's lifespan does at shutdown: its files go)


def test_each_request_runs_in_a_context_of_its_own() -> None:
    asyncio.run(_test_each_request_runs_in_a_context_of_its_own())


async def _test_each_request_runs_in_a_context_of_its_own() -> None:
    seen = contextvars.ContextVar("seen", default="unset")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        before = seen.get()
        seen.set(scope["path"])
        body = before.encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    connections = [await connected(app, taskless=True) for _ in range(2)]
    for path, (protocol, _) in zip(("/a", "/b"), connections, strict=True):
        protocol.data_received(http_request("GET", path))  # in one turn: one batch
    await asyncio.sleep(0)
    for protocol, transport in connections:
        assert [w for w in transport.writes if not w.startswith(b"HTTP/1.1 ")] == [b"unset"]
        protocol.connection_lost(None)
    assert seen.get() == "unset"
    # a request sees the server's context, as a task created there would; with uvicorn's
    # reset_contextvars, an empty one
    seen.set("server")
    for reset, expected in ((False, b"server"), (True, b"unset")):
        protocol, transport = await connected(app, taskless=True, reset_contextvars=reset)
        protocol.data_received(http_request("GET", "/c"))
        await asyncio.sleep(0)
        assert [w for w in transport.writes if not w.startswith(b"HTTP/1.1 ")] == [expected]
        protocol.connection_lost(None)


def test_a_request_failing_outside_its_app_does_not_stop_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    asyncio.run(_test_a_request_failing_outside_its_app_does_not_stop_the_batch(monkeypatch))


async def _test_a_request_failing_outside_its_app_does_not_stop_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    from wanmock.mockserver.netguard import CoalescingCycle

    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    run_asgi = CoalescingCycle.run_asgi

    async def failing(self: Any, app: Any) -> None:
        if self.scope["path"] == "/broken":
            raise RuntimeError("the cycle broke")
        await run_asgi(self, app)

    monkeypatch.setattr(CoalescingCycle, "run_asgi", failing)
    app = create_app(ServerConfig(providers=("modellix",), seed=1))
    (first, broken), (second, fine) = await connected(app, taskless=True), await connected(app, taskless=True)
    first.data_received(http_request("GET", "/broken", Authorization="Bearer k"))
    second.data_received(http_request("GET", "/api/v1/tasks/task-none", Authorization="Bearer k"))
    await asyncio.sleep(0)
    assert broken.writes == []
    assert len(fine.writes) == 1
    assert b'"code"' in fine.writes[0]
    assert [str(c["exception"]) for c in reported] == ["the cycle broke"]
    first.connection_lost(None)
    second.connection_lost(None)


def test_pipelined_requests_without_tasks_are_each_answered_in_order() -> None:
    asyncio.run(_test_pipelined_requests_without_tasks_are_each_answered_in_order())


async def _test_pipelined_requests_without_tasks_are_each_answered_in_order() -> None:
    app = create_app(ServerConfig(providers=("modellix",), seed=1))
    protocol, transport = await connected(app, taskless=True)
    requests = [submit_request(), http_request("GET", "/api/v1/tasks/task-none", Authorization="Bearer k")]
    protocol.data_received(b"".join([*requests, submit_request()]))
    await answered(transport, 3)
    codes = [json.loads(head_and_body(w)[1])["code"] for w in transport.writes]
    assert codes[0] == codes[2] == 0
    assert codes[1] != 0
    assert protocol.server_state.total_requests == 3
    assert not protocol.tasks
    protocol.connection_lost(None)


def test_a_request_taken_over_by_a_task_gets_what_it_waits_for_and_cancellations() -> None:
    asyncio.run(_test_a_request_taken_over_by_a_task_gets_what_it_waits_for_and_cancellations())


async def _test_a_request_taken_over_by_a_task_gets_what_it_waits_for_and_cancellations() -> None:
    from wanmock.mockserver.netguard import _resume

    loop = asyncio.get_running_loop()
    seen: list[Any] = []

    async def request(future: asyncio.Future[int]) -> None:
        try:
            seen.append(await future)
            seen.append(await future)  # done already: no suspension
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    future: asyncio.Future[int] = loop.create_future()
    coro = request(future)
    waiting = coro.send(None)  # run until it waits: for the future
    assert waiting is future
    task = loop.create_task(_resume(coro, waiting))
    await asyncio.sleep(0)
    assert seen == []
    future.set_result(7)
    for _ in range(3):
        await asyncio.sleep(0)
    assert seen == [7, 7]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [7, 7, "cancelled"]


def test_a_request_taken_over_by_a_task_is_closed_with_it() -> None:
    from wanmock.mockserver.netguard import _resume

    closed: list[str] = []

    async def request(future: asyncio.Future[None]) -> None:
        try:
            await future
        finally:
            closed.append("request")

    loop = asyncio.new_event_loop()
    try:
        future: asyncio.Future[None] = loop.create_future()
        coro = request(future)
        waiting = coro.send(None)
        takeover = _resume(coro, waiting)
        assert takeover.send(None) is future  # as the task's first step
        takeover.close()  # what happens to a task's coroutine that is never finished
        assert closed == ["request"]
    finally:
        loop.close()


# -- the server's own offers: a whole body taken, a whole answer written (http.server_offer) --


def offered_app(written: list[bool], *, headers: list[tuple[bytes, bytes]], direct: bool) -> Any:
    """An app that answers b"abcd" with ``headers``, through the cycle's ``write_answer`` when
    ``direct`` (recording what it returned), else as the two ASGI messages."""
    from wanmock.mockserver.http import WRITE_ANSWER, server_offer

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if direct:
            write = server_offer(send, WRITE_ANSWER)
            written.append(write(200, headers, b"abcd"))
            if written[-1]:
                return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"abcd"})

    return app


def test_a_whole_answer_is_written_as_uvicorns_send_writes_it() -> None:
    asyncio.run(_test_a_whole_answer_is_written_as_uvicorns_send_writes_it())


async def _test_a_whole_answer_is_written_as_uvicorns_send_writes_it() -> None:
    headers = [(b"content-length", b"4"), (b"Content-Type", b"application/json")]
    cases = {
        "plain": http_request("GET", "/x"),
        "head": http_request("HEAD", "/x"),
        "closing": http_request("GET", "/x", Connection="close"),
    }
    for label, request in cases.items():
        outputs, closed = [], []
        for direct in (True, False):
            written: list[bool] = []
            app = offered_app(written, headers=headers, direct=direct)
            protocol, transport = await connected(app, access_log=False)  # as `wanmock serve` runs
            protocol.server_state.default_headers = [(b"server", b"uvicorn"), (b"date", b"Tue, 01 Dec 2026")]
            protocol.data_received(request)
            await answered(transport, 1)
            assert written == ([True] if direct else []), label
            assert protocol.cycle.response_complete
            assert protocol.server_state.total_requests == 1
            outputs.append(b"".join(transport.writes))
            closed.append(transport.closed)
            if direct:
                assert len(transport.writes) == 1, label
            protocol.connection_lost(None)
        assert outputs[0] == outputs[1], label
        assert closed[0] == closed[1] == (label == "closing"), label
        assert outputs[0].endswith(b"\r\n\r\n" if label == "head" else b"\r\n\r\nabcd"), label
        assert (b"connection: close\r\n" in outputs[0]) == (label == "closing"), label


def test_an_answer_the_cycle_cannot_write_whole_is_left_to_send() -> None:
    asyncio.run(_test_an_answer_the_cycle_cannot_write_whole_is_left_to_send())


async def _test_an_answer_the_cycle_cannot_write_whole_is_left_to_send() -> None:
    """Where uvicorn's send has more to decide, write_answer does nothing and says so: the
    app's messages then give what they give without it (here compared with an app that only
    sends its messages), a 500 or a closed connection for a header uvicorn refuses included."""
    for headers, access_log in (
        ([(b"content-length", b"4"), (b"Connection", b"close")], False),  # uvicorn's send decides on these
        ([(b"content-length", b"5"), (b"x-good", b"ok")], False),  # not the body's length: uvicorn refuses it
        ([(b"content-length", b"4"), (b"Content-Length", b"4")], False),
        ([(b"content-length", b"4"), (b"transfer-encoding", b"chunked")], False),
        ([(b"content-length", b"4"), (b"x-bad", b"a\r\nb")], False),  # uvicorn's send refuses it
        ([(b"content-length", b"4"), (b"x-good", b"ok")], True),  # the access log is uvicorn's send's
    ):
        results = []
        for direct in (True, False):
            written: list[bool] = []
            protocol, transport = await connected(
                offered_app(written, headers=headers, direct=direct), access_log=access_log
            )
            protocol.data_received(http_request("GET", "/x"))
            for _ in range(20):
                await asyncio.sleep(0)
            assert written == ([False] if direct else []), headers
            results.append((transport.writes, transport.closed, protocol.cycle.response_complete))
            protocol.connection_lost(None)
        assert results[0] == results[1], headers


def test_a_whole_body_is_taken_once_and_a_late_one_is_read_from_receive() -> None:
    asyncio.run(_test_a_whole_body_is_taken_once_and_a_late_one_is_read_from_receive())


async def _test_a_whole_body_is_taken_once_and_a_late_one_is_read_from_receive() -> None:
    from wanmock.mockserver.http import TAKE_BODY, server_offer

    seen: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        take = server_offer(receive, TAKE_BODY)
        seen.append(take())
        if seen[-1] is None:  # still arriving: read as usual
            seen.append((await receive())["body"])
        else:
            seen.append(take())  # taken already: nothing more to take
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    protocol, transport = await connected(app)
    protocol.data_received(http_request("POST", "/x", b"abcd"))
    await answered(transport, 2)
    assert seen == [b"abcd", None]
    protocol.connection_lost(None)

    seen.clear()
    protocol, transport = await connected(app)
    whole = http_request("POST", "/x", b"abcd")
    protocol.data_received(whole[:-2])  # the last two bytes come later
    for _ in range(5):
        await asyncio.sleep(0)
    protocol.data_received(whole[-2:])
    await answered(transport, 2)
    assert seen[0] is None
    assert seen[1] in (b"ab", b"abcd")  # receive gives what had arrived
    protocol.connection_lost(None)
    assert server_offer(lambda: None, TAKE_BODY) is None  # another server's receive offers nothing


def test_a_provider_request_is_read_and_answered_without_asgi_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    asyncio.run(_test_a_provider_request_is_read_and_answered_without_asgi_messages(monkeypatch))


async def _test_a_provider_request_is_read_and_answered_without_asgi_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    from wanmock.mockserver.netguard import CoalescingCycle

    messages: list[str] = []
    receive, send = CoalescingCycle.receive, CoalescingCycle.send

    async def counted_receive(self: Any) -> Any:
        messages.append("receive")
        return await receive(self)

    async def counted_send(self: Any, message: Any) -> None:
        messages.append("send")
        await send(self, message)

    monkeypatch.setattr(CoalescingCycle, "receive", counted_receive)
    monkeypatch.setattr(CoalescingCycle, "send", counted_send)
    app = create_app(ServerConfig(providers=("modellix",), seed=1))
    protocol, transport = await connected(app, taskless=True, access_log=False)
    protocol.data_received(submit_request())
    await answered(transport, 1)
    head, answer = head_and_body(transport.writes[0])
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert json.loads(answer)["data"]["status"] == "pending"
    assert messages == []
    # a body still arriving is read from receive, and the answer is the same
    protocol.data_received(submit_request()[:-3])
    for _ in range(5):
        await asyncio.sleep(0)
    protocol.data_received(submit_request()[-3:])
    await answered(transport, 2)
    assert "receive" in messages
    assert "send" not in messages
    assert json.loads(head_and_body(transport.writes[1])[1])["data"]["status"] == "pending"
    protocol.connection_lost(None)
