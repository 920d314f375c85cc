"""Retention of the prediction log: how young a record may be and still be purged."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from app.config.base import group
from app.config.durations import Duration


class RetentionSettings(BaseSettings):
    model_config = group("FS_RETENTION_")

    min_age: Duration = Field(
        default=Duration("180d"),
        description="`db purge` refuses to delete records younger than this (six months: decisions "
        "stay traceable) unless given --force; `db erase-subject` is not bound by it",
    )
