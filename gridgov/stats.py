"""The numbers leaders read (PRODUCT.md §5): every KPI defined once, computed in one query.

Base of every number: the events *received* in a period — reported_at within
[day_start(from), day_start(to + 1)) on the Shanghai calendar — inside the caller's
jurisdiction (`access.visible`), withdrawn, rejected, voided and merged ones included
(the 12345 convention). States are the events' current states; `as_of` (default: now) is
the instant open events are measured against their deadline.

`COUNTS` are SQL aggregates over Event rows; `RATES` are derived from counts only, so a
sum of groups (or of any partition) gives the same rates as the whole. The map, the
dashboard, the exports and /api/v1/stats all read `compute` (or `COUNTS`/`derive`).

Indexes: the jurisdiction and a region filter compare the code column of their level for
equality (`access.in_region`), served with the period by the (code, reported_at) indexes;
without a region the period uses ix_events_reported_at.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, extract, func, literal_column, or_, select
from sqlalchemy.orm import QueryableAttribute, Session

from gridgov.access import REGION_COLUMNS, visible
from gridgov.db import utcnow
from gridgov.errors import Forbidden, Unprocessable
from gridgov.eventdata import event_conditions
from gridgov.models import (
    TERMINAL_STATES,
    Department,
    Event,
    EventAction,
    EventState,
    Grid,
    GridSet,
    Matter,
    MatterCategory,
    Region,
    Source,
    User,
)
from gridgov.workflow.worktime import SHANGHAI

DEFAULT_DAYS = 30
"""Without from/to the period is the last 30 Shanghai calendar days, today included."""
MAX_DAYS = 3660
"""The longest period one request may ask for (about ten years)."""
RATE_DIGITS = 4
HOURS_DIGITS = 2


@dataclass(frozen=True)
class Context:
    """What a formula may depend on besides the row: the as-of instant and the SQL dialect."""

    as_of: datetime
    dialect: str


# ---------------------------------------------------------------------------
# Row conditions: each states one property of one Event row, in SQL.

_S = EventState
_TERMINAL = sorted(s.value for s in TERMINAL_STATES)


def _state(state: EventState) -> ColumnElement[bool]:
    return Event.state == state.value


def is_open() -> ColumnElement[bool]:
    """Return the row condition: the event is still open (not ended)."""
    return Event.state.notin_(_TERMINAL)


def _closed_on_time() -> ColumnElement[bool]:
    return and_(_state(_S.CLOSED), Event.closed_at <= Event.due_at)


def closed_late() -> ColumnElement[bool]:
    """Return the row condition: closed after its deadline."""
    return and_(_state(_S.CLOSED), Event.closed_at > Event.due_at)


def overdue_open(ctx: Context) -> ColumnElement[bool]:
    """Return the row condition: open and past its deadline at the as-of instant."""
    # The flag is the SLA sweep's verdict; the deadline comparison makes the number right
    # whether or not the sweep has run. A shelved event's clock is paused: it counts only
    # if it was already past its deadline when shelved.
    return and_(
        is_open(),
        or_(
            Event.overdue.is_(True),
            and_(Event.state != _S.SHELVED.value, Event.due_at < ctx.as_of),
            and_(_state(_S.SHELVED), Event.due_at < Event.shelved_at),
        ),
    )


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.sum(case((condition, 1), else_=0))


def handling_hours(ctx: Context) -> ColumnElement[Any]:
    """Return natural hours from report to close of one row (NULL unless closed)."""
    if ctx.dialect == "sqlite":
        hours = (func.julianday(Event.closed_at) - func.julianday(Event.reported_at)) * 24.0
    else:
        hours = extract("epoch", Event.closed_at - Event.reported_at) / 3600.0
    return case((_state(_S.CLOSED), hours), else_=None)


# ---------------------------------------------------------------------------
# The registry


@dataclass(frozen=True)
class Count:
    """A number summed over event rows."""

    key: str
    name: str
    definition: str
    formula: str
    aggregate: Callable[[Context], ColumnElement[Any]]
    """The SQL aggregate over the filtered Event rows."""
    decimals: int | None = None
    """None: an integer count; otherwise a sum rounded to this many decimals."""


@dataclass(frozen=True)
class Rate:
    """A number derived from counts: sum(numerator) / denominator, or 1 − that."""

    key: str
    name: str
    definition: str
    formula: str
    numerator: tuple[str, ...]
    denominator: str
    complement: bool = False
    digits: int = RATE_DIGITS
    unit: str = "ratio"
    """"ratio" (a fraction: the UI shows %) or "hours"."""

    def value(self, counts: Mapping[str, float]) -> float | None:
        """Return the rate from `counts`; None when the denominator is 0."""
        den = counts[self.denominator]
        if not den:
            return None
        ratio = sum(counts[k] for k in self.numerator) / den
        return round(1 - ratio if self.complement else ratio, self.digits)


def _c(
    key: str,
    name: str,
    definition: str,
    formula: str,
    condition: Callable[[Context], ColumnElement[bool]],
) -> Count:
    return Count(key, name, definition, formula, lambda ctx: _count_if(condition(ctx)))


COUNTS: tuple[Count, ...] = (
    Count(
        "received",
        "受理量",
        "统计期内上报（接件）的全部事件，含不予受理、作废、并案和撤单的事件；"
        "以上报时间计入统计期（12345热线口径）。",
        "count(*)",
        lambda ctx: func.count(),
    ),
    _c(
        "valid",
        "有效上报",
        "已受理（立案）或已处置（含网格员自办自结）的事件；待受理以及直接不予受理、作废、"
        "并案、撤单的事件不计入。",
        "count(accepted_at IS NOT NULL OR handled_at IS NOT NULL)",
        lambda ctx: or_(Event.accepted_at.is_not(None), Event.handled_at.is_not(None)),
    ),
    _c(
        "closed",
        "办结量",
        "当前状态为已办结的事件。",
        "count(state = 'closed')",
        lambda ctx: _state(_S.CLOSED),
    ),
    _c(
        "closed_on_time",
        "按期办结",
        "已办结且办结时间不晚于办结时限（含经批准的延期、挂账顺延）的事件。",
        "count(state = 'closed' AND closed_at <= due_at)",
        lambda ctx: _closed_on_time(),
    ),
    _c(
        "closed_late",
        "超期办结",
        "已办结但办结时间晚于办结时限的事件。",
        "count(state = 'closed' AND closed_at > due_at)",
        lambda ctx: closed_late(),
    ),
    _c(
        "open",
        "在办量",
        "尚未结束的事件（未办结、未不予受理、未作废、未并案、未撤单），含挂账。",
        "count(state NOT IN ('closed', 'merged', 'rejected', 'voided', 'withdrawn'))",
        lambda ctx: is_open(),
    ),
    _c(
        "overdue_open",
        "超期在办",
        "在办且已过办结时限的事件：统计时刻已晚于时限，或已被标记超期；挂账期间时钟暂停，"
        "挂账事件仅在挂账前已超期的计入。",
        "count(open AND (overdue OR (state <> 'shelved' AND due_at < as_of)"
        " OR (state = 'shelved' AND due_at < shelved_at)))",
        overdue_open,
    ),
    _c(
        "overdue",
        "逾期量",
        "办结时已超过时限，或在办已过时限的事件（= 超期办结 + 超期在办）。",
        "count(closed_late OR overdue_open)",
        lambda ctx: or_(closed_late(), overdue_open(ctx)),
    ),
    _c(
        "due",
        "应结案数",
        "办结时限已到、应当结案的事件：已办结的，加上在办且已过时限的（= 办结量 + 超期在办；"
        "数字城管口径）。不予受理、作废、并案、撤单的不计入。",
        "count(state = 'closed' OR overdue_open)",
        lambda ctx: or_(_state(_S.CLOSED), overdue_open(ctx)),
    ),
    _c(
        "withdrawn",
        "撤单量",
        "已撤单的事件。",
        "count(state = 'withdrawn')",
        lambda ctx: _state(_S.WITHDRAWN),
    ),
    _c(
        "rejected",
        "不予受理",
        "不予受理的事件。",
        "count(state = 'rejected')",
        lambda ctx: _state(_S.REJECTED),
    ),
    _c(
        "voided",
        "作废",
        "已作废的事件。",
        "count(state = 'voided')",
        lambda ctx: _state(_S.VOIDED),
    ),
    _c(
        "merged",
        "并案",
        "作为重复事件并入其他事件的事件。",
        "count(state = 'merged')",
        lambda ctx: _state(_S.MERGED),
    ),
    _c(
        "self_handled",
        "自办自结",
        "网格员现场自办自结的事件（核查不通过后转交处置的不再计入）。",
        "count(self_handled)",
        lambda ctx: Event.self_handled.is_(True),
    ),
    _c(
        "dispatched",
        "分拨量",
        "至少分拨过一次（派遣到职能部门）的事件。",
        "count(dispatched_at IS NOT NULL)",
        lambda ctx: Event.dispatched_at.is_not(None),
    ),
    _c(
        "extended",
        "延期事件",
        "至少一次延期申请获批准的事件。",
        "count(extension_count > 0)",
        lambda ctx: Event.extension_count > 0,
    ),
    _c(
        "handled",
        "处置量",
        "至少反馈过一次处置结果的事件（职能部门处置反馈或网格员自办自结）。",
        "count(handled_at IS NOT NULL)",
        lambda ctx: Event.handled_at.is_not(None),
    ),
    _c(
        "handled_by_department",
        "部门处置量",
        "由职能部门（而非网格员自办自结）反馈处置结果的事件。",
        "count(handled_at IS NOT NULL AND NOT self_handled)",
        lambda ctx: and_(Event.handled_at.is_not(None), Event.self_handled.is_(False)),
    ),
    _c(
        "handled_late",
        "处置超时",
        "职能部门至少一次在处置时限（含经批准的延期）之后才反馈处置结果的事件。",
        "count(handle_late)",
        lambda ctx: Event.handle_late.is_(True),
    ),
    _c(
        "verified",
        "核查量",
        "经过核查（通过，或不通过而返工）的事件；按上报人分组即网格员对本人上报事件的核查。",
        "count(verified_at IS NOT NULL OR rework_count > 0)",
        lambda ctx: or_(Event.verified_at.is_not(None), Event.rework_count > 0),
    ),
    _c(
        "verified_late",
        "核查超时",
        "至少一次在核查时限之后才核查（通过或不通过）的事件。",
        "count(verify_late)",
        lambda ctx: Event.verify_late.is_(True),
    ),
    _c(
        "reworked",
        "返工事件",
        "至少一次核查不通过、退回返工的事件。",
        "count(rework_count > 0)",
        lambda ctx: Event.rework_count > 0,
    ),
    Count(
        "returns",
        "回退次数",
        "职能部门回退派遣的次数之和；按部门分组时计入作出回退的部门。",
        "sum(return_count)",
        lambda ctx: func.sum(Event.return_count),
    ),
    _c(
        "evaluated",
        "已评价",
        "已作满意度评价的事件。",
        "count(satisfaction IS NOT NULL)",
        lambda ctx: Event.satisfaction.is_not(None),
    ),
    _c(
        "satisfied",
        "满意",
        "评价为满意的事件。",
        "count(satisfaction = 'satisfied')",
        lambda ctx: Event.satisfaction == "satisfied",
    ),
    _c(
        "basically",
        "基本满意",
        "评价为基本满意的事件。",
        "count(satisfaction = 'basically')",
        lambda ctx: Event.satisfaction == "basically",
    ),
    _c(
        "unsatisfied",
        "不满意",
        "评价为不满意的事件。",
        "count(satisfaction = 'unsatisfied')",
        lambda ctx: Event.satisfaction == "unsatisfied",
    ),
    Count(
        "handling_hours",
        "办结总时长（小时）",
        "已办结事件从上报到办结的自然小时数之和（用于计算平均办结时长）。",
        "sum(closed_at - reported_at in hours) over state = 'closed'",
        lambda ctx: func.sum(handling_hours(ctx)),
        decimals=HOURS_DIGITS,
    ),
)

RATES: tuple[Rate, ...] = (
    Rate(
        "closure_rate",
        "办结率",
        "办结量 ÷ 受理量（12345口径）。",
        "closed / received",
        ("closed",),
        "received",
    ),
    Rate(
        "overdue_rate",
        "逾期率",
        "逾期量 ÷ 受理量；逾期指办结时超过时限或在办已过时限（12345口径）。",
        "overdue / received",
        ("overdue",),
        "received",
    ),
    Rate(
        "on_time_rate",
        "按时办结率",
        "1 − 逾期率（12345口径）。",
        "1 - overdue / received",
        ("overdue",),
        "received",
        complement=True,
    ),
    Rate(
        "due_closure_rate",
        "结案率",
        "办结量 ÷ 应结案数（数字城管口径）。",
        "closed / due",
        ("closed",),
        "due",
    ),
    Rate(
        "due_on_time_rate",
        "按期结案率",
        "按期办结 ÷ 应结案数（数字城管口径）。",
        "closed_on_time / due",
        ("closed_on_time",),
        "due",
    ),
    Rate(
        "rework_rate",
        "返工率",
        "返工事件 ÷ 处置量。",
        "reworked / handled",
        ("reworked",),
        "handled",
    ),
    Rate(
        "handle_on_time_rate",
        "处置及时率",
        "1 − 处置超时 ÷ 部门处置量（职能部门按时处置）。",
        "1 - handled_late / handled_by_department",
        ("handled_late",),
        "handled_by_department",
        complement=True,
    ),
    Rate(
        "verify_on_time_rate",
        "核查及时率",
        "1 − 核查超时 ÷ 核查量（网格员、中心按时核查）。",
        "1 - verified_late / verified",
        ("verified_late",),
        "verified",
        complement=True,
    ),
    Rate(
        "extension_rate",
        "延期率",
        "延期事件 ÷ 分拨量。",
        "extended / dispatched",
        ("extended",),
        "dispatched",
    ),
    Rate(
        "satisfaction_rate",
        "满意率",
        "（满意 + 基本满意）÷ 已评价。",
        "(satisfied + basically) / evaluated",
        ("satisfied", "basically"),
        "evaluated",
    ),
    Rate(
        "valid_rate",
        "有效上报率",
        "有效上报 ÷ 受理量（网格员上报质量）。",
        "valid / received",
        ("valid",),
        "received",
    ),
    Rate(
        "avg_handling_hours",
        "平均办结时长（小时）",
        "已办结事件从上报到办结的平均自然小时数 = 办结总时长 ÷ 办结量。",
        "handling_hours / closed",
        ("handling_hours",),
        "closed",
        digits=HOURS_DIGITS,
        unit="hours",
    ),
)

_ALL: tuple[Count | Rate, ...] = (*COUNTS, *RATES)
KPIS: dict[str, Count | Rate] = {k.key: k for k in _ALL}
"""Every KPI by key, counts first, in display order."""


def definitions() -> dict[str, dict[str, str]]:
    """Return {key: {name, definition, formula, kind, unit}} for every KPI (dashboard hovers)."""
    return {
        k.key: {
            "name": k.name,
            "definition": k.definition,
            "formula": k.formula,
            "kind": "count" if isinstance(k, Count) else "rate",
            "unit": ("hours" if k.decimals else "events") if isinstance(k, Count) else k.unit,
        }
        for k in KPIS.values()
    }


def derive(counts: Mapping[str, float]) -> dict[str, Any]:
    """Return the counts with every rate they allow added (None where a denominator is 0).

    Rates come from the exact counts; sums of hours are rounded only in the result. Given
    only some counts (`counts_for`), only the rates made of those are added.
    """
    row: dict[str, Any] = {
        c.key: counts[c.key] if c.decimals is None else round(counts[c.key], c.decimals)
        for c in COUNTS
        if c.key in counts
    }
    for r in RATES:
        if r.denominator in counts and all(k in counts for k in r.numerator):
            row[r.key] = r.value(counts)
    return row


def counts_for(kpis: Collection[str] | None) -> tuple[Count, ...]:
    """Return the counts that the KPIs `kpis` (all if None) are made of, in registry order.

    `received` is always among them: groups are ranked by it.
    """
    if kpis is None:
        return COUNTS
    unknown = sorted(set(kpis) - set(KPIS))
    if unknown:
        raise ValueError(f"unknown KPIs: {unknown}")
    needed = {"received"}
    for key in kpis:
        kpi = KPIS[key]
        needed |= {kpi.key} if isinstance(kpi, Count) else {*kpi.numerator, kpi.denominator}
    return tuple(c for c in COUNTS if c.key in needed)


def _zero(counts: Sequence[Count] = COUNTS) -> dict[str, float]:
    return {c.key: 0 for c in counts}


def _clean(c: Count, value: Any) -> float:
    if value is None:
        return 0
    return int(value) if c.decimals is None else float(value)


# ---------------------------------------------------------------------------
# Grouping dimensions


@dataclass(frozen=True)
class Dimension:
    """A way to split the events: the SQL key of a row, and names for the keys."""

    key: str
    name: str
    column: Callable[[Context], ColumnElement[Any] | QueryableAttribute[Any]]
    names: Callable[[Session, list[Any]], dict[Any, str]]
    time: bool = False


def _chunks(keys: Sequence[Any], size: int = 500) -> Iterable[Sequence[Any]]:
    for i in range(0, len(keys), size):
        yield keys[i : i + size]


def _lookup(
    key_col: Any, name_col: Any, *where: Any
) -> Callable[[Session, list[Any]], dict[Any, str]]:
    def names(session: Session, keys: list[Any]) -> dict[Any, str]:
        found: dict[Any, str] = {}
        wanted = [k for k in keys if k is not None]
        for chunk in _chunks(wanted):
            found.update(
                session.execute(select(key_col, name_col).where(key_col.in_(chunk), *where)).all()
            )
        return found

    return names


def _grid_names(session: Session, keys: list[Any]) -> dict[Any, str]:
    # Grid codes are unique within a grid set; the active set's name wins over older ones.
    wanted = [k for k in keys if k is not None]
    if not wanted:
        return {}
    query = (
        select(Grid.code, Grid.name)
        .join(GridSet, GridSet.id == Grid.grid_set_id)
        .order_by(GridSet.active, Grid.id)
    )
    if len(wanted) <= 500:
        return dict(session.execute(query.where(Grid.code.in_(wanted))).all())
    # Many grids (a county's): one query for every grid under their common code prefix,
    # rather than a query per 500 codes.
    # The common prefix of the smallest and the largest code is every code's.
    lo, hi = min(wanted), max(wanted)
    n = next((i for i, (a, b) in enumerate(zip(lo, hi, strict=False)) if a != b), len(lo))
    prefix = lo[:n]
    rows = session.execute(query.where(Grid.code.startswith(prefix))).all()
    keep = set(wanted)
    return {code: name for code, name in rows if code in keep}


def _department_names(session: Session, keys: list[Any]) -> dict[Any, str]:
    found = _lookup(Department.id, Department.name)(session, keys)
    found[None] = "未分拨"
    return found


def _source_names(session: Session, keys: list[Any]) -> dict[Any, str]:
    return {s.value: s.label for s in Source}


def _time_names(session: Session, keys: list[Any]) -> dict[Any, str]:
    return {}


def _bucket(unit: str) -> Callable[[Context], ColumnElement[Any]]:
    """Return the Shanghai calendar day/week/month of reported_at as an ISO string."""

    def column(ctx: Context) -> ColumnElement[Any]:
        # Constants are literal SQL, not bound parameters: the same expression then appears
        # in SELECT and GROUP BY on PostgreSQL.
        lit = literal_column
        if ctx.dialect == "sqlite":
            # Stored as naive UTC text; Shanghai is UTC+8 all year (no DST since 1991).
            at = Event.reported_at
            if unit == "day":
                return func.date(at, lit("'+8 hours'"))
            if unit == "week":  # the Monday starting the (ISO) week
                return func.date(at, lit("'+8 hours'"), lit("'weekday 0'"), lit("'-6 days'"))
            return func.strftime(lit("'%Y-%m'"), at, lit("'+8 hours'"))
        local = func.timezone(lit("'Asia/Shanghai'"), Event.reported_at)
        if unit == "day":
            return func.to_char(local, lit("'YYYY-MM-DD'"))
        if unit == "week":
            return func.to_char(func.date_trunc(lit("'week'"), local), lit("'YYYY-MM-DD'"))
        return func.to_char(local, lit("'YYYY-MM'"))

    return column


DIMENSIONS: dict[str, Dimension] = {
    d.key: d
    for d in (
        Dimension(
            "town", "镇（街道）", lambda ctx: Event.town_code, _lookup(Region.code, Region.name)
        ),
        Dimension(
            "village",
            "村（社区）",
            lambda ctx: Event.village_code,
            _lookup(Region.code, Region.name),
        ),
        Dimension("grid", "网格", lambda ctx: Event.grid_code, _grid_names),
        Dimension(
            "department", "主办部门", lambda ctx: Event.lead_department_id, _department_names
        ),
        Dimension(
            "matter", "事项", lambda ctx: Event.matter_code, _lookup(Matter.code, Matter.name)
        ),
        Dimension(
            "category",
            "事项大类",
            lambda ctx: func.substr(Event.matter_code, literal_column("1"), literal_column("2")),
            _lookup(MatterCategory.code, MatterCategory.name),
        ),
        Dimension("source", "来源", lambda ctx: Event.source, _source_names),
        Dimension(
            "reporter", "上报人", lambda ctx: Event.reporter_id, _lookup(User.id, User.display_name)
        ),
        Dimension("day", "日", _bucket("day"), _time_names, time=True),
        Dimension("week", "周", _bucket("week"), _time_names, time=True),
        Dimension("month", "月", _bucket("month"), _time_names, time=True),
    )
}


def time_keys(unit: str, first: date, last: date) -> list[str]:
    """Return every bucket key from `first` to `last`, in order (empty buckets included)."""
    if unit == "day":
        return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    if unit == "week":
        monday = first - timedelta(days=first.weekday())
        weeks = (last - monday).days // 7 + 1
        return [(monday + timedelta(weeks=i)).isoformat() for i in range(weeks)]
    keys = []
    y, m = first.year, first.month
    while (y, m) <= (last.year, last.month):
        keys.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return keys


def _time_name(unit: str, key: str) -> str:
    if unit == "month":
        y, m = key.split("-")
        return f"{int(y)}年{int(m)}月"
    d = date.fromisoformat(key)
    if unit == "week":
        iso = d.isocalendar()
        return f"{iso.year}年第{iso.week}周（{d:%m-%d}起）"
    return f"{d.year}年{d.month}月{d.day}日"


# ---------------------------------------------------------------------------
# Filters and the computation


def check_filter(
    user: User,
    *,
    region: str | None,
    date_from: date,
    date_to: date,
    group_by: str | None,
    matter: str | None,
    source: str | None,
) -> None:
    """Raise Unprocessable for a malformed filter, Forbidden for a region outside the user's."""
    if region:
        if not region.isdigit() or len(region) not in REGION_COLUMNS:
            raise Unprocessable(
                "区划代码应为6、9、12或15位数字", code="bad_parameter", field="region"
            )
        if not region.startswith(user.region_code):
            raise Forbidden("所选区划不在您的辖区内", code="outside_jurisdiction", region=region)
    if date_from > date_to:
        raise Unprocessable("开始日期不能晚于结束日期", code="bad_parameter", field="from")
    if (date_to - date_from).days >= MAX_DAYS:
        raise Unprocessable(f"统计区间最长 {MAX_DAYS} 天", code="bad_parameter", field="to")
    if group_by and group_by not in DIMENSIONS:
        raise Unprocessable(
            f"未知分组：{group_by}（可选：{'、'.join(DIMENSIONS)}）",
            code="bad_parameter",
            field="group_by",
        )
    if matter and not (matter.isalnum() and matter.isascii() and len(matter) <= 16):
        raise Unprocessable("事项代码格式错误", code="bad_parameter", field="matter")
    if source and source not in {s.value for s in Source}:
        raise Unprocessable("未知来源", code="bad_parameter", field="source")


def compute(
    session: Session,
    user: User,
    *,
    region: str | None = None,
    date_from: date,
    date_to: date,
    group_by: str | None = None,
    matter: str | None = None,
    source: str | None = None,
    as_of: datetime | None = None,
    kpis: Collection[str] | None = None,
) -> dict[str, Any]:
    """Return the KPIs of the events received in [date_from, date_to] the user may see.

    {"totals": {...}, "groups": [{"key", "name", ...}], "definitions": {...}, "filter": {...}};
    groups ranked by received (time buckets in order, empty ones included); the aggregates
    come from one grouped query, and totals are the sum of the groups. `kpis` limits the
    result to those KPIs (and the counts they are made of): the query then aggregates only
    those, which is what the map's areas ask for on every pan and zoom.
    """
    check_filter(
        user,
        region=region,
        date_from=date_from,
        date_to=date_to,
        group_by=group_by,
        matter=matter,
        source=source,
    )
    as_of = as_of or utcnow()
    ctx = Context(as_of=as_of, dialect=session.get_bind().dialect.name)
    where = [
        visible(user),
        *event_conditions(
            date_from=date_from,
            date_to=date_to,
            region=region,
            matter=matter,
            sources=(source,) if source else (),
        ),
    ]
    counts = counts_for(kpis)
    aggregates = [c.aggregate(ctx).label(c.key) for c in counts]

    groups: list[dict[str, Any]] = []
    if group_by is None:
        row = session.execute(select(*aggregates).where(*where)).one()
        totals = {c.key: _clean(c, v) for c, v in zip(counts, row, strict=True)}
    else:
        dim = DIMENSIONS[group_by]
        key = dim.column(ctx)
        rows = session.execute(select(key, *aggregates).where(*where).group_by(key)).all()
        by_key = {
            r[0]: {c.key: _clean(c, v) for c, v in zip(counts, r[1:], strict=True)} for r in rows
        }
        if group_by == "department" and any(c.key == "returns" for c in counts):
            _attribute_returns(session, where, by_key, counts)
        if dim.time:
            keys: list[Any] = time_keys(group_by, date_from, date_to)
            keys += sorted(set(by_key) - set(keys))
            names = {k: _time_name(group_by, k) for k in keys}
        else:
            keys = sorted(by_key, key=lambda k: (-by_key[k]["received"], k is None, str(k)))
            names = dim.names(session, keys)
        groups = [
            {"key": k, "name": names.get(k, str(k)), **derive(by_key.get(k) or _zero(counts))}
            for k in keys
        ]
        totals = _zero(counts)
        for group in by_key.values():
            for c in counts:
                totals[c.key] += group[c.key]
    return {
        "totals": derive(totals),
        "groups": groups,
        "definitions": definitions(),
        "filter": {
            "region": region or None,
            "jurisdiction": user.region_code,
            "from": date_from.isoformat(),
            "to": date_to.isoformat(),
            "group_by": group_by,
            "matter": matter or None,
            "source": source or None,
            "as_of": as_of.astimezone(SHANGHAI).isoformat(),
        },
    }


def _attribute_returns(
    session: Session,
    where: list[ColumnElement[bool]],
    by_key: dict[Any, dict[str, float]],
    counts: Sequence[Count],
) -> None:
    """Count each return (回退) against the department that made it, not the final lead."""
    # holder_before of a 'return' action is 'department:<id>': the department returning it.
    made = session.execute(
        select(EventAction.holder_before, func.count())
        .join(Event, Event.id == EventAction.event_id)
        .where(*where, EventAction.action == "return")
        .group_by(EventAction.holder_before)
    ).all()
    for group in by_key.values():
        group["returns"] = 0
    for holder, n in made:
        level, _, ref = holder.partition(":")
        department_id = int(ref) if level == "department" and ref.isdigit() else None
        by_key.setdefault(department_id, _zero(counts))["returns"] += n


# ---------------------------------------------------------------------------
# Query parameters (the API and pages)


def parse_args(args: Mapping[str, str], now: datetime) -> dict[str, Any]:
    """Turn query parameters into `compute` keyword arguments; raise Unprocessable if bad.

    from/to are ISO dates, both days included (Shanghai calendar); without them the period
    is the last DEFAULT_DAYS days ending today (the Shanghai date of `now`).
    """
    today = now.astimezone(SHANGHAI).date()
    date_to = _date(args.get("to"), "to") or today
    date_from = _date(args.get("from"), "from") or date_to - timedelta(days=DEFAULT_DAYS - 1)
    return {
        "region": (args.get("region") or "").strip() or None,
        "date_from": date_from,
        "date_to": date_to,
        "group_by": (args.get("group_by") or "").strip() or None,
        "matter": (args.get("matter") or "").strip() or None,
        "source": (args.get("source") or "").strip() or None,
    }


def _date(raw: str | None, name: str) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise Unprocessable(
            f"日期格式应为 YYYY-MM-DD：{raw}", code="bad_parameter", field=name
        ) from None
