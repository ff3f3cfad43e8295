"""A registry entry: one registered version, as typed records (``RegistryEntry``).

Every entry of registry.yaml is read and written through these models and nowhere else; the
rest of the package reads attributes (``entry.artifact.sha256``), never string keys.  They
validate strictly (no silent coercion, so what was read is what is written back) and keep
unknown keys (a hand-added note survives a rewrite: at the end of its entry, sorted, or at
the end of its sub-mapping).  Only keys that were present are written back.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from retrain.core.versioning import BumpKind

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
    "engine",
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
    """Churn against the baseline on the frozen holdout (``decide/churn.py``).

    ``kind`` is ``negative_flips`` (classification: ``value`` is the share of rows production
    got right and the candidate gets wrong) or ``worse_share`` (regression: the share whose
    absolute error grows by more than ``tolerance``); ``negative`` and ``positive`` count the
    rows that got worse and better, ``changed`` every row whose prediction moved, and
    ``transitions`` maps production label -> candidate label -> rows.  Entries written before
    issue 23 have ``kind`` ``share`` or ``relative_change`` (total churn) and no
    ``negative``/``positive``/``tolerance``; entries before churn was measured have no
    ``churn`` key.  Either reads and writes back unchanged.
    """

    kind: str
    value: Any = None
    lower: Any = None
    upper: Any = None
    confidence: Any = None
    rows: int | None = None
    changed: int | None = None
    negative: int | None = None
    positive: int | None = None
    tolerance: Any = None
    max: Any = None
    transitions: dict[str, dict[str, int]] | None = None


class EnvironmentRecord(Record):
    """The software the model was trained with (retrain.core.environment): Python, the
    libraries the model depends on (name -> version) and the sha256 of uv.lock."""

    python: str | None = None
    packages: dict[str, str] = Field(default_factory=dict)
    lock_sha256: str | None = None


class EngineRecord(Record):
    """Where the model was fitted (``model.yaml: engine``, retrain.pipeline.engine): ``local``
    (this runner: 1 worker, its CPUs as threads) or ``dask`` (the cluster, ``LocalCluster``
    or the scheduler's address, its workers and threads, and how the fit used it:
    ``data-parallel``, ``joblib`` or ``runner``)."""

    name: str
    cluster: str | None = None
    workers: int | None = None
    threads: int | None = None
    fit: str | None = None


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
    # Entries registered before the engine was recorded have none (and stay as written).
    engine: EngineRecord | None = None

    @classmethod
    def coerce(cls, entry: RegistryEntry | dict[str, Any]) -> RegistryEntry:
        return entry if isinstance(entry, RegistryEntry) else cls.model_validate(entry)

    def to_dict(self) -> dict[str, Any]:
        return ordered_entry(super().to_dict())

    def __getitem__(self, key: str) -> Any:
        """Read a key as registry.yaml spells it (for scripts and tests); code uses attributes."""
        return self.to_dict()[key]


def ordered_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry with its keys in the registry's fixed order (unknown keys last, sorted)."""
    known = {k: entry[k] for k in ENTRY_KEYS if k in entry}
    rest = {k: entry[k] for k in sorted(entry) if k not in ENTRY_KEYS}
    return {**known, **rest}
