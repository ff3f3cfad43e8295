"""registry.yaml: the source of truth for which model is in production.

Written by the tool, reviewed by humans in PR diffs.  Output is deterministic (fixed key
order, no timestamps other than the entry's own ``created``) so a bump PR changes only
``production`` and one appended entry.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from retrain.core import versioning
from retrain.core.errors import RegistryError

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
)
REQUIRED_ENTRY_KEYS = ("version", "created", "bump", "artifact", "schema")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
MD5 = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class Registry:
    model: str
    production: str | None = None
    versions: list[dict[str, Any]] = field(default_factory=list)
    rollout: Rollout | None = None  # what besides production gets traffic (DESIGN.md §12)

    # ------------------------------------------------------------------ queries
    def get(self, version: str) -> dict[str, Any]:
        for entry in self.versions:
            if entry["version"] == version:
                return entry
        raise RegistryError(f"{REGISTRY_FILE}: no version {version!r} is registered")

    def has(self, version: str) -> bool:
        return any(e["version"] == version for e in self.versions)

    @property
    def latest(self) -> str | None:
        return self.versions[-1]["version"] if self.versions else None

    @property
    def production_entry(self) -> dict[str, Any] | None:
        return self.get(self.production) if self.production else None

    # ------------------------------------------------------------------ changes
    def with_new_version(
        self, entry: dict[str, Any], *, promote: bool, retention: int, keep: set[str]
    ) -> Registry:
        """A new registry with ``entry`` appended (and made production when ``promote``).

        Retention keeps the last ``retention`` entries plus every version in ``keep`` (the
        versions that were ever in production) and the production version.
        """
        if self.has(entry["version"]):
            raise RegistryError(f"{REGISTRY_FILE}: version {entry['version']} already exists")
        if self.latest and not versioning.is_newer(entry["version"], self.latest):
            raise RegistryError(
                f"{REGISTRY_FILE}: new version {entry['version']} is not above {self.latest}"
            )
        versions = [*self.versions, ordered_entry(entry)]
        production = entry["version"] if promote else self.production
        protected = set(keep) | {production} if production else set(keep)
        protected |= self.rollout.versions() if self.rollout else set()
        if len(versions) > retention:
            cut = len(versions) - retention
            versions = [v for i, v in enumerate(versions) if i >= cut or v["version"] in protected]
        return Registry(
            model=self.model, production=production, versions=versions, rollout=self.rollout
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "production": self.production}
        if self.rollout is not None and not self.rollout.empty:
            out["rollout"] = self.rollout.to_dict()
        out["versions"] = self.versions
        return out


def ordered_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry with its keys in the registry's fixed order (unknown keys last, sorted)."""
    known = {k: entry[k] for k in ENTRY_KEYS if k in entry}
    rest = {k: entry[k] for k in sorted(entry) if k not in ENTRY_KEYS}
    return {**known, **rest}


def dumps(registry: Registry) -> str:
    header = (
        "# Model registry: written by `retrain`, reviewed in pull requests.\n"
        "# `production` names the version serving now. Merging a retrain PR promotes;\n"
        "# `git revert` of that merge rolls back. Do not edit by hand.\n"
    )
    body = yaml.safe_dump(
        registry.to_dict(), sort_keys=False, default_flow_style=False, allow_unicode=True, width=100
    )
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
    for i, entry in enumerate(versions):
        at = f"{where}: versions[{i}]"
        if not isinstance(entry, dict):
            raise RegistryError(f"{at}: expected a mapping")
        for key in REQUIRED_ENTRY_KEYS:
            if key not in entry:
                raise RegistryError(f"{at}: missing key {key!r}")
        parsed = versioning.parse(entry["version"], f"{at}.version")
        if entry["version"] in seen:
            raise RegistryError(f"{at}.version: duplicate version {entry['version']}")
        if previous is not None and parsed <= previous:
            raise RegistryError(
                f"{at}.version: {entry['version']} is not above the entry before it ({previous}); "
                "versions only go up, newest last"
            )
        seen.add(entry["version"])
        previous = parsed
        _check_artifact(entry.get("artifact"), f"{at}.artifact")
    production = doc.get("production")
    if production is not None:
        if not isinstance(production, str):
            raise RegistryError(f"{where}: production: expected a version string or null")
        versioning.parse(production, f"{where}: production")
        if production not in seen:
            raise RegistryError(f"{where}: production: {production} names no entry in versions")
    rollout = parse_rollout(doc.get("rollout"), where, seen, production)
    return Registry(model=model, production=production, versions=versions, rollout=rollout)


def _check_artifact(art: Any, at: str) -> None:
    if not isinstance(art, dict):
        raise RegistryError(f"{at}: expected a mapping with path, md5 and sha256")
    for key in ("path", "md5", "sha256"):
        if key not in art:
            raise RegistryError(f"{at}: missing key {key!r}")
    if not isinstance(art["sha256"], str) or not SHA256.match(art["sha256"]):
        raise RegistryError(f"{at}.sha256: expected 64 lowercase hex digits, got {art['sha256']!r}")
    if not isinstance(art["md5"], str) or not MD5.match(art["md5"]):
        raise RegistryError(f"{at}.md5: expected 32 lowercase hex digits, got {art['md5']!r}")


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
