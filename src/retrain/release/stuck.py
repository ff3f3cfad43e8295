"""A loop stuck on held candidates asks a person: one GitHub issue, opened then kept current.

**The rule** (``configs/triggers.yaml: stuck.after_gated_runs``, default 3): the newest
judgements, back to the last one that was not gated or was made against another production
version, are all gated, each fired by a trigger that says production is stale (anything but
``manual``: drift, new data, performance, calendar), and there are at least that many.  The
memo (:mod:`retrain.release.judged`) makes each of them a judgement of new inputs, so the
streak is not one verdict counted many times.

**The issue** is opened with ``gh issue create`` at the run that completes the streak, and
its URL recorded with that run's judgement; every later gated run of the same streak edits
its body (every run so far) and comments (what this run adds).  A new production version
ends the streak, and the next stuck streak opens a new issue.  Without ``--open-pr`` (the
embedded default, no GitHub) the body is written to ``reports/latest/stuck-issue.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrain.core.config import Config
from retrain.core.errors import RetrainError
from retrain.core.progress import progress
from retrain.release import forge
from retrain.release.judged import Record
from retrain.report import markdown

ISSUE_FILE = "stuck-issue.md"


@dataclass
class Stuck:
    runs: list[Record]  # the streak, oldest first, the current run last
    issue: str | None  # the issue opened or updated (None: not on GitHub)
    action: str  # "opened" | "updated" | "written" | "failed"
    body_path: Path | None = None
    error: str | None = None

    @property
    def message(self) -> str:
        n = len(self.runs)
        prod = self.runs[-1].production
        head = f"stuck: {n} candidates gated in a row while production v{prod} is stale"
        if self.action in ("opened", "updated"):
            return f"{head}; {self.action} issue {self.issue}"
        if self.action == "written":
            return f"{head}; issue body written to {self.body_path} (no --open-pr: not opened on GitHub)"
        return f"{head}; the issue could not be opened or updated ({self.error})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": len(self.runs),
            "production": self.runs[-1].production,
            "issue": self.issue,
            "action": self.action,
            "body_file": str(self.body_path) if self.body_path else None,
            "message": self.message,
        }


def stale(rec: Record) -> bool:
    """The run fired a trigger that says production is stale (not only ``manual``)."""
    return any(f not in ("manual",) for f in rec.fired)


def streak(recs: list[Record], production: str | None) -> list[Record]:
    """The newest judgements that are all gated, fired by staleness, against ``production``
    (oldest first); empty when the newest is not such a judgement."""
    out: list[Record] = []
    for rec in reversed(recs):
        if rec.outcome != "gated" or rec.production != production or not stale(rec):
            break
        out.append(rec)
    return out[::-1]


def title(model: str, production: str | None, n: int) -> str:
    return f"retrain: {model} v{production} held back, {n} candidates gated in a row"


def context(model: str, runs: list[Record], after: int) -> dict[str, Any]:
    return {
        "model": model,
        "production": runs[-1].production,
        "after": after,
        "runs": [
            {
                "when": r.when,
                "commit": r.commit,
                "version": r.version,
                "fired": r.fired,
                "manual": r.manual,
                "failed": r.failed,
            }
            for r in runs
        ],
    }


def check(
    cfg: Config, recs: list[Record], current: Record, *, open_issue: bool, out_dir: Path
) -> Stuck | None:
    """Apply the rule with ``current`` (this run's gated judgement, not yet written) as the
    newest; when stuck, open or update the issue (``open_issue``: through ``gh``) or write its
    body to ``out_dir``.  Sets ``current.issue`` to the issue it opened or updated."""
    after = cfg.triggers.stuck.after_gated_runs
    if after is None or current.production is None:
        return None
    runs = streak([*recs, current], current.production)
    if len(runs) < after:
        return None
    model = cfg.release.model_name
    body, comment = markdown.render_stuck_issue(context(model, runs, after))
    head = title(model, current.production, len(runs))
    known = next((r.issue for r in reversed(runs) if r.issue), None)
    if not open_issue:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / ISSUE_FILE
        path.write_text(body, encoding="utf-8")
        found = Stuck(runs, None, "written", body_path=path)
    else:
        try:
            if known:
                forge.update_issue(cfg.root, known, title=head, body=body, comment=comment)
                found = Stuck(runs, known, "updated")
            else:
                found = Stuck(runs, forge.open_issue(cfg.root, title=head, body=body), "opened")
        except RetrainError as exc:
            # The run still did its job (the candidate was judged and held); the next gated
            # run of the streak tries again.
            found = Stuck(runs, known, "failed", error=str(exc))
    current.issue = found.issue
    progress(found.message)
    return found
