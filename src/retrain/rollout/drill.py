"""The catastrophe drill: promote a deliberately bad model and prove it rolls back by itself.

On a fork whose production model is good (a sandbox: bare origin, local DVC remote), for each
bad version:

1. **build** it and register it like a release would: the artifact saved with skops, put in
   the DVC cache and remote by md5, a registry entry appended and made production on a
   branch, merged with ``--no-ff`` and pushed (*the bad merge*; the clock starts), and
   ``retrain promote`` run;
2. **serve**: ``retrain serve --follow origin/main`` (started once, on loopback) picks it up;
3. **traffic**: labelled requests (holdout rows, one per request; the true label posted to
   ``/feedback``) until the watch window's health check has what it needs;
4. **monitor**: ``retrain monitor --push`` judges the new version from the prediction log and
   pushes the revert ``retrain rollback`` makes; ``retrain promote`` records the rollback;
5. **check**: the clock stops when ``/version`` shows the old version again; the answers to
   the reference requests must equal, byte for byte, the old version's answers recorded
   before the bad merge.

The bad versions are built from the fork's own production model and data, so the drill
proves the rollback of any fork, not only of the bundled example: ``failing`` -- production's
model behind a tripwire that refuses about a quarter of the rows (by a hash of their values;
HTTP 500); ``constant`` -- a model that answers one value whatever the input (the rarest
class, or for a regression a value far above any target seen): HTTP 200 every time, only the
live labels can tell.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from retrain.core import registry as reg
from retrain.core import versioning, watchdog
from retrain.core.config import Config, load_config
from retrain.core.errors import RetrainError
from retrain.core.progress import progress
from retrain.pipeline import artifacts, dataset

READY_TIMEOUT_S = 180.0
SWAP_TIMEOUT_S = 120.0
HTTP_TIMEOUT_S = 30.0


class DrillFailed(RetrainError):
    """The drill did not end with the old version serving the old answers."""


# --------------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as res:
            return int(res.status), res.read()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read()


class Server:
    """``retrain serve`` as a child process on a free loopback port."""

    def __init__(self, root: Path, env: dict[str, str], *, interval: float = 0.5) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root.parent / f"serve-{self.port}.log"
        # The labeller's bearer token: /feedback needs one, and only labels a token wrote
        # count for monitor.  A file of its own, readable by this user only.
        self.token = secrets.token_urlsafe(32)
        tokens = root.parent / f"tokens-{self.port}.yaml"
        tokens.touch(mode=0o600)
        tokens.write_text(f"tokens:\n  - name: drill\n    token: {self.token}\n")
        env = {**env, "RETRAIN_TOKENS_FILE": str(tokens)}
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "retrain",
                "serve",
                "--port",
                str(self.port),
                "--follow",
                "origin/main",
                "--interval",
                str(interval),
            ],
            cwd=root,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        # Ends the server should the drill die without its ``finally`` (SIGKILL, a timeout).
        self._watchdog = watchdog.guard(group=self.proc.pid)

    def wait_version(self, version: str, timeout: float = READY_TIMEOUT_S) -> float:
        """Poll ``/version`` until it names ``version``; the monotonic time it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DrillFailed(
                    f"retrain serve exited {self.proc.returncode}; see {self.log_path}"
                )
            try:
                status, body = http("GET", f"{self.url}/version")
                if status == 200 and json.loads(body)["version"] == version:
                    return time.monotonic()
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise DrillFailed(f"the server did not serve v{version} within {timeout:.0f} s")

    def wait_rollout(self, rollout: dict[str, Any] | None, timeout: float = SWAP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status, body = http("GET", f"{self.url}/version")
                if status == 200 and json.loads(body).get("rollout") == rollout:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise DrillFailed(f"the server did not follow rollout {rollout} within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._watchdog.release()
        self._log.close()


def invoke(
    server: Server, rows: pd.DataFrame, request_id: str, key: str | None = None
) -> tuple[int, dict[str, Any], bytes]:
    body = {"dataframe_split": {"columns": list(rows.columns), "data": rows.to_numpy().tolist()}}
    headers = {"X-Request-ID": request_id}
    if key is not None:
        headers["X-Routing-Key"] = key
    status, raw = http("POST", f"{server.url}/invocations", body, headers)
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = {}
    return status, doc, raw


def answers(doc: dict[str, Any]) -> bytes:
    """The part of a response that a version decides (request ids differ by request)."""
    return json.dumps(doc.get("predictions"), separators=(",", ":")).encode()


# --------------------------------------------------------------------------- bad models
FAILING_TYPE = "retrain.rollout.drill.FailsOnShare"


class FailsOnShare:
    """The fork's production model, made to fail on purpose on a share of the rows: a
    request holding such a row gets an error (HTTP 500), the others its usual answers.  Which
    rows is a hash of their values, so the same rows fail in every process."""

    def __init__(self, model: Any, share: float = 0.25) -> None:
        self.model = model
        self.share = share

    @property
    def classes_(self) -> Any:
        return self.model.classes_

    def _refuse(self, X: pd.DataFrame) -> None:
        keys = pd.util.hash_pandas_object(X.reset_index(drop=True), index=False).to_numpy()
        bad = (keys % 1000) < int(self.share * 1000)
        if bad.any():
            raise ValueError(f"drill: {int(bad.sum())} of {len(X)} row(s) refused on purpose")

    def predict(self, X: pd.DataFrame) -> Any:
        self._refuse(X)
        return self.model.predict(X)

    def predict_proba(self, X: pd.DataFrame) -> Any:
        self._refuse(X)
        return self.model.predict_proba(X)


def failing_model(cfg: Config, production: Any, frame: pd.DataFrame) -> tuple[Any, str]:
    """Production's own model, failing on about a quarter of the rows."""
    return FailsOnShare(
        production, 0.25
    ), "fails on about a quarter of the rows (production's model behind a tripwire)"


def constant_model(cfg: Config, production: Any, frame: pd.DataFrame) -> tuple[Any, str]:
    """A model that answers one value for every row, silently wrong: the rarest training
    class, or for a regression a value a whole range above the largest target seen."""
    from sklearn.dummy import DummyClassifier, DummyRegressor

    X = frame[cfg.dataset.feature_names]
    y = frame[cfg.dataset.target]
    if cfg.dataset.task == "classification":
        y = y.astype(str)
        rare = str(y.value_counts().index[-1])
        return DummyClassifier(strategy="constant", constant=rare).fit(X, y), (
            f"answers {rare!r} for every row"
        )
    value = round(float(y.max() + (y.max() - y.min())), 3)
    return DummyRegressor(strategy="constant", constant=value).fit(X, y), (
        f"answers {value:g} for every row"
    )


BAD_MODELS: dict[str, Callable[[Config, Any, pd.DataFrame], tuple[Any, str]]] = {
    "failing": failing_model,
    "constant": constant_model,
}


def trust_the_tripwire(root: Path, git: Callable[..., str]) -> None:
    """In the sandbox only: add the drill's own failing wrapper to ``trusted_types``, so the
    server may load the failing version (the fork's own configs stay as they are)."""
    import yaml

    path = root / "configs" / "model.yaml"
    doc = yaml.safe_load(path.read_text()) or {}
    trusted = list(doc.get("trusted_types") or [])
    if FAILING_TYPE in trusted:
        return
    doc["trusted_types"] = [*trusted, FAILING_TYPE]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    git("commit", "-q", "-am", "Drill: trust the drill's failing wrapper (sandbox only)")
    git("push", "-q", "origin", "main")


def _next_free_version(root: Path, registry: reg.Registry, model: str) -> str:
    """The next patch above every version ever registered (registry or tag)."""
    known = [e["version"] for e in registry.versions]
    prefix = f"{model}@v"
    tags = subprocess.run(
        ["git", "tag", "--list", f"{prefix}*"], cwd=root, capture_output=True, text=True
    ).stdout.split()
    known += [t.removeprefix(prefix) for t in tags]
    latest = max(known, key=versioning.parse)
    return versioning.next_version(latest, "patch")


def register_bad(
    root: Path,
    env: dict[str, str],
    kind: str,
    *,
    git: Callable[..., str],
    canary_weight: int | None = None,
) -> tuple[str, str]:
    """Build the bad model, put its artifact in the DVC cache and remote, and commit the
    registry change that makes it production (or the canary at ``canary_weight``) on branch
    ``drill/<kind>``.  Returns ``(version, description)``."""
    cfg = load_config(root)
    registry = reg.load(root, expected_model=cfg.release.model_name)
    prod = registry.production_entry
    if prod is None:
        raise DrillFailed("the drill needs a production version to fall back to")
    production = artifacts.load_registered(
        root, prod.artifact, prod.version, trusted=cfg.model.trusted_types
    )
    frame = dataset.load_batches(cfg.dataset, root).frame
    model, description = BAD_MODELS[kind](cfg, production, frame)
    version = _next_free_version(root, registry, cfg.release.model_name)
    out = root / ".retrain" / "drill" / f"{kind}-{version}.skops"
    ref = artifacts.save_model(model, out, [*cfg.model.trusted_types, FAILING_TYPE])
    artifacts.store(root, out, ref["md5"])
    entry = {
        **prod.to_dict(),
        "version": version,
        "created": datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "reason": {"triggers": [], "manual": f"drill: a bad model that {description}"},
        "bump": "patch",
        "artifact": {
            "path": prod["artifact"]["path"],
            "format": ref.get("format", "skops"),
            "md5": ref["md5"],
            "sha256": ref["sha256"],
            "size_bytes": ref["size_bytes"],
            "remote": "dvc",
        },
        "mlflow": {"run_id": None, "model_version": None, "experiment": None},
        "gates": {"baseline": prod["version"], "passed": True, "results": {}},
    }
    new = registry.with_new_version(
        entry,
        promote=canary_weight is None,
        retention=cfg.release.retention,
        keep={prod["version"]},
    )
    what = "promote"
    if canary_weight is not None:
        new = reg.with_rollout(new, reg.Rollout(canary=reg.Canary(version, canary_weight)))
        what = f"canary at {canary_weight}%:"
    branch = f"drill/{kind}"
    git("checkout", "-q", "-B", branch)
    reg.save(root, new)
    git("commit", "-q", "-am", f"Drill: {what} v{version}, a model that {description}")
    git("checkout", "-q", "main")
    return version, description


# --------------------------------------------------------------------------- the drill
@dataclass
class Round:
    kind: str
    bad_version: str
    description: str
    good_version: str
    bad_served_after_s: float = 0.0
    requests: int = 0
    errors: int = 0
    labels: int = 0
    monitor_verdict: str = ""
    monitor_summary: str = ""
    rollback_commit: str = ""
    seconds_to_rollback: float = 0.0  # bad merge pushed -> old version serving again
    identical_answers: bool = False
    reference_requests: int = 0


@dataclass
class DrillReport:
    rounds: list[Round] = field(default_factory=list)
    passed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "rounds": [asdict(r) for r in self.rounds]}

    def markdown(self) -> str:
        lines = [
            "### Catastrophe drill: " + ("passed ✅" if self.passed else "FAILED ❌"),
            "",
            "| bad version | what is wrong | bad version serving after | requests (errors) "
            "| labels | monitor | bad merge → old version serving | answers after rollback |",
            "| --- | --- | ---: | ---: | ---: | --- | ---: | --- |",
        ]
        for r in self.rounds:
            same = (
                f"identical to v{r.good_version} ({r.reference_requests} requests, byte for byte)"
                if r.identical_answers
                else "DIFFERENT"
            )
            lines.append(
                f"| v{r.bad_version} ({r.kind}) | {r.description} | {r.bad_served_after_s:.1f} s "
                f"| {r.requests} ({r.errors}) "
                f"| {r.labels} | {r.monitor_verdict} | {r.seconds_to_rollback:.1f} s | {same} |"
            )
        lines += ["", *[f"- v{r.bad_version}: {r.monitor_summary}" for r in self.rounds]]
        return "\n".join(lines) + "\n"


def _retrain(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [sys.executable, "-m", "retrain", *args], cwd=root, env=env, capture_output=True, text=True
    )
    if res.returncode != 0:
        raise DrillFailed(
            f"retrain {' '.join(args)} exited {res.returncode}: "
            f"{(res.stderr or res.stdout).strip().splitlines()[-1:]}"
        )
    return res


def _wait_logged(root: Path, expected: int, timeout: float = 60.0) -> None:
    """The log writer batches off the request path: wait until it wrote ``expected`` rows."""
    from retrain.core.config import load_serve_config
    from retrain.serve import predlog

    log = predlog.open_log(load_serve_config(root).log_url, root)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if log.count() >= expected:
                return
            time.sleep(0.1)
        raise DrillFailed(f"the prediction log did not reach {expected} rows in {timeout:.0f} s")
    finally:
        log.close()


def run_drill(
    root: Path,
    env: dict[str, str],
    *,
    kinds: tuple[str, ...] = ("failing", "constant"),
    traffic: int = 120,
    reference: int = 40,
    interval: float = 0.5,
) -> DrillReport:
    """Run the drill on the fork at ``root`` (production set, ``origin`` a bare repository
    the drill may push to, a DVC remote); ``env`` is the environment for its commands."""

    def git(*args: str) -> str:
        res = subprocess.run(["git", *args], cwd=root, env=env, capture_output=True, text=True)
        if res.returncode != 0:
            raise DrillFailed(f"git {' '.join(args[:2])}: {res.stderr.strip()}")
        return res.stdout.strip()

    cfg = load_config(root)
    good = reg.load(root, expected_model=cfg.release.model_name).production
    if good is None:
        raise DrillFailed("registry.yaml: production is empty; bootstrap the fork first")
    holdout = dataset.load_holdout(cfg.dataset, root)
    features = cfg.dataset.feature_names
    reference = min(reference, len(holdout) // 2)
    ref_rows = holdout.head(reference)
    # Labelled traffic from the rest of the holdout, cycled when the holdout is small.
    rest = len(holdout) - reference
    traffic_rows = holdout.iloc[[reference + i % rest for i in range(traffic)]]
    report = DrillReport()
    trust_the_tripwire(root, git)
    server = Server(root, env, interval=interval)
    logged = 0
    try:
        server.wait_version(good)
        before = []
        for i in range(len(ref_rows)):
            status, doc, _ = invoke(server, ref_rows.iloc[[i]][features], f"ref-before-{i}")
            if status != 200:
                raise DrillFailed(f"the good version answered {status} before the drill")
            before.append(answers(doc))
        logged += len(ref_rows)
        for kind in kinds:
            version, description = register_bad(root, env, kind, git=git)
            rnd = Round(kind=kind, bad_version=version, description=description, good_version=good)
            progress(f"drill: merging v{version}, a model that {description}")
            git(
                "merge",
                "-q",
                "--no-ff",
                "-m",
                f"Merge pull request #0 from drill/{kind}",
                f"drill/{kind}",
            )
            git("push", "-q", "origin", "main")
            t0 = time.monotonic()
            _retrain(root, env, "promote")
            rnd.bad_served_after_s = server.wait_version(version) - t0
            for i in range(len(traffic_rows)):
                row = traffic_rows.iloc[[i]]
                rid = f"{kind}-{i}"
                status, doc, _ = invoke(server, row[features], rid)
                rnd.requests += 1
                if status != 200:
                    rnd.errors += 1
                    continue
                # The label is for the server's id of the request (never the client's).
                label = row[cfg.dataset.target].iloc[0]
                label = str(label) if cfg.dataset.task == "classification" else float(label)
                fb = {"request_id": doc["request_id"], "label": label}
                auth = {"Authorization": f"Bearer {server.token}"}
                if http("POST", f"{server.url}/feedback", fb, auth)[0] == 200:
                    rnd.labels += 1
            logged += rnd.requests
            _wait_logged(root, logged)
            progress(f"drill: {rnd.requests} requests ({rnd.errors} failed), running monitor")
            out = json.loads(_retrain(root, env, "monitor", "--push", "--json").stdout)
            rnd.monitor_verdict = out["verdict"]
            rnd.monitor_summary = out["summary"]
            if out["verdict"] != "rollback":
                raise DrillFailed(f"monitor did not roll back v{version}: {out['summary']}")
            rnd.rollback_commit = out["action"]["commit"]
            _retrain(root, env, "promote")
            rnd.seconds_to_rollback = server.wait_version(good) - t0
            after = []
            for i in range(len(ref_rows)):
                status, doc, _ = invoke(server, ref_rows.iloc[[i]][features], f"ref-{kind}-{i}")
                after.append(answers(doc) if status == 200 else b"")
            logged += len(ref_rows)
            rnd.reference_requests = len(ref_rows)
            rnd.identical_answers = after == before
            report.rounds.append(rnd)
            progress(
                f"drill: v{version} rolled back to v{good} {rnd.seconds_to_rollback:.1f} s after "
                f"the bad merge; answers identical: {rnd.identical_answers}"
            )
        report.passed = all(r.identical_answers for r in report.rounds) and len(
            report.rounds
        ) == len(kinds)
    finally:
        server.stop()
    return report
