"""The SLA sweep: overdue marks, 督办 for late stages and warnings, each exactly once."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gridgov.db import Database
from gridgov.events import ReportInput, perform, report_event
from gridgov.models import (
    AuditEntry,
    Event,
    EventAction,
    Grid,
    GridSet,
    HolderLevel,
    Notice,
    User,
)
from gridgov.sla import sla_sweep
from gridgov.workflow.worktime import SHANGHAI

MON = datetime(2026, 3, 9, 9, 0, tzinfo=SHANGHAI)
"""A Monday 09:00 in a week without holidays."""
US = timedelta(microseconds=1)
ZERO = {"overdue_marked": 0, "supervised": 0, "warned": 0}
NEIGHBOUR_DISPUTE = "0101"
"""邻里纠纷, normal urgency: accept 1 and dispatch 1 working hour, handle and verify 1 working
day each; the whole loop is due Wednesday 11:00 when reported Monday 09:00."""
LUOXI_SANITATION = "441523105-town_sanitation"


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """Return a Shanghai instant in March 2026."""
    return datetime(2026, 3, day, hour, minute, second, tzinfo=SHANGHAI)


def report(session: Session, user: User, now: datetime = MON) -> Event:
    grid = session.scalar(
        select(Grid)
        .join(GridSet, GridSet.id == Grid.grid_set_id)
        .where(GridSet.active.is_(True), Grid.code.in_(user.grid_codes))
        .order_by(Grid.code)
    )
    assert grid is not None
    point = grid.geom.representative_point()
    data = ReportInput(
        matter_code=NEIGHBOUR_DISPUTE,
        urgency="normal",
        description="两户因排水沟堵塞发生争执",
        lng=point.x,
        lat=point.y,
        client_key=uuid.uuid4().hex,
    )
    return report_event(session, user, data, now=now).event


def notices(session: Session, kind: str | None = None) -> list[Notice]:
    query = select(Notice).order_by(Notice.id)
    if kind is not None:
        query = query.where(Notice.kind == kind)
    return list(session.scalars(query))


def supervisions(session: Session, event: Event) -> list[EventAction]:
    return list(
        session.scalars(
            select(EventAction)
            .where(EventAction.event_id == event.id, EventAction.action == "supervise")
            .order_by(EventAction.id)
        )
    )


def sweep_twice(session: Session, now: datetime) -> dict[str, int]:
    """Sweep at `now`, then check that a second sweep at `now` changes nothing at all."""
    first = sla_sweep(session, now)
    counted = (
        session.scalar(select(func.count()).select_from(Notice)),
        session.scalar(select(func.count()).select_from(EventAction)),
        session.scalar(select(func.count()).select_from(AuditEntry)),
        session.scalar(select(func.sum(Event.version))),
    )
    assert sla_sweep(session, now) == ZERO
    assert counted == (
        session.scalar(select(func.count()).select_from(Notice)),
        session.scalar(select(func.count()).select_from(EventAction)),
        session.scalar(select(func.count()).select_from(AuditEntry)),
        session.scalar(select(func.sum(Event.version))),
    )
    return first


def test_nothing_to_do_on_a_fresh_event(session: Session, users: dict[str, User]) -> None:
    event = report(session, users["wgy"])
    assert event.stage_due_at == at(9, 10)
    assert event.due_at == at(11, 11)
    assert sla_sweep(session, MON) == ZERO


def test_stage_warning_then_supervision_at_the_right_instants(
    session: Session, users: dict[str, User]
) -> None:
    event = report(session, users["wgy"])
    deadline = event.stage_due_at
    assert deadline == at(9, 10)

    # Yellow once more than 80 % of the hour is used: 09:48 is exactly 80 %.
    assert sweep_twice(session, at(9, 9, 48)) == ZERO
    assert sweep_twice(session, at(9, 9, 48) + US) == {**ZERO, "warned": 1}
    assert event.warning_notice_for == deadline
    [warning] = notices(session, "deadline_warning")
    assert warning.user_id == users["zzzx"].id  # the holding 螺溪镇 centre
    assert warning.event_id == event.id
    assert "受理" in warning.text and "10:00" in warning.text
    assert sweep_twice(session, at(9, 9, 59)) == ZERO

    # The deadline itself is not late yet; a microsecond after it is.
    assert sweep_twice(session, deadline) == ZERO
    assert supervisions(session, event) == []
    assert sweep_twice(session, deadline + US) == {**ZERO, "supervised": 1}
    [action] = supervisions(session, event)
    assert (action.actor_id, action.actor_name, action.actor_role) == (None, "系统", "system")
    assert action.comment.startswith("超时督办")
    assert action.from_state == action.to_state == "reported"
    assert action.holder_before == action.holder_after == "town:441523105"
    assert json.loads(action.data) == {
        "automatic": True,
        "stage": "accept",
        "stage_due_at": deadline.isoformat(),
    }
    [notice] = notices(session, "supervise")
    assert (notice.user_id, notice.event_id) == (users["zzzx"].id, event.id)
    assert event.overdue_notice_for == deadline
    assert not event.overdue  # the whole loop is not due before Wednesday

    # Much later: still one 督办 for this stage deadline, one warning.
    assert sweep_twice(session, at(10, 9)) == ZERO
    assert len(supervisions(session, event)) == 1
    assert len(notices(session, "deadline_warning")) == 1


def test_overdue_is_marked_once_just_after_due_at(session: Session, users: dict[str, User]) -> None:
    event = report(session, users["wgy"])
    assert sweep_twice(session, event.stage_due_at + US) == {**ZERO, "supervised": 1}
    assert sweep_twice(session, event.due_at) == ZERO
    assert not event.overdue
    assert sweep_twice(session, event.due_at + US) == {**ZERO, "overdue_marked": 1}
    assert event.overdue
    assert len(supervisions(session, event)) == 1


def test_an_event_never_swept_gets_everything_it_owes_in_one_run(
    session: Session, users: dict[str, User]
) -> None:
    event = report(session, users["wgy"])
    assert sweep_twice(session, at(16, 9)) == {**ZERO, "overdue_marked": 1, "supervised": 1}
    assert event.overdue


def test_each_stage_deadline_gets_its_own_warning_and_supervision(
    session: Session, users: dict[str, User]
) -> None:
    event = report(session, users["wgy"])
    assert sweep_twice(session, at(9, 9, 55)) == {**ZERO, "warned": 1}
    perform(session, users["zzzx"], event.id, "accept", now=at(9, 9, 56))
    assert event.stage == "dispatch"
    assert event.stage_due_at == at(9, 10, 56)
    assert sweep_twice(session, at(9, 10, 40)) == ZERO  # 44 of 60 minutes: green
    assert sweep_twice(session, at(9, 10, 50)) == {**ZERO, "warned": 1}
    assert sweep_twice(session, at(9, 11)) == {**ZERO, "supervised": 1}
    [action] = supervisions(session, event)
    assert json.loads(action.data)["stage"] == "dispatch"
    assert len(notices(session, "deadline_warning")) == 2


def test_working_time_decides_the_warning(session: Session, users: dict[str, User]) -> None:
    # Accepted 17:20: the dispatch hour runs 17:20–17:30 and 08:30–09:20 the next day.
    event = report(session, users["wgy"], at(9, 17, 10))
    perform(session, users["zzzx"], event.id, "accept", now=at(9, 17, 20))
    assert event.stage_due_at == at(10, 9, 20)
    assert sweep_twice(session, at(10, 7)) == ZERO  # 10 of 60 working minutes
    assert sweep_twice(session, at(10, 9, 9)) == {**ZERO, "warned": 1}  # 49 of 60


def test_shelved_events_are_left_alone(session: Session, users: dict[str, User]) -> None:
    event = report(session, users["wgy"])
    perform(session, users["zzzx"], event.id, "accept", now=at(9, 9, 10))
    dept = users["hwsuo"].department_id
    perform(
        session, users["zzzx"], event.id, "dispatch", {"lead_department_id": dept}, now=at(9, 9, 20)
    )
    perform(session, users["zbz"], event.id, "shelve", {"comment": "待上级协调"}, now=at(9, 9, 30))
    due = event.due_at

    assert sweep_twice(session, at(31, 9)) == ZERO
    assert not event.overdue
    assert supervisions(session, event) == []

    # Resumed three weeks later, the clock moved on by the paused time: not overdue yet.
    perform(session, users["zbz"], event.id, "resume", now=at(31, 9, 30))
    assert event.due_at > due
    assert sweep_twice(session, event.due_at) == {**ZERO, "supervised": 1}
    assert sweep_twice(session, event.due_at + US) == {**ZERO, "overdue_marked": 1}


def test_a_closed_late_event_is_marked_by_close_and_never_supervised(
    session: Session, users: dict[str, User]
) -> None:
    event = report(session, users["wgy"])
    dept = users["hwsuo"].department_id
    perform(session, users["zzzx"], event.id, "accept", now=at(9, 9, 5))
    perform(
        session, users["zzzx"], event.id, "dispatch", {"lead_department_id": dept}, now=at(9, 9, 6)
    )
    perform(session, users["hwsuo"], event.id, "sign", now=at(9, 9, 7))
    perform(session, users["hwsuo"], event.id, "handle", {"comment": "已疏通"}, now=at(9, 9, 8))
    assert event.holder_level == HolderLevel.GRID_WORKER
    perform(session, users["wgy"], event.id, "verify_pass", now=at(9, 9, 9))
    perform(session, users["zzzx"], event.id, "close", now=event.due_at + timedelta(days=3))
    assert event.state == "closed"
    assert event.overdue  # counted late by the close itself
    closing_notices = len(notices(session))

    assert sweep_twice(session, event.due_at + timedelta(days=4)) == ZERO
    assert supervisions(session, event) == []
    assert len(notices(session)) == closing_notices


def test_the_sweep_is_audited(session: Session, users: dict[str, User]) -> None:
    event = report(session, users["wgy"])
    last = session.scalar(select(func.max(AuditEntry.id)))
    sla_sweep(session, at(16, 9))
    entries = list(session.scalars(select(AuditEntry).where(AuditEntry.id > last)))
    assert [(e.action, e.object_type, e.object_id) for e in entries] == [
        ("update", "event", str(event.id))
    ]
    changes = json.loads(entries[0].data)
    assert changes["overdue"] == [False, True]
    assert set(changes) == {"overdue", "overdue_notice_for"}


def test_an_event_changed_meanwhile_is_skipped_and_taken_next_time(
    db: Database, users: dict[str, User], session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gridgov.sla")
    event_id = report(session, users["wgy"]).id
    session.commit()
    late = at(9, 10, 30)

    with db.session() as first:
        stale = first.get(Event, event_id)  # loaded before someone else changes it
        assert stale is not None and stale.version == 1
        with db.session() as other:  # a user (or another sweep) changes the row meanwhile
            other_event = other.get(Event, event_id)
            assert other_event is not None
            other_event.address = "螺溪镇欧田村"
        # The update goes out against version 1, matches no row, and is skipped.
        assert sla_sweep(first, late) == ZERO
    assert f"skipped event {event_id}: it changed concurrently" in caplog.text
    with db.session() as s:
        event = s.get(Event, event_id)
        assert event is not None
        assert (event.version, event.overdue_notice_for) == (2, None)
        assert supervisions(s, event) == []
        assert sla_sweep(s, late) == {**ZERO, "supervised": 1}


# ---------------------------------------------------------------------------
# The command


def test_cli_sweeps_and_prints_counts(app: Flask, session: Session, users: dict[str, User]) -> None:
    event = report(session, users["wgy"])
    session.commit()
    runner = app.test_cli_runner()

    early = runner.invoke(args=["sla-sweep", "--now", "2026-03-09T09:30:00+08:00"])
    assert early.exit_code == 0, early.output
    assert json.loads(early.output) == ZERO

    # Without an offset the time is Shanghai local time.
    late = runner.invoke(args=["sla-sweep", "--now", "2026-03-16T09:00:00"])
    assert late.exit_code == 0, late.output
    assert json.loads(late.output) == {**ZERO, "overdue_marked": 1, "supervised": 1}
    session.refresh(event)
    assert event.overdue

    again = runner.invoke(args=["sla-sweep", "--now", "2026-03-16T09:00:00"])
    assert json.loads(again.output) == ZERO


def test_cli_refuses_a_bad_time(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["sla-sweep", "--now", "next tuesday"])
    assert result.exit_code == 2
    assert "ISO 8601" in result.output


def test_cli_default_now_is_the_clock(app: Flask) -> None:
    # Nothing in the base data is open: the real clock finds nothing to do.
    result = app.test_cli_runner().invoke(args=["sla-sweep"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == ZERO
