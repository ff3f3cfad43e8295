"""``retrain init``: turn a fork of the template into a project for your own data.

One labelled file (CSV or Parquet) and the name of its target column are enough:

- each other column's type (numeric or categorical) and a sane range are inferred, columns
  that look like identifiers are ignored, missing values are allowed where the file has
  them, and the task (classification or regression) is inferred from the target;
- ``configs/dataset.yaml`` is written, and ``model.yaml``, ``gates.yaml``, ``triggers.yaml``
  and ``release.yaml`` are adjusted where the data asks for it; ``registry.yaml`` becomes an
  empty registry for the model, and the artifact in ``dvc.yaml`` is renamed;
- the file is split into batches (in time order when there is a time column) and a frozen
  holdout (the newest share, or a seeded random share without time), and ``dvc add data``
  records them.

Everything is checked before anything is written: a missing or constant target, a file that
cannot be read, a bad flag, or a registry that already has versions (unless ``force``) is
one :class:`BadInput` line and nothing changes.

The package is cut by job: ``infer`` (what the data says), ``configs`` (the files it writes,
as text edits) and ``command`` (the verb, checks first); the names are re-exported here.
"""

from __future__ import annotations

from retrain.onboard.command import (
    HOLDOUT_RANGE,
    MIN_ROWS,
    NAME_PATTERN,
    InitResult,
    init,
    next_commands,
)
from retrain.onboard.configs import LIVE_THRESHOLDS, UNIT_THRESHOLDS
from retrain.onboard.infer import MAX_CLASSES, SEED, infer_features, infer_task, split

__all__ = [
    "HOLDOUT_RANGE",
    "LIVE_THRESHOLDS",
    "MAX_CLASSES",
    "MIN_ROWS",
    "NAME_PATTERN",
    "SEED",
    "UNIT_THRESHOLDS",
    "InitResult",
    "infer_features",
    "infer_task",
    "init",
    "next_commands",
    "split",
]
