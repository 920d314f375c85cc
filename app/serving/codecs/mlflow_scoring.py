"""MLflow's scoring protocol (``POST /invocations``): payload -> validated rows.

Parsing is MLflow's own (``mlflow.pyfunc.scoring_server``) and the frame is cast to the model
signature exactly as a pyfunc model does, so what MLflow's server accepts is accepted here and
what it refuses is refused with the same error code. The rows then go through the HR API's
feature validation. Messages are our own: MLflow's echo the submitted data, ours name columns only.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from io import BytesIO, StringIO
from typing import Any

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models.signature import ModelSignature
from mlflow.models.utils import _enforce_schema  # the cast pyfunc.predict applies; pinned MLflow
from mlflow.pyfunc import scoring_server as mlflow_server
from mlflow.types import Schema

from app.ml.features import FEATURE_NAMES
from app.serving.codecs.errors import ProtocolInputError, UnsupportedContentType
from app.serving.codecs.hygiene import table_has_control
from app.serving.codecs.rows import validate_records

log = logging.getLogger(__name__)

CONTENT_TYPES = (
    mlflow_server.CONTENT_TYPE_JSON,
    mlflow_server.CONTENT_TYPE_CSV,
    mlflow_server.CONTENT_TYPE_PARQUET,
)
FORMAT_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
PARAMS_KEY = "params"
REQUIRED_FORMAT = "the body must be a JSON object with exactly one of the keys " + ", ".join(FORMAT_KEYS)

# Parts of MLflow's messages that carry no submitted values; anything else gets a fixed message.
_SAFE_PARTS = re.compile(
    r"Model is missing inputs \[[^\]]*\]"
    r"|Failed to convert column \w+"
    r"|Incompatible input types for column \w+"
    r"|Dataframe records format must be a list of records"
    r"|Dataframe split format must (?:have 'data' field and optionally 'columns' and 'index' "
    r"fields|be a dictionary)"
    r"|One of \"instances\" and \"inputs\" must be specified \(not both or any other keys\)"
)


@dataclass(frozen=True)
class ParsedInvocation:
    rows: list[dict[str, Any]]
    params: dict[str, Any] | None


def _safe_message(exc: MlflowException, fallback: str) -> str:
    match = _SAFE_PARTS.search(exc.message)
    if match is None:
        return fallback
    part = match.group(0)
    if part.startswith(("Failed to convert", "Incompatible")):
        part += ": a value cannot be converted to the type in the model signature"
    return part


def check_content_type(content_type: str | None) -> str:
    """The media type, or ``UnsupportedContentType`` (415) as MLflow's server decides it.

    One deliberate difference: a missing header is refused here (MLflow's server answers 500).
    """
    if not content_type:
        raise UnsupportedContentType(
            "a Content-Type header is required: one of " + ", ".join(CONTENT_TYPES)
        )
    mime, *parameters = (part.strip() for part in content_type.split(";"))
    values = {key: value for key, _, value in (p.partition("=") for p in parameters)}
    if values.get("charset", "utf-8").lower() != "utf-8":
        raise UnsupportedContentType("the scoring server only supports the charset utf-8")
    if set(values) - {"charset"}:
        raise UnsupportedContentType("the only content type parameter accepted is charset")
    if mime not in CONTENT_TYPES:
        raise UnsupportedContentType("supported content types: " + ", ".join(CONTENT_TYPES))
    return mime


def _cells(form: str, value: Any) -> list[tuple[Any, Any, Any]]:
    """(row, column, value) of every cell of a JSON payload, for the shapes MLflow reads as tables."""
    if form == "dataframe_split":
        value = value if isinstance(value, dict) else {}
        names = value.get("columns") if isinstance(value.get("columns"), list) else []
        data = value.get("data") if isinstance(value.get("data"), list) else []
        return [
            (i, names[j] if j < len(names) else j, cell)
            for i, row in enumerate(data) if isinstance(row, list)
            for j, cell in enumerate(row)
        ]
    if isinstance(value, dict):  # "inputs" as columns (or one row of scalars)
        return [
            (i, name, cell)
            for name, column in value.items()
            for i, cell in enumerate(column if isinstance(column, list) else [column])
        ]
    if isinstance(value, list):
        return [
            (i, name, cell)
            for i, row in enumerate(value) if isinstance(row, dict)
            for name, cell in row.items()
        ]
    return []


def _check_cells(form: str, value: Any) -> None:
    """Refuse null, boolean and nested cells before MLflow's cast turns them into "None", 1, "{}".

    The HR API refuses them; so does /invocations (MLflow would predict on the cast values).
    """
    for row, column, cell in _cells(form, value):
        if cell is None or isinstance(cell, (bool, dict, list)):
            kind = "a missing" if cell is None else "a non-scalar or boolean"
            # Only a feature's name is repeated back; any other key is the client's own text.
            named = f"column '{column}'" if column in FEATURE_NAMES else "a column not in the model"
            raise ProtocolInputError(f"{kind} value in {named} (row {row})")


def _parse_json(body: bytes, schema: Schema | None) -> tuple[Any, dict[str, Any] | None]:
    try:
        decoded = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ProtocolInputError("the request body is not valid JSON") from None
    if isinstance(decoded, list):
        raise ProtocolInputError(f"{REQUIRED_FORMAT}; received a list")
    if not isinstance(decoded, dict):
        raise ProtocolInputError(f"{REQUIRED_FORMAT}; received a JSON {type(decoded).__name__}")
    present = [key for key in FORMAT_KEYS if key in decoded]
    if len(present) != 1:
        raise ProtocolInputError(f"{REQUIRED_FORMAT}; received {len(present)} of them")
    params = decoded.get(PARAMS_KEY)
    _check_cells(present[0], decoded[present[0]])
    try:
        data = mlflow_server.infer_and_parse_data({present[0]: decoded[present[0]]}, schema)  # type: ignore[arg-type]  # MLflow: None is its default
    except MlflowException as exc:
        message = _safe_message(exc, f"the '{present[0]}' payload does not fit the model signature")
        raise ProtocolInputError(message, exc.error_code) from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError):
        # Shapes MLflow's parser does not anticipate (e.g. an object as a column name): it would
        # answer 500; the payload is the client's mistake, so it is a 400 here.
        raise ProtocolInputError(
            f"the '{present[0]}' payload is not a table MLflow can read"
        ) from None
    return data, params


def _parse_csv(body: bytes, schema: Schema | None) -> pd.DataFrame:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolInputError("the CSV body is not valid UTF-8") from None
    if table_has_control(text):
        raise ProtocolInputError("the CSV body holds a control character (other than tab and line breaks)")
    try:
        return mlflow_server.parse_csv_input(StringIO(text), schema)  # type: ignore[arg-type]  # MLflow: None is its default
    except MlflowException as exc:
        raise ProtocolInputError(
            "the CSV body could not be read as a table with the model signature's column types",
            exc.error_code,
        ) from None


def _parse_parquet(body: bytes) -> pd.DataFrame:
    try:
        frame: pd.DataFrame = mlflow_server.parse_parquet_input(BytesIO(body))  # type: ignore[no-untyped-call]  # MLflow: untyped
        return frame
    except MlflowException as exc:
        raise ProtocolInputError("the body is not a readable Parquet file", exc.error_code) from None


def _to_frame(data: Any, signature: ModelSignature | None) -> pd.DataFrame:
    """Cast to the signature as ``pyfunc.predict`` does; its failures are INVALID_PARAMETER_VALUE."""
    schema = signature.inputs if signature is not None else None
    try:
        if schema is not None:
            data = _enforce_schema(data, schema)
        frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
    except MlflowException as exc:
        message = _safe_message(exc, "the input does not fit the model signature")
        raise ProtocolInputError(message, "INVALID_PARAMETER_VALUE") from None
    except (ValueError, TypeError):
        raise ProtocolInputError(
            "the input cannot be read as a table of the model's columns", "INVALID_PARAMETER_VALUE"
        ) from None
    return frame


def parse_invocation(
    body: bytes, content_type: str | None, signature: ModelSignature | None
) -> ParsedInvocation:
    """Payload -> validated rows (blocking: pandas and pydantic work; call it in a thread)."""
    mime = check_content_type(content_type)
    schema = signature.inputs if signature is not None else None
    params = None
    if mime == mlflow_server.CONTENT_TYPE_JSON:
        data, params = _parse_json(body, schema)
    elif mime == mlflow_server.CONTENT_TYPE_CSV:
        data = _parse_csv(body, schema)
    else:
        data = _parse_parquet(body)
    if params:
        # The model declares no params schema; MLflow ignores params then, and so do we.
        # The client's own names: as a list's repr (control characters escaped), ten at most.
        names = sorted(params)[:10] if isinstance(params, dict) else []
        log.info("ignoring params %s: the model takes none", names)
    frame = _to_frame(data, signature)
    if frame.empty:  # the model cannot score zero rows: MLflow's server answers BAD_REQUEST too
        raise ProtocolInputError("the input holds no rows", "BAD_REQUEST")
    return ParsedInvocation(validate_records(frame.to_dict("records")), params)
