"""The bundled example: Seattle daily weather 2012–2015, shipped inside ``vega_datasets``.

The data is materialised deterministically (byte-identical on every machine) so a fresh
clone gets exactly what ``data.dvc`` records, offline:

- ``data/batches/<year>-H<half>.csv``: labelled half-year batches, in time order;
- ``data/holdout.csv``: all of 2015, frozen; candidate and production are judged on it;
- ``data/key_examples.csv``: a few days a reviewer should look at (:data:`KEY_EXAMPLES`).

``data.dvc`` changes whenever these bytes do: regenerate it with ``materialise`` into a
scratch directory, ``dvc init --no-scm`` and ``dvc add data`` there, and copy its
``data.dvc`` over (:func:`make_sandbox` checks the two agree to the byte).

The repository ships ``data.dvc`` for the batches up to :data:`INITIAL_BATCHES`; the demo and
the tests "receive" later batches with :func:`ingest_next_batch`, which commits a new
``data.dvc`` the way a team's ingestion job would.

:func:`make_sandbox` builds a throw-away fork: a bare ``origin``, a clone of the project, a
local DVC remote and a SQLite MLflow store, all under one directory.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from retrain.core.errors import BadInput

BATCHES = ["2012-H1", "2012-H2", "2013-H1", "2013-H2", "2014-H1", "2014-H2"]
INITIAL_BATCHES = 3  # 2012-H1 … 2013-H1 are in the repository's data.dvc
HOLDOUT_YEAR = 2015
SEASONS = {
    12: "winter",
    1: "winter",
    2: "winter",
    3: "spring",
    4: "spring",
    5: "spring",
    6: "summer",
    7: "summer",
    8: "summer",
    9: "autumn",
    10: "autumn",
    11: "autumn",
}
# Key examples (data/key_examples.csv): the features, an optional expected label that the
# candidate must still predict (the key_examples gate), and a note for the reviewer.
KEY_EXAMPLES = """\
precipitation,temp_max,temp_min,wind,season,expected,note
0.0,30.0,15.0,2.5,summer,sun,a hot dry summer day
20.0,9.0,5.0,5.0,autumn,,a stormy autumn day with heavy rain
0.0,8.0,1.0,1.0,winter,,"a calm, cold, dry winter day"
3.0,14.0,8.0,3.0,spring,,light rain in spring
5.0,1.0,-4.0,4.0,winter,,freezing with precipitation
"""
COLUMNS = ["date", "precipitation", "temp_max", "temp_min", "wind", "season", "weather"]


def source_frame() -> pd.DataFrame:
    """The raw dataset as the package ships it, plus the derived ``season`` column."""
    from vega_datasets import local_data

    df = local_data.seattle_weather()
    df["date"] = pd.to_datetime(df["date"])
    df["season"] = df["date"].dt.month.map(SEASONS)
    df["weather"] = df["weather"].astype(str)
    return df


def _half(ts: pd.Series) -> pd.Series:
    return ts.dt.year.astype(str) + "-H" + ((ts.dt.month > 6).astype(int) + 1).astype(str)


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    out = frame[COLUMNS].copy()
    out["date"] = out["date"].dt.strftime("%Y-%m-%d")
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(path, index=False, lineterminator="\n", float_format="%.1f")


def materialise(root: Path, n_batches: int = INITIAL_BATCHES) -> list[str]:
    """Write ``data/`` with the first ``n_batches`` batches and the holdout; return the names."""
    if not 1 <= n_batches <= len(BATCHES):
        raise BadInput(f"n_batches must be 1..{len(BATCHES)}, got {n_batches}")
    df = source_frame()
    halves = _half(df["date"])
    data = Path(root) / "data"
    batches = data / "batches"
    if batches.exists():
        shutil.rmtree(batches)
    for name in BATCHES[:n_batches]:
        _write_csv(df[halves == name], batches / f"{name}.csv")
    _write_csv(df[df["date"].dt.year == HOLDOUT_YEAR], data / "holdout.csv")
    (data / "key_examples.csv").write_text(KEY_EXAMPLES)
    return BATCHES[:n_batches]


def present_batches(root: Path) -> list[str]:
    folder = Path(root) / "data" / "batches"
    return sorted(p.stem for p in folder.glob("*.csv")) if folder.is_dir() else []


def write_batch(root: Path, name: str) -> Path:
    df = source_frame()
    part = df[_half(df["date"]) == name]
    if part.empty:
        raise BadInput(f"no example batch named {name!r}; batches are {BATCHES}")
    path = Path(root) / "data" / "batches" / f"{name}.csv"
    _write_csv(part, path)
    return path


# --------------------------------------------------------------------------- sandbox
def run_command(cmd: list[str], cwd: Path, env: dict[str, str], quiet: bool = True) -> str:
    res = subprocess.run(cmd, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed in {cwd}:\n{res.stdout}\n{res.stderr}")
    return res.stdout


def _tool(name: str) -> str:
    exe = Path(sys.executable).with_name(name)
    return str(exe) if exe.exists() else name


@dataclass
class Sandbox:
    """A throw-away fork of the project with its own origin, DVC remote and MLflow store."""

    base: Path
    root: Path
    origin: Path
    dvc_remote: Path
    env: dict[str, str] = field(default_factory=dict)

    def run(self, *cmd: str, cwd: Path | None = None) -> str:
        return run_command(list(cmd), cwd or self.root, self.env)

    def git(self, *args: str, cwd: Path | None = None) -> str:
        return self.run("git", *args, cwd=cwd).strip()


def sandbox_env(base: Path) -> dict[str, str]:
    return {
        "MLFLOW_TRACKING_URI": f"sqlite:///{base / 'mlflow.db'}",
        "GIT_AUTHOR_NAME": "retrain-bot",
        "GIT_AUTHOR_EMAIL": "retrain-bot@example.invalid",
        "GIT_COMMITTER_NAME": "retrain-bot",
        "GIT_COMMITTER_EMAIL": "retrain-bot@example.invalid",
        "DVC_NO_ANALYTICS": "1",
        "DVC_NO_UPDATE_CHECK": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def project_files(project: Path) -> list[str]:
    """Files of the project as a fork would have them (tracked, plus untracked not ignored)."""
    out = run_command(["git", "ls-files", "-co", "--exclude-standard"], project, {})
    skip = ("data/", ".demo/", ".drill/")
    return [f for f in out.splitlines() if f and not f.startswith(skip) and (project / f).is_file()]


def make_sandbox(
    base: Path, project: Path | None = None, *, cooldown_days: float | None = 0
) -> Sandbox:
    """Fork the project into ``base``: bare origin, clone, DVC remote, MLflow SQLite.

    The fork replays years of batches in seconds, so by default its triggers config sets
    ``cooldown_days: 0`` (pass ``None`` to keep the project's value).
    """
    project = Path(project or Path.cwd()).resolve()
    base = Path(base).resolve()
    base.mkdir(parents=True, exist_ok=True)
    env = sandbox_env(base)
    origin, root, remote = base / "origin.git", base / "work", base / "dvc-remote"
    run_command(["git", "init", "-q", "--bare", "-b", "main", str(origin)], base, env)
    root.mkdir()
    for rel in project_files(project):
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(project / rel, dest)
    sb = Sandbox(base=base, root=root, origin=origin, dvc_remote=remote, env=env)
    sb.git("init", "-q", "-b", "main")
    sb.git("remote", "add", "origin", str(origin))
    materialise(root)
    dvc = _tool("dvc")
    sb.run(dvc, "config", "core.analytics", "false")
    sb.run(dvc, "remote", "add", "-d", "-f", "sandbox", str(remote))
    # Hash the materialised data the way DVC does; it must reproduce data.dvc to the byte.
    recorded = (root / "data.dvc").read_bytes()
    sb.run(dvc, "add", "-q", "data")
    if (root / "data.dvc").read_bytes() != recorded:
        raise RuntimeError("materialised data does not match the repository's data.dvc")
    if cooldown_days is not None:
        trig = root / "configs" / "triggers.yaml"
        text = trig.read_text()
        trig.write_text(
            re.sub(
                r"(?m)^cooldown_days:.*$",
                f"cooldown_days: {cooldown_days}  # sandbox: history replayed in seconds",
                text,
            )
        )
    sb.git("add", "-A")
    sb.git("commit", "-q", "-m", "Fork of the retrain template (sandbox)")
    sb.run(dvc, "push", "-q")
    sb.git("push", "-q", "origin", "main")
    return sb


# Settings a sandbox of a fork must not inherit: they reach the fork's production (its log,
# its tracking server, its deploy hook) or a test harness.
PRODUCTION_ENV = (
    "RETRAIN_LOG_URL",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "RETRAIN_FAULT_AT",
    "RETRAIN_FAULT_KILL",
    "RETRAIN_FAULT_PGID",
)


def sandbox_of_fork(base: Path, fork: Path) -> Sandbox:
    """A throw-away copy of the fork at ``fork`` as committed (its history and tags, its
    configs, registry and data) under ``base``: a bare ``origin``, a clone, a local DVC remote
    holding the fork's data and its production artifact, MLflow on SQLite, the prediction
    log in the sandbox, and no deploy hook.  Nothing of the fork is changed.

    The data is the fork's ``data/`` when it matches ``data.dvc`` (a fork after ``dvc pull``),
    else the bundled example's when those are what ``data.dvc`` records (the template);
    anything else is refused (:class:`BadInput`) naming what to do.  The production artifact
    is fetched by hash from the fork's DVC cache or remote, sha256 checked.
    """
    import yaml

    from retrain.core import registry as reg
    from retrain.core.config import load_config
    from retrain.pipeline import artifacts

    fork = Path(fork).resolve()
    base = Path(base).resolve()
    base.mkdir(parents=True, exist_ok=True)
    env = sandbox_env(base)
    origin, root, remote = base / "origin.git", base / "work", base / "dvc-remote"
    head = run_command(["git", "rev-parse", "HEAD"], fork, env).strip()
    run_command(["git", "clone", "-q", "--bare", "--no-local", str(fork), str(origin)], base, env)
    run_command(["git", "clone", "-q", str(origin), str(root)], base, env)
    sb = Sandbox(base=base, root=root, origin=origin, dvc_remote=remote, env=env)
    sb.git("checkout", "-q", "-B", "main", head)
    dvc = _tool("dvc")
    recorded = (root / "data.dvc").read_bytes() if (root / "data.dvc").is_file() else None
    if (fork / "data").is_dir():
        shutil.copytree(fork / "data", root / "data")
    else:
        materialise(root)
    sb.run(dvc, "add", "-q", "data")
    if recorded is not None and (root / "data.dvc").read_bytes() != recorded:
        raise BadInput(
            f"{fork / 'data'}: does not match the committed data.dvc; the drill runs on the "
            "fork's data as committed: `dvc checkout` (or `dvc pull`) it first"
        )
    sb.run(dvc, "config", "core.analytics", "false")
    sb.run(dvc, "remote", "add", "-d", "-f", "sandbox", str(remote))
    # The sandbox's own log and no deploy hook: a drill must never reach production.
    (root / "configs" / "serve.yaml").write_text(
        "# drill sandbox: its own prediction log\nlog_url: sqlite:///.retrain/predictions.db\n"
    )
    release = root / "configs" / "release.yaml"
    doc = yaml.safe_load(release.read_text()) or {}
    if doc.get("deploy_command"):
        doc["deploy_command"] = None
        release.write_text(yaml.safe_dump(doc, sort_keys=False))
    cfg = load_config(root)
    registry = reg.load(root, expected_model=cfg.release.model_name)
    if registry.rollout is not None:  # the drill starts from production alone
        reg.save(root, reg.with_rollout(registry, None))
    prod = registry.production_entry
    if prod is not None:
        path = artifacts.fetch(fork, prod.artifact, prod.version)
        artifacts.store(root, path, prod.artifact.md5)
    sb.git("add", "-A")
    sb.git("commit", "-q", "--allow-empty", "-m", "Drill sandbox of the fork")
    sb.run(dvc, "push", "-q", "data.dvc")
    sb.git("push", "-q", "-f", "origin", "main")
    return sb


def ingest_next_batch(root: Path, env: dict[str, str] | None = None) -> str:
    """Receive the next example batch: write it, ``dvc add``, commit data.dvc, ``dvc push``."""
    env = env or sandbox_env(Path(root).parent)
    have = present_batches(root)
    remaining = [b for b in BATCHES if b not in have]
    if not remaining:
        raise BadInput("every example batch has been ingested already")
    name = remaining[0]
    write_batch(root, name)
    dvc = _tool("dvc")
    run_command([dvc, "add", "-q", "data"], root, env)
    run_command(["git", "add", "data.dvc"], root, env)
    run_command(["git", "commit", "-q", "-m", f"data: add batch {name}"], root, env)
    run_command([dvc, "push", "-q"], root, env)
    if (
        subprocess.run(
            ["git", "remote", "get-url", "origin"], cwd=root, capture_output=True
        ).returncode
        == 0
    ):
        run_command(["git", "push", "-q", "origin", "HEAD"], root, env)
    return name


def merge_proposal(sb: Sandbox, branch: str) -> str:
    """What pressing "Merge" on the PR does: a --no-ff merge into main, pushed."""
    sb.git("fetch", "-q", "origin")
    local = (
        subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
            cwd=sb.root,
            capture_output=True,
        ).returncode
        == 0
    )
    ref = branch if local else f"origin/{branch}"  # a workflow run pushed it, never local
    sb.git("merge", "-q", "--no-ff", "-m", f"Merge pull request #1 from {branch}", ref)
    sb.git("push", "-q", "origin", "main")
    return sb.git("rev-parse", "HEAD")


# --------------------------------------------------------------------------- raw examples
# The bundled examples as a user's own raw file would look, for ``retrain init``: the
# weather one (classification, the repository's own configs are its onboarded form) and a
# second with a regression target, Cars 1970–1982 (also shipped inside ``vega_datasets``).
@dataclass(frozen=True)
class RawExample:
    """A raw labelled file and the ``retrain init`` flags that onboard it."""

    key: str
    file_name: str
    target: str
    time_column: str
    model_name: str
    n_batches: int
    about: str

    def frame(self) -> pd.DataFrame:
        return RAW_FRAMES[self.key]()

    def init_args(self, path: Path) -> list[str]:
        return [
            "--data",
            str(path),
            "--target",
            self.target,
            "--time-column",
            self.time_column,
            "--name",
            self.model_name,
            "--batches",
            str(self.n_batches),
        ]


def weather_raw_frame() -> pd.DataFrame:
    """Seattle weather as the package ships it (no derived ``season``), dates as text."""
    df = source_frame().drop(columns=["season"])
    df["date"] = df["date"].dt.strftime("%Y-%m-%d")
    return df


def cars_raw_frame() -> pd.DataFrame:
    """Cars 1970–1982 as the package ships it: 406 models, miles per gallon to predict.

    ``Name`` is an identifier (``init`` ignores it), ``Horsepower`` has 6 missing values and
    the target 8 (those rows are left out), ``Origin`` is a categorical with three levels
    (the subgroup the gates judge), ``Year`` is the model year (the time column).
    """
    from vega_datasets import local_data

    df = local_data.cars()
    df["Year"] = pd.to_datetime(df["Year"]).dt.strftime("%Y-%m-%d")
    return df


RAW_FRAMES = {"weather": weather_raw_frame, "cars": cars_raw_frame}
RAW_EXAMPLES = {
    "weather": RawExample(
        "weather",
        "seattle-weather.csv",
        "weather",
        "date",
        "seattle-weather",
        6,
        "classification of the day's weather, Seattle 2012–2015",
    ),
    "cars": RawExample(
        "cars",
        "cars.csv",
        "Miles_per_Gallon",
        "Year",
        "cars-mpg",
        3,
        "regression of miles per gallon by model year 1970–1982",
    ),
}


def raw_example(key: str) -> RawExample:
    try:
        return RAW_EXAMPLES[key]
    except KeyError:
        raise BadInput(
            f"--example: no bundled example {key!r}; expected one of {sorted(RAW_EXAMPLES)}"
        ) from None


def write_raw(key: str, path: Path) -> Path:
    """Write the raw file of example ``key`` to ``path`` (CSV, deterministic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw_example(key).frame().to_csv(path, index=False, lineterminator="\n")
    return path


def _retrain_exe() -> list[str]:
    return [sys.executable, "-m", "retrain"]


def onboard_example(sb: Sandbox, key: str, hold_back: int = 1) -> tuple[str, list[Path]]:
    """``retrain init`` a sandbox fork on example ``key``'s raw file, as a user would.

    The raw file is written next to the fork (``<base>/<file>``), ``retrain init`` runs with
    the example's flags, and the newest ``hold_back`` batches are moved aside (to
    ``<base>/held/``) before the onboarded fork is committed and pushed, so that they can
    "arrive" later with :func:`receive_held`.  Returns init's output and the held files.
    """
    ex = raw_example(key)
    raw = write_raw(key, sb.base / ex.file_name)
    out = sb.run(*_retrain_exe(), "init", *ex.init_args(raw))
    batches = sorted((sb.root / "data" / "batches").glob("*.csv"))
    if not 0 <= hold_back < len(batches):
        raise BadInput(f"hold_back must be 0..{len(batches) - 1}, got {hold_back}")
    held_dir = sb.base / "held"
    held_dir.mkdir(exist_ok=True)
    held = []
    for path in batches[len(batches) - hold_back :]:
        dest = held_dir / path.name
        shutil.move(path, dest)
        held.append(dest)
    dvc = _tool("dvc")
    sb.run(dvc, "add", "-q", "data")
    sb.git("add", "-A")
    sb.git("commit", "-q", "-m", f"Onboard {ex.model_name} with retrain init")
    sb.run(dvc, "push", "-q")
    sb.git("push", "-q", "origin", "main")
    return out, held


def receive_held(sb: Sandbox, held: list[Path]) -> str:
    """The next held-back batch arrives: move it into ``data/batches``, commit data.dvc, push."""
    remaining = [p for p in held if p.exists()]
    if not remaining:
        raise BadInput("every held-back batch has been received already")
    path = remaining[0]
    shutil.move(path, sb.root / "data" / "batches" / path.name)
    dvc = _tool("dvc")
    sb.run(dvc, "add", "-q", "data")
    sb.git("add", "data.dvc")
    sb.git("commit", "-q", "-m", f"data: add batch {path.name}")
    sb.run(dvc, "push", "-q")
    sb.git("push", "-q", "origin", "HEAD")
    return path.name
