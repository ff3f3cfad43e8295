"""The GitHub Actions workflows: their security properties, and their behaviour when run.

GitHub is the one component the tests cannot reach, so it is stood in at the process
boundary by ``tests/workflow_runner.py``: the GitHub repository is a local bare ``origin``,
``actions/checkout`` is a fetch from it, and ``gh`` is an executable first on PATH that
records what it was asked (argv, token, PR body) and answers with a fake PR URL. The
workflows' own ``run:`` steps, ``retrain``, git, DVC and MLflow are all real.

Three groups: the runner itself (so the stories below can trust it); what every workflow
must say (pins, permissions, no interpolation into shell); and the stories, which run the
real workflow files on a sandbox fork of this project.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.workflow_runner import (
    FAKE_TOKEN,
    ExpressionError,
    WorkflowRunner,
    evaluate,
    evaluate_if,
    interpolate,
    load_workflow,
    run_steps,
    triggers_of,
    workflow_files,
)

PROJECT = Path(__file__).resolve().parents[1]
WORKFLOWS = PROJECT / ".github" / "workflows"
BOT_TOKEN = "github_pat_fake_bot_token_for_tests"


# =========================================================================== the runner


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """A bare repository with two commits on main, a tag and a feature branch."""
    seed = tmp_path / "seed"
    seed.mkdir()
    _git(seed, "init", "-q", "-b", "main")
    (seed / "registry.yaml").write_text("production: null\n")
    (seed / "README.md").write_text("hello\n")
    _git(seed, "add", "-A")
    _git(seed, "commit", "-q", "-m", "first")
    _git(seed, "tag", "-a", "model@v1.0.0", "-m", "v1")
    (seed / "README.md").write_text("hello again\n")
    _git(seed, "commit", "-q", "-am", "second")
    _git(seed, "checkout", "-q", "-b", "feature")
    (seed / "registry.yaml").write_text("production: 1.0.0\n")
    _git(seed, "commit", "-q", "-am", "bump")
    _git(seed, "checkout", "-q", "main")
    bare = tmp_path / "origin.git"
    _git(tmp_path, "clone", "-q", "--bare", str(seed), str(bare))
    return bare


def _workflow(tmp_path: Path, text: str, name: str = "wf.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("secrets.BOT || github.token", FAKE_TOKEN),
        ("secrets.MISSING || 'fallback'", "fallback"),
        ("secrets.BOT && 'bot' || 'github'", "github"),
        ("inputs.force", True),
        ("inputs.missing", None),
        ("steps.run.outputs.outcome == 'proposed'", True),
        ("steps.run.outputs.outcome == 'PROPOSED'", True),  # GitHub ignores case
        ("steps.run.outputs.outcome != 'proposed' || env.MODE == 'push'", True),
        ("!inputs.force", False),
        ("github.event.repository.default_branch", "main"),
        ("env.MODE", "push"),
        ("format('{0}-{1}', 'a', 1)", "a-1"),
        ("contains(github.ref, 'heads')", True),
        ("startsWith(github.ref, 'refs/')", True),
        ("fromJSON('[1, 2]')[1]", 2),
        ("1 == '1'", True),
        ("null == 0", True),
        ("(false || '') && 'x'", ""),
        ("steps['run'].outputs['outcome']", "proposed"),
    ],
)
def test_expressions_evaluate_as_github_does(expr, expected):
    contexts = {
        "secrets": {"GITHUB_TOKEN": FAKE_TOKEN},
        "github": {
            "token": FAKE_TOKEN,
            "ref": "refs/heads/main",
            "event": {"repository": {"default_branch": "main"}},
        },
        "inputs": {"force": True},
        "steps": {"run": {"outputs": {"outcome": "proposed"}}},
        "env": {"MODE": "push"},
    }
    assert evaluate(expr, contexts) == expected


def test_interpolation_keeps_a_lone_expression_typed_and_stringifies_mixed_text():
    ctx = {"inputs": {"force": False, "n": 3}}
    assert interpolate("${{ inputs.force }}", ctx) is False
    assert interpolate("force=${{ inputs.force }} n=${{ inputs.n }}", ctx) == "force=false n=3"
    assert interpolate({"a": ["${{ inputs.n }}"]}, ctx) == {"a": [3]}
    with pytest.raises(ExpressionError):
        evaluate("unknown.context", ctx)
    with pytest.raises(ExpressionError):
        evaluate("hashFiles('x')", ctx)


def test_if_conditions_get_the_implicit_success_guard():
    ok = {"__status__": "success", "inputs": {"mode": "push"}}
    failed = {**ok, "__status__": "failure"}
    assert evaluate_if(None, ok) and not evaluate_if(None, failed)
    assert evaluate_if("inputs.mode == 'push'", ok)
    assert not evaluate_if("inputs.mode == 'push'", failed)
    assert evaluate_if("${{ always() }}", failed)
    assert evaluate_if("failure() && inputs.mode == 'push'", failed)


def test_steps_run_in_order_and_pass_outputs_env_path_and_summary(tmp_path, origin):
    wf = _workflow(
        tmp_path,
        """
name: demo
on: workflow_dispatch
env:
  WHO: workflow
jobs:
  one:
    runs-on: ubuntu-latest
    permissions: {}
    steps:
      - id: first
        run: |
          echo "answer=42" >> "$GITHUB_OUTPUT"
          { echo "text<<EOF"; echo "line 1"; echo "line 2"; echo "EOF"; } >> "$GITHUB_OUTPUT"
          echo "FROM_ENV_FILE=yes" >> "$GITHUB_ENV"
          mkdir -p "$RUNNER_TEMP/bin"
          printf '#!/bin/sh\\necho tool-ran\\n' > "$RUNNER_TEMP/bin/mytool"
          chmod +x "$RUNNER_TEMP/bin/mytool"
          echo "$RUNNER_TEMP/bin" >> "$GITHUB_PATH"
          echo "## first" >> "$GITHUB_STEP_SUMMARY"
      - id: second
        env:
          ANSWER: ${{ steps.first.outputs.answer }}
          TEXT: ${{ steps.first.outputs.text }}
          JOINED: ${{ env.WHO }}-${{ steps.first.outputs.answer }}
        run: |
          test "$ANSWER" = 42
          test "$TEXT" = "$(printf 'line 1\\nline 2')"
          test "$FROM_ENV_FILE" = yes
          test "$JOINED" = workflow-42
          test "$CI" = true && test "$GITHUB_EVENT_NAME" = workflow_dispatch
          test "$GITHUB_REF_NAME" = main && test -z "$GITHUB_BASE_REF"
          test -d "$RUNNER_TEMP" && test "$PWD" = "$GITHUB_WORKSPACE"
          mytool
          echo "## second" >> "$GITHUB_STEP_SUMMARY"
""",
    )
    run = WorkflowRunner(origin, tmp_path / "runs").run(wf, "workflow_dispatch")
    job = run.job
    assert run.conclusion == "success", run.describe()
    assert [s.id for s in job.steps] == ["first", "second"]
    assert job.step("first").outputs == {"answer": "42", "text": "line 1\nline 2"}
    assert "tool-ran" in job.step("second").stdout
    assert job.summary == "## first\n## second\n"


def test_a_failed_step_skips_the_rest_unless_it_asks_for_always(tmp_path, origin):
    wf = _workflow(
        tmp_path,
        """
on: workflow_dispatch
jobs:
  one:
    runs-on: ubuntu-latest
    steps:
      - run: "false"
      - name: skipped
        run: echo never
      - name: cleanup
        if: always()
        run: echo cleaned
      - name: on failure
        if: failure()
        run: echo "::warning::it failed"
""",
    )
    run = WorkflowRunner(origin, tmp_path / "runs").run(wf, "workflow_dispatch")
    job = run.job
    assert run.conclusion == "failure"
    assert [s.outcome for s in job.steps] == ["failure", "skipped", "success", "success"]
    assert ("warning", "it failed") in job.annotations


def test_dispatch_inputs_get_their_declared_types_and_defaults(tmp_path, origin):
    wf = _workflow(
        tmp_path,
        """
on:
  workflow_dispatch:
    inputs:
      reason: {type: string, default: ""}
      force: {type: boolean, default: false}
      bump: {type: choice, options: [minor, patch], default: minor}
jobs:
  one:
    runs-on: ubuntu-latest
    steps:
      - env:
          FORCE: ${{ inputs.force }}
          BUMP: ${{ inputs.bump }}
          REASON: ${{ inputs.reason }}
        run: echo "$FORCE/$BUMP/$REASON"
""",
    )
    runner = WorkflowRunner(origin, tmp_path / "runs")
    out = runner.run(wf, "workflow_dispatch").job.steps[0].stdout
    assert out.strip() == "false/minor/"
    given = {"force": True, "bump": "patch", "reason": "a; rm -rf / $(x)"}
    out = runner.run(wf, "workflow_dispatch", inputs=given).job.steps[0].stdout
    assert out.strip() == "true/patch/a; rm -rf / $(x)"
    with pytest.raises(ValueError, match="not one of"):
        runner.run(wf, "workflow_dispatch", inputs={"bump": "major"})
    with pytest.raises(ValueError, match="unexpected inputs"):
        runner.run(wf, "workflow_dispatch", inputs={"nope": 1})
    assert not runner.run(wf, "schedule").triggered


def test_checkout_fetches_history_and_tags_only_when_asked(tmp_path, origin):
    wf = _workflow(
        tmp_path,
        """
on: push
jobs:
  full:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@0000000000000000000000000000000000000000 # v0.0.0
        with: {fetch-depth: 0, persist-credentials: false}
      - run: |
          git rev-parse HEAD^ && git tag -l | grep -qx 'model@v1.0.0'
          test "$(git rev-parse --abbrev-ref HEAD)" = main
          git rev-parse --verify origin/feature
  shallow:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@0000000000000000000000000000000000000000 # v0.0.0
      - run: test "$(git rev-list --count HEAD)" = 1 && test -z "$(git tag -l)"
""",
    )
    run = WorkflowRunner(origin, tmp_path / "runs").run(wf, "push")
    assert run.conclusion == "success", run.describe()
    assert run.jobs["full"].workspace is not None
    assert (run.jobs["full"].workspace / "README.md").read_text() == "hello again\n"


def test_a_pull_request_checks_out_the_merge_commit_github_would_make(tmp_path, origin):
    wf = _workflow(
        tmp_path,
        """
on:
  pull_request:
    branches: [main]
jobs:
  gate:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@0000000000000000000000000000000000000000 # v0.0.0
        with: {fetch-depth: 0}
      - run: |
          test "$GITHUB_BASE_REF" = main && test "$GITHUB_HEAD_REF" = feature
          git diff --name-only "origin/$GITHUB_BASE_REF" HEAD | grep -qx registry.yaml
          test "$(git rev-list --parents -n1 HEAD | wc -w)" = 3
""",
    )
    run = WorkflowRunner(origin, tmp_path / "runs").run(wf, "pull_request", pr_head="feature")
    assert run.conclusion == "success", run.describe()
    assert run.job.workspace is not None
    assert _git(run.job.workspace, "rev-parse", "HEAD") == _git(
        origin, "rev-parse", "refs/pull/1/merge"
    )


def test_push_paths_filter_decides_whether_the_workflow_starts(tmp_path, origin):
    wf = _workflow(
        tmp_path,
        """
on:
  push:
    branches: [main]
    paths: [registry.yaml]
jobs:
  one:
    runs-on: ubuntu-latest
    steps:
      - run: echo ran
""",
    )
    runner = WorkflowRunner(origin, tmp_path / "runs")
    not_started = runner.run(wf, "push")  # main's last commit changed README.md only
    assert not not_started.triggered and "paths filter" in not_started.why_not
    started = runner.run(wf, "push", ref="feature")
    assert not started.triggered and "filtered out" in started.why_not
    first = _git(origin, "rev-list", "--max-parents=0", "main")
    assert not runner.run(wf, "push", before=first).triggered
    assert runner.run(wf, "push", before="0" * 40).triggered  # a new branch: every file counts


def test_gh_is_stood_in_and_records_what_it_was_asked(tmp_path, origin):
    """``gh`` is a recording stand-in at the process boundary: argv, token and body file."""
    wf = _workflow(
        tmp_path,
        """
on: workflow_dispatch
jobs:
  one:
    runs-on: ubuntu-latest
    steps:
      - env:
          GH_TOKEN: ${{ secrets.BOT || github.token }}
        run: |
          printf 'the report\\n' > "$RUNNER_TEMP/body.md"
          gh pr create --base main --head feature --title T --body-file "$RUNNER_TEMP/body.md"
      - id: nobranch
        continue-on-error: true
        env:
          GH_TOKEN: ${{ secrets.BOT }}
        run: gh pr create --base main --head not-pushed --title T --body x
      - id: notoken
        continue-on-error: true
        run: gh pr create --base main --head feature --title T --body x
""",
    )
    run = WorkflowRunner(origin, tmp_path / "runs", secrets={"BOT": BOT_TOKEN}).run(
        wf, "workflow_dispatch"
    )
    first, second, third = run.gh_calls
    assert first["argv"][:2] == ["pr", "create"] and first["body"] == "the report\n"
    assert first["token"] == BOT_TOKEN
    assert run.job.steps[0].stdout.strip() == "https://github.com/example/retrain/pull/1"
    assert run.job.step("nobranch").outcome == "failure"  # GitHub refuses unpushed heads
    assert third["token"] == "" and run.job.step("notoken").outcome == "failure"
    assert second["body"] == "x"


def test_setup_python_and_upload_artifact_map_to_local_equivalents(tmp_path, origin):
    python_bin = tmp_path / "pybin"
    python_bin.mkdir()
    (python_bin / "python").symlink_to(Path(sys.executable))
    wf = _workflow(
        tmp_path,
        """
on: workflow_dispatch
jobs:
  one:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/setup-python@0000000000000000000000000000000000000000 # v0.0.0
        with: {python-version: "3.11"}
      - id: install
        run: "false"
      - run: |
          test "$(command -v python)" = "$PYBIN/python"
          mkdir -p out && echo hi > out/a.txt
        env:
          PYBIN: ${{ vars.PYBIN }}
      - uses: actions/upload-artifact@0000000000000000000000000000000000000000 # v0.0.0
        with: {name: report, path: out/}
      - uses: some/other-action@0000000000000000000000000000000000000000 # v0.0.0
""",
    )
    runner = WorkflowRunner(
        origin, tmp_path / "runs", python_bin=python_bin, vars={"PYBIN": str(python_bin)}
    )
    run = runner.run(wf, "workflow_dispatch")
    assert run.conclusion == "success", run.describe()
    assert "skipped by the local runner" in run.job.step("install").note
    (upload,) = run.job.uploads
    assert upload["name"] == "report" and upload["files"] == ["a.txt"]
    assert (upload["path"] / "a.txt").read_text() == "hi\n"
    assert "recorded" in run.job.steps[-1].note


# =========================================================================== the workflows

ALL = workflow_files(PROJECT)
NAMES = {p.stem for p in ALL}
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$")


def _wf(name: str) -> dict:
    return load_workflow(WORKFLOWS / f"{name}.yml")


def test_every_workflow_is_the_designs_or_documented_and_none_is_missing():
    """The five of DESIGN.md section 8 plus monitor and drill exist, and every workflow file
    is named in the README's table (a new one must be documented to pass)."""
    design = {"retrain", "promotion-gate", "promote", "rollback", "ci", "monitor", "drill"}
    assert design <= NAMES, sorted(design - NAMES)
    row = next(
        ln
        for ln in (PROJECT / "README.md").read_text().splitlines()
        if ln.startswith("| workflows |")
    )
    named = {n.strip().replace(" ", "-") for n in row.rsplit("|", 2)[-2].split(",")}
    assert named == NAMES, f"README's workflows row {sorted(named)} vs files {sorted(NAMES)}"


def test_the_retrain_job_reads_the_servers_log_from_a_secret():
    """Without the servers' log the live_performance trigger cannot run in CI (issue 22)."""
    env = next(s for _, name, s in run_steps(_wf("retrain")) if name.startswith("Retrain ("))["env"]
    assert env["RETRAIN_LOG_URL"] == "${{ secrets.RETRAIN_LOG_URL }}"
    monitor = [s.get("env", {}) for _, _, s in run_steps(_wf("monitor"))]
    assert any(e.get("RETRAIN_LOG_URL") == "${{ secrets.RETRAIN_LOG_URL }}" for e in monitor)


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_full_commit_sha_with_its_version(path):
    lines = [m for m in map(USES_LINE.match, path.read_text().splitlines()) if m]
    assert lines, f"{path.name} uses no action"
    for m in lines:
        ref, rest = m.group(1), m.group(2)
        if ref.startswith("./"):
            continue
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), f"{path.name}: {ref}"
        assert re.search(r"#\s*v\d+\.\d+\.\d+\b", rest), f"{path.name}: {ref} lacks # vX.Y.Z"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_permissions_are_empty_by_default_and_granted_per_job(path):
    wf = load_workflow(path)
    assert wf.get("permissions") == {}, f"{path.name}: top-level permissions must be {{}}"
    for job_id, job in wf["jobs"].items():
        perms = job.get("permissions")
        assert isinstance(perms, dict), f"{path.name}:{job_id} declares no permissions"
        assert set(perms.values()) <= {"read", "write", "none"}
        if path.stem in ("ci", "promotion-gate"):
            assert "write" not in perms.values(), f"{path.name}:{job_id} needs no write"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_no_expression_or_event_data_is_interpolated_into_a_shell_line(path):
    wf = load_workflow(path)
    for job_id, name, step in run_steps(wf):
        assert "${{" not in str(step.get("run", "")), f"{path.name}:{job_id}:{name}"
    assert "pull_request_target" not in triggers_of(wf)
    assert "workflow_run" not in triggers_of(wf)


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_checkout_never_leaves_the_token_in_git_config(path):
    for job_id, name, step in run_steps(load_workflow(path)):
        if str(step.get("uses", "")).startswith("actions/checkout@"):
            assert (step.get("with") or {}).get("persist-credentials") is False, (
                f"{path.name}:{job_id}:{name}"
            )


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_secrets_reach_only_the_env_of_the_steps_that_use_them(path):
    wf = load_workflow(path)
    assert "secrets." not in yaml.safe_dump(wf.get("env") or {})
    for job_id, job in wf["jobs"].items():
        assert "secrets." not in yaml.safe_dump(job.get("env") or {}), f"{job_id}: job env"
        assert "secrets: inherit" not in yaml.safe_dump(job)
        for step in job.get("steps") or []:
            outside_env = {k: v for k, v in step.items() if k != "env"}
            if str(step.get("uses", "")).startswith("actions/create-github-app-token@"):
                outside_env.pop("with")  # the App's private key is that action's input
            assert "secrets." not in yaml.safe_dump(outside_env), f"{job_id}: {step}"


def test_retrain_runs_weekly_or_by_hand_with_reason_force_and_bump():
    wf = _wf("retrain")
    on = triggers_of(wf)
    assert set(on) == {"schedule", "workflow_dispatch"}
    assert len(on["schedule"][0]["cron"].split()) == 5
    inputs = on["workflow_dispatch"]["inputs"]
    assert inputs["reason"]["type"] == "string"
    assert inputs["force"]["type"] == "boolean" and inputs["force"]["default"] is False
    assert inputs["bump"]["type"] == "choice"
    assert inputs["bump"]["options"] == ["minor", "patch", "major"]
    assert inputs["bump"]["default"] == "minor"
    assert wf["concurrency"]["cancel-in-progress"] is False
    assert wf["jobs"]["retrain"]["permissions"] == {
        "contents": "write",  # the proposal branch and the judgement notes
        "pull-requests": "write",
        "issues": "write",  # the one issue of a loop stuck on held candidates
    }


def test_promotion_gate_is_a_check_named_for_branch_protection_on_every_pr_into_main():
    wf = _wf("promotion-gate")
    on = triggers_of(wf)
    assert set(on) == {"pull_request"} and on["pull_request"]["branches"] == ["main"]
    # no `paths` filter: a required check skipped by a filter would block every other PR
    assert "paths" not in on["pull_request"]
    (job,) = wf["jobs"].values()
    assert job["name"] == "promotion-gate"
    assert job["permissions"] == {"contents": "read"}
    assert "`promotion-gate`" in (PROJECT / "docs" / "github-setup.md").read_text()


SAFE_WITH_SECRETS = {"retrain", "dvc", "printf", "umask", "if", "then", "fi", "[", "echo"}


def _commands(script: str) -> list[str]:
    """The first word of each simple command of a shell script (enough for these steps)."""
    words = []
    for line in script.splitlines():
        for part in re.split(r"&&|\|\||;|\|", line.split("#", 1)[0]):
            part = part.strip()
            if part:
                words.append(part.split()[0])
    return words


def test_promotion_gate_runs_the_base_branchs_code_never_the_prs():
    """The required check cannot certify itself (issue #19): retrain is installed from a
    checkout of the PR's base commit, the PR is checked out apart as data, no step runs a
    script or installs anything from the PR, and the steps that hold secrets run only the
    base's `retrain` and `dvc` (on PATH from the base's virtualenv)."""
    wf = _wf("promotion-gate")
    (job,) = wf["jobs"].values()
    steps = job["steps"]
    checkouts = [st for st in steps if str(st.get("uses", "")).startswith("actions/checkout@")]
    base = [
        st for st in checkouts if "pull_request.base.sha" in str((st.get("with") or {}).get("ref"))
    ]
    assert len(base) == 1, "one checkout of the base commit"
    base_dir = base[0]["with"]["path"]
    pr_dirs = {(st.get("with") or {}).get("path") for st in checkouts if st is not base[0]}
    assert base_dir and base_dir not in pr_dirs and None not in pr_dirs, "the PR lives apart"
    runs = [st for st in steps if "run" in st]
    install = next(st for st in runs if st.get("id") == "install")
    assert install.get("working-directory") == base_dir and ".ci/install" in install["run"]
    for st in runs:
        writes_path = "GITHUB_PATH" in st["run"]
        assert not writes_path or st.get("working-directory") == base_dir, st.get("name")
        if st is not install:
            assert st.get("working-directory") in pr_dirs, f"{st.get('name')}: runs in the PR tree"
            assert "bash " not in st["run"] and "./" not in st["run"], st.get("name")
            assert not re.search(r"\b(make|pip|uv|python3?|sh)\b", st["run"]), st.get("name")
        if "secrets." in yaml.safe_dump(st.get("env") or {}):
            assert set(_commands(st["run"])) <= SAFE_WITH_SECRETS, st.get("name")
    verify = next(st for st in runs if st.get("id") == "verify")
    assert _commands(verify["run"]) == ["retrain"]


def test_code_owners_cover_the_code_the_model_and_the_environment():
    owners = (PROJECT / ".github" / "CODEOWNERS").read_text()
    for path in ("/src/", "/model.py", "/pyproject.toml", "/uv.lock", "/.dvc/", "/registry.yaml"):
        assert re.search(rf"(?m)^{re.escape(path)}\s+@\S+", owners), path


def test_promote_runs_on_pushes_to_main_that_touch_the_registry():
    on = triggers_of(_wf("promote"))
    assert on == {"push": {"branches": ["main"], "paths": ["registry.yaml"]}}


def test_rollback_is_dispatched_with_a_target_and_a_mode():
    inputs = triggers_of(_wf("rollback"))["workflow_dispatch"]["inputs"]
    assert inputs["to"]["default"] == "previous"
    assert inputs["mode"]["options"] == ["pr", "push"] and inputs["mode"]["default"] == "pr"


def test_ci_runs_make_test_on_pull_requests_and_pushes():
    wf = _wf("ci")
    assert {"pull_request", "push"} <= set(triggers_of(wf))
    runs = [step.get("run") for _, _, step in run_steps(wf)]
    assert "make test" in runs


def test_registry_changes_need_a_code_owner():
    owners = (PROJECT / ".github" / "CODEOWNERS").read_text()
    assert re.search(r"(?m)^/registry\.yaml\s+@\S+", owners)


# =========================================================================== the stories
#
# Each story forks the project into a sandbox (bare origin, local DVC remote, MLflow on
# SQLite) and runs the real workflow files on it with WorkflowRunner.


def _origin_git(sb, *args: str) -> str:
    return _git(sb.origin, *args)


def _branches(sb) -> set[str]:
    out = _origin_git(sb, "for-each-ref", "--format=%(refname:short)", "refs/heads")
    return set(out.splitlines())


def _tags(sb, pattern: str) -> list[str]:
    return _origin_git(sb, "tag", "--list", pattern).split()


def _registry_in_origin(sb, rev: str = "main") -> dict:
    return yaml.safe_load(_origin_git(sb, "show", f"{rev}:registry.yaml"))


@pytest.fixture
def runner(sandbox, tmp_path):
    """The sandbox's workflows, run against its origin, with MLflow's URI as a secret."""

    def make(**secrets: str) -> WorkflowRunner:
        all_secrets = {"MLFLOW_TRACKING_URI": sandbox.env["MLFLOW_TRACKING_URI"], **secrets}
        return WorkflowRunner(
            sandbox.origin, tmp_path / "actions", env=sandbox.env, secrets=all_secrets
        )

    return make


def _wf_path(sb, name: str) -> Path:
    return sb.root / ".github" / "workflows" / f"{name}.yml"


def _merge_pr(sb, branch: str) -> str:
    """What the PR's merge button does: a --no-ff merge of origin's branch into main."""
    sb.git("fetch", "-q", "origin")
    sb.git("merge", "-q", "--ff-only", "origin/main")
    sb.git(
        "merge", "-q", "--no-ff", "-m", f"Merge pull request #1 from {branch}", f"origin/{branch}"
    )
    sb.git("push", "-q", "origin", "main")
    return sb.git("rev-parse", "HEAD")


def test_first_scheduled_run_proposes_v1_and_a_second_with_nothing_new_asks_github_nothing(
    sandbox, runner
):
    """Bootstrap through the workflows: schedule → PR for 1.0.0 (GITHUB_TOKEN, so the gate
    runs in the job) → merge → promote workflow; then a scheduled run with nothing new.
    GitHub is stood in at the process boundary: a bare origin, and a recording ``gh``."""
    sb = sandbox
    gh = runner()
    run = gh.run(_wf_path(sb, "retrain"), "schedule")
    assert run.conclusion == "success", run.describe()
    step = run.job.step("run")
    assert step.outputs["outcome"] == "proposed" and step.outputs["branch"] == "retrain/v1.0.0"
    assert step.outputs["token"] == "github"
    assert "retrain/v1.0.0" in _branches(sb)
    (call,) = run.gh_calls
    assert call["argv"][:2] == ["pr", "create"] and call["token"] == FAKE_TOKEN
    # Without a bot token the PR's own checks would not start: the gate ran in the job.
    gate = run.job.step("Promotion gate, run here")
    assert gate.outcome == "success", run.describe()
    assert "GITHUB_TOKEN" in run.summary and "Promotion gate" in run.summary
    assert run.job.uploads[0]["files"], "the run's report is uploaded"

    _merge_pr(sb, "retrain/v1.0.0")
    promoted = gh.run(_wf_path(sb, "promote"), "push")
    assert promoted.conclusion == "success", promoted.describe()
    assert "promoted v1.0.0" in promoted.summary
    assert _tags(sb, "seattle-weather@v1.0.0") == ["seattle-weather@v1.0.0"]

    quiet = gh.run(_wf_path(sb, "retrain"), "schedule")
    assert quiet.conclusion == "success", quiet.describe()
    assert quiet.job.step("run").outputs["outcome"] == "skipped"
    assert quiet.job.step("Promotion gate, run here").outcome == "skipped"
    assert quiet.gh_calls == []
    assert _branches(sb) == {"main", "retrain/v1.0.0"}
    assert quiet.summary.strip(), "the summary says why nothing was trained"


def test_scheduled_run_with_new_data_pushes_a_branch_and_opens_a_pr_with_the_report(
    sandbox, cli, runner
):
    """New data → the scheduled workflow pushes retrain/v1.1.0 and asks gh (stood in) for a
    PR whose body is the report committed on the branch; with the bot token it is that
    token gh gets, and the promotion gate is left to the PR's own check."""
    from retrain import example
    from tests.conftest import bootstrap

    sb = sandbox
    bootstrap(sb, cli)
    example.ingest_next_batch(sb.root, sb.env)
    main_before = _origin_git(sb, "rev-parse", "main")

    run = runner(RETRAIN_BOT_TOKEN=BOT_TOKEN).run(_wf_path(sb, "retrain"), "schedule")
    assert run.conclusion == "success", run.describe()
    out = json.loads(run.job.step("run").stdout)
    assert out["outcome"] == "proposed" and out["branch"] == "retrain/v1.1.0"
    assert "new_data" in out["fired"]
    assert out["pr_url"] == "https://github.com/example/retrain/pull/1"
    assert _origin_git(sb, "rev-parse", "main") == main_before, "main is only changed by merging"
    assert _registry_in_origin(sb, "retrain/v1.1.0")["production"] == "1.1.0"

    (call,) = run.gh_calls
    argv = call["argv"]
    assert argv[:2] == ["pr", "create"]
    assert argv[argv.index("--base") + 1] == "main"
    assert argv[argv.index("--head") + 1] == "retrain/v1.1.0"
    assert call["token"] == BOT_TOKEN
    report = _origin_git(sb, "show", "retrain/v1.1.0:reports/v1.1.0/PR.md")
    assert call["body"].strip() == report.strip() and "1.1.0" in report
    assert run.job.step("Promotion gate, run here").outcome == "skipped"

    # The promotion gate, as the PR's check: it accepts the proposal.
    gate = runner().run(_wf_path(sb, "promotion-gate"), "pull_request", pr_head="retrain/v1.1.0")
    assert gate.conclusion == "success", gate.describe()
    assert gate.job.step("Verify").outcome == "success"


def test_a_scheduled_run_on_a_fresh_runner_finds_the_judgement_the_last_one_pushed(
    sandbox, cli, runner
):
    """Each workflow run starts from a fresh checkout.  The first scheduled run judges and
    holds the candidate and pushes its judgement (git notes) to origin; the next, with
    nothing changed, fetches it, says "already judged" and trains nothing.
    GitHub is stood in at the process boundary: a bare origin, and a recording ``gh``."""
    import re

    from retrain import example
    from retrain.release import judged
    from tests.conftest import bootstrap

    sb = sandbox
    bootstrap(sb, cli)
    gates = sb.root / "configs" / "gates.yaml"
    gates.write_text(re.sub(r"min_delta: 0\.01", "min_delta: 0.5", gates.read_text(), count=1))
    sb.git("commit", "-qam", "gates: only a much better model may replace production")
    sb.git("push", "-q", "origin", "main")
    example.ingest_next_batch(sb.root, sb.env)

    first = runner().run(_wf_path(sb, "retrain"), "schedule")
    assert first.conclusion == "success", first.describe()
    assert first.job.step("run").outputs["outcome"] == "gated"
    assert _origin_git(sb, "rev-parse", "--verify", judged.NOTES_REF)

    second = runner().run(_wf_path(sb, "retrain"), "schedule")
    assert second.conclusion == "success", second.describe()
    out = json.loads(second.job.step("run").stdout)
    assert out["outcome"] == "skipped" and out["judged"]["outcome"] == "gated", out
    assert out["judged"]["message"].startswith("already judged: gated on ")
    assert "already judged, nothing retrained" in second.summary
    assert "`improvement`" in second.summary
    assert first.gh_calls == [] and second.gh_calls == []


def test_merge_to_main_promotes_and_a_revert_of_the_merge_records_a_rollback(sandbox, cli, runner):
    """The push-to-main path: a --no-ff merge of the proposal starts the promote workflow,
    which promotes; `git revert -m 1` of that merge starts it again, which rolls back.
    GitHub is stood in at the process boundary: the pushes go to a bare origin."""
    from retrain import example
    from tests.conftest import bootstrap

    sb = sandbox
    bootstrap(sb, cli)
    example.ingest_next_batch(sb.root, sb.env)
    out = cli.json("run", "--push")
    assert out["outcome"] == "proposed", out
    gh = runner()
    promote = _wf_path(sb, "promote")

    # A push that does not touch registry.yaml does not start the workflow.
    assert not gh.run(promote, "push").triggered

    merge = _merge_pr(sb, out["branch"])
    promoted = gh.run(promote, "push")
    assert promoted.conclusion == "success", promoted.describe()
    assert "promoted v1.1.0 (was 1.0.0)" in promoted.summary
    assert _tags(sb, "seattle-weather@v1.1.0") == ["seattle-weather@v1.1.0"]
    deployed = promoted.job.workspace / ".retrain" / "deployed" / "current.json"
    assert json.loads(deployed.read_text())["version"] == "1.1.0"

    sb.git("revert", "--no-edit", "-m", "1", merge)
    sb.git("push", "-q", "origin", "main")
    rolled = gh.run(promote, "push")
    assert rolled.conclusion == "success", rolled.describe()
    assert "rolled back to v1.0.0 (was 1.1.0)" in rolled.summary
    stage_tags = _tags(sb, "seattle-weather#production#*")
    assert len(stage_tags) == 3  # promote 1.0.0, promote 1.1.0, rollback to 1.0.0
    last = _origin_git(sb, "tag", "-l", "--format=%(contents)", stage_tags[-1])
    assert "event=rollback" in last
    deployed = rolled.job.workspace / ".retrain" / "deployed" / "current.json"
    assert json.loads(deployed.read_text())["version"] == "1.0.0"
    assert rolled.gh_calls == []


def test_rollback_dispatch_opens_a_revert_pr_or_pushes_the_revert_and_promotes_it(
    sandbox, cli, runner
):
    """On-call: mode pr puts the revert on rollback/v1.0.0 with a PR (gh stood in); mode
    push with the default token pushes it to main and, since that push starts no workflow,
    runs promote in the same job and says so."""
    from retrain import example
    from tests.conftest import bootstrap

    sb = sandbox
    bootstrap(sb, cli)
    example.ingest_next_batch(sb.root, sb.env)
    out = cli.json("run")
    example.merge_proposal(sb, out["branch"])
    cli("promote", "--push-tags")
    main_before = _origin_git(sb, "rev-parse", "main")
    rollback = _wf_path(sb, "rollback")

    as_pr = runner(RETRAIN_BOT_TOKEN=BOT_TOKEN).run(
        rollback, "workflow_dispatch", inputs={"to": "previous", "mode": "pr"}
    )
    assert as_pr.conclusion == "success", as_pr.describe()
    assert _origin_git(sb, "rev-parse", "main") == main_before
    assert _registry_in_origin(sb, "rollback/v1.0.0")["production"] == "1.0.0"
    (call,) = as_pr.gh_calls
    assert call["argv"][call["argv"].index("--head") + 1] == "rollback/v1.0.0"
    assert call["token"] == BOT_TOKEN
    assert as_pr.job.step("Promote the rollback here").outcome == "skipped"
    assert "Rollback v1.1.0 -> v1.0.0" in as_pr.summary

    pushed = runner().run(rollback, "workflow_dispatch", inputs={"mode": "push"})
    assert pushed.conclusion == "success", pushed.describe()
    head = _origin_git(sb, "log", "-1", "--format=%s%n%P", "main").splitlines()
    assert head[0].startswith("Rollback seattle-weather to v1.0.0")
    assert head[1] == main_before, "the revert is one commit on top of main"
    assert _registry_in_origin(sb)["production"] == "1.0.0"
    assert pushed.job.step("Promote the rollback here").outcome == "success"
    assert "promote workflow will not run" in pushed.summary
    assert "rolled back to v1.0.0" in pushed.summary
    last = _tags(sb, "seattle-weather#production#*")[-1]
    assert "event=rollback" in _origin_git(sb, "tag", "-l", "--format=%(contents)", last)
    assert pushed.gh_calls == []
