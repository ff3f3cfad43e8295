"""From a reproduced pipeline to a proposal: gates, then a branch a reviewer can merge.

``judge`` (in :mod:`retrain.release.judgement`) compares the candidate (the pipeline's
outputs in the workspace) with the production model on the same frozen holdout.  ``propose`` turns a passing candidate into
branch ``retrain/v<X.Y.Z>``: registry.yaml with one appended entry and ``production`` moved,
``dvc.lock``, the stage records, and ``reports/v<X.Y.Z>/`` (model card, gate.json, PR body,
plots).  The artifact is pushed to the DVC remote first, so no PR ever references an
artifact the remote lacks.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from retrain.core import faults
from retrain.core import registry as reg
from retrain.core.config import Config
from retrain.core.errors import BadInput, ExternalCommandError
from retrain.core.progress import progress
from retrain.pipeline import artifacts, stages, tracking
from retrain.release import dvcops, forge, gitops, history
from retrain.release.judgement import LATEST_REPORT, Judgement, judge, schema_change
from retrain.report import markdown

__all__ = [  # judge and its types moved to release.judgement; callers still find them here
    "LATEST_REPORT",
    "PIPELINE_FILES",
    "Judgement",
    "Proposal",
    "build_entry",
    "judge",
    "model_card",
    "propose",
    "report_context",
    "restore_workspace",
    "schema_change",
    "staged_registry",
]

PIPELINE_FILES = ("dvc.lock", stages.VALIDATION_FILE, stages.TRAINING_FILE, stages.METRICS_FILE)


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def build_entry(
    cfg: Config, j: Judgement, *, fired: list[str], reason: str | None
) -> reg.RegistryEntry:
    """The registry entry of the judged candidate (from training.json and the gates)."""
    t = j.training
    art = t["artifact"]
    entry = reg.RegistryEntry(
        version=j.version,
        created=_now(),
        reason=reg.ReasonRecord(triggers=fired, manual=reason),
        bump=j.bump,  # type: ignore[arg-type]
        code_commit=t["code_commit"],
        data=reg.DataRecord(
            dvc_hash=t["data"]["dvc_hash"],
            rows=t["data"]["rows"],
            total_rows=t["data"]["total_rows"],
            start=t["data"]["start"],
            end=t["data"]["end"],
            files=t["data"]["files"],
        ),
        params=t["params"],
        schema=reg.SchemaRecord.model_validate(t["schema"]),
        artifact=reg.ArtifactRef(
            path=art["path"],
            format=art["format"],
            md5=art["md5"],
            sha256=art["sha256"],
            size_bytes=art["size_bytes"],
            remote="dvc",
        ),
        model_card=f"reports/v{j.version}/model_card.json",
        mlflow=reg.MlflowRecord(
            run_id=t["mlflow"].get("run_id"),
            model_version=t["mlflow"].get("model_version"),
            experiment=t["mlflow"].get("experiment"),
        ),
        metrics=reg.MetricsRecord(
            overall=j.evaluation["overall"], subgroups=j.evaluation["subgroups"]
        ),
        gates=reg.GatesRecord(
            baseline=j.base_version,
            passed=j.gates.passed,
            results={
                r.name: reg.GateOutcome(verdict=r.verdict, value=r.value, threshold=r.threshold)
                for r in j.gates.results
            },
        ),
        **_optional(t),
    )
    churn = _churn_record(j)
    if churn is not None:  # assigned, so it counts as set and is written; bootstrap has none
        entry.churn = churn
    return entry


def _churn_record(j: Judgement) -> reg.ChurnRecord | None:
    """The churn record when churn was measured (there is a baseline), else None."""
    c = j.gates.metrics.get("churn")
    if not c:
        return None
    gate = j.gates.result("churn")
    extra: dict[str, Any] = {}
    if c.get("tolerance") is not None:  # regression
        extra["tolerance"] = c["tolerance"]
    if c.get("transitions") is not None:
        extra["transitions"] = c["transitions"]
    return reg.ChurnRecord(
        kind=c["kind"],
        value=c["value"],
        lower=c["lower"],
        upper=c["upper"],
        confidence=c["confidence"],
        rows=c["rows"],
        changed=c["changed"],
        negative=c["negative"],
        positive=c["positive"],
        max=gate.threshold,
        **extra,
    )


def _optional(t: dict[str, Any]) -> dict[str, Any]:
    """The entry's keys that only some trainings have (absent keys are not written)."""
    out: dict[str, Any] = {}
    # the software it was trained with (training.json of older runs has none)
    if t.get("environment"):
        out["environment"] = reg.EnvironmentRecord.model_validate(t["environment"])
    # where it was fitted: the engine and the cluster's size (older runs recorded none)
    if t.get("engine"):
        out["engine"] = reg.EngineRecord.model_validate(t["engine"])
    # model.yaml training.mode: warm_start names the parent version (an extra key)
    if t.get("training"):
        out["training"] = {k: t["training"].get(k) for k in ("mode", "parent", "note")}
    return out


def model_card(cfg: Config, entry: reg.RegistryEntry, j: Judgement) -> dict[str, Any]:
    schema = entry.schema_
    return {
        "model": cfg.release.model_name,
        "version": entry.version,
        "created": entry.created,
        "bump": entry.bump,
        "reason": entry.reason.to_dict(),
        "code_commit": entry.code_commit,
        "training_data": {
            "source": f"{cfg.dataset.name} ({cfg.dataset.batches}, tracked by data.dvc)",
            **entry.data.to_dict(),
        },
        "parameters": entry.params,
        "input_schema": schema.features,
        "output_schema": {"target": schema.target, "task": schema.task, "classes": schema.classes},
        "schema_fingerprint": schema.fingerprint,
        "metrics": {
            "holdout": j.evaluation["overall"],
            "subgroups": j.evaluation["subgroups"],
            "latency_ms": j.evaluation["latency"],
            "size_bytes": entry.artifact.size_bytes,
            "train_seconds": j.training["train_seconds"],
        },
        "gates": j.gates.to_dict(),
        "artifact": entry.artifact.to_dict(),
        "mlflow": entry.mlflow.to_dict(),
        "known_limitations": list(cfg.release.known_limitations),
        **({"environment": entry.environment.to_dict()} if entry.environment else {}),
        **({"engine": entry.engine.to_dict()} if entry.engine else {}),
        **(
            {"training": extra["training"], "parent_version": extra["training"]["parent"]}
            if (extra := entry.model_extra or {}).get("training")
            else {}
        ),
    }


def report_context(
    cfg: Config,
    j: Judgement,
    *,
    outcome: str,
    triggers: dict[str, Any] | None,
    fired: list[str],
    branch: str | None = None,
    pr_url: str | None = None,
    drift: dict[str, Any] | None = None,
    plot_prefix: str = "",
) -> dict[str, Any]:
    checks = (triggers or {}).get("checks", {})
    drift_top: list[Any] = []
    if drift:
        feats = sorted(
            drift["features"].items(),
            key=lambda kv: (not kv[1].get("drifted"), -float(kv[1].get("psi") or 0)),
        )
        drift_top = feats[:5]
    run_id = j.training.get("mlflow", {}).get("run_id")
    return {
        "model": cfg.release.model_name,
        "version": j.version,
        "bump": j.bump,
        "base_version": j.base_version,
        "outcome": outcome,
        "fired": [
            {
                "name": n,
                "value": checks.get(n, {}).get("value"),
                "threshold": checks.get(n, {}).get("threshold"),
            }
            for n in fired
        ],
        "triggers": triggers or {},
        "gates": j.gates.to_dict(),
        "drift_top": drift_top,
        "links": {
            "mlflow_run": tracking.run_url(cfg, run_id) if run_id else None,
            "mlflow_run_id": run_id,
            "model_card": f"{plot_prefix}model_card.json",
        },
        "plots": [f"{plot_prefix}{p.name}" for p in j.plots],
        "schema_change": j.schema_change.__dict__,
        "branch": branch,
        "pr_url": pr_url,
        "cost": j.cost,
        "engine": j.training.get("engine"),
    }


@dataclass
class Proposal:
    version: str
    branch: str
    commit: str
    title: str
    body_path: Path
    pr_url: str | None = None
    pushed: bool = False


def propose(
    cfg: Config,
    registry: reg.Registry,
    j: Judgement,
    *,
    fired: list[str],
    reason: str | None,
    triggers: dict[str, Any] | None,
    drift: dict[str, Any] | None,
    push: bool,
    open_pr: bool,
) -> Proposal:
    """Push the artifact, then commit the proposal on its branch (main's tree untouched)."""
    root = cfg.root
    if not j.gates.passed:
        raise BadInput(
            "refusing to propose: a promotion gate failed (see reports/latest/gate.json)"
        )
    entry = build_entry(cfg, j, fired=fired, reason=reason)
    if dvcops.has_remote(root):
        progress("propose: pushing the model and data to the DVC remote")
        dvcops.push(root)
        if not artifacts.in_remote(root, entry.artifact):
            raise ExternalCommandError(
                "dvc push finished but the remote lacks the model; not proposing"
            )
        faults.point("propose:dvc-pushed")
    else:
        raise BadInput(
            ".dvc/config: no DVC remote configured; a proposal needs the model pushed "
            "(dvc remote add -d <name> <url>)"
        )
    ever = history.ever_in_production(root, cfg)
    new_registry = staged_registry(cfg, registry, entry, keep=ever)
    branch = f"retrain/v{j.version}"
    vdir = f"reports/v{j.version}"
    # Links must resolve both from the committed reports/vX/PR.md (relative to its folder)
    # and from the PR description on GitHub (absolute, through the branch's raw URL).
    base_url = _raw_base_url(branch)
    ctx = report_context(
        cfg,
        j,
        outcome="proposed",
        triggers=triggers,
        fired=fired,
        branch=branch,
        drift=drift,
        plot_prefix=f"{vdir}/" if base_url else "",
    )
    ctx["base_url"] = base_url
    title = markdown.pr_title(ctx)
    body = markdown.render_pr_body(ctx)
    files: dict[str, bytes] = {
        reg.REGISTRY_FILE: reg.dumps(new_registry).encode(),
        f"{vdir}/model_card.json": (
            json.dumps(model_card(cfg, entry, j), indent=2, sort_keys=True) + "\n"
        ).encode(),
        f"{vdir}/gate.json": (
            json.dumps(j.gates.to_dict(), indent=2, sort_keys=True) + "\n"
        ).encode(),
        f"{vdir}/PR.md": body.encode(),
    }
    for p in j.plots:
        files[f"{vdir}/{p.name}"] = p.read_bytes()
    for rel in PIPELINE_FILES:
        if (root / rel).is_file():
            files[rel] = (root / rel).read_bytes()
    message = f"{title}\n\n{_commit_body(entry)}"
    ref = f"refs/heads/{branch}"
    seen_remote = gitops.remote_sha(root, ref) if (push or open_pr) else None
    before = gitops.git(root, "rev-parse", "--verify", "--quiet", ref, check=False) or None
    commit = gitops.commit_files_to_branch(
        root, branch=branch, base="HEAD", files=files, message=message
    )
    latest = root / LATEST_REPORT
    (latest / "PR.md").write_text(body)
    proposal = Proposal(
        version=j.version, branch=branch, commit=commit, title=title, body_path=latest / "PR.md"
    )
    progress(f"propose: committed {branch} ({commit[:8]})")
    faults.point("propose:committed")
    if push or open_pr:
        try:
            gitops.push_with_lease(root, ref, seen_remote, what=f"branch {branch}")
        except gitops.RaceLost:
            # Put the local branch back as it was: the loser changes nothing.
            if before:
                gitops.git(root, "update-ref", ref, before)
            else:
                gitops.git(root, "update-ref", "-d", ref)
            raise
        proposal.pushed = True
        progress(f"propose: pushed {branch} to origin")
        faults.point("propose:pushed")
    if open_pr:
        proposal.pr_url = forge.open_pull_request(
            root, base=cfg.release.base_branch, head=branch, title=title, body=body
        )
    return proposal


def staged_registry(
    cfg: Config, registry: reg.Registry, entry: reg.RegistryEntry, *, keep: set[str]
) -> reg.Registry:
    """The registry a passing candidate is proposed in, by ``release.rollout.strategy``:
    ``direct`` makes it production; ``canary`` the canary at the first step; ``shadow`` a
    shadow.  With no production yet (bootstrap) every strategy is direct."""
    strategy = cfg.release.rollout.strategy
    direct = strategy == "direct" or registry.production is None
    new = registry.with_new_version(
        entry, promote=direct, retention=cfg.release.retention, keep=keep
    )
    if direct:
        # A rollout of an older candidate does not outlive a new production version.
        return reg.with_rollout(new, None)
    old = registry.rollout or reg.Rollout()
    if strategy == "canary":
        canary = reg.Canary(version=entry.version, weight=cfg.release.rollout.steps[0])
        return reg.with_rollout(new, reg.Rollout(canary=canary, shadow=old.shadow))
    return reg.with_rollout(new, reg.Rollout(canary=old.canary, shadow=(entry.version,)))


def _raw_base_url(branch: str) -> str | None:
    """Where GitHub serves the branch's files, so the PR body's pictures and links resolve
    (relative links do not render in PR descriptions).  Known only inside Actions."""
    server = os.environ.get("GITHUB_SERVER_URL")
    repo = os.environ.get("GITHUB_REPOSITORY")
    if not (server and repo):
        return None
    return f"{server}/{repo}/raw/{branch}"


def _commit_body(entry: reg.RegistryEntry) -> str:
    lines = [
        f"bump: {entry.bump}",
        f"baseline: {entry.gates.baseline or 'none (bootstrap)'}",
        f"triggers: {', '.join(entry.reason.triggers) or '-'}",
    ]
    if entry.reason.manual:
        lines.append(f"reason: {entry.reason.manual}")
    lines.append(f"artifact sha256: {entry.artifact.sha256}")
    return "\n".join(lines)


def restore_workspace(root: Path) -> None:
    """Put main's tracked pipeline files back as HEAD has them (the proposal lives on its branch)."""
    for rel in PIPELINE_FILES:
        if gitops.show(root, "HEAD", rel) is not None:
            gitops.git(root, "checkout", "HEAD", "--", rel)
        else:
            (root / rel).unlink(missing_ok=True)
    if (root / "dvc.lock").is_file():
        dvcops.checkout(root)
