"""Event operations: the report, and every transition of gridgov.workflow.machine.

Each operation checks its guard, mutates, records an EventAction, notifies, and flushes;
the caller (request or CLI) commits once.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gridgov.access import can_view, centre_of, in_area
from gridgov.calendar_store import load_calendar
from gridgov.db import utcnow
from gridgov.errors import Conflict, Forbidden, NotFound, Unprocessable
from gridgov.geo.crs import distance_m
from gridgov.geo.geocoder import geocode
from gridgov.models import (
    Attachment,
    Department,
    Event,
    EventAction,
    EventAssignment,
    EventCounter,
    EventState,
    HolderLevel,
    Matter,
    MatterTimeLimit,
    Notice,
    Role,
    Source,
    Stage,
    Urgency,
    User,
)
from gridgov.photos import MAX_BYTES, PhotoStore, process_photo
from gridgov.workflow.machine import (
    MAX_EXTENSION_DAYS,
    SATISFACTION,
    TRANSITIONS,
    Relation,
    Transition,
)
from gridgov.workflow.worktime import WorkCalendar

SHANGHAI = ZoneInfo("Asia/Shanghai")
DEFAULT_LIMITS = {
    Stage.ACCEPT: (1, "working_hours"),
    Stage.DISPATCH: (1, "working_hours"),
    Stage.HANDLE: (3, "working_days"),
    Stage.VERIFY: (1, "working_days"),
}
REPORTING_SOURCES = {
    Role.GRID_WORKER: {Source.GRID_WORKER},
    Role.TOWN_OPERATOR: {Source.CITIZEN, Source.HOTLINE, Source.SENSOR, Source.CENTRE},
    Role.COUNTY_DISPATCHER: {Source.CITIZEN, Source.HOTLINE, Source.SENSOR, Source.CENTRE},
    Role.COUNTY_SHIFT_LEAD: {Source.CITIZEN, Source.HOTLINE, Source.SENSOR, Source.CENTRE},
}


# ---------------------------------------------------------------------------
# Report


@dataclass
class ReportInput:
    """What a reporter sends; validated by `report_event`."""

    matter_code: str
    urgency: str
    description: str
    lng: Any
    lat: Any
    client_key: str
    crs: str = "wgs84"
    address: str = ""
    source: str = ""
    accuracy_m: float | None = None
    reporter_name: str = ""
    reporter_phone: str = ""


@dataclass(frozen=True)
class DuplicateRules:
    """How near in space and time an open event of the same matter counts as a duplicate."""

    radius_m: float = 300.0
    window: timedelta = timedelta(days=7)

    @classmethod
    def from_settings(cls, settings: Any) -> DuplicateRules:
        """Build the rules from gridgov.config.Settings."""
        return cls(settings.duplicate_radius_m, timedelta(hours=settings.duplicate_window_hours))


@dataclass
class Lookups:
    """The working calendar and time limits, loaded once for many operations in one transaction.

    For bulk callers (the demo seeder): requests pass nothing and load both afresh, so an
    administrator's change to the holiday table or the matter list is never missed.
    """

    calendar: WorkCalendar
    limits: dict[tuple[str, str], dict[Stage, tuple[int, str]]] = field(default_factory=dict)

    @classmethod
    def load(cls, session: Session) -> Lookups:
        return cls(load_calendar(session))

    def limits_for(
        self, session: Session, matter_code: str, urgency: str
    ) -> dict[Stage, tuple[int, str]]:
        key = (matter_code, urgency)
        if key not in self.limits:
            self.limits[key] = _limits(session, matter_code, urgency)
        return self.limits[key]


@dataclass
class ReportResult:
    """The stored event, whether this call created it, and candidate duplicates."""

    event: Event
    created: bool
    duplicates: list[dict[str, Any]] = field(default_factory=list)


def _require_text(value: Any, name: str, label: str, max_len: int) -> str:
    text = (value or "").strip() if isinstance(value, str) else ""
    if not text:
        raise Unprocessable(f"请填写{label}", code="missing_input", field=name)
    if len(text) > max_len:
        raise Unprocessable(f"{label}过长（最多 {max_len} 字）", code="too_long", field=name)
    return text


def report_event(
    session: Session,
    user: User,
    data: ReportInput,
    *,
    now: datetime | None = None,
    tolerance_m: float = 200.0,
    duplicates: DuplicateRules | None = None,
    lookups: Lookups | None = None,
) -> ReportResult:
    """File a report (上报); the same client_key from the same user returns the same event."""
    now = now or utcnow()
    client_key = _require_text(data.client_key, "client_key", "客户端编号", 64)
    existing = _by_client_key(session, user, client_key)
    if existing is not None:
        return ReportResult(existing, False, find_duplicates(session, existing, duplicates))
    role = Role(user.role)
    allowed = REPORTING_SOURCES.get(role)
    if not allowed:
        raise Forbidden(f"{role.label}不能上报事件", code="role_not_allowed")
    source = data.source or (Source.GRID_WORKER if role == Role.GRID_WORKER else Source.CENTRE)
    if source not in {s.value for s in allowed}:
        raise Unprocessable(f"{role.label}不能登记来源为“{source}”的事件", code="bad_source")
    matter = session.get(Matter, (data.matter_code or "").strip())
    if matter is None or not matter.active:
        raise Unprocessable("事项不存在或已停用", code="unknown_matter", field="matter_code")
    if data.urgency not in {u.value for u in Urgency}:
        raise Unprocessable("紧急程度应为：紧急、较急或一般", code="bad_urgency", field="urgency")
    description = _require_text(data.description, "description", "事件描述", 2000)
    placement = geocode(session, data.lng, data.lat, data.crs or "wgs84", tolerance_m)
    reach = user.region_code[:9] if role == Role.GRID_WORKER else user.region_code
    if not placement.grid_code.startswith(reach):
        raise Forbidden(
            "事件位置不在您的辖区内", code="outside_jurisdiction", grid_code=placement.grid_code
        )
    if source == Source.HOTLINE or centre_of(user) == (HolderLevel.COUNTY, user.region_code):
        holder = (HolderLevel.COUNTY.value, placement.county_code)
    else:
        holder = (HolderLevel.TOWN.value, placement.town_code)
    calendar = lookups.calendar if lookups else load_calendar(session)
    limits = (lookups.limits_for if lookups else _limits)(session, matter.code, data.urgency)
    due = now
    for stage in (Stage.ACCEPT, Stage.DISPATCH, Stage.HANDLE, Stage.VERIFY):
        due = calendar.add(due, *limits[stage])
    event = Event(
        code="",
        source=str(source),
        matter_code=matter.code,
        urgency=data.urgency,
        description=description,
        address=(data.address or "").strip()[:200],
        lng=placement.lng,
        lat=placement.lat,
        input_crs=(data.crs or "wgs84").lower(),
        input_lng=_float_or_none(data.lng),
        input_lat=_float_or_none(data.lat),
        location_accuracy_m=data.accuracy_m,
        snapped_m=placement.distance_m if placement.snapped else None,
        grid_id=placement.grid_id,
        grid_code=placement.grid_code,
        village_code=placement.village_code,
        town_code=placement.town_code,
        county_code=placement.county_code,
        reporter_id=user.id,
        reporter_name=(data.reporter_name or user.display_name)[:64],
        reporter_phone=(data.reporter_phone or "")[:32],
        client_key=client_key,
        state=EventState.REPORTED.value,
        holder_level=holder[0],
        holder_region_code=holder[1],
        reported_at=now,
        stage=Stage.ACCEPT.value,
        stage_started_at=now,
        stage_due_at=calendar.add(now, *limits[Stage.ACCEPT]),
        stage_unit=limits[Stage.ACCEPT][1],
        due_at=due,
    )
    try:
        with session.begin_nested():
            # Numbered inside the savepoint: a request that loses the client-key race
            # rolls its counter increment back, so daily codes have no gaps.
            event.code = _next_code(session, placement.county_code, now)
            session.add(event)
            session.flush()
    except IntegrityError:
        # Another request with the same client key won the race: answer with its event.
        existing = _by_client_key(session, user, client_key)
        if existing is None:
            raise
        return ReportResult(existing, False, find_duplicates(session, existing, duplicates))
    _record(session, event, user, "report", None, "", {"placement": placement.to_dict()}, now)
    notify_holder(session, event, "new_event", f"新事件 {event.code}：{matter.name}", now)
    session.flush()
    return ReportResult(event, True, find_duplicates(session, event, duplicates))


def _float_or_none(value: Any) -> float | None:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def _by_client_key(session: Session, user: User, client_key: str) -> Event | None:
    return session.scalar(
        select(Event).where(Event.reporter_id == user.id, Event.client_key == client_key)
    )


def _next_code(session: Session, county_code: str, now: datetime) -> str:
    day = now.astimezone(SHANGHAI).strftime("%Y%m%d")
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(EventCounter).values(county_code=county_code, day=day, last=1)
    stmt = stmt.on_conflict_do_update(
        index_elements=["county_code", "day"], set_={"last": EventCounter.last + 1}
    ).returning(EventCounter.last)
    number = session.execute(stmt).scalar_one()
    return f"{county_code}-{day}-{number:04d}"


def find_duplicates(
    session: Session, event: Event, rules: DuplicateRules | None = None
) -> list[dict[str, Any]]:
    """List open events of the same matter near `event` in space and time (并案 candidates)."""
    return find_nearby(
        session,
        event.matter_code,
        event.lng,
        event.lat,
        event.reported_at,
        rules,
        exclude_id=event.id,
    )


def find_nearby(
    session: Session,
    matter_code: str,
    lng: float,
    lat: float,
    at: datetime,
    rules: DuplicateRules | None = None,
    *,
    exclude_id: int | None = None,
) -> list[dict[str, Any]]:
    """List open events of a matter near a WGS84 point around time `at`, nearest first."""
    rules = rules or DuplicateRules()
    dlat = rules.radius_m / 111_000
    dlng = dlat / max(math.cos(math.radians(lat)), 0.01)
    query = select(Event).where(
        Event.matter_code == matter_code,
        Event.state.notin_([s.value for s in EventState if not s.is_open]),
        Event.lng.between(lng - dlng, lng + dlng),
        Event.lat.between(lat - dlat, lat + dlat),
        Event.reported_at >= at - rules.window,
        Event.reported_at <= at + rules.window,
    )
    if exclude_id is not None:
        query = query.where(Event.id != exclude_id)
    found = []
    for other in session.scalars(query):
        d = distance_m(lng, lat, other.lng, other.lat)
        if d <= rules.radius_m:
            found.append(
                {
                    "id": other.id,
                    "code": other.code,
                    "state": other.state,
                    "description": other.description[:60],
                    "distance_m": round(d, 1),
                    "reported_at": other.reported_at.isoformat(),
                }
            )
    return sorted(found, key=lambda c: c["distance_m"])


# ---------------------------------------------------------------------------
# Transitions


def _limits(session: Session, matter_code: str, urgency: str) -> dict[Stage, tuple[int, str]]:
    limits = dict(DEFAULT_LIMITS)
    for row in session.scalars(
        select(MatterTimeLimit).where(
            MatterTimeLimit.matter_code == matter_code, MatterTimeLimit.urgency == urgency
        )
    ):
        limits[Stage(row.stage)] = (row.amount, row.unit)
    return limits


def holder_label(event: Event) -> str:
    """Return the holder as 'level:reference' (kept in every action record)."""
    level = event.holder_level
    if level in (HolderLevel.TOWN, HolderLevel.COUNTY):
        return f"{level}:{event.holder_region_code}"
    if level == HolderLevel.DEPARTMENT:
        return f"{level}:{event.holder_department_id}"
    if level == HolderLevel.GRID_WORKER:
        return f"{level}:{event.holder_user_id}"
    return "none"


def _set_holder(event: Event, level: str, ref: str | int | None = None) -> None:
    event.holder_level = level
    event.holder_region_code = ref if level in (HolderLevel.TOWN, HolderLevel.COUNTY) else None  # type: ignore[assignment]
    event.holder_department_id = ref if level == HolderLevel.DEPARTMENT else None  # type: ignore[assignment]
    event.holder_user_id = ref if level == HolderLevel.GRID_WORKER else None  # type: ignore[assignment]


def _relation_holds(session: Session, relation: Relation, user: User, event: Event) -> bool:
    centre = centre_of(user)
    if relation == Relation.HOLDING_CENTRE:
        return centre is not None and centre == (event.holder_level, event.holder_region_code)
    if relation == Relation.DISPATCHING_CENTRE:
        return centre is not None and centre == (
            event.dispatcher_level,
            event.dispatcher_region_code,
        )
    if relation == Relation.HOLDING_DEPARTMENT:
        return (
            event.holder_level == HolderLevel.DEPARTMENT
            and event.holder_department_id == user.department_id
        )
    if relation == Relation.ASSISTING_DEPARTMENT:
        return any(
            a.active and a.role == "assist" and a.department_id == user.department_id
            for a in event.assignments
        )
    if relation == Relation.VERIFIER:
        if event.holder_level == HolderLevel.GRID_WORKER:
            return event.holder_user_id == user.id
        return centre is not None and centre == (event.holder_level, event.holder_region_code)
    if relation == Relation.REPORTER:
        return event.reporter_id == user.id
    if relation == Relation.REPORTER_OR_CENTRE:
        return event.reporter_id == user.id or (
            centre is not None and in_area(user, event.grid_code)
        )
    if relation == Relation.JURISDICTION:
        return in_area(user, event.grid_code)
    raise AssertionError(relation)


def get_event(session: Session, user: User, event_id: int) -> Event:
    """Return an event the user may see; 404 if missing, 403 if outside jurisdiction."""
    event = session.get(Event, event_id)
    if event is None:
        raise NotFound("事件不存在", code="event_not_found", event_id=event_id)
    if not can_view(user, event):
        raise Forbidden("该事件不在您的辖区或职责范围内", code="outside_jurisdiction")
    return event


def allowed_actions(session: Session, user: User, event: Event) -> list[Transition]:
    """List the transitions this user may take on this event now (for pages and the API)."""
    return [
        t
        for t in TRANSITIONS.values()
        if user.role in t.roles
        and event.state in t.sources
        and _relation_holds(session, t.relation, user, event)
        and _precondition_error(t, event) is None
        and (t.name != "self_handle" or event.matter.self_handle_allowed)
    ]


def _precondition_error(t: Transition, event: Event) -> str | None:
    if t.name == "request_extension" and event.extension_pending_days:
        return "已有待审批的延期申请"
    if t.name in ("approve_extension", "refuse_extension") and not event.extension_pending_days:
        return "没有待审批的延期申请"
    if t.name == "evaluate" and event.satisfaction:
        return "该事件已评价"
    return None


def perform(
    session: Session,
    user: User,
    event_id: int,
    action: str,
    inputs: dict[str, Any] | None = None,
    *,
    expected_version: int | None = None,
    now: datetime | None = None,
    tolerance_m: float = 200.0,
    lookups: Lookups | None = None,
) -> Event:
    """Take transition `action` on an event as `user`: guard, mutate, record, notify, flush."""
    inputs = dict(inputs or {})
    now = now or utcnow()
    t = TRANSITIONS.get(action)
    if t is None:
        raise NotFound(f"未知操作：{action}", code="unknown_action", action=action)
    event = get_event(session, user, event_id)
    if expected_version is not None and expected_version != event.version:
        raise Conflict(
            "事件已被他人更新，请刷新后重试", code="stale_version", version=event.version
        )
    role = Role(user.role)
    if role not in t.roles:
        raise Forbidden(f"{role.label}不能执行“{t.label}”", code="role_not_allowed", action=action)
    state = EventState(event.state)
    if state not in t.sources:
        raise Conflict(
            f"事件当前状态为“{state.label}”，不能执行“{t.label}”",
            code="state_conflict",
            state=state.value,
            action=action,
        )
    if not _relation_holds(session, t.relation, user, event):
        raise Forbidden(
            f"该事件当前不由您办理，不能执行“{t.label}”", code="not_holder", action=action
        )
    problem = _precondition_error(t, event)
    if problem:
        raise Conflict(problem, code="precondition_failed", action=action)
    comment = (
        (inputs.get("comment") or "").strip() if isinstance(inputs.get("comment"), str) else ""
    )
    if "comment" in t.requires and not comment:
        raise Unprocessable(f"“{t.label}”须填写说明或理由", code="missing_input", field="comment")
    if len(comment) > 2000:
        raise Unprocessable("说明过长（最多 2000 字）", code="too_long", field="comment")
    for name, keys in _INPUT_KEYS.items():
        if name in t.requires and any(inputs.get(k) in (None, "", []) for k in keys):
            raise Unprocessable(
                f"“{t.label}”须提供：{_INPUT_LABELS[name]}", code="missing_input", field=keys[0]
            )
    photos = _photos(session, user, event, inputs.get("attachment_ids"))
    before_state, before_holder = event.state, holder_label(event)
    # No autoflush while the effect runs: its lookups (departments, users to notify, time
    # limits) would otherwise flush the half-changed event, and each flush writes its own
    # audit entry and bumps the version. The record's flush below writes the action once.
    with session.no_autoflush:
        data = _EFFECTS[action](
            _Ctx(session, user, event, t, inputs, comment, photos, now, tolerance_m, lookups)
        )
        if t.target is not None:
            event.state = t.target.value
    record = _record(
        session,
        event,
        user,
        action,
        before_state,
        comment,
        data or {},
        now,
        holder_before=before_holder,
    )
    for photo in photos:
        photo.action_id = record.id
    session.flush()
    return event


_INPUT_KEYS = {
    "lead_department_id": ("lead_department_id",),
    "days": ("days",),
    "satisfaction": ("satisfaction",),
    "target_event_id": ("target_event_id",),
    "lng_lat": ("lng", "lat"),
}
_INPUT_LABELS = {
    "lead_department_id": "主办部门",
    "days": "延期天数",
    "satisfaction": "满意度",
    "target_event_id": "并入的事件",
    "lng_lat": "新的经纬度",
}


@dataclass
class _Ctx:
    session: Session
    user: User
    event: Event
    t: Transition
    inputs: dict[str, Any]
    comment: str
    photos: list[Attachment]
    now: datetime
    tolerance_m: float
    lookups: Lookups | None = None

    @property
    def calendar(self) -> WorkCalendar:
        if self.lookups is not None:
            return self.lookups.calendar
        if not hasattr(self, "_calendar"):
            self._calendar = load_calendar(self.session)
        return self._calendar

    def limit(self, stage: Stage) -> tuple[int, str]:
        e = self.event
        if self.lookups is not None:
            return self.lookups.limits_for(self.session, e.matter_code, e.urgency)[stage]
        return _limits(self.session, e.matter_code, e.urgency)[stage]

    def stage_late(self) -> bool:
        """Return whether the current stage's deadline has passed (the action is late)."""
        due = self.event.stage_due_at
        return due is not None and self.now > due

    def start_stage(self, stage: Stage | None) -> None:
        e = self.event
        limit = self.limit(stage) if stage else None
        e.stage = stage.value if stage else None
        e.stage_started_at = self.now if stage else None
        e.stage_due_at = self.calendar.add(self.now, *limit) if limit else None
        e.stage_unit = limit[1] if limit else None

    def end(self) -> None:
        self.event.ended_at = self.now
        self.start_stage(None)
        _set_holder(self.event, HolderLevel.NONE.value)


def _photos(session: Session, user: User, event: Event, ids: Any) -> list[Attachment]:
    if ids in (None, "", []):
        return []
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        raise Unprocessable("照片编号格式错误", code="bad_input", field="attachment_ids")
    photos = list(session.scalars(select(Attachment).where(Attachment.id.in_(ids))))
    if len(photos) != len(set(ids)) or any(
        p.event_id != event.id or p.action_id is not None or p.uploaded_by != user.id
        for p in photos
    ):
        raise Unprocessable(
            "照片不存在、不属于本事件或已被使用", code="bad_attachment", field="attachment_ids"
        )
    return photos


def _need_photos(ctx: _Ctx, kind: str, label: str) -> None:
    if not any(p.kind == kind for p in ctx.photos):
        raise Unprocessable(
            f"“{ctx.t.label}”须上传{label}", code="missing_photo", field="attachment_ids", kind=kind
        )


def _centre_tuple(ctx: _Ctx) -> tuple[str, str]:
    centre = centre_of(ctx.user)
    assert centre is not None
    return centre


def _accept(ctx: _Ctx) -> dict[str, Any]:
    ctx.event.accepted_at = ctx.now
    ctx.start_stage(Stage.DISPATCH)
    return {}


def _terminal(ctx: _Ctx) -> dict[str, Any]:
    ctx.end()
    return {}


def _merge(ctx: _Ctx) -> dict[str, Any]:
    target_id = ctx.inputs.get("target_event_id")
    if not isinstance(target_id, int):
        raise Unprocessable("请选择要并入的事件", code="missing_input", field="target_event_id")
    if target_id == ctx.event.id:
        raise Unprocessable("不能并入事件本身", code="bad_input", field="target_event_id")
    target = get_event(ctx.session, ctx.user, target_id)
    if not EventState(target.state).is_open:
        raise Conflict("目标事件已结束，不能并入", code="state_conflict", field="target_event_id")
    ctx.event.merged_into_id = target.id
    ctx.end()
    _record(
        ctx.session,
        target,
        ctx.user,
        "merge",
        target.state,
        f"并入事件 {ctx.event.code}" + (f"：{ctx.comment}" if ctx.comment else ""),
        {"merged_event_id": ctx.event.id, "merged_event_code": ctx.event.code},
        ctx.now,
        flush=False,  # perform's own record flushes both, with the merged event's final state
    )
    return {"target_event_id": target.id, "target_code": target.code}


def _escalate(ctx: _Ctx) -> dict[str, Any]:
    _set_holder(ctx.event, HolderLevel.COUNTY.value, ctx.event.county_code)
    ctx.start_stage(Stage.ACCEPT)
    notify_holder(ctx.session, ctx.event, "escalated", f"镇街上报事件 {ctx.event.code}", ctx.now)
    return {}


def _self_handle(ctx: _Ctx) -> dict[str, Any]:
    matter = ctx.session.get(Matter, ctx.event.matter_code)
    if matter is None or not matter.self_handle_allowed:
        raise Unprocessable("该事项不允许网格员自办自结", code="self_handle_not_allowed")
    _need_photos(ctx, "before", "处置前照片")
    _need_photos(ctx, "after", "处置后照片")
    e = ctx.event
    e.self_handled = True
    e.handled_at = ctx.now
    _set_holder(e, HolderLevel.TOWN.value, e.town_code)
    ctx.start_stage(Stage.VERIFY)
    notify_holder(ctx.session, e, "verify", f"网格员自办事件 {e.code} 待核查", ctx.now)
    return {}


def _department(ctx: _Ctx, dept_id: Any, field: str) -> Department:
    dept = ctx.session.get(Department, dept_id) if isinstance(dept_id, int) else None
    if dept is None or not dept.active:
        raise Unprocessable("部门不存在或已停用", code="unknown_department", field=field)
    level, region = _centre_tuple(ctx)
    if level == HolderLevel.TOWN and not (dept.level == "town" and dept.region_code == region):
        raise Forbidden(
            f"镇综治中心只能分拨给本镇站所：{dept.name}", code="department_outside", field=field
        )
    if not dept.region_code.startswith(region):
        raise Forbidden(f"{dept.name}不在本辖区", code="department_outside", field=field)
    return dept


def _dispatch(ctx: _Ctx) -> dict[str, Any]:
    e = ctx.event
    lead = _department(ctx, ctx.inputs.get("lead_department_id"), "lead_department_id")
    raw_assist = ctx.inputs.get("assisting_department_ids") or []
    if not isinstance(raw_assist, list):
        raise Unprocessable("协办部门格式错误", code="bad_input", field="assisting_department_ids")
    assisting = [_department(ctx, d, "assisting_department_ids") for d in dict.fromkeys(raw_assist)]
    if any(d.id == lead.id for d in assisting):
        raise Unprocessable(
            "主办部门不能同时为协办部门", code="bad_input", field="assisting_department_ids"
        )
    for a in e.assignments:
        a.active = False
    e.assignments.append(EventAssignment(department_id=lead.id, role="lead", assigned_at=ctx.now))
    for d in assisting:
        e.assignments.append(
            EventAssignment(department_id=d.id, role="assist", assigned_at=ctx.now)
        )
    e.dispatcher_level, e.dispatcher_region_code = _centre_tuple(ctx)
    e.lead_department_id = lead.id
    e.dispatched_at = ctx.now
    _set_holder(e, HolderLevel.DEPARTMENT.value, lead.id)
    ctx.start_stage(Stage.HANDLE)
    notify_holder(ctx.session, e, "dispatched", f"新派遣事件 {e.code}，请签收", ctx.now)
    for d in assisting:
        _notify_users(
            ctx.session,
            _department_users(ctx.session, d.id),
            e,
            "assist",
            f"事件 {e.code} 需贵单位协办",
            ctx.now,
        )
    return {
        "lead_department_id": lead.id,
        "lead_department": lead.name,
        "assisting_department_ids": [d.id for d in assisting],
        "assisting_departments": [d.name for d in assisting],
    }


def _sign(ctx: _Ctx) -> dict[str, Any]:
    return {}


def _return(ctx: _Ctx) -> dict[str, Any]:
    e = ctx.event
    e.return_count += 1
    e.extension_pending_days = None
    for a in e.assignments:
        a.active = False
    assert e.dispatcher_level and e.dispatcher_region_code
    _set_holder(e, e.dispatcher_level, e.dispatcher_region_code)
    ctx.start_stage(Stage.DISPATCH)
    notify_holder(ctx.session, e, "returned", f"事件 {e.code} 被退回：{ctx.comment}", ctx.now)
    return {}


def _request_extension(ctx: _Ctx) -> dict[str, Any]:
    days = ctx.inputs.get("days")
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_EXTENSION_DAYS:
        raise Unprocessable(
            f"延期天数应为 1–{MAX_EXTENSION_DAYS} 个工作日", code="bad_input", field="days"
        )
    e = ctx.event
    e.extension_pending_days = days
    _notify_centre(
        ctx.session,
        e,
        e.dispatcher_level,
        e.dispatcher_region_code,
        "extension",
        f"事件 {e.code} 申请延期 {days} 个工作日",
        ctx.now,
    )
    return {"days": days}


def _approve_extension(ctx: _Ctx) -> dict[str, Any]:
    e = ctx.event
    days = e.extension_pending_days or 0
    old_due = e.due_at
    e.due_at = ctx.calendar.add(e.due_at, days, "working_days")
    if e.stage_due_at is not None:
        e.stage_due_at = ctx.calendar.add(e.stage_due_at, days, "working_days")
    e.extension_pending_days = None
    e.extension_count += 1
    if e.overdue and e.due_at > ctx.now and not e.closed_at:
        e.overdue = False
    notify_holder(ctx.session, e, "extension_approved", f"事件 {e.code} 延期申请已批准", ctx.now)
    return {"days": days, "due_before": old_due.isoformat(), "due_after": e.due_at.isoformat()}


def _refuse_extension(ctx: _Ctx) -> dict[str, Any]:
    e = ctx.event
    days = e.extension_pending_days
    e.extension_pending_days = None
    notify_holder(
        ctx.session, e, "extension_refused", f"事件 {e.code} 延期申请被驳回：{ctx.comment}", ctx.now
    )
    return {"days": days}


def _shelve(ctx: _Ctx) -> dict[str, Any]:
    e = ctx.event
    e.shelved_from = e.state
    e.shelved_at = ctx.now
    return {}


def _resume(ctx: _Ctx) -> dict[str, Any]:
    e = ctx.event
    assert e.shelved_from and e.shelved_at
    unit = ctx.limit(Stage.HANDLE)[1]
    old_due = e.due_at
    e.due_at = ctx.calendar.shift(e.due_at, e.shelved_at, ctx.now, unit)
    if e.stage_due_at is not None:
        e.stage_due_at = ctx.calendar.shift(e.stage_due_at, e.shelved_at, ctx.now, unit)
    e.state = e.shelved_from
    e.shelved_from = None
    e.shelved_at = None
    return {"due_before": old_due.isoformat(), "due_after": e.due_at.isoformat()}


def _assist_note(ctx: _Ctx) -> dict[str, Any]:
    notify_holder(
        ctx.session, ctx.event, "assist_note", f"事件 {ctx.event.code} 收到协办反馈", ctx.now
    )
    return {}


def _handle(ctx: _Ctx) -> dict[str, Any]:
    e = ctx.event
    matter = ctx.session.get(Matter, e.matter_code)
    if matter is not None and matter.photo_required:
        _need_photos(ctx, "after", "处置后照片")
    e.handled_at = ctx.now
    e.extension_pending_days = None
    e.handle_late = e.handle_late or ctx.stage_late()
    reporter = ctx.session.get(User, e.reporter_id)
    if (
        e.source == Source.GRID_WORKER
        and reporter is not None
        and reporter.active
        and reporter.role == Role.GRID_WORKER
    ):
        _set_holder(e, HolderLevel.GRID_WORKER.value, reporter.id)
    else:
        assert e.dispatcher_level and e.dispatcher_region_code
        _set_holder(e, e.dispatcher_level, e.dispatcher_region_code)
    ctx.start_stage(Stage.VERIFY)
    notify_holder(ctx.session, e, "verify", f"事件 {e.code} 已处置，请核查", ctx.now)
    return {}


def _closing_centre(e: Event) -> tuple[str, str]:
    if e.dispatcher_level and e.dispatcher_region_code:
        return e.dispatcher_level, e.dispatcher_region_code
    return HolderLevel.TOWN.value, e.town_code


def _verify_pass(ctx: _Ctx) -> dict[str, Any]:
    e = ctx.event
    e.verified_at = ctx.now
    e.verify_late = e.verify_late or ctx.stage_late()
    _set_holder(e, *_closing_centre(e))
    ctx.start_stage(None)
    notify_holder(ctx.session, e, "close", f"事件 {e.code} 核查通过，待结案", ctx.now)
    return {}


def _verify_fail(ctx: _Ctx) -> dict[str, Any]:
    e = ctx.event
    e.rework_count += 1
    e.verify_late = e.verify_late or ctx.stage_late()
    if e.lead_department_id is not None and not e.self_handled:
        e.state = EventState.HANDLING.value
        _set_holder(e, HolderLevel.DEPARTMENT.value, e.lead_department_id)
        ctx.start_stage(Stage.HANDLE)
        notify_holder(
            ctx.session, e, "rework", f"事件 {e.code} 核查未通过，请返工：{ctx.comment}", ctx.now
        )
        return {"to": "rework"}
    e.state = EventState.ACCEPTED.value
    e.self_handled = False
    _set_holder(e, HolderLevel.TOWN.value, e.town_code)
    ctx.start_stage(Stage.DISPATCH)
    return {"to": "dispatch"}


def _close(ctx: _Ctx) -> dict[str, Any]:
    e = ctx.event
    e.closed_at = ctx.now
    if ctx.now > e.due_at:
        e.overdue = True
    ctx.end()
    return {"overdue": e.overdue}


def _evaluate(ctx: _Ctx) -> dict[str, Any]:
    value = ctx.inputs.get("satisfaction")
    if value not in SATISFACTION:
        raise Unprocessable(
            "请选择满意、基本满意或不满意", code="missing_input", field="satisfaction"
        )
    ctx.event.satisfaction = value
    return {"satisfaction": value}


def _note(ctx: _Ctx) -> dict[str, Any]:
    return {}


def _supervise(ctx: _Ctx) -> dict[str, Any]:
    notify_holder(
        ctx.session, ctx.event, "supervise", f"督办：事件 {ctx.event.code}，{ctx.comment}", ctx.now
    )
    return {}


def _instruct(ctx: _Ctx) -> dict[str, Any]:
    e = ctx.event
    text = f"领导批示（{ctx.user.display_name}）：事件 {e.code}，{ctx.comment}"
    if e.holder_level != HolderLevel.NONE:
        notify_holder(ctx.session, e, "instruction", text, ctx.now)
    if e.dispatcher_level and (e.dispatcher_level, e.dispatcher_region_code) != (
        e.holder_level,
        e.holder_region_code,
    ):
        _notify_centre(
            ctx.session,
            e,
            e.dispatcher_level,
            e.dispatcher_region_code,
            "instruction",
            text,
            ctx.now,
        )
    return {}


def _relocate(ctx: _Ctx) -> dict[str, Any]:
    e = ctx.event
    lng, lat = ctx.inputs.get("lng"), ctx.inputs.get("lat")
    if lng in (None, "") or lat in (None, ""):
        raise Unprocessable("请提供新的经纬度", code="missing_input", field="lng")
    placement = geocode(ctx.session, lng, lat, ctx.inputs.get("crs") or "wgs84", ctx.tolerance_m)
    if not in_area(ctx.user, placement.grid_code):
        raise Forbidden("新位置不在您的辖区内", code="outside_jurisdiction")
    before = {"grid_code": e.grid_code, "lng": e.lng, "lat": e.lat}
    e.lng, e.lat = placement.lng, placement.lat
    e.grid_id, e.grid_code = placement.grid_id, placement.grid_code
    e.village_code, e.town_code = placement.village_code, placement.town_code
    e.snapped_m = placement.distance_m if placement.snapped else None
    return {"before": before, "after": placement.to_dict()}


_EFFECTS = {
    "accept": _accept,
    "reject": _terminal,
    "void": _terminal,
    "withdraw": _terminal,
    "merge": _merge,
    "escalate": _escalate,
    "self_handle": _self_handle,
    "dispatch": _dispatch,
    "sign": _sign,
    "return": _return,
    "request_extension": _request_extension,
    "approve_extension": _approve_extension,
    "refuse_extension": _refuse_extension,
    "shelve": _shelve,
    "resume": _resume,
    "assist_note": _assist_note,
    "handle": _handle,
    "verify_pass": _verify_pass,
    "verify_fail": _verify_fail,
    "close": _close,
    "evaluate": _evaluate,
    "callback": _note,
    "supervise": _supervise,
    "instruct": _instruct,
    "relocate": _relocate,
}
assert set(_EFFECTS) == set(TRANSITIONS), "every transition needs an effect"


# ---------------------------------------------------------------------------
# Records and notices


def _record(
    session: Session,
    event: Event,
    user: User | None,
    action: str,
    from_state: str | None,
    comment: str,
    data: dict[str, Any],
    now: datetime,
    *,
    holder_before: str | None = None,
    flush: bool = True,
) -> EventAction:
    """Append the record of an action to `event` (flushed unless the caller flushes later)."""
    record = EventAction(
        action=action,
        actor_id=user.id if user else None,
        actor_name=user.display_name if user else "系统",
        actor_role=user.role if user else "system",
        at=now,
        from_state=from_state,
        to_state=event.state,
        holder_before=holder_before if holder_before is not None else holder_label(event),
        holder_after=holder_label(event),
        comment=comment,
        data=json.dumps(data, ensure_ascii=False, sort_keys=True, default=str),
    )
    event.actions.append(record)
    if flush:
        session.flush()
    return record


def _department_users(session: Session, department_id: int) -> list[User]:
    return list(
        session.scalars(
            select(User).where(
                User.department_id == department_id,
                User.active.is_(True),
                User.role == Role.DEPT_HANDLER,
            )
        )
    )


def _centre_users(session: Session, level: str | None, region_code: str | None) -> list[User]:
    if level == HolderLevel.TOWN:
        roles = [Role.TOWN_OPERATOR.value]
    elif level == HolderLevel.COUNTY:
        roles = [Role.COUNTY_DISPATCHER.value, Role.COUNTY_SHIFT_LEAD.value]
    else:
        return []
    return list(
        session.scalars(
            select(User).where(
                User.role.in_(roles), User.region_code == region_code, User.active.is_(True)
            )
        )
    )


def _notify_users(
    session: Session, users: list[User], event: Event, kind: str, text: str, now: datetime
) -> None:
    for u in users:
        session.add(Notice(user_id=u.id, event_id=event.id, kind=kind, text=text, created_at=now))


def _notify_centre(
    session: Session,
    event: Event,
    level: str | None,
    region: str | None,
    kind: str,
    text: str,
    now: datetime,
) -> None:
    _notify_users(session, _centre_users(session, level, region), event, kind, text, now)


def notify_holder(session: Session, event: Event, kind: str, text: str, now: datetime) -> None:
    """Send a notice to everyone who holds the event now."""
    level = event.holder_level
    if level in (HolderLevel.TOWN, HolderLevel.COUNTY):
        users = _centre_users(session, level, event.holder_region_code)
    elif level == HolderLevel.DEPARTMENT and event.holder_department_id is not None:
        users = _department_users(session, event.holder_department_id)
    elif level == HolderLevel.GRID_WORKER and event.holder_user_id is not None:
        user = session.get(User, event.holder_user_id)
        users = [user] if user else []
    else:
        users = []
    _notify_users(session, users, event, kind, text, now)


def unread_notices(session: Session, user: User) -> int:
    """Count the user's unread notices."""
    return (
        session.scalar(
            select(func.count())
            .select_from(Notice)
            .where(Notice.user_id == user.id, Notice.read_at.is_(None))
        )
        or 0
    )


# ---------------------------------------------------------------------------
# Photos

PHOTO_KINDS = {"before": "处置前", "after": "处置后", "evidence": "现场"}
PHOTO_ROLES = frozenset(
    {
        Role.GRID_WORKER,
        Role.TOWN_OPERATOR,
        Role.COUNTY_DISPATCHER,
        Role.COUNTY_SHIFT_LEAD,
        Role.DEPT_HANDLER,
    }
)


def attach_photo(
    session: Session,
    user: User,
    event_id: int,
    data: bytes,
    kind: str,
    store: PhotoStore,
    *,
    max_bytes: int = MAX_BYTES,
) -> tuple[Attachment, bool]:
    """Store a photo on an event; the same bytes again return the same attachment."""
    event = get_event(session, user, event_id)
    if Role(user.role) not in PHOTO_ROLES:
        raise Forbidden("您的角色不能上传照片", code="role_not_allowed")
    if kind not in PHOTO_KINDS:
        raise Unprocessable(
            "照片类型应为 before、after 或 evidence", code="bad_input", field="kind"
        )
    if not EventState(event.state).is_open:
        raise Conflict("事件已结束，不能再上传照片", code="state_conflict")
    photo = process_photo(data, max_bytes=max_bytes)
    existing = session.scalar(
        select(Attachment).where(Attachment.event_id == event.id, Attachment.sha256 == photo.sha256)
    )
    if existing is not None:
        return existing, False
    path, thumb = store.save(photo)
    attachment = Attachment(
        event_id=event.id,
        kind=kind,
        sha256=photo.sha256,
        path=path,
        thumb_path=thumb,
        content_type=photo.content_type,
        original_format=photo.original_format,
        size=photo.size,
        width=photo.width,
        height=photo.height,
        taken_at=photo.taken_at,
        exif_lng=photo.exif_lng,
        exif_lat=photo.exif_lat,
        uploaded_by=user.id,
    )
    try:
        with session.begin_nested():
            session.add(attachment)
            session.flush()
    except IntegrityError:
        existing = session.scalar(
            select(Attachment).where(
                Attachment.event_id == event.id, Attachment.sha256 == photo.sha256
            )
        )
        if existing is None:
            raise
        return existing, False
    return attachment, True
