"""``retrain site``: the model's history as a static web page, from git alone.

What is in production, how it got there and how it is doing: a timeline of promotions,
rollbacks, canary and shadow steps (who, which commit, why), the primary metric and the
guardrails per version with their intervals, each version's gates, model card, churn and key
examples, drift per received batch and, where a prediction log is reachable, live metrics.

The wing after ``rollout``: it reads ``release`` history, the data through ``pipeline`` and
``decide``, and the ``serve`` prediction log through ``rollout``'s analysis.  ``story`` reads
git, ``drift`` and ``live`` the data and the log, ``plots`` draws SVG, ``render`` turns it all
into pages from ``templates/``, and ``build`` writes the folder whole or not at all.
"""

from __future__ import annotations

from retrain.site.build import MARKER, SiteResult, build

__all__ = ["MARKER", "SiteResult", "build"]
