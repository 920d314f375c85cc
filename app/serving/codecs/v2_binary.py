"""The binary tensor data extension of the V2 protocol: raw little-endian tensors after the JSON.

BYTES elements are each a 4-byte little-endian length followed by the bytes.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from app.serving.codecs.errors import ProtocolInputError

# numpy dtypes of the binary tensor data extension's fixed-size element types (little-endian).
NUMPY_DTYPE = {
    "BOOL": "?", "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "UINT8": "<u1",
    "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
}


def decode_binary(name: str, datatype: str, raw: bytes) -> list[Any]:
    """Elements of one tensor sent with the binary tensor data extension."""
    if datatype != "BYTES":
        dtype = np.dtype(NUMPY_DTYPE[datatype])
        if len(raw) % dtype.itemsize:
            raise ProtocolInputError(
                f"input '{name}' has a binary size that is not a whole number of elements"
            )
        values: list[Any] = np.frombuffer(raw, dtype=dtype).tolist()
        return values
    values, offset = [], 0
    try:
        while offset < len(raw):
            (length,) = struct.unpack_from("<I", raw, offset)
            chunk = raw[offset + 4 : offset + 4 + length]
            if len(chunk) != length:
                raise ValueError("truncated element")
            values.append(chunk.decode("utf-8"))
            offset += 4 + length
    except (struct.error, ValueError):  # UnicodeDecodeError is a ValueError
        raise ProtocolInputError(f"input '{name}' holds malformed BYTES binary data") from None
    return values


def encode_binary(tensor: dict[str, Any]) -> bytes:
    if tensor["datatype"] == "BYTES":
        encoded = [value.encode("utf-8") for value in tensor["data"]]
        return b"".join(struct.pack("<I", len(e)) + e for e in encoded)
    return np.asarray(tensor["data"], dtype=NUMPY_DTYPE[tensor["datatype"]]).tobytes()
