"""Retraining triggers (DESIGN.md section 4), checked cheaply before any training.

Each check reports ``value``, ``threshold`` and ``fired``; ``retrain`` is true when any
fired and the cooldown (or a manual request) allows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from retrain.core import metric_names
from retrain.core.config import Config, TriggersConfig
from retrain.core.registry import Registry, RegistryEntry
from retrain.pipeline import batchcheck

if TYPE_CHECKING:  # imported where used: a check where nothing is new reads no frame
    import pandas as pd


@dataclass
class TriggerReport:
    retrain: bool
    fired: list[str]
    checks: dict[str, dict[str, Any]]
    note: str = ""
    drift: dict[str, Any] | None = field(default=None, repr=False)
    cooldown: dict[str, Any] | None = None
    expected_gain: dict[str, Any] | None = None  # triggers.yaml min_expected_gain, applied

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"retrain": self.retrain, "fired": self.fired, "checks": self.checks}
        if self.cooldown is not None:
            out["cooldown"] = self.cooldown
        if self.expected_gain is not None:
            out["min_expected_gain"] = self.expected_gain
        if self.note:
            out["note"] = self.note
        return out

    def table(self) -> str:
        rows = [f"{'trigger':<18} {'value':>14} {'threshold':>14}  fired"]
        for name, c in self.checks.items():
            # A check that measured nothing says why (e.g. "not checked: no prediction log").
            why = f"  ({c['note']})" if c.get("value") is None and c.get("note") else ""
            rows.append(
                f"{name:<18} {_fmt(c.get('value')):>14} {_fmt(c.get('threshold')):>14}  "
                f"{'YES' if c.get('fired') else 'no'}{why}"
            )
        if self.cooldown is not None:
            c = self.cooldown
            rows.append(
                f"{'(cooldown)':<18} {_fmt(c.get('value')):>14} {_fmt(c.get('threshold')):>14}  "
                f"{'BLOCKS' if c.get('active') else 'ok'}"
            )
        verdict = ("retrain: " + ", ".join(self.fired)) if self.retrain else "no retrain"
        if self.note:
            verdict += f" ({self.note})"
        return "\n".join(rows + [verdict])


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


@dataclass
class LiveFeedback:
    """Labelled live traffic of one version, as the prediction log gives it.

    ``frame`` has one row per served row with ``prediction``, ``label`` and ``proba`` (a dict
    of class probabilities, or None); ``since`` is when the window starts (the version's
    promotion); ``source`` names the log.  ``error`` says why nothing could be read.
    """

    version: str
    frame: pd.DataFrame | None  # None when nothing could be read (``error`` says why)
    since: str | None = None
    source: str = ""
    error: str | None = None

    @classmethod
    def no_log(cls, version: str, where: str) -> LiveFeedback:
        """The check when the log was never written: reported, not silently left out."""
        return cls(version, None, source=where, error=f"not checked: no prediction log at {where}")


def _performance_verdict(
    value: float, metric: str, recorded: float | None, cfg: Any
) -> tuple[Any, bool]:
    """``(threshold, fired)`` for a measured ``value``: below ``min_metric`` (above, for a
    loss), or worse than the recorded holdout value by more than ``max_drop``."""
    higher = metric_names.greater_is_better(metric)
    fired = False
    threshold: Any = None
    if cfg.min_metric is not None:
        threshold = cfg.min_metric
        fired = value < threshold if higher else value > threshold
    if recorded is not None and cfg.max_drop is not None:
        floor = recorded - cfg.max_drop if higher else recorded + cfg.max_drop
        threshold = round(floor, 4) if threshold is None else threshold
        fired = fired or (value < floor if higher else value > floor)
    return threshold, fired


def _live_performance(cfg: Config, prod: RegistryEntry, live: LiveFeedback) -> dict[str, Any]:
    """The production version's primary metric on its labelled live traffic."""
    p = cfg.triggers.performance
    metric = cfg.gates.primary_metric
    recorded = prod.metrics.overall.get(metric)
    threshold = p.min_metric
    if threshold is None and recorded is not None and p.max_drop is not None:
        higher = metric_names.greater_is_better(metric)
        threshold = round(recorded - p.max_drop if higher else recorded + p.max_drop, 4)
    out: dict[str, Any] = {
        "value": None,
        "threshold": threshold,
        "fired": False,
        "metric": metric,
        "recorded_holdout": recorded,
        "version": live.version,
        "since": live.since,
        "rows": 0,
        "source": live.source,
    }
    frame = live.frame
    if live.error or frame is None:
        return out | {"note": live.error or "no rows were read"}
    if live.version != prod.version:
        return out | {"note": f"feedback is for v{live.version}, production is v{prod.version}"}
    out["rows"] = len(frame)
    if len(frame) < p.min_rows:
        return out | {
            "note": f"{len(frame)} labelled live row(s), fewer than min_rows {p.min_rows}"
        }
    import numpy as np
    import pandas as pd

    from retrain.pipeline import metrics

    proba = classes = None
    if cfg.dataset.task == "classification":
        y_true = frame["label"].astype(str).to_numpy()
        y_pred = frame["prediction"].astype(str).to_numpy()
        if metric_names.needs_proba(metric):
            if frame["proba"].isna().any():
                return out | {"note": f"{metric} needs class probabilities; the log has none"}
            classes = sorted({str(c) for d in frame["proba"] for c in d})
            proba = np.array([[float(d.get(c, 0.0)) for c in classes] for d in frame["proba"]])
    else:
        y_true = pd.to_numeric(frame["label"]).to_numpy(dtype=float)
        y_pred = pd.to_numeric(frame["prediction"]).to_numpy(dtype=float)
    try:
        value = round(float(metrics.score(metric, y_true, y_pred, proba, classes)), 4)
    except ValueError as exc:
        return out | {"note": str(exc)}
    threshold, fired = _performance_verdict(value, metric, recorded, p)
    return out | {"value": value, "threshold": threshold, "fired": fired}


def _age_days(created: str, now: datetime) -> float:
    ts = datetime.fromisoformat(created.replace("Z", "+00:00"))
    return (now - ts).total_seconds() / 86400.0


def _model_checks(cfg: Config, prod: RegistryEntry, split: Any) -> dict[str, dict[str, Any]]:
    """Prediction drift and performance of the production model on the new rows, streamed
    through the model chunk by chunk (the reference's outputs come from the store when an
    earlier run computed them)."""
    import numpy as np

    from retrain.decide import drift
    from retrain.pipeline import artifacts, dataset, metrics, newrows
    from retrain.pipeline.profiles import merge_columns, of_outputs

    t = cfg.triggers
    ds = cfg.dataset
    out: dict[str, dict[str, Any]] = {}
    path = artifacts.fetch(cfg.root, prod.artifact, prod.version)
    model = artifacts.load_for_config(cfg, path, prod.artifact.sha256)
    metric = cfg.gates.primary_metric
    perf = t.performance.enabled and split.new_rows >= t.performance.min_rows
    want_proba = (
        perf
        and ds.task == "classification"
        and metric_names.needs_proba(metric)
        and hasattr(model, "predict_proba")
    )
    outputs, truth, preds, probas = [], [], [], []
    for chunk in split.new_chunks():
        X = dataset.model_inputs(chunk, prod, "new batches")
        pred = model.predict(X)
        outputs.append(of_outputs(pred))
        if perf:
            truth.append(chunk[ds.target].to_numpy())
            preds.append(np.asarray(pred))
            if want_proba:
                probas.append(model.predict_proba(X))
    if t.prediction_drift.enabled and split.reference.rows:
        ref_out = split.reference_outputs(
            lambda frame: model.predict(dataset.model_inputs(frame, prod, "reference batches")),
            prod.artifact.sha256,
        )
        if ref_out is not None:
            psi = round(float(drift.prediction_psi(ref_out, merge_columns(outputs))), 4)
            out["prediction_drift"] = {
                "value": psi,
                "threshold": t.prediction_drift.psi_threshold,
                "fired": psi >= t.prediction_drift.psi_threshold,
                "unit": "PSI",
            }
    if perf:
        y_true, y_pred = newrows.stack(truth), newrows.stack(preds)
        proba = newrows.stack(probas) if probas else None
        classes = None
        if ds.task == "classification":
            classes = [str(c) for c in model.classes_]
            y_pred = y_pred.astype(str)
        value = round(float(metrics.score(metric, y_true, y_pred, proba, classes)), 4)
        recorded = prod.metrics.overall.get(metric)
        threshold, fired = _performance_verdict(value, metric, recorded, t.performance)
        out["performance"] = {
            "value": value,
            "threshold": threshold,
            "fired": fired,
            "metric": metric,
            "recorded_holdout": recorded,
            "rows": split.new_rows,
        }
    return out


def check(
    cfg: Config,
    registry: Registry,
    *,
    force: bool = False,
    reason: str | None = None,
    now: datetime | None = None,
    live: LiveFeedback | None = None,
) -> TriggerReport:
    """Evaluate every trigger against the production model and the data on disk.

    ``live``: the production version's served rows that got feedback since its promotion
    (read from the prediction log by the entry point; ``decide`` does not read the log).
    They make the ``live_performance`` check, judged by the ``performance`` thresholds.
    """
    now = now or datetime.now(UTC)
    t = cfg.triggers
    checks: dict[str, dict[str, Any]] = {}
    manual = bool(force or reason)
    checks["manual"] = {
        "value": reason or ("--force" if force else None),
        "threshold": None,
        "fired": manual,
    }
    prod = registry.production_entry
    if prod is None:
        checks["bootstrap"] = {"value": "no production model", "threshold": None, "fired": True}
        fired = [n for n, c in checks.items() if c["fired"]]
        return TriggerReport(retrain=True, fired=fired, checks=checks)

    if t.calendar.enabled:
        age = round(_age_days(prod.created, now), 2)
        checks["calendar"] = {
            "value": age,
            "threshold": t.calendar.max_age_days,
            "fired": age > t.calendar.max_age_days,
            "unit": "days",
        }

    # The batches on disk are the set that last passed the checks, and production trained on
    # every one of them with the same rows: nothing is new, and no frame needs reading.
    known = batchcheck.recall(cfg.dataset, cfg.root)
    split = None
    if known is not None and all(prod.data.files.get(rel) == n for rel, n in known.items()):
        n_new = 0
    else:
        from retrain.pipeline import newrows

        pdata = prod.data
        split = newrows.split_new(cfg.dataset, cfg.root, pdata.files, pdata.start, pdata.end)
        n_new = split.new_rows
    if t.new_data.enabled:
        checks["new_data"] = {
            "value": n_new,
            "threshold": t.new_data.min_new_rows,
            "fired": n_new >= t.new_data.min_new_rows,
            "unit": "rows",
        }

    drift_dict = None
    features = cfg.dataset.feature_names
    kinds = {f.name: f.type for f in cfg.dataset.features}
    if t.data_drift.enabled:
        if split is not None and split.current.rows and split.reference.rows:
            from retrain.decide import drift

            rep = drift.drift_report(
                split.reference.select(features),
                split.current.select(features),
                kinds=kinds,
                config=cfg.drift,
            )
            drift_dict = rep.to_dict()
            share = round(float(rep.share_drifted), 4)
            drifted = [c for c, f in drift_dict["features"].items() if f["drifted"]]
            checks["data_drift"] = {
                "value": share,
                "threshold": t.data_drift.max_share_drifted,
                "fired": share > t.data_drift.max_share_drifted,
                "drifted_features": drifted,
            }
        else:
            checks["data_drift"] = {
                "value": None,
                "threshold": t.data_drift.max_share_drifted,
                "fired": False,
                "note": "no new rows",
            }

    need_model = (t.prediction_drift.enabled or t.performance.enabled) and n_new > 0
    if need_model:
        assert split is not None
        checks.update(_model_checks(cfg, prod, split))
    elif t.performance.enabled:
        checks["performance"] = {
            "value": None,
            "threshold": t.performance.min_metric,
            "fired": False,
            "note": "no newly labelled rows",
        }
    if t.performance.enabled and live is not None:
        checks["live_performance"] = _live_performance(cfg, prod, live)

    fired = [n for n, c in checks.items() if c["fired"]]
    note = ""
    retrain = bool(fired)
    gain = weak_triggers(checks, t.min_expected_gain) if retrain and not manual else None
    if gain is not None and gain["skip"]:
        retrain = False
        note = (
            "below min_expected_gain: only weak triggers fired ("
            + "; ".join(gain["weak"])
            + "); a retrain would likely not pay its cost, a manual run overrides it"
        )
    if retrain and not manual and registry.latest:
        last = registry.get(registry.latest).created
        since = _age_days(last, now)
        if since < t.cooldown_days:
            retrain = False
            note = (
                f"cooldown: last retrain {since:.2f} days ago, minimum {t.cooldown_days}; "
                "a manual run overrides it"
            )
    cooldown = {
        "value": round(_age_days(registry.get(registry.latest).created, now), 2)
        if registry.latest
        else None,
        "threshold": t.cooldown_days,
        "active": bool(note),
        "unit": "days",
    }
    return TriggerReport(
        retrain=retrain,
        fired=fired,
        checks=checks,
        note=note,
        drift=drift_dict,
        cooldown=cooldown,
        expected_gain=gain,
    )


WEAK_ABLE = ("new_data", "data_drift")  # the only triggers that can fire "weakly"


def weak_triggers(
    checks: dict[str, dict[str, Any]], rule: TriggersConfig.MinExpectedGain | None
) -> dict[str, Any] | None:
    """Apply ``triggers.yaml: min_expected_gain`` to the checks that fired.

    A fired ``new_data`` is *weak* when it brought fewer than ``new_rows`` rows; a fired
    ``data_drift`` is weak when its drifted share is below ``drift_share``.  The run is
    skipped (``"skip": True``) only when every fired trigger is weak: any other trigger
    (calendar, performance, prediction drift, live performance, bootstrap, manual) is
    strong by definition.  None when no rule is configured.
    """
    if rule is None:
        return None
    fired = {n: c for n, c in checks.items() if c.get("fired")}
    weak: list[str] = []
    for name, c in fired.items():
        value = c.get("value")
        if value is None:
            continue
        if name == "new_data" and rule.new_rows is not None and value < rule.new_rows:
            weak.append(f"new_data {value} rows < {rule.new_rows}")
        elif name == "data_drift" and rule.drift_share is not None and value < rule.drift_share:
            weak.append(f"data_drift share {value:g} < {rule.drift_share:g}")
    return {
        "new_rows": rule.new_rows,
        "drift_share": rule.drift_share,
        "weak": weak,
        "skip": bool(fired) and len(weak) == len(fired),
    }
