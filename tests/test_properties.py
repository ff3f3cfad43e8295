"""Property-based tests (hypothesis): registry.yaml parsing and writing, semver parsing and
bumping, configuration loading.  Modest example counts and no deadline, so they stay fast
and never flake on a loaded machine."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import semver
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrain.core import registry as reg
from retrain.core import versioning
from retrain.core.config import load_config
from retrain.core.errors import ConfigError, RegistryError
from tests.conftest import PROJECT

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

hexdigits = "0123456789abcdef"
# Printable text: YAML normalises line-break characters such as U+0085 inside plain scalars,
# so a registry holding them would not round-trip (the tool never writes them).
printable = st.characters(
    blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\x85\ufeff"
)
versions = st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(0, 40)).map(
    lambda t: f"{t[0]}.{t[1]}.{t[2]}"
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**9), 10**9)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(printable, max_size=20)
)
json_like = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@st.composite
def registries(draw: st.DrawFn) -> reg.Registry:
    chosen = sorted(set(draw(st.lists(versions, max_size=5))), key=versioning.parse)
    entries = []
    for v in chosen:
        entry = {
            "version": v,
            "created": draw(st.text(printable, min_size=1, max_size=25)),
            "bump": draw(st.sampled_from(["initial", "major", "minor", "patch"])),
            "schema": {"fingerprint": draw(st.text(max_size=20))},
            "artifact": {
                "path": draw(st.text(printable, min_size=1, max_size=30)),
                "md5": draw(st.text(hexdigits, min_size=32, max_size=32)),
                "sha256": draw(st.text(hexdigits, min_size=64, max_size=64)),
            },
            "metrics": {
                "overall": draw(
                    st.dictionaries(
                        st.text(printable, min_size=1, max_size=8),
                        st.none() | st.floats(allow_nan=False, allow_infinity=False),
                        max_size=3,
                    )
                )
            },
            "params": draw(st.dictionaries(st.text(printable, max_size=8), json_like, max_size=3)),
        }
        entries.append(reg.RegistryEntry.model_validate(entry))
    production = draw(st.sampled_from([None, *chosen]))
    model = draw(st.text(printable, min_size=1, max_size=20).filter(lambda s: s.strip() == s and s))
    return reg.Registry(model=model, production=production, versions=entries)


@FAST
@given(registries())
def test_registry_round_trips_byte_for_byte(r: reg.Registry) -> None:
    text = reg.dumps(r)
    back = reg.parse_text(text)
    assert back.to_dict() == r.to_dict()
    assert reg.dumps(back) == text


def _one_line_or_registry(text: str) -> None:
    try:
        out = reg.parse_text(text)
    except RegistryError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg and msg.startswith("registry.yaml"), msg
    else:
        assert isinstance(out, reg.Registry)


@FAST
@given(
    st.dictionaries(
        st.sampled_from(["model", "production", "versions", "other"]) | st.text(max_size=6),
        json_like
        | st.lists(st.dictionaries(st.sampled_from(list(reg.ENTRY_KEYS)), json_like), max_size=3),
        max_size=4,
    )
)
def test_any_mapping_is_a_registry_or_one_error_line(doc: dict) -> None:
    _one_line_or_registry(yaml.safe_dump(doc))


@FAST
@given(registries(), st.sampled_from(["version", "artifact", "production", "model", "md5"]))
def test_a_damaged_valid_registry_is_refused_in_one_line(r: reg.Registry, what: str) -> None:
    doc = yaml.safe_load(reg.dumps(r))
    if what == "production":
        doc["production"] = "9.9.9-rc1"
    elif what == "model":
        doc["model"] = ["not", "a", "name"]
    elif doc["versions"]:
        if what == "version":
            doc["versions"][-1]["version"] = "v" + doc["versions"][-1]["version"]
        elif what == "artifact":
            doc["versions"][-1]["artifact"] = "model.skops"
        else:
            doc["versions"][-1]["artifact"]["md5"] = "XYZ"
    _one_line_or_registry(yaml.safe_dump(doc))


@FAST
@given(st.text(max_size=200))
def test_any_text_is_a_registry_or_one_error_line(text: str) -> None:
    _one_line_or_registry(text)


# --------------------------------------------------------------------------- semver
@FAST
@given(versions)
def test_semver_parses_what_it_prints(v: str) -> None:
    assert str(versioning.parse(v)) == v


@FAST
@given(st.text(max_size=20))
def test_semver_parse_accepts_only_major_minor_patch(text: str) -> None:
    try:
        parsed = versioning.parse(text)
    except RegistryError as exc:
        assert "\n" not in str(exc)
    else:
        assert not parsed.prerelease and not parsed.build
        assert str(parsed) == text.strip() or semver.Version.parse(text) == parsed


@FAST
@given(versions, st.sampled_from(["major", "minor", "patch"]))
def test_bumps_go_up_and_reset_the_lower_parts(v: str, bump: str) -> None:
    old, new = versioning.parse(v), versioning.parse(versioning.next_version(v, bump))  # type: ignore[arg-type]
    assert new > old
    if bump == "major":
        assert (new.major, new.minor, new.patch) == (old.major + 1, 0, 0)
    elif bump == "minor":
        assert (new.major, new.minor, new.patch) == (old.major, old.minor + 1, 0)
    else:
        assert (new.major, new.minor, new.patch) == (old.major, old.minor, old.patch + 1)


@FAST
@given(
    st.none() | versions,
    st.sampled_from(["initial", "major", "minor", "patch"]),
    st.sets(versions, max_size=12),
)
def test_the_next_free_version_was_never_taken_and_goes_up(latest, bump, taken) -> None:
    got = versioning.next_free_version(latest, bump, taken)
    assert got not in taken
    if latest is not None and bump != "initial":
        assert versioning.is_newer(got, latest)
        first = versioning.next_version(latest, bump)
        # it is the first free one of the same kind of bump
        probe = first
        while probe != got:
            assert probe in taken
            probe = versioning.next_version(probe, bump)


# --------------------------------------------------------------------------- config
_CONFIGS = Path(tempfile.mkdtemp(prefix="retrain-props-"))
shutil.copytree(PROJECT / "configs", _CONFIGS / "configs")

config_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=8,
)


@FAST
@given(
    st.sampled_from(["triggers", "gates", "drift", "release", "model"]),
    st.data(),
)
def test_config_loading_gives_a_config_or_one_line_naming_the_file(name: str, data) -> None:
    path = _CONFIGS / "configs" / f"{name}.yaml"
    original = yaml.safe_load((PROJECT / "configs" / f"{name}.yaml").read_text())
    doc = dict(original)
    key = data.draw(st.sampled_from([*sorted(doc), "unknown_key"]), label="key")
    doc[key] = data.draw(config_values, label="value")
    try:
        path.write_text(yaml.safe_dump(doc))
        try:
            cfg = load_config(_CONFIGS)
        except ConfigError as exc:
            msg = str(exc)
            assert "\n" not in msg and msg.startswith("configs/"), msg
        else:
            assert cfg.root == _CONFIGS.resolve()
    finally:
        shutil.copyfile(PROJECT / "configs" / f"{name}.yaml", path)
