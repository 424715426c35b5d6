"""The whole closed loop in a real browser, across roles, each in its own browser context.

A grid worker reports from a phone with a photo → the town centre accepts and escalates → the
county accepts and dispatches to 城管 → 城管 returns it with a reason → the county dispatches
again → 城管 signs and handles it with a photo → the grid worker's verification fails → 城管
reworks → the verification passes → the county closes → the grid worker evaluates (满意).

Every page is checked for what it must show: the state, who holds the event, the timeline and
exactly the actions `gridgov.events.allowed_actions` gives that user.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import BrowserContext, Page, expect
from sqlalchemy import select

from gridgov.events import allowed_actions
from gridgov.models import Event, Grid, GridSet, Region, User

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1366, "height": 900}
SMALL_PHONE = {"width": 360, "height": 640}
MATTER = "户外广告招牌安全隐患"  # 0507: a county matter led by 城管, photos required
COUNTY_CENTRE = "陆河县联勤指挥中心"
TOWN_CENTRE = "螺溪镇综治中心"
CHENGGUAN = "陆河县城市管理和综合执法局"


# -- helpers --------------------------------------------------------------------------------


def jpeg(seed: int) -> dict[str, Any]:
    """Return a small photo file for set_input_files (each seed gives different bytes)."""
    image = Image.new("RGB", (640, 480), (60 + seed * 40 % 180, 110, 150))
    draw = ImageDraw.Draw(image)
    draw.rectangle([80 + seed * 20, 60, 360, 300], fill=(230, 200, 40 + seed * 30 % 200))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return {"name": f"IMG_{seed}.jpg", "mimeType": "image/jpeg", "buffer": out.getvalue()}


def wgy_place(live_server) -> dict[str, Any]:
    """Return a point inside wgy's first grid and the names of that grid and its village."""
    with live_server.session() as s:
        user = s.scalar(select(User).where(User.username == "wgy"))
        grid = s.scalar(
            select(Grid)
            .join(GridSet, GridSet.id == Grid.grid_set_id)
            .where(GridSet.active.is_(True), Grid.code == user.grid_codes[0])
        )
        point = grid.geom.representative_point()
        village = s.get(Region, grid.village_code)
        return {"lng": point.x, "lat": point.y, "grid": grid.name, "village": village.name}


def allowed(live_server, username: str, event_id: int) -> set[str]:
    with live_server.session() as s:
        user = s.scalar(select(User).where(User.username == username))
        event = s.get(Event, event_id)
        return {t.name for t in allowed_actions(s, user, event)}


class Checker:
    """Checks an event page against the database: state, holder, timeline, actions."""

    def __init__(self, live_server, event_id: int) -> None:
        self.live_server = live_server
        self.event_id = event_id
        self.history: list[str] = []

    def __call__(
        self,
        page: Page,
        username: str,
        state: str,
        label: str,
        holder: str,
        *,
        step: str | None = None,
        must_offer: set[str] = frozenset(),  # type: ignore[assignment]
    ) -> set[str]:
        """Check the open event page; `step` is the action just recorded (appended)."""
        if step:
            self.history.append(step)
        expect(page.locator(".ev-title [data-state]")).to_have_attribute("data-state", state)
        expect(page.locator(".ev-title [data-state]")).to_have_text(label)
        expect(page.locator("[data-holder]")).to_have_text(holder)
        entries = page.locator("[data-history]")
        expect(entries).to_have_count(len(self.history))
        got = entries.evaluate_all("els => els.map(e => e.dataset.history)")
        assert got == self.history
        expected = allowed(self.live_server, username, self.event_id)
        assert must_offer <= expected, (must_offer, expected)
        forms = page.locator("[data-action-form]")
        expect(forms).to_have_count(len(expected))
        offered = set(forms.evaluate_all("els => els.map(e => e.dataset.actionForm)"))
        assert offered == expected
        if not expected:
            expect(page.locator(".no-actions")).to_contain_text("您当前没有可执行的操作")
        return offered


def open_action(page: Page, name: str):
    """Unfold the form of action `name` and return it."""
    box = page.locator(f'details[data-action-form="{name}"]')
    box.locator("summary").click()
    expect(box).to_have_attribute("open", "")
    return box


def click_simple(page: Page, name: str) -> None:
    page.locator(f'[data-action-form="{name}"] button.action-button').click()


def flashed(page: Page, text: str) -> None:
    expect(page.locator(".flashes .alert-success")).to_contain_text(text)


def fits_the_phone(page: Page, width: int = SMALL_PHONE["width"]) -> None:
    """Assert the page does not scroll sideways on a 360 px phone."""
    wide = page.evaluate(
        """(width) => [...document.querySelectorAll('body *')]
            .filter((el) => el.getBoundingClientRect().right > width + 0.5)
            .slice(0, 5).map((el) => el.tagName + '.' + el.className)""",
        width,
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= width, wide


def desktop(new_context: Callable[..., BrowserContext], login, username: str) -> Page:
    page = new_context(viewport=DESKTOP).new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # data-confirm="…" asks first
    login(page, username)
    return page


# -- the scenario ---------------------------------------------------------------------------


def test_the_whole_loop_across_roles(phone_context, new_context, live_server, login, shot) -> None:
    place = wgy_place(live_server)
    # ---- 1. the grid worker reports from a phone, with a photo (/m/report)
    phone = phone_context(
        viewport=SMALL_PHONE,
        geolocation={"latitude": place["lat"], "longitude": place["lng"], "accuracy": 10},
    )
    wgy = phone.new_page()
    wgy.on("dialog", lambda dialog: dialog.accept())
    login(wgy, "wgy")
    wgy.goto("/m/report")
    expect(wgy.locator("#report-form[data-ready]")).to_have_count(1)
    wgy.get_by_label("搜索事项").fill("广告")
    wgy.locator(".m-matter", has_text=MATTER).first.click()
    expect(wgy.locator("[data-matter-name]")).to_have_text(MATTER)
    wgy.get_by_label("事件描述").fill("螺溪墟商铺门口广告招牌松动，大风天可能掉落砸伤行人")
    wgy.locator('input[data-photo-input="evidence"][data-source="camera"]').set_input_files(
        [jpeg(1)]
    )
    expect(wgy.locator('[data-thumbs="evidence"] .m-thumb')).to_have_count(1)
    expect(wgy.locator("[data-placement] [data-grid-name]")).to_have_text(place["grid"])
    wgy.get_by_role("button", name="提交上报").click()
    result = wgy.locator("[data-result]")
    expect(result).to_have_attribute("data-outcome", "sent")
    code = result.locator("[data-event-code]").inner_text()
    with live_server.session() as s:
        event_id = s.scalar(select(Event.id).where(Event.code == code))
    assert event_id
    check = Checker(live_server, event_id)
    url = f"/events/{event_id}"

    wgy.goto(url)
    check(wgy, "wgy", "reported", "待受理", TOWN_CENTRE, step="report", must_offer={"withdraw"})
    expect(wgy.locator('[data-photos="before"] img')).to_have_count(1)
    expect(wgy.locator('[data-photos="after"] img')).to_have_count(0)
    expect(wgy.locator("#ev-map[data-ready]")).to_have_count(1)
    expect(wgy.locator("#ev-map path.leaflet-interactive")).to_have_count(2)  # grid + point
    fits_the_phone(wgy)
    shot(wgy, "desk-event-reported-phone-360")

    # ---- 2. the town centre accepts and escalates to the county
    zzzx = desktop(new_context, login, "zzzx")
    assert zzzx.url.endswith("/desk/")
    row = zzzx.locator(f'tr[data-code="{code}"]')
    expect(zzzx.locator('.desk-tab[data-tab="reported"] [data-count]')).to_have_text("1")
    expect(row).to_contain_text(MATTER)
    expect(row.locator(".clock-text")).to_have_text(re.compile(r"剩余 [\d.]+ 工作(小时|日)"))
    shot(zzzx, "desk-town-reported")
    row.get_by_role("link", name=code).click()
    expect(zzzx).to_have_url(re.compile(rf"/events/{event_id}$"))
    check(zzzx, "zzzx", "reported", "待受理", TOWN_CENTRE, must_offer={"accept", "escalate"})
    shot(zzzx, "desk-event-town-reported")
    click_simple(zzzx, "accept")
    flashed(zzzx, f"已受理：事件 {code}")
    check(zzzx, "zzzx", "accepted", "待分拨", TOWN_CENTRE, step="accept")
    box = open_action(zzzx, "escalate")
    box.get_by_label("上报说明").fill("招牌属县城管执法范围，请县中心派遣")
    box.get_by_role("button", name="确认上报上级").click()
    flashed(zzzx, "已上报上级")
    check(zzzx, "zzzx", "reported", "待受理", COUNTY_CENTRE, step="escalate")
    expect(zzzx.locator('[data-history="escalate"] .tl-comment')).to_have_text(
        "招牌属县城管执法范围，请县中心派遣"
    )
    expect(zzzx.locator('[data-history="escalate"] .tl-holder')).to_contain_text(
        f"{TOWN_CENTRE} → {COUNTY_CENTRE}"
    )
    shot(zzzx, "desk-event-escalated")

    # ---- 3. the county accepts and dispatches to 城管 (the matter list's suggestion)
    ddy = desktop(new_context, login, "ddy")
    assert ddy.url.endswith("/desk/")
    expect(ddy.locator(f'tr[data-code="{code}"]')).to_have_count(1)
    shot(ddy, "desk-county-reported")
    ddy.goto(url)
    check(ddy, "ddy", "reported", "待受理", COUNTY_CENTRE, must_offer={"accept"})
    click_simple(ddy, "accept")
    check(ddy, "ddy", "accepted", "待分拨", COUNTY_CENTRE, step="accept", must_offer={"dispatch"})
    box = open_action(ddy, "dispatch")
    expect(box.get_by_label("主办部门").locator("option:checked")).to_contain_text(CHENGGUAN)
    shot(ddy, "desk-event-dispatch-form")
    box.get_by_label("分拨说明", exact=False).fill("请核查招牌安全并督促整改")
    box.get_by_role("button", name="确认分拨").click()
    flashed(ddy, "已分拨")
    check(ddy, "ddy", "dispatched", "待签收", CHENGGUAN, step="dispatch")
    expect(ddy.locator(".fact-depts")).to_contain_text(f"主办：{CHENGGUAN}")

    # ---- 4. 城管 returns it with a reason
    cgj = desktop(new_context, login, "cgj")
    assert cgj.url.endswith("/inbox/")
    expect(cgj.locator('.desk-tab[data-tab="dispatched"] [data-count]')).to_have_text("1")
    expect(cgj.locator(f'tr[data-code="{code}"] [data-quick-sign]')).to_be_visible()
    shot(cgj, "desk-inbox-dispatched")
    cgj.locator(f'tr[data-code="{code}"]').get_by_role("link", name=code).click()
    check(cgj, "cgj", "dispatched", "待签收", CHENGGUAN, must_offer={"sign", "return"})
    box = open_action(cgj, "return")
    box.get_by_label("退回理由").fill("招牌位于私人商铺，应由市场监管部门先行处理")
    box.get_by_role("button", name="确认回退").click()
    flashed(cgj, "已回退")
    check(cgj, "cgj", "returned", "退回待重派", COUNTY_CENTRE, step="return")
    shot(cgj, "desk-event-returned")

    # ---- 5. the county dispatches again
    ddy.goto("/desk/?tab=returned")
    expect(ddy.locator(f'tr[data-code="{code}"]')).to_have_count(1)
    shot(ddy, "desk-county-returned")
    ddy.locator(f'tr[data-code="{code}"]').get_by_role("link", name=code).click()
    check(ddy, "ddy", "returned", "退回待重派", COUNTY_CENTRE, must_offer={"dispatch"})
    expect(ddy.locator('[data-history="return"] .tl-comment')).to_contain_text("市场监管部门")
    box = open_action(ddy, "dispatch")
    box.get_by_label("分拨说明", exact=False).fill("招牌安全属城管职责，请依法处置")
    box.get_by_role("button", name="确认分拨").click()
    check(ddy, "ddy", "dispatched", "待签收", CHENGGUAN, step="dispatch")

    # ---- 6. 城管 signs from the inbox and handles it with a photo
    cgj.goto("/inbox/")
    cgj.locator(f'tr[data-code="{code}"] [data-quick-sign]').click()
    flashed(cgj, f"已签收：事件 {code}")
    expect(cgj).to_have_url(re.compile(r"/inbox/"))
    cgj.goto("/inbox/?tab=handling")
    expect(cgj.locator(f'tr[data-code="{code}"]')).to_have_count(1)
    shot(cgj, "desk-inbox-handling")
    cgj.goto(url)
    check(cgj, "cgj", "handling", "处置中", CHENGGUAN, step="sign", must_offer={"handle"})
    box = open_action(cgj, "handle")
    box.get_by_label("处置结果").fill("已责令商户拆除松动招牌，现场已清理")
    box.locator('input[name="photos"]').set_input_files([jpeg(2)])
    box.get_by_role("button", name="确认处置反馈").click()
    flashed(cgj, "已处置反馈")
    check(cgj, "cgj", "handled", "待核查", "张伟（网格员）", step="handle")
    expect(cgj.locator('[data-photos="after"] img')).to_have_count(1)
    shot(cgj, "desk-event-handled")

    # ---- 7. the grid worker's verification fails (on the phone)
    wgy.goto(url)
    check(
        wgy, "wgy", "handled", "待核查", "张伟（网格员）", must_offer={"verify_pass", "verify_fail"}
    )
    expect(wgy.locator('[data-photos="before"] img')).to_have_count(1)
    expect(wgy.locator('[data-photos="after"] img')).to_have_count(1)
    fits_the_phone(wgy)
    shot(wgy, "desk-event-verify-phone-360")
    box = open_action(wgy, "verify_fail")
    box.get_by_label("核查意见（不通过的原因）").fill("招牌支架仍未拆除，存在隐患")
    box.get_by_role("button", name="确认核查不通过（返工）").click()
    check(wgy, "wgy", "handling", "处置中", CHENGGUAN, step="verify_fail")
    expect(wgy.locator('[data-history="verify_fail"]')).to_contain_text("退回部门返工")
    shot(wgy, "desk-event-rework-phone-360")

    # ---- 8. rework: 城管 handles again
    cgj.goto("/inbox/?tab=handling")
    rework_row = cgj.locator(f'tr[data-code="{code}"]')
    expect(rework_row).to_contain_text("返工 1")
    rework_row.get_by_role("link", name=code).click()
    check(cgj, "cgj", "handling", "处置中", CHENGGUAN, must_offer={"handle"})
    box = open_action(cgj, "handle")
    box.get_by_label("处置结果").fill("支架已全部拆除，现场恢复原状")
    box.locator('input[name="photos"]').set_input_files([jpeg(3)])
    box.get_by_role("button", name="确认处置反馈").click()
    check(cgj, "cgj", "handled", "待核查", "张伟（网格员）", step="handle")
    expect(cgj.locator('[data-photos="after"] img')).to_have_count(2)

    # ---- 9. the verification passes
    wgy.goto(url)
    box = open_action(wgy, "verify_pass")
    box.get_by_role("button", name="确认核查通过").click()
    check(wgy, "wgy", "verified", "待结案", COUNTY_CENTRE, step="verify_pass")

    # ---- 10. the county closes
    ddy.goto("/desk/?tab=verified")
    expect(ddy.locator(f'tr[data-code="{code}"]')).to_have_count(1)
    shot(ddy, "desk-county-verified")
    ddy.locator(f'tr[data-code="{code}"]').get_by_role("link", name=code).click()
    check(ddy, "ddy", "verified", "待结案", COUNTY_CENTRE, must_offer={"close"})
    click_simple(ddy, "close")
    flashed(ddy, "已结案")
    check(ddy, "ddy", "closed", "已办结", "—", step="close", must_offer={"evaluate"})

    # ---- 11. the grid worker evaluates: 满意
    wgy.goto(url)
    box = open_action(wgy, "evaluate")
    box.get_by_label("满意", exact=True).check()
    box.get_by_role("button", name="确认评价").click()
    check(wgy, "wgy", "closed", "已办结", "—", step="evaluate")
    expect(wgy.locator("[data-satisfaction]")).to_have_text("满意")
    fits_the_phone(wgy)
    shot(wgy, "desk-event-closed-phone-360")

    ddy.goto(url)
    check(ddy, "ddy", "closed", "已办结", "—")
    expect(ddy.locator('[data-photos="before"] img')).to_have_count(1)
    expect(ddy.locator('[data-photos="after"] img')).to_have_count(2)
    shot(ddy, "desk-event-closed")
    cgj.goto("/inbox/done")
    expect(cgj.locator(f'tr[data-code="{code}"]')).to_contain_text("已办结")
    shot(cgj, "desk-inbox-done")

    with live_server.session() as s:
        event = s.get(Event, event_id)
        assert event.state == "closed" and event.satisfaction == "satisfied"
        assert event.rework_count == 1 and event.return_count == 1
        assert [a.action for a in event.actions] == check.history
