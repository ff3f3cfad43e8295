"""DVC: ``dvc repro``, push, checkout and status in this process through DVC's own API (the
stack is imported once), or by subprocess on the real ``dvc`` command
(``RETRAIN_STAGES_IN_SUBPROCESS=1``, and the commands with no API use here)."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from retrain.core.errors import BadInput, ExternalCommandError, RetrainError

DVC_ENV = {"DVC_NO_ANALYTICS": "1", "DVC_NO_UPDATE_CHECK": "1"}

# DVC's advice to a person at the end of a repro; `retrain run` takes these steps itself.
NOISE = (
    "To track the changes with git",
    "git add ",
    "To enable auto staging",
    "dvc config core.autostage",
    "Use `dvc push`",
    "Generating lock file",
    "Updating lock file",
    "didn't change, skipping",
)
# Error lines are not echoed: the caller raises one line from them (exit 2 or 1).
ERRORS = ("error: ", "ERROR: ")


def _stream(cmd: list[str], root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run, showing progress on stderr minus DVC's git advice; keep the output for errors."""
    proc = subprocess.Popen(
        cmd, cwd=root, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    kept: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        kept.append(line)
        text = line.strip()
        if text and not text.startswith(NOISE + ERRORS):
            sys.stderr.write(line)
            sys.stderr.flush()
    proc.wait()
    out = "".join(kept)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, out)


def dvc(
    root: Path, *args: str, check: bool = True, stream: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **DVC_ENV}
    exe = Path(sys.executable).with_name("dvc")
    cmd = [str(exe) if exe.exists() else "dvc", *args]
    if stream:
        res = _stream(cmd, root, env)
    else:
        res = subprocess.run(cmd, cwd=root, env=env, text=True, capture_output=True)
    if check and res.returncode != 0:
        lines = [ln for ln in (res.stderr or res.stdout or "").strip().splitlines() if ln.strip()]
        # A stage that failed on bad input printed its one-line error: that is the message.
        bad = [ln for ln in lines if ln.startswith("error: ")]
        if bad:
            raise BadInput(bad[-1].removeprefix("error: "))
        raise ExternalCommandError(f"dvc {args[0]} failed: {lines[-1] if lines else 'no output'}")
    return res


@contextlib.contextmanager
def _repo(root: Path) -> Iterator[Any]:
    """DVC's repository API in this process (the stack is loaded already for ``dvc repro``;
    a ``dvc`` command is a fresh interpreter, half a second each), its prints on stderr."""
    for key, value in DVC_ENV.items():
        os.environ.setdefault(key, value)
    from dvc.repo import Repo

    with contextlib.redirect_stdout(sys.stderr), Repo(str(root)) as repo:
        yield repo


def check_data_matches(root: Path) -> None:
    """Refuse to train on data that is not what the committed ``data.dvc`` records.

    A ``data.dvc`` DVC cannot read is bad input (exit 2, naming the file); any other failure
    to ask DVC stops the run too (exit 1), with DVC's own reason: the run never goes on
    without knowing what it trains on."""
    import json

    if not (root / "data.dvc").is_file():
        return
    if os.environ.get(SUBPROCESS_ENV) == "1":
        res = dvc(root, "status", "data.dvc", "--json", check=False)
        if res.returncode != 0:
            lines = [ln for ln in (res.stderr or res.stdout or "").splitlines() if ln.strip()]
            raise ExternalCommandError(
                f"dvc status data.dvc failed: {lines[-1].strip() if lines else 'no output'}"
            )
        try:
            status = json.loads(res.stdout or "{}")
        except json.JSONDecodeError as exc:
            raise ExternalCommandError(
                f"dvc status data.dvc --json printed no JSON ({exc}): {res.stdout[:200]!r}"
            ) from None
    else:
        # In this process (what `dvc status data.dvc --json` prints): `dvc repro` runs here
        # next, so importing DVC once spares starting a second interpreter.
        from dvc.exceptions import DvcException
        from dvc.repo import lock_repo
        from dvc.utils.strictyaml import YAMLSyntaxError, YAMLValidationError

        try:
            with _repo(root) as repo, lock_repo(repo):
                status = repo.status(targets=["data.dvc"])
        except (YAMLSyntaxError, YAMLValidationError) as exc:
            raise BadInput(f"data.dvc: DVC cannot read it ({_first_line(exc)})") from None
        except DvcException as exc:
            raise ExternalCommandError(f"dvc status data.dvc failed: {_first_line(exc)}") from None
    for entry in status.get("data.dvc", []):
        state = (entry.get("changed outs") or {}).get("data")
        if state in ("modified", "new"):
            raise BadInput(
                "data/: differs from data.dvc (uncommitted data changes); commit them with "
                "`dvc add data && git commit data.dvc`, or restore with `dvc checkout data.dvc`"
            )
        if state == "deleted":
            raise BadInput("data/: missing; fetch it with `dvc pull`")


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


# The stages of dvc.yaml whose commands (`retrain <name>`) hand their work to `retrain run`.
STAGES = ("validate", "train", "evaluate")
SUBPROCESS_ENV = "RETRAIN_STAGES_IN_SUBPROCESS"  # "1": every stage in its own process


def repro(root: Path) -> None:
    """``dvc repro``, with DVC deciding as always which stages are stale, running them and
    writing ``dvc.lock``; only our own stage commands, which DVC runs as usual, hand their
    stage back to this process, which has imported the stack already, instead of doing the
    work in three fresh interpreters (:mod:`retrain.release.stagehost`; docs/decisions.md,
    "Stages run inside `retrain run`").  Any other command (a fork's own stage) runs in its
    shell as DVC runs it; ``RETRAIN_STAGES_IN_SUBPROCESS=1`` runs the real ``dvc repro``
    command instead."""
    if os.environ.get(SUBPROCESS_ENV) == "1":
        dvc(root, "repro", stream=True)
        return
    from dvc.exceptions import DvcException

    from retrain.release.stagehost import Host

    host = Host(STAGES, run_stage)

    def reproduce() -> None:
        with _repo(root) as repo:
            repo.reproduce()

    try:
        with _dvc_log_on_stderr():
            host.serve_while(reproduce)
    except DvcException as exc:
        failures = host.failures
        if failures and isinstance(failures[-1], RetrainError):
            raise failures[-1] from None  # bad input: its one line, exit 2, as from the stage
        if failures:
            first = str(failures[-1]).strip().splitlines()
            raise ExternalCommandError(
                f"dvc repro failed: {exc} ({type(failures[-1]).__name__}: "
                f"{first[0] if first else ''})"
            ) from failures[-1]
        raise ExternalCommandError(f"dvc repro failed: {exc}") from None


@contextlib.contextmanager
def _dvc_log_on_stderr() -> Iterator[None]:
    """DVC logs its progress through the standard ``logging`` module, to handlers on stdout
    that it installs on its "dvc" logger; `retrain run --json` prints JSON there.  While
    inside, that logger writes to stderr instead, minus its advice on git (see NOISE)."""
    log = logging.getLogger("dvc")
    handlers = log.handlers[:]
    shown = logging.StreamHandler(sys.stderr)
    shown.setLevel(logging.INFO)
    shown.addFilter(lambda rec: not rec.getMessage().strip().startswith(NOISE))
    log.handlers = [shown]
    try:
        yield
    finally:
        log.handlers = handlers


def run_stage(root: Path, name: str) -> None:
    """One pipeline stage, as ``retrain <name>`` in ``root`` would run it."""
    from retrain.core.config import load_config
    from retrain.pipeline import stages

    getattr(stages, name)(load_config(root))


def push(root: Path) -> None:
    """``dvc push``; when it fails, ask the remote why, so refused credentials and a missing
    bucket are one line naming the remote (exit 2) rather than DVC's "unexpected error"."""
    try:
        if os.environ.get(SUBPROCESS_ENV) == "1":
            dvc(root, "push", "--quiet")
        else:
            _push_here(root)
    except ExternalCommandError:
        from retrain.pipeline import artifacts

        artifacts.check_remote(root)  # raises RemoteError naming the remote and what is wrong
        raise


def _push_here(root: Path) -> None:
    try:
        with _repo(root) as repo:
            repo.push()
    except Exception as exc:  # DVC's own errors, or a filesystem's (credentials, network)
        first = str(exc).strip().splitlines()
        why = first[0] if first else type(exc).__name__
        raise ExternalCommandError(f"dvc push failed: {why}") from exc


def checkout(root: Path) -> None:
    """``dvc checkout``, best effort (what a failed one leaves, ``dvc status`` shows)."""
    if os.environ.get(SUBPROCESS_ENV) == "1":
        dvc(root, "checkout", "--quiet", check=False)
        return
    from dvc.exceptions import DvcException

    with contextlib.suppress(DvcException), _repo(root) as repo:
        repo.checkout()


def has_remote(root: Path) -> bool:
    """Whether any DVC remote is configured (``dvc remote list`` prints something)."""
    if os.environ.get(SUBPROCESS_ENV) == "1":
        return bool(dvc(root, "remote", "list", check=False).stdout.strip())
    from dvc.exceptions import DvcException

    try:
        with _repo(root) as repo:
            return bool(repo.config.get("remote"))
    except DvcException:
        return False
