"""``retrain run``: the scheduled job.  Triggers → ``dvc repro`` → gates → proposal.

The checkout is left as found: the proposal lives on its branch, main's tracked files are
restored, and a report of the run is written to ``reports/latest/`` (untracked).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrain.core import faults, lock
from retrain.core import registry as reg
from retrain.core.config import Config
from retrain.core.errors import BadInput
from retrain.core.progress import progress
from retrain.decide import triggers
from retrain.release import gitops, judged
from retrain.report import markdown


@dataclass
class RunResult:
    outcome: str  # "skipped" | "gated" | "proposed"
    fired: list[str]
    cost: dict[str, Any] | None = None
    version: str | None = None
    branch: str | None = None
    gates: dict[str, Any] = field(default_factory=dict)
    triggers: dict[str, Any] = field(default_factory=dict)
    pr_url: str | None = None
    summary: str = ""
    bump: str | None = None
    judged: dict[str, Any] | None = None  # skipped: the recorded judgement it repeats
    stuck: dict[str, Any] | None = None  # gated: the streak of held candidates and its issue

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "fired": self.fired,
            "version": self.version,
            "branch": self.branch,
            "gates": self.gates,
            "bump": self.bump,
            "pr_url": self.pr_url,
            "triggers": self.triggers,
            "cost": self.cost,
            "judged": self.judged,
            "stuck": self.stuck,
        }


def run(
    cfg: Config,
    *,
    force: bool = False,
    reason: str | None = None,
    bump: str | None = None,
    push: bool = False,
    open_pr: bool = False,
) -> RunResult:
    with lock.hold(cfg.root, "run") as killed:
        if killed is not None:
            heal_killed_run(cfg.root, killed)
        faults.point("run:locked")
        from retrain.pipeline import artifacts, batchcheck

        # A model is loaded once per run, and a batch file read once (triggers, validate and
        # train share what they read: docs/decisions.md, "Bounded-memory data path").
        with artifacts.shared_loads(), batchcheck.read_once():
            return _run(cfg, force=force, reason=reason, bump=bump, push=push, open_pr=open_pr)


@contextmanager
def _beside_production(cfg: Config, registry: reg.Registry) -> Iterator[None]:
    """Hand production's model to the evaluate stage when it runs in this process, so the
    candidate's latency is measured once, interleaved with production (the gates take the
    pair; see :mod:`retrain.pipeline.latency`)."""
    prod = registry.production_entry
    if prod is None:
        yield
        return
    from retrain.pipeline import artifacts, dataset, latency

    progress(f"fetching production v{prod.version}, to time the candidate beside it")
    path = artifacts.fetch(cfg.root, prod.artifact, prod.version)
    model = artifacts.load_for_config(cfg, path, prod.artifact.sha256)
    with latency.alongside(
        prod.version,
        model,
        lambda holdout: dataset.model_inputs(holdout, prod, cfg.dataset.holdout),
    ):
        yield


def heal_killed_run(root: Path, killed: dict[str, Any]) -> None:
    """Restore exactly the pipeline's own leftovers of a command that was killed half-way.

    Only the files a run writes into the checkout (``dvc.lock`` and the stage records, plus
    the DVC-tracked outputs behind them) are put back as HEAD has them, and only when nothing
    else is dirty; anything else stays the user's and the dirty-tree check below refuses it.
    """
    from retrain.release import proposal

    changed = gitops.git(root, "diff", "--name-only", "HEAD", "--").splitlines()
    if changed and set(changed) <= set(proposal.PIPELINE_FILES):
        progress(
            f"run: the previous {lock.describe(killed)} was killed half-way; restoring its "
            f"leftovers ({', '.join(sorted(changed))})"
        )
        proposal.restore_workspace(root)


def _clock() -> tuple[float, float]:
    """(wall clock, CPU seconds of this process and its finished children, e.g. dvc repro)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    return time.perf_counter(), cpu


def retrain_cost(started: tuple[float, float], fit_seconds: float | None) -> dict[str, Any]:
    """What the retrain cost since ``started`` (a :func:`_clock` reading): wall time, CPU
    seconds, and the fit's seconds (``training.json: train_seconds``) and share of the wall."""
    wall0, cpu0 = started
    wall1, cpu1 = _clock()
    wall = max(wall1 - wall0, 1e-9)
    fit = float(fit_seconds) if fit_seconds is not None else None
    return {
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu1 - cpu0, 2),
        "fit_seconds": round(fit, 3) if fit is not None else None,
        "fit_share": round(min(fit / wall, 1.0), 4) if fit is not None else None,
    }


def _live_feedback(cfg: Config, registry: reg.Registry) -> Any:
    """The live labels of the prediction log, if any (see ``feedback.live_for_triggers``).

    A SQLite log whose file was never created holds nothing: the check says so ("not
    checked: no prediction log at …"), and seeing it from the path alone spares a weekly run
    that has no log the import of SQLAlchemy (a third of a second).
    """
    if not cfg.triggers.performance.enabled or registry.production is None:
        return None
    from retrain.core.config import load_serve_config, log_url_of, sqlite_log_file

    try:
        path = sqlite_log_file(log_url_of(load_serve_config(cfg.root))[0], cfg.root)
    except ValueError:
        path = None  # the log's own module refuses it, naming the setting
    if path is not None and not path.exists():
        try:
            where = str(path.resolve().relative_to(cfg.root))
        except ValueError:
            where = str(path)
        return triggers.LiveFeedback.no_log(registry.production, where)
    from retrain.serve import feedback

    return feedback.live_for_triggers(cfg, registry)


def _remember(root: Path, record: judged.Record, *, push: bool, seen: str | None) -> None:
    """Record the judgement on the judged commit's note; push it with ``--push``."""
    judged.write(root, record)
    if push and judged.push(root, seen):
        progress(f"judgement recorded and pushed ({judged.NOTES_REF})")


def _already_judged(cfg: Config, registry: reg.Registry, prior: judged.Record) -> RunResult:
    """The scheduled run's answer when these inputs were judged and held before."""
    what = f"production v{registry.production}" if registry.production else "no production"
    message = (
        f"already judged: gated on {prior.when} at {prior.commit[:8]}, nothing changed since "
        f"(data, configs, code, {what})"
    )
    progress(f"{message}; failing gates: {prior.failing() or '-'}")
    info = {
        "message": message,
        "at": prior.at,
        "commit": prior.commit,
        "outcome": prior.outcome,
        "version": prior.version,
        "production": prior.production,
        "fired": prior.fired,
        "failed": prior.failed,
        "issue": prior.issue,
        "key": prior.key,
    }
    result = RunResult(outcome="skipped", fired=[], judged=info)
    result.summary = markdown.render_run_summary(
        {
            "model": cfg.release.model_name,
            "outcome": "skipped",
            "base_version": registry.production,
            "triggers": {},
            "fired": [],
            "judged": info,
        }
    )
    return result


def _run(
    cfg: Config,
    *,
    force: bool,
    reason: str | None,
    bump: str | None,
    push: bool,
    open_pr: bool,
) -> RunResult:
    root = cfg.root
    started = _clock()
    if gitops.is_dirty(root):
        changed = gitops.git(root, "status", "--porcelain", "--untracked-files=no")
        raise BadInput(
            f"working tree has uncommitted changes ({changed.splitlines()[0].strip()} "
            "…); commit or stash them so the proposal matches main"
        )
    registry = reg.load(root, expected_model=cfg.release.model_name)
    manual = bool(force or reason or bump is not None)
    # A judgement is made once: origin's record first, then these inputs against it.
    seen = judged.sync(root)
    inputs = judged.inputs_of(root, registry)
    recs = judged.records(root)
    prior = None if manual else judged.already_judged(recs, inputs)
    if prior is not None:
        return _already_judged(cfg, registry, prior)
    last = judged.last_judged([r for r in recs if r.outcome == "gated"])
    if last is not None and not manual:
        what = ", ".join(judged.changed(last, inputs)) or "nothing"
        progress(f"judged again: {what} changed since the gated judgement of {last.when}")
    progress("checking triggers")
    trig = triggers.check(
        cfg,
        registry,
        force=force or bump is not None,
        reason=reason,
        live=_live_feedback(cfg, registry),
    )
    progress("\n" + trig.table())
    faults.point("run:triggers")
    if not trig.retrain:
        why = trig.note or "no trigger fired"
        result = RunResult(outcome="skipped", fired=trig.fired, triggers=trig.to_dict())
        result.summary = markdown.render_run_summary(
            {
                "model": cfg.release.model_name,
                "outcome": "skipped",
                "base_version": registry.production,
                "triggers": trig.to_dict(),
                "fired": [],
                "reason": why,
            }
        )
        return result

    # Imported only when something fired: the gates and the release stack cost a weekly run
    # where nothing did a second of imports.
    from retrain.decide import key_examples
    from retrain.release import dvcops, proposal

    dvcops.check_data_matches(root)
    key_examples.load(root, cfg.dataset)  # a malformed file is refused before any training
    progress("running the pipeline: dvc repro (validate → train → evaluate)")
    try:
        with _beside_production(cfg, registry):
            dvcops.repro(root)
        faults.point("run:reproduced")
        j = proposal.judge(cfg, registry, bump_requested=bump)
        j.cost = retrain_cost(started, j.training.get("train_seconds"))
        progress(
            f"retrain cost: {j.cost['wall_seconds']} s wall, {j.cost['cpu_seconds']} s CPU"
            + (f", fit {j.cost['fit_share']:.0%} of it" if j.cost["fit_share"] is not None else "")
        )
        memo = _Memo(inputs=inputs, records=recs, seen=seen, manual=manual)
        return _conclude(
            cfg,
            registry,
            j,
            fired=trig.fired,
            trig=trig,
            reason=reason,
            push=push,
            open_pr=open_pr,
            memo=memo,
        )
    finally:
        proposal.restore_workspace(root)


def propose(
    cfg: Config,
    *,
    reason: str | None = None,
    bump: str | None = None,
    push: bool = False,
    open_pr: bool = False,
) -> RunResult:
    """``retrain propose``: judge the pipeline ``dvc repro`` already reproduced and, when every
    gate passes, propose it, exactly as ``retrain run`` does after its ``dvc repro`` (a manual
    proposal: no trigger was checked)."""
    from retrain.release import proposal

    with lock.hold(cfg.root, "propose"):
        registry = reg.load(cfg.root, expected_model=cfg.release.model_name)
        try:
            j = proposal.judge(cfg, registry, bump_requested=bump)
            return _conclude(
                cfg,
                registry,
                j,
                fired=["manual"],
                trig=None,
                reason=reason,
                push=push,
                open_pr=open_pr,
            )
        finally:
            proposal.restore_workspace(cfg.root)


@dataclass
class _Memo:
    """What ``retrain run`` needs to remember its judgement (``retrain.release.judged``)."""

    inputs: judged.Inputs  # the key of what was judged
    records: list[judged.Record]
    seen: str | None  # the notes ref as fetched (for a push that does not overwrite)
    manual: bool

    def record(self, root: Path, registry: reg.Registry, j: Any, fired: list[str]) -> judged.Record:
        return judged.Record(
            at=judged.now(),
            outcome="gated" if not j.gates.passed else "proposed",
            key=self.inputs.key,
            commit=gitops.head(root),
            production=registry.production,
            version=j.version,
            fired=fired,
            manual=self.manual,
            failed=[
                {"gate": r.name, "value": r.value, "threshold": r.threshold, "detail": r.detail}
                for r in j.gates.failed
            ],
            parts=self.inputs.parts,
            kinds=self.inputs.kinds,
        )


def _conclude(
    cfg: Config,
    registry: reg.Registry,
    j: Any,
    *,
    fired: list[str],
    trig: triggers.TriggerReport | None,
    reason: str | None,
    push: bool,
    open_pr: bool,
    memo: _Memo | None = None,
) -> RunResult:
    """After the judgement: the run's report, and the proposal when every gate passed.

    With ``memo`` (``retrain run``) the judgement is recorded, and a gated one is checked
    for a stuck loop (``retrain.release.stuck``); ``retrain propose`` records nothing."""
    from retrain.release import proposal

    root = cfg.root
    checks = trig.to_dict() if trig is not None else None
    drift = trig.drift if trig is not None else None
    record = memo.record(root, registry, j, fired) if memo is not None else None
    if not j.gates.passed:
        held = None
        if memo is not None and record is not None:
            from retrain.release import stuck

            held = stuck.check(
                cfg, memo.records, record, open_issue=open_pr, out_dir=root / proposal.LATEST_REPORT
            )
            _remember(root, record, push=push, seen=memo.seen)
        ctx = proposal.report_context(
            cfg, j, outcome="gated", triggers=checks, fired=fired, drift=drift
        )
        ctx["stuck"] = held.to_dict() if held else None
        summary = markdown.render_run_summary(ctx)
        (cfg.root / proposal.LATEST_REPORT / "summary.md").write_text(summary)
        return RunResult(
            outcome="gated",
            fired=fired,
            version=None,
            branch=None,
            gates=j.gates.to_dict(),
            triggers=checks or {},
            summary=summary,
            bump=j.bump,
            cost=j.cost,
            stuck=held.to_dict() if held else None,
        )
    prop = proposal.propose(
        cfg,
        registry,
        j,
        fired=fired,
        reason=reason,
        triggers=checks,
        drift=drift,
        push=push,
        open_pr=open_pr,
    )
    faults.point("run:proposed")
    if memo is not None and record is not None:
        _remember(root, record, push=push, seen=memo.seen)
    ctx = proposal.report_context(
        cfg,
        j,
        outcome="proposed",
        triggers=checks,
        fired=fired,
        branch=prop.branch,
        pr_url=prop.pr_url,
        drift=drift,
    )
    summary = markdown.render_run_summary(ctx)
    (cfg.root / proposal.LATEST_REPORT / "summary.md").write_text(summary)
    return RunResult(
        outcome="proposed",
        fired=fired,
        version=prop.version,
        branch=prop.branch,
        gates=j.gates.to_dict(),
        triggers=checks or {},
        pr_url=prop.pr_url,
        summary=summary,
        bump=j.bump,
        cost=j.cost,
    )
