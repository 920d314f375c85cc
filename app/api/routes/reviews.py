"""Human oversight over HTTP: reviews of predictions and the review queue (docs/oversight.md)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from app.api.admin_auth import ReviewerDep
from app.api.deps import ReviewsDep
from app.api.schemas.predictions import error_responses
from app.api.schemas.reviews import QueueItemOut, ReviewIn, ReviewOut, ReviewQueueOut
from app.oversight.queue import DEFAULT_LIMIT, MAX_LIMIT
from app.oversight.reviews import Review

router = APIRouter(tags=["reviews"], responses=error_responses(401, 403, 422, 503))


def review_out(review: Review) -> ReviewOut:
    return ReviewOut.model_validate(review, from_attributes=True)


@router.post(
    "/v1/predictions/{prediction_id}/reviews",
    status_code=201,
    response_model=ReviewOut,
    operation_id="submit_review",
    responses=error_responses(400, 404, 415),
)
async def submit_review(
    prediction_id: uuid.UUID, body: ReviewIn, reviewer: ReviewerDep, reviews: ReviewsDep
) -> ReviewOut:
    """A person's review of a prediction: accept the model's level, or override it with another.
    Append-only; the latest review is the final decision (shown by `GET /v1/predictions/{id}`)."""
    saved = await reviews.submit(
        prediction_id, reviewer=reviewer, decision=body.decision,
        level=body.level.value if body.level is not None else None, reason=body.reason,
    )
    return review_out(saved)


@router.get("/v1/reviews/queue", response_model=ReviewQueueOut, operation_id="get_review_queue")
async def get_review_queue(
    _: ReviewerDep,
    reviews: ReviewsDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page")] = DEFAULT_LIMIT,
    after: Annotated[uuid.UUID | None, Query(
        description="The last item's prediction_id of the previous page (its next_after)")] = None,
) -> ReviewQueueOut:
    """Predictions flagged needs_review that no one has reviewed yet, oldest first; an item leaves
    the queue with its first review."""
    page = await reviews.queue(limit=limit, after=after)
    return ReviewQueueOut(
        items=[QueueItemOut.model_validate(i, from_attributes=True) for i in page.items],
        pending=page.pending, next_after=page.next_after,
    )
