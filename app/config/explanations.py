"""Settings of explanations (docs/explanations.md): the inline limit and the engines kept."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from app.config.base import group


class ExplanationSettings(BaseSettings):
    """Explanations of predictions (docs/explanations.md)."""

    model_config = group("FS_EXPLAIN_")

    max_items: int = Field(
        default=10, ge=1,
        description="Most items of one prediction request that asks for inline explanations "
        "(`\"explain\": true`); more is refused with 422",
    )
    cached_versions: int = Field(
        default=2, ge=1,
        description="Model versions whose TreeSHAP engine (about 30 MB for the demo forest) each "
        "worker keeps in memory, least recently used dropped first",
    )
    warm_up: bool = Field(
        default=False,
        description="Build the serving version's engine in the background at start-up, so the "
        "first explanation does not wait for it (about a second with the kernel cached, seconds "
        "more when it is not); off, a worker that explains nothing stays about 125 MiB smaller "
        "(numba, LLVM and the engine's arrays)",
    )
