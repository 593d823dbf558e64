"""Soak: a `wanmock serve` under steady moderate load for minutes; is its memory flat?

Run:  python benchmarks/soak.py [--minutes 10] [--rate 10] [--forget epoch|keep]
                                [--store sqlite:////tmp/soak.db] [--workers 2]

Starts ``wanmock serve --port 0 --timing fast --clock system`` (plus ``--store``/``--workers``
when given) on 127.0.0.1 and, for ``--minutes``, submits ``--rate`` tasks per second (every
provider in turn, the valid submit examples of schemas/corpus/ in rotation), polls each every
``--poll-interval`` seconds until it succeeds, and downloads the MP4 of the first task of each
request body and then of every ``--download-every``-th success. Every ``--sample-every``
seconds (5) it reads the server's RSS (the sum of VmRSS of the server process and its workers,
from /proc) and prints a row of the series.

Tasks are kept by the server for the provider's retention (24 h), so under ``--forget keep`` RSS
grows with every task by design (the memory store holds at most 100,000). ``--forget epoch``
(the default) tags each epoch's tasks (``--forget-every`` seconds: a minute, or a sixth of a
shorter run) with their own ``X-Wanmock-Test`` id and, once all of an epoch's tasks have
finished, forgets them with ``POST /__admin/reset?test=<that id>``: the
working set stays constant, so any growth left is a leak.

Reports the RSS series, its min / median / max, the slope (MiB per minute) of a least-squares
fit over the second half of the run (the first half holds warm-up: imports, caches, MP4
renders, the bounded journal filling up), the slope over the first half for comparison, and the
verdict: flat when the second-half slope is under ``--flat-mib-per-minute`` (1.0). Every task is
accounted for as in load.py (lost, duplicate, stuck, unsubmitted). Exit status 1 if memory is
not flat or a task was not accounted for, 2 if the soak could not run. Loopback only; it stops
by itself after minutes + task timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from harness import (
    MIB,
    BenchmarkError,
    Pools,
    ProviderCalls,
    WanmockServer,
    catalog,
    install_signal_handlers,
    machine_busy_seconds,
    mib,
    other_load,
    p50_p99,
    percentile,
    providers_for,
    serve_arguments,
    table,
)

REQUEST_TIMEOUT = 30.0
TEST_HEADER = "X-Wanmock-Test"


@dataclass
class Sample:
    at: float  # seconds since the load started
    rss: int
    processes: int
    submitted: int
    succeeded: int
    in_flight: int
    poll_p50: float  # of the polls answered since the previous sample


@dataclass
class Soak:
    args: argparse.Namespace
    server: WanmockServer
    providers: list[ProviderCalls]
    pools: Pools
    run_id: str
    started: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(1))
    samples: list[Sample] = field(default_factory=list)
    submit_latency: list[float] = field(default_factory=list)
    poll_latency: list[float] = field(default_factory=list)
    window: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    ids: Counter[str] = field(default_factory=Counter)
    outstanding: Counter[int] = field(default_factory=Counter)  # unfinished tasks per epoch
    forgotten: set[int] = field(default_factory=set)
    rendered: set[tuple[str, int]] = field(default_factory=set)  # bodies whose MP4 was fetched once
    attempted: int = 0
    submitted: int = 0
    succeeded: int = 0
    unsubmitted: int = 0
    skipped: int = 0
    lost: int = 0
    stuck: int = 0
    downloads: int = 0
    downloaded_bytes: int = 0
    requests: int = 0

    def test_id(self, epoch: int) -> str:
        return f"{self.run_id}-e{epoch}" if self.args.forget == "epoch" else self.run_id

    def epoch(self) -> int:
        return int((time.monotonic() - self.started) // self.args.forget_every)

    async def send(
        self, client: httpx.AsyncClient, method: str, url: str, kind: str, **kwargs: Any
    ) -> tuple[httpx.Response | None, float]:
        start = time.perf_counter()
        try:
            response = await client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            self.errors[f"{kind} {type(exc).__name__}"] += 1
            response = None
        self.requests += 1
        latency = time.perf_counter() - start
        if response is not None and response.status_code != 200:
            self.errors[f"{kind} {response.status_code}"] += 1
        return response, latency

    async def download(self, client: httpx.AsyncClient, calls: ProviderCalls, body: Any) -> None:
        """Fetch the result MP4 (no Authorization: APIYI's pre-signed URL refuses it)."""
        try:
            url = calls.result_url(body)
        except (KeyError, IndexError, ValueError, TypeError):
            self.errors["succeeded without a result URL"] += 1
            return
        try:
            async with client.stream("GET", url) as response:
                async for chunk in response.aiter_bytes():
                    self.downloaded_bytes += len(chunk)
                if response.status_code != 200:
                    self.errors[f"download {response.status_code}"] += 1
        except httpx.HTTPError as exc:
            self.errors[f"download {type(exc).__name__}"] += 1
        self.requests += 1
        self.downloads += 1

    async def lifecycle(self, n: int) -> None:
        """Task n: submit, poll until succeeded (or lost, or stuck), maybe download its MP4."""
        calls = self.providers[n % len(self.providers)]
        variant = (n // len(self.providers)) % len(calls.submits)
        path, body = calls.submit(n // len(self.providers))
        client = self.pools.for_client(n % self.args.connections)
        epoch = self.epoch()
        self.outstanding[epoch] += 1
        tag = {TEST_HEADER: self.test_id(epoch)}
        try:
            response, latency = await self.send(
                client, "POST", path, "submit", content=body, headers={**calls.submit_headers, **tag}
            )
            if response is None or response.status_code != 200:
                self.unsubmitted += 1
                return
            self.submit_latency.append(latency)
            try:
                task_id = calls.task_id(response.json())
            except (KeyError, IndexError, ValueError, TypeError):
                self.unsubmitted += 1
                return
            self.submitted += 1
            self.ids[task_id] += 1
            deadline = time.monotonic() + self.args.task_timeout
            while True:
                await asyncio.sleep(self.args.poll_interval * self.rng.uniform(0.9, 1.1))
                poll_path, params = calls.poll(task_id)
                response, latency = await self.send(
                    client, "GET", poll_path, "poll", params=params, headers={**calls.poll_headers, **tag}
                )
                if response is not None:
                    self.poll_latency.append(latency)
                    self.window.append(latency)
                    if response.status_code == 404:
                        self.lost += 1
                        return
                if response is not None and response.status_code == 200:
                    answer = response.json()
                    word = calls.status(answer)
                    if word == calls.succeeded:
                        self.succeeded += 1
                        first = (calls.name, variant) not in self.rendered
                        every = self.args.download_every
                        if first or (every and self.succeeded % every == 0):
                            self.rendered.add((calls.name, variant))
                            await self.download(client, calls, answer)
                        return
                    if word in calls.terminal:
                        self.lost += 1
                        return
                if time.monotonic() >= deadline:
                    self.stuck += 1
                    return
        finally:
            self.outstanding[epoch] -= 1

    async def forget(self) -> None:
        """Every few seconds: forget the tasks of each finished epoch (``--forget epoch``)."""
        while True:
            await asyncio.sleep(2.0)
            current = self.epoch()
            for epoch in sorted(self.outstanding):
                if epoch < current and self.outstanding[epoch] == 0 and epoch not in self.forgotten:
                    self.forgotten.add(epoch)
                    await self.send(
                        self.pools.clients[0],
                        "POST",
                        "/__admin/reset",
                        "reset",
                        params={"test": self.test_id(epoch)},
                    )

    async def sample(self) -> None:
        while True:
            memory = self.server.memory()
            window, self.window = self.window, []
            row = Sample(
                at=time.monotonic() - self.started,
                rss=memory.rss,
                processes=memory.processes,
                submitted=self.submitted,
                succeeded=self.succeeded,
                in_flight=sum(self.outstanding.values()),
                poll_p50=percentile(window, 50),
            )
            self.samples.append(row)
            p50 = "-" if row.poll_p50 != row.poll_p50 else f"{row.poll_p50 * 1000:.1f}"
            print(
                f"  {row.at:7.0f} {row.rss / MIB:9.1f} {row.processes:5} {row.submitted:9} {row.succeeded:9} "
                f"{row.in_flight:9} {p50:>9}",
                file=sys.stderr,
                flush=True,
            )
            await asyncio.sleep(self.args.sample_every)

    async def run(self) -> None:
        duration = self.args.minutes * 60
        total = int(duration * self.args.rate)
        limit = int(self.args.rate * (self.args.task_timeout + REQUEST_TIMEOUT)) + 10  # never unbounded
        print(
            f"  {'t (s)':>7} {'RSS MiB':>9} {'procs':>5} {'submitted':>9} {'succeeded':>9} {'in flight':>9} "
            f"{'poll p50':>9}",
            file=sys.stderr,
        )
        self.started = time.monotonic()
        helpers = [asyncio.create_task(self.sample())]
        if self.args.forget == "epoch":
            helpers.append(asyncio.create_task(self.forget()))
        tasks: set[asyncio.Task[None]] = set()
        try:
            for n in range(total):
                delay = self.started + n / self.args.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if len(tasks) >= limit:
                    self.skipped += 1
                    continue
                self.attempted += 1
                task = asyncio.create_task(self.lifecycle(n))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.sleep(max(0.0, self.started + duration - time.monotonic()))
            helpers[0].cancel()  # the series covers the load period; one last sample at its end
            await self.sample_once()
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=self.args.task_timeout + 2 * REQUEST_TIMEOUT)
                for task in pending:
                    task.cancel()
                self.stuck += len(pending)
        finally:  # on an interrupt too: no task may outlive the connection pools
            for task in [*tasks, *helpers]:
                task.cancel()
            await asyncio.gather(*tasks, *helpers, return_exceptions=True)

    async def sample_once(self) -> None:
        memory = self.server.memory()
        self.samples.append(
            Sample(
                time.monotonic() - self.started,
                memory.rss,
                memory.processes,
                self.submitted,
                self.succeeded,
                sum(self.outstanding.values()),
                percentile(self.window, 50),
            )
        )


def slope_per_minute(samples: list[Sample]) -> float:
    """Least-squares slope of RSS (MiB) over time (minutes); NaN for fewer than 2 samples."""
    if len(samples) < 2:
        return float("nan")
    xs = [s.at / 60 for s in samples]
    ys = [s.rss / MIB for s in samples]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    if var == 0:
        return float("nan")
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var


async def soak(args: argparse.Namespace, server: WanmockServer) -> Soak:
    run_id = f"soak-{os.getpid()}-{int(time.time())}"
    pools = Pools(server.origin, args.connections, args.pool_size, REQUEST_TIMEOUT, {})
    try:
        state = Soak(args, server, providers_for(args.provider), pools, run_id)
        await state.run()
        return state
    finally:
        await pools.aclose()


def report(
    args: argparse.Namespace, health: dict[str, Any], state: Soak, server_cpu: float, other: tuple[float, float]
) -> int:
    samples = state.samples
    rss = [s.rss for s in samples]
    duration = args.minutes * 60
    first = [s for s in samples if s.at < duration / 2]
    second = [s for s in samples if s.at >= duration / 2]
    slope = slope_per_minute(second)
    flat = slope == slope and slope < args.flat_mib_per_minute
    duplicates = sum(n - 1 for n in state.ids.values())
    failed_tasks = state.lost + state.stuck + state.unsubmitted + duplicates
    wall = samples[-1].at if samples else 0.0
    rows: list[tuple[str, ...]] = [
        ("metric", "value"),
        ("server", f"{health.get('store', '?')}, {samples[-1].processes if samples else '?'} process(es)"),
        (
            "load",
            f"{args.rate:g} tasks/s for {args.minutes:g} min, poll every {args.poll_interval:g} s, "
            f"{args.connections} connections, forget={args.forget}",
        ),
        ("tasks submitted / succeeded", f"{state.submitted:,} / {state.succeeded:,} (skipped {state.skipped})"),
        ("requests", f"{state.requests:,} ({state.requests / wall:,.0f}/s)" if wall else str(state.requests)),
        ("MP4 downloads", f"{state.downloads} ({mib(state.downloaded_bytes)})"),
        ("submit latency p50 / p99", p50_p99(state.submit_latency)),
        ("poll latency p50 / p99", p50_p99(state.poll_latency)),
        ("errors", ", ".join(f"{k}: {v}" for k, v in sorted(state.errors.items())) or "none"),
        (
            "lost / duplicate / stuck / unsubmitted",
            f"{state.lost} / {duplicates} / {state.stuck} / {state.unsubmitted}",
        ),
        ("epochs forgotten", str(len(state.forgotten)) if args.forget == "epoch" else "- (keep)"),
        ("RSS samples", f"{len(samples)} every {args.sample_every:g} s"),
        ("RSS min / median / max", " / ".join(mib(v) for v in (min(rss), statistics.median(rss), max(rss)))),
        ("RSS slope, first half", f"{slope_per_minute(first):+.2f} MiB/min"),
        ("RSS slope, second half", f"{slope:+.2f} MiB/min"),
        ("server CPU", f"{server_cpu:.1f} s ({server_cpu / max(1, state.requests) * 1000:.2f} ms per request)"),
        ("other processes on the machine", other_load(other[0], server_cpu, other[1])),
    ]
    print(table(rows, title="\nwanmock soak"))
    print(f"\nRSS series (MiB, every {args.sample_every:g} s; the last at the end of the load):")
    values = [f"{s.rss / MIB:.1f}" for s in samples]
    for start in range(0, len(values), 12):
        print(f"  {samples[start].at:6.0f} s: " + " ".join(f"{v:>7}" for v in values[start : start + 12]))
    verdict = "FLAT" if flat else "NOT FLAT"
    print(
        f"\nRESULT: memory {verdict}: second-half slope {slope:+.3f} MiB/min "
        f"(threshold {args.flat_mib_per_minute:g} MiB/min, forget={args.forget})"
    )
    if args.forget == "keep" and not flat:
        print("  (under --forget keep the server retains every task for 24 h by design; try --forget epoch)")
    if failed_tasks:
        print(f"  tasks not accounted for: {failed_tasks}")
    return 0 if flat and not failed_tasks else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the load (default 10)")
    parser.add_argument("--rate", type=float, default=10.0, help="tasks submitted per second (default 10)")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="seconds between polls of a task (1)")
    parser.add_argument("--connections", type=int, default=50, help="keep-alive connections (default 50)")
    parser.add_argument("--pool-size", type=int, default=10, help="connections per httpx.AsyncClient (10)")
    parser.add_argument("--provider", default="all", choices=("all", *sorted(catalog().providers)))
    parser.add_argument("--store", help="passed to wanmock serve --store")
    parser.add_argument("--workers", type=int, help="passed to wanmock serve --workers")
    parser.add_argument("--forget", choices=("epoch", "keep"), default="epoch", help="see above (default epoch)")
    parser.add_argument(
        "--forget-every", type=float, help="epoch length in seconds (default: a sixth of the run, 10 to 60)"
    )
    parser.add_argument("--download-every", type=int, default=50, help="download every N-th MP4 (0: first only)")
    parser.add_argument("--sample-every", type=float, default=5.0, help="RSS sampling period in seconds (5)")
    parser.add_argument("--task-timeout", type=float, default=60.0, help="a task not done by then is stuck (s)")
    parser.add_argument("--flat-mib-per-minute", type=float, default=1.0, help="flat below this slope (1.0)")
    args = parser.parse_args()
    if not 0 < args.minutes <= 24 * 60 or not 0 < args.rate <= 10_000 or args.connections < 1:
        parser.error("--minutes must be in (0, 1440], --rate in (0, 10000], --connections >= 1")
    if args.forget_every is None:
        args.forget_every = min(60.0, max(10.0, args.minutes * 10))
    if min(args.poll_interval, args.forget_every, args.sample_every, args.task_timeout) <= 0:
        parser.error("intervals and timeouts must be > 0")
    install_signal_handlers()
    try:
        extra = serve_arguments(args.store, args.workers)
        serve = ["--timing", "fast", "--clock", "system", "--provider", args.provider, *extra]
        print(f"starting: wanmock serve --port 0 {' '.join(serve)}", file=sys.stderr)
        with WanmockServer(*serve) as server:
            health = httpx.get(server.origin + "/__admin/health", timeout=10).json()
            print(f"server {server.origin} pid {server.pid}: {health}", file=sys.stderr)
            cpu, busy, client_cpu, started = server.cpu(), machine_busy_seconds(), time.process_time(), time.monotonic()
            state = asyncio.run(soak(args, server))
            server_cpu, client_cpu = server.cpu() - cpu, time.process_time() - client_cpu
            other = (machine_busy_seconds() - busy - client_cpu, time.monotonic() - started)
            return report(args, health, state, server_cpu, other)
    except BenchmarkError as exc:
        print(f"soak.py: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("soak.py: interrupted; server stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
