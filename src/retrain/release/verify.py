"""PR-time verification (DESIGN.md section 8): re-check a proposal branch's ``registry.yaml``
against its base before a human merges it.
"""

from __future__ import annotations

from pathlib import Path

from retrain.core import registry as reg
from retrain.core import versioning
from retrain.core.config import Config
from retrain.core.errors import BadInput
from retrain.pipeline import artifacts
from retrain.release import gitops, history, recheck
from retrain.release.promotion import registry_at

# What a change of production may not carry: code and the environment it runs in.  The
# check runs the base branch's code; a PR that changed code as well would be judged by code
# no one has merged yet (a fork's model.py is imported when the candidate is loaded).
CODE_FILES = ("pyproject.toml", "uv.lock", "Makefile", "dvc.yaml")
CODE_DIRS = ("src/", ".github/", ".ci/", ".dvc/")


def _is_code(path: str) -> bool:
    if path in CODE_FILES or path.startswith(CODE_DIRS):
        return True
    return path.endswith(".py") and not path.startswith(("tests/", "docs/", "benchmarks/"))


def _verify_alone(root: Path, base_sha: str) -> str:
    """A change of production travels without code: refuse one that carries code."""
    # The branch's own changes (from where it left the base; on GitHub's merge commit that
    # is the base), committed and uncommitted alike.
    fork_point = gitops.git(root, "merge-base", base_sha, "HEAD", check=False) or base_sha
    changed = gitops.git(root, "diff", "--name-only", fork_point).splitlines()
    code = sorted(p for p in changed if _is_code(p))
    if code:
        shown = ", ".join(code[:5]) + (f" and {len(code) - 5} more" if len(code) > 5 else "")
        raise BadInput(
            f"registry.yaml: this change of production also changes code or its environment "
            f"({shown}); the check would run code under review. Merge that in a PR of its own "
            "first, then propose the model"
        )
    return "the change of production carries no code (the check runs the base branch's)"


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
    base_reg = registry_at(root, base_sha, model) or reg.Registry(model=model)
    passed = ["registry.yaml parses and is consistent"]
    base_versions = {e.version: e for e in base_reg.versions}
    for e in head_reg.versions:
        old = base_versions.get(e.version)
        if old is not None and old.to_dict() != e.to_dict():
            raise BadInput(
                f"registry.yaml: version {e.version} was rewritten; merged versions are immutable"
            )
    new = [e for e in head_reg.versions if e.version not in base_versions]
    if new or head_reg.production != base_reg.production:
        passed.append(_verify_alone(root, base_sha))
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
