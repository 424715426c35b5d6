"""Migrations: they build the schema the models describe, and upgrades keep data."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select, text

from gridgov import migrate
from gridgov.db import Base, Database
from gridgov.models import CalendarYear

BACKENDS = ["sqlite", "postgresql"]


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_migrations_match_models(fresh_database_url, backend_name: str) -> None:
    db = Database(fresh_database_url(backend_name))
    migrate.upgrade(db.engine)
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_object": lambda obj, name, type_, reflected, compare_to: (
                    not (type_ == "table" and name == "spatial_ref_sys")
                    and not (type_ == "index" and name is not None and name.endswith("_geom"))
                ),
            },
        )
        diff = [d for d in compare_metadata(ctx, Base.metadata) if not _geometry_type_noise(d)]
    db.dispose()
    assert diff == []


def _geometry_type_noise(d: object) -> bool:
    # PostGIS reflects geometry columns as NullType; the type itself is created by the migration.
    return isinstance(d, list) and bool(d) and d[0][0] == "modify_type" and d[0][3] == "geom"


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_upgrade_twice_and_round_trip_keep_data(fresh_database_url, backend_name: str) -> None:
    db = Database(fresh_database_url(backend_name))
    migrate.upgrade(db.engine)
    assert migrate.current_revision(db.engine) == migrate.head_revision(db.engine)
    with db.session() as s:
        s.add(CalendarYear(year=2031, source="admin", note="kept"))
    migrate.upgrade(db.engine)
    with db.session() as s:
        assert s.scalar(select(CalendarYear.note).where(CalendarYear.year == 2031)) == "kept"
    migrate.downgrade(db.engine, "base")
    with db.engine.connect() as conn:
        assert migrate.current_revision(db.engine) is None
        tables = conn.execute(
            text("SELECT count(*) FROM information_schema.tables WHERE table_name = 'regions'")
            if backend_name == "postgresql"
            else text("SELECT count(*) FROM sqlite_master WHERE name = 'regions'")
        ).scalar()
        assert tables == 0
    migrate.upgrade(db.engine)
    assert migrate.current_revision(db.engine) == migrate.head_revision(db.engine)
    db.dispose()


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_upgrade_keeps_events_and_backfills_stage_unit(
    fresh_database_url, backend_name: str
) -> None:
    from gridgov.bootstrap import init_database
    from gridgov.demo import create_demo_users
    from gridgov.events import ReportInput, report_event
    from gridgov.models import Event, Grid, GridSet

    db = Database(fresh_database_url(backend_name), audit_key=b"k")
    init_database(db, ("441523",))
    with db.session() as s:
        wgy = create_demo_users(s)["wgy"]
        grid = s.scalar(
            select(Grid)
            .join(GridSet)
            .where(GridSet.active.is_(True), Grid.code == wgy.grid_codes[0])
        )
        point = grid.geom.representative_point()
        data = ReportInput("0404", "urgent", "火灾险情", point.x, point.y, "k-migrate")
        event_id = report_event(s, wgy, data).event.id
    migrate.downgrade(db.engine, "0002")
    migrate.upgrade(db.engine)
    with db.session() as s:
        event = s.get(Event, event_id)
        assert event is not None and event.description == "火灾险情"
        assert event.stage == "accept" and event.stage_unit == "hours"  # urgent: natural hours
    db.dispose()
