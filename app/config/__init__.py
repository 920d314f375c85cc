"""Typed settings. One ``Settings`` object is built at the edge (CLI or app factory) and injected.

Groups are separate ``BaseSettings`` classes with their own env prefix, so ``FS_MODEL_NAME`` maps to
``settings.model.name`` and tests can build any group explicitly. Each group lives in the module of
its area (``serving``, ``access``, ``lifecycle``, ``monitoring``); all are importable from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.config.access import AdminSettings, SecuritySettings, parse_admin_tokens
from app.config.base import DEV_PLACEHOLDER_SECRET
from app.config.durations import Duration, InvalidDuration, parse_duration
from app.config.explanations import ExplanationSettings
from app.config.improvement import ChallengerSettings, RetrainSettings
from app.config.lifecycle import LifecycleSettings, TrainingSettings
from app.config.monitoring import (
    DRIFT_METHODS,
    NUMERIC_ONLY_DRIFT_METHODS,
    DriftSettings,
    HealthSettings,
    MonitoringSettings,
)
from app.config.oversight import OversightSettings
from app.config.retention import RetentionSettings
from app.config.serving import (
    BatchSettings,
    LimitsSettings,
    ModelSettings,
    PredictionSettings,
    PrivacySettings,
    ServerSettings,
    SpoolSettings,
)

__all__ = [
    "DEV_PLACEHOLDER_SECRET",
    "DRIFT_METHODS",
    "NUMERIC_ONLY_DRIFT_METHODS",
    "AdminSettings",
    "BatchSettings",
    "ChallengerSettings",
    "DriftSettings",
    "Duration",
    "ExplanationSettings",
    "HealthSettings",
    "InvalidDuration",
    "LifecycleSettings",
    "LimitsSettings",
    "ModelSettings",
    "MonitoringSettings",
    "OversightSettings",
    "PredictionSettings",
    "PrivacySettings",
    "RetentionSettings",
    "RetrainSettings",
    "SecuritySettings",
    "ServerSettings",
    "Settings",
    "SpoolSettings",
    "TrainingSettings",
    "parse_admin_tokens",
    "parse_duration",
]

_ASYNC_DRIVERS = {
    "postgresql://": "postgresql+asyncpg://",
    "postgres://": "postgresql+asyncpg://",
    "sqlite://": "sqlite+aiosqlite://",
}


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
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    lifecycle: LifecycleSettings = Field(default_factory=LifecycleSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    explain: ExplanationSettings = Field(default_factory=ExplanationSettings)
    oversight: OversightSettings = Field(default_factory=OversightSettings)
    challenger: ChallengerSettings = Field(default_factory=ChallengerSettings)
    retrain: RetrainSettings = Field(default_factory=RetrainSettings)

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
