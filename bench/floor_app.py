"""The framework floor for bench/serving.py: FastAPI parsing the service's request model, constant answer.

    .venv/bin/python -m bench.floor_app --port 8123 [--workers 1]

One route, ``POST /v1/predictions``, takes the service's own ``PredictionRequest`` (the same
pydantic model, so the same validation of the 12 features per item) and answers a constant body
of the service's response shape: the model reference and, per item, a prediction id, level,
score and probabilities. The body is built once per item count and sent as bytes, so what is
measured is uvicorn + Starlette routing + FastAPI's body parsing and validation + sending a body
of the real size: what no lean request path can go below on the same server settings.

It runs on the uvicorn settings of ``future-skills serve`` (uvloop, httptools with TCP_NODELAY,
the same worker count, no proxy headers) without an access log. ``GET /health/ready`` answers 200
for the benchmark's readiness wait.
"""

from __future__ import annotations

import argparse
from functools import lru_cache

import orjson
from fastapi import FastAPI, Response

from app.api.schemas.predictions import PredictionRequest

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

_MODEL = {"name": "future-skills-model", "version": "1", "semver": None, "alias": "production"}
# Full-precision floats, as the service sends them, so the body is as long as its answer.
_PREDICTION = {"level": "MEDIUM", "score": 47.536218760387446,
               "probabilities": {"LOW": 0.24787539049357132, "MEDIUM": 0.5485248028267082,
                                 "HIGH": 0.20359980667972054},
               "needs_review": False}


@lru_cache(maxsize=64)
def constant_body(items: int) -> bytes:
    """The response for ``items`` items; ids are fixed UUIDs (version 7 like the service's)."""
    predictions = [{"prediction_id": f"0193d2a4-5b6c-7d8e-9f00-{i:012x}", **_PREDICTION}
                   for i in range(items)]
    return orjson.dumps({"model": _MODEL, "predictions": predictions})


@app.post("/v1/predictions")
async def predictions(body: PredictionRequest) -> Response:
    return Response(constant_body(len(body.items)), media_type="application/json")


@app.get("/health/ready")
async def ready() -> Response:
    return Response(b'{"status":"ready"}', media_type="application/json")


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    try:  # the service's protocol class: httptools with TCP_NODELAY on every connection
        from app.api.server import NoDelayHttpProtocol as http
    except ImportError:  # an older or reorganised service: uvloop sets TCP_NODELAY itself
        http = "httptools"
    uvicorn.run("bench.floor_app:app", host=args.host, port=args.port, workers=args.workers,
                http=http, loop="uvloop", log_config=None, access_log=False, proxy_headers=False)


if __name__ == "__main__":
    main()
