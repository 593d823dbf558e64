"""The HTTP stack under `wanmock serve` (issue 12): the event loop it picks, and a provider's
answer written to the socket in one write (netguard.CoalescingCycle), with the connection
protocol fed bytes directly, no socket."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
from typing import Any

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


async def connected(app: Any) -> tuple[Any, RecordingTransport]:
    from wanmock.mockserver.netguard import GuardedHttpToolsProtocol

    config = uvicorn.Config(app, http=GuardedHttpToolsProtocol, lifespan="off", log_level="warning")
    config.load()
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
