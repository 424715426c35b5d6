"""The SLA sweep: mark overdue events, send 督办 for late stages, warn before a stage is late.

`sla_sweep` flushes, never commits; the caller (CLI, background sweeper) commits once.
Every notice comes with a change to the event row, so the optimistic lock (`Event.version`)
decides between two sweeps running at once (on PostgreSQL; SQLite runs writers one after
the other): the loser's UPDATE matches no row, SQLAlchemy raises StaleDataError inside that
event's SAVEPOINT, and the event is left to the winner.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from gridgov.background import Periodic, start_periodic
from gridgov.calendar_store import load_calendar
from gridgov.db import Database, utcnow
from gridgov.events import holder_label, notify_holder
from gridgov.models import TERMINAL_STATES, Event, EventAction, EventState, Stage
from gridgov.workflow.worktime import SHANGHAI, WorkCalendar

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)

SYSTEM_NAME = "系统"
SYSTEM_ROLE = "system"

_SWEPT_OUT = [s.value for s in (*TERMINAL_STATES, EventState.SHELVED)]
"""States the sweep ignores: ended events, and shelved ones (their clock is paused)."""


def sla_sweep(session: Session, now: datetime | None = None) -> dict[str, int]:
    """Mark overdue events, supervise late stages, warn near-late ones; return the counts.

    Idempotent: each event is marked once, supervised once per stage deadline
    (`overdue_notice_for`) and warned once per stage deadline (`warning_notice_for`).
    """
    now = now or utcnow()
    counts = {"overdue_marked": 0, "supervised": 0, "warned": 0}
    candidates = session.scalars(
        select(Event)
        .where(
            Event.state.notin_(_SWEPT_OUT),
            or_(
                and_(Event.due_at < now, Event.overdue.is_(False)),
                and_(
                    Event.stage_due_at.is_not(None),
                    or_(
                        Event.overdue_notice_for.is_(None),
                        Event.overdue_notice_for != Event.stage_due_at,
                    ),
                    Event.stage_due_at < now,
                ),
                and_(
                    Event.stage_due_at.is_not(None),
                    or_(
                        Event.warning_notice_for.is_(None),
                        Event.warning_notice_for != Event.stage_due_at,
                    ),
                    Event.stage_due_at >= now,
                ),
            ),
        )
        .order_by(Event.id)
    ).all()
    if not candidates:
        return counts
    calendar = load_calendar(session)
    for event in candidates:
        due = _due(event, now, calendar)
        if not due:
            continue
        try:
            with session.begin_nested():
                _apply(session, event, due, now)
        except StaleDataError:
            # Changed meanwhile (another sweep, or a user): the next run looks again.
            log.info("SLA sweep skipped event %s: it changed concurrently", event.id)
            continue
        for name in due:
            counts[name] += 1
    return counts


def _due(event: Event, now: datetime, calendar: WorkCalendar) -> list[str]:
    """Return what the sweep owes this event now: overdue_marked, supervised, warned."""
    due: list[str] = []
    if event.due_at < now and not event.overdue:
        due.append("overdue_marked")
    deadline, started = event.stage_due_at, event.stage_started_at
    if deadline is None or event.stage is None:
        return due
    if deadline < now:
        if event.overdue_notice_for != deadline:
            due.append("supervised")
    elif event.warning_notice_for != deadline and started is not None:
        unit = event.stage_unit or "working_hours"
        if calendar.traffic_light(started, deadline, now, unit) == "yellow":
            due.append("warned")
    return due


def _apply(session: Session, event: Event, due: list[str], now: datetime) -> None:
    if "overdue_marked" in due:
        event.overdue = True
    if "supervised" in due:
        _supervise(session, event, now)
    if "warned" in due:
        _warn(session, event, now)
    session.flush()


def _stage(event: Event) -> tuple[Stage, datetime]:
    assert event.stage is not None and event.stage_due_at is not None
    return Stage(event.stage), event.stage_due_at


def _supervise(session: Session, event: Event, now: datetime) -> None:
    """Record a 督办 by the system and notify the holder (once per stage deadline)."""
    stage, deadline = _stage(event)
    event.overdue_notice_for = deadline
    comment = f"超时督办：{stage.label}环节已超过时限（{_local(deadline)}）"
    label = holder_label(event)
    data = {"automatic": True, "stage": stage.value, "stage_due_at": deadline.isoformat()}
    session.add(
        EventAction(
            event=event,
            action="supervise",
            actor_id=None,
            actor_name=SYSTEM_NAME,
            actor_role=SYSTEM_ROLE,
            at=now,
            from_state=event.state,
            to_state=event.state,
            holder_before=label,
            holder_after=label,
            comment=comment,
            data=json.dumps(data, ensure_ascii=False, sort_keys=True),
        )
    )
    notify_holder(session, event, "supervise", f"督办：事件 {event.code}，{comment}", now)


def _warn(session: Session, event: Event, now: datetime) -> None:
    """Tell the holder a stage deadline is near (once per stage deadline)."""
    stage, deadline = _stage(event)
    event.warning_notice_for = deadline
    text = f"预警：事件 {event.code} {stage.label}环节将于 {_local(deadline)} 到期"
    notify_holder(session, event, "deadline_warning", text, now)


def _local(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


# ---------------------------------------------------------------------------
# In the server


def run_sweep(db: Database, now: datetime | None = None) -> dict[str, int]:
    """Run one sweep in its own session and commit it."""
    with db.session() as session:
        return sla_sweep(session, now)


def start_background_sweeper(
    app: Flask, interval_s: float = 300, *, first_delay_s: float | None = None
) -> Periodic:
    """Sweep every `interval_s` seconds in a daemon thread of this process.

    Each run has its own session and commit; an error is logged and the next run tries
    again. The first run waits a random part of the interval (`first_delay_s` if given),
    so several server workers do not all sweep at the same moment.
    """
    db: Database = app.extensions["gridgov.db"]

    def sweep() -> None:
        counts = run_sweep(db)
        if any(counts.values()):
            log.info("SLA sweep: %s", counts)

    return start_periodic(
        "gridgov-sla-sweeper",
        sweep,
        interval_s,
        log=log,
        failure="SLA sweep failed",
        first_delay_s=first_delay_s,
    )
