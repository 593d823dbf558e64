"""CPU per request of the app itself, in process (no socket, no HTTP parser): wanmock next to the
bare Starlette app of benchmarks/bare_app.py.

Run:  python benchmarks/hotpath.py [--provider modellix] [--all] [--requests 5000] [--profile]

Calls each ASGI app directly with POST submit and GET poll (a corpus body, as throughput.py sends)
and prints the process CPU time per request (``time.process_time``: what other processes on the
machine take does not count, so the figures hold on a busy machine where wrk's do not). With
``--profile``, cProfile's top functions for each. Memory store; the store is reset between the two.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import cProfile
import json
import pstats
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import bare_app
from harness import ProviderCalls
from starlette.types import ASGIApp, Message
from wanmock.mockserver.app import create_app
from wanmock.mockserver.config import ServerConfig, all_providers


def scope(method: str, path: str, query: bytes = b"", headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in {"host": "127.0.0.1:8000", **(headers or {})}.items()],
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 5555),
        "state": {},
    }


async def call(app: ASGIApp, request: dict[str, Any], body: bytes = b"") -> list[Message]:
    messages: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(request, receive, send)
    return sent


async def measure(label: str, fn: Callable[[], Awaitable[list[Message]]], n: int, profile: bool) -> None:
    for _ in range(200):
        await fn()
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    started = time.process_time()
    for _ in range(n):
        answer = await fn()
        if answer[0]["status"] != 200:
            raise SystemExit(f"{label}: status {answer[0]['status']}")
    used = time.process_time() - started
    if profiler is not None:
        profiler.disable()
        pstats.Stats(profiler).sort_stats(os.environ.get("HOTPATH_SORT", "tottime")).print_stats(int(os.environ.get("HOTPATH_TOP", "20")))
    print(f"{label:<28} {used / n * 1e6:7.1f} µs CPU per request")


async def main(args: argparse.Namespace) -> None:
    bare_body = b'{"model": "m", "prompt": "a red ball"}'
    bare_headers = {"content-type": "application/json", "authorization": "Bearer k"}
    await measure(
        "ceiling POST",
        lambda: call(bare_app.app, scope("POST", "/submit", headers=bare_headers), bare_body),
        args.requests,
        False,
    )
    await measure(
        "ceiling GET",
        lambda: call(bare_app.app, scope("GET", "/tasks/t-1", headers=bare_headers)),
        args.requests,
        False,
    )

    providers = all_providers() if args.all else (args.provider,)
    app = create_app(ServerConfig(providers=providers, seed=1))
    calls = ProviderCalls.build(args.provider, f"/{args.provider}" if args.all else "")
    path, body = calls.submit(0)
    headers = {**calls.submit_headers, "content-length": str(len(body))}
    name = f"wanmock {args.provider}{' (all)' if args.all else ''}"
    await measure(
        f"{name} POST", lambda: call(app, scope("POST", path, headers=headers), body), args.requests, args.profile
    )
    await call(app, scope("POST", "/__admin/reset", b"all=1"))
    created = await call(app, scope("POST", path, headers=headers), body)
    poll_path, query = calls.poll(calls.task_id(json.loads(created[1]["body"])))
    poll = scope("GET", poll_path, urlencode(query).encode(), calls.poll_headers)
    await measure(f"{name} GET", lambda: call(app, dict(poll)), args.requests, args.profile)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default="modellix")
    parser.add_argument("--all", action="store_true", help="every provider on one app, the requests under /<provider>")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--profile", action="store_true")
    asyncio.run(main(parser.parse_args()))
    sys.exit(0)
