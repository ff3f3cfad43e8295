"""A judgement is made once (issue 23, item 2), on real git, DVC and MLflow.

After a gated run, a scheduled run with unchanged data, configs, code and production says
"already judged" and trains nothing; a change of any of them, or a manual run, judges again.
The record lives in git notes pushed to origin, so a fresh clone finds it.  A streak of held
candidates opens one GitHub issue and then keeps it current.

GitHub is the one part stood in: ``gh`` is a recording executable first on PATH
(``tests/conftest.py``), answering ``issue create`` with an issue URL; the test reads what it
was asked.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from retrain import example
from retrain.core import registry as reg
from retrain.core.config import load_config
from retrain.release import judged, stuck
from tests.conftest import Cli, bootstrap, gh_calls


def _trained(sb: example.Sandbox) -> int:
    """How many training runs MLflow has seen in the sandbox."""
    import mlflow

    mlflow.set_tracking_uri(sb.env["MLFLOW_TRACKING_URI"])
    client = mlflow.MlflowClient()
    ids = [e.experiment_id for e in client.search_experiments()]
    return len(client.search_runs(ids, max_results=1000))


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert re.search(old, text, flags=re.M), (path, old)
    path.write_text(re.sub(old, new, text, count=1, flags=re.M))


def _judged_now(sb: example.Sandbox) -> judged.Record | None:
    """What a scheduled run would find for the checkout as it is (library API, no training)."""
    inputs = judged.inputs_of(sb.root, reg.load(sb.root))
    return judged.already_judged(judged.records(sb.root), inputs)


def _changed_and_back(sb: example.Sandbox, path: str, text: str, message: str) -> None:
    """Commit a change of ``path``: no longer judged; drop the commit: judged again (the
    record follows the content, not the commit)."""
    target = sb.root / path
    before = target.read_text()
    target.write_text(before + text)
    sb.git("commit", "-qam", message)
    assert _judged_now(sb) is None, f"{path} changed: judge again"
    sb.git("reset", "-q", "--hard", "HEAD~1")
    assert _judged_now(sb) is not None


def test_a_gated_judgement_is_not_repeated_until_an_input_changes(sandbox, cli: Cli, fake_gh):
    """Bootstrap; gates too strict for any candidate, a stuck streak of 2.  Scheduled run →
    gated; again → "already judged", nothing trained; configs, code and production changes
    are new inputs; new data → judged again, gated, and one issue opened; --force retrains
    and updates that issue; a fresh clone of origin finds the record."""
    sb = sandbox
    bootstrap(sb, cli)
    _edit(sb.root / "configs" / "gates.yaml", r"min_delta: 0\.01", "min_delta: 0.5")
    _edit(sb.root / "configs" / "triggers.yaml", r"after_gated_runs: 3", "after_gated_runs: 2")
    sb.git("commit", "-qam", "gates: only a much better model may replace production")
    sb.git("push", "-q", "origin", "main")
    example.ingest_next_batch(sb.root, sb.env)

    first = cli.json("run", "--push", "--open-pr")
    assert first["outcome"] == "gated", first
    assert first["gates"]["gates"]["improvement"]["verdict"] == "fail"
    assert first["stuck"] is None  # one held candidate is not a streak of 2
    assert sb.git("ls-remote", "origin", judged.NOTES_REF), "the record was pushed"
    head = sb.git("rev-parse", "HEAD")
    note = sb.git("notes", "--ref", judged.NOTES_REF, "show", "HEAD")
    assert json.loads(note)["outcome"] == "gated"  # git log --notes shows it by the commit
    trained = _trained(sb)

    # The next scheduled run: same data, configs, code and production.
    res = cli("run", "--push", "--open-pr", "--json")
    out = json.loads(res.stdout)
    assert out["outcome"] == "skipped" and out["branch"] is None and out["cost"] is None
    msg = out["judged"]["message"]
    assert msg.startswith("already judged: gated on ") and f"at {head[:8]}" in msg
    assert "nothing changed since" in msg and "production v1.0.0" in msg
    assert [f["gate"] for f in out["judged"]["failed"]] == ["improvement"]
    assert "already judged" in res.stderr and "improvement" in res.stderr
    assert "dvc repro" not in res.stderr and "checking triggers" not in res.stderr
    assert _trained(sb) == trained, "nothing was trained"
    assert gh_calls(fake_gh) == []
    summary = cli("run").stdout
    assert "already judged, nothing retrained" in summary and "`improvement`" in summary

    # Configs, code (a stage's dependency) and production are inputs; a README is not.
    _changed_and_back(sb, "configs/triggers.yaml", "# tuned\n", "triggers: comment")
    _changed_and_back(sb, "src/retrain/pipeline/metrics.py", "# touched\n", "metrics: touch")
    registry = (sb.root / "registry.yaml").read_text()
    (sb.root / "registry.yaml").write_text(
        registry.replace("production: 1.0.0", "production: null")
    )
    sb.git("commit", "-qam", "registry: production withdrawn (as a revert of the bootstrap would)")
    assert _judged_now(sb) is None, "production changed: judge again"
    sb.git("reset", "-q", "--hard", "HEAD~1")
    (sb.root / "README.md").write_text((sb.root / "README.md").read_text() + "\nA note.\n")
    sb.git("commit", "-qam", "docs: a note")
    assert _judged_now(sb) is not None, "a README is not an input of the judgement"
    sb.git("push", "-q", "origin", "main")

    # New data: judged again, held again; the second held candidate in a row opens an issue.
    example.ingest_next_batch(sb.root, sb.env)
    res = cli("run", "--push", "--open-pr", "--json")
    second = json.loads(res.stdout)
    assert second["outcome"] == "gated", second
    assert "judged again: data changed since the gated judgement of" in res.stderr
    assert second["stuck"]["action"] == "opened" and second["stuck"]["runs"] == 2
    (opened,) = gh_calls(fake_gh)
    argv = opened["argv"]
    assert argv[:2] == ["issue", "create"]
    assert "seattle-weather v1.0.0 held back, 2 candidates gated in a row" in argv[3]
    assert opened["body"].count("`improvement`") == 2  # each run's failing gate, in a table
    assert "What you can decide" in opened["body"]
    issue = second["stuck"]["issue"]
    assert issue == "https://github.com/example/retrain/issues/1"
    assert "stuck: 2 candidates gated in a row" in second["stuck"]["message"]

    # A manual run retrains whatever the record says; held again, it updates the same issue.
    trained = _trained(sb)
    third = cli.json("run", "--force", "--push", "--open-pr")
    assert third["outcome"] == "gated" and _trained(sb) > trained
    assert third["stuck"]["action"] == "updated" and third["stuck"]["issue"] == issue
    calls = gh_calls(fake_gh)
    assert [c["argv"][:2] for c in calls] == [
        ["issue", "create"],
        ["issue", "edit"],
        ["issue", "comment"],
    ]
    assert calls[1]["argv"][2] == issue and calls[2]["argv"][2] == issue
    assert calls[1]["body"].count("`improvement`") == 3 and "(manual)" in calls[1]["body"]
    assert "3 gated judgements in a row" in calls[2]["body"]

    # CI starts from a fresh clone: the record comes from origin.
    fresh = sb.base / "fresh"
    sb.git("clone", "-q", str(sb.origin), str(fresh))
    out = cli.json("run", cwd=fresh)
    assert out["outcome"] == "skipped", out
    assert out["judged"]["message"].startswith("already judged: gated on ")
    assert out["judged"]["issue"] == issue


def _rec(i: int, outcome: str = "gated", production: str | None = "1.0.0", **kw) -> judged.Record:
    return judged.Record(
        at=f"2026-01-{i:02d}T05:17:00Z",
        outcome=outcome,
        key=f"k{i}",
        commit=f"{i:040x}",
        production=production,
        version="1.1.0",
        fired=kw.pop("fired", ["new_data", "data_drift"]),
        failed=[{"gate": "improvement", "detail": "gain is below min_delta 0.0100 by 0.0050"}],
        **kw,
    )


def test_a_streak_counts_held_candidates_of_one_production_while_it_is_stale():
    recs = [_rec(1, "proposed"), _rec(2), _rec(3, production="0.9.0"), _rec(4), _rec(5)]
    assert [r.at[8:10] for r in stuck.streak(recs, "1.0.0")] == ["04", "05"]
    assert stuck.streak([*recs, _rec(6, "proposed")], "1.0.0") == []
    # a manual run with nothing else firing says nothing about production being stale
    assert stuck.streak([*recs, _rec(6, fired=["manual"])], "1.0.0") == []
    assert len(stuck.streak([*recs, _rec(6, fired=["manual", "calendar"])], "1.0.0")) == 3


def test_offline_the_stuck_issue_is_written_to_a_file_and_said(sandbox, tmp_path, capsys):
    """No --open-pr (no GitHub): the issue body is written next to the run's report."""
    cfg = load_config(sandbox.root)
    current = _rec(3)
    found = stuck.check(cfg, [_rec(1), _rec(2)], current, open_issue=False, out_dir=tmp_path)
    assert found is not None and found.action == "written" and current.issue is None
    body = (tmp_path / "stuck-issue.md").read_text()
    assert body.count("`improvement`") == 3 and "v1.0.0" in body
    assert "issue body written to" in capsys.readouterr().err
    assert stuck.check(cfg, [], _rec(3), open_issue=False, out_dir=tmp_path) is None


def test_a_note_line_that_is_not_a_judgement_is_ignored(sandbox):
    sb = sandbox
    sb.git("notes", "--ref", judged.NOTES_REF, "add", "-m", "hand-written: not json", "HEAD")
    assert judged.records(sb.root) == []
    judged.write(sb.root, _rec(1))
    (rec,) = judged.records(sb.root)
    assert rec.outcome == "gated" and rec.failing().startswith("improvement (gain is below")


@pytest.mark.parametrize("kind", ["data", "configs", "code", "production"])
def test_changed_names_the_kind_of_input_that_moved(kind):
    parts = {"data.dvc": "a", "configs": "b", "src/x.py": "c", "production": "1.0.0 s"}
    kinds = {
        "data.dvc": "data",
        "configs": "configs",
        "src/x.py": "code",
        "production": "production",
    }
    old = _rec(1, parts=dict(parts), kinds=kinds)
    name = next(n for n, k in kinds.items() if k == kind)
    new = judged.Inputs({**parts, name: "moved"}, kinds)
    assert judged.changed(old, new) == [kind]


def test_two_runners_records_are_merged_and_pushed_without_losing_either(sandbox, tmp_path):
    """Runner A pushes a judgement; runner B (a clone that recorded its own meanwhile)
    fetches A's, merges them line by line and pushes both."""
    sb = sandbox
    other = tmp_path / "other"
    sb.git("clone", "-q", str(sb.origin), str(other))
    judged.write(sb.root, _rec(1))
    seen_a = judged.sync(sb.root)
    assert seen_a is None and judged.push(sb.root, seen_a)
    judged.write(other, _rec(2))
    seen_b = judged.sync(other)
    assert seen_b is not None
    assert [r.key for r in judged.records(other)] == ["k1", "k2"]
    assert judged.push(other, seen_b)
    judged.sync(sb.root)
    assert [r.key for r in judged.records(sb.root)] == ["k1", "k2"]


def test_an_unreachable_origin_is_said_and_the_local_record_used(sandbox, capsys):
    sb = sandbox
    judged.write(sb.root, _rec(1))
    sb.git("remote", "set-url", "origin", str(sb.base / "gone.git"))
    assert judged.sync(sb.root) is None
    assert "could not fetch refs/notes/retrain/judgements from origin" in capsys.readouterr().err
    assert [r.key for r in judged.records(sb.root)] == ["k1"]
    assert judged.push(sb.root, None) is False
    assert "the next scheduled run will judge again" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-1", "three"])
def test_a_bad_stuck_threshold_is_refused_naming_file_and_key(tmp_path, value):
    from retrain.core.config import TriggersConfig, load_model
    from retrain.core.errors import ConfigError

    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "triggers.yaml").write_text(f"stuck:\n  after_gated_runs: {value}\n")
    with pytest.raises(ConfigError, match=r"configs/triggers.yaml: stuck.after_gated_runs"):
        load_model(TriggersConfig, tmp_path, "triggers")
    (tmp_path / "configs" / "triggers.yaml").write_text("stuck:\n  after_gated_runs: null\n")
    assert load_model(TriggersConfig, tmp_path, "triggers").stuck.after_gated_runs is None
