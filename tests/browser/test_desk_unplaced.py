"""The county centre's 待定位 queue in a browser: open the group, place a report by village name."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from gridgov.models import Event, UnplacedReport, User

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1366, "height": 900}


@pytest.fixture
def desk_page(new_context) -> Page:
    return new_context(viewport=DESKTOP).new_page()


def test_dispatcher_places_a_queued_report_by_village_name(
    desk_page: Page, login, shot, live_server
) -> None:
    from factories import queued_report

    with live_server.session() as s:
        users = {u.username: u for u in s.scalars(select(User))}
        report = queued_report(s, users, address="省道旁加油站对面（来电人称在螺溪社区附近）")
        report_id, received_at = report.id, report.received_at
    login(desk_page, "ddy")
    desk_page.goto("/desk/")
    tab = desk_page.locator('.desk-tab[data-tab="unplaced"]')
    expect(tab.locator("[data-count]")).to_have_text("1")
    tab.click()
    row = desk_page.locator(f'tr[data-unplaced-id="{report_id}"]')
    expect(row).to_contain_text("位置不在任何网格内")
    expect(row).to_contain_text("距最近网格约")
    row.get_by_role("link", name="定位", exact=True).click()
    expect(desk_page).to_have_url(re.compile(rf"/desk/unplaced/{report_id}$"))
    expect(desk_page.locator("#pick-map[data-ready]")).to_have_count(1)
    expect(desk_page.locator("[data-unplaced-coords]")).to_contain_text("WGS84")
    shot(desk_page, "desk-unplaced-received")
    desk_page.get_by_label("事件位置").fill("螺溪社区")
    desk_page.get_by_role("button", name="查找").click()
    expect(desk_page.locator("[data-pick-status]")).to_contain_text(
        "已定位到：螺溪镇 · 螺溪社区居委会"
    )
    shot(desk_page, "desk-unplaced-place")
    desk_page.get_by_role("button", name="确认定位，生成事件").click()
    expect(desk_page).to_have_url(re.compile(r"/events/\d+$"))
    expect(desk_page.locator(".flashes")).to_contain_text("已定位，生成事件")
    expect(desk_page.locator(".ev-title [data-state]")).to_have_text("待受理")
    expect(desk_page.locator("[data-holder]")).to_have_text("陆河县联勤指挥中心")
    expect(desk_page.locator('[data-history="report"]')).to_contain_text("手动定位")
    shot(desk_page, "desk-unplaced-placed-event")
    event_id = int(desk_page.url.rsplit("/", 1)[1])
    with live_server.session() as s:
        event = s.get(Event, event_id)
        assert event is not None and event.town_code == "441523105"
        assert event.reported_at == received_at
        placed = s.get(UnplacedReport, report_id)
        assert placed is not None and placed.status == "placed" and placed.event_id == event_id
    desk_page.goto("/desk/")
    expect(desk_page.locator('.desk-tab[data-tab="unplaced"] [data-count]')).to_have_text("0")


def test_a_hotline_call_nobody_can_place_goes_to_the_queue(
    desk_page: Page, login, shot, live_server
) -> None:
    # A dispatcher registers a 12345 call whose place names no village: the form comes back
    # with everything typed and the offer; 放入待定位 keeps the report in the queue.
    login(desk_page, "ddy")
    desk_page.goto("/desk/new")
    expect(desk_page.locator("#pick-map[data-ready]")).to_have_count(1)
    desk_page.get_by_label("12345热线").check()
    desk_page.get_by_label("事项").select_option(label="0501 乱堆乱放")
    desk_page.get_by_label("事件描述").fill("12345 来电：省道边有人倾倒建筑垃圾，位置说不清")
    desk_page.get_by_label("事件位置").fill("省道旁加油站对面")
    desk_page.get_by_role("button", name="登记事件").click()
    expect(desk_page.locator("[data-queue-submit]")).to_be_visible()
    expect(desk_page.get_by_label("事件描述")).to_have_value(
        "12345 来电：省道边有人倾倒建筑垃圾，位置说不清"
    )
    shot(desk_page, "desk-new-offer-queue")
    desk_page.locator("[data-queue-submit]").click()
    expect(desk_page.locator(".flashes")).to_contain_text("已放入待定位")
    with live_server.session() as s:
        report = s.scalar(
            select(UnplacedReport).where(UnplacedReport.place_text == "省道旁加油站对面")
        )
        assert report is not None and report.status == "queued" and report.reason == "no_location"
        assert report.source == "hotline" and report.description.startswith("12345 来电")
        report_id = report.id
    row = desk_page.locator(f'tr[data-unplaced-id="{report_id}"]')
    expect(row).to_contain_text("省道旁加油站对面")
    shot(desk_page, "desk-unplaced-queued-from-register")
