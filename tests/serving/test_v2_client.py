"""A real V2 client (tritonclient.http) against the real service process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from app.ml.features import FEATURES, LEVELS
from tests.support.factories import valid_items
from tests.support.procs import free_port, running

CLI = [sys.executable, "-m", "app.cli"]
MODEL = "future-skills-model"
NUMPY = {"BYTES": np.object_, "INT64": np.int64, "FP64": np.float64}


@pytest.fixture(scope="module")
def service(registry_dir: Path, tmp_path_factory) -> str:
    """``future-skills serve`` on a free port: the shared registry, a database of its own."""
    db = tmp_path_factory.mktemp("v2") / "p.db"
    hidden = ("FS_", "MLFLOW_TRACKING", "DATABASE_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(hidden)}
    env |= {"FS_DATA_DIR": str(registry_dir), "DATABASE_URL": f"sqlite:///{db}", "FS_WORKERS": "1",
            "MLFLOW_DISABLE_TELEMETRY": "true"}
    subprocess.run([*CLI, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    port = free_port()
    with running([*CLI, "serve", "--port", str(port)], env, f"http://127.0.0.1:{port}/health/ready"):
        yield f"127.0.0.1:{port}"


def _inputs(client_rows: list[dict], metadata: dict, binary: bool) -> list[triton.InferInput]:
    inputs = []
    for tensor in metadata["inputs"]:
        name, datatype = tensor["name"], tensor["datatype"]
        values = np.array([[row[name]] for row in client_rows], dtype=NUMPY[datatype])
        tensor_input = triton.InferInput(name, list(values.shape), datatype)
        tensor_input.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor_input)
    return inputs


def _hr_api(host: str, rows: list[dict]) -> list[dict]:
    response = httpx.post(f"http://{host}/v1/predictions", json={"items": rows}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


@pytest.mark.slow
@pytest.mark.parametrize("binary", [False, True], ids=["json-tensors", "binary-tensors"])
def test_triton_client_health_metadata_and_infer(service: str, binary: bool):
    client = triton.InferenceServerClient(url=service)
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready(MODEL)
        assert client.is_model_ready(MODEL, model_version="1")
        assert not client.is_model_ready(MODEL, model_version="2")
        assert not client.is_model_ready("no-such-model")
        assert client.get_server_metadata()["extensions"] == ["binary_tensor_data"]

        metadata = client.get_model_metadata(MODEL)
        assert metadata["versions"] == ["1"]
        expected_types = {"categorical": "BYTES", "integer": "INT64", "float": "FP64"}
        assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["inputs"]] == [
            (f.name, expected_types[f.kind], [-1, 1]) for f in FEATURES
        ]
        assert {o["name"] for o in metadata["outputs"]} == {"label", "probabilities"}
        assert client.get_model_metadata(MODEL, model_version="1") == metadata

        rows = valid_items(25, seed=31)
        outputs = [
            triton.InferRequestedOutput(name, binary_data=binary) for name in ("label", "probabilities")
        ]
        result = client.infer(
            MODEL, _inputs(rows, metadata, binary), request_id="req-42", outputs=outputs
        )
        response = result.get_response()
        assert response["id"] == "req-42"
        assert (response["model_name"], response["model_version"]) == (MODEL, "1")
        labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label").tolist()]
        proba = result.as_numpy("probabilities")
        assert proba.shape == (25, 3)

        reference = _hr_api(service, rows)
        assert labels == [p["level"] for p in reference]
        expected = np.array([[p["probabilities"][level] for level in LEVELS] for p in reference])
        np.testing.assert_allclose(proba, expected, rtol=0, atol=1e-12)

        # No outputs named: tritonclient asks for every output in binary form.
        by_version = client.infer(MODEL, _inputs(rows[:3], metadata, binary), model_version="1")
        assert by_version.get_response()["id"]  # generated when the request has none
        np.testing.assert_allclose(by_version.as_numpy("probabilities"), expected[:3], atol=1e-12)

        with pytest.raises(InferenceServerException) as not_loaded:
            client.infer(MODEL, _inputs(rows[:1], metadata, binary), model_version="2")
        assert "version 2 is not loaded" in str(not_loaded.value)
    finally:
        client.close()


@pytest.mark.slow
def test_v2_errors_on_the_wire(service: str):
    base = f"http://{service}/v2"
    rows = valid_items(2, seed=3)
    good = [
        {"name": f.name, "shape": [2, 1], "data": [r[f.name] for r in rows],
         "datatype": {"categorical": "BYTES", "integer": "INT64", "float": "FP64"}[f.kind]}
        for f in FEATURES
    ]
    cases = {
        "not json": (b"{", 400),
        "no inputs": (b'{"id": "a"}', 400),
        "missing input": ({"inputs": good[1:]}, 400),
        "wrong datatype": ({"inputs": [dict(good[0], datatype="FP64"), *good[1:]]}, 400),
        "shape mismatch": ({"inputs": [dict(good[0], shape=[3, 1]), *good[1:]]}, 400),
        "out of range": ({"inputs": [*good[:5], dict(good[5], data=[0.5, 7.0]), *good[6:]]}, 400),
    }
    for label, (body, status) in cases.items():
        kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
        response = httpx.post(f"{base}/models/{MODEL}/infer", timeout=10, **kwargs)
        assert response.status_code == status, label
        assert set(response.json()) == {"error"}, label
        assert "7.0" not in response.json()["error"]
    unknown = httpx.post(f"{base}/models/other/infer", json={"inputs": good}, timeout=10)
    assert unknown.status_code == 404 and "error" in unknown.json()
    assert httpx.get(f"{base}/models/{MODEL}/versions/9", timeout=10).status_code == 404
