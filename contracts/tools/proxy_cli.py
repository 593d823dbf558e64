"""The `wanmock proxy` command: run the validating proxy until stopped, then report.

SIGINT (Ctrl-C) and SIGTERM stop it gracefully: in-flight exchanges finish, the report is written
(to ``--report`` or standard output) and the cassette (``--record``), and the exit code follows
``--fail-on`` (0: nothing at that severity, 1: findings). 2: a usage error, 3: the report or the
cassette could not be written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from wanmock.schemas import catalog

EXAMPLES = """\
examples:
  # watch an application's DashScope traffic (point its base URL at http://127.0.0.1:8001)
  wanmock proxy --provider dashscope

  # in CI: refuse invalid submits without paying, record the traffic, fail on breaking drift
  wanmock proxy --provider modellix --mode enforce --record cassettes/nightly \\
      --report proxy.xml --format junit --fail-on breaking

  # against a local mock instead of the live provider
  wanmock proxy --provider dashscope --upstream http://127.0.0.1:8000 --port 0

  # on another interface, a protected control plane, a slower upstream, overwrite the recording
  wanmock proxy --provider apiyi --host 0.0.0.0 --admin-token s3cret --timeout 600 --log-level info \\
      --record cassettes/apiyi --force
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "proxy",
        help="forward real traffic to a provider and check both directions against the contract",
        description="A validating proxy: the application talks to wanmock, wanmock forwards every "
        "request unchanged to the provider and every answer unchanged back, and checks the request, "
        "the answer and each task's lifecycle against the captured contract. GET /__proxy/findings "
        "shows the findings so far; on exit (Ctrl-C, SIGTERM) the report is written.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--provider", required=True, choices=sorted(catalog().providers), help="the provider")
    parser.add_argument("--upstream", help="where to forward (default: the provider's documented base URL)")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8001, help="0 picks a free port (printed)")
    parser.add_argument(
        "--mode",
        default="observe",
        choices=("observe", "enforce"),
        help="enforce: answer a request the contract refuses in the provider's envelope, never forward it",
    )
    parser.add_argument("--record", type=Path, metavar="DIR", help="record tasks into DIR/cassette.json")
    parser.add_argument("--force", action="store_true", help="overwrite an existing cassette in --record DIR")
    parser.add_argument("--report", type=Path, metavar="FILE", help="write the report here (default: stdout)")
    parser.add_argument(
        "--format", default="text", choices=("text", "json", "junit", "markdown"), help="the report's format (text)"
    )
    parser.add_argument(
        "--fail-on", default="breaking", choices=("breaking", "warning"), help="the severity that exits 1 (breaking)"
    )
    parser.add_argument(
        "--admin-token",
        default=os.environ.get("WANMOCK_ADMIN_TOKEN"),
        help="require this token (header X-Wanmock-Admin-Token) on /__proxy/ control calls "
        "(default: $WANMOCK_ADMIN_TOKEN)",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the upstream (300)")
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=("critical", "error", "warning", "info", "debug"),
        help="uvicorn's log level (default warning)",
    )
    parser.set_defaults(handler=run)


def report_text(proxy: Any, fmt: str) -> str:
    from wanmock.contracts.tools.drift import render

    if fmt == "json":
        return json.dumps(proxy.findings_document(), indent=2, ensure_ascii=False) + "\n"
    return render(proxy.findings.snapshot(), fmt, proxy.profile.name, tool="proxy")


@contextlib.contextmanager
def _graceful(server: Any) -> Iterator[None]:
    """SIGINT and SIGTERM ask ``server`` to shut down (a second SIGINT: at once); unlike uvicorn's
    own handlers, the signal is not raised again afterwards, so the report is still written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(sig: int, _: Any) -> None:
        if server.should_exit and sig == signal.SIGINT:
            server.force_exit = True
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import uvicorn
    from wanmock.contracts.tools.drift import exit_code
    from wanmock.contracts.tools.proxy import Proxy, create_proxy_app
    from wanmock.mockserver.cassette import CASSETTE_FILE, write_cassette
    from wanmock.mockserver.serve import listen

    upstream = args.upstream or catalog().provider(args.provider).base_url
    if args.record is not None and (args.record / CASSETTE_FILE).exists() and not args.force:
        err.write(f"wanmock proxy: {args.record / CASSETTE_FILE} exists; --force overwrites it\n")
        return 2
    if args.timeout <= 0:
        err.write("wanmock proxy: --timeout must be positive\n")
        return 2
    try:
        proxy = Proxy(
            args.provider,
            upstream,
            mode=args.mode,
            record=args.record is not None,
            admin_token=args.admin_token or None,
            timeout=args.timeout,
        )
    except ValueError as exc:
        err.write(f"wanmock proxy: {exc}\n")
        return 2
    try:
        sock = listen(args.host, args.port)
    except OSError as exc:
        err.write(f"wanmock proxy: cannot listen on {args.host}:{args.port}: {exc.strerror}\n")
        return 2
    if args.host not in ("127.0.0.1", "::1", "localhost") and not args.admin_token:
        err.write(
            f"wanmock proxy: warning: listening on {args.host} without --admin-token: anyone who can reach "
            "it can read the findings and add fault rules\n"
        )
    host, port = sock.getsockname()[:2]
    origin = f"http://[{host}]:{port}" if sock.family == socket.AF_INET6 else f"http://{host}:{port}"
    out.write(f"wanmock proxy ({args.mode}) for {args.provider} -> {proxy.shown_upstream} on {origin}\n")
    out.write(f"  findings   {origin}/__proxy/findings\n")
    out.write(f"  control    {origin}/__proxy/health\n")
    if args.record is not None:
        out.write(f"  recording  into {args.record / CASSETTE_FILE} (written on exit)\n")
    out.flush()
    config = uvicorn.Config(
        create_proxy_app(proxy),
        log_level=args.log_level,
        lifespan="on",
        access_log=False,  # an access log line would show query strings, where keys sometimes travel
        server_header=False,  # the provider's Server and Date headers pass unchanged
        date_header=False,
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    server.capture_signals = lambda: _graceful(server)  # type: ignore[method-assign]
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # a Ctrl-C before the server installed its handlers
        pass
    finally:
        sock.close()
    code = exit_code(proxy.findings.snapshot(), args.fail_on)
    try:
        cassette = proxy.cassette()
        if cassette is not None and args.record is not None:
            path = write_cassette(args.record, cassette)
            err.write(f"wanmock proxy: recorded {len(cassette['tasks'])} task(s) into {path}\n")
        text = report_text(proxy, args.format)
        if args.report is not None:
            args.report.write_text(text, encoding="utf-8")
        else:
            out.write(text)
    except OSError as exc:
        err.write(f"wanmock proxy: cannot write the report or the cassette: {exc}\n")
        return 3
    out.flush()
    return code
