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


def test_every_process_routes_a_key_to_the_same_version():
    """Replicas are separate processes (and Python salts ``hash()`` per process): two other
    interpreters with different hash seeds route 500 keys exactly as this one does."""
    import json
    import os
    import subprocess
    import sys

    keys = [f"user-{i}" for i in range(500)]
    script = (
        "import json, sys\n"
        "from retrain.core.registry import Canary, Rollout\n"
        "from retrain.serve import routing\n"
        "r = Rollout(canary=Canary('1.1.0', 30))\n"
        "keys = json.load(sys.stdin)\n"
        "print(json.dumps([routing.route(k, '1.0.0', r).version for k in keys]))\n"
    )
    here = [routing.route(k, "1.0.0", Rollout(canary=Canary("1.1.0", 30))).version for k in keys]
    for seed in ("1", "2"):
        res = subprocess.run(
            [sys.executable, "-c", script],
            input=json.dumps(keys),
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(res.stdout) == here
    assert 0.2 < here.count("1.1.0") / len(keys) < 0.4
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
