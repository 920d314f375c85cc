"""JSON Schemas of the /invocations and /v2 request bodies, generated from the feature schema.

Those bodies are read by hand (several content types, protocol-specific errors), so the routes
declare these as ``openapi_extra`` instead of a pydantic body parameter.
"""

from __future__ import annotations

import copy
from typing import Any

from app.ml.features import FEATURE_NAMES, FEATURES, LEVELS
from app.serving.codecs.hygiene import SAFE_TEXT_PATTERN
from app.serving.codecs.item import EXAMPLE_ITEM, PredictionItem
from app.serving.codecs.v2 import DATATYPE_OF, MAX_ID_LENGTH, OUTPUTS, SIGNATURE_TYPE_OF_KIND


def _row_schema() -> dict[str, Any]:
    schema: dict[str, Any] = copy.deepcopy(PredictionItem.model_json_schema())
    schema.pop("additionalProperties", None)  # MLflow ignores extra columns; so does /invocations
    schema["title"] = "Row"
    return schema


def _columns_schema(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "title": "Columns",
        "properties": {
            name: {"type": "array", "items": prop} for name, prop in row["properties"].items()
        },
        "required": list(FEATURE_NAMES),
    }


def invocations_request_body() -> dict[str, Any]:
    row = _row_schema()
    rows = {"type": "array", "items": row, "minItems": 1}
    # Any JSON value: MLflow pops it whatever its type and ignores it for a model without params.
    params = {"description": "Accepted and ignored: the model takes no params"}
    cell_types = [{"type": prop["type"]} for prop in row["properties"].values()]
    forms = {
        "dataframe_split": {
            "type": "object",
            "properties": {
                "columns": {"type": "array", "items": {"enum": list(FEATURE_NAMES)}},
                "data": {"type": "array", "items": {"type": "array", "items": {"anyOf": cell_types}}},
                "index": {"type": "array"},
            },
            "required": ["data"],
            "additionalProperties": False,
        },
        "dataframe_records": rows,
        "instances": rows,
        "inputs": {"anyOf": [_columns_schema(row), rows]},
    }
    json_schema = {
        "oneOf": [
            {
                "type": "object",
                "title": name,
                "properties": {name: schema, "params": params},
                "required": [name],
            }
            for name, schema in forms.items()
        ]
    }
    header = ",".join(FEATURE_NAMES)
    example_csv = header + "\n" + ",".join(str(EXAMPLE_ITEM[n]) for n in FEATURE_NAMES) + "\n"
    return {
        "required": True,
        "description": "One of four JSON forms, a CSV table with a header row, or a Parquet file; "
        "columns: " + ", ".join(FEATURE_NAMES) + ".",
        "content": {
            "application/json": {
                "schema": json_schema,
                "example": {"dataframe_records": [EXAMPLE_ITEM]},
            },
            "text/csv": {"schema": {"type": "string"}, "example": example_csv},
            "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
        },
    }


def infer_request_body() -> dict[str, Any]:
    row = _row_schema()["properties"]
    tensors = []
    for feature in FEATURES:
        datatype = DATATYPE_OF[SIGNATURE_TYPE_OF_KIND[feature.kind]]
        tensors.append(
            {
                "type": "object",
                "title": feature.name,
                "description": feature.description,
                "properties": {
                    "name": {"const": feature.name},
                    "datatype": {"const": datatype},
                    "shape": {
                        "type": "array", "items": {"type": "integer", "minimum": 0},
                        "minItems": 1, "maxItems": 2,
                        "description": "[n] or [n, 1], n the number of values in data",
                    },
                    "data": {"type": "array", "items": row[feature.name]},
                    "parameters": {"type": "object"},
                },
                "required": ["name", "datatype", "shape", "data"],
            }
        )
    example_inputs = [
        {
            "name": f.name,
            "datatype": DATATYPE_OF[SIGNATURE_TYPE_OF_KIND[f.kind]],
            "shape": [1, 1],
            "data": [EXAMPLE_ITEM[f.name]],
        }
        for f in FEATURES
    ]
    schema = {
        "type": "object",
        "title": "InferenceRequest",
        "properties": {
            "id": {"type": "string", "maxLength": MAX_ID_LENGTH, "pattern": SAFE_TEXT_PATTERN},
            "parameters": {"type": "object"},
            "inputs": {
                "type": "array",
                "description": "One tensor per feature column, data row-major",
                "items": {"oneOf": tensors},
                "minItems": len(FEATURES),
            },
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"enum": [o["name"] for o in OUTPUTS]}},
                    "required": ["name"],
                },
            },
        },
        "required": ["inputs"],
    }
    return {
        "required": True,
        "description": "JSON; or, with the binary tensor data extension, that JSON (its length "
        "in the Inference-Header-Content-Length header) followed by the raw tensors",
        "content": {
            "application/json": {"schema": schema, "example": {"id": "42", "inputs": example_inputs}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }


def infer_response_schema() -> dict[str, Any]:
    """The infer response: the predicted label and the class probabilities (LOW, MEDIUM, HIGH)."""
    return {
        "type": "object",
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string", "maxLength": MAX_ID_LENGTH, "pattern": SAFE_TEXT_PATTERN},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"enum": [o["name"] for o in OUTPUTS]},
                        "datatype": {"enum": [o["datatype"] for o in OUTPUTS]},
                        "shape": {"type": "array", "items": {"type": "integer"}},
                        "data": {"type": "array"},
                    },
                },
            },
        },
    }


def invocations_response_schema() -> dict[str, Any]:
    """What the sklearn flavor's pyfunc predict returns: one predicted level per row."""
    return {
        "type": "object",
        "properties": {"predictions": {"type": "array", "items": {"enum": list(LEVELS)}}},
        "required": ["predictions"],
    }


MLFLOW_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "MlflowError",
    "properties": {"error_code": {"type": "string"}, "message": {"type": "string"}},
    "required": ["error_code", "message"],
}
V2_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "V2Error",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}
