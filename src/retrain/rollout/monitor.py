"""``retrain monitor``: judge the live versions from the prediction log and act through git.

:func:`observe` reads the registry (what is live), the time of the last change of
registry.yaml on the first-parent line (when the current rollout step began) and the log
rows since then, and asks :mod:`retrain.rollout.judges` for a verdict:

==================  ======================================================================
canary declared     advance (PR to the next weight), promote (PR: canary becomes
                    production, ``rollout`` cleared of it), hold, or rollback (PR, or with
                    ``--push`` a commit on main, removing the canary)
shadow declared     promote_challenger (PR: the shadow becomes production), keep, hold
neither             inside the watch window of a direct promotion: healthy, hold, or
                    rollback -- the same revert ``retrain rollback`` makes
==================  ======================================================================

:func:`act` makes the change.  Without ``--open-pr`` or ``--push`` nothing is written:
monitor only reports.  Every PR body carries the evidence table and a plot of the live
metric and latency per version over time.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from retrain.core import registry as reg
from retrain.core.config import Config
from retrain.core.errors import BadInput, DataError
from retrain.core.progress import progress
from retrain.pipeline import metrics
from retrain.pipeline.dataset import read_table
from retrain.release import forge, gitops, history, rollback
from retrain.rollout import analysis, evidence, judges
from retrain.rollout.analysis import Verdict, VersionStats
from retrain.rollout.logview import FrameView, LogView

EVIDENCE_DIR = "reports/rollout"
ACTIONS_WITH_CHANGE = ("advance", "promote", "rollback", "promote_challenger")


LABEL_CHECKS = frozenset({"metric", "improvement"})  # checks that rest on feedback labels


@dataclass
class Observation:
    mode: str  # "canary" | "shadow" | "watch" | "idle"
    since: str
    now: str
    production: str | None
    verdict: Verdict
    verdicts: list[Verdict]
    stats: list[VersionStats]
    view: LogView = field(repr=False)  # what was judged: the live log's, or a file's rows
    source: str = ""  # the log read: its URL (password hidden) or the --log file
    # True when every label judged was written by a token (the live log, or a file whose
    # label_by column says so); a file without label_by cannot tell.
    labels_authenticated: bool = True
    labels_ignored: int = 0  # labels written without a token, left out of the judgement
    rows: int = 0  # rows served since the step began, by any version
    rows_judged: int = 0  # of them, the rows of the versions in their roles that were judged

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels_authenticated": self.labels_authenticated,
            "labels_ignored": self.labels_ignored,
            "rows": self.rows,
            "rows_judged": self.rows_judged,
            "mode": self.mode,
            "since": self.since,
            "now": self.now,
            "production": self.production,
            "log": self.source,
            "verdict": self.verdict.action,
            "version": self.verdict.version,
            "summary": self.verdict.summary,
            "next_weight": self.verdict.next_weight,
            "missing": self.verdict.missing,
            "checks": [c.__dict__ for c in self.verdict.checks],
            "verdicts": [v.to_dict() for v in self.verdicts],
            "stats": [s.to_dict() for s in self.stats],
        }


@dataclass
class Action:
    kind: str  # "none" | "report" | "pr" | "push"
    branch: str | None = None
    commit: str | None = None
    pr_url: str | None = None
    pushed: bool = False
    reverted: list[str] = field(default_factory=list)
    body: str | None = None
    note: str | None = None  # why the action is not the one asked for

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "body"}


# --------------------------------------------------------------------------- reading
def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _changes(root: Path) -> list[gitops.Change]:
    return gitops.first_parent_changes(root, reg.REGISTRY_FILE)


def step_started(root: Path) -> datetime:
    """When registry.yaml last changed on the first-parent line (the step's start)."""
    changes = _changes(root)
    if not changes:
        raise BadInput(f"{reg.REGISTRY_FILE}: never committed; nothing is live to monitor")
    return datetime.fromisoformat(changes[-1].at)


def present_since(root: Path, version: str, role: str) -> datetime | None:
    """The time of the oldest commit in the unbroken run (newest backwards) in which
    ``version`` held ``role`` (``shadow`` or ``canary``) in the rollout."""
    start = None
    for change in reversed(_changes(root)):
        r = history.rollout_at(root, change.sha)
        held = r is not None and (
            (role == "shadow" and version in r.shadow)
            or (role == "canary" and r.canary is not None and r.canary.version == version)
        )
        if not held:
            break
        start = datetime.fromisoformat(change.at)
    return start


def read_log_file(path: Path) -> pd.DataFrame:
    """A prediction-log export (CSV, Parquet or JSON lines) with its feedback labels."""
    display = str(path)
    if not path.is_file():
        raise DataError(f"{display}: file not found")
    if path.suffix in (".jsonl", ".json"):
        try:
            frame = pd.read_json(path, lines=path.suffix == ".jsonl")
        except ValueError as exc:
            raise DataError(f"{display}: not valid JSON ({exc})") from None
    else:
        frame = read_table(path, display)
    if "proba" in frame.columns:
        frame["proba"] = [
            json.loads(p) if isinstance(p, str) and p.startswith("{") else p for p in frame["proba"]
        ]
    return frame


def _open_live_log(cfg: Config) -> tuple[Any, str]:
    """The servers' log: ``configs/serve.yaml`` ``log_url``, overridden by
    ``RETRAIN_LOG_URL`` or the file named by ``RETRAIN_LOG_URL_FILE`` (a secret, e.g. in
    CI); not contacted yet.  With it, which log that is, for the report."""
    from retrain.serve import predlog

    _, log = predlog.configured_log(cfg.root)
    source = log.display
    if log.sqlite_path is not None and not log.exists():
        source += " (no such file: nothing was logged there)"
    return log, source


def judged_keys(registry: reg.Registry) -> list[tuple[str, str]]:
    """What monitor judges, decided from the registry before the log is read: production
    in its role, the canary in its, each shadow in its."""
    keys = [] if registry.production is None else [(registry.production, "production")]
    rollout = registry.rollout
    if rollout is not None and rollout.canary is not None:
        keys.append((rollout.canary.version, "canary"))
    if rollout is not None:
        keys += [(v, "shadow") for v in rollout.shadow]
    return keys


def live_view(cfg: Config, registry: reg.Registry, since: datetime) -> tuple[LogView, str]:
    """The live log's slices that monitor judges, since ``since``, aggregated in the
    database (:class:`retrain.rollout.logsql.SqlView`): read when first asked for.  With
    it, which log that is."""
    from retrain.rollout.logsql import SqlView

    a = cfg.release.rollout.analysis
    log, source = _open_live_log(cfg)
    view = SqlView(
        log,
        since.isoformat(),
        judged_keys(registry),
        max_labelled=a.max_labelled_rows,
        seed=a.seed,
    )
    return view, source


def load_log(cfg: Config, since: datetime) -> tuple[pd.DataFrame, str]:
    """The served rows since ``since``, joined with their latest authenticated label (a
    label written without a token is never evidence), from the servers' log, as a frame
    (every row in memory: for exports and tests; monitor itself aggregates in the database,
    :func:`live_view`); and which log that was."""
    from retrain.serve import predlog

    log, source = _open_live_log(cfg)
    try:
        return log.served(since.isoformat()), source
    except predlog.LogUnavailable as exc:
        raise BadInput(f"prediction log {log.display}: unreachable ({exc})") from None
    finally:
        log.close()


def trusted_labels(frame: pd.DataFrame) -> tuple[pd.DataFrame, bool, int]:
    """``(frame, labels authenticated, labels ignored)``: the labels no token wrote (its
    ``label_by`` is empty) are dropped from the judgement.  A frame without ``label_by`` (an
    export from elsewhere) keeps its labels, but they cannot be called authenticated."""
    if "label" not in frame.columns:
        return frame, True, 0
    if "label_by" not in frame.columns:
        return frame, not bool(frame["label"].notna().any()), 0
    anonymous = frame["label"].notna() & frame["label_by"].isna()
    n = int(anonymous.sum())
    if n:
        frame = frame.copy()
        frame.loc[anonymous, "label"] = None
    return frame, True, n


def rests_on_labels(verdict: Verdict) -> bool:
    """True when the verdict's failing checks are all label checks (no error-rate or
    latency breach of the server's own to stand on)."""
    failed = {c.name for c in verdict.checks if c.verdict == "fail"}
    return bool(failed) and failed <= LABEL_CHECKS


# --------------------------------------------------------------------------- deciding
def _floor(cfg: Config, registry: reg.Registry) -> float | None:
    """The stricter of ``health.min_metric`` and the version's holdout value minus
    ``max_metric_drop`` (either may be unset): an absolute floor, e.g. above the trivial
    model's score, must not loosen the relative one, nor the other way round."""
    h = cfg.release.rollout.health
    metric = cfg.gates.primary_metric
    higher = metrics.greater_is_better(metric)
    floors = [] if h.min_metric is None else [float(h.min_metric)]
    value = (
        registry.production_entry.metrics.overall.get(metric)
        if registry.production_entry is not None
        else None
    )
    if h.max_metric_drop is not None and value is not None:
        drop = h.max_metric_drop
        floors.append(float(value) - drop if higher else float(value) + drop)
    if not floors:
        return None
    return max(floors) if higher else min(floors)


def observe(
    cfg: Config,
    frame: pd.DataFrame | None = None,
    *,
    now: datetime | None = None,
    source: str | None = None,
) -> Observation:
    """Read what is live and judge it; no side effect.

    ``frame``: a log export's rows (``--log``); None reads the live log, deciding first what
    is judged (the registry's versions in their roles, since the step began) and then
    aggregating only those rows in the database.
    """
    root = cfg.root
    registry = reg.load(root, expected_model=cfg.release.model_name)
    now = now or datetime.now(UTC)
    since = step_started(root)
    rc = cfg.release.rollout
    labels_authenticated, labels_ignored = True, 0
    view: LogView
    if frame is None and registry.production is not None:
        view, source = live_view(cfg, registry, since)
    elif frame is None:
        view, source = _empty(), "nothing read (no production version)"
    else:
        frame, labels_authenticated, labels_ignored = trusted_labels(frame)
        try:
            frame = analysis.check_frame(frame)
        except ValueError as exc:
            raise DataError(str(exc)) from None
        frame = frame[frame["at"] >= pd.Timestamp(since)]
        view = FrameView(frame, max_labelled=rc.analysis.max_labelled_rows, seed=rc.analysis.seed)
    try:
        return _judge(
            cfg,
            registry,
            view,
            since,
            now,
            labels_authenticated,
            labels_ignored,
            source=source or "rows given by the caller",
        )
    except _Unreachable as exc:
        raise BadInput(str(exc)) from None
    finally:
        log = getattr(view, "log", None)
        if log is not None:
            log.close()  # its pool only: a later plot reconnects if it must


class _Unreachable(Exception):
    pass


def _empty() -> LogView:
    return FrameView(analysis.check_frame(pd.DataFrame(columns=list(analysis.LOG_COLUMNS))))


def _judge(
    cfg: Config,
    registry: reg.Registry,
    view: LogView,
    since: datetime,
    now: datetime,
    labels_authenticated: bool,
    labels_ignored: int,
    *,
    source: str,
) -> Observation:
    from retrain.serve.predlog import LogUnavailable

    prod = registry.production
    base: dict[str, Any] = {
        "since": _iso(since),
        "now": _iso(now),
        "production": prod,
        "view": view,
        "source": source,
        "labels_authenticated": labels_authenticated,
        "labels_ignored": labels_ignored,
    }
    if prod is None:
        idle = Verdict("none", None, "no production version; nothing to monitor")
        return Observation(
            mode="idle", verdict=idle, verdicts=[idle], stats=[], rows=view.rows, **base
        )
    try:
        return _verdicts(cfg, registry, view, since, now, base)
    except LogUnavailable as exc:
        log = getattr(view, "log", None)
        shown = log.display if log is not None else "prediction log"
        message = str(exc).removeprefix(f"prediction log {shown}: ")
        raise _Unreachable(f"prediction log {shown}: unreachable ({message})") from None


def _verdicts(
    cfg: Config,
    registry: reg.Registry,
    view: LogView,
    since: datetime,
    now: datetime,
    base: dict[str, Any],
) -> Observation:
    root = cfg.root
    metric, task = cfg.gates.primary_metric, cfg.dataset.task
    rc = cfg.release.rollout
    prod = registry.production
    assert prod is not None
    rollout = registry.rollout
    verdicts: list[Verdict] = []
    stats = [view.slice(v, r, metric, task).stats for v, r in view.slices()]
    by_key = {(s.version, s.role): s for s in stats}
    if rollout is not None and rollout.canary is not None:
        v, pair = judges.judge_canary(
            view,
            production=prod,
            canary=rollout.canary.version,
            weight=rollout.canary.weight,
            cfg=rc,
            metric=metric,
            task=task,
        )
        verdicts.append(v)
        for s in pair:
            by_key[(s.version, s.role)] = s
    if rollout is not None:
        for shadow in rollout.shadow:
            started = present_since(root, shadow, "shadow") or since
            v, st = judges.judge_shadow(
                view,
                production=prod,
                shadow=shadow,
                cfg=rc,
                metric=metric,
                task=task,
                running_seconds=(now - started).total_seconds(),
                confidence=rc.analysis.confidence,
                n_resamples=rc.analysis.n_resamples,
                seed=rc.analysis.seed,
            )
            verdicts.append(v)
            by_key[(st.version, st.role)] = st
    if verdicts:
        mode = "canary" if rollout and rollout.canary else "shadow"
    else:
        mode = "watch"
        events = history.events(root)
        last = events[-1] if events else None
        in_window = bool(
            last
            and last["event"] == "promote"
            and last["version"] == prod
            and (now - datetime.fromisoformat(last["at"])).total_seconds() < rc.watch_window_seconds
        )
        v, st = judges.judge_health(
            view,
            production=prod,
            cfg=rc,
            metric=metric,
            task=task,
            in_window=in_window,
            floor=_floor(cfg, registry),
        )
        verdicts.append(v)
        by_key[(st.version, st.role)] = st
    # A rollback outranks everything; then a promotion; then an advance; then the rest.
    rank = {
        "rollback": 0,
        "promote": 1,
        "promote_challenger": 2,
        "advance": 3,
        "hold": 4,
        "keep": 5,
        "healthy": 6,
        "none": 7,
    }
    primary = sorted(verdicts, key=lambda v: rank[v.action])[0]
    return Observation(
        mode=mode,
        verdict=primary,
        verdicts=verdicts,
        stats=list(by_key.values()),
        rows=view.rows,
        rows_judged=sum(s.rows for s in stats),
        **base,
    )


# --------------------------------------------------------------------------- acting
def planned_registry(registry: reg.Registry, verdict: Verdict) -> reg.Registry | None:
    """The registry the verdict asks for (None: no registry change)."""
    r = registry.rollout or reg.Rollout()
    v = verdict.version
    if verdict.action == "advance" and r.canary is not None and verdict.next_weight:
        return reg.with_rollout(
            registry, reg.Rollout(reg.Canary(r.canary.version, verdict.next_weight), r.shadow)
        )
    if verdict.action == "rollback" and r.canary is not None and r.canary.version == v:
        return reg.with_rollout(registry, reg.Rollout(None, r.shadow))
    if verdict.action in ("promote", "promote_challenger") and v is not None:
        promoted = reg.Registry(
            model=registry.model, production=v, versions=list(registry.versions)
        )
        canary = None if r.canary is None or r.canary.version == v else r.canary
        return reg.with_rollout(promoted, reg.Rollout(canary, tuple(s for s in r.shadow if s != v)))
    return None


def _title(model: str, verdict: Verdict, registry: reg.Registry) -> str:
    v = verdict.version
    r = registry.rollout
    if verdict.action == "advance":
        return f"Rollout {model}: advance canary v{v} to {verdict.next_weight}%"
    if verdict.action == "promote":
        return f"Rollout {model}: promote canary v{v} to production (from v{registry.production})"
    if verdict.action == "promote_challenger":
        return f"Rollout {model}: promote challenger v{v} (shadow beats v{registry.production})"
    weight = f" at {r.canary.weight}%" if r and r.canary else ""
    return f"Rollout {model}: roll back canary v{v}{weight}"


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", title.lower()).strip("-")[:60]


def pr_body(cfg: Config, obs: Observation, title: str, plot_rel: str | None) -> str:
    v = obs.verdict
    lines = [
        f"## {title}",
        "",
        f"**Verdict: {v.action}.** {v.summary}",
        "",
        f"Evidence: the prediction log from {obs.since} to {obs.now} (the rows since "
        f"registry.yaml last changed), primary metric `{cfg.gates.primary_metric}` on "
        "the rows that received feedback labels.",
        "",
        "### Per version",
        "",
        evidence.stats_table(obs.stats),
        "",
        "### Checks",
        "",
        evidence.checks_table(v.checks),
        "",
    ]
    if plot_rel:
        lines += ["### Over time", "", f"![live metric and latency]({plot_rel})", ""]
    lines += [
        "Opened by `retrain monitor`. Merging it changes `registry.yaml`; the servers "
        "following main pick it up within one interval. Thresholds: `configs/release.yaml` "
        "`rollout`.",
    ]
    return "\n".join(lines) + "\n"


def act(cfg: Config, obs: Observation, *, push: bool = False, open_pr: bool = False) -> Action:
    """Make the change the verdict asks for.  ``push`` pushes rollbacks to the base branch
    (so does ``auto_rollback: push``); everything else goes through a pull request."""
    root = cfg.root
    verdict = obs.verdict
    if verdict.action not in ACTIONS_WITH_CHANGE:
        return Action(kind="none")
    if not (push or open_pr):
        return Action(kind="report")
    rc = cfg.release.rollout
    rollback_push = verdict.action == "rollback" and (push or rc.auto_rollback == "push")
    note = None
    if rollback_push and not obs.labels_authenticated and rests_on_labels(verdict):
        # Labels of unknown origin may judge, but never push to main without a person.
        rollback_push = False
        note = (
            "rollback opened as a PR, not pushed: it rests on labels that no token is "
            "known to have written (the log file has no label_by column)"
        )
        progress(f"monitor: {note}")
    if obs.mode == "watch":
        # A directly promoted version broke its health: the revert `retrain rollback` makes.
        res = rollback.rollback(cfg, push=rollback_push, open_pr=not rollback_push)
        return Action(
            kind="push" if rollback_push else "pr",
            branch=res.branch,
            commit=res.commit,
            pr_url=res.pr_url,
            pushed=res.pushed,
            reverted=res.reverted,
            note=note,
        )
    registry = reg.load(root, expected_model=cfg.release.model_name)
    new = planned_registry(registry, verdict)
    if new is None:
        return Action(kind="none")
    title = _title(cfg.release.model_name, verdict, registry)
    slug = _slug(f"{verdict.action}-v{verdict.version}-{obs.now}")
    vdir = f"{EVIDENCE_DIR}/{slug}"
    tmp = Path(tempfile.mkdtemp(prefix="retrain-monitor-"))
    try:
        plot = evidence.live_plot(
            obs.view, cfg.gates.primary_metric, cfg.dataset.task, tmp / "live.png"
        )
        body = pr_body(cfg, obs, title, "live.png")
        files = {
            reg.REGISTRY_FILE: reg.dumps(new).encode(),
            f"{vdir}/PR.md": body.encode(),
            f"{vdir}/live.png": plot.read_bytes(),
            f"{vdir}/evidence.json": (
                json.dumps(obs.to_dict(), indent=2, sort_keys=True, default=str) + "\n"
            ).encode(),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    message = f"{title}\n\n{verdict.summary}\n\nmonitor: verdict={verdict.action}"
    if rollback_push:
        return _commit_on_base(cfg, files, message, body)
    step = f"-{verdict.next_weight}" if verdict.next_weight else ""
    branch = f"rollout/{verdict.action.replace('_', '-')}-v{verdict.version}{step}"
    commit = gitops.commit_files_to_branch(
        root, branch=branch, base="HEAD", files=files, message=message
    )
    gitops.git(root, "push", "--force", "origin", f"refs/heads/{branch}:refs/heads/{branch}")
    progress(f"monitor: pushed {branch} ({commit[:8]})")
    url = forge.open_pull_request(
        root, base=cfg.release.base_branch, head=branch, title=title, body=body
    )
    return Action(
        kind="pr", branch=branch, commit=commit, pr_url=url, pushed=True, body=body, note=note
    )


def _commit_on_base(cfg: Config, files: dict[str, bytes], message: str, body: str) -> Action:
    root = cfg.root
    branch = gitops.current_branch(root)
    if branch != cfg.release.base_branch:
        raise BadInput(
            f"--push commits on {cfg.release.base_branch}, but the checkout is on "
            f"{branch or 'a detached HEAD'}"
        )
    if gitops.is_dirty(root, [reg.REGISTRY_FILE]):
        raise BadInput(f"{reg.REGISTRY_FILE}: uncommitted changes; commit or stash them first")
    commit = gitops.commit_files_to_branch(
        root, branch=branch, base="HEAD", files=files, message=message
    )
    gitops.git(root, "checkout", "HEAD", "--", *sorted(files))
    gitops.push(root, f"HEAD:refs/heads/{branch}")
    progress(f"monitor: pushed {commit[:8]} to {branch}")
    return Action(kind="push", branch=branch, commit=commit, pushed=True, body=body)


def format_report(obs: Observation, action: Action | None = None) -> str:
    lines = [
        f"monitor ({obs.mode}): {obs.verdict.summary}",
        f"  rows since {obs.since}: {obs.rows}, read from {obs.source}",
    ]
    if obs.rows > obs.rows_judged and obs.stats:
        lines.append(
            f"  ({obs.rows - obs.rows_judged} of them served by versions or roles not judged)"
        )
    for s in obs.stats:
        val = "-" if s.value is None else f"{s.value:.4f}"
        er = "-" if s.error_rate is None else f"{s.error_rate:.2%}"
        p95 = "-" if s.p95_latency_ms is None else f"{s.p95_latency_ms:.1f} ms"
        lines.append(
            f"  {s.version:<9} {s.role:<10} requests {s.requests:<6} errors {er:<7} "
            f"p95 {p95:<10} labels {s.labels:<6} {s.metric} {val}"
            + ("" if s.labels_used is None else f" (on a sample of {s.labels_used} labels)")
        )
    for c in obs.verdict.checks:
        lines.append(f"    {c.verdict:<5} {c.name}: {c.detail}")
    if action is not None and action.kind not in ("none", "report"):
        where = action.pr_url or f"{action.branch} {(action.commit or '')[:8]}"
        lines.append(f"  action: {action.kind} {where}")
    elif action is not None and action.kind == "report":
        lines.append("  action: none taken (pass --open-pr or --push to act)")
    if action is not None and action.note:
        lines.append(f"  note: {action.note}")
    if obs.labels_ignored:
        lines.append(f"  ignored {obs.labels_ignored} label(s) written without a token")
    return "\n".join(lines)
