"""The grid worker's pages (/m/) through the Flask test client, on SQLite and PostgreSQL."""

from __future__ import annotations

import html
import re
import time
import uuid
from typing import Any

import pytest
from factories import LUOXI, make_event, point_in, report
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from gridgov.demo import ACCOUNTS
from gridgov.events import ReportInput, report_event
from gridgov.models import Event, EventState, Grid, GridSet, Region, Role, User

CSRF = "worker-test-csrf"
PAGES = ["/m/", "/m/report", "/m/reports", "/m/tasks", "/m/queue", "/m/offline"]
JSON_ENDPOINTS = ["/m/grids.geojson", "/m/nearby?matter=0101&lng=115.5&lat=23.3", "/m/session"]


def sign_in(client: FlaskClient, user: User) -> None:
    with client.session_transaction() as s:
        s.clear()
        s.permanent = True
        s.update(user_id=user.id, seen=int(time.time()), csrf_token=CSRF)


def post(client: FlaskClient, url: str, data: dict[str, Any]) -> TestResponse:
    return client.post(url, data={"csrf_token": CSRF, **data})


def text_of(page: TestResponse) -> str:
    return html.unescape(page.get_data(as_text=True))


# -- who may open the pages ---------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_visitors_are_sent_to_sign_in(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response.location == f"/login?next={path}"


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
def test_anonymous_json_callers_get_401_json(client: FlaskClient, path: str) -> None:
    response = client.get(path, headers={"Accept": "application/json"})
    assert response.status_code == 401
    assert response.get_json()["error"]["message"] == "请先登录"


OTHER_ROLES = [a.username for a in ACCOUNTS if a.role != Role.GRID_WORKER]


@pytest.mark.parametrize("username", OTHER_ROLES)
@pytest.mark.parametrize("path", [*PAGES, "/m/grids.geojson"])
def test_other_roles_get_the_403_page(
    client: FlaskClient, users: dict[str, User], username: str, path: str
) -> None:
    sign_in(client, users[username])
    response = client.get(path)
    assert response.status_code == 403
    if path.endswith(".geojson"):
        assert response.get_json()["error"]["code"] == "role_not_allowed"
    else:
        assert "此页面仅限网格员使用" in text_of(response)
        assert "无权访问" in text_of(response)


@pytest.mark.parametrize("path", PAGES)
def test_grid_workers_get_every_page(
    client: FlaskClient, users: dict[str, User], path: str
) -> None:
    sign_in(client, users["wgy"])
    response = client.get(path)
    assert response.status_code == 200
    page = text_of(response)
    assert 'name="gg-user" content="wgy"' in page
    assert "/static/css/worker.css" in page
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing from the internet


def test_home_counts_open_reports_and_tasks(
    client: FlaskClient, session: Session, users: dict[str, User]
) -> None:
    make_event(session, users, EventState.HANDLED)
    report(session, users)
    make_event(session, users, EventState.CLOSED)
    session.flush()
    sign_in(client, users["wgy"])
    page = text_of(client.get("/m/"))
    assert re.search(r'data-count="reports">2<', page)
    assert re.search(r'data-count="tasks">1<', page)


def test_service_worker_is_public_versioned_and_scoped(client: FlaskClient) -> None:
    response = client.get("/m/sw.js")
    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    assert response.headers["Cache-Control"] == "no-cache"
    body = response.get_data(as_text=True)
    assert "__VERSION__" not in body and "__ASSETS__" not in body
    assert re.search(r'var VERSION = "[0-9a-f]{12}";', body)
    assert '"/static/vendor/leaflet/leaflet.js"' in body
    assert '"/m/report"' in body


def test_session_gives_a_fresh_csrf_token(client: FlaskClient, users: dict[str, User]) -> None:
    sign_in(client, users["wgy"])
    assert client.get("/m/session").get_json() == {"username": "wgy", "csrf_token": CSRF}


# -- grids.geojson ------------------------------------------------------------------------


def test_grids_geojson_has_only_the_workers_own_grids(
    client: FlaskClient, session: Session, users: dict[str, User]
) -> None:
    for username in ("wgy", "wgy2"):
        user = users[username]
        sign_in(client, user)
        response = client.get("/m/grids.geojson")
        assert response.status_code == 200
        assert response.mimetype == "application/geo+json"
        features = response.get_json()["features"]
        grids = [f["properties"]["code"] for f in features if f["properties"]["kind"] == "grid"]
        villages = [
            f["properties"]["code"] for f in features if f["properties"]["kind"] == "village"
        ]
        assert sorted(grids) == sorted(user.grid_codes) and grids
        assert villages == [user.region_code]
        for feature in features:
            assert feature["geometry"]["type"] in ("Polygon", "MultiPolygon")
            lng, lat = _first_position(feature["geometry"]["coordinates"])
            assert 115 < lng < 116.2 and 22.8 < lat < 23.8  # WGS84 in 陆河县
            assert len(str(lng).split(".")[-1]) <= 6


def _first_position(coords: Any) -> tuple[float, float]:
    while isinstance(coords[0], list):
        coords = coords[0]
    return coords[0], coords[1]


# -- nearby -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        ("", {"matter", "lng", "lat"}),
        ("matter=9999&lng=115.5&lat=23.3", {"matter"}),
        ("matter=0101&lng=abc&lat=23.3", {"lng"}),
        ("matter=0101&lng=115.5&lat=95", {"lat"}),
        ("matter=0101&lng=inf&lat=nan", {"lng", "lat"}),
    ],
)
def test_nearby_validates_its_parameters(
    client: FlaskClient, users: dict[str, User], query: str, fields: set[str]
) -> None:
    sign_in(client, users["wgy"])
    response = client.get(f"/m/nearby?{query}")
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "bad_parameter"
    assert set(error["details"]["fields"]) == fields
    assert re.search(r"[\u4e00-\u9fff]", error["message"])


def test_nearby_lists_open_events_of_the_matter_and_hides_others_details(
    client: FlaskClient, session: Session, users: dict[str, User]
) -> None:
    wgy = users["wgy"]
    lng, lat = point_in(session, wgy.grid_codes[0])
    mine = report(session, users, matter="0101", point=(lng + 0.0003, lat))
    report(session, users, matter="0102", point=(lng, lat))  # another matter
    closed = make_event(session, users, EventState.CLOSED, matter="0101")
    # Somewhere in another village of 螺溪镇, reported by the town centre: not wgy's to see.
    other_village = session.scalar(
        select(Grid)
        .join(GridSet, GridSet.id == Grid.grid_set_id)
        .where(
            GridSet.active.is_(True),
            Grid.code.startswith(LUOXI),
            Grid.village_code != wgy.region_code,
        )
        .order_by(Grid.code)
        .limit(1)
    )
    p = other_village.geom.representative_point()
    hidden = report_event(
        session,
        users["zzzx"],
        ReportInput(
            "0101", "normal", "村民反映隔壁噪音", p.x, p.y, uuid.uuid4().hex, source="citizen"
        ),
    ).event
    session.flush()
    sign_in(client, wgy)

    items = client.get(f"/m/nearby?matter=0101&lng={lng}&lat={lat}").get_json()["items"]
    ids = [i["id"] for i in items]
    assert mine.id in ids and closed.id not in ids and hidden.id not in ids
    item = items[ids.index(mine.id)]
    assert item["can_add"] and item["mine"] and item["url"] == f"/m/events/{mine.id}"
    assert item["state_label"] == "待受理" and 25 < item["distance_m"] < 40

    far = client.get(f"/m/nearby?matter=0101&lng={p.x}&lat={p.y}").get_json()["items"]
    entry = next(i for i in far if i["id"] == hidden.id)
    assert entry["code"] == hidden.code
    assert not entry["can_add"] and entry["url"] is None and entry["description"] == ""

    # In another town (河田镇) even the existence of an event is not shown.
    hx, hy = point_in(session, users["wgy2"].grid_codes[0])
    elsewhere = report(session, users, reporter="wgy2", matter="0101", point=(hx, hy))
    session.flush()
    there = client.get(f"/m/nearby?matter=0101&lng={hx}&lat={hy}").get_json()["items"]
    assert elsewhere.id not in [i["id"] for i in there]


# -- the plain form (no JavaScript) -------------------------------------------------------


def test_report_form_keeps_input_and_shows_chinese_errors(
    client: FlaskClient, users: dict[str, User]
) -> None:
    sign_in(client, users["wgy"])
    response = post(
        client,
        "/m/report",
        {"matter_code": "", "urgency": "normal", "description": "垃圾桶倒了", "client_key": "k1"},
    )
    assert response.status_code == 422
    page = text_of(response)
    assert "请选择事项" in page
    assert "请确定事件位置" in page
    assert ">垃圾桶倒了</textarea>" in page
    assert 'name="client_key" value="k1"' in page

    response = post(client, "/m/report", {"matter_code": "0101", "urgency": "sometimes"})
    page = text_of(response)
    assert "紧急程度的取值无效" in page and "请填写事件描述" in page
    assert '<option value="0101" selected>' in page


def test_report_form_files_the_report_once(
    client: FlaskClient, session: Session, users: dict[str, User]
) -> None:
    wgy = users["wgy"]
    lng, lat = point_in(session, wgy.grid_codes[0])
    data = {
        "matter_code": "0501",
        "urgency": "pressing",
        "description": "楼道堆放纸箱",
        "lng": str(lng),
        "lat": str(lat),
        "accuracy_m": "9.5",
        "client_key": "form-key-1",
    }
    sign_in(client, wgy)
    first = post(client, "/m/report", data)
    assert first.status_code == 302
    again = post(client, "/m/report", data)
    assert again.location == first.location
    events = session.scalars(select(Event).where(Event.client_key == "form-key-1")).all()
    assert len(events) == 1
    assert first.location == f"/m/events/{events[0].id}"
    assert events[0].urgency == "pressing" and events[0].location_accuracy_m == 9.5
    page = text_of(client.get(first.location))
    assert "上报成功" in page and events[0].code in page


def test_report_form_takes_a_village_when_there_is_no_position(
    client: FlaskClient, session: Session, users: dict[str, User]
) -> None:
    wgy = users["wgy"]
    sign_in(client, wgy)
    data = {"matter_code": "0101", "urgency": "normal", "description": "邻里争吵"}
    response = post(client, "/m/report", {**data, "village": wgy.region_code, "client_key": "v1"})
    assert response.status_code == 302
    event = session.scalar(select(Event).where(Event.client_key == "v1"))
    assert event is not None and event.village_code == wgy.region_code

    other_town = session.scalar(
        select(Region.code).where(Region.level == "village", ~Region.code.startswith(LUOXI))
    )
    response = post(client, "/m/report", {**data, "village": other_town, "client_key": "v2"})
    assert response.status_code == 422
    assert "所选村（社区）不在您的辖区内" in text_of(response)


def test_report_form_refuses_a_position_outside_the_town(
    client: FlaskClient, session: Session, users: dict[str, User]
) -> None:
    sign_in(client, users["wgy"])
    lng, lat = point_in(session, users["wgy2"].grid_codes[0])  # 河田镇
    response = post(
        client,
        "/m/report",
        {
            "matter_code": "0101",
            "urgency": "normal",
            "description": "邻里争吵",
            "lng": str(lng),
            "lat": str(lat),
            "client_key": "outside-1",
        },
    )
    assert response.status_code == 422
    page = text_of(response)
    assert re.search(r'data-error-for="location" role="alert">事件位置不在您的辖区内<', page)
    assert ">邻里争吵</textarea>" in page
    assert session.scalar(select(Event).where(Event.client_key == "outside-1")) is None


# -- my reports, one event, tasks ---------------------------------------------------------


def test_reports_list_only_my_events_newest_first(
    client: FlaskClient, session: Session, users: dict[str, User]
) -> None:
    older = report(session, users, matter="0101")
    newer = report(session, users, matter="0102")
    other = report(session, users, reporter="zzzx", matter="0101")
    session.flush()
    sign_in(client, users["wgy"])
    page = text_of(client.get("/m/reports"))
    codes = re.findall(r'class="m-event-code">([^<]+)<', page)
    assert codes.index(newer.code) < codes.index(older.code)
    assert other.code not in codes
    assert "螺溪镇综治中心" in page and "待受理" in page


def test_event_page_is_limited_to_what_the_worker_may_see(
    client: FlaskClient, session: Session, users: dict[str, User]
) -> None:
    mine = report(session, users)
    theirs = report(session, users, reporter="wgy2", grid=users["wgy2"].grid_codes[0])
    session.flush()
    sign_in(client, users["wgy"])
    page = text_of(client.get(f"/m/events/{mine.id}"))
    assert mine.code in page and "办理经过" in page and "上报" in page
    response = client.get(f"/m/events/{theirs.id}")
    assert response.status_code == 403
    assert client.get("/m/events/999999").status_code == 404


def test_tasks_are_the_handled_events_held_by_me(
    client: FlaskClient, session: Session, users: dict[str, User]
) -> None:
    waiting = make_event(session, users, EventState.HANDLED)
    make_event(session, users, EventState.HANDLING)
    session.flush()
    sign_in(client, users["wgy"])
    page = text_of(client.get("/m/tasks"))
    assert re.findall(r'data-task="(\d+)"', page) == [str(waiting.id)]
    assert 'data-side="before"' in page and 'data-side="after"' in page
    assert "核查通过" in page and "核查不通过" in page
