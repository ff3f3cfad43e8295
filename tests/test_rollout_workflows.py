"""monitor.yml and drill.yml (issue 9, item 5); the shared checks in test_workflows.py
(pinning, permissions, no interpolation, secrets) cover them too."""

from __future__ import annotations

from tests.test_workflows import WORKFLOWS, load_workflow, triggers_of


def test_monitor_shares_the_registry_concurrency_group_with_retrain():
    monitor, retrain = (load_workflow(WORKFLOWS / f"{n}.yml") for n in ("monitor", "retrain"))
    assert monitor["concurrency"] == retrain["concurrency"]
    assert monitor["concurrency"]["cancel-in-progress"] is False
    on = triggers_of(monitor)
    assert set(on) == {"schedule", "workflow_dispatch"}
    assert on["workflow_dispatch"]["inputs"]["mode"]["options"] == ["pr", "push"]
    run = "\n".join(s.get("run", "") for s in monitor["jobs"]["monitor"]["steps"])
    assert "retrain monitor" in run


def test_drill_runs_monthly_or_by_hand_with_read_only_access():
    drill = load_workflow(WORKFLOWS / "drill.yml")
    on = triggers_of(drill)
    assert set(on) == {"schedule", "workflow_dispatch"}
    day_of_month = on["schedule"][0]["cron"].split()[2]
    assert day_of_month.isdigit()
    assert drill["jobs"]["drill"]["permissions"] == {"contents": "read"}
    run = "\n".join(s.get("run", "") for s in drill["jobs"]["drill"]["steps"])
    assert "retrain drill" in run and "GITHUB_STEP_SUMMARY" in run
