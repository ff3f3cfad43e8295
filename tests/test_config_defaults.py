"""Documented defaults equal the code's (issue 22, item 5).

A key the configs document as commented out (``# max_rows: 10000``) says "this is what you
get when you leave it out"; the typed config models hold the value the code uses.  Written in
two places, they drift apart silently: this test reads every commented-out key of every
``configs/*.yaml`` (nested keys by their indentation under the keys above them) and compares
it with the model's default.  The CLI's help text that quotes a default is held to it too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from retrain.core.config import (
    DatasetConfig,
    DriftConfig,
    GatesConfig,
    ModelConfig,
    ReleaseConfig,
    ServeConfig,
    TriggersConfig,
)

PROJECT = Path(__file__).resolve().parents[1]
MODELS: dict[str, type[BaseModel]] = {
    "dataset": DatasetConfig,
    "model": ModelConfig,
    "triggers": TriggersConfig,
    "gates": GatesConfig,
    "drift": DriftConfig,
    "release": ReleaseConfig,
    "serve": ServeConfig,
}
KEY = re.compile(r"^(?P<indent>\s*)(?P<hash>#\s?)?(?P<key>[a-z_][a-z0-9_]*):(?P<value>.*)$")


def _strip_comment(value: str) -> str:
    # a trailing "# why" after two spaces, outside quotes
    return re.split(r"\s{2,}#", value, maxsplit=1)[0].strip()


def documented_defaults(path: Path) -> list[tuple[tuple[str, ...], Any, int]]:
    """``(key path, value, line)`` of every commented-out ``key: value`` in the file."""
    out = []
    stack: list[tuple[int, str]] = []  # (indent, key) of the keys above
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        m = KEY.match(line)
        if not m:
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key, value = m["key"], _strip_comment(m["value"])
        # A default is one value (a number, a word, a URL, a [flow] or "quoted" text);
        # "# features: numeric columns may give..." is prose.
        one_value = bool(value) and (" " not in value or value[0] in "[{'\"")
        if m["hash"] and one_value:
            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError:
                continue  # prose that happens to contain a colon
            out.append(((*[k for _, k in stack], key), parsed, number))
        stack.append((indent, key))
    return out


def code_default(model: type[BaseModel], keys: tuple[str, ...]) -> Any:
    value: Any = None
    current: type[BaseModel] | None = model
    for i, key in enumerate(keys):
        if current is None or key not in current.model_fields:
            raise KeyError(".".join(keys[: i + 1]))
        field = current.model_fields[key]
        value = field.get_default(call_default_factory=True)
        annotation = field.annotation
        current = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
        if isinstance(value, BaseModel) and i + 1 < len(keys):
            current = type(value)
    return value.model_dump() if isinstance(value, BaseModel) else value


CASES = [
    (path.stem, keys, value, line)
    for path in sorted((PROJECT / "configs").glob("*.yaml"))
    for keys, value, line in documented_defaults(path)
]


def test_every_serve_setting_is_documented_with_its_default():
    documented = {keys[0] for stem, keys, *_ in CASES if stem == "serve"}
    assert documented == set(ServeConfig.model_fields), (
        "configs/serve.yaml documents every key as `# key: default`; "
        f"missing {sorted(set(ServeConfig.model_fields) - documented)}"
    )


@pytest.mark.parametrize(
    ("stem", "keys", "value", "line"),
    CASES,
    ids=[f"{s}:{'.'.join(k)}" for s, k, _, _ in CASES],
)
def test_a_documented_default_is_the_codes(stem: str, keys: tuple[str, ...], value, line: int):
    where = f"configs/{stem}.yaml line {line}: {'.'.join(keys)}"
    try:
        default = code_default(MODELS[stem], keys)
    except KeyError as exc:
        pytest.fail(f"{where}: no such key in {MODELS[stem].__name__} ({exc})")
    assert default == value, f"{where}: documented {value!r}, the code's default is {default!r}"


def test_the_command_line_quotes_the_serve_default():
    from click.testing import CliRunner

    from retrain.cli import cli

    text = CliRunner().invoke(cli, ["serve", "--help"]).output
    m = re.search(r"follow_interval,\s+([0-9.]+)\)", " ".join(text.split()))
    assert m, text
    assert float(m[1]) == ServeConfig().follow_interval
    readme = (PROJECT / "README.md").read_text()
    m = re.search(r"Every `--interval` seconds \(default ([0-9.]+),", readme)
    assert m and float(m[1]) == ServeConfig().follow_interval
