"""The software a model was trained with, and how the running software differs from it.

A model trained with one scikit-learn and loaded by another may load and answer differently
(or not load). The train stage records the Python version, the versions of the libraries
the model depends on and the sha256 of ``uv.lock`` (the pinned environment); the registry
entry and the model card carry that record; ``retrain predict`` and ``retrain serve``
compare it with what is running and warn on a difference. They still answer: the lock, not
this check, is what keeps the two equal.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

LOCK_FILE = "uv.lock"
# What a scikit-learn model saved with skops depends on; the estimator's own distribution
# (xgboost, lightgbm, …) is added when it is not one of these.
LIBRARIES = ("scikit-learn", "numpy", "scipy", "pandas", "skops")
# Top-level modules of LIBRARIES and of Python itself, and this package's own.
KNOWN_MODULES = {"sklearn", "numpy", "scipy", "pandas", "skops", "builtins", "retrain"}


def version_of(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None when it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def lock_sha256(root: Path) -> str | None:
    """sha256 of ``root/uv.lock``, or None when the project has no lock."""
    path = Path(root) / LOCK_FILE
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _objects(model: Any) -> Iterable[Any]:
    """The model and its parts: a Pipeline's steps, a ColumnTransformer's transformers,
    a meta-estimator's ``estimator``/``estimators`` (bounded depth)."""
    stack: list[tuple[Any, int]] = [(model, 0)]
    while stack:
        obj, depth = stack.pop()
        yield obj
        if depth >= 6:
            continue
        for attr in ("steps", "transformers", "transformers_", "estimators"):
            parts = getattr(obj, attr, None)
            if isinstance(parts, list):
                for part in parts:
                    inner = part[1] if isinstance(part, tuple) and len(part) >= 2 else part
                    stack.append((inner, depth + 1))
        for attr in ("estimator", "base_estimator", "final_estimator"):
            inner = getattr(obj, attr, None)
            if inner is not None and not isinstance(inner, str):
                stack.append((inner, depth + 1))


def model_distributions(model: Any) -> list[str]:
    """Distributions (besides :data:`LIBRARIES`) whose classes make up ``model``, sorted.

    A class of the fork's own code (not an installed distribution) names none.
    """
    tops = {type(obj).__module__.split(".")[0] for obj in _objects(model)} - KNOWN_MODULES
    if not tops:
        return []  # the usual case, and a quick one: scanning installed distributions is not
    owners = metadata.packages_distributions()
    out: set[str] = set()
    for top in tops:
        for dist in owners.get(top, []):
            name = metadata.metadata(dist)["Name"] or dist
            if name.lower() not in LIBRARIES:
                out.add(name)
    return sorted(out)


def capture(root: Path, model: Any = None) -> dict[str, Any]:
    """The record of the running environment for a model trained now under ``root``."""
    names = [*LIBRARIES, *(model_distributions(model) if model is not None else [])]
    return {
        "python": platform.python_version(),
        "packages": {n: v for n in names if (v := version_of(n)) is not None},
        "lock_sha256": lock_sha256(root),
    }


def differences(recorded: Mapping[str, Any] | None) -> list[str]:
    """One line per way the running Python and libraries differ from ``recorded``.

    Python counts by major.minor (a patch release does not change a saved model); each
    recorded library by its exact version. A record without an environment (older
    entries) gives nothing to compare, so no difference.
    """
    if not recorded:
        return []
    out = []
    py = recorded.get("python")
    running_py = platform.python_version()
    if isinstance(py, str) and py.split(".")[:2] != running_py.split(".")[:2]:
        out.append(f"Python {py} (model) vs {running_py} (running)")
    for name, version in sorted((recorded.get("packages") or {}).items()):
        now = version_of(name)
        if now != version:
            out.append(f"{name} {version} (model) vs {now or 'not installed'} (running)")
    return out


def warning(version: str, diffs: list[str]) -> str:
    """The one-line warning for a model whose environment differs from the running one."""
    return (
        f"model {version} was trained with other library versions: {'; '.join(diffs)}. "
        "It still answers, but its predictions may differ; install the locked environment "
        "(make install) or retrain"
    )
