"""`wanmock contract`: run the contract suite against the in-process mock, a URL, or live."""

from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path
from typing import Any, TextIO

from schemas import catalog


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "contract",
        help="run the contract checks (reference client + hypothesis) against a mock or the live API",
        description="Generated valid and invalid requests, lifecycle scenarios and fault scenarios, "
        "every exchange checked against the captured schemas. Exit 0 only when every check passed.",
    )
    parser.add_argument("--provider", required=True, choices=("all", *sorted(catalog().providers)))
    parser.add_argument("--model", choices=("t2v", "i2v", "videoedit"), help="one model kind (default: all offered)")
    parser.add_argument("--examples", type=int, default=100, help="generated examples per model (default 100)")
    parser.add_argument("--seed", type=int, help="reproduce a run (printed in every report)")
    parser.add_argument("--target", help="a running wanmock (e.g. http://127.0.0.1:8000); default: in-process")
    parser.add_argument("--live", action="store_true", help="probe the live provider (key from the environment)")
    parser.add_argument(
        "--max-paid-tasks", type=int, default=0, help="live: at most this many billable submissions (default 0)"
    )
    parser.add_argument("--report", type=Path, help="write a JSON report here")
    parser.add_argument("--junit", type=Path, help="write a JUnit XML report here")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from contracts import errors
    from contracts.runner import (
        Report,
        Runner,
        in_process_target,
        live_probes,
        progress_printer,
        summary,
        url_target,
    )

    if args.examples < 1 or args.max_paid_tasks < 0:
        err.write("wanmock contract: --examples must be at least 1 and --max-paid-tasks at least 0\n")
        return 2
    providers = sorted(catalog().providers) if args.provider == "all" else [args.provider]
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    label = "live" if args.live else (args.target or "in-process")
    report = Report(target=label, seed=seed)
    for provider in providers:
        kinds = [args.model] if args.model else list(catalog().provider(provider).models)
        if args.model and args.model not in catalog().provider(provider).models:
            err.write(f"wanmock contract: {provider} does not offer {args.model}\n")
            return 2
        if args.live:
            variable = f"{provider.upper()}_API_KEY"
            key = os.environ.get(variable)
            if not key:
                err.write(f"wanmock contract: --live needs {variable} in the environment\n")
                return 2
            report.results.append(live_probes(provider, key, args.target, args.max_paid_tasks))
            continue
        try:
            context = url_target(provider, args.target) if args.target else in_process_target(provider, seed)
            with context as target:
                runner = Runner(target, seed=seed)
                for kind in kinds:
                    show = progress_printer(err, f"{provider} {kind}", args.examples)
                    report.results.append(runner.run(kind, args.examples, show))
        except errors.WanError as exc:
            err.write(f"wanmock contract: {exc}\n")
            return 2
    summary(report, out)
    if args.report:
        args.report.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    if args.junit:
        args.junit.write_text(report.junit(), encoding="utf-8")
    return 0 if report.passed else 1
