"""``rollout:`` in registry.yaml: what besides production receives traffic (DESIGN.md §12).

A canary (version and weight in percent) and shadow versions, checked against the
registry's versions when the file is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from retrain.core import versioning
from retrain.core.errors import RegistryError

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
