"""The 民情地图 page and the dashboard as HTML: nothing loaded from outside the server, no data
in the map page, role guards, basemap configuration, and the dashboard's numbers."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from factories import make_event, report
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from gridgov import create_app, maps, stats
from gridgov.config import ROOT, Settings
from gridgov.db import Database, utcnow
from gridgov.models import Event, EventState, User
from gridgov.photos import PhotoStore
from gridgov.web.maps_pages import CARDS
from gridgov.workflow.worktime import SHANGHAI

VIEWERS = ("ld", "ddy", "zbz", "zzzx")
OTHERS = ("wgy", "hwsuo", "cgj", "xtgly", "aqgly", "sjgly")
EXTERNAL = re.compile(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}", re.IGNORECASE)


def sign_in(client: FlaskClient, user: User) -> None:
    with client.session_transaction() as s:
        s.clear()
        s.update(user_id=user.id, seen=int(time.time()), csrf_token="t")


class _Page(HTMLParser):
    """Collect every src/href, url(...) in styles, and the text of inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.inline_scripts: list[str] = []
        self.styles: list[str] = []
        self._in_script = False
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href", "action", "poster", "data"):
            if values.get(name):
                self.links.append(values[name] or "")
        if values.get("style"):
            self.styles.append(values["style"] or "")
        self._in_script = tag == "script" and "src" not in values
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.inline_scripts.append(data)
        elif self._in_style:
            self.styles.append(data)


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


@pytest.fixture
def events(session: Session, users: dict[str, User], tmp_path: Path) -> list[Event]:
    now = utcnow()
    made = [
        make_event(
            session,
            users,
            EventState.CLOSED,
            now=now - timedelta(days=4),
            store=PhotoStore(tmp_path),
        ),
        report(session, users, now=now - timedelta(days=2)),
        report(session, users, reporter="ddy", grid=users["wgy2"].grid_codes[0], now=now),
    ]
    session.flush()
    return made


# -- the map page -----------------------------------------------------------------------


def test_map_page_loads_nothing_from_outside_the_server(
    client: FlaskClient, users: dict[str, User]
) -> None:
    sign_in(client, users["ld"])
    response = client.get("/map/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    page = parse(html)
    assert page.links and page.inline_scripts
    for link in page.links:
        assert not EXTERNAL.match(link), link
        assert link.startswith(("/", "#", "?", "data:")), link
    for regex in (
        r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""",
        r"url\(\s*['\"]?\s*(?:https?:)?//",
    ):
        assert not re.search(regex, html, re.IGNORECASE), regex
    for css in page.styles:
        for url in re.findall(r"url\(([^)]*)\)", css):
            assert not EXTERNAL.search(url), url
    for script in page.inline_scripts:
        assert not re.search(r"https?://", script), script[:200]
        for cdn in ("cdn", "jsdelivr", "unpkg", "jquery", "bootstrap", "fontawesome"):
            assert cdn not in script.lower(), cdn
    # Every script and stylesheet is served by this server, the vendored ones with a licence.
    assets = [link for link in page.links if link.startswith("/static/")]
    assert {a.split("/")[3] for a in assets if a.startswith("/static/vendor/")} == {
        "leaflet",
        "leaflet.markercluster",
        "leaflet.heat",
    }
    for asset in assets:
        with client.get(asset) as got:
            assert got.status_code == 200, asset
        if asset.startswith("/static/vendor/"):
            assert (ROOT / "static/vendor" / asset.split("/")[3] / "LICENSE").is_file()


def test_map_page_is_a_shell_without_events_or_polygons(
    client: FlaskClient, users: dict[str, User], events: list[Event]
) -> None:
    sign_in(client, users["ld"])
    html = client.get("/map/").get_data(as_text=True)
    assert "gg.mapPage.start(" in html and "L.map(" in html
    assert "L.markerClusterGroup(" in html and "L.heatLayer(" in html
    for e in events:
        assert e.code not in html
    for word in ("Polygon", "FeatureCollection", '"coordinates"'):
        assert word not in html
    assert len(html.encode()) < 80_000
    assert "/api/v1/map/areas" in html and "/api/v1/map/events" in html


@pytest.mark.parametrize("path", ["/map/", "/dashboard/"])
@pytest.mark.parametrize("username", VIEWERS + OTHERS)
def test_role_guards(client: FlaskClient, users: dict[str, User], path: str, username: str) -> None:
    sign_in(client, users[username])
    response = client.get(path)
    assert response.status_code == (200 if username in VIEWERS else 403)
    if username not in VIEWERS:
        assert "此页面仅限" in response.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/map/", "/dashboard/"])
def test_anonymous_goes_to_sign_in(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response.location == f"/login?next={path}"


def test_filters_in_the_url_fill_the_form(client: FlaskClient, users: dict[str, User]) -> None:
    sign_in(client, users["ld"])
    html = client.get(
        "/map/?from=2026-01-01&to=2026-01-31&matter=05&town=441523105&metric=closure_rate"
        "&state=closed&category=05,06&department=none&source=hotline&overdue=1"
    ).get_data(as_text=True)
    assert 'name="from" value="2026-01-01"' in html and 'name="to" value="2026-01-31"' in html
    assert re.search(r'<option value="05" selected>', html)
    assert re.search(r'<option value="441523105" selected>', html)
    assert re.search(r'<option value="closure_rate" selected>', html)
    assert re.search(r'<option value="none" selected>', html)
    checked = re.findall(r'name="(state|category|source|overdue)" value="([^"]+)" checked', html)
    assert ("state", "closed") in checked and ("state", "reported") not in checked
    assert {v for n, v in checked if n == "category"} == {"05", "06"}
    assert {v for n, v in checked if n == "source"} == {"hotline"}
    assert ("overdue", "1") in checked


def test_town_filter_outside_the_jurisdiction_is_refused(
    client: FlaskClient, users: dict[str, User]
) -> None:
    sign_in(client, users["zzzx"])
    assert client.get("/map/?town=441523100").status_code == 403
    html = client.get("/map/").get_data(as_text=True)
    assert "螺溪镇" in html and '<option value="441523100"' not in html


def test_live_mode_has_the_ticker(client: FlaskClient, users: dict[str, User]) -> None:
    sign_in(client, users["zbz"])
    html = client.get("/map/?live=1").get_data(as_text=True)
    assert 'id="ticker-list"' in html and "实时动态" in html
    assert '"live": true' in html and '"poll_ms": 10000' in html
    assert "/api/v1/map/feed" in html


# -- basemaps ---------------------------------------------------------------------------


def _shell(**settings: str) -> str:
    shell = maps.map_shell(
        Settings(instance_path=Path("/nonexistent"), **settings),  # type: ignore[arg-type]
        lambda path: f"/static/{path}",
        {"crs": "x"},
        [[23.1, 115.4], [23.5, 115.8]],
    )
    return shell.header + shell.html + shell.script


def test_basemap_none_draws_no_tiles() -> None:
    page = _shell()
    assert "L.tileLayer" not in page and "http" not in page


def test_basemap_tianditu_uses_vector_and_labels_with_the_key() -> None:
    page = _shell(basemap="tianditu", tianditu_key="abc123")
    assert page.count("L.tileLayer") == 2
    assert "tianditu.gov.cn/vec_w/wmts" in page and "tianditu.gov.cn/cva_w/wmts" in page
    assert "LAYER=vec" in page and "LAYER=cva" in page and page.count("tk=abc123") == 2


def test_basemap_xyz_and_osm() -> None:
    intranet = "http://10.1.2.3/tiles/{z}/{x}/{y}.png"
    page = _shell(basemap="xyz", basemap_url=intranet)
    assert intranet in page
    assert "tile.openstreetmap.org" in _shell(basemap="osm")


def test_gcj02_basemap_draws_converted_data(
    db: Database, users: dict[str, User], tmp_path: Path
) -> None:
    settings = Settings(
        instance_path=tmp_path,
        database_url=db.url,
        secret_key="s",
        audit_key="k",
        basemap="xyz",
        basemap_url="/tiles/{z}/{x}/{y}.png",
        basemap_crs="gcj02",
    )
    app: Flask = create_app(settings, database=db)
    client = app.test_client()
    sign_in(client, users["ld"])
    html = client.get("/map/").get_data(as_text=True)
    assert '"crs": "gcj02"' in html
    assert maps.display_crs(settings) == "gcj02"
    settings.basemap = "tianditu"
    assert maps.display_crs(settings) == "wgs84"


# -- the dashboard ----------------------------------------------------------------------


def _values(html: str, scope: str = "") -> dict[str, str]:
    part = html if not scope else html[html.index(scope) :]
    return dict(
        re.findall(r'data-kpi="(\w+)"[^>]*>\s*<dt>.*?</dt>\s*<dd data-value="([^"]*)"', part, re.S)
    )


def test_dashboard_numbers_are_stats(
    client: FlaskClient, session: Session, users: dict[str, User], events: list[Event]
) -> None:
    sign_in(client, users["ld"])
    today = utcnow().astimezone(SHANGHAI).date()
    html = client.get("/dashboard/").get_data(as_text=True)
    expected = stats.compute(
        session,
        users["ld"],
        date_from=today - timedelta(days=29),
        date_to=today,
        as_of=utcnow(),
    )
    cards = _values(html)
    assert set(cards) >= set(CARDS)
    for key, raw in cards.items():
        want = expected["totals"][key]
        assert raw == ("" if want is None else str(want)), key
        # Each number carries its definition: in the title and in the visible tooltip.
        assert stats.KPIS[key].definition in html
    assert expected["totals"]["received"] == 3
    # The ranking by town is stats grouped by town.
    by_town = stats.compute(
        session,
        users["ld"],
        group_by="town",
        date_from=today - timedelta(days=29),
        date_to=today,
        as_of=utcnow(),
    )
    section = html[html.index('id="rank-town"') : html.index('id="rank-village"')]
    rows = re.findall(r'<tr data-key="(\d+)">', section)
    assert rows == [g["key"] for g in by_town["groups"]]
    received = re.findall(r'data-kpi="received" data-value="(\d+)"', section)
    assert [int(r) for r in received] == [g["received"] for g in by_town["groups"]]


def test_dashboard_filters_trend_and_refusals(
    client: FlaskClient, users: dict[str, User], events: list[Event]
) -> None:
    sign_in(client, users["zzzx"])
    today = utcnow().astimezone(SHANGHAI).date()
    html = client.get(f"/dashboard/?trend=week&from={today - timedelta(days=27)}").get_data(
        as_text=True
    )
    assert 'data-trend="week"' in html
    assert html.count('<rect class="bar"') == len(
        stats.time_keys("week", today - timedelta(days=27), today)
    )
    assert _values(html)["received"] == "2"  # 螺溪镇 only
    assert client.get("/dashboard/?region=441523100").status_code == 403
    assert client.get("/dashboard/?from=2026-02-30").status_code == 422
    for link in ("/dashboard/export/report.xlsx", "/dashboard/export/events.csv"):
        assert link in html
