"""Input hygiene: which client strings the service can store and log, in one place.

Postgres refuses U+0000 in text and JSONB (the drainer could not write the record), lone
surrogates cannot be encoded as UTF-8 at all, and control characters (tab and newline included)
forge or break log lines and terminal tables. Every client-controlled string is held to this:
no C0 or C1 control character, no DEL, no unpaired surrogate, and a length bound. Free-text
fields (an audit ``reason``) are one line too: the audit and the logs show them line by line.

Two forms of the same rule:
- ``SafeText(n)``, an annotated ``str`` for pydantic models and FastAPI parameters. Its
  ``pattern`` runs in pydantic-core's compiled regex (no Python call per field) and is stated in
  the OpenAPI document. A lone surrogate cannot reach that regex at all: pydantic-core refuses it
  with ``string_unicode`` first.
- ``check_text``, one compiled search for strings codecs read by hand (the V2 ``id``).
Errors name the field and never include the value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field

_CONTROL = r"\x00-\x1f\x7f-\x9f"
# JSON Schema (ECMA) and Rust regex syntax alike; the anchors make it "every character".
SAFE_TEXT_PATTERN = rf"^[^{_CONTROL}]*$"
_UNSAFE = re.compile(rf"[{_CONTROL}\ud800-\udfff]")
SAFE_TEXT_MESSAGE = (
    "must be printable text on one line: no control characters (tab and newline included) "
    "and no unpaired surrogates"
)
# pydantic error types that mean "not clean text", reported with SAFE_TEXT_MESSAGE.
UNSAFE_TEXT_ERRORS = frozenset({"string_pattern_mismatch", "string_unicode"})


def SafeText(max_length: int, **field: Any) -> Any:
    """``str`` limited to clean, single-line text of at most ``max_length`` characters."""
    return Annotated[str, Field(max_length=max_length, pattern=SAFE_TEXT_PATTERN, **field)]


# A whole CSV body: its line breaks and tabs may be structure; inside a cell they are caught by
# the cell's own SafeText check. A NUL is not: pandas' parser drops what follows it silently.
_UNSAFE_IN_TABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def table_has_control(text: str) -> bool:
    return _UNSAFE_IN_TABLE.search(text) is not None


def text_problem(value: str, max_length: int) -> str | None:
    """Why ``value`` may not be stored, or None: one length check and one compiled search."""
    if len(value) > max_length:
        return f"must be at most {max_length} characters"
    if _UNSAFE.search(value):
        return SAFE_TEXT_MESSAGE
    return None


_QUOTED = re.compile(r"`[^`]*`")


def error_message(error: Mapping[str, Any]) -> str:
    """A pydantic error's message without any part of the input: UUID errors quote the offending
    character (which may be a NUL), the pattern error quotes the regex."""
    if error.get("type") in UNSAFE_TEXT_ERRORS:
        return SAFE_TEXT_MESSAGE
    return _QUOTED.sub("a character", error.get("msg", "invalid value"))


def field_name(part: Any) -> str:
    """A location part for an error: a client's own key is named only if it is clean and short."""
    if isinstance(part, str) and text_problem(part, 100):
        return "(a name that is not short printable text)"
    return str(part)
