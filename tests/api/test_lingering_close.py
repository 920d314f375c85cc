"""Ordinary clients sending a body over the limit read the 413 (lingering close), on a real server.

http.client, requests and curl write the whole body before reading: a server that answers and
closes at once resets the connection under them (broken pipe / connection reset).
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess

import httpx
import pytest
import requests

from tests.support.live_server import LiveServer

pytestmark = pytest.mark.slow
BIG = b'{"items": [' + b" " * (5 * 1024 * 1024) + b"]}"  # 5 MB, the limit is 1 MiB


@pytest.fixture(scope="module")
def live(registry_dir, tmp_path_factory):
    db = tmp_path_factory.mktemp("linger") / "p.db"
    server = LiveServer(registry_dir, f"sqlite:///{db}").start()
    yield server
    assert server.stop() == 0, server.output
    assert "Traceback" not in server.output, server.output


def _post(live, path: str, chunked: bool, content_type: str = "application/json"):
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)
    try:
        if chunked:  # no Content-Length: the limit is found while the body streams in
            chunks = (BIG[i:i + 65536] for i in range(0, len(BIG), 65536))
            conn.request("POST", path, body=chunks, encode_chunked=True,
                         headers={"Content-Type": content_type})
        else:
            conn.request("POST", path, body=BIG, headers={"Content-Type": content_type})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_http_client_reads_the_413(live, chunked):
    status, body = _post(live, "/v1/predictions", chunked)
    assert status == 413
    assert body["error"]["code"] == "payload_too_large"
    status, body = _post(live, "/invocations", chunked)
    assert status == 413
    assert body["error_code"] == "BAD_REQUEST" and "exceeds" in body["message"]


def test_requests_httpx_and_curl_read_the_413(live):
    headers = {"Content-Type": "application/json"}
    for response in (
        requests.post(f"{live.base_url}/v1/predictions", data=BIG, timeout=30, headers=headers),
        httpx.post(f"{live.base_url}/v1/predictions", content=BIG, timeout=30, headers=headers),
    ):
        assert response.status_code == 413, response.text
        assert response.json()["error"]["code"] == "payload_too_large"
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    # Without Expect: 100-continue curl writes the body first, like the clients above.
    out = subprocess.run(
        [curl, "-sS", "-H", "Content-Type: application/json", "-H", "Expect:",
         "--data-binary", "@-", f"{live.base_url}/v1/predictions"],
        input=BIG, capture_output=True, timeout=60, check=True,
    )
    assert json.loads(out.stdout)["error"]["code"] == "payload_too_large"
    # With Expect: 100-continue (curl's default for a large body) the 413 comes instead of the 100
    # and the body is never sent.
    expecting = subprocess.run(
        [curl, "-sS", "-H", "Content-Type: application/json", "--data-binary", "@-",
         "-w", "\n%{size_upload}", f"{live.base_url}/v1/predictions"],
        input=BIG, capture_output=True, timeout=60, check=True,
    )
    answer, uploaded = expecting.stdout.rsplit(b"\n", 1)
    assert json.loads(answer)["error"]["code"] == "payload_too_large"
    assert int(uploaded) < len(BIG)
    # The server is fine afterwards.
    assert requests.get(f"{live.base_url}/health/ready", timeout=10).status_code == 200
