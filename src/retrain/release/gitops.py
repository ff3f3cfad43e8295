"""Git operations, by subprocess on the real git.

Proposals are committed with plumbing (a private index, ``commit-tree``, ``update-ref``) so
the checkout the user or the scheduler is on is never switched or modified.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from retrain.core.errors import GitError, RaceLost

BOT_NAME = "retrain-bot"
BOT_EMAIL = "retrain-bot@users.noreply.github.com"


def identity_env(root: Path) -> dict[str, str]:
    """A committer identity for machines that have none (a fresh CI runner); an identity the
    user configured, or set in the environment, always wins."""
    env: dict[str, str] = {}
    for role in ("AUTHOR", "COMMITTER"):
        for key, default, cfg in (
            ("NAME", BOT_NAME, "user.name"),
            ("EMAIL", BOT_EMAIL, "user.email"),
        ):
            var = f"GIT_{role}_{key}"
            if os.environ.get(var):
                continue
            res = subprocess.run(["git", "config", cfg], cwd=root, capture_output=True, text=True)
            if not res.stdout.strip():
                env[var] = default
    return env


def git(
    root: Path,
    *args: str,
    env: dict[str, str] | None = None,
    check: bool = True,
    input: str | None = None,
) -> str:
    full_env = {**os.environ, **identity_env(root), **(env or {})}
    res = subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, env=full_env, input=input
    )
    if check and res.returncode != 0:
        msg = (res.stderr or res.stdout).strip().splitlines()
        raise GitError(f"git {' '.join(args[:2])} failed: {msg[-1] if msg else 'no output'}")
    return res.stdout.strip()


def ok(root: Path, *args: str) -> bool:
    return subprocess.run(["git", *args], cwd=root, capture_output=True).returncode == 0


def head(root: Path, ref: str = "HEAD") -> str:
    return git(root, "rev-parse", ref)


def current_branch(root: Path) -> str | None:
    out = git(root, "rev-parse", "--abbrev-ref", "HEAD")
    return None if out == "HEAD" else out


def is_dirty(root: Path, paths: list[str] | None = None) -> bool:
    return bool(git(root, "status", "--porcelain", "--untracked-files=no", "--", *(paths or [])))


def show(root: Path, rev: str, path: str) -> str | None:
    """A file's text at a revision, or None when it does not exist there."""
    res = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=root, capture_output=True, text=True)
    return res.stdout if res.returncode == 0 else None


def commit_files_to_branch(
    root: Path, *, branch: str, base: str, files: dict[str, bytes], message: str
) -> str:
    """Point ``branch`` at a new commit = ``base`` + ``files``; the working tree is untouched.

    An existing branch of that name (a pending proposal for the same version) is replaced:
    proposal branches belong to the tool, and only the newest candidate should be reviewed.
    """
    with tempfile.TemporaryDirectory() as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        git(root, "read-tree", base, env=env)
        for rel, data in sorted(files.items()):
            blob = (
                subprocess.run(
                    ["git", "hash-object", "-w", "--stdin"],
                    cwd=root,
                    input=data,
                    capture_output=True,
                    check=True,
                )
                .stdout.decode()
                .strip()
            )
            git(root, "update-index", "--add", "--cacheinfo", f"100644,{blob},{rel}", env=env)
        tree = git(root, "write-tree", env=env)
    commit = git(root, "commit-tree", tree, "-p", base, "-m", message)
    git(root, "update-ref", f"refs/heads/{branch}", commit)
    return commit


@dataclass
class Change:
    """One first-parent commit on the base branch that changed a file."""

    sha: str
    parent: str | None
    at: str
    subject: str
    parents: int


def first_parent_changes(root: Path, path: str, ref: str = "HEAD") -> list[Change]:
    """Commits on the first-parent line of ``ref`` that touched ``path``, oldest first."""
    out = git(
        root,
        "log",
        "--first-parent",
        "--format=%H%x09%P%x09%cI%x09%s",
        ref,
        "--",
        path,
        check=False,
    )
    changes = []
    for line in out.splitlines():
        sha, parents, at, subject = line.split("\t", 3)
        plist = parents.split()
        changes.append(
            Change(
                sha=sha,
                parent=plist[0] if plist else None,
                at=at,
                subject=subject,
                parents=len(plist),
            )
        )
    return list(reversed(changes))


def tag(root: Path, name: str, target: str, message: str) -> bool:
    """Create an annotated tag; False when it already exists (idempotent re-runs)."""
    if ok(root, "rev-parse", "--verify", "--quiet", f"refs/tags/{name}"):
        return False
    git(root, "tag", "-a", name, target, "-m", message)
    return True


def tags_matching(root: Path, pattern: str) -> list[str]:
    out = git(root, "tag", "--list", pattern)
    return [t for t in out.splitlines() if t]


def push(root: Path, *refspecs: str, remote: str = "origin") -> None:
    git(root, "push", remote, *refspecs)


def has_remote(root: Path, remote: str = "origin") -> bool:
    return ok(root, "remote", "get-url", remote)


def remote_sha(root: Path, ref: str, remote: str = "origin") -> str | None:
    """The commit ``ref`` (``refs/heads/x``, ``refs/tags/y``) points at on ``remote`` now."""
    if not has_remote(root, remote):
        return None
    out = git(root, "ls-remote", remote, ref, check=False)
    return out.split()[0] if out else None


def push_with_lease(
    root: Path, ref: str, expected: str | None, *, what: str, remote: str = "origin"
) -> None:
    """Push local ``ref`` to ``remote`` only if the remote still has ``expected`` there
    (None: absent), so a runner never overwrites what another pushed meanwhile.

    Raises :class:`RaceLost` naming what the remote has now.
    """
    lease = f"--force-with-lease={ref}:{expected or ''}"
    res = subprocess.run(
        ["git", "push", "--porcelain", lease, remote, f"{ref}:{ref}"],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, **identity_env(root)},
    )
    if res.returncode == 0:
        return
    now = remote_sha(root, ref, remote)
    if now != expected:
        raise RaceLost(
            f"{remote}: {what} was pushed by another runner meanwhile (now {now[:8] if now else 'deleted'}, "
            f"this runner saw {expected[:8] if expected else 'none'}); leaving it, this run changes nothing"
        )
    msg = (res.stderr or res.stdout).strip().splitlines()
    raise GitError(f"git push {ref} failed: {msg[-1] if msg else 'no output'}")
