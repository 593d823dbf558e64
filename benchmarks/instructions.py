"""Machine instructions per request, counted by valgrind: a figure that a busy machine does not
distort, for comparing two versions of the code side by side.

Run:  python benchmarks/instructions.py [--provider modellix] [--turns 20] [--python OTHER/.venv/bin/python] [--ceiling]

Feeds POST submit and GET poll requests (a corpus body, as throughput.py sends) to `wanmock
serve`'s own connection protocol (netguard's guarded httptools protocol, requests run without a
task each, as on the memory store) over 64 connections a turn of the event loop: the HTTP parser,
uvicorn's request cycle and the whole app, no socket. Each figure is the instructions
valgrind's callgrind counts in a run of ``--turns`` turns, less those of a run of none (start-up,
imports, warm-up), divided by the requests. With ``--python``, the same for another checkout's
interpreter (its own wanmock), and the ratio; with ``--ceiling``, benchmarks/bare_app.py fed the
same way through uvicorn's own protocol (a task per request, on asyncio: under wrk the ceiling
runs on uvloop, whose loop is not Python). Needs valgrind (``apt-get install valgrind``);
PYTHONHASHSEED is fixed, so a figure repeats to within about 0.5%.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

CONNECTIONS = 64
CEILING = "ceiling"
HERE = Path(__file__).resolve().parent


class RecordingTransport(asyncio.Transport):
    """A connection from 127.0.0.1: keeps the last write and counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.writes, self.last = 0, b""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 5555)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes += 1
        self.last = bytes(data)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def http_request(method: str, target: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1:8000", "User-Agent: wrk"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def turns(connections: list[tuple[Any, RecordingTransport]], request: bytes, count: int) -> bytes:
    """``count`` turns, each feeding ``request`` to every connection and waiting for every answer."""
    for _ in range(count):
        for protocol, transport in connections:
            transport.writes = 0
            protocol.data_received(request)
        while not all(t.writes for _, t in connections):
            await asyncio.sleep(0)
    return connections[0][1].last


async def child(provider: str, method: str, count: int) -> None:
    """The measured process: ``count`` turns of ``method`` requests (after a warm-up)."""
    from harness import ProviderCalls
    from uvicorn.server import ServerState
    from wanmock.mockserver import serve
    from wanmock.mockserver.app import create_app
    from wanmock.mockserver.config import ServerConfig
    from wanmock.mockserver.guard import served_origins
    from wanmock.mockserver.netguard import GuardedHttpToolsProtocol

    if provider == CEILING:  # benchmarks/bare_app.py on uvicorn's own protocol (a task per request)
        import bare_app
        import uvicorn
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        config = uvicorn.Config(bare_app.app, http="httptools", lifespan="off", log_level="warning", access_log=False)
        protocol_class: Any = HttpToolsProtocol
    else:
        app = create_app(ServerConfig(providers=(provider,), seed=1, origins=served_origins("127.0.0.1", 8000, None)))
        limits = {"header_timeout": 10.0, "body_timeout": 120.0, "max_connections": 1000}
        args = argparse.Namespace(log_level="warning", access_log=False, loop="asyncio", **limits)
        config = serve.uvicorn_config(app, args, taskless=True)  # as `wanmock serve` runs the memory store
        protocol_class = GuardedHttpToolsProtocol
    config.load()
    state = ServerState()
    connections = []
    for _ in range(CONNECTIONS):
        protocol = protocol_class(config, state, {})
        transport = RecordingTransport()
        protocol.connection_made(transport)
        connections.append((protocol, transport))
    if provider == CEILING:  # the requests throughput.py sends it
        headers = {"Authorization": "Bearer k", "Content-Type": "application/json"}
        submit = http_request("POST", "/submit", headers, b'{"model": "m", "prompt": "a red ball"}')
        poll = http_request("GET", "/tasks/t-1", headers)
        await turns(connections, poll if method == "GET" else submit, 8)
        await turns(connections, poll if method == "GET" else submit, count)
        return
    calls = ProviderCalls.build(provider)
    path, body = calls.submit(0)
    request = submit = http_request("POST", path, calls.submit_headers, body)
    created = await turns(connections, submit, 5)
    if method == "GET":
        answer = json.loads(created.partition(b"\r\n\r\n")[2])
        poll_path, query = calls.poll(calls.task_id(answer))
        target = poll_path + (f"?{urlencode(query)}" if query else "")
        request = http_request("GET", target, calls.poll_headers)
    await turns(connections, request, 3)
    await turns(connections, request, count)


def instructions(python: str, provider: str, method: str, count: int) -> int:
    """Instructions callgrind counts in a child run of ``count`` turns."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", python, __file__]
    command += ["--child", provider, method, str(count)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    for line in done.stderr.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1])
    raise SystemExit(f"valgrind run failed ({done.returncode}):\n{done.stderr[-2000:]}")


def per_request(python: str, provider: str, method: str, count: int) -> float:
    return (instructions(python, provider, method, count) - instructions(python, provider, method, 0)) / (
        count * CONNECTIONS
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default="modellix")
    parser.add_argument("--turns", type=int, default=20, help=f"turns of {CONNECTIONS} requests (20)")
    parser.add_argument("--python", help="another checkout's interpreter, measured side by side")
    parser.add_argument(
        "--ceiling",
        action="store_true",
        help="also the bare ceiling app on uvicorn's own protocol (a task per request)",
    )
    parser.add_argument("--child", nargs=3, metavar=("PROVIDER", "METHOD", "TURNS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        provider, method, count = args.child
        sys.path.insert(0, str(HERE))
        asyncio.run(child(provider, method, int(count)))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("instructions.py needs valgrind: apt-get install valgrind")
    pythons = [sys.executable, *([args.python] if args.python else [])]
    print(f"instructions per request, {args.provider}, {args.turns} turns of {CONNECTIONS} connections")
    for method in ("POST", "GET"):
        figures = [per_request(python, args.provider, method, args.turns) for python in pythons]
        line = f"{method:<5} {figures[0]:>10,.0f}"
        if len(figures) > 1:
            line += f"   other {figures[1]:>10,.0f}   this / other {figures[0] / figures[1]:.3f}"
        if args.ceiling:
            ceiling = per_request(sys.executable, CEILING, method, args.turns)
            line += f"   ceiling {ceiling:>10,.0f}   this / ceiling {figures[0] / ceiling:.2f}"
        print(line)


if __name__ == "__main__":
    main()
