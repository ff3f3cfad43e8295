"""Where a server reads the revision it serves: ``registry.yaml``, ``configs/`` and the fork's
code (``model.py``), all three from the same revision.

- :class:`WorkingTree`: the files under the repository root, as they are now (the default).
- :class:`GitRef` (``--follow origin/main``): ``git fetch``, then the commit's tree, extracted
  once per commit into ``.retrain/revisions/<commit>/`` (the last few are kept).
- :class:`MountedPath` (``--follow-path DIR``): a directory that something else keeps up to
  date, so the pod needs neither git nor git credentials.  Both ways of doing that swap a
  symlink atomically, and the source reads every file through the link's target as resolved
  once, never a mix of two revisions:

  * a git-sync sidecar: ``DIR`` is git-sync's ``--link`` (a symlink to
    ``.worktrees/<commit>``), so the commit is the target's name;
  * a ConfigMap volume (updated by Argo CD or Flux): the kubelet writes each update into a
    new timestamped directory and swaps the ``..data`` symlink to it; the files at the top
    are symlinks through ``..data``.

A revision is identified by a digest of the files serving reads (``key``), so the server
re-reads its configuration only when one of them changed.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from retrain.core import registry as reg
from retrain.core.config import CONFIG_DIR

GIT_TIMEOUT = 120
SERVING_CONFIGS = ("dataset", "model", "release", "serve")  # what load_serving_config reads
REVISIONS_DIR = Path(".retrain") / "revisions"
KEEP_REVISIONS = 3  # extracted git revisions kept (the serving one and the two before)
CONFIGMAP_DATA = "..data"  # the kubelet's symlink to a ConfigMap volume's current files
_COMMIT = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


@dataclass(frozen=True)
class Revision:
    """One revision's files as the server reads them."""

    text: str  # registry.yaml
    commit: str | None  # the git commit, when known
    where: str  # registry.yaml's place, for messages
    root: Path  # the directory holding this revision's configs/ and the fork's code
    key: str  # digest of registry.yaml and the serving configs: equal keys, equal files


class Source(Protocol):
    @property
    def description(self) -> str: ...

    def read(self) -> Revision: ...


def _git_bytes(root: Path, *args: str) -> bytes:
    res = subprocess.run(["git", *args], cwd=root, capture_output=True, timeout=GIT_TIMEOUT)
    if res.returncode != 0:
        last = (res.stderr.decode(errors="replace").strip().splitlines() or ["failed"])[-1]
        raise RuntimeError(f"git {' '.join(args)}: {last}")
    return res.stdout


def _git(root: Path, *args: str) -> str:
    return _git_bytes(root, *args).decode()


def _digest(root: Path, registry_text: str) -> str:
    h = hashlib.sha256(registry_text.encode())
    for name in SERVING_CONFIGS:
        path = root / CONFIG_DIR / f"{name}.yaml"
        h.update(f"\0{name}\0".encode())
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


def _read_dir(root: Path, where: str, commit: str | None) -> Revision:
    path = root / reg.REGISTRY_FILE
    if not path.is_file():
        raise RuntimeError(f"{where}: file not found")
    text = path.read_text(encoding="utf-8")
    return Revision(text, commit, where, root, _digest(root, text))


class WorkingTree:
    """The repository's own files, re-read every tick."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def description(self) -> str:
        return "working tree"

    def read(self) -> Revision:
        try:
            commit: str | None = _git(self.root, "rev-parse", "HEAD").strip()
        except (RuntimeError, OSError):
            commit = None
        return _read_dir(self.root, reg.REGISTRY_FILE, commit)


class GitRef:
    """A git ref, fetched every tick; each new commit's tree is extracted once."""

    def __init__(self, root: Path, ref: str, keep: int = KEEP_REVISIONS) -> None:
        self.root = Path(root)
        self.ref = ref
        self.keep = keep
        self.store = self.root / REVISIONS_DIR

    @property
    def description(self) -> str:
        return self.ref

    def read(self) -> Revision:
        remote = self.ref.split("/", 1)[0]
        if "/" in self.ref and remote in _git(self.root, "remote").split():
            _git(self.root, "fetch", "--quiet", remote)
        commit = _git(self.root, "rev-parse", "--verify", f"{self.ref}^{{commit}}").strip()
        tree = self._extract(commit)
        return _read_dir(tree, f"{self.ref}:{reg.REGISTRY_FILE}", commit)

    def _extract(self, commit: str) -> Path:
        """``.retrain/revisions/<commit>/``: the commit's tree, written once, atomically."""
        target = self.store / commit
        if target.is_dir():
            os.utime(target)  # most recently used: kept by _prune
            return target
        self.store.mkdir(parents=True, exist_ok=True)
        archive = _git_bytes(self.root, "archive", "--format=tar", commit)
        tmp = Path(tempfile.mkdtemp(dir=self.store, prefix=f".{commit[:12]}."))
        try:
            with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
                tar.extractall(tmp, filter="data")
            tmp.rename(target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not target.is_dir():  # another process extracted it at the same moment: fine
                raise
        self._prune(keep_also=target)
        return target

    def _prune(self, keep_also: Path) -> None:
        trees = sorted(
            (p for p in self.store.iterdir() if p.is_dir() and _COMMIT.match(p.name)),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        for old in trees[self.keep :]:
            if old != keep_also:
                shutil.rmtree(old, ignore_errors=True)


class MountedPath:
    """A directory kept up to date by a git-sync sidecar or a ConfigMap volume."""

    def __init__(self, path: Path, attempts: int = 3) -> None:
        self.path = Path(path)
        self.attempts = attempts

    @property
    def description(self) -> str:
        return str(self.path)

    def resolve(self) -> Path:
        """The directory the mount points at now (follows ``..data`` or git-sync's link)."""
        data = self.path / CONFIGMAP_DATA
        return (data if data.exists() else self.path).resolve(strict=True)

    def read(self) -> Revision:
        # The target can be swapped (and the old one deleted) between resolving it and
        # reading the files: then resolve again and read the new one whole.
        last: Exception | None = None
        for _ in range(self.attempts):
            try:
                root = self.resolve()
                commit = root.name if _COMMIT.match(root.name) else None
                revision = _read_dir(root, f"{self.path}/{reg.REGISTRY_FILE}", commit)
            except FileNotFoundError as exc:
                last = exc
                continue
            except RuntimeError as exc:  # registry.yaml missing: maybe mid-swap, maybe not
                last = exc
                continue
            if root.exists():
                return revision
        if isinstance(last, RuntimeError):
            raise last
        raise RuntimeError(f"{self.path}: cannot be read ({last})")


def source_for(root: Path, follow: str | None = None, follow_path: Path | None = None) -> Source:
    """The source ``retrain serve`` reads: a mounted path, a git ref, or the working tree."""
    if follow_path is not None:
        return MountedPath(follow_path)
    if follow:
        return GitRef(root, follow)
    return WorkingTree(root)
