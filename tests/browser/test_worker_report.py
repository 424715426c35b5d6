"""The grid worker's report on a phone: placement, photos downscaled on the phone, duplicates,
the offline queue, and no double filing."""

from __future__ import annotations

import io
import re
import time
import uuid
from typing import Any

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import BrowserContext, Page, expect
from sqlalchemy import func, select

from gridgov.events import ReportInput, report_event
from gridgov.models import Attachment, Event, Grid, GridSet, Region, User

pytestmark = pytest.mark.browser

SMALL_PHONE = {"width": 360, "height": 640}


# -- helpers --------------------------------------------------------------------------------


def wgy_place(live_server) -> dict[str, Any]:
    """Return a point inside wgy's first grid, with the grid's and village's names."""
    with live_server.session() as s:
        user = s.scalar(select(User).where(User.username == "wgy"))
        grid = s.scalar(
            select(Grid)
            .join(GridSet, GridSet.id == Grid.grid_set_id)
            .where(GridSet.active.is_(True), Grid.code == user.grid_codes[0])
        )
        point = grid.geom.representative_point()
        village = s.get(Region, grid.village_code)
        return {
            "lng": point.x,
            "lat": point.y,
            "grid_name": grid.name,
            "village_name": village.name,
            "town_code": grid.village_code[:9],
        }


def jpeg(size: tuple[int, int], seed: int, *, orientation: int | None = None) -> bytes:
    """Return a JPEG with some structure (not a flat colour) and EXIF capture time."""
    image = Image.new("RGB", size, (40 + seed * 37 % 200, 90, 160))
    draw = ImageDraw.Draw(image)
    w, h = size
    for i in range(0, w, 150):
        draw.rectangle([i, 0, i + 60, h // 3], fill=((i + seed * 13) % 255, 200, 80))
    draw.ellipse([w // 4, h // 4, w // 2, h // 2], fill=(250, 240, 20))  # a marker: top-left
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = "2026:11:20 10:30:00"  # DateTimeOriginal
    if orientation:
        exif[0x0112] = orientation
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif.tobytes())
    return out.getvalue()


def photo_file(data: bytes, name: str = "IMG_0001.jpg") -> dict[str, Any]:
    return {"name": name, "mimeType": "image/jpeg", "buffer": data}


def phone(phone_context, place: dict[str, Any], **extra: Any) -> BrowserContext:
    geo = {"latitude": place["lat"], "longitude": place["lng"], "accuracy": 12}
    return phone_context(geolocation=geo, **extra)


def open_report(page: Page) -> None:
    page.goto("/m/report")
    expect(page.locator("#report-form[data-ready]")).to_have_count(1)


def pick_matter(page: Page, query: str, name: str) -> None:
    page.get_by_label("搜索事项").fill(query)
    page.locator(".m-matter", has_text=name).first.click()
    expect(page.locator("[data-matter-name]")).to_have_text(name)


def fill_report(page: Page, query: str, name: str, description: str, photos: list[bytes]) -> None:
    pick_matter(page, query, name)
    page.get_by_label("事件描述").fill(description)
    if photos:
        page.locator('input[data-photo-input="evidence"][data-source="camera"]').set_input_files(
            [photo_file(p, f"IMG_{i}.jpg") for i, p in enumerate(photos)]
        )
        expect(page.locator('[data-thumbs="evidence"] .m-thumb')).to_have_count(len(photos))


def events_with_key(live_server, client_key: str) -> list[tuple[int, str, str, list]]:
    with live_server.session() as s:
        rows = s.scalars(select(Event).where(Event.client_key == client_key)).all()
        return [
            (
                e.id,
                e.code,
                e.state,
                [(a.kind, a.width, a.height, a.sha256, a.taken_at) for a in e.attachments],
            )
            for e in rows
        ]


RECORD_UPLOADS = """
(() => {
    window.__uploads = [];
    const append = FormData.prototype.append;
    FormData.prototype.append = function (name, value, ...rest) {
        if (name === 'file' && value instanceof Blob) window.__uploads.push(value);
        return append.call(this, name, value, ...rest);
    };
})();
"""
"""Keep every photo blob the page puts in an upload (Playwright cannot read blob bodies)."""


def uploaded_photos(page: Page) -> list[dict[str, Any]]:
    """Return the size and SHA-256 of each photo the page uploaded, as the phone sent it."""
    return page.evaluate(
        """async () => Promise.all(window.__uploads.map(async (blob) => {
            const bitmap = await createImageBitmap(blob, {imageOrientation: 'none'});
            const digest = await crypto.subtle.digest('SHA-256', await blob.arrayBuffer());
            const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0'));
            return {width: bitmap.width, height: bitmap.height, bytes: blob.size,
                    sha256: hex.join('')};
        }))"""
    )


WAIT_FOR_OFFLINE_PAGES = """async () => {
    for (let i = 0; i < 100; i++) {  // up to 10 s for the service worker's install
        if (await caches.match('/m/report') && await caches.match('/m/queue')) return true;
        await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return false;
}"""
"""Wait until the service worker has stored the pages needed offline (evaluate awaits)."""


def no_sideways_scroll(page: Page, width: int = 360) -> None:
    wide = page.evaluate(
        """(width) => [...document.querySelectorAll('body *')]
            .filter((el) => el.getBoundingClientRect().right > width + 0.5)
            .slice(0, 5)
            .map((el) => `${el.tagName}.${el.className} ${el.getBoundingClientRect().right}`)""",
        width,
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= width, wide


# -- tests ----------------------------------------------------------------------------------


def test_report_shows_placement_and_uploads_downscaled_photos(
    phone_context, live_server, login, shot
) -> None:
    place = wgy_place(live_server)
    page = phone(phone_context, place, viewport=SMALL_PHONE).new_page()
    login(page, "wgy")
    assert page.url.endswith("/m/")
    expect(page.locator(".m-tile")).to_have_count(4)
    page.add_init_script(RECORD_UPLOADS)
    open_report(page)
    expect(page.locator("[data-loc-status]")).to_have_text(re.compile(r"定位精度约 12 米"))
    client_key = page.locator("[data-client-key]").input_value()
    assert re.fullmatch(r"[0-9a-f-]{36}", client_key)

    page.get_by_label("搜索事项").fill("垃圾")
    hits = page.locator(".m-matter")
    expect(hits.filter(has_text="垃圾未及时清运")).to_have_count(1)
    expect(hits.filter(has_text="邻里纠纷")).to_have_count(0)
    hits.filter(has_text="垃圾未及时清运").click()
    page.get_by_label("事件描述").fill("村口垃圾桶满溢三天未清运，气味很大")
    landscape = jpeg((3000, 2000), 1)
    portrait = jpeg((3000, 2000), 2, orientation=6)  # a phone held upright: rotate on display
    page.locator('input[data-photo-input="evidence"][data-source="gallery"]').set_input_files(
        [photo_file(landscape, "IMG_1.jpg"), photo_file(portrait, "IMG_2.jpg")]
    )
    sizes = page.locator('[data-thumbs="evidence"] .m-thumb-size')
    expect(sizes).to_have_text(["1600×1067", "1067×1600"])

    placement = page.locator("[data-placement]")
    expect(placement.locator("[data-grid-name]")).to_have_text(place["grid_name"])
    expect(placement.locator("[data-village-name]")).to_have_text(place["village_name"])
    expect(placement).to_contain_text("您负责的网格")
    no_sideways_scroll(page)
    shot(page, "worker-report-phone-360")

    page.get_by_role("button", name="提交上报").click()
    result = page.locator("[data-result]")
    expect(result).to_have_attribute("data-outcome", "sent")
    expect(result).to_contain_text("上报成功")
    code = result.locator("[data-event-code]").inner_text()
    shot(page, "worker-report-sent-phone-360")

    stored = events_with_key(live_server, client_key)
    assert len(stored) == 1
    _, stored_code, state, photos = stored[0]
    assert stored_code == code and state == "reported"
    uploads = uploaded_photos(page)
    assert len(photos) == 2 and len(uploads) == 2
    by_sha = {p[3]: p for p in photos}
    for sent in uploads:  # the phone downscaled: what crossed the network is ≤ 1600 px
        assert max(sent["width"], sent["height"]) <= 1600 and sent["bytes"] < 1_000_000
        kind, width, height, _sha, taken_at = by_sha[sent["sha256"]]
        assert kind == "evidence" and max(width, height) <= 1600
        assert taken_at is not None  # the EXIF capture time survived the phone's re-encoding
    # The upright photo stays upright (no second rotation on the server).
    assert sorted((p[1], p[2]) for p in photos) == [(1067, 1600), (1600, 1067)]

    page.get_by_role("link", name="查看事件").click()
    expect(page.locator("h1")).to_have_text(code)
    expect(page.locator(".m-photos img")).to_have_count(2)


def test_offline_report_waits_in_the_queue_and_is_sent_once(
    phone_context, live_server, login, shot
) -> None:
    place = wgy_place(live_server)
    context = phone(phone_context, place, viewport=SMALL_PHONE)
    page = context.new_page()
    login(page, "wgy")
    open_report(page)
    # The service worker keeps the report page for offline use.
    page.wait_for_function("() => navigator.serviceWorker && navigator.serviceWorker.controller")
    assert page.evaluate(WAIT_FOR_OFFLINE_PAGES)
    client_key = page.locator("[data-client-key]").input_value()
    fill_report(
        page, "乱堆", "乱堆乱放", "巷道里堆放建筑废料，堵住一半路面", [jpeg((2400, 1800), 3)]
    )
    expect(page.locator("[data-placement] [data-grid-name]")).to_have_text(place["grid_name"])

    context.set_offline(True)
    expect(page.locator("[data-net-status]")).to_be_visible()
    page.get_by_role("button", name="提交上报").click()
    result = page.locator("[data-result]")
    expect(result).to_have_attribute("data-outcome", "queued")
    expect(result).to_contain_text("已保存到待上传")
    badge = page.locator(".workmenu [data-queue-count]")
    expect(badge).to_have_text("1")
    shot(page, "worker-report-queued-phone-360")
    assert events_with_key(live_server, client_key) == []

    page.goto("/m/queue")  # offline: from the service worker's cache
    item = page.locator("[data-queue-item]")
    expect(item).to_have_count(1)
    expect(item.locator("[data-status]")).to_have_text(re.compile("等待网络"))
    page.reload()  # still offline; the queue lives in IndexedDB
    expect(item).to_have_count(1)
    expect(item).to_contain_text("乱堆乱放")
    expect(item).to_contain_text("照片 1 张")
    no_sideways_scroll(page)
    shot(page, "worker-queue-offline-phone-360")
    assert events_with_key(live_server, client_key) == []

    context.set_offline(False)  # the `online` event sends it by itself
    expect(item).to_have_count(0, timeout=20_000)
    expect(page.locator("[data-sent-list]")).to_contain_text("乱堆乱放")
    expect(badge).to_have_text("0")
    stored = events_with_key(live_server, client_key)
    assert len(stored) == 1
    assert [p[0] for p in stored[0][3]] == ["evidence"]
    shot(page, "worker-queue-sent-phone-360")


def test_retry_after_a_lost_answer_does_not_file_twice(phone_context, live_server, login) -> None:
    """The server filed the event but the answer never arrived: the retry gets the same one."""
    place = wgy_place(live_server)
    page = phone(phone_context, place).new_page()
    login(page, "wgy")
    open_report(page)
    client_key = page.locator("[data-client-key]").input_value()
    fill_report(page, "涂画", "乱张贴乱涂画", "电线杆上贴满小广告", [jpeg((1800, 1200), 4)])
    network = {"calls": 0, "up": False}

    def weak_signal(route) -> None:
        network["calls"] += 1
        if network["calls"] == 1:
            route.fetch()  # reached the server ...
            route.abort("connectionreset")  # ... but the phone never hears back
        elif not network["up"]:
            route.abort("internetdisconnected")
        else:
            route.continue_()

    page.route("**/api/v1/events", weak_signal)
    page.get_by_role("button", name="提交上报").click()
    expect(page.locator("[data-result]")).to_have_attribute("data-outcome", "queued")
    assert len(events_with_key(live_server, client_key)) == 1  # filed; the phone doesn't know

    page.goto("/m/queue")  # opening the page retries at once: still no signal
    item = page.locator("[data-queue-item]")
    expect(item).to_contain_text("已尝试 2 次")
    expect(item.locator("[data-status]")).to_contain_text("网络连接失败")
    network["up"] = True
    page.get_by_role("button", name="立即重试").click()
    expect(item).to_have_count(0)
    expect(page.locator("[data-sent-list]")).to_contain_text("乱张贴乱涂画")
    stored = events_with_key(live_server, client_key)
    assert len(stored) == 1 and len(stored[0][3]) == 1
    assert network["calls"] == 3


def test_pressing_submit_three_times_files_one_event(phone_context, live_server, login) -> None:
    place = wgy_place(live_server)
    page = phone(phone_context, place).new_page()
    login(page, "wgy")
    open_report(page)
    client_key = page.locator("[data-client-key]").input_value()
    description = f"路灯不亮 {uuid.uuid4().hex[:6]}"
    fill_report(page, "路灯", "路灯损坏", description, [jpeg((1200, 900), 5)])
    expect(page.locator("[data-placement] [data-grid-name]")).to_have_text(place["grid_name"])
    page.evaluate(
        """() => {
            const button = document.querySelector('[data-submit]');
            const form = document.getElementById('report-form');
            for (let i = 0; i < 3; i++) button.click();
            for (let i = 0; i < 3; i++) form.dispatchEvent(new Event('submit', {cancelable: true}));
        }"""
    )
    expect(page.locator("[data-result]")).to_have_attribute("data-outcome", "sent")
    assert len(events_with_key(live_server, client_key)) == 1
    with live_server.session() as s:
        count = s.scalar(
            select(func.count()).select_from(Event).where(Event.description == description)
        )
    assert count == 1


def test_nearby_events_of_the_same_matter_are_shown_and_can_take_the_photos(
    phone_context, live_server, login, shot
) -> None:
    place = wgy_place(live_server)
    with live_server.session() as s:
        wgy = s.scalar(select(User).where(User.username == "wgy"))
        existing = report_event(
            s,
            wgy,
            ReportInput(
                matter_code="0101",
                urgency="normal",
                description="两户人家因宅基地边界争吵",
                lng=place["lng"] + 0.0002,
                lat=place["lat"],
                client_key=uuid.uuid4().hex,
            ),
        ).event
        existing_id, existing_code = existing.id, existing.code
    page = phone(phone_context, place, viewport=SMALL_PHONE).new_page()
    login(page, "wgy")
    open_report(page)
    client_key = page.locator("[data-client-key]").input_value()
    fill_report(page, "邻里", "邻里纠纷", "邻居吵架，声音很大", [jpeg((1600, 1200), 6)])
    nearby = page.locator("[data-nearby]")
    expect(nearby).to_contain_text("附近已有类似事件")
    entry = nearby.locator(f'[data-nearby-id="{existing_id}"]')
    expect(entry).to_contain_text(existing_code)
    expect(entry).to_contain_text("宅基地")
    no_sideways_scroll(page)
    shot(page, "worker-report-duplicates-phone-360")

    page.once("dialog", lambda dialog: dialog.accept())
    entry.get_by_role("button", name="补充照片到此事件").click()
    result = page.locator("[data-result]")
    expect(result).to_have_attribute("data-outcome", "added")
    expect(result.locator("[data-event-code]")).to_have_text(existing_code)
    assert events_with_key(live_server, client_key) == []
    with live_server.session() as s:
        kinds = s.scalars(select(Attachment.kind).where(Attachment.event_id == existing_id)).all()
    assert kinds == ["evidence"]


def test_position_outside_the_town_is_refused_before_submitting(
    phone_context, live_server, login
) -> None:
    page = phone_context().new_page()  # the default GPS: 陆河县城, in 河田镇, not wgy's town
    login(page, "wgy")
    open_report(page)
    fill_report(page, "噪声", "噪声扰民", "夜间施工噪声", [])
    placement = page.locator("[data-placement]")
    expect(placement).to_contain_text("不在您的辖区")
    page.get_by_role("button", name="提交上报").click()
    expect(page.locator('[data-error-for="location"]')).to_contain_text("不在您的辖区")
    expect(page.get_by_label("事件描述")).to_have_value("夜间施工噪声")


def test_villages_stand_in_when_gps_fails(phone_context, live_server, login) -> None:
    place = wgy_place(live_server)
    context = phone_context(permissions=[])  # GPS refused
    page = context.new_page()
    login(page, "wgy")
    open_report(page)
    expect(page.locator("[data-loc-status]")).to_contain_text("无法定位")
    page.get_by_label("所在村（社区）").select_option(label=place["village_name"])
    expect(page.locator("[data-loc-status]")).to_contain_text(place["village_name"])
    expect(page.locator("[data-placement] [data-village-name]")).to_have_text(place["village_name"])


def test_the_draft_survives_a_reload(phone_context, live_server, login) -> None:
    place = wgy_place(live_server)
    page = phone(phone_context, place).new_page()
    login(page, "wgy")
    open_report(page)
    client_key = page.locator("[data-client-key]").input_value()
    fill_report(page, "电动车", "电动车违规充电", "楼道里飞线充电", [jpeg((900, 700), 7)])
    expect(page.locator("#report-form[data-draft-saved]")).to_have_count(1)
    read_draft = """async () => {
        const db = await new Promise((ok) => {
            const r = indexedDB.open('gridgov-worker'); r.onsuccess = () => ok(r.result); });
        return new Promise((ok) => {
            const r = db.transaction('drafts').objectStore('drafts').get('wgy');
            r.onsuccess = () => ok(r.result ? {...r.result, photos: r.result.photos.length} : null);
        });
    }"""
    # The draft is saved again once the photo is downscaled; on a busy machine that lags
    # behind the first save, so poll until the saved draft holds the photo (page.wait_for_function
    # would not do: it takes the Promise an async predicate returns as truthy at once).
    deadline = time.monotonic() + 15
    draft = page.evaluate(read_draft)
    while not (draft and draft["photos"] == 1) and time.monotonic() < deadline:
        page.wait_for_timeout(100)
        draft = page.evaluate(read_draft)
    assert draft["client_key"] == client_key and draft["photos"] == 1
    assert draft["description"] == "楼道里飞线充电"
    page.reload()
    expect(page.locator("#report-form[data-ready]")).to_have_count(1)
    expect(page.locator("[data-draft-note]")).to_be_visible()
    assert page.locator("[data-client-key]").input_value() == client_key
    expect(page.get_by_label("事件描述")).to_have_value("楼道里飞线充电")
    expect(page.locator("[data-matter-name]")).to_have_text("电动车违规充电")
    expect(page.locator('[data-thumbs="evidence"] .m-thumb')).to_have_count(1)
