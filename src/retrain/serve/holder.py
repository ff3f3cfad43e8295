"""The model being served, its identity, and the atomic swap to another one.

A :class:`ServedModel` is immutable: a request takes the current one once and finishes on it,
whatever happens to the holder meanwhile.  A version that cannot be fetched, verified or
loaded never replaces the one serving; the holder keeps the old model and records the reason,
which ``/health`` reports as degraded.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from retrain.core import environment
from retrain.core.config import DatasetConfig
from retrain.core.registry import RegistryEntry, Rollout
from retrain.pipeline.predict import environment_differences, load_version
from retrain.serve.inputs import InputSchema

log = logging.getLogger("retrain.serve")


@dataclass(frozen=True)
class ServedModel:
    model: Any
    name: str
    version: str
    sha256: str
    registry_commit: str | None
    schema: InputSchema
    task: str
    loaded_at: str
    # How the running libraries differ from those it was trained with (empty: they match,
    # or the entry recorded none); logged at load, reported by /health and /version.
    environment_mismatch: tuple[str, ...] = ()

    def identity(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "version": self.version,
            "registry_commit": self.registry_commit,
            "artifact_sha256": self.sha256,
            "loaded_at": self.loaded_at,
        }


def load_served(
    root: Path,
    name: str,
    entry: RegistryEntry,
    commit: str | None,
    dataset: DatasetConfig,
    trusted: tuple[str, ...] = (),
    code_root: Path | None = None,
) -> ServedModel:
    """Fetch (DVC cache, then remote), verify (sha256) and load a registry entry's model;
    ``code_root`` is the revision whose code (``model.py``) the model may refer to."""
    model = load_version(root, entry, trusted=trusted, code_root=code_root)
    schema = InputSchema.of(entry, dataset)
    diffs = environment_differences(entry)
    if diffs:
        log.warning("%s", environment.warning(entry.version, diffs))
    return ServedModel(
        model=model,
        name=name,
        version=entry.version,
        sha256=entry.artifact.sha256,
        registry_commit=commit,
        schema=schema,
        task=entry.schema_.task or dataset.task,
        loaded_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        environment_mismatch=tuple(diffs),
    )


class ModelHolder:
    """The current model (or none yet) and why the server is degraded, if it is."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: ServedModel | None = None
        self._problem: str | None = None
        self.failed_reloads = 0
        # registry.yaml's rollout and the models it names (canary, shadows), swapped
        # together with production so a request never sees half a change.
        self._rollout: Rollout | None = None
        self._others: dict[str, ServedModel] = {}

    def snapshot(self) -> tuple[ServedModel | None, Rollout | None, dict[str, ServedModel]]:
        """Production, the rollout and its models, as one consistent view."""
        with self._lock:
            return self._current, self._rollout, self._others

    def swap_all(
        self, new: ServedModel, rollout: Rollout | None, others: dict[str, ServedModel]
    ) -> ServedModel | None:
        """Serve ``new`` as production and ``others`` for ``rollout``, atomically."""
        with self._lock:
            old = self._current
            self._current, self._rollout, self._others = new, rollout, dict(others)
            self._problem = None
        return old

    @property
    def current(self) -> ServedModel | None:
        return self._current

    @property
    def problem(self) -> str | None:
        return self._problem

    def swap(self, new: ServedModel) -> ServedModel | None:
        """Serve ``new`` from now on; requests already holding the old one finish on it."""
        with self._lock:
            old, self._current, self._problem = self._current, new, None
        return old

    def touch(self, commit: str | None) -> ServedModel | None:
        """Same model, newer registry commit (e.g. a merge that changed another entry).

        Returns the served model when its registry commit changed (so its labels can follow).
        """
        with self._lock:
            cur = self._current
            changed = None
            if cur is not None and cur.registry_commit != commit:
                self._current = changed = dataclasses.replace(cur, registry_commit=commit)
            self._problem = None
            return changed

    def fail(self, reason: str) -> None:
        """A reload failed: keep serving what we have, remember why."""
        with self._lock:
            self._problem = reason
            self.failed_reloads += 1
