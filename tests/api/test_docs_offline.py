"""/docs and /redoc work on a machine without internet: every asset comes from the service."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.support.live_server import LiveServer

_ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*'([^']+)'|spec-url=["']([^"']+)["']""")
TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_pages_reference_only_local_assets_that_answer(client, page):
    response = await client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "http://" not in html and "https://" not in html, "an asset from elsewhere"
    urls = {next(g for g in m.groups() if g) for m in _ASSET.finditer(html)}
    assert "/openapi.json" in urls and len(urls) >= 3, urls
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        suffix = next(s for s in TYPES if url.endswith(s))
        assert TYPES[suffix] in asset.headers["content-type"], (url, asset.headers["content-type"])


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_swagger_ui_and_redoc_render_the_operations_with_no_network(registry_dir, tmp_path):
    server = LiveServer(registry_dir, f"sqlite:///{tmp_path / 'p.db'}").start()
    try:
        swagger, redoc = (_rendered(f"{server.base_url}{page}", tmp_path) for page in ("/docs", "/redoc"))
    finally:
        assert server.stop() == 0, server.output
    # Both built the page from /openapi.json: Swagger UI's operation blocks, ReDoc's operations.
    assert swagger.count('class="opblock ') >= 20, swagger[:2000]
    for path in ("/v1/predictions", "/invocations", "/v2/models/{name}/infer"):
        assert path in swagger, path
    assert "create_predictions" in redoc and "mlflow_invocations" in redoc, redoc[:2000]


def _rendered(url: str, tmp_path) -> str:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}",
         # Nothing but the service resolves: a CDN reference would leave the page blank.
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
         "--virtual-time-budget=10000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
