"""Eviction of the local artifact copies (``.retrain/artifacts/<sha256>.<format>``).

Every version a server ever loaded leaves its verified copy there (``pipeline.artifacts.fetch``),
so a long-running replica following months of merges would fill its disk (an ``emptyDir`` in
Kubernetes, with a size limit).  After each successful swap the server keeps:

- the artifacts of ``production`` and of every version the ``rollout`` names (canary, shadows);
- the artifacts of the newest ``keep_last`` entries of ``registry.yaml`` (a revert to a recent
  version then loads without a fetch);
- any file changed in the last :data:`GRACE_SECONDS` (another process, e.g. ``retrain
  predict`` in the same checkout, may have just fetched it and be about to load it);

and deletes the other copies.  A deleted version is fetched again from the DVC cache or
remote, sha256-checked as always, if it is ever needed again.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from retrain.core import registry as reg

STORE = Path(".retrain") / "artifacts"
KEEP_LAST = 3
GRACE_SECONDS = 60.0
_ARTIFACT = re.compile(r"^(?P<sha>[0-9a-f]{64})\.(?P<fmt>[A-Za-z0-9]+)$")
_PART = re.compile(r"^[0-9a-f]{64}(\.[0-9]+-[0-9a-f]+)?\.part$")  # a fetch's copy


def keep_set(registry: reg.Registry, keep_last: int) -> set[str]:
    """sha256 of the artifacts to keep: production, the rollout's versions, the newest N."""
    keep = {e.artifact.sha256 for e in registry.versions[-keep_last:]} if keep_last > 0 else set()
    versions = set(registry.rollout.versions()) if registry.rollout else set()
    if registry.production:
        versions.add(registry.production)
    keep |= {registry.get(v).artifact.sha256 for v in versions if registry.has(v)}
    return keep


def evict_artifacts(
    root: Path,
    registry: reg.Registry,
    *,
    keep_last: int = KEEP_LAST,
    grace: float = GRACE_SECONDS,
    now: float | None = None,
) -> list[Path]:
    """Delete the artifact copies under ``root/.retrain/artifacts`` that are not kept;
    returns what was deleted.  Files that are not artifacts are left alone."""
    store = Path(root) / STORE
    if not store.is_dir():
        return []
    keep = keep_set(registry, keep_last)
    now = time.time() if now is None else now
    gone = []
    for path in store.iterdir():
        m = _ARTIFACT.match(path.name)
        stale_part = _PART.match(path.name) is not None
        if m is None and not stale_part:
            continue
        if m is not None and m["sha"] in keep:
            continue
        try:
            if now - path.stat().st_mtime < grace:
                continue
            path.unlink()
        except FileNotFoundError:
            continue
        gone.append(path)
    return gone
