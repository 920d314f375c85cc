"""The decision record: one document with everything about one prediction, through the real app."""

from __future__ import annotations

import asyncio
import uuid

from app.config import AdminSettings, OversightSettings
from app.ml.features import LEVELS
from tests.support.factories import valid_items
from tests.support.models import registry_for
from tests.support.running_app import RunningApp
from tests.support.settings import make_settings

REVIEWER = "tok-reviewer-carol-1"


async def test_the_record_holds_input_output_model_explanation_reviews_and_feedback(
        registry_dir, tmp_path):
    settings = make_settings(
        registry_dir, database_url=f"sqlite+aiosqlite:///{tmp_path / 'p.db'}",
        admin=AdminSettings(admin_tokens={"alice": "tok-admin-alice-1"}),
        oversight=OversightSettings(reviewer_tokens={"carol": REVIEWER}),
    )
    item = valid_items(1, seed=5)[0]
    async with RunningApp(settings) as client:
        made = await client.post("/v1/predictions", json={"items": [item], "subject_id": "emp-77"},
                                 headers={"X-Request-ID": "req-record-1"})
        assert made.status_code == 200, made.text
        prediction = made.json()["predictions"][0]
        pid = prediction["prediction_id"]
        for actual in ("LOW", "HIGH"):
            assert (await client.post(f"/v1/predictions/{pid}/feedback",
                                      json={"actual_level": actual})).status_code == 200
            await asyncio.sleep(0.01)
        other = next(level for level in LEVELS if level != prediction["level"])
        review = await client.post(
            f"/v1/predictions/{pid}/reviews", headers={"Authorization": f"Bearer {REVIEWER}"},
            json={"decision": "override", "level": other, "reason": "the role is being phased out"})
        assert review.status_code == 201, review.text

        response = await client.get(f"/v1/predictions/{pid}/record")
        assert response.status_code == 200, response.text
        record = response.json()
        version = registry_for(settings).resolve(settings.model.name, settings.model.alias)

    assert record["prediction_id"] == pid and record["request_id"] == "req-record-1"
    assert record["protocol"] == "v1" and record["subject_pseudonymized"] is True
    assert "emp-77" not in response.text  # the raw subject id is never stored, so never shown
    assert record["input"] == {k: item[k] for k in record["input"]} and len(record["input"]) == 12
    assert record["output"]["level"] == prediction["level"]
    assert record["output"]["probabilities"] == prediction["probabilities"]
    assert record["model"] == {"name": version.name, "version": version.version,
                               "semver": version.semver, "run_id": version.run_id, "note": None}
    assert [r["level"] for r in record["reviews"]] == [other] and record["final_level"] == other
    assert record["reviews"][0]["reviewer"] == "carol"
    assert [f["actual_level"] for f in record["feedback"]] == ["LOW", "HIGH"]  # oldest first
    explanation = record["explanation"]
    assert record["explanation_note"] is None
    for level in LEVELS:  # additive: base value + contributions = the logged probability
        total = explanation["base_values"][level] + sum(
            c["contributions"][level] for c in explanation["contributions"])
        assert abs(total - prediction["probabilities"][level]) < 1e-6


async def test_an_unknown_prediction_has_no_record(client):
    response = await client.get(f"/v1/predictions/{uuid.uuid4()}/record")
    assert response.status_code == 404 and response.json()["error"]["code"] == "prediction_not_found"
