"""The synthetic sample geodata: reproducible, tiling its parents, coded and named."""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import pytest
import shapely
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry

from gridgov.geo.synth import (
    GEODATA,
    Division,
    assign_village_codes,
    generate,
    grid_name_stem,
    reading_order,
    to_equal_area,
)

COUNTIES = ("441523", "441427")
VILLAGE_COUNTS = {"441523": 127, "441427": 107}
FILES = ("boundary.geojson", "divisions.csv", "towns.geojson", "villages.geojson", "grids.geojson")
TOLERANCE = 1e-4  # 0.01 % of the parent's area


@cache
def _layer(county: str, layer: str) -> tuple[tuple[dict[str, Any], BaseGeometry], ...]:
    path = GEODATA / county / f"{layer}.geojson"
    features = json.loads(path.read_text(encoding="utf-8"))["features"]
    return tuple((f["properties"], shape(f["geometry"])) for f in features)


def _divisions(county: str) -> list[dict[str, str]]:
    with (GEODATA / county / "divisions.csv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_generate_reproduces_the_committed_files_byte_for_byte(tmp_path: Path) -> None:
    counts = generate("441523", GEODATA / "441523", tmp_path)
    assert (counts["towns"], counts["villages"]) == (8, 127)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (GEODATA / "441523" / name).read_bytes(), name


@pytest.mark.parametrize("county", COUNTIES)
@pytest.mark.parametrize(
    ("layer", "parent_layer"),
    [("towns", "boundary"), ("villages", "towns"), ("grids", "villages")],
)
def test_each_layer_tiles_its_parents(county: str, layer: str, parent_layer: str) -> None:
    parents = {p.get("code", county): g for p, g in _layer(county, parent_layer)}
    centre = parents[next(iter(parents))].centroid
    children: dict[str, list[BaseGeometry]] = defaultdict(list)
    for props, geom in _layer(county, layer):
        children[props["parent_code"]].append(geom)
    assert set(children) == set(parents)
    for code, parent in parents.items():
        kids = to_equal_area(np.asarray(children[code], dtype=object), centre.x, centre.y)
        whole = to_equal_area(parent, centre.x, centre.y)
        union = shapely.union_all(kids)
        assert abs(union.area - whole.area) / whole.area < TOLERANCE, code
        assert union.symmetric_difference(whole).area / whole.area < TOLERANCE, code
        left, right = shapely.STRtree(kids).query(kids, predicate="intersects")
        pairs = left < right
        overlap = shapely.area(shapely.intersection(kids[left[pairs]], kids[right[pairs]]))
        assert overlap.sum() < 1.0, code  # square metres, over the whole parent


@pytest.mark.parametrize("county", COUNTIES)
@pytest.mark.parametrize("layer", ["towns", "villages", "grids"])
def test_layers_are_valid_polygon_coverages(county: str, layer: str) -> None:
    features = _layer(county, layer)
    geoms = np.asarray([g for _, g in features], dtype=object)
    for props, geom in features:
        assert isinstance(geom, Polygon | MultiPolygon), props["code"]
        assert geom.is_valid and not geom.is_empty and geom.area > 0, props["code"]
        assert props["synthetic"] is True
        assert props["level"] == layer.removesuffix("s")
    assert shapely.coverage_is_valid(geoms)
    codes = [p["code"] for p, _ in features]
    assert codes == sorted(codes) and len(set(codes)) == len(codes)


@pytest.mark.parametrize("county", COUNTIES)
def test_grid_codes_counts_and_names(county: str) -> None:
    villages = {p["code"]: p["name"] for p, _ in _layer(county, "villages")}
    grids = _layer(county, "grids")
    per_village = Counter(p["parent_code"] for p, _ in grids)
    assert set(per_village) == set(villages)
    assert all(3 <= n <= 8 for n in per_village.values())
    assert 500 <= len(grids) <= 900
    numbers: dict[str, list[int]] = defaultdict(list)
    for props, _ in grids:
        code, village = props["code"], props["parent_code"]
        assert len(code) == 15 and code.isdigit() and code.startswith(village)
        numbers[village].append(int(code[12:]))
        assert props["name"] == f"{grid_name_stem(villages[village])}第{int(code[12:])}网格"
    assert all(sorted(n) == list(range(1, len(n) + 1)) for n in numbers.values())


def test_reading_order_is_rows_north_to_south_then_west_to_east() -> None:
    # A 3 x 3 block of 0.01° squares, listed shuffled; expected: NW, N, NE, W, C, E, SW, S, SE.
    cells = {
        (col, row): shapely.box(
            116 + 0.01 * col, 24 - 0.01 * row, 116.01 + 0.01 * col, 24.01 - 0.01 * row
        )
        for col in range(3)
        for row in range(3)
    }
    shuffled = [(2, 1), (0, 2), (1, 0), (2, 2), (0, 0), (1, 1), (2, 0), (1, 2), (0, 1)]
    order = reading_order([cells[k] for k in shuffled])
    assert [shuffled[i] for i in order] == [(c, r) for r in range(3) for c in range(3)]


@pytest.mark.parametrize("county", COUNTIES)
def test_grid_numbers_follow_reading_order(county: str) -> None:
    by_village: dict[str, list[BaseGeometry]] = defaultdict(list)
    for props, geom in _layer(county, "grids"):  # the file is sorted by code
        by_village[props["parent_code"]].append(geom)
    for village, geoms in by_village.items():
        assert reading_order(geoms) == list(range(len(geoms))), village


@pytest.mark.parametrize("county", COUNTIES)
def test_every_division_name_and_code_is_present(county: str) -> None:
    rows = _divisions(county)
    towns = {p["code"]: p for p, _ in _layer(county, "towns")}
    villages = {p["code"]: p for p, _ in _layer(county, "villages")}
    assert [r["code"] for r in rows if r["level"] == "county"] == [county]
    assert {r["code"]: r["name"] for r in rows if r["level"] == "town"} == {
        c: p["name"] for c, p in towns.items()
    }
    village_rows = [r for r in rows if r["level"] == "village"]
    assert len(village_rows) == VILLAGE_COUNTS[county]
    assert {(r["code"], r["name"], r["parent_code"]) for r in village_rows} == {
        (c, p["name"], p["parent_code"]) for c, p in villages.items()
    }
    for r in village_rows:
        series = r["code"][9]
        assert series == ("2" if r["name"].endswith("村委会") else "0"), r["name"]


@pytest.mark.parametrize("county", COUNTIES)
def test_gdal_reads_the_grids_as_wgs84(county: str) -> None:
    info = pyogrio.read_info(GEODATA / county / "grids.geojson")
    assert info["crs"] in {"EPSG:4326", "OGC:CRS84"}
    assert info["features"] == len(_layer(county, "grids"))


def test_village_codes_follow_file_order_and_keep_given_codes() -> None:
    rows = [
        Division("town", "441523105", "441523", "螺溪镇"),
        Division("village", "", "441523105", "螺溪社区居委会"),
        Division("village", "441523105201", "441523105", "欧田村委会"),
        Division("village", "", "441523105", "各安村委会"),
        Division("village", "", "441523105", "城东居委会"),
    ]
    assert [r.code for r in assign_village_codes(rows)] == [
        "441523105",
        "441523105001",
        "441523105201",
        "441523105202",
        "441523105002",
    ]
    with pytest.raises(ValueError, match="town code"):
        assign_village_codes(
            [rows[0], Division("village", "441523100201", "441523105", "甲村委会")]
        )


@pytest.mark.parametrize(
    ("village", "stem"),
    [("欧田村委会", "欧田村"), ("城北社区居委会", "城北社区"), ("城东居委会", "城东社区")],
)
def test_grid_name_stem(village: str, stem: str) -> None:
    assert grid_name_stem(village) == stem
