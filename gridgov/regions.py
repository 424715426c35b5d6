"""Reading the region hierarchy: counties, towns, villages, and the active grids."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gridgov.errors import NotFound, Unprocessable
from gridgov.models import Grid, GridSet, Level, Region
from gridgov.settings_store import get_text, put_text

GEODATA_VERSION = "geodata.version"
"""Setting changed with every change to regions or grid sets: part of every cache key of
geometry (grid index, map polygons), so other server processes notice an import too."""


def geodata_version(session: Session) -> str:
    """Return the current geodata version ("" before any change was marked)."""
    return get_text(session, GEODATA_VERSION)


def mark_geodata_changed(session: Session) -> None:
    """Give the geodata a new version (once per transaction, however many rows change)."""
    transaction = session.get_transaction()
    if transaction is not None and session.info.get(GEODATA_VERSION) is transaction:
        return
    put_text(session, GEODATA_VERSION, uuid.uuid4().hex)
    session.info[GEODATA_VERSION] = transaction


def active_grid_set(session: Session, county_code: str) -> GridSet | None:
    """Return the county's active grid set, if any."""
    return session.scalar(
        select(GridSet).where(GridSet.county_code == county_code, GridSet.active.is_(True))
    )


def counties(session: Session) -> list[dict[str, Any]]:
    """List counties with their town, village and active-grid counts."""
    rows = []
    for county in session.scalars(
        select(Region).where(Region.level == Level.COUNTY).order_by(Region.code)
    ):
        gs = active_grid_set(session, county.code)
        rows.append(
            {
                "code": county.code,
                "name": county.name,
                "towns": _count_level(session, county.code, Level.TOWN),
                "villages": _count_level(session, county.code, Level.VILLAGE),
                "grids": gs.grid_count if gs else 0,
                "grid_set": gs.name if gs else None,
                "synthetic": bool(gs and gs.synthetic),
            }
        )
    return rows


def _count_level(session: Session, prefix: str, level: Level) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Region)
            .where(Region.level == level, Region.code.startswith(prefix))
        )
        or 0
    )


def describe(session: Session, code: str) -> dict[str, Any]:
    """Describe a region (or grid) by code, with its children."""
    try:
        level = Level.of_code(code)
    except ValueError as exc:
        raise Unprocessable(
            "区划代码格式错误：应为6、9、12或15位数字", code="bad_region_code", value=code
        ) from exc
    if level == Level.GRID:
        gs = active_grid_set(session, code[:6])
        grid = gs and session.scalar(
            select(Grid).where(Grid.grid_set_id == gs.id, Grid.code == code)
        )
        if not grid:
            raise NotFound(f"网格 {code} 不存在", code="region_not_found", value=code)
        return {
            "code": grid.code,
            "name": grid.name,
            "level": Level.GRID.value,
            "parent_code": grid.village_code,
            "area_m2": round(grid.area_m2, 1),
            "synthetic": gs.synthetic,
            "children": [],
        }
    region = session.get(Region, code)
    if region is None:
        raise NotFound(f"区划 {code} 不存在", code="region_not_found", value=code)
    children: list[dict[str, Any]]
    if level == Level.VILLAGE:
        gs = active_grid_set(session, code[:6])
        grids = (
            session.scalars(
                select(Grid).where(Grid.grid_set_id == gs.id, Grid.village_code == code)
            )
            if gs
            else []
        )
        children = [{"code": g.code, "name": g.name, "level": "grid"} for g in grids]
    else:
        children = [{"code": c.code, "name": c.name, "level": c.level} for c in region.children]
    return {
        "code": region.code,
        "name": region.name,
        "level": region.level,
        "parent_code": region.parent_code,
        "synthetic": region.synthetic,
        "children": children,
    }


def name_of(session: Session, code: str) -> str:
    """Return a region's name, or '' if unknown."""
    region = session.get(Region, code)
    return region.name if region else ""
