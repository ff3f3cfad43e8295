"""The reconcile loop: serve what ``registry.yaml`` says, the pull model of GitOps.

With ``--follow REF`` (e.g. ``origin/main``) every tick runs ``git fetch`` of REF's remote and
reads ``registry.yaml`` at REF; without it, it reads the working tree's ``registry.yaml``.
When ``production`` (or its artifact) differs from the model serving, the new version is
loaded off the request path and swapped in; a failure keeps the old model and is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from retrain.core import registry as reg
from retrain.core.config import DatasetConfig
from retrain.serve.holder import ModelHolder, ServedModel, load_served

log = logging.getLogger("retrain.serve")
GIT_TIMEOUT = 120


@dataclass(frozen=True)
class Snapshot:
    text: str
    commit: str | None
    where: str


def _git(root: Path, *args: str) -> str:
    res = subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, timeout=GIT_TIMEOUT
    )
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["failed"])[-1]
        raise RuntimeError(f"git {' '.join(args)}: {last}")
    return res.stdout


class RegistrySource:
    """Where the registry is read from: a git ref (fetched first) or the working tree."""

    def __init__(self, root: Path, ref: str | None) -> None:
        self.root = root
        self.ref = ref

    @property
    def description(self) -> str:
        return self.ref if self.ref else "working tree"

    def read(self) -> Snapshot:
        if self.ref is None:
            path = self.root / reg.REGISTRY_FILE
            if not path.is_file():
                raise RuntimeError(f"{reg.REGISTRY_FILE}: file not found")
            try:
                commit: str | None = _git(self.root, "rev-parse", "HEAD").strip()
            except RuntimeError:
                commit = None
            return Snapshot(path.read_text(encoding="utf-8"), commit, reg.REGISTRY_FILE)
        remote = self.ref.split("/", 1)[0]
        if "/" in self.ref and remote in _git(self.root, "remote").split():
            _git(self.root, "fetch", "--quiet", remote)
        commit = _git(self.root, "rev-parse", "--verify", f"{self.ref}^{{commit}}").strip()
        text = _git(self.root, "show", f"{commit}:{reg.REGISTRY_FILE}")
        return Snapshot(text, commit, f"{self.ref}:{reg.REGISTRY_FILE}")


class Reconciler:
    """One tick: read the registry, compare with what serves, load and swap if needed."""

    def __init__(
        self,
        root: Path,
        source: RegistrySource,
        holder: ModelHolder,
        dataset: DatasetConfig,
        model_name: str,
        trusted: tuple[str, ...] = (),
        on_reload: Callable[[str, ServedModel | None], None] = lambda outcome, m: None,
        on_relabel: Callable[[ServedModel], None] = lambda m: None,
    ) -> None:
        self.root = root
        self.source = source
        self.holder = holder
        self.dataset = dataset
        self.model_name = model_name
        self.trusted = trusted
        self.on_reload = on_reload
        self.on_relabel = on_relabel

    def once(self) -> str:
        """``"unchanged"``, ``"loaded"`` or ``"failed"`` (the reason is on the holder)."""
        try:
            snap = self.source.read()
            registry = reg.parse_text(snap.text, snap.where, expected_model=self.model_name)
            entry = registry.production_entry
            if entry is None:
                raise RuntimeError(f"{snap.where}: production: no version is in production")
        except Exception as exc:
            return self._failed(f"cannot read the registry from {self.source.description}: {exc}")
        cur, cur_rollout, cur_others = self.holder.snapshot()
        loaded = {m.version: m for m in [*cur_others.values(), *([cur] if cur else [])]}

        def same(model: ServedModel | None, e: reg.RegistryEntry) -> bool:
            return model is not None and (model.version, model.sha256) == (
                e.version,
                e.artifact.sha256,
            )

        rollout = registry.rollout
        wanted = sorted(rollout.versions()) if rollout else []
        if (
            same(cur, entry)
            and rollout == cur_rollout
            and all(same(cur_others.get(v), registry.get(v)) for v in wanted)
        ):
            relabelled = self.holder.touch(snap.commit)
            if relabelled is not None:
                self.on_relabel(relabelled)
            return "unchanged"
        # Load everything that is new off the request path, then swap it all at once; any
        # failure keeps serving what was there (production and rollout alike).
        try:
            new = (
                cur
                if same(cur, entry) and cur is not None
                else load_served(
                    self.root, self.model_name, entry, snap.commit, self.dataset, self.trusted
                )
            )
        except Exception as exc:
            return self._failed(
                f"v{entry['version']} cannot be loaded, keeping the old model: {exc}"
            )
        others: dict[str, ServedModel] = {}
        for v in wanted:
            e = registry.get(v)
            have = loaded.get(v)
            try:
                others[v] = (
                    have
                    if have is not None and same(have, e)
                    else load_served(
                        self.root, self.model_name, e, snap.commit, self.dataset, self.trusted
                    )
                )
            except Exception as exc:
                return self._failed(
                    f"rollout: v{v} cannot be loaded, keeping what is serving: {exc}"
                )
        old = self.holder.swap_all(new, rollout, others)
        if old is new:
            log.warning(
                "rollout now %s, registry commit %s",
                rollout.to_dict() if rollout else "none",
                (snap.commit or "-")[:12],
            )
            self.on_reload("success", self.holder.touch(snap.commit) or new)
            return "loaded"
        log.warning(
            "serving %s v%s (was %s), registry commit %s",
            self.model_name,
            new.version,
            f"v{old.version}" if old else "nothing",
            (snap.commit or "-")[:12],
        )
        self.on_reload("success", new)
        return "loaded"

    def _failed(self, reason: str) -> str:
        log.warning("reload failed: %s", reason)
        self.holder.fail(reason)
        self.on_reload("failed", None)
        return "failed"

    async def run(self, interval: float, stop: asyncio.Event) -> None:
        """Reconcile every ``interval`` seconds until ``stop`` is set (first tick at once)."""
        while not stop.is_set():
            await asyncio.to_thread(self.once)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
