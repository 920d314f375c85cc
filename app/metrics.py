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

        # Monitoring: the latest periodic drift check and the latest feedback accuracy.
        self.drift_score = Gauge(
            "fs_drift_score", "Drift score of each feature in the latest check (p-value or distance)",
            ["feature"], registry=r, multiprocess_mode="mostrecent",
        )
        self.drift_detected = Gauge(
            "fs_drift_detected", "1 when the feature drifted in the latest check", ["feature"],
            registry=r, multiprocess_mode="mostrecent",
        )
        self.drift_share = Gauge(
            "fs_drift_share", "Share of drifted features in the latest check", registry=r,
            multiprocess_mode="mostrecent",
        )
        self.dataset_drift = Gauge(
            "fs_dataset_drift", "1 when the latest check found dataset drift", registry=r,
            multiprocess_mode="mostrecent",
        )
        self.model_accuracy = Gauge(
            "fs_model_accuracy", "Accuracy from feedback in the latest bucket that has feedback",
            registry=r, multiprocess_mode="mostrecent",
        )
        for unknown_until_measured in (self.drift_share, self.dataset_drift, self.model_accuracy):
            unknown_until_measured.set(float("nan"))
        self.drift_checks = Counter(
            "fs_drift_checks", "Drift reports computed, by engine asked for and outcome",
            ["engine", "outcome"], registry=r,
        )

    def set_serving(self, name: str, version: str, semver: str | None) -> None:
        self.model_info.clear()
        self.model_info.labels(name, version, semver or "").set(1)
