"""The git forge (GitHub), reached only through the ``gh`` command.

Everything else in the loop is plain git; opening a pull request is the one step that
needs the forge, so it lives here, once.  Tests stand ``gh`` in at the process boundary.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from retrain.core.errors import ExternalCommandError
from retrain.core.progress import progress


def open_pull_request(root: Path, *, base: str, head: str, title: str, body: str) -> str:
    """``gh pr create``; returns the PR's URL.  An already open PR for ``head`` is reused
    (the branch was force-pushed, so it shows the new commits)."""
    with tempfile.NamedTemporaryFile("w", suffix=".md", delete=False, encoding="utf-8") as fh:
        fh.write(body)
        body_file = fh.name
    try:
        res = subprocess.run(
            [
                "gh",
                "pr",
                "create",
                "--base",
                base,
                "--head",
                head,
                "--title",
                title,
                "--body-file",
                body_file,
            ],
            cwd=root,
            capture_output=True,
            text=True,
        )
    except FileNotFoundError:
        raise ExternalCommandError("gh not found on PATH; cannot open the pull request") from None
    finally:
        Path(body_file).unlink(missing_ok=True)
    out = (res.stdout or "").strip()
    if res.returncode != 0:
        err = (res.stderr or out).strip()
        if "already exists" in err:
            url = next((w for w in err.split() if w.startswith("https://")), "")
            progress(f"a pull request for {head} is already open: {url or '(url not given)'}")
            return url
        raise ExternalCommandError(f"gh pr create failed: {err.splitlines()[-1] if err else ''}")
    url = out.splitlines()[-1] if out else ""
    progress(f"opened {url}")
    return url


def _gh(root: Path, args: list[str], body: str, what: str) -> str:
    """Run ``gh <args> --body-file <body>``; stdout, or ExternalCommandError naming ``what``."""
    with tempfile.NamedTemporaryFile("w", suffix=".md", delete=False, encoding="utf-8") as fh:
        fh.write(body)
        body_file = fh.name
    try:
        res = subprocess.run(
            ["gh", *args, "--body-file", body_file], cwd=root, capture_output=True, text=True
        )
    except FileNotFoundError:
        raise ExternalCommandError(f"gh not found on PATH; cannot {what}") from None
    finally:
        Path(body_file).unlink(missing_ok=True)
    if res.returncode != 0:
        err = (res.stderr or res.stdout or "").strip()
        raise ExternalCommandError(
            f"gh {' '.join(args[:2])} failed: {err.splitlines()[-1] if err else 'no output'}"
        )
    return (res.stdout or "").strip()


def open_issue(root: Path, *, title: str, body: str) -> str:
    """``gh issue create``; returns the issue's URL."""
    out = _gh(root, ["issue", "create", "--title", title], body, "open the issue")
    url = out.splitlines()[-1] if out else ""
    progress(f"opened {url}")
    return url


def update_issue(root: Path, issue: str, *, title: str, body: str, comment: str) -> None:
    """Bring issue ``issue`` (number or URL) up to date: ``gh issue edit`` with the new title
    and body (every run so far), then ``gh issue comment`` with what this run adds, so the
    people watching it are notified."""
    _gh(root, ["issue", "edit", issue, "--title", title], body, "update the issue")
    _gh(root, ["issue", "comment", issue], comment, "comment on the issue")
    progress(f"updated {issue}")
