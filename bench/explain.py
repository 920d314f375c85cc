"""One explanation: our TreeSHAP engine and shap.TreeExplainer side by side (docs/explanations.md).

    .venv/bin/python -m bench.explain [--data-dir var/bench-explain] [--rows 40]

Trains the demo model (100 trees) into the data dir unless it holds one, builds the engine
(compilation or cache load, memory), then explains the same real rows one at a time with both,
interleaved so both see the same machine load: ours (``ExplanationEngine.explain_rows``: the
model matrix, the kernel, the HR-feature grouping, the forest's probabilities) and shap's
path-dependent TreeExplainer on the model matrix alone. Prints p50/p95 of each, the ratio, the
largest difference between the two and the additivity error, and whether the targets are met
(p50 <= 40 ms, >= 5x faster than shap).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

import numpy as np

from app.config import Settings
from app.ml.features import FEATURE_NAMES, LEVELS
from app.registry.client import ModelRegistry
from app.serving.loaded_model import load_from_path

TARGET_P50_MS = 40.0
TARGET_RATIO = 5.0


async def _train(settings: Settings) -> None:
    from app.container import build
    from app.db.migrate import upgrade
    from app.training.train import train

    await upgrade(settings.db_url)
    async with build(settings) as container:
        await train(container)


def _ms(values: list[float]) -> tuple[float, float]:
    return float(np.percentile(values, 50)) * 1e3, float(np.percentile(values, 95)) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("var/bench-explain"))
    parser.add_argument("--rows", type=int, default=40, help="rows explained by each, one at a time")
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
    model = load_from_path(ref, registry.download(ref))
    forest = model.fitted().steps[1][1]
    trees = [e.tree_ for e in forest.estimators_]
    print(f"model {ref.name} version {ref.version}: {len(trees)} trees, "
          f"{np.mean([t.n_leaves for t in trees]):.0f} leaves and depth {max(t.max_depth for t in trees)} "
          f"at most; {os.cpu_count()} cores")

    started = time.perf_counter()
    from app.explanations.engine import ExplanationEngine  # imports numba

    engine = ExplanationEngine(model)
    print(f"engine built in {time.perf_counter() - started:.1f} s (numba import, kernel compiled or "
          f"loaded from its cache, warm-up); arrays {engine.nbytes / 1e6:.1f} MB")
    import shap  # the reference only: the service never imports it

    explainer = shap.TreeExplainer(forest, feature_perturbation="tree_path_dependent")
    order = [list(forest.classes_).index(level) for level in LEVELS]
    assert model.reference is not None
    rows = model.reference.sample(args.rows, random_state=1)[list(FEATURE_NAMES)].to_dict("records")
    engine.explain_rows(rows[:2])
    explainer.shap_values(engine.matrix(rows[:1]))

    ours: list[float] = []
    theirs: list[float] = []
    ours_cpu: list[float] = []  # CPU time of the process (all threads): what other load cannot take
    theirs_cpu: list[float] = []
    gap = additivity = 0.0
    for row in rows:
        started, cpu = time.perf_counter(), time.process_time()
        x, explained = engine.explain_rows([row])
        ours.append(time.perf_counter() - started)
        ours_cpu.append(time.process_time() - cpu)
        started, cpu = time.perf_counter(), time.process_time()
        reference = np.asarray(explainer.shap_values(x))[..., order]
        theirs.append(time.perf_counter() - started)
        theirs_cpu.append(time.process_time() - cpu)
        gap = max(gap, float(np.abs(explained.columns - reference).max()))
        total = explained.base + explained.columns.sum(axis=1)
        additivity = max(additivity, float(np.abs(total - explained.proba).max()))
    (ours_p50, ours_p95), (shap_p50, shap_p95) = _ms(ours), _ms(theirs)
    ratio = shap_p50 / ours_p50
    print(f"\n{len(rows)} rows, one per call (ms):   p50      p95")
    print(f"  ours (engine.explain_rows)   {ours_p50:7.1f}  {ours_p95:7.1f}")
    print(f"  shap.TreeExplainer           {shap_p50:7.1f}  {shap_p95:7.1f}")
    print(f"  ratio (shap p50 / ours p50)  {ratio:7.1f}x")
    print(f"CPU time per explanation, p50 (ms): ours {_ms(ours_cpu)[0]:.1f} (all threads), "
          f"shap {_ms(theirs_cpu)[0]:.1f}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"max |ours - shap| per column {gap:.1e}; additivity error {additivity:.1e}")
    print(f"targets: p50 <= {TARGET_P50_MS:g} ms {'met' if ours_p50 <= TARGET_P50_MS else 'NOT met'}, "
          f">= {TARGET_RATIO:g}x {'met' if ratio >= TARGET_RATIO else 'NOT met'}")


if __name__ == "__main__":
    main()
