"""Fault rules: scoped, counted instructions to misbehave (error, latency, dropped connection,
or a task that will fail). A pure matcher; the app applies what it returns."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

from wanmock.mockserver.errors import ApiError, kind_for_status
from wanmock.schemas import catalog

ACTIONS = ("error", "latency", "drop", "fail")
ENDPOINTS = ("submit", "poll", "cancel", "list", "download")
# At most one of these fires per request: the first matching rule (in creation order) wins and
# the others keep their counts, so a rule is never used up without having any effect.
TERMINAL_ACTIONS = ("error", "drop")
STRING_FIELDS = ("provider", "endpoint", "model", "task_id", "test_id", "code", "message")


class RuleError(ValueError):
    """A fault rule that cannot be understood."""


@dataclass
class FaultRule:
    action: str  # error | latency | drop | fail (the task created by a matching submit fails)
    id: str = ""
    provider: str | None = None
    endpoint: str | None = None
    model: str | None = None  # a kind (t2v) or the provider's model id
    task_id: str | None = None
    test_id: str | None = None
    status: int | None = None  # error: HTTP status (the body is the provider's envelope)
    code: str | None = None  # error/fail: the provider's error code
    message: str | None = None
    retry_after: float | None = None
    latency_seconds: float = 0.0
    count: int | None = None  # how many more times it fires; None: until removed
    hits: int = 0

    def matches(self, scope: Mapping[str, str | None]) -> bool:
        if self.action == "fail" and scope.get("endpoint") != "submit":
            return False  # only a submit creates the task a fail rule is about
        for name in ("provider", "endpoint", "task_id", "test_id"):
            wanted = getattr(self, name)
            if wanted is not None and wanted != scope.get(name):
                return False
        return self.model is None or self.model in (scope.get("kind"), scope.get("model_id"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def parse(cls, data: Any) -> FaultRule:
        if not isinstance(data, Mapping):
            raise RuleError("a fault rule is a JSON object")
        known = {f.name for f in fields(cls)} - {"id", "hits"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RuleError(f"unknown field(s) {unknown}; known: {sorted(known)}")
        if "action" not in data:
            raise RuleError(f"a fault rule needs an action, one of {ACTIONS}")
        try:
            rule = cls(**data)
        except TypeError as exc:
            raise RuleError(str(exc)) from exc
        if rule.action not in ACTIONS:
            raise RuleError(f"action must be one of {ACTIONS}, not {rule.action!r}")
        for name in STRING_FIELDS:
            value = getattr(rule, name)
            if value is not None and not (isinstance(value, str) and value):
                raise RuleError(f"{name} must be a non-empty string, not {value!r}")
        for name in ("status", "count", "retry_after", "latency_seconds"):
            if isinstance(getattr(rule, name), bool):
                raise RuleError(f"{name} must be a number, not a boolean")
        if rule.endpoint is not None and rule.endpoint not in ENDPOINTS:
            raise RuleError(f"endpoint must be one of {ENDPOINTS}, not {rule.endpoint!r}")
        if rule.action == "fail" and rule.endpoint not in (None, "submit"):
            raise RuleError("a fail rule acts on the task a submit creates; use endpoint 'submit'")
        _check_scope(rule)
        if rule.action == "error" and rule.status is None:
            raise RuleError("an error rule needs an integer status from 400 to 599")
        if rule.status is not None and not (isinstance(rule.status, int) and 400 <= rule.status <= 599):
            raise RuleError(f"status must be an integer from 400 to 599, not {rule.status!r}")
        if rule.count is not None and (not isinstance(rule.count, int) or rule.count < 1):
            raise RuleError("count must be a positive integer")
        if not isinstance(rule.latency_seconds, int | float) or not 0 <= rule.latency_seconds <= 120:  # NaN fails too
            raise RuleError("latency_seconds must be a number from 0 to 120")
        if rule.retry_after is not None and (
            not isinstance(rule.retry_after, int | float) or not 0 <= rule.retry_after <= 86_400
        ):
            raise RuleError("retry_after must be a number of seconds from 0 to 86400")
        return rule


def _check_scope(rule: FaultRule) -> None:
    """Refuse a provider or model that no request could ever match (a typo fires never)."""
    known = catalog().providers
    if rule.provider is not None and rule.provider not in known:
        raise RuleError(f"unknown provider {rule.provider!r}; known: {', '.join(sorted(known))}")
    if rule.model is None:
        return
    if rule.endpoint == "download":
        raise RuleError("a download has no model; scope a download rule by task_id instead")
    providers = [known[rule.provider]] if rule.provider is not None else list(known.values())
    offered = sorted(
        {kind for p in providers for kind in p.models}
        | {i for p in providers for m in p.models.values() for i in m.ids}
    )
    if rule.model not in offered:
        raise RuleError(f"unknown model {rule.model!r}; a kind or model id: {', '.join(offered)}")


def choose(
    rules: list[FaultRule], scope: Mapping[str, str | None], actions: tuple[str, ...] = ACTIONS
) -> list[FaultRule]:
    """The rules of ``actions`` (among ``rules``, in creation order) that fire for ``scope``.

    Every matching latency rule fires; of the error and drop rules only the first; a fail
    rule (the first) only when no error or drop rule fires, since then no task is made.
    Each fired rule is counted here (``hits`` up, ``count`` down, in place); rules that do not
    fire keep their counts. A rule whose count reaches 0 is exhausted: its holder drops it.
    """
    matching = [r for r in rules if r.action in actions and r.matches(scope)]
    terminal = [r for r in matching if r.action in TERMINAL_ACTIONS][:1]
    failing = [] if terminal else [r for r in matching if r.action == "fail"][:1]
    chosen = {id(r) for r in terminal + failing}
    fired: list[FaultRule] = []
    for rule in matching:
        if rule.action == "latency" or id(rule) in chosen:
            rule.hits += 1
            if rule.count is not None:
                rule.count -= 1
            fired.append(rule)
    return fired


def exhausted(rule: FaultRule) -> bool:
    return rule.count is not None and rule.count <= 0


class FaultRuleSet(Protocol):
    """Where a server's fault rules live: in this process (``FaultRules``), or in a shared store
    (SQLite, Redis) so every worker sees the same rules and each count is spent exactly once."""

    def add(self, rule: FaultRule) -> FaultRule: ...
    def remove(self, rule_id: str) -> bool: ...
    def rules(self, test_id: str | None = None) -> list[FaultRule]: ...
    def clear(self, test_id: str | None = None) -> None: ...
    def take(self, scope: Mapping[str, str | None], actions: tuple[str, ...] = ACTIONS) -> list[FaultRule]: ...


class FaultRules:
    """Fault rules in this process's memory, safe across its threads."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            rule.id = f"rule-{next(self._ids)}"
            self._rules.append(rule)
        return rule

    def remove(self, rule_id: str) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rule_id]
            return len(self._rules) < before

    def rules(self, test_id: str | None = None) -> list[FaultRule]:
        if not self._rules:  # the common case: no rule at all, no lock
            return []
        with self._lock:
            return [r for r in self._rules if test_id is None or r.test_id == test_id]

    def clear(self, test_id: str | None = None) -> None:
        with self._lock:
            self._rules = [r for r in self._rules if test_id is not None and r.test_id != test_id]

    def take(self, scope: Mapping[str, str | None], actions: tuple[str, ...] = ACTIONS) -> list[FaultRule]:
        """The rules that fire for ``scope`` (see ``choose``); exhausted rules are dropped."""
        if not self._rules:  # the common case: no rule at all, no lock
            return []
        with self._lock:
            fired = choose(self._rules, scope, actions)
            if fired:
                self._rules = [r for r in self._rules if not exhausted(r)]
        return fired


def fault_error(rule: FaultRule) -> ApiError:
    """The error an ``error`` rule answers with, in the provider's envelope (its status; its
    code and message when the rule gives them, verbatim)."""
    status = rule.status or 500
    return ApiError(
        kind_for_status(status),
        rule.message or f"wanmock fault rule {rule.id}",
        status=status,
        code=rule.code,
        retry_after=rule.retry_after,
        verbatim=rule.message is not None,
    )
