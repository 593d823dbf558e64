"""What `wanmock proxy` adds: latency and throughput through the proxy against the direct path,
side by side in one run, interleaved.

Run:  python benchmarks/proxy.py [--provider dashscope] [--rounds 3] [--requests 400]
                                 [--concurrency 16] [--seconds 3] [--mode observe]

1. starts ``wanmock serve --provider P --timing fast`` (the upstream) and ``wanmock proxy
   --provider P --upstream <it>`` (both on 127.0.0.1, port 0, in their own sessions);
2. for each of ``--rounds`` rounds, in alternating order (direct, proxy; then proxy, direct):
   * **latency** — one client on one keep-alive connection sends ``--requests`` requests one
     after another, the mix of an application: submit a task (the provider's valid corpus
     examples in rotation), poll it three times; each request's time is kept;
   * **throughput** — ``--concurrency`` clients, each on its own keep-alive connection, repeat
     the same mix for ``--seconds`` seconds; completed requests per second;
3. prints p50/p99 latency (all, submit, poll) and requests per second of each path over all
   rounds, the proxy's added latency (p50 and p99 differences) and its CPU time per request, and
   the proxy's findings (a clean run has none: the upstream answers as the contract says).

Exit status 0 when every answer was 2xx on both paths and the proxy found nothing, 1 otherwise,
2 when the comparison could not run. Every request goes to 127.0.0.1; the run is bounded by
``--rounds`` x (``--requests`` + ``--seconds``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from harness import (
    BenchmarkError,
    Pools,
    ProviderCalls,
    WanmockServer,
    install_signal_handlers,
    ms,
    percentile,
    table,
)

POLLS_PER_TASK = 3


class ProxyServer(WanmockServer):
    """``wanmock proxy --port 0`` as a WanmockServer (its banner ends with its origin; readiness is
    polled through it: /__admin/health is forwarded to the upstream mock, so a 200 proves both)."""

    def __init__(self, provider: str, upstream: str, mode: str) -> None:
        super().__init__()
        self.args = ["proxy", "--host", "127.0.0.1", "--port", "0", "--provider", provider]
        self.args += ["--upstream", upstream, "--mode", mode]
        self.command = [sys.executable, "-m", "wanmock.mockserver", *self.args]


def sequential(origin: str, calls: ProviderCalls, requests: int) -> tuple[dict[str, list[float]], int]:
    """(seconds per request by kind, answers that were not 2xx)."""
    times: dict[str, list[float]] = defaultdict(list)
    failures = 0
    n = 0
    with httpx.Client(base_url=origin, timeout=30) as client:
        while n < requests:
            path, body = calls.submit(n)
            started = time.perf_counter()
            answer = client.post(path, content=body, headers=calls.submit_headers)
            times["submit"].append(time.perf_counter() - started)
            n += 1
            if answer.status_code >= 300:
                failures += 1
                continue
            poll_path, query = calls.poll(calls.task_id(answer.json()))
            for _ in range(POLLS_PER_TASK):
                started = time.perf_counter()
                polled = client.get(poll_path, params=query, headers=calls.poll_headers)
                times["poll"].append(time.perf_counter() - started)
                failures += polled.status_code >= 300
                n += 1
    return times, failures


async def concurrent(origin: str, calls: ProviderCalls, clients: int, seconds: float) -> tuple[int, int]:
    """(requests completed in ``seconds`` by ``clients`` clients, answers that were not 2xx)."""
    pools = Pools(origin, clients, clients, 30.0, {})
    done = failures = 0
    deadline = time.perf_counter() + seconds

    async def one(index: int) -> None:
        nonlocal done, failures
        client = pools.for_client(index)
        n = index
        while time.perf_counter() < deadline:
            path, body = calls.submit(n)
            n += clients
            answer = await client.post(path, content=body, headers=calls.submit_headers)
            done += 1
            if answer.status_code >= 300:
                failures += 1
                continue
            poll_path, query = calls.poll(calls.task_id(answer.json()))
            for _ in range(POLLS_PER_TASK):
                if time.perf_counter() >= deadline:
                    break
                polled = await client.get(poll_path, params=query, headers=calls.poll_headers)
                done += 1
                failures += polled.status_code >= 300

    try:
        await asyncio.gather(*(one(i) for i in range(clients)))
    finally:
        await pools.aclose()
    return done, failures


def run(args: argparse.Namespace) -> int:
    calls = ProviderCalls.build(args.provider)
    latencies: dict[str, dict[str, list[float]]] = {"direct": defaultdict(list), "proxy": defaultdict(list)}
    rates: dict[str, list[float]] = {"direct": [], "proxy": []}
    failures = {"direct": 0, "proxy": 0}
    with (
        WanmockServer("--provider", args.provider, "--timing", "fast") as upstream,
        ProxyServer(args.provider, upstream.origin, args.mode) as proxy,
    ):
        origins = {"direct": upstream.origin, "proxy": proxy.origin}
        cpu_before, proxied = proxy.cpu(), 0
        for round_no in range(args.rounds):
            order = ("direct", "proxy") if round_no % 2 == 0 else ("proxy", "direct")
            for path in order:
                times, failed = sequential(origins[path], calls, args.requests)
                for kind, values in times.items():
                    latencies[path][kind] += values
                done, failed_too = asyncio.run(concurrent(origins[path], calls, args.concurrency, args.seconds))
                rates[path].append(done / args.seconds)
                failures[path] += failed + failed_too
                if path == "proxy":
                    proxied += sum(len(v) for v in times.values()) + done
                print(f"round {round_no + 1} {path:<6} {done / args.seconds:8.0f} req/s", file=sys.stderr)
        cpu = proxy.cpu() - cpu_before
        findings = httpx.get(f"{proxy.origin}/__proxy/findings", timeout=30).json()
    rows: list[tuple[str, ...]] = [
        ("path", "p50 all", "p99 all", "p50 submit", "p50 poll", f"req/s (c={args.concurrency})", "non-2xx")
    ]
    for path in ("direct", "proxy"):
        every = [t for values in latencies[path].values() for t in values]
        rows.append(
            (
                path,
                ms(percentile(every, 50)),
                ms(percentile(every, 99)),
                ms(percentile(latencies[path]["submit"], 50)),
                ms(percentile(latencies[path]["poll"], 50)),
                f"{sorted(rates[path])[len(rates[path]) // 2]:.0f}",
                str(failures[path]),
            )
        )
    print(table(rows, f"wanmock proxy vs direct: {args.provider}, {args.rounds} interleaved rounds, 127.0.0.1"))
    every = {p: [t for values in latencies[p].values() for t in values] for p in latencies}
    for q in (50, 99):
        added = percentile(every["proxy"], q) - percentile(every["direct"], q)
        print(f"added latency p{q}: {added * 1000:.2f} ms")
    direct_rate = sorted(rates["direct"])[len(rates["direct"]) // 2]
    proxy_rate = sorted(rates["proxy"])[len(rates["proxy"]) // 2]
    print(f"throughput through the proxy: {proxy_rate / direct_rate:.0%} of direct")
    print(f"proxy CPU per request: {cpu / max(proxied, 1) * 1e6:.0f} us (forwarding + checks)")
    print(f"proxy: {findings['exchanges']} exchanges, {len(findings['findings'])} findings")
    clean = not any(failures.values()) and not findings["findings"]
    return 0 if clean else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--provider", default="dashscope")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=400, help="sequential requests per round and path")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0, help="throughput phase per round and path")
    parser.add_argument("--mode", default="observe", choices=("observe", "enforce"))
    args = parser.parse_args()
    if args.rounds < 1 or args.requests < 1 or args.concurrency < 1 or args.seconds <= 0:
        parser.error("--rounds, --requests, --concurrency and --seconds must be positive")
    install_signal_handlers()
    try:
        return run(args)
    except BenchmarkError as exc:
        print(f"benchmarks/proxy.py: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("benchmarks/proxy.py: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
