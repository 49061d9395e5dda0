"""Fixtures for the roles' tests: the real PostgreSQL (helpers.postgres) and ``store_url``,
which runs a test once on SQLite and once on a fresh PostgreSQL database."""
import pytest

from helpers.postgres import postgres_database, postgres_server, postgres_url  # noqa: F401  (fixtures)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str | None:
    """None (the default SQLite file in the test's home, tmp_path) or a fresh PostgreSQL URL."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres_database")
