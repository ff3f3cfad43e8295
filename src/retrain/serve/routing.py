"""Which version answers a request: a stable hash of its routing key.

The key is the value of a request header (``X-Routing-Key`` by default: a user or session
id) when the client sends one, otherwise the request id.  ``sha256(salt + key)`` maps it to
a bucket in ``[0, 10000)``; the canary answers the buckets below ``weight * 100``.  So

* one key always meets the same version while the canary stays the same (no flapping
  between models for a user), in every replica and after every restart (no process-salted
  ``hash()``);
* raising the weight only adds keys to the canary: a key on the canary at 5% is still on
  it at 25%;
* the salt is the canary's version, so the next canary gets a fresh slice of users rather
  than the same unlucky ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from retrain.core.registry import Rollout

ROUTING_HEADER = "x-routing-key"
BUCKETS = 10_000

PRODUCTION = "production"
CANARY = "canary"
SHADOW = "shadow"


@dataclass(frozen=True)
class Route:
    """The version that answers, its role, and the shadows that also see the request."""

    version: str
    role: str
    shadows: tuple[str, ...] = ()


def bucket(key: str, salt: str = "") -> int:
    """The key's bucket in ``[0, BUCKETS)``, the same in every process."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def routing_key(headers: Mapping[str, str], request_id: str, header: str = ROUTING_HEADER) -> str:
    """The header's value when present and not blank, else the request id."""
    for name, value in headers.items():
        if name.lower() == header.lower() and value.strip():
            return value.strip()
    return request_id


def route(key: str, production: str, rollout: Rollout | None) -> Route:
    """Decide who answers the request with routing key ``key``."""
    if rollout is None:
        return Route(production, PRODUCTION)
    c = rollout.canary
    if c is not None and bucket(key, c.version) < c.weight * (BUCKETS // 100):
        answer = Route(c.version, CANARY)
    else:
        answer = Route(production, PRODUCTION)
    # A shadow that is answering this request anyway is not run twice.
    shadows = tuple(v for v in rollout.shadow if v != answer.version)
    return Route(answer.version, answer.role, shadows)
