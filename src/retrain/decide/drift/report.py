"""The drift verdict as data (:class:`DriftReport`, the ``drift --json`` shape) and as text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class DriftReport:
    """The result of :func:`drift_report`; ``to_dict()`` is the ``drift --json`` shape."""

    drifted: bool
    share_drifted: float
    features: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_share: float = 0.3

    def to_dict(self) -> dict[str, Any]:
        """``{"drifted", "share_drifted", "features": {column: {...}}}``, JSON-serialisable."""
        return {
            "drifted": bool(self.drifted),
            "share_drifted": float(self.share_drifted),
            "features": {c: dict(f) for c, f in self.features.items()},
        }

    def top(self, n: int = 5) -> list[tuple[str, dict[str, Any]]]:
        """The ``n`` most notable columns: drifted ones first, then by decreasing PSI."""
        return ranked(self.features)[:n]


def ranked(features: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return sorted(
        features.items(), key=lambda kv: (not kv[1].get("drifted"), -float(kv[1].get("psi") or 0))
    )


def _fmt(x: Any, spec: str) -> str:
    return "–" if x is None else format(float(x), spec)


def format_table(report: DriftReport) -> str:
    """A short text table, drifted columns first, then by decreasing PSI, and the verdict."""
    header = ["column", "kind", "test", "statistic", "p", "p adj", "psi", "drifted"]
    rows = [
        [
            name,
            f["kind"],
            f["test"],
            _fmt(f.get("statistic"), ".4g"),
            _fmt(f.get("p_value"), ".2g"),
            _fmt(f.get("p_value_adjusted"), ".2g"),
            _fmt(f.get("psi"), ".4f"),
            "yes" if f.get("drifted") else "no",
        ]
        for name, f in ranked(report.features)
    ]
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    right = {3, 4, 5, 6}

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    n = len(report.features)
    n_drifted = sum(1 for f in report.features.values() if f.get("drifted"))
    verdict = "drifted" if report.drifted else "not drifted"
    out.append("")
    out.append(
        f"{n_drifted} of {n} columns drifted ({report.share_drifted:.1%}; "
        f"threshold {report.max_share:.0%}): dataset {verdict}"
    )
    return "\n".join(out)
