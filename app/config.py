"""Typed settings. One ``Settings`` object is built at the edge (CLI or app factory) and injected.

Groups are separate ``BaseSettings`` classes with their own env prefix, so ``FS_MODEL_NAME`` maps to
``settings.model.name`` and tests can build any group explicitly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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

    name: str = "future-skills-model"
    alias: str = "production"
    # Honour the deprecated "Production" stage when the alias is missing (with a warning).
    stage_fallback: bool = True
    poll_interval_s: float = Field(10.0, gt=0, description="How often the registry is polled")


class ServerSettings(BaseSettings):
    model_config = _group("FS_")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1)


class PredictionSettings(BaseSettings):
    model_config = _group("FS_PREDICT_")

    max_items: int = Field(100, ge=1, description="Most items accepted in one prediction request")


class PredictionLogSettings(BaseSettings):
    model_config = _group("FS_LOG_")

    batch_size: int = Field(500, ge=1, description="Most rows written in one database insert")
    flush_interval_s: float = Field(0.2, gt=0, description="Longest wait before a partial batch")
    queue_max: int = Field(100_000, ge=1, description="Records held in memory before requests wait")


class PrivacySettings(BaseSettings):
    model_config = _group("FS_")

    subject_hmac_key: SecretStr = Field(
        SecretStr(DEV_PLACEHOLDER_SECRET),
        description="Key of the HMAC that replaces raw subject ids before anything is stored",
    )


class TrainingSettings(BaseSettings):
    model_config = _group("FS_TRAIN_")

    rows: int = Field(20_000, ge=100)
    seed: int = 42
    algorithm: str = "random_forest"
    n_estimators: int = Field(100, ge=1)
    test_size: float = Field(0.2, gt=0, lt=1)
    reference_rows: int = Field(5_000, ge=10, description="Rows of training data kept for drift")


class DriftSettings(BaseSettings):
    model_config = _group("FS_DRIFT_")

    share_threshold: float = Field(0.5, gt=0, le=1, description="Share of drifted features that is dataset drift")
    methods: dict[str, str] = Field(default_factory=dict, description="Per-feature test, e.g. {\"trend_score\": \"psi\"}")
    thresholds: dict[str, float] = Field(default_factory=dict, description="Per-feature threshold")
    default_window: str = Field("24h", description="Window of GET /v1/drift without start/end/last")
    max_current_rows: int = Field(500_000, ge=100, description="Larger windows are sampled down to this")
    evidently_timeout_s: float = Field(300.0, gt=0, description="Slower Evidently runs fall back to native")
    check_enabled: bool = True
    check_interval_s: float = Field(3600.0, gt=0, description="Periodic drift check (first run after one interval)")
    check_window: str = "24h"
    check_engine: Literal["native", "evidently"] = "native"

    @model_validator(mode="after")
    def _known_methods_and_features(self) -> DriftSettings:
        from app.ml.features import FEATURE_NAMES, NUMERIC
        from app.services.monitoring.stats import METHODS, NUMERIC_ONLY
        from app.services.monitoring.windows import is_duration

        for feature in (*self.methods, *self.thresholds):
            if feature not in FEATURE_NAMES:
                raise ValueError(f"FS_DRIFT_METHODS/THRESHOLDS name an unknown feature: {feature}")
        for feature, method in self.methods.items():
            if method not in METHODS:
                raise ValueError(f"unknown drift method {method!r}; choose from {', '.join(METHODS)}")
            if method in NUMERIC_ONLY and feature not in NUMERIC:
                raise ValueError(f"drift method {method!r} needs a numeric feature, not {feature}")
        for name in ("default_window", "check_window"):
            if not is_duration(getattr(self, name)):
                raise ValueError(f"FS_DRIFT_{name.upper()} must be a duration such as 24h")
        return self


class HealthSettings(BaseSettings):
    model_config = _group("FS_HEALTH_")

    min_accuracy: float = Field(0.70, ge=0, le=1, description="Lower accuracy is degraded")
    max_accuracy_decline: float = Field(0.05, ge=0, description="A larger decline is a warning")
    p95_latency_ms: float = Field(500.0, gt=0, description="Higher p95 prediction latency is a warning")
    max_log_backlog_s: float = Field(60.0, gt=0, description="Older unwritten predictions are a warning")
    window: str = Field("7d", description="Feedback window of the accuracy checks")
    bucket: str = Field("1d", description="Bucket of the accuracy trend")
    latency_window: str = Field("1h", description="Window of the latency check")
    min_feedback: int = Field(20, ge=1, description="Fewer feedback rows: accuracy checks are skipped")
    drift_max_age: str = Field("48h", description="Older drift reports are not used by the drift check")
    trend_tolerance: float = Field(0.02, ge=0, description="Accuracy changes within this are stable")

    @model_validator(mode="after")
    def _durations(self) -> HealthSettings:
        from app.services.monitoring.windows import is_duration

        for name in ("window", "bucket", "latency_window", "drift_max_age"):
            if not is_duration(getattr(self, name)):
                raise ValueError(f"FS_HEALTH_{name.upper()} must be a duration such as 7d")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FS_", extra="ignore", env_file=None)

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path("./var")
    log_level: str = "INFO"
    log_json: bool = False
    mlflow_tracking_uri: str | None = Field(
        None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "mlflow_tracking_uri")
    )
    mlflow_registry_uri: str | None = Field(
        None, validation_alias=AliasChoices("MLFLOW_REGISTRY_URI", "mlflow_registry_uri")
    )
    database_url: str | None = Field(
        None, validation_alias=AliasChoices("DATABASE_URL", "database_url")
    )

    model: ModelSettings = Field(default_factory=ModelSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    predict: PredictionSettings = Field(default_factory=PredictionSettings)
    log: PredictionLogSettings = Field(default_factory=PredictionLogSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @model_validator(mode="after")
    def _no_placeholder_secrets_in_production(self) -> Settings:
        if self.environment == "production":
            if self.privacy.subject_hmac_key.get_secret_value() == DEV_PLACEHOLDER_SECRET:
                raise ValueError("FS_SUBJECT_HMAC_KEY must be set to a real secret in production")
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
    def model_cache_dir(self) -> Path:
        return self.data_dir / "model-cache"

    def ensure_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
