"""The framework ceiling for benchmarks/throughput.py: a bare Starlette app on uvicorn with uvloop and
httptools, doing the least a mock must do (read a JSON body, answer JSON), nothing else.

Run:  python benchmarks/bare_app.py [--port 0] [--loop uvloop|asyncio] [--busy-us N]

``--busy-us N`` adds N µs of CPU work to each request (throughput.py's costly ceilings: a server
as costly per request as wanmock, without wanmock's code); ``--loop asyncio`` runs it on asyncio's
event loop.

Prints ``bare starlette on http://127.0.0.1:PORT`` when bound, like ``wanmock serve``; answers
``POST /submit``, ``GET /tasks/{task_id}``, ``GET /__admin/health`` and ``POST /__admin/reset``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import socket
import sys
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ids = itertools.count(1)
BUSY = [0.0]  # seconds of CPU work per request (--busy-us)


def busy() -> None:
    if BUSY[0]:
        started = time.perf_counter()
        while time.perf_counter() - started < BUSY[0]:
            pass


async def submit(request: Request) -> JSONResponse:
    body = json.loads(await request.body())
    busy()
    return JSONResponse({"task_id": f"task-{next(ids)}", "status": "queued", "model": body.get("model")})


async def poll(request: Request) -> JSONResponse:
    busy()
    return JSONResponse({"task_id": request.path_params["task_id"], "status": "running"})


async def health(_: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/submit", submit, methods=["POST"]),
        Route("/tasks/{task_id}", poll, methods=["GET"]),
        Route("/__admin/health", health, methods=["GET"]),
        Route("/__admin/reset", health, methods=["POST"]),
    ]
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--busy-us", type=float, default=0.0, help="CPU work added to each request, in µs")
    args = parser.parse_args()
    BUSY[0] = args.busy_us / 1e6
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sys.stdout.write(f"bare starlette on http://127.0.0.1:{sock.getsockname()[1]}\n")
    sys.stdout.flush()
    config = uvicorn.Config(app, loop=args.loop, http="httptools", access_log=False, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
