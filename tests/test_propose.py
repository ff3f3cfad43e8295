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
