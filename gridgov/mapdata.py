"""The 民情地图's data: GeoJSON by bounding box and zoom, never the whole county at once.

- `areas`: towns, villages or grids (by zoom) inside a bounding box, simplified for the zoom
  (cached per grid set and zoom), each carrying the KPIs of `gridgov.stats.compute` grouped
  by that level for the filter — the same numbers as GET /api/v1/stats?group_by=<level>.
- `events`: server-side clusters (events bucketed in SQL into cells of a zoom-dependent size)
  at low zoom; individual points, at most MAX_POINTS, only when zoomed in.
- `feed`: events reported, or turned overdue, since a moment (the command-centre live mode).

Everything is filtered by the caller's jurisdiction (`access.visible` for events, the region
code prefix for polygons). Data is stored in WGS84; with crs=gcj02 (a GCJ-02 basemap) the
bounding box is read in GCJ-02 and every coordinate returned is converted with gridgov.geo.crs.
No Flask here: the web layer passes the query parameters in and sends the dicts out.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import ColumnElement, Integer, and_, case, cast, func, literal_column, or_, select
from sqlalchemy.orm import Session

from gridgov import stats
from gridgov.access import visible
from gridgov.background import Periodic, start_periodic
from gridgov.config import Settings
from gridgov.db import Database
from gridgov.errors import Unprocessable
from gridgov.eventdata import event_conditions
from gridgov.geo.crs import area_m2, convert_array
from gridgov.geo.geocoder import grid_catalog
from gridgov.models import (
    STATE_LABELS,
    Department,
    Event,
    EventState,
    Grid,
    GridSet,
    Matter,
    MatterCategory,
    Region,
    Source,
    User,
)
from gridgov.regions import geodata_version
from gridgov.workflow.worktime import SHANGHAI

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------
# Levels, zooms and limits

LEVELS = ("town", "village", "grid")
LEVEL_LABELS = {"county": "县", "town": "镇（街道）", "village": "村（社区）", "grid": "网格"}
LEVEL_ZOOMS: dict[str, tuple[int, int]] = {"town": (0, 11), "village": (12, 13), "grid": (14, 22)}
"""The zooms at which each level is drawn: a county fills the screen at 10–11, a town at
12–13, a village at 14–15 (陆河县: towns ~15 km, villages ~3 km, grids ~1 km across)."""
POINTS_MIN_ZOOM = 14
"""Below this zoom events always arrive as server-side clusters."""
MAX_POINTS = 2000
"""At most this many individual events per response; more in the box → clusters."""
MAX_CLUSTERS = 2000
CLUSTER_PX = 60
"""The side of a cluster cell, in screen pixels at the requested zoom."""
MAX_CELLS_ACROSS = 48
"""A cell is at least 1/48 of the box's width, whatever zoom is claimed."""
MAX_ZOOM = 22
FEED_LIMIT = 50
FEED_DEFAULT = timedelta(hours=24)
FEED_MAX = timedelta(days=7)
CRSES = ("wgs84", "gcj02")


def level_for_zoom(zoom: int) -> str:
    """Return the level drawn at `zoom`: town, village or grid."""
    for level in LEVELS:
        low, high = LEVEL_ZOOMS[level]
        if low <= zoom <= high:
            return level
    return "grid"


# ---------------------------------------------------------------------------
# Colours: the choropleth metrics and the event states


@dataclass(frozen=True)
class Metric:
    """A KPI the polygons can be coloured by (its name and definition come from stats)."""

    key: str
    colors: tuple[str, ...]
    """Five colours, low value → high value."""

    @property
    def kpi(self) -> stats.Count | stats.Rate:
        return stats.KPIS[self.key]

    @property
    def is_rate(self) -> bool:
        return isinstance(self.kpi, stats.Rate)


_MORE_IS_WORSE = ("#fee8c8", "#fdbb84", "#fc8d59", "#e34a33", "#b30000")
_MORE_IS_BETTER = ("#d7301f", "#fc8d59", "#fdcc8a", "#a6d96a", "#1a9641")
NO_DATA_COLOR = "#eef1f4"

METRICS: dict[str, Metric] = {
    m.key: m
    for m in (
        Metric("received", _MORE_IS_WORSE),
        Metric("open", _MORE_IS_WORSE),
        Metric("overdue", _MORE_IS_WORSE),
        Metric("closure_rate", _MORE_IS_BETTER),
        Metric("overdue_rate", _MORE_IS_WORSE),
    )
}
DEFAULT_METRIC = "received"
AREA_KPIS = (
    "received",
    "closed",
    "open",
    "overdue",
    "overdue_open",
    "closure_rate",
    "overdue_rate",
    "on_time_rate",
    "satisfaction_rate",
)
"""The KPIs every polygon carries (popups, tooltips); the metric's value is `value`."""
TOTAL_KPIS = ("received", "closed", "open", "overdue", "closure_rate", "overdue_rate")
"""The totals the map page shows beside the map (templates/map/index.html)."""


@dataclass(frozen=True)
class StateGroup:
    """Event states shown in one colour and toggled together on the map."""

    key: str
    label: str
    color: str
    states: tuple[EventState, ...]


_S = EventState
STATE_GROUPS: tuple[StateGroup, ...] = (
    StateGroup("pending", "待受理", "#2563eb", (_S.REPORTED,)),
    StateGroup("dispatching", "待分拨／签收", "#7c3aed", (_S.ACCEPTED, _S.DISPATCHED, _S.RETURNED)),
    StateGroup("handling", "处置中", "#ea580c", (_S.HANDLING,)),
    StateGroup("checking", "待核查／结案", "#0891b2", (_S.HANDLED, _S.VERIFIED)),
    StateGroup("shelved", "挂账", "#64748b", (_S.SHELVED,)),
    StateGroup("closed", "已办结", "#16a34a", (_S.CLOSED,)),
    StateGroup("ended", "已终止", "#a8a29e", (_S.REJECTED, _S.VOIDED, _S.MERGED, _S.WITHDRAWN)),
)
OVERDUE_COLOR = "#dc2626"
STATE_GROUP_OF = {s.value: g for g in STATE_GROUPS for s in g.states}


def legend_config() -> dict[str, Any]:
    """Return what the page needs to draw legends and layer toggles (no data)."""
    return {
        "metrics": [
            {
                "key": m.key,
                "name": m.kpi.name,
                "definition": m.kpi.definition,
                "rate": m.is_rate,
            }
            for m in METRICS.values()
        ],
        "state_groups": [
            {
                "key": g.key,
                "label": g.label,
                "color": g.color,
                "states": [s.value for s in g.states],
                "title": "、".join(STATE_LABELS[s] for s in g.states),
            }
            for g in STATE_GROUPS
        ],
        "overdue_color": OVERDUE_COLOR,
        "no_data_color": NO_DATA_COLOR,
        "levels": {k: {"label": LEVEL_LABELS[k], "zooms": LEVEL_ZOOMS[k]} for k in LEVELS},
        "points_min_zoom": POINTS_MIN_ZOOM,
        "max_points": MAX_POINTS,
    }


def _nice_step(raw: float) -> int:
    """Return the smallest 1, 2 or 5 × 10^k that is ≥ raw (at least 1)."""
    if raw <= 1:
        return 1
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * power >= raw:
            return int(m * power)
    return int(10 * power)  # pragma: no cover


def legend(metric: Metric, values: Sequence[float | None]) -> list[dict[str, Any]]:
    """Return the legend classes [{from, to, color, label}] for `values` of `metric`.

    Rates use fixed fifths of 0–100 %; counts equal steps of a round size up to the
    largest value of the level in the jurisdiction (so the legend holds still while panning).
    A class `to` is inclusive; the last entry is "no events" (value None or 0 counts).
    """
    classes: list[dict[str, Any]] = []
    if metric.is_rate:
        for i, color in enumerate(metric.colors):
            low, high = i * 0.2, (i + 1) * 0.2
            label = f"{round(low * 100)}%–{round(high * 100)}%"
            classes.append({"from": low, "to": high, "color": color, "label": label})
    else:
        top = max((v for v in values if v), default=0)
        step = _nice_step(top / len(metric.colors))
        for i, color in enumerate(metric.colors):
            low, high = i * step + 1, (i + 1) * step
            label = f"{low}" if low == high else f"{low}–{high}"
            classes.append({"from": low, "to": high, "color": color, "label": label})
    classes.append({"from": None, "to": None, "color": NO_DATA_COLOR, "label": "无事件"})
    return classes


def color_for(metric: Metric, value: float | None, classes: list[dict[str, Any]]) -> str:
    """Return the colour of one polygon's value."""
    if value is None or (not metric.is_rate and not value):
        return NO_DATA_COLOR
    for c in classes[:-1]:
        if value <= c["to"] + 1e-9:
            return str(c["color"])
    return str(classes[-2]["color"])


def display(metric: Metric, value: float | None) -> str:
    """Return a value as the legend and tooltips show it."""
    if value is None:
        return "—"
    if metric.is_rate:
        return f"{value * 100:.1f}%"
    return f"{int(value)}"


# ---------------------------------------------------------------------------
# Query parameters


@dataclass(frozen=True)
class MapQuery:
    """The parameters every map endpoint understands (unused ones are ignored)."""

    date_from: date
    date_to: date
    bbox: tuple[float, float, float, float] | None = None
    zoom: int = 10
    level: str | None = None
    metric: str = DEFAULT_METRIC
    region: str | None = None
    matter: str | None = None
    sources: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    departments: tuple[int | None, ...] = ()
    overdue_only: bool = False
    crs: str = "wgs84"
    since: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def draw_level(self) -> str:
        return self.level or level_for_zoom(self.zoom)

    @property
    def stats_source(self) -> str | None:
        """The source filter of the KPIs: stats takes one source, so only a single choice."""
        return self.sources[0] if len(self.sources) == 1 else None

    def stats_args(self) -> dict[str, Any]:
        """Return the keyword arguments of `stats.compute` for this filter."""
        return {
            "region": self.region,
            "date_from": self.date_from,
            "date_to": self.date_to,
            "matter": self.matter,
            "source": self.stats_source,
        }

    def filter_dict(self) -> dict[str, Any]:
        return {
            "from": self.date_from.isoformat(),
            "to": self.date_to.isoformat(),
            "region": self.region,
            "matter": self.matter,
            "source": list(self.sources),
            "state": list(self.states),
            "category": list(self.categories),
            "department": ["none" if d is None else d for d in self.departments],
            "overdue": self.overdue_only,
            "crs": self.crs,
        }


def _list(args: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = args.get(name) or ""
    return tuple(dict.fromkeys(p.strip() for p in raw.split(",") if p.strip()))


def _bad(message: str, name: str) -> Unprocessable:
    return Unprocessable(message, code="bad_parameter", field=name)


def parse_bbox(raw: str | None) -> tuple[float, float, float, float] | None:
    """Parse "minLng,minLat,maxLng,maxLat"; raise Unprocessable if malformed."""
    if not raw:
        return None
    try:
        parts = [float(p) for p in raw.split(",")]
    except ValueError:
        raise _bad("bbox 应为 最小经度,最小纬度,最大经度,最大纬度", "bbox") from None
    if len(parts) != 4 or not all(math.isfinite(p) for p in parts):
        raise _bad("bbox 应为 最小经度,最小纬度,最大经度,最大纬度", "bbox")
    x1, y1, x2, y2 = parts
    if not (-180 <= x1 <= x2 <= 180 and -90 <= y1 <= y2 <= 90):
        raise _bad("bbox 超出经纬度范围或最小值大于最大值", "bbox")
    return x1, y1, x2, y2


def parse_query(args: Mapping[str, str], now: datetime) -> MapQuery:
    """Turn query parameters into a MapQuery; raise Unprocessable naming the bad one.

    from/to/region/matter follow GET /api/v1/stats (default: the last 30 days); source,
    state, category and department are comma-separated lists ("none" = not dispatched).
    """
    base = stats.parse_args(
        {k: v for k, v in args.items() if k in ("from", "to", "region", "matter")}, now
    )
    zoom_raw = args.get("zoom") or "10"
    try:
        zoom = int(float(zoom_raw))
    except ValueError:
        raise _bad("zoom 应为整数", "zoom") from None
    if not 0 <= zoom <= MAX_ZOOM:
        raise _bad(f"zoom 应在 0–{MAX_ZOOM} 之间", "zoom")
    level = (args.get("level") or "").strip() or None
    if level is not None and level not in LEVELS:
        raise _bad(f"level 应为 {'、'.join(LEVELS)}", "level")
    metric = (args.get("metric") or DEFAULT_METRIC).strip()
    if metric not in METRICS:
        raise _bad(f"未知着色指标：{metric}（可选：{'、'.join(METRICS)}）", "metric")
    sources = _list(args, "source")
    known_sources = {s.value for s in Source}
    if any(s not in known_sources for s in sources):
        raise _bad("未知来源", "source")
    states = _list(args, "state")
    if any(s not in {e.value for e in EventState} for s in states):
        raise _bad("未知状态", "state")
    categories = _list(args, "category")
    if any(not (c.isdigit() and len(c) == 2) for c in categories):
        raise _bad("事项大类代码应为两位数字", "category")
    departments: list[int | None] = []
    for d in _list(args, "department"):
        if d == "none":
            departments.append(None)
        elif d.isdigit():
            departments.append(int(d))
        else:
            raise _bad("部门应为编号或 none", "department")
    crs = (args.get("crs") or "wgs84").strip().lower()
    if crs not in CRSES:
        raise _bad("crs 应为 wgs84 或 gcj02", "crs")
    bbox = parse_bbox(args.get("bbox"))
    if bbox is not None and crs != "wgs84":
        bbox = _bbox_to_wgs84(bbox, crs)
    return MapQuery(
        date_from=base["date_from"],
        date_to=base["date_to"],
        bbox=bbox,
        zoom=zoom,
        level=level,
        metric=metric,
        region=base["region"],
        matter=base["matter"],
        sources=sources,
        states=states,
        categories=categories,
        departments=tuple(departments),
        overdue_only=(args.get("overdue") or "") in ("1", "true", "yes"),
        crs=crs,
        since=(args.get("since") or "").strip() or None,
    )


def check_query(user: User, q: MapQuery) -> None:
    """Raise Unprocessable/Forbidden for a filter stats would refuse (region outside, …)."""
    stats.check_filter(user, group_by=None, **q.stats_args())


# ---------------------------------------------------------------------------
# Coordinates


def _bbox_to_wgs84(
    bbox: tuple[float, float, float, float], crs: str
) -> tuple[float, float, float, float]:
    xs, ys = convert_array(
        [bbox[0], bbox[2], bbox[0], bbox[2]], [bbox[1], bbox[1], bbox[3], bbox[3]], crs, "wgs84"
    )
    return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())


def _to_display(geom: BaseGeometry, crs: str) -> BaseGeometry:
    if crs == "wgs84":
        return geom

    def convert(coords: np.ndarray) -> np.ndarray:
        x, y = convert_array(coords[:, 0], coords[:, 1], "wgs84", crs)
        return np.column_stack([x, y])

    return shapely.transform(geom, convert)


def _point(lng: float, lat: float, crs: str, digits: int = 6) -> list[float]:
    if crs != "wgs84":
        x, y = convert_array([lng], [lat], "wgs84", crs)
        lng, lat = float(x[0]), float(y[0])
    return [round(lng, digits), round(lat, digits)]


def _degrees_per_pixel(zoom: int) -> float:
    return 360.0 / (256 * 2**zoom)


# ---------------------------------------------------------------------------
# Polygons, simplified per zoom and cached per grid set


@dataclass(frozen=True)
class _Shapes:
    """The polygons of one level, simplified for one zoom, in one display CRS."""

    codes: list[str]
    names: list[str]
    parents: list[str]
    bounds: np.ndarray
    geometries: list[dict[str, Any]]
    """GeoJSON geometry dicts (coordinates rounded for the zoom)."""


_CACHE: OrderedDict[tuple[Any, ...], _Shapes] = OrderedDict()
_CACHE_SIZE = 96
"""Entries are per county, level, zoom and display CRS (a county at every zoom is 30)."""
_CACHE_LOCK = threading.Lock()
_SIMPLIFY_ZOOMS = (8, 17)
"""Simplification is per zoom from 8 (coarser is never needed) to 17 (~0.6 m per pixel)."""


def clear_cache() -> None:
    """Forget every cached simplified geometry (after a grid import in the same process)."""
    with _CACHE_LOCK:
        _CACHE.clear()
    with _AREA_LOCK:
        _AREAS.clear()


def _version(session: Session, level: str, county: str = "") -> tuple[Any, ...]:
    """Return what changes when the level's polygons change: the geodata version (bumped by
    every import, in any process), and the grid sets or the region rows themselves."""
    return (geodata_version(session), *_rows_version(session, level, county))


def _rows_version(session: Session, level: str, county: str) -> tuple[Any, ...]:
    if level == "grid":
        rows = session.execute(
            select(GridSet.id, GridSet.grid_count, GridSet.created_at)
            .where(GridSet.active.is_(True), GridSet.county_code.startswith(county))
            .order_by(GridSet.id)
        ).all()
        return tuple((r[0], r[1], str(r[2])) for r in rows)
    row = session.execute(
        select(func.count(), func.min(Region.code), func.max(Region.code)).where(
            Region.level == level, Region.code.startswith(county)
        )
    ).one()
    return tuple(row)


def _load(
    session: Session, level: str, county: str = ""
) -> list[tuple[str, str, str, BaseGeometry]]:
    """Return (code, name, parent code, polygon) of a level, of one county or of all ("")."""
    if level == "grid":
        rows = session.execute(
            select(Grid.code, Grid.name, Grid.village_code, Grid.geom)
            .join(GridSet, GridSet.id == Grid.grid_set_id)
            .where(GridSet.active.is_(True), GridSet.county_code.startswith(county))
            .order_by(Grid.code)
        ).all()
    else:
        rows = session.execute(
            select(Region.code, Region.name, Region.parent_code, Region.geom)
            .where(Region.level == level, Region.geom.is_not(None), Region.code.startswith(county))
            .order_by(Region.code)
        ).all()
    return [(r[0], r[1], r[2] or "", r[3]) for r in rows]


def shapes(
    session: Session, level: str, zoom: int, crs: str = "wgs84", county: str = ""
) -> _Shapes:
    """Return a level's polygons simplified for `zoom`, of one county or of all ("").

    Cached per process, keyed by what changes when the polygons change (the county's
    active grid set, or its region rows): a county's leader loads only that county.
    """
    z = min(max(zoom, _SIMPLIFY_ZOOMS[0]), _SIMPLIFY_ZOOMS[1])
    bind = session.get_bind()
    key = (str(bind.engine.url), level, z, crs, county, _version(session, level, county))
    with _CACHE_LOCK:
        found = _CACHE.get(key)
        if found is not None:
            _CACHE.move_to_end(key)
            return found
    rows = _load(session, level, county)
    tolerance = _degrees_per_pixel(z) * 0.75
    digits = min(7, max(3, math.ceil(-math.log10(tolerance)) + 1))
    geoms = [_to_display(r[3], crs) for r in rows]
    simplified = shapely.simplify(np.array(geoms, dtype=object), tolerance, preserve_topology=True)
    rounded = shapely.set_precision(simplified, 10.0**-digits, mode="pointwise")
    made = _Shapes(
        codes=[r[0] for r in rows],
        names=[r[1] for r in rows],
        parents=[r[2] for r in rows],
        bounds=shapely.bounds(np.array(geoms, dtype=object)) if rows else np.zeros((0, 4)),
        geometries=[json.loads(shapely.to_geojson(g)) for g in rounded],
    )
    with _CACHE_LOCK:
        _CACHE[key] = made
        _BUILT[0] += 1
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return made


_BUILT = [0]
"""How many polygon sets this process has built (`warm` reports the difference)."""


def warm(session: Session, *, crs: str = "wgs84", default_county: str = "") -> int:
    """Build what the first map views will ask for; return how many polygon sets it built.

    Every zoom's polygons of every county with an active grid set, when they all fit in the
    cache (otherwise only `default_county`'s), and the geocoder's grid index. Run at server
    start and then periodically (`start_cache_warmer`): after an import in any process the
    geodata version changes and the next run rebuilds, so no leader waits for it.
    """
    grid_catalog(session)
    counties = list(
        session.scalars(
            select(GridSet.county_code)
            .where(GridSet.active.is_(True))
            .order_by(GridSet.county_code)
        )
    )
    zooms = range(_SIMPLIFY_ZOOMS[0], _SIMPLIFY_ZOOMS[1] + 1)
    if len(counties) * len(zooms) > _CACHE_SIZE:
        counties = [c for c in counties if c == default_county]
    before = _BUILT[0]
    for county in counties:
        for zoom in zooms:
            shapes(session, level_for_zoom(zoom), zoom, crs, county=county)
    return _BUILT[0] - before


def start_cache_warmer(
    app: Flask, interval_s: float = 120, *, first_delay_s: float | None = None
) -> Periodic:
    """Keep this server process's map and geocoder caches warm (`warm`), in the background."""
    db: Database = app.extensions["gridgov.db"]
    settings: Settings = app.extensions["gridgov.settings"]

    def work() -> None:
        with db.session() as session:
            built = warm(session, crs=settings.basemap_crs, default_county=settings.default_county)
        if built:
            log.info("map cache: built %s polygon sets", built)

    return start_periodic(
        "gridgov-map-warmer",
        work,
        interval_s,
        log=log,
        failure="Map cache warming failed",
        first_delay_s=first_delay_s,
    )


_AREA_LOCK = threading.Lock()
_AREAS: dict[tuple[Any, ...], dict[str, float]] = {}


def region_areas_km2(session: Session, level: str) -> dict[str, float]:
    """Return the area in km² of every polygon of a level (cached like the shapes)."""
    key = (str(session.get_bind().engine.url), level, _version(session, level))
    with _AREA_LOCK:
        if key in _AREAS:
            return _AREAS[key]
    areas = {code: area_m2(geom) / 1e6 for code, _, _, geom in _load(session, level)}
    with _AREA_LOCK:
        _AREAS[key] = areas
    return areas


# ---------------------------------------------------------------------------
# Areas


def areas(session: Session, user: User, q: MapQuery, as_of: datetime) -> dict[str, Any]:
    """Return the polygons of the drawn level in the box, with their KPIs, as GeoJSON.

    The KPIs are `stats.compute(group_by=<level>)` for the filter (whole jurisdiction, so
    the legend does not change while panning); polygons are those of the user's
    jurisdiction (and the region filter) whose bounds meet the box.
    """
    check_query(user, q)
    level = q.draw_level
    metric = METRICS[q.metric]
    result = stats.compute(
        session,
        user,
        group_by=level,
        as_of=as_of,
        kpis=(*AREA_KPIS, metric.key, *TOTAL_KPIS),
        **q.stats_args(),
    )
    by_code = {g["key"]: g for g in result["groups"]}
    prefix = q.region or user.region_code  # check_query: a region lies inside the user's
    found = shapes(session, level, q.zoom, q.crs, county=prefix[:6])
    mask = np.array([c.startswith(prefix) for c in found.codes], dtype=bool)
    if q.bbox is not None and len(found.codes):
        x1, y1, x2, y2 = q.bbox
        b = found.bounds
        mask &= (b[:, 0] <= x2) & (b[:, 2] >= x1) & (b[:, 1] <= y2) & (b[:, 3] >= y1)
    in_jurisdiction = [
        by_code.get(c, {}).get(metric.key) for c in found.codes if c.startswith(prefix)
    ]
    classes = legend(metric, in_jurisdiction)
    empty = stats.derive(dict.fromkeys(result["totals"], 0))
    features = []
    for i in np.flatnonzero(mask):
        code = found.codes[i]
        kpis = by_code.get(code) or empty
        value = kpis.get(metric.key)
        features.append(
            {
                "type": "Feature",
                "id": code,
                "geometry": found.geometries[i],
                "properties": {
                    "code": code,
                    "name": found.names[i],
                    "level": level,
                    "parent": found.parents[i],
                    "value": value,
                    "display": display(metric, value),
                    "color": color_for(metric, value, classes),
                    **{k: kpis.get(k) for k in AREA_KPIS},
                },
            }
        )
    return {
        "type": "FeatureCollection",
        "features": features,
        "level": level,
        "level_label": LEVEL_LABELS[level],
        "zoom": q.zoom,
        "metric": {
            "key": metric.key,
            "name": metric.kpi.name,
            "definition": metric.kpi.definition,
            "rate": metric.is_rate,
        },
        "legend": classes,
        "totals": result["totals"],
        "filter": {**q.filter_dict(), "level": level, "as_of": result["filter"]["as_of"]},
    }


# ---------------------------------------------------------------------------
# Events


def _event_where(user: User, q: MapQuery, *, use_period: bool = True) -> list[ColumnElement[bool]]:
    where = [
        visible(user),
        *event_conditions(
            date_from=q.date_from if use_period else None,
            date_to=q.date_to if use_period else None,
            region=q.region,
            matter=q.matter,
            sources=q.sources,
        ),
    ]
    if q.states:
        where.append(Event.state.in_(q.states))
    if q.categories:
        where.append(or_(*(Event.matter_code.startswith(c) for c in q.categories)))
    if q.departments:
        ids = [d for d in q.departments if d is not None]
        clauses = [Event.lead_department_id.in_(ids)] if ids else []
        if None in q.departments:
            clauses.append(Event.lead_department_id.is_(None))
        where.append(or_(*clauses))
    return where


def overdue_open(as_of: datetime, dialect: str) -> ColumnElement[bool]:
    """Return the SQL condition "open and past its deadline" exactly as stats counts it."""
    return stats.overdue_open(stats.Context(as_of=as_of, dialect=dialect))


def late(as_of: datetime, dialect: str) -> ColumnElement[bool]:
    """Return the SQL condition of stats' 逾期 (closed late, or open past the deadline)."""
    return or_(stats.closed_late(), overdue_open(as_of, dialect))


def _bbox_where(bbox: tuple[float, float, float, float] | None) -> list[ColumnElement[bool]]:
    if bbox is None:
        return []
    x1, y1, x2, y2 = bbox
    return [Event.lng >= x1, Event.lng <= x2, Event.lat >= y1, Event.lat <= y2]


def _flag(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return case((condition, 1), else_=0)


@dataclass
class _Names:
    matters: dict[str, str]
    regions: dict[str, str]
    departments: dict[int, str]

    @classmethod
    def load(
        cls, session: Session, matters: set[str], regions: set[str], depts: set[int]
    ) -> _Names:
        def fetch(key: Any, name: Any, wanted: set[Any]) -> dict[Any, str]:
            found: dict[Any, str] = {}
            items = sorted(wanted)
            for i in range(0, len(items), 500):
                found.update(
                    session.execute(select(key, name).where(key.in_(items[i : i + 500]))).all()
                )
            return found

        return cls(
            fetch(Matter.code, Matter.name, matters),
            fetch(Region.code, Region.name, regions),
            fetch(Department.id, Department.name, depts),
        )


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(SHANGHAI).isoformat(timespec="minutes") if value else None


def events(session: Session, user: User, q: MapQuery, as_of: datetime) -> dict[str, Any]:
    """Return the events in the box: clusters at low zoom, points (≤ MAX_POINTS) zoomed in."""
    check_query(user, q)
    where = _event_where(user, q) + _bbox_where(q.bbox)
    dialect = session.get_bind().dialect.name
    if q.overdue_only:
        where.append(overdue_open(as_of, dialect))
    if q.zoom >= POINTS_MIN_ZOOM:
        points = _points(session, where, q, as_of, dialect)
        if points is not None:
            return points
    return _clusters(session, where, q, as_of, dialect)


def _points(
    session: Session, where: list[ColumnElement[bool]], q: MapQuery, as_of: datetime, dialect: str
) -> dict[str, Any] | None:
    # Two steps: the newest matching ids from the jurisdiction's covering index alone (every
    # condition, the box included, is on its columns), then only those rows from the table.
    # In one step SQLite reads the table row of every event of the period to test the box.
    newest = (
        select(Event.id)
        .where(*where)
        .order_by(Event.reported_at.desc(), Event.id.desc())
        .limit(MAX_POINTS + 1)
    )
    rows = session.execute(
        select(
            Event.id,
            Event.code,
            Event.state,
            Event.source,
            Event.matter_code,
            Event.urgency,
            Event.lng,
            Event.lat,
            Event.reported_at,
            Event.due_at,
            Event.closed_at,
            Event.address,
            func.substr(Event.description, 1, 80),
            Event.town_code,
            Event.village_code,
            Event.lead_department_id,
            _flag(overdue_open(as_of, dialect)),
            _flag(late(as_of, dialect)),
        )
        .where(Event.id.in_(newest.scalar_subquery()))
        .order_by(Event.reported_at.desc(), Event.id.desc())
    ).all()
    if len(rows) > MAX_POINTS:
        return None
    names = _Names.load(
        session,
        {r.matter_code for r in rows},
        {r.town_code for r in rows} | {r.village_code for r in rows},
        {r.lead_department_id for r in rows if r.lead_department_id is not None},
    )
    sources = {s.value: s.label for s in Source}
    features = []
    for r in rows:
        group = STATE_GROUP_OF[r.state]
        features.append(
            {
                "type": "Feature",
                "id": r.id,
                "geometry": {"type": "Point", "coordinates": _point(r.lng, r.lat, q.crs)},
                "properties": {
                    "id": r.id,
                    "code": r.code,
                    "state": r.state,
                    "state_label": STATE_LABELS[EventState(r.state)],
                    "group": group.key,
                    "color": group.color,
                    "matter_code": r.matter_code,
                    "matter_name": names.matters.get(r.matter_code, ""),
                    "source_label": sources.get(r.source, r.source),
                    "urgency": r.urgency,
                    "description": r[12] or "",
                    "address": r.address or "",
                    "town_name": names.regions.get(r.town_code, ""),
                    "village_name": names.regions.get(r.village_code, ""),
                    "department": names.departments.get(r.lead_department_id or 0, ""),
                    "reported_at": _iso(r.reported_at),
                    "deadline": _iso(r.due_at),
                    "closed_at": _iso(r.closed_at),
                    "overdue_open": bool(r[16]),
                    "late": bool(r[17]),
                    "url": f"/events/{r.id}",
                },
            }
        )
    return {
        "type": "FeatureCollection",
        "mode": "points",
        "total": len(features),
        "zoom": q.zoom,
        "features": features,
        "filter": q.filter_dict(),
    }


def cell_size(zoom: int, bbox: tuple[float, float, float, float] | None) -> float:
    """Return the side of a cluster cell in degrees for `zoom` (never tiny for a huge box)."""
    size = CLUSTER_PX * _degrees_per_pixel(zoom)
    if bbox is not None:
        size = max(size, (bbox[2] - bbox[0]) / MAX_CELLS_ACROSS)
    return size


def _clusters(
    session: Session, where: list[ColumnElement[bool]], q: MapQuery, as_of: datetime, dialect: str
) -> dict[str, Any]:
    size = cell_size(q.zoom, q.bbox)
    # Literal SQL constants, not bound parameters: the same expression then appears in SELECT
    # and GROUP BY on PostgreSQL. `size` is a float computed here, never user text.
    step: Any = literal_column(repr(float(size)))
    cx = cast(func.round((Event.lng + literal_column("180.0")) / step), Integer)
    cy = cast(func.round((Event.lat + literal_column("90.0")) / step), Integer)
    cells = (
        select(
            cx.label("cx"),
            cy.label("cy"),
            func.count().label("n"),
            func.avg(Event.lng).label("lng"),
            func.avg(Event.lat).label("lat"),
            func.min(Event.lng).label("x1"),
            func.min(Event.lat).label("y1"),
            func.max(Event.lng).label("x2"),
            func.max(Event.lat).label("y2"),
            func.sum(_flag(stats.is_open())).label("open"),
            func.sum(_flag(overdue_open(as_of, dialect))).label("overdue_open"),
        )
        .where(*where)
        .group_by(cx, cy)
        .order_by(func.count().desc())
        .limit(MAX_CLUSTERS + 1)
    )
    rows = session.execute(cells).all()
    truncated = len(rows) > MAX_CLUSTERS
    rows = rows[:MAX_CLUSTERS]
    features: list[dict[str, Any]] = []
    for r in rows:
        lo = _point(r.x1, r.y1, q.crs)
        hi = _point(r.x2, r.y2, q.crs)
        features.append(
            {
                "type": "Feature",
                "id": f"c{r.cx}_{r.cy}",
                "geometry": {"type": "Point", "coordinates": _point(r.lng, r.lat, q.crs)},
                "properties": {
                    "cluster": True,
                    "count": int(r.n),
                    "open": int(r.open or 0),
                    "overdue_open": int(r.overdue_open or 0),
                    "bounds": [lo[0], lo[1], hi[0], hi[1]],
                },
            }
        )
    return {
        "type": "FeatureCollection",
        "mode": "clusters",
        "total": sum(f["properties"]["count"] for f in features),
        "zoom": q.zoom,
        "cell_deg": size,
        "truncated": truncated,
        "features": features,
        "filter": q.filter_dict(),
    }


# ---------------------------------------------------------------------------
# Live feed


def parse_since(session: Session, raw: str | None, now: datetime) -> tuple[datetime, int | None]:
    """Return (instant, event id or None) for since=<ISO instant | event id>.

    An event id means "after that event": new = a larger id, the overdue window starts when
    it was reported. Without `since` the feed covers the last 24 hours; never more than 7 days.
    """
    after_id: int | None = None
    if not raw:
        moment = now - FEED_DEFAULT
    elif raw.isdigit():
        after_id = int(raw)
        reported = session.scalar(select(Event.reported_at).where(Event.id == after_id))
        moment = reported or now - FEED_DEFAULT
    else:
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+"))
        except ValueError:
            raise _bad("since 应为 ISO 时间或事件编号", "since") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=SHANGHAI)
    return max(moment, now - FEED_MAX), after_id


def feed(session: Session, user: User, q: MapQuery, now: datetime) -> dict[str, Any]:
    """Return events reported, and events turned overdue, since `q.since` (newest first).

    "Turned overdue" = open, not shelved, with its deadline in (since, now]: the moment it
    became late, whether or not the SLA sweep has flagged it yet.
    """
    check_query(user, q)
    since, after_id = parse_since(session, q.since, now)
    where = _event_where(user, q, use_period=False)
    dialect = session.get_bind().dialect.name
    new_clause = (
        Event.id > after_id
        if after_id is not None
        else and_(Event.reported_at > since, Event.reported_at <= now)
    )
    turned = and_(
        stats.is_open(),
        Event.state != EventState.SHELVED.value,
        Event.due_at > since,
        Event.due_at <= now,
    )
    columns = (
        Event.id,
        Event.code,
        Event.state,
        Event.matter_code,
        Event.lng,
        Event.lat,
        Event.reported_at,
        Event.due_at,
        Event.town_code,
        Event.village_code,
        Event.address,
        _flag(overdue_open(now, dialect)),
    )
    new_rows = session.execute(
        select(*columns).where(*where, new_clause).order_by(Event.id.desc()).limit(FEED_LIMIT)
    ).all()
    late_rows = session.execute(
        select(*columns).where(*where, turned).order_by(Event.due_at.desc()).limit(FEED_LIMIT)
    ).all()
    names = _Names.load(
        session,
        {r.matter_code for r in (*new_rows, *late_rows)},
        {c for r in (*new_rows, *late_rows) for c in (r.town_code, r.village_code)},
        set(),
    )
    items = []
    for kind, rows, when in (("new", new_rows, "reported_at"), ("overdue", late_rows, "due_at")):
        for r in rows:
            at = getattr(r, when)
            items.append(
                {
                    "kind": kind,
                    "kind_label": "新上报" if kind == "new" else "已超期",
                    "at": _iso(at),
                    "sort": at.timestamp(),
                    "id": r.id,
                    "code": r.code,
                    "state": r.state,
                    "state_label": STATE_LABELS[EventState(r.state)],
                    "color": OVERDUE_COLOR if kind == "overdue" else STATE_GROUP_OF[r.state].color,
                    "matter_name": names.matters.get(r.matter_code, ""),
                    "town_name": names.regions.get(r.town_code, ""),
                    "village_name": names.regions.get(r.village_code, ""),
                    "address": r.address or "",
                    "overdue_open": bool(r[11]),
                    "coordinates": _point(r.lng, r.lat, q.crs),
                    "url": f"/events/{r.id}",
                }
            )
    items.sort(key=lambda i: (i["sort"], i["id"]), reverse=True)
    for i in items:
        del i["sort"]
    last_id = session.scalar(select(func.max(Event.id)).where(visible(user)))
    return {
        "items": items[:FEED_LIMIT],
        "since": since.astimezone(SHANGHAI).isoformat(),
        "cursor": now.astimezone(SHANGHAI).isoformat(),
        "last_id": last_id,
    }


# ---------------------------------------------------------------------------
# What the filter panel offers (names only, no data)


def filter_options(session: Session, user: User) -> dict[str, Any]:
    """Return towns, matter categories/matters, departments and sources for the filters."""
    towns = session.execute(
        select(Region.code, Region.name)
        .where(Region.level == "town", Region.code.startswith(user.region_code[:9]))
        .order_by(Region.code)
    ).all()
    if len(user.region_code) > 9:
        towns = [t for t in towns if user.region_code.startswith(t[0])]
    categories = session.execute(
        select(MatterCategory.code, MatterCategory.name).order_by(
            MatterCategory.sort, MatterCategory.code
        )
    ).all()
    matters = session.execute(
        select(Matter.code, Matter.name, Matter.category_code)
        .where(Matter.active.is_(True))
        .order_by(Matter.code)
    ).all()
    county = user.region_code[:6]
    departments = session.execute(
        select(Department.id, Department.name, Department.level, Department.region_code)
        .where(Department.active.is_(True), Department.region_code.startswith(county))
        .order_by(Department.level, Department.region_code, Department.name)
    ).all()
    if len(user.region_code) >= 9:
        town = user.region_code[:9]
        departments = [d for d in departments if d.level == "county" or d.region_code == town]
    town_names = dict(towns)
    return {
        "towns": [{"code": c, "name": n} for c, n in towns],
        "categories": [
            {
                "code": c,
                "name": n,
                "matters": [{"code": m[0], "name": m[1]} for m in matters if m[2] == c],
            }
            for c, n in categories
        ],
        "departments": [
            {
                "id": d.id,
                "name": d.name,
                "group": "县直部门"
                if d.level == "county"
                else town_names.get(d.region_code, "镇属站所"),
            }
            for d in departments
        ],
        "sources": [{"value": s.value, "label": s.label} for s in Source],
    }


def jurisdiction_bounds(
    session: Session, user: User, region: str | None = None, crs: str = "wgs84"
) -> list[list[float]] | None:
    """Return [[south, west], [north, east]] of the user's jurisdiction (or `region`)."""
    code = region or user.region_code
    if len(code) == 15:
        geom = session.scalar(
            select(Grid.geom)
            .join(GridSet, GridSet.id == Grid.grid_set_id)
            .where(GridSet.active.is_(True), Grid.code == code)
        )
    else:
        geom = session.scalar(select(Region.geom).where(Region.code == code))
    if geom is None:
        return None
    x1, y1, x2, y2 = _to_display(geom, crs).bounds
    return [[round(y1, 6), round(x1, 6)], [round(y2, 6), round(x2, 6)]]
