"""Config after the merge: ``release.yaml`` (with its ``rollout``) and ``serve.yaml``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from retrain.core.config.base import Strict, load_model

_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class RolloutConfig(Strict):
    """``rollout:`` in ``configs/release.yaml``: how a passing candidate reaches traffic.

    ``direct`` merges make it production at once (with a watch window of health checks);
    ``shadow`` proposes it as a shadow (answers logged, never returned); ``canary`` proposes
    it at the first of ``steps`` (percent of requests) and ``retrain monitor`` advances,
    holds or rolls back from the prediction log.  See README "Safe rollouts".
    """

    class Analysis(Strict):
        """Canary vs production, per step, on the rows logged since the step began."""

        min_requests: int = Field(default=200, ge=1, description="canary requests per step")
        min_labels: int = Field(default=50, ge=0, description="labelled canary rows per step")
        max_error_rate_increase: float = Field(default=0.01, ge=0, le=1)
        max_p95_latency_ratio: float = Field(default=1.5, ge=1, allow_inf_nan=False)
        min_metric_change: float = Field(
            default=-0.02,
            allow_inf_nan=False,
            description="canary minus production on the live primary metric (oriented: "
            "higher is better); the interval must clear it to advance, and lie wholly below "
            "it to roll back",
        )
        confidence: float = Field(default=0.95, gt=0.5, lt=1)
        n_resamples: int = Field(default=1000, ge=100, le=100_000)
        seed: int = Field(default=0, ge=0)
        max_labelled_rows: int = Field(
            default=10_000,
            ge=100,
            le=1_000_000,
            description="labelled rows per version and role the live metric and its "
            "bootstrap use; past it a seeded sample (the interval widens by about "
            "sqrt(labels / this)); the bootstrap takes about 32 bytes x n_resamples x this",
        )

    class Health(Strict):
        """Absolute health of a directly promoted version inside its watch window."""

        min_requests: int = Field(default=50, ge=1)
        max_error_rate: float = Field(default=0.05, ge=0, le=1)
        max_p95_latency_ms: float = Field(default=250.0, gt=0, allow_inf_nan=False)
        min_metric: float | None = Field(
            default=None,
            description="live primary metric floor (needs min_labels labels); with "
            "max_metric_drop the stricter of the two floors applies",
        )
        max_metric_drop: float | None = Field(
            default=0.1,
            ge=0,
            description="a floor at the version's holdout value minus this",
        )
        min_labels: int = Field(default=30, ge=1)

    class Challenger(Strict):
        """A shadow beating production on the same live requests (paired bootstrap)."""

        min_delta: float = Field(default=0.01, ge=0, allow_inf_nan=False)
        min_labels: int = Field(default=200, ge=1)
        window: str = Field(default="24h", description="shadow runs at least this long")

        @field_validator("window")
        @classmethod
        def _window(cls, value: str) -> str:
            duration_seconds(value)
            return value

    strategy: Literal["direct", "shadow", "canary"] = "direct"
    steps: list[int] = Field(default_factory=lambda: [5, 25, 50])
    analysis: Analysis = Analysis()
    health: Health = Health()
    challenger: Challenger = Challenger()
    watch_window: str = Field(default="24h", description="after a direct promotion, e.g. 30m")
    auto_rollback: Literal["pr", "push"] = "pr"

    @field_validator("steps")
    @classmethod
    def _steps(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("expected at least one weight, e.g. [5, 25, 50]")
        for w in value:
            if not 1 <= w <= 99:
                raise ValueError(f"each step is a percent from 1 to 99 (got {w})")
        if any(b <= a for a, b in zip(value, value[1:], strict=False)):
            raise ValueError(f"steps must increase (got {value})")
        return value

    @field_validator("watch_window")
    @classmethod
    def _watch(cls, value: str) -> str:
        duration_seconds(value)
        return value

    @property
    def watch_window_seconds(self) -> float:
        return duration_seconds(self.watch_window)


def duration_seconds(text: str) -> float:
    """``"90s"``, ``"30m"``, ``"24h"``, ``"7d"`` -> seconds; anything else is a ValueError."""
    t = str(text).strip()
    unit = t[-1:].lower()
    try:
        value = float(t[:-1]) if unit in _DURATION else float("nan")
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"expected a duration like 90s, 30m, 24h or 7d (got {text!r})")
    return value * _DURATION[unit]


class ReleaseConfig(Strict):
    """Registry, tracking and deployment settings (``configs/release.yaml``)."""

    model_name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")
    retention: int = Field(default=20, ge=1, description="keep the last N registry entries")
    mlflow_experiment: str = "retrain"
    mlflow_tracking_uri: str = Field(
        default="sqlite:///mlflow.db",
        description="used when MLFLOW_TRACKING_URI is not set; relative paths are repo-relative",
    )
    deploy_command: list[str] | None = Field(
        default=None,
        description="argv run after promote/rollback with RETRAIN_* variables in its env",
    )
    known_limitations: list[str] = Field(default_factory=list)
    base_branch: str = "main"
    rollout: RolloutConfig = RolloutConfig()


class ServeConfig(Strict):
    """``configs/serve.yaml`` (optional): ``retrain serve`` and its prediction log."""

    log_url: str = Field(
        default="sqlite:///.retrain/predictions.db",
        description="prediction log: sqlite:///path (repo-relative) or postgresql://...",
    )
    log_inputs: bool = Field(default=False, description="store each row's inputs, not only a hash")
    log_enabled: bool = Field(default=True, description="false: log nothing (benchmarks only)")
    log_retention: str | None = Field(
        default="30d",
        description="`retrain log prune` deletes served rows (and their labels) older than "
        "this, e.g. 90d; never the rows monitor still judges; null keeps everything",
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="larger bodies get 413")
    max_rows: int = Field(default=10_000, ge=1, description="rows per request; more get 413")
    batch_max_rows: int = Field(default=512, ge=1, description="rows per model call")
    batch_wait_ms: float = Field(
        default=5.0,
        ge=0,
        le=1000,
        allow_inf_nan=False,
        description="how long a batch waits for the concurrent requests it expects",
    )
    follow_interval: float = Field(
        default=10.0, gt=0, allow_inf_nan=False, description="seconds between reconciles"
    )
    threads: int | None = Field(
        default=1,
        ge=1,
        le=1024,
        description="native threads (OpenMP, BLAS) per model call; null: the libraries' "
        "default. The latency gate measures under the same limit",
    )
    follow_jitter: float = Field(
        default=0.2,
        ge=0,
        lt=1,
        allow_inf_nan=False,
        description="each interval is moved by up to this share of it, at random",
    )
    keep_artifacts: int = Field(
        default=3, ge=0, description="local artifact copies kept beyond production and rollout"
    )
    feedback_wait_s: float = Field(
        default=3.0,
        ge=0,
        le=60,
        allow_inf_nan=False,
        description="how long feedback waits for a row another replica is still logging",
    )
    # Trust boundary (README "Serving": tokens). Tokens come from RETRAIN_TOKENS_FILE, never
    # from this committed file.
    require_token_for_predictions: bool = Field(
        default=False, description="true: /invocations and /predict need a bearer token too"
    )
    max_labels_per_request: int = Field(
        default=1000, ge=1, description="labels in one /feedback call; more get 413"
    )
    max_labels_per_minute: int = Field(
        default=6000, ge=1, description="labels one token may post per minute; more get 429"
    )
    max_concurrent_requests: int = Field(
        default=64, ge=1, description="requests in progress at once; more get 503 Retry-After"
    )
    max_queued_rows: int = Field(
        default=20_000, ge=1, description="rows waiting for the model; more get 503 Retry-After"
    )
    max_log_backlog_rows: int = Field(
        default=100_000,
        ge=1,
        description="served rows waiting to be logged; more get 503 Retry-After",
    )
    max_json_depth: int = Field(
        default=32, ge=4, le=500, description="nesting of a JSON body; deeper gets 400"
    )
    openapi: bool = Field(default=False, description="true: serve /docs and /openapi.json")
    drops_window_seconds: float = Field(
        default=300.0,
        gt=0,
        allow_inf_nan=False,
        description="/health is degraded while log rows were dropped within this window",
    )

    @field_validator("log_retention")
    @classmethod
    def _retention(cls, value: str | None) -> str | None:
        if value is not None and duration_seconds(value) <= 0:
            raise ValueError("expected a duration above zero like 30d, or null")
        return value

    @property
    def log_retention_seconds(self) -> float | None:
        return None if self.log_retention is None else duration_seconds(self.log_retention)

    @model_validator(mode="after")
    def _queue_holds_a_request(self) -> ServeConfig:
        if self.max_queued_rows < self.max_rows:
            raise ValueError(
                f"max_queued_rows ({self.max_queued_rows}) must be >= max_rows "
                f"({self.max_rows}), or the largest request could never be queued"
            )
        return self


def load_serve_config(root: Path | str = ".") -> ServeConfig:
    """``configs/serve.yaml``, or the defaults when the file is absent."""
    result: ServeConfig = load_model(ServeConfig, Path(root).resolve(), "serve")
    return result


LOG_URL_ENV = "RETRAIN_LOG_URL"
LOG_URL_FILE_ENV = "RETRAIN_LOG_URL_FILE"


def log_url_of(serve: ServeConfig, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """``(log URL, where it came from)``: ``RETRAIN_LOG_URL``, else the first line of the
    file named by ``RETRAIN_LOG_URL_FILE`` (a mounted secret), else ``configs/serve.yaml``
    ``log_url``.  A password belongs in the first two, never in the committed file.  Every
    command that opens the log takes it from here (the reading commands, the server, and
    ``retrain run``'s check for a log that was never written, which imports no SQLAlchemy)."""
    from retrain.core.errors import BadInput

    env = os.environ if environ is None else environ
    if env.get(LOG_URL_ENV, "").strip():
        return env[LOG_URL_ENV].strip(), LOG_URL_ENV
    path = env.get(LOG_URL_FILE_ENV, "").strip()
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise BadInput(f"{LOG_URL_FILE_ENV}={path}: cannot be read ({reason})") from None
        if not text:
            raise BadInput(f"{LOG_URL_FILE_ENV}={path}: empty; expected the log's URL")
        return text.splitlines()[0].strip(), LOG_URL_FILE_ENV
    return serve.log_url, "configs/serve.yaml"


def sqlite_log_file(url: str, root: Path | str) -> Path | None:
    """The file of a ``sqlite:///path`` log (relative to ``root`` unless absolute:
    ``sqlite:////abs/p.db``); None for another database.  A SQLite URL naming no file is
    a ValueError."""
    if not url.startswith("sqlite:///"):
        return None
    rest = url.removeprefix("sqlite:///")
    if not rest or rest.startswith(":memory:"):
        raise ValueError(f"{url!r}: expected a file, e.g. sqlite:///.retrain/p.db")
    path = Path(rest)
    return path if path.is_absolute() else Path(root) / path
