"""The model's story as git tells it: every version ever registered, pending proposals, and
the events that moved production and the rollout.

Nothing here is trusted to be complete.  A version's entry is read from the first
``registry.yaml`` in the history that holds it (so a version a revert removed is still
there), its ``gate.json`` and model card from the commit that registered it; an older entry
that lacks a record is shown as "not recorded", never a failure.  Promotions and rollbacks
come from :func:`retrain.release.history.events`, canary and shadow events from
:func:`retrain.release.history.rollout_events`; who made each change is the commit's author
(the person who pressed "Merge" or "Revert", or the bot that pushed).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from retrain.core import registry as reg
from retrain.core import versioning
from retrain.core.errors import BadInput, RegistryError
from retrain.release import gitops, history

NOT_RECORDED = "not recorded"
PROPOSAL_REFS = ("refs/heads/retrain/", "refs/remotes/origin/retrain/")

EVENT_LABELS = {
    "promote": "Promotion",
    "rollback": "Rollback",
    "proposed": "Proposed",
    "canary_started": "Canary started",
    "canary_advanced": "Canary advanced",
    "canary_promoted": "Canary promoted",
    "canary_rolled_back": "Canary rolled back",
    "shadow_started": "Shadow started",
    "shadow_ended": "Shadow ended",
    "challenger_promoted": "Challenger promoted",
}
# Events that take a version out of traffic against its will.
ROLLBACK_KINDS = ("rollback", "canary_rolled_back")
# Events after which a version is production.
PRODUCTION_KINDS = ("promote", "rollback", "canary_promoted", "challenger_promoted")


@dataclass(frozen=True)
class Commit:
    sha: str
    author: str
    at: str  # "2026-11-26 07:22 UTC"
    subject: str
    body: str

    @property
    def short(self) -> str:
        return self.sha[:8]


@dataclass
class Event:
    """One change of what serves: a promotion, a rollback, a canary or shadow step, or a
    proposal waiting for review."""

    kind: str
    version: str | None
    previous: str | None
    commit: Commit
    reason: str
    pr: int | None = None
    weight: int | None = None
    from_weight: int | None = None

    @property
    def label(self) -> str:
        return EVENT_LABELS.get(self.kind, self.kind.replace("_", " ").capitalize())

    @property
    def is_rollback(self) -> bool:
        return self.kind in ROLLBACK_KINDS


@dataclass
class Version:
    """One registered (or proposed) version with the records it was registered with."""

    version: str
    entry: reg.RegistryEntry
    commit: str  # where its records were read
    source: str  # said on the page: "registered in 1a2b3c4d" / "branch retrain/v1.2.0"
    pending: str | None = None  # the proposal branch, when not merged
    gate: dict[str, Any] | None = None
    gate_note: str = NOT_RECORDED
    card: dict[str, Any] | None = None
    card_note: str = NOT_RECORDED
    status: str = "registered"
    status_text: str = "registered, never in production"
    events: list[Event] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return "v" + self.version


@dataclass
class Story:
    model: str
    production: str | None
    rollout: reg.Rollout | None
    ref: str
    head: Commit | None
    versions: list[Version]  # oldest first (semver order)
    events: list[Event]  # oldest first
    links: Links

    def get(self, version: str | None) -> Version | None:
        return next((v for v in self.versions if v.version == version), None)


@dataclass(frozen=True)
class Links:
    """Where a commit or a pull request can be opened, when origin is on GitHub."""

    base: str | None = None

    def commit(self, sha: str) -> str | None:
        return f"{self.base}/commit/{sha}" if self.base else None

    def pr(self, number: int | None) -> str | None:
        return f"{self.base}/pull/{number}" if self.base and number else None


GITHUB_URL = re.compile(
    r"^(?:https://github\.com/|git@github\.com:|ssh://git@github\.com/)"
    r"([\w.-]+/[\w.-]+?)(?:\.git)?/?$"
)


def links_for(root: Path) -> Links:
    url = gitops.git(root, "remote", "get-url", "origin", check=False)
    m = GITHUB_URL.match(url.strip()) if url else None
    return Links(f"https://github.com/{m.group(1)}" if m else None)


def utc(stamp: str) -> str:
    """A git ISO date as ``YYYY-MM-DD HH:MM UTC`` (the page speaks one time zone)."""
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def commit_info(root: Path, sha: str) -> Commit:
    out = gitops.git(root, "show", "-s", "--format=%H%x1f%an%x1f%cI%x1f%s%x1f%b", sha)
    full, author, at, subject, body = (out.split("\x1f", 4) + [""] * 5)[:5]
    return Commit(sha=full, author=author, at=utc(at), subject=subject, body=body.strip())


def read_json(root: Path, rev: str, path: str) -> tuple[dict[str, Any] | None, str]:
    """A JSON record at a revision, or None and why not (missing, unreadable)."""
    text = gitops.show(root, rev, path)
    if text is None:
        return None, f"{NOT_RECORDED} ({path} is not in {rev[:8]})"
    try:
        data = json.loads(text)
    except ValueError:
        return None, f"{NOT_RECORDED} ({path} at {rev[:8]} is not valid JSON)"
    if not isinstance(data, dict):
        return None, f"{NOT_RECORDED} ({path} at {rev[:8]} is not a JSON object)"
    return data, ""


def _reports(root: Path, v: Version) -> None:
    card_path = v.entry.model_card or f"reports/v{v.version}/model_card.json"
    folder = card_path.rsplit("/", 1)[0] if "/" in card_path else f"reports/v{v.version}"
    v.card, v.card_note = read_json(root, v.commit, card_path)
    v.gate, v.gate_note = read_json(root, v.commit, f"{folder}/gate.json")


def _reason(entry: reg.RegistryEntry | None) -> str:
    if entry is None:
        return NOT_RECORDED
    parts = []
    if entry.reason.manual:
        parts.append(f"manual: {entry.reason.manual}")
    if entry.reason.triggers:
        parts.append("triggers: " + ", ".join(entry.reason.triggers))
    return "; ".join(parts) or NOT_RECORDED


def _pending(root: Path, ref: str, known: set[str]) -> list[tuple[str, str]]:
    """``(branch, tip)`` of proposal branches ``retrain/v<X>`` not merged into ``ref``."""
    out = gitops.git(
        root, "for-each-ref", "--format=%(refname)%09%(objectname)", *PROPOSAL_REFS, check=False
    )
    found: dict[str, tuple[str, str]] = {}
    for line in out.splitlines():
        name, _, tip = line.partition("\t")
        branch = name.removeprefix("refs/heads/").removeprefix("refs/remotes/origin/")
        version = branch.removeprefix("retrain/v")
        if version in known or version in found or not branch.startswith("retrain/v"):
            continue
        try:
            versioning.parse(version)
        except RegistryError:
            continue
        if gitops.ok(root, "merge-base", "--is-ancestor", tip, ref):
            continue
        found[version] = (branch, tip)
    return list(found.values())


def _status(v: Version, story_production: str | None, rollout: reg.Rollout | None) -> None:
    if v.pending:
        v.status, v.status_text = "proposed", f"proposed on {v.pending}, awaiting review"
        return
    if v.version == story_production:
        since = next(
            (
                e
                for e in reversed(v.events)
                if e.version == v.version and e.kind in PRODUCTION_KINDS
            ),
            None,
        )
        v.status = "production"
        v.status_text = f"in production since {since.commit.at}" if since else "in production"
        return
    if rollout is not None and rollout.canary is not None and rollout.canary.version == v.version:
        v.status, v.status_text = "canary", f"canary at {rollout.canary.weight}% of traffic"
        return
    if rollout is not None and v.version in rollout.shadow:
        v.status, v.status_text = "shadow", "shadow (answers logged, never returned)"
        return
    left = [
        e
        for e in v.events
        if (e.previous == v.version and e.kind in PRODUCTION_KINDS)
        or (e.version == v.version and e.kind in ("canary_rolled_back", "shadow_ended"))
    ]
    if left and left[-1].is_rollback:
        to = f" to v{left[-1].version}" if left[-1].kind == "rollback" else ""
        v.status, v.status_text = "rolled_back", f"rolled back{to} on {left[-1].commit.at}"
    elif any(e.version == v.version and e.kind in PRODUCTION_KINDS for e in v.events):
        after = left[-1].version if left else None
        v.status = "retired"
        v.status_text = f"replaced by v{after}" if after else "was in production"


def collect(root: Path, ref: str = "HEAD") -> Story:
    """Read the whole story of ``ref`` from git (the registry at ``ref`` must be valid)."""
    root = Path(root)
    if not gitops.ok(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"):
        raise BadInput(f"--ref: {ref!r} is not a commit of the repository at {root}")
    text = gitops.show(root, ref, reg.REGISTRY_FILE)
    if text is None:
        raise RegistryError(f"{reg.REGISTRY_FILE}: not in {ref}")
    current = reg.parse_text(text, f"{reg.REGISTRY_FILE}@{ref}")

    versions: dict[str, Version] = {}
    for sha, registry in history.registries(root, ref, oldest_first=True):
        if registry.model != current.model:
            continue
        for entry in registry.versions:
            if entry.version not in versions:
                versions[entry.version] = Version(
                    entry.version, entry, sha, f"registered in commit {sha[:8]}"
                )
    for branch, tip in _pending(root, ref, set(versions)):
        text = gitops.show(root, tip, reg.REGISTRY_FILE)
        try:
            proposed = reg.parse_text(text or "", f"{reg.REGISTRY_FILE}@{branch}")
        except RegistryError:
            continue
        version = branch.removeprefix("retrain/v")
        if proposed.has(version):
            versions[version] = Version(
                version, proposed.get(version), tip, f"branch {branch}", pending=branch
            )
    for v in versions.values():
        _reports(root, v)

    infos: dict[str, Commit] = {}

    def info(sha: str) -> Commit:
        if sha not in infos:
            infos[sha] = commit_info(root, sha)
        return infos[sha]

    events: list[Event] = []
    for ev in history.events(root, ref):
        version = ev["version"]
        known = versions[version].entry if version in versions else None
        c = info(ev["commit"])
        reason = _reason(known) if ev["event"] == "promote" else c.subject
        events.append(Event(ev["event"], version, ev["from"], c, reason, pr=ev.get("pr")))
    for ev in history.rollout_events(root, ref):
        c = info(ev["commit"])
        events.append(
            Event(
                ev["event"],
                ev["version"],
                None,
                c,
                ev.get("why") or c.subject,
                weight=ev.get("weight"),
                from_weight=ev.get("from_weight"),
            )
        )
    for v in versions.values():
        if v.pending:
            c = info(v.commit)
            events.append(Event("proposed", v.version, current.production, c, _reason(v.entry)))
    order = {
        sha: i
        for i, sha in enumerate(
            gitops.git(root, "rev-list", "--reverse", "--topo-order", ref).split()
        )
    }
    # Commits of ``ref`` in history order; a pending proposal's commit comes after them all.
    events.sort(key=lambda e: (order.get(e.commit.sha, len(order)), e.commit.at))
    for e in events:
        for name in {e.version, e.previous} - {None}:
            if name in versions:
                versions[name].events.append(e)
    ordered = sorted(versions.values(), key=lambda v: versioning.parse(v.version))
    for v in ordered:
        _status(v, current.production, current.rollout)
    return Story(
        model=current.model,
        production=current.production,
        rollout=current.rollout,
        ref=ref,
        head=info(gitops.git(root, "rev-parse", ref)),
        versions=ordered,
        events=events,
        links=links_for(root),
    )
