"""The reconcile loop: serve what ``registry.yaml`` says, the pull model of GitOps.

Every tick reads one revision from the source (:mod:`retrain.serve.source`: the working tree,
a git ref fetched first, or a mounted directory): its ``registry.yaml``, its serving
configuration (``configs/``: the dataset's schema and ranges, ``trusted_types``,
``serve.yaml``) and its code (``model.py``).  A version is always loaded with the configs and
code of the revision that names it, so a merged MAJOR version with new features is served
with its own range checks, and a newly trusted type loads without a restart.  When
``production`` (or its artifact, or the rollout) differs from what serves, the new models are
loaded off the request path and swapped in together; any failure (unreadable registry, a
config error, an artifact that cannot be fetched or verified) keeps what is serving and is
counted.  After a swap, artifacts no longer needed are evicted (:mod:`retrain.serve.evict`).
Ticks are spaced by the interval with a random jitter, so replicas do not fetch in step.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from retrain.core import registry as reg
from retrain.core.config import DatasetConfig
from retrain.core.config.serving import ServingConfig, load_serving_config
from retrain.serve import evict, replicas
from retrain.serve.holder import ModelHolder, ServedModel, load_served
from retrain.serve.inputs import InputSchema
from retrain.serve.source import Revision, Source

log = logging.getLogger("retrain.serve")


def forget_modules_outside(code_root: Path, earlier: set[Path]) -> list[str]:
    """Drop from ``sys.modules`` the modules imported from an earlier revision's directory,
    so the next load imports the fork's code (``model.py``) of ``code_root``.  Models already
    loaded keep the classes they were built with."""
    new = code_root.resolve()
    old = [p.resolve() for p in earlier if p.resolve() != new]
    gone = []
    for name, mod in list(sys.modules.items()):
        origin = getattr(mod, "__file__", None)
        if not origin:
            continue
        path = Path(origin)
        if any(path.is_relative_to(o) for o in old):
            del sys.modules[name]
            gone.append(name)
    return gone


class Reconciler:
    """One tick: read a revision, compare with what serves, load and swap if needed."""

    def __init__(
        self,
        root: Path,
        source: Source,
        holder: ModelHolder,
        dataset: DatasetConfig,
        model_name: str,
        trusted: tuple[str, ...] = (),
        on_reload: Callable[[str, ServedModel | None], None] = lambda outcome, m: None,
        on_relabel: Callable[[ServedModel], None] = lambda m: None,
        on_config: Callable[[ServingConfig, Revision], None] = lambda cfg, rev: None,
        keep_artifacts: int = evict.KEEP_LAST,
    ) -> None:
        self.root = root
        self.source = source
        self.holder = holder
        self.dataset = dataset
        self.model_name = model_name
        self.trusted = trusted
        self.on_reload = on_reload
        self.on_relabel = on_relabel
        self.on_config = on_config
        self.keep_artifacts = keep_artifacts
        self.serving: ServingConfig | None = None  # of the revision applied last
        self._serving_key: str | None = None
        self._code_roots: set[Path] = set()

    def _configure(self, rev: Revision) -> ServingConfig:
        """The revision's serving configuration (read again only when its files changed)."""
        if self.serving is not None and rev.key == self._serving_key:
            return self.serving
        try:
            cfg = load_serving_config(rev.root)
        except Exception as exc:
            raise RuntimeError(f"{rev.where}: its configs cannot be used: {exc}") from None
        self.serving, self._serving_key = cfg, rev.key
        self.dataset, self.model_name = cfg.dataset, cfg.model_name
        self.trusted = cfg.trusted_types
        self.keep_artifacts = cfg.serve.keep_artifacts
        self.on_config(cfg, rev)
        return cfg

    def _load(self, entry: reg.RegistryEntry, rev: Revision) -> ServedModel:
        if rev.root not in self._code_roots:
            forget_modules_outside(rev.root, self._code_roots)
            self._code_roots.add(rev.root)
        return load_served(
            self.root,
            self.model_name,
            entry,
            rev.commit,
            self.dataset,
            self.trusted,
            code_root=rev.root,
        )

    def once(self) -> str:
        """``"unchanged"``, ``"loaded"`` or ``"failed"`` (the reason is on the holder)."""
        try:
            rev = self.source.read()
        except Exception as exc:
            return self._failed(f"cannot read the registry from {self.source.description}: {exc}")
        try:
            self._configure(rev)
            registry = reg.parse_text(rev.text, rev.where, expected_model=self.model_name)
            entry = registry.production_entry
            if entry is None:
                raise RuntimeError(f"{rev.where}: production: no version is in production")
        except Exception as exc:
            return self._failed(f"cannot read the registry from {self.source.description}: {exc}")
        cur, cur_rollout, cur_others = self.holder.snapshot()
        loaded = {m.version: m for m in [*cur_others.values(), *([cur] if cur else [])]}

        def same(model: ServedModel | None, e: reg.RegistryEntry) -> bool:
            return model is not None and (model.version, model.sha256) == (
                e.version,
                e.artifact.sha256,
            )

        def checked(model: ServedModel, e: reg.RegistryEntry) -> ServedModel:
            """A model kept across revisions, checked against this revision's schema."""
            schema = InputSchema.of(e, self.dataset)
            return model if model.schema == schema else dataclasses.replace(model, schema=schema)

        rollout = registry.rollout
        wanted = sorted(rollout.versions()) if rollout else []
        if (
            same(cur, entry)
            and rollout == cur_rollout
            and all(same(cur_others.get(v), registry.get(v)) for v in wanted)
        ):
            assert cur is not None
            kept = checked(cur, entry)
            kept_others = {v: checked(cur_others[v], registry.get(v)) for v in wanted}
            if kept is not cur or any(kept_others[v] is not cur_others[v] for v in wanted):
                # Same models, new ranges (dataset.yaml changed): swap the checks in.
                self.holder.swap_all(kept, rollout, kept_others)
            relabelled = self.holder.touch(rev.commit)
            if relabelled is not None:
                self.on_relabel(relabelled)
            return "unchanged"
        # Load everything that is new off the request path, then swap it all at once; any
        # failure keeps serving what was there (production and rollout alike).
        try:
            new = (
                checked(cur, entry)
                if same(cur, entry) and cur is not None
                else self._load(entry, rev)
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
                    checked(have, e) if have is not None and same(have, e) else self._load(e, rev)
                )
            except Exception as exc:
                return self._failed(
                    f"rollout: v{v} cannot be loaded, keeping what is serving: {exc}"
                )
        old = self.holder.swap_all(new, rollout, others)
        self._evict(registry)
        if old is not None and old.version == new.version and old.sha256 == new.sha256:
            log.warning(
                "rollout now %s, registry commit %s",
                rollout.to_dict() if rollout else "none",
                (rev.commit or "-")[:12],
            )
            self.on_reload("success", self.holder.touch(rev.commit) or new)
            return "loaded"
        log.warning(
            "serving %s v%s (was %s), registry commit %s",
            self.model_name,
            new.version,
            f"v{old.version}" if old else "nothing",
            (rev.commit or "-")[:12],
        )
        self.on_reload("success", new)
        return "loaded"

    def _evict(self, registry: reg.Registry) -> None:
        try:
            gone = evict.evict_artifacts(self.root, registry, keep_last=self.keep_artifacts)
        except OSError as exc:  # never a reason to stop serving
            log.warning("artifact eviction failed: %s", exc)
            return
        if gone:
            log.warning("evicted %d artifact(s) no longer in use", len(gone))

    def _failed(self, reason: str) -> str:
        log.warning("reload failed: %s", reason)
        self.holder.fail(reason)
        self.on_reload("failed", None)
        return "failed"

    async def run(
        self,
        interval: float | Callable[[], float],
        stop: asyncio.Event,
        jitter: float | Callable[[], float] = 0.0,
    ) -> None:
        """Reconcile every ``interval`` seconds (± ``jitter`` of it, at random) until ``stop``
        is set; the first tick at once.  Either may be a function, read before each pause
        (a followed revision's ``serve.yaml`` may change them)."""
        while not stop.is_set():
            await asyncio.to_thread(self.once)
            every = interval() if callable(interval) else interval
            share = jitter() if callable(jitter) else jitter
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=replicas.jittered(every, share))
