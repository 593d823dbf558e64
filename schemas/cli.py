"""`wanmock schemas`: list the captured contracts, validate a JSON document against one, compare two
versions of a schema (``diff``) and propose an update from observed bodies (``propose``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from wanmock.schemas.catalog import KINDS, MESSAGES, Catalog, SchemaNotFound, catalog, resolve_pointer
from wanmock.schemas.evolution import diff_dirs, diff_files, write_proposal

EXIT_VALID, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def add_parser(subparsers: Any) -> None:
    """Register the ``schemas`` command on the top-level CLI's subparsers."""
    parser = subparsers.add_parser(
        "schemas",
        help="list the captured schemas, or validate a document against one",
        description="Without an action: list every provider, endpoint, model and message with "
        "the documentation pages it was captured from.",
        epilog="""examples:
  wanmock schemas                       every provider, endpoint, model and source page
  wanmock schemas --json                the same, as JSON
  wanmock schemas validate --help       validate a document; also: diff, propose
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print the listing as JSON")
    parser.set_defaults(handler=_list)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    validate = actions.add_parser(
        "validate",
        help="validate a JSON document (FILE, or - for stdin) against a captured schema",
        description="Exit 0 when the provider accepts the document (what it accepts although its "
        "pages do not document it is printed as a warning), 1 when it does not (each error printed "
        "with its JSON path), 2 on a usage error.",
        epilog="""examples:
  wanmock schemas validate --provider aimlapi --operation submit --model t2v body.json
  wanmock schemas validate --provider dashscope --operation poll-response --state succeeded answer.json
  wanmock schemas validate --provider dashscope --operation submit --model t2v --strict body.json
  cat answer.json | wanmock schemas validate --provider apiyi --operation poll-response -
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    validate.add_argument("--provider", required=True, help="the provider whose captured schema applies")
    validate.add_argument("--operation", required=True, choices=MESSAGES, help="which message the document is")
    validate.add_argument(
        "--model",
        help=f"model kind ({', '.join(KINDS)}) or the provider's own model id; needed for submit",
    )
    validate.add_argument(
        "--state",
        help="poll-response state: canonical (queued, running, succeeded, ...) or the "
        "provider's own word; default: the status word in the document",
    )
    validate.add_argument(
        "--strict",
        action="store_true",
        help="also refuse what the provider accepts although its pages do not document it "
        "(by default such findings are printed as warnings and the exit code stays 0)",
    )
    validate.add_argument("file", metavar="FILE", help="the JSON document, or - for standard input")
    validate.set_defaults(handler=_validate)
    diff = actions.add_parser(
        "diff",
        help="compare two versions of a schema file, or two provider directories",
        description="Print each change as BREAKING or ok with its schema path and reason. A request "
        "(submit.*) breaks clients when it accepts less; a response when it may answer what clients "
        "were not written for. Exit 1 when any change is breaking, 0 otherwise, 2 on a usage error.",
        epilog="""examples:
  wanmock schemas diff old/submit.t2v.json schemas/dashscope/submit.t2v.json
  wanmock schemas diff old/dashscope schemas/dashscope --json
  wanmock schemas diff a.json b.json --direction response
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    diff.add_argument("old", metavar="OLD", help="schema file or provider directory")
    diff.add_argument("new", metavar="NEW", help="schema file or provider directory")
    diff.add_argument("--json", dest="as_json", action="store_true", help="print the changes as JSON")
    diff.add_argument(
        "--direction",
        choices=("auto", "request", "response"),
        default="auto",
        help="how to classify two files (default: a submit.* file or title is a request)",
    )
    diff.set_defaults(handler=_diff)
    propose = actions.add_parser(
        "propose",
        help="write <name>.proposed.json beside the samples: a captured schema widened to accept observed bodies",
        description="Each SAMPLE is a JSON file holding one observed body or a list of them. The "
        "captured schema is never modified; the proposal records every change under "
        "x-proposed-changes. Prints the proposal's path. The proposal is written beside a schema "
        "file you own, or into --out; never into the installed package.",
        epilog="""examples:
  wanmock schemas propose --provider dashscope --operation poll-response --out proposals answers/*.json
  wanmock schemas propose --provider apiyi --operation submit --model t2v --out proposals body.json
  wanmock schemas propose --provider modellix --operation poll-response --state succeeded --out p a.json
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    propose.add_argument("--provider", required=True, help="the provider whose captured schema is widened")
    propose.add_argument("--operation", required=True, choices=MESSAGES, help="which message the samples are")
    propose.add_argument("--model", help="model kind or model id; needed for submit")
    propose.add_argument("--state", help="poll-response state; default: the status word the samples carry")
    propose.add_argument(
        "--out",
        metavar="DIR",
        help="directory for the proposal (default: beside the first SAMPLE, or the current directory for -)",
    )
    propose.add_argument("samples", metavar="SAMPLE", nargs="+", help="JSON files of observed bodies")
    propose.set_defaults(handler=_propose)


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
        verdict = cat.check(args.provider, args.operation, document, kind=args.model, state=args.state)
        issues = verdict.all_issues if args.strict else verdict.errors
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
    noted = f" with {len(verdict.warnings)} warning(s)" if verdict.warnings else ""
    out.write(f"valid{against}{noted}\n")
    for finding in verdict.warnings:
        out.write(f"  warning: {finding.warning}\n")
    return EXIT_VALID


def _diff(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    old, new = Path(args.old), Path(args.new)
    try:
        if old.is_dir() and new.is_dir():
            if args.direction != "auto":
                err.write("wanmock schemas diff: --direction applies to two files, not directories\n")
                return EXIT_USAGE
            changes = diff_dirs(old, new)
        elif old.is_file() and new.is_file():
            changes = diff_files(old, new, direction=args.direction)
        else:
            err.write(f"wanmock schemas diff: {old} and {new} must be two files or two directories\n")
            return EXIT_USAGE
    except (OSError, ValueError) as exc:  # unreadable, not JSON, or not a JSON object
        err.write(f"wanmock schemas diff: {exc}\n")
        return EXIT_USAGE
    breaking = sum(c.breaking for c in changes)
    if args.as_json:
        json.dump([c.as_dict() for c in changes], out, indent=2)
        out.write("\n")
    else:
        for change in changes:
            out.write(f"{change}\n")
        out.write(f"{len(changes)} change(s), {breaking} breaking\n")
    return EXIT_INVALID if breaking else EXIT_VALID


def _propose(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    samples: list[Any] = []
    try:
        for file in args.samples:
            document = _read_document(file)
            samples += document if isinstance(document, list) else [document]
    except OSError as exc:
        err.write(f"wanmock schemas propose: cannot read {exc.filename}: {exc.strerror}\n")
        return EXIT_USAGE
    except json.JSONDecodeError as exc:
        err.write(f"wanmock schemas propose: a sample is not JSON: {exc}\n")
        return EXIT_USAGE
    if not samples:
        err.write("wanmock schemas propose: the sample files hold no instance\n")
        return EXIT_USAGE
    cat = catalog()
    try:
        state = args.state
        if args.operation == "poll-response" and state is None:
            state = _status_word(cat, args.provider, samples)
        file = cat.schema_file(args.provider, args.operation, args.model, state)
    except SchemaNotFound as exc:
        err.write(f"wanmock schemas propose: {exc}\n")
        return EXIT_USAGE
    # Beside the user's own files, never into the installed package (which may not even be writable).
    out_dir = args.out or (Path(args.samples[0]).parent if args.samples[0] != "-" else Path.cwd())
    written = write_proposal(cat.provider(args.provider).directory / file, samples, out_dir=out_dir)
    proposal = json.loads(written.read_text(encoding="utf-8"))
    for change in proposal["x-proposed-changes"]:
        err.write(f"  {change['at']}: {change['change']} ({change['evidence']} of {change['of']} samples)\n")
    for issue in proposal.get("x-proposed-unresolved", []):
        err.write(f"  still rejected: {issue['at']}: {issue['message']}\n")
    out.write(f"{written}\n")
    return EXIT_VALID


def _status_word(cat: Catalog, provider: str, samples: list[Any]) -> str:
    """The one status word every sample carries at the provider's status pointer."""
    pointer = cat.provider(provider).task_fields["status_in_poll"]
    words = set()
    for sample in samples:
        try:
            words.add(json.dumps(resolve_pointer(sample, pointer)))
        except (LookupError, ValueError, TypeError):
            words.add("(none)")
    if len(words) != 1 or not next(iter(words)).startswith('"'):
        raise SchemaNotFound(
            f"the samples carry the status words {', '.join(sorted(words))} at {pointer}; pass --state"
        )
    return str(json.loads(next(iter(words))))
