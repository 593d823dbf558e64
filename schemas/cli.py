"""`wanmock schemas`: list the captured contracts and validate a JSON document against one."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from schemas.catalog import KINDS, MESSAGES, Catalog, SchemaNotFound, catalog

EXIT_VALID, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def add_parser(subparsers: Any) -> None:
    """Register the ``schemas`` command on the top-level CLI's subparsers."""
    parser = subparsers.add_parser(
        "schemas",
        help="list the captured schemas, or validate a document against one",
        description="Without an action: list every provider, endpoint, model and message with "
        "the documentation pages it was captured from.",
    )
    parser.add_argument("--json", action="store_true", help="print the listing as JSON")
    parser.set_defaults(handler=_list)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    validate = actions.add_parser(
        "validate",
        help="validate a JSON document (FILE, or - for stdin) against a captured schema",
        description="Exit 0 when the document is valid, 1 when it is not (each error printed "
        "with its JSON path), 2 on a usage error.",
    )
    validate.add_argument("--provider", required=True)
    validate.add_argument("--operation", required=True, choices=MESSAGES)
    validate.add_argument(
        "--model",
        help=f"model kind ({', '.join(KINDS)}) or the provider's own model id; needed for submit",
    )
    validate.add_argument(
        "--state",
        help="poll-response state: canonical (queued, running, succeeded, ...) or the "
        "provider's own word; default: the status word in the document",
    )
    validate.add_argument("file", metavar="FILE")
    validate.set_defaults(handler=_validate)


def _listing(cat: Catalog) -> list[dict[str, Any]]:
    rows = []
    for name, provider in cat.providers.items():
        messages = []
        for message, kind, state, file in cat.messages(name):
            doc = cat.document(name, file)
            messages.append(
                {
                    "operation": message,
                    "model": kind,
                    "state": state,
                    "status_word": provider.states[state].word if state else None,
                    "file": f"schemas/{name}/{file}",
                    "title": doc["title"],
                    "sources": [src["url"] for src in doc["x-source"]],
                }
            )
        rows.append(
            {
                "provider": name,
                "title": provider.title,
                "base_url": provider.base_url,
                "endpoints": [
                    {
                        "name": e.name,
                        "method": e.method,
                        "paths": list(e.paths),
                        "headers": dict(e.headers),
                    }
                    for e in provider.endpoints.values()
                ],
                "models": {kind: list(m.ids) for kind, m in provider.models.items()},
                "messages": messages,
                "sources": provider.sources(),
            }
        )
    return rows


def _list(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    rows = _listing(catalog())
    if args.json:
        json.dump(rows, out, indent=2)
        out.write("\n")
        return EXIT_VALID
    for row in rows:
        out.write(f"{row['provider']}: {row['title']}\n")
        out.write(f"  base URL   {row['base_url']}\n")
        for e in row["endpoints"]:
            headers = "".join(f"  [{k}: {v}]" for k, v in e["headers"].items())
            out.write(f"  endpoint   {e['name']:<7} {e['method']:<4} {' | '.join(e['paths'])}{headers}\n")
        for kind, ids in row["models"].items():
            out.write(f"  model      {kind:<9} {', '.join(ids)}\n")
        for m in row["messages"]:
            qualifier = m["model"] or (f"{m['state']} ({m['status_word']})" if m["state"] else "")
            out.write(f"  operation  {m['operation']:<15} {qualifier:<22} {m['file']}\n")
            for url in m["sources"]:
                out.write(f"             source: {url}\n")
        out.write("\n")
    return EXIT_VALID


def _read_document(path: str) -> Any:
    if path == "-":
        return json.load(sys.stdin)
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        document = _read_document(args.file)
    except OSError as exc:
        err.write(f"wanmock schemas validate: cannot read {args.file}: {exc.strerror}\n")
        return EXIT_USAGE
    except json.JSONDecodeError as exc:
        err.write(f"wanmock schemas validate: {args.file} is not JSON: {exc}\n")
        return EXIT_USAGE
    cat = catalog()
    try:
        issues = cat.validate(args.provider, args.operation, document, kind=args.model, state=args.state)
        title = (
            cat.document(
                args.provider,
                cat.schema_file(args.provider, args.operation, args.model, args.state),
            )["title"]
            if args.operation != "poll-response" or args.state
            else None
        )
    except SchemaNotFound as exc:
        err.write(f"wanmock schemas validate: {exc}\n")
        return EXIT_USAGE
    against = f" against {title}" if title else ""
    if issues:
        out.write(f"invalid{against}: {len(issues)} error(s)\n")
        for issue in issues:
            out.write(f"  {issue.path}: {issue.message}\n")
        return EXIT_INVALID
    out.write(f"valid{against}\n")
    return EXIT_VALID
