"""Wall time of ``retrain init`` on synthetic files of growing size.

    python benchmarks/bench_init.py [--rows 10000 100000 1000000] [--repeats 1]

Each run copies the template's configs into a fresh DVC repository (no git), writes a CSV
with 8 numeric, 3 categorical (one with missing values), an identifier, a time column and a
boolean target, and times ``retrain init --data F --target churn --time-column day``
through the CLI (inference, checks, the split into batches and holdout, ``dvc add data``).
Prints a table: rows, file MB, median and min seconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def make_file(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f"x {i}": rng.normal(i, 1 + i, rows).round(3) for i in range(8)})
    for i, levels in enumerate((["a", "b", "c"], ["north", "south"], list("pqrstuvw"))):
        frame[f"cat-{i}"] = rng.choice(levels, rows)
    frame.loc[rng.random(rows) < 0.05, "cat-0"] = None
    frame["id"] = [f"row-{i}" for i in range(rows)]
    frame["day"] = pd.date_range("2000-01-01", periods=rows, freq="min").strftime("%Y-%m-%d %H:%M")
    frame["churn"] = frame["x 0"] + rng.normal(0, 1, rows) > 0
    frame.to_csv(path, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    retrain = [sys.executable, "-m", "retrain"]
    dvc = str(Path(sys.executable).with_name("dvc"))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    print(f"{'rows':>10} {'file MB':>8} {'median s':>9} {'min s':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.rows:
            data = Path(tmp) / f"data-{rows}.csv"
            make_file(data, rows)
            times = []
            for r in range(args.repeats):
                fork = Path(tmp) / f"fork-{rows}-{r}"
                fork.mkdir()
                for rel in ("configs", "dvc.yaml", "registry.yaml"):
                    src = ROOT / rel
                    (shutil.copytree if src.is_dir() else shutil.copy2)(src, fork / rel)
                subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=fork, check=True, env=env)
                start = time.perf_counter()
                res = subprocess.run(
                    [
                        *retrain,
                        "init",
                        "--data",
                        str(data),
                        "--target",
                        "churn",
                        "--time-column",
                        "day",
                    ],
                    cwd=fork,
                    env=env,
                    capture_output=True,
                    text=True,
                )
                times.append(time.perf_counter() - start)
                if res.returncode != 0:
                    raise SystemExit(f"init failed on {rows} rows:\n{res.stderr}")
            mb = data.stat().st_size / 1e6
            print(f"{rows:>10} {mb:>8.1f} {statistics.median(times):>9.2f} {min(times):>7.2f}")


if __name__ == "__main__":
    main()
