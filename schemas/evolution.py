"""Schema evolution: what changed between two captured contracts, and whom it breaks.

:func:`diff` walks two versions of a schema side by side, following ``$ref`` within a document
and, through a resolver, into sibling files (``defs.json#/$defs/seed``). A request schema says
what clients send, so narrowing what it accepts breaks them; a response schema says what clients
read, so widening what the provider may answer breaks them, except where clients must be tolerant
anyway (a new field in an open object, a new value of a field that is not a status word).
:func:`diff_files` and :func:`diff_dirs` pair files by name. :func:`infer` and :func:`propose` go
the other way, from observed instances to a schema; :func:`write_proposal` writes
``<name>.proposed.json`` and never touches the captured file.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urljoin, urlsplit

from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012
from wanmock.schemas.catalog import resolve_pointer
from wanmock.schemas.validation import CompiledSchema, json_path

Resolver = Callable[[str], Mapping[str, Any]]
"""Given the absolute URI of a referenced document (``.../defs.json``), return that document."""

DRAFT = "https://json-schema.org/draft/2020-12/schema"
ENUM_LIMIT = 12
_STATUS = re.compile(r"(^|_)(status|state)$", re.IGNORECASE)
_UPPER = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties", "maxContains")
_LOWER = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties", "minContains")
_EXACT = ("pattern", "format", "multipleOf")
_HANDLED = {"$ref", "type", "enum", "const", "properties", "required", "additionalProperties", "items", "default"}
_HANDLED |= {"anyOf", "oneOf", "allOf", *_UPPER, *_LOWER, *_EXACT}
_IGNORED = {"title", "description", "examples", "$comment", "$schema", "$id", "$defs", "$anchor", "deprecated"}
_CONSEQUENCE = {
    (True, "narrow"): "narrows what is accepted: requests clients already send may be rejected",
    (True, "widen"): "widens what is accepted: every request valid before stays valid",
    (True, "change"): "changes what is accepted: requests valid before may be rejected",
    (False, "narrow"): "narrows what the provider answers: every answer clients handle stays handled",
    (False, "widen"): "widens what the provider may answer: clients may receive what they were not written for",
    (False, "change"): "changes what the provider may answer: clients may receive what they were not written for",
}
_RELAX: tuple[tuple[str, str, bool], ...] = (
    ("maximum", "number", True),
    ("exclusiveMaximum", "number", True),
    ("minimum", "number", False),
    ("exclusiveMinimum", "number", False),
    ("maxLength", "string", True),
    ("minLength", "string", False),
    ("maxItems", "array", True),
    ("minItems", "array", False),
)


@dataclass(frozen=True)
class Change:
    """One difference between two schema versions, and whether it breaks clients.

    ``path`` is the schema location (``properties.parameters.properties.duration.maximum``, or the
    file name for a file added or removed), ``instance`` the JSON path it constrains
    (``$.parameters.duration``), ``file`` the schema file when files or directories were compared.
    """

    path: str
    kind: str
    breaking: bool
    reason: str
    file: str = ""
    instance: str = ""

    def __str__(self) -> str:
        at = f" ({self.instance})" if self.instance not in ("", "$") else ""
        where = f"{self.file}: " if self.file and self.file != self.path else ""
        return f"{'BREAKING' if self.breaking else 'ok':<8}  {where}{self.path}{at}  {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Doc:
    """The document a schema node lives in; relative ``$ref``s resolve against its base URI."""

    root: Mapping[str, Any]
    base: str
    resolve: Resolver | None


def _doc(root: Mapping[str, Any], resolve: Resolver | None) -> _Doc:
    return _Doc(root, str(root.get("$id", "")), resolve)


def _deref(node: Any, doc: _Doc) -> tuple[Any, _Doc]:
    """Follow ``$ref`` chains (siblings of a ``$ref`` merged over its target); unresolvable: as is."""
    for _ in range(32):
        if not isinstance(node, Mapping) or not isinstance(node.get("$ref"), str):
            break
        target_part, _, fragment = node["$ref"].partition("#")
        target_doc, uri = doc, urljoin(doc.base, target_part)
        if target_part and uri != doc.base:
            try:
                target_doc = _doc(doc.resolve(uri), doc.resolve) if doc.resolve else doc
            except (OSError, LookupError, ValueError):
                break
            if target_doc is doc:
                break
        try:
            target = resolve_pointer(target_doc.root, fragment) if fragment.strip("/") else target_doc.root
        except (LookupError, ValueError, TypeError):
            break
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        node, doc = ({**target, **siblings} if isinstance(target, Mapping) else target), target_doc
    return node, doc


def resolver_for(directory: str | Path) -> Resolver:
    """A resolver that reads referenced documents from ``directory`` by file name (cached)."""
    cache: dict[str, Mapping[str, Any]] = {}

    def resolve(uri: str) -> Mapping[str, Any]:
        name = PurePosixPath(urlsplit(uri).path).name
        if name not in cache:
            cache[name] = _load(Path(directory) / name)
        return cache[name]

    return resolve


def _load(path: Path) -> Mapping[str, Any]:
    document = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(document, Mapping):
        raise ValueError(f"{path} does not hold a JSON object")
    return document


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _show(values: Iterable[Any]) -> str:
    return ", ".join(json.dumps(v, ensure_ascii=False) for v in values)


def _json_type(value: Any) -> str:
    for python, name in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), (list, "array")):
        if isinstance(value, python):
            return name
    return "null" if value is None else "object"


def _type_set(node: Mapping[str, Any]) -> list[str] | None:
    types = node.get("type")
    return None if types is None else [types] if isinstance(types, str) else list(types)


def _covers(types: Sequence[str], name: str) -> bool:
    return name in types or (name == "integer" and "number" in types)


def _type_ok(value: Any, allowed: Sequence[str]) -> bool:
    name = _json_type(value)
    return _covers(allowed, name) or (name == "number" and "integer" in allowed and float(value).is_integer())


def _value_set(node: Mapping[str, Any]) -> dict[str, Any] | None:
    """``const`` or ``enum`` as {canonical JSON: value}; None when the node has neither."""
    if "const" in node:
        return {_canon(node["const"]): node["const"]}
    return {_canon(v): v for v in node["enum"]} if isinstance(node.get("enum"), list) else None


def _at(path: str, *parts: str) -> str:
    return ".".join(p for p in (path, *parts) if p)


def _child(where: str, name: str) -> str:
    return where + json_path([name])[1:]


def _closed(node: Mapping[str, Any]) -> bool:
    return node.get("additionalProperties") is False or node.get("unevaluatedProperties") is False


Loc = tuple[str, str]  # (schema location, instance JSON path)


@dataclass
class _Diff:
    request: bool
    changes: list[Change] = field(default_factory=list)

    def emit(
        self, loc: Loc, kw: str, kind: str, effect: str, what: str, why: str = "", tolerated: bool = False
    ) -> None:
        breaking = effect != "widen" if self.request else effect != "narrow" and not tolerated
        reason = f"{what}; {why or _CONSEQUENCE[self.request, effect]}"
        self.changes.append(Change(_at(loc[0], kw), kind, breaking, reason, instance=loc[1]))

    def walk(self, old: Any, od: _Doc, new: Any, nd: _Doc, loc: Loc) -> None:
        (old, od), (new, nd) = _deref(old, od), _deref(new, nd)
        old = old if isinstance(old, Mapping) else {"not": {}} if old is False else {}
        new = new if isinstance(new, Mapping) else {"not": {}} if new is False else {}
        if not old and not new:
            return
        if old.get("$ref") != new.get("$ref"):
            what = f"$ref {old.get('$ref')} -> {new.get('$ref')} (not resolved)"
            self.emit(loc, "$ref", "ref-changed", "change", what)
        self.types(old, new, loc)
        self.values(old, new, loc)
        self.bounds(old, new, loc)
        self.objects(old, od, new, nd, loc)
        a, b = old.get("items", {}), new.get("items", {})
        if a is False or b is False:
            if a != b:
                self.emit(loc, "items", "items-changed", "narrow" if b is False else "widen", f"items {a} -> {b}")
        else:
            self.walk(a, od, b, nd, (_at(loc[0], "items"), loc[1] + "[*]"))
        for kw in ("anyOf", "oneOf", "allOf"):
            xs, ys = old.get(kw, []), new.get(kw, [])
            if len(xs) == len(ys):
                for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
                    self.walk(x, od, y, nd, (_at(loc[0], kw, str(i)), loc[1]))
            else:
                self.emit(loc, kw, f"{kw}-changed", "change", f"{kw}: {len(xs)} -> {len(ys)} alternatives")
        self.rest(old, new, loc)

    def types(self, old: Mapping[str, Any], new: Mapping[str, Any], loc: Loc) -> None:
        a, b = _type_set(old), _type_set(new)
        if a is None and b is not None:
            self.emit(loc, "type", "type-added", "narrow", f"type constrained to {_show(b)}")
        elif a is not None and b is None:
            self.emit(loc, "type", "type-removed", "widen", f"type constraint {_show(a)} removed")
        elif a is not None and b is not None:
            lost, gained = [t for t in a if not _covers(b, t)], [t for t in b if not _covers(a, t)]
            effect = "change" if lost and gained else "narrow" if lost else "widen" if gained else ""
            if effect:
                kind = {"change": "type-changed", "narrow": "type-narrowed", "widen": "type-widened"}[effect]
                self.emit(loc, "type", kind, effect, f"type changed from {_show(a)} to {_show(b)}")

    def values(self, old: Mapping[str, Any], new: Mapping[str, Any], loc: Loc) -> None:
        a, b = _value_set(old), _value_set(new)
        if a == b:
            return
        kw_old, kw_new = ("const" if "const" in n else "enum" for n in (old, new))
        name = re.sub(r"[^A-Za-z0-9_]+$", "", loc[1]).rsplit(".", 1)[-1].strip("[\"'")
        status = not self.request and bool(_STATUS.search(name))
        switch = (
            f"clients that switch on {name} meet a status word they have no branch for "
            "(an exhaustive match fails; a poller may wait forever or call the task failed)"
        )
        if b is not None and a is None:
            self.emit(loc, kw_new, "enum-added", "narrow", f"values restricted to {_show(b.values())}")
        elif a is not None and b is None:
            why = switch if status else ""
            self.emit(loc, kw_old, "enum-removed", "widen", f"restriction to {_show(a.values())} removed", why)
        elif a is not None and b is not None:
            removed, added = [v for k, v in a.items() if k not in b], [v for k, v in b.items() if k not in a]
            if removed:
                why = "" if self.request else "the provider no longer answers it; a client branch for it goes unused"
                self.emit(loc, kw_old, "enum-value-removed", "narrow", f"value(s) {_show(removed)} removed", why)
            if added:
                why = switch if status else "" if self.request else "clients mapping this field need a fallback"
                what = f"value(s) {_show(added)} added"
                self.emit(loc, kw_new, "enum-value-added", "widen", what, why, tolerated=not status)

    def bounds(self, old: Mapping[str, Any], new: Mapping[str, Any], loc: Loc) -> None:
        for kw in (*_UPPER, *_LOWER, *_EXACT):
            a, b = old.get(kw), new.get(kw)
            if a == b:
                continue
            if a is None or b is None:
                kind, effect = f"{kw}-{'added' if a is None else 'removed'}", "narrow" if a is None else "widen"
                what = f"{kw} {json.dumps(b if a is None else a)} {'added' if a is None else 'removed'}"
            elif kw in _EXACT:
                kind, effect, what = f"{kw}-changed", "change", f"{kw} changed from {json.dumps(a)} to {json.dumps(b)}"
            else:
                verb = "lowered" if b < a else "raised"
                kind, effect = f"{kw}-{verb}", "narrow" if (b < a) == (kw in _UPPER) else "widen"
                what = f"{kw} {verb} from {a} to {b}"
            self.emit(loc, kw, kind, effect, what)

    def objects(self, old: Mapping[str, Any], od: _Doc, new: Mapping[str, Any], nd: _Doc, loc: Loc) -> None:
        op, np = old.get("properties", {}), new.get("properties", {})
        oreq, nreq = set(old.get("required", [])), set(new.get("required", []))
        twins = {_canon(np[n]): n for n in np if n not in op}  # a removed field with the same schema: a rename?
        for name in op:
            sub = (_at(loc[0], "properties", name), _child(loc[1], name))
            kind = "required-property-removed" if name in oreq else "property-removed"
            twin = twins.get(_canon(op[name]))
            what = f"{'required ' * (name in oreq)}property '{name}' removed" + (
                f" (renamed to '{twin}'?)" * bool(twin)
            )
            if name in np:
                self.walk(op[name], od, np[name], nd, sub)
            elif self.request and _closed(new):
                self.emit(
                    sub, "", kind, "narrow", what, "additionalProperties is false: requests sending it are rejected"
                )
            else:
                self.emit(sub, "", kind, "widen", what, "" if self.request else f"clients that read '{name}' lose it")
        for name in (n for n in np if n not in op):
            sub = (_at(loc[0], "properties", name), _child(loc[1], name))
            if name in nreq:
                why = "clients that do not send it are rejected" if self.request else "clients can rely on it"
                self.emit(sub, "", "required-property-added", "narrow", f"required property '{name}' added", why)
            elif self.request:
                self.emit(sub, "", "property-added", "widen" if _closed(old) else "narrow", f"property '{name}' added")
            else:
                why = "responses are open: clients must ignore fields they do not know"
                self.emit(sub, "", "property-added", "widen", f"optional property '{name}' added", why, tolerated=True)
        for name in sorted(nreq - oreq - (np.keys() - op.keys())):
            why = "clients that omit it are rejected" if self.request else "clients can now rely on it"
            what, sub = f"'{name}' made required", (loc[0], _child(loc[1], name))
            self.emit(sub, "required", "required-added", "narrow", what, why)
        for name in sorted(oreq - nreq - (op.keys() - np.keys())):
            why = "" if self.request else "clients that read it unconditionally break when it is absent"
            what, sub = f"'{name}' made optional", (loc[0], _child(loc[1], name))
            self.emit(sub, "required", "required-removed", "widen", what, why)
        a, b = old.get("additionalProperties", {}), new.get("additionalProperties", {})
        if a is False and b is not False:
            self.emit(loc, "additionalProperties", "opened", "widen", "undeclared properties allowed", tolerated=True)
        elif b is False and a is not False:
            self.emit(loc, "additionalProperties", "closed", "narrow", "undeclared properties forbidden")
        elif a is not False:
            self.walk(a, od, b, nd, (_at(loc[0], "additionalProperties"), _child(loc[1], "*")))

    def rest(self, old: Mapping[str, Any], new: Mapping[str, Any], loc: Loc) -> None:
        for kw in sorted((old.keys() | new.keys()) - _HANDLED - _IGNORED):
            if not kw.startswith("x-") and _canon(old.get(kw)) != _canon(new.get(kw)):
                why = "wanmock cannot tell whom this affects: review it by hand"
                self.emit(loc, kw, f"{kw}-changed", "change", f"{kw} changed", why)
        if self.request and "default" in old and _canon(old["default"]) != _canon(new.get("default")):
            what = f"default {json.dumps(old['default'])} -> {json.dumps(new.get('default'))}"
            reason = f"{what}; clients that omit the field get different behaviour"
            self.changes.append(Change(_at(loc[0], "default"), "default-changed", False, reason, instance=loc[1]))


def diff(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    *,
    direction: str = "auto",
    resolve_old: Resolver | None = None,
    resolve_new: Resolver | None = None,
) -> list[Change]:
    """Every change from ``old`` to ``new``, classified for a request or a response schema.

    ``direction`` "auto" takes a schema whose ``$id`` or title contains "submit." for a request.
    ``resolve_old``/``resolve_new`` load the documents that ``$ref``s outside the schema name.
    """
    if direction not in ("auto", "request", "response"):
        raise ValueError(f"direction must be auto, request or response, not {direction!r}")
    named = any("submit." in str(doc.get(key, "")) for doc in (old, new) for key in ("$id", "title"))
    walker = _Diff(direction == "request" or (direction == "auto" and named))
    walker.walk(old, _doc(old, resolve_old), new, _doc(new, resolve_new), ("", "$"))
    return walker.changes


def diff_files(old_path: str | Path, new_path: str | Path, *, direction: str = "auto") -> list[Change]:
    """Compare two schema files; ``$ref``s to sibling files resolve in each file's own directory."""
    old_path, new_path = Path(old_path), Path(new_path)
    if direction == "auto" and new_path.name.startswith("submit."):
        direction = "request"
    old, new = _load(old_path), _load(new_path)
    changes = diff(
        old,
        new,
        direction=direction,
        resolve_old=resolver_for(old_path.parent),
        resolve_new=resolver_for(new_path.parent),
    )
    return [replace(c, file=new_path.name) for c in changes]


def diff_dirs(old_dir: str | Path, new_dir: str | Path) -> list[Change]:
    """Compare two provider directories file by file, reporting added and removed files.

    ``defs.json`` is compared through the messages that reference it; ``manifest.json`` is not a
    schema and is only reported when added or removed; ``*.proposed.json`` files are not part of
    the contract and are skipped.
    """
    olds = {p.name: p for p in Path(old_dir).glob("*.json") if not p.name.endswith(".proposed.json")}
    news = {p.name: p for p in Path(new_dir).glob("*.json") if not p.name.endswith(".proposed.json")}
    changes: list[Change] = []
    for name in sorted(olds.keys() | news.keys()):
        word = name.removeprefix("poll-response.").removesuffix(".json")
        if name not in news:
            why = f"{name} removed; clients, mocks and checks that use this message lose its contract"
            changes.append(Change(name, "file-removed", True, why, file=name))
        elif name not in olds and name.startswith("poll-response."):
            why = f"new state {word!r}; clients that switch on the status word meet a word they have no branch for"
            changes.append(Change(name, "file-added", True, why, file=name))
        elif name not in olds:
            changes.append(
                Change(name, "file-added", False, f"{name} added; existing clients are unaffected", file=name)
            )
        elif name not in ("manifest.json", "defs.json"):
            changes += diff_files(olds[name], news[name])
    return changes


def _infer(values: Sequence[Any], like: Any, doc: _Doc) -> dict[str, Any]:
    like, doc = _deref(like, doc)
    like = like if isinstance(like, Mapping) else {}
    types = list(dict.fromkeys(_json_type(v) for v in values))
    if "number" in types and "integer" in types:
        types.remove("integer")
    out: dict[str, Any] = {"type": types[0] if len(types) == 1 else types} if types else {}
    objects = [v for v in values if isinstance(v, Mapping)]
    if objects:
        names = list(dict.fromkeys(n for o in objects for n in o))
        props = like.get("properties", {})
        out["properties"] = {n: _infer([o[n] for o in objects if n in o], props.get(n), doc) for n in names}
        if required := [n for n in names if all(n in o for o in objects)]:
            out["required"] = required
    if elements := [x for v in values if isinstance(v, list) for x in v]:
        out["items"] = _infer(elements, like.get("items"), doc)
    strings = list(dict.fromkeys(v for v in values if isinstance(v, str)))
    if types == ["string"] and _value_set(like) is not None and len(strings) <= ENUM_LIMIT:
        out["enum"] = strings
    return out


def infer(
    samples: Sequence[Any], *, like: Mapping[str, Any] | None = None, resolve: Resolver | None = None
) -> dict[str, Any]:
    """A JSON Schema every sample validates against: types, properties, ``required`` = present in
    every sample, one merged schema for array items. A string field gets an ``enum`` of its observed
    values only where ``like`` (the captured schema) has an enum or const at the same place."""
    root = like or {}
    return {"$schema": DRAFT, **_infer(list(samples), root, _doc(root, resolve))}


def _absolute(node: Any, base: str) -> Any:
    """A copy of ``node`` whose ``$ref``s no longer depend on the document it came from."""
    if isinstance(node, Mapping):
        return {k: urljoin(base, v) if k == "$ref" else _absolute(v, base) for k, v in node.items()}
    return [_absolute(v, base) for v in node] if isinstance(node, list) else node


def _measure(value: Any, kind: str) -> float | None:
    if kind == "number":
        return value if _json_type(value) in ("integer", "number") else None
    return len(value) if _json_type(value) == kind else None


Samples = list[tuple[int, Any]]  # (sample index, value at this location)


@dataclass
class _Widen:
    total: int
    changes: list[dict[str, Any]] = field(default_factory=list)

    def record(self, path: str, where: str, change: str, evidence: Iterable[int]) -> None:
        entry = {"path": path or "(root)", "at": where, "change": change}
        self.changes.append({**entry, "evidence": len(set(evidence)), "of": self.total})

    def node(self, node: Any, values: Samples, doc: _Doc, path: str, where: str) -> Any:
        if not isinstance(node, dict) or not values:
            return node
        if "$ref" in node:  # widen a copy of the target; keep the $ref when nothing needs to change
            target, target_doc = _deref(node, doc)
            if not isinstance(target, Mapping) or "$ref" in target:
                return node
            before = len(self.changes)
            inlined = self.node(_absolute(target, target_doc.base), values, target_doc, path, where)
            for entry in self.changes[before:]:
                entry["change"] += f" (inlined from $ref {node['$ref']})"
            return inlined if len(self.changes) > before else node
        allowed = _type_set(node)
        if allowed is not None and (odd := [(i, _json_type(v)) for i, v in values if not _type_ok(v, allowed)]):
            types = list(dict.fromkeys([*allowed, *(t for _, t in odd)]))
            node["type"] = types[0] if len(types) == 1 else types
            added = _show(dict.fromkeys(t for _, t in odd))
            self.record(_at(path, "type"), where, f"type widened with {added}", (i for i, _ in odd))
        known = _value_set(node)
        if known is not None and (unseen := [(i, v) for i, v in values if _canon(v) not in known]):
            fresh = list({_canon(v): v for _, v in unseen}.values())
            node.pop("const", None)
            node["enum"] = [*known.values(), *fresh]
            self.record(_at(path, "enum"), where, f"enum widened with {_show(fresh)}", (i for i, _ in unseen))
        for kw, kind, upper in _RELAX:
            limit, measured = node.get(kw), [(i, m) for i, v in values if (m := _measure(v, kind)) is not None]
            if not isinstance(limit, int | float) or isinstance(limit, bool):
                continue
            bad = [(i, m) for i, m in measured if (m > limit if upper else m < limit) or (kw[0] == "e" and m == limit)]
            if bad:
                extreme = (max if upper else min)(m for _, m in bad)
                target = ("maximum" if upper else "minimum") if kw[0] == "e" else kw
                node.pop(kw)
                node[target] = extreme
                self.record(_at(path, kw), where, f"{kw} {limit} relaxed to {target} {extreme}", (i for i, _ in bad))
        if isinstance(pattern := node.get("pattern"), str):
            try:
                bad_strings = [(i, v) for i, v in values if isinstance(v, str) and not re.search(pattern, v)]
            except re.error:
                bad_strings = []
            if bad_strings:
                del node["pattern"]
                change = f"pattern {pattern} dropped: {json.dumps(bad_strings[0][1])} does not match"
                self.record(_at(path, "pattern"), where, change, (i for i, _ in bad_strings))
        self.object(node, values, doc, path, where)
        elements = [(i, x) for i, v in values if isinstance(v, list) for x in v]
        if isinstance(node.get("items"), dict) and elements:
            node["items"] = self.node(node["items"], elements, doc, _at(path, "items"), where + "[*]")
        return node

    def object(self, node: dict[str, Any], values: Samples, doc: _Doc, path: str, where: str) -> None:
        objects = [(i, v) for i, v in values if isinstance(v, Mapping)]
        required: list[str] = node.get("required", [])
        for name in [n for n in required if any(n not in o for _, o in objects)]:
            required.remove(name)
            lacking = (i for i, o in objects if name not in o)
            self.record(_at(path, "required"), _child(where, name), f"'{name}' no longer required", lacking)
        if "required" in node and not required:
            del node["required"]
        if not objects or not (isinstance(node.get("properties"), dict) or node.get("type") == "object"):
            return
        props: dict[str, Any] = node.setdefault("properties", {})
        extra, extras = node.get("additionalProperties"), []
        for name in dict.fromkeys(n for _, o in objects for n in o):
            seen = [(i, o[name]) for i, o in objects if name in o]
            at, below = _at(path, "properties", name), _child(where, name)
            if name in props:
                props[name] = self.node(props[name], seen, doc, at, below)
            elif any(re.search(p, name) for p in node.get("patternProperties", {})):
                continue
            elif isinstance(extra, dict):
                extras += seen
            else:
                props[name] = _infer([v for _, v in seen], None, doc)
                self.record(at, below, f"optional property '{name}' added", (i for i, _ in seen))
        if isinstance(extra, dict) and extras:
            node["additionalProperties"] = self.node(extra, extras, doc, _at(path, "additionalProperties"), where)


def _registry(resolve: Resolver | None) -> Registry[Any]:
    if resolve is None:
        return Registry()

    def retrieve(uri: str) -> Resource[Any]:
        return Resource.from_contents(resolve(uri), default_specification=DRAFT202012)

    return Registry(retrieve=retrieve)  # type: ignore[call-arg]


def propose(captured: Mapping[str, Any], samples: Sequence[Any], resolve: Resolver | None = None) -> dict[str, Any]:
    """The captured schema widened just enough to accept the samples, every change recorded.

    Undeclared properties are added as optional, an enum (or const) gains the observed values,
    ``required`` loses a field only when a sample lacks it, a violated bound moves to the observed
    extreme and a violated pattern is dropped; everything captured that still holds is kept. Each
    change is listed under ``x-proposed-changes`` with the number of samples that showed it; what
    is still rejected (inside ``anyOf``, ``if``/``then``...) is listed under ``x-proposed-unresolved``.
    """
    samples = list(samples)
    widen = _Widen(len(samples))
    proposal: dict[str, Any] = copy.deepcopy(dict(captured))
    proposal = widen.node(proposal, list(enumerate(samples)), _doc(captured, resolve), "", "$")
    proposal["x-proposed-changes"] = widen.changes
    unresolved: dict[tuple[str, str], set[int]] = {}
    try:
        checker = CompiledSchema(str(proposal.get("$id", "")), proposal, _registry(resolve))
        for i, sample in enumerate(samples):
            for issue in checker.reference_issues(sample):
                unresolved.setdefault((issue.path, issue.message), set()).add(i)
    except (Unresolvable, LookupError) as exc:
        unresolved[("$", f"could not check the proposal: {exc}")] = set()
    if unresolved:
        proposal["x-proposed-unresolved"] = [
            {"at": at, "message": message, "samples": len(ids)} for (at, message), ids in sorted(unresolved.items())
        ]
    return proposal


def write_proposal(
    path_of_captured_file: str | Path, samples: Sequence[Any], *, out_dir: str | Path | None = None
) -> Path:
    """Write ``<name>.proposed.json`` beside the captured file (or into ``out_dir``); return its path.

    The captured file is only read. The proposal's ``$id`` names the proposal file, so loading both
    never lets one shadow the other.
    """
    path = Path(path_of_captured_file)
    captured = _load(path)
    proposal = propose(captured, samples, resolve=resolver_for(path.parent))
    name = path.name.removesuffix(".json") + ".proposed.json"
    if str(captured.get("$id", "")).endswith("/" + path.name):
        proposal["$id"] = str(captured["$id"]).removesuffix(path.name) + name
    target = (Path(out_dir) if out_dir is not None else path.parent) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(proposal, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return target
