"""The prediction core owns what every protocol shares: one deadline, the subject HMAC, logging.

Built with ``container.build`` (serve=False) and a real model, or through the running app.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac

from app.config import LimitsSettings, Settings
from app.container import build
from app.db.migrate import upgrade
from app.prediction_log.records import PredictionRecord, encode
from app.serving.codecs.item import PredictionItem, item_rows
from tests.serving.test_protocols import MODEL, v2_body
from tests.support.factories import valid_items
from tests.support.running_app import RunningApp


async def test_one_deadline_for_every_protocol_counted_by_the_core(settings: Settings) -> None:
    # Far below the real model's time for 100 rows: every protocol must answer 504 in its shape.
    settings = settings.model_copy(update={"limits": LimitsSettings(deadline_s=1e-6)})
    running = RunningApp(settings)
    async with running as client:
        rows = valid_items(100)
        mlflow = await client.post("/invocations", json={"dataframe_records": rows})
        assert mlflow.status_code == 504
        assert mlflow.json()["error_code"] == "DEADLINE_EXCEEDED"
        v2 = await client.post(f"/v2/models/{MODEL}/infer", json=v2_body(rows))
        assert v2.status_code == 504
        assert "error" in v2.json()
        v1 = await client.post("/v1/predictions", json={"items": rows})
        assert v1.status_code == 504
        metrics = (await client.get("/metrics")).text
        # The core counts the deadline for every protocol (the routers used to enforce their own).
        for protocol in ("mlflow", "v2", "v1"):
            assert f'fs_requests_rejected_total{{protocol="{protocol}",reason="deadline"}} 1.0' in metrics
        await asyncio.sleep(0.5)  # the shielded predictions finish and give their slots back
        assert running.container.admission.in_flight == 0


async def test_the_core_stores_the_subject_as_its_hmac(settings: Settings) -> None:
    await upgrade(settings.db_url)
    async with build(settings) as container:
        await container.prediction_log.start()
        await container.predictions.start()
        try:
            await container.slot.load_production()
            outcome = await container.predictions.predict(valid_items(1), subject_id="employee-42")
            # The core builds each record's row itself: it is a whole PredictionRecord's row,
            # and its spool line is the record's own encoding, byte for byte. (Still pending:
            # the drainer cannot have run since the record was added.)
            pending = container.prediction_log.buffer.get(outcome.results[0].prediction_id)
            assert pending is not None and pending.row is not None
            assert pending.line == encode(PredictionRecord(**pending.row))
            anonymous = await container.predictions.predict(valid_items(1))
            logged = await container.predictions.get(outcome.results[0].prediction_id)
            unnamed = await container.predictions.get(anonymous.results[0].prediction_id)
        finally:
            await container.predictions.stop()
            await container.prediction_log.stop()
    key = settings.privacy.subject_hmac_key.get_secret_value().encode()
    assert logged["subject_hash"] == hmac.new(key, b"employee-42", hashlib.sha256).hexdigest()
    assert unnamed["subject_hash"] is None


def test_item_rows_are_what_model_dump_gives() -> None:
    # The prediction routes read validated items from __dict__: that holds only while the item
    # model stays flat and plain (no aliases, serializers or nested models).
    items = [PredictionItem.model_validate(row) for row in valid_items(5)]
    rows = item_rows(items)
    assert rows == [item.model_dump() for item in items]
    assert [list(row) for row in rows] == [list(item.model_dump()) for item in items]  # field order
    rows[0]["skill"] = "changed"
    assert items[0].skill != "changed"  # copies: the core may not alter the request's items
