"""Which version was in production when, and why: reconstructed from git alone.

Walks the first-parent history of the base branch for commits that changed ``production``
in registry.yaml.  A move to a higher version is a promotion, a move back a rollback.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from retrain.core import registry as reg
from retrain.core import versioning
from retrain.core.config import Config
from retrain.core.errors import RegistryError
from retrain.release import gitops

PR_NUMBER = re.compile(r"(?:Merge pull request #|\(#)(\d+)")


def _production_at(root: Path, rev: str | None) -> str | None:
    if rev is None:
        return None
    text = gitops.show(root, rev, reg.REGISTRY_FILE)
    if text is None:
        return None
    try:
        return reg.parse_text(text, f"{reg.REGISTRY_FILE}@{rev[:8]}").production
    except RegistryError:
        return None  # an old broken registry is history, not a reason to fail today


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


def ever_in_production(root: Path, cfg: Config | None = None) -> set[str]:
    versions = {e["version"] for e in events(root) if e["version"]}
    current = _production_at(root, "HEAD") if gitops.ok(root, "rev-parse", "HEAD") else None
    return versions | ({current} if current else set())


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
    return "\n".join(lines)
