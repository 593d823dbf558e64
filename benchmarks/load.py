"""Load: many concurrent clients submit Wan tasks to a real `wanmock serve` and poll each to the end.

Run:  python benchmarks/load.py [--tasks 10000] [--concurrency 200] [--provider all]
                                [--store sqlite:////tmp/t.db] [--workers 2] [--duration-limit 300]

Starts ``wanmock serve --port 0 --timing fast --clock system`` (plus ``--store``/``--workers``
when given) on 127.0.0.1, then runs ``--concurrency`` asyncio clients, each with its own
keep-alive connection (httpx.AsyncClients of ``--pool-size`` connections; see harness.Pools),
spread over ``--client-processes`` processes. Each client sends one request at a time: it keeps
up to ``--in-flight`` tasks of its own, submits a new one whenever it has room (a valid submit
example of the provider from schemas/corpus/, in rotation; with ``all`` the providers take turns)
and polls each of its tasks every ``--poll-interval`` seconds until the provider's succeeded
word. With ``fast`` timing a task is 1 s queued and 3 s running.

It stops submitting after ``--tasks`` tasks or ``--duration-limit`` seconds, whichever comes
first, and lets the tasks in flight finish (each has ``--task-timeout`` seconds); the run is
bounded by duration-limit + task-timeout + 60 s. Every task is accounted for:

* duplicate: a task id answered to more than one submit (over all providers and processes);
* lost: a task that polls to 404, or to a terminal word other than succeeded (UNKNOWN, failed);
* stuck: a task not succeeded ``--task-timeout`` seconds after its submit;
* unsubmitted: a submit with no 200 answer (never retried: a retry after an unknown outcome may
  create a second task);
* server-side: every request carries ``X-Wanmock-Test: <run>``, and afterwards
  ``GET /__admin/tasks?test=<run>`` must list exactly the ids the clients were given, succeeded
  (so an unsubmitted task is accounted for when the server holds no task nobody was given).

Prints tasks, requests, requests per second, p50/p99 latency of submit and of poll (measured in
the client, so they include its event-loop delay: compare the CPU seconds of server and client),
task completion time, errors by status, lost/duplicate/stuck counts, the server's peak RSS
(VmHWM of the server process and of each worker, and the largest sum of VmRSS sampled every
second) and CPU per request. Exit status 1 if a task was lost, duplicated or stuck, or the server
holds a task no client was given (or cannot list them and a submit failed), 2 if the benchmark
could not run, 0 otherwise.
All traffic is loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import multiprocessing
import os
import queue
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from harness import (
    BenchmarkError,
    Memory,
    Pools,
    ProviderCalls,
    WanmockServer,
    catalog,
    install_signal_handlers,
    machine_busy_seconds,
    mib,
    other_load,
    p50_p99,
    providers_for,
    serve_arguments,
    table,
)

REQUEST_TIMEOUT = 30.0
TEST_HEADER = "X-Wanmock-Test"


@dataclass
class Tracked:
    number: int
    calls: ProviderCalls
    task_id: str
    submitted_at: float
    deadline: float
    polls: int = 0


@dataclass
class Share:
    """What one client process does: tasks number ``index``, ``index + processes``, ... and
    ``clients`` of the clients; ``submit_until`` is wall-clock time (the same in every process)."""

    index: int
    processes: int
    clients: int
    client_offset: int
    submit_until: float
    origin: str
    test_id: str


@dataclass
class Outcome:
    """What the clients of one process saw (plain data: it crosses a process boundary)."""

    submit_latency: list[float] = field(default_factory=list)
    poll_latency: list[float] = field(default_factory=list)
    completion: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    ids: list[tuple[str, str]] = field(default_factory=list)  # (task id, provider) of every 200 submit
    attempted: int = 0
    requests: int = 0
    succeeded: int = 0
    unsubmitted: int = 0
    lost: list[tuple[str, str, str]] = field(default_factory=list)  # provider, id, why
    stuck: list[tuple[str, str, str]] = field(default_factory=list)
    first_request: float = float("inf")  # wall-clock
    last_request: float = 0.0
    cpu: float = 0.0

    def merge(self, other: Outcome) -> None:
        self.submit_latency += other.submit_latency
        self.poll_latency += other.poll_latency
        self.completion += other.completion
        self.errors.update(other.errors)
        self.ids += other.ids
        self.lost += other.lost
        self.stuck += other.stuck
        for name in ("attempted", "requests", "succeeded", "unsubmitted", "cpu"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.first_request = min(self.first_request, other.first_request)
        self.last_request = max(self.last_request, other.last_request)


class Clients:
    """The clients of one process (one event loop, so no locks)."""

    def __init__(self, args: argparse.Namespace, share: Share, providers: list[ProviderCalls], pools: Pools) -> None:
        self.args, self.share, self.providers, self.pools = args, share, providers, pools
        self.out = Outcome()
        self.rng = random.Random(args.seed * 1000 + share.index)
        self.next_number = share.index
        self.in_flight = 0

    def take(self) -> int | None:
        """The number of the next task to submit, or None when no more may be submitted."""
        if self.next_number >= self.args.tasks or time.time() >= self.share.submit_until:
            return None
        self.next_number += self.share.processes
        self.out.attempted += 1
        return self.next_number - self.share.processes

    def jittered(self, now: float) -> float:
        return now + self.args.poll_interval * self.rng.uniform(0.9, 1.1)

    async def request(
        self, client: httpx.AsyncClient, method: str, path: str, **kwargs: Any
    ) -> tuple[httpx.Response | None, float]:
        self.out.first_request = min(self.out.first_request, time.time())
        start = time.perf_counter()
        try:
            response = await client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            response = None
            self.out.errors[f"{'submit' if method == 'POST' else 'poll'} {type(exc).__name__}"] += 1
        latency = time.perf_counter() - start
        self.out.requests += 1
        self.out.last_request = time.time()
        return response, latency

    async def submit(self, client: httpx.AsyncClient, number: int) -> Tracked | None:
        calls = self.providers[number % len(self.providers)]
        path, body = calls.submit(number // len(self.providers))
        response, latency = await self.request(client, "POST", path, content=body, headers=calls.submit_headers)
        if response is None:
            self.out.unsubmitted += 1
            return None
        self.out.submit_latency.append(latency)
        if response.status_code != 200:
            self.out.errors[f"submit {response.status_code}"] += 1
            self.out.unsubmitted += 1
            return None
        try:
            task_id = calls.task_id(response.json())
        except (KeyError, IndexError, ValueError, TypeError):
            self.out.errors["submit 200 without a task id"] += 1
            self.out.unsubmitted += 1
            return None
        self.out.ids.append((task_id, calls.name))
        now = time.monotonic()
        return Tracked(number, calls, task_id, now, now + self.args.task_timeout)

    async def poll(self, client: httpx.AsyncClient, task: Tracked) -> bool:
        """Poll once; True when the task needs polling again."""
        path, params = task.calls.poll(task.task_id)
        response, latency = await self.request(client, "GET", path, params=params, headers=task.calls.poll_headers)
        task.polls += 1
        now = time.monotonic()
        if response is not None:
            self.out.poll_latency.append(latency)
            if response.status_code == 200:
                try:
                    word = task.calls.status(response.json())
                except (KeyError, IndexError, ValueError, TypeError):
                    word = None
                    self.out.errors["poll 200 without a status"] += 1
                if word == task.calls.succeeded:
                    self.out.succeeded += 1
                    self.out.completion.append(now - task.submitted_at)
                    return False
                if word in task.calls.terminal:
                    self.out.lost.append((task.calls.name, task.task_id, f"polled {word}"))
                    return False
            else:
                self.out.errors[f"poll {response.status_code}"] += 1
                if response.status_code == 404:
                    self.out.lost.append((task.calls.name, task.task_id, "polled 404"))
                    return False
        if now >= task.deadline:
            self.out.stuck.append((task.calls.name, task.task_id, f"not succeeded after {task.polls} polls"))
            return False
        return True

    async def client(self, n: int) -> None:
        """Client n: one request at a time, up to --in-flight tasks of its own."""
        client = self.pools.for_client(n - self.share.client_offset)  # this process's pools
        due: list[tuple[float, int, Tracked]] = []  # (next poll, task number, task)
        may_submit = True
        while True:
            now = time.monotonic()
            if due and due[0][0] <= now:
                _, _, task = heapq.heappop(due)
                if await self.poll(client, task):
                    heapq.heappush(due, (self.jittered(time.monotonic()), task.number, task))
                else:
                    self.in_flight -= 1
                continue
            if may_submit and len(due) < self.args.in_flight:
                number = self.take()
                if number is None:
                    may_submit = False
                else:
                    tracked = await self.submit(client, number)
                    if tracked is not None:
                        self.in_flight += 1
                        heapq.heappush(due, (self.jittered(time.monotonic()), number, tracked))
                    continue
            if not due:
                return
            await asyncio.sleep(max(0.0, due[0][0] - time.monotonic()))

    async def progress(self, every: float = 10.0) -> None:
        label = f" client process {self.share.index}" if self.share.processes > 1 else ""
        started = last = time.monotonic()
        last_requests = 0
        while True:
            await asyncio.sleep(every)
            now = time.monotonic()
            rate = (self.out.requests - last_requests) / (now - last)
            last_requests, last = self.out.requests, now
            print(
                f"  [{now - started:5.0f} s{label}] submitted {len(self.out.ids):>6}  succeeded "
                f"{self.out.succeeded:>6}  in flight {self.in_flight:>5}  {rate:6.0f} req/s  "
                f"errors {sum(self.out.errors.values())}",
                file=sys.stderr,
                flush=True,
            )

    async def run(self) -> Outcome:
        cpu = time.process_time()
        progress = asyncio.create_task(self.progress())
        clients = [asyncio.create_task(self.client(self.share.client_offset + n)) for n in range(self.share.clients)]
        hard_stop = self.share.submit_until - time.time() + self.args.task_timeout + 2 * REQUEST_TIMEOUT
        try:
            done, pending = await asyncio.wait(clients, timeout=max(hard_stop, 1.0))
            for task in pending:  # only if the bounds above failed: what was left counts as stuck
                task.cancel()
            if pending:
                self.out.stuck.append(("?", "?", f"{self.in_flight} tasks still in flight at the hard stop"))
            for task in done:
                task.result()  # a bug in a client must not pass silently
        finally:  # on an interrupt too: no client may outlive its connection pools
            for task in [*clients, progress]:
                task.cancel()
            await asyncio.gather(*clients, progress, return_exceptions=True)
        self.out.cpu = time.process_time() - cpu
        return self.out


async def run_share(args: argparse.Namespace, share: Share) -> Outcome:
    providers = providers_for(args.provider)
    pools = Pools(share.origin, share.clients, args.pool_size, REQUEST_TIMEOUT, {TEST_HEADER: share.test_id})
    try:
        return await Clients(args, share, providers, pools).run()
    finally:
        await pools.aclose()


def client_process(args: argparse.Namespace, share: Share, results: multiprocessing.Queue[Any]) -> None:
    """A client process: run its share and send the outcome back (or the error it met)."""
    try:
        outcome = asyncio.run(run_share(args, share))
        results.put((share.index, {**vars(outcome), "errors": dict(outcome.errors)}, None))
    except KeyboardInterrupt:
        results.put((share.index, None, "interrupted"))
    except Exception as exc:
        results.put((share.index, None, f"{type(exc).__name__}: {exc}"))


def shares(args: argparse.Namespace, origin: str, test_id: str) -> list[Share]:
    count = max(1, min(args.client_processes, args.concurrency))
    submit_until = time.time() + args.duration_limit
    out, offset = [], 0
    for k in range(count):
        clients = args.concurrency // count + (1 if k < args.concurrency % count else 0)
        out.append(Share(k, count, clients, offset, submit_until, origin, test_id))
        offset += clients
    return out


def run_clients(args: argparse.Namespace, server: WanmockServer, test_id: str) -> Outcome:
    """Run every share (in this process when there is one), sampling the server's memory."""
    plan = shares(args, server.origin, test_id)
    total = Outcome()
    if len(plan) == 1:
        total.merge(asyncio.run(run_share(args, plan[0])))
        return total
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[Any] = context.Queue()
    processes = [context.Process(target=client_process, args=(args, share, results)) for share in plan]
    try:
        for process in processes:
            process.start()
        deadline = time.time() + args.duration_limit + args.task_timeout + 4 * REQUEST_TIMEOUT + 60
        for _ in processes:
            try:
                index, outcome, error = results.get(timeout=max(1.0, deadline - time.time()))
            except queue.Empty:
                raise BenchmarkError("a client process did not report in time") from None
            if error is not None:
                raise BenchmarkError(f"client process {index}: {error}")
            total.merge(Outcome(**{**outcome, "errors": Counter(outcome["errors"])}))
    finally:
        for process in processes:
            process.join(5)
            if process.is_alive():
                process.terminate()
                process.join(5)
            if process.is_alive():
                process.kill()
                process.join()
    return total


def sample_memory(server: WanmockServer, peak: list[int], stop: threading.Event, every: float = 1.0) -> None:
    while not stop.wait(every):
        peak[0] = max(peak[0], server.memory().rss)


def reconcile(origin: str, test_id: str) -> dict[str, str] | None:
    """Task id -> state of every task the server holds for this run, or None if it cannot say."""
    try:
        answer = httpx.get(f"{origin}/__admin/tasks", params={"test": test_id}, timeout=300)
        answer.raise_for_status()
        return {str(t["id"]): str(t.get("state")) for t in answer.json()["tasks"]}
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        print(f"server-side reconciliation unavailable: {exc}", file=sys.stderr)
        return None


def report(args: argparse.Namespace, health: dict[str, Any], out: Outcome, result: dict[str, Any]) -> int:
    memory: Memory = result["memory"]
    server_cpu: float = result["server_cpu"]
    held: dict[str, str] | None = result["held"]
    wall = max(0.0, out.last_request - out.first_request)
    given = Counter(task_id for task_id, _ in out.ids)
    duplicates = sum(n - 1 for n in given.values())
    orphans = missing = not_succeeded = 0
    if held is not None:
        orphans = len(set(held) - set(given))
        missing = len(set(given) - set(held))
        not_succeeded = sum(1 for task_id in given if held.get(task_id) not in (None, "succeeded"))
    accounted = out.succeeded + len(out.lost) + len(out.stuck) + out.unsubmitted
    polls = out.requests - out.attempted
    rows: list[tuple[str, ...]] = [
        ("metric", "value"),
        (
            "server",
            f"{health.get('store', '?')}, {memory.processes} process(es), "
            f"providers {', '.join(health.get('providers', []))}",
        ),
        (
            "clients (= connections)",
            f"{args.concurrency} in {max(1, min(args.client_processes, args.concurrency))} process(es), "
            f"pools of {args.pool_size}, up to {args.in_flight} tasks each",
        ),
        ("tasks attempted", f"{out.attempted:,}"),
        ("tasks submitted (ids)", f"{len(out.ids):,}"),
        ("tasks succeeded", f"{out.succeeded:,}"),
        ("accounted for", f"{accounted:,} of {out.attempted:,}"),
        ("requests", f"{out.requests:,} ({out.attempted:,} submits, {polls:,} polls)"),
        ("wall time", f"{wall:.1f} s"),
        ("requests per second", f"{out.requests / wall:,.0f}" if wall > 0 else "-"),
        ("submit latency p50 / p99", p50_p99(out.submit_latency)),
        ("poll latency p50 / p99", p50_p99(out.poll_latency)),
        ("task completion p50 / p99", p50_p99(out.completion, "s")),
        ("errors", ", ".join(f"{k}: {v}" for k, v in sorted(out.errors.items())) or "none"),
        ("lost", str(len(out.lost))),
        ("duplicate ids", str(duplicates)),
        ("stuck", str(len(out.stuck))),
        ("unsubmitted (submit not answered 200)", str(out.unsubmitted)),
        (
            "server-side tasks of this run",
            "unavailable"
            if held is None
            else f"{len(held):,} (not given to a client {orphans}, missing {missing}, not succeeded {not_succeeded})",
        ),
        ("server peak RSS (VmHWM, largest process)", mib(memory.hwm_max)),
        ("server VmHWM summed over processes", f"{mib(memory.hwm_sum)} over {memory.processes} process(es)"),
        ("server peak total RSS (sampled 1/s)", mib(result["peak_rss"])),
        ("server CPU per request", f"{server_cpu / max(1, out.requests) * 1000:.2f} ms"),
        ("CPU seconds: server / clients", f"{server_cpu:.1f} / {out.cpu:.1f} ({os.cpu_count()} cores)"),
        ("other processes on the machine", other_load(result["busy"], server_cpu + out.cpu, result["elapsed"])),
    ]
    print(table(rows, title="\nwanmock load"))
    for kind, items in (("lost", out.lost), ("stuck", out.stuck)):
        for provider, task_id, why in items[:10]:
            print(f"  {kind}: {provider} {task_id}: {why}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({row[0]: row[1] for row in rows[1:]}, f, indent=2)
    # A submit without a 200 answer is accounted for when the server holds no task for it (no
    # orphan); without the server's list it is not. It is never retried: a retry after an
    # unknown outcome could create a second task.
    unaccounted = out.unsubmitted if held is None else 0
    failed = duplicates or out.lost or out.stuck or unaccounted or orphans or missing or not_succeeded
    failures = sum(out.errors.values())
    if failed:
        print("\nRESULT: FAIL (tasks lost, duplicated, stuck or not accounted for)")
    else:
        note = f"; {failures} requests failed (see errors), none lost a task" if failures else ""
        print(f"\nRESULT: every task accounted for{note}")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks to submit in all (default 10000)")
    parser.add_argument("--concurrency", type=int, default=200, help="clients = connections (default 200)")
    parser.add_argument("--in-flight", type=int, default=4, help="unfinished tasks per client (default 4)")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="seconds between polls of a task (1)")
    parser.add_argument("--provider", default="all", choices=("all", *sorted(catalog().providers)))
    parser.add_argument("--store", help="passed to wanmock serve --store (memory, sqlite:///PATH, redis://...)")
    parser.add_argument("--workers", type=int, help="passed to wanmock serve --workers")
    parser.add_argument("--duration-limit", type=float, default=300.0, help="stop submitting after (s, 300)")
    parser.add_argument("--task-timeout", type=float, default=60.0, help="a task not done by then is stuck (s, 60)")
    parser.add_argument(
        "--client-processes",
        type=int,
        default=max(1, (os.cpu_count() or 2) // 2),
        help="processes the clients are spread over (default: half the cores, at least 1)",
    )
    parser.add_argument("--pool-size", type=int, default=10, help="connections per httpx.AsyncClient (10)")
    parser.add_argument("--seed", type=int, default=1, help="client-side jitter")
    parser.add_argument("--json", help="also write the result table as JSON to this file")
    args = parser.parse_args()
    if min(args.tasks, args.concurrency, args.in_flight, args.client_processes, args.pool_size) < 1:
        parser.error("--tasks, --concurrency, --in-flight, --client-processes and --pool-size must be >= 1")
    if args.poll_interval <= 0 or args.duration_limit <= 0 or args.task_timeout <= 0:
        parser.error("--poll-interval, --duration-limit and --task-timeout must be > 0")
    install_signal_handlers()
    try:
        extra = serve_arguments(args.store, args.workers)
        providers_for(args.provider)  # the corpus bodies are valid, before a server starts
        serve = ["--timing", "fast", "--clock", "system", "--provider", args.provider, *extra]
        print(f"starting: wanmock serve --port 0 {' '.join(serve)}", file=sys.stderr)
        with WanmockServer(*serve) as server:
            health = httpx.get(server.origin + "/__admin/health", timeout=10).json()
            print(f"server {server.origin} pid {server.pid}: {health}", file=sys.stderr)
            test_id = f"load-{os.getpid()}-{int(time.time())}"
            peak, stop = [server.memory().rss], threading.Event()
            sampler = threading.Thread(target=sample_memory, args=(server, peak, stop), daemon=True)
            sampler.start()
            cpu, busy, started = server.cpu(), machine_busy_seconds(), time.monotonic()
            try:
                out = run_clients(args, server, test_id)
            finally:
                stop.set()
                sampler.join()
            result = {
                "server_cpu": server.cpu() - cpu,
                "busy": machine_busy_seconds() - busy,
                "elapsed": time.monotonic() - started,
                "memory": server.memory(),
            }
            peak[0] = max(peak[0], result["memory"].rss)
            result["peak_rss"] = peak[0]
            result["held"] = reconcile(server.origin, test_id)
            return report(args, health, out, result)
    except BenchmarkError as exc:
        print(f"load.py: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("load.py: interrupted; server stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
