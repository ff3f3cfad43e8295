"""``retrain holdout roll``: move the frozen holdout forward, in a reviewed pull request.

The frozen holdout is cut once (``retrain init`` takes the newest share of the first file)
and every candidate is judged on it until someone changes it.  Months later it judges
today's data by last season's rows; the PR says so ("the frozen holdout is older than the
data it judges").  Rolling it forward is a deliberate, reviewed change, never a silent one:

1. the newest labelled rows of the batches (as many as the holdout has, or ``--rows``; a
   timestamp is never cut in two) become the new holdout, and leave their batch files;
2. the old holdout's rows become a batch, ``holdout-<start>-to-<end>``, so every labelled
   row is still used exactly once;
3. production is re-scored on the old and the new holdout, beside the trivial model, so the
   reviewer sees what the move does to the numbers every later candidate is judged against;
4. the new ``data/`` is ``dvc add``-ed (and pushed with ``--push``/``--open-pr``), and
   ``data.dvc`` plus the report (``reports/holdout/<branch name>/``) are committed on
   ``holdout/roll-<newest day>``; with ``--open-pr`` the PR is opened.

Everything happens in a private git worktree sharing the DVC cache: the user's checkout,
its data and its branch are never touched.  Merging the PR makes the new rows the holdout;
the next scheduled run sees changed batch files (``new_data``) and judges its candidate and
production on them.  Registry entries keep the metrics they were judged with.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from retrain.core import registry as reg
from retrain.core.config import Config
from retrain.core.errors import BadInput
from retrain.core.progress import progress
from retrain.pipeline import artifacts, dataset, metrics, trivial
from retrain.pipeline.batchcheck import batch_files
from retrain.pipeline.predict import predict_rows
from retrain.release import dvcops, forge, gitops


@dataclass
class RollResult:
    branch: str
    commit: str
    rows: int
    old: dict[str, Any]  # the old holdout: rows, start, end
    new: dict[str, Any]  # the new holdout
    moved: dict[str, int]  # batch file -> rows moved out of it
    new_batch: str
    rescore: dict[str, Any] = field(default_factory=dict)
    report: str = ""
    pushed: bool = False
    pr_url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _day(ts: Any) -> str:
    return str(pd.Timestamp(ts).strftime("%Y-%m-%d"))


def _write(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, lineterminator="\n")


def _scores(model: Any, rows: pd.DataFrame, cfg: Config, entry: reg.RegistryEntry) -> Any:
    X = dataset.model_inputs(rows, entry, cfg.dataset.holdout)
    y_pred, proba, classes = predict_rows(model, X, cfg.dataset.task)
    y = rows[cfg.dataset.target].to_numpy()
    return metrics.summary(cfg.dataset.task, y, y_pred, proba, classes)


def plan(cfg: Config, work: Path, rows: int | None) -> dict[str, Any]:
    """Rewrite ``work/data`` for the roll; return what moved (checks first, then writes)."""
    ds = cfg.dataset
    tc = ds.time_column
    if not tc:
        raise BadInput(
            "configs/dataset.yaml: time_column: not set; rolling the holdout forward needs the "
            "rows' time order"
        )
    files = batch_files(ds, work)
    raw: dict[Path, pd.DataFrame] = {}
    times: dict[Path, pd.Series] = {}
    for path in files:
        display = str(path.relative_to(work))
        frame = dataset.read_table(path, display)
        checked = dataset.check_frame(frame, ds, display)
        raw[path], times[path] = frame, checked[tc]
    old_raw = dataset.read_table(work / ds.holdout, ds.holdout)
    old = dataset.check_frame(old_raw, ds, ds.holdout)
    every = pd.concat(list(times.values()), ignore_index=True)
    want = rows if rows is not None else len(old)
    if want < 1:
        raise BadInput(f"--rows: expected at least 1, got {want}")
    if len(every) - want < ds.min_rows:
        raise BadInput(
            f"--rows: {want} of {len(every)} labelled batch rows would leave fewer than "
            f"dataset.yaml min_rows {ds.min_rows} to train on"
        )
    old_end, newest = old[tc].max(), every.max()
    if newest <= old_end:
        raise BadInput(
            f"{ds.holdout}: nothing to roll: the frozen holdout ends {_day(old_end)} and the "
            f"newest labelled row is from {_day(newest)}"
        )
    cutoff = every.sort_values(kind="stable").iloc[len(every) - want]
    moved: dict[str, int] = {}
    taken = []
    for path in files:
        newest_rows = (times[path] >= cutoff).to_numpy()
        if not newest_rows.any():
            continue
        rel = str(path.relative_to(work))
        moved[rel] = int(newest_rows.sum())
        taken.append(raw[path][newest_rows])
        kept = raw[path][~newest_rows]
        if len(kept):
            _write(kept, path)
        else:
            path.unlink()
    new_raw = pd.concat(taken, ignore_index=True)
    new_checked = dataset.check_frame(new_raw, ds, "the new holdout")
    order = new_checked[tc].argsort(kind="stable").to_numpy()
    new_raw = new_raw.iloc[order]
    start, end = _day(old[tc].min()), _day(old_end)
    folder = work / ds.batches
    suffix = files[0].suffix if files else ".csv"
    new_batch = folder / f"holdout-{start}-to-{end}{suffix}"
    _write(old_raw, new_batch)
    _write(new_raw, work / ds.holdout)
    return {
        "old": {"rows": len(old), "start": start, "end": end},
        "new": {
            "rows": len(new_raw),
            "start": _day(new_checked[tc].min()),
            "end": _day(new_checked[tc].max()),
        },
        "moved": moved,
        "new_batch": str(new_batch.relative_to(work)),
        "old_frame": old,
    }


def rescore(cfg: Config, work: Path, old: pd.DataFrame) -> dict[str, Any]:
    """Production (fetched, sha256-checked) and the trivial model on the old and new holdout."""
    ds = cfg.dataset
    metric = cfg.gates.primary_metric
    new = dataset.load_holdout(ds, work)
    data = dataset.load_batches(ds, work)  # the rolled batches pass the validate stage's checks
    rec = trivial.record(ds.task, data.frame[ds.target])
    out: dict[str, Any] = {"metric": metric, "production": None, "trivial": {}}
    for name, rows in (("old", old), ("new", new)):
        y = rows[ds.target].to_numpy()
        pred, proba, classes = trivial.predictions(rec, metric, len(y))
        out["trivial"][name] = metrics.summary(ds.task, y, pred, proba, classes)
    out["trivial_model"] = trivial.describe(rec, metric)
    registry = reg.load(cfg.root, expected_model=cfg.release.model_name)
    prod = registry.production_entry
    if prod is not None:
        progress(f"holdout: re-scoring production v{prod.version} on the old and new holdout")
        path = artifacts.fetch(cfg.root, prod.artifact, prod.version)
        model = artifacts.load_for_config(cfg, path, prod.artifact.sha256)
        out["production"] = {
            "version": prod.version,
            "recorded": dict(prod.metrics.overall),
            "old": _scores(model, old, cfg, prod),
            "new": _scores(model, new, cfg, prod),
        }
    return out


def _worktree(root: Path, tmp: Path) -> Path:
    """A detached worktree of HEAD with the checkout's data and the same DVC cache."""
    work = tmp / "wt"
    gitops.git(root, "worktree", "add", "-q", "--detach", str(work), "HEAD")
    local = root / ".dvc" / "config.local"
    if local.is_file():
        shutil.copy2(local, work / ".dvc" / "config.local")
    cache = dvcops.dvc(root, "cache", "dir").stdout.strip() or str(root / ".dvc" / "cache")
    dvcops.dvc(work, "config", "--local", "cache.dir", str(Path(root, cache).resolve()))
    shutil.copytree(root / "data", work / "data")
    return work


def roll(
    cfg: Config, *, rows: int | None = None, push: bool = False, open_pr: bool = False
) -> RollResult:
    """Prepare ``holdout/roll-<newest day>`` (see the module docstring)."""
    from retrain.report import markdown

    root = cfg.root
    if gitops.is_dirty(root):
        raise BadInput(
            "working tree has uncommitted changes to tracked files; commit or stash them "
            "before rolling the holdout"
        )
    dvcops.check_data_matches(root)
    if (push or open_pr) and not dvcops.has_remote(root):
        raise BadInput(
            ".dvc/config: no DVC remote configured; the new holdout must be pushed before a "
            "PR can name it (dvc remote add -d <name> <url>)"
        )
    gitops.git(root, "worktree", "prune", check=False)
    tmp = Path(tempfile.mkdtemp(prefix="retrain-holdout-"))
    try:
        work = _worktree(root, tmp)
        moved = plan(cfg, work, rows)  # the configs are HEAD's in both: the tree is clean
        scores = rescore(cfg, work, moved.pop("old_frame"))
        branch = f"holdout/roll-{moved['new']['end']}"
        progress(
            f"holdout: {moved['new']['rows']} newest rows ({moved['new']['start']} … "
            f"{moved['new']['end']}) become the holdout; the old one becomes "
            f"{moved['new_batch']}"
        )
        dvcops.dvc(work, "add", "-q", "data")
        if push or open_pr:
            progress("holdout: pushing the new data to the DVC remote")
            dvcops.dvc(work, "push", "-q")
        folder = f"reports/holdout/{branch.split('/', 1)[1]}"
        ctx = {
            "model": cfg.release.model_name,
            "branch": branch,
            **moved,
            "rescore": scores,
        }
        body = markdown.render_holdout_roll(ctx)
        title = (
            f"Roll the frozen holdout of {cfg.release.model_name} forward to "
            f"{moved['new']['start']} … {moved['new']['end']}"
        )
        (work / folder).mkdir(parents=True, exist_ok=True)
        (work / folder / "PR.md").write_text(body, encoding="utf-8")
        (work / folder / "rescore.json").write_text(
            json.dumps({**moved, "rescore": scores}, indent=2, sort_keys=True) + "\n",
            encoding="utf-8",
        )
        gitops.git(work, "add", "data.dvc", folder)
        gitops.git(work, "commit", "-q", "-m", f"{title}\n\nReviewed by a person: see {folder}.")
        commit = gitops.head(work)
        ref = f"refs/heads/{branch}"
        seen = gitops.remote_sha(root, ref) if (push or open_pr) else None
        gitops.git(root, "update-ref", ref, commit)
        result = RollResult(
            branch=branch,
            commit=commit,
            rows=moved["new"]["rows"],
            old=moved["old"],
            new=moved["new"],
            moved=moved["moved"],
            new_batch=moved["new_batch"],
            rescore=scores,
            report=f"{folder}/PR.md",
        )
        if push or open_pr:
            gitops.push_with_lease(root, ref, seen, what=f"branch {branch}")
            result.pushed = True
        if open_pr:
            result.pr_url = forge.open_pull_request(
                root, base=cfg.release.base_branch, head=branch, title=title, body=body
            )
        return result
    finally:
        gitops.git(root, "worktree", "remove", "--force", str(tmp / "wt"), check=False)
        shutil.rmtree(tmp, ignore_errors=True)
