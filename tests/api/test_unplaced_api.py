"""The 待定位 queue through the API: POST /events answers 202 for a county centre's unplaceable
hotline/sensor/citizen report; GET /unplaced; POST /unplaced/<id>/place and /discard."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from factories import LUOXI, active_grids, outside_point, point_in, queued_report
from flask.testing import FlaskClient
from sqlalchemy import select

from gridgov.auth import issue_token
from gridgov.models import Event, UnplacedReport

CJK = re.compile(r"[\u4e00-\u9fff]")
Headers = dict[str, str]


@pytest.fixture
def auth(session, users) -> Callable[[str], Headers]:
    """Return Bearer headers for a demo account (tokens issued directly, as in test_events_api)."""
    tokens: dict[str, Headers] = {}

    def headers(username: str) -> Headers:
        if username not in tokens:
            tokens[username] = {"Authorization": f"Bearer {issue_token(session, users[username])}"}
        return tokens[username]

    return headers


def error(response: Any, status: int, code: str) -> dict[str, Any]:
    """Assert a JSON error with this status and code and a Chinese message; return it."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert CJK.search(body["error"]["message"]), body
    return body["error"]


def body_at(point: tuple[float, float] | None, **extra: Any) -> dict[str, Any]:
    return {
        "matter_code": "0501",
        "urgency": "pressing",
        "description": "12345 来电：河堤旁有人倾倒垃圾",
        **({"lng": point[0], "lat": point[1]} if point else {}),
        "client_key": uuid.uuid4().hex,
        "source": "hotline",
        **extra,
    }


def grid_point(session) -> tuple[float, float]:
    return point_in(session, active_grids(session, LUOXI)[0].code)


# ---------------------------------------------------------------------------
# POST /events


@pytest.mark.parametrize("username", ["ddy", "zbz"])
@pytest.mark.parametrize("source", ["hotline", "sensor", "citizen"])
def test_county_centre_gets_202_with_the_queued_report(
    client: FlaskClient, session, auth, username, source
) -> None:
    body = body_at(outside_point(session), source=source, reporter_phone="13900000000")
    r = client.post("/api/v1/events", json=body, headers=auth(username))
    assert r.status_code == 202, r.get_json()
    out = r.get_json()
    assert out["queued"] is True and out["created"] is True
    assert out["status"] == "queued" and out["reason"] == "outside_grids"
    assert CJK.search(out["reason_label"])
    assert out["distance_m"] > 1000 and out["nearest_grid_code"]
    assert out["input"] == {"lng": body["lng"], "lat": body["lat"], "crs": "wgs84"}
    report = session.get(UnplacedReport, out["id"])
    assert report is not None and report.reporter_phone == "13900000000"
    assert report.source == source and report.urgency == "pressing"

    again = client.post("/api/v1/events", json=body, headers=auth(username))
    assert again.status_code == 202
    assert again.get_json()["id"] == out["id"] and again.get_json()["created"] is False
    assert len(session.scalars(select(UnplacedReport)).all()) == 1


def test_no_coordinates_and_no_village_is_queued(client, session, auth) -> None:
    r = client.post("/api/v1/events", json=body_at(None, address="某小区门口"), headers=auth("ddy"))
    assert r.status_code == 202, r.get_json()
    assert r.get_json()["reason"] == "no_location" and r.get_json()["distance_m"] is None


@pytest.mark.parametrize(
    ("username", "extra", "status", "code"),
    [
        ("wgy", {"source": ""}, 422, "outside_jurisdiction"),
        ("zzzx", {}, 422, "outside_jurisdiction"),
        ("zzzx", {"source": "citizen"}, 422, "outside_jurisdiction"),
        ("ddy", {"source": "centre"}, 422, "outside_jurisdiction"),
        ("cgj", {}, 403, "role_not_allowed"),
    ],
)
def test_others_keep_the_error(client, session, auth, username, extra, status, code) -> None:
    body = body_at(outside_point(session), **extra)
    r = client.post("/api/v1/events", json=body, headers=auth(username))
    error(r, status, code)
    assert session.scalar(select(UnplacedReport)) is None


def test_grid_worker_without_coordinates_is_refused(client, auth) -> None:
    r = client.post("/api/v1/events", json=body_at(None, source=""), headers=auth("wgy"))
    error(r, 422, "bad_coordinates")


def test_a_placeable_hotline_report_is_still_201(client, session, auth) -> None:
    r = client.post("/api/v1/events", json=body_at(grid_point(session)), headers=auth("ddy"))
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["code"].startswith("441523-")


# ---------------------------------------------------------------------------
# GET /unplaced


@pytest.mark.parametrize(
    ("username", "visible"),
    [("ddy", True), ("zbz", True), ("zzzx", False), ("wgy", False), ("cgj", False), ("ld", False)],
)
def test_only_the_county_centre_lists_the_queue(client, session, users, auth, username, visible):
    report = queued_report(session, users)
    r = client.get("/api/v1/unplaced", headers=auth(username))
    assert r.status_code == 200, r.get_json()
    items = r.get_json()["items"]
    assert [i["id"] for i in items] == ([report.id] if visible else [])
    assert r.get_json()["total"] == (1 if visible else 0)


def test_listing_needs_sign_in_and_a_known_status(client, auth) -> None:
    error(client.get("/api/v1/unplaced"), 401, "unauthorized")
    error(client.get("/api/v1/unplaced?status=lost", headers=auth("ddy")), 422, "bad_input")


# ---------------------------------------------------------------------------
# POST /unplaced/<id>/place and /discard


def test_place_creates_the_event_then_conflicts(client, session, users, auth) -> None:
    received = datetime(2026, 11, 20, 2, 30, tzinfo=UTC)
    report = queued_report(session, users, now=received)
    lng, lat = grid_point(session)
    url = f"/api/v1/unplaced/{report.id}/place"
    r = client.post(url, json={"lng": lng, "lat": lat, "version": 1}, headers=auth("zbz"))
    assert r.status_code == 201, r.get_json()
    out = r.get_json()
    assert out["status"] == "placed" and out["resolved_by"] == users["zbz"].display_name
    assert out["event"]["grid_code"] == active_grids(session, LUOXI)[0].code
    event = session.get(Event, out["event"]["id"])
    assert event is not None and event.reported_at == received
    assert out["event_code"] == event.code

    again = client.post(url, json={"lng": lng, "lat": lat}, headers=auth("ddy"))
    message = error(again, 409, "already_resolved")["message"]
    assert event.code in message
    error(
        client.post(
            f"/api/v1/unplaced/{report.id}/discard", json={"reason": "重复"}, headers=auth("ddy")
        ),
        409,
        "already_resolved",
    )


def test_place_by_village_name(client, session, users, auth) -> None:
    report = queued_report(session, users)
    r = client.post(
        f"/api/v1/unplaced/{report.id}/place", json={"place": "螺溪社区"}, headers=auth("ddy")
    )
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["event"]["town_name"] == "螺溪镇"


@pytest.mark.parametrize(
    ("username", "payload", "status", "code"),
    [
        ("zzzx", "inside", 403, "outside_jurisdiction"),
        ("wgy", "inside", 403, "outside_jurisdiction"),
        ("ddy", "outside", 422, "outside_jurisdiction"),
        ("ddy", "empty", 422, "missing_input"),
        ("ddy", "stale", 409, "stale_version"),
    ],
)
def test_place_errors(client, session, users, auth, username, payload, status, code) -> None:
    report = queued_report(session, users)
    inside = dict(zip(("lng", "lat"), grid_point(session), strict=True))
    body = {
        "inside": inside,
        "outside": dict(zip(("lng", "lat"), outside_point(session), strict=True)),
        "empty": {},
        "stale": {**inside, "version": 7},
    }[payload]
    r = client.post(f"/api/v1/unplaced/{report.id}/place", json=body, headers=auth(username))
    error(r, status, code)
    assert session.get(UnplacedReport, report.id).status == "queued"


def test_discard_needs_a_reason(client, session, users, auth) -> None:
    report = queued_report(session, users)
    url = f"/api/v1/unplaced/{report.id}/discard"
    error(client.post(url, json={}, headers=auth("ddy")), 422, "missing_input")
    error(
        client.post(url, json={"reason": "测试"}, headers=auth("zzzx")), 403, "outside_jurisdiction"
    )
    r = client.post(url, json={"reason": "测试数据"}, headers=auth("ddy"))
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["status"] == "discarded" and r.get_json()["discard_reason"] == "测试数据"
    error(
        client.post("/api/v1/unplaced/999999/discard", json={"reason": "x"}, headers=auth("ddy")),
        404,
        "unplaced_not_found",
    )
