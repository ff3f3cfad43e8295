"""The promotion gate trusts nothing the PR claims (issue 14, item 7).

``retrain verify`` calls :func:`recheck` for the version a PR appends.  It re-derives what
the proposal recorded, from the things a PR cannot fake:

- the candidate's and production's artifacts, fetched from the DVC remote and checked
  against their sha256 before they are loaded;
- the frozen holdout and the batches, as ``data.dvc`` on the PR records them (``dvc pull``);
- the gate configuration of the PR's ``configs/gates.yaml``.

It scores both models on the holdout, re-runs the validate stage's checks, recomputes the
schema fingerprint from the model and ``configs/dataset.yaml``, recomputes the bump and every
gate with :func:`retrain.decide.gates.evaluate_gates` (the inputs built by the same
functions of :mod:`retrain.release.judgement` that ``judge`` uses), and compares the result
with the registry entry and ``reports/v<X>/gate.json``.

What cannot be recomputed exactly:

- **latency** is measured again on this machine and judged against the budget; the
  recorded milliseconds are not compared (another machine, another load);
- **training time** cannot be re-measured without retraining: the recorded value is taken as
  the cost gate's input and judged against the budget again;
- the **out-of-time** slice is cut again from the batches and production is scored on it,
  but the candidate's second fit (without the slice) would take a training run: its
  figures there are taken as recorded (they are reported, never gating);
- every other number (metrics, subgroup metrics, bootstrap interval, deltas, model size,
  the trivial baseline, churn) must match within :data:`TOLERANCE` (the records are
  rounded to 6 decimals).

A recomputed gate that fails fails the check, whatever was recorded.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from retrain.core import registry as reg
from retrain.core.config import Config
from retrain.core.errors import BadInput, DataError
from retrain.core.progress import progress
from retrain.decide import key_examples
from retrain.decide.gates import GateReport, evaluate_gates
from retrain.pipeline import artifacts, batchcheck, dataset, out_of_time, stages, trivial
from retrain.release import dvcops, judgement

TOLERANCE = 2e-6
# Measured on the machine that ran the proposal: re-measured and judged, never compared.
MEASURED = ("gates.latency.value", "gates.latency.verdict", "gates.latency.detail")
# The candidate's second fit (without the out-of-time slice) would need a training run: the
# slice and production's figures on it are recomputed, the candidate's are taken as recorded.
SECOND_FIT = tuple(
    f"metrics.out_of_time.{k}" for k in ("candidate", "gain", "lower", "upper", "confidence")
)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list | tuple):
        out = {}
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out if value else {prefix: []}
    return {prefix: value}


def _same(a: Any, b: Any) -> bool:
    number = (int, float)
    if isinstance(a, number) and isinstance(b, number) and not isinstance(a, bool | str):
        if isinstance(b, bool):
            return a == b
        if math.isnan(float(a)) and math.isnan(float(b)):
            return True
        return math.isclose(float(a), float(b), rel_tol=0.0, abs_tol=TOLERANCE)
    return bool(a == b)


def differences(
    recorded: dict[str, Any], recomputed: dict[str, Any], *, skip: tuple[str, ...] = ()
) -> list[tuple[str, Any, Any]]:
    """Leaf-by-leaf differences ``(path, recorded, recomputed)``; ``detail`` texts and the
    paths starting with one of ``skip`` are not compared."""
    rec, new = _flatten(recorded), _flatten(recomputed)
    out = []
    for path in sorted(set(rec) | set(new)):
        if path.endswith(".detail") or path.startswith(skip):
            continue
        a, b = rec.get(path, "<missing>"), new.get(path, "<missing>")
        if not _same(a, b):
            out.append((path, a, b))
    return out


def _fail(where: str, diffs: list[tuple[str, Any, Any]]) -> None:
    path, a, b = diffs[0]
    more = f" (and {len(diffs) - 1} more difference(s))" if len(diffs) > 1 else ""
    raise BadInput(
        f"{where}: {path}: recorded {a!r}, recomputed {b!r}{more}; the promotion gate "
        "recomputes what the proposal claims and they disagree"
    )


def recheck(
    cfg: Config, entry: reg.RegistryEntry, baseline: reg.RegistryEntry | None, *, where: str
) -> list[str]:
    """Recompute the gates of ``entry`` against ``baseline`` (production on the base branch);
    raise :class:`BadInput` naming the first field whose record disagrees."""
    root = cfg.root
    ds = cfg.dataset
    version = entry.version
    dvcops.check_data_matches(root)
    trivial_record = None
    cut = None
    window: dict[str, Any] | None = None
    try:
        # streamed and checked once; the window's rows kept by the check are handed to
        # load_batches inside the same read session (not read again)
        with batchcheck.read_once():
            checked_batches = dataset.check_batches(ds, root)
            data = dataset.load_batches(ds, root)
        data_valid, data_detail = (
            True,
            f"{checked_batches.total_rows} rows in {len(checked_batches.files)} batch file(s) "
            "checked",
        )
        # the training window's target, as the train stage recorded it
        trivial_record = trivial.record(ds.task, data.frame[ds.target])
        cut, _ = out_of_time.split(data.frame, ds)
        window = {"start": data.start, "end": data.end}
        del data
    except DataError as exc:
        data_valid, data_detail = False, str(exc)
    holdout = dataset.load_holdout(ds, root)

    progress(f"verify: fetching v{version}'s artifact and scoring it on the frozen holdout")
    path = artifacts.fetch(root, entry.artifact, version)
    model = artifacts.load_for_config(cfg, path, entry.artifact.sha256)
    recorded_cost = entry.gates.results.get("cost")
    cost_value = recorded_cost.value if recorded_cost is not None else None
    train_seconds = cost_value.get("train_seconds") if isinstance(cost_value, dict) else None
    size = path.stat().st_size
    # The function judge uses: both models scored, and timed interleaved on this machine.
    scored = judgement.score_models(
        cfg, holdout, model, baseline, size=size, train_seconds=train_seconds, step="verify"
    )
    cand = scored.candidate
    y_pred, proba, classes = cand.y_pred, cand.proba, cand.classes
    schema = dataset.schema_of(ds, classes)
    change = judgement.schema_change(
        baseline.schema_ if baseline else None, reg.SchemaRecord.model_validate(schema)
    )
    inputs = judgement.gate_inputs(
        cfg,
        holdout,
        scored,
        bump_requested=entry.bump if entry.bump in ("patch", "major") else None,
        change=change,
        data_valid=data_valid,
        data_detail=data_detail,
        key_report=key_examples.for_models(
            root, ds, classes, model, scored.production_model, baseline
        ),
        trivial=trivial_record,
        # the slice and production on it are recomputed; the candidate's second fit is not
        # (it would take a training run), so its figures are taken from gate.json
        out_of_time=(
            judgement.out_of_time_inputs(
                cfg, cut.judged, cut.record(), None, baseline, scored.production_model
            )
            if cut is not None and _recorded_out_of_time(root, version)
            else None
        ),
        window=window,
    )
    progress("verify: recomputing every gate")
    report = evaluate_gates(inputs, cfg.gates)
    if not report.passed:
        failed = "; ".join(f"{r.name}: {r.detail}" for r in report.failed)
        raise BadInput(
            f"{where}: version {version}: gate(s) fail when recomputed ({failed}); "
            f"recorded passed={entry.gates.passed!r}"
        )

    recorded = entry.to_dict()
    recorded_entry = {
        "bump": entry.bump,
        "schema.fingerprint": entry.schema_.fingerprint,
        "artifact.size_bytes": entry.artifact.size_bytes,
        "metrics": recorded.get("metrics"),
        "gates.passed": entry.gates.passed,
        "gates.results": (recorded.get("gates") or {}).get("results"),
    }
    subgroups = stages.subgroup_metrics(cfg, holdout, y_pred, proba, classes)
    recomputed_entry = {
        "bump": report.bump,
        "schema.fingerprint": schema["fingerprint"],
        "artifact.size_bytes": size,
        "metrics": {"overall": report.metrics["candidate"], "subgroups": subgroups},
        "gates.passed": report.passed,
        "gates.results": {
            r.name: {"verdict": r.verdict, "value": r.value, "threshold": r.threshold}
            for r in report.results
        },
    }
    diffs = differences(
        _flatten(recorded_entry),
        _flatten(recomputed_entry),
        skip=("gates.results.latency.value", "gates.results.latency.verdict"),
    )
    if diffs:
        _fail(f"{where}: version {version}", diffs)
    checked = [
        f"recomputed on {len(holdout)} holdout rows: {len(report.results)} gates pass, bump "
        f"{report.bump}, metrics and subgroups match the registry entry (±{TOLERANCE:g})"
    ]
    checked.append(_check_gate_json(root, version, report))
    lat = report.result("latency").value
    checked.append(
        f"latency re-measured here: p95 {lat.get('p95_ms_single')} ms/row, "
        f"{lat.get('p95_ms_batch')} ms/batch, within budget"
    )
    return checked


def _recorded_out_of_time(root: Path, version: str) -> bool:
    """Whether the proposal judged an out-of-time slice (its second fit can fail, e.g. when
    the older rows lack a class; then neither side reports one)."""
    try:
        doc = json.loads((root / f"reports/v{version}/gate.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False  # _check_gate_json names the problem
    return bool(isinstance(doc, dict) and "out_of_time" in (doc.get("metrics") or {}))


def _check_gate_json(root: Path, version: str, report: GateReport) -> str:
    rel = f"reports/v{version}/gate.json"
    path = root / rel
    if not path.is_file():
        raise BadInput(f"{rel}: missing; the proposal's gate report is part of the PR")
    try:
        recorded = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BadInput(f"{rel}: not valid JSON (line {exc.lineno})") from None
    diffs = differences(recorded, report.to_dict(), skip=MEASURED + SECOND_FIT)
    if diffs:
        _fail(rel, diffs)
    return f"{rel} matches the recomputed gates"
