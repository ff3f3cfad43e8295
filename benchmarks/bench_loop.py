"""Wall times of the user's flows through the CLI, on a sandbox fork of this project.

    python benchmarks/bench_loop.py [--repeats 3]

Measures, on the bundled example with real git, DVC and MLflow (SQLite):
- ``retrain run`` when nothing fired (the weekly no-op; should take seconds),
- ``retrain run`` that retrains and proposes (triggers, dvc repro, gates, push, branch),
- ``retrain rollback`` + ``retrain promote`` (the 3 a.m. path), on a fresh clone with no data.
Prints a table: median and min over the repeats of the cheap steps.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from retrain import example  # noqa: E402


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    retrain = [sys.executable, "-m", "retrain"]
    rows: list[tuple[str, list[float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        sb = example.make_sandbox(Path(tmp) / "sb", ROOT)
        env = {**os.environ, **sb.env}
        boot = timed([*retrain, "run"], sb.root, env)
        rows.append(("run: bootstrap (train v1.0.0, gates, propose)", [boot]))
        example.merge_proposal(sb, "retrain/v1.0.0")
        timed([*retrain, "promote", "--push-tags"], sb.root, env)
        rows.append(
            (
                "run: nothing fired",
                [timed([*retrain, "run"], sb.root, env) for _ in range(args.repeats)],
            )
        )
        example.ingest_next_batch(sb.root, sb.env)
        rows.append(
            ("run: new data -> retrain -> propose v1.1.0", [timed([*retrain, "run"], sb.root, env)])
        )
        example.merge_proposal(sb, "retrain/v1.1.0")
        timed([*retrain, "promote", "--push-tags"], sb.root, env)
        oncall = Path(tmp) / "oncall"
        subprocess.run(["git", "clone", "-q", str(sb.origin), str(oncall)], check=True, env=env)
        rb = timed([*retrain, "rollback", "--push"], oncall, env)
        pr = timed([*retrain, "promote"], oncall, env)
        rows.append(("rollback --push (fresh clone, no data)", [rb]))
        rows.append(("promote after the revert (fetch v1.0.0 from remote)", [pr]))
        rows.append(("rollback + promote", [rb + pr]))
        rows.append(
            ("status", [timed([*retrain, "status"], oncall, env) for _ in range(args.repeats)])
        )
    width = max(len(name) for name, _ in rows)
    print(f"{'flow':<{width}}  {'median s':>9}  {'min s':>7}  runs")
    for name, values in rows:
        print(
            f"{name:<{width}}  {statistics.median(values):>9.2f}  {min(values):>7.2f}  {len(values)}"
        )


if __name__ == "__main__":
    main()
