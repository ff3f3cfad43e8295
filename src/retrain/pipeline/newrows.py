"""What arrived since the production model's data, and profiles to judge it by.

The trigger check (:mod:`retrain.decide.triggers`) compares the rows production trained on
(the *reference*: the batch files it recorded, with the rows it recorded, cut to its recorded
start and end dates) with the rows that are new (every other batch file).  Neither side is
held in memory: each is a :class:`~retrain.pipeline.profiles.Profile` merged from per-file
profiles, which come from the local store (``.retrain/batches/``, for a file read on an
earlier run) or from one checked pass over the file.  The model-based triggers stream the new
rows (and, unless the store has the production model's outputs on them, the reference rows)
through the model chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retrain.core.config import DatasetConfig
from retrain.pipeline import batchcheck, batchread, window
from retrain.pipeline.batchstore import Store, file_sha
from retrain.pipeline.profiles import ColumnProfile, Profile, merge_columns, of_outputs

_DAY_NS = 86_400 * 10**9
#: rows per call of the model when streaming predictions
PREDICT_ROWS = 1 << 20


@dataclass
class _Old:
    facts: window.BatchFacts
    window: batchread.Window | None  # None: the whole file is reference


@dataclass
class Split:
    """The reference and the new rows, as profiles (features and target) and row streams."""

    cfg: DatasetConfig
    store: Store
    cutoff: int | None
    inside: set[str]  # the files holding training rows (a session keeps their rows)
    new: list[window.BatchFacts]
    old: list[_Old]
    new_rows: int
    reference: Profile
    current: Profile
    read: list[str] = field(default_factory=list)  # files read by this split (not stored)

    def new_chunks(self) -> Iterator[pd.DataFrame]:
        """The new rows, checked, a chunk at a time (rows this run already holds first)."""
        for f in self.new:
            yield from self._rows(f, None)

    def _rows(self, f: window.BatchFacts, w: batchread.Window | None) -> Iterator[pd.DataFrame]:
        seen = batchread.remembered(self.cfg, f.path)
        if seen is None and batchread.sharing() and f.rel in self.inside:
            # read once: the checked pass keeps the rows for the validate and train stages
            seen = batchread.scan_once(self.cfg, f.path, f.rel, cutoff=self.cutoff)
            self.read.append(f.rel)
        if seen is not None and seen.all_kept and seen.kept is not None:
            chunks: Iterator[pd.DataFrame] = (
                seen.kept.iloc[i : i + PREDICT_ROWS] for i in range(0, len(seen.kept), PREDICT_ROWS)
            )
        else:
            chunks = batchread.checked_chunks(self.cfg, f.path, f.rel)
        tcol = self.cfg.time_column
        for chunk in chunks:
            if w is not None and tcol:
                ns = batchread.as_ns(chunk[tcol])
                chunk = chunk[(ns >= w[0]) & (ns < w[1])]
            if len(chunk):
                yield chunk

    def reference_outputs(
        self, predict: Callable[[pd.DataFrame], Any], model_sha: str
    ) -> ColumnProfile | None:
        """The profile of ``predict``'s outputs on the reference rows; per file from the
        store (keyed by the model's sha256) or computed by streaming the file's rows."""
        parts: list[ColumnProfile] = []
        for o in self.old:
            sha = file_sha(o.facts.path)
            stored = self.store.outputs(sha, model_sha, o.window)
            if stored is None:
                pieces = [of_outputs(predict(c)) for c in self._rows(o.facts, o.window)]
                if not pieces:
                    continue
                stored = Profile(0, {"output": merge_columns(pieces)})
                stored.rows = stored.columns["output"].rows
                self.store.put_outputs(sha, model_sha, o.window, stored)
            if stored.rows:
                parts.append(stored.columns["output"])
        return merge_columns(parts) if parts else None


def _reference_window(cfg: DatasetConfig, start: str | None, end: str | None) -> Any:
    if not (cfg.time_column and start):
        return None
    lo = pd.Timestamp(start, tz="UTC").as_unit("ns").value
    hi = (pd.Timestamp(end or start, tz="UTC") + pd.Timedelta(days=1)).as_unit("ns").value
    return int(lo), int(hi)


def _profile(
    cfg: DatasetConfig,
    store: Store,
    f: window.BatchFacts,
    cutoff: int | None,
    w: batchread.Window | None,
    read: list[str],
) -> Profile:
    sha = file_sha(f.path)
    stored = store.profile(sha, w)
    if stored is not None and store.facts(sha) is not None:
        return stored
    scan = batchread.scan_once(cfg, f.path, f.rel, cutoff=cutoff, slices=[w] if w else [])
    window.store_facts(store, f.path, scan)
    read.append(f.rel)
    return scan.slices[w] if w else scan.profile


def split_new(
    cfg: DatasetConfig, root: Path, known: dict[str, int], start: str | None, end: str | None
) -> Split:
    """Split the batch files into production's (``known``: file -> rows, as its registry
    entry records them; cut to ``start``..``end``) and the new ones, and profile both.

    New files are read and checked in full (a bad one is a :class:`DataError`, as in the
    validate stage); production's files only when the store does not have their profiles.
    """
    record_key = batchcheck.key(cfg, root)  # before reading: it vouches for these bytes
    store = Store(root, cfg)
    plan = window.plan(cfg, root, store)
    read: list[str] = []
    rows: dict[str, int] = {}
    for f in plan.files:
        if f.rows is None:  # a CSV file never read: its rows are only known by reading it
            rows[f.rel] = batchread.scan_once(cfg, f.path, f.rel, cutoff=plan.cutoff).rows
        else:
            rows[f.rel] = f.rows
    new = [f for f in plan.files if known.get(f.rel) != rows[f.rel]]
    ref_w = _reference_window(cfg, start, end)
    old: list[_Old] = []
    for f in plan.files:
        if f in new:
            continue
        if ref_w is None:
            old.append(_Old(f, None))
        elif f.tmin is not None and f.tmax is not None:
            if f.tmax < ref_w[0] or f.tmin >= ref_w[1]:
                continue  # no row of production's window: not opened
            inside = f.tmin >= ref_w[0] and f.tmax < ref_w[1]
            old.append(_Old(f, None if inside else ref_w))
        else:
            old.append(_Old(f, ref_w))
    current = Profile.merge([_profile(cfg, store, f, plan.cutoff, None, read) for f in new])
    reference = Profile.merge(
        [_profile(cfg, store, o.facts, plan.cutoff, o.window, read) for o in old]
    )
    if all(store.facts(file_sha(f.path)) is not None for f in plan.inside):
        # every file of the window passed its checks under these rules (now or on an earlier
        # run): a week where these bytes are unchanged need not read anything
        batchcheck.remember(root, record_key, rows)
    return Split(
        cfg=cfg,
        store=store,
        cutoff=plan.cutoff,
        inside={f.rel for f in plan.inside},
        new=new,
        old=old,
        new_rows=int(sum(rows[f.rel] for f in new)),
        reference=reference,
        current=current,
        read=read,
    )


def stack(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if len(parts) > 1 else parts[0]
