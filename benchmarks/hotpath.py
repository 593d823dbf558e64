"""CPU per request of the app itself, in process (no socket, no HTTP parser): wanmock next to the
bare Starlette app of benchmarks/bare_app.py.

Run:  python benchmarks/hotpath.py [--provider modellix] [--all] [--requests 5000] [--rounds 5] [--profile]

Calls each ASGI app directly with POST submit and GET poll (a corpus body, as throughput.py sends)
and prints the process CPU time per request (``time.process_time``: what other processes on the
machine take does not count, so the figures hold on a busy machine where wrk's do not), the
median of interleaved rounds, and wanmock's ratio to the ceiling. With ``--profile``, cProfile's
top functions for each wanmock round. Memory store; every poll reads one task.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import statistics
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
from wanmock.mockserver.guard import served_origins


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


async def measure(label: str, fn: Callable[[], Awaitable[list[Message]]], n: int, profile: bool) -> float:
    """CPU seconds per request of ``n`` calls (after a warm-up), cProfile's top functions with
    ``profile`` (sorted by HOTPATH_SORT, HOTPATH_TOP lines)."""
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
        sort, top = os.environ.get("HOTPATH_SORT", "tottime"), int(os.environ.get("HOTPATH_TOP", "20"))
        print(label)
        pstats.Stats(profiler).sort_stats(sort).print_stats(top)
    return used / n


async def main(args: argparse.Namespace) -> None:
    bare_body = b'{"model": "m", "prompt": "a red ball"}'
    bare_headers = {"content-type": "application/json", "authorization": "Bearer k"}
    providers = all_providers() if args.all else (args.provider,)
    # served origins as `wanmock serve` sets them (result links are checked against them)
    app = create_app(ServerConfig(providers=providers, seed=1, origins=served_origins("127.0.0.1", 8000, None)))
    calls = ProviderCalls.build(args.provider, f"/{args.provider}" if args.all else "")
    path, body = calls.submit(0)
    headers = {**calls.submit_headers, "content-length": str(len(body))}
    name = f"wanmock {args.provider}{' (all)' if args.all else ''}"
    created = await call(app, scope("POST", path, headers=headers), body)
    poll_path, query = calls.poll(calls.task_id(json.loads(created[1]["body"])))
    poll = scope("GET", poll_path, urlencode(query).encode(), calls.poll_headers)
    runs: dict[str, list[float]] = {}
    cases: list[tuple[str, Callable[[], Awaitable[list[Message]]]]] = [
        ("ceiling POST", lambda: call(bare_app.app, scope("POST", "/submit", headers=bare_headers), bare_body)),
        ("ceiling GET", lambda: call(bare_app.app, scope("GET", "/tasks/t-1", headers=bare_headers))),
        (f"{name} POST", lambda: call(app, scope("POST", path, headers=headers), body)),
        (f"{name} GET", lambda: call(app, dict(poll))),
    ]
    for _ in range(args.rounds):  # interleaved: a noisy machine slows every case alike
        for label, fn in cases:
            wanmock = not label.startswith("ceiling")
            runs.setdefault(label, []).append(await measure(label, fn, args.requests, args.profile and wanmock))
    medians = {label: statistics.median(times) for label, times in runs.items()}
    print(f"in-process CPU per request, median of {args.rounds} interleaved rounds of {args.requests}")
    for label, used in medians.items():
        method = label.rsplit(" ", 1)[1]
        ratio = "" if label.startswith("ceiling") else f"   {used / medians['ceiling ' + method]:4.1f}x the ceiling"
        print(f"{label:<28} {used * 1e6:7.1f} µs{ratio}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default="modellix")
    parser.add_argument("--all", action="store_true", help="every provider on one app, the requests under /<provider>")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; figures are medians (5)")
    parser.add_argument("--profile", action="store_true")
    asyncio.run(main(parser.parse_args()))
    sys.exit(0)
