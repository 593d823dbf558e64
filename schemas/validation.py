"""Compiled validators that answer fast and explain themselves.

Every schema is compiled twice, once: jsonschema (the reference, whose errors we turn into
readable :class:`Issue` objects) and jsonschema-rs, a Rust validator used only as a yes/no
gate on the hot path. A valid instance costs one fast
check; only an invalid one pays for jsonschema's error walk. ``tests/test_validation.py``
checks with hypothesis that both engines always agree.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # jsonschema and referencing are imported when first needed (start-up time)
    import jsonschema.exceptions
    from referencing import Registry

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, order=True)
class Issue:
    """One reason an instance does not match its schema.

    ``path`` is a JSON path into the instance (``$.input.media[0].url``); ``keyword`` is the
    JSON Schema keyword that failed; ``message`` says what was expected.
    """

    path: str
    message: str
    keyword: str
    schema_path: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def json_path(parts: Iterable[str | int]) -> str:
    """Render instance path parts as a JSON path: ``$.input.media[0]['16:9']``."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.match(part):
            out += f".{part}"
        else:
            out += "[" + json.dumps(part) + "]"
    return out


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _issues_from(error: jsonschema.exceptions.ValidationError) -> list[Issue]:
    keyword = str(error.validator)
    expected: Any = error.validator_value
    where = list(error.absolute_path)
    schema_path = "/".join(str(p) for p in error.absolute_schema_path)
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    custom_messages = schema.get("x-errors", {})
    custom = custom_messages.get(keyword)
    if custom is None and keyword in ("minContains", "maxContains"):
        custom = custom_messages.get("contains")
    if custom:
        return [Issue(json_path(where), custom.replace("{go_value}", _go_value(error.instance)), keyword, schema_path)]
    if keyword == "required" and isinstance(error.instance, Mapping):
        missing = [name for name in expected if name not in error.instance]
        return [Issue(json_path([*where, name]), f"'{name}' is required", keyword, schema_path) for name in missing]
    if keyword == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = sorted(schema.get("properties", {}))
        extra = [name for name in error.instance if name not in allowed]
        return [
            Issue(
                json_path([*where, name]),
                f"unexpected property '{name}' (allowed here: {', '.join(allowed)})",
                keyword,
                schema_path,
            )
            for name in extra
        ]
    if keyword in ("anyOf", "oneOf") and error.context:
        from jsonschema.exceptions import best_match

        best = best_match(error.context)
        if best is not None and best.validator not in ("type", "const"):
            return _issues_from(best)
    if keyword == "enum":
        allowed_values = ", ".join(json.dumps(v) for v in expected)
        message = f"{_short(error.instance)} is not one of {allowed_values}"
        return [Issue(json_path(where), message, keyword, schema_path)]
    if keyword == "maxLength" and isinstance(error.instance, str):
        message = f"is {len(error.instance)} characters long; at most {error.validator_value} allowed"
        return [Issue(json_path(where), message, keyword, schema_path)]
    if keyword == "pattern" and isinstance(error.instance, str):
        message = f"{_short(error.instance)} does not match {error.validator_value}"
        return [Issue(json_path(where), message, keyword, schema_path)]
    return [Issue(json_path(where), error.message, keyword, schema_path)]


def _go_value(value: Any) -> str:
    """How Go's encoding/json names a JSON value it cannot decode: ``number 5.0``, ``string``."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return f"number {json.dumps(value)}"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "null"


def _has_float(value: Any) -> bool:
    stack = [value]  # no recursion: a body may nest deeper than Python's stack
    while stack:
        node = stack.pop()
        if isinstance(node, float):
            return True
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _strict_integer(checker: Any, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


@functools.cache
def reference_validator(go_integers: bool) -> Any:
    """jsonschema's Draft 2020-12 validator class; with ``go_integers``, the one for a schema
    whose file says ``"x-integers": "go"``, which decodes integers as Go's encoding/json does:
    5.0 is not an int (JSON Schema alone counts it as the integer 5)."""
    import jsonschema.validators
    from jsonschema import Draft202012Validator

    if not go_integers:
        return Draft202012Validator
    checker = Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer)
    return jsonschema.validators.extend(Draft202012Validator, type_checker=checker)  # type: ignore[no-untyped-call]


class CompiledSchema:
    """One schema, compiled once, validating instances into a sorted list of issues."""

    def __init__(
        self,
        uri: str,
        contents: Mapping[str, Any],
        registry: Registry[Any] | Callable[[], Registry[Any]],  # or what builds it, when first needed
        fast_resources: Sequence[tuple[str, Any]] | None = None,
    ) -> None:
        self.uri = uri
        self.contents = contents
        self.go_integers = contents.get("x-integers") == "go"
        self._registry = registry
        self.fast: Any = None
        if fast_resources is not None:
            import jsonschema_rs  # here, not at import: it costs start-up time

            self.fast = jsonschema_rs.validator_for(
                dict(contents), registry=jsonschema_rs.Registry(list(fast_resources))
            )

    @functools.cached_property
    def reference(self) -> Any:
        """The jsonschema validator (the reference, whose errors become issues), built when first
        needed: a valid instance is answered by jsonschema-rs alone."""
        registry = self._registry() if callable(self._registry) else self._registry
        return reference_validator(self.go_integers)(self.contents, registry=registry)

    @property
    def title(self) -> str:
        return str(self.contents.get("title", self.uri))

    def is_valid(self, instance: Any) -> bool:
        if self.fast is not None and not (self.go_integers and _has_float(instance)):
            try:
                return bool(self.fast.is_valid(instance))
            except (ValueError, TypeError, OverflowError, UnicodeError):
                pass  # e.g. a string with a lone surrogate, which Rust strings cannot hold
        return bool(self.reference.is_valid(instance))

    def issues(self, instance: Any) -> list[Issue]:
        """Every issue with the instance, sorted by path; empty when it is valid."""
        if self.is_valid(instance):
            return []
        return self.reference_issues(instance)

    def reference_issues(self, instance: Any) -> list[Issue]:
        """The issues jsonschema alone finds (no fast gate): the ground truth."""
        found: set[Issue] = set()
        for error in self.reference.iter_errors(instance):
            found.update(_issues_from(error))
        return sorted(found)
