"""Stores: req/s and latency of submit and poll on each store, and whether the memory store stays flat.

Run:  python benchmarks/stores.py [--seconds 8] [--connections 64] [--provider modellix]
                                  [--cap 100000] [--only memory,sqlite,redis]
                                  [--baseline-python OTHER_CHECKOUT/.venv/bin/python]

Everything runs on 127.0.0.1: ``wanmock serve --timing fast --clock system`` on the memory store
(1 worker), on SQLite (a file in a temporary directory) and on Redis (a ``redis-server`` this
script starts on a free port, without persistence) at 1 and 2 workers, loaded by ``wrk``
(``/usr/bin/wrk``, Debian package ``wrk``) with ``--threads`` threads and ``--connections``
connections for ``--seconds`` seconds per figure: POST submit (a valid corpus example of the
provider) and GET poll (one task, polled over and over). It prints per store and worker count
req/s, p50 and p99, the server's CPU per request (all its processes; not Redis's) and the ratio
to the memory store. With ``--baseline-python`` (the interpreter of another checkout, e.g. an
older commit installed in its own venv), each figure is also taken on that checkout's server,
interleaved with ours (same store, same load on the machine), and the ratio to it printed:
figures on a shared machine move with its load, ratios taken side by side much less. Then the
memory store's flatness:

* the cliff: submits on a server whose store is past its task cap (every submit drops the
  oldest task) against submits on a server far below it — within 20% is flat;
* GET poll p99 with about 1,000 stored tasks and with ``--cap`` (100,000) stored tasks
  (both servers run side by side, measured in 3 interleaved rounds; medians);
* bytes per stored task: tracemalloc over ``--cap`` tasks added to a MemoryStore in this process
  (built as a submit builds them), and the server's RSS growth per task between the two fills.

Bounded in time: about 2 x seconds per (store, workers) pair plus the fill to the cap (about
``cap`` / submit rate seconds). Exit status 0, 2 if the benchmark cannot run (no wrk, no
redis-server), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import sys
import tempfile
import tracemalloc
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from harness import (
    BenchmarkError,
    ProviderCalls,
    WanmockServer,
    install_signal_handlers,
    redis_server,
    status_kib,
    table,
)

WRK = "/usr/bin/wrk"
FILL_CHUNK_SECONDS = 3
ROUNDS = 3  # interleaved rounds of the flatness checks (medians)


@dataclass
class Figure:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx answers and socket errors
    requests: int = 0
    cpu_us: float = float("nan")  # server CPU per request

    def ratio(self, reference: Figure | None) -> str:
        return "-" if reference is None else f"{self.requests_per_second / reference.requests_per_second:.2f}"

    def cells(self) -> tuple[str, ...]:
        return (
            f"{self.requests_per_second:,.0f}",
            f"{self.p50_ms:.1f}",
            f"{self.p99_ms:.1f}",
            f"{self.cpu_us:,.0f}",
            str(self.errors),
        )


# -- wrk ------------------------------------------------------------------------------------------


def _milliseconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def parse_wrk(output: str) -> Figure:
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    if rate is None or p50 is None or p99 is None:
        raise BenchmarkError(f"wrk printed no figures:\n{output}")
    count = re.search(r"(\d+) requests in", output)
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses:\s+(\d+)", output))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    requests = int(count.group(1)) if count else 0
    return Figure(float(rate.group(1)), _milliseconds(p50.group(1)), _milliseconds(p99.group(1)), errors, requests)


def lua_request(method: str, body: bytes | None, headers: dict[str, str]) -> str:
    lines = [f'wrk.method = "{method}"']
    for name, value in headers.items():
        lines.append(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}")
    if body is not None:
        lines.append(f"wrk.body = {json.dumps(body.decode())}")
    return "\n".join(lines) + "\n"


class Wrk:
    def __init__(self, workdir: Path, threads: int, connections: int) -> None:
        self.workdir = workdir
        self.threads = threads
        self.connections = connections

    def run(self, url: str, method: str, headers: dict[str, str], body: bytes | None, seconds: float) -> Figure:
        script = self.workdir / f"{uuid.uuid4().hex}.lua"
        script.write_text(lua_request(method, body, headers))
        command = [
            WRK,
            f"-t{self.threads}",
            f"-c{self.connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(script),
            url,
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
        finally:
            script.unlink()
        if done.returncode != 0:
            raise BenchmarkError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
        return parse_wrk(done.stdout)


# -- the servers ----------------------------------------------------------------------------------


class Target:
    """One running server and the requests wrk sends it."""

    def __init__(self, server: WanmockServer, calls: ProviderCalls) -> None:
        self.server = server
        self.calls = calls
        self.client = httpx.Client(base_url=server.origin, timeout=30)
        path, body = calls.submit(0)
        self.submit_path, self.submit_body = path, body
        answer = self.client.post(path, content=body, headers=calls.submit_headers)
        if answer.status_code != 200:
            raise BenchmarkError(f"a submit was refused: {answer.status_code} {answer.text[:500]}")
        poll_path, query = calls.poll(calls.task_id(answer.json()))
        self.poll_url = server.origin + poll_path + ("?" + httpx.QueryParams(query).__str__() if query else "")

    def _timed(
        self, wrk: Wrk, url: str, method: str, headers: dict[str, str], body: bytes | None, seconds: float
    ) -> Figure:
        before = self.server.cpu()
        figure = wrk.run(url, method, headers, body, seconds)
        figure.cpu_us = (self.server.cpu() - before) / max(1, figure.requests) * 1e6
        return figure

    def submit(self, wrk: Wrk, seconds: float) -> Figure:
        url = self.server.origin + self.submit_path
        return self._timed(wrk, url, "POST", self.calls.submit_headers, self.submit_body, seconds)

    def poll(self, wrk: Wrk, seconds: float) -> Figure:
        return self._timed(wrk, self.poll_url, "GET", self.calls.poll_headers, None, seconds)

    def stored(self) -> int:
        state = self.client.get("/__admin/health").json().get("store_state", {})
        return int(state.get("tasks", -1))

    def fill(self, count: int, wrk: Wrk) -> None:
        """Submit until the store holds ``count`` tasks (or its cap: then until that many were sent)."""
        if count <= 2000:
            for _ in range(count - max(0, self.stored())):
                self.client.post(self.submit_path, content=self.submit_body, headers=self.calls.submit_headers)
            return
        while self.stored() < count:
            self.submit(wrk, FILL_CHUNK_SECONDS)

    def close(self) -> None:
        self.client.close()


class Server(WanmockServer):
    """``wanmock serve`` run by a given interpreter (another checkout's venv), or ours."""

    def __init__(self, *args: str, python: str | None = None) -> None:
        super().__init__(*args, python=python)


@contextlib.contextmanager
def target(provider: str, store: str, workers: int, python: str | None = None) -> Iterator[Target]:
    args = ["--provider", provider, "--timing", "fast", "--clock", "system", "--store", store]
    if workers > 1:
        args += ["--workers", str(workers)]
    with Server(*args, python=python) as server:
        running = Target(server, ProviderCalls.build(provider))
        try:
            yield running
        finally:
            running.close()


# -- bytes per task, in this process --------------------------------------------------------------


def bytes_per_task(provider: str, count: int) -> float:
    """tracemalloc over ``count`` tasks added to a MemoryStore, each built as a submit builds it."""
    from wanmock.mockserver.bodies import join_flat
    from wanmock.mockserver.config import ServerConfig
    from wanmock.mockserver.http import fingerprint
    from wanmock.mockserver.profiles import profile_for
    from wanmock.mockserver.routing import Match, Router
    from wanmock.mockserver.store import MemoryStore
    from wanmock.mockserver.tasks import Task

    calls = ProviderCalls.build(provider)
    profile = profile_for(provider, ServerConfig())
    path, raw = calls.submit(0)
    key = "bench-key"
    owner = fingerprint(key)
    template = json.loads(raw)
    found = Router(profile.provider).match("POST", path)
    model = profile.model_for(found.params if isinstance(found, Match) else {}, template)
    params = profile.video_params(model, template)
    store = MemoryStore(task_limit=count)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for n in range(count):
            body = bytes(bytearray(raw))  # every submit keeps its own body, raw, with its own credentials
            secrets = join_flat((f"Bearer {key}", f"{key}"))
            now = 1_790_000_000.0 + n / 1000
            store.add(
                Task(
                    id=str(uuid.uuid4()),
                    provider=provider,
                    kind=model.kind,
                    model_id=str(template.get("model") or model.id),
                    params=params,
                    created_at=now,
                    started_at=now + 1,
                    finished_at=now + 4,
                    retention_seconds=profile.retention_seconds,
                    owner=owner,
                    request_raw=(body, secrets),  # as the server's submit keeps it (made a record when read)
                )
            )
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return (after - before) / count


# -- the run --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per wrk figure (default 8)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--provider", default="modellix", help="the provider served (default modellix)")
    parser.add_argument("--cap", type=int, default=100_000, help="the memory store's task cap (default 100000)")
    parser.add_argument("--only", default="memory,sqlite,redis", help="stores to measure, comma-separated")
    parser.add_argument("--no-flatness", action="store_true", help="skip the cliff, GC and bytes-per-task part")
    parser.add_argument("--baseline-python", help="also measure the server run by this interpreter, interleaved")
    args = parser.parse_args(argv)
    if not Path(WRK).exists():
        print(f"stores: {WRK} is missing (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    install_signal_handlers()
    try:
        return run(args)
    except BenchmarkError as exc:
        print(f"stores: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stores: interrupted", file=sys.stderr)
        return 130


def run(args: argparse.Namespace) -> int:
    wanted = set(args.only.split(","))
    pythons: list[str | None] = [None] if not args.baseline_python else [None, args.baseline_python]
    with tempfile.TemporaryDirectory(prefix="wanmock-stores-") as tmp:
        workdir = Path(tmp)
        wrk = Wrk(workdir, args.threads, args.connections)
        print(f"wrk -t{args.threads} -c{args.connections} -d{args.seconds:g}s, provider {args.provider}, 127.0.0.1")
        header = ("req/s", "p50 ms", "p99 ms", "CPU us/req", "errors", "x memory")
        if args.baseline_python:
            header += ("x baseline",)
        rows: list[tuple[str, ...]] = [("store", *header, *header)]
        base_rows: list[tuple[str, ...]] = [("store (baseline)", *header[:5], *header[:5])]
        reference: dict[str | None, tuple[Figure, Figure]] = {}
        with contextlib.ExitStack() as stack:
            redis_url = stack.enter_context(redis_server()) if "redis" in wanted else ""
            plan = [("memory", "memory", 1)] if "memory" in wanted else []
            for workers in (1, 2):
                if "sqlite" in wanted:
                    plan.append((f"sqlite, {workers} worker(s)", f"sqlite:///{workdir}/tasks-{workers}", workers))
                if "redis" in wanted:
                    plan.append((f"redis, {workers} worker(s)", f"{redis_url}?prefix=w{workers}", workers))
            for label, store, workers in plan:
                figures: dict[str | None, tuple[Figure, Figure]] = {}
                for n, python in enumerate(pythons):  # interleaved: ours, then the baseline's
                    url = store if store == "memory" else f"{store}-{n}.db" if "sqlite" in store else f"{store}-{n}:"
                    with target(args.provider, url, workers, python) as running:
                        running.submit(wrk, 1)  # warm-up
                        figures[python] = (running.submit(wrk, args.seconds), running.poll(wrk, args.seconds))
                    if store == "memory":
                        reference[python] = figures[python]
                    post, get = figures[python]
                    who = "baseline" if python else "ours"
                    rates = f"POST {post.requests_per_second:,.0f}/s, GET {get.requests_per_second:,.0f}/s"
                    print(f"  {label} ({who}): {rates}", flush=True)
                (post, get), ref = figures[None], reference.get(None)
                cells = [*post.cells(), post.ratio(ref[0] if ref else None)]
                get_cells = [*get.cells(), get.ratio(ref[1] if ref else None)]
                if args.baseline_python:
                    base_post, base_get = figures[args.baseline_python]
                    cells.append(post.ratio(base_post))
                    get_cells.append(get.ratio(base_get))
                    base_rows.append((label, *base_post.cells(), *base_get.cells()))
                rows.append((label, *cells, *get_cells))
        print()
        print(table(rows, "Submit (POST, left) and poll (GET, right) per store; ratios to the memory store"))
        if args.baseline_python:
            print()
            print(table(base_rows, f"The same on the baseline ({args.baseline_python})"))
        if args.no_flatness or "memory" not in wanted:
            return 0
        print()
        flatness(args, wrk)
    return 0


def median(figures: list[Figure]) -> Figure:
    return sorted(figures, key=lambda f: f.requests_per_second)[len(figures) // 2]


def median_p99(figures: list[Figure]) -> Figure:
    return sorted(figures, key=lambda f: f.p99_ms)[len(figures) // 2]


def flatness(args: argparse.Namespace, wrk: Wrk) -> None:
    """Two servers side by side, measured in interleaved rounds (medians of ROUNDS): one with
    about 1,000 tasks and a cap it never reaches, one filled to its cap (every submit drops the
    oldest task)."""
    cap = args.cap
    with (
        target(args.provider, f"memory?task_limit={cap * 100}", 1) as small,
        target(args.provider, f"memory?task_limit={cap}", 1) as full,
    ):
        small.fill(1000, wrk)
        full.fill(1000, wrk)
        at_1k, rss_1k = full.stored(), status_kib(full.server.pid, "VmRSS")
        full.fill(cap, wrk)
        at_cap, rss_cap = full.stored(), status_kib(full.server.pid, "VmRSS")
        gets: dict[str, list[Figure]] = {"small": [], "full": []}
        posts: dict[str, list[Figure]] = {"small": [], "full": []}
        for _ in range(ROUNDS):
            gets["small"].append(small.poll(wrk, args.seconds))
            gets["full"].append(full.poll(wrk, args.seconds))
        at_small = small.stored()
        for _ in range(ROUNDS):
            posts["small"].append(small.submit(wrk, args.seconds))
            posts["full"].append(full.submit(wrk, args.seconds))
        below, beyond = median(posts["small"]), median(posts["full"])
        get_1k, get_cap = median_p99(gets["small"]), median_p99(gets["full"])
    per_task = bytes_per_task(args.provider, cap)
    rss_per_task = (rss_cap - rss_1k) * 1024 / max(1, at_cap - at_1k)
    ratio = beyond.requests_per_second / below.requests_per_second
    p99_ratio = get_cap.p99_ms / get_1k.p99_ms
    rows = [
        ("check", "figure", "target", "verdict"),
        (
            "submits beyond the cap / below it",
            f"{beyond.requests_per_second:,.0f} / {below.requests_per_second:,.0f} req/s = {ratio:.2f}",
            ">= 0.80",
            "ok" if ratio >= 0.8 else "MISSED",
        ),
        (
            f"GET p99 at {at_cap:,} / at {at_small:,} stored tasks",
            f"{get_cap.p99_ms:.1f} / {get_1k.p99_ms:.1f} ms = {p99_ratio:.2f}",
            "<= 2",
            "ok" if p99_ratio <= 2 else "MISSED",
        ),
        (
            f"bytes per stored task (tracemalloc, {cap:,} tasks)",
            f"{per_task:,.0f} B",
            "<= 1024",
            "ok" if per_task <= 1024 else "MISSED",
        ),
        ("server RSS growth per task (1k -> cap)", f"{rss_per_task:,.0f} B", "-", "-"),
    ]
    print(table(rows, f"The memory store at its cap ({cap:,} tasks)"))


if __name__ == "__main__":
    sys.exit(main())
