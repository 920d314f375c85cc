"""Typed settings. One ``Settings`` object is built at the edge (CLI or app factory) and injected.

Groups are separate ``BaseSettings`` classes with their own env prefix, so ``FS_MODEL_NAME`` maps to
``settings.model.name`` and tests can build any group explicitly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


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


class BatchSettings(BaseSettings):
    """Adaptive micro-batching of concurrent prediction requests (app/services/batching.py)."""

    model_config = _group("FS_BATCH_")

    enabled: bool = Field(True, description="Predict concurrent requests' rows in one model call")
    max_rows: int = Field(256, ge=1, description="Most rows in one batched model call")
    max_wait_ms: float = Field(
        2.0, ge=0, description="Longest a request waits for company (only under concurrency)"
    )


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


class LimitsSettings(BaseSettings):
    """Protection of the request path: sizes, time and concurrency."""

    model_config = _group("FS_LIMIT_")

    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest request body (413 above)")
    max_in_flight: int = Field(256, ge=1, description="Predictions admitted at once per worker (503 above)")
    deadline_s: float = Field(10.0, gt=0, description="Longest a prediction may take (504 above)")
    shutdown_grace_s: float = Field(30.0, ge=0, description="Time in-flight requests get on SIGTERM")
    shutdown_delay_s: float = Field(
        0.0, ge=0, description="On SIGTERM, answer /health/ready with 503 this long before closing"
    )


class SecuritySettings(BaseSettings):
    model_config = _group("FS_")

    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Client API keys for prediction routes (X-API-Key); empty: no key needed",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list, description="Origins allowed by CORS")
    docs_enabled: bool = Field(True, description="Serve /docs and /openapi.json")

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value):
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

    rows: int = Field(20_000, ge=100)
    seed: int = 42
    algorithm: str = "random_forest"
    n_estimators: int = Field(100, ge=1)
    test_size: float = Field(0.2, gt=0, lt=1)
    reference_rows: int = Field(5_000, ge=10, description="Rows of training data kept for drift")


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
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
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
    def model_cache_dir(self) -> Path:
        return self.data_dir / "model-cache"

    def ensure_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
