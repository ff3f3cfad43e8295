"""registry.yaml: the source of truth for which model is in production.

Written by the tool, reviewed by humans in PR diffs.  Output is deterministic (fixed key
order, no timestamps other than the entry's own ``created``) so a bump PR changes only
``production`` and one appended entry.  A rewrite is byte-identical to what was read.

The entries are typed records (``registry_entry``), the ``rollout`` block is
``rollout_state``; both are re-exported here, so ``retrain.core.registry`` stays the one
import for all of it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from retrain.core import versioning
from retrain.core.errors import RegistryError
from retrain.core.registry_entry import (
    ENTRY_KEYS,
    MD5,
    REQUIRED_ENTRY_KEYS,
    SHA256,
    ArtifactRef,
    ChurnRecord,
    DataRecord,
    EngineRecord,
    EnvironmentRecord,
    GateOutcome,
    GatesRecord,
    MetricsRecord,
    MlflowRecord,
    ReasonRecord,
    Record,
    RegistryEntry,
    SchemaRecord,
    ordered_entry,
)
from retrain.core.rollout_state import (
    CANARY_KEYS,
    ROLLOUT_KEYS,
    Canary,
    Rollout,
    parse_rollout,
)

__all__ = [
    "CANARY_KEYS",
    "ENTRY_KEYS",
    "MD5",
    "REGISTRY_FILE",
    "REQUIRED_ENTRY_KEYS",
    "ROLLOUT_KEYS",
    "SHA256",
    "TOP_KEYS",
    "ArtifactRef",
    "Canary",
    "ChurnRecord",
    "DataRecord",
    "EngineRecord",
    "EnvironmentRecord",
    "GateOutcome",
    "GatesRecord",
    "MetricsRecord",
    "MlflowRecord",
    "ReasonRecord",
    "Record",
    "Registry",
    "RegistryEntry",
    "Rollout",
    "SchemaRecord",
    "dumps",
    "load",
    "ordered_entry",
    "parse_rollout",
    "parse_text",
    "save",
    "with_rollout",
    "write_atomic",
]

REGISTRY_FILE = "registry.yaml"
TOP_KEYS = ("model", "production", "rollout", "versions")


class Registry(BaseModel):
    """The whole file: the model's name, the version in production, the entries oldest first."""

    model_config = ConfigDict(extra="forbid")

    model: str
    production: str | None = None
    versions: list[RegistryEntry] = Field(default_factory=list)
    rollout: Rollout | None = None  # what besides production gets traffic (DESIGN.md §12)

    # ------------------------------------------------------------------ queries
    def get(self, version: str) -> RegistryEntry:
        for entry in self.versions:
            if entry.version == version:
                return entry
        raise RegistryError(f"{REGISTRY_FILE}: no version {version!r} is registered")

    def has(self, version: str) -> bool:
        return any(e.version == version for e in self.versions)

    @property
    def latest(self) -> str | None:
        return self.versions[-1].version if self.versions else None

    @property
    def production_entry(self) -> RegistryEntry | None:
        return self.get(self.production) if self.production else None

    # ------------------------------------------------------------------ changes
    def with_new_version(
        self,
        entry: RegistryEntry | dict[str, Any],
        *,
        promote: bool,
        retention: int,
        keep: set[str],
    ) -> Registry:
        """A new registry with ``entry`` appended (and made production when ``promote``).

        Retention keeps the last ``retention`` entries plus every version in ``keep`` (the
        versions that were ever in production) and the production version.
        """
        entry = RegistryEntry.coerce(entry)
        if self.has(entry.version):
            raise RegistryError(f"{REGISTRY_FILE}: version {entry.version} already exists")
        if self.latest and not versioning.is_newer(entry.version, self.latest):
            raise RegistryError(
                f"{REGISTRY_FILE}: new version {entry.version} is not above {self.latest}"
            )
        versions = [*self.versions, entry]
        production = entry.version if promote else self.production
        protected = set(keep) | {production} if production else set(keep)
        protected |= self.rollout.versions() if self.rollout else set()
        if len(versions) > retention:
            cut = len(versions) - retention
            versions = [v for i, v in enumerate(versions) if i >= cut or v.version in protected]
        return Registry(
            model=self.model, production=production, versions=versions, rollout=self.rollout
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "production": self.production}
        if self.rollout is not None and not self.rollout.empty:
            out["rollout"] = self.rollout.to_dict()
        out["versions"] = [e.to_dict() for e in self.versions]
        return out


_YAML_BREAKS = ("\x85", "\u2028", "\u2029")


def dumps(registry: Registry) -> str:
    header = (
        "# Model registry: written by `retrain`, reviewed in pull requests.\n"
        "# `production` names the version serving now. Merging a retrain PR promotes;\n"
        "# `git revert` of that merge rolls back. Do not edit by hand.\n"
    )
    doc = registry.to_dict()
    body = yaml.safe_dump(
        doc, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100
    )
    if any(ch in body for ch in _YAML_BREAKS):
        # PyYAML writes these line breaks raw inside quotes with allow_unicode, and reads
        # them back folded to a space: escape everything rather than change a value.
        body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=100)
    return header + body


def parse_text(
    text: str, where: str = REGISTRY_FILE, *, expected_model: str | None = None
) -> Registry:
    """Parse and check registry text; any inconsistency is one :class:`RegistryError` line."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise RegistryError(f"{where}: not valid YAML{line}") from None
    if not isinstance(doc, dict):
        raise RegistryError(f"{where}: expected a mapping with keys {list(TOP_KEYS)}")
    unknown = sorted(set(doc) - set(TOP_KEYS))
    if unknown:
        raise RegistryError(f"{where}: unknown key(s) {unknown}; expected {list(TOP_KEYS)}")
    model = doc.get("model")
    if not isinstance(model, str) or not model:
        raise RegistryError(f"{where}: model: expected the model's name")
    if expected_model is not None and model != expected_model:
        raise RegistryError(
            f"{where}: model: {model!r} does not match configs/release.yaml model_name "
            f"{expected_model!r}"
        )
    versions = doc.get("versions") or []
    if not isinstance(versions, list):
        raise RegistryError(f"{where}: versions: expected a list of entries")
    seen: set[str] = set()
    previous = None
    entries: list[RegistryEntry] = []
    for i, raw in enumerate(versions):
        at = f"{where}: versions[{i}]"
        if not isinstance(raw, dict):
            raise RegistryError(f"{at}: expected a mapping")
        for key in REQUIRED_ENTRY_KEYS:
            if key not in raw:
                raise RegistryError(f"{at}: missing key {key!r}")
        parsed = versioning.parse(raw["version"], f"{at}.version")
        if raw["version"] in seen:
            raise RegistryError(f"{at}.version: duplicate version {raw['version']}")
        if previous is not None and parsed <= previous:
            raise RegistryError(
                f"{at}.version: {raw['version']} is not above the entry before it ({previous}); "
                "versions only go up, newest last"
            )
        seen.add(raw["version"])
        previous = parsed
        try:
            entries.append(RegistryEntry.model_validate(raw))
        except ValidationError as exc:
            raise _entry_error(at, exc) from None
    production = doc.get("production")
    if production is not None:
        if not isinstance(production, str):
            raise RegistryError(f"{where}: production: expected a version string or null")
        versioning.parse(production, f"{where}: production")
        if production not in seen:
            raise RegistryError(f"{where}: production: {production} names no entry in versions")
    rollout = parse_rollout(doc.get("rollout"), where, seen, production)
    return Registry(model=model, production=production, versions=entries, rollout=rollout)


def _entry_error(at: str, err: ValidationError) -> RegistryError:
    """The first validation error as one line naming the key, e.g.
    ``registry.yaml: versions[0].artifact.sha256: expected 64 lowercase hex digits, got 'abc'``."""
    first = err.errors()[0]
    loc = list(first["loc"])

    def path(parts: list[Any]) -> str:
        return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)

    if first["type"] == "missing":
        return RegistryError(f"{at}{path(loc[:-1])}: missing key {loc[-1]!r}")
    msg = first["msg"]
    if first["type"] in ("model_type", "dict_type"):
        msg = "expected a mapping"
    elif first["type"] != "hex_digest" and not isinstance(first.get("input"), dict | list):
        msg = f"{msg} (got {first.get('input')!r})"
    return RegistryError(f"{at}{path(loc)}: {msg}")


def load(root: Path, *, expected_model: str | None = None) -> Registry:
    path = Path(root) / REGISTRY_FILE
    if not path.is_file():
        raise RegistryError(f"{REGISTRY_FILE}: file not found")
    return parse_text(path.read_text(encoding="utf-8"), expected_model=expected_model)


def save(root: Path, registry: Registry) -> None:
    """Write atomically: a crash leaves the old file, never half a registry."""
    write_atomic(Path(root) / REGISTRY_FILE, dumps(registry))


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def with_rollout(registry: Registry, rollout: Rollout | None) -> Registry:
    """The same registry with its rollout replaced (``None`` or empty clears it)."""
    if rollout is not None and rollout.empty:
        rollout = None
    return Registry(
        model=registry.model,
        production=registry.production,
        versions=list(registry.versions),
        rollout=rollout,
    )
