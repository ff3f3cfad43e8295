"""DVC and Python through their public interfaces only (issue 22, item 2).

``retrain run`` used to replace DVC's private ``dvc.stage.run._run`` process-wide to run the
stages in its own process, and ``retrain`` exited through ``threading._shutdown`` and
``atexit._run_exitfuncs``: an upgrade of either could break the loop with no test noticing.
Now the stage commands DVC runs hand their stage to ``retrain run`` over a socket
(``retrain.release.stagehost``), and the fast exit is the last exit handler.  These tests
hold both to what they promise, and keep private names of other packages out of ``src``.
Real git, DVC and MLflow (SQLite) in a sandbox fork.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from retrain import example
from tests.conftest import PROJECT, Cli

# Documented in Python's library reference, underscore and all.
ALLOWED = {"os._exit"}


def _foreign_names(tree: ast.Module) -> dict[str, str]:
    """Local name -> what it names, for every import of a package other than ``retrain``."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] != "retrain":
                    local = alias.asname or alias.name.split(".")[0]
                    names[local] = alias.asname and alias.name or local
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            module = node.module or ""
            if module.split(".")[0] not in ("retrain", "__future__"):
                for alias in node.names:
                    names[alias.asname or alias.name] = f"{module}.{alias.name}"
    return names


def private_uses(path: Path) -> list[str]:
    """``module._name`` accesses and ``from x._y import z`` imports of other packages."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    foreign = _foreign_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            parts = (node.module or "").split(".")
            if parts[0] not in ("retrain", "__future__"):
                names = parts + [a.name for a in node.names]
                if any(p.startswith("_") and not p.startswith("__") for p in names):
                    found.append(f"line {node.lineno}: {ast.unparse(node)}")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            if node.attr.startswith("__"):
                continue
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            text = ast.unparse(node)
            if isinstance(base, ast.Name) and base.id in foreign and text not in ALLOWED:
                found.append(f"line {node.lineno}: {text}")
    return found


def test_src_uses_no_private_name_of_another_package():
    """A private function of DVC, MLflow or Python may change in any release: an upgrade
    (``make lock UPGRADE=1``) must not be able to break the loop with no test noticing."""
    found = {
        str(path.relative_to(PROJECT)): uses
        for path in sorted((PROJECT / "src" / "retrain").rglob("*.py"))
        if (uses := private_uses(path))
    }
    assert not found, f"private names of other packages used: {found}"


def test_the_private_name_scan_sees_what_main_used(tmp_path: Path):
    code = tmp_path / "old.py"
    code.write_text(
        "import atexit, threading\nfrom dvc.stage import run as dvc_run\n"
        "from sklearn.utils._testing import x\n"
        "dvc_run._run = None\nthreading._shutdown()\natexit._run_exitfuncs()\nimport os\n"
        "os._exit(0)\n"
    )
    uses = sorted(u.split(": ", 1)[1] for u in private_uses(code))
    assert uses == sorted(
        [
            "from sklearn.utils._testing import x",
            "dvc_run._run",
            "threading._shutdown",
            "atexit._run_exitfuncs",
        ]
    )


# A command added to the real CLI for this test: a thread still running and an exit handler
# registered while the command runs (as MLflow's are), a module-level object whose
# finaliser would print at the interpreter's teardown, 1 MB on stdout, and an exit status.
EXIT_SCRIPT = """
import atexit, sys, threading, time
import click
from retrain import cli

class Teardown:
    def __del__(self):
        print("teardown ran", file=sys.stderr, flush=True)

KEEP = Teardown()

@cli.cli.command("exit-check")
@click.option("--status", type=int, default=0)
def exit_check(status):
    atexit.register(lambda: print("exit handler ran", file=sys.stderr, flush=True))
    def late():
        time.sleep(0.3)
        print("thread finished", file=sys.stderr, flush=True)
    threading.Thread(target=late).start()
    sys.stdout.write("x" * 1_000_000)
    sys.exit(status)

sys.argv = ["retrain", "exit-check", "--status", sys.argv[1]]
cli.main()
"""


def test_retrain_exits_with_its_status_after_threads_and_exit_handlers_without_teardown():
    for status in (0, 3):
        res = subprocess.run(
            [sys.executable, "-c", EXIT_SCRIPT, str(status)], capture_output=True, text=True
        )
        assert res.returncode == status, res.stderr
        assert res.stdout == "x" * 1_000_000  # flushed in full through the pipe
        lines = res.stderr.splitlines()
        assert lines == ["thread finished", "exit handler ran"], res.stderr
        # "teardown ran" would mean the interpreter freed its modules: the second it costs.


def test_an_uncaught_exception_keeps_its_traceback_and_status_one():
    script = EXIT_SCRIPT.replace("sys.exit(status)", 'raise RuntimeError("boom")')
    res = subprocess.run([sys.executable, "-c", script, "0"], capture_output=True, text=True)
    assert res.returncode == 1
    assert "RuntimeError: boom" in res.stderr and "Traceback" in res.stderr


def test_dvc_runs_the_stage_commands_and_they_hand_their_stage_to_retrain_run(tmp_path: Path):
    """DVC runs ``retrain validate|train|evaluate`` as commands (its public behaviour), and
    each hands its stage to the ``retrain run`` that started DVC: a fault point inside the
    train stage (SIGKILL of the process that runs it, not of its group) kills ``retrain
    run`` itself, which it could not if the stage ran in the command's own process."""
    sb = example.make_sandbox(tmp_path / "sb", PROJECT)
    cli = Cli(sb)
    cli.env.pop("RETRAIN_FAULT_KILL", None)
    killed = subprocess.run(
        [sys.executable, "-m", "retrain", "run", "--json"],
        cwd=sb.root,
        env={**cli.env, "RETRAIN_FAULT_AT": "stage:train"},
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -9, (killed.returncode, killed.stderr[-2000:])
    assert "Running stage 'train'" in killed.stderr  # DVC ran the stage's command

    # The next run heals the killed one's leftovers and proposes; stdout is JSON only, DVC's
    # progress is on stderr, and its advice on git (which `retrain run` follows itself) is not.
    res = cli("run", "--json")
    out = json.loads(res.stdout)
    assert out["outcome"] == "proposed" and out["version"] == "1.0.0"
    for stage in ("train", "evaluate"):  # validate finished before the kill
        assert f"Running stage '{stage}'" in res.stderr
    assert "To track the changes with git" not in res.stderr
    assert "RETRAIN_STAGE_HOST" not in os.environ
    # DVC wrote the lock on the proposal branch: every stage is recorded with its code deps.
    lock = sb.git("show", f"{out['branch']}:dvc.lock")
    for dep in ("src/retrain/core", "src/retrain/pipeline"):
        assert f"path: {dep}\n" in lock


def test_a_stage_command_without_a_host_runs_the_stage_itself(tmp_path: Path):
    """``dvc repro`` by hand (or a host that is gone) runs every stage in its command."""
    sb = example.make_sandbox(tmp_path / "sb", PROJECT)
    gone = tmp_path / "gone.sock"
    res = subprocess.run(
        [sys.executable, "-m", "retrain", "validate"],
        cwd=sb.root,
        env={**os.environ, **sb.env, "RETRAIN_STAGE_HOST": str(gone)},
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads((sb.root / "artifacts" / "validation.json").read_text())["passed"] is True


def test_a_data_dvc_dvc_cannot_read_stops_the_run_naming_it(tmp_path: Path):
    """``check_data_matches`` used to return quietly when DVC could not answer (issue 22)."""
    sb = example.make_sandbox(tmp_path / "sb", PROJECT)
    (sb.root / "data.dvc").write_text("outs:\n- md5: [unclosed\n")
    sb.git("commit", "-qam", "A hand-broken data.dvc")
    res = Cli(sb)("run", "--force", check=False)
    assert res.returncode == 2, res.stderr[-2000:]
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert errors == [
        "error: data.dvc: DVC cannot read it (unable to read: 'data.dvc', YAML file structure "
        "is corrupted)"
    ], res.stderr[-2000:]
    assert "Running stage" not in res.stderr  # nothing was trained on data nobody checked
