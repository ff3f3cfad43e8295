"""What the reviewer and the on-call person read: PR title and body, run summary, plots."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from retrain.core.config import GatesConfig
from retrain.decide.gates import GateInputs, ModelScores, SchemaChange, evaluate_gates
from retrain.report import markdown, plots

CLASSES = ["fog", "rain", "sun"]
N = 2000


def _wrong_on(y, rows):
    pred = y.copy()
    for i in rows:
        pred[i] = CLASSES[(CLASSES.index(y[i]) + 1) % len(CLASSES)]
    return pred


def _scores(pred, latency=None):
    proba = np.full((len(pred), 3), 0.1)
    proba[np.arange(len(pred)), [CLASSES.index(p) for p in pred]] = 0.8
    return ModelScores(
        pred,
        proba,
        CLASSES,
        latency or {"p95_ms_single": 2.5, "p95_ms_batch": 30.0},
        3_000_000,
        12.0,
    )


def gate_report(*, candidate_wrong=300, baseline=True, change=None, winter_wrong=0):
    y = np.random.default_rng(0).choice(CLASSES, N)
    season = np.array(["summer"] * 1600 + ["winter"] * 390 + ["spring"] * 10)
    base = _scores(_wrong_on(y, range(400))) if baseline else None
    cand = _wrong_on(y, [*range(candidate_wrong), *range(1600, 1600 + winter_wrong)])
    inputs = GateInputs(
        "classification",
        "accuracy",
        y,
        {"season": season},
        _scores(cand),
        base,
        None,
        change or SchemaChange(),
        True,
        "4 batch files checked",
    )
    return evaluate_gates(inputs, GatesConfig())


def make_ctx(rep=None, **over):
    rep = rep or gate_report()
    ctx = {
        "model": "seattle-weather",
        "version": "1.2.0",
        "bump": rep.bump,
        "base_version": "1.1.0",
        "outcome": "proposed" if rep.passed else "gated",
        "fired": [
            {"name": "data_drift", "value": 0.4, "threshold": 0.3},
            {"name": "new_data", "value": 182, "threshold": 100},
        ],
        "triggers": {
            "retrain": True,
            "fired": ["data_drift", "new_data"],
            "checks": {
                "calendar": {"value": 12.5, "threshold": 90, "fired": False, "unit": "days"},
                "data_drift": {"value": 0.4, "threshold": 0.3, "fired": True},
                "new_data": {"value": 182, "threshold": 100, "fired": True, "unit": "rows"},
            },
        },
        "gates": rep.to_dict(),
        "drift_top": [
            (
                "wind",
                {
                    "kind": "numeric",
                    "test": "ks",
                    "statistic": 0.31,
                    "p_value": 0.0002,
                    "psi": 0.27,
                    "drifted": True,
                },
            ),
            (
                "season",
                {
                    "kind": "categorical",
                    "test": "chi2",
                    "statistic": 1.2,
                    "p_value": 0.55,
                    "psi": 0.01,
                    "drifted": False,
                },
            ),
        ],
        "links": {
            "mlflow_run": "http://mlflow.example/#/experiments/runs/abc",
            "mlflow_run_id": "abc",
            "model_card": "reports/v1.2.0/model_card.json",
        },
        "plots": ["reports/v1.2.0/confusion_matrix.png", "reports/v1.2.0/calibration.png"],
        "schema_change": {
            "added": [],
            "removed": [],
            "retyped": [],
            "classes_added": [],
            "classes_removed": [],
        },
        "branch": "retrain/v1.2.0",
        "pr_url": "https://github.com/acme/weather/pull/7",
    }
    ctx.update(over)
    return ctx


def mermaid_blocks(text: str) -> list[str]:
    return re.findall(r"```mermaid\n(.*?)\n```", text, flags=re.S)


def assert_valid_xychart(block: str) -> None:
    """The subset of Mermaid xychart-beta grammar we emit, checked line by line."""
    lines = block.split("\n")
    assert lines[0] == "xychart-beta"
    assert re.fullmatch(r'    title "[^"\n]+"', lines[1])
    x_axis = re.fullmatch(r'    x-axis \[("[^"\[\],]+"(, "[^"\[\],]+")*)\]', lines[2])
    assert x_axis, lines[2]
    labels = re.findall(r'"([^"]+)"', x_axis.group(1))
    assert re.fullmatch(r'    y-axis "[^"]+" -?\d+(\.\d+)? --> -?\d+(\.\d+)?', lines[3]), lines[3]
    bar = re.fullmatch(r"    bar \[(.*)\]", lines[4])
    assert bar, lines[4]
    values = [float(v) for v in bar.group(1).split(", ")]
    assert len(values) == len(labels)
    assert len(lines) == 5


# --------------------------------------------------------------------------- title
def test_pr_title_names_model_version_bump_and_triggers():
    assert markdown.pr_title(make_ctx()) == (
        "Promote seattle-weather v1.2.0 (minor: data_drift, new_data)"
    )
    assert markdown.pr_title(make_ctx(fired=[], bump="patch")) == (
        "Promote seattle-weather v1.2.0 (patch)"
    )


# --------------------------------------------------------------------------- body
def test_pr_body_opens_with_a_one_paragraph_verdict():
    body = markdown.render_pr_body(make_ctx())
    paragraphs = body.split("\n\n")
    assert paragraphs[0] == "## Promote seattle-weather v1.2.0 (minor: data_drift, new_data)"
    verdict = paragraphs[1]
    assert "\n" not in verdict
    assert verdict.startswith(
        "**✅ All 6 applicable gates passed (2 skipped).** Proposes seattle-weather"
    )
    assert "replacing production v1.1.0" in verdict
    assert "data_drift (0.4 vs threshold 0.3), new_data (182 vs threshold 100)" in verdict
    assert (
        "accuracy is 0.8500 vs 0.8000 in production (+0.0500, better; 95% paired-bootstrap"
        in verdict
    )
    assert "1 subgroup level(s) too small to judge" in verdict


def test_a_failed_gate_is_named_in_the_verdict_with_its_shortfall():
    ctx = make_ctx(gate_report(candidate_wrong=390))
    verdict = markdown.render_pr_body(ctx).split("\n\n")[1]
    assert verdict.startswith("**❌ 1 of 8 gates failed: `improvement`.**")
    assert "gain is below min_delta 0.0100 by 0.0050" in verdict


def test_pr_body_has_the_gates_table_in_gate_order():
    body = markdown.render_pr_body(make_ctx(gate_report(winter_wrong=60)))
    rows = [line for line in body.splitlines() if re.match(r"\| (✅|❌|⏭) \| `", line)]
    assert [re.search(r"`(\w+)`", r).group(1) for r in rows] == [
        "data_valid",
        "schema_bump",
        "improvement",
        "subgroups",
        "latency",
        "cost",
        "guardrails",
        "churn",
    ]
    assert "|  | gate | value | threshold | detail |" in body
    improvement = next(r for r in rows if "`improvement`" in r)
    assert improvement.startswith("| ✅ | `improvement` | +0.0200 (95% lower bound +0.0")
    assert "| ≥ +0.0100, lower bound > 0 |" in improvement
    subgroups = next(r for r in rows if "`subgroups`" in r)
    assert subgroups.startswith("| ❌ | `subgroups` | worst -0.1538 | ≥ -0.0500 |")
    latency = next(r for r in rows if "`latency`" in r)
    assert "| 2.5 ms/row · 30 ms/batch | ≤ 50 ms/row · ≤ 500 ms/batch |" in latency


def test_pr_body_has_the_metric_diff_against_production():
    body = markdown.render_pr_body(make_ctx())
    assert "| metric | production v1.1.0 | candidate v1.2.0 | change |" in body
    assert "| **accuracy** (primary) ↑ | 0.8000 | 0.8500 | +0.0500 (better) |" in body
    assert re.search(r"\| log_loss ↓ \| 0\.\d{4} \| 0\.\d{4} \| -0\.\d{4} \(better\) \|", body)


def test_pr_body_has_subgroups_with_too_small_levels_called_out():
    body = markdown.render_pr_body(make_ctx())
    assert "| subgroup | rows | production | candidate | change (accuracy) | verdict |" in body
    assert "| season = spring | 10 |" in body
    assert "⚠️ too small to judge (10 < 30 rows) |" in body
    assert re.search(r"\| season = summer \| 1600 \| .* \| ✅ within limit \|", body)


def test_pr_body_lists_drift_links_plots_and_details():
    body = markdown.render_pr_body(make_ctx())
    assert "| `wind` | numeric | ks | 0.31 | 0.0002 | 0.27 | ⚠️ yes |" in body
    assert "- MLflow run: [abc](http://mlflow.example/#/experiments/runs/abc)" in body
    assert "- Model card: [reports/v1.2.0/model_card.json](reports/v1.2.0/model_card.json)" in body
    assert "![confusion matrix](reports/v1.2.0/confusion_matrix.png)" in body
    assert "![calibration](reports/v1.2.0/calibration.png)" in body
    details = body[body.index("<details>") :]
    assert details.rstrip().endswith("</details>")
    assert "| `new_data` | 182 rows | 100 | 🔥 yes |" in details
    gate_json = re.findall(r"```json\n(.*?)\n```", details, flags=re.S)
    assert json.loads(gate_json[0]) == make_ctx()["triggers"]
    assert json.loads(gate_json[1]) == make_ctx()["gates"]


def test_pr_body_charts_are_valid_mermaid_xycharts():
    body = markdown.render_pr_body(make_ctx())
    blocks = mermaid_blocks(body)
    assert len(blocks) == 2
    for block in blocks:
        assert_valid_xychart(block)
    metrics_chart, subgroup_chart = blocks
    assert '"accuracy prod", "accuracy new"' in metrics_chart
    assert "bar [0.8, 0.85, " in metrics_chart
    assert "log_loss" not in metrics_chart  # unbounded losses would squash the 0..1 scale
    assert '"season=spring prod", "season=spring new"' in subgroup_chart


def test_a_major_bump_shows_what_changed_in_the_schema():
    change = SchemaChange(added=["humidity"], classes_removed=["fog"])
    rep = gate_report(change=change)
    body = markdown.render_pr_body(make_ctx(rep, schema_change=change.__dict__))
    assert markdown.pr_title(make_ctx(rep)).endswith("(major: data_drift, new_data)")
    assert "### Schema change\n\ncolumns added `humidity`; classes removed `fog`" in body
    assert "columns added [humidity]; classes removed [fog]; MAJOR is forced" in body


def test_bootstrap_pr_body_has_no_production_column_values():
    rep = gate_report(baseline=False)
    body = markdown.render_pr_body(make_ctx(rep, base_version=None, bump="initial"))
    assert "(INITIAL, first version)" in body
    assert "| **accuracy** (primary) ↑ | – | 0.8500 | – |" in body
    assert "| ⏭ | `improvement` |" in body
    for block in mermaid_blocks(body):
        assert_valid_xychart(block)
        assert "prod" not in block


def test_rendering_is_deterministic_and_survives_missing_keys():
    ctx = make_ctx()
    assert markdown.render_pr_body(ctx) == markdown.render_pr_body(make_ctx())
    for minimal in ({}, {"model": "m", "version": "1.0.0"}, {"gates": None, "links": None}):
        assert markdown.render_pr_body(minimal).startswith("## Promote")
        assert markdown.render_run_summary(minimal).startswith("### ")
        assert markdown.pr_title(minimal).startswith("Promote ")


def test_relative_links_get_the_base_url_when_given():
    body = markdown.render_pr_body(
        make_ctx(base_url="https://github.com/acme/w/raw/retrain/v1.2.0")
    )
    assert (
        "![confusion matrix](https://github.com/acme/w/raw/retrain/v1.2.0/reports/v1.2.0/"
        "confusion_matrix.png)"
    ) in body


def test_a_manual_reason_cannot_inject_markup():
    ctx = make_ctx(fired=[{"name": "manual", "value": "fix <img src=x> | now", "threshold": None}])
    body = markdown.render_pr_body(ctx)
    assert "<img" not in body
    assert "manual (fix &lt;img src=x> \\| now)" in body


# --------------------------------------------------------------------------- run summary
def test_run_summary_when_nothing_fired():
    ctx = {
        "model": "seattle-weather",
        "outcome": "skipped",
        "fired": [],
        "triggers": {
            "retrain": False,
            "fired": [],
            "checks": {"calendar": {"value": 3.0, "threshold": 90, "fired": False, "unit": "days"}},
        },
    }
    text = markdown.render_run_summary(ctx)
    assert text.startswith(
        "### ⏭ seattle-weather: no retraining\n\n"
        "Skipped: no retraining trigger fired; nothing was trained.\n"
    )
    assert "| `calendar` | 3 days | 90 | no |" in text


def test_run_summary_when_the_cooldown_holds_a_retrain_back():
    ctx = {
        "model": "m",
        "outcome": "skipped",
        "fired": [{"name": "new_data", "value": 500, "threshold": 100}],
        "triggers": {"note": "cooldown: last retrain 0.20 days ago, minimum 1"},
    }
    assert (
        "Skipped: cooldown: last retrain 0.20 days ago, minimum 1."
        in markdown.render_run_summary(ctx)
    )


def test_run_summary_when_gated_says_which_gate_failed_and_by_how_much():
    text = markdown.render_run_summary(make_ctx(gate_report(candidate_wrong=390)))
    assert text.startswith("### ❌ seattle-weather: candidate v1.2.0 gated, no pull request")
    assert "- Holdout: accuracy 0.8000 → 0.8050 (+0.0050)" in text
    failed = [line for line in text.splitlines() if line.startswith("- ❌")]
    assert len(failed) == 1
    assert failed[0].startswith("- ❌ `improvement`: +0.0050 (95% lower bound +0.00")
    assert "(threshold ≥ +0.0100, lower bound > 0)" in failed[0]
    assert "gain is below min_delta 0.0100 by 0.0050" in failed[0]


def test_run_summary_when_proposed_gives_version_branch_and_pr():
    text = markdown.render_run_summary(make_ctx())
    assert text.startswith("### ✅ seattle-weather: v1.2.0 proposed (minor replacing v1.1.0)")
    assert "- Branch: `retrain/v1.2.0`" in text
    assert "- Pull request: https://github.com/acme/weather/pull/7" in text
    no_pr = markdown.render_run_summary(make_ctx(pr_url=None))
    assert "- Pull request: not opened (the branch and the PR body are ready)" in no_pr


# --------------------------------------------------------------------------- plots
def _png_chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, i = [], 8
    while i < len(data):
        length = int.from_bytes(data[i : i + 4], "big")
        chunks.append(data[i + 4 : i + 8])
        i += 12 + length
    return chunks


def test_classification_plots_are_small_deterministic_pngs(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.choice(CLASSES + ["hail"], 500)  # a label the model does not know
    cand, base = _wrong_on(np.where(y == "hail", "fog", y), range(50)), y.copy()
    base[:100] = "sun"
    proba = rng.dirichlet(np.ones(3), 500)
    first = plots.write_plots(tmp_path / "a", "classification", y, cand, base, proba, CLASSES)
    again = plots.write_plots(tmp_path / "b", "classification", y, cand, base, proba, CLASSES)
    assert [p.name for p in first] == ["confusion_matrix.png", "calibration.png"]
    for a, b in zip(first, again, strict=True):
        data = a.read_bytes()
        assert data == b.read_bytes()
        assert b"tEXt" not in _png_chunks(data)  # no "Software: matplotlib x.y" stamp
        assert len(data) < 200_000
    no_proba = plots.write_plots(tmp_path / "c", "classification", y, cand, None, None, CLASSES)
    assert [p.name for p in no_proba] == ["confusion_matrix.png"]


def test_regression_plots(tmp_path):
    y = np.linspace(0, 10, 300)
    out = plots.write_plots(tmp_path, "regression", y, y + np.sin(y), y + 0.5)
    assert [p.name for p in out] == ["residuals.png", "predicted_vs_actual.png"]
    assert all(p.stat().st_size > 1000 for p in out)
    with pytest.raises(ValueError, match="task must be"):
        plots.write_plots(tmp_path, "ranking", y, y)
