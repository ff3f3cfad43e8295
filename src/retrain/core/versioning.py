"""Semantic versions for models (DESIGN.md section 3), on top of the ``semver`` library.

MAJOR: the input schema or the class set changed (detected, never chosen lower by hand).
MINOR: a retrain that beats production by the gates.
PATCH: a requested fix that must not regress.
The first version is 1.0.0.  Which kind a candidate gets is decided once, by the
``schema_bump`` gate (``retrain.decide.gates``); this module numbers versions.
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


def next_free_version(latest: str | None, bump: BumpKind, taken: set[str] | frozenset[str]) -> str:
    """The version after ``latest`` for ``bump`` that no artifact was ever given.

    A version names one artifact forever (DESIGN.md section 2): when ``next_version`` is in
    ``taken`` (registered once, then rolled back and dropped by the revert), bump again the
    same way until the number is free, e.g. 1.0.0 + minor with 1.1.0 taken gives 1.2.0.
    """
    version = next_version(latest, bump)
    if bump == "initial" or latest is None:
        # A reverted bootstrap leaves 1.0.0 taken: the first free MAJOR after it.
        while version in taken:
            version = str(parse(version).bump_major())
        return version
    while version in taken:
        version = next_version(version, bump)
    return version


def is_newer(a: str, b: str) -> bool:
    """True when version ``a`` is higher than ``b``."""
    return parse(a) > parse(b)


def tag_name(model: str, version: str) -> str:
    """GTO's registration tag grammar: ``<model>@v<version>``."""
    return f"{model}@v{version}"


def stage_tag_name(model: str, stage: str, n: int) -> str:
    """GTO's stage assignment tag grammar: ``<model>#<stage>#<n>``."""
    return f"{model}#{stage}#{n}"
