"""Three-node fault run: kill -9 the master under load, restart it, check nothing was lost.

    .venv/bin/python bench/faults.py
    .venv/bin/python bench/faults.py --down 30 --before 20 --heap 512m

Starts its own 3-node loopback cluster (free ports, deleted afterwards) with the product's
starter, serves the API in a subprocess, and runs a writer, searchers and reviewers while the
elected master is killed and restarted (the scenario lives in
``harness/fault_scenario.py``, shared with the slow test). Prints failed requests,
retries, recovery times and the verification; exits 1 if any guarantee broke.
"""

from __future__ import annotations

import argparse
import sys

from harness.fault_scenario import FaultConfig, run_scenario


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = FaultConfig()
    parser.add_argument("--heap", default=default.heap, help="heap of each node")
    parser.add_argument("--seed-items", type=int, default=default.seed_items)
    parser.add_argument("--batch-size", type=int, default=default.batch_size)
    parser.add_argument("--searchers", type=int, default=default.search_threads)
    parser.add_argument("--reviewers", type=int, default=default.review_threads)
    parser.add_argument(
        "--before",
        type=float,
        default=default.before_kill_s,
        help="seconds of load before the kill",
    )
    parser.add_argument(
        "--down", type=float, default=default.down_s, help="seconds the node stays down"
    )
    parser.add_argument(
        "--after", type=float, default=default.after_green_s, help="seconds of load after green"
    )
    args = parser.parse_args()
    config = FaultConfig(
        heap=args.heap,
        seed_items=args.seed_items,
        batch_size=args.batch_size,
        search_threads=args.searchers,
        review_threads=args.reviewers,
        before_kill_s=args.before,
        down_s=args.down,
        after_green_s=args.after,
    )
    report = run_scenario(config)
    print()
    print(report.render())
    return 1 if report.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
