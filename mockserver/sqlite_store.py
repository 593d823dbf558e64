"""A task store in one SQLite file: tasks and the journal survive a restart, and every process
on the host that opens the same file (the workers of ``wanmock serve --workers N``) shares them.

WAL mode (readers never wait for the writer), a busy timeout (a writer waits for another
instead of failing, at most the store's ``timeout``), one connection per thread. Every
read-modify-write (the sequence, a task's transition, a fault rule's count, the manual clock) is
one statement or one ``BEGIN IMMEDIATE`` transaction, so it is atomic across processes. A submit
is one transaction (sequence, retention sweep, insert), a journal entry another.

Durability: ``synchronous = NORMAL`` in WAL mode — a committed task survives the server being
killed; a power loss or an OS crash may lose the last transactions before a checkpoint.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from wanmock.mockserver.faults import ACTIONS, FaultRule, choose, exhausted
from wanmock.mockserver.store import (
    DEFAULT_EVICT_GRACE,
    DEFAULT_JOURNAL_LIMIT,
    DEFAULT_TIMEOUT,
    JournalEntry,
    StoreError,
    dumps_text,
    evict_at,
    loads_text,
    outcome,
)
from wanmock.mockserver.tasks import Task

SWEEP_EVERY = 1.0  # seconds (of the clock) between two sweeps of expired tasks
SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    provider   TEXT NOT NULL,
    id         TEXT NOT NULL,
    test_id    TEXT,
    seq        INTEGER NOT NULL,
    created_at REAL NOT NULL,
    evict_at   REAL,
    data       TEXT NOT NULL,
    PRIMARY KEY (provider, id)
);
CREATE INDEX IF NOT EXISTS tasks_by_test ON tasks (test_id, seq);
CREATE INDEX IF NOT EXISTS tasks_by_seq ON tasks (seq);
DROP INDEX IF EXISTS tasks_by_created;
CREATE INDEX IF NOT EXISTS tasks_by_eviction ON tasks (evict_at) WHERE evict_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS journal (
    n       INTEGER PRIMARY KEY AUTOINCREMENT,
    test_id TEXT,
    data    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_by_test ON journal (test_id);
CREATE TABLE IF NOT EXISTS rules (
    n       INTEGER PRIMARY KEY,
    test_id TEXT,
    data    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value);
INSERT OR IGNORE INTO counters VALUES ('seq', 0), ('rule', 0);
"""
TASK_UPSERT = """
INSERT INTO tasks (provider, id, test_id, seq, created_at, evict_at, data) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (provider, id) DO UPDATE SET
    test_id = excluded.test_id, seq = excluded.seq, created_at = excluded.created_at,
    evict_at = excluded.evict_at, data = excluded.data
"""


def path_problem(path: Path) -> str | None:
    """Why SQLite cannot open ``path``, in words ("unable to open database file" names neither)."""
    import os

    parent = path.absolute().parent
    if not parent.exists():
        return f"the directory {str(parent)!r} does not exist (create it first)"
    if not parent.is_dir():
        return f"{str(parent)!r} is not a directory"
    if path.is_dir():
        return f"{str(path)!r} is a directory, not a database file"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"the directory {str(parent)!r} is not writable by this user (SQLite needs it for its -wal file)"
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return f"the file {str(path)!r} is not readable and writable by this user"
    return None


class SQLiteStore:
    shared = True
    failures: tuple[type[BaseException], ...] = (sqlite3.Error,)

    def __init__(
        self,
        path: str | Path,
        journal_limit: int = DEFAULT_JOURNAL_LIMIT,
        evict_grace: float = DEFAULT_EVICT_GRACE,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if journal_limit < 1 or evict_grace < 0 or timeout <= 0:
            raise ValueError("journal_limit and timeout must be positive and evict_grace not negative")
        self.timeout = timeout
        self._next_sweep = float("-inf")
        self.path = Path(path)
        self.journal_limit = journal_limit
        self.evict_grace = evict_grace
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # one write transaction at a time in this process
        self.prefetch_polls = True  # a poll reads the fault rules and its task in one call
        # store threads (wanmock.mockserver.storeio): writes take turns, so more threads only
        # add hand-offs; two let a read go on while a write waits for another process
        self.threads = 2
        self._faults = SQLiteFaultRules(self)
        try:
            db = self.connection()
            try:
                db.executescript(f"BEGIN IMMEDIATE; {SCHEMA} COMMIT;")
            except sqlite3.Error:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self.close()
            hint = "" if self.path.is_absolute() else f" (relative to {Path.cwd()}; sqlite:////abs/path.db is absolute)"
            cause = path_problem(self.path) or str(exc)
            raise StoreError(f"cannot use the SQLite store {str(self.path)!r}{hint}: {cause}") from exc

    # -- connections ----------------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit; transactions are explicit)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
            try:
                db.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = NORMAL")  # durable across a crash of the server
            except sqlite3.Error:
                db.close()
                raise
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, taken at once (BEGIN IMMEDIATE) so no two processes interleave.
        This process's threads take turns on a lock first: SQLite's own wait for its write lock
        polls with sleeps of up to tens of milliseconds, which threads of one process need not pay.

        Inside :meth:`batched` the write is a savepoint of the batch's one transaction (taken at
        its first write): it is undone alone if it raises, and committed with the batch."""
        if getattr(self._local, "batch", None) is not None:
            db = self._batch_transaction()
            db.execute("SAVEPOINT write")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK TO write")
                db.execute("RELEASE write")
                raise
            db.execute("RELEASE write")
            return
        db = self._begin()
        try:
            yield db
        except BaseException:
            self._end(db, commit=False)
            raise
        self._end(db, commit=True)

    def _begin(self) -> sqlite3.Connection:
        if not self._write_lock.acquire(timeout=self.timeout):
            raise sqlite3.OperationalError(f"database is locked (no write turn within {self.timeout:g} s)")
        try:
            db = self.connection()
            db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._write_lock.release()
            raise
        return db

    def _end(self, db: sqlite3.Connection, *, commit: bool) -> None:
        try:
            if commit:
                db.execute("COMMIT")
            elif db.in_transaction:
                db.execute("ROLLBACK")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            self._write_lock.release()

    def _batch_transaction(self) -> sqlite3.Connection:
        batch: list[sqlite3.Connection] = self._local.batch
        if not batch:
            batch.append(self._begin())
        return batch[0]

    def run_calls(self, calls: list[Callable[[], Any]]) -> list[tuple[BaseException | None, Any]]:
        """Run a store thread's batch in order (inside :meth:`batched`): the fault rules are read
        once for a run of calls that cannot change them (task adds and reads), not once each."""
        out: list[tuple[BaseException | None, Any]] = []
        cached: list[FaultRule] | None = None
        rules, keep = self._faults.rules, (self.add, self.get)
        for call in calls:
            func, args = getattr(call, "func", None), getattr(call, "args", ())
            if func == rules and not getattr(call, "keywords", None) and len(args) <= 1:
                try:
                    if cached is None:
                        cached = rules()
                except BaseException as exc:
                    out.append((exc, None))
                    continue
                test_id = args[0] if args else None
                out.append((None, [r for r in cached if test_id is None or r.test_id == test_id]))
                continue
            if func not in keep:
                cached = None  # any other call may change the rules (a take, a reset)
            out.append(outcome(call))
        return out

    @contextmanager
    def batched(self) -> Iterator[None]:
        """Run a batch of calls (a store thread's queue) with one commit for all their writes
        (group commit): the transaction begins at the batch's first write and commits when the
        batch ends, before any of its callers is answered. A failed commit raises (every call of
        the batch then fails: none of their writes happened)."""
        batch: list[sqlite3.Connection] = []
        self._local.batch = batch
        try:
            yield
        except BaseException:
            if batch:
                self._end(batch[0], commit=False)
            raise
        finally:
            self._local.batch = None
        if batch:
            self._end(batch[0], commit=True)

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for db in connections:
            db.close()
        self._local = threading.local()

    # -- tasks ----------------------------------------------------------------------------

    def _row(self, task: Task) -> tuple[Any, ...]:
        data = dumps_text(task.to_dict())
        when = evict_at(task, self.evict_grace)
        return (task.provider, task.id, task.test_id, task.seq, task.created_at, when, data)

    @staticmethod
    def _next_seq(db: sqlite3.Connection) -> int:
        row = db.execute("UPDATE counters SET value = value + 1 WHERE name = 'seq' RETURNING value")
        value: int = row.fetchall()[0][0]  # fetch all: a RETURNING statement ends when drained
        return value

    def next_seq(self) -> int:
        return self._next_seq(self.connection())

    def add(self, task: Task) -> Task:
        """One transaction: number the task (when its seq is 0), sweep, insert."""
        with self.transaction() as db:
            if not task.seq:
                task.seq = self._next_seq(db)
            if task.created_at >= self._next_sweep:  # created at the clock's now; a sweep a second is enough
                db.execute("DELETE FROM tasks WHERE evict_at <= ?", (task.created_at,))
                self._next_sweep = task.created_at + SWEEP_EVERY
            db.execute(TASK_UPSERT, self._row(task))
        return task

    def save(self, task: Task) -> None:
        self.connection().execute(TASK_UPSERT, self._row(task))

    def transition(self, provider: str, task_id: str, change: Callable[[Task], None]) -> Task | None:
        """Read, change and write in one write transaction: another process's transition of
        the same task waits for this one and then sees its result."""
        with self.transaction() as db:
            row = db.execute("SELECT data FROM tasks WHERE provider = ? AND id = ?", (provider, task_id)).fetchone()
            if row is None:
                return None
            task = Task.from_dict(loads_text(row[0]))
            change(task)  # may raise: the transaction is rolled back
            db.execute(TASK_UPSERT, self._row(task))
        return task

    def get(self, provider: str, task_id: str) -> Task | None:
        row = (
            self.connection()
            .execute("SELECT data FROM tasks WHERE provider = ? AND id = ?", (provider, task_id))
            .fetchone()
        )
        return None if row is None else Task.from_dict(loads_text(row[0]))

    def tasks(self, provider: str | None = None, test_id: str | None = None) -> list[Task]:
        where, values = [], []
        if provider is not None:
            where.append("provider = ?")
            values.append(provider)
        if test_id is not None:
            where.append("test_id = ?")
            values.append(test_id)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self.connection().execute(f"SELECT data FROM tasks{clause} ORDER BY seq", values)
        return [Task.from_dict(loads_text(data)) for (data,) in rows]

    def ping(self) -> None:
        """The store answers when it can take the write lock (readers never wait in WAL mode)."""
        with self.transaction() as db:
            db.execute("SELECT value FROM counters WHERE name = 'seq'").fetchall()

    # -- journal --------------------------------------------------------------------------

    def append(self, entry: JournalEntry) -> None:
        self.append_many([entry])

    def append_many(self, entries: list[JournalEntry]) -> None:
        """One transaction for them all: number the entries whose seq is 0 (in order), insert,
        trim to the bound."""
        with self.transaction() as db:
            unnumbered = sum(1 for e in entries if not e.seq)
            seq = 0
            if unnumbered:
                row = db.execute(
                    "UPDATE counters SET value = value + ? WHERE name = 'seq' RETURNING value", (unnumbered,)
                )
                seq = int(row.fetchall()[0][0]) - unnumbered
            rows = []
            for entry in entries:
                data = entry.to_dict()
                if not entry.seq:
                    seq += 1
                    data["seq"] = seq
                rows.append((entry.test_id, dumps_text(data)))
            db.executemany("INSERT INTO journal (test_id, data) VALUES (?, ?)", rows)
            (last,) = db.execute("SELECT last_insert_rowid()").fetchone()
            db.execute("DELETE FROM journal WHERE n <= ?", (int(last) - self.journal_limit,))

    def journal(self) -> list[JournalEntry]:
        rows = self.connection().execute("SELECT data FROM journal ORDER BY n")
        return [JournalEntry.from_dict(loads_text(data)) for (data,) in rows]

    def reset(self, test_id: str | None = None) -> None:
        with self.transaction() as db:
            if test_id is None:
                db.execute("DELETE FROM tasks")
                db.execute("DELETE FROM journal")
            else:
                db.execute("DELETE FROM tasks WHERE test_id = ?", (test_id,))
                db.execute("DELETE FROM journal WHERE test_id = ?", (test_id,))

    # -- what every worker must agree on --------------------------------------------------

    def fault_rules(self) -> SQLiteFaultRules:
        return self._faults

    def link_secret(self, fallback: bytes) -> bytes:
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO settings VALUES ('link_secret', ?)", (fallback.hex(),))
            (value,) = db.execute("SELECT value FROM settings WHERE name = 'link_secret'").fetchall()[0]
        return bytes.fromhex(value)

    def clock_now(self, start: float) -> float:
        row = self.connection().execute("SELECT value FROM settings WHERE name = 'clock'").fetchone()
        return start if row is None else float(row[0])

    def clock_advance(self, seconds: float, start: float) -> float:
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO settings VALUES ('clock', ?)", (start,))
            (value,) = db.execute(
                "UPDATE settings SET value = value + ? WHERE name = 'clock' RETURNING value", (seconds,)
            ).fetchall()[0]
        return float(value)


class SQLiteFaultRules:
    """Fault rules in the store's ``rules`` table. ``take`` reads without a lock; only when a
    rule fires does it count it in a write transaction (re-reading, so two workers never spend
    one count twice)."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    def _load(self, db: sqlite3.Connection, test_id: str | None = None) -> list[FaultRule]:
        if test_id is None:
            rows = db.execute("SELECT data FROM rules ORDER BY n")
        else:
            rows = db.execute("SELECT data FROM rules WHERE test_id = ? ORDER BY n", (test_id,))
        return [FaultRule(**json.loads(data)) for (data,) in rows]

    def add(self, rule: FaultRule) -> FaultRule:
        with self._store.transaction() as db:
            (n,) = db.execute("UPDATE counters SET value = value + 1 WHERE name = 'rule' RETURNING value").fetchall()[0]
            rule.id = f"rule-{n}"
            db.execute("INSERT INTO rules VALUES (?, ?, ?)", (n, rule.test_id, json.dumps(rule.to_dict())))
        return rule

    def remove(self, rule_id: str) -> bool:
        prefix, _, number = rule_id.partition("-")
        if prefix != "rule" or not number.isdigit():
            return False
        return self._store.connection().execute("DELETE FROM rules WHERE n = ?", (int(number),)).rowcount > 0

    def rules(self, test_id: str | None = None) -> list[FaultRule]:
        return self._load(self._store.connection(), test_id)

    def clear(self, test_id: str | None = None) -> None:
        if test_id is None:
            self._store.connection().execute("DELETE FROM rules")
        else:
            self._store.connection().execute("DELETE FROM rules WHERE test_id = ?", (test_id,))

    def take(self, scope: Mapping[str, str | None], actions: tuple[str, ...] = ACTIONS) -> list[FaultRule]:
        if not choose(self._load(self._store.connection()), scope, actions):
            return []  # the common case: nothing fires, nothing to write
        with self._store.transaction() as db:
            fired = choose(self._load(db), scope, actions)
            for rule in fired:
                n = int(rule.id.partition("-")[2])
                if exhausted(rule):
                    db.execute("DELETE FROM rules WHERE n = ?", (n,))
                else:
                    db.execute("UPDATE rules SET data = ? WHERE n = ?", (json.dumps(rule.to_dict()), n))
        return fired
