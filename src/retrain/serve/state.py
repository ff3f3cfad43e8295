"""What the routes share: created in the app's lifespan, handed to routes as a dependency."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request

from retrain.core.config import DatasetConfig, ServeConfig
from retrain.core.config.serving import LOG_URL_ENV, ServingConfig, with_environment
from retrain.serve.batching import Batcher
from retrain.serve.follow import Reconciler
from retrain.serve.holder import ModelHolder
from retrain.serve.recorder import Recorder
from retrain.serve.telemetry import Telemetry


@dataclass(frozen=True)
class ServeSettings:
    """Everything the app needs, read once by the entry point."""

    root: Path
    model_name: str
    dataset: DatasetConfig
    config: ServeConfig
    follow: str | None = None
    interval: float | None = None
    trusted: tuple[str, ...] = ()  # configs/model.yaml: trusted_types
    follow_path: Path | None = None  # a mounted revision (git-sync, ConfigMap) to follow

    @property
    def reconcile_interval(self) -> float:
        return self.interval if self.interval is not None else self.config.follow_interval


@dataclass
class ServeState:
    settings: ServeSettings
    holder: ModelHolder
    telemetry: Telemetry
    batcher: Batcher
    reconciler: Reconciler
    recorder: Recorder | None
    writer: Any  # retrain.serve.logwriter.LogWriter, or None when the log is off or unreachable
    log_error: str | None
    restart_needed: str | None = None  # a followed revision changed what only a restart applies

    def apply(self, cfg: ServingConfig, where: str) -> None:
        """Serve with a followed revision's configuration from now on: its schema (ranges,
        labels), model name, trusted types and ``serve.yaml`` limits.  The prediction log
        stays the one opened at start (``RETRAIN_LOG_URL`` or the start-up ``log_url``); a
        revision that changes it is named in ``/health`` until a restart."""
        old = self.settings
        serve = cfg.serve.model_copy(
            update={"log_url": old.config.log_url, "log_enabled": old.config.log_enabled}
        )
        wanted = with_environment(cfg.serve)
        changed = [k for k in ("log_url", "log_enabled") if getattr(wanted, k) != getattr(serve, k)]
        self.restart_needed = (
            f"{where}: serve.yaml changes {' and '.join(changed)}; a restart applies it"
            f" ({LOG_URL_ENV} overrides log_url)"
            if changed
            else None
        )
        if changed:
            logging.getLogger("retrain.serve").warning("%s", self.restart_needed)
        self.settings = dataclasses.replace(
            old,
            model_name=cfg.model_name,
            dataset=cfg.dataset,
            config=serve,
            trusted=cfg.trusted_types,
        )
        self.batcher.max_rows = serve.batch_max_rows
        self.batcher.max_wait = serve.batch_wait_ms / 1000.0
        if self.recorder is not None:
            self.recorder.log_inputs = serve.log_inputs

    def log_counts(self) -> tuple[int, int]:
        written = int(getattr(self.writer, "written", 0) or 0)
        dropped = int(getattr(self.writer, "dropped", 0) or 0)
        if self.recorder is not None:
            dropped += self.recorder.failed
        return written, dropped

    def problems(self) -> list[str]:
        out = []
        if self.holder.problem:
            out.append(self.holder.problem)
        if self.log_error:
            out.append(f"prediction log unavailable: {self.log_error}")
        if self.restart_needed:
            out.append(self.restart_needed)
        if getattr(self.writer, "down", False):
            out.append(f"prediction log down: {getattr(self.writer, 'last_error', '')}")
        _, dropped = self.log_counts()
        if dropped:
            out.append(f"prediction log: {dropped} served row(s) could not be logged")
        return out


def get_state(request: Request) -> ServeState:
    state: ServeState = request.app.state.serve
    return state
