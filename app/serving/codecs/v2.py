"""Open Inference Protocol V2 (KServe / Triton REST): metadata from the signature, tensors <-> rows."""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from mlflow.models.signature import ModelSignature

from app.errors import ModelNotFound, ModelNotReady
from app.ml.features import FEATURES, LEVELS
from app.serving.codecs.errors import ProtocolInputError
from app.serving.codecs.hygiene import text_problem
from app.serving.codecs.rows import validate_records
from app.serving.codecs.v2_binary import decode_binary, encode_binary
from app.serving.core import PredictionOutcome
from app.serving.loaded_model import LoadedModel
from app.serving.model_slot import ModelSlot

# MLflow signature type -> V2 tensor datatype (PROTOCOLS.md section 2).
DATATYPE_OF = {
    "string": "BYTES",
    "long": "INT64",
    "integer": "INT32",
    "double": "FP64",
    "float": "FP32",
    "boolean": "BOOL",
}
# The signature training writes for each feature kind; used when a model carries no signature.
SIGNATURE_TYPE_OF_KIND = {"categorical": "string", "integer": "long", "float": "double"}
_INTEGER_TYPES = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
_FLOAT_TYPES = {"FP16", "FP32", "FP64"}
# Datatypes a client may send for a column of each declared datatype.
ACCEPTED = {
    "BYTES": {"BYTES"},
    "BOOL": {"BOOL"},
    "INT32": _INTEGER_TYPES,
    "INT64": _INTEGER_TYPES,
    "FP32": _FLOAT_TYPES | _INTEGER_TYPES,
    "FP64": _FLOAT_TYPES | _INTEGER_TYPES,
}

OUTPUT_LABEL = "label"
OUTPUT_PROBABILITIES = "probabilities"
OUTPUTS = (
    {"name": OUTPUT_LABEL, "datatype": "BYTES", "shape": [-1]},
    {"name": OUTPUT_PROBABILITIES, "datatype": "FP64", "shape": [-1, len(LEVELS)]},
)
MAX_NESTING = 3
MAX_ID_LENGTH = 100  # the request id is echoed in the response, so it is held to the header's rule


def input_tensors(signature: ModelSignature | None) -> list[dict[str, Any]]:
    """One ``[-1, 1]`` tensor per signature column, in signature order."""
    if signature is None or signature.inputs is None:
        columns = [(f.name, SIGNATURE_TYPE_OF_KIND[f.kind]) for f in FEATURES]
    else:
        columns = [(spec.name, spec.type.name) for spec in signature.inputs.inputs]
    return [
        {"name": name, "datatype": DATATYPE_OF.get(kind, "BYTES"), "shape": [-1, 1]}
        for name, kind in columns
    ]


def server_metadata(name: str, version: str) -> dict[str, Any]:
    return {"name": name, "version": version, "extensions": ["binary_tensor_data"]}


def model_metadata(model: LoadedModel) -> dict[str, Any]:
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": "mlflow_sklearn",
        "inputs": input_tensors(model.signature),
        "outputs": [dict(o) for o in OUTPUTS],
    }


def find_model(models: ModelSlot, name: str, version: str | None) -> LoadedModel:
    """The serving model if ``name`` (and ``version``, when given) designate it.

    Only the serving version is loaded: any other version is unknown here (404).
    """
    current = models.current
    if name != models.settings.name and (current is None or name != current.name):
        raise ModelNotFound("no model with this name is served here")
    if current is None:
        raise ModelNotReady("the model is not loaded yet")
    if version is not None and version != current.version:
        raise ModelNotFound(f"version {version} is not loaded; version {current.version} is served")
    return current


@dataclass(frozen=True)
class InferRequest:
    id: str
    rows: list[dict[str, Any]]
    outputs: tuple[str, ...]
    binary_outputs: frozenset[str] = frozenset()


def _flatten(data: Any, depth: int = 0) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if depth > MAX_NESTING:
        raise ProtocolInputError("tensor data is nested too deeply")
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item, depth + 1) if isinstance(item, list) else [item])
    return flat


def _column(
    tensor: Any, expected: dict[str, str], binary: memoryview | None, offset: int
) -> tuple[str, list[Any], int]:
    """One input tensor -> (column name, values, offset of the next binary tensor)."""
    if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
        raise ProtocolInputError("each input must be an object with a name, shape, datatype and data")
    name = tensor["name"]
    if name not in expected:
        raise ProtocolInputError("input names must be among: " + ", ".join(expected))
    datatype, shape, data = tensor.get("datatype"), tensor.get("shape"), tensor.get("data")
    if datatype not in ACCEPTED.get(expected[name], {expected[name]}):
        raise ProtocolInputError(f"input '{name}' must have datatype {expected[name]}")
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= 2
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        or (len(shape) == 2 and shape[1] != 1)
    ):
        raise ProtocolInputError(f"input '{name}' must have shape [n] or [n, 1]")
    parameters = tensor.get("parameters")
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if size is not None:
        if binary is None or not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise ProtocolInputError(f"input '{name}' announces binary data the body does not hold")
        values = decode_binary(name, datatype, bytes(binary[offset : offset + size]))
        offset += size
    elif data is None:
        raise ProtocolInputError(f"input '{name}' has no data")
    else:
        values = _flatten(data)
    if len(values) != shape[0]:
        raise ProtocolInputError(f"input '{name}' has {len(values)} values for shape {shape}")
    return name, [_value(name, v, expected[name]) for v in values], offset


def _value(name: str, value: Any, datatype: str) -> Any:
    """Check one element against the declared datatype; number kinds are cast as the tensor says."""
    if datatype == "BYTES":
        ok = isinstance(value, str)
    elif datatype in ("FP32", "FP64"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        try:
            value = float(value) if ok else value
        except OverflowError:  # an integer too large for a double
            ok = False
        ok = ok and math.isfinite(value)
    elif datatype == "BOOL":
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok:
        raise ProtocolInputError(f"input '{name}' holds a value that is not {datatype}")
    return value


def parse_infer(
    body: bytes, signature: ModelSignature | None, json_length: int | None = None
) -> InferRequest:
    """An inference request body -> validated rows (blocking for large bodies: call it in a thread).

    ``json_length`` (the ``Inference-Header-Content-Length`` header) marks a body of the binary
    tensor data extension: that many bytes of JSON, then the raw tensors in input order.
    """
    binary = None
    if json_length is not None:
        if not 0 < json_length <= len(body):
            raise ProtocolInputError("Inference-Header-Content-Length does not fit the body")
        body, binary = body[:json_length], memoryview(body)[json_length:]
    try:
        request = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ProtocolInputError("the request body is not valid JSON") from None
    if not isinstance(request, dict):
        raise ProtocolInputError("the request body must be a JSON object")
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolInputError("'id' must be a string")
    if request_id is not None and (problem := text_problem(request_id, MAX_ID_LENGTH)):
        raise ProtocolInputError(f"'id' {problem}")
    tensors = request.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise ProtocolInputError("'inputs' must be a non-empty list of tensors")
    expected = {t["name"]: t["datatype"] for t in input_tensors(signature)}
    columns: dict[str, list[Any]] = {}
    offset = 0
    for tensor in tensors:
        name, values, offset = _column(tensor, expected, binary, offset)
        if name in columns:
            raise ProtocolInputError(f"input '{name}' is given twice")
        columns[name] = values
    missing = [name for name in expected if name not in columns]
    if missing:
        raise ProtocolInputError("missing input(s): " + ", ".join(missing))
    lengths = {len(values) for values in columns.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise ProtocolInputError("all inputs must hold the same, non-zero number of rows")
    n = lengths.pop()
    rows = [{name: values[i] for name, values in columns.items()} for i in range(n)]
    outputs, binary_outputs = _requested_outputs(request)
    return InferRequest(
        id=request_id if request_id is not None else uuid.uuid4().hex,
        rows=validate_records(rows),
        outputs=outputs,
        binary_outputs=binary_outputs,
    )


def _binary_flag(holder: Any, key: str, default: bool) -> bool:
    parameters = holder.get("parameters") if isinstance(holder, dict) else None
    value = parameters.get(key, default) if isinstance(parameters, dict) else default
    return value is True


def _requested_outputs(request: dict[str, Any]) -> tuple[tuple[str, ...], frozenset[str]]:
    """Output names, and which of them the client wants as binary tensor data."""
    known = (OUTPUT_LABEL, OUTPUT_PROBABILITIES)
    all_binary = _binary_flag(request, "binary_data_output", False)
    outputs = request.get("outputs")
    if outputs is None:
        return known, frozenset(known if all_binary else ())
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and o.get("name") in known for o in outputs
    ):
        raise ProtocolInputError("'outputs' must be a list of objects named among: " + ", ".join(known))
    names = tuple(dict.fromkeys(o["name"] for o in outputs))
    binary = frozenset(o["name"] for o in outputs if _binary_flag(o, "binary_data", all_binary))
    return names, binary


def infer_response(request: InferRequest, outcome: PredictionOutcome) -> dict[str, Any]:
    n = len(outcome.results)
    tensors = {
        OUTPUT_LABEL: {
            "name": OUTPUT_LABEL, "datatype": "BYTES", "shape": [n],
            "data": [r.level for r in outcome.results],
        },
        OUTPUT_PROBABILITIES: {
            "name": OUTPUT_PROBABILITIES, "datatype": "FP64", "shape": [n, len(LEVELS)],
            "parameters": {"classes": ",".join(LEVELS)},
            "data": [r.probabilities[level] for r in outcome.results for level in LEVELS],
        },
    }
    return {
        "model_name": outcome.model.name,
        "model_version": outcome.model.version,
        "id": request.id,
        "outputs": [tensors[name] for name in request.outputs],
    }


def encode_infer_response(
    request: InferRequest, outcome: PredictionOutcome
) -> tuple[bytes, int | None]:
    """The response body, and the JSON part's length when binary outputs follow it."""
    response = infer_response(request, outcome)
    raw: list[bytes] = []
    for tensor in response["outputs"]:
        if tensor["name"] in request.binary_outputs:
            data = encode_binary(tensor)
            del tensor["data"]
            tensor.setdefault("parameters", {})["binary_data_size"] = len(data)
            raw.append(data)
    header = orjson.dumps(response)
    if not raw:
        return header, None
    return header + b"".join(raw), len(header)
