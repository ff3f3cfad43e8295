"""A judgement is made once: the record of every judged candidate, kept in git notes.

A gated candidate is held for reasons that do not change until its inputs do.  Retraining on
the same data, configs and code against the same production version gives the same verdict,
so a scheduled run whose inputs match a recorded gated judgement says "already judged" and
trains nothing (a manual run still retrains).

**The inputs** (:func:`inputs_of`) are read from git alone, cheaply, before any data:

* **data**: the md5 of every DVC-tracked output (``data.dvc``) a stage depends on;
* **configs**: the ``configs/`` tree (gates and triggers included: the gates are not a stage)
  and any other params file ``dvc.yaml`` names;
* **code**: the git object of every other dependency of every stage in ``dvc.yaml``, of
  ``dvc.yaml`` itself (outputs of a stage are derived, so left out) and of the gates' code
  (``src/retrain/decide``, when the fork tracks it);
* **production**: the version ``registry.yaml`` names and its artifact's sha256.

``retrain run`` refuses a dirty working tree, so what git records at ``HEAD`` is what runs.

**The record** is a JSON line per judgement in a git note on the commit that was judged,
under ``refs/notes/retrain/judgements``: ``git log --notes=retrain/judgements`` shows each
verdict beside its commit.  Notes are pushed to ``origin`` (``retrain run --push``) and
fetched back at the start of every run, so a fresh clone in CI finds them; concurrent
records are merged line by line (``git notes merge -s cat_sort_uniq``; each line starts with
its time, so the merged note stays in time order).  Pushing a notes ref starts no workflow
and no branch rule applies to it (docs/decisions.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from retrain.core import registry as reg
from retrain.core.errors import RetrainError
from retrain.core.progress import progress
from retrain.release import gitops

NOTES_REF = "refs/notes/retrain/judgements"
ORIGIN_COPY = "refs/notes/retrain/judgements-origin"  # origin's record, as last fetched
KINDS = ("data", "configs", "code", "production")
# The gates are not a stage (they compare with production, which is git state), so their
# code is named here beside the stages' dependencies.
GATES_CODE = "src/retrain/decide"


@dataclass
class Inputs:
    """What a judgement depended on: ``{name: identity}`` and the kind of each name."""

    parts: dict[str, str]
    kinds: dict[str, str]

    @property
    def key(self) -> str:
        text = json.dumps(self.parts, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Record:
    """One judgement: when, of which commit, which candidate, the verdict and its inputs."""

    at: str
    outcome: str  # "gated" | "proposed"
    key: str
    commit: str
    production: str | None
    version: str | None
    fired: list[str] = field(default_factory=list)
    manual: bool = False
    failed: list[dict[str, Any]] = field(default_factory=list)
    parts: dict[str, str] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    issue: str | None = None  # the GitHub issue a stuck loop opened or updated

    def line(self) -> str:
        # "at" first: git's cat_sort_uniq merge sorts lines, which keeps them in time order
        return json.dumps(asdict(self), separators=(",", ":"), default=str)

    @classmethod
    def parse(cls, line: str) -> Record | None:
        try:
            data = json.loads(line)
            return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        except (ValueError, TypeError):
            return None  # a hand-edited or foreign note line is not a judgement

    @property
    def when(self) -> str:
        """``2026-01-05 05:17 UTC``."""
        return self.at.replace("T", " ")[:16] + " UTC"

    def failing(self) -> str:
        """``improvement (gain is below min_delta 0.0100 by 0.0050); latency (...)``."""
        return "; ".join(
            f"{f['gate']} ({f['detail']})" if f.get("detail") else str(f["gate"])
            for f in self.failed
        )


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------- inputs
def _stage_paths(root: Path) -> tuple[set[str], set[str]]:
    """``(dependency paths, params files)`` of every stage in ``dvc.yaml``, outputs left out."""
    path = root / "dvc.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    stages = (doc or {}).get("stages") or {}
    deps: set[str] = set()
    params: set[str] = set()
    outs: set[str] = set()
    for stage in stages.values():
        if not isinstance(stage, dict):
            continue
        deps.update(str(d) for d in stage.get("deps") or [])
        for p in stage.get("params") or []:
            if isinstance(p, dict):
                params.update(str(k) for k in p)
            else:
                params.add("params.yaml")  # a bare key names DVC's default params file
        for kind in ("outs", "metrics", "plots"):
            for o in stage.get(kind) or []:
                outs.update(str(k) for k in o) if isinstance(o, dict) else outs.add(str(o))
    return {d.rstrip("/") for d in deps} - outs, params


def _dvc_outputs(root: Path) -> dict[str, tuple[str, str]]:
    """``{output path: (.dvc file, md5)}`` for every ``.dvc`` file git tracks."""
    found: dict[str, tuple[str, str]] = {}
    for rel in gitops.git(root, "ls-files", "--", "*.dvc").splitlines():
        text = gitops.show(root, "HEAD", rel)
        try:
            doc = yaml.safe_load(text or "") or {}
        except yaml.YAMLError:
            continue
        base = str(Path(rel).parent)
        for out in doc.get("outs") or []:
            if isinstance(out, dict) and out.get("path"):
                path = str(Path(base) / str(out["path"])) if base != "." else str(out["path"])
                found[path.rstrip("/")] = (rel, str(out.get("md5") or out.get("hash") or ""))
    return found


def inputs_of(root: Path, registry: reg.Registry) -> Inputs:
    """The data, configs, code and production version a judgement at ``HEAD`` depends on."""
    root = Path(root)
    deps, params = _stage_paths(root)
    tracked = ["configs", "dvc.yaml", GATES_CODE, *sorted(params), *sorted(deps)]
    files: dict[str, str] = {}  # every file git has at HEAD under the tracked paths
    for line in gitops.git(root, "ls-tree", "-r", "HEAD", "--", *tracked).splitlines():
        meta, name = line.split("\t", 1)
        files[name] = meta.split()[2]
    dvc_outs = _dvc_outputs(root)
    parts: dict[str, str] = {}
    kinds: dict[str, str] = {}
    for name in tracked:
        kind = "configs" if name == "configs" or name in params else "code"
        if name.startswith("configs/") and any(f.startswith("configs/") for f in files):
            continue  # inside the configs tree, counted with it
        under = sorted(f"{f} {oid}" for f, oid in files.items() if f.startswith(name + "/"))
        if name in files or under:
            ident = files.get(name) or hashlib.sha256("\n".join(under).encode()).hexdigest()
            parts[name], kinds[name] = ident, kind
            continue
        owner = next((out for out in dvc_outs if name == out or name.startswith(out + "/")), None)
        if owner is not None:
            dvc_file, md5 = dvc_outs[owner]
            parts[dvc_file], kinds[dvc_file] = md5, "data"
            continue
        path = root / name
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "absent"
        parts[name], kinds[name] = f"untracked:{digest}", kind
    prod = registry.production_entry
    parts["production"] = f"{prod.version} {prod.artifact.sha256}" if prod else "none"
    kinds["production"] = "production"
    return Inputs(parts, kinds)


def changed(old: Record, new: Inputs) -> list[str]:
    """The kinds of input (data, configs, code, production) that differ from ``old``'s."""
    names = set(old.parts) | set(new.parts)
    kinds = {
        new.kinds.get(n) or old.kinds.get(n) or "code"
        for n in names
        if old.parts.get(n) != new.parts.get(n)
    }
    return [k for k in KINDS if k in kinds]


# --------------------------------------------------------------------------- records
def records(root: Path) -> list[Record]:
    """Every recorded judgement, oldest first."""
    listing = gitops.git(root, "notes", "--ref", NOTES_REF, "list", check=False)
    blobs = [line.split()[0] for line in listing.splitlines() if line.strip()]
    if not blobs:
        return []
    res = subprocess.run(
        ["git", "cat-file", "--batch"],
        cwd=root,
        input="\n".join(blobs) + "\n",
        capture_output=True,
        text=True,
    )
    out: list[Record] = []
    for line in res.stdout.splitlines():
        if line.startswith("{"):
            rec = Record.parse(line)
            if rec is not None:
                out.append(rec)
    return sorted(out, key=lambda r: r.at)


def already_judged(recs: list[Record], inputs: Inputs) -> Record | None:
    """The newest judgement of exactly these inputs when it held the candidate, else None
    (never judged, or its newest judgement proposed: a pending proposal is re-proposed)."""
    same = [r for r in recs if r.key == inputs.key]
    return same[-1] if same and same[-1].outcome == "gated" else None


def last_judged(recs: list[Record]) -> Record | None:
    return recs[-1] if recs else None


def write(root: Path, rec: Record) -> None:
    """Append ``rec`` to the note of commit ``rec.commit``."""
    old = gitops.git(root, "notes", "--ref", NOTES_REF, "show", rec.commit, check=False)
    lines = [line for line in old.splitlines() if line.strip()]
    text = "\n".join([*lines, rec.line()]) + "\n"
    gitops.git(root, "notes", "--ref", NOTES_REF, "add", "-f", "-F", "-", rec.commit, input=text)


# --------------------------------------------------------------------------- origin
def sync(root: Path) -> str | None:
    """Fetch origin's records and merge them into the local ones; return the commit origin's
    notes ref points at (None: origin has none yet, or there is no origin).

    A fetch that fails (offline, no access) is said out loud and the local records are used.
    """
    if not gitops.has_remote(root):
        return None
    try:
        res = subprocess.run(
            ["git", "fetch", "--quiet", "origin", f"+{NOTES_REF}:{ORIGIN_COPY}"],
            cwd=root,
            capture_output=True,
            text=True,
            # never wait for a password on a terminal: without credentials, say so, go on
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        progress(f"judgements: fetching {NOTES_REF} from origin timed out; using the local record")
        return None
    if res.returncode != 0:
        err = (res.stderr or "").strip()
        if "couldn't find remote ref" in err:
            return None  # no judgement was pushed yet
        last = err.splitlines()[-1] if err else f"exit {res.returncode}"
        progress(
            f"judgements: could not fetch {NOTES_REF} from origin ({last}); using the local record"
        )
        return None
    theirs = gitops.head(root, ORIGIN_COPY)
    if not gitops.ok(root, "rev-parse", "--verify", "--quiet", NOTES_REF):
        gitops.git(root, "update-ref", NOTES_REF, theirs)
    else:
        gitops.git(
            root, "notes", "--ref", NOTES_REF, "merge", "-q", "-s", "cat_sort_uniq", ORIGIN_COPY
        )
    return theirs


def push(root: Path, seen: str | None) -> bool:
    """Push the local records to origin if origin still has what :func:`sync` saw; a failure
    is said, not raised: losing the memo only means the next run judges again."""
    if not gitops.has_remote(root):
        return False
    try:
        gitops.push_with_lease(root, NOTES_REF, seen, what="the judgement record")
    except RetrainError as exc:
        progress(f"judgements: not pushed ({exc}); the next scheduled run will judge again")
        return False
    return True
