"""Region import: formats, checks that refuse the whole import, removals, grids, the command.

The input files are made from the sample county 蕉岭县 (geodata/441427). Its synthetic towns
tile the real boundary snapped to synth's grid, not the raw boundary (pieces of 1–2 m² stick
out), so the county file here is the union of its towns: a county's own files tile exactly.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import geopandas as gpd
import pytest
import shapely
from factories import make_user, report
from flask import Flask
from shapely.geometry import Polygon
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gridgov.config import ROOT
from gridgov.db import Database
from gridgov.geo.geocoder import geocode
from gridgov.geo.importer import import_grid_file
from gridgov.geo.regions_import import RegionImportReport, Source, import_region_files
from gridgov.models import Department, Grid, GridSet, Region, Role
from gridgov.regions import active_grid_set

COUNTY = "441427"
SAMPLE = ROOT / "geodata" / COUNTY
STRIP_DEG = 0.0003  # ~30 m
AUDIT_KEY = b"test-audit-key"

Layers = dict[str, gpd.GeoDataFrame]


# ---------------------------------------------------------------------------
# Files made from the sample county


@pytest.fixture(scope="module")
def layers() -> Layers:
    """The sample county's layers (EPSG:4326) with the columns a county would send."""
    towns = gpd.read_file(SAMPLE / "towns.geojson")[["code", "name", "parent_code", "geometry"]]
    villages = gpd.read_file(SAMPLE / "villages.geojson")[
        ["code", "name", "parent_code", "geometry"]
    ]
    county = gpd.GeoDataFrame(
        {"code": [COUNTY], "name": ["蕉岭县"]}, geometry=[towns.union_all()], crs="EPSG:4326"
    )
    return {"county": county, "towns": towns, "villages": villages}


def _copy(layers: Layers) -> Layers:
    return {role: frame.copy() for role, frame in layers.items()}


def _write(
    layers: Layers, folder: Path, suffix: str = "geojson", epsg: int = 4326, **options: Any
) -> dict[str, Path]:
    """Write each layer to its own file; return role → path."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for role, frame in layers.items():
        path = folder / f"{role}.{suffix}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Shapefile: 'parent_code' → 'parent_cod'
            frame.reset_index(drop=True).to_crs(epsg=epsg).to_file(path, **options)
        paths[role] = path
    return paths


def _import(session: Session, paths: dict[str, Any], **options: Any) -> RegionImportReport:
    return import_region_files(
        session,
        county_file=paths["county"],
        towns=paths["towns"],
        villages=paths["villages"],
        grids=paths.get("grids"),
        **options,
    )


def _snapshot(session: Session, county: str = COUNTY) -> dict[str, Any]:
    """Return every stored fact the import could change, to compare before and after."""
    session.expire_all()
    regions = session.execute(
        select(
            Region.code,
            Region.level,
            Region.name,
            Region.parent_code,
            Region.synthetic,
            Region.source,
            Region.geom,
        )
        .where(Region.code.startswith(county))
        .order_by(Region.code)
    ).all()
    return {
        "regions": [(*r[:6], r[6].wkb_hex if r[6] is not None else None) for r in regions],
        "departments": session.execute(
            select(Department.code, Department.name, Department.region_code).order_by(
                Department.code
            )
        ).all(),
        "grid_sets": session.execute(
            select(GridSet.id, GridSet.active, GridSet.grid_count).order_by(GridSet.id)
        ).all(),
    }


def _kinds(report: RegionImportReport, severity: str = "error") -> set[str]:
    return {p.kind for _, p in report.all_problems() if p.severity == severity}


def _errors(report: RegionImportReport, kind: str) -> list[Any]:
    return [
        (role, p) for role, p in report.all_problems() if p.kind == kind and p.severity == "error"
    ]


def _neighbours(frame: gpd.GeoDataFrame, prefix_length: int) -> tuple[int, int]:
    """Return two features with the same parent that share the longest edge."""
    best = (0.0, 0, 0)
    for i, j in zip(*frame.sindex.query(frame.geometry, predicate="touches"), strict=True):
        if i < j and frame.code[i][:prefix_length] == frame.code[j][:prefix_length]:
            shared = frame.geometry[i].intersection(frame.geometry[j]).length
            best = max(best, (shared, int(i), int(j)))
    return best[1], best[2]


def _fresh(backend: str, fresh_database_url: Callable[[str], str]) -> Database:
    from gridgov.bootstrap import init_database

    db = Database(fresh_database_url(backend), audit_key=AUDIT_KEY)
    init_database(db, ())
    return db


# ---------------------------------------------------------------------------
# A fresh database: regions from files, then grids, then a position


def test_a_fresh_database_imports_regions_then_grids_and_geocodes(
    backend: str, fresh_database_url: Callable[[str], str], layers: Layers, tmp_path: Path
) -> None:
    db = _fresh(backend, fresh_database_url)
    paths = _write(layers, tmp_path, "shp", 4526, encoding="GBK")
    try:
        with db.session() as s:
            assert s.scalar(select(func.count()).select_from(Region)) == 0
            first = _import(s, paths, encoding="GBK")
        assert first.ok and first.saved and first.county_created, first.to_text()
        assert first.warnings == []
        assert first.changes["town"]["added"] == sorted(layers["towns"].code)
        assert len(first.changes["village"]["added"]) == len(layers["villages"])
        with db.session() as s:
            county = s.get(Region, COUNTY)
            assert county is not None and county.name == "蕉岭县" and not county.synthetic
            village = s.get(Region, layers["villages"].code[0])
            assert village is not None and village.name == layers["villages"].name[0]
            assert village.parent_code == layers["villages"].code[0][:9]
            # The departments init gives a sample county: county bureaus and town offices.
            units = s.scalars(select(Department).where(Department.region_code.startswith(COUNTY)))
            by_region = {d.region_code for d in units}
            assert by_region == {COUNTY, *layers["towns"].code} and first.departments
            centre = s.scalar(select(Department).where(Department.code == f"{COUNTY}-zhengfa"))
            assert centre is not None and "蕉岭县" in centre.name
            before = _snapshot(s)

        with db.session() as s:
            again = _import(s, paths, encoding="GBK")
        assert again.ok and again.saved and not again.changed, again.to_text()
        assert "未作任何改动" in again.to_text()
        assert len(again.changes["village"]["unchanged"]) == len(layers["villages"])
        with db.session() as s:
            assert _snapshot(s) == before

        with db.session() as s:
            grids = import_grid_file(s, SAMPLE / "grids.geojson")
        assert grids.saved and grids.errors == [], grids.to_text()
        point = shapely.point_on_surface(layers["villages"].geometry[5])
        with db.session() as s:
            placement = geocode(s, point.x, point.y)
        assert placement.village_code == layers["villages"].code[5]
        assert placement.village_name == layers["villages"].name[5]
        assert (
            placement.county_name == "蕉岭县"
            and placement.grid_code[:12] == layers["villages"].code[5]
        )
    finally:
        db.dispose()


def test_regions_and_grids_import_together_and_a_village_without_grids_can_go(
    backend: str, fresh_database_url: Callable[[str], str], layers: Layers, tmp_path: Path
) -> None:
    db = _fresh(backend, fresh_database_url)
    try:
        with db.session() as s:
            assert _import(s, _write(layers, tmp_path / "a")).saved
        # Merge a village into its neighbour: the town stays tiled, the village goes.
        merged = _copy(layers)
        villages = merged["villages"]
        i, j = _neighbours(villages, 9)
        gone, kept = villages.code[j], villages.code[i]
        villages.loc[i, "geometry"] = villages.geometry[i].union(villages.geometry[j])
        merged["villages"] = villages.drop(index=j)
        grid_frame = gpd.read_file(SAMPLE / "grids.geojson")[["code", "name", "geometry"]]
        grid_frame = grid_frame[grid_frame.code.str[:12] != gone].copy()
        # The merged village's grids: its old ones plus one for the gone village's area.
        extra = gpd.GeoDataFrame(
            {"code": [kept + "999"], "name": ["并入网格"]},
            geometry=[layers["villages"].geometry[j]],
            crs="EPSG:4326",
        )
        merged_paths = _write(merged, tmp_path / "b")
        grid_path = tmp_path / "grids.gpkg"
        gpd.pd.concat([grid_frame, extra]).to_file(grid_path)
        with db.session() as s:
            result = _import(s, {**merged_paths, "grids": grid_path})
        assert result.ok and result.saved, result.to_text()
        assert result.changes["village"]["removed"] == [gone]
        assert result.changes["village"]["updated"] == [kept]
        assert _kinds(result, "warning") == {"region_removed"}
        assert result.grid_set_id is not None and result.grid_count == len(grid_frame) + 1
        with db.session() as s:
            assert s.get(Region, gone) is None
            active = active_grid_set(s, COUNTY)
            assert active is not None and active.id == result.grid_set_id
    finally:
        db.dispose()


# ---------------------------------------------------------------------------
# Formats and coordinate systems (checked only, on the sample database)


def _zip(paths: dict[str, Path]) -> dict[str, Path]:
    zipped = {}
    for role, shp in paths.items():
        archive = shp.with_suffix(".zip")
        with zipfile.ZipFile(archive, "w") as zf:
            for part in shp.parent.glob(f"{shp.stem}.*"):
                if part != archive:
                    zf.write(part, part.name)
        zipped[role] = archive
    return zipped


def _geopackage(layers: Layers, folder: Path, epsg: int) -> dict[str, Source]:
    path = folder / "regions.gpkg"
    folder.mkdir(parents=True, exist_ok=True)
    for role, frame in layers.items():
        frame.to_crs(epsg=epsg).to_file(path, layer=role)
    return {role: Source(path, role) for role in layers}


@pytest.mark.parametrize(
    ("fmt", "epsg"),
    [
        ("shp", 4526),  # CGCS2000 3° Gauss–Krüger zone 38, GBK attributes
        ("zip", 4526),  # the same Shapefiles zipped
        ("gpkg", 3857),  # one GeoPackage, three layers, Web Mercator
        ("geojson", 4490),  # CGCS2000 geographic
    ],
)
def test_every_format_and_crs_passes_the_checks(
    session: Session, layers: Layers, tmp_path: Path, fmt: str, epsg: int
) -> None:
    before = _snapshot(session)
    paths: dict[str, Any]
    if fmt == "gpkg":
        paths = _geopackage(layers, tmp_path, epsg)
    else:
        suffix = "shp" if fmt == "zip" else fmt
        options = {"encoding": "GBK"} if suffix == "shp" else {}
        paths = _write(layers, tmp_path, suffix, epsg, **options)
        if fmt == "zip":
            paths = _zip(paths)
    encoding = "GBK" if fmt in ("shp", "zip") else None

    result = _import(session, paths, encoding=encoding, dry_run=True)

    assert result.ok and not result.saved, result.to_text()
    assert {layer.crs for layer in result.layers.values()} == {f"EPSG:{epsg}"}
    assert result.grids_checked and "当前网格集" in result.grids_checked
    assert "可以导入" in result.to_text()
    assert _snapshot(session) == before


def test_a_gbk_shapefile_read_without_encoding_is_refused(
    session: Session, layers: Layers, tmp_path: Path
) -> None:
    paths = _write(layers, tmp_path, "shp", 4526, encoding="GBK")
    for path in paths.values():
        path.with_suffix(".cpg").unlink(missing_ok=True)  # as old county files come

    result = _import(session, paths)

    assert "bad_encoding" in _kinds(result) and not result.saved
    assert "--encoding GBK" in result.to_text()


def test_a_projected_file_without_crs_names_the_likely_one(
    session: Session, layers: Layers, tmp_path: Path
) -> None:
    frames = {r: f.to_crs(epsg=4526).set_crs(None, allow_override=True) for r, f in layers.items()}
    paths = {}
    for role, frame in frames.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame.to_file(tmp_path / f"{role}.shp")
        paths[role] = tmp_path / f"{role}.shp"

    refused = _import(session, paths)
    assert _kinds(refused) == {"no_crs"} and "EPSG:4526" in refused.to_text()

    supplied = _import(session, paths, crs="EPSG:4526", dry_run=True)
    assert supplied.ok, supplied.to_text()


# ---------------------------------------------------------------------------
# Broken files: the whole import is refused and the database stays as it was


Damage = Callable[[Layers], tuple[str, str, list[str]]]


def _overlapping_towns(layers: Layers) -> tuple[str, str, list[str]]:
    towns = layers["towns"]
    i, j = _neighbours(towns, 6)
    towns.loc[i, "geometry"] = towns.geometry[i].union(
        towns.geometry[j].intersection(towns.geometry[i].buffer(STRIP_DEG))
    )
    return "towns", "overlap", sorted([towns.code[i], towns.code[j]])


def _gap_in_town(layers: Layers) -> tuple[str, str, list[str]]:
    villages = layers["villages"]
    i = int(shapely.area(villages.geometry.values).argmax())
    villages.loc[i, "geometry"] = villages.geometry[i].buffer(-STRIP_DEG)
    return "villages", "gap", [villages.code[i][:9]]


def _village_outside_town(layers: Layers) -> tuple[str, str, list[str]]:
    villages, towns = layers["villages"], layers["towns"]
    town = towns.set_index("code").geometry
    lengths = [
        g.boundary.intersection(town[c[:9]].boundary).length
        for c, g in zip(villages.code, villages.geometry, strict=True)
    ]
    i = max(range(len(lengths)), key=lengths.__getitem__)
    geom = villages.geometry[i]
    villages.loc[i, "geometry"] = geom.union(
        geom.buffer(STRIP_DEG).difference(town[villages.code[i][:9]])
    )
    return "villages", "outside_parent", [villages.code[i], villages.code[i][:9]]


def _bad_code(layers: Layers) -> tuple[str, str, list[str]]:
    towns = layers["towns"]
    towns.loc[2, "code"] = towns.code[2] + "X"
    return "towns", "bad_code", [towns.code[2]]


def _duplicate_code(layers: Layers) -> tuple[str, str, list[str]]:
    villages = layers["villages"]
    villages.loc[4, "code"] = villages.code[3]
    return "villages", "duplicate_code", [villages.code[3]]


def _wrong_prefix(layers: Layers) -> tuple[str, str, list[str]]:
    villages = layers["villages"]
    code = COUNTY + "999" + villages.code[6][9:]
    villages.loc[6, "code"] = code
    villages.loc[6, "parent_code"] = code[:9]
    return "villages", "missing_parent", [code, code[:9]]


def _parent_column_disagrees(layers: Layers) -> tuple[str, str, list[str]]:
    villages, towns = layers["villages"], layers["towns"]
    other = next(c for c in towns.code if c != villages.code[8][:9])
    villages.loc[8, "parent_code"] = other
    return "villages", "parent_mismatch", [villages.code[8], other]


def _missing_name(layers: Layers) -> tuple[str, str, list[str]]:
    villages = layers["villages"]
    villages.loc[9, "name"] = ""
    return "villages", "empty_name", [villages.code[9]]


def _bow_tie(layers: Layers) -> tuple[str, str, list[str]]:
    villages = layers["villages"]
    x0, y0, x1, y1 = villages.geometry[11].bounds
    villages.loc[11, "geometry"] = Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)])
    return "villages", "invalid_geometry", [villages.code[11]]


def _county_code(layers: Layers) -> tuple[str, str, list[str]]:
    layers["county"].loc[0, "code"] = "44142"
    return "county", "bad_code", ["44142"]


@pytest.mark.parametrize(
    "damage",
    [
        _overlapping_towns,
        _gap_in_town,
        _village_outside_town,
        _bad_code,
        _duplicate_code,
        _wrong_prefix,
        _parent_column_disagrees,
        _missing_name,
        _bow_tie,
        _county_code,
    ],
    ids=lambda f: f.__name__.strip("_"),
)
def test_each_kind_of_damage_refuses_the_whole_import(
    session: Session, layers: Layers, tmp_path: Path, damage: Damage
) -> None:
    before = _snapshot(session)
    broken = _copy(layers)
    role, kind, codes = damage(broken)

    result = _import(session, _write(broken, tmp_path))

    assert not result.ok and not result.saved
    found = _errors(result, kind)
    assert any(r == role and sorted(p.codes) == sorted(codes) for r, p in found), result.to_text()
    text = result.to_text()
    assert all(code in text for code in codes) and "拒绝导入" in text
    if kind in ("overlap", "gap", "outside_parent"):
        problem = next(p for _, p in found)
        assert problem.area_m2 and problem.area_m2 > 1 and problem.location is not None
    assert _snapshot(session) == before


def test_the_json_report_names_the_layer_of_each_problem(
    session: Session, layers: Layers, tmp_path: Path
) -> None:
    broken = _copy(layers)
    _, _, codes = _overlapping_towns(broken)
    data = json.loads(json.dumps(_import(session, _write(broken, tmp_path)).to_dict()))
    assert data["ok"] is False and data["saved"] is False
    (overlap,) = [
        p for p in data["problems"] if p["kind"] == "overlap" and p["severity"] == "error"
    ]
    assert overlap["layer"] == "towns" and sorted(overlap["codes"]) == codes
    assert overlap["label"] == "镇（街道）重叠" and overlap["area_m2"] > 1


# ---------------------------------------------------------------------------
# Changes that the stored grids and events must survive


def _merge_into_neighbour(layers: Layers, village: str) -> tuple[Layers, str]:
    """Return layers without `village`, its area given to a neighbour in its town."""
    merged = _copy(layers)
    villages = merged["villages"]
    j = int(villages.index[villages.code == village][0])
    geom = villages.geometry[j]
    i = next(
        k
        for k in villages.index
        if k != j
        and villages.code[k][:9] == village[:9]
        and villages.geometry[k].intersection(geom).length > 0
    )
    villages.loc[i, "geometry"] = villages.geometry[i].union(geom)
    merged["villages"] = villages.drop(index=j)
    return merged, villages.code[i]


def test_removing_a_village_with_grids_is_refused(
    session: Session, layers: Layers, tmp_path: Path
) -> None:
    before = _snapshot(session)
    village = layers["villages"].code[12]
    merged, _ = _merge_into_neighbour(layers, village)

    result = _import(session, _write(merged, tmp_path))

    assert not result.saved
    (problem,) = [p for _, p in _errors(result, "region_has_grids")]
    assert problem.codes == [village] and "网格" in problem.message_zh
    assert _snapshot(session) == before


def test_removing_a_village_with_events_is_refused(
    session: Session, layers: Layers, tmp_path: Path, users: dict[str, Any]
) -> None:
    village = layers["villages"].code[20]
    grid = session.scalar(select(Grid.code).where(Grid.village_code == village).limit(1))
    assert grid is not None
    worker = make_user(session, "wg_test_441427", Role.GRID_WORKER, village, grid_codes=[grid])
    event = report(
        session, {**users, "wg_test_441427": worker}, reporter="wg_test_441427", grid=grid
    )
    assert event.village_code == village
    session.flush()
    before = _snapshot(session)
    merged, _ = _merge_into_neighbour(layers, village)

    result = _import(session, _write(merged, tmp_path))

    assert not result.saved
    assert {"region_has_events", "region_has_users", "region_has_grids"} <= _kinds(result)
    (problem,) = [p for _, p in _errors(result, "region_has_events")]
    assert problem.codes == [village] and "1 个事件" in problem.message_zh
    assert _snapshot(session) == before


def test_a_changed_village_boundary_must_still_fit_the_active_grid_set(
    session: Session, layers: Layers, tmp_path: Path
) -> None:
    before = _snapshot(session)
    changed = _copy(layers)
    villages = changed["villages"]
    i, j = _neighbours(villages, 9)
    strip = villages.geometry[j].intersection(villages.geometry[i].buffer(STRIP_DEG))
    villages.loc[i, "geometry"] = villages.geometry[i].union(strip)
    villages.loc[j, "geometry"] = villages.geometry[j].difference(strip)

    result = _import(session, _write(changed, tmp_path))

    assert not result.saved
    grid_problems = [p for _, p in result.all_problems() if "当前网格集" in p.message_zh]
    kinds = {p.kind for p in grid_problems if p.severity == "error"}
    assert {"outside_parent", "gap"} <= kinds, result.to_text()
    assert any(villages.code[i] in p.codes for p in grid_problems if p.kind == "gap")
    assert _snapshot(session) == before


def test_renaming_regions_updates_them_and_their_departments(
    session: Session, layers: Layers, tmp_path: Path
) -> None:
    renamed = _copy(layers)
    renamed["towns"].loc[0, "name"] = "新城街道"
    renamed["villages"].loc[0, "name"] = "新城社区"
    town, village = renamed["towns"].code[0], renamed["villages"].code[0]

    result = _import(session, _write(renamed, tmp_path))

    assert result.saved and result.changed, result.to_text()
    stored_town, stored_village = session.get(Region, town), session.get(Region, village)
    assert stored_town is not None and stored_town.name == "新城街道"
    assert stored_village is not None and stored_village.name == "新城社区"
    office = session.scalar(select(Department).where(Department.code == f"{town}-town_zongzhi"))
    assert office is not None and office.name.startswith("新城街道")


# ---------------------------------------------------------------------------
# The command


def _invoke(app: Flask, *args: str | Path) -> tuple[int, str]:
    result = app.test_cli_runner().invoke(args=["import-regions", *map(str, args)])
    return result.exit_code, result.output


def test_cli_imports_a_geopackage_and_forgets_cached_names(
    app: Flask, session: Session, layers: Layers, tmp_path: Path
) -> None:
    village = layers["villages"].code[0]
    point = shapely.point_on_surface(layers["villages"].geometry[0])
    assert geocode(session, point.x, point.y).village_name == layers["villages"].name[0]
    renamed = _copy(layers)
    renamed["villages"].loc[0, "name"] = "改名社区"
    gpkg = _geopackage(renamed, tmp_path, 4526)["county"].path

    code, output = _invoke(app, gpkg, "--dry-run", "--json")
    assert code == 0, output
    data = json.loads(output)
    assert (
        data["ok"]
        and not data["saved"]
        and data["layers"]["towns"]["crs"]["source"] == ("EPSG:4526")
    )

    code, output = _invoke(app, gpkg)
    assert code == 0, output
    assert "村（社区）：新增 0 个，更新 107 个" in output  # sample rows become the county's own
    session.expire_all()
    assert geocode(session, point.x, point.y).village_name == "改名社区"
    assert geocode(session, point.x, point.y).village_code == village


def test_cli_refuses_with_exit_code_1_and_separate_files(
    app: Flask, session: Session, layers: Layers, tmp_path: Path
) -> None:
    before = _snapshot(session)
    broken = _copy(layers)
    _, _, codes = _overlapping_towns(broken)
    paths = _write(broken, tmp_path, "shp", 4526, encoding="GBK")

    code, output = _invoke(
        app,
        "--county-file",
        paths["county"],
        "--towns",
        paths["towns"],
        "--villages",
        paths["villages"],
        "--encoding",
        "GBK",
    )

    assert code == 1
    assert all(c in output for c in codes) and "镇（街道）重叠" in output and "拒绝导入" in output
    assert _snapshot(session) == before

    code, output = _invoke(app, "--towns", paths["towns"])
    assert code == 2 and "--county-file" in output
