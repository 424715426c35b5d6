"""The 待定位 queue (gridgov.unplaced): who may receive, list, place and discard; idempotency;
placing files the event as received; conflicts; the record on the audit chain."""

from __future__ import annotations

import html
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from factories import (
    JIAOLING,
    LUHE,
    LUOXI,
    active_grids,
    outside_point,
    outsiders,
    point_in,
    post_form,
    queued_report,
    signed_in,
)
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gridgov import unplaced
from gridgov.bootstrap import init_database
from gridgov.db import Database, utcnow
from gridgov.demo import create_demo_users
from gridgov.errors import Conflict, Forbidden, GridGovError, Unprocessable
from gridgov.events import ReportInput, ReportResult
from gridgov.models import AuditEntry, Event, Region, UnplacedReport, User

HOTLINE = "hotline"


def report_input(point: tuple[float, float] | None, **extra) -> ReportInput:
    values = {
        "matter_code": "0501",
        "urgency": "normal",
        "description": "群众来电：村道旁堆放建筑垃圾",
        "lng": point[0] if point else None,
        "lat": point[1] if point else None,
        "client_key": uuid.uuid4().hex,
        "source": HOTLINE,
    }
    return ReportInput(**{**values, **extra})  # type: ignore[arg-type]


def luoxi_grid(session: Session) -> str:
    return active_grids(session, LUOXI)[0].code


# ---------------------------------------------------------------------------
# Role × action


RECEIVE = [
    # (user, source, outcome): "queued" (in the user's county queue), or the error class + code
    ("ddy", "hotline", "queued"),
    ("zbz", "citizen", "queued"),
    ("ddy", "sensor", "queued"),
    ("jl_ddy", "hotline", "queued"),
    ("ddy", "centre", (Unprocessable, "outside_jurisdiction")),
    ("zzzx", "hotline", (Unprocessable, "outside_jurisdiction")),
    ("wgy", "", (Unprocessable, "outside_jurisdiction")),
    ("cgj", "hotline", (Forbidden, "role_not_allowed")),
    ("ld", "hotline", (Forbidden, "role_not_allowed")),
]


@pytest.mark.parametrize(("username", "source", "outcome"), RECEIVE)
def test_who_may_queue_an_unplaceable_report(session, users, username, source, outcome) -> None:
    outsiders(session, users)
    user = users[username]
    data = report_input(outside_point(session), source=source)
    if outcome == "queued":
        receipt = unplaced.receive_report(session, user, data)
        assert isinstance(receipt, unplaced.Receipt) and receipt.created
        report = receipt.report
        assert report.county_code == user.region_code
        assert report.status == "queued" and report.reason == "outside_grids"
        assert report.nearest_m is not None and report.nearest_m > 1000
        assert report.nearest_grid_code
        return
    error, code = outcome
    with pytest.raises(error) as caught:
        unplaced.receive_report(session, user, data)
    assert caught.value.code == code
    assert session.scalar(select(UnplacedReport)) is None


# Who sees the 陆河县 queue, and who may place or discard its report.
HANDLE = [
    ("ddy", True),
    ("zbz", True),
    ("jl_ddy", False),
    ("jl_zbz", False),
    ("zzzx", False),
    ("wgy", False),
    ("cgj", False),
    ("hwsuo", False),
    ("ld", False),
]


@pytest.mark.parametrize(("username", "allowed"), HANDLE)
def test_who_sees_the_queue(session, users, username, allowed) -> None:
    outsiders(session, users)
    report = queued_report(session, users)
    rows, total = unplaced.queue(session, users[username])
    assert (rows, total) == (([report], 1) if allowed else ([], 0))
    assert unplaced.count_waiting(session, users[username]) == (1 if allowed else 0)
    assert unplaced.can_view_report(users[username], report) is allowed


@pytest.mark.parametrize(("username", "allowed"), HANDLE)
@pytest.mark.parametrize("action", ["place", "discard"])
def test_who_may_place_or_discard(session, users, username, allowed, action) -> None:
    outsiders(session, users)
    report = queued_report(session, users)
    user = users[username]

    def run() -> None:
        if action == "place":
            unplaced.place(session, user, report.id, lng=point[0], lat=point[1])
        else:
            unplaced.discard(session, user, report.id, "重复来电，已并入前一通电话")

    point = point_in(session, luoxi_grid(session))
    if allowed:
        run()
        assert report.status == ("placed" if action == "place" else "discarded")
        assert report.resolved_by_id == user.id
    else:
        with pytest.raises(Forbidden):
            run()
        assert report.status == "queued"


# ---------------------------------------------------------------------------
# Receiving


def test_same_client_key_returns_the_queued_report_then_its_event(session, users) -> None:
    ddy = users["ddy"]
    data = report_input(outside_point(session))
    first = unplaced.receive_report(session, ddy, data)
    again = unplaced.receive_report(session, ddy, data)
    assert isinstance(again, unplaced.Receipt) and not again.created
    assert again.report.id == first.report.id  # type: ignore[union-attr]
    # Another submitter's same key is another report.
    other = unplaced.receive_report(session, users["zbz"], data)
    assert isinstance(other, unplaced.Receipt) and other.created
    assert other.report.id != first.report.id  # type: ignore[union-attr]

    point = point_in(session, luoxi_grid(session))
    placed = unplaced.place(session, users["zbz"], first.report.id, lng=point[0], lat=point[1])  # type: ignore[union-attr]
    after = unplaced.receive_report(session, ddy, data)
    assert isinstance(after, ReportResult) and not after.created
    assert after.event.id == placed.event.id
    assert session.scalar(select(UnplacedReport).where(UnplacedReport.id == first.report.id))  # type: ignore[union-attr]
    count = len(session.scalars(select(Event).where(Event.client_key == data.client_key)).all())
    assert count == 1


def test_a_placeable_report_becomes_an_event_at_once(session, users) -> None:
    point = point_in(session, luoxi_grid(session))
    result = unplaced.receive_report(session, users["ddy"], report_input(point))
    assert isinstance(result, ReportResult) and result.created
    assert result.event.grid_code == luoxi_grid(session)
    assert session.scalar(select(UnplacedReport)) is None


def test_without_coordinates_a_named_village_places_it(session, users) -> None:
    village = session.get(Region, luoxi_grid(session)[:12])
    data = report_input(None, address=f"螺溪镇{village.name}附近路口")
    result = unplaced.receive_report(session, users["ddy"], data)
    assert isinstance(result, ReportResult) and result.created
    assert result.event.village_code == village.code


@pytest.mark.parametrize("address", ["", "县城某处", "螺溪镇"])
def test_without_coordinates_or_a_village_it_is_queued(session, users, address) -> None:
    receipt = unplaced.receive_report(session, users["ddy"], report_input(None, address=address))
    assert isinstance(receipt, unplaced.Receipt)
    report = receipt.report
    assert report.reason == "no_location"
    assert (report.lng, report.lat, report.nearest_m) == (None, None, None)
    assert report.address == address


def test_what_was_received_is_kept(session, users) -> None:
    now = utcnow().replace(microsecond=0)
    lng, lat = outside_point(session)
    data = report_input(
        (lng, lat),
        crs="gcj02",
        address="某路口",
        reporter_name="李女士",
        reporter_phone="0660-1234567",
        accuracy_m=30.0,
        source="citizen",
    )
    receipt = unplaced.receive_report(session, users["ddy"], data, place_text="某村", now=now)
    r = receipt.report  # type: ignore[union-attr]
    assert (r.input_lng, r.input_lat, r.input_crs) == (lng, lat, "gcj02")
    assert r.lng is not None and abs(r.lng - lng) > 1e-5  # converted from GCJ-02 to WGS84
    assert (r.source, r.matter_code, r.urgency) == ("citizen", "0501", "normal")
    assert (r.address, r.place_text) == ("某路口", "某村")
    assert (r.reporter_name, r.reporter_phone, r.location_accuracy_m) == (
        "李女士",
        "0660-1234567",
        30.0,
    )
    assert r.submitted_by_id == users["ddy"].id and r.received_at == now
    assert r.client_key == data.client_key and r.description == data.description


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"matter_code": "9999"}, "unknown_matter"),
        ({"urgency": "soon"}, "bad_urgency"),
        ({"description": "  "}, "missing_input"),
        ({"client_key": ""}, "missing_input"),
        ({"reporter_phone": "1" * 40}, "too_long"),
    ],
)
def test_an_invalid_report_is_refused_not_queued(session, users, change, code) -> None:
    data = report_input(outside_point(session), **change)
    with pytest.raises(Unprocessable) as caught:
        unplaced.receive_report(session, users["ddy"], data)
    assert caught.value.code == code
    assert session.scalar(select(UnplacedReport)) is None


def test_malformed_coordinates_are_refused(session, users) -> None:
    with pytest.raises(Unprocessable) as caught:
        unplaced.receive_report(session, users["ddy"], report_input(None, lng="abc", lat="23"))
    assert caught.value.code == "bad_coordinates"


# ---------------------------------------------------------------------------
# Placing


def test_placing_files_the_event_as_received(session, users) -> None:
    received = utcnow().replace(microsecond=0) - timedelta(hours=5)
    report = queued_report(session, users, now=received)
    grid = luoxi_grid(session)
    point = point_in(session, grid)
    zbz = users["zbz"]
    result = unplaced.place(session, zbz, report.id, lng=point[0], lat=point[1])
    event = result.event
    assert result.created
    assert event.reported_at == received and event.stage_started_at == received
    assert event.grid_code == grid and event.county_code == LUHE
    assert event.reporter_id == users["ddy"].id  # who received it
    assert event.client_key == report.client_key
    assert (event.source, event.matter_code, event.reporter_name) == (HOTLINE, "0501", "王先生")
    assert event.holder_level == "county" and event.state == "reported"
    assert event.code.startswith(f"{LUHE}-")
    action = event.actions[0]
    assert action.action == "report" and action.at == received
    placed = json.loads(action.data)["unplaced"]
    assert placed["placed_by_id"] == zbz.id and placed["id"] == report.id
    assert zbz.display_name in action.comment
    assert (report.status, report.event_id, report.resolved_by_id) == ("placed", event.id, zbz.id)
    assert report.resolved_at is not None and report.resolved_at > received


def test_placing_by_village_name(session, users) -> None:
    report = queued_report(session, users)
    village = session.get(Region, luoxi_grid(session)[:12])
    result = unplaced.place(session, users["ddy"], report.id, place_text=f"螺溪镇{village.name}")
    assert result.event.village_code == village.code


@pytest.mark.parametrize(
    ("where", "error", "code"),
    [
        ("outside", Unprocessable, "outside_jurisdiction"),
        ("jiaoling", Forbidden, "outside_jurisdiction"),
        ("nothing", Unprocessable, "missing_input"),
        ("town", Unprocessable, "place_not_village"),
        ("unknown", Unprocessable, "place_not_found"),
    ],
)
def test_placing_needs_a_point_in_the_county(session, users, where, error, code) -> None:
    report = queued_report(session, users)
    kwargs: dict = {
        "outside": {"lng": outside_point(session)[0], "lat": outside_point(session)[1]},
        "jiaoling": dict(
            zip(
                ("lng", "lat"),
                point_in(session, active_grids(session, JIAOLING)[0].code),
                strict=True,
            )
        ),
        "nothing": {},
        "town": {"place_text": "螺溪镇"},
        "unknown": {"place_text": "火星基地"},
    }[where]
    with pytest.raises(error) as caught:
        unplaced.place(session, users["ddy"], report.id, **kwargs)
    assert caught.value.code == code
    assert report.status == "queued" and report.event_id is None


# ---------------------------------------------------------------------------
# Conflicts and discarding


@pytest.mark.parametrize(
    ("first", "second"),
    [("place", "place"), ("place", "discard"), ("discard", "place"), ("discard", "discard")],
)
def test_handling_twice_is_a_clear_conflict(session, users, first, second) -> None:
    report = queued_report(session, users)
    point = point_in(session, luoxi_grid(session))

    def run(action: str, username: str) -> None:
        if action == "place":
            unplaced.place(session, users[username], report.id, lng=point[0], lat=point[1])
        else:
            unplaced.discard(session, users[username], report.id, "测试数据")

    run(first, "ddy")
    with pytest.raises(Conflict) as caught:
        run(second, "zbz")
    assert caught.value.code == unplaced.ALREADY_RESOLVED
    assert users["ddy"].display_name in caught.value.message
    assert ("定位" if first == "place" else "作废") in caught.value.message
    assert len(
        session.scalars(select(Event).where(Event.client_key == report.client_key)).all()
    ) == (1 if first == "place" else 0)


def test_a_stale_version_is_a_conflict(session, users) -> None:
    report = queued_report(session, users)
    with pytest.raises(Conflict) as caught:
        unplaced.discard(
            session, users["ddy"], report.id, "测试", expected_version=report.version + 1
        )
    assert caught.value.code == "stale_version"
    assert report.status == "queued"


@pytest.fixture(scope="module")
def committed(backend: str, fresh_database_url: Callable[[str], str]) -> Iterator[Database]:
    """A fresh database, committed for real (threads must see it), with 陆河县 and demo users."""
    db = Database(fresh_database_url(backend), audit_key=b"k")
    init_database(db, (LUHE,))
    with db.session() as s:
        create_demo_users(s, LUHE)
    yield db
    db.dispose()


@pytest.mark.parametrize("actions", [("place", "place"), ("place", "discard")], ids="+".join)
def test_two_dispatchers_at_once_one_wins(committed: Database, actions) -> None:
    with committed.session() as s:
        users = {u.username: u for u in s.scalars(select(User))}
        report_id = queued_report(s, users).id
        point = point_in(s, luoxi_grid(s))
    barrier = threading.Barrier(2)

    def handle(i: int) -> str:
        barrier.wait(timeout=30)
        try:
            with committed.session() as s:
                user = s.scalar(select(User).where(User.username == ("ddy", "zbz")[i]))
                assert user is not None
                if actions[i] == "place":
                    unplaced.place(s, user, report_id, lng=point[0], lat=point[1])
                else:
                    unplaced.discard(s, user, report_id, "重复来电")
        except Conflict as exc:
            assert exc.code == unplaced.ALREADY_RESOLVED, exc.code
            return "conflict"
        return actions[i]

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(handle, range(2)))
    assert sorted(results)[0] == "conflict" and len(set(results)) == 2, results
    with committed.session() as s:
        report = s.get(UnplacedReport, report_id)
        assert report is not None
        won = next(r for r in results if r != "conflict")
        assert report.status == ("placed" if won == "place" else "discarded")
        events = s.scalars(select(Event).where(Event.client_key == report.client_key)).all()
        assert len(events) == (1 if won == "place" else 0)


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_discarding_needs_a_reason(session, users, reason) -> None:
    report = queued_report(session, users)
    with pytest.raises(Unprocessable) as caught:
        unplaced.discard(session, users["ddy"], report.id, reason)
    assert (caught.value.code, caught.value.details["field"]) == ("missing_input", "reason")
    assert report.status == "queued"


def test_discarding_keeps_the_reason_and_who(session, users) -> None:
    report = queued_report(session, users)
    unplaced.discard(session, users["zbz"], report.id, "  测试数据，非真实来电 ")
    assert (report.status, report.discard_reason) == ("discarded", "测试数据，非真实来电")
    assert report.resolved_by_id == users["zbz"].id and report.event_id is None
    assert unplaced.count_waiting(session, users["ddy"]) == 0
    rows, total = unplaced.queue(session, users["ddy"], "discarded")
    assert (rows, total) == ([report], 1)


def test_the_queue_lists_the_longest_waiting_first(session, users) -> None:
    now = utcnow()
    late = queued_report(session, users, now=now)
    early = queued_report(session, users, now=now - timedelta(hours=2))
    assert unplaced.queue(session, users["ddy"])[0] == [early, late]
    with pytest.raises(Unprocessable):
        unplaced.queue(session, users["ddy"], "lost")


# ---------------------------------------------------------------------------
# Invariants and the record


def test_the_database_refuses_a_placed_report_without_its_event(session, users) -> None:
    report = queued_report(session, users)
    report.status = "placed"
    report.resolved_by_id = users["ddy"].id
    report.resolved_at = utcnow()
    with pytest.raises(IntegrityError), session.begin_nested():
        session.flush()


def test_receiving_and_placing_are_on_the_audit_chain(session, users) -> None:
    report = queued_report(session, users)
    point = point_in(session, luoxi_grid(session))
    unplaced.place(session, users["zbz"], report.id, lng=point[0], lat=point[1])
    entries = session.scalars(
        select(AuditEntry).where(
            AuditEntry.object_type == "unplaced_report", AuditEntry.object_id == str(report.id)
        )
    ).all()
    assert [e.action for e in entries] == ["create", "update"]
    assert json.loads(entries[1].data)["status"] == ["queued", "placed"]


def test_errors_are_domain_errors_with_chinese_messages(session, users) -> None:
    report = queued_report(session, users)
    with pytest.raises(GridGovError) as caught:
        unplaced.get_report(session, users["zzzx"], report.id)
    assert caught.value.status == 403 and "县指挥中心" in caught.value.message
    with pytest.raises(GridGovError) as missing:
        unplaced.get_report(session, users["ddy"], report.id + 1000)
    assert missing.value.status == 404


# ---------------------------------------------------------------------------
# Pages: the desk's 待定位 group, the place page, the register form's offer


def test_the_desk_shows_the_queue_to_the_county_centre_only(client, session, users) -> None:
    report = queued_report(session, users, address="陆河与海丰交界处")
    signed_in(client, users["ddy"])
    desk = client.get("/desk/")
    assert re.search(
        r'data-tab="unplaced"[^>]*>\s*<span class="tab-label">待定位</span>\s*'
        r'<span class="tab-count" data-count>1<',
        desk.text,
    )
    page = client.get("/desk/?tab=unplaced")
    assert page.status_code == 200
    assert f'data-unplaced-id="{report.id}"' in page.text and "陆河与海丰交界处" in page.text
    assert "距最近网格约" in page.text
    one = client.get(f"/desk/unplaced/{report.id}")
    assert one.status_code == 200 and f"{report.input_lng:.6f}" in one.text
    assert one.text.count('name="csrf_token"') >= 2  # the place form and the discard form
    signed_in(client, users["zzzx"])
    assert 'data-tab="unplaced"' not in client.get("/desk/").text
    assert f'data-unplaced-id="{report.id}"' not in client.get("/desk/?tab=unplaced").text
    assert client.get(f"/desk/unplaced/{report.id}").status_code == 403


def register_form(session: Session, **extra: str) -> dict[str, str]:
    lng, lat = outside_point(session)
    return {
        "client_key": uuid.uuid4().hex,
        "source": "hotline",
        "matter_code": "0501",
        "urgency": "pressing",
        "description": "12345 来电：县界附近路边堆放垃圾",
        "reporter_name": "陈先生",
        "address": "省道旁加油站对面",
        "lng": f"{lng:.6f}",
        "lat": f"{lat:.6f}",
        **extra,
    }


def test_register_outside_offers_the_queue_and_queues_on_request(client, session, users) -> None:
    signed_in(client, users["ddy"])
    data = register_form(session)
    first = post_form(client, "/desk/new", data)
    assert first.status_code == 422
    page = html.unescape(first.text)
    assert "坐标不在本系统管辖范围内" in page and "data-queue-offer" in page
    assert 'name="queue" value="1"' in page
    assert 'value="陈先生"' in page and 'value="省道旁加油站对面"' in page
    assert f'value="{data["lng"]}"' in page
    assert session.scalar(select(UnplacedReport)) is None
    queued = post_form(client, "/desk/new", {**data, "queue": "1"})
    assert queued.status_code == 302 and queued.location == "/desk/?tab=unplaced"
    report = session.scalars(select(UnplacedReport)).one()
    assert (report.client_key, report.reporter_name, report.urgency) == (
        data["client_key"],
        "陈先生",
        "pressing",
    )
    assert report.reason == "outside_grids" and report.submitted_by_id == users["ddy"].id
    # The same form again (a double click) keeps one report.
    post_form(client, "/desk/new", {**data, "queue": "1"})
    assert len(session.scalars(select(UnplacedReport)).all()) == 1


def test_register_without_a_village_offers_the_queue(client, session, users) -> None:
    signed_in(client, users["zbz"])
    data = register_form(session, lng="", lat="", place="不知道在哪")
    first = post_form(client, "/desk/new", data)
    assert first.status_code == 422 and "data-queue-offer" in first.text
    queued = post_form(client, "/desk/new", {**data, "queue": "1"})
    assert queued.status_code == 302
    report = session.scalars(select(UnplacedReport)).one()
    assert (report.reason, report.place_text) == ("no_location", "不知道在哪")


@pytest.mark.parametrize(("username", "source"), [("zzzx", "hotline"), ("ddy", "centre")])
def test_no_queue_offer_for_towns_or_the_centres_own_reports(
    client, session, users, username, source
) -> None:
    signed_in(client, users[username])
    data = register_form(session, source=source)
    first = post_form(client, "/desk/new", data)
    assert first.status_code == 422 and "data-queue-offer" not in first.text
    second = post_form(client, "/desk/new", {**data, "queue": "1"})
    assert second.status_code == 422
    assert session.scalar(select(UnplacedReport)) is None


def test_place_page_keeps_input_then_places(client, session, users) -> None:
    report = queued_report(session, users)
    signed_in(client, users["ddy"])
    url = f"/desk/unplaced/{report.id}/place"
    assert client.post(url, data={"place": "螺溪社区"}).status_code == 400  # no CSRF token
    missing = post_form(client, url, {"version": "1"})
    assert missing.status_code == 422 and "请在地图上点选位置" in missing.text
    unknown = post_form(client, url, {"version": "1", "place": "火星基地"})
    assert unknown.status_code == 422
    assert 'value="火星基地"' in unknown.text and "未能从" in html.unescape(unknown.text)
    placed = post_form(client, url, {"version": "1", "place": "螺溪社区"})
    assert placed.status_code == 302
    event = session.scalars(select(Event).where(Event.client_key == report.client_key)).one()
    assert placed.location == f"/events/{event.id}"
    assert event.town_code == LUOXI
    page = client.get(placed.location)
    assert "属地兜底" in page.text and users["ddy"].display_name in page.text
    again = post_form(client, url, {"version": "1", "place": "螺溪社区"})
    assert again.status_code == 409 and "已由" in again.text and event.code in again.text


def test_discard_page_needs_a_reason(client, session, users) -> None:
    report = queued_report(session, users)
    signed_in(client, users["zbz"])
    url = f"/desk/unplaced/{report.id}/discard"
    empty = post_form(client, url, {"version": "1", "reason": " "})
    assert empty.status_code == 422 and "请填写作废理由" in empty.text
    done = post_form(client, url, {"version": "1", "reason": "重复来电"})
    assert done.status_code == 302 and done.location == "/desk/?tab=unplaced"
    session.refresh(report)
    assert report.status == "discarded" and report.discard_reason == "重复来电"
    shown = client.get(f"/desk/unplaced/{report.id}")
    assert "重复来电" in shown.text and "data-place-form" not in shown.text
