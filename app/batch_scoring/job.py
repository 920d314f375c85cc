"""One ``future-skills score``: resolve the version, load it as serving does, score, record.

Takes the container's parts (slot, registry, prediction log sink) so it runs on the objects the
composition root built; the blocking file loop runs in a worker thread, and prediction log
writes go back to the event loop through the sink.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from app.batch_scoring.errors import BatchInputError
from app.batch_scoring.formats import Format, column_names
from app.batch_scoring.record import BatchRun, log_run, prediction_lines
from app.batch_scoring.score import Progress, ScoredChunk, check_output_names, score_file, sha256_of
from app.batch_scoring.validate import check_columns
from app.prediction_log.ids import new_id
from app.prediction_log.ingest import LogSink
from app.prediction_log.records import PREDICTION
from app.registry.client import ModelRegistry, VersionRef
from app.serving.loaded_model import LoadedModel
from app.serving.model_slot import ModelSlot


@dataclass(frozen=True)
class BatchRequest:
    input_path: Path
    output_path: Path
    input_format: Format
    output_format: Format
    chunk_rows: int = 50_000
    model_version: str | None = None  # None: the version the service serves (Production)


@dataclass(frozen=True)
class BatchOutcome:
    run: BatchRun
    mlflow_run_id: str
    batch_id: str  # the request_id of the rows written to the prediction log


async def resolve(slot: ModelSlot, registry: ModelRegistry, version: str | None) -> VersionRef:
    if version is None:
        return await slot.resolve()
    return await asyncio.to_thread(registry.get_version, slot.settings.name, version)


def new_batch_id() -> str:
    return f"batch:{new_id()}"


async def score_batch(request: BatchRequest, *, slot: ModelSlot, registry: ModelRegistry,
                      sink: LogSink | None = None, batch_id: str | None = None,
                      progress: Progress | None = None) -> BatchOutcome:
    """Score ``request.input_path`` with the served (or the given) version and record the run.

    With ``sink`` every scored row is also written to the prediction log, chunk by chunk, with
    ``batch_id`` as its request id (one value for the run: the rows of a run that failed halfway
    can be found by it).
    """
    if not request.input_path.is_file():
        raise BatchInputError(f"the input file {request.input_path} does not exist")
    # A missing or clashing column fails now, before the model is downloaded and loaded.
    names = await asyncio.to_thread(column_names, request.input_path, request.input_format)
    check_columns(names)
    check_output_names(names)
    ref = await resolve(slot, registry, request.model_version)

    async def load() -> tuple[LoadedModel, float]:
        started = time.perf_counter()
        loaded = await slot.load(ref)
        return loaded, time.perf_counter() - started

    # The checksum is read while the model loads (both in worker threads).
    (model, load_seconds), checksum = await asyncio.gather(
        load(), asyncio.to_thread(sha256_of, request.input_path))
    batch_id = batch_id or new_batch_id()
    loop = asyncio.get_running_loop()

    def log_chunk(chunk: ScoredChunk) -> None:  # in the worker thread
        if sink is not None:
            lines = prediction_lines(ref, chunk, batch_id)
            asyncio.run_coroutine_threadsafe(sink.write(PREDICTION, lines), loop).result()

    result = await asyncio.to_thread(
        score_file, model, request.input_path, request.output_path,
        input_format=request.input_format, output_format=request.output_format,
        chunk_rows=request.chunk_rows, progress=progress,
        on_chunk=log_chunk if sink is not None else None,
    )
    run = BatchRun(model=ref, input_path=request.input_path.resolve(),
                   output_path=request.output_path.resolve(), input_format=request.input_format,
                   output_format=request.output_format, input_sha256=checksum,
                   chunk_rows=request.chunk_rows, result=result, load_seconds=load_seconds,
                   logged_predictions=sink is not None)
    run_id = await asyncio.to_thread(log_run, registry, run)
    return BatchOutcome(run=run, mlflow_run_id=run_id, batch_id=batch_id)
