"""Shared pieces of the socket benchmarks (load.py, soak.py, prism.py); not a benchmark itself.

* ``WanmockServer``: a ``wanmock serve --port 0`` subprocess started and stopped by the one
  launcher (``wanmock.contracts.tools.launcher.ServeProcess``: its own process group, so a Ctrl-C
  in the terminal reaches only the benchmark, which then stops it: SIGINT, SIGTERM, SIGKILL),
  polled for readiness on ``/__admin/health``; memory and CPU of it and its worker processes
  read from ``/proc``.
* ``ProviderCalls``: submit and poll requests of one provider, built from the catalog (paths,
  headers and JSON pointers from ``catalog().provider(p)``, bodies from the valid submit
  examples of ``schemas/corpus/<provider>/``).
* ``percentile``, ``table``, ``install_signal_handlers``; ``catalog`` re-exported (importing this
  module puts the repository on sys.path, so the scripts run from anywhere).

Every request a benchmark sends goes to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# httpcore runs `import sniffio` on every request. When sniffio is not installed (as here), each
# failed import searches sys.path again (Python caches only successes), which made the measuring
# client the bottleneck. Marking it absent makes the import fail at once, as it would anyway.
try:
    import sniffio  # noqa: F401
except ImportError:
    sys.modules["sniffio"] = None  # type: ignore[assignment]

import httpx

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python benchmarks/load.py` from anywhere
    sys.path.insert(0, str(REPO))

from wanmock.contracts.tools.launcher import LaunchError, ServeProcess, stop_group  # noqa: E402
from wanmock.schemas import catalog, resolve_pointer  # noqa: E402
from wanmock.schemas.catalog import ROOT as SCHEMAS_ROOT  # noqa: E402

KEY = "bench-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024


class BenchmarkError(Exception):
    """A benchmark cannot run as asked (a missing option, a server that would not start)."""


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP raise KeyboardInterrupt, so ``finally`` blocks stop the servers."""

    def interrupt(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


# -- /proc --------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(c) for c in f.read().split()]
    return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live descendant (worker processes of ``--workers N``)."""
    tree, queue = [], [pid]
    while queue:
        current = queue.pop()
        if current in tree or not os.path.exists(f"/proc/{current}"):
            continue
        tree.append(current)
        queue += _children(current)
    return tree


def status_kib(pid: int, name: str) -> int:
    """A ``/proc/<pid>/status`` field in KiB (VmRSS, VmHWM); 0 when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks after boot): tells a process from a later one with its pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rpartition(")")[2].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and of its children it has reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds every CPU of the machine has spent busy since boot (``/proc/stat``): the
    difference over a run, minus what the benchmark and its server used, is what other
    processes took from it (the figures are only comparable on a quiet machine)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / CLOCK_TICKS


def other_load(busy: float, ours: float, wall: float) -> str:
    """``busy`` machine CPU seconds over ``wall`` seconds of which ``ours`` were the benchmark's."""
    other = max(0.0, busy - ours)
    return f"{other:.1f} CPU s ({other / wall:.2f} of {os.cpu_count()} cores)" if wall > 0 else "-"


@dataclass
class Memory:
    """Memory of a process tree at one instant, in bytes."""

    processes: int
    rss: int  # sum of VmRSS
    hwm_max: int  # the largest VmHWM of one process
    hwm_sum: int  # sum of VmHWM (an upper bound on the tree's simultaneous peak)


# -- the wanmock server -------------------------------------------------------------------


def serve_options() -> set[str]:
    """The long options ``wanmock serve`` accepts here (``--store``, ``--workers`` are being added)."""
    done = subprocess.run(
        [sys.executable, "-m", "wanmock.mockserver", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    return {word.strip(",[]") for word in done.stdout.split() if word.startswith("--")}


def serve_arguments(store: str | None, workers: int | None) -> list[str]:
    """``--store``/``--workers`` for ``wanmock serve`` when given, refused clearly if this
    checkout's ``wanmock serve`` does not have them yet."""
    wanted = {"--store": store, "--workers": None if workers is None else str(workers)}
    wanted = {k: v for k, v in wanted.items() if v is not None}
    if not wanted:
        return []
    known = serve_options()
    missing = [k for k in wanted if k not in known]
    if missing:
        raise BenchmarkError(f"this checkout's `wanmock serve` has no {' or '.join(missing)} option (not merged yet)")
    return [part for pair in wanted.items() for part in pair]


def server_module(python: str | None) -> str:
    """The module that runs ``wanmock serve`` under ``python`` (ours when None)."""
    if python is None:
        return "wanmock.mockserver"
    probe = subprocess.run([python, "-c", "import wanmock.mockserver"], capture_output=True, check=False, timeout=60)
    return "wanmock.mockserver" if probe.returncode == 0 else "mockserver"


class WanmockServer(ServeProcess):
    """``python -m wanmock.mockserver serve --host 127.0.0.1 --port 0 ...``, started, waited for and
    stopped by the one launcher (``wanmock.contracts.tools.launcher.ServeProcess``: its own process
    group, so a terminal's Ctrl-C reaches only the benchmark, which then stops it with SIGINT,
    SIGTERM, SIGKILL); memory and CPU of it and its worker processes read from ``/proc``, and any
    worker it leaves behind killed. Use as a context manager."""

    def __init__(self, *args: str, ready_timeout: float = 60.0, python: str | None = None) -> None:
        self.args = ["serve", "--host", "127.0.0.1", "--port", "0", *args]
        # ``python``: another checkout's interpreter (its own wanmock), for side-by-side figures;
        # a checkout older than the wanmock namespace has its server as ``mockserver``
        command = [python or sys.executable, "-m", server_module(python), *self.args]
        cwd = REPO if python is None else Path(tempfile.gettempdir())  # not ours on its sys.path
        super().__init__(command=command, ready_timeout=ready_timeout, cwd=cwd)
        self.pids: dict[int, int | None] = {}  # every process of the server seen: pid -> start time

    def _remember(self, tree: Iterable[int]) -> None:
        for pid in tree:
            self.pids.setdefault(pid, start_time(pid))

    @property
    def banner(self) -> list[str]:
        return self.output().splitlines(keepends=True)[:50]

    def start(self) -> WanmockServer:
        try:
            super().start()
        except LaunchError as exc:
            raise BenchmarkError(str(exc)) from exc
        self._remember(process_tree(self.pid))
        return self

    def __enter__(self) -> WanmockServer:
        return self.start()

    def stderr_tail(self, limit: int = 4000) -> str:
        return self.errors(limit)

    def memory(self) -> Memory:
        """RSS and high-water marks of the server and its workers (VmRSS, VmHWM)."""
        if self.process is None:
            return Memory(0, 0, 0, 0)
        tree = process_tree(self.pid)
        self._remember(tree)
        rss = [status_kib(p, "VmRSS") * 1024 for p in tree]
        hwm = [status_kib(p, "VmHWM") * 1024 for p in tree]
        return Memory(len(tree), sum(rss), max(hwm, default=0), sum(hwm))

    def cpu(self) -> float:
        """CPU seconds used so far by the server and its live workers (and reaped ones)."""
        if self.process is None:
            return 0.0
        return sum(cpu_seconds(p) for p in process_tree(self.pid))

    def stop(self, timeout: float = 15.0, first: int = signal.SIGINT) -> int | None:
        """The launcher's stop (the group: SIGINT, then SIGTERM, SIGKILL after ``timeout``), then
        SIGKILL for any process of its tree seen earlier that is still there."""
        process = self.process
        if process is not None and process.poll() is None:
            self._remember(process_tree(process.pid))
        try:
            return super().stop(timeout, first)
        finally:
            if process is not None:
                kill_leftovers(process.pid, self.pids)


def stop_tree(process: subprocess.Popen[bytes], known: dict[int, int | None], timeout: float) -> None:
    """Stop a server we started: SIGTERM, wait ``timeout``, SIGKILL; then give the processes of
    its tree we saw (``known``: pid -> start time) a few seconds to go, and SIGKILL those left
    (only a pid whose start time still matches: never a later process that reused the pid)."""
    try:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
    finally:
        kill_leftovers(process.pid, known)


def kill_leftovers(leader: int, known: dict[int, int | None]) -> None:
    """Give the processes of a stopped server's tree (``known``: pid -> start time, ``leader``
    aside) a few seconds to go, then SIGKILL those left (only a pid whose start time still
    matches: never a later process that reused the pid)."""
    left = {pid: t for pid, t in known.items() if pid != leader and t is not None}
    deadline = time.monotonic() + 5
    while left and time.monotonic() < deadline:
        left = {pid: t for pid, t in left.items() if start_time(pid) == t}
        if left:
            time.sleep(0.1)
    for pid, started in left.items():
        if start_time(pid) == started:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


# -- requests of one provider, from the catalog -------------------------------------------


def corpus_bodies(provider: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(file name, model kind, body) of every valid submit example in ``schemas/corpus/<provider>/``."""
    found = []
    for path in sorted((SCHEMAS_ROOT / "corpus" / provider).glob("*.json")):
        case = json.loads(path.read_text(encoding="utf-8"))
        if case.get("message") == "submit" and case.get("valid") is True:
            found.append((path.name, str(case["model"]), case["instance"]))
    if not found:
        raise BenchmarkError(f"schemas/corpus/{provider}/ has no valid submit example")
    return found


@dataclass
class ProviderCalls:
    """Submit and poll requests of one provider: paths and headers from the manifest, bodies
    from the corpus (each checked against the captured schema), answers read through the
    manifest's JSON pointers."""

    name: str
    prefix: str = ""  # "/dashscope" when the server serves every provider
    submits: list[tuple[str, bytes]] = field(default_factory=list)  # (path, JSON body)
    labels: list[str] = field(default_factory=list)  # the corpus file of each submit
    submit_headers: dict[str, str] = field(default_factory=dict)
    poll_path: str = ""
    poll_query: dict[str, str] = field(default_factory=dict)
    poll_headers: dict[str, str] = field(default_factory=dict)
    id_pointer: str = ""
    status_pointer: str = ""
    result_pointer: str = ""
    succeeded: str = ""
    terminal: frozenset[str] = frozenset()

    @classmethod
    def build(cls, name: str, prefix: str = "") -> ProviderCalls:
        cat = catalog()
        p = cat.provider(name)
        submit, poll = p.endpoints["submit"], p.endpoints["poll"]
        submits, labels = [], []
        for label, kind, body in corpus_bodies(name):
            labels.append(f"schemas/corpus/{name}/{label}")
            issues = cat.validate(name, "submit", body, kind=kind)
            if issues:
                raise BenchmarkError(f"a {name} corpus example is not valid: {issues[0].path} {issues[0].message}")
            path = prefix + submit.paths[0].replace("{model}", p.models[kind].id)
            submits.append((path, json.dumps(body).encode()))
        return cls(
            name=name,
            prefix=prefix,
            submits=submits,
            labels=labels,
            submit_headers={
                **AUTH,
                "Content-Type": submit.content_type or "application/json",
                **submit.headers,
            },
            poll_path=prefix + poll.paths[0],
            poll_query=dict(poll.query),
            poll_headers={**AUTH, **poll.headers},
            id_pointer=p.task_fields["id_in_submit"],
            status_pointer=p.task_fields["status_in_poll"],
            result_pointer=p.task_fields["result_url_in_poll"],
            succeeded=p.states["succeeded"].word,
            terminal=frozenset(s.word for s in p.states.values() if s.terminal),
        )

    def submit(self, n: int) -> tuple[str, bytes]:
        """The n-th submit of a fixed rotation through the corpus bodies."""
        return self.submits[n % len(self.submits)]

    def poll(self, task_id: str) -> tuple[str, dict[str, str]]:
        path = self.poll_path.replace("{task_id}", task_id)
        return path, {k: v.replace("{task_id}", task_id) for k, v in self.poll_query.items()}

    def task_id(self, body: Any) -> str:
        return str(resolve_pointer(body, self.id_pointer))

    def status(self, body: Any) -> str:
        return str(resolve_pointer(body, self.status_pointer))

    def result_url(self, body: Any) -> str:
        return str(resolve_pointer(body, self.result_pointer))


def providers_for(choice: str, served: Sequence[str] | None = None) -> list[ProviderCalls]:
    """``all`` (each under /<provider>/ on a server of every provider) or one (at the root)."""
    names = sorted(catalog().providers)
    if choice == "all":
        return [ProviderCalls.build(n, f"/{n}") for n in (served or names)]
    if choice not in names:
        raise BenchmarkError(f"unknown provider {choice!r}; known: all, {', '.join(names)}")
    return [ProviderCalls.build(choice)]


class Pools:
    """``connections`` keep-alive connections to ``origin``, as httpx.AsyncClients of at most
    ``pool_size`` each: httpcore scans every connection of a pool on every request, so a single
    pool of 2,000 makes the measuring client, not the server, the bottleneck. Client n uses
    pool n // pool_size, so no client ever waits for a connection."""

    def __init__(self, origin: str, connections: int, pool_size: int, timeout: float, headers: dict[str, str]) -> None:
        self.pool_size = max(1, pool_size)
        count = -(-connections // self.pool_size)
        size = min(self.pool_size, connections)
        # idle connections are closed before uvicorn's 5 s keep-alive timeout closes them: reusing
        # one the server is closing at that instant fails with RemoteProtocolError (a client race)
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size, keepalive_expiry=4.0)
        self.clients = [  # plain http on loopback: verify=False spares loading CA certificates per pool
            httpx.AsyncClient(
                base_url=origin, limits=limits, timeout=httpx.Timeout(timeout), headers=headers, verify=False
            )
            for _ in range(count)
        ]

    def for_client(self, n: int) -> httpx.AsyncClient:
        return self.clients[(n // self.pool_size) % len(self.clients)]

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


# -- reporting ----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def ms(seconds: float) -> str:
    return "-" if seconds != seconds else f"{seconds * 1000:.1f} ms"


def p50_p99(values: Sequence[float], unit: str = "ms") -> str:
    """``p50 / p99`` of latencies in ms (``unit="ms"``) or of durations in seconds (``"s"``)."""
    low, high = percentile(values, 50), percentile(values, 99)
    if unit == "ms":
        return f"{ms(low)} / {ms(high)}"
    return f"{low:.2f} s / {high:.2f} s"


def mib(n: float) -> str:
    return f"{n / MIB:.1f} MiB"


def table(rows: Iterable[tuple[str, ...]], title: str | None = None) -> str:
    """A plain-text table; the first row is the header."""
    rows = [tuple(str(c) for c in row) for row in rows]
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(max(len(r) for r in rows))]
    lines = [] if title is None else [title]
    for n, row in enumerate(rows):
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=False))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on a free port (no persistence); its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchmarkError("redis-server is not installed (Debian: apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="wanmock-bench-redis-") as directory:
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                directory,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
                if time.monotonic() > deadline or process.poll() is not None:
                    raise BenchmarkError("redis-server did not start")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            stop_group(process, first=signal.SIGTERM)
