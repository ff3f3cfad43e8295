"""Wall times of the user's flows through the CLI, on a sandbox fork of this project.

    python benchmarks/bench_loop.py [--repeats 3]

Measures, on the bundled example with real git, DVC and MLflow (SQLite):
- ``retrain run`` when nothing fired (the weekly no-op; should take seconds),
- ``retrain run`` that retrains and proposes (triggers, dvc repro, gates, push, branch), once
  per new batch (the example has three more: up to 3 runs),
- ``retrain rollback`` + ``retrain promote`` (the 3 a.m. path), each on a fresh clone with no
  data (one per promoted retrain),
against the targets of issue 11 (item 2).  Prints a table (median and min over the repeats)
and the load average before and after: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from retrain import example  # noqa: E402

# Issue 11, item 2: seconds on the bundled example.
TARGETS = {
    "run: nothing fired": 1.0,
    "run: new data -> retrain -> propose": 8.0,
    "rollback + promote": 3.0,
}


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
    return elapsed


def timed_run(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    """Like :func:`timed` for ``retrain run --json``, with its result."""
    start = time.perf_counter()
    res = subprocess.run([*cmd, "--json"], cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
    return elapsed, json.loads(res.stdout)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    retrain = [sys.executable, "-m", "retrain"]
    retrains = max(1, min(args.repeats, len(example.BATCHES) - example.INITIAL_BATCHES))
    rows: list[tuple[str, list[float]]] = []
    load_before = load()
    with tempfile.TemporaryDirectory() as tmp:
        sb = example.make_sandbox(Path(tmp) / "sb", ROOT)
        env = {**os.environ, **sb.env}
        boot = timed([*retrain, "run"], sb.root, env)
        rows.append(("run: bootstrap (train v1.0.0, gates, propose)", [boot]))
        example.merge_proposal(sb, "retrain/v1.0.0")
        timed([*retrain, "promote", "--push-tags"], sb.root, env)
        timed([*retrain, "run"], sb.root, env)  # the first no-op reads and checks the batches
        rows.append(
            (
                "run: nothing fired",
                [timed([*retrain, "run"], sb.root, env) for _ in range(args.repeats)],
            )
        )
        runs, promoted, outcomes = [], 0, []
        for _ in range(retrains):
            example.ingest_next_batch(sb.root, sb.env)
            seconds, result = timed_run([*retrain, "run"], sb.root, env)
            runs.append(seconds)
            outcomes.append(result["outcome"])
            if result["outcome"] == "proposed":  # a gated candidate is timed all the same
                example.merge_proposal(sb, result["branch"])
                timed([*retrain, "promote", "--push-tags"], sb.root, env)
                promoted += 1
        rows.append(("run: new data -> retrain -> propose", runs))
        rbs, prs = [], []
        for i in range(max(promoted, 1)):
            oncall = Path(tmp) / f"oncall{i}"
            subprocess.run(["git", "clone", "-q", str(sb.origin), str(oncall)], check=True, env=env)
            rbs.append(timed([*retrain, "rollback", "--push"], oncall, env))
            prs.append(timed([*retrain, "promote"], oncall, env))
        rows.append(("rollback --push (fresh clone, no data)", rbs))
        rows.append(("promote after the revert (fetch from remote)", prs))
        rows.append(("rollback + promote", [a + b for a, b in zip(rbs, prs, strict=True)]))
        rows.append(
            ("status", [timed([*retrain, "status"], oncall, env) for _ in range(args.repeats)])
        )
    width = max(len(name) for name, _ in rows)
    print(
        f"loop benchmark: {os.cpu_count()} CPUs; load average {load_before} before, {load()} "
        f"after; retrain outcomes: {', '.join(outcomes)}"
    )
    print(f"{'flow':<{width}}  {'median s':>9}  {'min s':>7}  runs  {'target s':>8}  ok")
    for name, values in rows:
        target = TARGETS.get(name)
        median = statistics.median(values)
        verdict = "" if target is None else ("yes" if median <= target else "NO")
        shown = f"{target:>8.1f}" if target is not None else f"{'':>8}"
        print(
            f"{name:<{width}}  {median:>9.2f}  {min(values):>7.2f}  {len(values):>4}  {shown}  "
            f"{verdict}"
        )


if __name__ == "__main__":
    main()
