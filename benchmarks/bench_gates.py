"""How long the gates take on a large holdout: ``evaluate_gates`` with every paired bootstrap
(improvement, subgroups, guardrails, churn) at the default 1,000 resamples.

One command, from the repository root (prints a table)::

    .venv/bin/python benchmarks/bench_gates.py [--rows 5000,50000] [--repeat 5]

The candidate and production disagree on about a fifth of the rows (the unit tests' data:
``tests/test_gates.py``).  Each size is timed ``--repeat`` times in this process; the table
shows the fastest and the median, with the machine's load average.  This replaces a timed
assertion that used to sit in the unit tests (a timing is a measurement, not a verdict).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from retrain.decide.gates import evaluate_gates  # noqa: E402
from tests.test_gates import CFG, inputs, labels, scores, wrong_on  # noqa: E402


def one(rows: int) -> float:
    y = labels(rows)
    bad_c = range(int(rows * 0.16))
    bad_b = range(int(rows * 0.12), int(rows * 0.30))
    cand, base = scores(wrong_on(y, bad_c)), scores(wrong_on(y, bad_b))
    start = time.perf_counter()
    report = evaluate_gates(inputs(y, cand, base), CFG)
    seconds = time.perf_counter() - start
    assert report.results, "the gates ran"
    return seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="5000,50000", help="holdout sizes, comma-separated")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.rows.split(",") if s]
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"evaluate_gates, {CFG.improvement.n_resamples} resamples; load average {load}\n")
    print("| holdout rows | fastest (s) | median (s) | runs |")
    print("|---:|---:|---:|---:|")
    for n in sizes:
        times = [one(n) for _ in range(args.repeat)]
        print(f"| {n:,} | {min(times):.3f} | {statistics.median(times):.3f} | {len(times)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
