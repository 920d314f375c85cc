"""Typed settings. One ``Settings`` object is built at the edge (CLI or app factory) and injected.

Groups are separate ``BaseSettings`` classes with their own env prefix, so ``FS_MODEL_NAME`` maps to
``settings.model.name`` and tests can build any group explicitly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.durations import Duration, parse_duration
from app.ml.features import FEATURE_NAMES, NUMERIC

__all__ = ["Duration", "Settings", "parse_duration"]


def _group(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, extra="ignore", env_file=None)


# Accepted only in development mode; production refuses to start with it.
DEV_PLACEHOLDER_SECRET = "change-me-in-production"

_ASYNC_DRIVERS = {
    "postgresql://": "postgresql+asyncpg://",
    "postgres://": "postgresql+asyncpg://",
    "sqlite://": "sqlite+aiosqlite://",
}


class ModelSettings(BaseSettings):
    model_config = _group("FS_MODEL_")

    name: str = Field(default="future-skills-model", description="Registered model to serve")
    alias: str = Field(default="production", description="Registry alias that marks the Production version")
    # Honour the deprecated "Production" stage when the alias is missing (with a warning).
    stage_fallback: bool = Field(
        default=True,
        description="Serve the legacy `Production` stage when the alias is missing (logs a warning)",
    )
    poll_interval_s: float = Field(default=10.0, gt=0, description="How often the registry is polled")


class ServerSettings(BaseSettings):
    model_config = _group("FS_")

    host: str = Field(default="127.0.0.1", description="Bind address")
    port: int = Field(default=8000, ge=1, le=65535, description="Port")
    workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        description="Worker processes (default: the number of cores); above 1, /metrics aggregates "
        "them (Prometheus multiprocess)",
    )


class PredictionSettings(BaseSettings):
    model_config = _group("FS_PREDICT_")

    max_items: int = Field(default=100, ge=1, description="Most items accepted in one prediction request")


class BatchSettings(BaseSettings):
    """Adaptive micro-batching of concurrent prediction requests (app/serving/batching.py)."""

    model_config = _group("FS_BATCH_")

    enabled: bool = Field(default=True, description="Predict concurrent requests' rows in one model call")
    max_rows: int = Field(default=256, ge=1, description="Most rows in one batched model call")
    max_wait_ms: float = Field(
        default=2.0, ge=0, description="Longest a request waits for company (only under concurrency)"
    )


class SpoolSettings(BaseSettings):
    """The prediction log: a local spool (JSONL segments) drained into the database."""

    model_config = _group("FS_SPOOL_")

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
    feedback_grace_s: float = Field(
        default=300.0,
        ge=0,
        description="How long feedback waits for its prediction to reach the database before it is "
        "dead-lettered (never while the prediction is in a spool on this host)",
    )


class PrivacySettings(BaseSettings):
    model_config = _group("FS_")

    subject_hmac_key: SecretStr = Field(
        default=SecretStr(DEV_PLACEHOLDER_SECRET),
        description="Key of the HMAC that replaces raw subject ids before anything is stored",
    )


class LimitsSettings(BaseSettings):
    """Protection of the request path: sizes, time and concurrency."""

    model_config = _group("FS_LIMIT_")

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


class SecuritySettings(BaseSettings):
    model_config = _group("FS_")

    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Client API keys for prediction routes (X-API-Key); empty: no key needed",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed by CORS"
    )
    docs_enabled: bool = Field(default=True, description="Serve /docs and /openapi.json")

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str) and not value.lstrip().startswith("["):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard(cls, value: list[str]) -> list[str]:
        if "*" in value:
            raise ValueError("FS_CORS_ORIGINS must list explicit origins, not '*'")
        return value


class TrainingSettings(BaseSettings):
    model_config = _group("FS_TRAIN_")

    rows: int = Field(default=20_000, ge=100, description="Synthetic rows to train on")
    seed: int = Field(default=42, description="Seed of the data generator, the split and the model")
    algorithm: str = Field(default="random_forest", description="Estimator of the pipeline")
    n_estimators: int = Field(default=100, ge=1, description="Trees of the forest")
    test_size: float = Field(default=0.2, gt=0, lt=1, description="Held-out share for evaluation")
    reference_rows: int = Field(default=5_000, ge=10, description="Rows of training data kept for drift")


class LifecycleSettings(BaseSettings):
    """Promotion policy, hot reload and housekeeping (issue 3)."""

    model_config = _group("FS_LIFECYCLE_")

    metric: str = Field(default="f1_macro", description="Held-out metric a candidate must improve")
    min_improvement: float = Field(default=0.0, ge=0, description="Least absolute gain over Production")
    min_relative_improvement: float = Field(
        default=0.0, ge=0, description="Least gain as a fraction of Production's"
    )
    allow_major: bool = Field(
        default=False, description="Let the policy promote a signature-changing version"
    )
    set_legacy_stage: bool = Field(default=False, description="Also move the deprecated 'Production' stage")
    retry_failed_s: float = Field(
        default=60.0, gt=0, description="Wait before reloading a version that failed"
    )
    keep_versions: int = Field(default=5, ge=1, description="Versions kept unarchived by 'models archive'")


def parse_admin_tokens(value: object) -> dict[str, SecretStr]:
    """``name:token,name2:token2`` or a JSON object ``{"name": "token"}``; names are what audits show."""
    import json

    pairs: list[tuple[object, object]]
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            pairs = list(json.loads(text).items())
        else:
            pairs = []
            for part in filter(None, (p.strip() for p in text.split(","))):
                name, sep, token = part.partition(":")
                if not sep or not name.strip() or not token.strip():
                    raise ValueError("FS_ADMIN_TOKENS entries must look like name:token")
                pairs.append((name.strip(), token.strip()))
    else:
        raise ValueError("FS_ADMIN_TOKENS must be 'name:token,...' or a JSON object")
    tokens: dict[str, SecretStr] = {}
    for key, value_ in pairs:
        secret = value_ if isinstance(value_, SecretStr) else SecretStr(str(value_))
        if len(secret.get_secret_value()) < 8:
            raise ValueError(f"admin token {key!r} is shorter than 8 characters")
        tokens[str(key)] = secret
    return tokens


class AdminSettings(BaseSettings):
    # A malformed value must never be echoed in a startup error: it may hold a token.
    model_config = _group("FS_") | SettingsConfigDict(hide_input_in_errors=True)

    admin_tokens: Annotated[dict[str, SecretStr], NoDecode] = Field(
        default_factory=dict, description="Named bearer tokens for the admin API"
    )

    @field_validator("admin_tokens", mode="before")
    @classmethod
    def _parse(cls, value: object) -> dict[str, SecretStr]:
        return parse_admin_tokens(value)


# The drift tests by name (their code is app/monitoring/drift_tests.py, which must offer the same
# names); here so the settings can be checked without importing the monitoring package.
DRIFT_METHODS = ("ks", "chisquare", "z", "wasserstein", "jensenshannon", "psi")
NUMERIC_ONLY_DRIFT_METHODS = frozenset({"ks", "wasserstein"})


class DriftSettings(BaseSettings):
    model_config = _group("FS_DRIFT_")

    share_threshold: float = Field(
        default=0.5, gt=0, le=1, description="Share of drifted features that is dataset drift"
    )
    methods: dict[str, str] = Field(
        default_factory=dict, description='Per-feature test, e.g. {"trend_score": "psi"}'
    )
    thresholds: dict[str, float] = Field(default_factory=dict, description="Per-feature threshold")
    default_window: Duration = Field(
        default=Duration("24h"), description="Window of GET /v1/drift without start/end/last"
    )
    max_current_rows: int = Field(
        default=500_000, ge=100, description="Larger windows are sampled down to this"
    )
    # The tests need counts, not a handful of rows: chi-square wants ~5 expected rows in each of
    # ~20 categories, and KS on a few rows flags chance as drift (4 rows gave share 1.00).
    min_rows: int = Field(
        default=100,
        ge=1,
        description="Fewer rows in the window (or the reference sample): the report "
        "says insufficient data and gives no drift verdict",
    )
    evidently_timeout_s: float = Field(
        default=300.0, gt=0, description="Slower Evidently runs fall back to native"
    )
    check_enabled: bool = True
    check_interval_s: float = Field(
        default=3600.0,
        gt=0,
        description="Periodic drift check: once per interval across all workers and replicas, at "
        "boundaries aligned to the epoch (hourly at :00 by default)",
    )
    check_window: Duration = Field(default=Duration("24h"), description="Window of the periodic drift check")
    check_engine: Literal["native", "evidently"] = "native"

    @model_validator(mode="after")
    def _known_methods_and_features(self) -> DriftSettings:
        for feature in (*self.methods, *self.thresholds):
            if feature not in FEATURE_NAMES:
                raise ValueError(f"FS_DRIFT_METHODS/THRESHOLDS name an unknown feature: {feature}")
        for feature, method in self.methods.items():
            if method not in DRIFT_METHODS:
                raise ValueError(f"unknown drift method {method!r}; choose from {', '.join(DRIFT_METHODS)}")
            if method in NUMERIC_ONLY_DRIFT_METHODS and feature not in NUMERIC:
                raise ValueError(f"drift method {method!r} needs a numeric feature, not {feature}")
        return self


class HealthSettings(BaseSettings):
    model_config = _group("FS_HEALTH_")

    min_accuracy: float = Field(default=0.70, ge=0, le=1, description="Lower accuracy is degraded")
    max_accuracy_decline: float = Field(default=0.05, ge=0, description="A larger decline is a warning")
    p95_latency_ms: float = Field(
        default=500.0, gt=0, description="Higher p95 prediction latency is a warning"
    )
    max_log_backlog_s: float = Field(
        default=60.0, gt=0, description="Older unwritten predictions are a warning"
    )
    window: Duration = Field(default=Duration("7d"), description="Feedback window of the accuracy checks")
    bucket: Duration = Field(default=Duration("1d"), description="Bucket of the accuracy trend")
    latency_window: Duration = Field(default=Duration("1h"), description="Window of the latency check")
    min_feedback: int = Field(
        default=20, ge=1, description="Fewer feedback rows: the accuracy checks report insufficient data"
    )
    min_predictions: int = Field(
        default=100,
        ge=1,
        description="Fewer predictions in the latency window: the latency check reports "
        "insufficient data (a p95 of a few rows is their maximum)",
    )
    drift_max_age: Duration = Field(
        default=Duration("48h"), description="Older drift reports are not used by the drift check"
    )
    trend_tolerance: float = Field(default=0.02, ge=0, description="Accuracy changes within this are stable")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FS_", extra="ignore", env_file=None)

    environment: Literal["development", "production"] = Field(
        default="development", description="`production` refuses placeholder secrets"
    )
    data_dir: Path = Field(
        default=Path("./var"), description="Embedded stores, the model cache, the Prometheus multiprocess dir"
    )
    log_level: str = Field(default="INFO", description="Service log level")
    log_json: bool = Field(default=False, description="JSON log lines (else readable lines)")
    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "mlflow_tracking_uri"),
        description="MLflow tracking store or server (`http://...`, `databricks`, `azureml://...`)",
    )
    mlflow_registry_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_REGISTRY_URI", "mlflow_registry_uri"),
        description="MLflow model registry (`databricks-uc` for Unity Catalog)",
    )
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "database_url"),
        description="Prediction log: `postgresql://user:pass@host/db` or `sqlite:///path`",
    )

    model: ModelSettings = Field(default_factory=ModelSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    predict: PredictionSettings = Field(default_factory=PredictionSettings)
    spool: SpoolSettings = Field(default_factory=SpoolSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    lifecycle: LifecycleSettings = Field(default_factory=LifecycleSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @model_validator(mode="after")
    def _no_placeholder_secrets_in_production(self) -> Settings:
        if self.environment == "production":
            if self.privacy.subject_hmac_key.get_secret_value() == DEV_PLACEHOLDER_SECRET:
                raise ValueError("FS_SUBJECT_HMAC_KEY must be set to a real secret in production")
            weak = [k for k in self.security.api_keys if len(k.get_secret_value()) < 16]
            if weak or any(k.get_secret_value() == DEV_PLACEHOLDER_SECRET for k in self.security.api_keys):
                raise ValueError("FS_API_KEYS must be real secrets (16+ characters) in production")
        return self

    @property
    def uses_embedded_mlflow(self) -> bool:
        return self.mlflow_tracking_uri is None

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.data_dir / 'mlflow.db'}"

    @property
    def registry_uri(self) -> str:
        return self.mlflow_registry_uri or self.tracking_uri

    @property
    def artifact_root(self) -> str | None:
        """Where new experiments keep artifacts; None lets a tracking server decide."""
        return (self.data_dir / "mlartifacts").as_uri() if self.uses_embedded_mlflow else None

    @property
    def db_url(self) -> str:
        """The async SQLAlchemy URL; plain ``postgresql://`` and ``sqlite://`` URLs get async drivers."""
        url = self.database_url or f"sqlite:///{self.data_dir / 'predictions.db'}"
        for plain, driver in _ASYNC_DRIVERS.items():
            if url.startswith(plain):
                return driver + url[len(plain) :]
        return url

    @property
    def spool_dir(self) -> Path:
        return self.spool.dir or self.data_dir / "spool"

    @property
    def model_cache_dir(self) -> Path:
        return self.data_dir / "model-cache"

    def ensure_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
