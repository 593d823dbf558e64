"""Simulated provider drift: the mock changes its answers the way a real provider might, so
drift detection can be tested end to end offline (POST /__admin/drift).

A rule names a provider and a kind; optional fields say where. Defaults come from the
provider's manifest (the result URL's pointer, the status pointer), so a bare
``{"provider": "dashscope", "kind": "move_result_url"}`` works.

kinds:
  rename_field      a field of successful answers gets another name   (pointer, to)
  remove_field      a field of successful answers disappears          (pointer)
  add_field         a new field appears in successful answers         (pointer, value)
  add_status_word   polls in a state answer an undocumented word      (state, word)
  change_error_envelope  errors come in another envelope
  change_status_code     errors come with another status               (from_status, to_status)
  move_result_url   the result URL moves to another field             (to)
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from wanmock.schemas import Provider, catalog

KINDS = (
    "rename_field",
    "remove_field",
    "add_field",
    "add_status_word",
    "change_error_envelope",
    "change_status_code",
    "move_result_url",
)


class DriftRuleError(ValueError):
    """A drift rule that cannot be understood."""


@dataclass
class DriftRule:
    provider: str
    kind: str
    pointer: str | None = None  # JSON pointer into the answer body
    to: str | None = None  # new name (rename) or new pointer (move_result_url)
    value: Any = "wanmock-drift"
    state: str = "running"  # canonical state whose word add_status_word replaces
    word: str = "PAUSED"
    from_status: int | None = None  # change_status_code: which status (None: every error)
    to_status: int = 422

    @classmethod
    def parse(cls, data: Any) -> DriftRule:
        if not isinstance(data, Mapping):
            raise DriftRuleError("a drift rule is a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DriftRuleError(f"unknown field(s) {unknown}; known: {sorted(known)}")
        try:
            rule = cls(**data)
        except TypeError as exc:
            raise DriftRuleError(str(exc)) from exc
        if rule.provider not in catalog().providers:
            raise DriftRuleError(f"unknown provider {rule.provider!r}")
        if rule.kind not in KINDS:
            raise DriftRuleError(f"kind must be one of {', '.join(KINDS)}")
        provider = catalog().provider(rule.provider)
        if rule.state not in provider.states:
            raise DriftRuleError(f"{rule.provider} has no state {rule.state!r}")
        for name in ("pointer", "to"):
            value = getattr(rule, name)
            if value is not None and (not isinstance(value, str) or not value.startswith("/") or len(value) < 2):
                raise DriftRuleError(f"{name} must be a JSON pointer such as /output/video_url")
        if not isinstance(rule.to_status, int) or not 200 <= rule.to_status <= 599:
            raise DriftRuleError("to_status must be an HTTP status")
        if rule.kind in ("rename_field", "remove_field") and rule.pointer is None:
            rule.pointer = provider.task_fields["id_in_submit"]
        if rule.kind == "rename_field" and rule.to is None and rule.pointer is not None:
            rule.to = rule.pointer + "_v2"
        if rule.kind == "add_field" and rule.pointer is None:
            rule.pointer = "/wanmock_new_field"
        if rule.kind == "move_result_url" and rule.to is None:
            rule.to = "/moved_result_url"
        return rule

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _split(pointer: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer.lstrip("/").split("/")]


def _pop(body: Any, pointer: str) -> tuple[bool, Any]:
    *parents, last = _split(pointer)
    node = body
    for part in parents:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return False, None
    if isinstance(node, dict) and last in node:
        return True, node.pop(last)
    return False, None


def _put(body: Any, pointer: str, value: Any) -> None:
    *parents, last = _split(pointer)
    node = body
    for part in parents:
        if isinstance(node, dict):
            node = node.setdefault(part, {})
        else:
            return
    if isinstance(node, dict):
        node[last] = value


class Drift:
    """The active drift rules of one app (per process, like fault rules)."""

    def __init__(self) -> None:
        self._rules: list[DriftRule] = []
        self._lock = threading.Lock()
        self.active = False  # any rule set: read on every answer, so a plain attribute

    def add(self, rule: DriftRule) -> DriftRule:
        with self._lock:
            self._rules.append(rule)
            self.active = True
        return rule

    def rules(self) -> list[DriftRule]:
        with self._lock:
            return list(self._rules)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self.active = False

    def apply(self, provider: Provider, endpoint: str | None, status: int, body: Any) -> tuple[int, Any]:
        """The answer after every active rule for ``provider`` has changed it."""
        if not self._rules:  # the usual case: no drift simulated, no lock
            return status, body
        active = [r for r in self.rules() if r.provider == provider.name]
        if not active or endpoint not in ("submit", "poll", "cancel", "list", None):
            return status, body
        body = copy.deepcopy(body)
        for rule in active:
            status, body = self._one(rule, provider, endpoint, status, body)
        return status, body

    @staticmethod
    def _one(rule: DriftRule, provider: Provider, endpoint: str | None, status: int, body: Any) -> tuple[int, Any]:
        ok = status < 400
        if rule.kind == "change_status_code" and not ok and rule.from_status in (None, status):
            return rule.to_status, body
        if rule.kind == "change_error_envelope" and not ok:
            return status, {"error": {"status": status, "detail": body}}
        if not ok or not isinstance(body, dict):
            return status, body
        if rule.kind == "remove_field" and rule.pointer:
            _pop(body, rule.pointer)
        elif rule.kind == "rename_field" and rule.pointer and rule.to:
            found, value = _pop(body, rule.pointer)
            if found:
                _put(body, rule.to, value)
        elif rule.kind == "add_field" and rule.pointer:
            _put(body, rule.pointer, rule.value)
        elif rule.kind == "add_status_word" and endpoint == "poll":
            pointer = provider.task_fields["status_in_poll"]
            found, word = _pop(body, pointer)
            if found:
                _put(body, pointer, rule.word if word == provider.states[rule.state].word else word)
        elif rule.kind == "move_result_url" and endpoint == "poll" and rule.to:
            found, value = _pop(body, provider.task_fields["result_url_in_poll"])
            if found:
                _put(body, rule.to, value)
        return status, body
