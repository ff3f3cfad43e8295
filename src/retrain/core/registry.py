"""registry.yaml: the source of truth for which model is in production.

Written by the tool, reviewed by humans in PR diffs.  Output is deterministic (fixed key
order, no timestamps other than the entry's own ``created``) so a bump PR changes only
``production`` and one appended entry.

Every entry is a typed :class:`RegistryEntry`, read and written here and nowhere else; the
rest of the package reads attributes (``entry.artifact.sha256``), never string keys.  The
models validate strictly (no silent coercion, so what was read is what is written back) and
keep unknown keys (a hand-added note survives a rewrite: at the end of its entry, sorted, or at
the end of its sub-mapping).  Only keys that were present are written back, so a rewrite is
byte-identical to what was read.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from retrain.core import versioning
from retrain.core.errors import RegistryError
from retrain.core.versioning import BumpKind

REGISTRY_FILE = "registry.yaml"
TOP_KEYS = ("model", "production", "rollout", "versions")
ENTRY_KEYS = (
    "version",
    "created",
    "reason",
    "bump",
    "code_commit",
    "data",
    "params",
    "schema",
    "artifact",
    "model_card",
    "mlflow",
    "metrics",
    "gates",
    "churn",
    "environment",
)
REQUIRED_ENTRY_KEYS = ("version", "created", "bump", "artifact", "schema")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
MD5 = re.compile(r"^[0-9a-f]{32}$")


class Record(BaseModel):
    """Base for registry records: strict types, unknown keys kept as they were read.

    Fields are declared in the order the tool has always written them, since that order is
    the order on disk.  No float fields: a strict float would turn ``2`` into ``2.0``.
    """

    model_config = ConfigDict(extra="allow", strict=True)

    def to_dict(self) -> dict[str, Any]:
        """The record as registry.yaml has it: aliases as keys, only the keys that were set."""
        return self.model_dump(by_alias=True, exclude_unset=True)


class ArtifactRef(Record):
    """Where a model file is and how to check it: DVC finds it by md5, we verify its sha256."""

    path: str
    format: str | None = None
    md5: str
    sha256: str
    size_bytes: int | None = None
    remote: str | None = None

    @field_validator("md5", "sha256")
    @classmethod
    def _hex(cls, value: str, info: ValidationInfo) -> str:
        pattern, digits = (SHA256, 64) if info.field_name == "sha256" else (MD5, 32)
        if not pattern.match(value):
            raise PydanticCustomError(
                "hex_digest",
                "expected {digits} lowercase hex digits, got {got}",
                {"digits": digits, "got": repr(value)},
            )
        return value


class DataRecord(Record):
    """The training data: DVC's hash of ``data/``, rows used, and each batch file's rows."""

    dvc_hash: str | None = None
    rows: int | None = None
    total_rows: int | None = None
    start: str | None = None
    end: str | None = None
    files: dict[str, int] = Field(default_factory=dict)


class SchemaRecord(Record):
    """The model's input and output schema (keys sorted, as training.json has them)."""

    classes: list[str] | None = None
    features: dict[str, str] = Field(default_factory=dict)
    fingerprint: str | None = None
    target: str | None = None
    task: str | None = None


class ReasonRecord(Record):
    """Why the retrain ran: the triggers that fired and the manual reason, if any."""

    triggers: list[str] = Field(default_factory=list)
    manual: str | None = None


class MlflowRecord(Record):
    """The MLflow run and registered model version of this training."""

    run_id: str | None = None
    model_version: str | None = None
    experiment: str | None = None


class MetricsRecord(Record):
    """Holdout metrics: overall (metric -> value) and per subgroup level (free-form)."""

    overall: dict[str, Any] = Field(default_factory=dict)
    subgroups: dict[str, Any] = Field(default_factory=dict)


class GateOutcome(Record):
    """One gate's verdict; value and threshold are a number, a string or a mapping."""

    verdict: str
    value: Any = None
    threshold: Any = None


class GatesRecord(Record):
    """The gates this version passed, and the production version it was judged against."""

    baseline: str | None = None
    passed: bool = False
    results: dict[str, GateOutcome] = Field(default_factory=dict)


class ChurnRecord(Record):
    """Prediction churn against the baseline on the frozen holdout (``decide/churn.py``).

    ``kind`` is ``share`` (classification: share of rows whose label changes) or
    ``relative_change`` (regression: median |change| / the holdout target's IQR);
    ``transitions`` maps production label -> candidate label -> rows.  Entries written
    before churn was measured have no ``churn`` key.
    """

    kind: str
    value: Any = None
    lower: Any = None
    upper: Any = None
    confidence: Any = None
    rows: int | None = None
    changed: int | None = None
    max: Any = None
    transitions: dict[str, dict[str, int]] | None = None


class EnvironmentRecord(Record):
    """The software the model was trained with (retrain.core.environment): Python, the
    libraries the model depends on (name -> version) and the sha256 of uv.lock."""

    python: str | None = None
    packages: dict[str, str] = Field(default_factory=dict)
    lock_sha256: str | None = None


class RegistryEntry(Record):
    """One registered version (one list item under ``versions``)."""

    version: str
    created: str
    reason: ReasonRecord = Field(default_factory=ReasonRecord)
    bump: BumpKind
    code_commit: str | None = None
    data: DataRecord = Field(default_factory=DataRecord)
    params: dict[str, Any] = Field(default_factory=dict)
    schema_: SchemaRecord = Field(alias="schema")
    artifact: ArtifactRef
    model_card: str | None = None
    mlflow: MlflowRecord = Field(default_factory=MlflowRecord)
    metrics: MetricsRecord = Field(default_factory=MetricsRecord)
    gates: GatesRecord = Field(default_factory=GatesRecord)
    churn: ChurnRecord | None = None
    # Entries registered before the environment was recorded have none (and stay as written).
    environment: EnvironmentRecord | None = None

    @classmethod
    def coerce(cls, entry: RegistryEntry | dict[str, Any]) -> RegistryEntry:
        return entry if isinstance(entry, RegistryEntry) else cls.model_validate(entry)

    def to_dict(self) -> dict[str, Any]:
        return ordered_entry(super().to_dict())

    def __getitem__(self, key: str) -> Any:
        """Read a key as registry.yaml spells it (for scripts and tests); code uses attributes."""
        return self.to_dict()[key]


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


def ordered_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry with its keys in the registry's fixed order (unknown keys last, sorted)."""
    known = {k: entry[k] for k in ENTRY_KEYS if k in entry}
    rest = {k: entry[k] for k in sorted(entry) if k not in ENTRY_KEYS}
    return {**known, **rest}


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


# --------------------------------------------------------------------------- rollout state
ROLLOUT_KEYS = ("canary", "shadow")
CANARY_KEYS = ("version", "weight")


@dataclass(frozen=True)
class Canary:
    """A version answering ``weight`` percent of requests (by routing key)."""

    version: str
    weight: int


@dataclass(frozen=True)
class Rollout:
    """``rollout:`` in registry.yaml: a canary and shadow versions besides production.

    Written to YAML as ``{canary: {version, weight}, shadow: [...]}``; empty parts are left
    out, and an empty rollout is left out of the file altogether (byte-identical registries
    for projects that never use it).
    """

    canary: Canary | None = None
    shadow: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return self.canary is None and not self.shadow

    def versions(self) -> set[str]:
        out = set(self.shadow)
        if self.canary is not None:
            out.add(self.canary.version)
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.canary is not None:
            out["canary"] = {"version": self.canary.version, "weight": self.canary.weight}
        if self.shadow:
            out["shadow"] = list(self.shadow)
        return out


def parse_rollout(raw: Any, where: str, known: set[str], production: str | None) -> Rollout | None:
    """Check the ``rollout`` block against the registry's versions; one line per problem."""
    if raw is None:
        return None
    at = f"{where}: rollout"
    if not isinstance(raw, dict):
        raise RegistryError(f"{at}: expected a mapping with keys {list(ROLLOUT_KEYS)}")
    unknown = sorted(set(raw) - set(ROLLOUT_KEYS))
    if unknown:
        raise RegistryError(f"{at}: unknown key(s) {unknown}; expected {list(ROLLOUT_KEYS)}")
    if production is None and (raw.get("canary") is not None or raw.get("shadow")):
        raise RegistryError(f"{at}: a rollout needs a production version to compare with")
    canary = None
    if raw.get("canary") is not None:
        c = raw["canary"]
        if not isinstance(c, dict):
            raise RegistryError(f"{at}.canary: expected a mapping with keys {list(CANARY_KEYS)}")
        unknown = sorted(set(c) - set(CANARY_KEYS))
        if unknown:
            raise RegistryError(
                f"{at}.canary: unknown key(s) {unknown}; expected {list(CANARY_KEYS)}"
            )
        version = _rollout_version(c.get("version"), f"{at}.canary.version", known, production)
        weight = c.get("weight")
        if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 99:
            raise RegistryError(
                f"{at}.canary.weight: expected a whole percent from 1 to 99 (got {weight!r})"
            )
        canary = Canary(version=version, weight=weight)
    shadow_raw = raw.get("shadow") or []
    if not isinstance(shadow_raw, list):
        raise RegistryError(f"{at}.shadow: expected a list of versions")
    shadow: list[str] = []
    for i, v in enumerate(shadow_raw):
        version = _rollout_version(v, f"{at}.shadow[{i}]", known, production)
        if version in shadow:
            raise RegistryError(f"{at}.shadow[{i}]: {version} is listed twice")
        shadow.append(version)
    return Rollout(canary=canary, shadow=tuple(shadow))


def _rollout_version(value: Any, at: str, known: set[str], production: str | None) -> str:
    if not isinstance(value, str):
        raise RegistryError(f"{at}: expected a version string (got {value!r})")
    versioning.parse(value, at)
    if value not in known:
        raise RegistryError(f"{at}: {value} names no entry in versions")
    if value == production:
        raise RegistryError(f"{at}: {value} is production already; name another version")
    return value


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
