"""Judging a candidate: both models scored on the same frozen holdout, then every gate.

``judge`` reads the pipeline's outputs in the workspace (``retrain run``, ``retrain gates``);
the PR-time re-check (:mod:`retrain.release.recheck`) scores the models it fetched itself.
Both build the gates' inputs here, so the required check recomputes exactly what the
proposal computed.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrain.core import registry as reg
from retrain.core import versioning
from retrain.core.config import Config, load_serve_config
from retrain.core.progress import progress
from retrain.decide import key_examples
from retrain.decide import out_of_time as oot_mod
from retrain.decide.gates import GateInputs, GateReport, ModelScores, SchemaChange, evaluate_gates
from retrain.decide.key_examples import KeyExampleReport
from retrain.decide.out_of_time import OutOfTimeInputs
from retrain.pipeline import artifacts, dataset, latency, stages
from retrain.pipeline import out_of_time as pipeline_oot
from retrain.pipeline.predict import predict_rows
from retrain.release import history

LATEST_REPORT = "reports/latest"


@dataclass
class Judgement:
    gates: GateReport
    version: str
    bump: str
    base_version: str | None
    training: dict[str, Any]
    evaluation: dict[str, Any]
    schema_change: SchemaChange
    plots: list[Path] = field(default_factory=list)
    cost: dict[str, Any] | None = None  # what the retrain cost (set by retrain.run)


def schema_change(old: reg.SchemaRecord | None, new: reg.SchemaRecord) -> SchemaChange:
    if old is None:
        return SchemaChange()
    of, nf = old.features, new.features
    oc, nc = set(old.classes or []), set(new.classes or [])
    return SchemaChange(
        added=sorted(set(nf) - set(of)),
        removed=sorted(set(of) - set(nf)),
        retyped=sorted(k for k in set(of) & set(nf) if of[k] != nf[k]),
        classes_added=sorted(nc - oc),
        classes_removed=sorted(oc - nc),
    )


def _scores(
    model: Any, cfg: Config, X: Any, *, size: int, train_seconds: float | None
) -> ModelScores:
    y_pred, proba, classes = predict_rows(model, X, cfg.dataset.task)
    return ModelScores(
        y_pred=y_pred,
        proba=proba,
        classes=classes,
        latency={},
        size_bytes=size,
        train_seconds=train_seconds,
    )


@dataclass
class Scored:
    """Both models' predictions and latencies on the frozen holdout."""

    candidate: ModelScores
    baseline: ModelScores | None
    production_model: Any


def score_models(
    cfg: Config,
    holdout: Any,
    candidate_model: Any,
    production: reg.RegistryEntry | None,
    *,
    size: int,
    train_seconds: float | None,
    sha256: str | None = None,
    latency_alone: dict[str, float] | None = None,
    step: str = "gates",
) -> Scored:
    """Score the candidate and production (fetched, checked, loaded) on ``holdout``, and
    time both interleaved, or take the pair the evaluate stage timed in this process for the
    candidate ``sha256`` beside that production.  With no production, the candidate's
    latency is ``latency_alone`` if given (the evaluate stage's), else measured here."""
    ds = cfg.dataset
    X = holdout[ds.feature_names]
    threads = load_serve_config(cfg.root).threads  # timed as the server predicts
    candidate = _scores(candidate_model, cfg, X, size=size, train_seconds=train_seconds)
    if production is None:
        candidate.latency = latency_alone or latency.measure_latency(
            candidate_model, X, cfg.gates.latency, threads
        )
        return Scored(candidate, None, None)
    progress(
        f"{step}: fetching production v{production.version} and scoring it on the same holdout"
    )
    path = artifacts.fetch(cfg.root, production.artifact, production.version)
    model = artifacts.load_for_config(cfg, path, production.artifact.sha256)
    base_X = dataset.model_inputs(holdout, production, ds.holdout)
    baseline = _scores(
        model, cfg, base_X, size=production.artifact.size_bytes or 0, train_seconds=None
    )
    pair = latency.measured_pair(sha256, production.version, threads) if sha256 else None
    if pair is None:  # evaluate ran in another process, or DVC restored it from its cache
        progress(f"{step}: measuring candidate and production latency, interleaved")
        pair = latency.measure_latencies(
            {"candidate": candidate_model, "production": model},
            {"candidate": X, "production": base_X},
            cfg.gates.latency,
            threads,
        )
    candidate.latency, baseline.latency = pair["candidate"], pair["production"]
    return Scored(candidate, baseline, model)


def gate_inputs(
    cfg: Config,
    holdout: Any,
    scored: Scored,
    *,
    bump_requested: str | None,
    change: SchemaChange,
    data_valid: bool,
    data_detail: str,
    key_report: KeyExampleReport | None,
    trivial: dict[str, Any] | None = None,
    out_of_time: OutOfTimeInputs | None = None,
    window: dict[str, Any] | None = None,
) -> GateInputs:
    ds = cfg.dataset
    return GateInputs(
        task=ds.task,
        metric=cfg.gates.primary_metric,
        y_true=holdout[ds.target].to_numpy(),
        subgroups={c: holdout[c].astype(str).to_numpy() for c in ds.subgroups},
        candidate=scored.candidate,
        baseline=scored.baseline,
        bump_requested=bump_requested,  # type: ignore[arg-type]
        schema_change=change,
        data_valid=data_valid,
        data_detail=data_detail,
        key_examples=key_report,
        trivial=trivial,
        out_of_time=out_of_time,
        holdout_age=_holdout_age(cfg, holdout, window),
    )


def _day(ts: Any) -> str:
    return str(ts.strftime("%Y-%m-%d"))


def _holdout_age(cfg: Config, holdout: Any, window: dict[str, Any] | None) -> dict[str, Any] | None:
    """The frozen holdout's period beside the training window's (time column only)."""
    tc = cfg.dataset.time_column
    if not tc or window is None or tc not in holdout or not len(holdout):
        return None
    period = {"start": _day(holdout[tc].min()), "end": _day(holdout[tc].max())}
    return oot_mod.holdout_age(period, {"start": window.get("start"), "end": window.get("end")})


SLICE_KEYS = ("rows", "fit_rows", "by", "start", "end")


def out_of_time_inputs(
    cfg: Config,
    rows: Any,
    record: dict[str, Any],
    candidate: ModelScores | None,
    production: reg.RegistryEntry | None,
    production_model: Any,
) -> OutOfTimeInputs:
    """Both models on the out-of-time slice ``rows`` (production scored here, fetched model
    ``production_model``); ``candidate`` is the second fit's scores from the train stage."""
    ds = cfg.dataset
    baseline = None
    end = overlap = None
    if production is not None and production_model is not None:
        base_X = dataset.model_inputs(rows, production, pipeline_oot.SLICE_FILE)
        baseline = _scores(production_model, cfg, base_X, size=0, train_seconds=None)
        end = production.data.end
        if end and ds.time_column:
            overlap = int(sum(_day(t) <= end for t in rows[ds.time_column]))
    return OutOfTimeInputs(
        y_true=rows[ds.target].to_numpy(),
        candidate=candidate,
        baseline=baseline,
        slice={k: record.get(k) for k in SLICE_KEYS},
        production_end=end,
        production_overlap=overlap,
    )


def _slice_from_stage(
    cfg: Config, training: dict[str, Any], scored: Scored, prod: reg.RegistryEntry | None
) -> OutOfTimeInputs | None:
    """The train stage's out-of-time slice and second-fit predictions, with production."""
    record = training.get("out_of_time") or {}
    path = cfg.root / pipeline_oot.SLICE_FILE
    if not record.get("rows") or not path.is_file():
        return None
    rows, y_pred, proba = pipeline_oot.read(path, record.get("classes"))
    candidate = ModelScores(
        y_pred=y_pred,
        proba=proba,
        classes=record.get("classes"),
        latency={},
        size_bytes=0,
        train_seconds=None,
    )
    return out_of_time_inputs(cfg, rows, record, candidate, prod, scored.production_model)


def judge(cfg: Config, registry: reg.Registry, *, bump_requested: str | None) -> Judgement:
    """Run every promotion gate for the candidate in the workspace."""
    root = cfg.root
    ds = cfg.dataset
    training = stages.load_json(root, stages.TRAINING_FILE)
    evaluation = stages.load_json(root, stages.METRICS_FILE)
    validation = stages.load_json(root, stages.VALIDATION_FILE)
    holdout = dataset.load_holdout(ds, root)
    sha = training["artifact"]["sha256"]
    candidate_model = artifacts.load_for_config(cfg, root / stages.MODEL_FILE, sha)
    classes = training["schema"].get("classes")
    key_examples.load(root, ds, classes)  # bad input: refuse early
    prod = registry.production_entry
    scored = score_models(
        cfg,
        holdout,
        candidate_model,
        prod,
        size=training["artifact"]["size_bytes"],
        train_seconds=training["train_seconds"],
        sha256=sha,
        latency_alone=evaluation["latency"],
    )
    change = schema_change(
        prod.schema_ if prod else None, reg.SchemaRecord.model_validate(training["schema"])
    )
    inputs = gate_inputs(
        cfg,
        holdout,
        scored,
        bump_requested=bump_requested,
        change=change,
        data_valid=bool(validation.get("passed")),
        data_detail=f"{validation.get('total_rows')} rows in {len(validation.get('files', {}))} "
        "batch file(s) checked",
        key_report=key_examples.for_models(
            root, ds, classes, candidate_model, scored.production_model, prod
        ),
        trivial=training.get("trivial_baseline"),
        out_of_time=_slice_from_stage(cfg, training, scored, prod),
        window=training.get("data"),
    )
    progress("gates: evaluating improvement (paired bootstrap), subgroups, latency, cost")
    gate_report = evaluate_gates(inputs, cfg.gates)
    bump = gate_report.bump
    taken = set(history.registered_versions(root, cfg.release.model_name))
    version = versioning.next_free_version(registry.latest, bump, taken)  # type: ignore[arg-type]
    judgement = Judgement(
        gates=gate_report,
        version=version,
        bump=bump,
        base_version=prod.version if prod else None,
        training=training,
        evaluation=evaluation,
        schema_change=change,
    )
    out = root / LATEST_REPORT
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    try:
        from retrain.report import plots

        judgement.plots = plots.write_plots(
            out,
            ds.task,
            inputs.y_true,
            scored.candidate.y_pred,
            scored.baseline.y_pred if scored.baseline is not None else None,
            scored.candidate.proba,
            scored.candidate.classes,
        )
    except Exception as exc:  # a missing picture must not block a promotion decision
        progress(f"gates: plots skipped ({type(exc).__name__}: {exc})")
    stages.write_json(out / "gate.json", gate_report.to_dict())
    return judgement
