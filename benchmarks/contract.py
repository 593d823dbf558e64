"""Contract-run speed: N generated examples per provider, in-process, every check on.

Run:  python benchmarks/contract.py [--examples 1000] [--provider all]

The examples of a provider are shared between its models (1000 for DashScope: 334 t2v, 333 i2v,
333 video edit), plus the fixed scenarios of each model. Prints seconds per provider and the
exchanges per second on the wire.
"""

from __future__ import annotations

import argparse
import time

from wanmock.contracts.testing.runner import Runner, in_process_target
from wanmock.schemas import catalog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=1000, help="examples per provider")
    parser.add_argument("--provider", default="all")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    providers = sorted(catalog().providers) if args.provider == "all" else [args.provider]
    print(f"{'provider':<10} {'examples':>8} {'cases':>6} {'seconds':>8} {'examples/s':>10} {'passed':>7}")
    for provider in providers:
        kinds = list(catalog().provider(provider).models)
        shares = [args.examples // len(kinds) + (1 if i < args.examples % len(kinds) else 0) for i in range(len(kinds))]
        started = time.perf_counter()
        examples = cases = 0
        passed = True
        with in_process_target(provider, args.seed) as target:
            runner = Runner(target, seed=args.seed)
            for kind, share in zip(kinds, shares, strict=True):
                result = runner.run(kind, share)
                examples += result.examples
                cases += result.cases
                passed = passed and not result.failures
        seconds = time.perf_counter() - started
        print(f"{provider:<10} {examples:>8} {cases:>6} {seconds:>8.1f} {examples / seconds:>10.0f} {passed!s:>7}")


if __name__ == "__main__":
    main()
