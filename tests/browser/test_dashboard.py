"""统计分析 in Chromium: every number equals GET /api/v1/stats for the same filter, each has
its definition on hover, the rankings and the trend come from the same module, and the
exports download. Screenshots at desktop width and at 360 px.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from gridgov.photos import PhotoStore
from gridgov.seed import seed_demo
from gridgov.web.maps_pages import CARDS

pytestmark = pytest.mark.browser

COUNTY = "441523"
LUOXI = "441523105"


@pytest.fixture(scope="module")
def seeded(live_server: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    store = PhotoStore(tmp_path_factory.mktemp("dashboard-photos"))
    with live_server.session() as s:
        return seed_demo(s, COUNTY, events=200, days=30, store=store)


def shown(page: Page) -> dict[str, float | None]:
    """Return the raw value behind every KPI card."""
    out: dict[str, float | None] = {}
    cards = page.locator("#kpis [data-kpi]")
    for i in range(cards.count()):
        card = cards.nth(i)
        raw = card.locator("dd").get_attribute("data-value")
        out[card.get_attribute("data-kpi") or ""] = float(raw) if raw else None
    return out


def api(page: Page, **params: str) -> dict[str, Any]:
    return page.request.get("/api/v1/stats", params=params).json()


def as_floats(totals: dict[str, Any], keys: list[str]) -> dict[str, float | None]:
    return {k: None if totals[k] is None else float(totals[k]) for k in keys}


def filter_values(page: Page) -> dict[str, str]:
    return {
        "from": page.locator('#dash-filters input[name="from"]').input_value(),
        "to": page.locator('#dash-filters input[name="to"]').input_value(),
    }


def test_numbers_equal_the_stats_api_and_explain_themselves(
    page: Page, seeded: dict[str, Any], login: Any, shot: Any
) -> None:
    login(page, "ld")  # a leader lands on the dashboard
    expect(page).to_have_url("/dashboard/")
    numbers = shown(page)
    assert list(numbers) == list(CARDS)
    body = api(page, **filter_values(page))
    assert numbers == as_floats(body["totals"], list(numbers))
    assert numbers["received"] == seeded["events"]
    card = page.locator('#kpis [data-kpi="closure_rate"]')
    expect(card.locator("dd")).to_contain_text("%")
    definition = body["definitions"]["closure_rate"]["definition"]
    expect(card).to_have_attribute("title", definition)
    tip = card.locator(".tip-text")
    expect(tip).to_be_hidden()
    card.locator(".info").hover()
    expect(tip).to_be_visible()
    expect(tip).to_contain_text(definition)

    # Rankings: stats grouped by town, ranked by received.
    by_town = api(page, **filter_values(page), group_by="town")["groups"]
    rows = page.locator("#rank-town tbody tr")
    expect(rows).to_have_count(len(by_town))
    assert [rows.nth(i).get_attribute("data-key") for i in range(rows.count())] == [
        g["key"] for g in by_town
    ]
    first = rows.first.locator('[data-kpi="received"]')
    expect(first).to_have_attribute("data-value", str(by_town[0]["received"]))
    for dim in ("village", "department", "matter", "source", "reporter"):
        expect(page.locator(f"#rank-{dim} tbody tr").first).to_be_visible()

    # The trend: one bar per day of the period, heights from the daily numbers.
    days = api(page, **filter_values(page), group_by="day")["groups"]
    bars = page.locator("svg.trend-svg rect.bar")
    expect(bars).to_have_count(len(days))
    assert [int(bars.nth(i).get_attribute("data-received") or -1) for i in range(3)] == [
        g["received"] for g in days[:3]
    ]
    page.mouse.move(0, 0)
    shot(page, "dashboard-desktop")


def test_filter_by_town_and_matter(page: Page, seeded: dict[str, Any], login: Any) -> None:
    login(page, "zbz")
    page.goto("/dashboard/")
    page.locator('#dash-filters select[name="region"]').select_option(LUOXI)
    page.locator('#dash-filters select[name="matter"]').select_option("05")
    page.get_by_role("button", name="查询").click()
    expect(page).to_have_url(re.compile(rf"region={LUOXI}.*matter=05"))
    numbers = shown(page)
    body = api(page, **filter_values(page), region=LUOXI, matter="05")
    assert numbers == as_floats(body["totals"], list(numbers))
    everything = api(page, **filter_values(page))["totals"]["received"]
    assert numbers["received"] is not None and numbers["received"] < everything
    # A preset period keeps the other filters.
    page.get_by_role("link", name="近7天").click()
    expect(page.get_by_role("link", name="近7天")).to_have_attribute("aria-current", "true")
    numbers = shown(page)
    body = api(page, **filter_values(page), region=LUOXI, matter="05")
    assert numbers == as_floats(body["totals"], list(numbers))


def test_exports_download(page: Page, seeded: dict[str, Any], login: Any) -> None:
    login(page, "zzzx")
    page.goto("/dashboard/")
    with page.expect_download() as info:
        page.locator("#export-csv").click()
    text = Path(info.value.path()).read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    received = api(page, **filter_values(page))["totals"]["received"]
    assert len(rows) == received > 0
    assert {r["镇（街道）"] for r in rows} == {"螺溪镇"}
    with page.expect_download() as info:
        page.get_by_role("button", name="导出月报（Excel）").click()
    assert info.value.suggested_filename.endswith(".xlsx")


def test_phone_width(page: Page, seeded: dict[str, Any], login: Any, shot: Any) -> None:
    page.set_viewport_size({"width": 360, "height": 740})
    login(page, "ld")
    expect(page.locator("#kpis .kpi-card")).to_have_count(12)
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 360, "the page itself must not scroll sideways (tables scroll inside)"
    shot(page, "dashboard-360")
