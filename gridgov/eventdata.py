"""Reading events: filters within the caller's jurisdiction, summaries and full records."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session

from gridgov.access import REGION_COLUMNS, in_region, visible
from gridgov.errors import Unprocessable
from gridgov.events import allowed_actions, holder_label
from gridgov.models import (
    STATE_LABELS,
    Department,
    Event,
    EventState,
    HolderLevel,
    Matter,
    Region,
    Role,
    Source,
    Urgency,
    User,
)
from gridgov.workflow.worktime import SHANGHAI, WorkCalendar

MAX_PER_PAGE = 100


@dataclass(frozen=True)
class EventFilter:
    """Filters of an event list; every field optional."""

    states: tuple[str, ...] = ()
    matter: str = ""
    region: str = ""
    source: str = ""
    urgency: str = ""
    date_from: date | None = None
    date_to: date | None = None
    overdue: bool | None = None
    page: int = 1
    per_page: int = 20

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> EventFilter:
        """Parse query parameters; raise Unprocessable naming the bad one."""
        states = tuple(s for s in (args.get("state") or "").split(",") if s)
        bad = [s for s in states if s not in STATE_LABELS]
        if bad:
            raise Unprocessable(f"未知状态：{'、'.join(bad)}", code="bad_parameter", field="state")
        region = (args.get("region") or "").strip()
        if region and (not region.isdigit() or len(region) not in REGION_COLUMNS):
            raise Unprocessable(
                "区划代码应为6、9、12或15位数字", code="bad_parameter", field="region"
            )
        source = args.get("source") or ""
        if source and source not in {s.value for s in Source}:
            raise Unprocessable("未知来源", code="bad_parameter", field="source")
        urgency = args.get("urgency") or ""
        if urgency and urgency not in {u.value for u in Urgency}:
            raise Unprocessable("未知紧急程度", code="bad_parameter", field="urgency")
        overdue_raw = args.get("overdue")
        return cls(
            states=states,
            matter=(args.get("matter") or "").strip(),
            region=region,
            source=source,
            urgency=urgency,
            date_from=_date(args.get("from"), "from"),
            date_to=_date(args.get("to"), "to"),
            overdue=None if overdue_raw in (None, "") else overdue_raw in ("1", "true", "yes"),
            page=_int(args.get("page"), "page", 1, 1, 1_000_000),
            per_page=_int(args.get("per_page"), "per_page", 20, 1, MAX_PER_PAGE),
        )

    def apply(self, query: Select[Any]) -> Select[Any]:
        """Add these filters to a query over Event."""
        query = query.where(
            *event_conditions(
                date_from=self.date_from,
                date_to=self.date_to,
                region=self.region,
                matter=self.matter,
                sources=(self.source,) if self.source else (),
            )
        )
        if self.states:
            query = query.where(Event.state.in_(self.states))
        if self.urgency:
            query = query.where(Event.urgency == self.urgency)
        if self.overdue is not None:
            query = query.where(Event.overdue.is_(self.overdue))
        return query


def event_conditions(
    *,
    date_from: date | None = None,
    date_to: date | None = None,
    region: str | None = None,
    matter: str | None = None,
    sources: Collection[str] = (),
) -> list[ColumnElement[bool]]:
    """Return the conditions of the common event filter: period, region, matter, sources.

    The period is [day_start(from), day_start(to + 1)) on the Shanghai calendar; a region
    compares the code column of its level for equality, a matter is a code prefix.
    """
    where: list[ColumnElement[bool]] = []
    if date_from:
        where.append(Event.reported_at >= day_start(date_from))
    if date_to:
        where.append(Event.reported_at < day_start(date_to + timedelta(days=1)))
    if region:
        where.append(in_region(region))
    if matter:
        where.append(Event.matter_code.startswith(matter))
    if sources:
        where.append(Event.source.in_(sources))
    return where


def day_start(d: date) -> datetime:
    """Return the first instant of a Shanghai calendar day."""
    return datetime.combine(d, time.min, tzinfo=SHANGHAI)


def _date(raw: str | None, name: str) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise Unprocessable(
            f"日期格式应为 YYYY-MM-DD：{raw}", code="bad_parameter", field=name
        ) from None


def _int(raw: str | None, name: str, default: int, low: int, high: int) -> int:
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Unprocessable(f"{name} 应为整数", code="bad_parameter", field=name) from None
    if not low <= value <= high:
        raise Unprocessable(f"{name} 应在 {low}–{high} 之间", code="bad_parameter", field=name)
    return value


def list_events(
    session: Session, user: User, flt: EventFilter, calendar: WorkCalendar, now: datetime
) -> dict[str, Any]:
    """Return one page of the events `user` may see, newest first, with the total."""
    query = flt.apply(select(Event).where(visible(user)))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(Event.reported_at.desc(), Event.id.desc())
        .limit(flt.per_page)
        .offset((flt.page - 1) * flt.per_page)
    )
    names = Names.load(session)
    return {
        "items": [summary(e, calendar, now, names) for e in rows],
        "total": total,
        "page": flt.page,
        "per_page": flt.per_page,
    }


@dataclass
class Names:
    """Matter, region, department and user names, loaded once per page or list."""

    matters: dict[str, str] = field(default_factory=dict)
    regions: dict[str, str] = field(default_factory=dict)
    departments: dict[int, str] = field(default_factory=dict)
    users: dict[int, str] = field(default_factory=dict)

    @classmethod
    def load(cls, session: Session) -> Names:
        """Load every matter, region and department name, and grid workers' names."""
        return cls(
            dict(session.execute(select(Matter.code, Matter.name)).all()),
            dict(session.execute(select(Region.code, Region.name)).all()),
            dict(session.execute(select(Department.id, Department.name)).all()),
            dict(
                session.execute(
                    select(User.id, User.display_name).where(User.role == Role.GRID_WORKER)
                ).all()
            ),
        )

    def holder(self, label: str, session: Session | None = None) -> str:
        """Return a holder ('level:ref', see events.holder_label) in words."""
        level, _, ref = label.partition(":")
        if level == HolderLevel.TOWN:
            return f"{self.regions.get(ref, ref)}综治中心"
        if level == HolderLevel.COUNTY:
            return f"{self.regions.get(ref, ref)}联勤指挥中心"
        if level == HolderLevel.DEPARTMENT and ref.isdigit():
            return self.departments.get(int(ref), "部门")
        if level == HolderLevel.GRID_WORKER and ref.isdigit():
            user_id = int(ref)
            if user_id not in self.users and session is not None:
                user = session.get(User, user_id)
                self.users[user_id] = user.display_name if user else "网格员"
            return self.users.get(user_id, "网格员")
        return "—"


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(SHANGHAI).isoformat() if value else None


def holder_name(event: Event, names: Names) -> str:
    """Return who holds the event, in words."""
    return names.holder(holder_label(event))


def lights(event: Event, calendar: WorkCalendar, now: datetime) -> dict[str, Any]:
    """Return the traffic lights of the current stage and of the whole event."""
    stage_light = None
    if event.stage_due_at and event.stage_started_at and EventState(event.state).is_open:
        stage_light = calendar.traffic_light(
            event.stage_started_at, event.stage_due_at, now, event.stage_unit or "working_hours"
        )
    if event.state == EventState.SHELVED:
        overall = "paused"
    elif not EventState(event.state).is_open:
        overall = "red" if event.overdue else "done"
    else:
        overall = calendar.traffic_light(event.reported_at, event.due_at, now, "working_hours")
    return {
        "stage_light": stage_light,
        "light": overall,
        "remaining_hours": round(calendar.remaining(event.due_at, now, "working_hours"), 2)
        if EventState(event.state).is_open and event.state != EventState.SHELVED
        else None,
    }


def summary(
    event: Event, calendar: WorkCalendar, now: datetime, names: Names | None = None
) -> dict[str, Any]:
    """Return the list representation of an event."""
    names = names or Names()
    return {
        "id": event.id,
        "code": event.code,
        "state": event.state,
        "state_label": STATE_LABELS[EventState(event.state)],
        "source": event.source,
        "matter_code": event.matter_code,
        "matter_name": names.matters.get(event.matter_code, ""),
        "urgency": event.urgency,
        "description": event.description,
        "address": event.address,
        "lng": event.lng,
        "lat": event.lat,
        "grid_code": event.grid_code,
        "village_code": event.village_code,
        "village_name": names.regions.get(event.village_code, ""),
        "town_code": event.town_code,
        "town_name": names.regions.get(event.town_code, ""),
        "county_code": event.county_code,
        "holder_level": event.holder_level,
        "holder": holder_name(event, names),
        "reported_at": _iso(event.reported_at),
        "stage": event.stage,
        "stage_due_at": _iso(event.stage_due_at),
        "deadline": _iso(event.due_at),
        "closed_at": _iso(event.closed_at),
        "overdue": event.overdue,
        "extension_pending_days": event.extension_pending_days,
        "rework_count": event.rework_count,
        "return_count": event.return_count,
        "satisfaction": event.satisfaction,
        "version": event.version,
        **lights(event, calendar, now),
    }


def detail(
    session: Session, user: User, event: Event, calendar: WorkCalendar, now: datetime
) -> dict[str, Any]:
    """Return an event with its full history, photos and the actions open to `user`."""
    names = Names.load(session)
    body = summary(event, calendar, now, names)
    body["grid_name"] = _grid_name(session, event)
    body["reporter_name"] = event.reporter_name
    body["history"] = [
        {
            "id": a.id,
            "action": a.action,
            "actor": a.actor_name,
            "actor_role": a.actor_role,
            "at": _iso(a.at),
            "from_state": a.from_state,
            "to_state": a.to_state,
            "holder_before": a.holder_before,
            "holder_after": a.holder_after,
            "comment": a.comment,
            "data": json.loads(a.data or "{}"),
            "attachment_ids": [p.id for p in a.attachments],
        }
        for a in event.actions
    ]
    body["photos"] = [
        {
            "id": p.id,
            "kind": p.kind,
            "action_id": p.action_id,
            "width": p.width,
            "height": p.height,
            "taken_at": _iso(p.taken_at),
            "exif_lng": p.exif_lng,
            "exif_lat": p.exif_lat,
            "url": f"/api/v1/attachments/{p.id}",
            "thumb_url": f"/api/v1/attachments/{p.id}?thumb=1",
        }
        for p in event.attachments
    ]
    body["departments"] = [
        {
            "id": a.department_id,
            "name": names.departments.get(a.department_id, ""),
            "role": a.role,
            "active": a.active,
        }
        for a in event.assignments
    ]
    body["merged_into_id"] = event.merged_into_id
    body["allowed_actions"] = [
        {"name": t.name, "label": t.label, "requires": list(t.requires)}
        for t in allowed_actions(session, user, event)
    ]
    return body


def _grid_name(session: Session, event: Event) -> str:
    from gridgov.models import Grid

    grid = session.get(Grid, event.grid_id)
    return grid.name if grid else ""
