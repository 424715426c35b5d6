"""Writing grid sets: a new set replaces the county's active one in the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry
from sqlalchemy import select
from sqlalchemy.orm import Session

from gridgov.geo.crs import area_m2
from gridgov.models import Grid, GridSet
from gridgov.regions import mark_geodata_changed


@dataclass(frozen=True)
class GridRecord:
    """One grid ready to be stored: 15-digit code, name, WGS84 polygon."""

    code: str
    name: str
    geom: BaseGeometry

    @property
    def village_code(self) -> str:
        return self.code[:12]


def as_multipolygon(geom: BaseGeometry) -> MultiPolygon:
    """Return `geom` as a MultiPolygon (grids and regions are stored that way)."""
    if isinstance(geom, MultiPolygon):
        return geom
    if isinstance(geom, Polygon):
        return MultiPolygon([geom])
    polys = [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon | MultiPolygon)]
    parts: list[Polygon] = []
    for p in polys:
        parts.extend(p.geoms if isinstance(p, MultiPolygon) else [p])
    if not parts:
        raise ValueError(f"not a polygonal geometry: {geom.geom_type}")
    return MultiPolygon(parts)


def save_grid_set(
    session: Session,
    county_code: str,
    grids: Iterable[GridRecord],
    *,
    name: str,
    source: str = "",
    synthetic: bool = False,
) -> GridSet:
    """Store `grids` as the county's new active grid set; the previous set stays, inactive."""
    for previous in session.scalars(
        select(GridSet).where(GridSet.county_code == county_code, GridSet.active.is_(True))
    ):
        previous.active = False  # through the ORM, so the audit log records it
    session.flush()
    grid_set = GridSet(
        county_code=county_code, name=name, source=source, synthetic=synthetic, active=True
    )
    session.add(grid_set)
    session.flush()
    rows = [
        Grid(
            grid_set_id=grid_set.id,
            code=g.code,
            name=g.name,
            village_code=g.village_code,
            geom=as_multipolygon(g.geom),
            area_m2=area_m2(g.geom),
        )
        for g in grids
    ]
    session.add_all(rows)
    grid_set.grid_count = len(rows)
    mark_geodata_changed(session)
    session.flush()
    return grid_set
