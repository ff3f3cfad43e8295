"""registry.yaml: parsing, consistency, deterministic output, retention (DESIGN.md section 2)."""

from __future__ import annotations

import pytest

from retrain.core import registry as reg
from retrain.core.errors import RegistryError


def entry(version: str, **extra) -> dict:
    return {
        "version": version,
        "created": "2026-01-01T00:00:00Z",
        "bump": "minor",
        "schema": {"fingerprint": "sha256:abc"},
        "artifact": {"path": "m.skops", "md5": "0" * 32, "sha256": "a" * 64},
        **extra,
    }


def test_round_trip_is_byte_identical():
    r = reg.Registry(model="m", production="1.0.0", versions=[entry("1.0.0")])
    text = reg.dumps(r)
    assert reg.dumps(reg.parse_text(text)) == text


def test_appending_changes_only_production_and_one_entry():
    r = reg.Registry(model="m", production="1.0.0", versions=[entry("1.0.0")])
    new = r.with_new_version(entry("1.1.0"), promote=True, retention=10, keep={"1.0.0"})
    old_lines = reg.dumps(r).splitlines()
    new_lines = reg.dumps(new).splitlines()
    removed = [ln for ln in old_lines if ln not in new_lines]
    assert removed == ["production: 1.0.0"]
    assert new_lines[: len(old_lines)][-1] == old_lines[-1]  # the old entry is untouched


def test_entry_keys_come_out_in_a_fixed_order():
    shuffled = dict(reversed(list(entry("1.0.0", gates={}, metrics={}).items())))
    assert list(reg.ordered_entry(shuffled)) == [
        "version",
        "created",
        "bump",
        "schema",
        "artifact",
        "metrics",
        "gates",
    ]


def test_versions_only_go_up():
    r = reg.Registry(model="m", production="1.1.0", versions=[entry("1.0.0"), entry("1.1.0")])
    with pytest.raises(RegistryError, match="not above"):
        r.with_new_version(entry("1.0.5"), promote=True, retention=10, keep=set())
    with pytest.raises(RegistryError, match="already exists"):
        r.with_new_version(entry("1.1.0"), promote=True, retention=10, keep=set())


def test_retention_keeps_last_n_and_every_version_ever_in_production():
    versions = [entry(f"1.{i}.0") for i in range(6)]
    r = reg.Registry(model="m", production="1.5.0", versions=versions)
    new = r.with_new_version(entry("1.6.0"), promote=True, retention=3, keep={"1.1.0", "1.5.0"})
    assert [e["version"] for e in new.versions] == ["1.1.0", "1.4.0", "1.5.0", "1.6.0"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("model: m\nproduction: null\nversions: [", "not valid YAML"),
        ("- a\n- b\n", "expected a mapping"),
        ("model: m\nversions:\n- version: 1.0.0\n", "missing key 'created'"),
        ("model: m\nproduction: 1.0.0\nversions: []\n", "names no entry"),
    ],
)
def test_malformed_registry_is_one_clear_error(text, needle):
    with pytest.raises(RegistryError, match=needle) as exc:
        reg.parse_text(text)
    assert "\n" not in str(exc.value)


def test_out_of_order_versions_are_refused():
    r = reg.Registry(model="m", production=None, versions=[entry("1.1.0"), entry("1.0.0")])
    with pytest.raises(RegistryError, match="newest last"):
        reg.parse_text(reg.dumps(r))


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    reg.save(tmp_path, reg.Registry(model="m"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["registry.yaml"]
