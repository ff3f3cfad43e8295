"""Live labels back into the loop: the trigger's live window, and served rows as a new batch.

- :func:`live_feedback`: the production version's served rows that got a label since that
  version was put in production (its last promotion or rollback in git), for the
  ``live_performance`` trigger check.
- :func:`export_batch` (``retrain feedback export``): labelled served rows as a batch file in
  the dataset's schema (time column, features, target), checked by the same validation as
  every batch and written atomically; ready for ``dvc add data`` and a commit.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from retrain.core import registry as reg
from retrain.core.config import Config, ServeConfig
from retrain.core.errors import BadInput, DataError
from retrain.pipeline import dataset
from retrain.release import gitops, history
from retrain.serve.predlog import LogUnavailable, PredictionLog, configured_log, utc_text

if TYPE_CHECKING:  # the trigger module imports skops and scikit-learn: 4 s the export
    from retrain.decide.triggers import LiveFeedback  # and audit verbs need not pay

SERVED_ROLES = ("production", "canary")  # roles whose answer was returned to the caller


def production_since(root: Path, version: str, ref: str = "HEAD") -> str | None:
    """When ``version`` last went into production on ``ref`` (None: no such event in git)."""
    if not gitops.ok(root, "rev-parse", "--verify", "--quiet", ref):
        return None
    mine = [e for e in history.events(root, ref) if e["version"] == version]
    return utc_text(mine[-1]["at"]) if mine else None


def live_feedback(
    cfg: Config, registry: reg.Registry, log: PredictionLog, *, ref: str = "HEAD"
) -> LiveFeedback | None:
    """Labelled live rows of the production version since its promotion (None: no production).

    A log that cannot be read is reported in the check (``error``), never a crash of the
    scheduled job: the other triggers still decide.
    """
    from retrain.decide.triggers import LiveFeedback

    if registry.production is None:
        return None
    version = registry.production
    since = production_since(cfg.root, version, ref)
    try:
        frame = log.labelled(version=version, since=since)
    except LogUnavailable as exc:
        return LiveFeedback(version, pd.DataFrame(), since, log.display, error=str(exc))
    frame = frame[frame["role"] == "production"].reset_index(drop=True)
    return LiveFeedback(version, frame, since, log.display)


def live_for_triggers(cfg: Config, registry: reg.Registry) -> LiveFeedback | None:
    """What ``retrain triggers`` and ``retrain run`` hand to the trigger check: None when the
    performance trigger is off or nothing is in production; a check that says "not checked"
    when the log was never written."""
    if not cfg.triggers.performance.enabled or registry.production is None:
        return None
    from retrain.decide.triggers import LiveFeedback

    _, log = configured_log(cfg.root)
    try:
        if not log.exists():
            where = _display(cfg.root, log.sqlite_path) if log.sqlite_path else log.display
            return LiveFeedback.no_log(registry.production, where)
        return live_feedback(cfg, registry, log)
    finally:
        log.close()


@dataclass
class Export:
    path: Path
    rows: int
    skipped_without_inputs: int
    duplicates_dropped: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "rows": self.rows,
            "skipped_without_inputs": self.skipped_without_inputs,
            "duplicates_dropped": self.duplicates_dropped,
        }


def _display(root: Path, path: Path) -> str:
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def export_batch(
    cfg: Config,
    serve: ServeConfig,
    log: PredictionLog,
    *,
    since: str,
    output: Path,
    version: str | None = None,
) -> Export | None:
    """Write the labelled served rows since ``since`` as a batch file; None when there are none.

    Raises :class:`BadInput` (nothing written) when the inputs are not logged, the output
    exists or has another suffix than .csv/.parquet, or the rows fail the dataset's checks.
    """
    ds = cfg.dataset
    output = output if output.is_absolute() else cfg.root / output
    shown = _display(cfg.root, output)
    if output.suffix.lower() not in (".csv", ".parquet"):
        raise BadInput(f"--output {shown}: expected a .csv or .parquet batch file")
    if output.exists():
        raise BadInput(f"--output {shown}: already exists; a batch is never overwritten")
    if not serve.log_inputs:
        raise BadInput(
            "configs/serve.yaml: log_inputs: false; feedback export needs the served rows' "
            "inputs (set log_inputs: true, then rows served from then on can be exported)"
        )
    since_text = utc_text(since)
    frame = log.labelled(version=version, since=since_text)
    frame = frame[frame["role"].isin(SERVED_ROLES)]
    # A row served by two versions (a canary and production at once cannot happen; a retry
    # could) is one observation: keep the first answer.
    frame = frame.drop_duplicates(["request_id", "row"], keep="first")
    with_inputs = frame[frame["inputs"].notna()]
    skipped = len(frame) - len(with_inputs)
    if with_inputs.empty:
        if skipped:
            raise BadInput(
                f"prediction log: {skipped} labelled row(s) since {since_text} were served "
                "without their inputs (log_inputs was off then); nothing to export"
            )
        return None
    inputs = pd.DataFrame(list(with_inputs["inputs"]), index=with_inputs.index)
    missing = [f for f in ds.feature_names if f not in inputs.columns]
    if missing:
        raise BadInput(
            f"prediction log: logged inputs lack feature column(s) {missing} of "
            "configs/dataset.yaml; they were served under another schema"
        )
    out = pd.DataFrame(index=with_inputs.index)
    if ds.time_column:
        if ds.time_column in inputs.columns:
            out[ds.time_column] = inputs[ds.time_column]
        else:
            out[ds.time_column] = with_inputs["at"].str.replace(".000000Z", "Z", regex=False)
    for f in ds.feature_names:
        out[f] = inputs[f]
    out[ds.target] = with_inputs["label"]
    out = out.reset_index(drop=True)
    dupes = 0
    if not ds.allow_duplicate_rows:
        before = len(out)
        out = out.drop_duplicates().reset_index(drop=True)
        dupes = before - len(out)
    try:
        dataset.check_frame(out.copy(), ds, shown)
    except DataError as exc:
        raise BadInput(f"{exc} (from the prediction log; nothing written)") from None
    _write_atomic(out, output)
    return Export(output, len(out), skipped, dupes)


def _write_atomic(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if path.suffix.lower() == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False, lineterminator="\n")
        # os.link fails if the target appeared meanwhile: never overwrite a batch.
        os.link(tmp, path)
    except FileExistsError:
        raise BadInput(f"{path}: already exists; a batch is never overwritten") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def report(exp: Export | None, since: str) -> str:
    if exp is None:
        return f"no labelled served rows since {since}; nothing written"
    lines = [f"wrote {exp.rows} labelled row(s) to {exp.path}"]
    if exp.skipped_without_inputs:
        lines.append(f"skipped {exp.skipped_without_inputs} row(s) served without their inputs")
    if exp.duplicates_dropped:
        lines.append(f"dropped {exp.duplicates_dropped} duplicated row(s)")
    lines.append("next: dvc add data && git add data.dvc && git commit")
    return "\n".join(lines)
