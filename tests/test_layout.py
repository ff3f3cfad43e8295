"""The package's wings import only downward (docs/decisions.md, "The package as wings").

``core`` imports no other wing; ``pipeline`` only ``core``; ``decide`` only ``core`` and
``pipeline``; ``report`` renders what ``decide`` computed; ``release`` turns decisions into
branches, PRs, tags and reverts; ``serve`` and ``rollout`` live after the merge; ``site``
reads them all for the history page; the entry points (``cli``, ``run``, ``example``) sit on
top.  Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "retrain"
RANK = {
    "core": 0,
    "pipeline": 1,
    "decide": 2,
    "report": 3,
    "release": 4,
    "serve": 5,
    "rollout": 6,
    "site": 7,
}
ENTRY_POINTS = {"cli", "run", "example", "demo", "onboard", "__main__", "__init__"}
TOP = max(RANK.values()) + 1


def _wing(parts: list[str]) -> str:
    return parts[0] if parts[0] in RANK else parts[0].removesuffix(".py")


def _rank(wing: str) -> int:
    if wing in RANK:
        return RANK[wing]
    assert wing in ENTRY_POINTS, f"{wing}: a module at the top level that is no entry point"
    return TOP


def _imported_wings(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "retrain":
                names = [a.name for a in node.names]
            elif node.module.startswith("retrain."):
                names = [node.module.split(".")[1]]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith("retrain.")]
        found.update(names)
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_wing_above_its_own(path: Path) -> None:
    rel = path.relative_to(PACKAGE)
    own = _wing(list(rel.parts))
    upward = sorted(w for w in _imported_wings(path) if _rank(w) > _rank(own))
    assert not upward, f"{rel} (wing {own}) imports higher wing(s) {upward}"


def test_core_imports_no_other_wing() -> None:
    for path in (PACKAGE / "core").rglob("*.py"):
        others = _imported_wings(path) - {"core"}
        assert not others, f"{path.relative_to(PACKAGE)} imports {sorted(others)}"


def test_the_rule_catches_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "stages.py"
    bad.write_text("from retrain.decide import gates\n")
    assert _imported_wings(bad) == {"decide"}
    assert _rank("decide") > _rank("pipeline")
