"""HTTP throughput and latency of `wanmock serve` next to the framework ceiling, with wrk.

Run:  python benchmarks/throughput.py [--duration 5] [--rounds 3] [--connections 64] [--threads 2]
                               [--quick [--tail]] [--no-stores] [--providers modellix,dashscope]

This is the issue's ``benchmarks/http.py`` under another name: a script named ``http.py`` in
this directory would shadow the standard library's ``http`` package for every script here
(Python puts a script's directory first on ``sys.path``).

Starts every server once, on 127.0.0.1 ports picked by the system, and measures them side by
side in interleaved rounds (round 1: every server, then round 2: every server...), so a change in
the machine's load hits every server alike; each figure is the median over the rounds:

* ``ceiling``: a bare Starlette app on uvicorn with uvloop and httptools (benchmarks/bare_app.py);
* ``wanmock <provider>``: ``wanmock serve --provider <provider>`` (memory store, 1 worker, the
  default asyncio event loop), and the first provider again with ``--loop uvloop``;
* ``ceiling +100 µs, <loop>``: the bare app with 100 µs of CPU work added to each request (about
  what wanmock costs), on uvloop and on asyncio: the event loop's share of the latency tail at
  that cost, without wanmock's code (full runs, or ``--quick --tail``);
* ``wanmock all``: every provider on one port, requests to ``/modellix/...``;
* ``sqlite wN`` / ``redis wN``: modellix on the SQLite store and on a Redis store (a
  ``redis-server`` the benchmark starts on a free port, no persistence), 1 and 2 workers;
* ``prism``: Stoplight Prism fed ``wanmock openapi modellix``, when ``prism`` is on PATH.

Each server is measured twice per round with ``wrk -t<threads> -c<connections> -d<duration>``:
POST submit (a valid corpus body; the store is reset first, so every run starts empty) and GET
poll (one task submitted just before). Printed per server: requests/s, p50/p99/max latency (wrk's),
server CPU µs per request (user+system of the server's processes from /proc, over the run), the
peak RSS (VmHWM summed over its processes) and the ratio of requests/s to the ceiling's. A run
with non-2xx answers or socket errors is flagged. Then the start-up time: from process start to
the first 200 of ``GET /__admin/health``, for ``wanmock serve --provider modellix`` and the bare
app (median of 3).

Needs wrk (Debian: apt-get install wrk); without it the benchmark says so and exits 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from harness import (
    AUTH,
    REPO,
    BenchmarkError,
    ProviderCalls,
    WanmockServer,
    free_port,
    install_signal_handlers,
    machine_busy_seconds,
    redis_server,
    stop_group,
    table,
)

TAIL_BUSY_US = 100  # the ceiling made about as costly per request as wanmock, for the latency tail

WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WANMOCK-WRK %d %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max, e.status, e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass
class Run:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    bad_status: int
    socket_errors: int
    cpu_us: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass
class Target:
    label: str
    server: WanmockServer
    submit_path: str
    submit_body: bytes
    submit_headers: dict[str, str]
    poll: ProviderCalls | None  # None: the bare app (its own poll path)
    runs: dict[str, list[Run]] = field(default_factory=lambda: {"POST": [], "GET": []})
    peak_rss: int = 0


def lua_string(text: str) -> str:
    level = "=" * 3
    while f"]{level}]" in text:
        level += "="
    return f"[{level}[{text}]{level}]"


def wrk_script(directory: Path, name: str, method: str, body: bytes | None, headers: dict[str, str]) -> Path:
    lines = [f"wrk.method = {lua_string(method)}"]
    if body is not None:
        lines.append(f"wrk.body = {lua_string(body.decode())}")
    lines += [f"wrk.headers[ {lua_string(k)} ] = {lua_string(v)}" for k, v in headers.items()]
    path = directory / f"{name}.lua"
    path.write_text("\n".join(lines) + "\n" + WRK_DONE, encoding="utf-8")
    return path


def run_wrk(args: argparse.Namespace, url: str, script: Path, server: WanmockServer) -> Run:
    command = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{args.duration}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    cpu = server.cpu()
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.duration + 60, check=False)
    used = server.cpu() - cpu
    line = next((x for x in done.stdout.splitlines() if x.startswith("WANMOCK-WRK ")), None)
    if done.returncode != 0 or line is None:
        raise BenchmarkError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    requests, micros, p50, p99, worst, status, errors = (int(x) for x in line.split()[1:])
    return Run(
        requests, micros / 1e6, p50 / 1000, p99 / 1000, worst / 1000, status, errors, used / max(1, requests) * 1e6
    )


def bare_server(*extra: str) -> WanmockServer:
    server = WanmockServer()
    server.command = [sys.executable, str(REPO / "benchmarks" / "bare_app.py"), *extra]
    return server


def bare_target(label: str, *extra: str) -> Target:
    body = b'{"model": "m", "prompt": "a red ball"}'
    return Target(label, bare_server(*extra), "/submit", body, {**AUTH, "Content-Type": "application/json"}, None)


def wanmock_target(label: str, provider: str, *serve_args: str) -> Target:
    server = WanmockServer("--provider", provider, *serve_args)
    calls = ProviderCalls.build("modellix" if provider == "all" else provider, "/modellix" if provider == "all" else "")
    path, body = calls.submit(0)
    return Target(label, server, path, body, calls.submit_headers, calls)


def targets(args: argparse.Namespace, stack: contextlib.ExitStack) -> list[Target]:
    found = [bare_target("ceiling (bare Starlette)")]
    for provider in args.providers:
        found.append(wanmock_target(f"wanmock {provider}", provider))
    # the event loop's share of the latency tail: wanmock on uvloop, and the ceiling made as
    # costly per request as wanmock (--busy-us) on each loop
    found.append(wanmock_target(f"wanmock {args.providers[0]} --loop uvloop", args.providers[0], "--loop", "uvloop"))
    if args.tail or not args.quick:
        for loop in ("uvloop", "asyncio"):
            busy = str(TAIL_BUSY_US)
            found.append(bare_target(f"ceiling +{busy} µs, {loop}", "--busy-us", busy, "--loop", loop))
    if not args.quick:
        found.append(wanmock_target("wanmock all", "all"))
    if not args.quick and not args.no_stores:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wanmock-bench-")))
        for workers in (1, 2):
            store = f"sqlite:///{directory / f'w{workers}.db'}"
            found.append(wanmock_target(f"sqlite w{workers}", "modellix", "--store", store, "--workers", str(workers)))
        redis = stack.enter_context(redis_server())
        for workers in (1, 2):
            url = redis.rsplit("/", 1)[0] + f"/{workers}"
            found.append(wanmock_target(f"redis w{workers}", "modellix", "--store", url, "--workers", str(workers)))
    return found


def poll_url(target: Target, client: httpx.Client) -> tuple[str, dict[str, str]]:
    """Submit one task and return the URL that polls it, and the poll headers."""
    answer = client.post(target.submit_path, content=target.submit_body, headers=target.submit_headers)
    answer.raise_for_status()
    if target.poll is None:
        return f"{target.server.origin}/tasks/{answer.json()['task_id']}", dict(AUTH)
    path, query = target.poll.poll(target.poll.task_id(answer.json()))
    url = str(httpx.URL(target.server.origin + path, params=query or None))
    return url, target.poll.poll_headers


def measure(args: argparse.Namespace, target: Target, scripts: Path) -> None:
    origin = target.server.origin
    with httpx.Client(base_url=origin, timeout=30) as client:
        client.post("/__admin/reset", params={"all": "1"}).raise_for_status()
        script = wrk_script(scripts, f"post-{id(target)}", "POST", target.submit_body, target.submit_headers)
        target.runs["POST"].append(run_wrk(args, origin + target.submit_path, script, target.server))
        client.post("/__admin/reset", params={"all": "1"}).raise_for_status()
        url, headers = poll_url(target, client)
    script = wrk_script(scripts, f"get-{id(target)}", "GET", None, headers)
    target.runs["GET"].append(run_wrk(args, url, script, target.server))
    target.peak_rss = max(target.peak_rss, target.server.memory().hwm_sum)


def startup_seconds(command: list[str], port: int, env: dict[str, str] | None = None) -> float:
    """From process start to the first 200 of GET /__admin/health on ``port``."""
    request = b"GET /__admin/health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % port
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, start_new_session=True, env=env
    )
    try:
        while process.poll() is None and time.perf_counter() - started < 30:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(request)
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return time.perf_counter() - started
            time.sleep(0.002)
        raise BenchmarkError(f"{command[1:]} did not answer 200 within 30 s")
    finally:
        stop_group(process, first=signal.SIGTERM)


def startup(rounds: int = 3) -> list[tuple[str, str]]:
    """Start-up of each server, with its modules' bytecode cached as an installation has it
    (pip compiles it at install time): PYTHONDONTWRITEBYTECODE is dropped for the children and
    the cache goes to a temporary PYTHONPYCACHEPREFIX, filled by one start that is not counted.
    Otherwise an editable checkout run with PYTHONDONTWRITEBYTECODE=1 compiles every wanmock
    module from source at each start, while the ceiling's installed packages load compiled."""
    wanmock = shutil.which("wanmock", path=str(Path(sys.executable).parent))
    base = [wanmock] if wanmock else [sys.executable, "-m", "wanmock.mockserver"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="wanmock-pycache-") as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        for label, command in (
            ("ceiling (bare Starlette)", [sys.executable, str(REPO / "benchmarks" / "bare_app.py"), "--port"]),
            ("wanmock serve --provider modellix", [*base, "serve", "--provider", "modellix", "--port"]),
        ):
            times = []
            for n in range(rounds + 1):  # the first start fills the bytecode cache
                port = free_port()
                took = startup_seconds([*command, str(port)], port, env)
                if n:
                    times.append(took)
            rows.append((label, f"{statistics.median(times):.3f} s"))
    return rows


def median_run(runs: list[Run]) -> Run:
    """The medians over the rounds (requests as requests per second over one second)."""
    return Run(
        requests=round(statistics.median(r.rps for r in runs)),
        seconds=1.0,
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        max_ms=statistics.median(r.max_ms for r in runs),
        bad_status=sum(r.bad_status for r in runs),
        socket_errors=sum(r.socket_errors for r in runs),
        cpu_us=statistics.median(r.cpu_us for r in runs),
    )


def report(found: list[Target]) -> str:
    header = (
        "server",
        "POST req/s",
        "vs ceiling",
        "p50/p99/max ms",
        "CPU µs/req",
        "GET req/s",
        "vs ceiling",
        "p50/p99/max ms",
        "CPU µs/req",
        "peak RSS",
    )
    rows: list[tuple[str, ...]] = [header]
    ceiling = {m: median_run(found[0].runs[m]).rps for m in ("POST", "GET")}
    notes = []
    for target in found:
        cells = [target.label]
        for method in ("POST", "GET"):
            run = median_run(target.runs[method])
            cells += [
                f"{run.rps:,.0f}",
                f"{run.rps / ceiling[method]:.0%}" if ceiling[method] else "-",
                f"{run.p50_ms:.1f}/{run.p99_ms:.1f}/{run.max_ms:.0f}",
                f"{run.cpu_us:.0f}",
            ]
            if run.bad_status or run.socket_errors:
                notes.append(
                    f"  ! {target.label} {method}: {run.bad_status} non-2xx answers, {run.socket_errors} socket errors"
                )
        cells.append(f"{target.peak_rss / 1024 / 1024:.0f} MiB")
        rows.append(tuple(cells))
    return "\n".join([table(rows), *notes])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (5)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; figures are medians (3)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--providers", default="modellix", help="comma-separated single-provider servers (modellix)")
    parser.add_argument("--quick", action="store_true", help="only the ceiling and the single-provider servers")
    parser.add_argument("--no-stores", action="store_true", help="leave out SQLite and Redis")
    parser.add_argument("--no-startup", action="store_true", help="leave out the start-up measurement")
    parser.add_argument(
        "--tail", action="store_true", help=f"with --quick: also the ceiling with {TAIL_BUSY_US} µs of work per request"
    )
    args = parser.parse_args(argv)
    args.providers = [p for p in args.providers.split(",") if p]
    if shutil.which("wrk") is None:
        print("benchmarks/throughput.py needs wrk, which is not installed (Debian: apt-get install wrk).")
        return 2
    install_signal_handlers()
    try:
        with contextlib.ExitStack() as stack:
            found = targets(args, stack)
            for target in found:
                stack.enter_context(target.server)
            scripts = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wanmock-wrk-")))
            busy = machine_busy_seconds()
            started = time.monotonic()
            for n in range(args.rounds):
                print(f"round {n + 1}/{args.rounds} ...", file=sys.stderr, flush=True)
                for target in found:
                    measure(args, target, scripts)
            wall = time.monotonic() - started
            busy = machine_busy_seconds() - busy
            print(
                f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, {args.rounds} interleaved rounds "
                f"(medians), 127.0.0.1; machine busy {busy / wall:.2f} of its CPUs over the run"
            )
            print(report(found))
    except BenchmarkError as exc:
        print(f"benchmarks/throughput.py: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("benchmarks/throughput.py: interrupted", file=sys.stderr)
        return 130
    if shutil.which("prism") is None:
        print("prism: skipped: not installed (npm install -g @stoplight/prism-cli)")
    else:
        print("prism: installed; python benchmarks/prism.py compares it with wanmock on the same document")
    if not args.no_startup:
        print(table([("start-up to the first 200", "median of 3"), *startup()]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
