"""A real browser for the tests: Debian's ``chromium``, driven by Playwright.

Playwright's own browser download cannot work here (and is not wanted): it launches the
system Chromium by path with the flags a sandboxed, offline CI machine needs, and a fresh
profile of its own.  ``.ci/run`` installs the ``chromium`` package when it is missing; a
developer without it gets one line saying so, not a skipped test.

Every call has a bound: Playwright waits at most ``TIMEOUT_MS`` for any step, and the browser
dies with the driver when the test process ends (Playwright's driver closes it when its pipe
from the test closes).
"""

from __future__ import annotations

import glob
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TIMEOUT_MS = 30_000
FLAGS = [
    "--headless",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    """The system Chromium's path (Debian: /usr/bin/chromium)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    for path in glob.glob("/usr/lib/chromium/chromium"):
        return path
    raise AssertionError(
        "no chromium on PATH: the browser tests need Debian's chromium "
        "(apt-get install chromium; .ci/run installs it)"
    )


@dataclass
class Visit:
    """What one page did while it loaded: console errors, uncaught exceptions, and every
    request for something that is not a local file."""

    errors: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)


@contextmanager
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        with sync_playwright() as p:
            # A persistent context is the only way to hand Chromium a profile folder of our
            # choosing; it is new and empty, so nothing of a previous run leaks in.
            ctx = p.chromium.launch_persistent_context(
                profile,
                executable_path=chromium(),
                args=FLAGS,
                headless=True,
                timeout=TIMEOUT_MS,
                viewport={"width": 1280, "height": 900},
            )
            ctx.set_default_timeout(TIMEOUT_MS)
            try:
                yield ctx
            finally:
                ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def open_page(ctx: Any, url: str, width: int, height: int = 900) -> tuple[Any, Visit]:
    """A new tab of ``width`` x ``height`` CSS pixels on ``url``, loaded, with its record."""
    page = ctx.new_page()
    visit = Visit()
    page.on(
        "console",
        lambda m: visit.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None,
    )
    page.on("pageerror", lambda exc: visit.errors.append(f"uncaught: {exc}"))
    page.on(
        "request",
        lambda r: None if r.url.startswith(("file://", "data:")) else visit.outside.append(r.url),
    )
    page.on("requestfailed", lambda r: visit.errors.append(f"failed: {r.url} {r.failure}"))
    page.set_viewport_size({"width": width, "height": height})
    page.goto(url, wait_until="load")
    return page, visit


def file_url(path: Path) -> str:
    return Path(path).resolve().as_uri()
