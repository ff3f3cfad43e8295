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


def test_the_monitor_workflow_prunes_the_log_with_read_only_access_and_no_github_token():
    """`retrain log prune` runs with each monitor run, in a job that can read the repository
    (which rows monitor still judges) and nothing more: no write permission, no GitHub
    token, only the log's URL."""
    prune = load_workflow(WORKFLOWS / "monitor.yml")["jobs"]["prune"]
    assert prune["permissions"] == {"contents": "read"}
    steps = prune["steps"]
    run = "\n".join(s.get("run", "") for s in steps)
    assert "retrain log prune" in run and "GITHUB_STEP_SUMMARY" in run
    env = {k: v for s in steps for k, v in (s.get("env") or {}).items()}
    assert set(env) == {"RETRAIN_LOG_URL"} and "RETRAIN_LOG_PRUNE_URL" in env["RETRAIN_LOG_URL"]
    assert "TOKEN" not in json_text(steps)


def json_text(value: object) -> str:
    import json

    return json.dumps(value)
