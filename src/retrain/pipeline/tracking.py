"""MLflow: one run per training, one registered model version per run, aliases on promote.

The tracking URI comes from ``MLFLOW_TRACKING_URI`` or configs/release.yaml (a SQLite file
in the repository by default, so everything works offline).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from retrain.core import redact
from retrain.core.config import Config

ALIASES = ("production", "champion")


def tracking_uri(cfg: Config) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI") or cfg.release.mlflow_tracking_uri
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        uri = prefix + str((cfg.root / uri[len(prefix) :]).resolve())
    return uri


def _mlflow(cfg: Config) -> Any:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="mlflow")
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(cfg))
    return mlflow


def log_training(
    cfg: Config,
    *,
    model: Any,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    card_path: Path,
    example: Any,
    trusted_types: list[str],
) -> dict[str, str]:
    """Log a run with params, metrics and tags, log the model (skops) and register a version."""
    mlflow = _mlflow(cfg)
    mlflow.set_experiment(cfg.release.mlflow_experiment)
    with mlflow.start_run() as run:
        mlflow.log_params({k: str(v) for k, v in params.items()})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        mlflow.set_tags(tags)
        mlflow.log_artifact(str(card_path))
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            serialization_format="skops",
            skops_trusted_types=trusted_types,
            input_example=example,
            registered_model_name=cfg.release.model_name,
            pip_requirements=model_requirements(model),
        )
    version = getattr(info, "registered_model_version", None)
    return {
        "run_id": run.info.run_id,
        "model_version": str(version) if version is not None else "",
        "experiment": cfg.release.mlflow_experiment,
        "tracking_uri": _display_uri(tracking_uri(cfg)),
    }


# What loading a logged model needs, pinned to the versions that trained it.  Given
# explicitly, MLflow skips its inference, which re-imports the model in a subprocess (seconds
# per training) and picked up test tooling that skops imports (pytest, rich, psutil).
MODEL_REQUIREMENTS = ("mlflow", "scikit-learn", "skops", "numpy", "pandas", "scipy")


def model_requirements(model: Any = None) -> list[str]:
    """Pins for loading the logged model: :data:`MODEL_REQUIREMENTS` plus the distributions
    of the model's own classes (``lightgbm``, ``xgboost-cpu``: retrain.core.environment)."""
    from importlib.metadata import PackageNotFoundError, version

    from retrain.core.environment import model_distributions

    extra = model_distributions(model) if model is not None else []
    pins = []
    for dist in [*MODEL_REQUIREMENTS, *extra]:
        try:
            pins.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            pins.append(dist)
    return pins


def _display_uri(uri: str) -> str:
    """The tracking URI as it may be shown or committed: a local SQLite path is machine-
    specific (the registry stays deterministic across clones), and a server's URI loses its
    password and secret query values (``training.json``, ``registry.yaml`` and the PR body
    are in git)."""
    return "sqlite (local)" if uri.startswith("sqlite:") else redact.url(uri)


NOT_UPDATED = "MLflow not updated"


def unreachable(cfg: Config, timeout: float = 5.0) -> str | None:
    """Why the tracking server cannot be reached (None when it answers, or is not a server).

    Checked before moving aliases so that a server that is down costs seconds, not MLflow's
    retry schedule, and promote can carry on from git.
    """
    import urllib.error
    import urllib.request

    uri = tracking_uri(cfg)
    if not uri.startswith(("http://", "https://")):
        return None
    # Credentials in the URI (user:password@host) go in a header: urllib takes them for a port.
    parts = urlsplit(uri)
    userinfo, _, host = parts.netloc.rpartition("@")
    bare = urlunsplit((parts.scheme, host, parts.path.rstrip("/") + "/health", "", ""))
    request = urllib.request.Request(bare)
    if userinfo:
        token = base64.b64encode(unquote(userinfo).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # it answered: up, whatever it thinks of this path
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{type(reason).__name__}: {reason}"


def warm_client(cfg: Config) -> Future[Any]:
    """An ``MlflowClient``, made on a background thread: importing MLflow and opening its
    stores is most of a promote's time, and can overlap its git and DVC work (which wait on
    other processes and the disk).  Nothing is read or written on the server; pass the
    future to :func:`set_aliases`."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-client")
    try:
        return pool.submit(lambda: _mlflow(cfg).MlflowClient())
    finally:
        pool.shutdown(wait=False)


def set_aliases(cfg: Config, model_version: str, client: Future[Any] | None = None) -> str:
    """Point the ``production`` and ``champion`` aliases at ``model_version``.

    Returns a one-line note of what happened: the tracking server may be down, or the
    registry of this tracking store may not know the version (a machine with a different
    local store).  Git stays the source of truth; a later promote catches the aliases up.
    ``client`` is a :func:`warm_client` made earlier, if any.
    """
    name = cfg.release.model_name
    down = unreachable(cfg)
    if down:
        return (
            f"{NOT_UPDATED}: tracking server {_display_uri(tracking_uri(cfg))} is unreachable "
            f"({down}); aliases {', '.join(ALIASES)} not moved to version {model_version}, "
            "a later `retrain promote` will catch them up"
        )
    mlflow_client = client.result() if client is not None else _mlflow(cfg).MlflowClient()
    where = f"MLflow at {_display_uri(tracking_uri(cfg))}"
    try:
        mlflow_client.get_model_version(name, model_version)
        for alias in ALIASES:
            mlflow_client.set_registered_model_alias(name, alias, model_version)
    except Exception as exc:
        return f"{NOT_UPDATED}: {where} {failure(exc, name, model_version)}; aliases not moved"
    return f"MLflow aliases {', '.join(ALIASES)} -> {name} version {model_version}"


_AUTH_CODES = ("UNAUTHENTICATED", "PERMISSION_DENIED", "CUSTOMER_UNAUTHORIZED")
_MISSING_CODES = ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")
_NETWORK = ("Max retries exceeded", "Connection refused", "timed out", "Name or service not known")


def failure(exc: BaseException, name: str, model_version: str) -> str:
    """What went wrong when asking MLflow about ``name`` version ``model_version``, by its
    real cause: the credentials refused, the network, the version missing, or else the
    error itself (never a missing version for what was not)."""
    code = str(getattr(exc, "error_code", "") or "")
    status = None
    with contextlib.suppress(Exception):
        status = exc.get_http_status_code()  # type: ignore[attr-defined]
    text = " ".join(str(exc).split())[:200] or type(exc).__name__
    if code in _AUTH_CODES or status in (401, 403):
        return (
            f"refused the credentials ({code or status}); check MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)"
        )
    if code in _MISSING_CODES:
        return f"has no version {model_version} of {name!r}"
    if isinstance(exc, OSError) or any(n in text for n in _NETWORK):
        return f"could not be reached ({type(exc).__name__}: {text})"
    return f"failed ({type(exc).__name__}: {text})"


def catch_up_aliases(cfg: Config, model_version: str) -> str | None:
    """Move the aliases to ``model_version`` if they lag behind (a promote that ran while
    the tracking server was down).  None when there is nothing to do or nothing possible."""
    if unreachable(cfg):
        return None
    if all(alias_version(cfg, a) == model_version for a in ALIASES):
        return None
    note = set_aliases(cfg, model_version)
    return None if note.startswith(NOT_UPDATED) else f"caught up: {note}"


def alias_version(cfg: Config, alias: str = "production") -> str | None:
    mlflow = _mlflow(cfg)
    try:
        mv = mlflow.MlflowClient().get_model_version_by_alias(cfg.release.model_name, alias)
    except Exception:
        return None
    return str(mv.version)


def run_url(cfg: Config, run_id: str) -> str | None:
    """The run's page on the tracking server, for the PR body: without credentials (a
    reviewer signs in through the browser)."""
    uri = tracking_uri(cfg)
    if uri.startswith(("http://", "https://")):
        parts = urlsplit(uri)
        bare = urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, "", ""))
        return f"{bare.rstrip('/')}/#/experiments/runs/{run_id}"
    return None
