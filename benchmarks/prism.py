"""wanmock side by side with Stoplight Prism serving the same endpoints from `wanmock openapi P`.

Run:  python benchmarks/prism.py [--provider dashscope] [--requests 2000] [--concurrency 50]
                                 [--rounds 1] [--prism-dir ~/.cache/wanmock-benchmarks/prism]

Prism (npm package @stoplight/prism-cli) is what a user would pick instead of wanmock: point it
at an OpenAPI document and it answers every path with the document's examples. This script

1. writes the provider's OpenAPI 3.1 document with ``wanmock openapi P`` (schemas/openapi.py;
   if that is not in this checkout it says so and exits 2);
2. installs Prism with ``npm install --prefix <dir> @stoplight/prism-cli`` if ``<dir>`` does not
   have it yet (a cache directory outside the repository; never ``npm install -g``);
3. starts ``wanmock serve --provider P --port 0 --timing fast --clock system`` (one provider, at
   the root, so both servers have the same paths) and ``prism mock -h 127.0.0.1 -p <free port>
   -v <--prism-log-level> <document>``, both with per-request logging off;
4. drives each, in the same run, with the same fixed mix: ``--concurrency`` clients, each with
   its own keep-alive connection, repeat "submit one task (the provider's valid corpus examples in
   rotation), then poll the id it was given ``--polls-per-task`` times" until ``--requests``
   requests in all, after ``--warmup`` requests that are not counted. With ``--rounds`` > 1 the
   order alternates and the medians are reported.

Measures only what both do (route the documented paths, check the request against the schema,
answer JSON): requests per second, p50/p99 latency (all, submit, poll) and the ratios
wanmock/prism, plus peak RSS (VmHWM) and CPU per request of each server, non-200 answers,
distinct task ids handed out, and how many answers of a sample validate against the captured
schemas. Then lists what Prism does not do that wanmock does. Exit status 0 when both servers
answered every request 200, 1 otherwise, 2 when the comparison could not run. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from harness import (
    REPO,
    BenchmarkError,
    Memory,
    Pools,
    ProviderCalls,
    WanmockServer,
    catalog,
    cpu_seconds,
    install_signal_handlers,
    machine_busy_seconds,
    mib,
    other_load,
    p50_p99,
    percentile,
    process_tree,
    providers_for,
    serve_arguments,
    start_time,
    status_kib,
    stop_tree,
    table,
)

REQUEST_TIMEOUT = 30.0
SAMPLE_LIMIT = 1000  # answers kept per run to check against the schemas afterwards
PACKAGE = "@stoplight/prism-cli"
DEFAULT_PRISM_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wanmock-benchmarks" / "prism"
PRISM_DOES_NOT = (
    "run a task: every poll answers the document's first example (queued) forever; wanmock's tasks go "
    "queued -> running -> succeeded on its clock, expire after the retention, can be failed/canceled",
    "keep state: every submit hands out the same example task id, and any id polls 200; wanmock "
    "answers an unknown or expired id as the provider does (404, or 200 UNKNOWN)",
    "serve the result: there is no MP4 behind the example URL; wanmock serves a real H.264 MP4 of the "
    "requested size and duration, with Range, signed URLs that expire",
    "answer errors in the provider's shape: a rejected request gets Prism's status (422 for an invalid "
    "body, 401 without a key) with the document's example body; wanmock answers with the provider's "
    "own status, code and message (e.g. DashScope 400 InvalidParameter naming the field)",
    "inject faults, rate limits, latency or dropped connections, keep a request journal, or scope "
    "any of it to one test (wanmock's /__admin/ control plane)",
    "answer what the captured schemas say: its example values ('string') break the patterns and "
    "consts of its own document (it says so in the sl-violations header)",
)


# -- Prism ----------------------------------------------------------------------------------


def prism_bin(directory: Path) -> Path:
    return directory / "node_modules" / ".bin" / "prism"


def ensure_prism(directory: Path, version: str | None) -> str:
    """Prism's executable under ``directory``, installed there with npm if missing; its version."""
    binary = prism_bin(directory)
    if not binary.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise BenchmarkError("Prism is not installed and npm is not on PATH (install Node.js and npm)")
        directory.mkdir(parents=True, exist_ok=True)
        spec = f"{PACKAGE}@{version}" if version else PACKAGE
        print(f"installing {spec} under {directory} (npm install --prefix) ...", file=sys.stderr)
        done = subprocess.run(
            [npm, "install", "--prefix", str(directory), "--no-audit", "--no-fund", spec],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0 or not binary.exists():
            raise BenchmarkError(f"npm install {spec} failed:\n{done.stderr[-3000:]}")
    done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise BenchmarkError(f"{binary} --version failed: {done.stderr.strip()[-500:]}")
    return done.stdout.strip()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrismServer:
    """``prism mock`` on a free loopback port, in its own session; a context manager."""

    def __init__(self, binary: Path, document: Path, log_level: str, probe: str) -> None:
        self.command = [str(binary), "mock", "-h", "127.0.0.1", "-v", log_level, str(document)]
        self.probe = probe  # a GET path that answers once Prism is up
        self.process: subprocess.Popen[bytes] | None = None
        self.origin = ""
        self._log: IO[bytes] | None = None

    def __enter__(self) -> PrismServer:
        try:
            for _ in range(3):  # the port is free when picked; another process may take it first
                if self.start(free_port()):
                    return self
            raise BenchmarkError(f"Prism did not start:\n{self.log_tail()}")
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, port: int) -> bool:
        self.stop()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - a file, not a pipe; closed in stop()
        self.process = subprocess.Popen(
            [*self.command[:2], "-p", str(port), *self.command[2:]],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.origin = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        with httpx.Client(base_url=self.origin, timeout=5) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    return False
                try:
                    client.get(self.probe)  # any HTTP answer means it is listening
                    return True
                except httpx.TransportError:
                    time.sleep(0.1)
        return False

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def memory(self) -> Memory:
        if self.process is None:
            return Memory(0, 0, 0, 0)
        tree = process_tree(self.pid)
        hwm = [status_kib(p, "VmHWM") * 1024 for p in tree]
        rss = [status_kib(p, "VmRSS") * 1024 for p in tree]
        return Memory(len(tree), sum(rss), max(hwm, default=0), sum(hwm))

    def cpu(self) -> float:
        return 0.0 if self.process is None else sum(cpu_seconds(p) for p in process_tree(self.pid))

    def log_tail(self, limit: int = 3000) -> str:
        if self._log is None:
            return ""
        with contextlib.suppress(OSError, ValueError):
            self._log.seek(0, os.SEEK_END)
            self._log.seek(max(0, self._log.tell() - limit))
            return self._log.read().decode(errors="replace")
        return ""

    def stop(self, timeout: float = 10.0) -> None:
        """terminate, wait; kill after ``timeout`` (and any process of its tree left behind)."""
        process = self.process
        try:
            if process is not None:
                known = {pid: start_time(pid) for pid in process_tree(process.pid)} if process.poll() is None else {}
                stop_tree(process, known, timeout)
        finally:
            self.process = None
            if self._log is not None:
                self._log.close()
                self._log = None


# -- the request mix ------------------------------------------------------------------------


@dataclass
class Measured:
    name: str
    requests: int = 0
    wall: float = 0.0
    latency: list[float] = field(default_factory=list)
    submit_latency: list[float] = field(default_factory=list)
    poll_latency: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    ids: set[str] = field(default_factory=set)
    violations: int = 0  # answers carrying Prism's sl-violations header
    sample: list[tuple[str, Any]] = field(default_factory=list)  # (message, body) to validate afterwards
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    busy: float = 0.0  # CPU seconds the whole machine was busy while measuring

    @property
    def rps(self) -> float:
        return self.requests / self.wall if self.wall > 0 else float("nan")


async def mix(
    origin: str, calls: ProviderCalls, args: argparse.Namespace, count: int, measured: Measured | None
) -> None:
    """``count`` requests: clients repeat submit + ``--polls-per-task`` polls of the id they got."""
    pools = Pools(origin, args.concurrency, args.pool_size, REQUEST_TIMEOUT, {})
    issued = 0

    async def client(n: int) -> None:
        nonlocal issued
        http = pools.for_client(n)
        while issued < count:
            issued += 1
            path, body = calls.submit(n + issued)
            start = time.perf_counter()
            try:
                response = await http.post(path, content=body, headers=calls.submit_headers)
            except httpx.HTTPError as exc:
                if measured is not None:
                    measured.statuses[f"submit {type(exc).__name__}"] += 1
                continue
            task_id = record(measured, "submit-response", response, time.perf_counter() - start, calls)
            for _ in range(args.polls_per_task):
                if issued >= count or task_id is None:
                    break
                issued += 1
                poll_path, params = calls.poll(task_id)
                start = time.perf_counter()
                try:
                    response = await http.get(poll_path, params=params, headers=calls.poll_headers)
                except httpx.HTTPError as exc:
                    if measured is not None:
                        measured.statuses[f"poll {type(exc).__name__}"] += 1
                    continue
                record(measured, "poll-response", response, time.perf_counter() - start, calls)

    try:
        await asyncio.gather(*(client(n) for n in range(args.concurrency)))
    finally:
        await pools.aclose()


def record(
    measured: Measured | None, message: str, response: httpx.Response, latency: float, calls: ProviderCalls
) -> str | None:
    """Count one answer; the task id of a submit answer (None if it has none)."""
    task_id = None
    if message == "submit-response" and response.status_code == 200:
        with contextlib.suppress(KeyError, IndexError, ValueError, TypeError):
            task_id = calls.task_id(response.json())
    if measured is None:
        return task_id
    measured.requests += 1
    measured.latency.append(latency)
    (measured.submit_latency if message == "submit-response" else measured.poll_latency).append(latency)
    kind = "submit" if message == "submit-response" else "poll"
    measured.statuses[f"{kind} {response.status_code}"] += 1
    if "sl-violations" in response.headers:
        measured.violations += 1
    if task_id is not None:
        measured.ids.add(task_id)
    if response.status_code == 200 and len(measured.sample) < SAMPLE_LIMIT:
        with contextlib.suppress(ValueError):
            measured.sample.append((message, response.json()))
    return task_id


def common_bodies(calls: ProviderCalls, origins: dict[str, str]) -> tuple[ProviderCalls, list[str]]:
    """``calls`` narrowed to the corpus bodies every server answers 200 (one try each, before
    warm-up), so that both are measured doing the same work; and why the others were left out."""
    kept, labels, dropped = [], [], []
    with httpx.Client(timeout=REQUEST_TIMEOUT) as client:
        for (path, body), label in zip(calls.submits, calls.labels, strict=True):
            refusals = []
            for name, origin in origins.items():
                answer = client.post(origin + path, content=body, headers=calls.submit_headers)
                if answer.status_code != 200:
                    refusals.append(f"{name} {answer.status_code}{violation(answer, body)}")
            if refusals:
                dropped.append(f"{label}: {'; '.join(refusals)}")
            else:
                kept.append((path, body))
                labels.append(label)
    if not kept:
        raise BenchmarkError("no corpus body is answered 200 by both servers:\n  " + "\n  ".join(dropped))
    return dataclasses.replace(calls, submits=kept, labels=labels), dropped


def violation(answer: httpx.Response, body: bytes) -> str:
    """The first of Prism's sl-violations in the branch of the body's own model, if it says."""
    try:
        found = json.loads(answer.headers.get("sl-violations", "[]"))
        model = json.loads(body).get("model")
    except ValueError:
        return ""
    for item in found:
        if not isinstance(item, dict) or item.get("code") in ("oneOf", "enum", "additionalProperties", "const"):
            continue
        return f" (model {model}: {item.get('message')})"
    return ""


def measure(name: str, origin: str, calls: ProviderCalls, args: argparse.Namespace, server: Any) -> Measured:
    asyncio.run(mix(origin, calls, args, args.warmup, None))
    measured = Measured(name)
    cpu, client_cpu, busy = server.cpu(), time.process_time(), machine_busy_seconds()
    start = time.perf_counter()
    asyncio.run(mix(origin, calls, args, args.requests, measured))
    measured.wall = time.perf_counter() - start
    measured.server_cpu = server.cpu() - cpu
    measured.client_cpu = time.process_time() - client_cpu
    measured.busy = machine_busy_seconds() - busy
    return measured


def schema_valid(provider: str, measured: Measured, limit: int) -> str:
    """How many of the first ``limit`` 200 answers validate against the captured schemas."""
    cat = catalog()
    sample = measured.sample[:limit]
    ok = sum(1 for message, body in sample if not cat.validate(provider, message, body))
    return f"{ok} of {len(sample)}" if sample else "-"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 and a == a and b == b else "-"


def median_of(runs: list[Measured], attribute: str) -> float:
    values = [getattr(m, attribute) for m in runs]
    return statistics.median(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--provider", default="dashscope", choices=sorted(catalog().providers), help="(dashscope)")
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per server (2000)")
    parser.add_argument("--concurrency", type=int, default=50, help="clients = connections (50)")
    parser.add_argument("--polls-per-task", type=int, default=3, help="polls after each submit (3)")
    parser.add_argument(
        "--warmup", type=int, default=1000, help="requests before measuring, each round (1000: lets V8 optimise Prism)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="rounds, alternating the order (1)")
    parser.add_argument("--pool-size", type=int, default=10, help="connections per httpx.AsyncClient (10)")
    parser.add_argument("--validate-sample", type=int, default=200, help="answers per server checked (200)")
    parser.add_argument("--prism-dir", type=Path, default=DEFAULT_PRISM_DIR, help=f"default {DEFAULT_PRISM_DIR}")
    parser.add_argument("--prism-version", help=f"npm version of {PACKAGE} to install (default latest)")
    parser.add_argument(
        "--prism-log-level",
        default="silent",
        choices=("trace", "debug", "info", "warn", "error", "fatal", "silent"),
        help="Prism's -v (default silent: like wanmock, no line per request)",
    )
    parser.add_argument("--store", help="passed to wanmock serve --store")
    parser.add_argument("--workers", type=int, help="passed to wanmock serve --workers")
    args = parser.parse_args()
    if min(args.requests, args.concurrency, args.rounds, args.pool_size) < 1 or args.polls_per_task < 0:
        parser.error("--requests, --concurrency, --rounds and --pool-size must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    install_signal_handlers()
    if not (REPO / "schemas" / "openapi.py").exists():
        print(
            "prism.py: schemas/openapi.py does not exist in this checkout, so `wanmock openapi` cannot write "
            "the OpenAPI document Prism would serve; nothing to compare.",
            file=sys.stderr,
        )
        return 2
    try:
        return compare(args)
    except BenchmarkError as exc:
        print(f"prism.py: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prism.py: interrupted; servers stopped", file=sys.stderr)
        return 130


def compare(args: argparse.Namespace) -> int:
    calls = providers_for(args.provider)[0]  # one provider, served at the root by both
    extra = serve_arguments(args.store, args.workers)
    version = ensure_prism(args.prism_dir, args.prism_version)
    with tempfile.TemporaryDirectory(prefix="wanmock-prism-") as scratch:
        document = Path(scratch) / f"{args.provider}.openapi.json"
        done = subprocess.run(
            [sys.executable, "-m", "wanmock.mockserver", "openapi", args.provider, "--output", str(document)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
            check=False,
        )
        if done.returncode != 0 or not document.exists():
            raise BenchmarkError(f"wanmock openapi {args.provider} failed ({done.returncode}): {done.stderr[-2000:]}")
        probe_path, probe_query = calls.poll("probe")
        probe = probe_path + ("?" + "&".join(f"{k}={v}" for k, v in probe_query.items()) if probe_query else "")
        serve = ["--provider", args.provider, "--timing", "fast", "--clock", "system", *extra]
        print(f"wanmock serve --port 0 {' '.join(serve)}; Prism {version}: prism mock {document.name}", file=sys.stderr)
        runs: dict[str, list[Measured]] = {"wanmock": [], "prism": []}
        memory: dict[str, Memory] = {}
        prism_server = PrismServer(prism_bin(args.prism_dir), document, args.prism_log_level, probe)
        with WanmockServer(*serve) as wanmock, prism_server as prism:
            servers: dict[str, Any] = {"wanmock": wanmock, "prism": prism}
            calls, dropped = common_bodies(calls, {name: server.origin for name, server in servers.items()})
            print(f"{len(calls.submits)} corpus bodies answered 200 by both; left out: {len(dropped)}", file=sys.stderr)
            for round_ in range(args.rounds):
                order = ["wanmock", "prism"] if round_ % 2 == 0 else ["prism", "wanmock"]
                for name in order:
                    server = servers[name]
                    measured = measure(name, server.origin, calls, args, server)
                    runs[name].append(measured)
                    print(
                        f"  round {round_ + 1} {name:<8} {measured.rps:8.0f} req/s  "
                        f"p50 {percentile(measured.latency, 50) * 1000:6.1f} ms  "
                        f"p99 {percentile(measured.latency, 99) * 1000:6.1f} ms  "
                        f"server CPU {measured.server_cpu / max(1, measured.requests) * 1000:.2f} ms/request",
                        file=sys.stderr,
                    )
            memory = {name: server.memory() for name, server in servers.items()}
    return report(args, version, runs, memory, calls, dropped)


def report(
    args: argparse.Namespace,
    version: str,
    runs: dict[str, list[Measured]],
    memory: dict[str, Memory],
    calls: ProviderCalls,
    dropped: list[str],
) -> int:
    w, p = runs["wanmock"], runs["prism"]
    pooled = {name: merge(ms) for name, ms in runs.items()}

    def both(label: str, value: Any, better: str = "") -> tuple[str, ...]:
        a, b = value(pooled["wanmock"], w), value(pooled["prism"], p)
        return (label, *(fmt(v) for v in (a, b)), ratio(a, b) + better)

    def fmt(v: float) -> str:
        return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"

    rows: list[tuple[str, ...]] = [
        ("metric", "wanmock", f"prism {version}", "wanmock/prism"),
        both("requests per second", lambda m, rs: median_of(rs, "rps"), " (higher is better)"),
        both("latency p50 (ms)", lambda m, rs: percentile(m.latency, 50) * 1000, " (lower is better)"),
        both("latency p99 (ms)", lambda m, rs: percentile(m.latency, 99) * 1000),
        ("submit p50 / p99", p50_p99(pooled["wanmock"].submit_latency), p50_p99(pooled["prism"].submit_latency), ""),
        ("poll p50 / p99", p50_p99(pooled["wanmock"].poll_latency), p50_p99(pooled["prism"].poll_latency), ""),
        both("server CPU per request (ms)", lambda m, rs: m.server_cpu / max(1, m.requests) * 1000),
        ("client CPU / wall (s)", *(f"{m.client_cpu:.1f} / {m.wall:.1f}" for m in pooled.values()), ""),
        (
            "other processes on the machine",
            *(other_load(m.busy, m.server_cpu + m.client_cpu, m.wall) for m in pooled.values()),
            "",
        ),
        ("server peak RSS (VmHWM)", mib(memory["wanmock"].hwm_max), mib(memory["prism"].hwm_max), ""),
        ("answers", *(", ".join(f"{k}: {v}" for k, v in sorted(m.statuses.items())) for m in pooled.values()), ""),
        ("distinct task ids handed out", *(f"{len(m.ids):,}" for m in pooled.values()), ""),
        ("answers with sl-violations header", *(f"{m.violations:,}" for m in pooled.values()), ""),
        (
            "200 answers valid per captured schema",
            *(schema_valid(args.provider, m, args.validate_sample) for m in pooled.values()),
            "",
        ),
    ]
    print(
        table(
            rows,
            title=f"\n{args.provider}: {args.requests:,} requests per server x {args.rounds} round(s) at concurrency "
            f"{args.concurrency}; each task 1 submit + {args.polls_per_task} polls; warm-up {args.warmup}",
        )
    )
    print("\nMeasured only what both do: route the documented paths, check each request, answer JSON.")
    print(f"Request bodies: the {len(calls.submits)} valid {args.provider} corpus examples both answer 200.")
    if dropped:
        print(f"Left out: {len(dropped)} valid corpus examples (valid per the captured schema) not answered 200:")
        for line in dropped:
            print(f"  - {line}")
    print("What Prism does not do, and wanmock does:")
    for line in PRISM_DOES_NOT:
        print(f"  - it does not {line}")
    bad = sum(v for m in pooled.values() for k, v in m.statuses.items() if not k.endswith(" 200"))
    print("\nRESULT:", "every request answered 200 by both" if not bad else f"{bad} answers were not 200")
    return 0 if not bad else 1


def merge(runs: list[Measured]) -> Measured:
    out = Measured(runs[0].name)
    for m in runs:
        out.requests += m.requests
        out.wall += m.wall
        out.latency += m.latency
        out.submit_latency += m.submit_latency
        out.poll_latency += m.poll_latency
        out.statuses.update(m.statuses)
        out.ids |= m.ids
        out.violations += m.violations
        out.sample += m.sample
        out.server_cpu += m.server_cpu
        out.client_cpu += m.client_cpu
        out.busy += m.busy
    return out


if __name__ == "__main__":
    sys.exit(main())
