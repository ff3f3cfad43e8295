"""The prediction log's cost and capacity, on SQLite (WAL) and on a real PostgreSQL server.

    python benchmarks/bench_predlog.py [--records 20000]

For each backend: the time ``LogWriter.submit`` takes on the request path (per call of one
row and of 100 rows: it only queues), the writer thread's sustained rate (records/s from the
first submit until everything is written, batches of 256), the rate of two writers sharing
the log (two replicas), and how long ``add_feedback`` takes right after a prediction (it
flushes first).  PostgreSQL is Debian's server started on loopback in a temp dir, as the
tests do.  Prints one table.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from retrain.serve.logwriter import LogWriter  # noqa: E402
from retrain.serve.predlog import open_log  # noqa: E402


def _records(prefix: str, n: int) -> list[dict]:
    return [
        {
            "request_id": f"{prefix}-{i // 100}",
            "row": i % 100,
            "at": "2026-11-25T12:00:00Z",
            "version": "1.1.0",
            "role": "production",
            "prediction": "sun",
            "proba": {"drizzle": 0.05, "fog": 0.1, "rain": 0.2, "snow": 0.05, "sun": 0.6},
            "latency_ms": 3.2,
            "input_hash": "0" * 64,
            "inputs": None,
        }
        for i in range(n)
    ]


def bench(url: str, root: Path, n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    writer = LogWriter(open_log(url, root))
    one = _records("one", 1)
    hundred = _records("hundred", 100)
    # On the request path: submit only queues.
    t = []
    for _ in range(2000):
        s = time.perf_counter_ns()
        writer.submit(one)
        t.append(time.perf_counter_ns() - s)
    out["submit 1 row (µs, median)"] = statistics.median(t) / 1000
    t = []
    for _ in range(200):
        s = time.perf_counter_ns()
        writer.submit(hundred)
        t.append(time.perf_counter_ns() - s)
    out["submit 100 rows (µs, median)"] = statistics.median(t) / 1000
    writer.flush(120)
    # Sustained: n records in requests of 10 rows, then wait until written.
    recs = _records("sustained", n)
    start = time.perf_counter()
    for i in range(0, n, 10):
        writer.submit(recs[i : i + 10])
    writer.flush(300)
    out["one writer (records/s)"] = n / (time.perf_counter() - start)
    # Feedback right after a prediction: flush, then the join check and upsert.
    t = []
    for k in range(20):
        writer.submit(_records(f"fb{k}", 1))
        s = time.perf_counter()
        writer.add_feedback([{"request_id": f"fb{k}-0", "label": "rain"}])
        t.append(time.perf_counter() - s)
    out["feedback after predict (ms, median)"] = statistics.median(t) * 1000
    out["dropped"] = writer.dropped
    writer.close()
    # Two replicas.
    writers = [LogWriter(open_log(url, root)) for _ in range(2)]
    parts = [_records(f"r{i}", n // 2) for i in range(2)]

    def replica(i: int) -> None:
        for j in range(0, len(parts[i]), 10):
            writers[i].submit(parts[i][j : j + 10])
        writers[i].flush(300)

    start = time.perf_counter()
    threads = [threading.Thread(target=replica, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    out["two writers (records/s)"] = n / (time.perf_counter() - start)
    out["dropped"] += sum(w.dropped for w in writers)
    for w in writers:
        w.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()
    from tests.postgres import start_server

    results: dict[str, dict[str, float]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench-predlog-"))
    pgdir = Path(tempfile.mkdtemp(prefix="bench-predlog-pg-"))
    server = None
    try:
        results["SQLite (WAL)"] = bench("sqlite:///log.db", tmp, args.records)
        server = start_server(pgdir)
        results["PostgreSQL"] = bench(server.url, tmp, args.records)
    finally:
        if server is not None:
            server.close()
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(pgdir, ignore_errors=True)
    names = list(next(iter(results.values())))
    cols = list(results)
    print(f"prediction log, {args.records} records per run (batch 256, flush 0.2 s)")
    print(f"| {'measure':<36} | " + " | ".join(f"{c:>12}" for c in cols) + " |")
    print(f"|{'-' * 38}|" + "|".join("-" * 14 for _ in cols) + "|")
    for name in names:
        cells = " | ".join(f"{results[c][name]:>12,.1f}" for c in cols)
        print(f"| {name:<36} | {cells} |")


if __name__ == "__main__":
    main()
