"""Shared fixtures: a clean structlog configuration per test, free ports, signed bodies."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import structlog
from support import ENABLE_POSTGRES, with_params


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """Each test starts from structlog's defaults, whatever an earlier test configured."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def database_url() -> str:
    """The PostgreSQL server of the ``postgres`` tests: skipped without one, except in CI, where that fails."""
    url = os.environ.get("RECEIVER_TEST_DATABASE_URL", "")
    if not url:
        if os.environ.get("CI"):
            pytest.fail(
                f"CI must run the PostgreSQL store tests, but RECEIVER_TEST_DATABASE_URL is not set: {ENABLE_POSTGRES}"
            )
        pytest.skip(f"PostgreSQL tests are off; to run them: {ENABLE_POSTGRES}")
    return url


@pytest.fixture
def pg_schema(database_url: str) -> Iterator[str]:
    """A schema name no other test or test run uses; the schema is dropped, with its tables, afterwards."""
    psycopg = pytest.importorskip("psycopg")
    name = f"receiver_test_{uuid.uuid4().hex[:16]}"
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(psycopg.sql.Identifier(name)))


@pytest.fixture
def pg_url(database_url: str, pg_schema: str) -> str:
    """The test database URL pointed at this test's own schema."""
    return with_params(database_url, schema=pg_schema)
