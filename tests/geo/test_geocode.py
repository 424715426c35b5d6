"""Geocoding against the sample counties: positions, free text, the CLI and the API."""

from __future__ import annotations

import json
import uuid

import pytest
import shapely
from flask import Flask
from flask.testing import FlaskClient
from shapely.geometry import MultiPolygon, Point, box
from sqlalchemy import select
from sqlalchemy.orm import Session

from gridgov.errors import Unprocessable
from gridgov.geo import geocoder
from gridgov.geo.crs import distance_m, from_wgs84
from gridgov.geo.gridsets import GridRecord, save_grid_set
from gridgov.geo.sample import upsert_region
from gridgov.models import Grid, Level, Region
from gridgov.regions import active_grid_set

PLACEMENT_FIELDS = {
    "grid_code",
    "grid_name",
    "village_code",
    "village_name",
    "town_code",
    "town_name",
    "county_code",
    "county_name",
    "snapped",
    "distance_m",
    "lng",
    "lat",
}
SHANWEI_CITY = (115.37, 22.79)  # 汕尾市城区, south of 陆河县
OUYTIAN = "441523105203"  # 欧田村委会, 螺溪镇 (geodata/441523/divisions.csv)


def villages(session: Session, county: str) -> list[Region]:
    return list(
        session.scalars(
            select(Region)
            .where(Region.level == Level.VILLAGE, Region.code.startswith(county))
            .order_by(Region.code)
        )
    )


def grids_union(session: Session, county: str) -> MultiPolygon:
    grid_set = active_grid_set(session, county)
    assert grid_set is not None
    geoms = session.scalars(select(Grid.geom).where(Grid.grid_set_id == grid_set.id)).all()
    return shapely.union_all(geoms)


def offset(lng: float, lat: float, metres: float, direction: str) -> tuple[float, float]:
    """Return the point `metres` east or south of (lng, lat), measured with distance_m."""
    if direction == "east":
        per_milli = distance_m(lng, lat, lng + 1e-3, lat)
        return lng + metres / per_milli * 1e-3, lat
    per_milli = distance_m(lng, lat, lng, lat - 1e-3)
    return lng, lat - metres / per_milli * 1e-3


def extreme_vertex(geom: shapely.Geometry, direction: str) -> tuple[float, float]:
    """Return the easternmost (or southernmost) vertex of `geom`."""
    coords = shapely.get_coordinates(geom)
    row = coords[:, 0].argmax() if direction == "east" else coords[:, 1].argmin()
    return float(coords[row, 0]), float(coords[row, 1])


# ---------------------------------------------------------------------------
# Positions


@pytest.mark.parametrize("county", ["441523", "441427"])
def test_village_representative_point_lands_in_a_grid_of_that_village(
    session: Session, county: str
) -> None:
    rows = villages(session, county)
    assert len(rows) > 100
    for village in rows:
        point = village.geom.representative_point()
        placement = geocoder.geocode(session, point.x, point.y)
        assert placement.village_code == village.code, village.name
        assert placement.village_name == village.name
        assert placement.grid_code.startswith(village.code)
        assert placement.county_code == county
        assert placement.town_code == village.parent_code
        assert not placement.snapped
        assert placement.distance_m == 0.0


def test_placement_names_the_whole_hierarchy(session: Session) -> None:
    village = session.get(Region, OUYTIAN)
    assert village is not None
    point = village.geom.representative_point()
    body = geocoder.geocode(session, point.x, point.y).to_dict()
    assert set(body) == PLACEMENT_FIELDS
    assert body["village_name"] == "欧田村委会"
    assert (body["town_code"], body["town_name"]) == ("441523105", "螺溪镇")
    assert (body["county_code"], body["county_name"]) == ("441523", "陆河县")
    assert body["grid_name"]
    assert (body["lng"], body["lat"]) == (round(point.x, 7), round(point.y, 7))


def test_a_renamed_village_is_named_without_clearing_the_cache(session: Session) -> None:
    # Another process (a CLI import) renames the village: this process's cached index
    # notices through the geodata version, with no clear_index_cache() here.
    village = session.get(Region, OUYTIAN)
    assert village is not None
    point = village.geom.representative_point()
    assert geocoder.geocode(session, point.x, point.y).village_name == "欧田村委会"
    outcome = upsert_region(
        session,
        OUYTIAN,
        Level.VILLAGE,
        "欧田社区",
        village.parent_code,
        village.geom,
        synthetic=village.synthetic,
        source=village.source,
    )
    session.flush()
    assert outcome == "updated"
    assert geocoder.geocode(session, point.x, point.y).village_name == "欧田社区"


@pytest.mark.parametrize("direction", ["east", "south"])
def test_point_50_m_outside_the_county_snaps_and_300_m_is_refused(
    session: Session, direction: str
) -> None:
    union = grids_union(session, "441523")
    vx, vy = extreme_vertex(union, direction)
    lng, lat = offset(vx, vy, 50.0, direction)
    assert distance_m(vx, vy, lng, lat) == pytest.approx(50.0, abs=0.01)
    assert not union.covers(Point(lng, lat))

    placement = geocoder.geocode(session, lng, lat, tolerance_m=200.0)
    assert placement.snapped
    assert placement.county_code == "441523"
    assert placement.distance_m == pytest.approx(50.0, abs=0.5)
    assert placement.to_dict()["snapped"] is True

    far_lng, far_lat = offset(vx, vy, 300.0, direction)
    with pytest.raises(Unprocessable) as refused:
        geocoder.geocode(session, far_lng, far_lat, tolerance_m=200.0)
    assert refused.value.code == "outside_jurisdiction"
    assert refused.value.details["nearest_m"] == pytest.approx(300.0, abs=1.0)
    assert "约 300 米" in refused.value.message


def test_point_in_shanwei_city_is_outside_jurisdiction(session: Session) -> None:
    for county in ("441523", "441427"):
        assert not session.get(Region, county).geom.covers(Point(*SHANWEI_CITY))
    with pytest.raises(Unprocessable) as refused:
        geocoder.geocode(session, *SHANWEI_CITY)
    assert refused.value.code == "outside_jurisdiction"
    assert refused.value.status == 422
    assert refused.value.message.startswith("坐标不在本系统管辖范围内（最近网格距离约")
    assert refused.value.details["nearest_m"] > 1000


@pytest.mark.parametrize("crs", ["gcj02", "bd09", "cgcs2000", "amap"])
def test_chinese_map_coordinates_give_the_same_grid_as_wgs84(session: Session, crs: str) -> None:
    for code in (OUYTIAN, villages(session, "441427")[5].code):
        point = session.get(Region, code).geom.representative_point()
        expected = geocoder.geocode(session, point.x, point.y)
        lng, lat = from_wgs84(point.x, point.y, crs)
        placement = geocoder.geocode(session, lng, lat, crs=crs)
        assert placement.grid_code == expected.grid_code
        assert placement.lng == pytest.approx(point.x, abs=1e-6)
        assert placement.lat == pytest.approx(point.y, abs=1e-6)


def test_gcj02_read_as_wgs84_lands_elsewhere(session: Session) -> None:
    # The point of converting: GCJ-02 is hundreds of metres off.
    point = session.get(Region, OUYTIAN).geom.representative_point()
    lng, lat = from_wgs84(point.x, point.y, "gcj02")
    assert distance_m(point.x, point.y, lng, lat) > 300


@pytest.mark.parametrize(
    ("lng", "lat", "crs", "code"),
    [
        ("abc", "23.3", "wgs84", "bad_coordinates"),
        ("115.6", "999", "wgs84", "bad_coordinates"),
        ("nan", "23.3", "wgs84", "bad_coordinates"),
        (None, "23.3", "wgs84", "bad_coordinates"),
        ("115.6", "23.3", "foo", "unknown_crs"),
    ],
)
def test_bad_input_is_refused(
    session: Session, lng: str | None, lat: str, crs: str, code: str
) -> None:
    with pytest.raises(Unprocessable) as refused:
        geocoder.geocode(session, lng, lat, crs=crs)
    assert refused.value.code == code
    assert refused.value.status == 422
    assert any("\u4e00" <= ch <= "\u9fff" for ch in refused.value.message)


def test_cache_is_rebuilt_when_a_new_grid_set_is_activated(session: Session) -> None:
    point = session.get(Region, OUYTIAN).geom.representative_point()
    elsewhere = session.get(Region, "441523100001").geom.representative_point()
    other_county = villages(session, "441427")[0].geom.representative_point()
    before = geocoder.geocode(session, point.x, point.y)
    assert geocoder.geocode(session, elsewhere.x, elsewhere.y).village_code == "441523100001"
    assert geocoder.grid_catalog(session) is geocoder.grid_catalog(session)

    tiny = box(point.x - 0.001, point.y - 0.001, point.x + 0.001, point.y + 0.001)
    code = OUYTIAN + "901"
    save_grid_set(
        session,
        "441523",
        [GridRecord(code, "测试网格", tiny)],
        name=f"测试网格集 {uuid.uuid4().hex[:8]}",
    )
    after = geocoder.geocode(session, point.x, point.y)
    assert before.grid_code != code
    assert (after.grid_code, after.grid_name) == (code, "测试网格")
    # The rest of 陆河县 is no longer covered; 蕉岭县's active set is untouched.
    with pytest.raises(Unprocessable) as refused:
        geocoder.geocode(session, elsewhere.x, elsewhere.y)
    assert refused.value.code == "outside_jurisdiction"
    assert geocoder.geocode(session, other_county.x, other_county.y).county_code == "441427"


# ---------------------------------------------------------------------------
# Free text


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("螺溪镇欧田村委会附近", OUYTIAN),
        ("欧田村", OUYTIAN),
        ("欧田村委会门口", OUYTIAN),
        ("陆河县螺溪镇欧田", OUYTIAN),
        ("河田镇城北社区", "441523100001"),
        ("陆河县城北社区居委会", "441523100001"),
        ("蕉城镇城北居委会", "441427100002"),
        ("长潭镇白马村", "441427102202"),
        ("三圳镇居委会", "441427103001"),  # a village named after its town
        ("三圳镇", "441427103"),  # …and the town itself
        ("螺溪镇", "441523105"),
        ("螺溪", "441523105"),  # a bare name means the town, not 螺溪村委会
        ("螺溪村", "441523105204"),
        ("陆河县", "441523"),
    ],
)
def test_text_resolves_to_the_named_region(session: Session, text: str, code: str) -> None:
    match = geocoder.resolve_text(session, text)
    assert match.region is not None, match.candidates
    assert match.region.code == code
    assert match.candidates == ()


@pytest.mark.parametrize(
    ("text", "codes"),
    [
        ("城北社区", {"441427100002", "441523100001"}),
        ("河田镇欧田村", {"441523100", OUYTIAN}),
        ("火星基地", set()),
        ("", set()),
    ],
)
def test_ambiguous_or_unknown_text_resolves_to_nothing(
    session: Session, text: str, codes: set[str]
) -> None:
    match = geocoder.resolve_text(session, text)
    assert match.region is None
    assert {r.code for r in match.candidates} == codes


def test_village_text_is_placed_at_its_representative_point(session: Session) -> None:
    answer = geocoder.geocode_text(session, "螺溪镇欧田村委会附近")
    assert (answer["code"], answer["name"], answer["level"]) == (OUYTIAN, "欧田村委会", "village")
    assert (answer["town_name"], answer["county_name"]) == ("螺溪镇", "陆河县")
    placement = answer["placement"]
    assert set(placement) == PLACEMENT_FIELDS
    assert placement["village_code"] == OUYTIAN
    village = session.get(Region, OUYTIAN)
    assert village.geom.covers(Point(placement["lng"], placement["lat"]))


def test_town_text_has_no_grid_placement(session: Session) -> None:
    answer = geocoder.geocode_text(session, "螺溪镇")
    assert (answer["level"], answer["county_code"]) == ("town", "441523")
    assert answer["placement"] is None


def test_unresolved_text_raises(session: Session) -> None:
    with pytest.raises(Unprocessable) as ambiguous:
        geocoder.geocode_text(session, "城北社区")
    assert ambiguous.value.code == "ambiguous_place"
    assert "蕉城镇城北居委会" in ambiguous.value.message
    assert len(ambiguous.value.details["candidates"]) == 2
    with pytest.raises(Unprocessable) as unknown:
        geocoder.geocode_text(session, "火星基地")
    assert unknown.value.code == "place_not_found"


@pytest.mark.parametrize(
    ("name", "level", "expected"),
    [
        ("欧田村委会", "village", {"欧田村委会", "欧田村", "欧田村委", "欧田村民委员会", "欧田"}),
        ("城北社区居委会", "village", {"城北社区居委会", "城北社区", "城北居委会", "城北"}),
        ("螺溪镇", "town", {"螺溪镇", "螺溪"}),
        ("陆河县", "county", {"陆河县", "陆河"}),
        ("上村村委会", "village", {"上村村委会", "上村村", "上村村委", "上村村民委员会", "上村"}),
        ("新村", "village", {"新村", "新村委会", "新村委"}),  # 新 is too short to stand alone
    ],
)
def test_name_variants(name: str, level: str, expected: set[str]) -> None:
    variants = dict(geocoder.name_variants(name, level))
    assert set(variants) == expected
    assert variants[name] is True


# ---------------------------------------------------------------------------
# CLI


def run_cli(app: Flask, *args: str) -> tuple[int, dict]:
    result = app.test_cli_runner().invoke(args=["geocode", *args])
    return result.exit_code, json.loads(result.output)


def test_cli_prints_the_placement(app: Flask) -> None:
    status, body = run_cli(app, "115.6", "23.3")
    assert status == 0
    assert set(body) == PLACEMENT_FIELDS
    assert body["county_code"] == "441523"


def test_cli_accepts_other_coordinate_systems(app: Flask, session: Session) -> None:
    point = session.get(Region, OUYTIAN).geom.representative_point()
    lng, lat = from_wgs84(point.x, point.y, "bd09")
    status, body = run_cli(app, repr(lng), repr(lat), "--crs", "bd09")
    assert status == 0
    assert body["village_code"] == OUYTIAN


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["115.37", "22.79"], "outside_jurisdiction"),
        (["-70.6", "-33.4"], "outside_jurisdiction"),  # negative numbers are arguments
        (["abc", "23.3"], "bad_coordinates"),
        (["115.6", "23.3", "--crs", "foo"], "unknown_crs"),
        (["--text", "火星基地"], "place_not_found"),
    ],
)
def test_cli_refusal_prints_the_error_and_exits_1(app: Flask, args: list[str], code: str) -> None:
    status, body = run_cli(app, *args)
    assert status == 1
    assert body["error"]["code"] == code


def test_cli_snaps_with_the_given_tolerance(app: Flask, session: Session) -> None:
    vx, vy = extreme_vertex(grids_union(session, "441523"), "east")
    lng, lat = offset(vx, vy, 50.0, "east")
    status, body = run_cli(app, repr(lng), repr(lat), "--tolerance", "100")
    assert (status, body["snapped"]) == (0, True)
    status, body = run_cli(app, repr(lng), repr(lat), "--tolerance", "10")
    assert (status, body["error"]["code"]) == (1, "outside_jurisdiction")


def test_cli_resolves_text(app: Flask) -> None:
    status, body = run_cli(app, "--text", "螺溪镇欧田村委会附近")
    assert status == 0
    assert body["code"] == OUYTIAN
    assert body["placement"]["village_code"] == OUYTIAN


def test_cli_without_a_position_is_a_usage_error(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["geocode", "115.6"])
    assert result.exit_code == 2


# ---------------------------------------------------------------------------
# API


def test_api_geocodes_a_position(client: FlaskClient) -> None:
    response = client.get("/api/v1/geocode", query_string={"lng": "115.6", "lat": "23.3"})
    assert response.status_code == 200
    assert set(response.json) == PLACEMENT_FIELDS
    assert response.json["county_name"] == "陆河县"


def test_api_converts_gcj02(client: FlaskClient, session: Session) -> None:
    point = session.get(Region, OUYTIAN).geom.representative_point()
    lng, lat = from_wgs84(point.x, point.y, "gcj02")
    response = client.get("/api/v1/geocode", query_string={"lng": lng, "lat": lat, "crs": "gcj02"})
    assert response.status_code == 200
    assert response.json["village_code"] == OUYTIAN


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ({"lng": "abc", "lat": "23.3"}, 422, "bad_coordinates"),
        ({"lng": "115.6", "lat": "999"}, 422, "bad_coordinates"),
        ({"lng": "115.6", "lat": "23.3", "crs": "foo"}, 422, "unknown_crs"),
        ({"lng": "115.37", "lat": "22.79"}, 422, "outside_jurisdiction"),
        ({}, 400, "missing_parameter"),
        ({"lng": "115.6"}, 400, "missing_parameter"),
        ({"lng": "115.6", "lat": ""}, 400, "missing_parameter"),
        ({"q": "城北社区"}, 422, "ambiguous_place"),
        ({"q": "火星基地"}, 422, "place_not_found"),
    ],
)
def test_api_refusals(client: FlaskClient, query: dict, status: int, code: str) -> None:
    response = client.get("/api/v1/geocode", query_string=query)
    assert response.status_code == status
    assert response.json["error"]["code"] == code
    assert response.json["error"]["message"]


def test_api_outside_names_the_nearest_distance(client: FlaskClient) -> None:
    response = client.get("/api/v1/geocode", query_string={"lng": "115.37", "lat": "22.79"})
    error = response.json["error"]
    assert "最近网格距离约" in error["message"]
    assert error["details"]["nearest_m"] > 1000


def test_api_resolves_text(client: FlaskClient) -> None:
    response = client.get("/api/v1/geocode", query_string={"q": "螺溪镇欧田村委会附近"})
    assert response.status_code == 200
    assert response.json["code"] == OUYTIAN
    assert response.json["placement"]["village_code"] == OUYTIAN
