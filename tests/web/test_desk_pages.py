"""The dispatch desk, the department inbox and the event page through the Flask test client."""

from __future__ import annotations

import html
import re
import time
from datetime import timedelta
from typing import Any

import pytest
from factories import (
    LUOXI,
    act,
    department_of,
    make_event,
    png_bytes,
    report,
)
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from gridgov.db import utcnow
from gridgov.events import allowed_actions
from gridgov.models import Event, EventState, User
from gridgov.web.desk import STALE_MESSAGE

S = EventState
CSRF = "desk-test-csrf"


# -- helpers ------------------------------------------------------------------------------


def sign_in(client: FlaskClient, user: User) -> None:
    """Start a signed-in browser session for `user` (the sign-in form is tested elsewhere)."""
    with client.session_transaction() as s:
        s.clear()
        s.permanent = True
        s.update(user_id=user.id, seen=int(time.time()), csrf_token=CSRF)


def post(client: FlaskClient, url: str, data: dict[str, Any], **kw: Any) -> TestResponse:
    return client.post(url, data={"csrf_token": CSRF, **data}, **kw)


def action_forms(page: str) -> set[str]:
    """Return the actions the event page offers (its action forms)."""
    return set(re.findall(r'data-action-form="([a-z_]+)"', page))


def section_codes(page: str) -> list[str]:
    """Return the event codes listed in the page's tables, in order."""
    return re.findall(r'<tr class="row-light-[a-z]+" data-event-id="\d+" data-code="([^"]+)"', page)


def counts(page: str) -> dict[str, int]:
    """Return the count of every work-list tab."""
    found = re.findall(
        r'data-tab="([a-z]+)"[^>]*>\s*<span class="tab-label">[^<]+</span>\s*'
        r'<span class="tab-count" data-count>(\d+)',
        page,
    )
    return {key: int(n) for key, n in found}


def flashes(client: FlaskClient) -> list[tuple[str, str]]:
    with client.session_transaction() as s:
        return list(s.get("_flashes", []))


# -- role guards --------------------------------------------------------------------------

PAGES = ("/desk/", "/desk/events", "/desk/new", "/inbox/", "/inbox/done", "event")
CENTRE = {"/desk/": 200, "/desk/events": 200, "/desk/new": 200, "/inbox/": 403, "/inbox/done": 403}
DEPARTMENT = {
    "/desk/": 403,
    "/desk/events": 403,
    "/desk/new": 403,
    "/inbox/": 200,
    "/inbox/done": 200,
}
NOTHING = dict.fromkeys(PAGES, 403)
GUARDS: dict[str, dict[str, int]] = {
    # The event: reported by wgy in 螺溪镇, dispatched by the town to 环卫所 with 派出所 assisting.
    "wgy": {**NOTHING, "event": 200},
    "zzzx": {**CENTRE, "event": 200},
    "zzzx2": {**CENTRE, "event": 403},
    "ddy": {**CENTRE, "event": 200},
    "zbz": {**CENTRE, "event": 200},
    "hwsuo": {**DEPARTMENT, "event": 200},
    "pcs": {**DEPARTMENT, "event": 200},
    "cgj": {**DEPARTMENT, "event": 403},
    "ld": {**NOTHING, "/desk/events": 200, "event": 200},
    "xtgly": NOTHING,
    "aqgly": NOTHING,
    "sjgly": NOTHING,
}


@pytest.mark.parametrize("username", sorted(GUARDS))
def test_role_guards(client: FlaskClient, session: Session, users, username: str) -> None:
    event = make_event(session, users, S.HANDLING)
    sign_in(client, users[username])
    for page in PAGES:
        url = f"/events/{event.id}" if page == "event" else page
        response = client.get(url)
        assert response.status_code == GUARDS[username][page], (username, url)
        if response.status_code == 403:
            assert "无权访问" in response.text
            assert '<html lang="zh-CN">' in response.text


def test_anonymous_users_are_sent_to_sign_in(client: FlaskClient, session, users) -> None:
    event = make_event(session, users, S.REPORTED)
    for url in ("/desk/", "/desk/events?q=x", "/desk/new", "/inbox/", "/inbox/done"):
        response = client.get(url)
        assert response.status_code == 302
        assert response.location.startswith("/login?next=")
    assert client.get(f"/events/{event.id}").location == f"/login?next=/events/{event.id}"


def test_a_town_operator_cannot_open_another_towns_event(client, session, users) -> None:
    event = make_event(session, users, S.REPORTED)
    sign_in(client, users["zzzx2"])
    response = client.get(f"/events/{event.id}")
    assert response.status_code == 403
    assert "该事件不在您的辖区或职责范围内" in response.text
    assert event.code not in response.text
    assert client.get(f"/events/{event.id}/map.json").status_code == 403
    assert post(client, f"/events/{event.id}/act", {"action": "accept"}).status_code == 403
    assert client.get("/events/99999999").status_code == 404


# -- the desk -----------------------------------------------------------------------------


@pytest.fixture
def desk_events(session: Session, users) -> dict[str, Event]:
    """One event of 螺溪镇 for each section of the town centre's desk, and one of 河田镇."""
    now = utcnow()
    made = {
        "reported": make_event(session, users, S.REPORTED),
        "accepted": make_event(session, users, S.ACCEPTED),
        "returned": make_event(session, users, S.RETURNED),
        "verified": make_event(session, users, S.VERIFIED),
        "hetian": make_event(
            session, users, S.REPORTED, reporter="wgy2", grid=users["wgy2"].grid_codes[0]
        ),
        "county": make_event(session, users, S.ACCEPTED, level="county"),
    }
    # 待核查 by the centre: a citizen's report the town registered, handled by 环卫所.
    handled = report(session, users, reporter="zzzx", now=now)
    act(session, users["zzzx"], handled, "accept")
    act(
        session,
        users["zzzx"],
        handled,
        "dispatch",
        lead_department_id=department_of(users, "hwsuo"),
    )
    act(session, users["hwsuo"], handled, "sign")
    act(session, users["hwsuo"], handled, "handle")
    made["handled"] = handled
    extension = make_event(session, users, S.HANDLING)
    act(session, users["hwsuo"], extension, "request_extension", days=3)
    made["extension"] = extension
    soon = make_event(session, users, S.HANDLING)
    soon.stage_started_at = now - timedelta(days=30)
    soon.stage_due_at = now + timedelta(minutes=30)
    soon.due_at = now + timedelta(days=10)
    made["soon"] = soon
    late = make_event(session, users, S.HANDLING)
    late.stage_due_at = now - timedelta(hours=2)
    made["late"] = late
    session.flush()
    return made


def test_the_town_desk_sorts_its_work_into_sections(client, session, users, desk_events) -> None:
    sign_in(client, users["zzzx"])
    page = client.get("/desk/").text
    got = counts(page)
    assert got == {
        "reported": 1,
        "accepted": 1,
        "returned": 1,
        "extension": 1,
        "handled": 1,
        "verified": 1,
        "soon": 1,
        "late": 1,
    }
    expected = {
        "reported": "reported",
        "accepted": "accepted",
        "returned": "returned",
        "extension": "extension",
        "handled": "handled",
        "verified": "verified",
        "soon": "soon",
        "late": "late",
    }
    for tab, key in expected.items():
        listed = section_codes(client.get(f"/desk/?tab={tab}").text)
        assert listed == [desk_events[key].code], tab
    # Other towns' events and the county's own stay off the town's desk.
    everything = "".join(client.get(f"/desk/?tab={t}").text for t in expected)
    assert desk_events["hetian"].code not in everything
    assert desk_events["county"].code not in everything


def test_the_desk_shows_countdowns_and_traffic_lights(client, users, desk_events) -> None:
    sign_in(client, users["zzzx"])
    late = client.get("/desk/?tab=late").text
    assert 'class="row-light-red"' in late
    assert re.search(r"已超时( [\d.]+ 工作(小时|日))?</span>", late)
    soon = client.get("/desk/?tab=soon").text
    assert 'class="row-light-yellow"' in soon
    assert re.search(r"剩余 [\d.]+ 工作(小时|日)", soon)


def test_the_county_desk_and_the_shift_lead(client, session, users, desk_events) -> None:
    escalated = make_event(session, users, S.REPORTED, level="county")
    sign_in(client, users["ddy"])
    page = client.get("/desk/?tab=reported").text
    assert section_codes(page) == [escalated.code]
    accepted = section_codes(client.get("/desk/?tab=accepted").text)
    assert accepted == [desk_events["county"].code]
    # The county sees late events anywhere in the county (supervision), not only its own.
    assert desk_events["late"].code in section_codes(client.get("/desk/?tab=late").text)
    # The town dispatched this extension: it is not on the county's desk.
    assert counts(page)["extension"] == 0


def test_county_extensions_show_to_both_but_only_the_shift_lead_approves(
    client, session, users
) -> None:
    event = make_event(session, users, S.HANDLING, level="county")
    act(session, users["cgj"], event, "request_extension", days=2)
    for name in ("ddy", "zbz"):
        sign_in(client, users[name])
        listed = section_codes(client.get("/desk/?tab=extension").text)
        assert listed == [event.code], name
    sign_in(client, users["ddy"])
    assert not {"approve_extension", "refuse_extension"} & action_forms(
        client.get(f"/events/{event.id}").text
    )
    sign_in(client, users["zbz"])
    offered = action_forms(client.get(f"/events/{event.id}").text)
    assert {"approve_extension", "refuse_extension"} <= offered


def test_desk_filters_are_in_the_url(client, session, users) -> None:
    wgy = users["wgy"]
    urgent = report(session, users, urgency="urgent")
    normal = report(session, users, matter="0501")
    sign_in(client, users["zzzx"])
    page = client.get("/desk/?tab=reported&urgency=urgent").text
    assert section_codes(page) == [urgent.code]
    assert '<option value="urgent" selected>' in page
    assert section_codes(client.get("/desk/?tab=reported&matter=05").text) == [normal.code]
    assert section_codes(client.get("/desk/?tab=reported&matter=0501").text) == [normal.code]
    village = wgy.region_code
    both = section_codes(client.get(f"/desk/?tab=reported&region={village}").text)
    assert set(both) == {urgent.code, normal.code}
    assert section_codes(client.get("/desk/?tab=reported&source=hotline").text) == []
    yesterday = (utcnow() - timedelta(days=2)).date().isoformat()
    assert section_codes(client.get(f"/desk/?tab=reported&to={yesterday}").text) == []
    newest_first = section_codes(client.get("/desk/?tab=reported&sort=reported").text)
    assert newest_first == [normal.code, urgent.code]
    bad = client.get("/desk/?urgency=whatever")
    assert bad.status_code == 200
    assert "筛选条件有误：未知紧急程度" in bad.text


def test_the_event_search_paginates_and_searches(client, session, users) -> None:
    made = [report(session, users) for _ in range(23)]
    sign_in(client, users["zzzx"])
    first = client.get("/desk/events").text
    assert "data-total>23<" in first
    assert len(section_codes(first)) == 20
    assert "第 1 / 2 页" in first
    second = section_codes(client.get("/desk/events?page=2").text)
    assert len(second) == 3
    found = section_codes(client.get(f"/desk/events?q={made[4].code}").text)
    assert found == [made[4].code]
    assert section_codes(client.get("/desk/events?state=accepted").text) == []
    sign_in(client, users["zzzx2"])
    assert section_codes(client.get("/desk/events").text) == []


# -- the event page -----------------------------------------------------------------------

CASES = [
    ("zzzx", S.REPORTED, "town"),
    ("zzzx", S.ACCEPTED, "town"),
    ("zzzx", S.HANDLING, "town"),
    ("hwsuo", S.DISPATCHED, "town"),
    ("hwsuo", S.HANDLING, "town"),
    ("pcs", S.HANDLING, "town"),
    ("wgy", S.REPORTED, "town"),
    ("wgy", S.HANDLED, "town"),
    ("wgy", S.CLOSED, "town"),
    ("ddy", S.ACCEPTED, "county"),
    ("zbz", S.HANDLING, "county"),
    ("cgj", S.HANDLING, "county"),
    ("ld", S.HANDLING, "county"),
    ("zzzx", S.VERIFIED, "town"),
]


@pytest.mark.parametrize(("username", "state", "level"), CASES)
def test_the_event_page_offers_exactly_the_allowed_actions(
    client, session, users, username: str, state: EventState, level: str
) -> None:
    event = make_event(session, users, state, level=level)
    user = users[username]
    sign_in(client, user)
    page = client.get(f"/events/{event.id}").text
    expected = {t.name for t in allowed_actions(session, user, event)}
    assert action_forms(page) == expected
    if not expected:
        assert "您当前没有可执行的操作" in page
    assert event.code in page
    assert f'data-state="{event.state}"' in page
    if expected:
        assert f'<input type="hidden" name="version" value="{event.version}">' in page


def test_the_event_page_shows_record_photos_and_holder(client, session, users, app) -> None:
    from gridgov import settings_of
    from gridgov.photos import PhotoStore

    store = PhotoStore(settings_of(app).upload_folder)
    event = make_event(session, users, S.HANDLING)
    from factories import upload

    before = upload(session, users["wgy"], event, "evidence", store)
    after = upload(session, users["hwsuo"], event, "after", store)
    act(session, users["hwsuo"], event, "handle", attachment_ids=[after])
    sign_in(client, users["zzzx"])
    page = client.get(f"/events/{event.id}").text
    before_col = page.split('data-photos="before"')[1].split('data-photos="after"')[0]
    after_col = page.split('data-photos="after"')[1].split("</section>")[0]
    assert f"/api/v1/attachments/{before}?thumb=1" in before_col
    assert f"/api/v1/attachments/{after}?thumb=1" in after_col
    history = re.findall(r'data-history="([a-z_]+)"', page)
    assert history == ["report", "accept", "dispatch", "sign", "handle"]
    assert "主办：" in page and "螺溪镇环境卫生管理所" in page
    assert "螺溪镇环境卫生管理所 → 张伟（网格员）" in page  # the grid worker verifies
    geo = client.get(f"/events/{event.id}/map.json").get_json()
    kinds = [f["properties"]["kind"] for f in geo["features"]]
    assert kinds == ["grid", "event"]
    assert geo["features"][0]["geometry"]["type"] in ("Polygon", "MultiPolygon")


def test_the_dispatch_form_preselects_the_matter_lists_lead(client, session, users) -> None:
    # 0501 乱堆乱放: led by the town's 环卫所, assisted by its 综合行政执法办.
    event = make_event(session, users, S.ACCEPTED, matter="0501")
    sign_in(client, users["zzzx"])
    page = client.get(f"/events/{event.id}").text
    lead = department_of(users, "hwsuo")
    assert re.search(rf'<option value="{lead}" selected>[^<]*环境卫生管理所（建议）', page)
    # A town centre may dispatch to its own offices only.
    assert "县直部门" not in page.split('data-action-form="dispatch"')[1].split("</details>")[0]
    # The county centre also lists the county bureaus.
    county_event = make_event(session, users, S.ACCEPTED, level="county", matter="0507")
    sign_in(client, users["ddy"])
    page = client.get(f"/events/{county_event.id}").text
    cgj = department_of(users, "cgj")
    assert re.search(rf'<option value="{cgj}" selected>[^<]*城市管理和综合执法局', page)
    assert "县直部门" in page and "螺溪镇站所" in page


def test_taking_an_action_redirects_and_records_it(client, session, users) -> None:
    event = make_event(session, users, S.REPORTED)
    sign_in(client, users["zzzx"])
    response = post(
        client,
        f"/events/{event.id}/act",
        {"action": "accept", "version": str(event.version), "comment": "已电话核实"},
    )
    assert response.status_code == 302
    assert response.location == f"/events/{event.id}"
    assert ("success", f"已受理：事件 {event.code}") in flashes(client)
    session.refresh(event)
    assert event.state == S.ACCEPTED
    assert event.actions[-1].comment == "已电话核实"


def test_form_errors_keep_what_was_typed(client, session, users) -> None:
    event = make_event(session, users, S.ACCEPTED)
    sign_in(client, users["zzzx"])
    response = post(
        client,
        f"/events/{event.id}/act",
        {"action": "dispatch", "version": str(event.version), "comment": "请今天内处理完毕"},
    )
    assert response.status_code == 422
    page = response.text
    assert "请选择主办部门" in page
    assert "请今天内处理完毕</textarea>" in page
    assert re.search(r'<details class="ev-action" data-action-form="dispatch" open>', page)
    response = post(
        client,
        f"/events/{event.id}/act",
        {"action": "escalate", "version": str(event.version), "comment": ""},
    )
    assert response.status_code == 422
    assert "请填写上报说明" in response.text
    session.refresh(event)
    assert event.state == S.ACCEPTED


def test_extension_days_are_checked(client, session, users) -> None:
    event = make_event(session, users, S.HANDLING)
    sign_in(client, users["hwsuo"])
    response = post(
        client,
        f"/events/{event.id}/act",
        {
            "action": "request_extension",
            "version": str(event.version),
            "days": "30",
            "comment": "需要协调施工队",
        },
    )
    assert response.status_code == 422
    assert "延期天数应在 1–15 之间" in response.text
    assert 'value="30"' in response.text and "需要协调施工队</textarea>" in response.text


def test_a_stale_form_shows_the_conflict(client, session, users) -> None:
    event = make_event(session, users, S.REPORTED)
    stale = event.version
    act(session, users["zzzx"], event, "accept")
    sign_in(client, users["zzzx"])
    response = post(
        client,
        f"/events/{event.id}/act",
        {"action": "reject", "version": str(stale), "comment": "重复上报"},
    )
    assert response.status_code == 409
    assert STALE_MESSAGE in response.text
    assert 'data-state="accepted"' in response.text  # the page shows the event as it is now


def test_handling_with_a_photo_through_the_form(client, session, users) -> None:
    import io

    event = make_event(session, users, S.HANDLING, matter="0501")  # photo required
    sign_in(client, users["hwsuo"])
    url = f"/events/{event.id}/act"
    missing = post(
        client, url, {"action": "handle", "version": str(event.version), "comment": "已清运"}
    )
    assert missing.status_code == 422
    assert "须上传处置后照片" in missing.text
    assert "已清运</textarea>" in missing.text
    response = post(
        client,
        url,
        {
            "action": "handle",
            "version": str(event.version),
            "comment": "已清运",
            "photo_kind": "after",
            "photos": (io.BytesIO(png_bytes()), "after.png"),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 302, response.text
    session.refresh(event)
    assert event.state == S.HANDLED
    assert [a.kind for a in event.attachments] == ["after"]
    assert event.attachments[0].action_id == event.actions[-1].id


def test_csrf_is_required_on_every_form(client, session, users) -> None:
    event = make_event(session, users, S.ACCEPTED)
    sign_in(client, users["zzzx"])
    for url, data in (
        (f"/events/{event.id}/act", {"action": "accept", "version": str(event.version)}),
        ("/desk/dispatch", {"event_id": str(event.id)}),
        ("/desk/new", {"description": "x"}),
    ):
        response = client.post(url, data=data)
        assert response.status_code == 400, url
        assert "表单已过期，请刷新页面后重试" in response.text
    session.refresh(event)
    assert event.state == S.ACCEPTED


# -- batch dispatch -----------------------------------------------------------------------


def test_batch_dispatch_reports_each_event(client, session, users) -> None:
    first = make_event(session, users, S.ACCEPTED)
    second = make_event(session, users, S.RETURNED)
    gone = make_event(session, users, S.ACCEPTED)
    gone_version = gone.version
    act(session, users["zzzx"], gone, "void")  # someone voided it since the desk was loaded
    sign_in(client, users["zzzx"])
    lead = department_of(users, "hwsuo")
    assist = department_of(users, "pcs")
    response = post(
        client,
        "/desk/dispatch",
        {
            "event_id": [str(first.id), str(second.id), str(gone.id)],
            f"version_{first.id}": str(first.version),
            f"version_{second.id}": str(second.version),
            f"version_{gone.id}": str(gone_version),
            "lead_department_id": str(lead),
            "assisting_department_ids": [str(assist)],
            "back": "/desk/?tab=accepted",
        },
    )
    assert response.status_code == 302
    assert response.location == "/desk/?tab=accepted"
    messages = flashes(client)
    assert ("success", f"事件 {first.code}：已分拨给螺溪镇环境卫生管理所") in messages
    assert ("success", f"事件 {second.code}：已分拨给螺溪镇环境卫生管理所") in messages
    assert ("error", f"事件 {gone.code}：分拨失败——{STALE_MESSAGE}") in messages
    assert ("warning", "批量分拨完成：成功 2 件，失败 1 件") in messages
    for event in (first, second):
        session.refresh(event)
        assert event.state == S.DISPATCHED
        assert event.holder_department_id == lead
        assert {(a.department_id, a.role) for a in event.assignments if a.active} == {
            (lead, "lead"),
            (assist, "assist"),
        }


def test_batch_dispatch_needs_events_and_a_lead(client, session, users) -> None:
    event = make_event(session, users, S.ACCEPTED)
    sign_in(client, users["zzzx"])
    post(client, "/desk/dispatch", {"lead_department_id": "1"})
    assert ("error", "请至少勾选一件要分拨的事件") in flashes(client)
    post(client, "/desk/dispatch", {"event_id": str(event.id)})
    assert ("error", "请选择主办部门") in flashes(client)
    # A town centre cannot reach a county bureau, nor another town's event.
    other = make_event(
        session, users, S.ACCEPTED, reporter="wgy2", grid=users["wgy2"].grid_codes[0]
    )
    post(
        client,
        "/desk/dispatch",
        {
            "event_id": [str(event.id), str(other.id)],
            "lead_department_id": str(department_of(users, "cgj")),
        },
    )
    messages = [m for _, m in flashes(client)]
    assert any(
        m.startswith(f"事件 {event.code}：分拨失败——镇综治中心只能分拨给本镇站所") for m in messages
    )
    assert f"事件 #{other.id}：分拨失败——该事件不在您的辖区或职责范围内" in messages
    session.refresh(event)
    assert event.state == S.ACCEPTED


# -- registering an event -----------------------------------------------------------------


def test_registering_a_hotline_report(client, session, users) -> None:
    from factories import point_in

    lng, lat = point_in(session, users["wgy"].grid_codes[0])
    sign_in(client, users["zzzx"])
    page = client.get("/desk/new")
    assert page.status_code == 200
    key = re.search(r'name="client_key" value="([0-9a-f]{32})"', page.text)
    assert key
    data = {
        "client_key": key.group(1),
        "source": "hotline",
        "matter_code": "0501",
        "urgency": "pressing",
        "description": "12345 来电：村口垃圾堆放多日",
        "reporter_name": "李先生",
        "reporter_phone": "13800000000",
        "lng": str(lng),
        "lat": str(lat),
    }
    response = post(client, "/desk/new", data)
    assert response.status_code == 302
    event = session.scalars(select(Event).where(Event.client_key == key.group(1))).one()
    assert response.location == f"/events/{event.id}"
    assert event.source == "hotline" and event.urgency == "pressing"
    assert event.reporter_name == "李先生"
    assert event.holder_level == "county"  # hotline reports go to the county centre
    # The same form posted twice files one event.
    again = post(client, "/desk/new", data)
    assert again.location == f"/events/{event.id}"


def test_registering_keeps_input_on_errors(client, session, users) -> None:
    sign_in(client, users["zzzx"])
    response = post(
        client,
        "/desk/new",
        {
            "client_key": "k" * 32,
            "source": "citizen",
            "matter_code": "0501",
            "urgency": "normal",
            "description": "",
            "reporter_name": "王女士",
            "address": "螺溪墟 12 号",
            "place": "螺溪社区",
        },
    )
    assert response.status_code == 422
    page = html.unescape(response.text)
    assert "请填写事件描述" in page
    assert 'value="王女士"' in page and 'value="螺溪墟 12 号"' in page
    assert 'value="螺溪社区"' in page
    assert '<option value="0501" selected>' in page
    assert 'value="citizen" checked' in page
    # A place of another town is refused, with the message at the location field.
    response = post(
        client,
        "/desk/new",
        {
            "client_key": "m" * 32,
            "source": "citizen",
            "matter_code": "0501",
            "urgency": "normal",
            "description": "路灯不亮",
            "place": "",
            "lng": "",
            "lat": "",
        },
    )
    assert response.status_code == 422
    assert "请在地图上点选事件位置" in response.text


def test_registering_by_place_name(client, session, users) -> None:
    sign_in(client, users["zzzx"])
    response = post(
        client,
        "/desk/new",
        {
            "client_key": "p" * 32,
            "source": "citizen",
            "matter_code": "0501",
            "urgency": "normal",
            "description": "群众来电：垃圾堆放",
            "place": "螺溪镇螺溪社区",
        },
    )
    assert response.status_code == 302, html.unescape(response.text)[-3000:]
    event = session.scalars(select(Event).where(Event.client_key == "p" * 32)).one()
    assert event.town_code == LUOXI
    far = post(
        client,
        "/desk/new",
        {
            "client_key": "q" * 32,
            "source": "citizen",
            "matter_code": "0501",
            "urgency": "normal",
            "description": "群众来电：垃圾堆放",
            "place": "河田镇",
        },
    )
    assert far.status_code == 422
    assert "只定位到河田镇" in html.unescape(far.text)


# -- the department inbox -----------------------------------------------------------------


def test_the_inbox_sections_and_quick_sign(client, session, users) -> None:
    dispatched = make_event(session, users, S.DISPATCHED)
    handling = make_event(session, users, S.HANDLING)
    other_town = make_event(
        session, users, S.REPORTED, reporter="wgy2", grid=users["wgy2"].grid_codes[0]
    )
    sign_in(client, users["hwsuo"])
    page = client.get("/inbox/").text
    assert counts(page)["dispatched"] == 1 and counts(page)["handling"] == 1
    assert section_codes(client.get("/inbox/?tab=dispatched").text) == [dispatched.code]
    assert section_codes(client.get("/inbox/?tab=handling").text) == [handling.code]
    assert other_town.code not in page
    assert "data-quick-sign" in client.get("/inbox/?tab=dispatched").text
    response = post(
        client,
        f"/events/{dispatched.id}/act",
        {"action": "sign", "version": str(dispatched.version), "next": "/inbox/?tab=dispatched"},
    )
    assert response.status_code == 302
    assert response.location == "/inbox/?tab=dispatched"
    session.refresh(dispatched)
    assert dispatched.state == S.HANDLING
    done = client.get("/inbox/done").text
    assert dispatched.code in done and handling.code in done
    # 派出所 assists with both.
    sign_in(client, users["pcs"])
    assisting = section_codes(client.get("/inbox/?tab=assist").text)
    assert set(assisting) == {dispatched.code, handling.code}
    assert counts(client.get("/inbox/").text)["dispatched"] == 0


# -- more actions through the page's forms ------------------------------------------------


def test_relocate_merge_and_approve_through_the_forms(client, session, users) -> None:
    from factories import point_in

    event = make_event(session, users, S.REPORTED)
    target_grid = users["wgy"].grid_codes[1]
    lng, lat = point_in(session, target_grid)
    sign_in(client, users["zzzx"])
    url = f"/events/{event.id}/act"
    moved = post(
        client,
        url,
        {
            "action": "relocate",
            "version": str(event.version),
            "lng": str(lng),
            "lat": str(lat),
            "comment": "群众补充了准确位置",
        },
    )
    assert moved.status_code == 302, moved.text
    session.refresh(event)
    assert event.grid_code == target_grid
    far_lng, far_lat = point_in(session, users["wgy2"].grid_codes[0])
    refused = post(
        client,
        url,
        {
            "action": "relocate",
            "version": str(event.version),
            "lng": str(far_lng),
            "lat": str(far_lat),
            "comment": "试图移到河田镇",
        },
    )
    assert refused.status_code == 403
    assert "新位置不在您的辖区内" in refused.text
    assert "试图移到河田镇</textarea>" in refused.text

    # 并案: from the duplicates list, one click.
    original = make_event(session, users, S.ACCEPTED, grid=target_grid)
    page = client.get(f"/events/{event.id}").text
    assert f'data-duplicate="{original.id}"' in page
    merged = post(
        client,
        url,
        {"action": "merge", "version": str(event.version), "target_event_id": str(original.id)},
    )
    assert merged.status_code == 302
    session.refresh(event)
    assert event.state == S.MERGED and event.merged_into_id == original.id

    # 批准延期: the town centre dispatched it, so the town centre approves.
    late = make_event(session, users, S.HANDLING)
    act(session, users["hwsuo"], late, "request_extension", days=2)
    before = late.due_at
    approved = post(
        client,
        f"/events/{late.id}/act",
        {"action": "approve_extension", "version": str(late.version)},
    )
    assert approved.status_code == 302
    session.refresh(late)
    assert late.extension_pending_days is None and late.due_at > before


def test_self_handling_on_the_event_page_needs_both_photos(client, session, users) -> None:
    import io

    event = report(session, users, matter="0501")  # 乱堆乱放: a grid worker may self-handle
    sign_in(client, users["wgy"])
    url = f"/events/{event.id}/act"
    page = client.get(f"/events/{event.id}").text
    assert 'name="photos_before"' in page and 'name="photos_after"' in page
    missing = post(
        client,
        url,
        {
            "action": "self_handle",
            "version": str(event.version),
            "comment": "已现场清理",
            "photos_before": (io.BytesIO(png_bytes()), "before.png"),
        },
        content_type="multipart/form-data",
    )
    assert missing.status_code == 422
    assert re.search(r'id="a-self_handle-after"[^>]*>\s*<small class="field-error"', missing.text)
    assert "须上传处置后照片" in missing.text
    done = post(
        client,
        url,
        {
            "action": "self_handle",
            "version": str(event.version),
            "comment": "已现场清理",
            "photos_before": (io.BytesIO(png_bytes()), "before.png"),
            "photos_after": (io.BytesIO(png_bytes()), "after.png"),
        },
        content_type="multipart/form-data",
    )
    assert done.status_code == 302, done.text
    session.refresh(event)
    assert event.state == S.HANDLED and event.self_handled
    assert sorted(a.kind for a in event.attachments) == ["after", "before"]
