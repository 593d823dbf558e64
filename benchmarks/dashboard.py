"""Dashboard load time: how long /__admin/ui takes to list N tasks in headless Chromium.

Run:  python benchmarks/dashboard.py [--tasks 1000] [--rounds 5] [--chromium /usr/bin/chromium]

Starts `wanmock serve --clock manual --port 0`, creates the tasks over the providers' APIs (spread
over every provider), then loads the page --rounds times in a fresh browser context each and
times navigation -> every row drawn. Also prints the size and latency of GET /__admin/tasks and
of the page's one-second poll, GET /__admin/changes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import httpx
from playwright.sync_api import sync_playwright
from wanmock.contracts.tools.launcher import ServeProcess
from wanmock.schemas import catalog
from wanmock.schemas.catalog import ROOT

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def submit_all(client: httpx.Client, count: int) -> None:
    providers = sorted(catalog().providers)
    bodies = {name: example(name) for name in providers}
    for i in range(count):
        name = providers[i % len(providers)]
        p = catalog().provider(name)
        body = bodies[name]
        path = p.endpoints["submit"].paths[0].replace("{model}", p.models["t2v"].id)
        headers = {"Authorization": "Bearer bench", **p.endpoints["submit"].headers}
        response = client.post(f"/{name}{path}", json=body, headers=headers)
        response.raise_for_status()


def example(provider: str) -> dict[str, object]:
    """The first documented valid t2v request of the provider's corpus."""
    p = catalog().provider(provider)
    for path in sorted((ROOT / "corpus" / provider).glob("*.json")):
        case = json.loads(path.read_text())
        if case["message"] == "submit" and case["valid"] and p.models[case["model"]].kind == "t2v":
            return dict(case["instance"])
    raise LookupError(provider)


def timed(client: httpx.Client, path: str, rounds: int = 10) -> tuple[float, int]:
    took, size = [], 0
    for _ in range(rounds):
        started = time.perf_counter()
        response = client.get(path)
        took.append(time.perf_counter() - started)
        size = len(response.content)
    return statistics.median(took) * 1000, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    with ServeProcess("--clock", "manual", "--seed", "1") as server:  # the one launcher
        origin = server.origin
        with httpx.Client(base_url=origin, timeout=60) as client:
            started = time.perf_counter()
            submit_all(client, args.tasks)
            print(f"created {args.tasks} tasks in {time.perf_counter() - started:.1f} s")
            ms, size = timed(client, "/__admin/tasks")
            print(f"GET /__admin/tasks    {ms:7.1f} ms median, {size / 1024:.0f} KiB")
            ms, size = timed(client, "/__admin/changes")
            print(f"GET /__admin/changes  {ms:7.1f} ms median, {size} bytes (the page's poll, every second)")
        loads = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, args=FLAGS)
            for _ in range(args.rounds):
                context = browser.new_context(viewport={"width": 1400, "height": 900})
                page = context.new_page()
                started = time.perf_counter()
                page.goto(origin + "/__admin/ui/")
                expected = f"document.querySelectorAll('#tasks tbody tr[data-task]').length === {args.tasks}"
                while not page.evaluate(expected):
                    page.wait_for_timeout(10)
                loads.append(time.perf_counter() - started)
                context.close()
            browser.close()
        print(
            f"page load, navigation -> {args.tasks} rows drawn: median {statistics.median(loads) * 1000:.0f} ms "
            f"(min {min(loads) * 1000:.0f}, max {max(loads) * 1000:.0f}, {args.rounds} rounds)"
        )


if __name__ == "__main__":
    main()
