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

Every call is one round trip (pipelines are MULTI/EXEC transactions); spending a fault rule's
count is a WATCH/MULTI transaction, retried when another worker spent one first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

import redis
from wanmock.mockserver.faults import ACTIONS, FaultRule, choose, exhausted
from wanmock.mockserver.store import DEFAULT_EVICT_GRACE, DEFAULT_JOURNAL_LIMIT, JournalEntry, StoreError, evict_at
from wanmock.mockserver.tasks import Task

DEFAULT_PREFIX = "wanmock:"
SWEEP_BATCH = 500
CONNECT_TIMEOUT_SECONDS = 5.0


def _member(provider: str, task_id: str) -> str:
    return f"{provider}:{task_id}"  # provider names have no colon


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisStore:
    shared = True

    def __init__(
        self,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        journal_limit: int = DEFAULT_JOURNAL_LIMIT,
        evict_grace: float = DEFAULT_EVICT_GRACE,
    ) -> None:
        if journal_limit < 1 or evict_grace < 0:
            raise ValueError("journal_limit must be positive and evict_grace not negative")
        self.url = url
        self.prefix = prefix
        self.journal_limit = journal_limit
        self.evict_grace = evict_grace
        try:
            self.redis: redis.Redis = redis.Redis.from_url(
                url, decode_responses=True, socket_connect_timeout=CONNECT_TIMEOUT_SECONDS
            )
        except ValueError as exc:
            raise StoreError(f"cannot use the Redis store {url!r}: {exc}") from exc
        try:
            self.redis.ping()
        except redis.RedisError as exc:
            self.redis.close()
            raise StoreError(f"cannot use the Redis store {url!r}: {exc}") from exc
        self._faults = RedisFaultRules(self)

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def close(self) -> None:
        self.redis.close()

    # -- tasks ----------------------------------------------------------------------------

    def next_seq(self) -> int:
        return int(self.redis.incr(self.key("seq")))

    def _write(self, pipe: Any, task: Task) -> None:
        member = _member(task.provider, task.id)
        pipe.set(self.key("task", task.provider, task.id), json.dumps(task.to_dict()))
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
        pipe = self.redis.pipeline()
        self._write(pipe, task)
        pipe.zrangebyscore(self.key("evict"), "-inf", task.created_at, start=0, num=SWEEP_BATCH)
        due: list[str] = pipe.execute()[-1]
        if due:
            self._forget(due)
        return task

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

    def get(self, provider: str, task_id: str) -> Task | None:
        data = cast(str | None, self.redis.get(self.key("task", provider, task_id)))
        return None if data is None else Task.from_dict(json.loads(data))

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
        return [Task.from_dict(json.loads(data)) for data in found if data is not None]

    # -- journal --------------------------------------------------------------------------

    def append(self, entry: JournalEntry) -> None:
        pipe = self.redis.pipeline()
        pipe.lpush(self.key("journal"), json.dumps(entry.to_dict()))
        pipe.ltrim(self.key("journal"), 0, self.journal_limit - 1)
        pipe.execute()

    def _journal_raw(self) -> list[str]:
        return cast(list[str], self.redis.lrange(self.key("journal"), 0, -1))

    def journal(self) -> list[JournalEntry]:
        return [JournalEntry.from_dict(json.loads(raw)) for raw in reversed(self._journal_raw())]

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
        self._key = store.key("rules")

    @staticmethod
    def _parse(raw: Mapping[str, str]) -> list[FaultRule]:
        return [FaultRule(**json.loads(raw[n])) for n in sorted(raw, key=int)]

    def _all(self) -> list[FaultRule]:
        return self._parse(cast(dict[str, str], self._store.redis.hgetall(self._key)))

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
            fired[:] = choose(self._parse(pipe.hgetall(self._key)), scope, actions)
            pipe.multi()
            for rule in fired:
                n = rule.id.partition("-")[2]
                if exhausted(rule):
                    pipe.hdel(self._key, n)
                else:
                    pipe.hset(self._key, n, json.dumps(rule.to_dict()))

        self._store.redis.transaction(spend, self._key)
        return fired
