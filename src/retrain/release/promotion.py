"""Promotion (DESIGN.md section 7): acting on a change of ``production`` after a push.

``promote`` runs on the base branch after a push: it compares ``production`` at HEAD with
its first parent and acts on the change, whichever direction it went.  The revert that rolls
back lives in :mod:`retrain.release.rollback`, the PR-time re-check in
:mod:`retrain.release.verify`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from retrain.core import faults, lock, versioning
from retrain.core import registry as reg
from retrain.core.config import Config
from retrain.core.errors import ExternalCommandError, RegistryError
from retrain.core.progress import progress
from retrain.pipeline import artifacts, tracking
from retrain.release import gitops, history

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


def registry_at(root: Path, rev: str | None, model: str) -> reg.Registry | None:
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
    new_reg = registry_at(root, commit, model)
    if new_reg is None:
        raise RegistryError(f"{reg.REGISTRY_FILE}: not found at {commit[:8]}")
    old_prod = None
    if parent:
        try:
            old = registry_at(root, parent, model)
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
    sha = entry.artifact.sha256
    mv = entry.mlflow.model_version
    client = tracking.warm_client(cfg) if mv else None  # meanwhile: git, DVC, checks
    progress(f"promote: verifying the artifact of v{new_prod} (sha256 {sha[:12]}…)")
    history.fetch_tags(root)
    recorded = history.tag_registration(root, model, new_prod)
    if recorded is not None and recorded.sha256 not in (None, sha):
        raise RegistryError(
            f"{reg.REGISTRY_FILE}: production {new_prod}: its artifact sha256 {sha[:12]}… "
            f"differs from the one {recorded.where} recorded ({(recorded.sha256 or '')[:12]}…); "
            "a version names one artifact forever, refusing to promote it"
        )
    path = artifacts.fetch(root, entry.artifact, new_prod)
    if recorded is not None and recorded.sha256 == sha:
        # Back to a version whose first promotion deserialised these very bytes (its tag
        # records their sha256): comparing the sha256 refuses tampering; skops is not needed.
        artifacts.check_bytes(path, sha)
        result.notes.append(
            f"artifact verified: {sha[:12]}… (the bytes {recorded.where} records, loaded when "
            "first promoted)"
        )
    else:
        artifacts.load_for_config(cfg, path, sha)  # refuses tampering and untrusted types
        result.notes.append(f"artifact verified: {sha[:12]}…")
    faults.point("promote:verified")

    reg_tag = versioning.tag_name(model, new_prod)
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

    if mv:
        result.notes.append(tracking.set_aliases(cfg, str(mv), client))
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
