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
import json
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import orjson
from wanmock.mockserver.faults import FaultRules, FaultRuleSet
from wanmock.mockserver.limits import DEFAULT_JOURNAL_BYTES, entry_size
from wanmock.mockserver.tasks import Task, VideoParams

DEFAULT_JOURNAL_LIMIT = 10_000
DEFAULT_EVICT_GRACE = 3600.0  # seconds an expired task stays visible to the control plane
DEFAULT_TASK_LIMIT = 100_000  # tasks the memory store keeps (the oldest is dropped beyond)
DEFAULT_TIMEOUT = 2.0  # seconds a shared store's operation may take (socket or lock wait)
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


# path, query, request body, response body, request headers (formatted)
Parts = tuple[str, str, Any, Any, dict[str, str]]


class JournalEntry:
    """One request the mock answered, as the control plane reports it.

    The path, query, bodies and headers may be *deferred*: the server records an entry with the
    ``raw`` parts (flat: strings, bytes and tuples of them, which the garbage collector soon
    stops tracking) and a ``formatter`` that scrubs and bounds them when they are first read
    (the control plane, a shared store writing the entry), not on the request's path. Both are
    dropped once the formatter has run."""

    __slots__ = (
        "_formatter",
        "_parts",
        "_raw",
        "at",
        "endpoint",
        "method",
        "provider",
        "seq",
        "size_hint",
        "status",
        "task_id",
        "test_id",
        "warnings",
    )

    def __init__(
        self,
        seq: int,
        at: float,
        provider: str | None,
        method: str,
        path: str,
        query: str,
        status: int,
        test_id: str | None,
        task_id: str | None,
        endpoint: str | None,
        request_body: Any = None,
        response_body: Any = None,
        request_headers: dict[str, str] | None = None,
        warnings: Sequence[str] = (),  # accepted-but-undocumented findings (also X-Wanmock-Warning)
        *,
        formatter: Callable[[tuple[Any, ...]], Parts] | None = None,
        raw: tuple[Any, ...] = (),  # what ``formatter`` formats (flat: strings, bytes, tuples)
        size_hint: int = 0,  # about the bytes of the formatted entry's JSON (0: measure it)
    ) -> None:
        self.seq, self.at, self.provider, self.method = seq, at, provider, method
        self.status = status
        self.test_id, self.task_id, self.endpoint = test_id, task_id, endpoint
        self.warnings = warnings
        self.size_hint = size_hint
        self._raw = raw
        self._parts: Parts | None = None
        if formatter is None:
            self._parts = (path, query, request_body, response_body, request_headers or {})
        self._formatter = formatter

    def _formatted(self) -> Parts:
        parts = self._parts
        if parts is None:
            assert self._formatter is not None
            parts = self._parts = self._formatter(self._raw)  # idempotent: a race formats twice, alike
            self._formatter, self._raw = None, ()
        return parts

    @property
    def path(self) -> str:
        return self._formatted()[0]

    @property
    def query(self) -> str:
        return self._formatted()[1]

    @property
    def request_body(self) -> Any:
        return self._formatted()[2]

    @property
    def response_body(self) -> Any:
        return self._formatted()[3]

    @property
    def request_headers(self) -> dict[str, str]:
        return self._formatted()[4]

    def to_dict(self) -> dict[str, Any]:
        path, query, request_body, response_body, request_headers = self._formatted()
        return {
            "seq": self.seq,
            "at": self.at,
            "provider": self.provider,
            "method": self.method,
            "path": path,
            "query": query,
            "status": self.status,
            "test_id": self.test_id,
            "task_id": self.task_id,
            "endpoint": self.endpoint,
            "request_headers": request_headers,
            "request_body": request_body,
            "response_body": response_body,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JournalEntry:
        known = {k: v for k, v in data.items() if k in ENTRY_FIELDS}
        return cls(**known)

    def flat(self, formatters: dict[int, Callable[[tuple[Any, ...]], Parts]]) -> tuple[Any, ...] | None:
        """A deferred, unread entry as one flat tuple (``formatters`` learns its formatter, the
        tuple names it by a number); None when the entry is formatted already."""
        formatter = self._formatter
        if formatter is None or self._parts is not None:
            return None
        formatters.setdefault(id(formatter), formatter)
        return flat_entry(
            self.seq, self.at, self.provider, self.method, self.status, self.test_id, self.task_id,
            self.endpoint, self.warnings, self.size_hint, self._raw, id(formatter),
        )  # fmt: skip

    @classmethod
    def from_flat(
        cls, record: tuple[Any, ...], formatters: dict[int, Callable[[tuple[Any, ...]], Parts]]
    ) -> JournalEntry:
        seq, at, provider, method, status, test_id, task_id, endpoint, warnings, size, formatter = record[:FLAT_RAW]
        raw = record[FLAT_RAW:]
        return cls(
            seq, at, provider, method, "", "", status, test_id, task_id, endpoint,
            warnings=warnings or (), formatter=formatters[formatter], raw=raw,
            size_hint=size,
        )  # fmt: skip

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JournalEntry) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"JournalEntry(seq={self.seq}, {self.method} {self.path}, status={self.status})"


def flat_entry(
    seq: int,
    at: float,
    provider: str | None,
    method: str,
    status: int,
    test_id: str | None,
    task_id: str | None,
    endpoint: str | None,
    warnings: Sequence[str],
    size: int,
    raw: tuple[Any, ...],
    formatter_id: int,
) -> tuple[Any, ...]:
    """A deferred journal entry as one flat tuple of immutable values (``JournalEntry.from_flat``
    reads it back; the formatter is named by its number, kept before the raw parts)."""
    return (
        seq, at, provider, method, status, test_id, task_id, endpoint,
        tuple(warnings) if warnings else "",  # usually none: no nested tuple
        size, formatter_id,
        *raw,  # flat: the collector untracks a tuple only once it holds no tracked one
    )  # fmt: skip


FLAT_TEST = 5  # where a flat entry (flat_entry) keeps its test id
FLAT_SIZE = 9  # its size hint
FLAT_RAW = 11  # and where its raw parts begin
ENTRY_FIELDS = frozenset(
    {"seq", "at", "provider", "method", "path", "query", "status", "test_id", "task_id", "endpoint"}
    | {"request_body", "response_body", "request_headers", "warnings"}
)


class TaskStore(Protocol):
    """Tasks keyed by (provider, id), the request journal, a sequence, and the fault rules.
    ``shared`` stores (SQLite, Redis) also keep the manual clock and the result-link secret,
    so every process serving them agrees.

    A task is changed only through ``transition``: read, change and write as one atomic step
    (compare-and-set), so two workers racing (a client's cancel against a forced succeed) never
    both win, and a terminal state is never overwritten. ``add`` and ``append`` number a task or
    an entry from the sequence when its ``seq`` is 0 (one round trip instead of two).

    Calls block: the server makes them through ``wanmock.mockserver.storeio.StoreIO`` (off the
    event loop, with a deadline). ``failures`` are the exceptions that mean "the store is
    unavailable" (a timeout, a lost connection, a locked or unreadable file)."""

    @property
    def shared(self) -> bool: ...
    @property
    def failures(self) -> tuple[type[BaseException], ...]: ...
    @property
    def timeout(self) -> float:
        """Seconds one store operation may take before it counts as failed."""
        ...

    def add(self, task: Task) -> Task: ...
    def get(self, provider: str, task_id: str) -> Task | None: ...
    def save(self, task: Task) -> None:
        """Write ``task`` as it is (creation and tests; changes go through ``transition``)."""
        ...

    def transition(self, provider: str, task_id: str, change: Callable[[Task], None]) -> Task | None:
        """Atomically: read the task, apply ``change`` (which may raise to refuse: nothing is
        written then), write it back. None when there is no such task."""
        ...

    def tasks(self, provider: str | None = None, test_id: str | None = None) -> list[Task]: ...
    def append(self, entry: JournalEntry) -> None: ...
    def append_many(self, entries: list[JournalEntry]) -> None:
        """Append these in order, in one transaction or round trip (the server batches them)."""
        ...

    def journal(self) -> Iterable[JournalEntry]: ...
    def next_seq(self) -> int: ...
    def reset(self, test_id: str | None = None) -> None: ...
    def ping(self) -> None:
        """Raise one of ``failures`` unless the store answers."""
        ...

    def fault_rules(self) -> FaultRuleSet:
        """The fault rules kept with this store (one object per store)."""
        ...

    def link_secret(self, fallback: bytes) -> bytes:
        """The secret signing result URLs: a shared store keeps the first one it is offered."""
        ...

    def close(self) -> None: ...


# A stored task in the memory store: a flat tuple of immutable values (no dicts, no nested
# objects), so the garbage collector untracks it and a full collection stays short however
# many tasks are stored. The key "provider/id" carries the provider and the id.
_KIND, _MODEL, _RES, _RATIO, _DURATION, _AUDIO, _PROMPT = range(7)
_CREATED, _STARTED, _FINISHED, _FINAL, _CODE, _MESSAGE, _EXPIRED, _RETENTION = range(7, 15)
_TEST, _OWNER, _REQUEST, _SEQ, _KEYS = range(15, 20)
_INTERN_LIMIT = 4096  # distinct short strings shared between tasks (models, owners, test ids)
# Tasks a poll read kept built (MemoryStore.peek), the most recently built ones: few, so that
# a full collection has no more objects to walk however many tasks were polled.
_PEEK_LIMIT = 32


def outcome(call: Callable[[], Any]) -> tuple[BaseException | None, Any]:
    """(the exception, None) or (None, the result) of one store call of a batch: each call's
    failure goes to its own caller, who decides."""
    try:
        return None, call()
    except BaseException as exc:
        return exc, None


def dumps_text(value: Any) -> str:
    """JSON text of a stored value, by orjson where it can (what orjson cannot encode, such as an
    integer beyond 64 bits or a lone surrogate, by the standard library)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"))


def loads_text(text: str | bytes) -> Any:
    """A stored value from its JSON text (orjson; the standard library for what it refuses)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _json_text(value: dict[str, Any]) -> str:
    return dumps_text(value) if value else ""


class MemoryStore:
    """Tasks in an insertion-ordered dict of flat tuples (about 0.7 KiB each), the journal in a
    bounded deque; safe across threads of one process.

    At the task cap the oldest task is dropped in O(1) (a queue of keys in creation order);
    tasks past their retention are swept from a heap of eviction times when a task is added."""

    shared = False
    failures: tuple[type[BaseException], ...] = ()
    timeout = 0.0

    def __init__(
        self,
        journal_limit: int = DEFAULT_JOURNAL_LIMIT,
        task_limit: int = DEFAULT_TASK_LIMIT,
        evict_grace: float = DEFAULT_EVICT_GRACE,
        journal_bytes: int = DEFAULT_JOURNAL_BYTES,
    ) -> None:
        if journal_limit < 1 or task_limit < 1 or evict_grace < 0 or journal_bytes < 1:
            raise ValueError("journal_limit, journal_bytes and task_limit must be positive, evict_grace not negative")
        self._tasks: dict[str, tuple[Any, ...]] = {}
        self._order: deque[str] = deque()  # keys in creation order (may hold forgotten ones)
        self._journal: deque[JournalEntry | tuple[Any, ...]] = deque(maxlen=journal_limit)
        self._formatters: dict[int, Callable[[tuple[Any, ...]], Parts]] = {}  # by id: one per pipeline
        self._read: dict[int, JournalEntry] = {}  # seq -> the entry built from its record when read
        self._sizes: deque[int] = deque()  # each entry's JSON size, oldest first
        self.journal_bytes = journal_bytes
        self.journal_size = 0  # bytes the kept entries take (at most journal_bytes)
        self._task_limit = task_limit
        self._grace = evict_grace
        self._evictions: list[tuple[float, str]] = []  # a heap of (evict_at, key)
        self._names: dict[str | None, str | None] = {}
        self._peeked: dict[str, tuple[tuple[Any, ...], Task]] = {}  # key -> (its record, built)
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

    def ping(self) -> None:
        pass

    def close(self) -> None:
        pass

    # -- the compact form -----------------------------------------------------------------

    def _pack(self, task: Task) -> tuple[Any, ...]:
        # short strings shared between tasks: each kept once (up to the limit, then only looked up)
        names: dict[str | None, str | None] = self._names
        name = names.setdefault if len(names) < _INTERN_LIMIT else names.get
        p = task.params
        # the request: its record as JSON text, or (memory store) the raw body with the request's
        # credentials NUL-joined — flat values, so the collector untracks the record at once
        request: Any = _json_text(task.request) if task.request else task.request_text
        keys: Any = ""
        if not request and task.request_raw is not None:
            request, keys = task.request_raw
        return (
            name(task.kind, task.kind),
            name(task.model_id, task.model_id),
            name(p.resolution, p.resolution),
            name(p.ratio, p.ratio),
            p.duration,
            p.audio,
            p.prompt,
            task.created_at,
            task.started_at,
            task.finished_at,
            name(task.final_state, task.final_state),
            task.error_code,
            task.error_message,
            task.expired_at,
            task.retention_seconds,
            name(task.test_id, task.test_id),
            name(task.owner, task.owner),
            request,
            task.seq,
            keys,
        )

    @staticmethod
    def _unpack(key: str, r: tuple[Any, ...]) -> Task:
        provider, _, task_id = key.partition("/")
        return Task(
            id=task_id,
            provider=provider,
            kind=r[_KIND],
            model_id=r[_MODEL],
            params=VideoParams(r[_RES], r[_RATIO], r[_DURATION], r[_AUDIO], r[_PROMPT]),
            created_at=r[_CREATED],
            started_at=r[_STARTED],
            finished_at=r[_FINISHED],
            final_state=r[_FINAL],
            error_code=r[_CODE],
            error_message=r[_MESSAGE],
            expired_at=r[_EXPIRED],
            retention_seconds=r[_RETENTION],
            test_id=r[_TEST],
            owner=r[_OWNER],
            request_text=r[_REQUEST] if isinstance(r[_REQUEST], str) else "",
            request_raw=(r[_REQUEST], r[_KEYS]) if isinstance(r[_REQUEST], bytes) else None,
            seq=r[_SEQ],
        )

    def _evict_at(self, r: tuple[Any, ...]) -> float | None:
        if r[_RETENTION] is not None:
            return float(r[_CREATED] + r[_RETENTION] + self._grace)
        if r[_EXPIRED] is not None:
            return float(r[_EXPIRED] + self._grace)
        return None

    # -- eviction -------------------------------------------------------------------------

    def _put(self, key: str, record: tuple[Any, ...]) -> None:
        """Store ``record`` and schedule its eviction (the caller holds the lock)."""
        self._tasks[key] = record
        when = self._evict_at(record)
        if when is not None:
            heapq.heappush(self._evictions, (when, key))
        if len(self._evictions) > 2 * len(self._tasks) + 1024:  # stale entries (saves, the task limit)
            self._evictions = [(due, k) for k, r in self._tasks.items() if (due := self._evict_at(r)) is not None]
            heapq.heapify(self._evictions)

    def _sweep(self, now: float) -> None:
        """Forget tasks whose retention (plus the grace) ended by ``now``; an entry whose task
        was saved since with a later eviction time is skipped (that save pushed another)."""
        while self._evictions and self._evictions[0][0] <= now:
            _, key = heapq.heappop(self._evictions)
            record = self._tasks.get(key)
            when = None if record is None else self._evict_at(record)
            if when is not None and when <= now:
                del self._tasks[key]

    def _make_room(self) -> None:
        """Drop the oldest task when the cap is reached: O(1) (amortized over the queue's
        occasional rebuild when it holds many keys of tasks already forgotten)."""
        while len(self._tasks) >= self._task_limit and self._order:
            key = self._order.popleft()
            self._tasks.pop(key, None)
        if len(self._order) > 2 * len(self._tasks) + 1024:
            self._order = deque(self._tasks)

    # -- tasks ----------------------------------------------------------------------------

    def next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def add(self, task: Task) -> Task:
        with self._lock:
            if not task.seq:
                self._seq += 1
                task.seq = self._seq
            evictions, tasks = self._evictions, self._tasks
            if evictions and evictions[0][0] <= task.created_at:  # a task is created at the clock's now
                self._sweep(task.created_at)
            key = f"{task.provider}/{task.id}"
            if key not in tasks:
                if len(tasks) >= self._task_limit or len(self._order) > 2 * len(tasks) + 1024:
                    self._make_room()
                self._order.append(key)
            self._put(key, self._pack(task))
        return task

    def get(self, provider: str, task_id: str) -> Task | None:
        key = f"{provider}/{task_id}"
        record = self._tasks.get(key)  # one dict read is atomic; records are immutable
        return None if record is None else self._unpack(key, record)

    def peek(self, provider: str, task_id: str) -> Task | None:
        """The task, to be read and not changed: the same object as long as its record is (a
        polled task is built from its record once per change, not once per poll)."""
        key = f"{provider}/{task_id}"
        record = self._tasks.get(key)
        if record is None:
            return None
        built = self._peeked.get(key)
        if built is not None and built[0] is record:  # a save or transition stores a new record
            return built[1]
        task = self._unpack(key, record)
        with self._lock:
            peeked = self._peeked
            peeked.pop(key, None)
            if len(peeked) >= _PEEK_LIMIT:
                del peeked[next(iter(peeked))]  # the one built longest ago
            peeked[key] = (record, task)
        return task

    def save(self, task: Task) -> None:
        with self._lock:
            key = f"{task.provider}/{task.id}"
            if key not in self._tasks:
                self._order.append(key)
            self._put(key, self._pack(task))

    def transition(self, provider: str, task_id: str, change: Callable[[Task], None]) -> Task | None:
        key = f"{provider}/{task_id}"
        with self._lock:
            record = self._tasks.get(key)
            if record is None:
                return None
            task = self._unpack(key, record)
            change(task)
            self._put(key, self._pack(task))
        return task

    def tasks(self, provider: str | None = None, test_id: str | None = None) -> list[Task]:
        with self._lock:
            found = [
                self._unpack(k, r)
                for k, r in self._tasks.items()
                if (provider is None or k.partition("/")[0] == provider) and (test_id is None or r[_TEST] == test_id)
            ]
        return sorted(found, key=lambda t: t.seq)

    def count(self) -> int:
        """How many tasks are stored (not bool(store): an empty store is still a store)."""
        return len(self._tasks)

    # -- journal --------------------------------------------------------------------------

    # A deferred entry (the server's) is kept as a flat tuple of immutable values, which the
    # garbage collector stops tracking, and built into a JournalEntry when first read: an entry
    # object per request would add to every full collection's work as long as it is kept.

    def append(self, entry: JournalEntry) -> None:
        size = entry.size_hint or entry_size(entry.to_dict())  # a deferred entry is formatted when read
        with self._lock:
            if not entry.seq:
                self._seq += 1
                entry.seq = self._seq
            record = entry.flat(self._formatters)
            self._keep(entry if record is None else record, size)

    def append_flat(self, formatter: Callable[[tuple[Any, ...]], Parts], *fields: Any) -> None:
        """The server's path: a deferred entry kept straight as its flat record, without an entry
        object built per request. ``fields`` are ``flat_entry``'s between the sequence number
        (given here) and the formatter's number: at, provider, method, status, test_id, task_id,
        endpoint, warnings, size, raw."""
        with self._lock:
            formatter_id = id(formatter)
            if formatter_id not in self._formatters:
                self._formatters[formatter_id] = formatter
            self._seq += 1
            record = flat_entry(self._seq, *fields, formatter_id)  # type: ignore[call-arg]  # fields: see above
            self._keep(record, fields[FLAT_SIZE - 1])

    def _keep(self, record: JournalEntry | tuple[Any, ...], size: int) -> None:
        """Keep a journal record within the journal's bounds (the caller holds the lock)."""
        if len(self._journal) == self._journal.maxlen:
            self._forget_oldest()
        self._journal.append(record)
        self._sizes.append(size)
        self.journal_size += size
        while self.journal_size > self.journal_bytes and len(self._journal) > 1:
            self._forget_oldest()

    def _forget_oldest(self) -> None:
        record = self._journal.popleft()
        self.journal_size -= self._sizes.popleft()
        if isinstance(record, tuple):
            self._read.pop(record[0], None)

    def append_many(self, entries: list[JournalEntry]) -> None:
        for entry in entries:
            self.append(entry)

    def _entry(self, record: JournalEntry | tuple[Any, ...]) -> JournalEntry:
        if isinstance(record, JournalEntry):
            return record
        found = self._read.get(record[0])
        if found is None:
            found = self._read[record[0]] = JournalEntry.from_flat(record, self._formatters)
        return found

    def journal(self) -> list[JournalEntry]:
        with self._lock:
            return [self._entry(record) for record in self._journal]

    @staticmethod
    def _test_of(record: JournalEntry | tuple[Any, ...]) -> str | None:
        return record.test_id if isinstance(record, JournalEntry) else record[FLAT_TEST]

    def reset(self, test_id: str | None = None) -> None:
        with self._lock:
            if test_id is None:
                self._tasks.clear()
                self._order.clear()
                self._journal.clear()
                self._sizes.clear()
                self._read.clear()
                self.journal_size = 0
                self._evictions.clear()
                return
            self._tasks = {k: r for k, r in self._tasks.items() if r[_TEST] != test_id}
            self._order = deque(self._tasks)
            kept = [(e, n) for e, n in zip(self._journal, self._sizes, strict=True) if self._test_of(e) != test_id]
            self._journal = deque((e for e, _ in kept), maxlen=self._journal.maxlen)
            self._sizes = deque(n for _, n in kept)
            self._read = {seq: e for seq, e in self._read.items() if e.test_id != test_id}
            self.journal_size = sum(self._sizes)


def store_from_url(url: str) -> TaskStore:
    """The store a URL names.

    * ``memory`` or ``memory://`` — this process only (the default);
    * ``sqlite:///relative.db`` or ``sqlite:////absolute/path.db`` (as SQLAlchemy spells them);
    * ``redis://HOST:PORT/DB`` (also ``rediss://``), optionally ``?prefix=NAME`` for the key prefix
      (default ``wanmock:``), so several servers can share one Redis without meeting.

    Every form takes ``journal_limit=N`` (default 10000 entries) and ``evict_grace=SECONDS``
    (default 3600) as query parameters, e.g. ``sqlite:///tasks.db?journal_limit=500``. The shared
    stores also take ``timeout=SECONDS`` (default 2): how long one operation may wait for Redis
    (socket and connect timeouts) or for SQLite's write lock (busy timeout) before the request is
    answered with the provider's 503; the memory store ``task_limit=N`` (default 100000).
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
    timeout = DEFAULT_TIMEOUT
    if scheme != "memory" and "timeout" in options:
        try:
            timeout = float(options.pop("timeout"))
        except ValueError:
            timeout = -1.0
        if not 0 < timeout <= 600:
            raise StoreError(f"store URL {url!r}: timeout must be a number of seconds, above 0 and at most 600")
    if scheme == "memory":
        try:
            task_limit = int(options.pop("task_limit", DEFAULT_TASK_LIMIT))
        except ValueError:
            task_limit = 0
        if parts.netloc or parts.path or options or task_limit < 1:
            raise StoreError(
                f"the memory store takes no path, and no options but journal_limit, evict_grace and "
                f"task_limit (a positive integer): {url!r}"
            )
        return MemoryStore(journal_limit=journal_limit, task_limit=task_limit, evict_grace=evict_grace)
    if scheme == "sqlite":
        from wanmock.mockserver.sqlite_store import SQLiteStore

        if parts.netloc or not parts.path.startswith("/") or parts.path == "/" or options:
            raise StoreError(
                f"a SQLite store URL is sqlite:///relative.db or sqlite:////absolute/path.db, "
                f"with no options but journal_limit, evict_grace and timeout; got {url!r}"
            )
        return SQLiteStore(
            unquote(parts.path[1:]), journal_limit=journal_limit, evict_grace=evict_grace, timeout=timeout
        )
    if scheme in ("redis", "rediss"):
        try:
            from wanmock.mockserver.redis_store import DEFAULT_PREFIX, RedisStore
        except ModuleNotFoundError as exc:
            if exc.name != "redis":
                raise
            raise StoreError(
                "the Redis store needs the redis package: pip install 'wanmock[redis]' (or pip install redis)"
            ) from exc

        prefix = options.pop("prefix", DEFAULT_PREFIX)
        rest = parts._replace(query=urlencode(options)).geturl()
        return RedisStore(rest, prefix=prefix, journal_limit=journal_limit, evict_grace=evict_grace, timeout=timeout)
    raise StoreError(f"unsupported store {url!r}; supported: {STORE_FORMS}")
