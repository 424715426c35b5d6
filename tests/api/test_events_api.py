"""The events API through the Flask test client: reports, lists, details, actions, photos."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from factories import (
    HETIAN,
    LUOXI,
    TOWN_ASSIST,
    TOWN_LEAD,
    active_grids,
    department_of,
    make_event,
    png_bytes,
    point_in,
    report,
)
from flask.testing import FlaskClient
from sqlalchemy import func, select

from gridgov.access import can_view
from gridgov.auth import issue_token
from gridgov.demo import DEMO_PASSWORD
from gridgov.models import Event, EventState, Notice, Region
from gridgov.workflow.worktime import SHANGHAI

S = EventState
CJK = re.compile(r"[\u4e00-\u9fff]")
Headers = dict[str, str]


def login(client: FlaskClient, username: str) -> Headers:
    """Sign in through POST /api/v1/auth/token; return the Bearer header."""
    r = client.post("/api/v1/auth/token", json={"username": username, "password": DEMO_PASSWORD})
    assert r.status_code == 200, r.get_json()
    return {"Authorization": f"Bearer {r.get_json()['token']}"}


@pytest.fixture
def auth(session, users) -> Callable[[str], Headers]:
    """Return a function giving Bearer headers for a demo account.

    Tokens are issued directly (gridgov.auth.issue_token, what the sign-in route calls) to
    spare an Argon2 verification per user and test; the full loop below signs in through the
    API, and tests/api/test_auth_api.py covers the sign-in itself.
    """
    tokens: dict[str, Headers] = {}

    def headers(username: str) -> Headers:
        if username not in tokens:
            token = issue_token(session, users[username])
            tokens[username] = {"Authorization": f"Bearer {token}"}
        return tokens[username]

    return headers


def error(response: Any, status: int, code: str) -> dict[str, Any]:
    """Assert a JSON error with this status and code and a Chinese message; return it."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.is_json
    body = response.get_json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code, body
    assert CJK.search(body["error"]["message"]), body
    return body["error"]


def ids(response: Any) -> set[int]:
    assert response.status_code == 200, response.get_json()
    return {item["id"] for item in response.get_json()["items"]}


def report_body(point: tuple[float, float], matter: str = "0101", **extra: Any) -> dict[str, Any]:
    return {
        "matter_code": matter,
        "urgency": "normal",
        "description": "村口道路两侧堆放建筑垃圾",
        "lng": point[0],
        "lat": point[1],
        "client_key": uuid.uuid4().hex,
        **extra,
    }


# ---------------------------------------------------------------------------
# POST /events


def test_report_created_then_same_client_key_returns_it(client, session, users, auth):
    grid = users["wgy"].grid_codes[0]
    body = report_body(point_in(session, grid))
    r = client.post("/api/v1/events", json=body, headers=auth("wgy"))
    assert r.status_code == 201, r.get_json()
    out = r.get_json()
    assert {"id", "code", "state", "grid_code", "village_name", "town_name", "deadline"} <= set(out)
    assert out["state"] == "reported"
    assert out["grid_code"] == grid
    assert out["village_name"] == session.get(Region, grid[:12]).name
    assert out["town_name"] == "螺溪镇"
    assert out["duplicates"] == []
    assert out["code"].startswith("441523-")
    deadline = datetime.fromisoformat(out["deadline"])
    assert deadline.utcoffset() == SHANGHAI.utcoffset(deadline.replace(tzinfo=None))

    again = client.post("/api/v1/events", json=body, headers=auth("wgy"))
    assert again.status_code == 200
    assert again.get_json()["id"] == out["id"]
    assert again.get_json()["created"] is False
    count = session.scalar(select(func.count()).select_from(Event).where(Event.id == out["id"]))
    assert count == 1
    assert session.get(Event, out["id"]).reporter_id == users["wgy"].id

    near = report_body(point_in(session, grid))
    dup = client.post("/api/v1/events", json=near, headers=auth("wgy"))
    assert dup.status_code == 201
    assert [d["id"] for d in dup.get_json()["duplicates"]] == [out["id"]]


@pytest.mark.parametrize(
    ("username", "change", "status", "code"),
    [
        ("wgy", {"matter_code": "9999"}, 422, "unknown_matter"),
        ("wgy", {"lng": "east"}, 422, "bad_coordinates"),
        ("wgy", {"lat": 91}, 422, "bad_coordinates"),
        ("wgy", {"urgency": "now"}, 422, "bad_urgency"),
        ("wgy", {"description": ""}, 422, "missing_input"),
        ("wgy", {"client_key": ""}, 422, "missing_input"),
        ("wgy", {"where": "河田"}, 403, "outside_jurisdiction"),
        ("xtgly", {}, 403, "role_not_allowed"),
        ("cgj", {}, 403, "role_not_allowed"),
    ],
)
def test_report_errors(client, session, users, auth, username, change, status, code):
    change = dict(change)  # the parameters are shared by both backends
    grid = users["wgy2" if change.pop("where", None) else "wgy"].grid_codes[0]
    body = {**report_body(point_in(session, grid)), **change}
    error(client.post("/api/v1/events", json=body, headers=auth(username)), status, code)
    assert session.scalar(select(func.count()).select_from(Event)) == 0


def test_report_needs_a_json_object(client, auth):
    r = client.post("/api/v1/events", data="matter=0101", headers=auth("wgy"))
    error(r, 400, "bad_json")
    error(client.post("/api/v1/events", json=[1, 2], headers=auth("wgy")), 400, "bad_json")


# ---------------------------------------------------------------------------
# GET /events


def test_list_shows_only_the_jurisdiction(client, session, users, auth):
    wgy_grids = users["wgy"].grid_codes
    other_village = next(
        g.code for g in active_grids(session, LUOXI) if g.village_code != wgy_grids[0][:12]
    )
    a = make_event(session, users, S.REPORTED)
    b = make_event(session, users, S.HANDLING)  # town: hwsuo leads, pcs assists
    c = make_event(session, users, S.REPORTED, reporter="wgy2", grid=users["wgy2"].grid_codes[0])
    d = make_event(session, users, S.DISPATCHED, level="county")  # county: cgj leads, pcs assists
    e = report(session, users, reporter="zzzx", grid=other_village)  # 螺溪镇, not wgy's grids
    f = report(session, users, reporter="zzzx", grid=wgy_grids[-1])  # in a grid of wgy's
    assert c.town_code == HETIAN
    expected = {
        "zzzx": {a, b, d, e, f},
        "zzzx2": {c},
        "ddy": {a, b, c, d, e, f},
        "zbz": {a, b, c, d, e, f},
        "ld": {a, b, c, d, e, f},
        "hwsuo": {b},
        "pcs": {b, d},
        "cgj": {d},
        "wgy": {a, b, d, f},
        "wgy2": {c},
        "xtgly": set(),
        "aqgly": set(),
        "sjgly": set(),
    }
    for username, events in expected.items():
        r = client.get("/api/v1/events?per_page=100", headers=auth(username))
        assert ids(r) == {ev.id for ev in events}, username
        assert r.get_json()["total"] == len(events)
        # The list (SQL) and the single-event check (Python) state the same rule.
        for ev in (a, b, c, d, e, f):
            assert can_view(users[username], ev) == (ev in events), (username, ev.id)


def test_list_item_fields(client, session, users, auth):
    event = make_event(session, users, S.DISPATCHED)
    item = client.get("/api/v1/events", headers=auth("hwsuo")).get_json()["items"][0]
    assert item["id"] == event.id and item["code"] == event.code
    assert item["state"] == "dispatched" and item["state_label"] == "待签收"
    assert item["town_name"] == "螺溪镇" and item["matter_name"] == "邻里纠纷"
    assert item["holder_level"] == "department" and item["holder"] == "螺溪镇环境卫生管理所"
    assert item["light"] in ("green", "yellow", "red")
    assert item["version"] == event.version


def at(day: int) -> datetime:
    return datetime(2026, 3, day, 10, 0, tzinfo=SHANGHAI)


def test_list_filters(client, session, users, auth):
    e1 = make_event(session, users, S.REPORTED, matter="0101", now=at(2))
    e2 = make_event(session, users, S.ACCEPTED, matter="0501", now=at(10))
    e3 = make_event(
        session, users, S.REPORTED, reporter="wgy2", grid=users["wgy2"].grid_codes[0], now=at(10)
    )
    h = auth("ddy")

    def get(query: str) -> set[int]:
        return ids(client.get(f"/api/v1/events?{query}", headers=h))

    assert get("") == {e1.id, e2.id, e3.id}
    assert get("state=reported") == {e1.id, e3.id}
    assert get("state=reported,accepted") == {e1.id, e2.id, e3.id}
    assert get("state=closed") == set()
    assert get("matter=0501") == {e2.id}
    assert get("matter=05") == {e2.id}
    assert get(f"region={HETIAN}") == {e3.id}
    assert get(f"region={LUOXI}") == {e1.id, e2.id}
    assert get(f"region={e1.grid_code}") >= {e1.id}
    assert get("source=grid_worker") == {e1.id, e2.id, e3.id}
    assert get("urgency=urgent") == set()
    assert get("from=2026-03-05") == {e2.id, e3.id}
    assert get("to=2026-03-05") == {e1.id}
    assert get("from=2026-03-02&to=2026-03-02") == {e1.id}
    assert get("overdue=0") == {e1.id, e2.id, e3.id}
    assert get("overdue=1") == set()
    assert get(f"region={LUOXI}&state=accepted") == {e2.id}

    page1 = client.get("/api/v1/events?per_page=2", headers=h).get_json()
    page2 = client.get("/api/v1/events?per_page=2&page=2", headers=h).get_json()
    assert (page1["total"], page1["page"], page1["per_page"]) == (3, 1, 2)
    assert len(page1["items"]) == 2 and len(page2["items"]) == 1
    assert page2["items"][0]["id"] == e1.id  # newest first: the oldest comes last
    assert client.get("/api/v1/events?page=3&per_page=2", headers=h).get_json()["items"] == []
    # A town operator's filter cannot reach beyond the town.
    assert ids(client.get(f"/api/v1/events?region={HETIAN}", headers=auth("zzzx"))) == set()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("state=bogus", "state"),
        ("state=reported,nope", "state"),
        ("region=12345", "region"),
        ("region=44152310A", "region"),
        ("from=2026-02-30", "from"),
        ("to=yesterday", "to"),
        ("page=0", "page"),
        ("page=abc", "page"),
        ("per_page=0", "per_page"),
        ("per_page=101", "per_page"),
        ("source=fax", "source"),
        ("urgency=asap", "urgency"),
    ],
)
def test_list_bad_filter(client, auth, query, field):
    err = error(client.get(f"/api/v1/events?{query}", headers=auth("ddy")), 422, "bad_parameter")
    assert err["details"]["field"] == field


# ---------------------------------------------------------------------------
# GET /events/<id>


def test_detail(client, session, users, auth, tmp_path):
    from gridgov.photos import PhotoStore

    store = PhotoStore(tmp_path / "photos")
    event = make_event(session, users, S.HANDLED, matter="0501", store=store)
    r = client.get(f"/api/v1/events/{event.id}", headers=auth("wgy"))
    assert r.status_code == 200
    body = r.get_json()
    assert body["id"] == event.id and body["state"] == "handled"
    assert [h["action"] for h in body["history"]] == [
        "report",
        "accept",
        "dispatch",
        "sign",
        "handle",
    ]
    handle = body["history"][-1]
    assert handle["actor"] == users[TOWN_LEAD].display_name
    assert (handle["from_state"], handle["to_state"]) == ("handling", "handled")
    assert handle["holder_after"] == f"grid_worker:{users['wgy'].id}"
    assert handle["comment"] == "测试：handle"
    assert len(body["photos"]) == 1
    photo = body["photos"][0]
    assert photo["kind"] == "after" and photo["action_id"] == handle["id"]
    assert handle["attachment_ids"] == [photo["id"]]
    assert photo["url"] == f"/api/v1/attachments/{photo['id']}"
    assert {a["name"] for a in body["allowed_actions"]} == {"verify_pass", "verify_fail"}
    fail = next(a for a in body["allowed_actions"] if a["name"] == "verify_fail")
    assert fail["requires"] == ["comment"] and fail["label"]
    assert {(d["id"], d["role"]) for d in body["departments"]} == {
        (department_of(users, TOWN_LEAD), "lead"),
        (department_of(users, TOWN_ASSIST), "assist"),
    }

    # The town centre sees it but has nothing to do now; others in the loop see their part.
    centre = client.get(f"/api/v1/events/{event.id}", headers=auth("zzzx")).get_json()
    assert centre["allowed_actions"] == []
    assert client.get(f"/api/v1/events/{event.id}", headers=auth("pcs")).status_code == 200


def test_detail_refusals(client, session, users, auth):
    event = make_event(session, users, S.REPORTED)
    for username in ("zzzx2", "wgy2", "hwsuo", "cgj", "xtgly"):
        r = client.get(f"/api/v1/events/{event.id}", headers=auth(username))
        error(r, 403, "outside_jurisdiction")
    error(client.get("/api/v1/events/999999", headers=auth("zzzx")), 404, "event_not_found")
    error(client.get("/api/v1/events/abc", headers=auth("zzzx")), 404, "not_found")


# ---------------------------------------------------------------------------
# POST /events/<id>/actions/<action>


def test_action_errors(client, session, users, auth):
    event = make_event(session, users, S.REPORTED)
    url = f"/api/v1/events/{event.id}/actions"
    notices_before = session.scalar(select(func.count()).select_from(Notice))

    error(client.post(f"{url}/accept", json={}, headers=auth("wgy")), 403, "role_not_allowed")
    error(client.post(f"{url}/accept", json={}, headers=auth("zzzx2")), 403, "outside_jurisdiction")
    error(client.post(f"{url}/accept", json={}, headers=auth("ddy")), 403, "not_holder")
    error(client.post(f"{url}/close", json={}, headers=auth("zzzx")), 409, "state_conflict")
    err = error(client.post(f"{url}/reject", json={}, headers=auth("zzzx")), 422, "missing_input")
    assert err["details"]["field"] == "comment"
    error(client.post(f"{url}/fly", json={}, headers=auth("zzzx")), 404, "unknown_action")
    error(
        client.post("/api/v1/events/999999/actions/accept", json={}, headers=auth("zzzx")),
        404,
        "event_not_found",
    )
    stale = {"version": event.version + 1}
    err = error(
        client.post(f"{url}/accept", json=stale, headers=auth("zzzx")), 409, "stale_version"
    )
    assert err["details"]["version"] == event.version
    error(
        client.post(f"{url}/accept", json={"version": "1"}, headers=auth("zzzx")), 422, "bad_input"
    )
    error(client.post(f"{url}/accept", json=[1], headers=auth("zzzx")), 400, "bad_json")
    error(client.post(f"{url}/accept", json={}), 401, "unauthorized")

    session.expire_all()
    assert event.state == "reported" and len(event.actions) == 1
    assert session.scalar(select(func.count()).select_from(Notice)) == notices_before

    ok = client.post(f"{url}/accept", json={"version": event.version}, headers=auth("zzzx"))
    assert ok.status_code == 200, ok.get_json()
    assert ok.get_json()["state"] == "accepted"
    assert ok.get_json()["version"] > event.version


def test_action_without_body(client, session, users, auth):
    event = make_event(session, users, S.REPORTED)
    r = client.post(f"/api/v1/events/{event.id}/actions/accept", headers=auth("zzzx"))
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["state"] == "accepted"


def upload_photo(client, headers: Headers, event_id: int, data: bytes, kind: str, name="p.png"):
    import io

    return client.post(
        f"/api/v1/events/{event_id}/attachments",
        data={"file": (io.BytesIO(data), name), "kind": kind},
        headers=headers,
        content_type="multipart/form-data",
    )


def test_full_loop_through_the_api(client, session, users):
    signed_in: dict[str, Headers] = {}

    def auth(username: str) -> Headers:
        if username not in signed_in:
            signed_in[username] = login(client, username)
        return signed_in[username]

    grid = users["wgy"].grid_codes[0]
    r = client.post(
        "/api/v1/events", json=report_body(point_in(session, grid), "0501"), headers=auth("wgy")
    )
    assert r.status_code == 201
    event_id = r.get_json()["id"]
    url = f"/api/v1/events/{event_id}"
    version = client.get(url, headers=auth("zzzx")).get_json()["version"]

    def step(username: str, action: str, state: str, **inputs: Any) -> dict[str, Any]:
        nonlocal version
        body = {"version": version, **inputs}
        resp = client.post(f"{url}/actions/{action}", json=body, headers=auth(username))
        assert resp.status_code == 200, (action, resp.get_json())
        out = resp.get_json()
        assert out["state"] == state, action
        assert out["history"][-1]["action"] == action
        version = out["version"]
        return out

    out = step("zzzx", "accept", "accepted")
    assert "dispatch" in {a["name"] for a in out["allowed_actions"]}
    lead, assist = department_of(users, TOWN_LEAD), department_of(users, TOWN_ASSIST)
    step(
        "zzzx",
        "dispatch",
        "dispatched",
        lead_department_id=lead,
        assisting_department_ids=[assist],
        comment="请环卫所清理",
    )
    step(TOWN_LEAD, "sign", "handling")

    missing = client.post(
        f"{url}/actions/handle", json={"comment": "已清理"}, headers=auth(TOWN_LEAD)
    )
    error(missing, 422, "missing_photo")

    photo = upload_photo(client, auth(TOWN_LEAD), event_id, png_bytes(), "after")
    assert photo.status_code == 201, photo.get_json()
    photo_id = photo.get_json()["id"]
    out = step(TOWN_LEAD, "handle", "handled", comment="已清理完毕", attachment_ids=[photo_id])
    assert out["holder_level"] == "grid_worker"
    out = step("wgy", "verify_pass", "verified")
    assert out["holder_level"] == "town"
    out = step("zzzx", "close", "closed", comment="结案")
    assert out["closed_at"] and out["holder_level"] == "none"
    out = step("wgy", "evaluate", "closed", satisfaction="satisfied")
    assert out["satisfaction"] == "satisfied"
    assert out["allowed_actions"] == []

    final = client.get(url, headers=auth("ddy")).get_json()
    assert [h["action"] for h in final["history"]] == [
        "report",
        "accept",
        "dispatch",
        "sign",
        "handle",
        "verify_pass",
        "close",
        "evaluate",
    ]
    handle = final["history"][4]
    assert [p["id"] for p in final["photos"]] == [photo_id]
    assert final["photos"][0]["action_id"] == handle["id"]
    assert handle["comment"] == "已清理完毕"
    error(
        client.post(
            f"{url}/actions/evaluate", json={"satisfaction": "unsatisfied"}, headers=auth("wgy")
        ),
        409,
        "precondition_failed",
    )
    session.expire_all()
    assert session.get(Event, event_id).state == "closed"


# ---------------------------------------------------------------------------
# Attachments


def test_attachment_upload_and_download(client, session, users, auth):
    event = make_event(session, users, S.REPORTED)
    data = png_bytes((64, 48))
    first = upload_photo(client, auth("wgy"), event.id, data, "evidence")
    assert first.status_code == 201, first.get_json()
    body = first.get_json()
    assert body["created"] is True and (body["width"], body["height"]) == (64, 48)
    again = upload_photo(client, auth("wgy"), event.id, data, "evidence", name="copy.png")
    assert again.status_code == 200
    assert again.get_json()["id"] == body["id"] and again.get_json()["created"] is False

    fake = upload_photo(client, auth("wgy"), event.id, b"not a photo at all\n", "evidence", "x.jpg")
    error(fake, 422, "photo_invalid")
    error(upload_photo(client, auth("wgy"), event.id, png_bytes(), "selfie"), 422, "bad_input")
    no_file = client.post(
        f"/api/v1/events/{event.id}/attachments", data={"kind": "after"}, headers=auth("wgy")
    )
    error(no_file, 422, "missing_input")
    error(
        upload_photo(client, auth("zzzx2"), event.id, png_bytes(), "evidence"),
        403,
        "outside_jurisdiction",
    )
    error(
        upload_photo(client, auth("ld"), event.id, png_bytes(), "evidence"), 403, "role_not_allowed"
    )

    url = f"/api/v1/attachments/{body['id']}"
    for username in ("wgy", "zzzx", "ddy", "ld"):
        r = client.get(url, headers=auth(username))
        assert r.status_code == 200, username
        assert r.mimetype == "image/jpeg"
        assert r.data[:3] == b"\xff\xd8\xff"
        r.close()
    thumb = client.get(f"{url}?thumb=1", headers=auth("wgy"))
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
    thumb.close()
    for username in ("zzzx2", "wgy2", "hwsuo", "xtgly"):
        error(client.get(url, headers=auth(username)), 403, "outside_jurisdiction")
    error(client.get(url), 401, "unauthorized")
    error(
        client.get("/api/v1/attachments/999999", headers=auth("wgy")), 404, "attachment_not_found"
    )


def test_no_uploads_on_a_finished_event(client, session, users, auth):
    event = make_event(session, users, S.WITHDRAWN)
    error(
        upload_photo(client, auth("wgy"), event.id, png_bytes(), "evidence"), 409, "state_conflict"
    )


# ---------------------------------------------------------------------------
# Authentication


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/events"),
        ("post", "/api/v1/events"),
        ("get", "/api/v1/events/1"),
        ("post", "/api/v1/events/1/actions/accept"),
        ("post", "/api/v1/events/1/attachments"),
        ("get", "/api/v1/attachments/1"),
    ],
)
@pytest.mark.parametrize("header", [None, "Bearer nonsense", "Bearer ", "Basic d2d5OnBhc3M="])
def test_unauthenticated_gets_401_json(client, method, path, header):
    headers = {"Authorization": header} if header else {}
    r = getattr(client, method)(path, json={} if method == "post" else None, headers=headers)
    error(r, 401, "unauthorized")


def test_matters_list(client):
    r = client.get("/api/v1/matters")
    assert r.status_code == 200
    codes = {m["code"] for c in r.get_json()["categories"] for m in c["matters"]}
    assert {"0101", "0501", "0601"} <= codes
