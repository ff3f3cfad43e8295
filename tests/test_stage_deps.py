"""Stage dependencies are derived, not remembered (issue 22, item 1).

``dvc repro`` re-runs a stage only when one of its ``deps`` changed; a file the stage runs but
``dvc.yaml`` does not list can change without a retrain, and DVC's run cache can then hand back
a model built by the old code.  These tests compute, from the import graph, which project
files each stage command runs, and fail naming the first one ``dvc.yaml`` does not cover
(listing a whole folder covers everything under it).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest
import yaml

from retrain.core.config import load_config
from retrain.core.errors import ConfigError

PROJECT = Path(__file__).resolve().parents[1]
SRC = PROJECT / "src"
STAGES = ("validate", "train", "evaluate")


def module_file(name: str) -> Path | None:
    """The file of project module ``name`` (None for a module outside the project)."""
    if name != "retrain" and not name.startswith("retrain."):
        return None
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(nodes: list[ast.stmt], package: str) -> set[str]:
    """Project modules imported by these statements (nested blocks and functions included,
    ``if TYPE_CHECKING:`` blocks left out: they never run)."""
    found: set[str] = set()
    stack: list[ast.AST] = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            found.add(mod)
            # `from retrain.pipeline import artifacts` imports the module artifacts too.
            found.update(f"{mod}.{alias.name}" for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))
    return {m for m in found if module_file(m) is not None}


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _package(name: str) -> str:
    path = module_file(name)
    return name if path is not None and path.name == "__init__.py" else name.rpartition(".")[0]


def _functions_reached(module: str, entry: str) -> list[ast.stmt]:
    """The module's top-level statements that are not functions, plus the function ``entry``
    and every top-level function of the same module it calls, directly or not."""
    path = module_file(module)
    assert path is not None, module
    tree = _tree(path)
    defs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    assert entry in defs, f"{module} has no function {entry!r}"
    seen: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for node in ast.walk(defs[name]):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in defs:
                todo.append(node.id)
    rest = [n for n in tree.body if not isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    return rest + [defs[n] for n in sorted(seen)]


def _closure(start: set[str]) -> set[str]:
    """Every project module ``start`` imports, transitively, with the packages whose
    ``__init__`` runs on the way; in these modules every import counts, inside functions too
    (a conservative reading: what a module may import when called)."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        path = module_file(name)
        assert path is not None, name
        todo.extend(_imports(_tree(path).body, _package(name)))
    return seen


# The stage commands' glue: click's command line, and the hand-over of the stage to the
# `retrain run` that started DVC.  They decide nothing a model is built from, and
# test_the_stage_commands_are_glue keeps them so.
GLUE = {"retrain.cli", "retrain.release", "retrain.release.stagehost"}


def files_run_by(stage: str) -> set[str]:
    """Project files (repository-relative) that ``retrain <stage>`` runs.

    From the command's function in ``cli.py`` and the functions of ``cli.py`` it calls (the
    config loading, the stage of ``retrain.pipeline.stages``), every project module imported
    on the way, transitively, the glue above left out.
    """
    start = _imports(_functions_reached("retrain.cli", stage), "retrain") - GLUE
    modules = _closure(start)
    assert not modules & GLUE, modules & GLUE
    return {str(p.relative_to(PROJECT)) for m in modules if (p := module_file(m)) is not None}


def covered(rel: str, deps: list[str]) -> bool:
    path = Path(rel)
    return any(path == Path(d) or Path(d) in path.parents for d in deps)


def dvc_deps(root: Path, stage: str) -> list[str]:
    doc = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))
    return [str(d) for d in doc["stages"][stage].get("deps") or []]


@pytest.mark.parametrize("stage", STAGES)
def test_dvc_yaml_lists_every_project_file_the_stage_runs(stage: str):
    files = files_run_by(stage)
    assert "src/retrain/pipeline/stages.py" in files  # the graph reached the stage itself
    deps = dvc_deps(PROJECT, stage)
    missing = sorted(f for f in files if not covered(f, deps))
    assert not missing, (
        f"dvc.yaml: stages.{stage}.deps does not cover {missing[0]}, which `retrain {stage}` "
        f"runs (all missing: {missing}); list it (or its folder) so a change to it re-runs "
        "the stage"
    )


def test_the_estimators_and_predictions_are_what_train_and_evaluate_run():
    """The two files the review found missing: where the model is built, where it predicts."""
    assert "src/retrain/pipeline/estimators.py" in files_run_by("train")
    for stage in ("train", "evaluate"):
        assert "src/retrain/pipeline/predict.py" in files_run_by(stage)


@pytest.mark.parametrize("stage", STAGES)
def test_the_stage_commands_are_glue(stage: str):
    """``cli.<stage>`` hands its name to ``_stage``, which either passes the stage to the
    ``retrain run`` that started DVC (``stagehost``, standard library only) or calls the
    stage of ``retrain.pipeline.stages`` on the loaded config: anything more would be code a
    stage runs that the graph above leaves out."""
    tree = _tree(module_file("retrain.cli"))  # type: ignore[arg-type]
    defs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}

    def calls(name: str) -> set[str]:
        body = ast.Module(body=defs[name].body, type_ignores=[])  # not click's decorators
        return {ast.unparse(n.func) for n in ast.walk(body) if isinstance(n, ast.Call)}

    assert calls(stage) == {"_stage"}
    assert calls("_stage") == {
        "stagehost.hand_over",
        "sys.exit",
        "getattr",
        "getattr(stages, name)",
        "_cfg",
    }
    host = _tree(module_file("retrain.release.stagehost"))  # type: ignore[arg-type]
    assert _imports(host.body, "retrain.release") <= {"retrain.core.errors", "retrain.core"}


def _write_model_py(root: Path) -> None:
    (root / "model.py").write_text(
        "from sklearn.tree import DecisionTreeClassifier\n\n\n"
        "def build(dataset):\n    return DecisionTreeClassifier(random_state=0)\n"
    )
    model = root / "configs" / "model.yaml"
    model.write_text("pipeline: model:build\nrandom_state: 0\n")


def _copy_project(dest: Path) -> Path:
    import shutil

    (dest / "configs").mkdir(parents=True)
    for path in (PROJECT / "configs").glob("*.yaml"):
        shutil.copy(path, dest / "configs" / path.name)
    shutil.copy(PROJECT / "dvc.yaml", dest / "dvc.yaml")
    return dest


def test_a_forks_own_model_py_must_be_a_dependency_of_train_and_evaluate(tmp_path: Path):
    """evaluate loads the model, which calls into model.py: both stages run it."""
    root = _copy_project(tmp_path / "fork")
    _write_model_py(root)
    text = (root / "dvc.yaml").read_text()
    train_only = text.replace(
        "      - artifacts/validation.json\n",
        "      - artifacts/validation.json\n      - model.py\n",
        1,
    )
    (root / "dvc.yaml").write_text(train_only)
    with pytest.raises(ConfigError, match=r"model\.py is not a dependency of the evaluate stage"):
        load_config(root)
    both = train_only.replace(
        "      - artifacts/train/training.json\n",
        "      - artifacts/train/training.json\n      - model.py\n",
        1,
    )
    (root / "dvc.yaml").write_text(both)
    cfg = load_config(root)
    assert cfg.model.pipeline == "model:build"
    for stage in ("train", "evaluate"):
        assert covered("model.py", dvc_deps(root, stage))
