"""The pages of the closed loop: the centres' dispatch desk, the departments' inbox, the event page.

Three blueprints, one module (they share the work lists, the countdowns and the action forms):

- ``desk`` at /desk (town and county centres): what needs me, in sections with counts
  (/desk/), every event of my area (/desk/events), registering a hotline or citizen report
  (/desk/new), dispatching several events at once (POST /desk/dispatch); for the county
  centre, the 待定位 group (/desk/?tab=unplaced): reports that could not be placed in a grid,
  each placed by hand on a map or discarded (/desk/unplaced/<id>, gridgov.unplaced).
- ``inbox`` at /inbox (department handlers): what my department must sign for or handle,
  what it assists with (/inbox/), and what it has worked on (/inbox/done).
- ``eventpage`` at /events/<id> (everyone who may see the event): the record, the map, the
  photos, and exactly the actions `gridgov.events.allowed_actions` gives the user, each a form
  that posts to /events/<id>/act and goes through `gridgov.events.perform`.

Work lists never load a whole county: each section is one query with a LIMIT, the counts of
all sections are one query, and "即将超时" (yellow light, computed on the working calendar)
scans at most YELLOW_SCAN events nearest their stage deadline.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import shapely
from flask import (
    Blueprint,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from shapely.geometry import mapping
from sqlalchemy import ColumnElement, Select, and_, func, or_, select, true
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.datastructures import FileStorage
from werkzeug.wrappers import Response

from gridgov import eventdata, events, settings_of, unplaced
from gridgov.access import COUNTY_CENTRE_ROLES, can_view, centre_of, visible
from gridgov.calendar_store import load_calendar
from gridgov.catalog import resolve_unit
from gridgov.db import utcnow
from gridgov.errors import GridGovError, NotFound, Unprocessable
from gridgov.geo.geocoder import geocode_text
from gridgov.models import (
    ROLE_LABELS,
    STATE_LABELS,
    Department,
    Event,
    EventAction,
    EventAssignment,
    EventState,
    Grid,
    HolderLevel,
    Level,
    Matter,
    MatterCategory,
    Region,
    Role,
    Source,
    Stage,
    UnplacedReason,
    UnplacedReport,
    UnplacedStatus,
    Urgency,
    User,
)
from gridgov.photos import PhotoStore
from gridgov.web import get_session, page_arg, page_count
from gridgov.web.auth_pages import home_for, page_user, require_role, safe_next
from gridgov.web.forms import Form
from gridgov.web.pages import local_time
from gridgov.workflow.machine import MAX_EXTENSION_DAYS, SATISFACTION, TRANSITIONS, Transition
from gridgov.workflow.worktime import WorkCalendar

bp = Blueprint("desk", __name__, url_prefix="/desk")
inbox_bp = Blueprint("inbox", __name__, url_prefix="/inbox")
event_bp = Blueprint("eventpage", __name__)

CENTRE_ROLES = (Role.TOWN_OPERATOR, Role.COUNTY_DISPATCHER, Role.COUNTY_SHIFT_LEAD)
SEARCH_ROLES = (*CENTRE_ROLES, Role.LEADER)

SECTION_LIMIT = 50
"""Rows shown per work-list section (the count says how many there are)."""
YELLOW_SCAN = 500
"""At most this many running events, nearest their stage deadline, are checked for yellow."""
YELLOW_HORIZON = timedelta(days=21)
"""Stage deadlines further away than this cannot be in their last 20 % (≤ 15 + 15 working
days with an extension, so at most 6 working days ≈ 2 calendar weeks with a holiday)."""
LIST_PER_PAGE = 20
UNPLACED_TAB = "unplaced"
"""The desk tab of the county centre's 待定位 queue (gridgov.unplaced)."""
REGISTER_SOURCES = (Source.HOTLINE, Source.CITIZEN, Source.SENSOR, Source.CENTRE)
"""Where a report registered at a centre comes from, most frequent first."""
LOCATION_ERRORS = frozenset({"outside_jurisdiction", "bad_coordinates", "unknown_crs"})
"""Errors of `geocode` that the location field should show."""
STALE_MESSAGE = "事件已被他人更新，请刷新后重试"

RUNNING_STATES = [s.value for s in EventState if s.is_open and s != EventState.SHELVED]
"""Open states whose clock runs (挂账 pauses it)."""

ACTION_LABELS = {"report": "上报", **{name: t.label for name, t in TRANSITIONS.items()}}
COMMENT_LABELS = {
    "reject": "不予受理理由",
    "void": "作废理由",
    "withdraw": "撤单理由",
    "escalate": "上报说明",
    "self_handle": "处置情况",
    "return": "退回理由",
    "request_extension": "延期理由",
    "refuse_extension": "驳回理由",
    "shelve": "挂账理由",
    "assist_note": "协办反馈",
    "handle": "处置结果",
    "verify_fail": "核查意见（不通过的原因）",
    "callback": "回访记录",
    "supervise": "督办意见",
    "instruct": "批示内容",
    "relocate": "更正说明",
    "dispatch": "分拨说明",
    "merge": "并案说明",
    "verify_pass": "核查意见",
    "evaluate": "评价意见",
    "approve_extension": "审批意见",
    "close": "结案说明",
}
PHOTO_ACTIONS = {"handle": "after", "verify_pass": "after", "verify_fail": "evidence"}
"""Actions whose form offers a photo upload, with the kind preselected."""
PHOTO_KIND_LABELS = events.PHOTO_KINDS
CONFIRM = {
    "reject": "确定不予受理该事件？",
    "void": "确定作废该事件？",
    "withdraw": "确定撤单？",
    "merge": "确定将该事件并入所选事件？",
    "return": "确定退回该事件？",
    "verify_fail": "确定核查不通过、退回返工？",
    "close": "确定结案？",
    "shelve": "确定挂账（暂停计时）？",
}
SORTS = {"deadline": "按时限（最紧迫在前）", "reported": "按上报时间（最新在前）"}
LIGHT_LABELS = {
    "green": "正常",
    "yellow": "即将超时",
    "red": "已超时",
    "paused": "暂停计时",
    "done": "已结束",
}


# ---------------------------------------------------------------------------------------------
# Work lists (no Flask request in here: the views pass what they parsed)


@dataclass(frozen=True)
class Section:
    """One tab of a work list: which events, and what the user does with them."""

    key: str
    label: str
    hint: str
    where: Callable[[WorkScope], ColumnElement[bool]]
    """The section's condition (for "即将超时": the events to check for a yellow light)."""
    yellow: bool = False
    """Only the events of `where` whose stage light is yellow (computed in Python)."""
    batch: bool = False
    """Whether the rows can be dispatched together."""
    sign: bool = False
    """Whether the rows get a quick 签收 button."""


@dataclass(frozen=True)
class WorkScope:
    """Whose work list: a centre (level, region) or a department, and the moment."""

    now: datetime
    level: str = ""
    region: str = ""
    department_id: int = 0


def _held(state: EventState) -> Callable[[WorkScope], ColumnElement[bool]]:
    def where(w: WorkScope) -> ColumnElement[bool]:
        return and_(
            Event.state == state.value,
            Event.holder_level == w.level,
            Event.holder_region_code == w.region,
        )

    return where


def _extension_pending(w: WorkScope) -> ColumnElement[bool]:
    return and_(
        Event.state == EventState.HANDLING.value,
        Event.extension_pending_days.is_not(None),
        Event.dispatcher_level == w.level,
        Event.dispatcher_region_code == w.region,
    )


def _anywhere(w: WorkScope) -> ColumnElement[bool]:
    return true()


def _late(w: WorkScope) -> ColumnElement[bool]:
    """Running and past a deadline: overdue (marked), the stage's or the event's."""
    return and_(
        Event.state.in_(RUNNING_STATES),
        or_(Event.overdue.is_(True), Event.stage_due_at < w.now, Event.due_at < w.now),
    )


def _dept_held(state: EventState) -> Callable[[WorkScope], ColumnElement[bool]]:
    def where(w: WorkScope) -> ColumnElement[bool]:
        return and_(
            Event.state == state.value,
            Event.holder_level == HolderLevel.DEPARTMENT.value,
            Event.holder_department_id == w.department_id,
        )

    return where


def _dept_holds(w: WorkScope) -> ColumnElement[bool]:
    return and_(
        Event.holder_level == HolderLevel.DEPARTMENT.value,
        Event.holder_department_id == w.department_id,
    )


def _dept_late(w: WorkScope) -> ColumnElement[bool]:
    return and_(_dept_holds(w), _late(w))


def _assisting(w: WorkScope) -> ColumnElement[bool]:
    return and_(
        Event.state.in_(RUNNING_STATES),
        Event.id.in_(
            select(EventAssignment.event_id).where(
                EventAssignment.department_id == w.department_id,
                EventAssignment.role == "assist",
                EventAssignment.active.is_(True),
            )
        ),
    )


CENTRE_SECTIONS = (
    Section("reported", "待受理", "上报或转来、由本中心受理的事件", _held(EventState.REPORTED)),
    Section(
        "accepted", "待分拨", "已受理、待分拨给部门的事件", _held(EventState.ACCEPTED), batch=True
    ),
    Section(
        "returned", "退回待重派", "部门退回、待重新分拨", _held(EventState.RETURNED), batch=True
    ),
    Section("extension", "延期待审批", "本中心分拨的事件，部门申请延期", _extension_pending),
    Section("handled", "待核查", "部门已处置、由本中心核查", _held(EventState.HANDLED)),
    Section("verified", "待结案", "核查通过、待本中心结案", _held(EventState.VERIFIED)),
    Section("soon", "即将超时", "辖区内当前环节已用去八成以上时限", _anywhere, yellow=True),
    Section("late", "已超时", "辖区内已超过环节时限或办结时限", _late),
)
INBOX_SECTIONS = (
    Section(
        "dispatched", "待签收", "派给本部门、待签收", _dept_held(EventState.DISPATCHED), sign=True
    ),
    Section("handling", "处置中", "本部门已签收（含返工）", _dept_held(EventState.HANDLING)),
    Section("soon", "即将超时", "本部门办理中、已用去八成以上时限", _dept_holds, yellow=True),
    Section("late", "已超时", "本部门办理中、已超过时限", _dept_late),
    Section("assist", "协办", "本部门协办的事件", _assisting),
)


@dataclass
class WorkList:
    """The sections with their counts, and the rows of the chosen one."""

    sections: tuple[Section, ...]
    counts: dict[str, int]
    active: Section
    rows: list[dict[str, Any]]
    soon_capped: bool = False
    """Whether the yellow scan hit YELLOW_SCAN (the count is then a lower bound)."""


def _order(sort: str) -> list[Any]:
    if sort == "reported":
        return [Event.reported_at.desc(), Event.id.desc()]
    return [
        Event.stage_due_at.asc().nulls_last(),
        Event.due_at.asc(),
        Event.id.asc(),
    ]


def _yellow(
    session: Session, base: Select[Any], scope: WorkScope, calendar: WorkCalendar
) -> tuple[list[Event], bool]:
    """Return the running events of `base` whose stage light is yellow, nearest deadline first."""
    candidates = session.scalars(
        base.where(
            Event.state.in_(RUNNING_STATES),
            Event.overdue.is_(False),
            Event.due_at >= scope.now,
            Event.stage_due_at >= scope.now,
            Event.stage_due_at <= scope.now + YELLOW_HORIZON,
        )
        .order_by(Event.stage_due_at.asc(), Event.id.asc())
        .limit(YELLOW_SCAN)
    ).all()
    yellow = [
        e for e in candidates if eventdata.lights(e, calendar, scope.now)["stage_light"] == "yellow"
    ]
    return yellow, len(candidates) >= YELLOW_SCAN


def work_list(
    session: Session,
    base: Select[Any],
    sections: tuple[Section, ...],
    scope: WorkScope,
    tab: str,
    sort: str,
    calendar: WorkCalendar,
) -> WorkList:
    """Count every section of `base` (one query) and load the rows of section `tab`."""
    counted = [s for s in sections if not s.yellow]
    counts_row = session.execute(_counts_query(base, counted, scope)).one()
    counts = {s.key: int(counts_row[i] or 0) for i, s in enumerate(counted)}
    capped = False
    yellows: dict[str, list[Event]] = {}
    for s in sections:
        if s.yellow:
            found, cut = _yellow(session, base.where(s.where(scope)), scope, calendar)
            yellows[s.key], counts[s.key] = found, len(found)
            capped = capped or cut
    by_key = {s.key: s for s in sections}
    if tab not in by_key:
        tab = next((s.key for s in sections if counts.get(s.key)), sections[0].key)
    active = by_key[tab]
    if active.yellow:
        rows = yellows[active.key]
        if sort == "reported":
            rows.sort(key=lambda e: (e.reported_at, e.id), reverse=True)
        rows = rows[:SECTION_LIMIT]
    else:
        rows = list(
            session.scalars(
                base.where(active.where(scope)).order_by(*_order(sort)).limit(SECTION_LIMIT)
            )
        )
    return WorkList(sections, counts, active, _rows(session, rows, calendar, scope.now), capped)


def _counts_query(base: Select[Any], sections: list[Section], scope: WorkScope) -> Select[Any]:
    """Return one query counting every section of `base`: a FILTERed count(*) each."""
    columns: list[Any] = [
        func.count(Event.id).filter(s.where(scope)).label(s.key) for s in sections
    ]
    return base.with_only_columns(*columns).order_by(None)


def visible_events(user: User, flt: eventdata.EventFilter) -> Select[Any]:
    """Return the events the user may see (area, or the department's), filtered."""
    return flt.apply(select(Event).where(visible(user)))


# ---------------------------------------------------------------------------------------------
# Rows: what a list shows about one event


def _number(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def countdown(
    calendar: WorkCalendar, deadline: datetime | None, now: datetime, unit: str | None = None
) -> str:
    """Say how much time is left until `deadline`, or how late it is.

    Working time (工作小时, 工作日) unless the limit runs in natural hours (`unit` "hours",
    e.g. an urgent matter's two hours): then 小时.
    """
    if deadline is None:
        return ""
    if unit == "hours":
        hours = (deadline - now).total_seconds() / 3600
        if hours >= 0:
            return f"剩余 {_number(hours)} 小时"
        return "已超时" if -hours < 0.05 else f"已超时 {_number(-hours)} 小时"
    hours = calendar.remaining(deadline, now, "working_hours")
    per_day = calendar.hours_per_day or 8
    if now <= deadline:
        if hours >= 2 * per_day:
            return f"剩余 {_number(hours / per_day)} 工作日"
        return f"剩余 {_number(max(hours, 0))} 工作小时"
    late = -hours
    if late < 0.05:
        return "已超时"
    if late >= 2 * per_day:
        return f"已超时 {_number(late / per_day)} 工作日"
    return f"已超时 {_number(late)} 工作小时"


def _clock(event: Event, calendar: WorkCalendar, now: datetime, lights: dict[str, Any]) -> dict:
    """Return the countdown a list shows: the stage's deadline if timed, else the event's."""
    state = EventState(event.state)
    if state == EventState.SHELVED:
        return {"text": "挂账，暂停计时", "light": "paused", "stage": ""}
    if not state.is_open:
        closed = event.closed_at or event.ended_at
        text = "已结束" if not event.overdue else "逾期办结"
        return {
            "text": text,
            "light": "red" if event.overdue else "done",
            "stage": "",
            "at": closed,
        }
    if event.stage and event.stage_due_at is not None:
        light = lights["stage_light"] or "green"
        if lights["light"] == "red":
            light = "red"
        return {
            "text": countdown(calendar, event.stage_due_at, now, event.stage_unit),
            "light": light,
            "stage": f"{Stage(event.stage).label}时限",
            "at": event.stage_due_at,
        }
    return {
        "text": countdown(calendar, event.due_at, now),
        "light": lights["light"],
        "stage": "办结时限",
        "at": event.due_at,
    }


def _rows(
    session: Session, items: Iterable[Event], calendar: WorkCalendar, now: datetime
) -> list[dict[str, Any]]:
    names = eventdata.Names.load(session)
    out = []
    for event in items:
        row = eventdata.summary(event, calendar, now, names)
        row["clock"] = _clock(event, calendar, now, row)
        row["urgency_label"] = Urgency(event.urgency).label
        row["source_label"] = Source(event.source).label
        row["reported_local"] = event.reported_at
        out.append(row)
    return out


def suggested_leads(session: Session, rows: list[dict[str, Any]]) -> None:
    """Add the matter list's suggested lead unit to rows waiting for dispatch."""
    kinds = dict(session.execute(select(Matter.code, Matter.lead_kind)).all())
    cache: dict[tuple[str, str], str] = {}
    for row in rows:
        kind = kinds.get(row["matter_code"], "")
        key = (kind, row["town_code"])
        if key not in cache:
            unit = resolve_unit(session, kind, row["grid_code"]) if kind else None
            cache[key] = unit.name if unit else "—"
        row["suggested_lead"] = cache[key]


# ---------------------------------------------------------------------------------------------
# Departments a centre may dispatch to


@dataclass
class DispatchChoice:
    """Departments grouped for a select, with the matter list's suggestion."""

    groups: list[tuple[str, list[Department]]]
    lead_id: int | None = None
    assisting_ids: list[int] = field(default_factory=list)
    assisting_names: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def ids(self) -> set[int]:
        return {d.id for _, depts in self.groups for d in depts}


def dispatch_choice(session: Session, user: User, event: Event | None = None) -> DispatchChoice:
    """Return the units the user's centre may dispatch to (and the suggestion for `event`).

    A town centre: its town's offices. The county centre: the county bureaus and the offices
    of the event's town (of every town for a batch).
    """
    centre = centre_of(user)
    if centre is None:
        return DispatchChoice([])
    level, region = centre
    active = select(Department).where(Department.active.is_(True)).order_by(Department.code)
    names: dict[str, str] = {
        code: name
        for code, name in session.execute(
            select(Region.code, Region.name).where(Region.code.startswith(region))
        )
    }
    groups: list[tuple[str, list[Department]]] = []
    if level == HolderLevel.COUNTY:
        bureaus = list(
            session.scalars(
                active.where(Department.level == "county", Department.region_code == region)
            )
        )
        groups.append(("县直部门", bureaus))
        towns = (
            [event.town_code]
            if event is not None
            else sorted(c for c in names if len(c) == Level.TOWN.code_length)
        )
    else:
        towns = [region]
    offices = session.scalars(
        active.where(Department.level == "town", Department.region_code.in_(towns))
    ).all()
    for town in towns:
        members = [d for d in offices if d.region_code == town]
        if members:
            groups.append((f"{names.get(town, town)}站所", members))
    choice = DispatchChoice(groups)
    if event is None:
        return choice
    matter = session.get(Matter, event.matter_code)
    if matter is None:
        return choice
    ids = choice.ids
    lead = resolve_unit(session, matter.lead_kind, event.grid_code)
    if lead is not None and lead.id in ids:
        choice.lead_id = lead.id
    elif lead is not None:
        choice.note = f"事项清单建议由{lead.name}主办，不在本中心可分拨范围内，可上报上级"
    for kind in matter.assisting_kinds:
        unit = resolve_unit(session, kind, event.grid_code)
        if unit is not None and unit.id in ids and unit.id != choice.lead_id:
            choice.assisting_ids.append(unit.id)
            choice.assisting_names.append(unit.name)
    return choice


# ---------------------------------------------------------------------------------------------
# Filters (shared by the desk, the inbox and the event search)


def parse_filter(args: Any) -> tuple[eventdata.EventFilter, str]:
    """Return the filter of the query string and its Chinese error ("" if it is fine)."""
    try:
        return eventdata.EventFilter.from_args(args), ""
    except Unprocessable as exc:
        return eventdata.EventFilter(), exc.message


def filter_options(session: Session, user: User) -> dict[str, Any]:
    """Return the choices of the filter bar: places below the user's area, matters, …"""
    code = user.region_code
    level = Level.of_code(code)
    child_level = {Level.COUNTY: Level.TOWN, Level.TOWN: Level.VILLAGE}.get(level)
    places: list[Any] = []
    if child_level is not None:
        places = list(
            session.execute(
                select(Region.code, Region.name)
                .where(Region.parent_code == code, Region.level == child_level.value)
                .order_by(Region.code)
            )
        )
    return {
        "place_label": "镇（街道）" if child_level == Level.TOWN else "村（社区）",
        "places": places,
        "categories": matter_groups(session),
        "urgencies": [(u.value, u.label) for u in Urgency],
        "sources": [(s.value, s.label) for s in Source],
        "states": [(s.value, STATE_LABELS[s]) for s in EventState],
        "sorts": SORTS,
    }


def matter_groups(session: Session, *, active_only: bool = False) -> list[tuple[Any, list]]:
    """Return the matter list as (category, [matters]) for grouped selects."""
    categories = session.scalars(
        select(MatterCategory)
        .options(selectinload(MatterCategory.matters))
        .order_by(MatterCategory.sort, MatterCategory.code)
    ).all()
    return [
        (c, [m for m in c.matters if m.active or not active_only])
        for c in categories
        if any(m.active or not active_only for m in c.matters)
    ]


def _sort(value: str | None, default: str) -> str:
    """Return the requested list order if it is one of SORTS, else `default`."""
    return value if value in SORTS else default


def _query_args(**changes: Any) -> dict[str, Any]:
    """Return the current query string with `changes` (None removes a key)."""
    args = {k: v for k, v in request.args.items() if v not in ("", None)}
    for key, value in changes.items():
        if value is None:
            args.pop(key, None)
        else:
            args[key] = value
    return args


# ---------------------------------------------------------------------------------------------
# Dispatch desk (/desk)


@bp.get("/")
def index() -> Any:
    user = require_role(*CENTRE_ROLES)
    session = get_session()
    flt, filter_error = parse_filter(request.args)
    sort = _sort(request.args.get("sort"), "deadline")
    centre = centre_of(user)
    assert centre is not None
    now = utcnow()
    calendar = load_calendar(session)
    scope = WorkScope(now, level=centre[0], region=centre[1])
    tab = request.args.get("tab", "")
    has_queue = Role(user.role) in COUNTY_CENTRE_ROLES
    queue_tab = has_queue and tab == UNPLACED_TAB
    work = work_list(
        session,
        visible_events(user, flt),
        CENTRE_SECTIONS,
        scope,
        "" if queue_tab else tab,
        sort,
        calendar,
    )
    batch = None
    if work.active.batch and not queue_tab:
        suggested_leads(session, work.rows)
        batch = dispatch_choice(session, user)
    queue_tab_link = None
    queue_rows: list[dict[str, Any]] = []
    if has_queue:
        queue_tab_link = {
            "key": UNPLACED_TAB,
            "label": "待定位",
            "count": unplaced.count_waiting(session, user),
            "active": queue_tab,
        }
    if queue_tab:
        waiting, _ = unplaced.queue(session, user, limit=SECTION_LIMIT)
        queue_rows = unplaced_rows(session, waiting, now)
    return render_template(
        "desk/index.html",
        queue_tab=queue_tab_link,
        queue_rows=queue_rows,
        work=work,
        flt=flt,
        filter_error=filter_error,
        sort=sort,
        options=filter_options(session, user),
        batch=batch,
        centre_name=_centre_name(session, centre),
        query_args=_query_args,
        limit=SECTION_LIMIT,
        yellow_scan=YELLOW_SCAN,
    )


def _centre_name(session: Session, centre: tuple[str, str]) -> str:
    level, region = centre
    name = session.scalar(select(Region.name).where(Region.code == region)) or region
    return f"{name}{'联勤指挥中心' if level == HolderLevel.COUNTY else '综治中心'}"


@bp.post("/dispatch")
def batch_dispatch() -> Response:
    """Dispatch every ticked event to the same lead (and assisting) units, one by one."""
    user = require_role(*CENTRE_ROLES)
    session = get_session()
    form = Form.from_request()
    back = safe_next(form.text("back")) or url_for("desk.index", tab="accepted")
    ids = _int_list(form.values("event_id"))
    lead = _int_list([form.text("lead_department_id")])
    assisting = _int_list(form.values("assisting_department_ids"))
    comment = form.optional("comment", "分拨说明", max_length=2000)
    if not ids:
        flash("请至少勾选一件要分拨的事件", "error")
        return redirect(back)
    if not lead:
        flash("请选择主办部门", "error")
        return redirect(back)
    inputs: dict[str, Any] = {
        "lead_department_id": lead[0],
        "assisting_department_ids": [d for d in assisting if d != lead[0]],
        "comment": comment,
    }
    done, failed = 0, 0
    settings = settings_of(current_app)
    for event_id in ids:
        version = _int_list([form.text(f"version_{event_id}")])
        try:
            with session.begin_nested():
                event = events.perform(
                    session,
                    user,
                    event_id,
                    "dispatch",
                    dict(inputs),
                    expected_version=version[0] if version else None,
                    tolerance_m=settings.snap_tolerance_m,
                )
                lead_name = session.get(Department, lead[0])
            done += 1
            flash(
                f"事件 {event.code}：已分拨给{lead_name.name if lead_name else '所选部门'}",
                "success",
            )
        except (GridGovError, StaleDataError) as exc:
            failed += 1
            message = exc.message if isinstance(exc, GridGovError) else STALE_MESSAGE
            flash(f"事件 {_code_for(session, user, event_id)}：分拨失败——{message}", "error")
    summary = f"批量分拨完成：成功 {done} 件" + (f"，失败 {failed} 件" if failed else "")
    flash(summary, "warning" if failed else "success")
    return redirect(back)


def _code_for(session: Session, user: User, event_id: int) -> str:
    event = session.get(Event, event_id)
    if event is None:
        return f"#{event_id}（不存在）"
    try:
        events.get_event(session, user, event_id)
    except GridGovError:
        return f"#{event_id}"
    return event.code


def _int_list(values: Iterable[str]) -> list[int]:
    out = []
    for value in values:
        text = (value or "").strip()
        if text.isdigit() and len(text) < 12:
            out.append(int(text))
    return list(dict.fromkeys(out))


@bp.get("/events")
def search() -> Any:
    """Every event of the user's area, filtered and paginated."""
    user = require_role(*SEARCH_ROLES)
    session = get_session()
    flt, filter_error = parse_filter(request.args)
    q = (request.args.get("q") or "").strip()[:50]
    late = request.args.get("late") == "1"
    sort = _sort(request.args.get("sort"), "reported")
    now = utcnow()
    calendar = load_calendar(session)
    query = visible_events(user, flt)
    if q:
        query = query.where(or_(Event.code.contains(q), Event.description.contains(q)))
    if late:
        query = query.where(_late(WorkScope(now)))
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    pages = page_count(total, LIST_PER_PAGE)
    page = min(flt.page, pages)
    items = session.scalars(
        query.order_by(*_order(sort)).limit(LIST_PER_PAGE).offset((page - 1) * LIST_PER_PAGE)
    )
    return render_template(
        "desk/events.html",
        rows=_rows(session, items, calendar, now),
        total=total,
        page=page,
        pages=pages,
        flt=flt,
        q=q,
        late=late,
        sort=sort,
        filter_error=filter_error,
        options=filter_options(session, user),
        query_args=_query_args,
    )


@bp.get("/areas.json")
def areas() -> Any:
    """The outlines of the places below the user's area (towns or villages), simplified."""
    user = require_role(*CENTRE_ROLES)
    session = get_session()
    code = user.region_code
    level = Level.of_code(code)
    child = Level.TOWN if level == Level.COUNTY else Level.VILLAGE
    features = []
    for region in session.scalars(
        select(Region).where(Region.code.startswith(code), Region.level == child.value)
    ):
        if region.geom is None or region.geom.is_empty:
            continue
        features.append(_feature(region.geom.simplify(0.0002), code=region.code, name=region.name))
    return jsonify({"type": "FeatureCollection", "features": features})


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def _feature(geom: Any, **properties: Any) -> dict[str, Any]:
    shape = mapping(geom)
    return {
        "type": "Feature",
        "properties": properties,
        "geometry": {"type": shape["type"], "coordinates": _rounded(shape["coordinates"])},
    }


@bp.route("/new", methods=["GET", "POST"])
def register() -> Any:
    """Register a report that came by the hotline, a citizen, a sensor or the centre itself."""
    user = require_role(*CENTRE_ROLES)
    session = get_session()
    allowed = {s.value for s in events.REPORTING_SOURCES[Role(user.role)]}
    sources = [s for s in REGISTER_SOURCES if s.value in allowed]
    if request.method == "GET":
        form = Form({"client_key": uuid.uuid4().hex, "urgency": "normal", "source": "hotline"})
        return _register_page(session, user, form, sources)
    form = Form.from_request()
    source = form.choice("source", "事件来源", [s.value for s in sources])
    matter = form.choice(
        "matter_code",
        "事项",
        [m.code for _, ms in matter_groups(session, active_only=True) for m in ms],
    )
    urgency = form.choice("urgency", "紧急程度", [u.value for u in Urgency])
    description = form.required("description", "事件描述", max_length=2000)
    address = form.optional("address", "详细地址", max_length=200)
    reporter_name = form.optional("reporter_name", "反映人姓名", max_length=64)
    phone = form.optional("reporter_phone", "联系电话", max_length=32)
    if phone and not all(c.isdigit() or c in "-+ " for c in phone):
        form.add_error("reporter_phone", "联系电话只能包含数字、空格、+ 和 -")
    client_key = form.text("client_key") or uuid.uuid4().hex
    form.data["client_key"] = client_key
    queueable = unplaced.may_queue(user, source)
    to_queue = queueable and form.text("queue") == "1"
    lng, lat = _coordinates(form)
    if form.ok and (lng is None or lat is None) and not to_queue:
        lng, lat = _place(session, form)
    if not form.ok:
        offer = queueable and set(form.errors) == {"place"}
        return _register_page(session, user, form, sources, status=422, offer_queue=offer)
    data = events.ReportInput(
        matter_code=matter,
        urgency=urgency,
        description=description,
        lng=lng,
        lat=lat,
        client_key=client_key,
        address=address,
        source=source,
        reporter_name=reporter_name,
        reporter_phone=phone,
    )
    tolerance_m = settings_of(current_app).snap_tolerance_m
    try:
        if to_queue:
            outcome = unplaced.receive_report(
                session, user, data, place_text=form.text("place"), tolerance_m=tolerance_m
            )
        else:
            outcome = events.report_event(session, user, data, tolerance_m=tolerance_m)
    except GridGovError as exc:
        session.rollback()
        form.add_error_from(exc)
        _move_error(form, "lng", "place")
        if exc.code in LOCATION_ERRORS:
            _move_error(form, "", "place")
        # Outside every grid (geocode's 422, not a grid of another county's 403): offer the queue.
        offer = queueable and isinstance(exc, Unprocessable) and exc.code in LOCATION_ERRORS
        return _register_page(session, user, form, sources, status=exc.status, offer_queue=offer)
    if isinstance(outcome, unplaced.Receipt):
        report = outcome.report
        flash(
            f"位置无法定位到本县网格，已放入待定位（编号 {report.id}），请核实位置后手动定位",
            "warning",
        )
        return redirect(url_for("desk.index", tab=UNPLACED_TAB))
    event = outcome.event
    flash(f"已登记事件 {event.code}", "success")
    if outcome.duplicates:
        flash(
            f"发现 {len(outcome.duplicates)} 件位置相近的同类事件，可能重复，"
            "请在下方“可能重复的事件”中核对",
            "warning",
        )
    return redirect(url_for("eventpage.show", event_id=event.id))


def _move_error(form: Form, source: str, target: str) -> None:
    if source in form.errors:
        form.errors.setdefault(target, form.errors.pop(source))


def _coordinates(form: Form) -> tuple[float | None, float | None]:
    """Return the typed or tapped WGS84 position, or (None, None) if none was given."""
    raw_lng, raw_lat = form.text("lng"), form.text("lat")
    if not raw_lng and not raw_lat:
        return None, None
    try:
        lng, lat = float(raw_lng), float(raw_lat)
    except ValueError:
        form.add_error("place", "经纬度格式错误，请在地图上重新点选位置")
        return None, None
    if not (math.isfinite(lng) and math.isfinite(lat) and -180 <= lng <= 180 and -90 <= lat <= 90):
        form.add_error("place", "经纬度超出范围，请在地图上重新点选位置")
        return None, None
    return lng, lat


def _place(session: Session, form: Form) -> tuple[float | None, float | None]:
    """Locate the typed place name (to a village) when no position was tapped."""
    text = form.optional("place", "地点", max_length=100)
    if not text:
        form.add_error("place", "请在地图上点选事件位置，或填写村（社区）名称后点“查找”")
        return None, None
    try:
        found = geocode_text(session, text)
    except Unprocessable as exc:
        form.add_error("place", exc.message)
        return None, None
    placement = found.get("placement")
    if not placement:
        form.add_error(
            "place", f"“{text}”只定位到{found.get('name', '')}，请补充村（社区）名称或在地图上点选"
        )
        return None, None
    return placement["lng"], placement["lat"]


def _register_page(
    session: Session,
    user: User,
    form: Form,
    sources: list[Source],
    status: int = 200,
    *,
    offer_queue: bool = False,
) -> Any:
    page = render_template(
        "desk/new.html",
        form=form,
        sources=sources,
        matters=matter_groups(session, active_only=True),
        urgencies=[(u.value, u.label) for u in Urgency],
        basemap=basemap(),
        offer_queue=offer_queue,
    )
    return page, status


# ---------------------------------------------------------------------------------------------
# The county centre's 待定位 queue (/desk/?tab=unplaced, /desk/unplaced/<id>)


def _waited(received: datetime, now: datetime) -> str:
    """Say how long a report has waited since it was received (natural time)."""
    minutes = max(int((now - received).total_seconds() // 60), 0)
    if minutes < 60:
        return f"{minutes} 分钟"
    if minutes < 48 * 60:
        return f"{minutes // 60} 小时"
    return f"{minutes // (24 * 60)} 天"


def unplaced_rows(
    session: Session, reports: Iterable[UnplacedReport], now: datetime
) -> list[dict[str, Any]]:
    """Return what the 待定位 list shows about each queued report."""
    matters = dict(session.execute(select(Matter.code, Matter.name)).all())
    out = []
    for r in reports:
        out.append(
            {
                "id": r.id,
                "received_at": r.received_at,
                "waited": _waited(r.received_at, now),
                "source_label": Source(r.source).label,
                "matter_name": matters.get(r.matter_code, r.matter_code),
                "description": r.description,
                "urgency": r.urgency,
                "urgency_label": Urgency(r.urgency).label,
                "where": r.address or r.place_text,
                "coords": _coords_text(r),
                "reason_label": UnplacedReason(r.reason).label,
                "distance": _distance_text(r.nearest_m),
                "submitted_by": r.submitted_by.display_name,
            }
        )
    return out


def _coords_text(r: UnplacedReport) -> str:
    if r.input_lng is None or r.input_lat is None:
        return ""
    return f"{r.input_lng:.6f}, {r.input_lat:.6f}（{r.input_crs.upper()}）"


def _distance_text(metres: float | None) -> str:
    if metres is None:
        return ""
    if metres < 10_000:
        return f"距最近网格约 {metres:,.0f} 米"
    return f"距最近网格约 {metres / 1000:,.1f} 公里"


def _unplaced_page(
    report_id: int,
    *,
    place_form: Form | None = None,
    discard_form: Form | None = None,
    status: int = 200,
) -> Any:
    user = require_role(*COUNTY_CENTRE_ROLES)
    session = get_session()
    report = unplaced.get_report(session, user, report_id)
    now = utcnow()
    event = session.get(Event, report.event_id) if report.event_id else None
    page = render_template(
        "desk/unplaced.html",
        r=report,
        row=unplaced_rows(session, [report], now)[0],
        status_label=UnplacedStatus(report.status).label,
        waiting=report.status == UnplacedStatus.QUEUED,
        event=event,
        place_form=place_form or Form({"version": str(report.version)}),
        discard_form=discard_form or Form({"version": str(report.version)}),
        basemap=basemap(),
    )
    return page, status


@bp.get("/unplaced/<int:report_id>")
def unplaced_report(report_id: int) -> Any:
    """A queued report as received, with a map to place it and a form to discard it."""
    return _unplaced_page(report_id)


@bp.post("/unplaced/<int:report_id>/place")
def place_unplaced(report_id: int) -> Any:
    """Place a queued report at the tapped point or the named village: it becomes an event."""
    user = require_role(*COUNTY_CENTRE_ROLES)
    session = get_session()
    unplaced.get_report(session, user, report_id)  # 404 / 403 pages
    form = Form.from_request()
    version = form.integer("version", "版本号", minimum=1)
    lng, lat = _coordinates(form)
    text = form.optional("place", "地点", max_length=100)
    if form.ok and (lng is None or lat is None) and not text:
        form.add_error("place", "请在地图上点选位置，或填写村（社区）名称后点“查找”")
    status = 422
    if form.ok:
        settings = settings_of(current_app)
        try:
            result = unplaced.place(
                session,
                user,
                report_id,
                lng=lng,
                lat=lat,
                place_text=text,
                expected_version=version,
                tolerance_m=settings.snap_tolerance_m,
                duplicates=events.DuplicateRules.from_settings(settings),
            )
        except GridGovError as exc:
            session.rollback()
            form.add_error_from(exc)
            _move_error(form, "lng", "place")
            if exc.code in LOCATION_ERRORS | {"place_not_found", "ambiguous_place"}:
                _move_error(form, "", "place")
            status = exc.status
        else:
            flash(f"已定位，生成事件 {result.event.code}", "success")
            return redirect(url_for("eventpage.show", event_id=result.event.id))
    return _unplaced_page(report_id, place_form=form, status=status)


@bp.post("/unplaced/<int:report_id>/discard")
def discard_unplaced(report_id: int) -> Any:
    """Discard (作废) a queued report with a reason."""
    user = require_role(*COUNTY_CENTRE_ROLES)
    session = get_session()
    unplaced.get_report(session, user, report_id)
    form = Form.from_request()
    version = form.integer("version", "版本号", minimum=1)
    reason = form.required("reason", "作废理由", max_length=2000)
    status = 422
    if form.ok:
        try:
            unplaced.discard(session, user, report_id, reason, expected_version=version)
        except GridGovError as exc:
            session.rollback()
            form.add_error_from(exc)
            status = exc.status
        else:
            flash(f"已作废待定位报告（编号 {report_id}）", "success")
            return redirect(url_for("desk.index", tab=UNPLACED_TAB))
    return _unplaced_page(report_id, discard_form=form, status=status)


def basemap() -> dict[str, str]:
    """Return the configured basemap for Leaflet: a tile URL template, or none (the default)."""
    settings = settings_of(current_app)
    if settings.basemap == "xyz":
        return {"url": settings.basemap_url, "attribution": ""}
    if settings.basemap == "osm":
        return {
            "url": "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
            "attribution": "© OpenStreetMap",
        }
    if settings.basemap == "tianditu":
        return {
            "url": "https://t0.tianditu.gov.cn/vec_w/wmts?SERVICE=WMTS&REQUEST=GetTile"
            "&VERSION=1.0.0&LAYER=vec&STYLE=default&TILEMATRIXSET=w&FORMAT=tiles"
            "&TILEMATRIX={z}&TILEROW={y}&TILECOL={x}&tk=" + settings.tianditu_key,
            "attribution": "天地图",
        }
    return {"url": "", "attribution": ""}


# ---------------------------------------------------------------------------------------------
# Department inbox (/inbox)


@inbox_bp.get("/")
def inbox() -> Any:
    user = require_role(Role.DEPT_HANDLER)
    session = get_session()
    flt, filter_error = parse_filter(request.args)
    sort = _sort(request.args.get("sort"), "deadline")
    scope = WorkScope(utcnow(), department_id=user.department_id or 0)
    work = work_list(
        session,
        visible_events(user, flt),
        INBOX_SECTIONS,
        scope,
        request.args.get("tab", ""),
        sort,
        load_calendar(session),
    )
    return render_template(
        "inbox/index.html",
        work=work,
        flt=flt,
        sort=sort,
        filter_error=filter_error,
        options=filter_options(session, user),
        department=user.department,
        query_args=_query_args,
        limit=SECTION_LIMIT,
        yellow_scan=YELLOW_SCAN,
    )


@inbox_bp.get("/done")
def done() -> Any:
    """The events my department has acted on, latest first."""
    user = require_role(Role.DEPT_HANDLER)
    session = get_session()
    page = page_arg()
    worked = (
        select(EventAction.event_id, func.max(EventAction.at).label("last_at"))
        .join(User, User.id == EventAction.actor_id)
        .where(User.department_id == user.department_id)
        .group_by(EventAction.event_id)
        .subquery()
    )
    base = select(Event, worked.c.last_at).join(worked, worked.c.event_id == Event.id)
    base = base.where(visible(user))
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    pages = page_count(total, LIST_PER_PAGE)
    page = min(page, pages)
    result = session.execute(
        base.order_by(worked.c.last_at.desc(), Event.id.desc())
        .limit(LIST_PER_PAGE)
        .offset((page - 1) * LIST_PER_PAGE)
    ).all()
    now = utcnow()
    rows = _rows(session, [r[0] for r in result], load_calendar(session), now)
    for row, (_, last_at) in zip(rows, result, strict=True):
        row["last_at"] = last_at
    return render_template(
        "inbox/done.html",
        rows=rows,
        total=total,
        page=page,
        pages=pages,
        department=user.department,
    )


# ---------------------------------------------------------------------------------------------
# The event page (/events/<id>)


@dataclass
class ActionForm:
    """One allowed action, with what its form needs."""

    t: Transition
    comment_label: str = ""
    comment_required: bool = False
    photo_kind: str = ""
    confirm: str = ""
    simple: bool = False
    """No required input: a single button (an optional note folds out)."""

    @property
    def name(self) -> str:
        return self.t.name

    @property
    def label(self) -> str:
        return self.t.label


ACTION_ORDER = (
    "accept",
    "dispatch",
    "sign",
    "handle",
    "verify_pass",
    "close",
    "evaluate",
    "approve_extension",
    "resume",
    "self_handle",
    "escalate",
    "request_extension",
    "assist_note",
    "verify_fail",
    "refuse_extension",
    "return",
    "reject",
    "merge",
    "void",
    "withdraw",
    "relocate",
    "shelve",
    "supervise",
    "instruct",
    "callback",
)
"""The order of the action buttons: the usual next step first, then the exceptions."""
assert set(ACTION_ORDER) == set(TRANSITIONS), "every transition needs a place on the page"


def action_forms(transitions: Iterable[Transition]) -> list[ActionForm]:
    """Return a form description for each of `transitions`, the usual next step first."""
    out = []
    for t in sorted(transitions, key=lambda t: ACTION_ORDER.index(t.name)):
        required = "comment" in t.requires
        out.append(
            ActionForm(
                t,
                comment_label=COMMENT_LABELS.get(t.name, "备注"),
                comment_required=required,
                photo_kind=PHOTO_ACTIONS.get(t.name, ""),
                confirm=CONFIRM.get(t.name, ""),
                simple=not t.requires and t.name not in PHOTO_ACTIONS,
            )
        )
    return out


def _photo_store() -> PhotoStore:
    folder = settings_of(current_app).upload_folder
    assert folder is not None
    return PhotoStore(folder)


def _render_event(
    event_id: int,
    *,
    form: Form | None = None,
    failed: str = "",
    status: int = 200,
) -> Any:
    user = page_user()
    session = get_session()
    event = events.get_event(session, user, event_id)
    now = utcnow()
    calendar = load_calendar(session)
    names = eventdata.Names.load(session)
    body = eventdata.detail(session, user, event, calendar, now)
    allowed = [TRANSITIONS[a["name"]] for a in body["allowed_actions"]]
    forms = action_forms(allowed)
    matter = session.get(Matter, event.matter_code)
    category = session.get(MatterCategory, matter.category_code) if matter else None
    history = []
    photos_by_action: dict[int | None, list[dict[str, Any]]] = {}
    for photo in body["photos"]:
        photos_by_action.setdefault(photo["action_id"], []).append(photo)
    for item in body["history"]:
        history.append(
            {
                **item,
                "label": ACTION_LABELS.get(item["action"], item["action"]),
                "role_label": ROLE_LABELS.get(item["actor_role"], "系统")
                if item["actor_role"] in {r.value for r in Role}
                else "系统",
                "from_label": STATE_LABELS.get(item["from_state"], "")
                if item["from_state"]
                else "",
                "to_label": STATE_LABELS.get(item["to_state"], ""),
                "holder_from": names.holder(item["holder_before"], session),
                "holder_to": names.holder(item["holder_after"], session),
                "details": _history_details(item, names),
                "photos": photos_by_action.get(item["id"], []),
            }
        )
    before = [p for p in body["photos"] if p["kind"] in ("before", "evidence")]
    after = [p for p in body["photos"] if p["kind"] == "after"]
    names_ed = names
    is_centre = centre_of(user) is not None
    duplicates = _visible_duplicates(session, user, event)
    needs_dispatch = any(f.name == "dispatch" for f in forms)
    page = render_template(
        "event/page.html",
        e=event,
        body=body,
        matter=matter,
        category=category,
        urgency_label=Urgency(event.urgency).label,
        source_label=Source(event.source).label,
        stage_label=Stage(event.stage).label if event.stage else "",
        stage_countdown=countdown(calendar, event.stage_due_at, now, event.stage_unit)
        if event.stage_due_at and EventState(event.state).is_open
        else "",
        due_countdown=countdown(calendar, event.due_at, now)
        if EventState(event.state).is_open and event.state != EventState.SHELVED
        else "",
        clock=_clock(event, calendar, now, body),
        holder=eventdata.holder_name(event, names_ed),
        history=history,
        before=before,
        after=after,
        forms=forms,
        form=form or Form(),
        blank=Form(),
        failed=failed,
        dispatch=dispatch_choice(session, user, event) if needs_dispatch else None,
        duplicates=duplicates,
        is_centre=is_centre,
        satisfaction=SATISFACTION,
        max_days=MAX_EXTENSION_DAYS,
        photo_kinds=PHOTO_KIND_LABELS,
        lights=LIGHT_LABELS,
        basemap=basemap(),
        back=_back_link(user),
        next_url=safe_next(request.values.get("next")) or "",
    )
    return page, status


def _visible_duplicates(session: Session, user: User, event: Event) -> list[dict[str, Any]]:
    """Return the candidate duplicates of an open event that the user may see."""
    if not EventState(event.state).is_open or centre_of(user) is None:
        return []
    found = events.find_duplicates(session, event)
    if not found:
        return []
    others = {
        e.id: e
        for e in session.scalars(select(Event).where(Event.id.in_([d["id"] for d in found])))
    }
    out = []
    for d in found:
        other = others.get(d["id"])
        if other is not None and can_view(user, other):
            label = STATE_LABELS[EventState(d["state"])]
            out.append({**d, "state_label": label, "reported": other.reported_at})
    return out


def _back_link(user: User) -> tuple[str, str]:
    role = Role(user.role)
    if role in CENTRE_ROLES:
        return url_for("desk.index"), "返回调度台"
    if role == Role.DEPT_HANDLER:
        return url_for("inbox.inbox"), "返回待办事件"
    if role == Role.LEADER:
        return url_for("desk.search"), "返回事件查询"
    if role == Role.GRID_WORKER:
        return "/m/tasks", "返回待核查"
    return home_for(user), "返回首页"


def _history_details(item: dict[str, Any], names: eventdata.Names) -> list[str]:
    data = item.get("data") or {}
    out = []
    if data.get("lead_department"):
        out.append(f"主办：{data['lead_department']}")
    if data.get("assisting_departments"):
        out.append("协办：" + "、".join(data["assisting_departments"]))
    if item["action"] == "request_extension" and data.get("days"):
        out.append(f"申请延期 {data['days']} 个工作日")
    if item["action"] == "approve_extension" and data.get("days"):
        out.append(f"批准延期 {data['days']} 个工作日")
    if data.get("satisfaction"):
        out.append(f"评价：{SATISFACTION.get(data['satisfaction'], data['satisfaction'])}")
    if data.get("target_code"):
        out.append(f"并入事件 {data['target_code']}")
    if data.get("merged_event_code"):
        out.append(f"并入了事件 {data['merged_event_code']}")
    if data.get("to") == "rework":
        out.append("退回部门返工")
    placed = data.get("unplaced")
    if isinstance(placed, dict) and placed.get("placed_by"):
        at = datetime.fromisoformat(placed["placed_at"]) if placed.get("placed_at") else None
        out.append("属地兜底：手动定位" + (f"于 {local_time(at)}" if at else ""))
    placement = data.get("placement") or data.get("after")
    if isinstance(placement, dict) and placement.get("grid_name"):
        out.append(
            f"位置：{placement.get('town_name', '')}{placement.get('village_name', '')}"
            f" {placement['grid_name']}"
        )
    return out


@event_bp.get("/events/<int:event_id>")
def show(event_id: int) -> Any:
    return _render_event(event_id)


@event_bp.get("/events/<int:event_id>/map.json")
def event_map(event_id: int) -> Any:
    """The event's point and its grid polygon, as GeoJSON (for the small map)."""
    user = page_user()
    session = get_session()
    event = events.get_event(session, user, event_id)
    features = []
    grid = session.get(Grid, event.grid_id)
    if grid is not None:
        features.append(_feature(grid.geom, kind="grid", code=grid.code, name=grid.name))
    features.append(_feature(shapely.Point(event.lng, event.lat), kind="event", code=event.code))
    return jsonify({"type": "FeatureCollection", "features": features})


@event_bp.post("/events/<int:event_id>/act")
def act(event_id: int) -> Any:
    """Take one action from the event page (or a quick button) through events.perform."""
    user = page_user()
    session = get_session()
    events.get_event(session, user, event_id)  # 404 / 403 pages for a missing or foreign event
    form = Form.from_request()
    action = form.text("action")
    t = TRANSITIONS.get(action)
    if t is None:
        raise NotFound(f"未知操作：{action}", code="unknown_action")
    version = form.integer("version", "版本号", minimum=1)
    inputs = _inputs(session, user, t, form)
    status = 422
    event: Event | None = None
    if form.ok:
        try:
            photo_ids = _save_photos(session, user, event_id, t, form)
            if photo_ids:
                inputs["attachment_ids"] = photo_ids
            if form.ok:
                event = events.perform(
                    session,
                    user,
                    event_id,
                    action,
                    inputs,
                    expected_version=version,
                    tolerance_m=settings_of(current_app).snap_tolerance_m,
                )
        except GridGovError as exc:
            form.add_error_from(exc)
            _photo_error(form, exc)
            status = exc.status
        except StaleDataError:
            form.add_error("", STALE_MESSAGE)
            status = 409
    if event is None or not form.ok:
        session.rollback()
        if "" not in form.errors and form.errors:
            form.add_error("", f"“{t.label}”未完成，请按提示修改后重试")
        return _render_event(event_id, form=form, failed=action, status=status)
    flash(f"已{t.label}：事件 {event.code}", "success")
    target = safe_next(form.text("next")) or url_for("eventpage.show", event_id=event_id)
    return redirect(target)


def _photo_error(form: Form, exc: GridGovError) -> None:
    """Show photo errors from events.perform under the photo field of the form."""
    if "attachment_ids" in form.errors:
        message = form.errors.pop("attachment_ids")
        kind = exc.details.get("kind")
        name = f"photos_{kind}" if form.value(f"_has_photos_{kind}") else "photos"
        form.add_error(name, message)


def _inputs(session: Session, user: User, t: Transition, form: Form) -> dict[str, Any]:
    """Parse the inputs `t` needs from the form; record Chinese errors on the form."""
    inputs: dict[str, Any] = {}
    label = COMMENT_LABELS.get(t.name, "备注")
    if "comment" in t.requires:
        inputs["comment"] = form.required("comment", label, max_length=2000)
    else:
        inputs["comment"] = form.optional("comment", label, max_length=2000)
    if "lead_department_id" in t.requires:
        lead = _int_list([form.text("lead_department_id")])
        if not lead:
            form.add_error("lead_department_id", "请选择主办部门")
        else:
            inputs["lead_department_id"] = lead[0]
        assisting = _int_list(form.values("assisting_department_ids"))
        inputs["assisting_department_ids"] = assisting
    if "days" in t.requires:
        inputs["days"] = form.integer("days", "延期天数", minimum=1, maximum=MAX_EXTENSION_DAYS)
    if "satisfaction" in t.requires:
        inputs["satisfaction"] = form.choice("satisfaction", "满意度", list(SATISFACTION))
    if "target_event_id" in t.requires:
        inputs["target_event_id"] = _merge_target(session, user, form)
    if "lng_lat" in t.requires:
        lng, lat = _coordinates(form)
        if lng is None or lat is None:
            lng, lat = _place(session, form)
        inputs["lng"], inputs["lat"] = lng, lat
    return inputs


def _merge_target(session: Session, user: User, form: Form) -> int | None:
    chosen = _int_list([form.text("target_event_id")])
    code = form.text("target_code")
    if chosen:
        return chosen[0]
    if code:
        target = session.scalar(select(Event.id).where(Event.code == code))
        if target is None:
            form.add_error("target_code", f"未找到事件 {code}")
        return target
    form.add_error("target_event_id", "请选择或填写要并入的事件")
    return None


def _save_photos(
    session: Session, user: User, event_id: int, t: Transition, form: Form
) -> list[int]:
    """Store the uploaded photos of an action; return their attachment ids."""
    uploads: list[tuple[str, str, FileStorage]] = []
    if t.name == "self_handle":
        for kind in ("before", "after"):
            for f in request.files.getlist(f"photos_{kind}"):
                if f and f.filename:
                    uploads.append((f"photos_{kind}", kind, f))
            form.data[f"_has_photos_{kind}"] = "1"
    elif t.name in PHOTO_ACTIONS:
        kind = form.text("photo_kind") or PHOTO_ACTIONS[t.name]
        if kind not in PHOTO_KIND_LABELS:
            form.add_error("photos", "照片类型无效")
            return []
        uploads = [("photos", kind, f) for f in request.files.getlist("photos") if f and f.filename]
    if len(uploads) > 9:
        form.add_error(uploads[0][0], "一次最多上传 9 张照片")
        return []
    settings = settings_of(current_app)
    store = _photo_store()
    ids = []
    for field_name, kind, upload in uploads:
        try:
            attachment, _ = events.attach_photo(
                session,
                user,
                event_id,
                upload.read(),
                kind,
                store,
                max_bytes=settings.max_upload_mb * 1024 * 1024,
            )
        except Unprocessable as exc:
            form.add_error(field_name, f"{upload.filename}：{exc.message}")
            continue
        ids.append(attachment.id)
    return list(dict.fromkeys(ids))
