"""Path and query parameters shared by several routes, held to the input-hygiene rule
(``app.serving.codecs.hygiene``): a NUL or a control character in a URL is a 4xx naming the parameter."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from app.serving.codecs.hygiene import SAFE_TEXT_PATTERN

ModelName = Annotated[
    str, Path(max_length=200, pattern=SAFE_TEXT_PATTERN, description="Registered model name")
]
VersionPath = Annotated[
    str, Path(max_length=50, pattern=SAFE_TEXT_PATTERN, description="Registry version number")
]
VersionQuery = Annotated[
    str | None,
    Query(max_length=50, pattern=SAFE_TEXT_PATTERN, description="Only this model version"),
]
