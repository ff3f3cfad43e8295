"""Drift per received batch: each batch file against the training data of the model it came to.

A batch "came to" the newest version that was ever in production and had not trained on it
(its registry entry's ``data.files`` lacks the file): that is the comparison the
``data_drift`` trigger made when the batch was new.  A batch no version has trained on yet is
compared with production's training data, as the next scheduled run will compare it.
Batches of the first training data have nothing to be compared with.  The reference is the
version's recorded files cut to its recorded training window, as the triggers cut it.

The data is DVC-tracked, not in git: without ``data/`` on disk (``dvc pull data.dvc``) the
section says so instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from retrain.core.config import Config
from retrain.core.errors import RetrainError
from retrain.site.story import Story, Version

if TYPE_CHECKING:
    import pandas as pd

TOP_FEATURES = 3


@dataclass
class BatchDrift:
    batch: str  # data/batches/2014-H1.csv
    rows: int | None
    trained_by: list[str]  # versions whose training files include it
    reference: str | None  # the version whose training data it was compared with
    share: float | None = None
    drifted: list[str] = field(default_factory=list)
    top: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    note: str = ""


@dataclass
class DriftSection:
    batches: list[BatchDrift]
    threshold: float | None  # the data_drift trigger's max_share_drifted
    note: str = ""


def _frames(cfg: Config) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Every batch file on disk, checked like the pipeline checks it (or why not)."""
    from retrain.pipeline import dataset

    frames: dict[str, pd.DataFrame] = {}
    problems: dict[str, str] = {}
    for path in dataset.batch_files(cfg.dataset, cfg.root):
        rel = path.relative_to(cfg.root).as_posix()
        try:
            frames[rel] = dataset.check_frame(dataset.read_table(path, rel), cfg.dataset, rel)
        except RetrainError as exc:
            problems[rel] = str(exc)
    return frames, problems


def _reference(cfg: Config, v: Version, frames: dict[str, pd.DataFrame]) -> pd.DataFrame | None:
    """The rows ``v`` trained on: its recorded files, cut to its recorded window."""
    import pandas as pd

    files = v.entry.data.files
    parts = [frames[f] for f, n in files.items() if f in frames and len(frames[f]) == n]
    if not parts or len(parts) != len(files):
        return None
    ref = pd.concat(parts, ignore_index=True)
    tcol, data = cfg.dataset.time_column, v.entry.data
    if tcol and data.start and data.end:
        start = pd.Timestamp(data.start, tz="UTC")
        end = pd.Timestamp(data.end, tz="UTC") + pd.Timedelta(days=1)
        ref = ref[(ref[tcol] >= start) & (ref[tcol] < end)]
    return ref.reset_index(drop=True)


def drift_per_batch(cfg: Config, story: Story) -> DriftSection:
    from retrain.decide import drift

    threshold = cfg.triggers.data_drift.max_share_drifted
    if not (cfg.root / cfg.dataset.batches).is_dir():
        return DriftSection(
            [],
            threshold,
            f"{cfg.dataset.batches} is not on disk (the data is tracked by DVC): run "
            "`dvc pull data.dvc` before `retrain site` to see drift per batch",
        )
    frames, problems = _frames(cfg)
    merged = [v for v in story.versions if not v.pending and v.entry.data.files]
    served = [v for v in merged if v.status != "registered"]
    production = story.get(story.production)
    features = cfg.dataset.feature_names
    kinds = {f.name: f.type for f in cfg.dataset.features}
    references: dict[str, pd.DataFrame | None] = {}
    out: list[BatchDrift] = []
    for name in sorted(set(frames) | set(problems)):
        trained = [v.version for v in merged if name in v.entry.data.files]
        shown = [v.version for v in story.versions if name in v.entry.data.files]
        row = BatchDrift(name, len(frames[name]) if name in frames else None, shown, None)
        out.append(row)
        if name in problems:
            row.note = problems[name]
            continue
        if trained and trained[0] == merged[0].version:
            row.note = f"part of the first training data (v{trained[0]})"
            continue
        if not trained:
            came_to = production
        else:
            came_to = next((v for v in reversed(served) if name not in v.entry.data.files), None)
        if came_to is None:
            row.note = "no earlier model to compare with"
            continue
        if not came_to.entry.data.files:
            row.note = f"v{came_to.version}'s training files are not recorded"
            continue
        row.reference = came_to.version
        if came_to.version not in references:
            references[came_to.version] = _reference(cfg, came_to, frames)
        ref = references[came_to.version]
        if ref is None or ref.empty:
            row.note = f"the training data of v{came_to.version} is not all on disk"
            continue
        try:
            rep = drift.drift_report(
                ref[features], frames[name][features], kinds=kinds, config=cfg.drift
            )
        except RetrainError as exc:
            row.note = str(exc)
            continue
        row.share = round(float(rep.share_drifted), 4)
        row.drifted = [c for c, f in rep.features.items() if f.get("drifted")]
        row.top = rep.top(TOP_FEATURES)
    note = "" if out else f"no batch files under {cfg.dataset.batches}"
    return DriftSection(out, threshold, note)
