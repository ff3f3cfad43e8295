"""``retrain init`` on an imbalanced target: a metric, guardrails and floors that fit it.

On a target whose rarest class is under :data:`IMBALANCED` of the labelled rows, a model
that always answers the common class scores high accuracy (0.967 on a 3.3%-positive file),
so the template's accuracy-based judgement cannot tell a degenerate model from a good one.
:func:`adjust` rewrites, as text edits that keep the template's comments:

- ``gates.yaml: primary_metric`` (and ``trivial_baseline.metric``): for a binary target
  ``average_precision`` when the estimator gives probabilities, else ``balanced_accuracy``;
  with more classes ``f1_macro``; a metric that already fits (``balanced_accuracy``,
  ``f1_macro``, ``roc_auc``, ``average_precision``) is kept;
- ``gates.yaml: guardrails`` (when the template has none): ranking and calibration may not
  get worse either (``roc_auc``, ``log_loss``), or macro F1 without probabilities;
- ``gates.yaml: churn.max_negative_flip_rate`` (binary targets): at most half the rare
  class's share, so a candidate cannot break half of the rare class and stay under it;
- ``release.yaml: rollout.health.min_metric``: a live floor a tenth of the way from the
  trivial model's score on the holdout to a perfect one, so a degenerate model in
  production is caught by the watch window.  The monitor judges against the higher of this
  floor and the version's holdout value minus ``max_metric_drop``.
"""

from __future__ import annotations

import pandas as pd
import yaml

from retrain.onboard.configs import _num, _set_line, _set_nested, _yaml_num
from retrain.pipeline import metrics, trivial

IMBALANCED = 0.10  # the rarest class under this share of the rows: an imbalanced target
DOMINANT = 0.90  # the most frequent class at this share: accuracy cannot separate models
FITTING = ("balanced_accuracy", "f1_macro", "roc_auc", "average_precision")
WITH_PROBA = frozenset(
    {"random_forest", "hist_gradient_boosting", "logistic_regression", "decision_tree"}
)  # built-ins with predict_proba
FLOOR_SHARE = 0.1  # the live floor: this far from the trivial score towards a perfect one


def rarest(target: pd.Series) -> tuple[str, float]:
    """The rarest class and its share of the rows."""
    shares = target.astype(str).value_counts(normalize=True)
    label = sorted(shares[shares == shares.min()].index)[0]
    return str(label), float(shares[label])


def choose_metric(current: str, n_classes: int, proba: bool, majority: float) -> str:
    """The primary metric for an imbalanced target.

    Accuracy cannot separate models once the most frequent class is :data:`DOMINANT` of
    the rows (a constant scores that much), so it is replaced: for two classes by average
    precision (the rare class's ranking) when the model gives probabilities, else balanced
    accuracy; for more by macro F1, which weighs each class alike and, unlike balanced
    accuracy (mean recall), also asks for precision.  When a class is rare but none
    dominates (the weather's snow at 1.6%, sun at 47%), accuracy still separates models and
    is kept; macro F1 then judges the trivial baseline and guards the rare classes.
    """
    if current in FITTING and (proba or not metrics.needs_proba(current)):
        return current
    if majority < DOMINANT:
        return current
    if n_classes == 2:
        return "average_precision" if proba else "balanced_accuracy"
    return "f1_macro"


def _guardrails(metric: str, proba: bool, kept: bool) -> dict[str, dict[str, float]]:
    rails: dict[str, dict[str, float]] = {}
    if (kept or not proba) and metric != "f1_macro":
        rails["f1_macro"] = {"max_drop": 0.02}  # the rare classes' precision and recall
    if proba and metric != "roc_auc":
        rails["roc_auc"] = {"max_drop": 0.02}
    if proba:
        rails["log_loss"] = {"max_rise": 0.05}
    return rails


def adjust(
    gates: str,
    release: str,
    *,
    target: pd.Series,
    training: pd.Series,
    holdout: pd.Series,
    estimator: str | None,
    notes: list[str],
) -> tuple[str, str]:
    """``(gates.yaml, release.yaml)`` texts fitted to an imbalanced ``target``.

    ``training`` and ``holdout`` are the target column of the batches and of the frozen
    holdout as init split them; the trivial model is learnt from the first and scored on the
    second, as the gates will.
    """
    label, share = rarest(target)
    n_classes = int(target.astype(str).nunique())
    proba = estimator in WITH_PROBA
    doc = yaml.safe_load(gates) or {}
    current = str(doc.get("primary_metric", "accuracy"))
    majority = float(target.astype(str).value_counts(normalize=True).max())
    metric = choose_metric(current, n_classes, proba, majority)
    kept = metric == current and metric not in FITTING
    judge = "f1_macro" if kept else metric  # what the trivial baseline is judged by
    rec = trivial.record("classification", training)
    y = holdout.astype(str).to_numpy()
    pred, prob, classes = trivial.predictions(rec, "accuracy", len(y))
    constant_accuracy = metrics.score("accuracy", y, pred)
    notes.append(
        f"imbalanced target: {label!r} is {share:.1%} of the rows (under {IMBALANCED:.0%}); "
        f"always answering {trivial.constant(rec, 'accuracy')!r} scores "
        f"{constant_accuracy:.3f} accuracy on the holdout"
    )
    why = f"retrain init: imbalanced target ({label!r} {share:.1%})"
    if metric != current:
        gates = _set_line(gates, "primary_metric", f"{metric}  # {why}")
        notes.append(f"gates.yaml: primary_metric {current} -> {metric}")
    elif kept:
        notes.append(
            f"gates.yaml: primary_metric {current} kept (the most frequent class is "
            f"{majority:.1%}, under {DOMINANT:.0%}); the trivial baseline is judged by {judge}"
        )
    res = _set_nested(gates, ("trivial_baseline", "metric"), judge, why)
    gates = res if res is not None else gates
    if not doc.get("guardrails"):
        rails = _guardrails(metric, proba, kept)
        block = [f"guardrails:               # {why}: these may not get worse either"]
        block += [
            f"  {name}: {{{k}: {_num(v)}}}" for name, r in rails.items() for k, v in r.items()
        ]
        gates = gates.rstrip("\n") + "\n" + "\n".join(block) + "\n"
        shown = ", ".join(f"{n} {k} {_num(v)}" for n, r in rails.items() for k, v in r.items())
        notes.append(f"gates.yaml: guardrails {shown}")
    given = (doc.get("churn") or {}).get("max_negative_flip_rate")
    limit = float(given) if isinstance(given, int | float) and not isinstance(given, bool) else 1.0
    cap = float(f"{share / 2:.2g}")
    if n_classes == 2 and given is not None and cap < limit:
        res = _set_nested(
            gates,
            ("churn", "max_negative_flip_rate"),
            _yaml_num(cap),
            f"retrain init: half the share of {label!r}",
        )
        if res is not None:
            gates = res
            notes.append(
                f"gates.yaml: churn.max_negative_flip_rate {_num(limit)} -> {_num(cap)} "
                f"(half the share of {label!r}: no candidate may break that many rows)"
            )
    try:
        base = metrics.score(metric, y, pred, prob, classes)
    except ValueError:  # e.g. one class only in the holdout: no floor to speak of
        return gates, release
    floor = round(base + FLOOR_SHARE * (1 - base), 3)
    res = _set_nested(
        release,
        ("rollout", "health", "min_metric"),
        _yaml_num(floor),
        f"retrain init: above the trivial model's {metric} {base:.3f} on the holdout",
    )
    if res is None:
        notes.append(
            "release.yaml: rollout.health.min_metric left as is (its section is written "
            f"inline): set it above {base:.3f}, the trivial model's {metric}, by hand"
        )
        return gates, release
    notes.append(
        f"release.yaml: rollout.health.min_metric {_num(floor)} (the trivial model scores "
        f"{base:.3f} {metric} on the holdout; a live model at that level is rolled back)"
    )
    return gates, res
