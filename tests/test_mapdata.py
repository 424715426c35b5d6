"""The 民情地图's GeoJSON (gridgov.mapdata and /api/v1/map/*), on both backends.

The scene: seven events in 螺溪镇 and 河田镇 at known grids and times; the map's numbers
must be gridgov.stats' numbers for the same filter, its polygons those in the box at the
level of the zoom, its events clusters or points by zoom, and all of it only within the
caller's jurisdiction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import shapely
from factories import active_grids, make_event, report
from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from sqlplans import sqlite_plans

from gridgov import mapdata, stats
from gridgov.auth import issue_token
from gridgov.db import utcnow
from gridgov.errors import Forbidden, Unprocessable
from gridgov.geo.crs import from_wgs84
from gridgov.geo.sample import upsert_region
from gridgov.models import Event, EventState, Level, Region, User
from gridgov.photos import PhotoStore
from gridgov.workflow.worktime import SHANGHAI

S = EventState
LUOXI = "441523105"
HETIAN = "441523100"
LEVEL_ZOOM = {"town": 10, "village": 12, "grid": 15}


@dataclass
class Scene:
    now: datetime
    events: dict[str, Event]
    grids: dict[str, str]

    def ids(self, *names: str) -> set[int]:
        return {self.events[n].id for n in names}


IN_PERIOD = ("closed", "g1_open", "g2_open", "luoxi_other", "hetian", "late")
IN_LUOXI = ("closed", "g1_open", "g2_open", "luoxi_other", "late")


@pytest.fixture
def scene(session: Session, users: dict[str, User], tmp_path: Path) -> Scene:
    now = utcnow()
    wgy = users["wgy"]
    g1, g2 = wgy.grid_codes[:2]
    other = next(
        g.code for g in active_grids(session, LUOXI) if not g.code.startswith(wgy.region_code)
    )
    hetian = users["wgy2"].grid_codes[0]
    day = timedelta(days=1)
    events = {
        "closed": make_event(
            session, users, S.CLOSED, grid=g1, now=now - 5 * day, store=PhotoStore(tmp_path)
        ),
        "g1_open": report(session, users, grid=g1, now=now - 3 * day),
        "g2_open": report(session, users, grid=g2, matter="0501", now=now - 2 * day),
        "luoxi_other": report(
            session, users, reporter="ddy", grid=other, now=now - day, source="hotline"
        ),
        "hetian": report(session, users, reporter="ddy", grid=hetian, now=now - day),
        "old": report(session, users, reporter="wgy2", grid=hetian, now=now - 40 * day),
        "late": report(session, users, grid=g2, now=now - 20 * day),
    }
    session.flush()
    assert events["late"].due_at < now and events["late"].state == S.REPORTED
    return Scene(now, events, {"g1": g1, "g2": g2, "other": other, "hetian": hetian})


def query(now: datetime, **args: Any) -> mapdata.MapQuery:
    return mapdata.parse_query({k: str(v) for k, v in args.items()}, now)


def period(scene: Scene) -> dict[str, str]:
    today = scene.now.astimezone(SHANGHAI).date()
    return {"from": (today - timedelta(days=29)).isoformat(), "to": today.isoformat()}


def grid_bbox(session: Session, code: str, pad: float = 0.0) -> str:
    grid = next(g for g in active_grids(session, code) if g.code == code)
    x1, y1, x2, y2 = grid.geom.bounds
    return f"{x1 - pad},{y1 - pad},{x2 + pad},{y2 + pad}"


# -- areas ----------------------------------------------------------------------------


def assert_same_numbers(shown: dict[str, Any], full: dict[str, Any]) -> None:
    """The areas carry the KPIs the map shows (not all of them), each equal to the stats'."""
    assert set(mapdata.AREA_KPIS) | set(mapdata.TOTAL_KPIS) <= set(shown)
    assert "handling_hours" not in shown  # only what the map shows is aggregated
    assert shown == {k: full[k] for k in shown}


@pytest.mark.parametrize("level", ["town", "village", "grid"])
@pytest.mark.parametrize("metric", ["received", "closure_rate"])
def test_area_numbers_are_stats_grouped_by_the_level(
    session: Session, users: dict[str, User], scene: Scene, level: str, metric: str
) -> None:
    ld = users["ld"]
    q = query(scene.now, zoom=LEVEL_ZOOM[level], metric=metric, **period(scene))
    body = mapdata.areas(session, ld, q, scene.now)
    assert body["level"] == level
    expected = stats.compute(
        session,
        ld,
        group_by=level,
        date_from=q.date_from,
        date_to=q.date_to,
        as_of=scene.now,
    )
    assert_same_numbers(body["totals"], expected["totals"])
    assert body["totals"]["received"] == len(IN_PERIOD)
    groups = {g["key"]: g for g in expected["groups"]}
    shown = {f["id"]: f["properties"] for f in body["features"]}
    assert set(groups) <= set(shown), "every group with events has its polygon"
    zero = stats.derive({c.key: 0 for c in stats.COUNTS})
    for code, props in shown.items():
        want = groups.get(code, zero)
        for key in mapdata.AREA_KPIS:
            assert props[key] == want[key], (code, key)
        assert props["value"] == want[metric]
        assert props["color"] == mapdata.color_for(
            mapdata.METRICS[metric], want[metric], body["legend"]
        )
    county = [c for c in mapdata.shapes(session, level, LEVEL_ZOOM[level]).codes]
    assert len(shown) == len([c for c in county if c.startswith(ld.region_code)])


def test_area_numbers_follow_the_filter(
    session: Session, users: dict[str, User], scene: Scene
) -> None:
    ld = users["ld"]
    q = query(scene.now, zoom=12, matter="05", source="grid_worker", **period(scene))
    body = mapdata.areas(session, ld, q, scene.now)
    expected = stats.compute(
        session,
        ld,
        group_by="village",
        date_from=q.date_from,
        date_to=q.date_to,
        matter="05",
        source="grid_worker",
        as_of=scene.now,
    )
    assert_same_numbers(body["totals"], expected["totals"])
    assert body["totals"]["received"] == 1
    village = scene.events["g2_open"].village_code
    props = next(f["properties"] for f in body["features"] if f["id"] == village)
    assert props["received"] == 1
    # Several sources: the KPIs cannot take them, so the areas ignore the source filter.
    several = query(scene.now, zoom=12, source="grid_worker,hotline", **period(scene))
    assert several.stats_source is None


def test_the_api_serves_the_same_numbers_as_the_stats_api(
    client: FlaskClient, session: Session, users: dict[str, User], scene: Scene
) -> None:
    token = issue_token(session, users["ld"])
    headers = {"Authorization": f"Bearer {token}"}
    params = {**period(scene), "matter": "01"}
    areas = client.get(
        "/api/v1/map/areas", query_string={**params, "zoom": 10}, headers=headers
    ).get_json()
    by_town = client.get(
        "/api/v1/stats", query_string={**params, "group_by": "town"}, headers=headers
    ).get_json()
    assert_same_numbers(areas["totals"], by_town["totals"])
    for group in by_town["groups"]:
        props = next(f["properties"] for f in areas["features"] if f["id"] == group["key"])
        assert {k: props[k] for k in mapdata.AREA_KPIS} == {k: group[k] for k in mapdata.AREA_KPIS}


def test_bbox_selects_the_polygons_it_meets(
    session: Session, users: dict[str, User], scene: Scene
) -> None:
    ld = users["ld"]
    bbox = grid_bbox(session, scene.grids["g1"])
    body = mapdata.areas(session, ld, query(scene.now, zoom=16, bbox=bbox), scene.now)
    codes = {f["id"] for f in body["features"]}
    assert scene.grids["g1"] in codes
    assert scene.grids["hetian"] not in codes
    x1, y1, x2, y2 = (float(v) for v in bbox.split(","))
    box = shapely.box(x1, y1, x2, y2)
    for f in body["features"]:
        assert shapely.box(*shapely.geometry.shape(f["geometry"]).bounds).intersects(box)
    assert len(codes) < 30
    far = mapdata.areas(session, ld, query(scene.now, zoom=16, bbox="100,30,100.1,30.1"), scene.now)
    assert far["features"] == []


@pytest.mark.parametrize(
    ("zoom", "level"),
    [
        (6, "town"),
        (10, "town"),
        (11, "town"),
        (12, "village"),
        (13, "village"),
        (14, "grid"),
        (18, "grid"),
    ],
)
def test_zoom_picks_the_level(zoom: int, level: str) -> None:
    assert mapdata.level_for_zoom(zoom) == level


def test_level_follows_zoom_unless_asked(
    session: Session, users: dict[str, User], scene: Scene
) -> None:
    ld = users["ld"]
    for zoom, level, prefix_len in ((10, "town", 9), (12, "village", 12), (15, "grid", 15)):
        body = mapdata.areas(session, ld, query(scene.now, zoom=zoom), scene.now)
        assert body["level"] == level
        assert body["features"] and all(len(f["id"]) == prefix_len for f in body["features"])
    forced = mapdata.areas(session, ld, query(scene.now, zoom=15, level="town"), scene.now)
    assert forced["level"] == "town"


def test_geometries_are_simplified_per_zoom_and_cached(session: Session, scene: Scene) -> None:
    coarse = mapdata.shapes(session, "village", 10)
    assert mapdata.shapes(session, "village", 10) is coarse
    fine = mapdata.shapes(session, "village", 16)

    def vertices(shapes: Any) -> int:
        return sum(
            shapely.get_num_coordinates(shapely.geometry.shape(g)) for g in shapes.geometries
        )

    assert vertices(coarse) < vertices(fine)
    assert coarse.codes == fine.codes


def test_polygons_follow_a_change_made_elsewhere(session: Session) -> None:
    # A region import in another process changes a village's name and outline: the cached
    # polygons are rebuilt (the geodata version is in the key) without clear_cache() here.
    before = mapdata.shapes(session, "village", 12, county="441523")
    code = before.codes[0]
    region = session.get(Region, code)
    assert region is not None
    smaller = region.geom.buffer(-0.0005)
    upsert_region(
        session,
        code,
        Level.VILLAGE,
        "改名测试村",
        region.parent_code,
        smaller,
        synthetic=region.synthetic,
        source=region.source,
    )
    session.flush()
    after = mapdata.shapes(session, "village", 12, county="441523")
    i = after.codes.index(code)
    assert after.names[i] == "改名测试村"
    assert after.bounds[i][0] > before.bounds[before.codes.index(code)][0]


def test_warming_builds_every_zoom_of_every_county_once(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    mapdata.clear_cache()
    zooms = 17 - 8 + 1
    assert mapdata.warm(session) == 2 * zooms  # both sample counties
    assert mapdata.warm(session) == 0  # all cached
    region = session.get(Region, "441427103")
    assert region is not None
    upsert_region(
        session,
        region.code,
        Level.TOWN,
        region.name + "（改）",
        region.parent_code,
        region.geom,
        synthetic=region.synthetic,
        source=region.source,
    )
    session.flush()
    assert mapdata.warm(session) == 2 * zooms  # a new geodata version: rebuilt
    # More than the cache holds: only the default county is warmed.
    mapdata.clear_cache()
    monkeypatch.setattr(mapdata, "_CACHE_SIZE", zooms + 5)
    assert mapdata.warm(session, default_county="441523") == zooms
    assert mapdata.warm(session, default_county="441523") == 0


@pytest.mark.parametrize("level", ["town", "village", "grid"])
def test_one_county_loads_only_its_polygons(session: Session, level: str) -> None:
    everything = mapdata.shapes(session, level, 12)
    jiaoling = mapdata.shapes(session, level, 12, county="441427")
    luhe = mapdata.shapes(session, level, 12, county="441523")
    assert jiaoling.codes and luhe.codes
    assert all(c.startswith("441427") for c in jiaoling.codes)
    assert all(c.startswith("441523") for c in luhe.codes)
    assert sorted(jiaoling.codes + luhe.codes) == sorted(everything.codes)
    assert mapdata.shapes(session, level, 12, county="441427") is jiaoling


def test_legend_classes() -> None:
    counts = mapdata.legend(mapdata.METRICS["received"], [0, 3, 37, None])
    assert [c["label"] for c in counts] == ["1–10", "11–20", "21–30", "31–40", "41–50", "无事件"]
    metric = mapdata.METRICS["received"]
    assert mapdata.color_for(metric, 0, counts) == mapdata.NO_DATA_COLOR
    assert mapdata.color_for(metric, 37, counts) == metric.colors[3]
    rates = mapdata.legend(mapdata.METRICS["closure_rate"], [0.5])
    assert rates[0]["label"] == "0%–20%" and rates[-2]["label"] == "80%–100%"
    rate = mapdata.METRICS["closure_rate"]
    assert mapdata.color_for(rate, None, rates) == mapdata.NO_DATA_COLOR
    assert mapdata.color_for(rate, 1.0, rates) == rate.colors[-1]
    assert mapdata.color_for(rate, 0.0, rates) == rate.colors[0]


# -- events ---------------------------------------------------------------------------


def test_low_zoom_gives_server_side_clusters(
    session: Session, users: dict[str, User], scene: Scene
) -> None:
    body = mapdata.events(session, users["ld"], query(scene.now, zoom=10), scene.now)
    assert body["mode"] == "clusters"
    assert body["total"] == len(IN_PERIOD)
    counts = [f["properties"]["count"] for f in body["features"]]
    assert sum(counts) == len(IN_PERIOD)
    assert len(body["features"]) < len(IN_PERIOD)  # g1 and g2 events share cells at zoom 10
    assert sum(f["properties"]["overdue_open"] for f in body["features"]) == 1
    assert all(set(f["properties"]) >= {"count", "open", "bounds"} for f in body["features"])


def test_zoomed_in_gives_points_with_popups(
    session: Session, users: dict[str, User], scene: Scene
) -> None:
    bbox = grid_bbox(session, scene.grids["g1"], pad=0.001)
    body = mapdata.events(session, users["ld"], query(scene.now, zoom=16, bbox=bbox), scene.now)
    assert body["mode"] == "points"
    assert {f["id"] for f in body["features"]} == scene.ids("closed", "g1_open")
    closed = next(f for f in body["features"] if f["id"] == scene.events["closed"].id)
    props = closed["properties"]
    assert props["state"] == "closed" and props["state_label"] == "已办结"
    assert props["url"] == f"/events/{scene.events['closed'].id}"
    assert props["matter_name"] and props["town_name"] == "螺溪镇"
    e = scene.events["closed"]
    assert closed["geometry"]["coordinates"] == [round(e.lng, 6), round(e.lat, 6)]


@pytest.mark.parametrize("backend", ["sqlite"], scope="session")
def test_points_are_found_in_the_covering_index_on_sqlite(
    session: Session, users: dict[str, User], scene: Scene, backend: str
) -> None:
    # SQLite only (its plan does not depend on statistics): the newest matching ids come from
    # the county's covering index alone, box and filters included; the table is read only
    # for those ids (by rowid), never scanned or read per event of the period.
    bbox = grid_bbox(session, scene.grids["g1"], pad=0.001)
    q = query(scene.now, zoom=16, bbox=bbox, state="closed,reported")
    plans = sqlite_plans(
        session, lambda: mapdata.events(session, users["ld"], q, scene.now), "ORDER BY"
    )
    assert len(plans) == 1, plans
    assert "USING COVERING INDEX ix_events_county_cover" in plans[0], plans[0]
    assert "INTEGER PRIMARY KEY" in plans[0] and "SCAN events" not in plans[0], plans[0]


def test_points_are_capped(
    session: Session, users: dict[str, User], scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mapdata, "MAX_POINTS", 1)
    bbox = grid_bbox(session, scene.grids["g1"], pad=0.001)
    body = mapdata.events(session, users["ld"], query(scene.now, zoom=16, bbox=bbox), scene.now)
    assert body["mode"] == "clusters" and body["total"] == 2


def test_event_filters(session: Session, users: dict[str, User], scene: Scene) -> None:
    ld = users["ld"]

    def ids(**args: Any) -> set[int]:
        body = mapdata.events(session, ld, query(scene.now, zoom=18, **args), scene.now)
        assert body["mode"] == "points"
        return {f["id"] for f in body["features"]}

    assert ids() == scene.ids(*IN_PERIOD)
    assert ids(state="closed") == scene.ids("closed")
    assert ids(state="reported,closed") == scene.ids(*IN_PERIOD)
    assert ids(category="05") == scene.ids("g2_open")
    assert ids(source="hotline") == scene.ids("luoxi_other")
    assert ids(department="none") == scene.ids(*IN_PERIOD) - scene.ids("closed")
    lead = scene.events["closed"].lead_department_id
    assert ids(department=str(lead)) == scene.ids("closed")
    assert ids(overdue=1) == scene.ids("late")
    assert ids(region=HETIAN) == scene.ids("hetian")
    since = (scene.now - timedelta(days=60)).astimezone(SHANGHAI).date().isoformat()
    assert ids(**{"from": since}) == scene.ids(*IN_PERIOD, "old")


def test_town_operator_sees_only_their_town(
    session: Session, users: dict[str, User], scene: Scene
) -> None:
    zzzx = users["zzzx"]
    towns = mapdata.areas(session, zzzx, query(scene.now, zoom=10), scene.now)
    assert [f["id"] for f in towns["features"]] == [LUOXI]
    assert towns["totals"]["received"] == len(IN_LUOXI)
    villages = mapdata.areas(session, zzzx, query(scene.now, zoom=12), scene.now)
    assert villages["features"] and all(f["id"].startswith(LUOXI) for f in villages["features"])
    points = mapdata.events(session, zzzx, query(scene.now, zoom=18), scene.now)
    assert {f["id"] for f in points["features"]} == scene.ids(*IN_LUOXI)
    clusters = mapdata.events(session, zzzx, query(scene.now, zoom=8), scene.now)
    assert clusters["total"] == len(IN_LUOXI)
    with pytest.raises(Forbidden):
        mapdata.areas(session, zzzx, query(scene.now, zoom=10, region=HETIAN), scene.now)
    feed = mapdata.feed(session, zzzx, query(scene.now, since="2000-01-01"), scene.now)
    assert {i["id"] for i in feed["items"]} <= scene.ids(*IN_LUOXI)
    # The other town's operator sees the other town only.
    other = mapdata.events(session, users["zzzx2"], query(scene.now, zoom=18), scene.now)
    assert {f["id"] for f in other["features"]} == scene.ids("hetian")


def test_api_is_jurisdiction_filtered_and_needs_a_user(
    client: FlaskClient, session: Session, users: dict[str, User], scene: Scene
) -> None:
    response = client.get("/api/v1/map/events?zoom=18")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    token = issue_token(session, users["zzzx"])
    headers = {"Authorization": f"Bearer {token}"}
    body = client.get("/api/v1/map/events?zoom=18", headers=headers).get_json()
    assert {f["id"] for f in body["features"]} == scene.ids(*IN_LUOXI)
    refused = client.get(f"/api/v1/map/areas?region={HETIAN}", headers=headers)
    assert refused.status_code == 403
    feed = client.get("/api/v1/map/feed?since=2000-01-01", headers=headers)
    assert feed.status_code == 200


# -- live feed ------------------------------------------------------------------------


def test_feed_returns_events_reported_since(
    session: Session, users: dict[str, User], scene: Scene
) -> None:
    ld = users["ld"]
    since = (scene.events["hetian"].reported_at - timedelta(seconds=1)).isoformat()
    body = mapdata.feed(session, ld, query(scene.now, since=since), scene.now)
    new = {i["id"] for i in body["items"] if i["kind"] == "new"}
    assert new == scene.ids("hetian", "luoxi_other")
    item = next(i for i in body["items"] if i["id"] == scene.events["hetian"].id)
    assert item["code"] == scene.events["hetian"].code and item["town_name"] == "河田镇"
    assert item["url"] == f"/events/{item['id']}"
    assert datetime.fromisoformat(body["cursor"]) == scene.now
    # Nothing new after the cursor.
    again = mapdata.feed(session, ld, query(scene.now, since=body["cursor"]), scene.now)
    assert again["items"] == []
    # An event id as `since`: the events after it.
    by_id = mapdata.feed(session, ld, query(scene.now, since=scene.events["g2_open"].id), scene.now)
    assert {i["id"] for i in by_id["items"] if i["kind"] == "new"} == {
        e.id for e in scene.events.values() if e.id > scene.events["g2_open"].id
    }


def test_feed_returns_events_turned_overdue_since(
    session: Session, users: dict[str, User], scene: Scene
) -> None:
    late = scene.events["late"]
    then = late.due_at + timedelta(hours=1)  # the feed looks back at most 7 days from "now"
    before = (late.due_at - timedelta(minutes=1)).isoformat()
    body = mapdata.feed(session, users["ld"], query(then, since=before), then)
    overdue = [i for i in body["items"] if i["kind"] == "overdue"]
    assert [i["id"] for i in overdue] == [late.id]
    assert overdue[0]["kind_label"] == "已超期" and overdue[0]["overdue_open"] is True
    after = (late.due_at + timedelta(minutes=1)).isoformat()
    body = mapdata.feed(session, users["ld"], query(then, since=after), then)
    assert all(i["kind"] != "overdue" for i in body["items"])
    # A closed event is never "turned overdue", whatever its deadline.
    closed = scene.events["closed"]
    since = (closed.due_at - timedelta(days=30)).isoformat()
    body = mapdata.feed(session, users["ld"], query(scene.now, since=since), scene.now)
    assert closed.id not in {i["id"] for i in body["items"] if i["kind"] == "overdue"}


# -- coordinates and parameters -------------------------------------------------------


def test_gcj02_display_converts_coordinates_and_reads_the_box_in_gcj02(
    session: Session, users: dict[str, User], scene: Scene
) -> None:
    ld = users["ld"]
    e = scene.events["closed"]
    gx, gy = from_wgs84(e.lng, e.lat, "gcj02")
    assert abs(gx - e.lng) + abs(gy - e.lat) > 0.002  # hundreds of metres apart
    d = 0.0005
    bbox = f"{gx - d},{gy - d},{gx + d},{gy + d}"
    body = mapdata.events(session, ld, query(scene.now, zoom=17, bbox=bbox, crs="gcj02"), scene.now)
    point = next(f for f in body["features"] if f["id"] == e.id)
    assert point["geometry"]["coordinates"] == [round(gx, 6), round(gy, 6)]
    wgs = mapdata.areas(session, ld, query(scene.now, zoom=10), scene.now)
    gcj = mapdata.areas(session, ld, query(scene.now, zoom=10, crs="gcj02"), scene.now)
    a = shapely.geometry.shape(wgs["features"][0]["geometry"]).centroid
    b = shapely.geometry.shape(gcj["features"][0]["geometry"]).centroid
    assert 0.002 < abs(b.x - a.x) + abs(b.y - a.y) < 0.02


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"bbox": "1,2,3"}, "bbox"),
        ({"bbox": "115,24,114,25"}, "bbox"),
        ({"bbox": "a,b,c,d"}, "bbox"),
        ({"zoom": "99"}, "zoom"),
        ({"zoom": "x"}, "zoom"),
        ({"level": "county"}, "level"),
        ({"metric": "nonsense"}, "metric"),
        ({"state": "lost"}, "state"),
        ({"category": "5"}, "category"),
        ({"department": "x"}, "department"),
        ({"source": "fax"}, "source"),
        ({"crs": "bd09"}, "crs"),
        ({"from": "2026-13-01"}, "from"),
    ],
)
def test_bad_parameters(args: dict[str, str], field: str) -> None:
    with pytest.raises(Unprocessable) as info:
        mapdata.parse_query(args, utcnow())
    assert info.value.details["field"] == field


def test_bad_since(session: Session, users: dict[str, User]) -> None:
    with pytest.raises(Unprocessable):
        mapdata.feed(session, users["ld"], query(utcnow(), since="yesterday"), utcnow())
