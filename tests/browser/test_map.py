"""The 民情地图 in Chromium: polygons and clusters drawn from the GeoJSON API, drill-down from
the county to a grid by clicking, filters whose numbers match GET /api/v1/stats, nothing
fetched from outside the server, and the live mode picking up a new report without a reload.

The module seeds 200 demo events over 30 days (gridgov.seed) into its live server once.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from gridgov.db import utcnow
from gridgov.events import ReportInput, report_event
from gridgov.models import Event, Grid, GridSet, Region, User
from gridgov.photos import PhotoStore
from gridgov.seed import seed_demo
from gridgov.workflow.worktime import SHANGHAI

pytestmark = pytest.mark.browser

COUNTY = "441523"
LUOXI = "441523105"
TOTALS = ("received", "closed", "open", "overdue", "closure_rate", "overdue_rate")

# Find a point inside an SVG path that is not covered by anything (a cluster, a label):
# sample the path's box, keep the first point that is in its fill and on top.
FREE_POINT = """(selector) => {
  const path = document.querySelector(selector);
  if (!path) return null;
  const box = path.getBoundingClientRect();
  const inverse = path.getScreenCTM().inverse();
  const svg = path.ownerSVGElement;
  for (let n = 4; n <= 64; n *= 2) {
    for (let i = 1; i < n; i++) {
      for (let j = 1; j < n; j++) {
        const x = box.left + box.width * i / n, y = box.top + box.height * j / n;
        const p = svg.createSVGPoint(); p.x = x; p.y = y;
        const inside = path.isPointInFill(p.matrixTransform(inverse));
        if (inside && document.elementFromPoint(x, y) === path) return [x, y];
      }
    }
  }
  return null;
}"""

FREE_PIN = """() => {
  const map = document.querySelector(".folium-map").getBoundingClientRect();
  for (const pin of document.querySelectorAll(".leaflet-marker-pane .gg-pin")) {
    const r = pin.getBoundingClientRect();
    const x = r.left + r.width / 2, y = r.top + r.height / 2;
    const margin = 20;
    if (x < map.left + margin || x > map.right - margin) continue;
    if (y < map.top + margin || y > map.bottom - margin) continue;
    const hit = document.elementFromPoint(x, y);
    if (hit && pin.contains(hit)) return [x, y];
  }
  return null;
}"""


@pytest.fixture(scope="module")
def seeded(live_server: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Seed 200 events over the last 30 days (once for this module's server)."""
    store = PhotoStore(tmp_path_factory.mktemp("map-photos"))
    with live_server.session() as s:
        summary = seed_demo(s, COUNTY, events=200, days=30, store=store)
    return summary


@pytest.fixture
def outside(page: Page, live_server: Any) -> Iterator[list[str]]:
    """Collect every request the page makes to anywhere but the live server."""
    seen: list[str] = []

    def watch(request: Any) -> None:
        if not request.url.startswith((live_server.url, "data:", "blob:")):
            seen.append(request.url)

    page.on("request", watch)
    yield seen


def loads(page: Page) -> int:
    return int(page.locator("#map-layout").get_attribute("data-loads") or 0)


def wait_loaded(page: Page, after: int = 0) -> None:
    """Wait until the map has finished a refresh (areas and events) beyond `after`."""
    page.wait_for_function(
        "n => Number(document.getElementById('map-layout').dataset.loads) > n", arg=after
    )


def click_area(page: Page, code: str) -> None:
    point = page.evaluate(FREE_POINT, f"path.gg-area-{code}")
    assert point, f"no free point inside area {code}"
    page.mouse.click(*point)


def area_codes(page: Page, level: str) -> list[str]:
    return page.evaluate(
        """(level) => Array.from(document.querySelectorAll('path.gg-area-' + level)).map(
             p => Array.from(p.classList).find(c => /^gg-area-\\d{9,15}$/.test(c)).slice(8))""",
        level,
    )


def totals(page: Page) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key in TOTALS:
        raw = page.locator(f'#map-totals [data-kpi="{key}"] dd').get_attribute("data-value")
        out[key] = float(raw) if raw else None
    return out


def stats_api(page: Page, **params: str) -> dict[str, float | None]:
    body = page.request.get("/api/v1/stats", params=params).json()
    return {k: (None if body["totals"][k] is None else float(body["totals"][k])) for k in TOTALS}


def period(page: Page) -> dict[str, str]:
    return {
        "from": page.locator('input[name="from"]').input_value(),
        "to": page.locator('input[name="to"]').input_value(),
    }


def test_map_draws_areas_and_clusters_from_this_server_only(
    page: Page, seeded: dict[str, Any], login: Any, shot: Any, outside: list[str]
) -> None:
    login(page, "ld")
    page.goto("/map/")
    wait_loaded(page)
    layout = page.locator("#map-layout")
    expect(layout).to_have_attribute("data-level", "town")
    expect(layout).to_have_attribute("data-events-mode", "clusters")
    expect(page.locator(".leaflet-overlay-pane svg path.gg-area-town")).to_have_count(8)
    clusters = page.locator(".leaflet-marker-pane .marker-cluster.gg-cluster")
    assert clusters.count() >= 5
    drawn = sum(int(t) for t in clusters.locator("span").all_inner_texts())
    assert drawn == int(layout.get_attribute("data-events-total") or 0) > 0
    expect(page.locator(".gg-area-label").first).to_be_visible()
    legend = page.locator(".gg-legend")
    expect(legend).to_contain_text("受理量")
    expect(legend).to_contain_text("按镇（街道）着色")
    expect(legend.locator("li")).to_have_count(6 + 7 + 2)
    expect(page.locator(".leaflet-control-layers")).to_contain_text("热力图")
    # The heat layer is folium's, fed with the same clusters.
    page.get_by_label("热力图").check()
    expect(page.locator("canvas.leaflet-heatmap-layer")).to_have_count(1)
    page.get_by_label("热力图").uncheck()
    shot(page, "map-desktop")
    assert outside == []


def test_drill_down_from_the_county_to_a_grid_by_clicking(
    page: Page, live_server: Any, seeded: dict[str, Any], login: Any, shot: Any
) -> None:
    with live_server.session() as s:
        names = dict(s.execute(select(Region.code, Region.name)).all())
        busy = s.execute(
            select(Event.village_code, Event.lng, Event.lat)
            .where(Event.town_code == LUOXI)
            .order_by(Event.id)
        ).all()
    login(page, "ld")
    page.goto("/map/")
    wait_loaded(page)
    layout = page.locator("#map-layout")

    n = loads(page)
    click_area(page, LUOXI)
    expect(layout).to_have_attribute("data-level", "village")
    wait_loaded(page, n)
    villages = area_codes(page, "village")
    in_town = [c for c in villages if c.startswith(LUOXI)]
    assert len(in_town) >= 5
    expect(page.locator("#map-crumbs")).to_contain_text(names[LUOXI])

    # Click the busiest village of the town that is clickable in this view.
    counts: dict[str, int] = {}
    for village, _, _ in busy:
        counts[village] = counts.get(village, 0) + 1
    target = next(
        v
        for v in sorted(in_town, key=lambda c: -counts.get(c, 0))
        if page.evaluate(FREE_POINT, f"path.gg-area-{v}")
    )
    n = loads(page)
    click_area(page, target)
    expect(layout).to_have_attribute("data-level", "grid")
    wait_loaded(page, n)
    grids = area_codes(page, "grid")
    assert any(g.startswith(target) for g in grids)
    assert all(len(g) == 15 for g in grids)
    crumbs = page.locator("#map-crumbs")
    expect(crumbs).to_contain_text(names[LUOXI])
    expect(crumbs).to_contain_text(names[target])
    # Zoomed in this far, events arrive one by one.
    expect(layout).to_have_attribute("data-events-mode", "points")
    shot(page, "map-grid")

    # A shared address opens the same view: an event's place at zoom 17, popup and link.
    _, lng, lat = next(row for row in busy if row[0] == target)
    page.goto(f"/map/?at={lat},{lng},17")
    wait_loaded(page)
    expect(layout).to_have_attribute("data-events-mode", "points")
    point = page.evaluate(FREE_PIN)
    assert point, "no event marker on screen"
    page.mouse.click(*point)
    popup = page.locator(".leaflet-popup .gg-popup")
    expect(popup).to_be_visible()
    expect(page.locator(".leaflet-popup")).to_have_css("opacity", "1")  # faded in
    link = popup.get_by_role("link", name="查看详情")
    expect(link).to_have_attribute("href", re.compile(r"^/events/\d+$"))
    shot(page, "map-popup")

    # Back to the county from the breadcrumb.
    n = loads(page)
    page.locator("#map-crumbs .crumb").first.click()
    wait_loaded(page, n)
    expect(layout).to_have_attribute("data-level", "town")


def test_filters_change_the_numbers_to_those_of_the_stats_api(
    page: Page, live_server: Any, seeded: dict[str, Any], login: Any
) -> None:
    login(page, "ddy")
    page.goto("/map/")
    wait_loaded(page)
    dates = period(page)
    before = totals(page)
    assert before == stats_api(page, **dates)
    assert before["received"]

    # The category with the most events, but not all of them: the numbers must move.
    by_category = page.request.get(
        "/api/v1/stats", params={**dates, "group_by": "category"}
    ).json()["groups"]
    category = next(g for g in by_category if 0 < g["received"] < before["received"])
    n = loads(page)
    page.locator('select[name="matter"]').select_option(category["key"])
    wait_loaded(page, n)
    after = totals(page)
    assert after == stats_api(page, **dates, matter=category["key"])
    assert after["received"] == category["received"] != before["received"]
    assert f"matter={category['key']}" in page.url

    # The town filter: the map flies to the town, the numbers are the town's.
    n = loads(page)
    page.locator('select[name="town"]').select_option(LUOXI)
    page.wait_for_function(
        "n => Number(document.getElementById('map-layout').dataset.loads) > n"
        " && location.search.includes('town=')",
        arg=n,
    )
    town = totals(page)
    assert town == stats_api(page, **dates, matter=category["key"], region=LUOXI)
    assert f"town={LUOXI}" in page.url

    # The period: seven days.
    n = loads(page)
    page.get_by_role("button", name="近7天").click()
    wait_loaded(page, n)
    week = period(page)
    assert week != dates
    assert totals(page) == stats_api(page, **week, matter=category["key"], region=LUOXI)

    # The address is the view: opening it again restores filters and numbers.
    shared = page.url
    page.goto(shared)
    wait_loaded(page)
    assert page.locator('select[name="matter"]').input_value() == category["key"]
    assert page.locator('select[name="town"]').input_value() == LUOXI
    assert totals(page) == stats_api(page, **week, matter=category["key"], region=LUOXI)


def test_state_layer_hides_events_but_not_the_numbers(
    page: Page, seeded: dict[str, Any], login: Any
) -> None:
    login(page, "ld")
    page.goto("/map/")
    wait_loaded(page)
    layout = page.locator("#map-layout")
    everything = int(layout.get_attribute("data-events-total") or 0)
    numbers = totals(page)
    n = loads(page)
    page.locator("fieldset[data-list=state] label", has_text="已办结").locator("input").uncheck()
    wait_loaded(page, n)
    fewer = int(layout.get_attribute("data-events-total") or 0)
    assert 0 < fewer < everything
    assert totals(page) == numbers  # the numbers are the period's, whatever layers show
    assert "state=" in page.url


def test_live_mode_shows_new_reports_without_reloading(
    page: Page, live_server: Any, seeded: dict[str, Any], login: Any, shot: Any
) -> None:
    login(page, "zbz")
    page.clock.install()
    page.goto("/map/?live=1")
    wait_loaded(page)
    layout = page.locator("#map-layout")
    expect(layout).to_have_attribute("data-polls", "1")
    expect(page.locator("#map-ticker")).to_contain_text("实时动态")

    with live_server.session() as s:
        reporter = s.scalar(select(User).where(User.username == "ddy"))
        grid = s.scalar(
            select(Grid)
            .join(GridSet, GridSet.id == Grid.grid_set_id)
            .where(GridSet.active.is_(True), Grid.code.startswith(LUOXI))
            .order_by(Grid.code)
        )
        point = grid.geom.representative_point()
        event = report_event(
            s,
            reporter,
            ReportInput(
                matter_code="0501",
                urgency="urgent",
                description="大屏测试：主干道旁垃圾堆放，影响通行",
                lng=point.x,
                lat=point.y,
                client_key=uuid.uuid4().hex,
                source="hotline",
            ),
            now=utcnow(),
        ).event
        code, event_id = event.code, event.id

    page.clock.fast_forward(10_500)  # the next poll is due 10 s after the last one
    item = page.locator(f'.ticker-item[data-event-id="{event_id}"][data-kind="new"]')
    expect(item).to_be_visible()
    expect(item).to_contain_text(code)
    expect(item).to_contain_text("新上报")
    expect(page.locator("path.gg-flash")).not_to_have_count(0)
    expect(page.locator("#ticker-list .ticker-item").first).to_have_attribute(
        "data-event-id", str(event_id)
    )
    expect(item).to_have_css("opacity", "1")  # arrived (it fades in)
    today = utcnow().astimezone(SHANGHAI).date().isoformat()
    assert page.locator('input[name="to"]').input_value() == today
    shot(page, "map-live")
