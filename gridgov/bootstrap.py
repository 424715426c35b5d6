"""Bring a database to a usable state: schema, calendar, matter list, sample counties."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from gridgov import migrate
from gridgov.db import Database


def setup_county(session: Session, county_code: str) -> dict[str, int]:
    """Create or update what a county with regions needs to work: its departments and centres.

    The county bureaus and each town's offices (综治中心 included) come from
    gridgov/data/departments.json; run again after its towns change.
    """
    from gridgov import catalog

    return {"departments": catalog.load_departments(session, county_code)}


def init_database(
    db: Database, counties: Sequence[str] = (), *, seed_catalog: bool = True
) -> dict[str, Any]:
    """Migrate to head, seed holidays and the matter list, load the given sample counties.

    Safe to run again: every step is idempotent and keeps existing data.
    """
    from gridgov import calendar_store, catalog
    from gridgov.geo.sample import load_sample_county

    migrate.upgrade(db.engine)
    report: dict[str, Any] = {"revision": migrate.current_revision(db.engine), "counties": {}}
    with db.session() as session:
        report["calendar_days"] = calendar_store.seed_from_chinese_calendar(session)
        for code in counties:
            report["counties"][code] = load_sample_county(session, code)
        if seed_catalog:
            for code in counties:
                setup_county(session, code)
            report["matters"] = catalog.load_matters(session)
    return report
