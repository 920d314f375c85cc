"""The model step by prediction path: pipeline, lean, onnx (docs/predictors.md).

    .venv/bin/python -m bench.predictors [--data-dir var/bench-predictors]

Trains the demo model (100 trees) into the data dir unless it holds one, then measures: the
conversion (a load without a cached compiled forest), a load from the cache, max |dp| against
the pipeline on the reference sample, and ``predict_rows`` at batch 1 / 64 / 100 / 10,000 on each
path (best of several rounds), plus ONNX Runtime alone on the same matrix.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time
import timeit
from collections.abc import Callable
from pathlib import Path

import numpy as np

from app.config import Settings
from app.ml.features import FEATURE_NAMES
from app.ml.synthetic import generate
from app.registry.client import ModelRegistry
from app.serving.compiled import COMPILED_DIR
from app.serving.loaded_model import LoadedModel, PredictorOptions, load_from_path, to_frame

BATCHES = (1, 64, 100, 10_000)


async def _train(settings: Settings) -> None:
    from app.container import build
    from app.db.migrate import upgrade
    from app.training.train import train

    await upgrade(settings.db_url)
    async with build(settings) as container:
        await train(container)


def _best_ms(call: Callable[[], object], rows: int) -> float:
    number = max(1, min(200, 2_000 // rows))
    return min(timeit.repeat(call, number=number, repeat=5)) / number * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("var/bench-predictors"))
    args = parser.parse_args()
    settings = Settings(data_dir=args.data_dir.resolve())
    settings.ensure_dirs()
    registry = ModelRegistry(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri,
                             artifact_root=settings.artifact_root, cache_dir=settings.model_cache_dir)
    try:
        ref = registry.resolve(settings.model.name, settings.model.alias)
    except Exception:
        print("training the demo model ...")
        asyncio.run(_train(settings))
        ref = registry.resolve(settings.model.name, settings.model.alias)
    path = registry.download(ref)
    for compiled in path.parent.rglob(COMPILED_DIR):
        shutil.rmtree(compiled)

    started = time.perf_counter()
    onnx = load_from_path(ref, path)
    print(f"load with conversion: {time.perf_counter() - started:.1f}s — {onnx.predictor_note}")
    started = time.perf_counter()
    onnx = load_from_path(ref, path)
    print(f"load from the cache:  {time.perf_counter() - started:.1f}s — predictor {onnx.predictor}")
    models: dict[str, LoadedModel] = {
        "pipeline": load_from_path(ref, path, PredictorOptions(predictor="pipeline")),
        "lean": load_from_path(ref, path, PredictorOptions(predictor="lean")),
        "onnx": onnx,
    }
    assert onnx.reference is not None and onnx.onnx is not None and onnx.lean is not None
    sample = to_frame(onnx.reference[list(FEATURE_NAMES)].to_dict("records"))
    expected = models["pipeline"].predict_proba(sample)
    x = onnx.lean.transform(sample.to_dict("records"))
    ort_alone = onnx._in_level_order(onnx.onnx.predict_proba(x))
    differing = sum(a != b for a, b in zip(onnx.levels_of(ort_alone), onnx.levels_of(expected), strict=True))
    print(f"reference rows {len(sample)}: max |dp| ORT {np.abs(ort_alone - expected).max():.1e}, "
          f"labels differing {differing}")

    pool = generate(max(BATCHES), seed=1, with_label=False)[list(FEATURE_NAMES)].to_dict("records")
    print(f"\n{'rows':>6} " + " ".join(f"{name:>10}" for name in [*models, "ORT alone"]) + "   (ms per call)")
    for n in BATCHES:
        rows = pool[:n]
        matrix = onnx.lean.transform(rows)
        figures = [_best_ms(lambda m=m, r=rows: m.predict_rows(r), n) for m in models.values()]  # type: ignore[misc]
        figures.append(_best_ms(lambda x=matrix: onnx.onnx.predict_proba(x), n))  # type: ignore[union-attr,misc]
        print(f"{n:>6} " + " ".join(f"{f:>10.3f}" for f in figures))


if __name__ == "__main__":
    main()
