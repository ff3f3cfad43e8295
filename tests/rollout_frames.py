"""Synthetic prediction-log frames for the rollout tests (seeded, shaped like the log)."""

from __future__ import annotations

import numpy as np
import pandas as pd

CLASSES = ["rain", "sun", "fog"]


def served(
    version: str,
    role: str,
    n: int,
    *,
    accuracy: float,
    error_rate: float = 0.0,
    latency_ms: float = 5.0,
    labelled: float = 1.0,
    seed: int = 0,
    ids: list[str] | None = None,
    labels: np.ndarray | None = None,
    start: pd.Timestamp | None = None,
    label_by: str | None = "labeller",
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = labels if labels is not None else rng.choice(CLASSES, size=n)
    right = rng.random(n) < accuracy
    other = np.array([CLASSES[(CLASSES.index(v) + 1) % 3] for v in y])
    pred = np.where(right, y, other).astype(object)
    err = rng.random(n) < error_rate
    pred[err] = None
    label = np.where(rng.random(n) < labelled, y, None)
    start = start if start is not None else pd.Timestamp("2026-11-25T10:00:00Z")
    frame = pd.DataFrame(
        {
            "request_id": ids or [f"{version}-{role}-{i}" for i in range(n)],
            "row": 0,
            "at": [start + pd.Timedelta(seconds=i) for i in range(n)],
            "version": version,
            "role": role,
            "prediction": pred,
            "proba": None,
            "latency_ms": rng.gamma(4.0, latency_ms / 4.0, size=n),
            "label": label,
        }
    )
    if label_by is not None:  # the token that wrote each label, as the log records it
        frame["label_by"] = np.where(pd.notna(label), label_by, None)
    return frame


def hand_entry(
    version: str,
    *,
    created: str,
    accuracy: float,
    files: dict[str, int],
    start: str,
    end: str,
    initial: str = "1.0.0",
) -> dict:
    """A hand-written registry entry (no model trained: monitor, audit and prune read the
    registry, never the artifact), its hashes derived from the version."""
    return {
        "version": version,
        "created": created,
        "bump": "initial" if version == initial else "minor",
        "code_commit": "c0ffee" + version.replace(".", ""),
        "data": {"files": files, "start": start, "end": end, "total_rows": sum(files.values())},
        "schema": {"fingerprint": "sha256:x"},
        "artifact": {
            "path": f"artifacts/model-{version}.skops",
            "md5": version.replace(".", "").ljust(32, "0"),
            "sha256": version.replace(".", "").ljust(64, "a"),
        },
        "metrics": {"overall": {"accuracy": accuracy}},
    }
