"""Where tasks and the request journal live: one interface, in-memory by default.

``store_from_url`` picks the store: ``memory`` (this process only), ``sqlite:///PATH`` (one
host: survives a restart, shared by the workers of ``wanmock serve --workers N``;
wanmock.mockserver.sqlite_store) or ``redis://HOST:PORT/DB`` (several hosts; wanmock.mockserver.redis_store).
A store holds data only (a task's state is derived from its instants at the clock's "now"),
so any process can answer for any task. Every store bounds its journal and forgets a task
``evict_grace`` seconds after its retention ends (swept when a task is added).
"""

from __future__ import annotations

import heapq
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from wanmock.mockserver.faults import FaultRules, FaultRuleSet
from wanmock.mockserver.tasks import Task

DEFAULT_JOURNAL_LIMIT = 10_000
DEFAULT_EVICT_GRACE = 3600.0  # seconds an expired task stays visible to the control plane
STORE_FORMS = "memory, sqlite:///PATH (four slashes for an absolute path), redis://HOST:PORT/DB"


class StoreError(Exception):
    """A store URL that cannot be used: unknown scheme, bad option, unreachable server."""


def evict_at(task: Task, grace: float) -> float | None:
    """When a store may forget ``task``: ``grace`` seconds after its retention ends (a task the
    control plane expired early is kept as long, so its final state can still be inspected)."""
    if task.retention_seconds is not None:
        return task.created_at + task.retention_seconds + grace
    if task.expired_at is not None:
        return task.expired_at + grace
    return None


@dataclass(frozen=True)
class JournalEntry:
    """One request the mock answered, as the control plane reports it."""

    seq: int
    at: float
    provider: str | None
    method: str
    path: str
    query: str
    status: int
    test_id: str | None
    task_id: str | None
    endpoint: str | None
    request_body: Any = None
    response_body: Any = None
    request_headers: dict[str, str] = field(default_factory=dict)
    # Accepted-but-undocumented findings (also sent as X-Wanmock-Warning headers).
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "provider": self.provider,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "test_id": self.test_id,
            "task_id": self.task_id,
            "endpoint": self.endpoint,
            "request_headers": self.request_headers,
            "request_body": self.request_body,
            "response_body": self.response_body,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JournalEntry:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class TaskStore(Protocol):
    """Tasks keyed by (provider, id), the request journal, a sequence, and the fault rules.
    ``shared`` stores (SQLite, Redis) also keep the manual clock and the result-link secret,
    so every process serving them agrees."""

    @property
    def shared(self) -> bool: ...
    def add(self, task: Task) -> Task: ...
    def get(self, provider: str, task_id: str) -> Task | None: ...
    def save(self, task: Task) -> None: ...
    def tasks(self, provider: str | None = None, test_id: str | None = None) -> list[Task]: ...
    def append(self, entry: JournalEntry) -> None: ...
    def journal(self) -> Iterable[JournalEntry]: ...
    def next_seq(self) -> int: ...
    def reset(self, test_id: str | None = None) -> None: ...
    def fault_rules(self) -> FaultRuleSet:
        """The fault rules kept with this store (one object per store)."""
        ...

    def link_secret(self, fallback: bytes) -> bytes:
        """The secret signing result URLs: a shared store keeps the first one it is offered."""
        ...

    def close(self) -> None: ...


class MemoryStore:
    """Tasks in a dict, the journal in a bounded deque; safe across threads of one process."""

    shared = False

    def __init__(
        self,
        journal_limit: int = DEFAULT_JOURNAL_LIMIT,
        task_limit: int = 100_000,
        evict_grace: float = DEFAULT_EVICT_GRACE,
    ) -> None:
        if journal_limit < 1 or task_limit < 1 or evict_grace < 0:
            raise ValueError("journal_limit and task_limit must be positive, evict_grace not negative")
        self._tasks: dict[tuple[str, str], Task] = {}
        self._journal: deque[JournalEntry] = deque(maxlen=journal_limit)
        self._task_limit = task_limit
        self._grace = evict_grace
        self._evictions: list[tuple[float, str, str]] = []  # a heap of (evict_at, provider, id)
        self._seq = 0
        self._lock = threading.Lock()
        self._faults = FaultRules()
        self._secret = b""

    def fault_rules(self) -> FaultRules:
        return self._faults

    def link_secret(self, fallback: bytes) -> bytes:
        with self._lock:
            self._secret = self._secret or fallback
            return self._secret

    def close(self) -> None:
        pass

    def _schedule(self, task: Task) -> None:
        when = evict_at(task, self._grace)
        if when is not None:
            heapq.heappush(self._evictions, (when, task.provider, task.id))
        if len(self._evictions) > 2 * len(self._tasks) + 1024:  # stale entries (saves, the task limit)
            self._evictions = [
                (due, t.provider, t.id) for t in self._tasks.values() if (due := evict_at(t, self._grace)) is not None
            ]
            heapq.heapify(self._evictions)

    def _sweep(self, now: float) -> None:
        """Forget tasks whose retention (plus the grace) ended by ``now``; an entry whose task
        was saved since with a later eviction time is skipped (that save pushed another)."""
        while self._evictions and self._evictions[0][0] <= now:
            _, provider, task_id = heapq.heappop(self._evictions)
            task = self._tasks.get((provider, task_id))
            when = None if task is None else evict_at(task, self._grace)
            if when is not None and when <= now:
                del self._tasks[(provider, task_id)]

    def next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def add(self, task: Task) -> Task:
        with self._lock:
            self._sweep(task.created_at)  # a task is created at the clock's now
            if len(self._tasks) >= self._task_limit:
                oldest = min(self._tasks, key=lambda k: self._tasks[k].seq)
                del self._tasks[oldest]
            self._tasks[(task.provider, task.id)] = task
            self._schedule(task)
        return task

    def get(self, provider: str, task_id: str) -> Task | None:
        with self._lock:
            task = self._tasks.get((provider, task_id))
            return None if task is None else Task.from_dict(task.to_dict())

    def save(self, task: Task) -> None:
        with self._lock:
            self._tasks[(task.provider, task.id)] = task
            self._schedule(task)

    def tasks(self, provider: str | None = None, test_id: str | None = None) -> list[Task]:
        with self._lock:
            found = [
                t
                for t in self._tasks.values()
                if (provider is None or t.provider == provider) and (test_id is None or t.test_id == test_id)
            ]
        return sorted(found, key=lambda t: t.seq)

    def append(self, entry: JournalEntry) -> None:
        with self._lock:
            self._journal.append(entry)

    def journal(self) -> list[JournalEntry]:
        with self._lock:
            return list(self._journal)

    def reset(self, test_id: str | None = None) -> None:
        with self._lock:
            if test_id is None:
                self._tasks.clear()
                self._journal.clear()
                self._evictions.clear()
                return
            self._tasks = {k: t for k, t in self._tasks.items() if t.test_id != test_id}
            kept = [e for e in self._journal if e.test_id != test_id]
            self._journal = deque(kept, maxlen=self._journal.maxlen)


def store_from_url(url: str) -> TaskStore:
    """The store a URL names.

    * ``memory`` or ``memory://`` — this process only (the default);
    * ``sqlite:///relative.db`` or ``sqlite:////absolute/path.db`` (as SQLAlchemy spells them);
    * ``redis://HOST:PORT/DB`` (also ``rediss://``), optionally ``?prefix=NAME`` for the key prefix
      (default ``wanmock:``), so several servers can share one Redis without meeting.

    Every form takes ``journal_limit=N`` (default 10000 entries) and ``evict_grace=SECONDS``
    (default 3600) as query parameters, e.g. ``sqlite:///tasks.db?journal_limit=500``.
    """
    if url == "memory" or url.startswith("memory?"):
        url = "memory://" + url[len("memory") :]
    parts = urlsplit(url)
    scheme = parts.scheme if "://" in url else url
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    try:
        journal_limit = int(options.pop("journal_limit", DEFAULT_JOURNAL_LIMIT))
        evict_grace = float(options.pop("evict_grace", DEFAULT_EVICT_GRACE))
    except ValueError as exc:
        raise StoreError(f"store URL {url!r}: journal_limit must be an integer, evict_grace a number") from exc
    if journal_limit < 1 or not 0 <= evict_grace < float("inf"):
        raise StoreError(f"store URL {url!r}: journal_limit must be >= 1 and evict_grace >= 0")
    if scheme == "memory":
        if parts.netloc or parts.path or options:
            raise StoreError(f"the memory store takes no path or options but journal_limit and evict_grace: {url!r}")
        return MemoryStore(journal_limit=journal_limit, evict_grace=evict_grace)
    if scheme == "sqlite":
        from wanmock.mockserver.sqlite_store import SQLiteStore

        if parts.netloc or not parts.path.startswith("/") or parts.path == "/" or options:
            raise StoreError(
                f"a SQLite store URL is sqlite:///relative.db or sqlite:////absolute/path.db, "
                f"with no options but journal_limit and evict_grace; got {url!r}"
            )
        return SQLiteStore(unquote(parts.path[1:]), journal_limit=journal_limit, evict_grace=evict_grace)
    if scheme in ("redis", "rediss"):
        from wanmock.mockserver.redis_store import DEFAULT_PREFIX, RedisStore

        prefix = options.pop("prefix", DEFAULT_PREFIX)
        rest = parts._replace(query=urlencode(options)).geturl()
        return RedisStore(rest, prefix=prefix, journal_limit=journal_limit, evict_grace=evict_grace)
    raise StoreError(f"unsupported store {url!r}; supported: {STORE_FORMS}")
