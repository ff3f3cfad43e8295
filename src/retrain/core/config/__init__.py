"""Configuration: declared once as typed models, validated on load.

The files under ``configs/`` are read here and nowhere else.  Each file maps to one model;
an unknown key, a wrong type or an impossible threshold raises :class:`ConfigError` with one
line naming the file and the key, e.g.::

    configs/gates.yaml: improvement.min_delta: must be >= 0 (got -0.1)

The models live by the job they configure: ``data`` (dataset, model, triggers), ``decide``
(gates, drift), ``release`` (release with its rollout, serve); ``base`` holds the strict base
model and the YAML reader, ``load`` the whole :class:`Config`.  Import from here.
"""

from __future__ import annotations

from retrain.core.config.base import (
    CONFIG_DIR,
    Strict,
    load_model,
    read_yaml,
)
from retrain.core.config.data import (
    BUILTIN_ESTIMATORS,
    ENGINES,
    WARM_STARTABLE_BUILTINS,
    DaskSettings,
    DatasetConfig,
    FeatureSpec,
    ModelConfig,
    TrainingMode,
    TriggersConfig,
    dask_address_problem,
)
from retrain.core.config.decide import (
    ColumnThresholds,
    DriftConfig,
    GatesConfig,
)
from retrain.core.config.load import (
    Config,
    load_config,
)
from retrain.core.config.release import (
    LOG_URL_ENV,
    LOG_URL_FILE_ENV,
    ReleaseConfig,
    RolloutConfig,
    ServeConfig,
    duration_seconds,
    load_serve_config,
    log_url_of,
    sqlite_log_file,
)

__all__ = [
    "CONFIG_DIR",
    "Strict",
    "read_yaml",
    "load_model",
    "FeatureSpec",
    "DatasetConfig",
    "BUILTIN_ESTIMATORS",
    "ENGINES",
    "DaskSettings",
    "dask_address_problem",
    "WARM_STARTABLE_BUILTINS",
    "TrainingMode",
    "ModelConfig",
    "TriggersConfig",
    "GatesConfig",
    "ColumnThresholds",
    "DriftConfig",
    "RolloutConfig",
    "duration_seconds",
    "ReleaseConfig",
    "ServeConfig",
    "load_serve_config",
    "LOG_URL_ENV",
    "LOG_URL_FILE_ENV",
    "log_url_of",
    "sqlite_log_file",
    "Config",
    "load_config",
]
