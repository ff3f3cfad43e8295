"""`retrain monitor` over a large prediction log: wall time and peak memory, before and after.

    python benchmarks/bench_monitor.py [--rows 1000000,10000000] [--backends sqlite,postgresql]
                                       [--before REF] [--max-rss-gb 6] [--timeout 900]

Builds a project (this repository's configs; a hand-written registry with v1.0.0 in
production and v1.1.0 as a canary at 10%, committed at a fixed date: no model is trained, the
monitor needs none) and a prediction log of ``--rows`` served rows since that commit, shaped
as ``retrain serve`` writes them:

- requests of 1, 10 or 100 rows (half, 30%, 20% of requests; 23.5 rows on average), one in
  ten answered by the canary, 0.5% of requests failed (every row logged with prediction
  null), latency per request from a gamma distribution (the canary's 10% slower);
- every row with its five class probabilities and its input hash (``log_inputs: false``);
- a label for one row in ten, written by a token (a tenth of those without a token, which
  the monitor must ignore), right 80% of the time for production and 82% for the canary.

The log is generated once per size and backend and kept (SQLite under
``benchmarks/.data/monitor/``; PostgreSQL in a throw-away server, tests/postgres.py, loaded
with COPY for each run).  Then ``retrain monitor --json`` runs as its own process, from this
checkout ("after") and, with ``--before REF``, from the source of that git ref ("before",
``git archive``, on ``PYTHONPATH``), one after the other on the same log.  Wall time and
peak RSS (``ru_maxrss`` of the monitor process, from ``wait4``; PostgreSQL's own memory is
the server's) are measured; a run past ``--max-rss-gb`` or ``--timeout`` is stopped and said.
Prints one Markdown table with the load average before and after each run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from bench_serve import source_of  # noqa: E402  (benchmarks/: the script's folder)

from retrain.core import registry as reg  # noqa: E402
from retrain.serve import predlog  # noqa: E402
from tests.rollout_frames import hand_entry  # noqa: E402

DATA = ROOT / "benchmarks" / ".data" / "monitor"
GENERATOR = 1  # bump when the generated log changes, so a kept one is not reused
STEP_AT = "2026-01-01T00:00:00+00:00"  # registry.yaml's last change: the canary step began
START = np.datetime64("2026-01-01T00:00:01", "us")
SPAN_S = 86_400.0  # the rows are spread over one day after the step began
CLASSES = ["drizzle", "fog", "rain", "snow", "sun"]
SIZES, SIZE_P = np.array([1, 10, 100]), np.array([0.5, 0.3, 0.2])


# --------------------------------------------------------------------------- the project
def _entry(version: str, created: str, accuracy: float) -> dict[str, Any]:
    return hand_entry(
        version,
        created=created,
        accuracy=accuracy,
        files={"data/batches/b.csv": 100},
        start="2025-01-01",
        end="2025-12-01",
    )


def make_project(root: Path) -> Path:
    """A git repository with this project's configs, strategy canary, v1.1.0 at 10%."""
    if (root / ".git").is_dir():
        return root
    shutil.copytree(ROOT / "configs", root / "configs")
    release = root / "configs" / "release.yaml"
    text = release.read_text()
    release.write_text(text.replace("strategy: direct", "strategy: canary"))
    v1 = _entry("1.0.0", "2025-12-01T00:00:00Z", 0.8)
    v11 = _entry("1.1.0", "2025-12-20T00:00:00Z", 0.82)
    r = reg.Registry(model="seattle-weather", production="1.0.0", versions=[v1, v11])
    reg.save(root, reg.with_rollout(r, reg.Rollout(reg.Canary("1.1.0", 10))))
    env = {**os.environ, "GIT_COMMITTER_DATE": STEP_AT, "GIT_AUTHOR_DATE": STEP_AT,
           "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}  # fmt: skip
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "Rollout: canary 1.1.0 at 10%"]):  # fmt: skip
        subprocess.run(cmd, cwd=root, check=True, env=env)
    return root


# --------------------------------------------------------------------------- the log
def _times(us: np.ndarray) -> list[str]:
    return [f"{t}Z" for t in (START + us.astype("timedelta64[us]")).astype(str)]


def chunks(rows: int, seed: int = 0, per_chunk: int = 200_000):
    """``(prediction rows, label rows)`` in chunks of about ``per_chunk`` rows, in time order,
    as tuples in ``predlog.RECORD_KEYS`` order and ``(request_id, row, label, at, token)``."""
    rng = np.random.default_rng(seed)
    mean = float((SIZES * SIZE_P).sum())
    n_requests = int(rows / mean) + 1
    probas = [
        predlog.ENCODER.encode(dict(zip(CLASSES, np.round(p, 6).tolist(), strict=True)))
        for p in rng.dirichlet(np.ones(5), size=64)
    ]
    done = 0
    req_no = 0
    while done < rows:
        k = max(1, int(per_chunk / mean))
        sizes = rng.choice(SIZES, size=k, p=SIZE_P)
        sizes = sizes[np.cumsum(sizes) + done <= rows]
        if not len(sizes):
            sizes = np.array([rows - done])
        canary = rng.random(len(sizes)) < 0.1
        failed = rng.random(len(sizes)) < 0.005
        latency = np.round(rng.gamma(4.0, 2.5, size=len(sizes)) * np.where(canary, 1.1, 1.0), 3)
        us = ((req_no + np.arange(len(sizes))) * (SPAN_S * 1e6 / n_requests)).astype(np.int64)
        at = _times(us)
        label_at = _times(us + 60_000_000)
        ids = [rng.bytes(16).hex() for _ in range(len(sizes))]
        n_rows = int(sizes.sum())
        preds = rng.integers(0, 5, size=n_rows)
        proba_pick = rng.integers(0, len(probas), size=n_rows)
        labelled = rng.random(n_rows) < 0.1
        anonymous = rng.random(n_rows) < 0.1
        right = rng.random(n_rows)
        hashes = rng.bytes(32 * n_rows).hex()
        pred_rows: list[tuple[Any, ...]] = []
        label_rows: list[tuple[Any, ...]] = []
        i = 0
        for r, size in enumerate(sizes.tolist()):
            version, role = ("1.1.0", "canary") if canary[r] else ("1.0.0", "production")
            acc = 0.82 if canary[r] else 0.8
            for j in range(size):
                p = int(preds[i])
                prediction = "null" if failed[r] else f'"{CLASSES[p]}"'
                proba = None if failed[r] else probas[proba_pick[i]]
                pred_rows.append((ids[r], j, at[r], version, role, prediction, proba,
                                  float(latency[r]), hashes[64 * i: 64 * i + 64], None, None))  # fmt: skip
                if labelled[i]:
                    y = p if right[i] < acc else (p + 1 + int(right[i] * 40) % 4) % 5
                    token = None if anonymous[i] else "labeller"
                    label_rows.append((ids[r], j, f'"{CLASSES[y]}"', label_at[r], token))
                i += 1
        req_no += len(sizes)
        done += n_rows
        yield pred_rows, label_rows


def sqlite_log(rows: int) -> Path:
    """The kept SQLite log of ``rows`` rows (generated the first time)."""
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"log-{rows}-g{GENERATOR}.db"
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp.db")
    for f in DATA.glob(f"{tmp.name}*"):
        f.unlink()
    log = predlog.open_log(f"sqlite:///{tmp}", DATA)
    log._ensure()  # the schema (and indexes) this checkout writes
    log.close()
    con = sqlite3.connect(tmp)
    con.execute("PRAGMA synchronous=OFF")
    keys = ", ".join(predlog.RECORD_KEYS)
    marks = ", ".join("?" * len(predlog.RECORD_KEYS))
    t0, written = time.monotonic(), 0
    for pred_rows, label_rows in chunks(rows):
        with con:
            con.executemany(f"INSERT INTO predictions ({keys}) VALUES ({marks})", pred_rows)
            con.executemany(
                "INSERT INTO labels (request_id, row, label, at, token) VALUES (?, ?, ?, ?, ?)",
                label_rows,
            )
        written += len(pred_rows)
        print(f"  generating {path.name}: {written:,} rows, {time.monotonic() - t0:.0f} s",
              file=sys.stderr, end="\r")  # fmt: skip
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    print(file=sys.stderr)
    for suffix in ("-wal", "-shm"):
        Path(f"{tmp}{suffix}").unlink(missing_ok=True)
    tmp.rename(path)
    return path


def postgres_log(url: str, rows: int) -> None:
    """Load ``rows`` rows into the (empty) PostgreSQL log at ``url`` with COPY."""
    import psycopg

    log = predlog.open_log(url, DATA)
    log._ensure()
    log.close()
    t0, written = time.monotonic(), 0
    with psycopg.connect(url) as con:
        for pred_rows, label_rows in chunks(rows):
            with con.cursor() as cur:
                with cur.copy(
                    f"COPY predictions ({', '.join(predlog.RECORD_KEYS)}) FROM STDIN"
                ) as cp:
                    for row in pred_rows:
                        cp.write_row(row)
                with cur.copy("COPY labels (request_id, row, label, at, token) FROM STDIN") as cp:
                    for row in label_rows:
                        cp.write_row(row)
            con.commit()
            written += len(pred_rows)
            print(f"  loading PostgreSQL: {written:,} rows, {time.monotonic() - t0:.0f} s",
                  file=sys.stderr, end="\r")  # fmt: skip
        con.execute("ANALYZE")
        con.commit()
    print(file=sys.stderr)


# --------------------------------------------------------------------------- one run
@dataclass
class Run:
    seconds: float
    peak_mb: float
    outcome: str  # the verdict, or why the run was stopped
    load: str


def load_average() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def monitor(project: Path, url: str, src: Path | None, timeout: float, max_rss_gb: float) -> Run:
    """``retrain monitor --json`` on ``url``, from ``src`` (None: this checkout)."""
    env = {**os.environ, "RETRAIN_LOG_URL": url}
    env.pop("RETRAIN_LOG_URL_FILE", None)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    load = load_average()
    start = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "retrain", "monitor", "--json"],
                                cwd=project, env=env, stdout=out, stderr=err)  # fmt: skip
        stopped: list[str] = []

        def watch() -> None:
            limit_kb = max_rss_gb * 1024 * 1024
            while proc.poll() is None:
                try:
                    text = Path(f"/proc/{proc.pid}/status").read_text()
                except OSError:
                    return
                found = [line.split()[1] for line in text.splitlines() if line.startswith("VmRSS:")]
                rss = int(found[0]) if found else 0  # none: the process is exiting
                if rss > limit_kb:
                    stopped.append(f"stopped past {max_rss_gb:g} GB")
                    proc.send_signal(signal.SIGKILL)
                    return
                if time.monotonic() - start > timeout:
                    stopped.append(f"stopped after {timeout:g} s")
                    proc.send_signal(signal.SIGKILL)
                    return
                time.sleep(0.1)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - start
        watcher.join()
        load += " → " + load_average()
        if stopped:
            return Run(seconds, usage.ru_maxrss / 1024, stopped[0], load)
        if proc.returncode != 0:
            err.seek(0)
            return Run(seconds, usage.ru_maxrss / 1024,
                       f"exit {proc.returncode}: {err.read().decode()[-300:]}", load)  # fmt: skip
        out.seek(0)
        doc = json.loads(out.read())
        return Run(seconds, usage.ru_maxrss / 1024, doc["verdict"], load)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000000,10000000")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--before", default=None, help="a git ref whose monitor to compare")
    parser.add_argument("--max-rss-gb", type=float, default=6.0)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    sizes = [int(x) for x in args.rows.split(",")]
    backends = args.backends.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
    results: list[tuple[str, int, str, Run]] = []
    try:
        project = make_project(tmp / "project")
        codes: list[tuple[str, Path | None]] = [("after", None)]
        if args.before:
            codes.insert(0, (f"before ({args.before})", source_of(args.before, tmp / "before")))
        for backend in backends:
            server = None
            try:
                if backend == "postgresql":
                    from tests.postgres import new_base, start_server

                    server = start_server(new_base())
                for rows in sizes:
                    if backend == "sqlite":
                        url = f"sqlite:///{sqlite_log(rows)}"
                    else:
                        assert server is not None
                        url = server.create_db(f"log{rows}")
                        postgres_log(url, rows)
                    for name, src in codes:
                        run = monitor(project, url, src, args.timeout, args.max_rss_gb)
                        results.append((backend, rows, name, run))
                        print(f"  {backend} {rows:,} {name}: {run.seconds:.1f} s, "
                              f"{run.peak_mb:,.0f} MB, {run.outcome}", file=sys.stderr)  # fmt: skip
            finally:
                if server is not None:
                    server.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        "| log | rows | code | wall (s) | peak RSS (MB) | verdict | load average (1/5/15 min, "
        "before → after) |"
    )
    print("|---|---:|---|---:|---:|---|---|")
    for backend, rows, name, run in results:
        print(f"| {backend} | {rows:,} | {name} | {run.seconds:.1f} | {run.peak_mb:,.0f} "
              f"| {run.outcome} | {run.load} |")  # fmt: skip


if __name__ == "__main__":
    main()
