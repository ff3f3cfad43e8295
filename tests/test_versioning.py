"""Semantic version numbers for models (DESIGN.md section 3).  Which bump a candidate gets
is the ``schema_bump`` gate's rule, tested with the gates (tests/test_gates.py)."""

from __future__ import annotations

import pytest

from retrain.core import versioning
from retrain.core.errors import RegistryError


@pytest.mark.parametrize(
    ("latest", "bump", "expected"),
    [
        (None, "initial", "1.0.0"),
        ("1.0.0", "minor", "1.1.0"),
        ("1.1.0", "patch", "1.1.1"),
        ("1.4.2", "major", "2.0.0"),
        ("2.0.9", "minor", "2.1.0"),
    ],
)
def test_next_version_follows_the_bump(latest, bump, expected):
    assert versioning.next_version(latest, bump) == expected


@pytest.mark.parametrize("bad", ["1.0", "v1.0.0", "1.0.0-rc1", "1.0.0+build", 1.0, None, "x.y.z"])
def test_malformed_versions_are_refused(bad):
    with pytest.raises(RegistryError):
        versioning.parse(bad)


def test_versions_order_numerically_not_lexically():
    assert versioning.is_newer("1.10.0", "1.9.0")
    assert not versioning.is_newer("1.9.0", "1.10.0")


def test_tags_use_gto_grammar():
    assert versioning.tag_name("churn", "1.2.0") == "churn@v1.2.0"
    assert versioning.stage_tag_name("churn", "production", 3) == "churn#production#3"
