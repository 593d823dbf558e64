"""A task store in Redis: several hosts (each with its own workers) serve one fleet of tasks.

Keys, all under a prefix (``wanmock:`` unless the URL says ``?prefix=``):

====================  =====================================================================
``task:P:ID``         the task (JSON of ``Task.to_dict()``)
``tasks``             every task as ``P:ID``, scored by seq (listing order)
``provider:P``        the same, one provider's
``test:T``            the same, one test id's (the per-test index ``reset`` uses)
``evict``             every task scored by the instant it may be forgotten (retention sweep)
``seq``               the sequence (INCR)
``journal``           the journal, newest first (LPUSH, then LTRIM to the bound)
``rules``             fault rules by number (a hash of JSON); ``rule_seq`` numbers them
``clock``             the manual clock's now (INCRBYFLOAT); ``link_secret`` signs result URLs
====================  =====================================================================

Every call is one round trip: adding a task (numbering it, sweeping expired tasks, writing it
and its indexes) and appending a journal entry (numbering, pushing, trimming) are Lua scripts,
other writes MULTI/EXEC pipelines. A task's transition and spending a fault rule's count are
WATCH/MULTI transactions (compare-and-set), retried when another worker changed them first.
Every call waits at most the store's ``timeout`` (socket and connect timeouts, no retries).

Durability is Redis's: without persistence (``--save ""``, ``--appendonly no``) a restart of
Redis loses every task; with RDB snapshots it loses what came after the last snapshot; with
``appendonly yes`` and ``appendfsync everysec`` (Redis's default for AOF) at most about a second.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
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

DEFAULT_PREFIX = "wanmock:"
SWEEP_BATCH = 500

# KEYS: seq, task key, tasks, provider index, test index, evict. ARGV: member, JSON (without
# "seq" when the seq is 0), seq, evict_at or "", now, has a test id "1"/"0", prefix, batch.
ADD_SCRIPT = """
local due = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', ARGV[5], 'LIMIT', 0, tonumber(ARGV[8]))
for _, m in ipairs(due) do
  local sep = string.find(m, ':', 1, true)
  local provider = string.sub(m, 1, sep - 1)
  local tkey = ARGV[7] .. 'task:' .. m
  local old = redis.call('GET', tkey)
  if old then
    local ok, t = pcall(cjson.decode, old)
    if ok and type(t) == 'table' and type(t['test_id']) == 'string' then
      redis.call('ZREM', ARGV[7] .. 'test:' .. t['test_id'], m)
    end
  end
  redis.call('DEL', tkey)
  redis.call('ZREM', KEYS[3], m)
  redis.call('ZREM', ARGV[7] .. 'provider:' .. provider, m)
  redis.call('ZREM', KEYS[6], m)
end
local seq = tonumber(ARGV[3])
local data = ARGV[2]
if seq == 0 then
  seq = redis.call('INCR', KEYS[1])
  data = '{"seq":' .. seq .. ',' .. string.sub(data, 2)
end
redis.call('SET', KEYS[2], data)
redis.call('ZADD', KEYS[3], seq, ARGV[1])
redis.call('ZADD', KEYS[4], seq, ARGV[1])
if ARGV[6] == '1' then redis.call('ZADD', KEYS[5], seq, ARGV[1]) end
if ARGV[4] == '' then redis.call('ZREM', KEYS[6], ARGV[1]) else redis.call('ZADD', KEYS[6], ARGV[4], ARGV[1]) end
return seq
"""

# KEYS: seq, journal. ARGV: JSON (without "seq" when the seq is 0), seq, bound.
APPEND_SCRIPT = """
local data = ARGV[1]
if tonumber(ARGV[2]) == 0 then
  data = '{"seq":' .. redis.call('INCR', KEYS[1]) .. ',' .. string.sub(data, 2)
end
redis.call('LPUSH', KEYS[2], data)
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[3]) - 1)
return 1
"""


def _member(provider: str, task_id: str) -> str:
    return f"{provider}:{task_id}"  # provider names have no colon


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisStore:
    shared = True
    failures: tuple[type[BaseException], ...] = (redis.RedisError,)

    def __init__(
        self,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        journal_limit: int = DEFAULT_JOURNAL_LIMIT,
        evict_grace: float = DEFAULT_EVICT_GRACE,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if journal_limit < 1 or evict_grace < 0 or timeout <= 0:
            raise ValueError("journal_limit and timeout must be positive and evict_grace not negative")
        self.timeout = timeout
        self.url = url
        self.prefix = prefix
        self.journal_limit = journal_limit
        self.evict_grace = evict_grace
        try:
            self.redis: redis.Redis = redis.Redis.from_url(
                url,
                decode_responses=True,
                socket_connect_timeout=timeout,
                socket_timeout=timeout,
                retry=Retry(NoBackoff(), 0),  # a frozen Redis answers 503 after one timeout, not four
            )
        except ValueError as exc:
            raise StoreError(f"cannot use the Redis store {url!r}: {exc}") from exc
        try:
            self.redis.ping()
        except redis.RedisError as exc:
            self.redis.close()
            raise StoreError(f"cannot use the Redis store {url!r}: {exc}") from exc
        self._faults = RedisFaultRules(self)
        self._add = self.redis.register_script(ADD_SCRIPT)
        self._append = self.redis.register_script(APPEND_SCRIPT)

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def close(self) -> None:
        self.redis.close()

    # -- tasks ----------------------------------------------------------------------------

    def next_seq(self) -> int:
        return int(self.redis.incr(self.key("seq")))

    def _write(self, pipe: Any, task: Task) -> None:
        member = _member(task.provider, task.id)
        pipe.set(self.key("task", task.provider, task.id), dumps_text(task.to_dict()))
        pipe.zadd(self.key("tasks"), {member: task.seq})
        pipe.zadd(self.key("provider", task.provider), {member: task.seq})
        if task.test_id is not None:
            pipe.zadd(self.key("test", task.test_id), {member: task.seq})
        when = evict_at(task, self.evict_grace)
        if when is None:
            pipe.zrem(self.key("evict"), member)
        else:
            pipe.zadd(self.key("evict"), {member: when})

    def add(self, task: Task) -> Task:
        """One round trip (a script): sweep expired tasks, number the task when its seq is 0,
        write it and its indexes."""
        return self._queue_add(self.redis, task)(self._add(**self._add_call(task)))

    def _queue_add(self, client: Any, task: Task) -> Callable[[Any], Task]:
        """What finishes an ``add`` once its script has answered (the task, numbered)."""

        def numbered(seq: Any) -> Task:
            task.seq = int(seq)
            return task

        return numbered

    def _add_call(self, task: Task) -> dict[str, Any]:
        data = task.to_dict()
        if not task.seq:
            del data["seq"]
        when = evict_at(task, self.evict_grace)
        keys = [
            self.key("seq"),
            self.key("task", task.provider, task.id),
            self.key("tasks"),
            self.key("provider", task.provider),
            self.key("test", task.test_id or ""),
            self.key("evict"),
        ]
        args: list[str | int | float] = [
            _member(task.provider, task.id),
            dumps_text(data),
            task.seq,
            "" if when is None else repr(when),
            repr(task.created_at),
            "1" if task.test_id is not None else "0",
            self.prefix,
            SWEEP_BATCH,
        ]
        return {"keys": keys, "args": args}

    # -- batches: the calls a store thread finds queued together, in one round trip ----------

    def run_calls(self, calls: list[Callable[[], Any]]) -> list[tuple[BaseException | None, Any]]:
        """Run a store thread's batch in order: the adds, gets and fault-rule reads among them go
        in one pipeline (one round trip, answered in order by Redis), any other call alone (the
        pipeline sent first, so it sees what came before it). A lost connection fails every call
        of the pipeline; a command's own error fails its call only."""
        out: list[tuple[BaseException | None, Any]] = []
        pending: list[tuple[int, Callable[[Any], Any]]] = []
        pipe: Any = None

        def flush() -> None:
            nonlocal pipe
            if not pending:
                return
            try:
                results = pipe.execute(raise_on_error=False)
            except BaseException as exc:
                for index, _ in pending:
                    out[index] = (exc, None)
            else:
                for (index, finish), result in zip(pending, results, strict=True):
                    if isinstance(result, BaseException):
                        out[index] = (result, None)
                        continue
                    try:
                        out[index] = (None, finish(result))
                    except BaseException as exc:
                        out[index] = (exc, None)
            pending.clear()
            pipe = None

        for call in calls:
            out.append((None, None))
            if pipe is None:
                pipe = self.redis.pipeline(transaction=False)
            finish = self._pipelined(pipe, call)
            if finish is not None:
                pending.append((len(out) - 1, finish))
                continue
            flush()
            out[-1] = outcome(call)
        flush()
        return out

    def _pipelined(self, pipe: Any, call: Callable[[], Any]) -> Callable[[Any], Any] | None:
        """Queue ``call`` on ``pipe`` when it is one that can be (add, get, the fault rules) and
        return what turns its answer into the call's result; None for any other call."""
        func = getattr(call, "func", None)
        args: tuple[Any, ...] = getattr(call, "args", ())
        if func is None or getattr(call, "keywords", None):
            return None
        if func == self.add and len(args) == 1:
            self._add(client=pipe, **self._add_call(args[0]))
            return self._queue_add(pipe, args[0])
        if func == self.get and len(args) == 2:
            pipe.get(self.key("task", *args))
            return lambda data: None if data is None else Task.from_dict(loads_text(data))
        if func == self._faults.rules and len(args) <= 1:
            test_id = args[0] if args else None
            pipe.hgetall(self._faults.key)
            return lambda raw: [r for r in self._faults.parse(raw) if test_id is None or r.test_id == test_id]
        return None

    def _forget(self, members: list[str]) -> None:
        """Delete these tasks and their index entries (the per-test index needs each test id)."""
        keys = [self.key("task", *m.split(":", 1)) for m in members]
        found = cast(list[str | None], self.redis.mget(keys))
        pipe = self.redis.pipeline()
        for member, key, data in zip(members, keys, found, strict=True):
            provider = member.split(":", 1)[0]
            pipe.delete(key)
            pipe.zrem(self.key("tasks"), member)
            pipe.zrem(self.key("provider", provider), member)
            pipe.zrem(self.key("evict"), member)
            test_id = None if data is None else json.loads(data).get("test_id")
            if test_id is not None:
                pipe.zrem(self.key("test", test_id), member)
        pipe.execute()

    def save(self, task: Task) -> None:
        pipe = self.redis.pipeline()
        self._write(pipe, task)
        pipe.execute()

    def transition(self, provider: str, task_id: str, change: Callable[[Task], None]) -> Task | None:
        """Compare-and-set: WATCH the task, read, change, write in MULTI/EXEC; if another
        worker wrote the task in between, EXEC fails and it is read again."""
        key = self.key("task", provider, task_id)
        changed: list[Task | None] = [None]

        def attempt(pipe: Any) -> None:
            data = pipe.get(key)
            if data is None:
                changed[0] = None
                return
            task = Task.from_dict(loads_text(data))
            change(task)  # may raise: nothing is written
            pipe.multi()
            self._write(pipe, task)
            changed[0] = task

        self.redis.transaction(attempt, key)
        return changed[0]

    def ping(self) -> None:
        self.redis.ping()

    def get(self, provider: str, task_id: str) -> Task | None:
        data = cast(str | None, self.redis.get(self.key("task", provider, task_id)))
        return None if data is None else Task.from_dict(loads_text(data))

    def tasks(self, provider: str | None = None, test_id: str | None = None) -> list[Task]:
        if test_id is not None:
            index = self.key("test", test_id)
        elif provider is not None:
            index = self.key("provider", provider)
        else:
            index = self.key("tasks")
        members = cast(list[str], self.redis.zrange(index, 0, -1))
        if provider is not None:
            members = [m for m in members if m.split(":", 1)[0] == provider]
        if not members:
            return []
        found = cast(list[str | None], self.redis.mget([self.key("task", *m.split(":", 1)) for m in members]))
        return [Task.from_dict(loads_text(data)) for data in found if data is not None]

    # -- journal --------------------------------------------------------------------------

    def append(self, entry: JournalEntry) -> None:
        """One round trip (a script): number the entry when its seq is 0, push, trim."""
        data = entry.to_dict()
        if not entry.seq:
            del data["seq"]
        self._append(
            keys=[self.key("seq"), self.key("journal")], args=[dumps_text(data), entry.seq, self.journal_limit]
        )

    def append_many(self, entries: list[JournalEntry]) -> None:
        """Every entry's script in one pipeline: one round trip for them all, in order."""
        if len(entries) == 1:
            self.append(entries[0])
            return
        pipe = self.redis.pipeline(transaction=False)
        keys = [self.key("seq"), self.key("journal")]
        for entry in entries:
            data = entry.to_dict()
            if not entry.seq:
                del data["seq"]
            self._append(keys=keys, args=[dumps_text(data), entry.seq, self.journal_limit], client=pipe)
        pipe.execute()

    def _journal_raw(self) -> list[str]:
        return cast(list[str], self.redis.lrange(self.key("journal"), 0, -1))

    def journal(self) -> list[JournalEntry]:
        return [JournalEntry.from_dict(loads_text(raw)) for raw in reversed(self._journal_raw())]

    def reset(self, test_id: str | None = None) -> None:
        if test_id is None:
            doomed = [self.key("tasks"), self.key("evict"), self.key("journal")]
            for pattern in ("task:*", "provider:*", "test:*"):
                doomed.extend(self.redis.scan_iter(match=_glob_escape(self.prefix) + pattern, count=1000))
            for start in range(0, len(doomed), 1000):
                self.redis.delete(*doomed[start : start + 1000])
            return
        members = cast(list[str], self.redis.zrange(self.key("test", test_id), 0, -1))
        if members:
            self._forget(members)
        pipe = self.redis.pipeline()
        pipe.delete(self.key("test", test_id))
        for raw in self._journal_raw():
            if json.loads(raw).get("test_id") == test_id:
                pipe.lrem(self.key("journal"), 1, raw)  # each entry is unique: it has its own seq
        pipe.execute()

    # -- what every worker must agree on --------------------------------------------------

    def fault_rules(self) -> RedisFaultRules:
        return self._faults

    def link_secret(self, fallback: bytes) -> bytes:
        pipe = self.redis.pipeline()
        pipe.set(self.key("link_secret"), fallback.hex(), nx=True)
        pipe.get(self.key("link_secret"))
        return bytes.fromhex(pipe.execute()[-1])

    def clock_now(self, start: float) -> float:
        value = cast(str | None, self.redis.get(self.key("clock")))
        return start if value is None else float(value)

    def clock_advance(self, seconds: float, start: float) -> float:
        pipe = self.redis.pipeline()
        pipe.set(self.key("clock"), repr(start), nx=True)
        pipe.incrbyfloat(self.key("clock"), seconds)
        return float(pipe.execute()[-1])


class RedisFaultRules:
    """Fault rules in a hash. ``take`` reads them in one round trip; only when a rule fires does
    it count it, in a WATCH/MULTI transaction (retried if another worker changed the rules)."""

    def __init__(self, store: RedisStore) -> None:
        self._store = store
        self._key = self.key = store.key("rules")

    @staticmethod
    def parse(raw: Mapping[str, str]) -> list[FaultRule]:
        return [FaultRule(**json.loads(raw[n])) for n in sorted(raw, key=int)]

    def _all(self) -> list[FaultRule]:
        return self.parse(cast(dict[str, str], self._store.redis.hgetall(self._key)))

    def add(self, rule: FaultRule) -> FaultRule:
        n = int(self._store.redis.incr(self._store.key("rule_seq")))
        rule.id = f"rule-{n}"
        self._store.redis.hset(self._key, str(n), json.dumps(rule.to_dict()))
        return rule

    def remove(self, rule_id: str) -> bool:
        prefix, _, number = rule_id.partition("-")
        if prefix != "rule" or not number.isdigit():
            return False
        return int(self._store.redis.hdel(self._key, str(int(number)))) > 0

    def rules(self, test_id: str | None = None) -> list[FaultRule]:
        return [r for r in self._all() if test_id is None or r.test_id == test_id]

    def clear(self, test_id: str | None = None) -> None:
        if test_id is None:
            self._store.redis.delete(self._key)
            return
        doomed = [r.id.partition("-")[2] for r in self._all() if r.test_id == test_id]
        if doomed:
            self._store.redis.hdel(self._key, *doomed)

    def take(self, scope: Mapping[str, str | None], actions: tuple[str, ...] = ACTIONS) -> list[FaultRule]:
        if not choose(self._all(), scope, actions):
            return []  # the common case: nothing fires, nothing to write
        fired: list[FaultRule] = []

        def spend(pipe: Any) -> None:
            fired[:] = choose(self.parse(pipe.hgetall(self._key)), scope, actions)
            pipe.multi()
            for rule in fired:
                n = rule.id.partition("-")[2]
                if exhausted(rule):
                    pipe.hdel(self._key, n)
                else:
                    pipe.hset(self._key, n, json.dumps(rule.to_dict()))

        self._store.redis.transaction(spend, self._key)
        return fired
