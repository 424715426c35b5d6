"""Every grid worker page at 360×640 and on a desktop: Chinese renders, nothing overflows."""

from __future__ import annotations

import io
import uuid

import pytest
from PIL import Image
from playwright.sync_api import Page, expect
from sqlalchemy import select

from gridgov import settings_of
from gridgov.events import ReportInput, attach_photo, perform, report_event
from gridgov.models import Grid, GridSet, User
from gridgov.photos import PhotoStore

pytestmark = pytest.mark.browser

PAGES = [
    ("home", "/m/", "网格员工作台"),
    ("report", "/m/report", "上报事件"),
    ("reports", "/m/reports", "我的上报"),
    ("event", None, None),
    ("tasks", "/m/tasks", "待核查"),
    ("queue", "/m/queue", "待上传"),
    ("offline", "/m/offline", "当前无网络"),
]


def photo(seed: int) -> bytes:
    image = Image.new("RGB", (640, 480), ((seed * 53) % 256, 140, (seed * 29) % 256))
    out = io.BytesIO()
    image.save(out, "JPEG")
    return out.getvalue()


@pytest.fixture(scope="module")
def sample_events(live_server) -> int:
    """Three reports by wgy (one handled, waiting for wgy's verification); return its id."""
    store = PhotoStore(settings_of(live_server.app).upload_folder)
    with live_server.session() as s:
        u = {x.username: x for x in s.scalars(select(User))}
        wgy = u["wgy"]
        grids = s.scalars(
            select(Grid)
            .join(GridSet, GridSet.id == Grid.grid_set_id)
            .where(GridSet.active.is_(True), Grid.code.in_(wgy.grid_codes))
            .order_by(Grid.code)
        ).all()
        made = []
        for i, (matter, text) in enumerate(
            [
                ("0503", "菜市场旁垃圾堆积两天未清运，影响通行"),
                ("0102", "夫妻争吵，邻居报告有摔东西的声音"),
                ("1102", "村委会门前路灯不亮"),
            ]
        ):
            point = grids[i % len(grids)].geom.representative_point()
            event = report_event(
                s,
                wgy,
                ReportInput(
                    matter_code=matter,
                    urgency="pressing" if i == 1 else "normal",
                    description=text,
                    lng=point.x,
                    lat=point.y,
                    client_key=uuid.uuid4().hex,
                ),
            ).event
            attach_photo(s, wgy, event.id, photo(i), "evidence", store)
            made.append(event)
        target = made[0]
        perform(s, u["zzzx"], target.id, "accept", {})
        perform(
            s, u["zzzx"], target.id, "dispatch", {"lead_department_id": u["hwsuo"].department_id}
        )
        perform(s, u["hwsuo"], target.id, "sign", {})
        after, _ = attach_photo(s, u["hwsuo"], target.id, photo(9), "after", store)
        perform(
            s,
            u["hwsuo"],
            target.id,
            "handle",
            {"comment": "已清运完毕", "attachment_ids": [after.id]},
        )
        return target.id


def visit(page: Page, name: str, path: str | None, heading: str | None, event_id: int) -> None:
    if path is None:
        path, heading = f"/m/events/{event_id}", None
    page.goto(path)
    if heading:
        expect(page.locator("h1")).to_have_text(heading)
    if name == "report":
        expect(page.locator("#report-form[data-ready]")).to_have_count(1)
        expect(page.locator("[data-placement]")).to_be_visible()
    if name in ("event", "tasks"):
        page.wait_for_function(
            "() => [...document.querySelectorAll('.m-photos img')]"
            ".every((i) => i.complete && i.naturalWidth > 0)"
        )
    if name == "queue":
        expect(page.locator("[data-queue-summary]")).to_have_text("全部已上传")


@pytest.mark.parametrize(("name", "path", "heading"), PAGES, ids=[p[0] for p in PAGES])
def test_phone_360(phone_context, live_server, login, shot, sample_events, name, path, heading):
    with live_server.session() as s:
        wgy = s.scalar(select(User).where(User.username == "wgy"))
        grid = s.scalar(select(Grid).where(Grid.code == wgy.grid_codes[0]))
        point = grid.geom.representative_point()
    page = phone_context(
        viewport={"width": 360, "height": 640},
        geolocation={"latitude": point.y, "longitude": point.x, "accuracy": 15},
    ).new_page()
    login(page, "wgy")
    visit(page, name, path, heading, sample_events)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    shot(page, f"worker-{name}-phone-360")


@pytest.mark.parametrize(("name", "path", "heading"), PAGES, ids=[p[0] for p in PAGES])
def test_desktop(page: Page, live_server, login, shot, sample_events, name, path, heading):
    page.context.grant_permissions(["geolocation"])
    with live_server.session() as s:
        wgy = s.scalar(select(User).where(User.username == "wgy"))
        grid = s.scalar(select(Grid).where(Grid.code == wgy.grid_codes[0]))
        point = grid.geom.representative_point()
    page.context.set_geolocation({"latitude": point.y, "longitude": point.x, "accuracy": 30})
    login(page, "wgy")
    visit(page, name, path, heading, sample_events)
    width = page.viewport_size["width"] if page.viewport_size else 1280
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    shot(page, f"worker-{name}-desktop")
