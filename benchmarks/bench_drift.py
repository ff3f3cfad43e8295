"""Benchmark: retrain's drift_report against a plain scipy loop and Evidently's DataDriftPreset.

Run from the repository root::

    .venv/bin/python benchmarks/bench_drift.py              # 1,000,000 rows (full size)
    .venv/bin/python benchmarks/bench_drift.py --rows 100000

The reference and current tables (seeded; the current one shifted in some columns) are written
once to Parquet under ``benchmarks/.data/``.  Every contender then runs in its own subprocess,
reads those files, and reports its read and drift seconds and its own peak RSS
(``getrusage(RUSAGE_SELF).ru_maxrss``).  Evidently needs ``pandas<3``, so it is not a project
dependency: it runs in its own virtualenv, ``benchmarks/.venv-evidently``, created on first use
(``pip install "evidently>=0.7,<0.8" "pandas<3" pyarrow``).  When that cannot be installed, the
table says so.  See ``benchmarks/README.md``.

This file imports only the standard library at the top: the same file is the worker in both
virtualenvs (``--worker NAME``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
EVIDENTLY_VENV = HERE / ".venv-evidently"
EVIDENTLY_REQUIREMENTS = ["evidently>=0.7,<0.8", "pandas<3", "pyarrow"]
DATA_ROOT = HERE / ".data"

TARGET_VS_EVIDENTLY = 20.0
TARGET_VS_SCIPY = 2.0
TARGET_MEMORY = 3.0


# --------------------------------------------------------------------------- data
def numeric_names(spec: dict) -> list[str]:
    return [f"num{i:02d}" for i in range(spec["numeric"])]


def categorical_names(spec: dict) -> list[str]:
    return [f"cat{i:02d}" for i in range(spec["categorical"])]


def make_data(spec: dict, out: Path) -> dict:
    """Write ``reference.parquet`` and ``current.parquet`` (seeded) and return their facts.

    Numeric columns cycle through normal, log-normal, exponential and a normal rounded to two
    decimals (ties).  In the current table, the first fifth of the numeric columns move by
    0.02 standard deviations (significant at this size, too small to matter), the next fifth
    by 0.3 (a real shift); the first fifth of the categorical columns get tilted level
    frequencies.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = spec["rows"]
    rng = np.random.default_rng(spec["seed"])
    levels = np.array([f"level_{i:02d}" for i in range(spec["levels"])])
    even = np.full(levels.size, 1 / levels.size)
    tilt = np.linspace(1.5, 0.5, levels.size)
    tilt /= tilt.sum()
    nums, cats = numeric_names(spec), categorical_names(spec)
    fifth_n, fifth_c = max(1, len(nums) // 5), max(1, len(cats) // 5)
    shifted = nums[fifth_n : 2 * fifth_n] + cats[:fifth_c]

    def table(current: bool) -> pa.Table:
        cols = {}
        for i, name in enumerate(nums):
            shift = 0.0
            if current and i < fifth_n:
                shift = 0.02
            elif current and i < 2 * fifth_n:
                shift = 0.3
            kind = i % 4
            if kind == 0:
                v = rng.normal(shift, 1.0, rows)
            elif kind == 1:
                v = rng.lognormal(shift, 1.0, rows)
            elif kind == 2:
                v = rng.exponential(1.0, rows) + shift
            else:
                v = np.round(rng.normal(shift, 1.0, rows), 2)
            cols[name] = pa.array(v)
        for i, name in enumerate(cats):
            p = tilt if current and i < fifth_c else even
            cols[name] = pa.array(levels[rng.choice(levels.size, rows, p=p)])
        return pa.table(cols)

    out.mkdir(parents=True, exist_ok=True)
    nbytes = 0
    for name, current in (("reference", False), ("current", True)):
        t = table(current)
        nbytes += t.nbytes
        pq.write_table(t, out / f"{name}.parquet")
        del t
    facts = {**spec, "input_bytes": nbytes, "shifted": shifted}
    (out / "facts.json").write_text(json.dumps(facts, indent=1))
    return facts


def ensure_data(spec: dict) -> tuple[Path, dict]:
    key = "rows{rows}-num{numeric}-cat{categorical}x{levels}-seed{seed}".format(**spec)
    out = DATA_ROOT / key
    facts_path = out / "facts.json"
    if facts_path.is_file():
        return out, json.loads(facts_path.read_text())
    print(f"writing the benchmark data to {out} ...", file=sys.stderr, flush=True)
    return out, make_data(spec, out)


# --------------------------------------------------------------------------- workers
def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _rss_bytes() -> int:
    """Resident set size now (after the imports, before any data: the interpreter's share)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def worker_retrain(data: Path, facts: dict, mode: str) -> dict:
    import pandas as pd

    from retrain.decide.drift import DriftConfig, drift_report

    kinds = {c: "numeric" for c in numeric_names(facts)}
    kinds.update({c: "categorical" for c in categorical_names(facts)})
    workers = 1 if mode == "parquet-1" else None
    cfg = DriftConfig(workers=workers)
    base = _rss_bytes()
    t0 = time.perf_counter()
    read = None
    if mode == "frames":
        ref = pd.read_parquet(data / "reference.parquet")
        cur = pd.read_parquet(data / "current.parquet")
        read = time.perf_counter() - t0
        t0 = time.perf_counter()
        rep = drift_report(ref, cur, kinds=kinds, config=cfg)
    else:
        rep = drift_report(
            data / "reference.parquet", data / "current.parquet", kinds=kinds, config=cfg
        )
    seconds = time.perf_counter() - t0
    flagged = sorted(c for c, f in rep.features.items() if f["drifted"])
    return {"read": read, "drift": seconds, "drifted": flagged, "base_rss": base}


def worker_scipy(data: Path, facts: dict) -> dict:
    """What one would write by hand: ks_2samp, np.quantile + np.histogram PSI, chi2."""
    import numpy as np
    import pandas as pd
    from scipy import stats

    base = _rss_bytes()
    t0 = time.perf_counter()
    ref = pd.read_parquet(data / "reference.parquet")
    cur = pd.read_parquet(data / "current.parquet")
    read = time.perf_counter() - t0
    t0 = time.perf_counter()
    nums, cats = numeric_names(facts), categorical_names(facts)
    alpha = 0.05 / (len(nums) + len(cats))
    eps = 1e-4

    def psi(p: np.ndarray, q: np.ndarray) -> float:
        p, q = np.maximum(p, eps), np.maximum(q, eps)
        return float(np.sum((q - p) * np.log(q / p)))

    flagged = []
    for c in nums:
        a, b = ref[c].dropna().to_numpy(), cur[c].dropna().to_numpy()
        res = stats.ks_2samp(a, b)
        edges = np.concatenate(([-np.inf], np.quantile(a, np.linspace(0, 1, 11)[1:-1]), [np.inf]))
        pa_, _ = np.histogram(a, edges)
        pb_, _ = np.histogram(b, edges)
        value = psi(pa_ / a.size, pb_ / b.size)
        if (res.pvalue < alpha and res.statistic >= 0.1) or value >= 0.2:
            flagged.append(c)
    for c in cats:
        counts = (
            pd.concat(
                [ref[c].value_counts(dropna=False), cur[c].value_counts(dropna=False)], axis=1
            )
            .fillna(0)
            .to_numpy()
            .T
        )
        res = stats.chi2_contingency(counts, correction=False)
        value = psi(counts[0] / counts[0].sum(), counts[1] / counts[1].sum())
        v = (res.statistic / counts.sum()) ** 0.5
        if (res.pvalue < alpha and v >= 0.1) or value >= 0.2:
            flagged.append(c)
    return {
        "read": read,
        "drift": time.perf_counter() - t0,
        "drifted": sorted(flagged),
        "base_rss": base,
    }


def worker_evidently(data: Path, facts: dict) -> dict:
    import evidently
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    base = _rss_bytes()
    t0 = time.perf_counter()
    ref = pd.read_parquet(data / "reference.parquet")
    cur = pd.read_parquet(data / "current.parquet")
    read = time.perf_counter() - t0
    t0 = time.perf_counter()
    definition = DataDefinition(
        numerical_columns=numeric_names(facts), categorical_columns=categorical_names(facts)
    )
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    result = snapshot.dict()
    seconds = time.perf_counter() - t0
    flagged = []
    for metric in result.get("metrics", []):
        cfg = metric.get("config", {})
        value = metric.get("value")
        is_column_drift = cfg.get("type", "").endswith("ValueDrift") and value is not None
        if is_column_drift and float(value) >= float(cfg.get("threshold", 0.1)):
            flagged.append(cfg.get("column"))
    return {
        "read": read,
        "drift": seconds,
        "drifted": sorted(flagged),
        "version": evidently.__version__,
        "base_rss": base,
    }


def run_worker(name: str, data: Path) -> None:
    facts = json.loads((data / "facts.json").read_text())
    if name.startswith("retrain-"):
        out = worker_retrain(data, facts, name.removeprefix("retrain-"))
    elif name == "scipy":
        out = worker_scipy(data, facts)
    elif name == "evidently":
        out = worker_evidently(data, facts)
    else:
        raise SystemExit(f"unknown worker {name!r}")
    out["peak_rss"] = _peak_rss_bytes()
    print("RESULT " + json.dumps(out), flush=True)


# --------------------------------------------------------------------------- orchestration
def evidently_python(log: list[str]) -> tuple[Path | None, str]:
    """The Evidently venv's interpreter, created on first use; or None and why not."""
    python = EVIDENTLY_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {EVIDENTLY_VENV} (one-off) ...", file=sys.stderr, flush=True)
        base = getattr(sys, "_base_executable", sys.executable)
        steps = [
            [base, "-m", "venv", str(EVIDENTLY_VENV)],
            [str(python), "-m", "pip", "install", "--quiet", *EVIDENTLY_REQUIREMENTS],
        ]
        for cmd in steps:
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return None, f"not available: {' '.join(cmd[:3])} failed ({exc})"
            if proc.returncode != 0:
                last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
                log.append(proc.stderr)
                return None, f"not available: {' '.join(cmd[1:4])} failed: {last[0][:120]}"
    check = subprocess.run(
        [str(python), "-c", "import evidently; print(evidently.__version__)"],
        capture_output=True,
        text=True,
    )
    if check.returncode != 0:
        return None, "not available: evidently does not import in " + str(EVIDENTLY_VENV)
    return python, check.stdout.strip()


def run_contender(
    python: Path | str, name: str, data: Path, timeout: float, env: dict | None = None
) -> dict:
    cmd = [str(python), str(Path(__file__).resolve()), "--worker", name, "--data", str(data)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"error": f"timed out after {timeout:.0f} s", "timed_out": timeout}
    wall = time.perf_counter() - t0
    for line in out.splitlines():
        if line.startswith("RESULT "):
            res = json.loads(line.removeprefix("RESULT "))
            res["wall"] = wall
            return res
    tail = (err or out).strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
    return {"error": f"failed: {tail[0][:140]}"}


def fastest(runs: list[dict]) -> dict:
    """The run with the smallest read + drift time, with the largest peak RSS of all runs."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    best = dict(min(ok, key=lambda r: (r.get("read") or 0.0) + r["drift"]))
    best["peak_rss"] = max(r["peak_rss"] for r in ok)
    best["base_rss"] = min(r.get("base_rss", 0) for r in ok)
    return best


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _s(x: float | None) -> str:
    return "–" if x is None else f"{x:,.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows per table")
    ap.add_argument("--numeric", type=int, default=50, help="numeric columns")
    ap.add_argument("--categorical", type=int, default=10, help="categorical columns")
    ap.add_argument("--levels", type=int, default=20, help="levels per categorical column")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per contender")
    ap.add_argument("--no-evidently", action="store_true", help="skip Evidently")
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each contender but Evidently; the fastest is reported (shared machines)",
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        run_worker(args.worker, args.data)
        return 0

    spec = {
        "rows": args.rows,
        "numeric": args.numeric,
        "categorical": args.categorical,
        "levels": args.levels,
        "seed": args.seed,
    }
    data, facts = ensure_data(spec)
    load_before = os.getloadavg()[0]
    input_bytes = facts["input_bytes"]
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src")}

    contenders: list[tuple[str, dict]] = []
    for label, name in [
        ("retrain drift_report, Parquet paths, 2 threads", "retrain-parquet"),
        ("retrain drift_report, Parquet paths, 1 thread", "retrain-parquet-1"),
        ("retrain drift_report, DataFrames, 2 threads", "retrain-frames"),
        ("scipy loop: ks_2samp + numpy PSI + chi2", "scipy"),
    ]:
        print(f"running: {label} ...", file=sys.stderr, flush=True)
        runs = [
            run_contender(sys.executable, name, data, args.timeout, env)
            for _ in range(max(1, args.repeat))
        ]
        contenders.append((label, fastest(runs)))
    ev_label = "Evidently DataDriftPreset"
    if args.no_evidently:
        contenders.append((ev_label, {"error": "skipped (--no-evidently)"}))
    else:
        log: list[str] = []
        python, version = evidently_python(log)
        if python is None:
            contenders.append((ev_label, {"error": version}))
        else:
            ev_label = f"Evidently {version} DataDriftPreset"
            print(f"running: {ev_label} ...", file=sys.stderr, flush=True)
            contenders.append((ev_label, run_contender(python, "evidently", data, args.timeout)))

    ours = contenders[0][1]
    ours_frames = contenders[2][1]

    def total(r: dict) -> float | None:
        if "error" in r:
            return None
        return (r.get("read") or 0.0) + r["drift"]

    header = [
        "contender",
        "read s",
        "drift s",
        "total s",
        "peak RSS",
        "above imports",
        "peak/input",
        "cols drifted",
        "ours faster (total)",
        "ours faster (drift)",
    ]
    rows = []
    for label, r in contenders:
        if "error" in r:
            lower = ""
            if r.get("timed_out") and total(ours):
                lower = f"> {r['timed_out'] / total(ours):.0f}x"
            rows.append([label, "–", "–", r["error"], "–", "–", "–", "–", lower, ""])
            continue
        t = total(r)
        vs_total = f"{t / total(ours):.1f}x" if total(ours) and r is not ours else ""
        vs_drift = ""
        if r.get("read") is not None and r is not ours_frames and "error" not in ours_frames:
            vs_drift = f"{r['drift'] / ours_frames['drift']:.1f}x"
        rows.append(
            [
                label,
                _s(r.get("read")),
                _s(r["drift"]),
                _s(t),
                _mib(r["peak_rss"]),
                _mib(r["peak_rss"] - r.get("base_rss", 0)),
                f"{r['peak_rss'] / input_bytes:.2f}",
                str(len(r["drifted"])),
                vs_total,
                vs_drift,
            ]
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    print()
    print(
        f"drift benchmark: reference and current of {args.rows:,} rows x ({args.numeric} numeric"
        f" + {args.categorical} categorical columns of {args.levels} levels) each, seed "
        f"{args.seed}; input {_mib(input_bytes)} in memory (Arrow, both tables); "
        f"{os.cpu_count()} CPUs; load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after; fastest of {max(1, args.repeat)} run(s) per "
        "contender, Evidently 1"
    )
    print(
        f"truly shifted columns: {len(facts['shifted'])} "
        f"({', '.join(facts['shifted'][:6])}{', ...' if len(facts['shifted']) > 6 else ''})"
    )
    print()
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line(row))
    print()
    print(
        "'read s': pd.read_parquet of both files (the Parquet-path rows read column by column "
        "inside 'drift s');"
    )
    print(
        "'ours faster (total)': contender's total / the first row's total; '(drift)': "
        "contender's drift s / retrain on the same DataFrames."
    )

    verdicts = []
    scipy_r, ev_r = contenders[3][1], contenders[4][1]
    if total(ours) and total(scipy_r):
        ratio = total(scipy_r) / total(ours)
        verdicts.append(
            f"vs scipy loop: {ratio:.1f}x (target >= {TARGET_VS_SCIPY:g}x) "
            f"{'PASS' if ratio >= TARGET_VS_SCIPY else 'FAIL'}"
        )
    if total(ours) and total(ev_r):
        ratio = total(ev_r) / total(ours)
        verdicts.append(
            f"vs Evidently: {ratio:.1f}x (target >= {TARGET_VS_EVIDENTLY:g}x) "
            f"{'PASS' if ratio >= TARGET_VS_EVIDENTLY else 'FAIL'}"
        )
    elif "error" in ev_r:
        verdicts.append(f"vs Evidently: {ev_r['error']}")
    for label, r in contenders[:3]:
        if "error" not in r:
            m = r["peak_rss"] / input_bytes
            verdicts.append(
                f"peak memory, {label}: {m:.2f}x input (target < "
                f"{TARGET_MEMORY:g}x) {'PASS' if m < TARGET_MEMORY else 'FAIL'}"
            )
    print()
    for v in verdicts:
        print(v)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
