"""The catalog: every provider's manifest and schema files, loaded and compiled once.

Paths, headers, model ids, status words and field locations are read from the files under
``schemas/<provider>/``; nothing here restates them (see docs/SCHEMAS.md).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # referencing is imported when the first reference validator is built
    from referencing import Registry
from wanmock.schemas.leniency import Verdict, sort_issues
from wanmock.schemas.validation import CompiledSchema, Issue, json_path

ROOT = Path(__file__).resolve().parent
BASE_URI = "https://wanmock.dev/schemas/"
# More providers: directories (separated by os.pathsep) holding <provider>/manifest.json like schemas/.
SCHEMA_PATH_VARIABLE = "WANMOCK_SCHEMA_PATH"
KINDS = ("t2v", "i2v", "videoedit")
MESSAGES = ("submit", "submit-response", "poll-response", "error")
CANONICAL_STATES = ("queued", "running", "succeeded", "failed", "canceled", "unknown")
TERMINAL_STATES = frozenset({"succeeded", "failed", "canceled", "unknown"})


class SchemaNotFound(LookupError):
    """The requested provider, message, model kind or state does not exist."""


@functools.lru_cache(maxsize=1024)
def pointer_tokens(pointer: str) -> tuple[str, ...]:
    """The unescaped reference tokens of a JSON pointer (split once per pointer)."""
    return tuple(raw.replace("~1", "/").replace("~0", "~") for raw in pointer.lstrip("/").split("/"))


def resolve_pointer(document: Any, pointer: str) -> Any:
    """Follow a JSON pointer (``/output/task_status``) into a document; KeyError if absent."""
    node = document
    for token in pointer_tokens(pointer):
        if type(node) is dict or (not isinstance(node, list) and isinstance(node, Mapping)):
            node = node[token]
        elif isinstance(node, list):
            node = node[int(token)]
        else:
            raise KeyError(pointer)
    return node


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    paths: tuple[str, ...]
    headers: Mapping[str, str]
    query: Mapping[str, str]
    content_type: str | None
    responses: Mapping[str, str]
    auth: str = "required"  # "any-key": any Bearer token reaches it (a key check answers about the key)
    answered_by: str = "tasks"  # "profile": an account or upload endpoint, not a task operation


@dataclass(frozen=True)
class Model:
    kind: str
    ids: tuple[str, ...]
    schema_file: str

    @property
    def id(self) -> str:
        """The primary (documented, undated) model id."""
        return self.ids[0]


@dataclass(frozen=True)
class State:
    canonical: str
    word: str
    schema_file: str

    @property
    def terminal(self) -> bool:
        return self.canonical in TERMINAL_STATES


@dataclass(frozen=True)
class ErrorAnswer:
    """A documented error answer of one situation (the manifest's ``errors``): its HTTP status,
    the code that tells it apart where the status alone does not, and the manifest's x-source refs."""

    situation: str
    status: int
    code: str | None
    sources: tuple[str, ...]
    description: str

    def matches(self, status: int, code: str | None) -> bool:
        """Whether an answer (status, code) is this one: by its code when it has one, else by status."""
        return code == self.code if self.code is not None else status == self.status


@dataclass
class Provider:
    """One provider's manifest, with models and states resolved from its schema files."""

    name: str
    manifest: Mapping[str, Any]
    documents: Mapping[str, Mapping[str, Any]] = field(repr=False)
    directory: Path = field(default=ROOT, repr=False)  # where its files are
    models: dict[str, Model] = field(init=False)
    states: dict[str, State] = field(init=False)
    endpoints: dict[str, Endpoint] = field(init=False)

    def __post_init__(self) -> None:
        m = self.manifest
        self.models = {}
        for kind, file in m["models"].items():
            doc = self.documents[file]
            ids = doc.get("properties", {}).get("model", {}).get("enum") or doc.get("x-model-ids")
            if not ids:
                raise ValueError(f"{self.name}/{file}: no model ids (properties.model.enum or x-model-ids)")
            self.models[kind] = Model(kind, tuple(ids), file)
        pointer = m["task"]["status_in_poll"]
        self.states = {}
        for canonical, file in m["states"].items():
            word = self.field_schema(file, pointer)["const"]
            self.states[canonical] = State(canonical, word, file)
        self.endpoints = {
            name: Endpoint(
                name=name,
                method=spec["method"],
                paths=tuple(spec["paths"]),
                headers=dict(spec.get("headers", {})),
                query=dict(spec.get("query", {})),
                content_type=spec.get("content_type"),
                responses=dict(spec["responses"]),
                auth=spec.get("auth", "required"),
                answered_by=spec.get("answered_by", "tasks"),
            )
            for name, spec in m["endpoints"].items()
        }

    def deref(self, node: Mapping[str, Any], within: str) -> tuple[Mapping[str, Any], str]:
        """Follow the ``$ref``s of ``node``, a node of file ``within``: the target (with the node's
        own keywords over it) and the file it lives in. ``#/$defs/x`` is resolved in ``within``,
        ``defs.json#/$defs/x`` in that sibling file."""
        while isinstance(node.get("$ref"), str):
            file, _, pointer = node["$ref"].partition("#")
            within = file or within
            document = self.documents[within]
            target = resolve_pointer(document, pointer) if pointer else document
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return node, within

    def field_schema(self, file: str, pointer: str) -> Mapping[str, Any]:
        """The schema of the instance location ``pointer`` (``/parameters/duration``) in the message
        of ``file``, through ``properties`` with refs followed; ``{}`` where nothing is declared."""
        node, within = self.deref(self.documents[file], file)
        for token in pointer.lstrip("/").split("/"):
            node, within = self.deref(node.get("properties", {}).get(token, {}), within)
        return node

    @property
    def title(self) -> str:
        return str(self.manifest["title"])

    @property
    def base_url(self) -> str:
        return str(self.manifest["base_url"])

    @property
    def task_fields(self) -> Mapping[str, Any]:
        return self.manifest["task"]  # type: ignore[no-any-return]

    @property
    def at_root(self) -> bool:
        """Whether, with every provider on one port, this one is also served at the root (its
        manifest's ``root``: its paths collide with no other root provider's)."""
        return "root" in self.manifest

    @property
    def model_in_path(self) -> bool:
        return bool(self.manifest["model_in"] == "path")

    def model_for_id(self, model_id: str) -> Model | None:
        for model in self.models.values():
            if model_id in model.ids:
                return model
        return None

    def state(self, name: str) -> State:
        """A state by canonical name or by this provider's own word (any case)."""
        if name in self.states:
            return self.states[name]
        for state in self.states.values():
            if state.word.lower() == name.lower() or state.schema_file == f"poll-response.{name.lower()}.json":
                return state
        known = ", ".join(f"{s.word} ({s.canonical})" for s in self.states.values())
        raise SchemaNotFound(f"{self.name} has no state {name!r}; known: {known}")

    def state_for_word(self, word: str) -> State | None:
        return next((s for s in self.states.values() if s.word == word), None)

    def sources(self) -> list[str]:
        return [src["url"] for src in self.manifest["x-source"]]

    def error(self, situation: str) -> ErrorAnswer | None:
        """The documented answer of ``situation`` (``insufficient_balance``), None when the
        manifest has none (not documented)."""
        spec = self.manifest.get("errors", {}).get(situation)
        if spec is None:
            return None
        return ErrorAnswer(
            situation, int(spec["status"]), spec.get("code"), tuple(spec["sources"]), str(spec["description"])
        )

    def implementation(self, role: str) -> Any:
        """The class the manifest's ``implementation`` names for ``role`` (``profile``: the mock's,
        ``dialect``: the client's), or None. ``"module.path:Class"`` is imported; ``"file.py:Class"``
        is loaded from the provider's directory, so a provider outside the package is its directory."""
        spec = self.manifest.get("implementation", {}).get(role)
        if spec is None:
            return None
        where, _, name = str(spec).partition(":")
        if where.endswith(".py"):
            path = (self.directory / where).resolve()
            module_name = f"wanmock_provider_{self.name}_{path.stem}"
            module = sys.modules.get(module_name)
            if module is None:
                loader = importlib.util.spec_from_file_location(module_name, path)
                if loader is None or loader.loader is None or not path.is_file():
                    raise SchemaNotFound(f"{self.name}: the {role} module {path} does not exist")
                module = importlib.util.module_from_spec(loader)
                sys.modules[module_name] = module
                loader.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
        try:
            return getattr(module, name)
        except AttributeError:
            raise SchemaNotFound(f"{self.name}: {where} has no {role} class {name!r}") from None


class Catalog:
    """All providers and their compiled schemas. Use :func:`catalog` for the shared one."""

    def __init__(self, root: Path = ROOT, extra: Sequence[Path] = ()) -> None:
        self.root = root
        docs: dict[str, dict[str, Mapping[str, Any]]] = {}
        directories: dict[str, Path] = {}
        resources: list[tuple[str, Any]] = []
        manifests = [m for base in (root, *extra) for m in sorted(Path(base).glob("*/manifest.json"))]
        for manifest_path in manifests:
            provider = manifest_path.parent.name
            if provider in docs:
                raise ValueError(
                    f"provider {provider!r} is defined twice: {directories[provider]}, {manifest_path.parent}"
                )
            directories[provider] = manifest_path.parent
            docs[provider] = {}
            for path in sorted(manifest_path.parent.glob("*.json")):
                doc = json.loads(path.read_text(encoding="utf-8"))
                docs[provider][path.name] = doc
                if path.name != "manifest.json":
                    resources.append((doc["$id"], doc))
        self._resources = resources
        self.providers: dict[str, Provider] = {
            name: Provider(name, files["manifest.json"], files, directories[name]) for name, files in docs.items()
        }
        self._compiled: dict[str, CompiledSchema] = {}

    @functools.cached_property
    def registry(self) -> Registry[Any]:
        """Every schema file as a ``referencing`` resource, for jsonschema's ``$ref``s: built when
        the first reference validator is (jsonschema-rs answers valid instances without it)."""
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT202012

        return Registry().with_resources(
            (uri, Resource.from_contents(doc, default_specification=DRAFT202012)) for uri, doc in self._resources
        )

    # -- lookup ---------------------------------------------------------------------------

    def provider(self, name: str) -> Provider:
        try:
            return self.providers[name]
        except KeyError:
            known = ", ".join(self.providers)
            raise SchemaNotFound(f"unknown provider {name!r}; known: {known}") from None

    def schema_file(self, provider: str, message: str, kind: str | None = None, state: str | None = None) -> str:
        """The file name answering (provider, message, kind, state)."""
        p = self.provider(provider)
        if message == "submit":
            if kind is None:
                raise SchemaNotFound(f"the submit message of {provider} needs a model kind: {', '.join(p.models)}")
            if kind not in p.models:
                model = p.model_for_id(kind)
                if model is None:
                    offered = ", ".join(f"{m.kind} ({m.id})" for m in p.models.values())
                    raise SchemaNotFound(f"{provider} offers no model {kind!r}; it offers {offered}")
                kind = model.kind
            return p.models[kind].schema_file
        if message == "poll-response":
            if state is None:
                raise SchemaNotFound(f"the poll-response of {provider} needs a state (or use validate())")
            return p.state(state).schema_file
        if message in ("submit-response", "error") or f"{message}.json" in p.documents:
            return f"{message}.json"  # also an endpoint's own answer (list-response, cancel-response...)
        raise SchemaNotFound(f"unknown message {message!r}; known: {', '.join(MESSAGES)}")

    def load(
        self,
        provider: str,
        message: str,
        kind: str | None = None,
        state: str | None = None,
        variant: str | None = None,
    ) -> CompiledSchema:
        """The compiled schema for (provider, message, kind, state), compiled on first use.
        ``variant`` (``"option=value"``) picks the other reading of an ``x-conflicts`` entry."""
        file = self.schema_file(provider, message, kind, state)
        uri = f"{BASE_URI}{provider}/{file}"
        key = f"{uri}#{variant}" if variant else uri
        compiled = self._compiled.get(key)
        if compiled is None:
            contents = self.providers[provider].documents[file]
            if variant:
                compiled = self._variant(uri, contents, variant)
            else:
                compiled = CompiledSchema(uri, contents, lambda: self.registry, self._resources)
            self._compiled[key] = compiled
        return compiled

    def _variant(self, uri: str, contents: Mapping[str, Any], variant: str) -> CompiledSchema:
        """A copy of ``contents`` with the ``x-conflicts`` replacement of ``variant`` applied, under
        its own ``$id`` (so that its local refs resolve to the replaced nodes)."""
        option, _, value = variant.partition("=")
        for conflict in contents.get("x-conflicts", []):
            if conflict.get("option") == option and value in conflict.get("variants", {}):
                changed: dict[str, Any] = json.loads(json.dumps(contents))
                for pointer, node in conflict["variants"][value].items():
                    *parents, last = pointer.lstrip("/").split("/")
                    resolve_pointer(changed, "/" + "/".join(parents))[last] = node
                variant_uri = f"{uri}?{variant}"
                changed["$id"] = variant_uri

                def registry(contents: dict[str, Any] = changed, uri: str = variant_uri) -> Registry[Any]:
                    from referencing import Resource
                    from referencing.jsonschema import DRAFT202012

                    resource = Resource.from_contents(contents, default_specification=DRAFT202012)
                    extended: Registry[Any] = self.registry.with_resource(uri, resource)
                    return extended

                return CompiledSchema(variant_uri, changed, registry, [*self._resources, (variant_uri, changed)])
        raise SchemaNotFound(f"{uri} has no variant {variant!r} (x-conflicts with option and variants)")

    def variants(self, provider: str, file: str, options: Any) -> str | None:
        """The variant of ``file`` the server ``options`` ask for: an ``x-conflicts`` entry whose
        ``option`` attribute is set to one of its ``variants`` (one at a time)."""
        for conflict in self.providers[provider].documents[file].get("x-conflicts", []):
            option = conflict.get("option")
            value = getattr(options, option, None) if option else None
            if isinstance(value, str) and value in conflict.get("variants", {}):
                return f"{option}={value}"
        return None

    def validate(
        self,
        provider: str,
        message: str,
        instance: Any,
        kind: str | None = None,
        state: str | None = None,
        *,
        strict: bool = False,
    ) -> list[Issue]:
        """Every issue of ``instance`` as ``message`` of ``provider`` that the provider refuses;
        empty when it accepts the instance. ``strict``: also what it accepts although its pages do
        not document it (see :meth:`check` and ``x-accepted-undocumented``).

        A poll-response without an explicit state is checked against the schema of the state
        its own status word names; an unknown word is itself the issue.
        """
        verdict = self.check(provider, message, instance, kind, state)
        return verdict.all_issues if strict else verdict.errors

    def check(
        self,
        provider: str,
        message: str,
        instance: Any,
        kind: str | None = None,
        state: str | None = None,
        variant: str | None = None,
    ) -> Verdict:
        """The issues of ``instance`` split into errors (the provider refuses them) and warnings
        (it accepts them, undocumented: the schema's ``x-accepted-undocumented`` rules)."""
        if message == "poll-response" and state is None:
            p = self.provider(provider)
            pointer = p.task_fields["status_in_poll"]
            try:
                word = resolve_pointer(instance, pointer)
            except (KeyError, IndexError, ValueError, TypeError):
                return Verdict([Issue(json_path(pointer.lstrip("/").split("/")), "is required", "required", "")])
            found = p.state_for_word(word) if isinstance(word, str) else None
            if found is None:
                words = ", ".join(json.dumps(s.word) for s in p.states.values())
                where = json_path(pointer.lstrip("/").split("/"))
                return Verdict([Issue(where, f"{json.dumps(word)} is not one of {words}", "enum", "")])
            state = found.canonical
        compiled = self.load(provider, message, kind, state, variant)
        return sort_issues(compiled.contents, instance, compiled.issues(instance))

    def messages(self, provider: str) -> list[tuple[str, str | None, str | None, str]]:
        """(message, kind, state, file) for every message of ``provider``."""
        p = self.provider(provider)
        rows: list[tuple[str, str | None, str | None, str]] = []
        rows += [("submit", kind, None, m.schema_file) for kind, m in p.models.items()]
        rows.append(("submit-response", None, None, "submit-response.json"))
        rows += [("poll-response", None, s.canonical, s.schema_file) for s in p.states.values()]
        rows.append(("error", None, None, "error.json"))
        return rows

    def document(self, provider: str, file: str) -> Mapping[str, Any]:
        return self.provider(provider).documents[file]

    def output_sizes(self, provider: str | None = None) -> dict[str, dict[str, tuple[int, int]]]:
        """Video width x height by resolution tier and ratio: the ``x-output-sizes`` table of
        ``provider``'s files, else of the (first, by name) provider whose files document one (the
        upstream the resellers pass the tiers through to)."""
        names = sorted(self.providers)
        if provider is not None:
            names = [provider, *(n for n in names if n != provider)]
        for name in names:
            for document in self.providers[name].documents.values():
                table = document.get("x-output-sizes") if isinstance(document, Mapping) else None
                if table:
                    return {
                        res: {ratio: (int(w), int(h)) for ratio, (w, h) in row.items()} for res, row in table.items()
                    }
        raise SchemaNotFound("no provider's schema files document the output sizes (x-output-sizes)")


def catalog() -> Catalog:
    """The catalog of the schema files shipped with this package, plus the providers found under
    each directory of ``WANMOCK_SCHEMA_PATH`` (loaded once per value of the variable)."""
    return _catalog(os.environ.get(SCHEMA_PATH_VARIABLE, ""))


@functools.cache
def _catalog(extra: str) -> Catalog:
    return Catalog(ROOT, tuple(Path(p) for p in extra.split(os.pathsep) if p))
