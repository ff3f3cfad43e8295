"""Which version was in production when, and why: reconstructed from git alone.

Walks the first-parent history of the base branch for commits that changed ``production``
in registry.yaml.  A move to a higher version is a promotion, a move back a rollback.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrain.core import registry as reg
from retrain.core import versioning
from retrain.core.config import Config
from retrain.core.errors import RegistryError
from retrain.release import gitops

PR_NUMBER = re.compile(r"(?:Merge pull request #|\(#)(\d+)")


def _registry_at(root: Path, rev: str | None) -> reg.Registry | None:
    """The registry at a revision; None when absent or unreadable (an old broken registry
    is history, not a reason to fail today)."""
    if rev is None:
        return None
    text = gitops.show(root, rev, reg.REGISTRY_FILE)
    if text is None:
        return None
    try:
        return reg.parse_text(text, f"{reg.REGISTRY_FILE}@{rev[:8]}")
    except RegistryError:
        return None


def _production_at(root: Path, rev: str | None) -> str | None:
    r = _registry_at(root, rev)
    return r.production if r else None


def events(root: Path, ref: str = "HEAD") -> list[dict[str, Any]]:
    """Promotion and rollback events on the first-parent line of ``ref``, oldest first."""
    out: list[dict[str, Any]] = []
    for change in gitops.first_parent_changes(root, reg.REGISTRY_FILE, ref):
        new = _production_at(root, change.sha)
        old = _production_at(root, change.parent)
        if new == old:
            continue
        if new is None or (old is not None and versioning.is_newer(old, new)):
            kind = "rollback"
        else:
            kind = "promote"
        event: dict[str, Any] = {
            "event": kind,
            "version": new,
            "from": old,
            "commit": change.sha,
            "at": change.at,
            "subject": change.subject,
        }
        m = PR_NUMBER.search(change.subject)
        if m:
            event["pr"] = int(m.group(1))
        out.append(event)
    return out


def rollout_at(root: Path, rev: str | None) -> reg.Rollout | None:
    """The ``rollout`` block at a revision (None when absent or unreadable)."""
    r = _registry_at(root, rev)
    return r.rollout if r else None


def rollout_events(root: Path, ref: str = "HEAD") -> list[dict[str, Any]]:
    """Canary and shadow events on the first-parent line of ``ref``, oldest first: canary
    started, advanced, promoted, rolled back; shadow started, promoted (challenger), ended."""
    out: list[dict[str, Any]] = []
    for change in gitops.first_parent_changes(root, reg.REGISTRY_FILE, ref):
        at, before = _registry_at(root, change.sha), _registry_at(root, change.parent)
        new = at.rollout if at else None
        old = before.rollout if before else None
        if new == old:
            continue
        prod = at.production if at else None
        nc = new.canary if new else None
        oc = old.canary if old else None
        base = {"commit": change.sha, "at": change.at, "why": change.subject}
        if oc is not None and (nc is None or nc.version != oc.version):
            kind = "canary_promoted" if prod == oc.version else "canary_rolled_back"
            out.append({"event": kind, "version": oc.version, "weight": oc.weight, **base})
        if nc is not None and (oc is None or nc.version != oc.version):
            out.append(
                {"event": "canary_started", "version": nc.version, "weight": nc.weight, **base}
            )
        elif nc is not None and oc is not None and nc.weight != oc.weight:
            out.append(
                {
                    "event": "canary_advanced",
                    "version": nc.version,
                    "weight": nc.weight,
                    "from_weight": oc.weight,
                    **base,
                }
            )
        ns, os_ = set(new.shadow if new else ()), set(old.shadow if old else ())
        for v in sorted(os_ - ns):
            kind = "challenger_promoted" if prod == v else "shadow_ended"
            out.append({"event": kind, "version": v, **base})
        for v in sorted(ns - os_):
            out.append({"event": "shadow_started", "version": v, **base})
    return out


def ever_in_production(root: Path, cfg: Config | None = None) -> set[str]:
    versions = {e["version"] for e in events(root) if e["version"]}
    current = _production_at(root, "HEAD") if gitops.ok(root, "rev-parse", "HEAD") else None
    return versions | ({current} if current else set())


@dataclass(frozen=True)
class Registration:
    """Where a version was first registered, and the artifact it names."""

    version: str
    sha256: str | None
    where: str  # "tag seattle-weather@v1.1.0" or "registry.yaml at 1a2b3c4d"


SHA256_LINE = re.compile(r"(?m)^sha256=([0-9a-f]{64})$")


def fetch_tags(root: Path) -> None:
    """Bring origin's tags here (best effort: offline, the local tags are what we know)."""
    if gitops.has_remote(root):
        gitops.git(root, "fetch", "--quiet", "--tags", "origin", check=False)


def tag_registration(root: Path, model: str, version: str) -> Registration | None:
    """What the tag ``<model>@v<version>`` recorded: the sha256 line of its message (tags
    written since the message carries it), else the entry in registry.yaml at its commit."""
    name = versioning.tag_name(model, version)
    if not gitops.ok(root, "rev-parse", "--verify", "--quiet", f"refs/tags/{name}"):
        return None
    body = gitops.git(root, "tag", "-l", "--format=%(contents)", name)
    m = SHA256_LINE.search(body)
    sha = m.group(1) if m else None
    if sha is None:
        commit = gitops.git(root, "rev-list", "-n1", name, check=False)
        text = gitops.show(root, commit, reg.REGISTRY_FILE) if commit else None
        try:
            old = reg.parse_text(text, f"{reg.REGISTRY_FILE}@{commit[:8]}") if text else None
        except RegistryError:
            old = None
        if old is not None and old.has(version):
            sha = old.get(version).artifact.sha256
    return Registration(version=version, sha256=sha, where=f"tag {name}")


def registries(
    root: Path, ref: str = "HEAD", *, oldest_first: bool = False
) -> Iterator[tuple[str, reg.Registry]]:
    """``(commit, registry)`` for every commit in the history of ``ref`` that changed
    registry.yaml (newest first unless ``oldest_first``).  Unreadable registries are skipped:
    an old broken registry is history, not a reason to fail today."""
    log = gitops.git(
        root, "log", "--full-history", "--format=%H", ref, "--", reg.REGISTRY_FILE, check=False
    )
    shas = log.split()
    for sha in reversed(shas) if oldest_first else shas:
        r = _registry_at(root, sha)
        if r is not None:
            yield sha, r


def registered_versions(
    root: Path, model: str, ref: str = "HEAD", *, fetch: bool = True
) -> dict[str, Registration]:
    """Every version ever registered: tags ``<model>@v*`` (origin's too) and every entry of
    every registry.yaml in the history of ``ref``, including versions a revert removed.

    A version in this map names its artifact forever (DESIGN.md section 2).
    """
    if fetch:
        fetch_tags(root)
    found: dict[str, Registration] = {}
    prefix = versioning.tag_name(model, "")
    for name in gitops.tags_matching(root, f"{prefix}*"):
        version = name[len(prefix) :]
        try:
            versioning.parse(version)
        except RegistryError:
            continue
        got = tag_registration(root, model, version)
        if got is not None:
            found[version] = got
    if not gitops.ok(root, "rev-parse", "--verify", "--quiet", ref):
        return found
    for sha, old in registries(root, ref, oldest_first=True):
        for entry in old.versions:
            v = entry.version
            if v not in found:
                found[v] = Registration(
                    version=v,
                    sha256=entry.artifact.sha256,
                    where=f"{reg.REGISTRY_FILE} at {sha[:8]}",
                )
    return found


def status(root: Path, cfg: Config) -> dict[str, Any]:
    registry = reg.load(root, expected_model=cfg.release.model_name)
    metric = cfg.gates.primary_metric
    versions = []
    for e in registry.versions:
        versions.append(
            {
                "version": e.version,
                "created": e.created,
                "bump": e.bump,
                "triggers": e.reason.triggers,
                "metric": metric,
                "value": e.metrics.overall.get(metric),
                "sha256": e.artifact.sha256,
            }
        )
    hist = events(root)
    return {
        "model": registry.model,
        "production": registry.production,
        "versions": versions,
        "history": [
            {k: v for k, v in ev.items() if k != "subject"} | {"why": ev["subject"]} for ev in hist
        ],
        "rollout": registry.rollout.to_dict() if registry.rollout else None,
        "rollout_history": rollout_events(root),
    }


def format_status(st: dict[str, Any]) -> str:
    lines = [f"model {st['model']}: production {st['production'] or '(none)'}", "", "versions:"]
    for v in st["versions"]:
        mark = "*" if v["version"] == st["production"] else " "
        val = f"{v['value']:.4f}" if isinstance(v["value"], float) else "-"
        lines.append(
            f" {mark} {v['version']:<9} {v['created'] or '':<21} {v['bump'] or '':<8} "
            f"{v['metric']}={val}  triggers: {', '.join(v['triggers']) or '-'}"
        )
    lines += ["", "history:"]
    if not st["history"]:
        lines.append("  (no promotion yet)")
    for ev in st["history"]:
        lines.append(
            f"  {ev['at']}  {ev['event']:<8} {ev['from'] or '-'} -> {ev['version'] or '-'}"
            f"  {ev['commit'][:8]}  {ev['why']}"
        )
    ro = st.get("rollout")
    if ro or st.get("rollout_history"):
        lines += ["", "rollout:"]
        if ro and ro.get("canary"):
            lines.append(f"  canary {ro['canary']['version']} at {ro['canary']['weight']}%")
        for v in (ro or {}).get("shadow", []):
            lines.append(f"  shadow {v}")
        if not ro:
            lines.append("  (none)")
        for ev in st.get("rollout_history", []):
            weight = f" {ev['weight']}%" if "weight" in ev else ""
            lines.append(
                f"  {ev['at']}  {ev['event']:<19} {ev['version']}{weight}  "
                f"{ev['commit'][:8]}  {ev['why']}"
            )
    return "\n".join(lines)
