"""Shared fixtures: real git, real DVC, real MLflow (SQLite), isolated per session.

Every story runs in a sandbox fork of this project (``retrain.example.make_sandbox``): a bare
repository as ``origin``, a local directory as the DVC remote and a SQLite file as MLflow's
store.  GitHub is the one part that cannot be reached; where a story needs it, a ``gh``
executable placed first on PATH records its arguments (and the PR body) instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from retrain import example

PROJECT = Path(__file__).resolve().parents[1]

FAKE_GH = r'''#!/usr/bin/env python3
"""Stand-in for the GitHub CLI: records argv (and the --body-file text) and answers like gh
(a URL for pr create and issue create)."""
import json, os, sys
args = sys.argv[1:]
record = {"argv": args, "cwd": os.getcwd()}
if "--body-file" in args:
    with open(args[args.index("--body-file") + 1], encoding="utf-8") as fh:
        record["body"] = fh.read()
with open(os.environ["FAKE_GH_LOG"], "a", encoding="utf-8") as fh:
    fh.write(json.dumps(record) + "\n")
if args[:2] == ["pr", "create"]:
    head = args[args.index("--head") + 1] if "--head" in args else "branch"
    print(f"https://github.com/example/retrain/pull/{abs(hash(head)) % 1000}")
if args[:2] == ["issue", "create"]:
    with open(os.environ["FAKE_GH_LOG"], encoding="utf-8") as fh:
        number = sum(1 for line in fh if '"argv": ["issue", "create"' in line)
    print(f"https://github.com/example/retrain/issues/{number}")
'''


def pytest_sessionstart(session: pytest.Session) -> None:
    """Clear the test PostgreSQL servers a killed run left behind (their owner is gone);
    once, in the controller, not in each xdist worker."""
    if not hasattr(session.config, "workerinput"):
        from tests.postgres import sweep_leftovers

        for base in sweep_leftovers():
            print(f"removed a leftover test PostgreSQL server: {base}", file=sys.stderr)


@pytest.fixture(scope="session", autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test reads or writes the developer's HOME, git or DVC config."""
    home = tmp_path_factory.mktemp("home")
    gitconfig = home / ".gitconfig"
    gitconfig.write_text(
        "[user]\n\tname = Test User\n\temail = test@example.invalid\n"
        "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n"
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("HOME", str(home))
    mp.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
    mp.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    mp.setenv("DVC_NO_ANALYTICS", "1")
    mp.setenv("DVC_NO_UPDATE_CHECK", "1")
    mp.setenv("DVC_SITE_CACHE_DIR", str(home / "dvc-site-cache"))
    yield
    mp.undo()


def install_fake_gh(base: Path) -> Path:
    """Put the recording ``gh`` in ``base/fake-bin``; returns the JSON-lines file it writes
    (hand it to :class:`Cli`, which puts the folder first on PATH)."""
    bindir = base / "fake-bin"
    bindir.mkdir()
    gh = bindir / "gh"
    gh.write_text(FAKE_GH)
    gh.chmod(0o755)
    return base / "gh-calls.jsonl"


@pytest.fixture
def fake_gh(tmp_path: Path) -> Path:
    """A ``gh`` on PATH that records its calls to the returned JSON-lines file."""
    return install_fake_gh(tmp_path)


def config_without_model_triggers(root: Path, **triggers_update):
    """The project's config at ``root`` with the triggers that score production's model off
    (prediction drift, performance): for tests whose production entry has no artifact."""
    from retrain.core.config import load_config

    cfg = load_config(root)
    t = cfg.triggers.model_copy(
        update={
            "prediction_drift": cfg.triggers.prediction_drift.model_copy(update={"enabled": False}),
            "performance": cfg.triggers.performance.model_copy(update={"enabled": False}),
            **triggers_update,
        }
    )
    return cfg.model_copy(update={"triggers": t})


def gh_calls(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


class Cli:
    """Runs ``retrain`` as a user would, in the sandbox, with its environment."""

    def __init__(self, sb: example.Sandbox, gh_log: Path | None = None) -> None:
        self.sb = sb
        self.env = {**os.environ, **sb.env}
        if gh_log is not None:
            self.env["PATH"] = f"{gh_log.parent / 'fake-bin'}{os.pathsep}{self.env['PATH']}"
            self.env["FAKE_GH_LOG"] = str(gh_log)

    def __call__(
        self, *args: str, cwd: Path | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [sys.executable, "-m", "retrain", *args],
            cwd=cwd or self.sb.root,
            env=self.env,
            capture_output=True,
            text=True,
        )
        if check and res.returncode != 0:
            raise AssertionError(
                f"retrain {' '.join(args)} exited {res.returncode}\n"
                f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}"
            )
        return res

    def json(self, *args: str, cwd: Path | None = None) -> dict:
        return json.loads(self(*args, "--json", cwd=cwd).stdout)


@pytest.fixture
def sandbox(tmp_path: Path) -> example.Sandbox:
    return example.make_sandbox(tmp_path / "sb", PROJECT)


@pytest.fixture
def cli(sandbox: example.Sandbox, fake_gh: Path) -> Cli:
    return Cli(sandbox, fake_gh)


def bootstrap(sb: example.Sandbox, cli: Cli) -> dict:
    """The first scheduled run proposes v1.0.0; the reviewer merges; promote runs."""
    out = cli.json("run")
    assert out["outcome"] == "proposed" and out["version"] == "1.0.0", out
    example.merge_proposal(sb, out["branch"])
    cli("promote", "--push-tags")
    return out


def merge_promote_then_revert(
    sb: example.Sandbox, cli: Cli, second: dict, holdout: Path, before: str
) -> None:
    """Merge v1.1.0's proposal and promote it, then roll back and promote the revert:
    production is v1.0.0 again, answering the holdout as it did before."""
    example.merge_proposal(sb, second["branch"])
    cli("promote", "--push-tags")
    assert cli.json("status")["production"] == "1.1.0"
    cli("rollback", "--push")
    cli("promote", "--push-tags")
    st = cli.json("status")
    assert st["production"] == "1.0.0"
    assert [e["event"] for e in st["history"]] == ["promote", "promote", "rollback"]
    assert cli("predict", "--version", "1.0.0", "--input", str(holdout)).stdout == before


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server on a free loopback port for the whole session (tests/postgres.py).

    Each test that wants a clean database calls ``postgres.create_db(name)``.
    """
    from tests.postgres import new_base, start_server

    server = start_server(new_base())
    yield server
    server.close()
