"""Fixtures: every database-backed test runs on SQLite and on a throwaway PostgreSQL.

The schema is migrated and the sample counties loaded once per backend; each test runs
inside a transaction that is rolled back.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from gridgov import create_app
from gridgov.config import Settings
from gridgov.db import Database
from gridgov.models import User
from gridgov.pgtemp import TemporaryPostgres

BACKENDS = [b for b in os.environ.get("GRIDGOV_TEST_DBS", "sqlite,postgresql").split(",") if b]
SAMPLE = ("441523", "441427")
AUDIT_KEY = b"test-audit-key"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[TemporaryPostgres]:
    """Start one PostgreSQL + PostGIS cluster for the whole run."""
    with TemporaryPostgres() as pg:
        yield pg


@pytest.fixture(scope="session")
def fresh_database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Return a factory of empty databases on the given backend."""

    def make(backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path_factory.mktemp('db') / 'fresh.sqlite3'}"
        pg: TemporaryPostgres = request.getfixturevalue("pg_server")
        return pg.create_database(f"fresh_{uuid.uuid4().hex[:12]}")

    return make


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def database(backend: str, fresh_database_url) -> Iterator[Database]:
    """A migrated database with both sample counties, calendar and matter list loaded."""
    from gridgov.bootstrap import init_database
    from gridgov.demo import create_demo_users

    db = Database(fresh_database_url(backend), audit_key=AUDIT_KEY)
    init_database(db, SAMPLE)
    with db.session() as s:
        create_demo_users(s)
    yield db
    db.dispose()


@pytest.fixture
def connection(database: Database) -> Iterator[Connection]:
    with database.engine.connect() as conn:
        trans = conn.begin()
        yield conn
        trans.rollback()


@pytest.fixture
def db(database: Database, connection: Connection) -> Database:
    """The test database, with every session joined to the test's rolled-back transaction."""
    return database.bound_to(connection)


@pytest.fixture
def session(db: Database) -> Iterator[Session]:
    s = db.sessions()
    yield s
    s.close()


@pytest.fixture
def app(db: Database, tmp_path: Path) -> Flask:
    settings = Settings(
        instance_path=tmp_path / "instance",
        database_url=db.url,
        secret_key="test-secret",
        audit_key=AUDIT_KEY.decode(),
    )
    application = create_app(settings, database=db)
    application.testing = True
    return application


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def users(session: Session) -> dict[str, User]:
    """The demo accounts (see gridgov.demo.ACCOUNTS), by username."""
    return {u.username: u for u in session.scalars(select(User))}
