"""The service's own Prometheus metrics, on an app-owned registry (never the global default)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServiceMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.predictions = Counter(
            "fs_predictions",
            "Predictions made, by model version, predicted level and protocol",
            ["model_name", "model_version", "level", "protocol"],
            registry=r,
        )
        self.prediction_latency = Histogram(
            "fs_prediction_latency_seconds",
            "Time to predict one request's rows (validation to result)",
            ["protocol"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_info = Gauge(
            "fs_model_info",
            "The model version being served (value 1)",
            ["model_name", "model_version", "semver"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.unknown_categories = Counter(
            "fs_unknown_categories",
            "Categorical values outside the training vocabulary, by feature",
            ["feature"],
            registry=r,
        )
        self.log_written = Counter(
            "fs_prediction_log_written", "Prediction records committed to the database", registry=r
        )
        self.log_pending = Gauge(
            "fs_prediction_log_pending",
            "Prediction records waiting to be written",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.log_failures = Counter(
            "fs_prediction_log_flush_failures", "Failed attempts to write a batch", registry=r
        )

        self.rejected = Counter(
            "fs_requests_rejected",
            "Prediction requests refused to protect the service, by reason and protocol",
            ["reason", "protocol"],
            registry=r,
        )
        self.batch_rows = Histogram(
            "fs_batch_rows",
            "Rows predicted in one model call by the micro-batcher",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.batch_wait = Histogram(
            "fs_batch_wait_seconds",
            "Time a request waited for company before its batch started (not time behind a running batch)",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1),
            registry=r,
        )
        self.batch_fallbacks = Counter(
            "fs_batch_fallbacks",
            "Batches that failed and were re-predicted request by request",
            registry=r,
        )

    def set_serving(self, name: str, version: str, semver: str | None) -> None:
        self.model_info.clear()
        self.model_info.labels(name, version, semver or "").set(1)
