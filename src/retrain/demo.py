"""``retrain demo`` and ``retrain drill`` on the bundled examples, in a throw-away sandbox.

The demo builds a sandbox fork (:func:`retrain.example.make_sandbox`), bootstraps, receives a
batch, retrains, merges the proposal and promotes, printing each step; ``--export`` copies
the PR of the retrain into a folder (``docs/example-pr/``).  The drill breaks a model on
purpose and times how long the rollout machinery takes to roll it back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from retrain.example import (
    Sandbox,
    ingest_next_batch,
    make_sandbox,
    merge_proposal,
    onboard_example,
    raw_example,
    receive_held,
    run_command,
)


def _step(msg: str, *, err: bool = False) -> None:
    print(f"\n==> {msg}", flush=True, file=sys.stderr if err else sys.stdout)


def export_report(sb: Sandbox, branch: str, version: str, dest: Path) -> list[Path]:
    """Copy ``reports/v<version>/`` from the proposal branch to ``dest`` (for docs/)."""
    folder = f"reports/v{version}"
    names = sb.git("ls-tree", "-r", "--name-only", branch, folder).splitlines()
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    out = []
    for name in names:
        data = subprocess.run(
            ["git", "show", f"{branch}:{name}"], cwd=sb.root, capture_output=True, check=True
        ).stdout
        target = dest / Path(name).name
        target.write_bytes(data)
        out.append(target)
    return out


def demo(
    project: Path, workdir: Path, export: Path | None = None, example: str = "weather"
) -> None:
    """Bootstrap (if needed) → a new batch arrives → retrain → gates → proposal.

    ``example="cars"`` first onboards the fork onto the Cars raw file with ``retrain init``
    (a regression target; see :func:`onboard_example`), holding its newest batch back."""
    from retrain.core.config import load_config
    from retrain.release.promotion import promote
    from retrain.run import run

    started = time.perf_counter()
    workdir = Path(workdir).resolve()
    export = Path(export).resolve() if export is not None else None
    if example != "weather":
        raw_example(example)  # an unknown name is refused before anything is removed
    if workdir.exists():
        shutil.rmtree(workdir)
    _step(
        f"Forking the project into a sandbox at {workdir} (bare origin, DVC remote, MLflow SQLite)"
    )
    sb = make_sandbox(workdir, project)
    held: list[Path] = []
    if example != "weather":
        ex = raw_example(example)
        _step(f"Onboarding the fork onto {ex.file_name} ({ex.about}) with retrain init")
        print(f"retrain init {' '.join(ex.init_args(sb.base / ex.file_name))}")
        out, held = onboard_example(sb, example)
        print(out.rstrip())
        print(f"(held back {', '.join(p.name for p in held)}: it arrives after the bootstrap)")
    old_cwd = Path.cwd()
    saved_env = {k: os.environ.get(k) for k in sb.env}
    os.environ.update(sb.env)
    os.chdir(sb.root)
    try:
        cfg = load_config(sb.root)
        _step("Bootstrap: no model in production yet, so the first run trains v1.0.0")
        first = run(cfg)
        print(first.summary)
        _step(f"Reviewer merges {first.branch}; the promote step runs on main")
        merge_proposal(sb, first.branch or "")
        print(promote(cfg).summary())
        _step("A new batch of labelled data arrives (committed as data.dvc by the ingestion job)")
        if held:
            name = receive_held(sb, held).removesuffix(".csv")
        else:
            name = ingest_next_batch(sb.root, sb.env)
        print(f"ingested data/batches/{name}.csv")
        _step("Scheduled run: triggers → dvc repro → gates → proposal")
        second = run(cfg)
        print(second.summary)
        if export is not None and second.branch and second.version:
            files = export_report(sb, second.branch, second.version, export)
            print(f"exported {len(files)} report file(s) to {export}")
        _step("Done")
        elapsed = time.perf_counter() - started
        lines = [
            f"Demo finished in {elapsed:.0f}s. Production: v{first.version}; "
            f"outcome of the retrain: {second.outcome}"
            + (f" (v{second.version} on branch {second.branch})" if second.branch else ""),
            f"  PR body:       {sb.root / 'reports/latest/PR.md'}",
            f"  sandbox repo:  {sb.root}   (origin: {sb.origin})",
            f"  try:           cd {sb.root} && retrain status",
        ]
        print("\n".join(lines))
    finally:
        os.chdir(old_cwd)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --------------------------------------------------------------------------- drill
def drill(project: Path, workdir: Path, *, traffic: int = 120) -> Any:
    """``retrain drill``: a sandbox of the fork at ``project`` as committed (its data, configs,
    registry, history and production artifact; :func:`retrain.example.sandbox_of_fork`), its
    production bootstrapped there first when it has none, then the rounds of
    :func:`retrain.rollout.drill.run_drill`: bad versions built from that production model."""
    import json as _json

    from retrain.core import registry as reg
    from retrain.core.config import load_config
    from retrain.example import PRODUCTION_ENV, sandbox_of_fork
    from retrain.rollout.drill import DrillFailed, run_drill

    workdir = Path(workdir).resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    _step(f"Drill: a sandbox of the fork at {project}, in {workdir}", err=True)
    sb = sandbox_of_fork(workdir, project)
    env = {k: v for k, v in os.environ.items() if k not in PRODUCTION_ENV} | sb.env
    cfg = load_config(sb.root)
    prod = reg.load(sb.root, expected_model=cfg.release.model_name).production
    if prod is None:
        _step(
            "Drill: no production version yet; bootstrapping one (train, merge, promote)", err=True
        )
        res = subprocess.run(
            [sys.executable, "-m", "retrain", "run", "--json"],
            cwd=sb.root,
            env=env,
            capture_output=True,
            text=True,
        )
        out = _json.loads(res.stdout) if res.returncode == 0 else {}
        if out.get("outcome") != "proposed":
            raise DrillFailed(f"bootstrap did not propose v1.0.0: {res.stderr.strip()[-300:]}")
        merge_proposal(sb, out["branch"])
        run_command([sys.executable, "-m", "retrain", "promote"], sb.root, env)
    else:
        _step(f"Drill: production is v{prod}, the fork's own model", err=True)
    _step("Drill: serving, promoting bad versions, sending labelled traffic, monitoring", err=True)
    return run_drill(sb.root, env, traffic=traffic)
