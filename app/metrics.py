"""The service's own Prometheus metrics, on an app-owned registry (never the global default)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _multiprocess() -> bool:
    # The test prometheus_client itself makes (values are then per-worker files).
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ or "prometheus_multiproc_dir" in os.environ


class LabelledSeries:
    """The label sets of one labelled gauge that this process has set; ``replace`` publishes a
    new set and retires the rest.

    Single-process, a retired series is removed. Multi-process, a series stays in this worker's
    metric file until the worker exits (prometheus_client cannot remove it, and warns when asked
    to), so it is set to ``retired_value`` instead.
    """

    def __init__(self, gauge: Gauge, retired_value: float) -> None:
        self._gauge = gauge
        self._retired_value = retired_value
        self._set: set[tuple[str, ...]] = set()

    def replace(self, values: Mapping[tuple[str, ...], float]) -> None:
        multiprocess = _multiprocess()
        for labels in self._set - values.keys():
            if multiprocess:
                self._gauge.labels(*labels).set(self._retired_value)
            else:
                self._gauge.remove(*labels)
        for labels, value in values.items():
            self._gauge.labels(*labels).set(value)
        self._set = set(values)


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
        self.predictions_flagged = Counter(
            "fs_predictions_flagged",
            "Predictions flagged needs_review (confidence below FS_REVIEW_CONFIDENCE_THRESHOLD), "
            "by model version",
            ["model_name", "model_version"],
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
        self.model_predictor = Gauge(
            "fs_model_predictor",
            "The prediction path of the version being served: onnx, lean or pipeline (value 1)",
            ["model_name", "model_version", "predictor"],
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
        # The spool in front of the prediction log (dashboards depend on these names).
        self.spool_pending = Gauge(
            "fs_spool_pending_records", "Prediction records spooled, not yet in the database",
            registry=r, multiprocess_mode="livesum",
        )
        self.spool_bytes = Gauge(
            "fs_spool_bytes", "Bytes of spooled records not yet in the database",
            registry=r, multiprocess_mode="livesum",
        )
        self.spool_oldest_age = Gauge(
            "fs_spool_oldest_record_age_seconds", "Age of the oldest record not yet in the database",
            registry=r, multiprocess_mode="livemax",
        )
        self.spool_flush_failures = Counter(
            "fs_spool_flush_failures", "Failed attempts to write a batch to the database", registry=r
        )
        self.spool_dropped = Counter(
            "fs_spool_dropped_records",
            "Prediction records answered but not recorded (only with fail-open, or durability none at exit)",
            registry=r,
        )
        self.spool_dead_letters = Counter(
            "fs_spool_dead_letters",
            "Spooled records the database refused, moved to the dead-letter store, by record kind",
            ["kind"], registry=r,
        )
        self.spool_dead_letters_on_disk = Gauge(
            "fs_spool_dead_letters_on_disk", "Dead letters kept in this host's spool directory",
            registry=r, multiprocess_mode="livemax",
        )
        self.spool_peer_reads = Counter(
            "fs_spool_peer_reads",
            "Records read from another worker's spool segment (not yet in the database)", registry=r,
        )

        self.spool_read_waits = Counter(
            "fs_spool_read_waits",
            "Reads of a recent id not yet in the database that waited for another replica's drain, "
            "by outcome (found, not_found)",
            ["outcome"], registry=r,
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

        self.model_reloads = Counter(
            "fs_model_reloads",
            "Attempts to load a new Production version, by outcome (success or failed)",
            ["outcome"],
            registry=r,
        )
        self.promotions = Counter(
            "fs_promotions",
            "Promotion, rollback and auto-promotion attempts, by action and outcome",
            ["action", "outcome"],
            registry=r,
        )
        self.model_suspended = Gauge(
            "fs_model_suspended",
            "1 while the stop switch suspends the model (every prediction refused), else 0",
            ["model"], registry=r, multiprocess_mode="livemax",
        )

        # The improvement loop (docs/improvement-loop.md).
        self.challenger_info = Gauge(
            "fs_challenger_info", "1 for the challenger version this worker shadow-scores with",
            ["model_name", "model_version"], registry=r, multiprocess_mode="livemax",
        )
        self.challenger_loads = Counter(
            "fs_challenger_loads", "Attempts to load a new challenger version, by outcome",
            ["outcome"], registry=r,
        )
        self.shadow_rows = Counter(
            "fs_shadow_rows",
            "Rows shadow-scored by the challenger and stored (outcome stored), or dropped "
            "(queue_full, failed, database, shutdown)",
            ["outcome"], registry=r,
        )
        self.shadow_queue_rows = Gauge(
            "fs_shadow_queue_rows", "Rows waiting to be shadow-scored", registry=r,
            multiprocess_mode="livesum",
        )
        self.shadow_latency = Histogram(
            "fs_shadow_latency_seconds", "Time of one challenger call over a batch of shadow rows",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.canary_predictions = Counter(
            "fs_canary_predictions", "Predictions answered by the challenger as canary traffic",
            ["model_name", "model_version"], registry=r,
        )
        self._challenger = LabelledSeries(self.challenger_info, retired_value=0)

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
        # Label-free estimates (docs/monitoring.md): the latest bucket with predictions.
        self.model_estimated_accuracy = Gauge(
            "fs_model_estimated_accuracy",
            "Estimated accuracy (calibrated confidence, no labels) in the latest bucket",
            registry=r, multiprocess_mode="mostrecent",
        )
        self.model_estimated_f1_macro = Gauge(
            "fs_model_estimated_f1_macro",
            "Estimated macro-F1 (calibrated confidence, no labels) in the latest bucket",
            registry=r, multiprocess_mode="mostrecent",
        )
        # Per-group views, only for the dimensions FS_MONITORING_GROUP_GAUGES names (bounded).
        group_labels = ["model_name", "by", "group"]
        self.group_predictions = Gauge(
            "fs_group_predictions", "Predictions per group in the latest groups report",
            group_labels, registry=r, multiprocess_mode="mostrecent",
        )
        self.group_high_rate_ratio = Gauge(
            "fs_group_high_rate_ratio",
            "A group's share of HIGH predictions over the overall share (1 = the same)",
            group_labels, registry=r, multiprocess_mode="mostrecent",
        )
        self.group_estimated_accuracy = Gauge(
            "fs_group_estimated_accuracy", "Estimated accuracy per group (no labels)",
            group_labels, registry=r, multiprocess_mode="mostrecent",
        )
        for unknown_until_measured in (self.drift_share, self.dataset_drift, self.model_accuracy,
                                       self.model_estimated_accuracy,
                                       self.model_estimated_f1_macro):
            unknown_until_measured.set(float("nan"))
        self.drift_checks = Counter(
            "fs_drift_checks", "Drift reports computed, by engine asked for and outcome",
            ["engine", "outcome"], registry=r,
        )
        self._serving = LabelledSeries(self.model_info, retired_value=0)
        self._predictor = LabelledSeries(self.model_predictor, retired_value=0)
        self.drift_scores = LabelledSeries(self.drift_score, retired_value=float("nan"))
        self.drift_verdicts = LabelledSeries(self.drift_detected, retired_value=float("nan"))

    def set_serving(self, name: str, version: str, semver: str | None, predictor: str | None = None) -> None:
        self._serving.replace({(name, version, semver or ""): 1})
        if predictor is not None:
            self._predictor.replace({(name, version, predictor): 1})

    def set_challenger(self, name: str, version: str | None) -> None:
        self._challenger.replace({(name, version): 1} if version is not None else {})
