"""Semantic versions for models (DESIGN.md section 3), on top of the ``semver`` library.

MAJOR: the input schema or the class set changed (detected, never chosen lower by hand).
MINOR: a retrain that beats production by the gates.
PATCH: a requested fix that must not regress.
The first version is 1.0.0.
"""

from __future__ import annotations

from typing import Literal

import semver

from retrain.core.errors import RegistryError

BumpKind = Literal["initial", "major", "minor", "patch"]
FIRST_VERSION = "1.0.0"


def parse(text: object, where: str = "registry.yaml") -> semver.Version:
    """Parse MAJOR.MINOR.PATCH (no prefix, no pre-release) or raise :class:`RegistryError`."""
    if not isinstance(text, str):
        raise RegistryError(f"{where}: {text!r} is not a semantic version MAJOR.MINOR.PATCH")
    try:
        version = semver.Version.parse(text)
    except ValueError:
        raise RegistryError(
            f"{where}: {text!r} is not a semantic version MAJOR.MINOR.PATCH"
        ) from None
    if version.prerelease or version.build:
        raise RegistryError(
            f"{where}: {text!r} has a pre-release or build part; use MAJOR.MINOR.PATCH"
        )
    return version


def decide_bump(*, has_production: bool, schema_changed: bool, requested: str | None) -> BumpKind:
    """The bump a candidate gets: a schema change forces MAJOR whatever was requested."""
    if not has_production:
        return "initial"
    if schema_changed:
        return "major"
    if requested == "patch":
        return "patch"
    if requested == "major":
        return "major"
    return "minor"


def next_version(latest: str | None, bump: BumpKind) -> str:
    """The version after ``latest`` (the highest registered version) for ``bump``."""
    if latest is None or bump == "initial":
        return FIRST_VERSION
    current = parse(latest)
    if bump == "major":
        return str(current.bump_major())
    if bump == "minor":
        return str(current.bump_minor())
    return str(current.bump_patch())


def is_newer(a: str, b: str) -> bool:
    """True when version ``a`` is higher than ``b``."""
    return parse(a) > parse(b)


def tag_name(model: str, version: str) -> str:
    """GTO's registration tag grammar: ``<model>@v<version>``."""
    return f"{model}@v{version}"


def stage_tag_name(model: str, stage: str, n: int) -> str:
    """GTO's stage assignment tag grammar: ``<model>#<stage>#<n>``."""
    return f"{model}#{stage}#{n}"
