"""Explanations of logged predictions: the JSON document and its waterfall chart."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import orjson
from fastapi import APIRouter, Depends, Request, Response

from app.api.admin_auth import require_client_key
from app.api.deps import ExplanationsDep
from app.api.schemas.explanations import ExplanationOut
from app.api.schemas.predictions import (
    PredictionRequest,
    answered_by,
    error_responses,
    json_error_responses,
)
from app.errors import InvalidInput
from app.serving.codecs.item import item_rows

if TYPE_CHECKING:
    from app.container import Container

router = APIRouter(
    prefix="/v1/predictions", tags=["explanations"], dependencies=[Depends(require_client_key)]
)

_ERRORS = (401, 403, 404, 409, 422, 503)


@router.get(
    "/{prediction_id}/explanation",
    response_model=ExplanationOut,
    operation_id="get_prediction_explanation",
    responses=error_responses(*_ERRORS),
)
async def get_explanation(prediction_id: uuid.UUID, explanations: ExplanationsDep) -> Response:
    """Exact TreeSHAP values of the version that made the prediction, per HR feature and class,
    with the top factors of the predicted level and one sentence. Computed on the first read and
    stored: later reads return the same document, even after the version is archived. 409
    `explanation_unavailable` when that version is not a random forest."""
    document = await explanations.explain_prediction(prediction_id)
    return Response(orjson.dumps(document), media_type="application/json")


@router.get(
    "/{prediction_id}/explanation.svg",
    response_class=Response,
    operation_id="get_prediction_explanation_chart",
    responses={
        200: {"description": "A waterfall chart of the predicted level: base value, each HR "
              "feature's contribution, the probability",
              "content": {"image/svg+xml": {"schema": {"type": "string"}}}},
        **json_error_responses(*_ERRORS),
    },
)
async def get_explanation_chart(prediction_id: uuid.UUID, explanations: ExplanationsDep) -> Response:
    """The explanation as an SVG waterfall chart."""
    return Response(await explanations.waterfall(prediction_id), media_type="image/svg+xml")


async def explained_predictions(body: PredictionRequest, request: Request, container: Container) -> Response:
    """``POST /v1/predictions`` with ``"explain": true``: the predictions, each with its
    explanation (stored like any other). Fewer items are allowed than without: each costs an
    explanation (tens of milliseconds of CPU)."""
    explanations = container.explanations
    limit = explanations.max_items
    if len(body.items) > limit:
        raise InvalidInput(
            f"too many items with explain: at most {limit} per request (FS_EXPLAIN_MAX_ITEMS)",
            [{"field": "items", "type": "too_long", "message": f"at most {limit} items with explain"}],
        )
    rows = item_rows(body.items)
    # A version that cannot be explained is refused before anything is predicted.
    await explanations.engine_for(container.slot.require())
    outcome = await container.predictions.predict(
        rows, request_id=request.scope["state"]["request_id"], protocol="v1", subject_id=body.subject_id,
    )
    documents = await explanations.explain_rows(outcome.model, rows, outcome.results)
    return Response(orjson.dumps({
        "model": answered_by(outcome, container.settings),
        "predictions": [
            {"prediction_id": r.prediction_id, "level": r.level, "score": r.score,
             "probabilities": r.probabilities, "needs_review": r.needs_review, "explanation": document}
            for r, document in zip(outcome.results, documents, strict=True)
        ],
    }), media_type="application/json")
