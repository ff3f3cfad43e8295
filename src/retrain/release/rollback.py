"""Rollback (DESIGN.md section 7): the revert of the commit(s) that put the current version in
production, made in a private worktree and moved onto the branch in one step.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrain.core import faults, lock, versioning
from retrain.core import registry as reg
from retrain.core.config import Config
from retrain.core.errors import BadInput, GitError
from retrain.release import forge, gitops, history
from retrain.release.promotion import registry_at


@dataclass
class RollbackResult:
    from_version: str
    to_version: str | None
    reverted: list[str]
    commit: str
    branch: str
    pushed: bool = False
    pr_url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _plan(root: Path, target: str | None, current: str) -> list[dict[str, Any]]:
    """The promoting commits to revert, newest first, to reach ``target`` (None = previous)."""
    evs = history.events(root)
    plan: list[dict[str, Any]] = []
    prod = current
    for ev in reversed(evs):
        if ev["version"] != prod:
            continue
        plan.append(ev)
        prod = ev["from"]
        if target is None or prod == target:
            break
    if not plan:
        raise BadInput(f"no commit on this branch put v{current} in production; nothing to revert")
    if target is not None and prod != target:
        raise BadInput(
            f"--to {target}: that version was not in production before v{current} on this branch"
        )
    return plan


def rollback(
    cfg: Config, *, to: str | None = None, push: bool = False, open_pr: bool = False
) -> RollbackResult:
    """Revert the promotion(s) that led from ``to`` (default: the previous version) to now.

    The reverts are made in a private worktree; the user's branch moves in one step at the
    end (a fast-forward), so a kill at any point leaves it either as it was or rolled back.
    With ``--push``, a re-run after a kill between that step and the push pushes the
    rollback commits it finds ahead of origin instead of rolling back once more.
    """
    with lock.hold(cfg.root, "rollback"):
        return _rollback(cfg, to=to, push=push, open_pr=open_pr)


def _unpushed_rollback(root: Path, model: str, branch: str) -> list[str]:
    """Rollback commits on ``branch`` that origin lacks (a killed ``rollback --push``)."""
    if not gitops.has_remote(root):
        return []
    gitops.git(root, "fetch", "--quiet", "origin", check=False)
    upstream = f"refs/remotes/origin/{branch}"
    if not gitops.ok(root, "rev-parse", "--verify", "--quiet", upstream):
        return []
    out = gitops.git(root, "log", "--format=%H%x09%s", f"{upstream}..HEAD", check=False)
    rows = [line.split("\t", 1) for line in out.splitlines() if line]
    if rows and all(subj.startswith(f"Rollback {model} to v") for _, subj in rows):
        return [sha for sha, _ in rows]
    return []


def _rollback(cfg: Config, *, to: str | None, push: bool, open_pr: bool) -> RollbackResult:
    root = cfg.root
    model = cfg.release.model_name
    if gitops.is_dirty(root):
        raise BadInput(
            "working tree has uncommitted changes to tracked files; commit or stash "
            "them before a rollback"
        )
    gitops.git(root, "worktree", "prune", check=False)
    branch = gitops.current_branch(root) or "HEAD"
    if push and not open_pr and branch != "HEAD":
        pending = _unpushed_rollback(root, model, branch)
        if pending:
            seen = gitops.remote_sha(root, f"refs/heads/{branch}")
            before = registry_at(root, f"refs/remotes/origin/{branch}", model)
            gitops.push_with_lease(root, f"refs/heads/{branch}", seen, what=f"branch {branch}")
            now = reg.load(root, expected_model=model).production
            return RollbackResult(
                from_version=(before.production if before else None) or "none",
                to_version=now,
                reverted=pending,
                commit=gitops.head(root),
                branch=branch,
                pushed=True,
            )
    current_reg = reg.load(root, expected_model=model)
    current = current_reg.production
    if current is None:
        raise BadInput(f"{reg.REGISTRY_FILE}: production is empty; there is nothing to roll back")
    target = None if to in (None, "previous") else to
    if target is not None:
        versioning.parse(target, "--to")
        if target == current:
            raise BadInput(f"--to {target}: that version is already in production")
    plan = _plan(root, target, current)
    goal = plan[-1]["from"]
    if open_pr:
        branch = f"rollback/v{goal}" if goal else "rollback/empty"
    seen = gitops.remote_sha(root, f"refs/heads/{branch}") if (push or open_pr) else None
    tmp_dir = Path(tempfile.mkdtemp(prefix="retrain-rollback-"))
    work = tmp_dir / "wt"
    gitops.git(root, "worktree", "add", "-q", "--detach", str(work), "HEAD")
    try:
        for ev in plan:
            sha = ev["commit"]
            parents = gitops.git(work, "rev-list", "--parents", "-n1", sha).split()[1:]
            args = ["revert", "--no-edit"] + (["-m", "1"] if len(parents) > 1 else []) + [sha]
            res = subprocess.run(
                ["git", *args],
                cwd=work,
                capture_output=True,
                text=True,
                env={**os.environ, **gitops.identity_env(work)},
            )
            if res.returncode != 0:
                subprocess.run(["git", "revert", "--abort"], cwd=work, capture_output=True)
                raise GitError(
                    f"git revert of {sha[:8]} did not apply cleanly; resolve by hand "
                    f"({(res.stderr or res.stdout).strip().splitlines()[-1]})"
                )
            subject = (
                f"Rollback {model} to v{ev['from'] or 'none'} (revert v{ev['version']}, {sha[:8]})"
            )
            gitops.git(
                work,
                "commit",
                "--amend",
                "-q",
                "-m",
                f"{subject}\n\nThis reverts commit {sha}, which promoted v{ev['version']}.",
            )
        commit = gitops.head(work)
        faults.point("rollback:reverted")
        result = RollbackResult(
            from_version=current,
            to_version=goal,
            reverted=[e["commit"] for e in plan],
            commit=commit,
            branch=branch,
        )
        if open_pr:
            gitops.git(root, "update-ref", f"refs/heads/{branch}", commit)
            gitops.push_with_lease(root, f"refs/heads/{branch}", seen, what=f"branch {branch}")
            result.pushed = True
            result.pr_url = _open_rollback_pr(root, cfg, branch, current, goal, plan)
        else:
            # One step for the user's checkout: a fast-forward to the finished reverts.
            gitops.git(root, "merge", "--ff-only", "-q", commit)
            faults.point("rollback:moved")
            if push:
                if branch == "HEAD":
                    raise BadInput("rollback --push: HEAD is detached; check out the branch")
                gitops.push_with_lease(root, f"refs/heads/{branch}", seen, what=f"branch {branch}")
                result.pushed = True
    finally:
        gitops.git(root, "worktree", "remove", "--force", str(work), check=False)
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return result


def _open_rollback_pr(
    root: Path, cfg: Config, branch: str, current: str, goal: str | None, plan: list[dict[str, Any]]
) -> str:
    title = f"Rollback {cfg.release.model_name} to v{goal} (from v{current})"
    body = "\n".join(
        [
            f"**Rollback** of `{cfg.release.model_name}` from v{current} to v{goal}.",
            "",
            "This reverts the commit(s) that promoted the current version; no retraining, no "
            "training data needed. Merging it runs `retrain promote`, which records the rollback, "
            "moves the MLflow aliases back and redeploys the verified old artifact.",
            "",
            *[f"- revert of `{e['commit'][:8]}` ({e['subject']})" for e in plan],
        ]
    )
    return forge.open_pull_request(
        root, base=cfg.release.base_branch, head=branch, title=title, body=body
    )
