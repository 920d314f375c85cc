"""Schemathesis over every operation with strings full of NUL, control characters, lone
surrogates and very long values, against a real server logging into Postgres: the database that
refuses some of them (SQLite stores any string; the API's own refusals are the same on both, and
tests/api/test_fuzz.py runs the whole schema against SQLite).

No answer is a 5xx, every status and content type is one the OpenAPI document states, and
afterwards an ordinary prediction still reaches the database within seconds: nothing a client
sent was accepted that the database refuses (a refused record used to wedge the prediction log).
"""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance
from sqlalchemy import select

from app.db.engine import create_engine
from app.db.tables import Prediction
from app.serving.codecs.hygiene import text_problem
from tests.support.databases import PG_ADMIN_DSN
from tests.support.dbcheck import stored_ids
from tests.support.factories import valid_items
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.slow

SURROGATES = ["\ud800", "\udfff", "\udbff"]
CONTROL = ["\x00", "\x01", "\x08", "\t", "\n", "\r", "\x0b", "\x1b", "\x7f", "\x85", "\x9b"]
ODD = ["\u2028", "\ufeff", "\u202e", "é"]  # printable or format characters: storable, accepted


# Values far over every length bound. In a URL they stop at 2,000 characters: a longer request
# line is refused by uvicorn's HTTP parser itself (a plain-text 400) before the app sees it.
BODY_LENGTHS = [101, 201, 501, 5_000, 20_000]
URL_LENGTHS = [101, 201, 501, 2_000]


def hostile(surrogates: bool, lengths: list[int] = BODY_LENGTHS) -> st.SearchStrategy[str]:
    """Short strings made of nasty characters, and values far over every length bound."""
    chars = CONTROL + ODD + (SURROGATES if surrogates else [])
    piece = st.one_of(st.sampled_from(chars), st.text(max_size=3))
    short = st.lists(piece, min_size=1, max_size=6).map("".join).filter(bool)
    long = st.builds(lambda n, c: "a" * n + c, st.sampled_from(lengths), st.sampled_from(chars))
    return st.one_of(short, long)


_URL_SYNTAX = str.maketrans({"/": "_", "?": "_", "#": "_", "%": "_"})


@st.composite
def _poisoned(draw, case):
    """The case with some of its strings replaced; a JSON body can carry lone surrogates (as
    \\ud800 escapes), a URL or a CSV body cannot (they are UTF-8 on the wire)."""

    def walk(value, surrogates, lengths=BODY_LENGTHS):
        if isinstance(value, str):
            return draw(st.one_of(st.just(value), hostile(surrogates, lengths)))
        if isinstance(value, dict):
            out = {k: walk(v, surrogates, lengths) for k, v in value.items()}
            if draw(st.integers(0, 9)) == 0:  # now and then a hostile key too
                out[draw(hostile(surrogates, lengths))] = "x"
            return out
        if isinstance(value, list):
            return [walk(v, surrogates, lengths) for v in value]
        return value

    # Set without Case.__setattr__, which would have schemathesis re-validate the poisoned parts
    # against the schema (its validator cannot take a lone surrogate); the generation-time
    # metadata is unused here, as only status checks run.
    if case.query:
        object.__setattr__(case, "query", walk(case.query, False, URL_LENGTHS))
    if case.path_parameters:
        # "/", "?" and "#" would change which route the URL names (schemathesis sends them as is)
        # and it strips whitespace (\x85 and \x1c-\x1f included): so a hostile segment is framed.
        poisoned = {k: f"p{v.translate(_URL_SYNTAX)}p" if isinstance(v, str) else v
                    for k, v in walk(case.path_parameters, False, URL_LENGTHS).items()}
        object.__setattr__(case, "path_parameters", poisoned)
    if isinstance(case.body, (dict, list, str)):
        object.__setattr__(case, "body", walk(case.body, (case.media_type or "").endswith("json")))
    return case


def _create_pg_database() -> str:
    name = f"fs_test_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()

    asyncio.run(create())
    return name


def _drop_pg_database(name: str) -> None:
    async def drop() -> None:
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    asyncio.run(drop())


@pytest.fixture(scope="module")
def live(registry_dir):
    name = _create_pg_database()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    url = f"{base}/{name}"
    server = LiveServer(registry_dir, url).start()
    server.database_url = url
    try:
        yield server
    finally:
        code = server.stop()
        _drop_pg_database(name)
    assert code == 0, server.output
    assert "Traceback" not in server.output, server.output


@pytest.fixture(scope="module")
def hostile_schema(live):
    api = schemathesis.openapi.from_url(f"{live.base_url}/openapi.json")
    api.hook("flatmap_case")(lambda context, case: _poisoned(case))
    return api


schema = schemathesis.pytest.from_fixture("hostile_schema")


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_hostile_strings_get_no_5xx(case):
    # Only these checks: a poisoned "valid" case is not valid any more, so acceptance checks
    # do not apply; the status and its content type must still be documented ones.
    case.call_and_validate(
        checks=[not_a_server_error, status_code_conformance, content_type_conformance],
        timeout=30,
    )


async def _stored_strings(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(Prediction.features, Prediction.request_id))).all()
    finally:
        await engine.dispose()
    return [v for features, request_id in rows
            for v in [*features.values(), request_id] if isinstance(v, str)]


def test_afterwards_a_prediction_reaches_the_database(live):
    response = httpx.post(f"{live.base_url}/v1/predictions", json={"items": valid_items(1)},
                          timeout=10)
    assert response.status_code == 200, response.text
    prediction_id = response.json()["predictions"][0]["prediction_id"]
    deadline = time.monotonic() + 5
    while prediction_id not in asyncio.run(stored_ids(live.database_url))[1]:
        assert time.monotonic() < deadline, "the prediction did not reach the database in 5 s"
        time.sleep(0.2)
    # Nothing the database refused (it would be dead-lettered), and what got stored is clean:
    # the rule held on every protocol.
    metrics = httpx.get(f"{live.base_url}/metrics", timeout=10).text
    refused = [line for line in metrics.splitlines()
               if line.startswith("fs_spool_dead_letters_total") and float(line.split()[-1]) > 0]
    assert not refused, refused
    stored = asyncio.run(_stored_strings(live.database_url))
    assert len(stored) > 100  # the fuzz did get predictions through
    assert not [v for v in stored if text_problem(v, 100)]
