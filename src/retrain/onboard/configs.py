"""The configuration files ``retrain init`` writes or adjusts, as text edits that keep the
template's comments: dataset, model, gates, triggers and release, dvc.yaml; and the
thresholds it rescales to the target's units when the primary metric becomes one in them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from retrain.core.config import BUILTIN_ESTIMATORS, RolloutConfig, read_yaml
from retrain.core.errors import BadInput
from retrain.core.metric_names import metric_names


def _num(x: float) -> str:
    return f"{x:g}"


def _dump(doc: dict[str, Any], header: str) -> str:
    body = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)
    return header + body


def _set_line(text: str, key: str, value: str) -> str:
    """Replace a top-level ``key: ...`` line (keeping its comment), or append it."""
    pattern = re.compile(rf"(?m)^{re.escape(key)}:[^\n#]*(#.*)?$")
    if pattern.search(text):
        return pattern.sub(
            lambda m: f"{key}: {value}" + (f"  {m.group(1)}" if m.group(1) else ""), text, count=1
        )
    return text.rstrip("\n") + f"\n{key}: {value}\n"


def _release_text(text: str, name: str) -> str:
    text = _set_line(text, "model_name", name)
    text = _set_line(text, "mlflow_experiment", name)
    text = re.sub(r"(?m)^known_limitations:.*(\n[ \t]+-.*)*", "known_limitations: []", text)
    return text


def _dvc_yaml_text(text: str, name: str, task: str, target: str) -> str:
    m = re.search(r"(?m)^artifacts:\n  ([^\n]+):\n", text)
    if not m:
        raise BadInput("dvc.yaml: no artifacts section naming the model; expected the template's")
    text = text[: m.start(1)] + f"{name}" + text[m.end(1) :]
    block_start = m.start()
    head, block = text[:block_start], text[block_start:]
    desc = yaml.safe_dump(f"{task.capitalize()} of {target} (written by retrain init).", width=1000)
    desc = desc.strip().removesuffix("...").strip()
    block = re.sub(r"(?m)^(    desc:).*$", lambda _: f"    desc: {desc}", block, count=1)
    block = re.sub(r"(?m)^(    labels:).*$", f"    labels: [sklearn, {task}]", block, count=1)
    return head + block


def _model_text(root: Path, task: str, notes: list[str]) -> str | None:
    """model.yaml, changed only when its built-in estimator cannot do the task."""
    path = root / "configs" / "model.yaml"
    text = path.read_text(encoding="utf-8")
    doc = read_yaml(path, "configs/model.yaml") or {}
    est = doc.get("estimator") if isinstance(doc, dict) else None
    wrong = {
        "classification": {"ridge", "linear_regression"},
        "regression": {"logistic_regression"},
    }
    if est in BUILTIN_ESTIMATORS and est in wrong[task]:
        notes.append(f"model.yaml: estimator {est} cannot do {task}; set to random_forest")
        return _set_line(text, "estimator", "random_forest")
    return None


def _yaml_num(x: float) -> str:
    """``x`` as YAML reads back a float (PyYAML needs a dot in ``1.0e-05``)."""
    text = f"{x:g}"
    if "e" in text and "." not in text.split("e")[0]:
        mantissa, exp = text.split("e")
        text = f"{mantissa}.0e{exp}"
    return text


def _scale_key(text: str, section: str, key: str, scale: float) -> tuple[str, str] | None:
    """Multiply ``section: {key: value}`` (a number on its own line) by ``scale``.

    Returns the new text and ``"section.key old -> new"``, or None when the key is absent."""
    lines = text.split("\n")
    inside = False
    for i, line in enumerate(lines):
        if re.match(rf"^{re.escape(section)}:\s*(#.*)?$", line):
            inside = True
            continue
        if inside and line and not line[0].isspace():
            return None
        m = re.match(rf"^(\s+{re.escape(key)}:\s*)([0-9.eE+-]+)(.*)$", line) if inside else None
        if m:
            old = float(m.group(2))
            new = float(f"{old * scale:.2g}")
            lines[i] = f"{m.group(1)}{_yaml_num(new)}{m.group(3)}"
            return "\n".join(lines), f"{section}.{key} {_num(old)} -> {_num(new)}"
    return None


# Thresholds the template states in the units of a [0, 1] metric (accuracy); when init
# switches the primary metric to one in the target's own units, they are read as shares of
# the target's standard deviation (min_delta 0.01 -> 1% of a standard deviation).
UNIT_THRESHOLDS = {
    "configs/gates.yaml": [
        ("improvement", "min_delta"),
        ("subgroups", "max_regression"),
        ("patch", "max_regression"),
        ("churn", "tolerance"),
    ],
    "configs/triggers.yaml": [("performance", "max_drop")],
}


def _in_target_units(text: str, rel: str, scale: float, notes: list[str]) -> str:
    changed = []
    for section, key in UNIT_THRESHOLDS[rel]:
        res = _scale_key(text, section, key, scale)
        if res is not None:
            text, what = res
            changed.append(what)
    if changed:
        notes.append(
            f"{Path(rel).name}: thresholds in the target's units (x its standard deviation "
            f"{_num(float(f'{scale:.4g}'))}): {', '.join(changed)}"
        )
    return text


# The rollout's thresholds on the live primary metric (``configs/release.yaml``) are in the
# same units, but they are model defaults the template does not write: init writes them,
# scaled the same way, so a regression fork's canary, watch window and challenger judge in
# the target's units too.
LIVE_THRESHOLDS = [
    ("analysis", "min_metric_change"),
    ("health", "max_metric_drop"),
    ("challenger", "min_delta"),
]


def _block_end(lines: list[str], start: int, indent: int) -> int:
    """The index after the last line of the block that begins after ``start`` and is
    indented deeper than ``indent`` (blank and comment lines at its end excluded)."""
    last = start
    for i in range(start + 1, len(lines)):
        stripped = lines[i].lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        if len(lines[i]) - len(stripped) <= indent:
            break
        last = i
    return last + 1


def _set_nested(text: str, path: tuple[str, ...], value: str, comment: str) -> str | None:
    """Set the block-style YAML key ``path`` (e.g. rollout, analysis, min_metric_change) to
    ``value``, keeping comments and order; missing parents are added at the end of their
    block.  None when a parent is written inline (``analysis: {...}``): left to the user."""
    lines = text.split("\n")
    lo, hi, indent = 0, len(lines), -1
    for depth, name in enumerate(path):
        child: int | None = None
        found = None
        for i in range(lo, hi):
            stripped = lines[i].lstrip()
            if not stripped or stripped.startswith("#"):
                continue
            ind = len(lines[i]) - len(stripped)
            child = ind if child is None else child
            if ind == child and re.match(rf"{re.escape(name)}:(\s|$)", stripped):
                found = i
                break
        if found is None:
            at = _block_end(lines, lo - 1, indent) if lo > 0 else len(lines)
            if lo == 0:
                while at > 0 and not lines[at - 1].strip():
                    at -= 1
            step = child if child is not None and child > indent else indent + 2
            new = []
            for k, part in enumerate(path[depth:]):
                pad = " " * (step + 2 * k)
                last = depth + k == len(path) - 1
                new.append(f"{pad}{part}: {value}  # {comment}" if last else f"{pad}{part}:")
            lines[at:at] = new
            return "\n".join(lines)
        stripped = lines[found].lstrip()
        ind = len(lines[found]) - len(stripped)
        rest = stripped[len(name) + 1 :]
        if depth == len(path) - 1:
            m = re.match(r"^(\s*)([^#]*?)(\s*#.*)?$", rest)
            tail = m.group(3) if m and m.group(3) else f"  # {comment}"
            lines[found] = f"{' ' * ind}{name}: {value}{tail}"
            return "\n".join(lines)
        if rest.split("#", 1)[0].strip():
            return None
        lo, hi, indent = found + 1, _block_end(lines, found, ind), ind
    return None


def _live_thresholds(text: str, scale: float, notes: list[str]) -> str:
    """release.yaml with the rollout's live-metric thresholds (as written, else the
    defaults) times ``scale``."""
    doc = yaml.safe_load(text)
    rollout = doc.get("rollout") if isinstance(doc, dict) else None
    defaults = RolloutConfig()
    changed, by_hand = [], []
    for section, key in LIVE_THRESHOLDS:
        given = rollout.get(section) if isinstance(rollout, dict) else None
        if isinstance(given, dict) and key in given:
            old = given[key]
        else:
            old = getattr(getattr(defaults, section), key)
        if old is None or isinstance(old, bool) or not isinstance(old, int | float):
            continue  # switched off (null), or a type the config check will name
        new = float(f"{old * scale:.2g}")
        what = f"rollout.{section}.{key}"
        res = _set_nested(
            text,
            ("rollout", section, key),
            _yaml_num(new),
            f"retrain init: {_num(old)} x the target's std",
        )
        if res is None:
            by_hand.append(what)
            continue
        text = res
        changed.append(f"{what} {_num(old)} -> {_num(new)}")
    if changed:
        notes.append(
            "release.yaml: live-metric thresholds in the target's units (x its standard "
            f"deviation {_num(float(f'{scale:.4g}'))}): {', '.join(changed)}"
        )
    if by_hand:
        notes.append(
            f"release.yaml: {', '.join(by_hand)} left as is (its section is written inline): "
            "set it in the target's units by hand"
        )
    return text


def _gates_text(root: Path, task: str, notes: list[str]) -> str | None:
    path = root / "configs" / "gates.yaml"
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    doc = read_yaml(path, "configs/gates.yaml") or {}
    metric = doc.get("primary_metric", "accuracy") if isinstance(doc, dict) else "accuracy"
    names = metric_names(task)
    changed = None
    if metric not in names:
        new = "accuracy" if task == "classification" else "rmse"
        notes.append(f"gates.yaml: primary_metric {metric} is not a {task} metric; set to {new}")
        changed = _set_line(text, "primary_metric", new)
    rail_metric = (
        (doc.get("trivial_baseline") or {}).get("metric") if isinstance(doc, dict) else None
    )
    if rail_metric is not None and rail_metric not in names:
        new = "accuracy" if task == "classification" else "rmse"
        if metric in names:
            new = metric
        notes.append(
            f"gates.yaml: trivial_baseline.metric {rail_metric} is not a {task} metric; "
            f"set to {new}"
        )
        res = _set_nested(
            changed if changed is not None else text,
            ("trivial_baseline", "metric"),
            new,
            "retrain init: the primary metric",
        )
        changed = res if res is not None else changed
    rails = doc.get("guardrails") if isinstance(doc, dict) else None
    if isinstance(rails, dict) and any(r not in names for r in rails):
        raise BadInput(
            f"configs/gates.yaml: guardrails: {sorted(r for r in rails if r not in names)} "
            f"are not {task} metrics; remove them before retrain init"
        )
    return changed


def _triggers_text(root: Path, smallest_batch: int, notes: list[str]) -> str | None:
    path = root / "configs" / "triggers.yaml"
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    m = re.search(r"(?m)^(\s+min_new_rows:\s*)(\d+)", text)
    if m and int(m.group(2)) > smallest_batch:
        notes.append(
            f"triggers.yaml: new_data.min_new_rows {m.group(2)} -> {smallest_batch} "
            "(one batch of this data)"
        )
        return text[: m.start(2)] + str(smallest_batch) + text[m.end(2) :]
    return None
