"""Canary routing by a hash of the routing key (issue 9: 10% ± 2.5 points, stable per key)."""

from __future__ import annotations

from retrain.core.registry import Canary, Rollout
from retrain.serve import routing


def test_weight_10_sends_10_percent_of_2000_keys_to_the_canary():
    rollout = Rollout(canary=Canary("1.1.0", 10))
    routes = [routing.route(f"req-{i}", "1.0.0", rollout) for i in range(2000)]
    share = sum(r.version == "1.1.0" for r in routes) / len(routes)
    assert abs(share - 0.10) <= 0.025, share
    assert {r.role for r in routes} == {"production", "canary"}


def test_same_key_always_meets_the_same_version():
    rollout = Rollout(canary=Canary("1.1.0", 50))
    for i in range(200):
        first = routing.route(f"user-{i}", "1.0.0", rollout)
        assert all(routing.route(f"user-{i}", "1.0.0", rollout) == first for _ in range(5))


def test_raising_the_weight_keeps_every_canary_key_on_the_canary():
    keys = [f"k{i}" for i in range(2000)]
    at5 = {
        k for k in keys if routing.route(k, "1.0.0", Rollout(Canary("1.1.0", 5))).role == "canary"
    }
    at25 = {
        k for k in keys if routing.route(k, "1.0.0", Rollout(Canary("1.1.0", 25))).role == "canary"
    }
    assert at5 and at5 < at25


def test_bucket_is_the_same_in_every_process():
    # sha256 based, not Python's salted hash(): a fixed value pins it across processes.
    import hashlib

    expected = int.from_bytes(hashlib.sha256(b"1.1.0\x00abc").digest()[:8], "big") % 10_000
    assert routing.bucket("abc", "1.1.0") == expected
    assert 0 <= routing.bucket("abc") < routing.BUCKETS


def test_routing_key_prefers_the_header_then_the_request_id():
    assert routing.routing_key({"X-Routing-Key": "user-7"}, "req-1") == "user-7"
    assert routing.routing_key({"x-routing-key": "  "}, "req-1") == "req-1"
    assert routing.routing_key({}, "req-1") == "req-1"


def test_shadows_see_every_request_but_never_answer():
    rollout = Rollout(shadow=("1.2.0",))
    for i in range(100):
        r = routing.route(f"k{i}", "1.0.0", rollout)
        assert (r.version, r.role, r.shadows) == ("1.0.0", "production", ("1.2.0",))
    both = Rollout(canary=Canary("1.2.0", 50), shadow=("1.2.0",))
    for i in range(100):
        r = routing.route(f"k{i}", "1.0.0", both)
        assert r.version not in r.shadows


def test_no_rollout_is_production():
    assert routing.route("k", "1.0.0", None) == routing.Route("1.0.0", "production")
