"""`wanmock contract`: run the contract suite against the in-process mock, a URL, or live."""

from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path
from typing import Any, TextIO

from wanmock.contracts.client.engine import api_key_from_env, api_key_variable
from wanmock.contracts.tools.control import token_scoped
from wanmock.schemas import catalog


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "contract",
        help="run the contract checks (reference client + hypothesis) against a mock or the live API",
        description="Generated valid and invalid requests, lifecycle scenarios and fault scenarios, "
        "every exchange checked against the captured schemas. Exit 0 only when every check passed.",
        epilog="""examples:
  wanmock contract --provider dashscope --examples 200            in-process, every model
  wanmock contract --provider all --seed 7 --report r.json --junit r.xml
  wanmock contract --provider apiyi --model i2v --target http://127.0.0.1:9000/apiyi
  wanmock contract --provider modellix --live --max-paid-tasks 1  needs MODELLIX_API_KEY
  wanmock contract --provider aimlapi --hypothesis-dir .cache/hypothesis
  wanmock contract --provider dashscope --target http://127.0.0.1:8000 --admin-token T
  wanmock contract --provider dashscope --strict                  warnings fail the run too

--target takes a `wanmock serve --clock manual` origin or a provider base URL its banner prints.
Exit codes: 0 all checks passed, 1 a check failed, 2 usage error, 3 internal error, 130 Ctrl-C
(the report and JUnit file are written with the results so far). Documentation: docs/CONTRACT_TESTING.md.
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--provider", required=True, choices=("all", *sorted(catalog().providers)), help="the provider, or all"
    )
    parser.add_argument("--model", choices=("t2v", "i2v", "videoedit"), help="one model kind (default: all offered)")
    parser.add_argument("--examples", type=int, default=100, help="generated examples per model (default 100)")
    parser.add_argument("--seed", type=int, help="reproduce a run (printed in every report)")
    parser.add_argument(
        "--target",
        help="a running wanmock: its origin or a provider base URL (e.g. http://127.0.0.1:8000/apiyi); "
        "default: in-process",
    )
    parser.add_argument("--live", action="store_true", help="probe the live provider (key from the environment)")
    parser.add_argument(
        "--max-paid-tasks", type=int, default=0, help="live: at most this many billable submissions (default 0)"
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail on warning-level findings too (e.g. the client sends fields the provider accepts undocumented)",
    )
    parser.add_argument("--report", type=Path, help="write a JSON report here")
    parser.add_argument("--junit", type=Path, help="write a JUnit XML report here")
    parser.add_argument(
        "--hypothesis-dir",
        type=Path,
        metavar="DIR",
        help="where hypothesis keeps its files (default: a temporary directory, removed afterwards; "
        "never .hypothesis/ in the current directory)",
    )
    parser.add_argument(
        "--admin-token", help="the --target server's control-plane token (default: $WANMOCK_ADMIN_TOKEN)"
    )
    parser.set_defaults(handler=run)


def use_admin_token(args: argparse.Namespace) -> bool:
    """``--admin-token`` given: the control-plane clients of this process send it (they read
    WANMOCK_ADMIN_TOKEN, wanmock.contracts.tools.control)."""
    token = getattr(args, "admin_token", None)
    if token:
        os.environ["WANMOCK_ADMIN_TOKEN"] = token
    return bool(token)


@token_scoped
def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.examples < 1 or args.max_paid_tasks < 0:
        err.write("wanmock contract: --examples must be at least 1 and --max-paid-tasks at least 0\n")
        return 2
    from wanmock.contracts.testing.runner import hypothesis_home

    with hypothesis_home(args.hypothesis_dir):
        return _run_contract(args, out, err)


def _run_contract(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from wanmock.contracts.testing.runner import Report, check_interrupt, deferred_interrupts

    providers = sorted(catalog().providers) if args.provider == "all" else [args.provider]
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    label = "live" if args.live else (args.target or "in-process")
    report = Report(target=label, seed=seed, strict=args.strict)
    if use_admin_token(args):
        report.secrets.append(args.admin_token)
    try:
        with deferred_interrupts():  # Ctrl-C stops the run between cases, requests and polls
            code = _contract_providers(args, providers, report, err)
            check_interrupt()  # one that came during the last case still marks the report
    except KeyboardInterrupt:
        report.interrupted = True
        _write_reports(args, report, out)
        written = [str(p) for p in (args.report, args.junit) if p is not None]
        if written:
            err.write(f"wanmock contract: interrupted; the results so far are in {', '.join(written)}\n")
        raise
    if code is not None:
        return code
    _write_reports(args, report, out)
    return 0 if report.passed else 1


def _write_reports(args: argparse.Namespace, report: Any, out: TextIO) -> None:
    from wanmock.contracts.testing.runner import summary

    summary(report, out)
    if args.report:
        args.report.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    if args.junit:
        args.junit.write_text(report.junit(), encoding="utf-8")


def _contract_providers(args: argparse.Namespace, providers: list[str], report: Any, err: TextIO) -> int | None:
    """Run every provider's checks into ``report``; an exit code when the run cannot go on."""
    from wanmock.contracts.client import errors
    from wanmock.contracts.testing.runner import (
        Result,
        Runner,
        in_process_target,
        live_probes,
        progress_printer,
        url_target,
    )

    seed = report.seed
    for provider in providers:
        kinds = [args.model] if args.model else list(catalog().provider(provider).models)
        if args.model and args.model not in catalog().provider(provider).models:
            err.write(f"wanmock contract: {provider} does not offer {args.model}\n")
            return 2
        if args.live:
            variable = api_key_variable(provider)
            key = api_key_from_env(provider)
            if not key:
                err.write(f"wanmock contract: --live needs {variable} in the environment\n")
                return 2
            report.secrets.append(key)  # removed, in every form, from stdout, the report and JUnit
            report.results.append(live_probes(provider, key, args.target, args.max_paid_tasks))
            continue
        try:
            context = url_target(provider, args.target) if args.target else in_process_target(provider, seed)
            with context as target:
                runner = Runner(target, seed=seed)
                for kind in kinds:
                    show = progress_printer(err, f"{provider} {kind}", args.examples)
                    result = Result(provider, kind)
                    report.results.append(result)  # in the report already: Ctrl-C keeps its cases so far
                    runner.run(kind, args.examples, show, result)
        except errors.WanError as exc:
            err.write(f"wanmock contract: {report.clean(str(exc))}\n")
            return 2
    return None


def add_drift_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "drift",
        help="probe a provider and report where it drifted from the captured contract",
        description="Free probes first (missing key, invalid key, invalid body, unknown task id), then task "
        "lifecycles: free against a wanmock --target, at most --budget billable ones --live. Every answer is "
        "compared with the captured schemas; ids, timestamps and signed URLs never count as drift.",
        epilog="""examples:
  wanmock drift --provider dashscope --live                        free probes only (costs nothing)
  wanmock drift --provider dashscope --live --budget 1             plus one task, cheapest parameters
  wanmock drift --provider apiyi --cassette recordings/apiyi       offline, from a recording
  wanmock drift --provider modellix --target http://127.0.0.1:8000/modellix
  wanmock drift --provider aimlapi --live --format markdown --output drift.md --fail-on warning
  wanmock drift --provider modellix --target http://127.0.0.1:8000 --admin-token T

Exit codes: 0 no finding at the --fail-on severity, 1 drift found, 2 usage error (a --target that
is no wanmock, a cassette of another provider, empty or malformed), 3 internal error, 130 Ctrl-C.
Documentation: docs/DRIFT_AND_RECORDING.md.
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--provider", required=True, choices=sorted(catalog().providers), help="the provider to probe")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--live", action="store_true", help="the real provider (key from the environment)")
    source.add_argument("--cassette", type=Path, help="a directory written by `wanmock record`")
    source.add_argument("--target", help="a running wanmock: its origin or the provider's base URL under it")
    parser.add_argument("--budget", type=int, default=0, help="live: at most this many billable tasks (default 0)")
    parser.add_argument(
        "--format", default="text", choices=("text", "json", "junit", "markdown"), help="the report's format (text)"
    )
    parser.add_argument(
        "--fail-on", default="breaking", choices=("breaking", "warning"), help="the severity that exits 1 (breaking)"
    )
    parser.add_argument("--output", type=Path, help="write the report here instead of standard output")
    parser.add_argument(
        "--admin-token", help="the --target server's control-plane token (default: $WANMOCK_ADMIN_TOKEN)"
    )
    parser.set_defaults(handler=run_drift)


@token_scoped
def run_drift(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import httpx
    from wanmock.contracts.tools.control import NotAWanmock, identify
    from wanmock.contracts.tools.drift import (
        CassetteError,
        Prober,
        compare,
        exit_code,
        observations_from_cassette,
        render,
    )

    use_admin_token(args)
    key: str | None = None
    if args.budget < 0:
        err.write("wanmock drift: --budget must be at least 0\n")
        return 2
    provider = args.provider
    if args.cassette:
        try:
            observations = observations_from_cassette(args.cassette, provider)
        except CassetteError as exc:
            err.write(f"wanmock drift: {exc}\n")
            return 2
    else:
        if args.live:
            variable = api_key_variable(provider)
            key = api_key_from_env(provider)
            if not key:
                err.write(f"wanmock drift: --live needs {variable} in the environment\n")
                return 2
            prober = Prober(provider, catalog().provider(provider).base_url, key)
            lifecycles = args.budget
        else:
            try:
                server = identify(args.target, provider)
            except NotAWanmock as exc:
                err.write(f"wanmock drift: {exc}\n")
                return 2
            admin = server.origin if server.manual_clock else None
            prober = Prober(provider, server.base_url(provider), "test-key", admin_url=admin)
            lifecycles = 1  # a mock's tasks cost nothing
        try:
            observations = prober.free_probes()
            for _ in range(lifecycles):
                observations += prober.lifecycle("t2v", timeout=1500 if args.live else 120)
        except httpx.HTTPError as exc:
            err.write(f"wanmock drift: {provider} could not be reached: {exc}\n")
            return 2
        finally:
            prober.close()
    findings = [finding for observation in observations for finding in compare(observation)]
    report = render(findings, args.format, provider, secrets=[key])
    if args.output:
        args.output.write_text(report, encoding="utf-8")
    else:
        out.write(report)
    return exit_code(findings, args.fail_on)
