"""Where tasks and the request journal live: one interface, in-memory by default."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from mockserver.tasks import Task


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
        }


class TaskStore(Protocol):
    def add(self, task: Task) -> Task: ...
    def get(self, provider: str, task_id: str) -> Task | None: ...
    def save(self, task: Task) -> None: ...
    def tasks(self, provider: str | None = None, test_id: str | None = None) -> list[Task]: ...
    def append(self, entry: JournalEntry) -> None: ...
    def journal(self) -> Iterable[JournalEntry]: ...
    def next_seq(self) -> int: ...
    def reset(self, test_id: str | None = None) -> None: ...


class MemoryStore:
    """Tasks in a dict, the journal in a bounded deque; safe across threads of one process."""

    def __init__(self, journal_limit: int = 10_000, task_limit: int = 100_000) -> None:
        self._tasks: dict[tuple[str, str], Task] = {}
        self._journal: deque[JournalEntry] = deque(maxlen=journal_limit)
        self._task_limit = task_limit
        self._seq = 0
        self._lock = threading.Lock()

    def next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def add(self, task: Task) -> Task:
        with self._lock:
            if len(self._tasks) >= self._task_limit:
                oldest = min(self._tasks, key=lambda k: self._tasks[k].seq)
                del self._tasks[oldest]
            self._tasks[(task.provider, task.id)] = task
        return task

    def get(self, provider: str, task_id: str) -> Task | None:
        with self._lock:
            task = self._tasks.get((provider, task_id))
            return None if task is None else Task.from_dict(task.to_dict())

    def save(self, task: Task) -> None:
        with self._lock:
            self._tasks[(task.provider, task.id)] = task

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
                return
            self._tasks = {k: t for k, t in self._tasks.items() if t.test_id != test_id}
            kept = [e for e in self._journal if e.test_id != test_id]
            self._journal = deque(kept, maxlen=self._journal.maxlen)
