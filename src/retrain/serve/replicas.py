"""Replicas that agree: what changes when several servers share one prediction log.

- **Feedback for a row another replica served.**  Replica A answers a request and hands the
  rows to its log writer, which writes them a fraction of a second later; the client posts
  the label, and the load balancer sends it to replica B.  B flushes its own writer, but A's
  rows may not be in the shared log yet: rather than answering 404, B looks again, with
  growing pauses, for up to ``feedback_wait_s`` (``configs/serve.yaml``).  Only request ids
  that no replica logged in that time get the 404 (nothing stored for them), so a typo still
  says so.
- **Jittered reconciles.**  N replicas started by one rollout would otherwise fetch git (or
  re-read their mount) in the same second, every interval, forever.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

FIRST_PAUSE = 0.05  # seconds before looking again; doubled each time, up to MAX_PAUSE
MAX_PAUSE = 1.0


def jittered(interval: float, jitter: float, rng: random.Random | None = None) -> float:
    """``interval`` moved by a random share of at most ``jitter`` of it, either way."""
    if jitter <= 0:
        return interval
    r = (rng or random).uniform(-jitter, jitter)
    return max(interval * (1.0 + r), 0.0)


async def add_feedback_awaiting_rows(
    add: Callable[[list[dict[str, Any]]], list[str]],
    items: list[dict[str, Any]],
    wait: float,
) -> list[str]:
    """Store ``items`` with ``add`` (which stores the matched ones and returns the request ids
    it found no row for); retry those for up to ``wait`` seconds while another replica's
    writer may still be writing them.  Returns what stayed unknown."""
    unknown = await asyncio.to_thread(add, items)
    deadline = time.monotonic() + wait
    pause = FIRST_PAUSE
    while unknown and time.monotonic() < deadline:
        await asyncio.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))
        pause = min(pause * 2, MAX_PAUSE)
        missing = set(unknown)
        retry = [it for it in items if _key(it) in missing or str(it["request_id"]) in missing]
        unknown = await asyncio.to_thread(add, retry)
    return unknown


def _key(item: dict[str, Any]) -> str:
    """How :meth:`PredictionLog.add_feedback` names an unmatched row of a known request."""
    return f"{item['request_id']} row {int(item.get('row') or 0)}"
