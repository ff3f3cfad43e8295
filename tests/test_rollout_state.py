"""Rollout state in registry.yaml and the strategy in configs/release.yaml (issue 9, item 1-2)."""

from __future__ import annotations

import pytest

from retrain.core import registry as reg
from retrain.core.config import ReleaseConfig, duration_seconds
from retrain.core.errors import RegistryError


def entry(version: str) -> dict:
    return {
        "version": version,
        "created": "2026-01-01T00:00:00Z",
        "bump": "minor",
        "schema": {"fingerprint": "sha256:abc"},
        "artifact": {"path": "m.skops", "md5": "0" * 32, "sha256": "a" * 64},
    }


def registry(rollout: reg.Rollout | None = None) -> reg.Registry:
    return reg.Registry(
        model="m",
        production="1.0.0",
        versions=[entry("1.0.0"), entry("1.1.0"), entry("1.2.0")],
        rollout=rollout,
    )


def test_registry_without_rollout_is_byte_identical_to_before():
    text = reg.dumps(registry())
    assert "rollout" not in text
    assert reg.dumps(reg.parse_text(text)) == text
    assert reg.dumps(reg.with_rollout(registry(), reg.Rollout())) == text


def test_rollout_round_trips_after_production():
    r = registry(reg.Rollout(canary=reg.Canary("1.2.0", 5), shadow=("1.1.0",)))
    text = reg.dumps(r)
    assert text.index("production:") < text.index("rollout:") < text.index("versions:")
    back = reg.parse_text(text)
    assert back.rollout == r.rollout
    assert reg.dumps(back) == text


@pytest.mark.parametrize(
    ("rollout", "message"),
    [
        ("{canary: {version: 9.9.9, weight: 5}}", "rollout.canary.version: 9.9.9 names no entry"),
        ("{canary: {version: 1.2.0, weight: 140}}", "rollout.canary.weight: expected a whole"),
        ("{canary: {version: 1.2.0, weight: 0}}", "rollout.canary.weight"),
        ("{canary: {version: 1.2.0, weight: 5.5}}", "rollout.canary.weight"),
        ("{canary: {version: 1.0.0, weight: 5}}", "rollout.canary.version: 1.0.0 is production"),
        ("{shadow: [1.0.0]}", "rollout.shadow[0]: 1.0.0 is production"),
        ("{shadow: [1.1.0, 1.1.0]}", "rollout.shadow[1]: 1.1.0 is listed twice"),
        ("{shadow: [2.0.0]}", "rollout.shadow[0]: 2.0.0 names no entry"),
        ("{shadow: 1.1.0}", "rollout.shadow: expected a list"),
        ("{canary: {version: 1.2.0, weight: 5, extra: 1}}", "rollout.canary: unknown key"),
        ("{blue: 1}", "rollout: unknown key(s) ['blue']"),
        ("[1.2.0]", "rollout: expected a mapping"),
    ],
)
def test_bad_rollout_is_one_line_naming_the_key(rollout, message):
    text = reg.dumps(registry()).replace("versions:", f"rollout: {rollout}\nversions:", 1)
    with pytest.raises(RegistryError) as err:
        reg.parse_text(text)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_retention_never_drops_a_version_in_the_rollout():
    r = registry(reg.Rollout(shadow=("1.1.0",)))
    new = r.with_new_version(entry("1.3.0"), promote=False, retention=1, keep=set())
    assert [e["version"] for e in new.versions] == ["1.0.0", "1.1.0", "1.3.0"]
    assert new.rollout == r.rollout


def test_strategy_defaults_to_direct_and_checks_steps():
    cfg = ReleaseConfig(model_name="mm")
    assert cfg.rollout.strategy == "direct"
    assert cfg.rollout.watch_window_seconds == 86400
    ReleaseConfig.model_validate({"model_name": "mm", "rollout": {"strategy": "canary"}})
    for bad in ([5, 5], [50, 25], [0, 5], [5, 100], []):
        with pytest.raises(ValueError, match="steps"):
            ReleaseConfig.model_validate({"model_name": "mm", "rollout": {"steps": bad}})
    with pytest.raises(ValueError, match="watch_window"):
        ReleaseConfig.model_validate({"model_name": "mm", "rollout": {"watch_window": "soon"}})


def test_durations():
    assert duration_seconds("90s") == 90
    assert duration_seconds("30m") == 1800
    assert duration_seconds("2d") == 172800
    for bad in ("", "h", "-1h", "5", "inf h"):
        with pytest.raises(ValueError):
            duration_seconds(bad)
