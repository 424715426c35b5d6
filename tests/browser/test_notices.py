"""Notices in a real browser: unread highlighted, the header badge, marking read."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import delete, select

from gridgov.db import utcnow
from gridgov.events import ReportInput, report_event
from gridgov.models import Grid, Matter, Notice, User

pytestmark = pytest.mark.browser


@pytest.fixture
def zzzx2_notices(live_server) -> int:
    """A real report by wgy2 notifies 河田镇's centre (zzzx2); two more notices, one read.

    Only this file uses zzzx2, so the module's shared database stays predictable.
    Returns the event's id.
    """
    now = utcnow()
    with live_server.session() as s:
        reporter = s.scalar(select(User).where(User.username == "wgy2"))
        operator = s.scalar(select(User).where(User.username == "zzzx2"))
        s.execute(delete(Notice).where(Notice.user_id == operator.id))
        grid = s.scalar(select(Grid).where(Grid.code == reporter.grid_codes[0]))
        point = grid.geom.representative_point()
        matter = s.scalar(select(Matter).order_by(Matter.code).limit(1))
        report = ReportInput(
            matter_code=matter.code,
            urgency="normal",
            description="村道旁排水沟堵塞，雨天积水漫到路面",
            lng=point.x,
            lat=point.y,
            client_key=uuid.uuid4().hex,
        )
        event = report_event(s, reporter, report, now=now - timedelta(minutes=50)).event
        s.add_all(
            [
                Notice(
                    user_id=operator.id,
                    event_id=event.id,
                    kind="returned",
                    text=f"事件 {event.code} 被退回：不属于本部门职责",
                    created_at=now - timedelta(minutes=30),
                    read_at=now,
                ),
                Notice(
                    user_id=operator.id,
                    event_id=event.id,
                    kind="supervise",
                    text=f"督办：事件 {event.code}，请于今日 17:00 前办结",
                    created_at=now - timedelta(minutes=5),
                ),
            ]
        )
        s.flush()
        return event.id


def test_unread_notices_are_highlighted_and_can_be_marked_read(
    page: Page, login, shot, zzzx2_notices
) -> None:
    login(page, "zzzx2")
    page.goto("/account/password")  # any page with the header (/desk/ is built elsewhere)
    badge = page.locator("header [data-unread]")
    expect(badge).to_have_text("2")
    page.get_by_role("link", name=re.compile("通知")).click()
    expect(page).to_have_url(re.compile(r"/notices$"))
    items = page.locator(".notice")
    expect(items).to_have_count(3)
    expect(items.first).to_contain_text("督办")  # newest first
    expect(page.locator(".notice.unread")).to_have_count(2)
    shot(page, "notices-unread-desktop")
    page.locator(".notice.unread").first.get_by_role("button", name="标为已读").click()
    expect(page.locator(".notice.unread")).to_have_count(1)
    expect(badge).to_have_text("1")
    page.get_by_role("button", name="全部标为已读").click()
    expect(page.locator(".notice.unread")).to_have_count(0)
    expect(badge).to_have_text("0")
    expect(items.first.get_by_role("link")).to_have_attribute("href", f"/events/{zzzx2_notices}")


def test_notices_on_a_phone(phone_context, login, shot, zzzx2_notices) -> None:
    page = phone_context(viewport={"width": 360, "height": 640}).new_page()
    login(page, "zzzx2")
    page.goto("/notices")
    expect(page.locator(".notice.unread")).to_have_count(2)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    shot(page, "notices-unread-phone-360")


def test_gg_api_sends_the_csrf_header_and_parses_errors(page: Page, login) -> None:
    login(page, "zzzx")
    page.goto("/notices")
    result = page.evaluate(
        """async () => {
            const marked = await gg.api('/notices/read-all', {method: 'POST'});
            const bare = await fetch('/api/v1/events', {
                method: 'POST', credentials: 'same-origin',
                headers: {'Content-Type': 'application/json'}, body: '{}'});
            let error = null;
            try { await gg.api('/api/v1/events', {json: {}}); }
            catch (e) {
                error = {code: e.code, message: e.message, status: e.status,
                         typed: e instanceof gg.ApiError};
            }
            gg.toast('已保存', {type: 'success'});
            return {marked, bare: (await bare.json()).error.code, error};
        }"""
    )
    assert result["marked"] == {"unread": 0}
    assert result["bare"] == "csrf_failed"  # without gg.api's header the cookie is not enough
    error = result["error"]
    assert error["typed"] and error["status"] in (403, 422)
    assert error["code"] != "csrf_failed" and re.search(r"[\u4e00-\u9fff]", error["message"])
    expect(page.locator(".toast-success")).to_have_text("已保存")
