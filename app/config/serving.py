"""Settings of the request path: the model served, the server, batching, limits, the spool."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from app.config.base import DEV_PLACEHOLDER_SECRET, group


class ModelSettings(BaseSettings):
    model_config = group("FS_MODEL_")

    name: str = Field(default="future-skills-model", description="Registered model to serve")
    alias: str = Field(default="production", description="Registry alias that marks the Production version")
    # Honour the deprecated "Production" stage when the alias is missing (with a warning).
    stage_fallback: bool = Field(
        default=True,
        description="Serve the legacy `Production` stage when the alias is missing (logs a warning)",
    )
    poll_interval_s: float = Field(default=10.0, gt=0, description="How often the registry is polled")
    # The prediction path (docs/predictors.md): each one is used only after it reproduced the
    # pipeline on the version's reference sample, else the next one down is.
    predictor: Literal["onnx", "lean", "pipeline"] = Field(
        default="onnx",
        description="Fastest prediction path allowed: onnx (the forest compiled for ONNX Runtime), "
        "lean (the forest's own trees, no pandas) or pipeline; each falls back to the next that "
        "passes its parity check on the reference sample",
    )
    parity_tolerance: float = Field(
        default=1e-5,
        ge=0,
        description="Largest probability difference to the pipeline the onnx path may show on the "
        "reference sample (labels must be identical; float32 leaf sums give about 1e-6)",
    )
    large_batch_rows: int = Field(
        default=1024,
        ge=1,
        description="Model calls with more rows than this sum the forest's trees on every core "
        "instead of running ONNX Runtime on one (every micro-batch stays on ONNX Runtime, which "
        "costs less CPU per row up to ~2,000 rows and holds no GIL while it runs)",
    )
    large_batch_threads: int = Field(
        default=0, ge=0, description="Threads of a large model call (0: one per core)"
    )
    compile_timeout_s: float = Field(
        default=300.0, gt=0, description="Longest the forest's ONNX conversion may take at load"
    )


class ServerSettings(BaseSettings):
    model_config = group("FS_")

    host: str = Field(default="127.0.0.1", description="Bind address")
    port: int = Field(default=8000, ge=1, le=65535, description="Port")
    workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        description="Worker processes (default: the number of cores); above 1, /metrics aggregates "
        "them (Prometheus multiprocess)",
    )
    access_log: bool = Field(
        default=False,
        description="One log line per request (uvicorn's access log). Off by default: on the "
        "prediction path it costs more than the route; the HTTP metrics count every request anyway",
    )
    hot_routes: bool = Field(
        default=True,
        description="Answer the prediction routes (/v1/predictions, /invocations, /v2 infer) with "
        "lean handlers ahead of FastAPI's middleware stack and router (app/api/hot_routes.py): the "
        "same answers for a third less event-loop time per single-row request. Off: every request "
        "goes through the router",
    )


class PredictionSettings(BaseSettings):
    model_config = group("FS_PREDICT_")

    max_items: int = Field(default=100, ge=1, description="Most items accepted in one prediction request")


class BatchSettings(BaseSettings):
    """Adaptive micro-batching of concurrent prediction requests (app/serving/batching.py)."""

    model_config = group("FS_BATCH_")

    enabled: bool = Field(default=True, description="Predict concurrent requests' rows in one model call")
    max_rows: int = Field(
        default=1024, ge=1,
        description="Most rows in one batched model call (eight 100-row requests make one call)",
    )
    max_wait_ms: float = Field(
        default=2.0, ge=0, description="Longest a request waits for company (only under concurrency)"
    )


class SpoolSettings(BaseSettings):
    """The prediction log: a local spool (JSONL segments) drained into the database."""

    model_config = group("FS_SPOOL_")

    dir: Path | None = Field(default=None, description="Spool directory (default: <data dir>/spool)")
    durability: Literal["fsync", "os", "none"] = Field(
        default="fsync",
        description="fsync: on disk before the response (group commit); os: written, not synced; "
        "none: in memory only",
    )
    max_bytes: int = Field(
        default=64 * 2**20, ge=1024, description="Undrained bytes before predictions get 503"
    )
    fail_open: bool = Field(
        default=False, description="When full, answer anyway and drop (and count) the record"
    )
    group_commit_wait_ms: float = Field(
        default=0.0,
        ge=0,
        description="Extra wait for company before an fsync (writes arriving during one are grouped anyway)",
    )
    segment_max_bytes: int = Field(
        default=2**20,
        ge=1024,
        description="Size at which a segment is rotated "
        "(small: other workers scan live segments on a read miss)",
    )
    worker_id: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_.]{1,40}$", description="Segment owner name (default p<pid>)"
    )
    drain_batch_size: int = Field(default=1000, ge=1, description="Most rows in one database write")
    drain_interval_s: float = Field(default=0.2, gt=0, description="Longest wait for a full batch")
    ingest_method: Literal["copy", "insert"] = Field(
        default="copy", description="Postgres: COPY into a staging table, or multi-row INSERT"
    )
    backoff_initial_s: float = Field(default=0.1, gt=0)
    backoff_max_s: float = Field(
        default=5.0, gt=0, description="Cap of the retry delay while the database is down"
    )
    drain_timeout_s: float = Field(default=30.0, ge=0, description="Shutdown waits this long for the drain")
    orphan_scan_interval_s: float = Field(
        default=30.0, gt=0, description="How often dead workers' segments are looked for"
    )
    read_wait_s: float = Field(
        default=3.0,
        ge=0,
        description="A read or feedback for an id this service does not know yet, made less than this "
        "long ago (its UUIDv7 time) by another replica, waits up to this for that replica's drain "
        "instead of 404ing; older or unknown ids are 404 at once (0: never wait)",
    )
    clock_skew_s: float = Field(
        default=1.0,
        ge=0,
        description="How far ahead of this host's clock another replica's clock may be: an id up to "
        "this far in the future still counts as recent",
    )
    feedback_grace_s: float = Field(
        default=300.0,
        ge=0,
        description="How long feedback waits for its prediction to reach the database before it is "
        "dead-lettered (never while the prediction is in a spool on this host)",
    )


class PrivacySettings(BaseSettings):
    model_config = group("FS_")

    subject_hmac_key: SecretStr = Field(
        default=SecretStr(DEV_PLACEHOLDER_SECRET),
        description="Key of the HMAC that replaces raw subject ids before anything is stored",
    )


class LimitsSettings(BaseSettings):
    """Protection of the request path: sizes, time and concurrency."""

    model_config = group("FS_LIMIT_")

    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Largest request body (413 above)")
    linger_s: float = Field(
        default=10.0,
        ge=0,
        description="After answering before the body is read (a 413), read and discard "
        "the rest of it this long at most, so the client can read the answer (lingering close)",
    )
    linger_max_bytes: int = Field(
        default=64 * 1_048_576,
        ge=0,
        description="At most this many bytes are discarded that way",
    )
    max_in_flight: int = Field(
        default=256, ge=1, description="Predictions admitted at once per worker (503 above)"
    )
    deadline_s: float = Field(
        default=10.0, gt=0, description="Longest a prediction request may take, parsing included (504 above)"
    )
    shutdown_grace_s: float = Field(default=30.0, ge=0, description="Time in-flight requests get on SIGTERM")
    shutdown_delay_s: float = Field(
        default=0.0, ge=0, description="On SIGTERM, answer /health/ready with 503 this long before closing"
    )
