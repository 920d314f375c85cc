"""docs/configuration.md and docs/api.md are generated from the code and must be up to date."""

from __future__ import annotations

from app.cli.reference_docs import main, rendered
from app.config import Settings


def test_committed_reference_docs_are_up_to_date():
    for path, text in rendered().items():
        assert path.exists(), f"{path} is missing; run: python -m app.cli.reference_docs"
        assert path.read_text() == text, f"{path.name} is stale; run: python -m app.cli.reference_docs"
    assert main(["--check"]) == 0


def test_configuration_reference_names_every_setting():
    text = rendered()
    config = next(t for p, t in text.items() if p.name == "configuration.md")
    for field in ("FS_DATA_DIR", "MLFLOW_TRACKING_URI", "DATABASE_URL", "FS_MODEL_POLL_INTERVAL_S",
                  "FS_WORKERS", "FS_SUBJECT_HMAC_KEY", "PROMETHEUS_MULTIPROC_DIR"):
        assert f"`{field}`" in config, field
    groups = [n for n, f in Settings.model_fields.items() if hasattr(f.annotation, "model_fields")]
    for group in groups:
        assert f"## `{group}`" in config, group


def test_api_reference_lists_every_operation():
    from app.main import create_app

    api = next(t for p, t in rendered().items() if p.name == "api.md")
    for path, operations in create_app(Settings()).openapi()["paths"].items():
        for method in operations:
            assert f"### `{method.upper()} {path}`" in api
