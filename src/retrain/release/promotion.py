"""Promotion and rollback (DESIGN.md section 7), and the PR-time verification (section 8).

``promote`` runs on the base branch after a push: it compares ``production`` at HEAD with
its first parent and acts on the change, whichever direction it went.  ``rollback`` makes
the revert of the commit that put the current version in production.  ``verify`` re-checks a
proposal branch against its base before a human merges it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from retrain.core import faults, lock, versioning
from retrain.core import registry as reg
from retrain.core.config import Config
from retrain.core.errors import BadInput, ExternalCommandError, GitError, RegistryError
from retrain.core.progress import progress
from retrain.pipeline import artifacts, tracking
from retrain.release import forge, gitops, history

STAGE = "production"


@dataclass
class PromoteResult:
    event: str  # "promote" | "rollback" | "none"
    version: str | None
    previous: str | None
    commit: str
    tags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()

    def summary(self) -> str:
        if self.event == "none":
            return "\n".join(
                [
                    "promote: production did not change in this commit; nothing to do",
                    *[f"  - {n}" for n in self.notes],
                ]
            )
        verb = "promoted" if self.event == "promote" else "rolled back to"
        head = f"{verb} v{self.version} (was {self.previous or 'none'}) at {self.commit[:8]}"
        return "\n".join([head, *[f"  - {n}" for n in self.notes]])


def _registry_at(root: Path, rev: str | None, model: str) -> reg.Registry | None:
    if rev is None:
        return None
    text = gitops.show(root, rev, reg.REGISTRY_FILE)
    if text is None:
        return None
    return reg.parse_text(text, f"{reg.REGISTRY_FILE}@{rev[:8]}", expected_model=model)


def _next_stage_number(root: Path, model: str) -> int:
    numbers = []
    for t in gitops.tags_matching(root, f"{model}#{STAGE}#*"):
        tail = t.rsplit("#", 1)[-1]
        if tail.isdigit():
            numbers.append(int(tail))
    return max(numbers, default=0) + 1


def _already_recorded(root: Path, model: str, commit: str) -> str | None:
    """The stage tag that records ``commit``'s change of production, if any."""
    for t in gitops.tags_matching(root, f"{model}#{STAGE}#*"):
        body = gitops.git(root, "tag", "-l", "--format=%(contents)", t)
        if f"commit={commit}" in body.split():
            return t
    return None


def _push_tags(root: Path, names: list[str], result: PromoteResult) -> None:
    """Push each tag unless origin has it already; when another runner pushed a tag of the
    same name first (two promotes of one commit), keep theirs: the change is recorded once."""
    pushed = []
    for name in names:
        ref = f"refs/tags/{name}"
        local = gitops.git(root, "rev-parse", ref)
        remote = gitops.remote_sha(root, ref)
        if remote == local:
            continue
        if remote is None and gitops.ok(root, "push", "--quiet", "origin", f"{ref}:{ref}"):
            pushed.append(name)
            continue
        gitops.git(root, "fetch", "--quiet", "origin", f"+{ref}:{ref}")
        result.notes.append(f"{name} was pushed by another runner first; kept theirs")
    if pushed:
        result.notes.append(f"pushed tags {', '.join(pushed)}")


def promote(cfg: Config, *, push_tags: bool = False, ref: str = "HEAD") -> PromoteResult:
    """Act on a change of ``production`` between ``ref`` and its first parent.

    Every step is idempotent, so running it again after it was killed at any step finishes
    the job: tags that exist are kept (and pushed), aliases and the deploy are set again.
    """
    with lock.hold(cfg.root, "promote"):
        return _promote(cfg, push_tags=push_tags, ref=ref)


def _promote(cfg: Config, *, push_tags: bool, ref: str) -> PromoteResult:
    root = cfg.root
    model = cfg.release.model_name
    commit = gitops.head(root, ref)
    parent = (
        gitops.git(root, "rev-parse", "--verify", "--quiet", f"{commit}^1", check=False) or None
    )
    new_reg = _registry_at(root, commit, model)
    if new_reg is None:
        raise RegistryError(f"{reg.REGISTRY_FILE}: not found at {commit[:8]}")
    old_prod = None
    if parent:
        try:
            old = _registry_at(root, parent, model)
            old_prod = old.production if old else None
        except RegistryError:
            old_prod = None
    new_prod = new_reg.production
    if new_prod == old_prod:
        result = PromoteResult(event="none", version=new_prod, previous=old_prod, commit=commit)
        # A promote that ran while the tracking server was down left the aliases behind.
        mv = new_reg.get(new_prod).mlflow.model_version if new_prod else None
        caught_up = tracking.catch_up_aliases(cfg, str(mv)) if mv else None
        if caught_up:
            result.notes.append(caught_up)
        return result
    if new_prod is None or (old_prod is not None and versioning.is_newer(old_prod, new_prod)):
        event = "rollback"
    else:
        event = "promote"
    result = PromoteResult(event=event, version=new_prod, previous=old_prod, commit=commit)
    if new_prod is None:
        result.notes.append(
            "production is now empty (the bootstrap was reverted); nothing deployed"
        )
        _record_stage(cfg, result, target=None)
        return result

    entry = new_reg.get(new_prod)
    progress(
        f"promote: verifying the artifact of v{new_prod} (sha256 {entry.artifact.sha256[:12]}…)"
    )
    path = artifacts.fetch(root, entry.artifact, new_prod)
    artifacts.load_for_config(cfg, path, entry.artifact.sha256)  # refuses tampering
    result.notes.append(f"artifact verified: {entry.artifact.sha256[:12]}…")
    faults.point("promote:verified")

    reg_tag = versioning.tag_name(model, new_prod)
    sha = entry.artifact.sha256
    history.fetch_tags(root)
    recorded = history.tag_registration(root, model, new_prod)
    if recorded is not None and recorded.sha256 not in (None, sha):
        raise RegistryError(
            f"{reg.REGISTRY_FILE}: production {new_prod}: its artifact sha256 {sha[:12]}… "
            f"differs from the one {recorded.where} recorded ({(recorded.sha256 or '')[:12]}…); "
            "a version names one artifact forever, refusing to promote it"
        )
    if event == "promote" and gitops.tag(
        root,
        reg_tag,
        commit,
        f"Registered {model} v{new_prod}\n\ncommit={commit}\nsha256={sha}",
    ):
        result.tags.append(reg_tag)
    faults.point("promote:tagged")
    target = gitops.git(root, "rev-list", "-n1", reg_tag, check=False) or commit
    _record_stage(cfg, result, target=target)
    faults.point("promote:recorded")

    mv = entry.mlflow.model_version
    if mv:
        result.notes.append(tracking.set_aliases(cfg, str(mv)))
    faults.point("promote:aliased")
    result.notes.append(deploy(cfg, entry, path, event=event, previous=old_prod))
    faults.point("promote:deployed")
    if push_tags and gitops.has_remote(root):
        # Every tag this change needs, not only the ones this run created: a re-run after a
        # kill between tagging and pushing pushes what the killed run left local.
        names = (
            [reg_tag] if gitops.ok(root, "rev-parse", "--verify", f"refs/tags/{reg_tag}") else []
        )
        stage = _already_recorded(root, model, commit)
        _push_tags(root, names + ([stage] if stage else []), result)
    return result


def _record_stage(cfg: Config, result: PromoteResult, *, target: str | None) -> None:
    """GTO-readable stage tag ``<model>#production#<n>``; the message records the event."""
    root = cfg.root
    model = cfg.release.model_name
    if _already_recorded(root, model, result.commit):
        result.notes.append("this change was already recorded (re-run); tags unchanged")
        return
    n = _next_stage_number(root, model)
    name = versioning.stage_tag_name(model, STAGE, n)
    message = (
        f"{result.event} {model} to {result.version or 'none'} from "
        f"{result.previous or 'none'}\n\nevent={result.event}\nversion={result.version}\n"
        f"from={result.previous}\ncommit={result.commit}"
    )
    gitops.tag(root, name, target or result.commit, message)
    result.tags.append(name)


def deploy(
    cfg: Config, entry: reg.RegistryEntry, path: Path, *, event: str, previous: str | None
) -> str:
    """The embedded deploy: copy the verified artifact to ``.retrain/deployed/``; then the
    configured hook, if any, with RETRAIN_* variables."""
    root = cfg.root
    out = root / ".retrain" / "deployed"
    out.mkdir(parents=True, exist_ok=True)
    model_file = out / f"{cfg.release.model_name}.skops"
    part = model_file.with_suffix(".part")
    shutil.copyfile(path, part)
    part.replace(model_file)  # never half a model where the server looks
    record = {
        "model": cfg.release.model_name,
        "version": entry.version,
        "event": event,
        "previous": previous,
        "sha256": entry.artifact.sha256,
        "at": datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
    }
    reg.write_atomic(out / "current.json", json.dumps(record, indent=2) + "\n")
    note = f"deployed v{entry.version} to {model_file.relative_to(root)}"
    if cfg.release.deploy_command:
        env = {
            **os.environ,
            "RETRAIN_MODEL": cfg.release.model_name,
            "RETRAIN_VERSION": entry.version,
            "RETRAIN_EVENT": event,
            "RETRAIN_PREVIOUS": previous or "",
            "RETRAIN_ARTIFACT": str(model_file),
            "RETRAIN_SHA256": entry.artifact.sha256,
        }
        res = subprocess.run(cfg.release.deploy_command, cwd=root, env=env)
        if res.returncode != 0:
            raise ExternalCommandError(
                f"deploy hook {' '.join(cfg.release.deploy_command)} exited {res.returncode}"
            )
        note += f"; deploy hook {cfg.release.deploy_command[0]} ran"
    return note


# --------------------------------------------------------------------------- rollback
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
            before = _registry_at(root, f"refs/remotes/origin/{branch}", model)
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


# --------------------------------------------------------------------------- verify
def verify(cfg: Config, *, base: str) -> list[str]:
    """Check a branch's registry.yaml against ``base``; return the checks passed.

    Raises :class:`BadInput` (exit 2) with the first failed check.
    """
    root = cfg.root
    model = cfg.release.model_name
    base_sha = gitops.git(root, "rev-parse", "--verify", base, check=False)
    if not base_sha:
        raise BadInput(f"--base {base}: not a git revision here (fetch it first)")
    head_reg = reg.load(root, expected_model=model)
    base_reg = _registry_at(root, base_sha, model) or reg.Registry(model=model)
    passed = ["registry.yaml parses and is consistent"]
    base_versions = {e.version: e for e in base_reg.versions}
    for e in head_reg.versions:
        old = base_versions.get(e.version)
        if old is not None and old.to_dict() != e.to_dict():
            raise BadInput(
                f"registry.yaml: version {e.version} was rewritten; merged versions are immutable"
            )
    new = [e for e in head_reg.versions if e.version not in base_versions]
    passed += _verify_rollout(root, head_reg, base_reg)
    if not new:
        if head_reg.production == base_reg.production:
            passed.append("production unchanged; nothing to verify")
            return passed
        if head_reg.production is None:
            raise BadInput("registry.yaml: production: a PR may not empty production")
        entry = head_reg.get(head_reg.production)
        _verify_artifact(root, entry, cfg)
        passed.append(
            f"production moves from {base_reg.production} to {head_reg.production} "
            "(a registered version; artifact verified)"
        )
        return passed
    if len(new) > 1:
        raise BadInput(f"registry.yaml: {len(new)} new versions; a proposal appends exactly one")
    entry = new[0]
    if head_reg.versions[-1] is not entry:
        raise BadInput(f"registry.yaml: new version {entry.version} must be the last entry")
    staged = head_reg.rollout.to_dict() if head_reg.rollout else {}
    if head_reg.rollout and entry.version in head_reg.rollout.versions():
        if head_reg.production != base_reg.production:
            raise BadInput(
                f"registry.yaml: production moves and {entry.version} enters the rollout "
                "in one change; do one at a time"
            )
        passed.append(f"v{entry.version} enters as a rollout ({staged})")
    elif head_reg.production != entry.version:
        raise BadInput(
            f"registry.yaml: production is {head_reg.production}, expected the new "
            f"version {entry.version}"
        )
    ever = history.registered_versions(root, model, ref=base_sha)
    prior = ever.get(entry.version)
    sha = entry.artifact.sha256
    if prior is not None and prior.sha256 != sha:
        raise BadInput(
            f"registry.yaml: version {entry.version} was already registered ({prior.where}, "
            f"sha256 {(prior.sha256 or 'unknown')[:12]}…) and this entry names another artifact "
            f"(sha256 {sha[:12]}…); a version names one artifact forever, re-run the retrain "
            "job to take the next free number"
        )
    expected = versioning.next_free_version(base_reg.latest, entry.bump, set(ever))
    if prior is not None:
        # Re-registering the very artifact a version already named (a revert of a revert).
        expected = entry.version
    if entry.version != expected:
        raise BadInput(
            f"registry.yaml: version {entry.version} with bump {entry.bump} "
            f"should be {expected} (after {base_reg.latest}; versions ever registered: "
            f"{', '.join(sorted(ever, key=versioning.parse)) or 'none'})"
        )
    prod = base_reg.production_entry
    if prod is None and entry.bump != "initial":
        raise BadInput(f"registry.yaml: first version must have bump 'initial', got {entry.bump}")
    if prod is not None:
        changed = prod.schema_.fingerprint != entry.schema_.fingerprint
        if changed and entry.bump != "major":
            raise BadInput(
                f"registry.yaml: schema fingerprint changed since v{prod.version} "
                f"but bump is {entry.bump}; a schema change must be MAJOR"
            )
        if entry.gates.baseline != prod.version:
            raise BadInput(
                f"registry.yaml: gates were run against "
                f"{entry.gates.baseline}, but production is "
                f"{prod.version}; re-run the retrain job"
            )
    passed.append(f"semver: {base_reg.latest or 'none'} -> {entry.version} ({entry.bump})")
    gates = entry.gates.results
    failed = [n for n, g in gates.items() if g.verdict == "fail"]
    if not gates or failed or not entry.gates.passed:
        raise BadInput(
            f"registry.yaml: version {entry.version}: gate(s) failed or missing: "
            f"{failed or 'no gate results'}"
        )
    passed.append(f"gates: {len(gates)} recorded, none failed")
    card = entry.model_card
    if card and not (root / card).is_file():
        raise BadInput(f"{card}: model card referenced by registry.yaml is missing")
    _verify_artifact(root, entry, cfg)
    passed.append(f"artifact in the DVC remote, sha256 {entry.artifact.sha256[:12]}… verified")
    from retrain.release import recheck  # the gates' stack (pandas): verify only, not rollback

    passed.extend(recheck.recheck(cfg, entry, prod, where=reg.REGISTRY_FILE))
    return passed


def _verify_artifact(root: Path, entry: reg.RegistryEntry, cfg: Config) -> None:
    if not artifacts.in_remote(root, entry.artifact):
        raise BadInput(
            f"registry.yaml: version {entry.version}: artifact md5 "
            f"{entry.artifact.md5} is not in the DVC remote"
        )
    path = artifacts.fetch(root, entry.artifact, entry.version)
    artifacts.load_for_config(cfg, path, entry.artifact.sha256)


def _verify_rollout(root: Path, head: reg.Registry, base: reg.Registry) -> list[str]:
    """Every version the rollout sends traffic to must be fetchable from the DVC remote."""
    if head.rollout is None:
        return [] if base.rollout is None else ["rollout cleared"]
    named: list[tuple[str, str]] = []
    if head.rollout.canary is not None:
        named.append(("rollout.canary.version", head.rollout.canary.version))
    named += [(f"rollout.shadow[{i}]", v) for i, v in enumerate(head.rollout.shadow)]
    for key, version in named:
        art = head.get(version).artifact
        if not artifacts.in_remote(root, art):
            raise BadInput(
                f"registry.yaml: {key}: {version}'s artifact md5 {art.md5} is not in the DVC remote"
            )
    return [f"rollout versions in the DVC remote: {', '.join(v for _, v in named)}"]
