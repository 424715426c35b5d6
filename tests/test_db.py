"""Per-dialect connection settings that gridgov's correctness and speed rely on."""

from __future__ import annotations

from sqlalchemy import text

from gridgov.db import Database

EXPECTED = {
    # SQLite: enforced foreign keys; concurrent writers wait for the lock instead of failing.
    "sqlite": {"PRAGMA foreign_keys": 1, "PRAGMA busy_timeout": 15000},
    # PostgreSQL: every execution planned for its parameters, never a generic plan
    # (bench/README.md: generic plans made 2-year stats and the map's clusters 2-4x slower).
    "postgresql": {"SHOW plan_cache_mode": "force_custom_plan"},
}


def test_connection_settings(backend: str, fresh_database_url) -> None:
    db = Database(fresh_database_url(backend))
    try:
        with db.engine.connect() as conn:
            found = {sql: conn.execute(text(sql)).scalar() for sql in EXPECTED[backend]}
    finally:
        db.dispose()
    assert found == EXPECTED[backend]


def test_no_generic_plans_after_repeated_statements(fresh_database_url) -> None:
    # psycopg prepares a statement on the server from its 5th execution; PostgreSQL would
    # switch to a generic plan from the 11th. The setting must survive both.
    db = Database(fresh_database_url("postgresql"))
    try:
        with db.engine.connect() as conn:
            for n in range(12):
                conn.execute(text("SELECT :n + 1"), {"n": n}).scalar()
            plans = conn.execute(
                text("SELECT generic_plans, custom_plans FROM pg_prepared_statements")
            ).all()
    finally:
        db.dispose()
    assert plans, "psycopg prepared nothing: this test no longer exercises generic plans"
    assert all(generic == 0 and custom >= 7 for generic, custom in plans)
