"""The rollout judges: one verdict per strategy from the prediction log's rows.

Each returns a :class:`~retrain.rollout.analysis.Verdict` with the checks behind it:

* :func:`judge_canary` -- canary vs production on the rows since the step began: enough
  requests and labels (else **hold**, saying how many are missing), error-rate increase and
  p95 latency ratio (both per request, :func:`~retrain.rollout.analysis.per_request`: one
  huge request is one request), and the live primary metric's difference with its bootstrap interval
  (canary and production answer different requests, so the resampling is *unpaired*).
  Any broken threshold is **rollback**; all passing is **advance** (or **promote** after the
  last step).  A metric interval that straddles ``min_metric_change`` holds for more labels.
* :func:`judge_shadow` -- champion/challenger: the shadow answered the *same* requests as
  production, so the comparison is the gates' paired bootstrap
  (:func:`retrain.decide.gates.bootstrap_deltas`); after the fixed window and with enough
  labels, a gain of at least ``min_delta`` whose lower bound is above zero is
  **promote_challenger**, anything else **keep** (no PR).
* :func:`judge_health` -- a version promoted directly, inside its watch window: absolute
  thresholds (error rate, p95 latency, metric floor); a breach is **rollback**.
"""

from __future__ import annotations

import pandas as pd

from retrain.core.config import RolloutConfig
from retrain.decide.gates import bootstrap_deltas
from retrain.pipeline import metrics
from retrain.rollout.analysis import (
    Check,
    CheckVerdict,
    Verdict,
    VersionStats,
    fmt,
    interval,
    one_sample_interval,
    oriented,
    rounded,
    scores,
    targets,
    unpaired_deltas,
)
from retrain.rollout.logview import LogView, view_of


def judge_canary(
    frame: pd.DataFrame | LogView,
    *,
    production: str,
    canary: str,
    weight: int,
    cfg: RolloutConfig,
    metric: str,
    task: str,
) -> tuple[Verdict, list[VersionStats]]:
    """Canary vs production on ``frame`` (the rows since the current step began: a checked
    frame, or a :class:`~retrain.rollout.logview.LogView` of the live log)."""
    a = cfg.analysis
    view = view_of(frame, a)
    prod_slice = view.slice(production, "production", metric, task)
    can_slice = view.slice(canary, "canary", metric, task)
    prod, can = prod_slice.labelled, can_slice.labelled
    ps, cs = prod_slice.stats, can_slice.stats
    missing: dict[str, int] = {}
    checks = [
        _count(
            "requests",
            cs.requests,
            a.min_requests,
            f"{cs.requests} canary requests (need {a.min_requests})",
            missing,
        ),
        _count(
            "labels",
            cs.labels,
            a.min_labels,
            f"{cs.labels} labelled canary rows (need {a.min_labels})",
            missing,
        ),
    ]
    enough_traffic = cs.requests >= a.min_requests
    # Error rate and latency: judged once the step has its requests.
    err_inc = (
        None if cs.error_rate is None or ps.error_rate is None else cs.error_rate - ps.error_rate
    )
    if err_inc is None or not enough_traffic:
        checks.append(
            Check(
                "error_rate",
                "wait",
                rounded(err_inc),
                a.max_error_rate_increase,
                "waiting for requests",
            )
        )
    else:
        ok = err_inc <= a.max_error_rate_increase + 1e-12
        checks.append(
            Check(
                "error_rate",
                "pass" if ok else "fail",
                rounded(err_inc),
                a.max_error_rate_increase,
                f"canary {cs.error_rate:.2%} ({cs.errors} of {cs.requests} requests) vs "
                f"production {ps.error_rate:.2%} failed requests "
                f"(increase {err_inc:+.2%}, max {a.max_error_rate_increase:+.2%})",
            )
        )
    ratio = (
        cs.p95_latency_ms / ps.p95_latency_ms
        if cs.p95_latency_ms is not None and ps.p95_latency_ms
        else None
    )
    if ratio is None or not enough_traffic:
        checks.append(
            Check(
                "latency", "wait", rounded(ratio), a.max_p95_latency_ratio, "waiting for requests"
            )
        )
    else:
        ok = ratio <= a.max_p95_latency_ratio
        checks.append(
            Check(
                "latency",
                "pass" if ok else "fail",
                rounded(ratio),
                a.max_p95_latency_ratio,
                f"p95 {cs.p95_latency_ms:.1f} ms per request vs production "
                f"{ps.p95_latency_ms:.1f} ms (ratio {ratio:.2f}, max {a.max_p95_latency_ratio:.2f})",
            )
        )
    # Live metric, with its interval.
    cs.delta = rounded(oriented(metric, cs.value, ps.value))
    if cs.labels >= max(a.min_labels, 1) and ps.labels > 0:
        deltas = unpaired_deltas(metric, task, can, prod, n_resamples=a.n_resamples, seed=a.seed)
        lo, hi = interval(deltas, a.confidence)
        cs.lower, cs.upper = rounded(lo), rounded(hi)
        if lo is None or hi is None or cs.delta is None:
            checks.append(
                Check(
                    "metric",
                    "n/a",
                    None,
                    a.min_metric_change,
                    f"{metric} undefined on the labelled rows",
                )
            )
        else:
            ci = f"{a.confidence:.0%} bounds [{lo:+.4f}, {hi:+.4f}]"
            head = (
                f"{metric} canary {fmt(cs.value)} vs production {fmt(ps.value)}: "
                f"change {cs.delta:+.4f}, {ci}, min change {a.min_metric_change:+.4f}"
            )
            if lo >= a.min_metric_change:
                verdict: CheckVerdict = "pass"
            elif hi < a.min_metric_change:
                verdict = "fail"
            else:
                verdict = "wait"
                head += "; the interval straddles the threshold: more labels needed"
            checks.append(Check("metric", verdict, cs.delta, a.min_metric_change, head))
    else:
        checks.append(
            Check("metric", "wait", None, a.min_metric_change, "waiting for labelled rows")
        )
    failed = [c for c in checks if c.verdict == "fail"]
    waiting = [c for c in checks if c.verdict == "wait"]
    if failed:
        why = "; ".join(f"{c.name}: {c.detail}" for c in failed)
        return Verdict("rollback", canary, f"Rollback canary {canary}: {why}", checks, missing), [
            ps,
            cs,
        ]
    if waiting:
        need = ", ".join(f"{n} more {k}" for k, n in missing.items()) or "; ".join(
            c.detail for c in waiting
        )
        return Verdict(
            "hold", canary, f"Hold canary {canary} at {weight}%: {need}", checks, missing
        ), [ps, cs]
    later = [s for s in cfg.steps if s > weight]
    if later:
        return Verdict(
            "advance",
            canary,
            f"Advance canary {canary} weight {weight}% -> {later[0]}%",
            checks,
            next_weight=later[0],
        ), [ps, cs]
    return Verdict(
        "promote", canary, f"Promote canary {canary} to production (last step {weight}%)", checks
    ), [ps, cs]


# --------------------------------------------------------------------------- shadow
def judge_shadow(
    frame: pd.DataFrame | LogView,
    *,
    production: str,
    shadow: str,
    cfg: RolloutConfig,
    metric: str,
    task: str,
    running_seconds: float,
    confidence: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
) -> tuple[Verdict, VersionStats]:
    """Champion/challenger on the same live requests (paired bootstrap)."""
    ch = cfg.challenger
    from retrain.core.config import duration_seconds

    window = duration_seconds(ch.window)
    view = view_of(frame, cfg.analysis)
    st = view.slice(shadow, "shadow", metric, task).stats
    pairs = view.pairs(production, shadow)
    st.agreement = pairs.agreement
    labelled = pairs.rows  # the labelled pairs (a seeded sample of them past the limit)
    n_labelled = pairs.labelled
    checks = [
        Check(
            "window",
            "pass" if running_seconds >= window else "wait",
            rounded(running_seconds),
            window,
            f"shadow running {running_seconds / 3600:.1f} h (window {ch.window})",
        ),
        Check(
            "labels",
            "pass" if n_labelled >= ch.min_labels else "wait",
            n_labelled,
            ch.min_labels,
            f"{n_labelled} labelled requests answered by both (need {ch.min_labels})",
        ),
    ]
    missing = {}
    if n_labelled < ch.min_labels:
        missing["labels"] = ch.min_labels - n_labelled
    if len(labelled):
        y = targets(labelled["label_p"], task)
        s_rows = labelled.rename(columns={"prediction_s": "prediction", "proba_s": "proba"})
        p_rows = labelled.rename(columns={"prediction_p": "prediction", "proba_p": "proba"})
        s_sc, p_sc = scores(s_rows, metric, task), scores(p_rows, metric, task)
        if s_sc is not None and p_sc is not None:
            sv: float | None
            pv: float | None
            try:
                sv = metrics.score(metric, y, s_sc.y_pred, s_sc.proba, s_sc.classes)
                pv = metrics.score(metric, y, p_sc.y_pred, p_sc.proba, p_sc.classes)
            except ValueError:
                sv = pv = None
            if sv is not None and pv is not None:
                st.delta = rounded(oriented(metric, sv, pv))
                deltas = bootstrap_deltas(metric, y, s_sc, p_sc, n_resamples=n_resamples, seed=seed)
                lo, hi = interval(deltas, confidence)
                st.lower, st.upper = rounded(lo), rounded(hi)
    if st.delta is not None and st.lower is not None:
        beats = st.delta >= ch.min_delta and st.lower > 0
        checks.append(
            Check(
                "improvement",
                "pass" if beats else "fail",
                st.delta,
                ch.min_delta,
                f"{metric} gain {st.delta:+.4f} on the same requests, {confidence:.0%} paired "
                f"lower bound {st.lower:+.4f} (need gain >= {ch.min_delta:.4f} and bound > 0)",
            )
        )
    else:
        checks.append(Check("improvement", "wait", None, ch.min_delta, "no paired labels yet"))
    if any(c.verdict == "wait" for c in checks[:2]):
        need = ", ".join(f"{n} more {k}" for k, n in missing.items()) or "the window to end"
        return Verdict("hold", shadow, f"Hold shadow {shadow}: {need}", checks, missing), st
    if checks[-1].verdict == "pass":
        return Verdict(
            "promote_challenger",
            shadow,
            f"Promote challenger {shadow}: it beats production {production} on live labels",
            checks,
        ), st
    return Verdict(
        "keep", shadow, f"Keep production {production}: shadow {shadow} does not beat it", checks
    ), st


def _count(name: str, have: int, need: int, detail: str, missing: dict[str, int]) -> Check:
    """A count that must reach ``need``: pass when it does, else wait, noting how many more
    are missing in ``missing``."""
    if have < need:
        missing[name] = need - have
    return Check(name, "pass" if have >= need else "wait", have, need, detail)


# --------------------------------------------------------------------------- direct
def judge_health(
    frame: pd.DataFrame | LogView,
    *,
    production: str,
    cfg: RolloutConfig,
    metric: str,
    task: str,
    in_window: bool,
    floor: float | None = None,
) -> tuple[Verdict, VersionStats]:
    """Absolute health of the production version after a direct promotion.

    ``floor`` is the live metric's floor (``health.min_metric``, or the version's holdout
    value minus ``health.max_metric_drop``); it breaks when the whole interval lies below.
    """
    h = cfg.health
    piece = view_of(frame, cfg.analysis).slice(production, "production", metric, task)
    rows, st = piece.labelled, piece.stats
    if not in_window:
        return Verdict(
            "none", production, f"v{production} is past its watch window; nothing to watch"
        ), st
    missing: dict[str, int] = {}
    enough = st.requests >= h.min_requests
    need = "" if enough else f" (need {h.min_requests})"
    checks = [
        _count("requests", st.requests, h.min_requests, f"{st.requests} requests{need}", missing)
    ]
    if enough:
        er = st.error_rate or 0.0
        checks.append(
            Check(
                "error_rate",
                "pass" if er <= h.max_error_rate else "fail",
                st.error_rate,
                h.max_error_rate,
                f"{er:.2%} of requests failed ({st.errors} of {st.requests}; {st.error_rows} rows) (max {h.max_error_rate:.2%})",
            )
        )
        p95 = st.p95_latency_ms
        checks.append(
            Check(
                "latency",
                "pass" if p95 is None or p95 <= h.max_p95_latency_ms else "fail",
                p95,
                h.max_p95_latency_ms,
                f"p95 {fmt(p95, 1)} ms per request (max {h.max_p95_latency_ms:.1f} ms)",
            )
        )
    if floor is not None:
        if st.labels < h.min_labels:
            missing["labels"] = h.min_labels - st.labels
            checks.append(Check("metric", "wait", st.value, floor, f"{st.labels} labels so far"))
        else:
            lo, hi = one_sample_interval(
                rows, metric, task, cfg.analysis.confidence, cfg.analysis.n_resamples
            )
            st.lower, st.upper = rounded(lo), rounded(hi)
            # Oriented: "above the floor" means better than it, for either direction.
            best = hi if metrics.greater_is_better(metric) else lo
            gap = oriented(metric, best, floor)
            ok = gap is None or gap >= 0
            checks.append(
                Check(
                    "metric",
                    "pass" if ok else "fail",
                    st.value,
                    floor,
                    f"live {metric} {fmt(st.value)} on {st.labels} labels, "
                    f"{cfg.analysis.confidence:.0%} interval [{fmt(lo)}, {fmt(hi)}] "
                    f"(floor {floor:.4f})",
                )
            )
    failed = [c for c in checks if c.verdict == "fail"]
    if failed:
        why = "; ".join(f"{c.name}: {c.detail}" for c in failed)
        return Verdict(
            "rollback", production, f"Rollback v{production}: {why}", checks, missing
        ), st
    if any(c.verdict == "wait" for c in checks):
        need = ", ".join(f"{n} more {k}" for k, n in missing.items())
        return Verdict("hold", production, f"Watching v{production}: {need}", checks, missing), st
    return Verdict("healthy", production, f"v{production} is healthy", checks), st
