"""Build the city-sized dataset of bench/scale.py: geodata, accounts and events, loaded in bulk.

The city. gridgov's regions are counties (6-digit codes), towns and villages; a city is a
set of counties. The sample geodata has two real county boundaries (陆河县 441523 and 蕉岭县
441427, ~650 grids each), so the benchmark city is made of K copies of them, alternating,
each translated onto its own cell of a K-cell layout (no two counties overlap) and renumbered
under a fictional city prefix 4499 (counties 449901, 449902, …; towns and villages keep
their last digits and names). gridgov.geo.synth then generates towns, villages and grids in
every copy exactly as it does for geodata/: its random streams are seeded from the codes, so
each copy gets its own towns, villages and grids. To reach the grid count asked for with
realistic county sizes (~1,250 grids, PRODUCT.md §6: a county has 10³ grids), K =
round(grids / 1,250) and synth's grids-per-village range (3–8 by default) is widened around
the mean needed (about 6–15 for 10,000 grids in 8 counties). The generated geodata is cached
in the work folder, keyed by K and that range.

Loading. Regions and grid sets go through gridgov's own loaders (load_sample_county,
save_grid_set, catalog.load_departments) after init_database; accounts (a leader and a
dispatcher per county, an operator per town, a grid worker per grid, with user_grids) are
Core INSERTs. Events are generated with numpy from one seed and bulk-loaded — COPY on
PostgreSQL, executemany in one transaction with synchronous=OFF on SQLite — with the
events table's secondary indexes dropped during the load and rebuilt after it. This
bypasses the ORM, so gridgov.audit's hooks do not fire for events: the audit chain has no
entries for them, which is fine for a benchmark dataset and is the reason it is fast
(1M events through gridgov.events would take hours). CHECK constraints are enforced during
the load; foreign keys are checked once afterwards (PostgreSQL: one anti-join per key;
SQLite: PRAGMA foreign_key_check), and the load fails if any row is orphaned.

The events (all relative to `end`, the run's start rounded down to the hour):
- where: a grid drawn with lognormal weights (communities ×1.8), a point uniform inside it
  (constrained Delaunay triangles of the grid, picked by area), checked with an STRtree;
- when: `years` years before `end`, volume growing 30 % a year, weekends at 60 %, office
  hours busiest (Shanghai time); ids and codes (<county>-<YYYYMMDD>-<nnnn>, numbered per
  county and Shanghai day) follow the report time, and event_counters gets the last number;
- what: 91 matters of the catalog, Zipf-like; urgency 3 % urgent, 12 % pressing; source 55 %
  grid worker (reporter: that grid's worker), 25 % hotline, 10 % citizen, 5 % centre,
  5 % sensor (reporter: the county dispatcher);
- fate: 1.5 % rejected, 2.5 % withdrawn, 0.8 % voided, 1 % merged (into the previous event of
  the same grid), 0.4 % shelved, 0.3 % stuck in handling far past the deadline, the rest
  closed through accept → dispatch → handle → verify → close (grid-worker reports of
  self-handle-able matters: 50 % self-handled instead). The deadline is the sum of the
  matter's stage limits (working days counted as 1.4 natural days, working hours as 3);
  the time to close is that limit × lognormal(median 0.5), so ~10 % close late. The state is
  the last step reached by `end`: recent events are open in every state, so open, overdue
  and every holder kind occur. 3 % of dispatched events were extended (+3 days), 4 %
  reworked, 3 % returned once (with a 'return' action naming the department); 60 % of
  closed hotline/citizen events carry a satisfaction rating.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely import STRtree
from shapely.geometry import mapping, shape
from sqlalchemy import insert, select, text

from gridgov.config import ROOT
from gridgov.db import Database
from gridgov.geo import synth

GEODATA = ROOT / "geodata"
CITY = "4499"
"""A fictional city prefix: nothing real is numbered 4499xx."""
SOURCE_COUNTIES = ("441523", "441427")
GRIDS_PER_COUNTY = 1250
LAYOUT_ORIGIN = (115.0, 22.6)
"""South-west corner of the city layout (lng, lat): eastern Guangdong."""
LAYOUT_GAP_DEG = 0.02
PASSWORD = "Gridgov#2026"
"""The password of every benchmark account (the demo password)."""
LAYOUT_VERSION = 1
"""Bump when the geodata layout changes, so cached geodata is regenerated."""

SOURCES = ("grid_worker", "hotline", "citizen", "centre", "sensor")
SOURCE_P = (0.55, 0.25, 0.10, 0.05, 0.05)
URGENCIES = ("normal", "pressing", "urgent")
URGENCY_P = (0.85, 0.12, 0.03)
PHRASES = (
    "现场情况已拍照，请尽快处理",
    "群众反映较为强烈，影响日常出行",
    "已持续数日，周边居民多次投诉",
    "网格员巡查发现，需相关部门到场",
    "存在一定安全隐患，请及时处置",
    "夜间尤为明显，影响周边休息",
    "位置靠近学校，请优先安排",
    "此前曾反映过，问题仍未解决",
)


# ---------------------------------------------------------------------------- the city


@dataclass(frozen=True)
class CountyCopy:
    """One county of the benchmark city: a translated copy of a sample county."""

    code: str
    source: str
    name: str
    dx: float
    dy: float


@dataclass(frozen=True)
class CityPlan:
    """The counties of the city and synth's grids-per-village range."""

    counties: tuple[CountyCopy, ...]
    min_grids: int
    max_grids: int

    @property
    def key(self) -> str:
        return f"city-v{LAYOUT_VERSION}-{len(self.counties)}c-{self.min_grids}-{self.max_grids}g"

    @property
    def codes(self) -> list[str]:
        return [c.code for c in self.counties]


def _boundary(code: str) -> Any:
    features = json.loads((GEODATA / code / "boundary.geojson").read_text("utf-8"))["features"]
    return shapely.union_all([shape(f["geometry"]) for f in features])


def _divisions(code: str) -> list[dict[str, str]]:
    with (GEODATA / code / "divisions.csv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def plan_city(grids: int, counties: int | None = None) -> CityPlan:
    """Return the city for about `grids` grids in `counties` counties (default: ~1,250 each)."""
    k = counties or max(1, round(grids / GRIDS_PER_COUNTY))
    sources = [SOURCE_COUNTIES[i % len(SOURCE_COUNTIES)] for i in range(k)]
    villages = {
        c: sum(1 for r in _divisions(c) if r["level"] == "village") for c in SOURCE_COUNTIES
    }
    mean = grids / sum(villages[s] for s in sources)
    low = max(1, math.floor(mean * 0.6))
    high = max(low, round(2 * mean - low))
    bounds = {c: _boundary(c).bounds for c in SOURCE_COUNTIES}
    cell_w = max(b[2] - b[0] for b in bounds.values()) + LAYOUT_GAP_DEG
    cell_h = max(b[3] - b[1] for b in bounds.values()) + LAYOUT_GAP_DEG
    columns = math.ceil(math.sqrt(k))
    names = {
        c: next(r["name"] for r in _divisions(c) if r["level"] == "county") for c in SOURCE_COUNTIES
    }
    copies = []
    for i, src in enumerate(sources):
        row, col = divmod(i, columns)
        b = bounds[src]
        dx = LAYOUT_ORIGIN[0] + col * cell_w - b[0]
        dy = LAYOUT_ORIGIN[1] + row * cell_h - b[1]
        code = f"{CITY}{i + 1:02d}"
        copies.append(CountyCopy(code, src, f"{names[src]}（合成{i + 1:02d}）", dx, dy))
    return CityPlan(tuple(copies), low, high)


@contextmanager
def _grids_per_village(low: int, high: int) -> Iterator[None]:
    saved = synth.MIN_GRIDS, synth.MAX_GRIDS
    synth.MIN_GRIDS, synth.MAX_GRIDS = low, high
    try:
        yield
    finally:
        synth.MIN_GRIDS, synth.MAX_GRIDS = saved


def _renumber(code: str, old: str, new: str) -> str:
    return new + code[len(old) :] if code.startswith(old) else code


def build_geodata(plan: CityPlan, cache: Path, log: Any = print) -> Path:
    """Generate (or reuse) the city's geodata; return the folder holding <county>/ folders."""
    root = cache / plan.key
    done = root / "done.json"
    if done.exists():
        return root
    src_root = root / "src"
    for county in plan.counties:
        src = src_root / county.code
        src.mkdir(parents=True, exist_ok=True)
        moved = shapely.transform(
            _boundary(county.source), lambda c, d=county: c + np.array([d.dx, d.dy])
        )
        feature = {
            "type": "Feature",
            "properties": {"code": county.code, "name": county.name, "synthetic": True},
            "geometry": mapping(moved),
        }
        (src / "boundary.geojson").write_text(
            json.dumps({"type": "FeatureCollection", "features": [feature]}, ensure_ascii=False),
            encoding="utf-8",
        )
        rows = _divisions(county.source)
        with (src / "divisions.csv").open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\r\n")
            writer.writerow(["level", "code", "parent_code", "name"])
            for r in rows:
                if r["level"] == "county":
                    writer.writerow(["county", county.code, f"{CITY}00", county.name])
                else:
                    writer.writerow(
                        [
                            r["level"],
                            _renumber(r["code"], county.source, county.code),
                            _renumber(r["parent_code"], county.source, county.code),
                            r["name"],
                        ]
                    )
    with _grids_per_village(plan.min_grids, plan.max_grids):
        for county in plan.counties:
            started = time.perf_counter()
            summary = synth.generate(county.code, src_root / county.code, root / county.code)
            log(
                f"  geodata {county.code} ({county.name}): {summary['towns']} towns, "
                f"{summary['villages']} villages, {summary['grids']} grids "
                f"in {time.perf_counter() - started:.1f} s"
            )
    done.write_text(json.dumps({"plan": plan.key}), encoding="utf-8")
    return root


# ---------------------------------------------------------------------------- grids


@dataclass
class CityGrids:
    """Every grid of the city, sorted by code, with its region codes and geometry."""

    codes: np.ndarray
    names: list[str]
    geoms: np.ndarray
    village: np.ndarray
    town: np.ndarray
    county: np.ndarray
    community: np.ndarray
    """True for grids of a 社区 (village code suffix below 200: urban)."""

    def __len__(self) -> int:
        return len(self.codes)


def read_grids(plan: CityPlan, geodata: Path) -> CityGrids:
    """Read the grids of every county of the city from its geodata folder."""
    rows: list[tuple[str, str, Any]] = []
    for county in plan.counties:
        path = geodata / county.code / "grids.geojson"
        for f in json.loads(path.read_text("utf-8"))["features"]:
            rows.append((f["properties"]["code"], f["properties"]["name"], shape(f["geometry"])))
    rows.sort(key=lambda r: r[0])
    codes = np.array([r[0] for r in rows])
    village = np.array([c[:12] for c in codes])
    return CityGrids(
        codes=codes,
        names=[r[1] for r in rows],
        geoms=np.array([r[2] for r in rows], dtype=object),
        village=village,
        town=np.array([c[:9] for c in codes]),
        county=np.array([c[:6] for c in codes]),
        community=np.array([int(v[9:12]) < 200 for v in village]),
    )


# ---------------------------------------------------------------------------- database


@dataclass
class Catalog:
    """The matters as the event generator needs them (read from a loaded database)."""

    codes: list[str]
    names: list[str]
    county_level: np.ndarray
    """True if the matter is dispatched by the county centre (handling_level county)."""
    lead_kind: list[str]
    town_kind: np.ndarray
    """True if the lead kind is a town unit (<town>-<kind>), else a county one."""
    self_handle: np.ndarray
    limit_h: np.ndarray
    """[matter, urgency, stage(accept, dispatch, handle, verify)] in natural hours."""


_UNIT_HOURS = {"hours": 1.0, "working_hours": 3.0, "working_days": 24 * 1.4}


def read_catalog(db: Database) -> Catalog:
    """Read matters, their time limits and the town department kinds from the database."""
    from gridgov.catalog import _departments_data

    town_kinds = {e["kind"] for e in _departments_data(None)["town"]}
    with db.engine.connect() as conn:
        matters = conn.execute(
            text(
                "SELECT code, name, handling_level, lead_kind, self_handle_allowed FROM matters "
                "WHERE active ORDER BY code"
            )
        ).all()
        limits = conn.execute(
            text("SELECT matter_code, urgency, stage, amount, unit FROM matter_time_limits")
        ).all()
    index = {m[0]: i for i, m in enumerate(matters)}
    stages = ("accept", "dispatch", "handle", "verify")
    limit_h = np.zeros((len(matters), len(URGENCIES), len(stages)))
    limit_h[:] = [1.0, 2.0, 5 * 24 * 1.4, 24 * 1.4]  # fallback: 1 h, 2 h, 5 wd, 1 wd
    for code, urgency, stage, amount, unit in limits:
        if code in index and urgency in URGENCIES and stage in stages:
            hours = float(amount) * _UNIT_HOURS.get(unit, 1.0)
            limit_h[index[code], URGENCIES.index(urgency), stages.index(stage)] = hours
    return Catalog(
        codes=[m[0] for m in matters],
        names=[m[1] for m in matters],
        county_level=np.array([m[2] == "county" for m in matters]),
        lead_kind=[m[3] for m in matters],
        town_kind=np.array([m[3] in town_kinds for m in matters]),
        self_handle=np.array([bool(m[4]) for m in matters]),
        limit_h=limit_h,
    )


def load_city(db: Database, plan: CityPlan, geodata: Path, log: Any = print) -> dict[str, int]:
    """Migrate, seed the catalog, load every county's regions and grids, add the accounts."""
    from gridgov import catalog
    from gridgov.auth import hash_password
    from gridgov.bootstrap import init_database
    from gridgov.geo.sample import load_sample_county
    from gridgov.models import Grid, GridSet, Region, User, UserGrid

    started = time.perf_counter()
    init_database(db, ())
    with db.session() as session:
        for code in plan.codes:
            load_sample_county(session, code, geodata=geodata)
            catalog.load_departments(session, code)
    password = hash_password(PASSWORD)
    with db.session() as session:
        towns = session.execute(
            select(Region.code, Region.name).where(Region.level == "town").order_by(Region.code)
        ).all()
        grids = session.execute(
            select(Grid.code, Grid.village_code)
            .join(GridSet, GridSet.id == Grid.grid_set_id)
            .where(GridSet.active.is_(True))
            .order_by(Grid.code)
        ).all()
        users: list[dict[str, Any]] = []
        for c in plan.counties:
            users.append(_user(f"ld{c.code}", f"{c.name}领导", "leader", c.code, password))
            users.append(
                _user(f"ddy{c.code}", f"{c.name}调度员", "county_dispatcher", c.code, password)
            )
        for code, name in towns:
            users.append(_user(f"zzzx{code}", f"{name}综治中心", "town_operator", code, password))
        for code, village in grids:
            users.append(
                _user(f"wgy{code}", f"网格员{code[-6:]}", "grid_worker", village, password)
            )
        session.execute(insert(User), users)
        ids = dict(session.execute(select(User.username, User.id)).all())
        session.execute(
            insert(UserGrid),
            [{"user_id": ids[f"wgy{code}"], "grid_code": code} for code, _ in grids],
        )
    log(
        f"  regions, {len(grids):,} grids, departments and {len(users):,} accounts "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return {"grids": len(grids), "towns": len(towns), "users": len(users)}


def _user(username: str, display: str, role: str, region: str, password: str) -> dict[str, Any]:
    return {
        "username": username,
        "display_name": display,
        "password_hash": password,
        "role": role,
        "region_code": region,
    }


@dataclass
class Ids:
    """What the event rows reference, by code, in one database."""

    grid: dict[str, int]
    user: dict[str, int]
    department: dict[str, int]


def read_ids(db: Database) -> Ids:
    with db.engine.connect() as conn:
        grid = dict(
            conn.execute(
                text(
                    "SELECT g.code, g.id FROM grids g JOIN grid_sets s ON s.id = g.grid_set_id "
                    "WHERE s.active"
                )
            ).all()
        )
        user = dict(conn.execute(text("SELECT username, id FROM users")).all())
        department = dict(conn.execute(text("SELECT code, id FROM departments")).all())
    return Ids(grid, user, department)


# ---------------------------------------------------------------------------- events

US = 1_000_000
HOUR = 3600 * US
DAY = 24 * HOUR
SHANGHAI_US = 8 * HOUR

STATES_OPEN = ("reported", "accepted", "dispatched", "handling", "returned", "handled", "verified")


@dataclass
class EventSet:
    """Generated events, sorted by report time (row i gets id i + 1); DB-independent."""

    n: int
    end_us: int
    grid: np.ndarray
    lng: np.ndarray
    lat: np.ndarray
    matter: np.ndarray
    urgency: np.ndarray
    source: np.ndarray
    state: np.ndarray
    times: dict[str, np.ndarray]
    """reported, due, accepted, dispatched, handled, verified, closed, ended, shelved,
    stage_started, stage_due: µs since the epoch (UTC), -1 = NULL."""
    stage: np.ndarray
    centre_county: np.ndarray
    self_handled: np.ndarray
    overdue: np.ndarray
    extension_count: np.ndarray
    rework_count: np.ndarray
    return_count: np.ndarray
    merged_into: np.ndarray
    """Row index of the target (−1 = none)."""
    satisfaction: np.ndarray
    version: np.ndarray
    phrase: np.ndarray
    accuracy: np.ndarray
    returned_by_other: np.ndarray
    """For returned events: the index of another matter whose lead unit returned it."""
    codes: list[str] = field(default_factory=list)
    counters: list[tuple[str, str, int]] = field(default_factory=list)


def _sample_points(
    grids: CityGrids, grid_idx: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, int]:
    """Return uniform points inside each event's grid, and how many needed a fallback."""
    tris = shapely.constrained_delaunay_triangles(grids.geoms)
    parts, owner = shapely.get_parts(tris, return_index=True)
    areas = shapely.area(parts)
    order = np.lexsort((np.arange(len(parts)), owner))
    parts, owner, areas = parts[order], owner[order], areas[order]
    cum = np.cumsum(areas)
    total = np.zeros(len(grids))
    np.add.at(total, owner, areas)
    first = np.searchsorted(owner, np.arange(len(grids)))
    start = np.where(first > 0, cum[np.maximum(first - 1, 0)], 0.0)
    u = start[grid_idx] + rng.random(len(grid_idx)) * total[grid_idx]
    tri = np.minimum(np.searchsorted(cum, u, side="right"), len(parts) - 1)
    coords = shapely.get_coordinates(parts).reshape(len(parts), 4, 2)[:, :3, :]
    a, b, c = coords[tri, 0], coords[tri, 1], coords[tri, 2]
    r1, r2 = rng.random(len(grid_idx)), rng.random(len(grid_idx))
    flip = r1 + r2 > 1
    r1[flip], r2[flip] = 1 - r1[flip], 1 - r2[flip]
    pts = a + r1[:, None] * (b - a) + r2[:, None] * (c - a)
    lng, lat = pts[:, 0].copy(), pts[:, 1].copy()
    # Check: each point must lie in its grid (and only there). Fix the rare exception.
    tree = STRtree(grids.geoms)
    found = np.full(len(lng), -1)
    p_idx, g_idx = tree.query(shapely.points(lng, lat), predicate="within")
    found[p_idx] = g_idx
    bad = np.flatnonzero(found != grid_idx)
    if len(bad):
        inner = shapely.get_coordinates(shapely.point_on_surface(grids.geoms[grid_idx[bad]]))
        lng[bad], lat[bad] = inner[:, 0], inner[:, 1]
    return lng, lat, len(bad)


def _report_times(n: int, years: float, end_us: int, rng: np.random.Generator) -> np.ndarray:
    """Return n report instants (µs, UTC) over `years` before end: growth, weekdays, hours."""
    days = round(years * 365)
    end_local_day = (end_us + SHANGHAI_US) // DAY
    first_day = end_local_day - days + 1
    day_numbers = np.arange(first_day, end_local_day + 1)
    weekday = (day_numbers + 3) % 7  # 1970-01-01 was a Thursday (3); Monday = 0
    weights = (1 + 0.3 * (day_numbers - first_day) / 365.0) * np.where(weekday >= 5, 0.6, 1.0)
    day = rng.choice(day_numbers, size=n, p=weights / weights.sum())
    hour_w = np.array(
        [1, 1, 1, 1, 1, 2, 4, 8, 12, 14, 14, 12, 8, 10, 13, 13, 12, 10, 7, 6, 5, 4, 2, 1], float
    )
    hour = rng.choice(24, size=n, p=hour_w / hour_w.sum())
    within = (rng.random(n) * HOUR).astype(np.int64)
    local = day * DAY + hour * HOUR + within
    utc = local - SHANGHAI_US
    # Hours of the last day after `end` have not happened: move them back a day.
    late = utc >= end_us
    utc[late] -= DAY * ((utc[late] - end_us) // DAY + 1)
    return utc


def generate_events(
    grids: CityGrids,
    catalog: Catalog,
    n: int,
    years: float,
    end: datetime,
    seed: int,
    log: Any = print,
) -> EventSet:
    """Generate n events in the city's grids (see the module docstring for the mix)."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    end_us = int(end.timestamp()) * US
    g = len(grids)

    weights = rng.lognormal(0.0, 0.9, g) * np.where(grids.community, 1.8, 1.0)
    grid_idx = rng.choice(g, size=n, p=weights / weights.sum())
    lng, lat, fixed = _sample_points(grids, grid_idx, rng)
    reported = _report_times(n, years, end_us, rng)

    m = len(catalog.codes)
    matter_w = 1.0 / (np.arange(m) + 3.0)
    matter = rng.permutation(m)[rng.choice(m, size=n, p=matter_w / matter_w.sum())]
    urgency = rng.choice(len(URGENCIES), size=n, p=URGENCY_P)
    source = rng.choice(len(SOURCES), size=n, p=SOURCE_P)
    is_worker = source == SOURCES.index("grid_worker")
    centre_county = (source == SOURCES.index("hotline")) | catalog.county_level[matter]

    # Fates.
    u = rng.random(n)
    edges = np.cumsum([0.015, 0.025, 0.008, 0.010, 0.004, 0.003])
    fate = np.searchsorted(edges, u, side="right")  # 0 rejected … 5 stuck, 6 normal
    REJECTED, WITHDRAWN, VOIDED, MERGED, SHELVED, STUCK, NORMAL = range(7)
    self_handled = (
        (fate == NORMAL) & is_worker & catalog.self_handle[matter] & (rng.random(n) < 0.5)
    )

    # Limits and durations (µs).
    limits = catalog.limit_h[matter, urgency] * HOUR  # [n, 4]
    total_limit = limits.sum(axis=1)
    due = reported + total_limit.astype(np.int64)
    elapsed = total_limit * rng.lognormal(math.log(0.5), 0.55, n)
    share = rng.dirichlet([1.0, 1.5, 14.0, 3.0, 1.5], n)  # accept, dispatch, handle, verify, close
    step = (elapsed[:, None] * share).astype(np.int64) + 60 * US
    step[fate == STUCK, 2] *= 40
    extended = (rng.random(n) < 0.03) & ~self_handled
    due = due + np.where(extended, 3 * DAY, 0)

    accepted = reported + step[:, 0]
    dispatched = accepted + step[:, 1]
    handled = dispatched + step[:, 2]
    self_step = (rng.exponential(0.5, n) * HOUR).astype(np.int64) + 60 * US
    handled = np.where(self_handled, reported + self_step, handled)
    verified = handled + step[:, 3]
    closed = verified + step[:, 4]
    terminal_at = reported + step[:, 0] + (rng.exponential(6.0, n) * HOUR).astype(np.int64)
    shelved_at = dispatched + (step[:, 2] * rng.uniform(0.2, 0.8, n)).astype(np.int64)

    # Merged events: into the previous event of the same grid (else rejected).
    by_grid = np.lexsort((reported, grid_idx))
    previous = np.full(n, -1)
    same = grid_idx[by_grid[1:]] == grid_idx[by_grid[:-1]]
    previous[by_grid[1:][same]] = by_grid[:-1][same]
    fate[(fate == MERGED) & (previous < 0)] = REJECTED

    # The state each event has reached by `end`.
    state = np.empty(n, dtype=object)
    t = {
        name: np.full(n, -1, dtype=np.int64)
        for name in (
            "accepted",
            "dispatched",
            "handled",
            "verified",
            "closed",
            "ended",
            "shelved",
            "stage_started",
            "stage_due",
        )
    }
    stage = np.full(n, None, dtype=object)
    before = terminal_at > end_us

    def reach(mask: np.ndarray, name: str, when: np.ndarray) -> np.ndarray:
        """Set t[name] where reached by end; return the mask of rows that reached it."""
        hit = mask & (when <= end_us)
        t[name][hit] = when[hit]
        return hit

    path = (fate == NORMAL) | (fate == STUCK) | (fate == SHELVED)
    loop = path & ~self_handled
    state[:] = "reported"
    acc = reach(loop, "accepted", accepted)
    state[acc] = "accepted"
    dis = reach(acc, "dispatched", dispatched)
    state[dis] = "dispatched"
    sign = dis & (dispatched + step[:, 2] // 10 <= end_us)
    state[sign] = "handling"
    shelve = reach(dis & (fate == SHELVED), "shelved", shelved_at)
    state[shelve] = "shelved"
    han = reach((loop & ~shelve & (fate != SHELVED)) | self_handled, "handled", handled)
    han &= ~shelve
    state[han] = "handled"
    ver = reach(han, "verified", verified)
    state[ver] = "verified"
    clo = reach(ver, "closed", closed)
    state[clo] = "closed"
    t["ended"][clo] = closed[clo]

    # Early ends: rejected (from reported), withdrawn (reported/accepted), voided, merged.
    for f, name in ((REJECTED, "rejected"), (WITHDRAWN, "withdrawn"), (VOIDED, "voided")):
        mask = fate == f
        done = mask & ~before
        state[done] = name
        t["ended"][done] = terminal_at[done]
        if f != REJECTED:  # voided after acceptance; withdrawn half before, half after
            took = mask & (accepted <= end_us)
            if f == WITHDRAWN:
                took &= rng.random(n) < 0.5
            t["accepted"][took] = accepted[took]
            state[mask & before & took] = "accepted"
    merged = (fate == MERGED) & ~before
    state[merged] = "merged"
    t["ended"][merged] = terminal_at[merged]
    merged_into = np.where(merged, previous, -1)

    # Returned: 5 % of the events now with a department go back to their centre.
    at_dept = np.isin(state, ["dispatched", "handling"])
    returned_now = at_dept & (rng.random(n) < 0.05)
    state[returned_now] = "returned"
    returned_before = (t["dispatched"] >= 0) & ~returned_now & (rng.random(n) < 0.03)
    return_count = (returned_now | returned_before).astype(np.int64)
    rework_count = ((t["handled"] >= 0) & ~self_handled & (rng.random(n) < 0.04)).astype(np.int64)
    extension_count = (extended & (t["dispatched"] >= 0)).astype(np.int64)
    due = np.where(extended & (t["dispatched"] < 0), due - 3 * DAY, due)

    # The current stage of open events.
    for states, name, started_at, index in (
        (("reported",), "accept", reported, 0),
        (("accepted", "returned"), "dispatch", np.maximum(t["accepted"], reported), 1),
        (("dispatched", "handling"), "handle", t["dispatched"], 2),
        (("handled",), "verify", t["handled"], 3),
    ):
        mask = np.isin(state, states)
        stage[mask] = name
        t["stage_started"][mask] = started_at[mask]
        t["stage_due"][mask] = started_at[mask] + limits[mask, index].astype(np.int64)

    closed_mask = state == "closed"
    open_mask = np.isin(state, STATES_OPEN)
    shelved_mask = state == "shelved"
    overdue = (
        (closed_mask & (t["closed"] > due))
        | (open_mask & (due < end_us))
        | (shelved_mask & (due < t["shelved"]))
    )
    evaluated = closed_mask & ~is_worker & (rng.random(n) < 0.6)
    satisfaction = np.full(n, None, dtype=object)
    satisfaction[evaluated] = rng.choice(
        ["satisfied", "basically", "unsatisfied"], size=int(evaluated.sum()), p=[0.8, 0.14, 0.06]
    )
    version = 1 + sum((t[k] >= 0).astype(np.int64) for k in ("accepted", "dispatched", "handled"))
    version += (t["verified"] >= 0).astype(np.int64) + (t["ended"] >= 0).astype(np.int64)
    accuracy = np.where(is_worker, np.round(rng.uniform(4, 30, n), 1), np.nan)

    # Sort by report time: ids follow it (row i → id i + 1).
    order = np.argsort(reported, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)

    def o(a: np.ndarray) -> np.ndarray:
        return a[order]

    merged_sorted = o(merged_into)
    merged_sorted = np.where(merged_sorted >= 0, rank[np.maximum(merged_sorted, 0)], -1)
    times = {"reported": o(reported), "due": o(due), **{k: o(v) for k, v in t.items()}}
    events = EventSet(
        n=n,
        end_us=end_us,
        grid=o(grid_idx),
        lng=o(lng),
        lat=o(lat),
        matter=o(matter),
        urgency=o(urgency),
        source=o(source),
        state=o(state),
        times=times,
        stage=o(stage),
        centre_county=o(centre_county),
        self_handled=o(self_handled),
        overdue=o(overdue),
        extension_count=o(extension_count),
        rework_count=o(rework_count),
        return_count=o(return_count),
        merged_into=merged_sorted,
        satisfaction=o(satisfaction),
        version=o(version),
        phrase=rng.integers(0, len(PHRASES), n),
        accuracy=o(accuracy),
        returned_by_other=rng.integers(0, m, n),
    )
    events.codes, events.counters = _codes(events, grids)
    log(
        f"  generated {n:,} events in {time.perf_counter() - started:.1f} s "
        f"({fixed} points moved to their grid's inner point)"
    )
    return events


def _codes(events: EventSet, grids: CityGrids) -> tuple[list[str], list[tuple[str, str, int]]]:
    """Return event codes <county>-<YYYYMMDD>-<nnnn> and the last number per county and day."""
    local_day = (events.times["reported"] + SHANGHAI_US) // DAY
    county = grids.county[events.grid]
    county_id = np.unique(county, return_inverse=True)[1]
    order = np.lexsort((events.times["reported"], local_day, county_id))
    key = county_id[order] * 1_000_000 + local_day[order]
    starts = np.r_[True, key[1:] != key[:-1]]
    group_start = np.maximum.accumulate(np.where(starts, np.arange(len(key)), 0))
    seq = np.empty(len(key), dtype=np.int64)
    seq[order] = np.arange(len(key)) - group_start + 1
    day_str = np.datetime_as_string(local_day.astype("datetime64[D]"), unit="D")
    codes = [
        f"{c}-{d[:4]}{d[5:7]}{d[8:]}-{s:04d}"
        for c, d, s in zip(county.tolist(), day_str.tolist(), seq.tolist(), strict=True)
    ]
    last = order[np.r_[starts[1:], True]]  # the last event of each county and day
    counters = [
        (c, d.replace("-", ""), s)
        for c, d, s in zip(
            county[last].tolist(), day_str[last].tolist(), seq[last].tolist(), strict=True
        )
    ]
    return codes, counters


# ---------------------------------------------------------------------------- rows


def _fmt_times(us: np.ndarray, dialect: str) -> list[str | None]:
    """Format µs instants as the database column stores them (UTC); -1 → None."""
    text_ = np.datetime_as_string(us.astype("datetime64[us]"), unit="us")
    if dialect == "sqlite":  # SQLAlchemy's SQLite DateTime: 'YYYY-MM-DD HH:MM:SS.ffffff'
        chars = text_.astype("U26").view("U1").reshape(-1, 26).copy()
        chars[:, 10] = " "
        text_ = chars.view("U26").ravel()
        out = text_.astype(object)
    else:
        out = np.char.add(text_.astype("U26"), "+00").astype(object)
    out[us < 0] = None
    return out.tolist()


def event_columns(
    events: EventSet,
    grids: CityGrids,
    catalog: Catalog,
    ids: Ids,
    dialect: str,
    rows: slice,
) -> dict[str, list[Any]]:
    """Return the events table's columns for `rows` as lists of database values."""
    sl = rows
    n = len(range(*sl.indices(events.n)))
    grid = events.grid[sl]
    matter = events.matter[sl]
    state = events.state[sl]
    source = events.source[sl]
    county = grids.county[grid]
    town = grids.town[grid]
    codes = grids.codes[grid]
    centre_county = events.centre_county[sl]
    centre_level = np.where(centre_county, "county", "town")
    centre_region = np.where(centre_county, county, town)
    worker_id = np.array([ids.user[f"wgy{c}"] for c in codes.tolist()])
    dispatcher_id = np.array([ids.user[f"ddy{c}"] for c in county.tolist()])
    reporter = np.where(source == SOURCES.index("grid_worker"), worker_id, dispatcher_id)
    town_kind = catalog.town_kind[matter]
    kinds = np.array(catalog.lead_kind, dtype=object)[matter]
    unit_region = np.where(town_kind, town, county)
    dept = np.array(
        [
            ids.department[f"{r}-{k}"]
            for r, k in zip(unit_region.tolist(), kinds.tolist(), strict=True)
        ]
    )
    dispatched = events.times["dispatched"][sl] >= 0
    terminal = np.isin(state, ["closed", "rejected", "voided", "merged", "withdrawn"])

    holder_level = np.full(n, "none", dtype=object)
    holder_region = np.full(n, None, dtype=object)
    holder_dept = np.full(n, None, dtype=object)
    holder_user = np.full(n, None, dtype=object)
    at_centre = np.isin(state, ["reported", "accepted", "returned", "verified", "shelved"])
    holder_level[at_centre] = centre_level[at_centre]
    holder_region[at_centre] = centre_region[at_centre]
    at_dept = np.isin(state, ["dispatched", "handling"])
    holder_level[at_dept] = "department"
    holder_dept[at_dept] = dept[at_dept]
    verifying = state == "handled"
    by_worker = verifying & (source == SOURCES.index("grid_worker")) & ~events.self_handled[sl]
    holder_level[by_worker] = "grid_worker"
    holder_user[by_worker] = worker_id[by_worker]
    by_centre = verifying & ~by_worker
    holder_level[by_centre] = centre_level[by_centre]
    holder_region[by_centre] = centre_region[by_centre]
    assert not (terminal & (holder_level != "none")).any()

    names = np.array(catalog.names, dtype=object)[matter]
    grid_names = [grids.names[i] for i in grid.tolist()]
    description = [
        f"{mn}：{gn}附近，{PHRASES[p]}。"
        for mn, gn, p in zip(names.tolist(), grid_names, events.phrase[sl].tolist(), strict=True)
    ]
    merged_into = events.merged_into[sl]
    accuracy = events.accuracy[sl]

    def nullable(a: np.ndarray, missing: Any) -> list[Any]:
        out = a.astype(object)
        out[a == missing] = None
        return out.tolist()

    is_bool = dialect == "sqlite"
    first = sl.start or 0
    tm = {k: v[sl] for k, v in events.times.items()}
    return {
        "id": list(range(first + 1, first + n + 1)),
        "code": events.codes[sl],
        "source": np.array(SOURCES, dtype=object)[source].tolist(),
        "matter_code": np.array(catalog.codes, dtype=object)[matter].tolist(),
        "urgency": np.array(URGENCIES, dtype=object)[events.urgency[sl]].tolist(),
        "title": names.tolist(),
        "description": description,
        "address": ["" for _ in range(n)],
        "lng": events.lng[sl].tolist(),
        "lat": events.lat[sl].tolist(),
        "input_crs": ["wgs84"] * n,
        "location_accuracy_m": [None if math.isnan(a) else a for a in accuracy.tolist()],
        "grid_id": [ids.grid[c] for c in codes.tolist()],
        "grid_code": codes.tolist(),
        "village_code": grids.village[grid].tolist(),
        "town_code": town.tolist(),
        "county_code": county.tolist(),
        "reporter_id": reporter.tolist(),
        "reporter_name": ["" for _ in range(n)],
        "reporter_phone": ["" for _ in range(n)],
        "client_key": [f"bench-{i}" for i in range(first + 1, first + n + 1)],
        "state": state.tolist(),
        "holder_level": holder_level.tolist(),
        "holder_region_code": holder_region.tolist(),
        "holder_department_id": holder_dept.tolist(),
        "holder_user_id": holder_user.tolist(),
        "dispatcher_level": np.where(dispatched, centre_level, None).tolist(),
        "dispatcher_region_code": np.where(dispatched, centre_region, None).tolist(),
        "lead_department_id": np.where(dispatched, dept, None).tolist(),
        "reported_at": _fmt_times(tm["reported"], dialect),
        "stage": events.stage[sl].tolist(),
        "stage_started_at": _fmt_times(tm["stage_started"], dialect),
        "stage_due_at": _fmt_times(tm["stage_due"], dialect),
        "stage_unit": ["hours" if s is not None else None for s in events.stage[sl].tolist()],
        "due_at": _fmt_times(tm["due"], dialect),
        "accepted_at": _fmt_times(tm["accepted"], dialect),
        "dispatched_at": _fmt_times(tm["dispatched"], dialect),
        "handled_at": _fmt_times(tm["handled"], dialect),
        "verified_at": _fmt_times(tm["verified"], dialect),
        "closed_at": _fmt_times(tm["closed"], dialect),
        "ended_at": _fmt_times(tm["ended"], dialect),
        "shelved_at": _fmt_times(tm["shelved"], dialect),
        "shelved_from": np.where(state == "shelved", "handling", None).tolist(),
        "overdue": _bools(events.overdue[sl], is_bool),
        "extension_count": events.extension_count[sl].tolist(),
        "rework_count": events.rework_count[sl].tolist(),
        "return_count": events.return_count[sl].tolist(),
        "self_handled": _bools(events.self_handled[sl], is_bool),
        "merged_into_id": nullable(merged_into + 1, 0),
        "satisfaction": events.satisfaction[sl].tolist(),
        "version": events.version[sl].tolist(),
    }


def _bools(a: np.ndarray, as_int: bool) -> list[Any]:
    return a.astype(int).tolist() if as_int else a.tolist()


def return_actions(
    events: EventSet, grids: CityGrids, catalog: Catalog, ids: Ids, dialect: str
) -> dict[str, list[Any]]:
    """Return one 'return' action per returned event, naming the department that returned it.

    The stats' department breakdown counts returns from these actions (回退次数).
    """
    rows = np.flatnonzero(events.return_count > 0)
    grid = events.grid[rows]
    county = grids.county[grid]
    town = grids.town[grid]
    other = events.returned_by_other[rows]
    kinds = np.array(catalog.lead_kind, dtype=object)[other]
    region = np.where(catalog.town_kind[other], town, county)
    dept = [
        ids.department[f"{r}-{k}"] for r, k in zip(region.tolist(), kinds.tolist(), strict=True)
    ]
    centre = np.where(events.centre_county[rows], county, town)
    level = np.where(events.centre_county[rows], "county", "town")
    at = events.times["dispatched"][rows] + HOUR
    n = len(rows)
    return {
        "event_id": (rows + 1).tolist(),
        "action": ["return"] * n,
        "actor_id": [None] * n,
        "actor_name": ["部门处置员"] * n,
        "actor_role": ["dept_handler"] * n,
        "at": _fmt_times(at, dialect),
        "from_state": ["handling"] * n,
        "to_state": ["returned"] * n,
        "holder_before": [f"department:{d}" for d in dept],
        "holder_after": [
            f"{lv}:{c}" for lv, c in zip(level.tolist(), centre.tolist(), strict=True)
        ],
        "comment": ["不属于本部门职责，退回重新分拨"] * n,
        "data": ["{}"] * n,
    }


# ---------------------------------------------------------------------------- loading

CHUNK = 100_000


def _table_columns(conn: Any, table: str, dialect: str) -> list[str]:
    if dialect == "sqlite":
        return [r[1] for r in conn.exec_driver_sql(f"PRAGMA table_info({table})")]
    return [
        r[0]
        for r in conn.exec_driver_sql(
            "SELECT column_name FROM information_schema.columns "
            f"WHERE table_name = '{table}' ORDER BY ordinal_position"
        )
    ]


def _chunks(n: int, size: int = CHUNK) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def load_events(
    db: Database,
    events: EventSet,
    grids: CityGrids,
    catalog: Catalog,
    log: Any = print,
) -> dict[str, float]:
    """Bulk-load the events (and return actions, event counters); return timings in seconds."""
    ids = read_ids(db)
    dialect = db.dialect
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if dialect == "postgresql":
        _load_postgresql(db, events, grids, catalog, ids, timings)
    else:
        _load_sqlite(db, events, grids, catalog, ids, timings)
    timings["total"] = time.perf_counter() - started
    log(
        f"  loaded {events.n:,} events into {dialect} in {timings['total']:.1f} s "
        f"(rows {timings['rows']:.1f} s, {events.n / timings['rows']:,.0f} rows/s; "
        f"indexes {timings['indexes']:.1f} s; checks {timings['checks']:.1f} s)"
    )
    return timings


def _pg_text(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value)


def _copy(cursor: Any, table: str, columns: Sequence[str], data: dict[str, list[Any]]) -> None:
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        buffer = io.StringIO()
        for row in zip(*(data[c] for c in columns), strict=True):
            buffer.write("\t".join(_pg_text(v) for v in row))
            buffer.write("\n")
        copy.write(buffer.getvalue())


def _check_columns(table_columns: list[str], data_columns: Sequence[str]) -> list[str]:
    missing = sorted(set(data_columns) - set(table_columns))
    if missing:
        raise SystemExit(f"events table has no columns {missing}: the generator is out of date")
    return [c for c in table_columns if c in data_columns]


def _load_postgresql(
    db: Database,
    events: EventSet,
    grids: CityGrids,
    catalog: Catalog,
    ids: Ids,
    timings: dict[str, float],
) -> None:
    with db.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        indexes = conn.exec_driver_sql(
            "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE x.indrelid = 'events'::regclass "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)"
        ).all()
        for name, _ in indexes:
            conn.exec_driver_sql(f'DROP INDEX "{name}"')
        columns: list[str] | None = None
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        started = time.perf_counter()
        # Foreign keys are checked once after the load (below), not per row.
        cursor.execute("SET session_replication_role = replica")
        for sl in _chunks(events.n):
            data = event_columns(events, grids, catalog, ids, "postgresql", sl)
            if columns is None:
                columns = _check_columns(_table_columns(conn, "events", "postgresql"), list(data))
            _copy(cursor, "events", columns, data)
        actions = return_actions(events, grids, catalog, ids, "postgresql")
        _copy(cursor, "event_actions", list(actions), actions)
        counters = {
            "county_code": [c[0] for c in events.counters],
            "day": [c[1] for c in events.counters],
            "last": [c[2] for c in events.counters],
        }
        _copy(cursor, "event_counters", list(counters), counters)
        cursor.execute("SET session_replication_role = DEFAULT")
        timings["rows"] = time.perf_counter() - started
        started = time.perf_counter()
        for _, ddl in indexes:
            conn.exec_driver_sql(ddl)
        for table in ("events", "event_actions"):
            conn.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT coalesce(max(id), 1) FROM {table}))"
            )
        conn.exec_driver_sql("VACUUM ANALYZE events")
        conn.exec_driver_sql("VACUUM ANALYZE event_actions")
        timings["indexes"] = time.perf_counter() - started
        started = time.perf_counter()
        fks = conn.exec_driver_sql(
            "SELECT c.conrelid::regclass::text, a.attname, c.confrelid::regclass::text, "
            "af.attname FROM pg_constraint c "
            "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
            "JOIN pg_attribute af ON af.attrelid = c.confrelid AND af.attnum = c.confkey[1] "
            "WHERE c.contype = 'f' AND c.conrelid IN ('events'::regclass, "
            "'event_actions'::regclass)"
        ).all()
        for table, column, ref, ref_column in fks:
            orphans = conn.exec_driver_sql(
                f"SELECT count(*) FROM {table} t WHERE t.{column} IS NOT NULL AND NOT EXISTS "
                f"(SELECT 1 FROM {ref} r WHERE r.{ref_column} = t.{column})"
            ).scalar()
            if orphans:
                raise SystemExit(f"{orphans} rows of {table}.{column} reference no {ref} row")
        timings["checks"] = time.perf_counter() - started


def _load_sqlite(
    db: Database,
    events: EventSet,
    grids: CityGrids,
    catalog: Catalog,
    ids: Ids,
    timings: dict[str, float],
) -> None:
    path = db.engine.url.database
    assert path
    db.engine.dispose()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-262144")  # 256 MiB during the load
        indexes = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
            "AND tbl_name = 'events' AND sql IS NOT NULL"
        ).fetchall()
        table_columns = [r[1] for r in conn.execute("PRAGMA table_info(events)")]
        started = time.perf_counter()
        conn.execute("BEGIN")
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        for sl in _chunks(events.n):
            data = event_columns(events, grids, catalog, ids, "sqlite", sl)
            columns = _check_columns(table_columns, list(data))
            conn.executemany(
                f"INSERT INTO events ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' for _ in columns)})",
                zip(*(data[c] for c in columns), strict=True),
            )
        for table, data in (
            ("event_actions", return_actions(events, grids, catalog, ids, "sqlite")),
            (
                "event_counters",
                {
                    "county_code": [c[0] for c in events.counters],
                    "day": [c[1] for c in events.counters],
                    "last": [c[2] for c in events.counters],
                },
            ),
        ):
            conn.executemany(
                f"INSERT INTO {table} ({', '.join(data)}) VALUES ({', '.join('?' for _ in data)})",
                zip(*data.values(), strict=True),
            )
        conn.execute("COMMIT")
        timings["rows"] = time.perf_counter() - started
        started = time.perf_counter()
        conn.execute("BEGIN")
        for _, ddl in indexes:
            conn.execute(ddl)
        conn.execute("COMMIT")
        timings["indexes"] = time.perf_counter() - started
        started = time.perf_counter()
        orphans = conn.execute("PRAGMA foreign_key_check(events)").fetchall()
        orphans += conn.execute("PRAGMA foreign_key_check(event_actions)").fetchall()
        if orphans:
            raise SystemExit(f"{len(orphans)} orphaned rows after the load, e.g. {orphans[:3]}")
        timings["checks"] = time.perf_counter() - started
    finally:
        conn.close()


def digest(events: EventSet) -> str:
    """Return a short fingerprint of the events: same seed, sizes and end → same digest.

    The end (the run's hour) matters: weekdays and the states reached depend on it.
    """
    h = hashlib.sha256()
    for a in (events.grid, events.lng, events.lat, events.matter, events.times["reported"]):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update("".join(events.state.tolist()).encode())
    return h.hexdigest()[:12]


def now_hour() -> datetime:
    """Return the current instant rounded down to the hour (the dataset's end)."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
