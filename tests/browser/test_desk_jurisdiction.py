"""The desk in a real browser: jurisdiction by URL, batch dispatch, and a stale form."""

from __future__ import annotations

import re

import pytest
from factories import make_event
from playwright.sync_api import Page, expect
from sqlalchemy import select

from gridgov.events import perform
from gridgov.models import Event, User

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1366, "height": 900}


def users_by_name(session) -> dict[str, User]:
    return {u.username: u for u in session.scalars(select(User))}


@pytest.fixture(scope="module")
def events(live_server) -> dict[str, tuple[int, str]]:
    """Events of 螺溪镇 (zzzx's town): one just reported, two accepted (0501, 0505)."""
    with live_server.session() as s:
        users = users_by_name(s)
        made = {
            "reported": make_event(s, users, "reported"),
            "first": make_event(s, users, "accepted", matter="0501"),
            "second": make_event(s, users, "accepted", matter="0505"),
            "stale": make_event(s, users, "reported"),
        }
        return {key: (e.id, e.code) for key, e in made.items()}


@pytest.fixture
def desk_page(new_context) -> Page:
    page = new_context(viewport=DESKTOP).new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    return page


def test_another_towns_operator_is_refused_by_url(desk_page: Page, login, shot, events) -> None:
    event_id, code = events["reported"]
    login(desk_page, "zzzx2")  # 河田镇
    response = desk_page.goto(f"/events/{event_id}")
    assert response is not None and response.status == 403
    expect(desk_page.locator("h1")).to_have_text("无权访问")
    expect(desk_page.locator(".error-message")).to_have_text("该事件不在您的辖区或职责范围内")
    expect(desk_page.locator("body")).not_to_contain_text(code)
    shot(desk_page, "desk-event-forbidden")
    # Nor does it show on 河田镇's desk or in its search.
    desk_page.goto("/desk/events")
    expect(desk_page.locator(f'tr[data-code="{code}"]')).to_have_count(0)


def test_batch_dispatch_of_two_events(desk_page: Page, login, shot, live_server, events) -> None:
    first_id, first = events["first"]
    second_id, second = events["second"]
    login(desk_page, "zzzx")
    desk_page.goto("/desk/?tab=accepted")
    expect(desk_page.locator('.desk-tab[data-tab="accepted"] [data-count]')).to_have_text("2")
    rows = desk_page.locator("tr[data-code]")
    expect(rows).to_have_count(2)
    expect(desk_page.locator(f'tr[data-code="{first}"] .col-suggest')).to_have_text(
        "螺溪镇环境卫生管理所"
    )
    desk_page.get_by_label("全选").check()
    expect(desk_page.locator("[data-selected-count]")).to_have_text("（已选 2 件）")
    desk_page.get_by_label("主办部门").select_option(label="螺溪镇环境卫生管理所")
    desk_page.get_by_label("协办部门").select_option(label="螺溪镇综合行政执法办公室")
    shot(desk_page, "desk-batch-dispatch")
    desk_page.get_by_role("button", name="分拨所选 2 件事件").click()
    flashes = desk_page.locator(".flashes")
    expect(flashes).to_contain_text(f"事件 {first}：已分拨给螺溪镇环境卫生管理所")
    expect(flashes).to_contain_text(f"事件 {second}：已分拨给螺溪镇环境卫生管理所")
    expect(flashes).to_contain_text("批量分拨完成：成功 2 件")
    expect(desk_page).to_have_url(re.compile(r"/desk/\?tab=accepted$"))
    expect(desk_page.locator('.desk-tab[data-tab="accepted"] [data-count]')).to_have_text("0")
    shot(desk_page, "desk-batch-dispatched")
    with live_server.session() as s:
        for event_id in (first_id, second_id):
            event = s.get(Event, event_id)
            assert event.state == "dispatched"
            assert [a.action for a in event.actions][-1] == "dispatch"
            roles = sorted((a.role, a.active) for a in event.assignments)
            assert roles == [("assist", True), ("lead", True)]


def test_batch_dispatch_asks_for_a_selection(desk_page: Page, login, live_server) -> None:
    with live_server.session() as s:
        event = make_event(s, users_by_name(s), "accepted")
        code = event.code
    login(desk_page, "zzzx")
    desk_page.goto("/desk/?tab=accepted")
    desk_page.get_by_label("主办部门").select_option(label="螺溪镇环境卫生管理所")
    desk_page.get_by_role("button", name="分拨所选事件").click()
    expect(desk_page.locator(".toast-error")).to_have_text("请至少勾选一件要分拨的事件")
    expect(desk_page.locator(f'tr[data-code="{code}"]')).to_have_count(1)


def test_a_stale_form_shows_the_conflict(desk_page: Page, login, shot, live_server, events) -> None:
    event_id, _ = events["stale"]
    login(desk_page, "zzzx")
    desk_page.goto(f"/events/{event_id}")
    expect(desk_page.locator(".ev-title [data-state]")).to_have_text("待受理")
    box = desk_page.locator('details[data-action-form="reject"]')
    box.locator("summary").click()
    box.get_by_label("不予受理理由").fill("重复上报")
    # Meanwhile a colleague accepts the event.
    with live_server.session() as s:
        users = users_by_name(s)
        perform(s, users["zzzx"], event_id, "accept", {"comment": "同事已受理"})
    box.get_by_role("button", name="确认不予受理").click()
    alert = desk_page.locator(".alert-error")
    expect(alert).to_have_text(re.compile("事件已被他人更新，请刷新后重试"))
    # The page now shows the event as it is: accepted, and reject is no longer offered.
    expect(desk_page.locator(".ev-title [data-state]")).to_have_text("待分拨")
    expect(desk_page.locator('[data-action-form="reject"]')).to_have_count(0)
    expect(desk_page.locator('[data-history="accept"] .tl-comment')).to_have_text("同事已受理")
    shot(desk_page, "desk-event-stale")
    with live_server.session() as s:
        assert s.get(Event, event_id).state == "accepted"
