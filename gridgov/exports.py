"""Exports: the monthly report (Excel) from gridgov.stats, and events as CSV or GeoJSON.

The report's numbers are `stats.compute` for the month, the region and the filter — the same
as GET /api/v1/stats — with the KPI definitions on their own sheet. Event exports contain
exactly the events the user may see (`access.visible`) that the filter selects, streamed in
chunks so a year of a city's events never sits in memory. No Flask here.
"""

from __future__ import annotations

import calendar
import csv
import io
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from sqlalchemy import ColumnElement, and_, case, or_, select
from sqlalchemy.orm import Session

from gridgov import stats
from gridgov.access import visible
from gridgov.errors import Unprocessable
from gridgov.eventdata import event_conditions
from gridgov.mapdata import late, overdue_open
from gridgov.models import (
    STATE_LABELS,
    Department,
    Event,
    EventState,
    Grid,
    GridSet,
    Matter,
    Region,
    Source,
    User,
)
from gridgov.workflow.worktime import SHANGHAI

CHUNK = 1000
"""Rows fetched (and written out) per step of a streamed export."""

REPORT_SHEETS = (
    ("总体", None),
    ("按镇街", "town"),
    ("按部门", "department"),
    ("按事项", "matter"),
)
URGENCY_LABELS = {"urgent": "紧急", "pressing": "较急", "normal": "一般"}
SATISFACTION_LABELS = {"satisfied": "满意", "basically": "基本满意", "unsatisfied": "不满意"}


# ---------------------------------------------------------------------------
# The monthly report


def parse_month(raw: str | None, today: date) -> tuple[date, date]:
    """Return the first and last day of "YYYY-MM" (default: the current month)."""
    if not raw:
        year, month = today.year, today.month
    else:
        try:
            year, month = (int(p) for p in raw.strip().split("-"))
            date(year, month, 1)
        except ValueError:
            raise Unprocessable(
                f"月份格式应为 YYYY-MM：{raw}", code="bad_parameter", field="month"
            ) from None
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])


def _format(key: str) -> str:
    kpi = stats.KPIS[key]
    if isinstance(kpi, stats.Rate):
        return "0.00" if kpi.unit == "hours" else "0.00%"
    return "0.00" if kpi.decimals else "0"


_BOLD = Font(bold=True)
_HEAD_FILL = PatternFill("solid", fgColor="F1E4E3")
_WRAP = Alignment(wrap_text=True, vertical="top")


def _header(ws: Any, row: int, values: list[str]) -> None:
    for col, value in enumerate(values, start=1):
        cell = ws.cell(row=row, column=col, value=value)
        cell.font = _BOLD
        cell.fill = _HEAD_FILL
        cell.alignment = Alignment(wrap_text=True, vertical="center")


def _widths(ws: Any, widths: list[int]) -> None:
    for i, w in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(i)].width = w


def monthly_report(
    session: Session,
    user: User,
    *,
    date_from: date,
    date_to: date,
    region: str | None = None,
    matter: str | None = None,
    source: str | None = None,
    as_of: datetime,
) -> bytes:
    """Return the report workbook (.xlsx bytes): totals, by town, department, matter, definitions.

    Every number is `stats.compute(...)` for the same filter and `as_of`.
    """
    args: dict[str, Any] = {
        "region": region,
        "date_from": date_from,
        "date_to": date_to,
        "matter": matter,
        "source": source,
        "as_of": as_of,
    }
    place = region or user.region_code
    place_name = session.scalar(select(Region.name).where(Region.code == place[:12])) or place
    period = f"{date_from.isoformat()} 至 {date_to.isoformat()}"
    whole_month = date_from.day == 1 and date_to == parse_month(f"{date_from:%Y-%m}", date_from)[1]
    title = (
        f"{place_name} {date_from.year}年{date_from.month}月 事件办理月报"
        if whole_month
        else f"{place_name} 事件办理报表（{period}）"
    )
    keys = list(stats.KPIS)
    defs = stats.definitions()

    wb = Workbook()
    first = True
    for sheet_name, group_by in REPORT_SHEETS:
        result = stats.compute(session, user, group_by=group_by, **args)
        ws = wb.active if first else wb.create_sheet()
        first = False
        ws.title = sheet_name
        if group_by is None:
            ws.cell(row=1, column=1, value=title).font = Font(bold=True, size=14)
            as_of_text = as_of.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
            filters = "；".join(
                f"{label}：{value}"
                for label, value in (("事项", matter), ("来源", source))
                if value
            )
            ws.cell(
                row=2,
                column=1,
                value=f"统计期：{period}（按上报时间）；统计时刻：{as_of_text}"
                + (f"；{filters}" if filters else "")
                + "；口径见“指标定义”表",
            )
            _header(ws, 4, ["指标", "代码", "数值", "定义"])
            for i, key in enumerate(keys, start=5):
                ws.cell(row=i, column=1, value=defs[key]["name"])
                ws.cell(row=i, column=2, value=key)
                value = ws.cell(row=i, column=3, value=result["totals"][key])
                value.number_format = _format(key)
                ws.cell(row=i, column=4, value=defs[key]["definition"]).alignment = _WRAP
            _widths(ws, [22, 20, 14, 90])
            ws.freeze_panes = "A5"
            continue
        label = stats.DIMENSIONS[group_by].name
        _header(ws, 1, ["排名", "代码", label] + [defs[k]["name"] for k in keys])
        for i, group in enumerate(result["groups"], start=2):
            ws.cell(row=i, column=1, value=i - 1)
            key = group["key"]
            ws.cell(row=i, column=2, value="" if key is None else str(key))
            ws.cell(row=i, column=3, value=group["name"])
            for j, k in enumerate(keys, start=4):
                cell = ws.cell(row=i, column=j, value=group[k])
                cell.number_format = _format(k)
        total_row = len(result["groups"]) + 2
        ws.cell(row=total_row, column=3, value="合计").font = _BOLD
        for j, k in enumerate(keys, start=4):
            cell = ws.cell(row=total_row, column=j, value=result["totals"][k])
            cell.number_format = _format(k)
            cell.font = _BOLD
        _widths(ws, [6, 18, 24] + [11] * len(keys))
        ws.freeze_panes = "D2"

    ws = wb.create_sheet("指标定义")
    _header(ws, 1, ["代码", "名称", "类型", "单位", "定义", "公式"])
    kinds = {"count": "计数", "rate": "比率"}
    units = {"events": "件", "hours": "小时", "ratio": "比例（%）"}
    for i, key in enumerate(keys, start=2):
        d = defs[key]
        row = [key, d["name"], kinds[d["kind"]], units.get(d["unit"], d["unit"])]
        for j, value in enumerate([*row, d["definition"], d["formula"]], start=1):
            ws.cell(row=i, column=j, value=value).alignment = _WRAP
    _widths(ws, [20, 18, 8, 10, 70, 50])
    ws.freeze_panes = "A2"

    wb.properties.title = title
    wb.properties.creator = "gridgov"
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


# ---------------------------------------------------------------------------
# Events as CSV / GeoJSON


@dataclass(frozen=True)
class ExportFilter:
    """Which events an export holds: the stats filter (period, region, matter, source) + states."""

    date_from: date
    date_to: date
    region: str | None = None
    matter: str | None = None
    source: str | None = None
    states: tuple[str, ...] = ()

    @classmethod
    def from_args(cls, user: User, args: Mapping[str, str], now: datetime) -> ExportFilter:
        """Parse from/to/region/matter/source like /api/v1/stats, plus state=a,b."""
        base = stats.parse_args(
            {k: v for k, v in args.items() if k in ("from", "to", "region", "matter", "source")},
            now,
        )
        base.pop("group_by")
        stats.check_filter(user, group_by=None, **base)
        states = tuple(s for s in (args.get("state") or "").split(",") if s)
        if any(s not in {e.value for e in EventState} for s in states):
            raise Unprocessable("未知状态", code="bad_parameter", field="state")
        return cls(states=states, **base)

    def where(self, user: User) -> list[ColumnElement[bool]]:
        where = [
            visible(user),
            *event_conditions(
                date_from=self.date_from,
                date_to=self.date_to,
                region=self.region,
                matter=self.matter,
                sources=(self.source,) if self.source else (),
            ),
        ]
        if self.states:
            where.append(Event.state.in_(self.states))
        return where


COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "编号"),
    ("code", "事件编号"),
    ("state", "状态代码"),
    ("state_label", "状态"),
    ("source", "来源"),
    ("matter_code", "事项代码"),
    ("matter_name", "事项"),
    ("urgency", "紧急程度"),
    ("description", "事件描述"),
    ("address", "地址"),
    ("lng", "经度（WGS84）"),
    ("lat", "纬度（WGS84）"),
    ("town", "镇（街道）"),
    ("village", "村（社区）"),
    ("grid_code", "网格编码"),
    ("grid", "网格"),
    ("reporter", "上报人"),
    ("reported_at", "上报时间"),
    ("deadline", "办结时限"),
    ("closed_at", "办结时间"),
    ("late", "逾期"),
    ("department", "主办部门"),
    ("satisfaction", "满意度"),
)


def _local(value: datetime | None) -> str:
    return value.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S") if value else ""


class _Lookup:
    """Names of matters, regions, departments and grids, loaded once per export."""

    def __init__(self, session: Session) -> None:
        self.matters = dict(session.execute(select(Matter.code, Matter.name)).all())
        self.regions = dict(session.execute(select(Region.code, Region.name)).all())
        self.departments = dict(session.execute(select(Department.id, Department.name)).all())
        self.grids = dict(
            session.execute(
                select(Grid.code, Grid.name)
                .join(GridSet, GridSet.id == Grid.grid_set_id)
                .order_by(GridSet.active, Grid.id)
            ).all()
        )
        self.sources = {s.value: s.label for s in Source}


Sessions = Callable[[], Session]
"""Makes a new database session (the app's sessionmaker)."""


def event_rows(
    sessions: Sessions, user: User, flt: ExportFilter, as_of: datetime
) -> Iterator[dict[str, Any]]:
    """Return an iterator over the selected events, oldest first, as flat dicts (COLUMNS keys).

    The filter is bound now (with the caller's user); rows are read later, CHUNK at a time by
    keyset (reported_at, id), each chunk in its own short session, so a long download holds
    no database lock and no cursor while the client reads, and never touches the caller's
    session.
    """
    where = flt.where(user)
    return _chunks(sessions, where, as_of)


def _chunks(
    sessions: Sessions, where: list[ColumnElement[bool]], as_of: datetime
) -> Iterator[dict[str, Any]]:
    # Nothing runs before the first row is asked for: by then the request that built this
    # iterator has committed and closed its own session (SQLite allows one writer, and every
    # gridgov transaction begins IMMEDIATE).
    with sessions() as session:
        names = _Lookup(session)
        dialect = session.get_bind().dialect.name
    base = (
        select(
            Event,
            case((late(as_of, dialect), True), else_=False).label("late"),
            case((overdue_open(as_of, dialect), True), else_=False).label("overdue_open"),
        )
        .where(*where)
        .order_by(Event.reported_at, Event.id)
    )
    after: tuple[datetime, int] | None = None
    while True:
        stmt = base.limit(CHUNK)
        if after is not None:
            at, event_id = after
            stmt = stmt.where(
                or_(Event.reported_at > at, and_(Event.reported_at == at, Event.id > event_id))
            )
        with sessions() as session:
            result = session.execute(stmt).all()
            rows = [_flat(e, is_late, is_open_late, names) for e, is_late, is_open_late in result]
            last = (result[-1][0].reported_at, result[-1][0].id) if result else None
        yield from rows
        if last is None or len(rows) < CHUNK:
            return
        after = last


def _flat(e: Event, is_late: Any, is_open_late: Any, names: _Lookup) -> dict[str, Any]:
    return {
        "id": e.id,
        "code": e.code,
        "state": e.state,
        "state_label": STATE_LABELS[EventState(e.state)],
        "source": names.sources.get(e.source, e.source),
        "matter_code": e.matter_code,
        "matter_name": names.matters.get(e.matter_code, ""),
        "urgency": URGENCY_LABELS.get(e.urgency, e.urgency),
        "description": e.description,
        "address": e.address,
        "lng": e.lng,
        "lat": e.lat,
        "town": names.regions.get(e.town_code, e.town_code),
        "village": names.regions.get(e.village_code, e.village_code),
        "grid_code": e.grid_code,
        "grid": names.grids.get(e.grid_code, ""),
        "reporter": e.reporter_name,
        "reported_at": _local(e.reported_at),
        "deadline": _local(e.due_at),
        "closed_at": _local(e.closed_at),
        "late": "是" if is_late else "否",
        "overdue_open": bool(is_open_late),
        "department": names.departments.get(e.lead_department_id or 0, ""),
        "satisfaction": SATISFACTION_LABELS.get(e.satisfaction or "", ""),
    }


def events_csv(sessions: Sessions, user: User, flt: ExportFilter, as_of: datetime) -> Iterator[str]:
    """Return the chunks of a UTF-8 CSV (with BOM, so Excel reads the Chinese)."""
    return _csv(event_rows(sessions, user, flt, as_of))


def _csv(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([label for _, label in COLUMNS])
    yield "\ufeff" + buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    for n, row in enumerate(rows, start=1):
        writer.writerow([row[key] for key, _ in COLUMNS])
        if n % CHUNK == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()


def events_geojson(
    sessions: Sessions, user: User, flt: ExportFilter, as_of: datetime
) -> Iterator[str]:
    """Return the chunks of a GeoJSON FeatureCollection (WGS84) of the selected events."""
    return _geojson(event_rows(sessions, user, flt, as_of))


def _geojson(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    yield '{"type": "FeatureCollection", "features": ['
    parts: list[str] = []
    for n, row in enumerate(rows):
        props = {key: row[key] for key, _ in COLUMNS if key not in ("lng", "lat")}
        props["late"] = row["late"] == "是"
        feature = {
            "type": "Feature",
            "id": row["id"],
            "geometry": {"type": "Point", "coordinates": [row["lng"], row["lat"]]},
            "properties": props,
        }
        parts.append(("," if n else "") + json.dumps(feature, ensure_ascii=False))
        if len(parts) >= CHUNK:
            yield "".join(parts)
            parts = []
    if parts:
        yield "".join(parts)
    yield "]}"
