"""``retrain site``: the model's history as a static page, read from git alone, in a browser.

The story is the bundled example's: v1.0.0 bootstraps and is promoted, a new batch arrives,
v1.1.0 is proposed, merged and promoted, then rolled back with ``git revert`` and the revert
promoted (real git, DVC and MLflow; no GitHub involved).  A prediction log (the server's
SQLite log, written through its own API) holds rows both versions served, some labelled.
Then ``retrain site`` writes the site, and headless Chromium (Debian's package, driven by
Playwright) opens it at desktop and phone widths.

``RETRAIN_SITE_SCREENSHOT=docs/site.png`` makes the desktop test also save the screenshot
the README shows (``make docs-site``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml

from retrain import example
from retrain.core.config import load_config
from retrain.site import plots
from retrain.site.render import higher_is_better, metric_interval
from retrain.site.story import Commit, Event, Links, Story, Version, _status
from tests import browser
from tests.conftest import PROJECT, Cli, bootstrap, merge_promote_then_revert
from tests.rollout_frames import served

COLOURS = 64  # the docs screenshot's palette (max coverage keeps the few red pixels)
SITE_CSS = PROJECT / "src" / "retrain" / "site" / "templates" / "site.css"


# --------------------------------------------------------------------------- HTML reading
INLINE = {"a", "abbr", "b", "code", "em", "span", "strong", "time", "small", "sub", "sup"}


class Page(HTMLParser):
    """The parts of a page the tests read: its text, its elements (tag, attributes), the
    headings in order, and the text of each element with an id."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.headings: list[tuple[int, str]] = []
        self._heading: int | None = None
        self._buf: list[str] = []
        self.chunks: list[str] = []
        self._skip = 0
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag not in INLINE:
            self.chunks.append(" ")
        if tag in ("style", "script"):
            self._skip += 1
        if re.fullmatch(r"h[1-6]", tag):
            self._heading, self._buf = int(tag[1]), []

    def handle_endtag(self, tag: str) -> None:
        if tag not in INLINE:
            self.chunks.append(" ")
        if tag in ("style", "script"):
            self._skip -= 1
        if re.fullmatch(r"h[1-6]", tag) and self._heading is not None:
            self.headings.append((self._heading, " ".join("".join(self._buf).split())))
            self._heading = None

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self.chunks.append(data)
        if self._heading is not None:
            self._buf.append(data)

    @property
    def text(self) -> str:
        return " ".join("".join(self.chunks).split())

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.elements if t == tag]


def read_page(path: Path) -> Page:
    return Page(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- the story
def _write_prediction_log(sb: example.Sandbox) -> dict[str, float]:
    """Rows v1.0.0 and v1.1.0 served into the server's SQLite log, most of them labelled."""
    import pandas as pd

    from retrain.serve import predlog

    frames = [
        served("1.0.0", "production", 240, accuracy=0.55, seed=1,
               start=pd.Timestamp("2026-11-20T08:00:00Z")),
        served("1.1.0", "production", 160, accuracy=0.8, seed=2,
               start=pd.Timestamp("2026-11-21T08:00:00Z")),
    ]  # fmt: skip
    log = predlog.open_log("sqlite:///.retrain/predictions.db", sb.root)
    try:
        for f in frames:
            records = f.drop(columns=["label"]).to_dict("records")
            log.write(records)
            labelled = f[f["label"].notna()]
            log.add_feedback(
                (
                    {"request_id": r, "row": 0, "label": y}
                    for r, y in zip(labelled["request_id"], labelled["label"], strict=True)
                ),
                by="labeller",  # a token's name: only authenticated labels are evidence
            )
    finally:
        log.close()
    return {
        f["version"].iloc[0]: float((f["prediction"] == f["label"])[f["label"].notna()].mean())
        for f in frames
    }


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory):
    """The promote → retrain → rollback story, its prediction log and its site; built once."""
    base = tmp_path_factory.mktemp("site")
    sb = example.make_sandbox(base / "sb", PROJECT)
    cli = Cli(sb)
    bootstrap(sb, cli)
    holdout = sb.root / "data" / "holdout.csv"
    before = cli("predict", "--version", "1.0.0", "--input", str(holdout)).stdout
    example.ingest_next_batch(sb.root, sb.env)
    second = cli.json("run")
    assert second["outcome"] == "proposed" and second["version"] == "1.1.0", second
    merge_promote_then_revert(sb, cli, second, holdout, before)
    live = _write_prediction_log(sb)
    out = base / "site"
    res = cli("site", "--output", str(out))
    return sb, cli, out, res, live


def _first_parent(sb: example.Sandbox) -> list[tuple[str, str]]:
    log = sb.git("log", "--first-parent", "--format=%H %s", "--", "registry.yaml")
    return [tuple(line.split(" ", 1)) for line in reversed(log.splitlines())]  # type: ignore[misc]


def test_the_site_tells_which_version_is_live_and_how_it_got_there(story):
    sb, _, out, res, _ = story
    assert "production v1.0.0; 2 version(s), 3 event(s), 1 rollback(s)" in res.stdout
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "index.html",
        "plots",
        "v1.0.0.html",
        "v1.1.0.html",
    ]
    page = read_page(out / "index.html")
    text = page.text
    assert "In production: v1.0.0" in text
    # The timeline, newest first: who (the commit's author), which commit, why.
    (_, boot), (promote_sha, _), (revert_sha, revert_subject) = _first_parent(sb)[-3:]
    assert boot.startswith("Merge pull request #1 from retrain/v1.0.0")
    timeline = text.split("Newest first:", 1)[1].split("Every version ever registered")[0]
    rollback = timeline.index("Rollback: v1.1.0 → v1.0.0")
    promotion = timeline.index("Promotion: v1.0.0 → v1.1.0")
    first = timeline.index("Promotion: none → v1.0.0")
    assert rollback < promotion < first
    assert f"by retrain-bot in commit {revert_sha[:8]}" in timeline
    assert f"Why: {revert_subject}" in timeline
    assert f"by retrain-bot in commit {promote_sha[:8]} (pull request #1)" in timeline
    assert "Why: triggers: new_data, data_drift" in timeline
    assert "Why: triggers: bootstrap" in timeline
    # The rolled-back version is there although the revert removed it from registry.yaml.
    assert "1.1.0" not in {
        v["version"] for v in yaml.safe_load(sb.git("show", "HEAD:registry.yaml"))["versions"]
    }
    versions = text.split("Every version ever registered", 1)[1].split("Quality over")[0]
    assert re.search(r"v1\.1\.0 rolled back rolled back to v1\.0\.0 on \d{4}-\d\d-\d\d", versions)
    assert re.search(r"v1\.0\.0 production in production since \d{4}-\d\d-\d\d", versions)
    assert "Last rollback v1.1.0 rolled back to v1.0.0" in text


def test_each_version_shows_its_gates_interval_churn_examples_and_card(story):
    sb, _, out, _, _ = story
    registered = sb.git("rev-list", "-n1", "seattle-weather@v1.1.0")
    gate = json.loads(sb.git("show", f"{registered}:reports/v1.1.0/gate.json"))
    card = json.loads(sb.git("show", f"{registered}:reports/v1.1.0/model_card.json"))
    page = read_page(out / "v1.1.0.html")
    text = page.text
    # every gate gate.json holds, whatever they are, with its verdict
    for name, g in gate["gates"].items():
        assert f"{name.replace('_', ' ')} {g['verdict']}" in text, name
    # the primary metric's interval: the baseline's value plus the recorded gain's bounds
    m = gate["metrics"]
    lo = m["baseline"]["accuracy"] + m["bootstrap"]["lower"]
    hi = m["baseline"]["accuracy"] + m["bootstrap"]["upper"]
    assert f"accuracy {m['candidate']['accuracy']:.4f} (interval {lo:.4f} to {hi:.4f}, 90%)" in text
    # churn, with its production → candidate transitions
    churn = m["churn"]
    assert f"changed {churn['changed']}" in text
    for a, row in churn["transitions"].items():
        for b, n in row.items():
            if a != b:
                assert re.search(
                    rf"<td class=\"n flip\">{n}</td>", (out / "v1.1.0.html").read_text()
                )
    # key examples and the model card's limitations
    for row in m["key_examples"]["rows"]:
        assert row["note"] in text
    for limitation in card["known_limitations"]:
        assert limitation in text
    assert "Rollback: v1.1.0 → v1.0.0" in text
    # the first version: nothing to be compared with, said rather than left blank
    first = read_page(out / "v1.0.0.html").text
    assert (
        "Churn and negative flips None: the first version has nothing to be compared with" in first
    )
    assert "judged against none (first version)" in first


def test_drift_per_batch_and_live_metrics_per_version(story):
    sb, _, out, _, live = story
    text = read_page(out / "index.html").text
    batches = sorted(p.name for p in (sb.root / "data" / "batches").glob("*.csv"))
    for name in batches:
        assert f"data/batches/{name}" in text
    # the batch that arrived after v1.0.0 was compared with v1.0.0's training data, as the
    # data_drift trigger compared it; the ones v1.0.0 trained on were not compared
    newest = batches[-1]
    row = text.split(f"data/batches/{newest}")[1].split("Live metrics")[0]
    assert re.match(r"\s*\d+ training data of v1\.0\.0 \d+% ", row), row
    assert "part of the first training data (v1.0.0)" in text
    assert (out / "plots" / "drift.svg").is_file()
    # live metrics: each version's accuracy on its labelled served rows, as the log says
    live_part = text.split("Live metrics")[1]
    for version, accuracy in live.items():
        assert re.search(
            rf"v{re.escape(version)} production [\d,]+ [\d,]+ 0\.0000 [\d.]+ \d+ {accuracy:.4f} ",
            live_part,
        ), (version, live_part)
    assert "sqlite:///.retrain/predictions.db" in live_part
    assert str(sb.root) not in (out / "index.html").read_text()  # no machine path leaks


def test_the_pages_need_nothing_from_outside_and_are_built_for_assistive_technology(story):
    _, _, out, _, _ = story
    for path in sorted(out.glob("*.html")):
        page = read_page(path)
        html = path.read_text()
        assert ("html", {"lang": "en"}) in page.elements, path.name
        for tag in ("header", "nav", "main", "footer"):
            assert page.all(tag), f"{path.name}: no <{tag}> landmark"
        # resources: only files of the site itself (links out, to a forge, are fine)
        for tag, attr in (("img", "src"), ("link", "href"), ("script", "src")):
            for a in page.all(tag):
                assert not re.match(r"^([a-z]+:)?//", a.get(attr) or ""), (path.name, a)
        assert not page.all("script") and not page.all("link")
        for img in page.all("img"):
            assert (out / str(img["src"])).is_file(), img
            assert len(img.get("alt") or "") > 40, img  # says what the figure shows
            assert img.get("width") and img.get("height")
        # one h1, and no heading level skipped on the way down
        levels = [lvl for lvl, _ in page.headings]
        assert levels.count(1) == 1, path.name
        assert all(b <= a + 1 for a, b in zip(levels, levels[1:], strict=False)), page.headings
        # the first thing a keyboard reaches is the skip link to <main id="main">
        first_link = page.all("a")[0]
        assert first_link["href"] == "#main" and 'id="main"' in html
        for table in re.findall(r"<table>.*?</table>", html, flags=re.S):
            assert "<caption>" in table and 'scope="col"' in table


def test_the_site_in_chromium_at_desktop_and_phone_width(story):
    _, _, out, _, _ = story
    shots = out.parent / "shots"
    shots.mkdir(exist_ok=True)
    with browser.browser() as ctx:
        for width in (1280, 390):
            for name in ("index.html", "v1.1.0.html", "v1.0.0.html"):
                page, visit = browser.open_page(ctx, browser.file_url(out / name), width)
                assert visit.errors == [], (name, width, visit.errors)
                assert visit.outside == [], (name, width, visit.outside)
                # every figure loaded; nothing wider than the screen
                broken = page.evaluate(
                    "[...document.images].filter(i => !i.complete || i.naturalWidth === 0)"
                    ".map(i => i.src)"
                )
                assert broken == [], broken
                assert page.evaluate("document.documentElement.scrollWidth") <= width
                # every badge and verdict is drawn inside its own cell or paragraph
                stray = page.evaluate(
                    "[...document.querySelectorAll('.badge, .verdict')].filter(e => {"
                    " const a = e.getBoundingClientRect();"
                    " const b = e.parentElement.getBoundingClientRect();"
                    " return a.height === 0 || a.top < b.top - 1 || a.bottom > b.bottom + 1;"
                    "}).map(e => e.textContent)"
                )
                assert stray == [], (name, width, stray)
                if name == "index.html":
                    assert page.get_by_role("heading", level=1).inner_text() == (
                        "seattle-weather: model history"
                    )
                    assert page.get_by_text("In production: v1.0.0").is_visible()
                    assert page.locator(".card", has_text="Last rollback").is_visible()
                    assert page.get_by_text("Rollback: v1.1.0 → v1.0.0").is_visible()
                    shot = shots / f"index-{width}.png"
                    page.screenshot(path=str(shot))
                    _assert_not_blank(shot, width)
                    # the keyboard: Tab reaches the skip link first, Enter moves to main
                    page.keyboard.press("Tab")
                    assert page.evaluate("document.activeElement.textContent") == (
                        "Skip to the content"
                    )
                    page.keyboard.press("Enter")
                    assert page.evaluate("document.activeElement.id") == "main"
                page.close()
    target = os.environ.get("RETRAIN_SITE_SCREENSHOT")
    if target:  # `make docs-site`: the README's picture, in few colours to keep it small
        from PIL import Image

        with Image.open(shots / "index-1280.png") as img:
            img.convert("RGB").quantize(COLOURS, Image.Quantize.MAXCOVERAGE).save(
                target, optimize=True
            )


def _assert_not_blank(path: Path, width: int) -> None:
    from PIL import Image

    with Image.open(path) as img:
        assert img.size[0] == width
        pixels = np.asarray(img.convert("RGB")).reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    background = counts.max() / len(pixels)
    assert len(colours) > 50, f"{path.name}: {len(colours)} colours"
    assert background < 0.9, f"{path.name}: {background:.0%} of the picture is one colour"


def test_the_pages_workflow_builds_the_site_on_a_push_to_main_and_only_deploy_may_write(
    story, tmp_path
):
    """pages.yml's build job, run here against the story's origin (GitHub stood in by the
    local workflow runner: a bare repository, actions recorded), writes the same story; the
    Pages permissions belong to the deploy job alone."""
    from tests.workflow_runner import WorkflowRunner

    sb, _, _, _, _ = story
    run = WorkflowRunner(sb.origin, tmp_path / "actions", env=sb.env).run(
        PROJECT / ".github" / "workflows" / "pages.yml", "push"
    )
    assert run.conclusion == "success", run.describe()
    build, deploy = run.jobs["build"], run.jobs["deploy"]
    assert build.permissions == {"contents": "read"}
    assert deploy.permissions == {"pages": "write", "id-token": "write"}
    assert build.step("Upload the site").with_ == {"path": "_site"}
    assert build.workspace is not None
    text = read_page(build.workspace / "_site" / "index.html").text
    assert "In production: v1.0.0" in text and "Rollback: v1.1.0 → v1.0.0" in text
    assert "training data of v1.0.0" in text  # dvc pull brought the batches: drift is there
    assert "production v1.0.0; 2 version(s), 3 event(s), 1 rollback(s)" in run.summary
    assert [s.uses.split("@")[0] for s in deploy.steps] == [
        "actions/configure-pages",
        "actions/deploy-pages",
    ]


# --------------------------------------------------------------------------- writing the folder
def test_a_second_build_replaces_the_site_byte_for_byte_and_a_foreign_folder_is_refused(
    story, tmp_path
):
    sb, cli, out, _, _ = story
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    cli("site", "--output", str(out))
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # same history, same bytes (figures included)
    assert not [p for p in out.parent.iterdir() if p.name.startswith((".site.", ".site"))]

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    res = cli("site", "--output", str(mine), check=False)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"error: --output {mine}: not empty and not a site written by `retrain site` "
        "(no .retrain-site); choose a new or empty folder"
    ]
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> tuple[example.Sandbox, Cli]:
    """A fork with nothing trained, and branches whose registry is written by hand: ``old``
    (an entry from before the records), ``broken`` (not YAML), ``gone`` (no registry)."""
    sb = example.make_sandbox(tmp_path_factory.mktemp("bare") / "sb", PROJECT)
    for branch in ("old", "broken", "gone"):
        sb.git("checkout", "-qb", branch, "main")
        registry = sb.root / "registry.yaml"
        if branch == "old":
            doc = {"model": "seattle-weather", "production": "1.0.0", "versions": [OLD_ENTRY]}
            registry.write_text(yaml.safe_dump(doc))
        elif branch == "broken":
            registry.write_text("model: seattle-weather\nproduction: [\n")
        else:
            sb.git("rm", "-q", "registry.yaml")
        sb.git("commit", "-qam", f"{branch} registry, by hand")
    sb.git("checkout", "-q", "main")
    return sb, Cli(sb)


OLD_ENTRY = {
    "version": "1.0.0",
    "created": "2024-01-05T10:00:00Z",
    "bump": "initial",
    "schema": {"features": {"temp_max": "numeric"}},
    "artifact": {"path": "artifacts/train/model.skops", "md5": "0" * 32, "sha256": "1" * 64},
}


def test_an_old_entry_without_records_reads_not_recorded(bare, tmp_path):
    sb, cli = bare
    out = tmp_path / "site"
    res = cli("site", "--output", str(out), "--ref", "old")
    assert "production v1.0.0; 1 version(s), 1 event(s), 0 rollback(s)" in res.stdout
    text = read_page(out / "v1.0.0.html").text
    assert "Gates: not recorded (reports/v1.0.0/gate.json is not in" in text
    assert "Model card: not recorded (reports/v1.0.0/model_card.json is not in" in text
    assert "Key examples: not recorded" in text
    assert "MLflow not recorded" in text and "training data not recorded" in text
    index = read_page(out / "index.html").text
    assert "accuracy on the frozen holdout: not recorded" in index
    assert "v1.0.0's training files are not recorded" in index


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ref", "broken"], "error: registry.yaml@broken: not valid YAML at line 3"),
        (["--ref", "no-such-branch"], "error: --ref: 'no-such-branch' is not a commit"),
        (["--ref", "gone"], "error: registry.yaml: not in gone"),
        (["--live-since", "last week"], "error: --live-since: time 'last week': expected"),
    ],
)
def test_bad_history_is_one_line_exit_2_and_writes_nothing(bare, tmp_path, args, message):
    _, cli = bare
    out = tmp_path / "site"
    res = cli("site", "--output", str(out), *args, check=False)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines[-1].startswith(message), lines
    assert all(line.startswith("[retrain]") for line in lines[:-1])
    assert list(tmp_path.iterdir()) == []  # no site, no half-built folder beside it


def test_outside_a_git_repository_is_one_line_exit_2(tmp_path):
    shutil.copytree(PROJECT / "configs", tmp_path / "configs")
    shutil.copy(PROJECT / "registry.yaml", tmp_path / "registry.yaml")
    res = subprocess.run(
        [sys.executable, "-m", "retrain", "site", "--output", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("error: --ref: 'HEAD' is not a commit")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- units
def _commit(n: int) -> Commit:
    return Commit(f"{n}abc" * 10, "alice", f"2026-11-2{n} 10:00 UTC", f"change {n}", "")


def _version(v: str, status_events: list[Event]) -> Version:
    entry = example_entry(v)
    out = Version(v, entry, "0" * 40, "test")
    out.events = [e for e in status_events if v in (e.version, e.previous)]
    return out


def example_entry(version: str):
    from retrain.core.registry import RegistryEntry

    return RegistryEntry.model_validate({**OLD_ENTRY, "version": version, "bump": "minor"})


def test_canary_and_shadow_steps_are_told_on_the_timeline(tmp_path):
    from retrain.core.registry import Canary, Rollout
    from retrain.site.build import write_pages
    from retrain.site.drift import DriftSection
    from retrain.site.live import LiveSection

    events = [
        Event("promote", "1.0.0", None, _commit(1), "triggers: bootstrap", pr=3),
        Event("canary_started", "1.1.0", None, _commit(2), "Canary v1.1.0", weight=10),
        Event("canary_advanced", "1.1.0", None, _commit(3), "advance", weight=50, from_weight=10),
        Event("canary_rolled_back", "1.1.0", None, _commit(4), "errors 20% > 1%", weight=50),
        Event("shadow_started", "1.2.0", None, _commit(5), "Shadow v1.2.0"),
    ]
    rollout = Rollout(canary=None, shadow=["1.2.0"])
    versions = [_version(v, events) for v in ("1.0.0", "1.1.0", "1.2.0")]
    for v in versions:
        _status(v, "1.0.0", rollout)
    assert [v.status for v in versions] == ["production", "rolled_back", "shadow"]
    story = Story(
        "seattle-weather", "1.0.0", rollout, "HEAD", _commit(5), versions, events,
        Links("https://github.com/acme/weather"),
    )  # fmt: skip
    cfg = load_config(PROJECT)
    write_pages(
        tmp_path,
        cfg,
        story,
        DriftSection([], 0.3, "no data"),
        LiveSection("log", "accuracy", 0.95, note="none"),
    )
    text = read_page(tmp_path / "index.html").text
    assert "Canary started: v1.1.0 at 10% of traffic" in text
    assert "Canary advanced: v1.1.0 from 10% to 50% of traffic" in text
    assert "Canary rolled back: v1.1.0 at 50% of traffic" in text
    assert "Why: errors 20% > 1%" in text
    assert "Shadow started: v1.2.0" in text
    assert "Shadow: v1.2.0." in text
    html = (tmp_path / "index.html").read_text()
    assert f'href="https://github.com/acme/weather/commit/{_commit(4).sha}"' in html
    assert 'href="https://github.com/acme/weather/pull/3"' in html
    # with a canary declared now, the header says so
    rollout2 = Rollout(canary=Canary(version="1.1.0", weight=25), shadow=[])
    _status(versions[1], "1.0.0", rollout2)
    assert versions[1].status_text == "canary at 25% of traffic"


def test_gates_and_measurements_added_later_are_shown_as_recorded(tmp_path):
    """gate.json is read generically: a gate, a churn field or a measurement this version
    of the site has never heard of is on the version's page, with its values."""
    from retrain.site.build import write_pages
    from retrain.site.drift import DriftSection
    from retrain.site.live import LiveSection

    v = _version("1.1.0", [])
    v.gate = {
        "passed": False,
        "engine": "dask",
        "gates": {
            "trivial_baseline": {"verdict": "pass", "value": 0.61, "threshold": 0.44,
                                 "detail": "beats the majority class"},
            "out_of_time": {"verdict": "fail", "value": {"2015-H2": -0.03}, "threshold": -0.02},
        },
        "metrics": {
            "churn": {"kind": "share", "value": 0.28, "negative_flips": {"rows": 12, "share": 0.033}},
            "out_of_time": {"slices": [{"slice": "2015-H2", "accuracy": 0.58, "rows": 90}]},
        },
    }  # fmt: skip
    story = Story("seattle-weather", None, None, "HEAD", _commit(1), [v], [], Links())
    write_pages(
        tmp_path,
        load_config(PROJECT),
        story,
        DriftSection([], 0.3, "no data"),
        LiveSection("log", "accuracy", 0.95, note="none"),
    )
    text = read_page(tmp_path / "v1.1.0.html").text
    assert "trivial baseline pass 0.6100 0.4400 beats the majority class" in text
    assert "out of time fail 2015-H2 -0.0300 -0.0200" in text
    assert "A gate failed" in text
    assert "negative flips rows 12 share 0.0330" in text
    assert "slice accuracy rows 2015-H2 0.5800 90" in text  # a list of records is a table
    assert "engine dask" in text


@pytest.mark.parametrize("metric", ["accuracy", "rmse"])
def test_a_versions_interval_is_its_baselines_value_plus_the_gains_bounds(metric):
    v = _version("1.1.0", [])
    higher = higher_is_better(metric)
    base, lower, upper = 0.5, 0.02, 0.09
    sign = 1 if higher else -1
    v.entry.metrics.overall[metric] = base + sign * 0.05
    v.gate = {
        "metrics": {
            "baseline": {metric: base},
            "bootstrap": {"metric": metric, "delta": 0.05, "lower": lower, "upper": upper,
                          "confidence": 0.95},
        }
    }  # fmt: skip
    got = metric_interval(v, metric)
    assert got is not None
    assert (got.lower, got.upper) == pytest.approx(
        sorted((base + sign * lower, base + sign * upper))
    )
    assert got.lower <= v.entry.metrics.overall[metric] <= got.upper
    assert got.coverage == pytest.approx(0.9)
    v.gate["metrics"]["bootstrap"]["metric"] = "f1_macro"  # another metric's interval
    assert metric_interval(v, metric) is None


def _luminance(hex_colour: str) -> float:
    rgb = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def test_every_colour_pair_of_the_stylesheet_reaches_wcag_aa_contrast():
    css = SITE_CSS.read_text()
    colours = dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{6})", css))
    pairs = sorted({k[: -len("-fg")] for k in colours if k.endswith("-fg")})
    assert len(pairs) >= 10
    for name in pairs:
        fg, bg = _luminance(colours[f"{name}-fg"]), _luminance(colours[f"{name}-bg"])
        ratio = (max(fg, bg) + 0.05) / (min(fg, bg) + 0.05)
        assert ratio >= 4.5, f"--{name}: contrast {ratio:.2f} < 4.5"


def test_figures_are_the_same_bytes_for_the_same_numbers(tmp_path):
    points = [plots.Point("1.0.0", 0.46, status="retired"),
              plots.Point("1.1.0", 0.62, 0.58, 0.65, "production")]  # fmt: skip
    a = plots.metric_plot(tmp_path / "a.svg", "accuracy", points, "higher")
    b = plots.metric_plot(tmp_path / "b.svg", "accuracy", points, "higher")
    assert a.read_bytes() == b.read_bytes()
    assert b"<script" not in a.read_bytes() and b"http://www.w3.org/2000/svg" in a.read_bytes()
    width, height = plots.svg_size(a)
    assert 300 < width < 1200 and 200 < height < 800
