"""Settings for the command line: a bad environment is one line per problem and exit code 2.

Pydantic's own error is a long traceback that stops at the first failing group and may print the
value (a token, a password in a URL). Here every group is validated, each problem is named by its
environment variable, and no submitted value is ever shown.
"""

from __future__ import annotations

import re
from typing import Any

import typer
from pydantic import AliasChoices, ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsError

from app.config import Settings

EXIT_BAD_SETTINGS = 2
_FIELD_IN_SOURCE_ERROR = re.compile(r'field "(\w+)"')


def settings_for_command() -> Settings:
    """What every command starts with: valid settings, the data dir, logging configured."""
    from app.logs import configure_logging

    settings = load_settings()
    settings.ensure_dirs()
    configure_logging(settings.log_level, settings.log_json)
    return settings


def load_settings() -> Settings:
    """``Settings()`` from the environment, or the problems on stderr and exit 2."""
    try:
        return Settings()
    except (ValidationError, SettingsError):
        problems = settings_problems()
    for line in problems or ["the settings are invalid (no detail available)"]:
        typer.echo(f"configuration error: {line}", err=True)
    raise typer.Exit(EXIT_BAD_SETTINGS)


def settings_problems() -> list[str]:
    """Every problem of every settings group, one line each (empty when the settings are valid)."""
    problems: list[str] = []
    stand_ins: dict[str, BaseSettings] = {}
    for name, field in Settings.model_fields.items():
        group = field.default_factory
        if isinstance(group, type) and issubclass(group, BaseSettings):
            found = _problems_of(group)
            if found:  # the top level is checked with this group's defaults standing in
                problems += found
                stand_ins[name] = group.model_construct()
    return problems + _problems_of(Settings, **stand_ins)


def _problems_of(cls: type[BaseSettings], **values: Any) -> list[str]:
    try:
        cls(**values)
    except ValidationError as exc:
        return [_describe(cls, error) for error in exc.errors(include_input=False)]
    except SettingsError as exc:  # the source could not decode a value (JSON of a dict field)
        match = _FIELD_IN_SOURCE_ERROR.search(str(exc))
        name = _variable(cls, match.group(1)) if match else f"{_prefix(cls)}*"
        return [f"{name}: cannot be parsed (dict and list settings take JSON)"]
    return []


def _describe(cls: type[BaseSettings], error: ErrorDetails) -> str:
    message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    loc = [str(part) for part in error.get("loc", ())]
    if not loc:  # a whole-group rule: its message names the variables involved
        return message if _prefix(cls) in message else f"{_prefix(cls)}*: {message}"
    detail = f" ({'.'.join(loc[1:])})" if len(loc) > 1 else ""
    return f"{_variable(cls, loc[0])}{detail}: {message}"


def _prefix(cls: type[BaseSettings]) -> str:
    return cls.model_config.get("env_prefix", "") or ""


def _variable(cls: type[BaseSettings], field_name: str) -> str:
    field = cls.model_fields.get(field_name)
    alias = field.validation_alias if field is not None else None
    if isinstance(alias, AliasChoices):
        alias = alias.choices[0]
    if isinstance(alias, str):
        return alias.upper()
    return f"{_prefix(cls)}{field_name}".upper()
