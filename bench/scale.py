"""Benchmark gridgov at city scale: stats, the map's GeoJSON, the map page and its first render.

A city-sized dataset (bench/scale_data.py: ~10,000 synthetic grids in K copies of the sample
counties, 1,000,000 events over two years) is generated once per run from one seed and
bulk-loaded into SQLite and into a throwaway PostgreSQL + PostGIS (gridgov.pgtemp). Then,
on each database, through the real application (create_app; Flask's test client signed in
as a county leader, or gridgov.stats.compute called directly):

- baseline: `SELECT count(*) FROM events` on the same database in the same run; every
  figure is also printed as a ratio to its median;
- stats: `stats.compute` for the totals and grouped by town, village, grid, department,
  matter and month, and GET /api/v1/stats (totals, and group_by=town), p50/p95;
- the leaders' dashboard page GET /dashboard/ (one request = nine stats queries);
- the map's data: GET /api/v1/map/areas and GET /api/v1/map/events at county zoom (the
  county fitted in a 1280×800 window: towns), town zoom 12 (villages), village zoom 14
  (grids) and grid zoom 16 (grids, event points), bbox = that window padded by 15 % per side
  as static/js/map/map.js asks; each county's first request at each zoom after clearing
  the polygon cache (cached per county) is reported apart ("cold": the slowest of them);
- the map page's bytes: the HTML of GET /map/ plus the non-vendored JS/CSS it links
  (static/vendor/ counted apart), raw and gzipped;
- time to first map render in headless Chromium (Playwright, /usr/bin/chromium) against a
  real server on 127.0.0.1 (werkzeug, threaded, in this process): from navigation start
  (performance.now() in the page) to the first polygon drawn (`path.leaflet-interactive`)
  and to the end of the first load (areas and events drawn: #map-layout[data-loads]).

Each repetition takes a random county leader (leaders see their county: gridgov has no
city-level account — regions are counties, towns and villages), a random period (cycling
through 7, 30, 90, 365 and 730 days, ending on a random day of the data's span) and, for
the map, a view centred on a random event of that county.

Targets (the issue, 2-core machine, PostgreSQL): map page ≤ 300 KB without the vendored
libraries; map data p95 ≤ 300 ms; stats p95 ≤ 500 ms. The run prints which are met.

Quick run (about 2 minutes): python bench/scale.py
Full run (about 15 minutes): python bench/scale.py --grids 10000 --events 1000000 --years 2 \\
                                --db sqlite,postgresql --reps 50
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import math
import os
import platform
import re
import shutil
import sqlite3
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import shapely
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scale_data as sd  # bench/ is not a package: on sys.path above

from gridgov import create_app, mapdata, stats
from gridgov.config import Settings
from gridgov.db import Database, utcnow
from gridgov.models import User
from gridgov.pgtemp import TemporaryPostgres
from gridgov.workflow.worktime import SHANGHAI

AUDIT_KEY = "bench-scale-audit-key"
PERIOD_DAYS = (7, 30, 90, 365, 730)
VIEWPORT = (1280, 800)
PAD = 0.15
"""map.js asks for the window padded by 15 % on each side (Leaflet's bounds.pad(0.15))."""
ZOOMS = (("county", None), ("town", 12), ("village", 14), ("grid", 16))
"""The drill-down levels and their zoom (None: the zoom that fits the county)."""
STATS_GROUPS = (None, "town", "village", "grid", "department", "matter", "month")
TARGETS = {"page_kb": 300.0, "map_p95_ms": 300.0, "stats_p95_ms": 500.0}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
RENDERED = """() => {
  const path = document.querySelector(".leaflet-overlay-pane path.leaflet-interactive");
  return path ? performance.now() : null;
}"""
LOADED = """() => {
  const layout = document.getElementById("map-layout");
  return layout && Number(layout.getAttribute("data-loads")) >= 1 ? performance.now() : null;
}"""


# ---------------------------------------------------------------------------- figures


@dataclass
class Series:
    """The timings (seconds) of one measured thing, with the period length of each sample."""

    name: str
    kind: str
    """'stats', 'map', 'page' or 'baseline' (which target applies)."""
    seconds: list[float] = field(default_factory=list)
    periods: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    cold: float | None = None

    def add(self, seconds: float, period: int = 0, size: int = 0) -> None:
        self.seconds.append(seconds)
        self.periods.append(period)
        self.sizes.append(size)

    def pct(self, q: float) -> float:
        return float(np.percentile(self.seconds, q)) if self.seconds else math.nan

    @property
    def p50(self) -> float:
        return self.pct(50)

    @property
    def p95(self) -> float:
        return self.pct(95)

    def by_period(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for days in sorted(set(self.periods)):
            picked = [s for s, p in zip(self.seconds, self.periods, strict=True) if p == days]
            out[days] = statistics.median(picked)
        return out


@dataclass
class View:
    """One repetition: who looks, at which period, and where the map is centred."""

    leader_id: int
    county: str
    date_from: date
    date_to: date
    days: int
    lng: float
    lat: float
    metric: str


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


# ---------------------------------------------------------------------------- geometry


def _mercator_y(lat: float) -> float:
    return math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))


def window(lng: float, lat: float, zoom: int) -> tuple[float, float, float, float]:
    """Return the bbox map.js requests for a 1280×800 window centred at (lng, lat)."""
    world_px = 256 * 2**zoom
    half_w = VIEWPORT[0] / 2 * 360 / world_px
    y = _mercator_y(lat)
    half_y = VIEWPORT[1] / 2 * 2 * math.pi / world_px
    south = math.degrees(2 * math.atan(math.exp(y - half_y)) - math.pi / 2)
    north = math.degrees(2 * math.atan(math.exp(y + half_y)) - math.pi / 2)
    west, east = lng - half_w, lng + half_w
    pw, ph = (east - west) * PAD, (north - south) * PAD
    return (west - pw, south - ph, east + pw, north + ph)


def fit_zoom(bounds: tuple[float, float, float, float]) -> int:
    """Return the largest zoom at which `bounds` fit in the window (Leaflet's fitBounds)."""
    x1, y1, x2, y2 = bounds
    for zoom in range(18, 0, -1):
        world_px = 256 * 2**zoom
        width = (x2 - x1) / 360 * world_px
        height = (_mercator_y(y2) - _mercator_y(y1)) / (2 * math.pi) * world_px
        if width <= VIEWPORT[0] and height <= VIEWPORT[1]:
            return zoom
    return 1


def bbox_arg(b: tuple[float, float, float, float]) -> str:
    return ",".join(f"{v:.5f}" for v in b)


# ---------------------------------------------------------------------------- databases


@contextmanager
def open_database(backend: str, workdir: Path, keep: bool) -> Iterator[Database]:
    """Yield a fresh, empty gridgov database of the backend (removed afterwards)."""
    if backend == "sqlite":
        path = workdir / "scale.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        db = Database(f"sqlite:///{path}", audit_key=AUDIT_KEY.encode())
        try:
            yield db
        finally:
            db.dispose()
            if not keep:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    with TemporaryPostgres(dbname="gridgov_scale") as pg:
        db = Database(pg.url, audit_key=AUDIT_KEY.encode())
        try:
            yield db
        finally:
            db.dispose()


def database_size(db: Database) -> str:
    if db.dialect == "sqlite":
        path = Path(db.engine.url.database or "")
        return f"{path.stat().st_size / 2**20:,.0f} MiB file"
    with db.engine.connect() as conn:
        total, events = conn.execute(
            text("SELECT pg_database_size(current_database()), pg_total_relation_size('events')")
        ).one()
    return f"{total / 2**20:,.0f} MiB database, events table + indexes {events / 2**20:,.0f} MiB"


# ---------------------------------------------------------------------------- the run


@dataclass
class Dataset:
    plan: sd.CityPlan
    geodata: Path
    grids: sd.CityGrids
    end: datetime
    events: sd.EventSet | None = None
    catalog: sd.Catalog | None = None
    county_bounds: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)


def make_views(
    data: Dataset, leaders: dict[str, int], reps: int, years: float, seed: int
) -> list[View]:
    """Return `reps` random views: leader, period (cycling lengths) and map centre."""
    assert data.events is not None
    rng = np.random.default_rng(seed + 1)
    span = round(years * 365)
    lengths = [d for d in PERIOD_DAYS if d <= span] or [span]
    last = data.end.astimezone(SHANGHAI).date()
    counties = sorted(leaders)
    county_of_event = data.grids.county[data.events.grid]
    metrics = list(mapdata.METRICS)
    views = []
    for i in range(reps):
        county = counties[int(rng.integers(len(counties)))]
        days = lengths[i % len(lengths)]
        end = last - timedelta(days=int(rng.integers(0, span - days + 1)))
        rows = np.flatnonzero(county_of_event == county)
        row = int(rows[int(rng.integers(len(rows)))])
        views.append(
            View(
                leader_id=leaders[county],
                county=county,
                date_from=end - timedelta(days=days - 1),
                date_to=end,
                days=days,
                lng=float(data.events.lng[row]),
                lat=float(data.events.lat[row]),
                metric=metrics[int(rng.integers(len(metrics)))],
            )
        )
    return views


def signed_in_client(app: Any, user_id: int) -> Any:
    """Return a test client whose browser session belongs to `user_id`."""
    client = app.test_client()
    with client.session_transaction() as s:
        s["user_id"] = user_id
        s["seen"] = int(time.time())
    return client


def get(client: Any, url: str) -> tuple[int, float]:
    """GET url; return (response bytes, seconds); fail loudly on an error status."""
    start = time.perf_counter()
    response = client.get(url)
    body = response.get_data()
    seconds = time.perf_counter() - start
    if response.status_code != 200:
        raise SystemExit(f"GET {url} → {response.status_code}: {body[:300]!r}")
    return len(body), seconds


def warm_up(db: Database) -> None:
    """Read the events table and its period index once, so no series pays for a cold cache.

    The load has just written them, so this mostly settles the OS page cache and
    PostgreSQL's shared buffers; first requests after a restart are slower.
    """
    with db.engine.connect() as conn:
        conn.execute(text("SELECT sum(length(description)) FROM events")).scalar()
        conn.execute(
            text("SELECT count(*) FROM events WHERE reported_at > :t"), {"t": datetime(1970, 1, 2)}
        ).scalar()


def measure_baseline(db: Database, reps: int) -> Series:
    series = Series("baseline: SELECT count(*) FROM events", "baseline")
    with db.engine.connect() as conn:
        conn.execute(text("SELECT count(*) FROM events")).scalar()
        for _ in range(reps):
            _, s = timed(lambda: conn.execute(text("SELECT count(*) FROM events")).scalar())
            series.add(s)
    return series


def measure_stats(db: Database, views: list[View]) -> list[Series]:
    out = []
    for group in STATS_GROUPS:
        series = Series(f"stats.compute {'totals' if group is None else 'by ' + group}", "stats")
        for v in views:
            with db.session() as session:
                user = session.get(User, v.leader_id)
                assert user is not None
                now = utcnow()
                _, s = timed(
                    lambda session=session, user=user, v=v, now=now, group=group: stats.compute(
                        session,
                        user,
                        date_from=v.date_from,
                        date_to=v.date_to,
                        group_by=group,
                        as_of=now,
                    )
                )
            series.add(s, v.days)
        out.append(series)
        progress(series)
    return out


def progress(series: Series) -> None:
    print(f"    {series.name}: p50 {ms(series.p50)} ms, p95 {ms(series.p95)} ms", flush=True)


def measure_http_stats(app: Any, views: list[View]) -> list[Series]:
    clients: dict[int, Any] = {}
    out = []
    for group in (None, "town"):
        series = Series(
            f"GET /api/v1/stats{'' if group is None else '?group_by=' + group}", "stats"
        )
        for v in views:
            client = clients.setdefault(v.leader_id, signed_in_client(app, v.leader_id))
            args = {"from": v.date_from.isoformat(), "to": v.date_to.isoformat()}
            if group:
                args["group_by"] = group
            size, s = get(client, f"/api/v1/stats?{urlencode(args)}")
            series.add(s, v.days, size)
        out.append(series)
        progress(series)
    dashboard = Series("GET /dashboard/ (9 stats queries)", "page")
    for v in views:
        client = clients[v.leader_id]
        args = {"from": v.date_from.isoformat(), "to": v.date_to.isoformat()}
        size, s = get(client, f"/dashboard/?{urlencode(args)}")
        dashboard.add(s, v.days, size)
    out.append(dashboard)
    progress(dashboard)
    return out


def map_url(endpoint: str, v: View, zoom: int, bbox: tuple[float, float, float, float]) -> str:
    args = {
        "from": v.date_from.isoformat(),
        "to": v.date_to.isoformat(),
        "bbox": bbox_arg(bbox),
        "zoom": str(zoom),
    }
    if endpoint == "areas":
        args["metric"] = v.metric
    return f"/api/v1/map/{endpoint}?{urlencode(args)}"


def view_at(
    data: Dataset, v: View, level: str, zoom: int | None
) -> tuple[int, tuple[float, float, float, float]]:
    if zoom is None:
        b = data.county_bounds[v.county]
        z = fit_zoom(b)
        return z, window((b[0] + b[2]) / 2, (b[1] + b[3]) / 2, z)
    return zoom, window(v.lng, v.lat, zoom)


def measure_map(app: Any, data: Dataset, views: list[View]) -> list[Series]:
    clients: dict[int, Any] = {}
    out = []
    mapdata.clear_cache()
    for endpoint in ("areas", "events"):
        for level, zoom in ZOOMS:
            z0, _ = view_at(data, views[0], level, zoom)
            series = Series(f"GET /api/v1/map/{endpoint} {level} zoom (z{z0})", "map")
            seen: set[str] = set()
            for v in views:
                client = clients.setdefault(v.leader_id, signed_in_client(app, v.leader_id))
                z, bbox = view_at(data, v, level, zoom)
                size, s = get(client, map_url(endpoint, v, z, bbox))
                if v.county not in seen:
                    # The county's first request at this zoom: its polygons are not cached
                    # yet (mapdata caches per county). "cold" is the slowest of these.
                    seen.add(v.county)
                    series.cold = max(series.cold or 0.0, s)
                    size, s = get(client, map_url(endpoint, v, z, bbox))
                series.add(s, v.days, size)
            out.append(series)
            progress(series)
    return out


@dataclass
class PageBytes:
    html: int
    own: dict[str, int]
    vendored: dict[str, int]
    html_gz: int
    own_gz: int
    vendored_gz: int

    @property
    def own_total(self) -> int:
        return self.html + sum(self.own.values())


ASSET = re.compile(r"""<(?:script|link)\b[^>]*?(?:src|href)=["']([^"']+)["']""", re.I)


def measure_page(app: Any, leader_id: int) -> PageBytes:
    """Return the bytes of /map/: its HTML, its own assets and the vendored ones."""
    client = signed_in_client(app, leader_id)
    response = client.get("/map/")
    html = response.get_data()
    if response.status_code != 200:
        raise SystemExit(f"GET /map/ → {response.status_code}")
    own: dict[str, int] = {}
    vendored: dict[str, int] = {}
    own_gz = vendored_gz = 0
    for url in dict.fromkeys(ASSET.findall(html.decode("utf-8"))):
        if not url.startswith("/static/"):
            if url.startswith(("http:", "https:", "//")):
                raise SystemExit(f"/map/ links an external asset: {url}")
            continue
        asset = client.get(url.split("?")[0])
        body = asset.get_data()
        asset.close()
        if "/static/vendor/" in url:
            vendored[url] = len(body)
            vendored_gz += len(gzip.compress(body))
        else:
            own[url] = len(body)
            own_gz += len(gzip.compress(body))
    return PageBytes(len(html), own, vendored, len(gzip.compress(html)), own_gz, vendored_gz)


@contextmanager
def live_server(app: Any) -> Iterator[str]:
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="scale-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def measure_browser(app: Any, username: str, reps: int, end: date) -> list[Series]:
    """Time the first map render in Chromium: cold (first visit) and warm (reloads)."""
    from playwright.sync_api import sync_playwright

    out: list[Series] = []
    with live_server(app) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            for label, query in (
                ("last 30 days (default)", ""),
                (
                    "last 2 years",
                    "?" + urlencode({"from": (end - timedelta(days=729)).isoformat()}),
                ),
            ):
                polygons = Series(f"first polygon drawn, {label}", "render")
                loaded = Series(f"first load complete, {label}", "render")
                mapdata.clear_cache()
                context = browser.new_context(
                    viewport={"width": VIEWPORT[0], "height": VIEWPORT[1]},
                    locale="zh-CN",
                    timezone_id="Asia/Shanghai",
                )
                page = context.new_page()
                page.goto(f"{base}/login")
                page.get_by_label("用户名").fill(username)
                page.get_by_label("密码").fill(sd.PASSWORD)
                page.get_by_role("button", name="登录").click()
                page.wait_for_url(lambda url: "/login" not in url)
                for i in range(reps + 1):
                    page.goto(f"{base}/map/{query}", wait_until="commit")
                    first = page.wait_for_function(RENDERED, polling=10, timeout=180_000)
                    done = page.wait_for_function(LOADED, polling=10, timeout=180_000)
                    first_s = float(first.json_value()) / 1000
                    done_s = float(done.json_value()) / 1000
                    if i == 0:  # empty browser cache and empty polygon cache
                        polygons.cold, loaded.cold = first_s, done_s
                    else:
                        polygons.add(first_s)
                        loaded.add(done_s)
                context.close()
                out += [polygons, loaded]
        finally:
            browser.close()
    return out


# ---------------------------------------------------------------------------- printing


def ms(seconds: float | None) -> str:
    return "—" if seconds is None or math.isnan(seconds) else f"{seconds * 1000:,.0f}"


def verdict(series: Series, backend: str) -> str:
    """Return the p95 target and whether it is met (the targets are PostgreSQL's)."""
    limit = {"stats": TARGETS["stats_p95_ms"], "map": TARGETS["map_p95_ms"]}.get(series.kind)
    if limit is None:
        return ""
    missed = "MISSED" if backend == "postgresql" else "over"
    return f"≤{limit:.0f}: " + ("met" if series.p95 * 1000 <= limit else missed)


def print_table(title: str, backend: str, base: Series, rows: list[Series]) -> None:
    b = base.p50
    print(f"\n{title}")
    header = (
        f"{'':46} {'p50 ms':>8} {'p95 ms':>8} {'cold ms':>8} "
        f"{'p50/base':>9} {'p95/base':>9} {'KB p50':>7}  target p95"
    )
    print(header)
    print("-" * len(header))
    print(f"{base.name:46} {ms(base.p50):>8} {ms(base.p95):>8} {'':>8} {'1.0x':>9}")
    for s in rows:
        size = statistics.median(s.sizes) / 1024 if any(s.sizes) else None
        print(
            f"{s.name:46} {ms(s.p50):>8} {ms(s.p95):>8} {ms(s.cold):>8} "
            f"{s.p50 / b:>8.1f}x {s.p95 / b:>8.1f}x "
            f"{'' if size is None else f'{size:,.0f}':>7}  {verdict(s, backend)}".rstrip()
        )


def print_periods(rows: list[Series]) -> None:
    days = sorted({d for s in rows for d in s.periods if d})
    if not days:
        return
    labels = {7: "7 d", 30: "30 d", 90: "90 d", 365: "1 y", 730: "2 y"}
    print("\nmedian ms by period length")
    header = f"{'':46} " + " ".join(f"{labels.get(d, f'{d} d'):>7}" for d in days)
    print(header)
    print("-" * len(header))
    for s in rows:
        if not any(s.periods):
            continue
        per = s.by_period()
        print(f"{s.name:46} " + " ".join(f"{ms(per.get(d)):>7}" for d in days))


def machine() -> str:
    """Describe the machine (as bench/geocode.py does) with the current load average."""
    from geocode import machine as describe  # bench/ is sys.path[0] when run as a script

    load = ""
    if hasattr(os, "getloadavg"):
        load = ", load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())
    return describe() + load


# ---------------------------------------------------------------------------- main


def run_backend(
    backend: str, data: Dataset, args: argparse.Namespace, results: dict[str, Any]
) -> None:
    """Load the dataset into one backend and measure everything on it."""
    print(f"\n=== {backend} ===", flush=True)
    with open_database(backend, args.workdir, args.keep) as db:
        started = time.perf_counter()
        sd.load_city(db, data.plan, data.geodata)
        if data.catalog is None:
            data.catalog = sd.read_catalog(db)
        if data.events is None:
            data.events = sd.generate_events(
                data.grids, data.catalog, args.events, args.years, data.end, args.seed
            )
            print(f"  dataset fingerprint {sd.digest(data.events)}")
        timings = sd.load_events(db, data.events, data.grids, data.catalog)
        load_s = time.perf_counter() - started
        size = database_size(db)
        print(f"  ready in {load_s:.0f} s; {size}", flush=True)
        if backend == "postgresql" and args.pg_set:
            with db.engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                for setting in args.pg_set:
                    name, _, value = setting.partition("=")
                    conn.exec_driver_sql(f"ALTER DATABASE gridgov_scale SET {name} = {value}")
            db.engine.dispose()  # new connections pick the settings up
            print(f"  what-if: ALTER DATABASE … SET {', '.join(args.pg_set)}")
        warm_up(db)
        with db.engine.connect() as conn:
            leaders = dict(
                conn.execute(
                    text(
                        "SELECT region_code, id FROM users WHERE role = 'leader' "
                        "AND username LIKE 'ld%'"
                    )
                ).all()
            )
        settings = Settings(
            instance_path=args.workdir / f"instance-{backend}",
            database_url=db.url,
            secret_key="bench-scale-secret",
            audit_key=AUDIT_KEY,
            default_county=data.plan.codes[0],
        )
        app = create_app(settings, database=db)
        views = make_views(data, leaders, args.reps, args.years, args.seed)

        print("  measuring baseline and stats …", flush=True)
        base = measure_baseline(db, max(args.reps, 20))
        rows = measure_stats(db, views)
        rows += measure_http_stats(app, views)
        print("  measuring the map's data …", flush=True)
        rows += measure_map(app, data, views)
        after = measure_baseline(db, max(args.reps, 20))
        page = measure_page(app, leaders[data.plan.codes[0]])
        render: list[Series] = []
        if args.browser_reps > 0:
            print("  measuring the first render in Chromium …", flush=True)
            render = measure_browser(
                app,
                f"ld{data.plan.codes[0]}",
                args.browser_reps,
                data.end.astimezone(SHANGHAI).date(),
            )

        n_county = int((data.grids.county[data.events.grid] == data.plan.codes[0]).sum())
        print_table(
            f"{backend}: {args.events:,} events, {len(data.grids):,} grids in "
            f"{len(data.plan.counties)} counties (a county leader sees ~{n_county:,}); "
            f"{len(views)} reps; baseline re-measured at the end: p50 {ms(after.p50)} ms"
            + (
                f"; what-if {', '.join(args.pg_set)}"
                if backend == "postgresql" and args.pg_set
                else ""
            ),
            backend,
            base,
            rows,
        )
        print_periods(rows)
        print(
            f"\nmap page /map/: HTML {page.html / 1024:,.1f} KB + own JS/CSS "
            f"{sum(page.own.values()) / 1024:,.1f} KB = {page.own_total / 1024:,.1f} KB "
            f"(gzip {(page.html_gz + page.own_gz) / 1024:,.1f} KB) — target ≤ "
            f"{TARGETS['page_kb']:.0f} KB: "
            + ("met" if page.own_total / 1024 <= TARGETS["page_kb"] else "MISSED")
        )
        print(
            f"  own: {', '.join(f'{u} {b / 1024:.1f} KB' for u, b in page.own.items())}\n"
            f"  vendored (not counted): {sum(page.vendored.values()) / 1024:,.1f} KB "
            f"(gzip {page.vendored_gz / 1024:,.1f} KB) in {len(page.vendored)} files"
        )
        if render:
            print("\ntime to first map render in Chromium (ms from navigation start)")
            for s in render:
                print(
                    f"  {s.name:44} cold {ms(s.cold):>6}   warm p50 {ms(s.p50):>6}"
                    f"  p95 {ms(s.p95):>6}  ({len(s.seconds)} reloads)"
                )
        results[backend] = {
            "load": timings,
            "load_total_s": load_s,
            "size": size,
            "baseline": asdict(base),
            "baseline_after": asdict(after),
            "rows": [asdict(s) for s in rows],
            "page": {**asdict(page), "own_total": page.own_total},
            "render": [asdict(s) for s in render],
        }
        app.extensions["gridgov.db"].dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--grids", type=int, default=2_000, help="about this many grids")
    parser.add_argument("--events", type=int, default=100_000, help="events to generate")
    parser.add_argument("--years", type=float, default=2.0, help="years the events span")
    parser.add_argument(
        "--counties", type=int, default=None, help="counties in the city (default: grids/1250)"
    )
    parser.add_argument("--db", default="sqlite,postgresql", help="backends, comma-separated")
    parser.add_argument("--reps", type=int, default=15, help="random views per measurement")
    parser.add_argument(
        "--browser-reps", type=int, default=5, help="Chromium reloads per case (0: skip)"
    )
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path("/tmp/gridgov-scale"),
        help="geodata cache, the SQLite file, instance folders, results JSON",
    )
    parser.add_argument("--keep", action="store_true", help="keep the SQLite file")
    parser.add_argument(
        "--pg-set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="what-if: a PostgreSQL setting for the benchmark database, e.g. "
        "plan_cache_mode=force_custom_plan (repeatable; not gridgov's configuration)",
    )
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.db.split(",") if b.strip()]
    if any(b not in ("sqlite", "postgresql") for b in backends):
        parser.error("--db takes sqlite and/or postgresql")
    if args.browser_reps and not Path(CHROMIUM).exists():
        parser.error(f"{CHROMIUM} not found: apt-get install chromium (or --browser-reps 0)")
    args.workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    plan = sd.plan_city(args.grids, args.counties)
    print(
        f"machine: {machine()}\n"
        f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"shapely {shapely.__version__}, numpy {np.__version__}\n"
        f"city: {len(plan.counties)} counties {plan.codes[0]}…{plan.codes[-1]} "
        f"(copies of {', '.join(sd.SOURCE_COUNTIES)}), {plan.min_grids}–{plan.max_grids} "
        f"grids per village; {args.events:,} events over {args.years:g} years; seed {args.seed}",
        flush=True,
    )
    geodata = sd.build_geodata(plan, args.workdir / "geodata")
    grids = sd.read_grids(plan, geodata)
    county_bounds = {
        c: tuple(shapely.bounds(shapely.union_all(grids.geoms[grids.county == c])).tolist())
        for c in plan.codes
    }
    data = Dataset(plan, geodata, grids, sd.now_hour(), county_bounds=county_bounds)  # type: ignore[arg-type]
    results: dict[str, Any] = {
        "date": datetime.now(SHANGHAI).isoformat(timespec="minutes"),
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "grids": len(grids),
        "counties": plan.codes,
    }
    for backend in backends:
        run_backend(backend, data, args, results)
    out = args.workdir / f"results-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(results, ensure_ascii=False, indent=1, default=str), "utf-8")
    print(f"\nfigures saved to {out}; the run took {(time.perf_counter() - started) / 60:.1f} min")
    if not args.keep:
        shutil.rmtree(args.workdir / "instance-sqlite", ignore_errors=True)
        shutil.rmtree(args.workdir / "instance-postgresql", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
