"""``retrain propose`` is ``retrain run`` without the triggers and the ``dvc repro`` (issue 22,
item 5: the CLI used to repeat run's orchestration, with its own wording and no report).
Real git, DVC (``dvc repro`` by hand, as a user would) and MLflow in a sandbox fork."""

from __future__ import annotations

from pathlib import Path

from retrain import example
from tests.conftest import PROJECT, Cli


def test_propose_after_a_hand_reproduced_pipeline_proposes_as_run_would(tmp_path: Path):
    sb = example.make_sandbox(tmp_path / "sb", PROJECT)
    cli = Cli(sb)
    sb.run(str(Path(example._tool("dvc"))), "repro", "-q")
    out = cli.json("propose", "--reason", "first model, by hand")
    assert out["outcome"] == "proposed" and out["version"] == "1.0.0"
    assert out["branch"] == "retrain/v1.0.0" and out["fired"] == ["manual"]
    assert out["gates"]["passed"] is True
    # The same report a scheduled run writes, and the branch carries the registry bump.
    assert (sb.root / "reports" / "latest" / "summary.md").is_file()
    registry = sb.git("show", "retrain/v1.0.0:registry.yaml")
    assert "production: 1.0.0" in registry and "first model, by hand" in registry
    assert sb.git("status", "--porcelain", "--untracked-files=no") == ""  # checkout as found


def test_a_manual_major_bump_is_reachable_from_the_command_line(tmp_path: Path):
    """`--bump major` (issue 22, item 5): the gates judged a requested MAJOR all along, but no
    command could ask for one.  On the same data the candidate cannot improve, so the run is
    gated, and says it was judged as a MAJOR."""
    from tests.conftest import bootstrap

    sb = example.make_sandbox(tmp_path / "sb", PROJECT)
    cli = Cli(sb)
    bootstrap(sb, cli)
    out = cli.json("run", "--bump", "major", "--reason", "the output's meaning changed")
    assert out["bump"] == "major" and "manual" in out["fired"]
    gate = out["gates"]["gates"]["schema_bump"]
    assert (gate["value"], gate["detail"]) == ("major", "schema unchanged; MAJOR requested by hand")
    # Judged as a retrain that must improve: on unchanged data it is gated, else it is 2.0.0.
    assert out["outcome"] == "gated" or out["version"] == "2.0.0"
