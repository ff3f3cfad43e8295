"""``retrain audit REQUEST_ID``: which model served this prediction, and why that one.

From the prediction log: every row of the request, with the version and role that answered
and the feedback if any.  From git: each version's registry entry (``registry.yaml``, or the
newest commit whose ``registry.yaml`` still had it, for a version a revert removed) and the
commit that put it in production (the last promotion or rollback to that version at or
before the time it served, from :func:`retrain.release.history.events`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from retrain.core import registry as reg
from retrain.core.errors import BadInput, RegistryError
from retrain.release import gitops, history
from retrain.serve.predlog import RECORD_KEYS, PredictionLog

# What a row of the audit shows: the log's record but the ids (the audit's keys) and the raw
# inputs, plus the latest label and who wrote it (every label is in "labels").
ROW_KEYS = (
    *(k for k in RECORD_KEYS if k not in ("request_id", "inputs", "client_request_id")),
    "label",
    "feedback_at",
    "label_by",
)
ENTRY_SUMMARY = ("version", "created", "bump", "code_commit", "artifact", "mlflow", "reason")


def find_entry(root: Path, version: str, ref: str = "HEAD") -> tuple[dict[str, Any] | None, str]:
    """``(registry entry of version, where it was found)``; ``(None, why)`` when nowhere."""
    path = Path(root) / reg.REGISTRY_FILE
    if path.is_file():
        try:
            current = reg.parse_text(path.read_text(encoding="utf-8"))
        except RegistryError:
            current = None
        if current is not None and current.has(version):
            return current.get(version).to_dict(), reg.REGISTRY_FILE
    if not gitops.ok(root, "rev-parse", "--verify", "--quiet", ref):
        return None, f"not in {reg.REGISTRY_FILE} (and {ref} is not a git revision)"
    for sha, old in history.registries(root, ref):
        if old.has(version):
            return old.get(version).to_dict(), f"{reg.REGISTRY_FILE}@{sha[:12]} (removed since)"
    return None, f"not in {reg.REGISTRY_FILE} nor in its git history on {ref}"


def _summary(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: entry[k] for k in ENTRY_SUMMARY if k in entry}


def _put_in_production(
    events: list[dict[str, Any]], version: str, served_at: str
) -> dict[str, Any] | None:
    """The last promotion or rollback to ``version`` at or before ``served_at``; else the last
    one at all (a clock that ran behind), else None (the version never was production)."""
    mine = [e for e in events if e["version"] == version]
    if not mine:
        return None
    before = [e for e in mine if _utc(e["at"]) <= served_at]
    return (before or mine)[-1]


def _event(e: dict[str, Any] | None) -> dict[str, Any] | None:
    if e is None:
        return None
    return {k: e.get(k) for k in ("event", "version", "commit", "at", "from", "subject", "pr")}


def _utc(at: str) -> str:
    from retrain.serve.predlog import utc_text

    return utc_text(at)


def audit_any(root: Path, log: PredictionLog, key: str, *, ref: str = "HEAD") -> dict[str, Any]:
    """The audit of the request whose server id is ``key``; else of every request a client
    sent with ``X-Request-ID: key``, each apart (``{"client_request_id", "requests": [...]}``):
    a client's id never merges two requests.  :class:`BadInput` when the log has neither."""
    if log.lookup(key):
        return audit(root, log, key, ref=ref)
    ids = log.requests_of_client(key)
    if not ids:
        raise BadInput(
            f"request_id {key!r}: not in the prediction log ({log.display}), neither as the "
            "server's id nor as a client's X-Request-ID"
        )
    return {"client_request_id": key, "requests": [audit(root, log, i, ref=ref) for i in ids]}


def audit(root: Path, log: PredictionLog, request_id: str, *, ref: str = "HEAD") -> dict[str, Any]:
    """Everything known about ``request_id``; :class:`BadInput` when the log never saw it."""
    rows = log.lookup(request_id)
    if not rows:
        raise BadInput(f"request_id {request_id!r}: not in the prediction log ({log.display})")
    has_git = gitops.ok(root, "rev-parse", "--verify", "--quiet", ref)
    events = history.events(root, ref) if has_git else []
    versions: dict[str, dict[str, Any]] = {}
    for r in rows:
        v = r["version"]
        if v in versions:
            continue
        entry, source = find_entry(root, v, ref)
        first_at = min(x["at"] for x in rows if x["version"] == v)
        roles = sorted({x["role"] for x in rows if x["version"] == v})
        # A canary or shadow answer was not production's: name what production was then.
        event = _put_in_production(events, v, first_at) if "production" in roles else None
        then = [e for e in events if _utc(e["at"]) <= first_at]
        versions[v] = {
            "roles": roles,
            "registry": source,
            "entry": _summary(entry) if entry else None,
            "put_in_production_by": _event(event),
            "production_then": _event(then[-1]) if then else None,
        }
    return {
        "request_id": request_id,
        "client_request_id": rows[0].get("client_request_id"),
        "rows": [{k: r.get(k) for k in ROW_KEYS} for r in rows],
        "labels": log.label_history(request_id),
        "versions": versions,
        "log": log.display,
    }


def _by(name: str | None) -> str:
    return f"token {name}" if name else "no token (not trusted)"


def format_audit(a: dict[str, Any]) -> str:
    if "requests" in a:
        head = (
            f"X-Request-ID {a['client_request_id']!r} was sent with {len(a['requests'])} "
            "request(s); each is its own:"
        )
        return "\n\n".join([head, *(format_audit(r) for r in a["requests"])])
    client = (
        f", client's X-Request-ID {a['client_request_id']}" if a.get("client_request_id") else ""
    )
    lines = [f"request {a['request_id']} ({len(a['rows'])} row(s){client}, log {a['log']})", ""]
    for r in a["rows"]:
        fb = (
            f"label {r['label']!r} at {r['feedback_at']} by {_by(r.get('label_by'))}"
            if r["label"] is not None
            else "-"
        )
        lines.append(
            f"  row {r['row']:<4} {r['at']}  v{r['version']:<9} {r['role']:<10} "
            f"prediction {r['prediction']!r}  feedback: {fb}"
        )
    history = a.get("labels") or []
    if len(history) > len({h["row"] for h in history}):
        lines += ["", "  labels, oldest first (the latest authenticated one counts):"]
        for h in history:
            lines.append(f"    row {h['row']:<4} {h['label']!r} at {h['at']} by {_by(h['by'])}")
    for v, info in a["versions"].items():
        lines += ["", f"v{v} ({', '.join(info['roles'])}): registry entry from {info['registry']}"]
        e = info["entry"]
        if e:
            art = e.get("artifact") or {}
            lines.append(
                f"  created {e.get('created')}  bump {e.get('bump')}  code {str(e.get('code_commit'))[:12]}"
            )
            lines.append(f"  artifact {art.get('path')} sha256 {art.get('sha256')}")
        ev = info["put_in_production_by"]
        if ev:
            lines.append(
                f"  put in production by {ev['event']} {ev['commit'][:12]} at {ev['at']}: "
                f"{ev['subject']}"
            )
        elif "production" in info["roles"]:
            lines.append("  no promotion of it on this branch's history (--ref?)")
        else:
            then = info["production_then"]
            lines.append(
                f"  not production when it answered ({', '.join(info['roles'])}); production "
                + (f"then: v{then['version']} ({then['commit'][:12]})" if then else "then: none")
            )
    return "\n".join(lines)
