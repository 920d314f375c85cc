"""Human oversight through the real app, on SQLite and Postgres: the review flag (response, stored
row, every protocol, the metric), reviews (accept, override, refusals, tokens), reviews in the
logged prediction, the review queue, and the final decisions' figures in performance."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from app.config import AdminSettings, OversightSettings, Settings, SpoolSettings
from app.db.engine import create_engine
from app.db.tables import Prediction, PredictionReview
from app.ml.features import FEATURES, LEVELS
from app.prediction_log.records import decode
from tests.support.factories import valid_items
from tests.support.running_app import RunningApp
from tests.support.settings import make_settings

REVIEWER = "tok-reviewer-bob-1"
ADMIN = "tok-admin-alice-1"
BOB = {"Authorization": f"Bearer {REVIEWER}"}
ALICE = {"Authorization": f"Bearer {ADMIN}"}
_V2_TYPES = {"categorical": "BYTES", "integer": "INT64", "float": "FP64"}


def _settings(registry_dir: Path, tmp_path: Path, db_url: str, threshold: float) -> Settings:
    return make_settings(
        registry_dir, database_url=db_url,
        spool=SpoolSettings(dir=tmp_path / "spool", drain_interval_s=0.05),
        admin=AdminSettings(admin_tokens={"alice": ADMIN}),
        oversight=OversightSettings(reviewer_tokens={"bob": REVIEWER},
                                    review_confidence_threshold=threshold),
    )


async def _drained(app: RunningApp) -> None:
    log = app.container.prediction_log
    for _ in range(300):
        if not log.pending_count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the spool did not drain")


async def _stored_flags(db_url: str) -> dict[str, tuple[bool, str]]:
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(
                select(Prediction.id, Prediction.needs_review, Prediction.protocol))).all()
    finally:
        await engine.dispose()
    return {str(r.id): (r.needs_review, r.protocol) for r in rows}


def _v2_body(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"inputs": [{"name": f.name, "datatype": _V2_TYPES[f.kind], "shape": [len(rows), 1],
                        "data": [r[f.name] for r in rows]} for f in FEATURES]}


async def test_low_confidence_is_flagged_in_the_response_the_row_and_the_metric(
    registry_dir, tmp_path, db_url
):
    threshold = 0.6
    app = RunningApp(_settings(registry_dir, tmp_path, db_url, threshold))
    async with app as client:
        response = await client.post("/v1/predictions", json={"items": valid_items(60)})
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        flags = {p["prediction_id"]: p["needs_review"] for p in predictions}
        for p in predictions:
            assert p["needs_review"] is (max(p["probabilities"].values()) < threshold)
        assert 0 < sum(flags.values()) < len(flags)  # both kinds, so the comparison is seen working
        # The other protocols keep their shapes; their records are flagged all the same.
        mlflow = await client.post("/invocations", json={"dataframe_records": valid_items(20, seed=3)})
        assert mlflow.status_code == 200 and set(mlflow.json()) == {"predictions"}
        assert all(isinstance(p, str) for p in mlflow.json()["predictions"])
        v2 = await client.post("/v2/models/future-skills-model/infer", json=_v2_body(valid_items(20, seed=4)))
        assert v2.status_code == 200, v2.text
        assert {o["name"] for o in v2.json()["outputs"]} == {"label", "probabilities"}
        v2_proba = next(o for o in v2.json()["outputs"] if o["name"] == "probabilities")["data"]
        v2_flagged = sum(max(v2_proba[i:i + 3]) < threshold for i in range(0, len(v2_proba), 3))

        shown = (await client.get(f"/v1/predictions/{predictions[0]['prediction_id']}")).json()
        assert shown["needs_review"] is predictions[0]["needs_review"]  # from the spool or the db
        await _drained(app)
        metrics = (await client.get("/metrics")).text
    stored = await _stored_flags(db_url)
    assert {pid: stored[pid][0] for pid in flags} == flags
    by_protocol = {proto: sum(f for f, p in stored.values() if p == proto) for proto in ("mlflow", "v2")}
    assert by_protocol["v2"] == v2_flagged
    flagged_total = sum(flags.values()) + by_protocol["mlflow"] + v2_flagged
    line = next(x for x in metrics.splitlines() if x.startswith("fs_predictions_flagged_total{"))
    assert float(line.rsplit(" ", 1)[1]) == flagged_total


def test_a_spool_line_written_before_the_flag_still_decodes():
    line = orjson.dumps({
        "id": str(uuid.uuid4()), "created_at": "2026-11-30T10:00:00+00:00", "model_name": "m",
        "model_version": "1", "features": {}, "level": "LOW",
        "probabilities": {"LOW": 0.9, "MEDIUM": 0.05, "HIGH": 0.05}, "score": 7.5,
        "latency_ms": 1.0, "request_id": None, "protocol": "v1", "subject_hash": None,
    })
    assert decode(line)["needs_review"] is False


async def _predict(client: httpx.AsyncClient, n: int, seed: int = 11) -> list[dict[str, Any]]:
    response = await client.post("/v1/predictions", json={"items": valid_items(n, seed=seed)})
    assert response.status_code == 200, response.text
    predictions: list[dict[str, Any]] = response.json()["predictions"]
    return predictions


def _other(level: str) -> str:
    return next(x for x in LEVELS if x != level)


async def test_reviews_accept_override_refusals_and_the_queue(registry_dir, tmp_path, db_url):
    app = RunningApp(_settings(registry_dir, tmp_path, db_url, threshold=1.0))
    async with app as client:
        made = [p for p in await _predict(client, 12) if p["needs_review"]]
        assert len(made) >= 5
        first, second = made[0], made[1]
        pid = first["prediction_id"]
        url = f"/v1/predictions/{pid}/reviews"
        accept = {"decision": "accept", "reason": "matches the team's staffing plan"}

        # Who: no token 401, a token of no one 403 (never echoed), a reviewer or an admin.
        assert (await client.post(url, json=accept)).status_code == 401
        wrong = await client.post(url, json=accept, headers={"Authorization": "Bearer not-a-token-x"})
        assert wrong.status_code == 403 and "not-a-token-x" not in wrong.text
        assert (await client.get("/v1/reviews/queue")).status_code == 401
        assert (await client.get("/v1/reviews/queue", headers={"Authorization": "Bearer nope-nope"})
                ).status_code == 403

        # Refused input: 422 naming the field, never echoing the value.
        secret = "SECRET-VALUE-42"
        bad_bodies = {
            "level": {**accept, "level": _other(first["level"])},  # accept takes no level
            "decision": {"decision": secret, "reason": "x"},
        }
        for field, body in bad_bodies.items():
            refused = await client.post(url, json=body, headers=BOB)
            assert refused.status_code == 422, (field, refused.text)
            assert refused.json()["error"]["details"][0]["field"] == field and secret not in refused.text
        for body, field in [
            ({"decision": "override", "reason": "r"}, "level"),  # override needs a level
            ({"decision": "override", "level": first["level"], "reason": "r"}, "level"),  # same level
            ({"decision": "accept", "reason": "   "}, "reason"),
            ({"decision": "accept", "reason": ""}, "reason"),
            ({"decision": "accept", "reason": "x" * 2001}, "reason"),
            ({"decision": "accept", "reason": f"{secret}\x00"}, "reason"),
            ({"decision": "accept"}, "reason"),
            ({**accept, "extra": secret}, "extra"),
        ]:
            refused = await client.post(url, json=body, headers=BOB)
            assert refused.status_code == 422, (body, refused.text)
            assert refused.json()["error"]["details"][0]["field"] == field, refused.text
            assert secret not in refused.text
        unknown = await client.post(f"/v1/predictions/{uuid.uuid4()}/reviews", json=accept, headers=BOB)
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "prediction_not_found"

        # Accept by a reviewer, then an override by an admin: append-only, the latest is final.
        # (Submitted at once, so the prediction may still be in the spool: it is found there.)
        accepted = await client.post(url, json=accept, headers=BOB)
        assert accepted.status_code == 201, accepted.text
        body = accepted.json()
        assert (body["prediction_id"], body["reviewer"], body["decision"], body["level"]) == (
            pid, "bob", "accept", first["level"])
        assert body["reason"] == accept["reason"] and body["id"] and body["created_at"]
        new_level = _other(first["level"])
        override = {"decision": "override", "level": new_level, "reason": "role is being phased out"}
        overridden = await client.post(url, json=override, headers=ALICE)
        assert overridden.status_code == 201, overridden.text
        assert overridden.json()["reviewer"] == "admin:alice"
        assert overridden.json()["level"] == new_level

        shown = (await client.get(f"/v1/predictions/{pid}")).json()
        assert shown["needs_review"] is True and shown["level"] == first["level"]
        assert [r["decision"] for r in shown["reviews"]] == ["accept", "override"]
        assert [r["reviewer"] for r in shown["reviews"]] == ["bob", "admin:alice"]
        assert shown["final_level"] == new_level
        plain = (await client.get(f"/v1/predictions/{second['prediction_id']}")).json()
        assert plain["reviews"] == [] and plain["final_level"] == second["level"]

        # The queue: flagged and unreviewed, oldest first, paged; a reviewed one has left it.
        await _drained(app)
        # One request's predictions share created_at; the id breaks the tie (uuid order).
        waiting = sorted((p["prediction_id"] for p in made[1:]), key=uuid.UUID)
        page = await client.get("/v1/reviews/queue", params={"limit": 2}, headers=BOB)
        assert page.status_code == 200, page.text
        body = page.json()
        assert body["pending"] == len(waiting)
        assert [i["prediction_id"] for i in body["items"]] == waiting[:2]
        item = body["items"][0]
        made_first = next(p for p in made if p["prediction_id"] == item["prediction_id"])
        assert item["level"] == made_first["level"]
        assert item["probabilities"] == made_first["probabilities"]
        assert item["confidence"] == max(made_first["probabilities"].values())
        assert item["model_name"] == "future-skills-model" and item["model_version"]
        seen, after = [], None
        while True:
            params: dict[str, Any] = {"limit": 2} | ({"after": after} if after else {})
            body = (await client.get("/v1/reviews/queue", params=params, headers=ALICE)).json()
            seen += [i["prediction_id"] for i in body["items"]]
            if (after := body["next_after"]) is None:
                break
        assert seen == waiting
        review = {"decision": "accept", "reason": "fine"}
        assert (await client.post(f"/v1/predictions/{waiting[0]}/reviews", json=review,
                                  headers=BOB)).status_code == 201
        body = (await client.get("/v1/reviews/queue", headers=BOB)).json()
        assert [i["prediction_id"] for i in body["items"]] == waiting[1:]
        assert body["pending"] == len(waiting) - 1 and body["next_after"] is None
        # A cursor that names no prediction, and a limit out of range: 422.
        for params in ({"after": str(uuid.uuid4())}, {"limit": 0}, {"limit": 501}, {"after": "x"}):
            refused = await client.get("/v1/reviews/queue", params=params, headers=BOB)
            assert refused.status_code == 422, (params, refused.text)
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            stored = (await conn.execute(select(PredictionReview.reviewer, PredictionReview.decision)
                                         .order_by(PredictionReview.created_at))).all()
    finally:
        await engine.dispose()
    assert [tuple(r) for r in stored] == [("bob", "accept"), ("admin:alice", "override"),
                                          ("bob", "accept")]


async def test_performance_reports_the_final_decisions_next_to_the_model(registry_dir, tmp_path, db_url):
    app = RunningApp(_settings(registry_dir, tmp_path, db_url, threshold=0.5))
    async with app as client:
        made = await _predict(client, 4, seed=21)
        right, right2, wrong, wrong2 = made
        actual = {p["prediction_id"]: p["level"] for p in (right, right2)}
        actual |= {p["prediction_id"]: _other(p["level"]) for p in (wrong, wrong2)}
        for pid, level in actual.items():
            sent = await client.post(f"/v1/predictions/{pid}/feedback", json={"actual_level": level})
            assert sent.status_code == 200, sent.text
        reviews = [
            (right, {"decision": "accept", "reason": "agreed"}),
            (wrong, {"decision": "override", "level": actual[wrong["prediction_id"]], "reason": "known"}),
        ]
        for prediction, body in reviews:
            sent = await client.post(f"/v1/predictions/{prediction['prediction_id']}/reviews",
                                     json=body, headers=BOB)
            assert sent.status_code == 201, sent.text
        await _drained(app)
        report = (await client.get("/v1/performance", params={"last": "1d", "bucket": "1d"})).json()
    assert report["overall"]["feedback"] == 4 and report["overall"]["accuracy"] == pytest.approx(0.5)
    final = report["final_decisions"]
    assert final["feedback"] == 4 and final["accuracy"] == pytest.approx(0.75)
    assert (final["reviewed"], final["overridden"]) == (2, 1)
    assert set(final) == {"feedback", "accuracy", "f1_macro", "recall", "reviewed", "overridden"}
