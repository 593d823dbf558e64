"""`wanmock serve`: run the mock server with uvicorn."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path
from typing import Any, TextIO

from mockserver.clock import ManualClock, SystemClock
from mockserver.config import TIMINGS, ServerConfig, all_providers

STORES = ("memory",)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the mock server",
        description="Serve every provider under /<provider>/ (modellix, aimlapi and apiyi also at "
        "the root), or one provider at the root. GET /__admin/health answers 200 when ready.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed)")
    parser.add_argument("--provider", default="all", choices=("all", *all_providers()))
    parser.add_argument("--timing", default="fast", choices=TIMINGS)
    parser.add_argument("--seed", type=int, help="make task ids and timings reproducible")
    parser.add_argument("--keys", type=Path, help="a file of accepted API keys, one per line")
    parser.add_argument("--store", default="memory", help="task store URL (memory)")
    parser.add_argument(
        "--clock",
        default="system",
        choices=("system", "manual"),
        help="manual: time moves only through POST /__admin/clock/advance",
    )
    parser.add_argument("--max-body-bytes", type=int, default=ServerConfig.max_body_bytes)
    parser.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"))
    parser.set_defaults(handler=run)


def read_keys(path: Path) -> frozenset[str]:
    keys = frozenset(
        line.strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    )
    if not keys:
        raise ValueError(f"{path} lists no key")
    return keys


def config_from(args: argparse.Namespace) -> ServerConfig:
    store = args.store.partition("://")[0]
    if store not in STORES:
        raise ValueError(f"unsupported --store {args.store!r}; supported: {', '.join(STORES)}")
    return ServerConfig(
        providers=all_providers() if args.provider == "all" else (args.provider,),
        timing=args.timing,
        seed=args.seed,
        keys=read_keys(args.keys) if args.keys else None,
        clock=ManualClock() if args.clock == "manual" else SystemClock(),
        max_body_bytes=args.max_body_bytes,
    )


def listen(host: str, port: int) -> socket.socket:
    """A bound TCP socket. Created with IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted
    connections only for such sockets, and without it keep-alive answers wait ~40 ms for a
    delayed ACK (Nagle)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import uvicorn

    from mockserver.app import base_urls, create_app

    try:
        config = config_from(args)
    except (OSError, ValueError) as exc:
        err.write(f"wanmock serve: {exc}\n")
        return 2
    try:
        sock = listen(args.host, args.port)
    except OSError as exc:
        err.write(f"wanmock serve: cannot listen on {args.host}:{args.port}: {exc.strerror}\n")
        return 2
    family = sock.family
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    origin = f"http://{shown}:{port}"
    out.write(f"wanmock serving {', '.join(config.providers)} ({config.timing} timing) on {origin}\n")
    for provider, url in base_urls(config, origin).items():
        out.write(f"  {provider:<10} {url}\n")
    if len(config.providers) > 1:
        out.write(f"  (modellix, aimlapi and apiyi also at {origin}/)\n")
    out.write(f"  control    {origin}/__admin/health\n")
    out.flush()
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, log_level=args.log_level, lifespan="on"))
    server.run(sockets=[sock])
    return 0
