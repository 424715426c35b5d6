"""The 民情地图 (/map/), the leaders' dashboard (/dashboard/), their exports, and the map's
GeoJSON API (/api/v1/map/areas, /events, /feed — registered here with absolute paths).

Views parse the request and call one domain function: gridgov.mapdata (GeoJSON),
gridgov.maps (the folium shell), gridgov.stats (every number), gridgov.exports (files).
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    render_template,
    request,
    url_for,
)
from sqlalchemy import select

from gridgov import exports, mapdata, maps, settings_of, stats
from gridgov.db import utcnow
from gridgov.models import Region, Role, User
from gridgov.web import get_session, require_user
from gridgov.web.auth_pages import require_role
from gridgov.workflow.worktime import SHANGHAI

mappage = Blueprint("mappage", __name__)
dashboard = Blueprint("dashboard", __name__, url_prefix="/dashboard")

VIEWER_ROLES = (Role.TOWN_OPERATOR, Role.COUNTY_DISPATCHER, Role.COUNTY_SHIFT_LEAD, Role.LEADER)
"""Who opens the map and the dashboard: the centres and the leaders (see web.menu)."""
POLL_MS = 10_000
"""The live mode asks the feed for news every 10 s."""
_LIST_PARAMS = ("state", "category", "source", "department")


def _args() -> dict[str, str]:
    """Return the query parameters, repeated ones (checkbox groups) joined by commas."""
    out: dict[str, str] = {}
    for key in request.args:
        values = [v for v in request.args.getlist(key) if v != ""]
        out[key] = ",".join(values)
    return out


# ---------------------------------------------------------------------------
# The map's JSON API


def _map_query(args: dict[str, str] | None = None) -> mapdata.MapQuery:
    return mapdata.parse_query(args if args is not None else _args(), utcnow())


@mappage.get("/api/v1/map/areas")
def api_areas() -> Any:
    user = require_user()
    return jsonify(mapdata.areas(get_session(), user, _map_query(), utcnow()))


@mappage.get("/api/v1/map/events")
def api_events() -> Any:
    user = require_user()
    return jsonify(mapdata.events(get_session(), user, _map_query(), utcnow()))


@mappage.get("/api/v1/map/feed")
def api_feed() -> Any:
    user = require_user()
    return jsonify(mapdata.feed(get_session(), user, _map_query(), utcnow()))


# ---------------------------------------------------------------------------
# The map page


def _selected(raw: str) -> set[str]:
    return {v for v in raw.split(",") if v}


@mappage.get("/map/")
def map_index() -> Any:
    user = require_role(*VIEWER_ROLES)
    session = get_session()
    settings = settings_of(current_app)
    now = utcnow()
    args = _args()
    town = args.get("town", "")
    query = _map_query({**args, "region": town} if town else args)
    mapdata.check_query(user, query)
    live = args.get("live") in ("1", "true")
    crs = maps.display_crs(settings)
    home = mapdata.jurisdiction_bounds(session, user, crs=crs)
    start = mapdata.jurisdiction_bounds(session, user, query.region, crs=crs) or home
    options = mapdata.filter_options(session, user)
    config = {
        "urls": {
            "areas": url_for("mappage.api_areas"),
            "events": url_for("mappage.api_events"),
            "feed": url_for("mappage.api_feed"),
            "stats": url_for("api.get_stats"),
            "page": url_for("mappage.map_index"),
            "event": "/events/{id}",
            "login": url_for("auth.login"),
        },
        "crs": crs,
        "live": live,
        "poll_ms": POLL_MS,
        "now": now.astimezone(SHANGHAI).isoformat(),
        "home": home,
        "jurisdiction": {"code": user.region_code, "name": _region_name(session, user)},
        "towns": options["towns"],
        **mapdata.legend_config(),
    }
    shell = maps.map_shell(settings, lambda path: url_for("static", filename=path), config, start)
    return render_template(
        "map/index.html",
        shell=shell,
        live=live,
        query=query,
        town=town,
        options=options,
        legend=mapdata.legend_config(),
        metric_options=[(k, stats.KPIS[k].name) for k in mapdata.METRICS],
        states=_selected(args.get("state", "")),
        categories=_selected(args.get("category", "")),
        sources=_selected(args.get("source", "")),
        department=args.get("department", ""),
        overdue=args.get("overdue") in ("1", "true"),
        at=args.get("at", ""),
        basemap=settings.basemap,
        total_kpis=mapdata.TOTAL_KPIS,
        kpi_names={k: v.name for k, v in stats.KPIS.items()},
        kpi_defs={k: v.definition for k, v in stats.KPIS.items()},
    )


def _region_name(session: Any, user: User) -> str:
    code = user.region_code
    return session.scalar(select(Region.name).where(Region.code == code[:12])) or code


# ---------------------------------------------------------------------------
# The dashboard

CARDS = (
    "received",
    "closed",
    "closure_rate",
    "overdue_rate",
    "on_time_rate",
    "withdrawn",
    "due_closure_rate",
    "due_on_time_rate",
    "rework_rate",
    "extension_rate",
    "satisfaction_rate",
    "avg_handling_hours",
)
"""The numbers of PRODUCT.md §5, in the order leaders read them."""
SECONDARY = (
    "open",
    "overdue",
    "overdue_open",
    "due",
    "handled",
    "self_handled",
    "valid_rate",
    "handle_on_time_rate",
    "verify_on_time_rate",
)

BREAKDOWNS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "town",
        "按镇（街道）",
        (
            "received",
            "closed",
            "closure_rate",
            "overdue",
            "overdue_rate",
            "on_time_rate",
            "open",
            "satisfaction_rate",
        ),
    ),
    (
        "village",
        "按村（社区）",
        ("received", "closed", "closure_rate", "overdue", "overdue_rate", "open"),
    ),
    (
        "department",
        "按主办部门",
        (
            "received",
            "closed",
            "handle_on_time_rate",
            "due_on_time_rate",
            "rework_rate",
            "returns",
            "extension_rate",
            "overdue_rate",
            "avg_handling_hours",
        ),
    ),
    (
        "matter",
        "按事项",
        (
            "received",
            "closed",
            "closure_rate",
            "overdue_rate",
            "avg_handling_hours",
            "satisfaction_rate",
        ),
    ),
    ("source", "按来源", ("received", "valid_rate", "closed", "closure_rate", "overdue_rate")),
    (
        "reporter",
        "按网格员（上报人）",
        (
            "received",
            "valid",
            "valid_rate",
            "self_handled",
            "verify_on_time_rate",
            "closed",
            "closure_rate",
        ),
    ),
)
DENSITY_LEVELS = ("town", "village")
TOP_ROWS = 20
"""Rows a ranking shows unless asked for all of them (?full=<dimension>)."""
TREND_UNITS = {"day": "按日", "week": "按周", "month": "按月"}


def fmt(key: str, value: Any) -> str:
    """Format a KPI value for the screen (rates in %, hours with one decimal)."""
    if value is None:
        return "—"
    kpi = stats.KPIS[key]
    if isinstance(kpi, stats.Rate):
        return f"{value:.1f}" if kpi.unit == "hours" else f"{value * 100:.1f}%"
    if kpi.decimals:
        return f"{value:.1f}"
    return f"{int(value):,}"


def unit_of(key: str) -> str:
    kpi = stats.KPIS[key]
    if isinstance(kpi, stats.Rate):
        return "小时" if kpi.unit == "hours" else ""
    return "小时" if kpi.decimals else "件"


def _default_trend(date_from: date, date_to: date) -> str:
    days = (date_to - date_from).days + 1
    return "day" if days <= 62 else "week" if days <= 370 else "month"


def trend_chart(
    groups: list[dict[str, Any]], width: int = 760, height: int = 240
) -> dict[str, Any]:
    """Return the geometry of an SVG chart: bars of received, a line of closed, the axes."""
    left, right, top, bottom = 44, 12, 14, 40
    inner_w, inner_h = width - left - right, height - top - bottom
    n = max(len(groups), 1)
    peak = max([g["received"] for g in groups] + [g["closed"] for g in groups] + [1])
    step = mapdata._nice_step(peak / 4)
    top_value = step * math.ceil(peak / step)
    slot = inner_w / n
    bar_w = max(min(slot * 0.62, 38), 1.5)

    def y(v: float) -> float:
        return round(top + inner_h - inner_h * v / top_value, 1)

    label_every = max(1, math.ceil(n / 10))
    bars, points, labels = [], [], []
    for i, g in enumerate(groups):
        cx = left + slot * i + slot / 2
        bars.append(
            {
                "x": round(cx - bar_w / 2, 1),
                "y": y(g["received"]),
                "w": round(bar_w, 1),
                "h": round(top + inner_h - y(g["received"]), 1),
                "title": f"{g['name']}：受理 {g['received']}，办结 {g['closed']}",
                "key": g["key"],
                "received": g["received"],
                "closed": g["closed"],
            }
        )
        points.append((round(cx, 1), y(g["closed"])))
        if i % label_every == 0:
            text = str(g["key"])
            short = text[5:] if len(text) == 10 else text  # 2026-11-03 → 11-03
            labels.append({"x": round(cx, 1), "text": short})
    ticks = [{"y": y(v), "text": f"{v:,}"} for v in range(0, int(top_value) + 1, int(step))]
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": width - right,
        "base": top + inner_h,
        "bars": bars,
        "line": " ".join(f"{x},{yy}" for x, yy in points),
        "points": points,
        "labels": labels,
        "ticks": ticks,
    }


def _region_choices(session: Any, user: User, selected: str | None) -> list[dict[str, str]]:
    own = session.get(Region, user.region_code[:12])
    choices: list[dict[str, str]] = []
    if own is not None:
        choices.append({"code": own.code, "name": f"{own.name}（全部）"})
        for child in own.children:
            choices.append({"code": child.code, "name": f"　{child.name}"})
    if selected and all(c["code"] != selected for c in choices):
        region = session.get(Region, selected)
        choices.append({"code": selected, "name": region.name if region else selected})
    return choices


@dashboard.get("/")
def index() -> Any:
    user = require_role(*VIEWER_ROLES)
    session = get_session()
    now = utcnow()
    query = stats.parse_args(request.args, now)
    query.pop("group_by")
    stats.check_filter(user, group_by=None, **query)
    overall = stats.compute(session, user, **query, as_of=now)
    defs = overall["definitions"]
    tables = []
    for dim, title, keys in BREAKDOWNS:
        result = stats.compute(session, user, group_by=dim, **query, as_of=now)
        density = None
        if dim in DENSITY_LEVELS:
            areas = mapdata.region_areas_km2(session, dim)
            density = {
                g["key"]: (g["received"] / areas[g["key"]] if areas.get(g["key"]) else None)
                for g in result["groups"]
            }
        full = request.args.get("full") == dim
        tables.append(
            {
                "dim": dim,
                "full": full,
                "count": len(result["groups"]),
                "rows": result["groups"] if full else result["groups"][:TOP_ROWS],
                "title": title,
                "label": stats.DIMENSIONS[dim].name,
                "keys": keys,
                "groups": result["groups"],
                "density": density,
            }
        )
    trend = request.args.get("trend") or _default_trend(query["date_from"], query["date_to"])
    if trend not in TREND_UNITS:
        trend = _default_trend(query["date_from"], query["date_to"])
    trend_groups = stats.compute(session, user, group_by=trend, **query, as_of=now)["groups"]
    base = {
        k: v
        for k, v in (
            ("region", query["region"]),
            ("from", query["date_from"].isoformat()),
            ("to", query["date_to"].isoformat()),
            ("matter", query["matter"]),
            ("source", query["source"]),
        )
        if v
    }
    today = now.astimezone(SHANGHAI).date()
    return render_template(
        "dashboard/index.html",
        query=query,
        totals=overall["totals"],
        defs=defs,
        cards=CARDS,
        secondary=SECONDARY,
        tables=tables,
        trend=trend,
        trend_units=TREND_UNITS,
        chart=trend_chart(trend_groups),
        trend_groups=trend_groups,
        fmt=fmt,
        unit_of=unit_of,
        regions=_region_choices(session, user, query["region"]),
        options=mapdata.filter_options(session, user),
        base_qs=urlencode(base),
        base=base,
        month=f"{query['date_to']:%Y-%m}",
        today=today,
        presets=[
            (label, start, end, "?" + urlencode({**base, "from": start, "to": end}))
            for label, start, end in _presets(today)
        ],
        as_of=now.astimezone(SHANGHAI),
    )


def _presets(today: date) -> list[tuple[str, date, date]]:
    month_start = today.replace(day=1)
    last_month_end = month_start - timedelta(days=1)
    return [
        ("近7天", today - timedelta(days=6), today),
        ("近30天", today - timedelta(days=29), today),
        ("本月", month_start, today),
        ("上月", last_month_end.replace(day=1), last_month_end),
        ("本年", today.replace(month=1, day=1), today),
    ]


# ---------------------------------------------------------------------------
# Exports


def _attachment(name: str) -> dict[str, str]:
    from urllib.parse import quote

    return {"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"}


@dashboard.get("/export/report.xlsx")
def export_report() -> Response:
    user = require_role(*VIEWER_ROLES)
    now = utcnow()
    date_from, date_to = exports.parse_month(
        request.args.get("month"), now.astimezone(SHANGHAI).date()
    )
    query = stats.parse_args(request.args, now)
    stats.check_filter(
        user,
        region=query["region"],
        date_from=date_from,
        date_to=date_to,
        group_by=None,
        matter=query["matter"],
        source=query["source"],
    )
    body = exports.monthly_report(
        get_session(),
        user,
        date_from=date_from,
        date_to=date_to,
        region=query["region"],
        matter=query["matter"],
        source=query["source"],
        as_of=now,
    )
    name = f"事件办理月报-{query['region'] or user.region_code}-{date_from:%Y-%m}.xlsx"
    return Response(
        body,
        mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers=_attachment(name),
    )


def _stream(kind: str, mimetype: str) -> Response:
    user = require_role(*VIEWER_ROLES)
    now = utcnow()
    flt = exports.ExportFilter.from_args(user, request.args.to_dict(), now)
    writer = exports.events_csv if kind == "csv" else exports.events_geojson
    sessions = current_app.extensions["gridgov.db"].sessions
    chunks = writer(sessions, user, flt, now)
    name = f"事件-{flt.region or user.region_code}-{flt.date_from}-{flt.date_to}.{kind}"
    return Response(chunks, mimetype=mimetype, headers=_attachment(name))


@dashboard.get("/export/events.csv")
def export_csv() -> Response:
    return _stream("csv", "text/csv; charset=utf-8")


@dashboard.get("/export/events.geojson")
def export_geojson() -> Response:
    return _stream("geojson", "application/geo+json")
