"""The ``retrain`` command line: a thin layer over the library.

Exit codes: 0 when the command did its job whatever the outcome; 2 for bad input or
configuration (one line on stderr, no traceback); 1 for anything unexpected.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from retrain.core.errors import RetrainError


def _emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _append_summary(path: str | None, text: str) -> None:
    if path and text:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text.rstrip() + "\n")


def _cfg() -> Any:
    from retrain.core.config import load_config

    return load_config(Path.cwd())


class Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RetrainError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="retrain")
def cli() -> None:
    """Keep one production model fresh and safe, with git as the control plane."""


def _stage(name: str) -> None:
    """Pipeline stage ``name`` here, or, under ``retrain run``, in that process (which has
    the stack imported already; see :mod:`retrain.release.stagehost`)."""
    from retrain.release import stagehost

    code = stagehost.hand_over(name)
    if code is not None:
        sys.exit(code)  # the host said what went wrong, on its stderr
    from retrain.pipeline import stages

    getattr(stages, name)(_cfg())


@cli.command()
def validate() -> None:
    """Pipeline stage 1: check every data batch and the frozen holdout."""
    _stage("validate")


@cli.command()
def train() -> None:
    """Pipeline stage 2: fit the model, save it (skops), log and register it in MLflow."""
    _stage("train")


@cli.command()
def evaluate() -> None:
    """Pipeline stage 3: score the candidate on the frozen holdout."""
    _stage("evaluate")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="print the JSON report")
@click.option("--force", is_flag=True, help="count as a manual trigger")
@click.option("--reason", default=None, help="manual reason (counts as a manual trigger)")
def triggers(as_json: bool, force: bool, reason: str | None) -> None:
    """Which retraining triggers fire now, each with value and threshold."""
    from retrain.core import registry
    from retrain.decide import triggers as trig
    from retrain.serve import feedback

    cfg = _cfg()
    reg = registry.load(cfg.root, expected_model=cfg.release.model_name)
    live = feedback.live_for_triggers(cfg, reg)
    rep = trig.check(cfg, reg, force=force, reason=reason, live=live)
    _emit(rep.to_dict()) if as_json else click.echo(rep.table())


@cli.command()
@click.option("--reference", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--current", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def drift(reference: Path, current: Path, as_json: bool) -> None:
    """Drift report between two data files (CSV or Parquet)."""
    from retrain.decide import drift as d

    kinds = None
    cfg_obj = None
    try:
        cfg = _cfg()
        cfg_obj = cfg.drift
        kinds = {f.name: f.type for f in cfg.dataset.features}
    except RetrainError:
        cfg = None
    rep = d.drift_report(reference, current, kinds=kinds, config=cfg_obj)
    _emit(rep.to_dict()) if as_json else click.echo(d.format_table(rep))


@cli.command()
@click.option("--force", is_flag=True, help="retrain even if no trigger fired (manual)")
@click.option("--reason", default=None, help="why (a manual trigger)")
@click.option(
    "--bump",
    type=click.Choice(["minor", "patch", "major"]),
    default=None,
    help="patch: a fix that must not regress (gate: no regression beyond ε); major: by hand "
    "(a schema change forces it anyway)",
)
@click.option("--push", is_flag=True, help="push the proposal branch to origin")
@click.option("--open-pr", is_flag=True, help="open the pull request with gh (implies --push)")
@click.option("--json", "as_json", is_flag=True)
@click.option("--summary", "summary_file", default=None, help="append a Markdown summary here")
def run(
    force: bool,
    reason: str | None,
    bump: str | None,
    push: bool,
    open_pr: bool,
    as_json: bool,
    summary_file: str | None,
) -> None:
    """The scheduled job: triggers, dvc repro, gates, propose."""
    from retrain import run as r

    result = r.run(_cfg(), force=force, reason=reason, bump=bump, push=push, open_pr=open_pr)
    _append_summary(summary_file, result.summary)
    if as_json:
        _emit(result.to_dict())
    else:
        click.echo(result.summary)


@cli.command()
@click.option("--reason", default=None)
@click.option("--bump", type=click.Choice(["minor", "patch", "major"]), default=None)
@click.option("--push", is_flag=True)
@click.option("--open-pr", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
def propose(reason: str | None, bump: str | None, push: bool, open_pr: bool, as_json: bool) -> None:
    """Judge the reproduced pipeline and, if every gate passes, commit retrain/v<X.Y.Z>."""
    from retrain import run as r

    result = r.propose(_cfg(), reason=reason, bump=bump, push=push, open_pr=open_pr)
    _emit(result.to_dict()) if as_json else click.echo(result.summary)


@cli.command()
@click.option("--push-tags", is_flag=True, help="push the tags it creates to origin")
@click.option("--json", "as_json", is_flag=True)
@click.option("--summary", "summary_file", default=None)
def promote(push_tags: bool, as_json: bool, summary_file: str | None) -> None:
    """On main: promote, or record a rollback, for a change of production in HEAD."""
    from retrain.release import promotion

    res = promotion.promote(_cfg(), push_tags=push_tags)
    _append_summary(summary_file, "### Promote\n\n" + res.summary())
    _emit(res.to_dict()) if as_json else click.echo(res.summary())


@cli.command()
@click.option("--to", "to", default=None, help="a version, or 'previous' (default)")
@click.option("--push", is_flag=True, help="push the revert to origin")
@click.option("--open-pr", is_flag=True, help="put the revert on rollback/v<X> and open a PR")
@click.option("--json", "as_json", is_flag=True)
def rollback(to: str | None, push: bool, open_pr: bool, as_json: bool) -> None:
    """Revert the merge that promoted the current version (no retraining)."""
    from retrain.release import rollback as rb

    res = rb.rollback(_cfg(), to=to, push=push, open_pr=open_pr)
    if as_json:
        _emit(res.to_dict())
        return
    where = f"on {res.branch}" + (" (pushed)" if res.pushed else " (not pushed; git push to apply)")
    click.echo(
        f"rollback v{res.from_version} -> v{res.to_version}: revert commit {res.commit[:8]} {where}"
    )
    if res.pr_url:
        click.echo(f"pull request: {res.pr_url}")
    if not open_pr:
        click.echo(
            "then run `retrain promote` on the new HEAD (the promote workflow does it on push)"
        )


@cli.group()
def holdout() -> None:
    """The frozen holdout: move it forward in a reviewed pull request."""


@holdout.command("roll")
@click.option("--rows", type=int, default=None, help="rows of the new holdout (default: as now)")
@click.option("--push", is_flag=True, help="push the new data (DVC) and the branch")
@click.option("--open-pr", is_flag=True, help="open the pull request with gh (implies --push)")
@click.option("--json", "as_json", is_flag=True)
def holdout_roll(rows: int | None, push: bool, open_pr: bool, as_json: bool) -> None:
    """The newest labelled rows become the holdout, the old one a batch, production
    re-scored on both: on branch holdout/roll-<day>, for review (never applied directly)."""
    from retrain.release import holdout as ho

    res = ho.roll(_cfg(), rows=rows, push=push, open_pr=open_pr)
    if as_json:
        _emit(res.to_dict())
        return
    click.echo(
        f"holdout roll: {res.new['rows']} rows {res.new['start']} … {res.new['end']} replace "
        f"{res.old['rows']} rows {res.old['start']} … {res.old['end']} (now {res.new_batch}); "
        f"on {res.branch} ({res.commit[:8]}{', pushed' if res.pushed else ', not pushed'}); "
        f"report: {res.report}"
    )
    if res.pr_url:
        click.echo(f"pull request: {res.pr_url}")


@cli.command()
@click.option("--base", required=True, help="the git ref the PR merges into, e.g. origin/main")
@click.option("--summary", "summary_file", default=None)
def verify(base: str, summary_file: str | None) -> None:
    """Re-check a proposal against its base: semver, gates, artifact in the DVC remote."""
    from retrain.release import verify as vf

    try:
        passed = vf.verify(_cfg(), base=base)
    except RetrainError as exc:
        _append_summary(summary_file, f"### Promotion gate\n\n❌ {exc}")
        raise
    text = "\n".join(f"✅ {p}" for p in passed)
    _append_summary(summary_file, "### Promotion gate\n\n" + text)
    click.echo(text)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def status(as_json: bool) -> None:
    """Production version, registered versions, promotion/rollback history."""
    from retrain.release import history

    st = history.status(Path.cwd(), _cfg())
    _emit(st) if as_json else click.echo(history.format_status(st))


@cli.command()
@click.option(
    "--output", "output", required=True, type=click.Path(path_type=Path), help="the site's folder"
)
@click.option("--ref", default="HEAD", show_default=True, help="the history to show")
@click.option("--live-since", default=None, help="live metrics from this UTC date or time on")
def site(output: Path, ref: str, live_since: str | None) -> None:
    """Write the model's history as a static web page (timeline, metrics, drift, live)."""
    from retrain.site import build

    click.echo(build(_cfg(), output, ref=ref, live_since=live_since).summary())


@cli.command()
@click.option("--version", "version", required=True)
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path))
@click.option("--output", "output_path", default=None, type=click.Path(path_type=Path))
def predict(version: str, input_path: Path, output_path: Path | None) -> None:
    """Predictions of a registered version (artifact verified before loading)."""
    from retrain.pipeline import predict as prediction

    text = prediction.predict_file(_cfg(), version, input_path)
    if output_path is None:
        click.echo(text, nl=False)
    else:
        from retrain.core.registry import write_atomic

        write_atomic(output_path, text)


@cli.command()
@click.option(
    "--dir", "workdir", default=".demo", show_default=True, type=click.Path(path_type=Path)
)
@click.option(
    "--export",
    "export",
    default=None,
    type=click.Path(path_type=Path),
    help="copy the proposal's reports/v<X.Y.Z>/ here (docs/example-pr)",
)
@click.option(
    "--example",
    "example_name",
    default="weather",
    show_default=True,
    help="weather (classification, the repository's own data) or cars (regression, "
    "onboarded with retrain init)",
)
def demo(workdir: Path, export: Path | None, example_name: str) -> None:
    """One full retraining cycle on a bundled example, offline, in a sandbox."""
    from retrain import demo as demo_

    demo_.demo(Path.cwd(), workdir, export, example_name)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("--open-pr", is_flag=True, help="act: open the PR the verdict asks for")
@click.option("--push", is_flag=True, help="act: push rollbacks to main (others open a PR)")
@click.option(
    "--log",
    "log_file",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="a prediction-log export (CSV/Parquet/JSONL with labels) instead of the live log",
)
@click.option("--summary", "summary_file", default=None, help="append a Markdown summary here")
def monitor(
    as_json: bool, open_pr: bool, push: bool, log_file: Path | None, summary_file: str | None
) -> None:
    """Judge canary, shadows or a fresh promotion from the prediction log; act through git."""
    from retrain.rollout import monitor as mon

    if open_pr and push:
        raise click.UsageError("--open-pr and --push are exclusive")
    cfg = _cfg()
    frame = mon.read_log_file(log_file) if log_file is not None else None
    obs = mon.observe(cfg, frame, source=str(log_file) if log_file is not None else None)
    action = mon.act(cfg, obs, push=push, open_pr=open_pr)
    text = mon.format_report(obs, action)
    _append_summary(summary_file, "### Monitor\n\n```\n" + text + "\n```")
    if as_json:
        _emit({**obs.to_dict(), "action": action.to_dict()})
    else:
        click.echo(text)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--follow", "follow", default=None, help="a git ref to follow, e.g. origin/main")
@click.option(
    "--follow-path",
    "follow_path",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="a directory kept up to date by git-sync or a ConfigMap volume (no git in the pod)",
)
@click.option(
    "--interval",
    default=None,
    type=click.FloatRange(min=0.1),
    help="seconds between reconciles (configs/serve.yaml follow_interval, 10)",
)
@click.option(
    "--dev-open-feedback",
    is_flag=True,
    help="development only: /feedback without a token, from loopback; labels not trusted",
)
def serve(
    host: str,
    port: int,
    follow: str | None,
    follow_path: Path | None,
    interval: float | None,
    dev_open_feedback: bool,
) -> None:
    """Serve the production model of registry.yaml, following the working tree, a git ref or
    a mounted directory; each version with the configs and code of the revision naming it.

    /feedback needs a bearer token from the file named by RETRAIN_TOKENS_FILE."""
    from retrain.core.errors import BadInput
    from retrain.serve.run import serve as run_server

    if follow and follow_path:
        raise BadInput("--follow and --follow-path: give one source to follow, not both")
    run_server(
        Path.cwd(),
        host=host,
        port=port,
        follow=follow,
        interval=interval,
        follow_path=follow_path,
        dev_open_feedback=dev_open_feedback,
    )


@cli.command()
@click.option(
    "--dir", "workdir", default=".drill", show_default=True, type=click.Path(path_type=Path)
)
@click.option("--json", "as_json", is_flag=True)
@click.option("--summary", "summary_file", default=None, help="append the report (Markdown)")
def drill(workdir: Path, as_json: bool, summary_file: str | None) -> None:
    """Catastrophe drill in a sandbox: promote bad models, serve, monitor, roll back."""
    from retrain import demo as demo_

    report = demo_.drill(Path.cwd(), workdir)
    _append_summary(summary_file, report.markdown())
    _emit(report.to_dict()) if as_json else click.echo(report.markdown())
    if not report.passed:
        sys.exit(1)


@cli.command()
@click.argument("request_id")
@click.option("--ref", default="HEAD", show_default=True, help="the git history to read")
@click.option("--log", "log_url", default=None, help="prediction log URL (default: serve.yaml)")
@click.option("--json", "as_json", is_flag=True)
def audit(request_id: str, ref: str, log_url: str | None, as_json: bool) -> None:
    """Which model served REQUEST_ID (the server's id, or a client's X-Request-ID): version,
    registry entry, promoting commit, every label and who wrote it."""
    from retrain.serve import audit as au
    from retrain.serve import predlog

    root = Path.cwd()
    _, log = predlog.configured_log(root)
    if log_url is not None:
        log.close()
        log = predlog.open_log(log_url, root)
    try:
        result = au.audit_any(root, log, request_id, ref=ref)
    finally:
        log.close()
    _emit(result) if as_json else click.echo(au.format_audit(result))


@cli.group()
def feedback() -> None:
    """Live labels from the prediction log: export them as a training batch."""


@feedback.command("export")
@click.option("--since", required=True, help="served at or after this UTC date/time (ISO)")
@click.option("--output", required=True, type=click.Path(path_type=Path), help="new batch file")
@click.option("--version", "version", default=None, help="only rows this version served")
@click.option("--json", "as_json", is_flag=True)
def feedback_export(since: str, output: Path, version: str | None, as_json: bool) -> None:
    """Write labelled served rows as a batch in the dataset's schema (then dvc add, commit)."""
    from retrain.serve import feedback as fb
    from retrain.serve import predlog

    cfg = _cfg()
    serve_cfg, log = predlog.configured_log(cfg.root)
    try:
        exp = fb.export_batch(cfg, serve_cfg, log, since=since, output=output, version=version)
    finally:
        log.close()
    if as_json:
        _emit(exp.to_dict() if exp else {"path": None, "rows": 0})
    else:
        click.echo(fb.report(exp, since))


@cli.group(name="log")
def log_group() -> None:
    """The prediction log the servers write: keep it to its retention."""


@log_group.command("prune")
@click.option("--dry-run", is_flag=True, help="count what would go; delete nothing")
@click.option(
    "--batch", default=10_000, show_default=True, type=int, help="rows per delete transaction"
)
@click.option("--json", "as_json", is_flag=True)
@click.option("--summary", "summary_file", default=None, help="append a Markdown summary here")
def log_prune(batch: int, dry_run: bool, as_json: bool, summary_file: str | None) -> None:
    """Delete served rows older than configs/serve.yaml log_retention, and their labels;
    never the rows retrain monitor still judges."""
    from retrain.rollout import retention
    from retrain.serve import predlog

    cfg = _cfg()
    serve_cfg, log = predlog.configured_log(cfg.root)
    try:
        result = retention.prune(cfg, serve_cfg, log, batch=batch, dry_run=dry_run)
    finally:
        log.close()
    text = retention.report(result)
    _append_summary(summary_file, "### Prediction log retention\n\n```\n" + text + "\n```")
    _emit(result.to_dict()) if as_json else click.echo(text)


@cli.command(name="init")
@click.option("--data", "data", required=True, help="your labelled data (CSV or Parquet)")
@click.option("--target", required=True, help="the column to predict")
@click.option("--time-column", default=None, help="timestamps: batches and holdout by time")
@click.option("--name", default=None, help="the model's name (default: from the file name)")
@click.option("--holdout-share", default="0.2", show_default=True, help="frozen holdout share")
@click.option("--batches", "n_batches", default=None, help="number of batches (default: by size)")
@click.option("--force", is_flag=True, help="reset a registry that already has versions")
def init_cmd(
    data: str,
    target: str,
    time_column: str | None,
    name: str | None,
    holdout_share: str,
    n_batches: str | None,
    force: bool,
) -> None:
    """Turn this fork into a project for your own data (configs, registry, batches, holdout)."""
    from retrain import onboard
    from retrain.core.errors import BadInput

    try:
        share = float(holdout_share)
    except ValueError:
        raise BadInput(f"--holdout-share: expected a number, got {holdout_share!r}") from None
    try:
        batches = int(n_batches) if n_batches is not None else None
    except ValueError:
        raise BadInput(f"--batches: expected a whole number, got {n_batches!r}") from None
    result = onboard.init(
        Path.cwd(),
        Path(data),
        target,
        time_column=time_column,
        name=name,
        holdout_share=share,
        n_batches=batches,
        force=force,
    )
    click.echo(result.summary())


def main() -> None:
    """The ``retrain`` command.

    When the command is done the process exits without the interpreter's teardown, which
    frees every object of every module one by one: about a second of each scheduled run
    once scikit-learn, pandas, MLflow and DVC are loaded (docs/decisions.md).  Only public
    interfaces: Python's own exit runs as usual (threads joined, then the exit handlers),
    and the last of those, registered here first so that it runs after every handler the
    libraries register later, flushes the streams and ends the process with the status.
    """
    import atexit

    status = [1]  # an uncaught exception: Python prints it, and the status is 1
    atexit.register(_exit_now, status)
    try:
        cli(prog_name="retrain")
    except SystemExit as exc:
        status[0] = _status_of(exc.code)
        raise
    status[0] = 0


def _status_of(code: Any) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    return 1  # sys.exit("message"): Python prints the message, the status is 1


def _exit_now(status: list[int]) -> None:
    """The last exit handler: skip the interpreter's teardown (see :func:`main`)."""
    import logging
    import os

    code = status[0]
    logging.shutdown()  # its own exit handler may be one registered before this one
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            code = code or 120  # what Python returns when it cannot flush at exit
    os._exit(code)


if __name__ == "__main__":
    main()
