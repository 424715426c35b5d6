"""The grid worker verifies handled events on a phone, and handles small matters on the spot."""

from __future__ import annotations

import io
import re
import uuid
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import expect
from sqlalchemy import select

from gridgov import settings_of
from gridgov.events import ReportInput, attach_photo, perform, report_event
from gridgov.models import Event, Grid, GridSet, User
from gridgov.photos import PhotoStore

pytestmark = pytest.mark.browser

SMALL_PHONE = {"width": 360, "height": 640}


def photo(seed: int, size: tuple[int, int] = (800, 600)) -> bytes:
    image = Image.new("RGB", size, ((seed * 47) % 256, (seed * 91) % 256, 120))
    image.putpixel((1, 1), (seed % 256, 3, 9))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def wgy_point(session) -> tuple[float, float]:
    user = session.scalar(select(User).where(User.username == "wgy"))
    grid = session.scalar(
        select(Grid)
        .join(GridSet, GridSet.id == Grid.grid_set_id)
        .where(GridSet.active.is_(True), Grid.code == user.grid_codes[1])
    )
    point = grid.geom.representative_point()
    return point.x, point.y


def users(session) -> dict[str, User]:
    return {u.username: u for u in session.scalars(select(User))}


def store(live_server) -> PhotoStore:
    folder = settings_of(live_server.app).upload_folder
    assert folder is not None
    return PhotoStore(folder)


def handled_event(live_server, seed: int) -> tuple[int, str]:
    """Drive a report by wgy through accept → dispatch → sign → handle (with photos)."""
    with live_server.session() as s:
        u = users(s)
        lng, lat = wgy_point(s)
        event = report_event(
            s,
            u["wgy"],
            ReportInput(
                matter_code="0501",
                urgency="normal",
                description="村道两侧乱堆柴草和杂物",
                lng=lng,
                lat=lat,
                client_key=uuid.uuid4().hex,
            ),
        ).event
        attach_photo(s, u["wgy"], event.id, photo(seed), "evidence", store(live_server))
        perform(s, u["zzzx"], event.id, "accept", {})
        lead = u["hwsuo"].department_id
        perform(s, u["zzzx"], event.id, "dispatch", {"lead_department_id": lead})
        perform(s, u["hwsuo"], event.id, "sign", {})
        after, _ = attach_photo(
            s, u["hwsuo"], event.id, photo(seed + 100), "after", store(live_server)
        )
        perform(
            s,
            u["hwsuo"],
            event.id,
            "handle",
            {"comment": "已组织清理，路面恢复畅通", "attachment_ids": [after.id]},
        )
        assert event.state == "handled" and event.holder_user_id == u["wgy"].id
        return event.id, event.code


def state_of(live_server, event_id: int) -> dict[str, Any]:
    with live_server.session() as s:
        e = s.get(Event, event_id)
        return {
            "state": e.state,
            "holder_level": e.holder_level,
            "holder_region_code": e.holder_region_code,
            "rework_count": e.rework_count,
            "self_handled": e.self_handled,
            "kinds": sorted(a.kind for a in e.attachments),
        }


def rehandle(live_server, event_id: int, seed: int) -> None:
    with live_server.session() as s:
        u = users(s)
        after, _ = attach_photo(s, u["hwsuo"], event_id, photo(seed), "after", store(live_server))
        perform(
            s,
            u["hwsuo"],
            event_id,
            "handle",
            {"comment": "返工：杂物已全部清走", "attachment_ids": [after.id]},
        )


def test_verification_fails_with_a_reason_then_passes(
    phone_context, live_server, login, shot
) -> None:
    event_id, code = handled_event(live_server, 1)
    page = phone_context(viewport=SMALL_PHONE).new_page()
    login(page, "wgy")
    expect(page.locator('[data-count="tasks"]')).to_have_text("1")
    page.get_by_role("link", name="待核查").first.click()
    card = page.locator(f'[data-task="{event_id}"]')
    expect(card).to_contain_text(code)
    expect(card).to_contain_text("已组织清理")
    before = card.locator('[data-side="before"] img')
    after = card.locator('[data-side="after"] img')
    expect(before).to_have_count(1)
    expect(after).to_have_count(1)
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-compare] img')]"
        ".every((i) => i.complete && i.naturalWidth > 0)"
    )
    b, a = before.bounding_box(), after.bounding_box()
    assert b and a and b["x"] + b["width"] <= a["x"] and abs(b["y"] - a["y"]) < 2  # side by side
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    shot(page, "worker-tasks-phone-360")

    card.get_by_role("button", name="核查不通过").click()
    card.get_by_role("button", name="确认不通过").click()
    expect(card.locator('[data-error-for="comment"]')).to_have_text("请填写核查不通过的理由")
    card.get_by_label("不通过的理由").fill("路边仍有两堆柴草未清走")
    card.locator('input[data-photo-input="evidence"]').first.set_input_files(
        [{"name": "check.jpg", "mimeType": "image/jpeg", "buffer": photo(7)}]
    )
    expect(card.locator("[data-thumbs] .m-thumb")).to_have_count(1)
    shot(page, "worker-tasks-fail-form-phone-360")
    card.get_by_role("button", name="确认不通过").click()
    expect(card.locator("[data-task-result]")).to_contain_text("已退回返工")
    expect(card.locator("[data-task-result]")).to_contain_text("处置中")
    shot(page, "worker-tasks-failed-phone-360")
    after_fail = state_of(live_server, event_id)
    assert after_fail["state"] == "handling" and after_fail["holder_level"] == "department"
    assert after_fail["rework_count"] == 1
    assert after_fail["kinds"] == ["after", "evidence", "evidence"]

    rehandle(live_server, event_id, 2)
    page.reload()
    card = page.locator(f'[data-task="{event_id}"]')
    expect(card.locator('[data-side="after"] img')).to_have_count(2)
    page.once("dialog", lambda dialog: dialog.accept())
    card.get_by_role("button", name="核查通过").click()
    expect(card.locator("[data-task-result]")).to_contain_text("已核查通过")
    assert state_of(live_server, event_id)["state"] == "verified"

    page.goto(f"/m/events/{event_id}")
    timeline = page.locator(".m-timeline")
    expect(timeline).to_contain_text("核查不通过（返工）")
    expect(timeline).to_contain_text("路边仍有两堆柴草未清走")
    expect(timeline.locator("li").first).to_contain_text("核查通过")
    expect(page.locator("h3", has_text="核查照片")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    shot(page, "worker-event-phone-360")


def test_self_handling_needs_before_and_after_photos(
    phone_context, live_server, login, shot
) -> None:
    with live_server.session() as s:
        lng, lat = wgy_point(s)
    context = phone_context(
        viewport=SMALL_PHONE, geolocation={"latitude": lat, "longitude": lng, "accuracy": 8}
    )
    page = context.new_page()
    login(page, "wgy")
    page.goto("/m/report")
    expect(page.locator("#report-form[data-ready]")).to_have_count(1)
    client_key = page.locator("[data-client-key]").input_value()
    page.get_by_label("搜索事项").fill("卫生死角")
    page.locator(".m-matter", has_text="暴露垃圾、卫生死角").click()
    page.get_by_label("事件描述").fill("小学门口路边有一堆生活垃圾")
    toggle = page.get_by_label("现场自行处置（自办自结）")
    expect(toggle).to_be_visible()
    toggle.check()
    expect(page.get_by_role("button", name="上报并自办自结")).to_be_visible()
    page.locator('input[data-photo-input="evidence"]').first.set_input_files(
        [{"name": "before.jpg", "mimeType": "image/jpeg", "buffer": photo(11)}]
    )
    expect(page.locator('[data-thumbs="evidence"] .m-thumb')).to_have_count(1)
    page.get_by_role("button", name="上报并自办自结").click()
    expect(page.locator('[data-error-for="after_photos"]')).to_have_text(
        "现场自行处置须拍摄处置后照片"
    )
    expect(page.locator('[data-error-for="self_comment"]')).to_have_text("请填写处置说明")
    page.locator('input[data-photo-input="after"]').first.set_input_files(
        [{"name": "after.jpg", "mimeType": "image/jpeg", "buffer": photo(12)}]
    )
    expect(page.locator('[data-thumbs="after"] .m-thumb')).to_have_count(1)
    page.get_by_label("处置说明").fill("已与保洁员一起清理干净")
    expect(page.locator("[data-placement] [data-grid-name]")).not_to_be_empty()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    shot(page, "worker-report-self-handle-phone-360")
    page.get_by_role("button", name="上报并自办自结").click()
    result = page.locator("[data-result]")
    expect(result).to_have_attribute("data-outcome", "sent")
    expect(result).to_contain_text("已上报并自办自结")
    with live_server.session() as s:
        event = s.scalar(select(Event).where(Event.client_key == client_key))
        event_id, town = event.id, event.town_code
    stored = state_of(live_server, event_id)
    assert stored["state"] == "handled" and stored["self_handled"]
    assert stored["holder_level"] == "town" and stored["holder_region_code"] == town
    assert stored["kinds"] == ["after", "before"]
    assert re.fullmatch(r"\d{6}-\d{8}-\d{4}", result.locator("[data-event-code]").inner_text())
