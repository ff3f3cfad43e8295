"""Install time: a fresh ``make install`` and the workflows' install step, before and after.

Each case clones the repository at a git ref into a temporary directory (a fresh clone, no
``.venv``) and times one command there, in a subprocess:

- ``make install``: the developer's and CI's path (``.ci/run`` calls ``make test``);
- ``workflow install``: what a workflow's "Install retrain" step runs on a fresh runner. For
  a ref without ``uv.lock`` that is pip (``pip install --upgrade pip`` + ``pip install .``
  into a fresh virtualenv, standing in for setup-python's interpreter); with the lock it is
  ``.ci/install`` (``uv sync --locked``, no dev tools).

``--cold`` empties pip's and uv's caches for each command (``PIP_NO_CACHE_DIR``,
``UV_NO_CACHE``): every wheel is downloaded, as on a fresh runner. Without it the machine's
caches are used, as on a developer's machine the second time. Needs the package index.
Run from the repository root::

    .venv/bin/python benchmarks/bench_install.py --before main --after HEAD [--cold]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PIP_STEP = (
    "python3 -m venv .wf-venv && .wf-venv/bin/python -m pip install --quiet --upgrade pip"
    " && .wf-venv/bin/python -m pip install --quiet . && .wf-venv/bin/retrain --version"
)
LOCK_STEP = "bash .ci/install && .venv/bin/retrain --version"


def timed(cmd: str, cwd: Path, env: dict[str, str], timeout: float) -> float:
    """Seconds ``cmd`` (a bash line) took in ``cwd``; raise if it fails."""
    t0 = time.perf_counter()
    out = subprocess.run(
        ["bash", "-c", cmd],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"bench_install: {cmd!r} failed in {cwd}:\n{out.stderr[-2000:]}")
    return seconds


def run_case(ref: str, what: str, cold: bool, timeout: float) -> tuple[str, float]:
    """Clone ``ref`` afresh and time ``what`` ("make install" or "workflow install")."""
    with tempfile.TemporaryDirectory(prefix="bench-install-") as tmp:
        clone = Path(tmp) / "repo"
        subprocess.run(
            ["git", "clone", "--quiet", "--no-checkout", str(ROOT), str(clone)], check=True
        )
        subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", ref], check=True)
        locked = (clone / "uv.lock").is_file()
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "MAKEFLAGS")}
        if cold:
            env["PIP_NO_CACHE_DIR"] = "1"
            env["UV_NO_CACHE"] = "1"
        step = LOCK_STEP if locked else PIP_STEP
        cmd = "make install" if what == "make install" else step
        return ("uv.lock" if locked else "pip"), timed(cmd, clone, env, timeout)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="main", help="git ref installed with pip (default main)")
    ap.add_argument("--after", default="HEAD", help="git ref with uv.lock (default HEAD)")
    ap.add_argument("--cold", action="store_true", help="no pip/uv cache: download everything")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per command")
    args = ap.parse_args(argv)

    rows = []
    # Back to back, before then after for each command, so both see the same machine load.
    for what in ("make install", "workflow install"):
        for ref in (args.before, args.after):
            how, seconds = run_case(ref, what, args.cold, args.timeout)
            rows.append((what, ref, how, seconds))
            print(f"  {what:<17} {ref:<10} {how:<8} {seconds:7.1f} s", file=sys.stderr)

    cache = "cold (no pip/uv cache)" if args.cold else "warm (machine's pip/uv caches)"
    print(f"\nInstall times, fresh clone, {cache}\n")
    print(f"| {'command':<17} | {'ref':<10} | {'installs with':<13} | {'seconds':>7} |")
    print(f"| {'-' * 17} | {'-' * 10} | {'-' * 13} | {'-' * 7}:|")
    for what, ref, how, seconds in rows:
        print(f"| {what:<17} | {ref:<10} | {how:<13} | {seconds:7.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
