"""``retrain site --output DIR``: write the static site, whole or not at all.

The pages are built in a fresh folder beside ``DIR`` and swapped in with renames, so a
failure leaves the previous site (or nothing) in place, never half of one.  ``DIR`` must be
new, empty, or a site this command wrote before (it leaves a ``.retrain-site`` marker, which
GitHub's Pages upload leaves out): anything else is refused rather than deleted.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from retrain.core.config import Config
from retrain.core.errors import BadInput
from retrain.core.progress import progress
from retrain.site import render
from retrain.site.drift import DriftSection, drift_per_batch
from retrain.site.live import LiveSection, live_metrics
from retrain.site.story import Story, collect

MARKER = ".retrain-site"


@dataclass
class SiteResult:
    output: Path
    pages: list[Path]
    story: Story
    drift_batches: int
    live_rows: int

    def summary(self) -> str:
        s = self.story
        rolled = sum(1 for e in s.events if e.is_rollback)
        lines = [
            f"site: wrote {self.output / 'index.html'} ({len(self.pages)} page(s))",
            f"  {s.model}: production {('v' + s.production) if s.production else '(none)'}; "
            f"{len(s.versions)} version(s), {len(s.events)} event(s), {rolled} rollback(s)",
            f"  drift: {self.drift_batches} batch(es) compared; live: "
            f"{self.live_rows} version/role row(s) from the prediction log",
            f"  open it: file://{(self.output / 'index.html').resolve()}",
        ]
        return "\n".join(lines)


def _check_output(output: Path) -> None:
    if output.exists() and not output.is_dir():
        raise BadInput(f"--output {output}: exists and is not a folder")
    if output.is_dir() and any(output.iterdir()) and not (output / MARKER).is_file():
        raise BadInput(
            f"--output {output}: not empty and not a site written by `retrain site` "
            f"(no {MARKER}); choose a new or empty folder"
        )


def _swap(staging: Path, output: Path) -> None:
    """Put ``staging`` where ``output`` is, with renames (the old site goes last)."""
    old = None
    if output.exists():
        old = output.with_name(f".{output.name}.old-{os.getpid()}")
        os.replace(output, old)
    try:
        os.replace(staging, output)
    except OSError:
        if old is not None:
            os.replace(old, output)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build(
    cfg: Config, output: Path, *, ref: str = "HEAD", live_since: str | None = None
) -> SiteResult:
    """Read the story from git (and the data and the prediction log, where there), draw the
    figures and write the pages into ``output``."""
    output = Path(output).absolute()
    _check_output(output)
    if live_since is not None:
        from retrain.serve.predlog import utc_text

        try:
            utc_text(live_since)
        except BadInput as exc:
            raise BadInput(f"--live-since: {exc}") from None
    progress("site: reading the history from git")
    story = collect(cfg.root, ref)
    progress("site: drift per received batch")
    drift = drift_per_batch(cfg, story)
    progress("site: live metrics from the prediction log")
    live = live_metrics(cfg, live_since)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.new-", dir=output.parent))
    try:
        pages = write_pages(staging, cfg, story, drift, live)
        (staging / MARKER).write_text("written by `retrain site`; safe to replace\n")
        staging.chmod(0o755)
        _swap(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return SiteResult(
        output=output,
        pages=[output / p.relative_to(staging) for p in pages],
        story=story,
        drift_batches=sum(1 for b in drift.batches if b.share is not None),
        live_rows=len(live.rows),
    )


def write_pages(
    out: Path, cfg: Config, story: Story, drift: DriftSection, live: LiveSection
) -> list[Path]:
    """Draw the figures and render ``index.html`` and one page per version into ``out``."""
    metric = cfg.gates.primary_metric
    rows = render.metric_rows(story, metric)
    secondary, declared = render.secondary_metrics(cfg, story)
    progress("site: drawing the figures")
    figs = render.draw(out, cfg, story, rows, secondary, drift, live)
    common = {
        "story": story,
        "cfg": cfg,
        "metric": metric,
        "direction": "higher" if render.higher_is_better(metric) else "lower",
    }
    pages = []
    index = out / "index.html"
    index.write_text(
        render.render(
            "index.html.j2",
            **common,
            rows=rows,
            secondary=secondary,
            guardrails_declared=declared,
            drift=drift,
            live=live,
            figs=figs,
            page="index",
        ),
        encoding="utf-8",
    )
    pages.append(index)
    by_version = {r.version.version: r for r in rows}
    for v in story.versions:
        path = out / f"{v.slug}.html"
        path.write_text(
            render.render("version.html.j2", **common, v=v, row=by_version[v.version], page=v.slug),
            encoding="utf-8",
        )
        pages.append(path)
    return pages
