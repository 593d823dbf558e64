"""OpenAPI 3.1 documents built from the captured contracts: `wanmock openapi PROVIDER`.

Everything comes from ``schemas/<provider>/``: servers and security from the manifest's
``base_url`` and ``auth``, one operation per endpoint path (Modellix's ``{model}`` expanded to
one concrete path per model id, since the ids contain ``/``), required headers and query
parameters from the manifest, request and response bodies from the schema files. Each schema
file becomes a component named after the file (``submit.t2v``, ``poll-response.pending``), each
of its ``$defs`` one named ``<file>.<name>`` (``defs.prompt``), and every ``$ref`` is rewritten
to ``#/components/schemas/...``. The ``x-`` annotations (sources, conflicts, not-found notes)
are kept: OpenAPI 3.1 allows extensions in schema objects.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from wanmock.schemas.catalog import Catalog, Endpoint, Provider, catalog

OPENAPI_VERSION = "3.1.0"
COMPONENTS = "#/components/schemas/"
POLL_RESPONSE = "poll-response"  # in a manifest's responses: the state schema chosen by the status word
PLACEHOLDER = re.compile(r"\{(\w+)\}")
MEDIA_TYPE = "application/json"  # every captured body is a JSON Schema of a JSON document
DROPPED_KEYWORDS = ("$schema", "$id", "$defs")  # $id would rebase the rewritten refs; $defs become components


# -- components -----------------------------------------------------------------------------


def component_name(file: str, definition: str | None = None) -> str:
    """``submit.t2v.json`` -> ``submit.t2v``; its ``$defs/x`` -> ``submit.t2v.x``."""
    stem = file.removesuffix(".json")
    return stem if definition is None else f"{stem}.{definition}"


def _target(ref: str, file: str) -> str:
    """The component a ``$ref`` written in ``file`` points at."""
    target_file, _, fragment = ref.partition("#")
    target_file = target_file or file
    if fragment in ("", "/"):
        return component_name(target_file)
    tokens = fragment.lstrip("/").split("/")
    if len(tokens) == 2 and tokens[0] == "$defs":
        return component_name(target_file, tokens[1].replace("~1", "/").replace("~0", "~"))
    raise ValueError(f"{file}: cannot turn $ref {ref!r} into a component (only whole files and $defs/<name>)")


def _rewrite(node: Any, file: str) -> Any:
    """A copy of ``node`` with every ``$ref`` pointing into ``#/components/schemas``."""
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                out[key] = COMPONENTS + _target(value, file)
            elif key.startswith("x-"):
                out[key] = copy.deepcopy(value)  # annotations: not schemas, kept verbatim
            else:
                out[key] = _rewrite(value, file)
        return out
    if isinstance(node, list):
        return [_rewrite(item, file) for item in node]
    return node


def components(provider: Provider) -> dict[str, Any]:
    """Every schema file of ``provider`` and each of its ``$defs`` as named components."""
    out: dict[str, Any] = {}
    for file, document in sorted(provider.documents.items()):
        if file == "manifest.json":
            continue
        for name, definition in document.get("$defs", {}).items():
            out[component_name(file, name)] = _rewrite(definition, file)
        body = {k: v for k, v in document.items() if k not in DROPPED_KEYWORDS}
        if set(body) - {"title", "description"} - {k for k in body if k.startswith("x-")}:
            out[component_name(file)] = _rewrite(body, file)  # defs.json alone holds no schema of its own
    return out


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            elif not key.startswith("x-"):
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _ref(file: str) -> dict[str, str]:
    return {"$ref": COMPONENTS + component_name(file)}


def _schema_at(document: Mapping[str, Any], pointer: str, file: str) -> dict[str, Any]:
    """The (rewritten) sub-schema of ``document`` that describes the instance at ``pointer``."""
    node: Mapping[str, Any] = document
    for token in pointer.lstrip("/").split("/"):
        node = node["properties"][token]
    return _rewrite(node, file)  # type: ignore[no-any-return]


# -- operations -----------------------------------------------------------------------------


def _operation_id(endpoint: Endpoint, path: str, paths: int) -> str:
    """The endpoint name when it has one path, else the name and the path (stable, unique)."""
    if paths == 1:
        return endpoint.name
    return endpoint.name + "_" + re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")


def _concrete_paths(provider: Provider, endpoint: Endpoint) -> list[tuple[str, list[str], list[str]]]:
    """(path, request schema files, model ids) for every path of ``endpoint``; ``{model}`` is
    expanded to one path per model id, whose body is that model's schema."""
    out: list[tuple[str, list[str], list[str]]] = []
    for template in endpoint.paths:
        if "{model}" in template:
            for model in provider.models.values():
                out += [(template.replace("{model}", i), [model.schema_file], [i]) for i in model.ids]
        else:
            models = list(provider.models.values())
            out.append((template, [m.schema_file for m in models], [m.id for m in models]))
    return out


def _parameters(provider: Provider, endpoint: Endpoint, path: str) -> list[dict[str, Any]]:
    task = provider.task_fields
    submit_response = provider.documents["submit-response.json"]
    task_id = _schema_at(submit_response, task["id_in_submit"], "submit-response.json")
    placeholders = {"task_id": task_id}
    params: list[dict[str, Any]] = []
    for name in PLACEHOLDER.findall(path):
        if name not in placeholders:
            raise ValueError(f"{provider.name}: no schema for the path placeholder {{{name}}} in {path}")
        params.append({"name": name, "in": "path", "required": True, "schema": placeholders[name]})
    for name, value in endpoint.query.items():
        found = PLACEHOLDER.fullmatch(value)
        if found is None or found.group(1) not in placeholders:
            raise ValueError(f"{provider.name}: query parameter {name}={value!r} names no known placeholder")
        params.append({"name": name, "in": "query", "required": True, "schema": placeholders[found.group(1)]})
    for name in provider.manifest["endpoints"][endpoint.name].get("query_parameters", []):
        params.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": "A documented query parameter; its type and values are not captured.",
                "schema": {"type": "string"},
            }
        )
    for name, value in endpoint.headers.items():
        params.append(
            {
                "name": name,
                "in": "header",
                "required": True,
                "description": f"Required by the provider: {name}: {value}.",
                "schema": {"type": "string", "enum": [value]},
            }
        )
    return params


def _responses(provider: Provider, endpoint: Endpoint, links: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, message in endpoint.responses.items():
        if message == POLL_RESPONSE:
            states = list(provider.states.values())
            schema: dict[str, Any] = {"oneOf": [_ref(s.schema_file) for s in states]}
            words = ", ".join(f"{s.word} ({s.canonical})" for s in states)
            description = f"The task in one of its states: {words}."
        else:
            schema = _ref(message)
            description = str(provider.documents[message].get("title", message))
        response: dict[str, Any] = {"description": description, "content": {MEDIA_TYPE: {"schema": schema}}}
        if status.startswith("2") and links:
            response["links"] = dict(links)
        out[status] = response
    if not any(status.startswith("2") for status in out):
        out["200"] = {
            "description": "Success. The provider does not document the body (see x-not-found).",
            "content": {MEDIA_TYPE: {}},
        }
    return dict(sorted(out.items()))


def _links(provider: Provider, operation_ids: Mapping[str, str]) -> dict[str, Any]:
    """From a submit answer to every endpoint that takes its task id (poll, cancel)."""
    pointer = provider.task_fields["id_in_submit"]
    links: dict[str, Any] = {}
    for endpoint in provider.endpoints.values():
        if endpoint.name == "submit" or endpoint.name not in operation_ids:
            continue
        source = f"$response.body#{pointer}"
        params = {f"path.{name}": source for name in PLACEHOLDER.findall(endpoint.paths[0]) if name == "task_id"}
        params |= {f"query.{name}": source for name, value in endpoint.query.items() if value == "{task_id}"}
        if params:
            links[endpoint.name] = {
                "operationId": operation_ids[endpoint.name],
                "parameters": params,
                "description": f"The {endpoint.name} of the task just submitted.",
            }
    return links


# -- the document ---------------------------------------------------------------------------


def _security_scheme(provider: Provider) -> tuple[str, dict[str, Any]]:
    auth = provider.manifest["auth"]
    scheme = auth.get("scheme")
    if auth["header"].lower() == "authorization" and scheme:
        return f"{scheme.lower()}Auth", {"type": "http", "scheme": scheme.lower()}
    return "apiKeyAuth", {"type": "apiKey", "in": "header", "name": auth["header"]}


def _servers(provider: Provider) -> list[dict[str, Any]]:
    """The manifest's regional hosts (``regions``), else its base URL; a ``{WorkspaceId}`` in a
    host becomes a server variable."""
    regions = provider.manifest.get("regions") or [{"name": provider.title, "url": provider.base_url}]
    servers = []
    for region in regions:
        server: dict[str, Any] = {"url": region["url"], "description": region["name"]}
        names = PLACEHOLDER.findall(region["url"])
        if names:
            server["variables"] = {name: {"default": name, "description": f"Your {name}."} for name in names}
        servers.append(server)
    return servers


def openapi_document(provider: str, cat: Catalog | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 description of ``provider``'s Wan 2.7 API, from its captured contract."""
    p = (cat or catalog()).provider(provider)
    manifest = p.manifest
    security_name, security_scheme = _security_scheme(p)

    expanded = {name: _concrete_paths(p, e) for name, e in p.endpoints.items()}
    first_ids = {
        name: _operation_id(p.endpoints[name], paths[0][0], len(paths)) for name, paths in expanded.items() if paths
    }
    links = _links(p, first_ids)

    paths: dict[str, dict[str, Any]] = {}
    for name, endpoint in p.endpoints.items():
        description = manifest["endpoints"][name].get("description")
        for path, files, model_ids in expanded[name]:
            operation: dict[str, Any] = {
                "operationId": _operation_id(endpoint, path, len(expanded[name])),
                "summary": f"{name} ({', '.join(model_ids)})" if endpoint.content_type else name,
                "tags": [name],
            }
            if description:
                operation["description"] = description
            parameters = _parameters(p, endpoint, path)
            if parameters:
                operation["parameters"] = parameters
            if endpoint.content_type:
                body = _ref(files[0]) if len(files) == 1 else {"oneOf": [_ref(f) for f in files]}
                operation["requestBody"] = {"required": True, "content": {endpoint.content_type: {"schema": body}}}
            operation["responses"] = _responses(p, endpoint, links if name == "submit" else {})
            method = endpoint.method.lower()
            item = paths.setdefault(path, {})
            if method in item:
                raise ValueError(f"{provider}: two endpoints answer {endpoint.method} {path}")
            item[method] = operation

    schemas = components(p)
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": p.title,
            "version": max(src["captured"] for src in manifest["x-source"]),
            "description": f"The {provider} Wan 2.7 video API as captured by wanmock from the provider's "
            "documentation (schemas/" + provider + "/). info.version is the capture date.",
        },
        "servers": _servers(p),
        "security": [{security_name: []}],
        "tags": [{"name": name} for name in p.endpoints],
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {security_name: security_scheme}},
        "x-source": copy.deepcopy(manifest["x-source"]),
    }
    for key in ("x-conflicts", "x-not-found"):
        if key in manifest:
            document[key] = copy.deepcopy(manifest[key])
    dangling = sorted({ref for ref in _refs(document) if ref.removeprefix(COMPONENTS) not in schemas})
    if dangling:
        raise ValueError(f"{provider}: $refs to missing components: {', '.join(dangling)}")
    return document


# -- the command ----------------------------------------------------------------------------


def add_parser(subparsers: Any) -> None:
    """Register the ``openapi`` command on the top-level CLI's subparsers."""
    parser = subparsers.add_parser(
        "openapi",
        help="print a provider's OpenAPI 3.1 document, built from the captured schemas",
        description="Write the OpenAPI 3.1 description of one provider's API (JSON) for Prism, "
        "Schemathesis or a code generator.",
        epilog="""examples:
  wanmock openapi dashscope                         the document on standard output
  wanmock openapi modellix --output modellix.json   into a file
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "provider", metavar="PROVIDER", choices=sorted(catalog().providers), help="the provider to describe"
    )
    parser.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of standard output")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    text = json.dumps(openapi_document(args.provider), indent=2, ensure_ascii=False) + "\n"
    if args.output is None:
        out.write(text)
        return 0
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        err.write(f"wanmock openapi: cannot write {args.output}: {exc.strerror}\n")
        return 1
    return 0
