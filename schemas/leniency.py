"""What a provider accepts beyond its documentation, read from the schema files.

A request schema documents what the provider's pages list. Where the provider is known to accept
more (DashScope takes unknown ``parameters`` at submit; APIYI takes base64 media), the schema file
says so in a top-level ``x-accepted-undocumented`` list; each rule is data with its sources::

    {"at": "$.parameters.*", "keywords": ["additionalProperties"],
     "accepts": {...}, "where": {...},
     "warning": "{field} is not a documented parameter ...", "x-source": [{"ref": "D7", "url": ...}]}

An issue is *accepted* when its JSON path matches ``at`` (``*`` is one name, ``[*]`` one index),
its keyword is one of ``keywords``, the value at that path satisfies ``accepts`` (when given) and
the object holding it satisfies ``where`` (when given). The first matching rule wins. An accepted
issue is not an error: the mock answers as the provider does and reports the ``warning``
(``{field}`` is the path without ``$.``, ``{value}`` the value as JSON).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when the first rule is compiled (start-up time)
    from jsonschema import Draft202012Validator
from wanmock.schemas.validation import Issue

RULES_KEY = "x-accepted-undocumented"
_NAME = r'(?:\.[A-Za-z_][A-Za-z0-9_]*|\["(?:[^"\\]|\\.)*"\])'
_PART = re.compile(r'\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')
VALUE_LIMIT = 60


@dataclass(frozen=True)
class Finding:
    """An issue the provider does not refuse: the mock accepts it and says why it may be a mistake."""

    issue: Issue
    warning: str
    sources: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.warning


@dataclass(frozen=True)
class Verdict:
    """The result of checking an instance: what the provider refuses, and what it accepts silently."""

    errors: list[Issue] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)

    @property
    def all_issues(self) -> list[Issue]:
        """Every issue against the documented contract (errors and accepted findings)."""
        return sorted([*self.errors, *(f.issue for f in self.warnings)])


@dataclass(frozen=True)
class Rule:
    at: re.Pattern[str]
    keywords: frozenset[str]
    accepts: Draft202012Validator | None
    where: Draft202012Validator | None
    warning: str
    sources: tuple[str, ...]


def _glob(at: str) -> re.Pattern[str]:
    pattern = re.escape(at).replace(r"\.\*", _NAME).replace(r"\[\*\]", r"\[\d+\]")
    return re.compile(pattern + r"\Z")


@functools.cache
def _compiled(document_id: str, rules_json: str) -> tuple[Rule, ...]:
    from jsonschema import Draft202012Validator

    rules = []
    for spec in json.loads(rules_json):
        rules.append(
            Rule(
                at=_glob(spec["at"]),
                keywords=frozenset(spec["keywords"]),
                accepts=Draft202012Validator(spec["accepts"]) if "accepts" in spec else None,
                where=Draft202012Validator(spec["where"]) if "where" in spec else None,
                warning=spec["warning"],
                sources=tuple(src["url"] for src in spec["x-source"]),
            )
        )
    return tuple(rules)


def rules_of(document: Mapping[str, Any]) -> tuple[Rule, ...]:
    specs = document.get(RULES_KEY)
    if not specs:
        return ()
    return _compiled(str(document.get("$id", "")), json.dumps(specs, sort_keys=True))


def path_parts(path: str) -> list[str | int] | None:
    """The parts of a JSON path as :func:`json_path` writes it; None when it cannot be read."""
    if not path.startswith("$"):
        return None
    parts: list[str | int] = []
    at = 1
    while at < len(path):
        match = _PART.match(path, at)
        if match is None:
            return None
        name, index, quoted = match.groups()
        parts.append(name if name is not None else int(index) if index is not None else json.loads(quoted))
        at = match.end()
    return parts


_MISSING = object()


def _lookup(instance: Any, parts: Sequence[str | int]) -> Any:
    node = instance
    for part in parts:
        found = isinstance(node, Mapping) and isinstance(part, str) and part in node
        found = found or (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node))
        if not found:
            return _MISSING
        node = node[part]
    return node


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= VALUE_LIMIT else text[: VALUE_LIMIT - 3] + "..."


def sort_issues(document: Mapping[str, Any], instance: Any, issues: Sequence[Issue]) -> Verdict:
    """Split ``issues`` (of ``instance`` against ``document``) into errors and accepted findings."""
    if not issues:  # the usual case: a valid instance needs no rule
        return Verdict([], [])
    rules = rules_of(document)
    if not rules:
        return Verdict(list(issues), [])
    errors: list[Issue] = []
    warnings: list[Finding] = []
    for issue in issues:
        found = _accepted(rules, instance, issue)
        if found is None:
            errors.append(issue)
        else:
            warnings.append(found)
    return Verdict(errors, warnings)


def _accepted(rules: Sequence[Rule], instance: Any, issue: Issue) -> Finding | None:
    parts = path_parts(issue.path)
    if parts is None:
        return None
    value = _lookup(instance, parts)
    holder = _lookup(instance, parts[:-1]) if parts else _MISSING
    for rule in rules:
        if issue.keyword not in rule.keywords or not rule.at.match(issue.path):
            continue
        if rule.accepts is not None and (value is _MISSING or not rule.accepts.is_valid(value)):
            continue
        if rule.where is not None and (holder is _MISSING or not rule.where.is_valid(holder)):
            continue
        text = rule.warning.replace("{field}", issue.path.removeprefix("$.")).replace("{value}", _short(value))
        return Finding(issue, text, rule.sources)
    return None
