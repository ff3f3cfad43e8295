"""Prometheus metrics of one server, in its own registry (two apps in a process never mix).

- ``retrain_serve_requests_total{version,route,status}``
- ``retrain_serve_request_duration_seconds{version}`` (histogram)
- ``retrain_serve_model_info{model,version,sha256,registry_commit}`` (1 for the one serving)
- ``retrain_serve_reloads_total{outcome}`` (``success`` / ``failed``)
- ``retrain_serve_rollout_info{role,version,weight}`` (1 per version registry.yaml's rollout
  names: a canary with its weight, shadows with weight ""; a step of a canary is a new series,
  so "the same step for hours" is the alert of a canary stuck in hold)
- ``retrain_serve_batch_rows`` (histogram: rows per model call, what batching achieved)
- ``retrain_serve_prediction_log_written_total`` / ``..._dropped_total`` (from the log writer)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from retrain.core.registry import Rollout
from retrain.serve.holder import ServedModel

PREFIX = "retrain_serve"
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class _LogCounters(Collector):
    def __init__(self, read: Callable[[], tuple[int, int]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        written, dropped = self.read()
        w = CounterMetricFamily(
            f"{PREFIX}_prediction_log_written", "Served rows written to the prediction log"
        )
        w.add_metric([], written)
        d = CounterMetricFamily(
            f"{PREFIX}_prediction_log_dropped",
            "Served rows the prediction log could not take (queue full or log unreachable)",
        )
        d.add_metric([], dropped)
        yield w
        yield d


class Telemetry:
    def __init__(self, log_counters: Callable[[], tuple[int, int]] = lambda: (0, 0)) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            f"{PREFIX}_requests",
            "Requests answered, by model version, route and HTTP status",
            ["version", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "Time from request to response, by model version",
            ["version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.model_info = Gauge(
            f"{PREFIX}_model_info",
            "The model serving now (value 1)",
            ["model", "version", "sha256", "registry_commit"],
            registry=self.registry,
        )
        self.reloads = Counter(
            f"{PREFIX}_reloads",
            "Model reloads, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            f"{PREFIX}_batch_rows",
            "Rows per model call (dynamic batching)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=self.registry,
        )
        self.rollout_info = Gauge(
            f"{PREFIX}_rollout_info",
            "Versions registry.yaml's rollout sends traffic to besides production (value 1)",
            ["role", "version", "weight"],
            registry=self.registry,
        )
        for outcome in ("success", "failed"):
            self.reloads.labels(outcome)
        self.registry.register(_LogCounters(log_counters))

    def observe(self, route: str, status: int, version: str, seconds: float | None) -> None:
        self.requests.labels(version, route, str(status)).inc()
        if seconds is not None:
            self.latency.labels(version).observe(seconds)

    def reload(self, outcome: str, model: ServedModel | None) -> None:
        self.reloads.labels(outcome).inc()
        if model is not None:
            self.relabel(model)

    def relabel(self, model: ServedModel) -> None:
        """``model_info`` names the model serving and the registry commit it follows."""
        self.model_info.clear()
        self.model_info.labels(
            model.name, model.version, model.sha256, model.registry_commit or ""
        ).set(1)

    def rollout(self, rollout: Rollout | None) -> None:
        """``rollout_info`` names the canary (with its weight) and the shadows serving now."""
        self.rollout_info.clear()
        if rollout is None:
            return
        if rollout.canary is not None:
            c = rollout.canary
            self.rollout_info.labels("canary", c.version, str(c.weight)).set(1)
        for v in rollout.shadow:
            self.rollout_info.labels("shadow", v, "").set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
