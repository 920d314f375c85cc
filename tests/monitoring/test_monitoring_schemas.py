"""The OpenAPI document names the body of every monitoring route, and the bodies fit it."""

from __future__ import annotations

from app.config import Settings
from app.main import create_app

JSON_BODIES = {
    ("/v1/drift", "get"): "DriftReportOut",
    ("/v1/performance", "get"): "PerformanceOut",
    ("/v1/models/{name}/health", "get"): "ModelHealthOut",
}


def test_every_monitoring_route_documents_its_body():
    spec = create_app(Settings()).openapi()
    for (path, method), model in JSON_BODIES.items():
        content = spec["paths"][path][method]["responses"]["200"]["content"]
        assert content == {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}}
    page = spec["paths"]["/v1/drift/report.html"]["get"]["responses"]
    assert page["200"]["content"] == {"text/html": {"schema": {"type": "string"}}}
    # Errors of the page are JSON, not HTML.
    assert "application/json" in page["422"]["content"]
    schemas = spec["components"]["schemas"]
    drift = schemas["DriftReportOut"]["properties"]
    for field in ("status", "min_rows", "reason", "drift_share", "dataset_drift", "fallback_reason"):
        assert field in drift, field
    assert set(schemas["DriftReportOut"]["required"]) == set(drift)  # every field always present
    assert schemas["DriftReportOut"]["properties"]["status"]["enum"] == ["ok", "insufficient_data"]
    check = schemas["HealthCheckOut"]
    assert set(check["required"]) == {"check", "status", "reason"}  # the figures vary per check
