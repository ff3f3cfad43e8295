"""What the routes share: created in the app's lifespan, handed to routes as a dependency."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request

from retrain.core.config import DatasetConfig, ServeConfig
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
        if getattr(self.writer, "down", False):
            out.append(f"prediction log down: {getattr(self.writer, 'last_error', '')}")
        _, dropped = self.log_counts()
        if dropped:
            out.append(f"prediction log: {dropped} served row(s) could not be logged")
        return out


def get_state(request: Request) -> ServeState:
    state: ServeState = request.app.state.serve
    return state
