"""Registering a hotline or citizen report at a centre (/desk/new): map tap and place search."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from gridgov.models import Event

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1366, "height": 900}


@pytest.fixture
def desk_page(new_context) -> Page:
    return new_context(viewport=DESKTOP).new_page()


def test_register_by_place_name_keeps_input_on_errors(
    desk_page: Page, login, shot, live_server
) -> None:
    login(desk_page, "zzzx")
    desk_page.goto("/desk/new")
    expect(desk_page.locator("#pick-map[data-ready]")).to_have_count(1)
    shot(desk_page, "desk-new")
    desk_page.get_by_label("群众反映").check()
    desk_page.get_by_label("事项").select_option(label="0501 乱堆乱放")
    desk_page.get_by_label("反映人姓名（选填）").fill("王女士")
    desk_page.get_by_label("事件位置").fill("螺溪社区")
    desk_page.get_by_role("button", name="查找").click()
    status = desk_page.locator("[data-pick-status]")
    expect(status).to_contain_text("已定位到：螺溪镇 · 螺溪社区居委会")
    assert desk_page.get_by_label("经度（WGS84）").input_value()
    # Submitted without a description: the page comes back with everything typed.
    desk_page.get_by_role("button", name="登记事件").click()
    expect(desk_page.locator(".field-error")).to_have_text(["请填写事件描述"])
    expect(desk_page.get_by_label("反映人姓名（选填）")).to_have_value("王女士")
    expect(desk_page.get_by_label("群众反映")).to_be_checked()
    expect(desk_page.get_by_label("事项")).to_have_value("0501")
    expect(status).to_contain_text("已选位置：螺溪镇 · 螺溪社区居委会 · ")  # the tapped point again
    shot(desk_page, "desk-new-error")
    desk_page.get_by_label("事件描述").fill("群众来电：巷口堆放大量建筑垃圾")
    desk_page.get_by_role("button", name="登记事件").click()
    expect(desk_page).to_have_url(re.compile(r"/events/\d+$"))
    expect(desk_page.locator(".flashes")).to_contain_text("已登记事件")
    expect(desk_page.locator(".ev-title [data-state]")).to_have_text("待受理")
    expect(desk_page.locator("[data-holder]")).to_have_text("螺溪镇综治中心")
    event_id = int(desk_page.url.rsplit("/", 1)[1])
    with live_server.session() as s:
        event = s.get(Event, event_id)
        assert event.source == "citizen" and event.reporter_name == "王女士"
        assert event.village_code.startswith("441523105")


def test_register_by_map_tap(desk_page: Page, login, shot, live_server) -> None:
    login(desk_page, "ddy")
    desk_page.goto("/desk/new")
    pick = desk_page.locator("#pick-map[data-ready]")
    expect(pick).to_have_count(1)
    desk_page.get_by_label("事项").select_option(label="1103 井盖缺失、破损")
    desk_page.get_by_label("紧急", exact=True).check()
    desk_page.get_by_label("事件描述").fill("12345 来电：县城人民路井盖缺失，夜间易伤人")
    # Tap the middle of the first town outline on the map.
    town = desk_page.locator("#pick-map path.leaflet-interactive").first
    town.click()
    status = desk_page.locator("[data-pick-status]")
    expect(status).to_contain_text(re.compile(r"已选位置：\S+镇 · "))
    shot(desk_page, "desk-new-map-tap")
    desk_page.get_by_role("button", name="登记事件").click()
    expect(desk_page).to_have_url(re.compile(r"/events/\d+$"))
    expect(desk_page.locator("[data-holder]")).to_have_text("陆河县联勤指挥中心")
    expect(desk_page.locator(".ev-title .urgency")).to_have_text("紧急")
    with live_server.session() as s:
        code = desk_page.locator(".ev-code").inner_text()
        event = s.scalar(select(Event).where(Event.code == code))
        assert event.source == "hotline" and event.urgency == "urgent"


def test_relocate_by_tapping_the_event_map(desk_page: Page, login, shot, live_server) -> None:
    from factories import make_event

    from gridgov.models import User

    with live_server.session() as s:
        users = {u.username: u for u in s.scalars(select(User))}
        event = make_event(s, users, "reported")
        event_id, old = event.id, (event.lng, event.lat)
    desk_page.on("dialog", lambda dialog: dialog.accept())
    login(desk_page, "zzzx")
    desk_page.goto(f"/events/{event_id}")
    expect(desk_page.locator("#ev-map[data-ready]")).to_have_count(1)
    box = desk_page.locator('details[data-action-form="relocate"]')
    box.locator("summary").click()
    point = desk_page.locator("#ev-map path.leaflet-interactive").last.bounding_box()
    assert point is not None
    desk_page.mouse.click(
        point["x"] + point["width"] / 2 + 12, point["y"] + point["height"] / 2 + 8
    )
    expect(box.locator('input[name="lng"]')).not_to_have_value("")
    box.get_by_label("更正说明").fill("按群众电话描述更正到巷口")
    shot(desk_page, "desk-event-relocate")
    box.get_by_role("button", name="确认更正位置").click()
    expect(desk_page.locator(".flashes")).to_contain_text("已更正位置")
    expect(desk_page.locator('[data-history="relocate"] .tl-comment')).to_have_text(
        "按群众电话描述更正到巷口"
    )
    with live_server.session() as s:
        moved = s.get(Event, event_id)
        assert (moved.lng, moved.lat) != old
