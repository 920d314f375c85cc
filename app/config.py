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


class LifecycleSettings(BaseSettings):
    """Promotion policy, hot reload and housekeeping (issue 3)."""

    model_config = _group("FS_LIFECYCLE_")

    metric: str = Field("f1_macro", description="Held-out metric a candidate must improve")
    min_improvement: float = Field(0.0, ge=0, description="Least absolute gain over Production")
    min_relative_improvement: float = Field(0.0, ge=0, description="Least gain as a fraction of Production's")
    allow_major: bool = Field(False, description="Let the policy promote a signature-changing version")
    set_legacy_stage: bool = Field(False, description="Also move the deprecated 'Production' stage")
    retry_failed_s: float = Field(60.0, gt=0, description="Wait before reloading a version that failed")
    keep_versions: int = Field(5, ge=1, description="Versions kept unarchived by 'models archive'")


def parse_admin_tokens(value: object) -> dict[str, SecretStr]:
    """``name:token,name2:token2`` or a JSON object ``{"name": "token"}``; names are what audits show."""
    import json

    if isinstance(value, dict):
        pairs = value.items()
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            pairs = json.loads(text).items()
        else:
            pairs = []
            for part in filter(None, (p.strip() for p in text.split(","))):
                name, sep, token = part.partition(":")
                if not sep or not name.strip() or not token.strip():
                    raise ValueError("FS_ADMIN_TOKENS entries must look like name:token")
                pairs.append((name.strip(), token.strip()))
    else:
        raise ValueError("FS_ADMIN_TOKENS must be 'name:token,...' or a JSON object")
    tokens = {}
    for name, token in pairs:
        secret = token if isinstance(token, SecretStr) else SecretStr(str(token))
        if len(secret.get_secret_value()) < 8:
            raise ValueError(f"admin token {name!r} is shorter than 8 characters")
        tokens[str(name)] = secret
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
    lifecycle: LifecycleSettings = Field(default_factory=LifecycleSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)

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
