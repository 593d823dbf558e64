"""Hypothesis strategies generated from the captured request schemas.

Nothing here knows a provider's fields: every name, enum, range and pattern is read from the
schema documents through :func:`wanmock.schemas.catalog` (``tests/test_strategies.py`` checks that this
file restates none of them).

* :func:`from_schema` turns the JSON Schema subset of the request files into a strategy.
  ``$ref`` is resolved (and re-based, so a reference inside ``defs.json`` stays relative to it);
  ``allOf`` parts are merged where they can be, the rest kept as parts. ``oneOf``/``anyOf`` pick a
  branch; for ``oneOf`` the other branches are switched off when they are plain ``required`` lists
  (their properties are omitted) or ``contains`` clauses (their items are counted zero). An
  object's ``if``/``then`` is applied after drawing: when ``if`` holds, what ``then`` constrains
  is redrawn from the merged sub-schema. An array whose ``contains`` clauses single items out by a
  ``const`` member (the media arrays) is drawn as a multiset of that member's enum values, each
  counted within its ``minContains``/``maxContains`` and the ``maxItems`` budget, then shuffled.
* :func:`requests` filters that through the compiled validator, which settles what generation
  only approximates (an ``if`` over ``contains``, a ``pattern`` inside an ``allOf`` part).
* :func:`invalid_requests` walks the schema alongside a valid body, lists the places one targeted
  change breaks it (:data:`MUTATIONS`), and keeps a change only when the validator rejects the
  body with an issue at, above or below the changed path.
* :func:`video_requests` maps valid bodies back through the dialect's ``FIELDS`` table; media
  items are decoded by asking the dialect how it writes a probe request.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import re
import typing
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from hypothesis import reject
from hypothesis import strategies as st
from wanmock.contracts.client.dialects import MEDIA_FIELDS, Dialect, dialect_for
from wanmock.contracts.client.errors import UnsupportedRequest
from wanmock.contracts.client.models import ImageToVideo, TextToVideo, VideoEdit, VideoRequest
from wanmock.schemas import catalog, json_path, resolve_pointer

Resolve = Callable[[str], Mapping[str, Any]]
Path = tuple[str | int, ...]
MUTATIONS = ("drop_required", "above_maximum", "below_minimum", "too_long", "wrong_type",
             "unknown_enum", "broken_pattern", "unknown_field", "forbidden_combination", "too_many_items")  # fmt: skip
_TEXT_CAP = 40
_BOUNDS = (("above_maximum", "maximum", 1, "above"), ("below_minimum", "minimum", -1, "below"))
_NOTES = {"description", "title", "examples", "default", "deprecated", "$comment"}
_APART = ("oneOf", "anyOf", "if", "contains", "not")  # allOf parts holding these stay parts
_LOWER = {"minimum", "minLength", "minItems", "minContains"}
_UPPER = {"maximum", "maxLength", "maxItems", "maxContains"}
_INFER = {"properties": "object", "items": "array", "pattern": "string", "maxLength": "string", "maximum": "number"}
_WRONG = ("7", 7, [7])  # a wrong-type value: the first whose JSON type the schema does not allow
_PRESENT = st.sampled_from((False, True, True))  # an optional property: present 2 times in 3, shrinks to absent
_ANY = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
_REQUESTS: dict[str, type[VideoRequest]] = {c.kind: c for c in (TextToVideo, ImageToVideo, VideoEdit)}
_KEYWORDS = {  # the static scan of applicable_mutations: keyword -> the mutation it makes possible
    **dict.fromkeys(("enum", "const"), "unknown_enum"),
    **dict.fromkeys(("contains", "oneOf", "if"), "forbidden_combination"),
    **{"required": "drop_required", "maximum": "above_maximum", "minimum": "below_minimum", "type": "wrong_type"},
    **{"maxLength": "too_long", "pattern": "broken_pattern", "maxItems": "too_many_items"},
}


@dataclass(frozen=True)
class Mutation:
    body: dict[str, Any]
    mutation: str  # one of MUTATIONS
    path: str  # JSON path of the change: $.a.b[0].c
    description: str


@dataclass(frozen=True)
class _Site:
    mutation: str
    path: Path
    description: str
    value: st.SearchStrategy[Any] | None = None  # None: delete what is at path


def _core(s: Mapping[str, Any]) -> set[str]:
    return {k for k in s if not k.startswith("x-") and k not in _NOTES}


def _type_ok(v: Any, types: Sequence[str]) -> bool:
    if v is None or isinstance(v, bool):
        kind = "null" if v is None else "boolean"
    elif isinstance(v, int) or (isinstance(v, float) and v.is_integer()):
        kind = "integer"
    else:
        kind = {float: "number", str: "string", list: "array"}.get(type(v), "object")
    return kind in types or (kind == "integer" and "number" in types)


def _types(s: Mapping[str, Any]) -> list[str]:
    declared = s.get("type")
    if declared is not None:
        return [declared] if isinstance(declared, str) else list(declared)
    return [next((kind for key, kind in _INFER.items() if key in s), "any")]


def _satisfies(s: Any, v: Any) -> bool:
    """The subset of JSON Schema an ``if`` uses here: const, enum, required, properties, contains."""
    if not isinstance(s, Mapping):
        return bool(s)
    if ("const" in s and v != s["const"]) or ("enum" in s and v not in s["enum"]):
        return False
    if isinstance(v, Mapping) and any(n not in v for n in s.get("required", ())):
        return False
    if isinstance(v, Mapping) and any(n in v and not _satisfies(p, v[n]) for n, p in s.get("properties", {}).items()):
        return False
    return not (isinstance(v, list) and "contains" in s and not any(_satisfies(s["contains"], x) for x in v))


def _exclusions(chosen: Any, branches: Sequence[Any]) -> list[dict[str, Any]]:
    """Parts that make every other branch of an exclusive ``oneOf`` fail."""
    out: list[dict[str, Any]] = []
    for other in (b for b in branches if b is not chosen and isinstance(b, Mapping)):
        missing = [n for n in other.get("required", ()) if n not in chosen.get("required", ())]
        if _core(other) == {"required"} and missing:
            out.append({"properties": dict.fromkeys(missing, False)})
        elif _core(other) == {"contains"}:
            out.append({"contains": other["contains"], "minContains": 0, "maxContains": 0})
    return out


def _outside(value: Any, members: Sequence[Any]) -> Any:
    """A value near ``value`` that is not a member: swapped case, a suffix, or one past the largest."""
    numbers = [m for m in members if isinstance(m, int) and not isinstance(m, bool)]
    candidates = [value.swapcase(), f"{value}-x"] if isinstance(value, str) else [max(numbers, default=0) + 1]
    return next((c for c in candidates if c not in members), None)


def _append(old: list[Any], item: Any) -> list[Any]:
    return [*old, item]


class _Schemas:
    """Resolution, merging, generation and mutation sites over one set of schema documents."""

    def __init__(self, resolve: Resolve) -> None:
        self.resolve = resolve
        self._cache: dict[str, st.SearchStrategy[Any]] = {}

    def flatten(self, schema: Any) -> Any:
        if not isinstance(schema, Mapping):
            return schema
        out: Any = {k: v for k, v in schema.items() if k not in ("$ref", "allOf")}
        if "$ref" in schema:
            out = self.merge(self.flatten(self.resolve(schema["$ref"])), out)
        for part in map(self.flatten, schema.get("allOf", ())):
            if isinstance(part, Mapping) and any(k in part for k in _APART):
                part = {"allOf": [{k: v for k, v in part.items() if k != "allOf"}, *part.get("allOf", ())]}
            out = self.merge(out, part)
        return out

    def merge(self, a: Any, b: Any) -> Any:
        if not isinstance(a, Mapping) or not isinstance(b, Mapping):
            return False if False in (a, b) else (b if a is True else a)
        out = dict(a)
        for key, value in b.items():
            mine: Any = out.get(key)
            if key not in out:
                out[key] = value
            elif key == "properties":
                out[key] = {
                    **mine,
                    **{n: self.merge(self.flatten(mine.get(n, True)), self.flatten(s)) for n, s in value.items()},
                }
            elif key in ("required", "allOf"):
                out[key] = [*mine, *(v for v in value if v not in mine)]
            elif key in _LOWER or key in _UPPER:
                out[key] = max(mine, value) if key in _LOWER else min(mine, value)
            elif key == "enum":
                out[key] = [v for v in mine if v in value]
            elif key in _APART:  # a second contains, if, oneOf...: kept as a part of its own
                out["allOf"] = [*out.get("allOf", ()), {key: value}]
            else:
                out[key] = value
        return out

    def alternatives(self, s: Mapping[str, Any]) -> list[Any] | None:
        """One schema per branch of the first ``oneOf``/``anyOf`` found in ``s`` or its ``allOf`` parts."""
        parts = list(s.get("allOf", ()))
        for index, holder in enumerate((s, *parts)):
            key = next((k for k in ("oneOf", "anyOf") if k in holder), None)
            if key is not None:
                rest = {k: v for k, v in holder.items() if k != key}
                base = rest if index == 0 else {**s, "allOf": [*parts[: index - 1], rest, *parts[index:]]}
                branches = [self.flatten(b) for b in holder[key]]
                return [
                    self.merge(base, {"allOf": [b, *(_exclusions(b, branches) if key == "oneOf" else ())]})
                    for b in branches
                ]
        return None

    def strategy(self, schema: Any) -> st.SearchStrategy[Any]:
        key = json.dumps(schema, sort_keys=True)
        if key not in self._cache:
            self._cache[key] = self._strategy(self.flatten(schema))
        return self._cache[key]

    def _strategy(self, s: Any) -> st.SearchStrategy[Any]:
        if not isinstance(s, Mapping):
            return _ANY if s else st.nothing()
        alternatives = self.alternatives(s)
        if alternatives:
            return st.one_of([self.strategy(alt) for alt in alternatives])
        if "const" in s:
            return st.just(s["const"])
        if "enum" in s:
            drawn = st.sampled_from([v for v in s["enum"] if "type" not in s or _type_ok(v, _types(s))])
        else:
            drawn = st.one_of([self._typed(t, s) for t in _types(s)])
        return st.just(s["default"]) | drawn if "default" in s else drawn

    def _typed(self, kind: str, s: Mapping[str, Any]) -> st.SearchStrategy[Any]:
        if kind in ("integer", "number"):
            low, high = s.get("minimum"), s.get("maximum")
            ints = st.integers(None if low is None else math.ceil(low), None if high is None else math.floor(high))
            return ints if kind == "integer" else ints | st.floats(low, high, allow_nan=False, allow_infinity=False)
        if kind == "string":
            low = s.get("minLength", 0)
            cap = max(low, min(s.get("maxLength", _TEXT_CAP), _TEXT_CAP))
            if "pattern" not in s:
                return st.text(min_size=low, max_size=cap)
            rx = re.compile(s["pattern"])
            drawn = st.from_regex(rx, fullmatch=False).map(lambda t: t[:cap])
            return drawn.filter(lambda t: len(t) >= low and bool(rx.search(t)))
        if kind in ("object", "array"):
            return self._object(s) if kind == "object" else self._array(s)
        return {"null": st.none(), "boolean": st.booleans()}.get(kind, _ANY)

    def _object(self, s: Mapping[str, Any]) -> st.SearchStrategy[Any]:
        declared = s.get("properties", {})
        members = {n: self.strategy(p) for n, p in declared.items() if p is not False}
        required = [n for n in s.get("required", ()) if declared.get(n, True) is not False]
        conditions = [
            (self.flatten(p["if"]), self._fixes(declared, p.get("then", True)), self._fixes(declared, p.get("else")))
            for p in (s, *s.get("allOf", ()))
            if "if" in p
        ]

        @st.composite
        def build(draw: st.DrawFn) -> dict[str, Any]:
            out = {n: draw(m) for n, m in members.items() if n in required or draw(_PRESENT)}
            out |= {n: draw(_ANY) for n in required if n not in out}
            for test, then, otherwise in conditions:  # a branch that applies redraws what it constrains
                for n, (member, forced) in (then if _satisfies(test, out) else otherwise).items():
                    out |= {n: draw(member)} if forced or n in out else {}
            return out

        return build()

    def _fixes(self, declared: Mapping[str, Any], sub: Any) -> dict[str, tuple[st.SearchStrategy[Any], bool]]:
        """Of an if/then branch: property -> (strategy of the merged schema, whether it is required)."""
        sub = self.flatten(sub) if isinstance(sub, Mapping) else {}
        named = sub.get("properties", {})
        merged = {n: self.merge(self.flatten(declared.get(n, True)), self.flatten(named.get(n, True))) for n in named}
        merged |= {n: self.flatten(declared.get(n, True)) for n in sub.get("required", ()) if n not in named}
        return {n: (self.strategy(m), n in sub.get("required", ())) for n, m in merged.items() if m is not False}

    def rules(self, s: Mapping[str, Any]) -> tuple[str, dict[Any, tuple[int, int | None]]] | None:
        """An array's ``contains`` clauses singling items out by one const member: it, value -> count range."""
        key, bounds = None, dict[Any, tuple[int, int | None]]()
        for part in (p for p in (s, *s.get("allOf", ())) if "contains" in p):
            props = self.flatten(part["contains"]).get("properties", {})
            found = [(n, p["const"]) for n, p in props.items() if isinstance(p, Mapping) and "const" in p]
            if len(found) != 1 or key not in (None, found[0][0]):
                return None
            (key, value), (low, high) = found[0], bounds.get(found[0][1], (0, None))
            top = part.get("maxContains", high)
            bounds[value] = (max(low, part.get("minContains", 1)), top if high is None else min(high, top))
        return (key, bounds) if key is not None else None

    def _item(self, items: Any, key: str, value: Any) -> st.SearchStrategy[Any]:
        return self.strategy(self.merge(items, {"properties": {key: {"const": value}}}))

    def _array(self, s: Mapping[str, Any]) -> st.SearchStrategy[Any]:
        items, rules = self.flatten(s.get("items", True)), self.rules(s)
        low, high = s.get("minItems", 0), s.get("maxItems")
        if rules is None or not isinstance(items, Mapping):
            return st.lists(self.strategy(items), min_size=low, max_size=high if high is not None else low + 3)
        key, found = rules
        values = list(self.flatten(items.get("properties", {}).get(key, {})).get("enum", found))
        bounds = {v: found.get(v, (0, None)) for v in values}
        members = {v: self._item(items, key, v) for v in values}
        budget = high if high is not None else sum(lo for lo, _ in bounds.values()) + 4

        @st.composite
        def build(draw: st.DrawFn) -> list[Any]:
            pool: list[Any] = []
            pending = sum(lo for lo, _ in bounds.values())  # items later values still need
            for v in draw(st.permutations(values)):
                lo, hi = bounds[v]
                pending -= lo
                top = budget - len(pool) - pending
                pool += [v] * draw(st.integers(lo, max(lo, top if hi is None else min(hi, top))))
            return [draw(members[v]) for v in draw(st.permutations(pool))]

        return build()

    # -- mutation sites -------------------------------------------------------------------

    def sites(self, schema: Any, value: Any, path: Path) -> list[_Site]:
        s = self.flatten(schema)
        if not isinstance(s, Mapping):
            return []
        for part in [p for p in (s, *s.get("allOf", ())) if "if" in p]:  # a branch that applies constrains too
            s = self.merge(s, self.flatten(part.get("then" if _satisfies(self.flatten(part["if"]), value) else "else")))
        alts = [self.flatten(b) for b in s.get("anyOf", s.get("oneOf", ()))] or [s]
        found: list[tuple[str, Any, str]] = []  # (mutation, new value, description)
        if path and all("type" in a for a in alts):
            allowed = [t for a in alts for t in _types(a)]
            wrong = next((c for c in _WRONG if not _type_ok(c, allowed)), None)
            found.append(("wrong_type", wrong, f"{wrong!r} is not of type {'/'.join(allowed)}"))
        if all("enum" in a or "const" in a for a in alts):
            members = [m for a in alts for m in a.get("enum", [a.get("const")])]
            new = _outside(value, members)
            found.append(("unknown_enum", new, f"{new!r} is not one of {members}"))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            for mutation, bound, step, word in _BOUNDS:
                if bound in s:
                    found.append((mutation, s[bound] + step, f"{s[bound] + step} is {word} the {bound} {s[bound]}"))
        if isinstance(value, str) and "maxLength" in s:
            new = value + "x" * (s["maxLength"] + 1 - len(value))
            found.append(("too_long", new, f"has {len(new)} characters, more than maxLength {s['maxLength']}"))
        if isinstance(value, str) and "pattern" in s:
            broken = (c for c in ("ftp://" + value, "x" + value, " " + value, "") if not re.search(s["pattern"], c))
            new = next(broken, None)
            found.append(("broken_pattern", new, f"{new!r} does not match {s['pattern']}"))
        name = str(path[-1]) if path else "$"
        out = [_Site(m, path, f"{name} {text}", st.just(new)) for m, new, text in found if new is not None]
        if isinstance(value, dict):
            out += self._object_sites(s, value, path)
        if isinstance(value, list):
            out += self._array_sites(s, value, path, name)
        return out

    def _object_sites(self, s: Mapping[str, Any], value: dict[str, Any], path: Path) -> list[_Site]:
        declared, holders = s.get("properties", {}), (s, *s.get("allOf", ()))
        choices = [self.flatten(b) for h in holders for k in ("oneOf", "anyOf") for b in h.get(k, ())]
        needed = [*s.get("required", ()), *(n for b in choices if _core(b) == {"required"} for n in b["required"])]
        out = [_Site("drop_required", (*path, n), f"required {n} removed") for n in dict.fromkeys(needed) if n in value]
        if s.get("additionalProperties") is False:
            extra = next(f"unexpected_{i}" for i in range(len(declared) + 1) if f"unexpected_{i}" not in declared)
            out.append(_Site("unknown_field", (*path, extra), f"unknown property {extra} added", st.just(True)))
        if any("oneOf" in h or "if" in h for h in holders):  # an absent property may make a combination forbidden
            absent = [(n, p) for n, p in declared.items() if n not in value and p is not False]
            out += [_Site("forbidden_combination", (*path, n), f"{n} added", self.strategy(p)) for n, p in absent]
        return out + [
            site for n, child in value.items() if n in declared for site in self.sites(declared[n], child, (*path, n))
        ]

    def _array_sites(self, s: Mapping[str, Any], value: list[Any], path: Path, name: str) -> list[_Site]:
        items, rules = self.flatten(s.get("items", True)), self.rules(s)
        out = [site for i, child in enumerate(value) for site in self.sites(items, child, (*path, i))]
        found: list[tuple[str, st.SearchStrategy[Any], str]] = []  # (mutation, new array, description)
        if "maxItems" in s and value:
            new = [value[i % len(value)] for i in range(s["maxItems"] + 1)]
            found.append(("too_many_items", st.just(new), f"holds {len(new)} items, above maxItems {s['maxItems']}"))
        key, bounds = rules if rules is not None and isinstance(items, Mapping) else ("", {})
        present = {item[key]: item for item in value if isinstance(item, Mapping) and key in item}
        for v, (_, high) in bounds.items():  # one more item of a type than maxContains allows
            if v in present and high is not None:
                count = sum(isinstance(x, Mapping) and x.get(key) == v for x in value)
                new = [*value, *[present[v]] * (high + 1 - count)]
                kind = "too_many_items" if high > 1 else "forbidden_combination"
                found.append((kind, st.just(new), f"holds {high + 1} items of {v!r}, at most {high} allowed"))
        for v in self.flatten(items.get("properties", {}).get(key, {})).get("enum", ()) if bounds else ():
            if v not in present:  # a type added
                added = self._item(items, key, v).map(functools.partial(_append, value))
                found.append(("forbidden_combination", added, f"gets an item of {v!r}"))
        for i, item in enumerate(value if bounds else ()):  # an item removed
            gone = st.just(value[:i] + value[i + 1 :])
            what = item.get(key) if isinstance(item, Mapping) else i
            found.append(("forbidden_combination", gone, f"loses its item of {what!r}"))
        return out + [_Site(m, path, f"{name} {text}", new) for m, new, text in found]


def _rebase(node: Any, file: str) -> Any:
    if isinstance(node, Mapping):
        local = {k: f"{file}{v}" for k, v in node.items() if k == "$ref" and isinstance(v, str) and v.startswith("#")}
        return {k: local.get(k, _rebase(v, file)) for k, v in node.items()}
    return [_rebase(v, file) for v in node] if isinstance(node, list) else node


def schema_resolver(provider: str, file: str) -> Resolve:
    """Resolves the ``$ref``s of ``file`` against the provider's documents (re-based to stay resolvable)."""
    documents = catalog().provider(provider).documents

    def resolve(ref: str) -> Mapping[str, Any]:
        target, _, pointer = ref.partition("#")
        target = target.rsplit("/", 1)[-1] or file
        node = resolve_pointer(documents[target], pointer) if pointer.strip("/") else documents[target]
        return typing.cast(Mapping[str, Any], _rebase(node, target))

    return resolve


def from_schema(schema: Mapping[str, Any], resolve: Callable[[str], Mapping[str, Any]]) -> st.SearchStrategy[Any]:
    """Values of ``schema`` (the subset described in the module docstring); ``resolve`` answers ``$ref``s."""
    return _Schemas(resolve).strategy(schema)


@functools.cache
def _context(provider: str, kind: str) -> tuple[_Schemas, Mapping[str, Any]]:
    file = catalog().schema_file(provider, "submit", kind)
    return _Schemas(schema_resolver(provider, file)), catalog().provider(provider).documents[file]


@functools.cache
def requests(provider: str, kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """Valid submit bodies of ``provider``'s ``kind`` model."""
    schemas, document = _context(provider, kind)
    return schemas.strategy(document).filter(catalog().load(provider, "submit", kind).is_valid)


@functools.cache
def applicable_mutations(provider: str, kind: str) -> frozenset[str]:
    """The mutations the request schema's keywords make possible (a static scan, no generation)."""
    schemas, document = _context(provider, kind)
    found: set[str] = set()

    def walk(node: Any, depth: int) -> None:
        for key, value in node.items() if isinstance(node, Mapping) else ():
            found.update([_KEYWORDS[key]] if key in _KEYWORDS and (key != "type" or depth > 0) else [])
            found.update(["unknown_field"] if key == "additionalProperties" and value is False else [])
            found.update(["too_many_items"] if key == "maxContains" and value > 1 else [])
            for child in value.values() if key == "properties" else value if key in ("allOf", "anyOf", "oneOf") else ():
                walk(child, depth + (key == "properties"))
            if key in ("items", "then", "else", "$ref"):
                walk(schemas.resolve(value) if key == "$ref" else value, depth + (key == "items"))

    walk(document, 0)
    return frozenset(found)


def paths_related(a: str, b: str) -> bool:
    """Whether one JSON path equals the other or leads to it (``$.a`` and ``$.a.b[0]``)."""
    short, long = sorted((a, b), key=len)
    return long.startswith(short) and (len(long) == len(short) or long[len(short)] in ".[")


def _rotated(draw: st.DrawFn, options: list[Any]) -> list[Any]:
    start = draw(st.sampled_from(range(len(options)))) if options else 0
    return options[start:] + options[:start]


@st.composite
def _mutations(draw: st.DrawFn, provider: str, kind: str, wanted: frozenset[str]) -> Mutation:
    schemas, document = _context(provider, kind)
    compiled, kinds = catalog().load(provider, "submit", kind), sorted(wanted & applicable_mutations(provider, kind))
    body = draw(requests(provider, kind))
    # The target mixes a checksum of the body into the drawn offset: Hypothesis's choices cluster
    # within a run, and a checksum of varied bodies spreads the kinds evenly.
    target = kinds[
        (zlib.crc32(json.dumps(body, sort_keys=True).encode()) + draw(st.integers(0, len(kinds) - 1))) % len(kinds)
    ]
    for attempt in range(8):  # seven bodies for the target kind, then any kind the last one allows
        body = draw(requests(provider, kind)) if attempt else body
        groups: dict[str, list[_Site]] = {}
        for site in schemas.sites(document, body, ()):
            groups.setdefault(site.mutation, []).append(site)
        for mutation in [target] if attempt < 7 else _rotated(draw, sorted(wanted & set(groups))):
            for site in _rotated(draw, groups.get(mutation, [])):
                changed = copy.deepcopy(body)
                node: Any = changed
                for part in site.path[:-1]:
                    node = node[part]
                if site.value is None:
                    del node[site.path[-1]]
                else:
                    node[site.path[-1]] = draw(site.value)
                where = json_path(site.path)
                if not compiled.is_valid(changed) and any(  # refused: not what the provider accepts undocumented
                    paths_related(i.path, where) for i in catalog().validate(provider, "submit", changed, kind=kind)
                ):
                    return Mutation(changed, mutation, where, site.description)
    reject()


def invalid_requests(provider: str, kind: str, mutations: Sequence[str] = MUTATIONS) -> st.SearchStrategy[Mutation]:
    """Valid bodies broken by one targeted change each, attributable to the changed path.

    A media type repeated beyond ``maxContains: 1``, added where a ``oneOf``/``if`` forbids it, or
    removed where it is needed is a ``forbidden_combination``; more items than ``maxItems`` or a
    ``maxContains`` above one allow are ``too_many_items``. Raises ValueError when none of
    ``mutations`` applies to the schema (see :func:`applicable_mutations`).
    """
    if set(mutations) - set(MUTATIONS) or not set(mutations) & applicable_mutations(provider, kind):
        raise ValueError(f"none of {sorted(mutations)} applies to the {provider} {kind} request schema")
    return _mutations(provider, kind, frozenset(mutations))


# -- normalised requests ------------------------------------------------------------------


def _get(body: Any, pointer: str) -> Any:
    try:
        return resolve_pointer(body, pointer)
    except (KeyError, IndexError, ValueError, TypeError):
        return None


def _decoder(dialect: Dialect, kind: str) -> Callable[[dict[str, Any]], VideoRequest]:
    """Body -> normalised request, inverting ``dialect.FIELDS[kind]`` and ``dialect.media``."""
    cls = _REQUESTS[kind]
    names, hints, mapping = {f.name for f in fields(cls) if f.init}, typing.get_type_hints(cls), dialect.FIELDS[kind]
    many = {n for n in names if typing.get_origin(hints[n]) is tuple}
    media_at = next((pointer for n, pointer in mapping.items() if n not in names), None)
    markers = {f"\0{n}": n for n in names & set(MEDIA_FIELDS)}  # probe how the dialect writes media items
    probe: dict[str, Any] = {n: (m,) if n in many else m for m, n in markers.items()}
    words, slot, word = {}, "", ""
    for item in dialect.media(cls(**probe)) if media_at else ():
        slot = next(k for k, v in item.items() if v in markers)
        word = next(k for k in item if k != slot)
        words[item[word]] = markers[item[slot]]

    def normalise(name: str, value: Any) -> Any:
        if isinstance(value, str) and int in typing.get_args(hints[name]) and str not in typing.get_args(hints[name]):
            return int(value)  # a documented string form of a number
        if isinstance(value, str) and dialect.convert(name, value.upper()) == value:
            return value.upper()  # the spelling the dialect converts from (upper-case tiers)
        return tuple(value) if isinstance(value, list) else value

    def decode(body: dict[str, Any]) -> VideoRequest:
        args = {n: normalise(n, _get(body, p)) for n, p in mapping.items() if n in names and _get(body, p) is not None}
        for item in (_get(body, media_at) or []) if media_at else []:
            field = words[item[word]]
            args[field] = (*args.get(field, ()), item[slot]) if field in many else item[slot]
        return cls(**args)

    return decode


def _expressible(dialect: Dialect, request: VideoRequest) -> bool:
    try:
        dialect.prepare_submit(request)
    except UnsupportedRequest:
        return False
    return True


@functools.cache
def video_requests(provider: str, kind: str | None = None) -> st.SearchStrategy[VideoRequest]:
    """Normalised requests ``provider`` can express, decoded from valid bodies (any kind when None)."""
    if kind is None:
        return st.one_of([video_requests(provider, k) for k in catalog().provider(provider).models])
    dialect = dialect_for(provider)
    return requests(provider, kind).map(_decoder(dialect, kind)).filter(functools.partial(_expressible, dialect))
