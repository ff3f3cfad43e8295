"""What the routes share: created in the app's lifespan, handed to routes as a dependency."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request

from retrain.core import redact
from retrain.core.config import DatasetConfig, ServeConfig
from retrain.core.config.serving import ServingConfig
from retrain.serve.auth import Auth, LabelBudget, TokenFile
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
    # The prediction log's URL: RETRAIN_LOG_URL, RETRAIN_LOG_URL_FILE or serve.yaml (None:
    # serve.yaml's, for settings made by hand in tests).
    log_url: str | None = None
    dev_open_feedback: bool = False  # `retrain serve --dev-open-feedback`: loopback only

    @property
    def prediction_log_url(self) -> str:
        return self.log_url if self.log_url is not None else self.config.log_url

    @property
    def secrets(self) -> list[str]:
        """What must never appear in an answer or a log line (the log URL's password)."""
        return redact.secrets_of(self.prediction_log_url)

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
    writer: Any  # retrain.serve.logproc.ProcessLogWriter (the writer process), or None when off or unreachable
    log_error: str | None
    restart_needed: str | None = None  # a followed revision changed what only a restart applies
    auth: Auth = field(default_factory=lambda: Auth(TokenFile(None)))
    budget: LabelBudget = field(default_factory=lambda: LabelBudget(6000))

    def apply(self, cfg: ServingConfig, where: str) -> None:
        """Serve with a followed revision's configuration from now on: its schema (ranges,
        labels), model name, trusted types and ``serve.yaml`` limits.  The prediction log
        stays the one opened at start (``RETRAIN_LOG_URL`` or the start-up ``log_url``); a
        revision that changes it is named in ``/health`` until a restart."""
        old = self.settings
        serve = cfg.serve.model_copy(
            update={"log_url": old.config.log_url, "log_enabled": old.config.log_enabled}
        )
        from retrain.serve.predlog import LOG_URL_ENV, log_url_of

        try:
            wanted_url = log_url_of(cfg.serve)[0]
        except Exception:  # an unreadable secret file: the log opened at start stays
            wanted_url = old.prediction_log_url
        changed = []
        if wanted_url != old.prediction_log_url:
            changed.append("log_url")
        if cfg.serve.log_enabled != old.config.log_enabled:
            changed.append("log_enabled")
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
        self.batcher.max_queued_rows = serve.max_queued_rows
        self.batcher.threads = serve.threads
        self.budget.per_minute = serve.max_labels_per_minute
        if self.recorder is not None:
            self.recorder.log_inputs = serve.log_inputs

    def log_counts(self) -> tuple[int, int]:
        written = int(getattr(self.writer, "written", 0) or 0)
        dropped = int(getattr(self.writer, "dropped", 0) or 0)
        if self.recorder is not None:
            dropped += self.recorder.failed
        return written, dropped

    def recent_drops(self) -> int:
        """Rows that could not be logged within ``drops_window_seconds``."""
        window = self.settings.config.drops_window_seconds
        n = 0
        if self.writer is not None and hasattr(self.writer, "dropped_within"):
            n += int(self.writer.dropped_within(window))
        if self.recorder is not None:
            n += self.recorder.failed_within(window)
        return n

    def scrub(self, text: str) -> str:
        """``text`` fit to leave the server: no password, no URL with its secrets."""
        return redact.urls_in(redact.scrub(text, self.settings.secrets))

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
        recent = self.recent_drops()
        if recent:
            window = self.settings.config.drops_window_seconds
            out.append(
                f"prediction log: {recent} served row(s) could not be logged in the last "
                f"{window:g} s"
            )
        auth_error = self.auth.status()["error"]
        if auth_error:
            out.append(f"tokens: {auth_error}")
        return [self.scrub(p) for p in out]


def get_state(request: Request) -> ServeState:
    state: ServeState = request.app.state.serve
    return state
