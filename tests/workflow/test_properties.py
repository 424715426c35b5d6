"""Random walks through the closed loop keep its invariants, and the audit chain intact.

Each example reports a few events, then lets random demo users try random transitions with
plausible (and implausible) inputs while the clock moves forward, with an SLA sweep now and
then. A refused step (GridGovError) must change nothing. After every step: holder and state
agree, closed events were verified and closed, deadlines move only forward and only by an
approved extension or a resumption, and the audit chain is intact.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from factories import png_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from gridgov.audit import Actor, _entry_fields, compute_mac, verify_chain
from gridgov.db import Database
from gridgov.errors import GridGovError
from gridgov.events import ReportInput, allowed_actions, attach_photo, perform, report_event
from gridgov.models import (
    AuditEntry,
    AuditHead,
    Department,
    Event,
    EventAction,
    EventAssignment,
    EventState,
    Grid,
    GridSet,
    HolderLevel,
    User,
)
from gridgov.photos import PhotoStore
from gridgov.sla import sla_sweep
from gridgov.workflow.machine import TRANSITIONS
from gridgov.workflow.worktime import SHANGHAI

KEY = b"test-audit-key"
STEPS = 30
EXAMPLES = 15
START = datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI)
"""A Monday; STEPS steps of at most three days each stay inside 2026 (a year with a schedule)."""

ACTORS = ("wgy", "wgy2", "zzzx", "zzzx2", "ddy", "zbz", "cgj", "hwsuo", "pcs", "ld", "xtgly")
ADVANCES = [timedelta(0), timedelta(minutes=5), timedelta(minutes=40), timedelta(hours=3)]
ADVANCES += [timedelta(hours=20), timedelta(days=3)]
COMMENTS = ["已核实情况", "请尽快处理", "", "   ", "x" * 2001]
S = EventState
CENTRE_LEVELS = {HolderLevel.TOWN.value, HolderLevel.COUNTY.value}
DUE_MOVERS = {"approve_extension", "resume"}
WEIGHTS = {
    **dict.fromkeys(["accept", "dispatch", "sign", "handle", "verify_pass", "close"], 20),
    **dict.fromkeys(["self_handle", "request_extension", "approve_extension", "resume"], 8),
    **dict.fromkeys(["verify_fail", "return", "escalate", "evaluate"], 3),
}
"""How often a plausible step picks each allowed action (others: 1), so walks go deep."""
PHOTO_ACTIONS = {"self_handle", "handle", "verify_pass", "verify_fail"}
PHOTO_ODDS = {True: [True, True, True, False], False: [True] + [False] * 19}
"""Whether a step uploads photos first: mostly for actions that use them, rarely otherwise."""


def grid_point(session: Session, grid_code: str) -> tuple[float, float]:
    grid = session.scalar(
        select(Grid)
        .join(GridSet, GridSet.id == Grid.grid_set_id)
        .where(GridSet.active.is_(True), Grid.code == grid_code)
    )
    assert grid is not None, grid_code
    p = grid.geom.representative_point()
    return p.x, p.y


def department_id(session: Session, code: str) -> int:
    dept_id = session.scalar(select(Department.id).where(Department.code == code))
    assert dept_id is not None, code
    return dept_id


@dataclass
class World:
    """One example's session, people, events, candidate inputs and clock."""

    session: Session
    users: dict[str, User]
    events: list[Event]
    departments: list[Any]
    places: list[tuple[float, float]]
    store: PhotoStore
    now: datetime


def build_world(session: Session, store: PhotoStore, urgencies: list[str]) -> World:
    users = {u.username: u for u in session.scalars(select(User))}
    wgy_grid, wgy2_grid = users["wgy"].grid_codes[0], users["wgy2"].grid_codes[0]
    jiaoling_grid = session.scalar(
        select(Grid.code)
        .join(GridSet, GridSet.id == Grid.grid_set_id)
        .where(GridSet.active.is_(True), Grid.code.startswith("441427"))
        .order_by(Grid.code)
    )
    assert jiaoling_grid is not None
    places = [grid_point(session, g) for g in (wgy_grid, users["wgy"].grid_codes[-1], wgy2_grid)]
    places += [grid_point(session, jiaoling_grid), (100.0, 10.0)]
    luoxi_sanitation, luoxi_police, county_urban, hetian_sanitation, jiaoling_urban = (
        department_id(session, code)
        for code in (
            "441523105-town_sanitation",  # hwsuo's, 螺溪镇
            "441523105-police_station",  # pcs's, 螺溪镇
            "441523-urban_management",  # cgj's, the county
            "441523100-town_sanitation",  # 河田镇: nobody can sign for it
            "441427-urban_management",  # another county
        )
    )
    departments: list[Any] = [luoxi_sanitation] * 4 + [luoxi_police] * 2 + [county_urban] * 3
    departments += [hetian_sanitation, jiaoling_urban, 999_999, "114"]
    reports = [  # (reporter, matter, place, source)
        ("wgy", "0501", places[0], ""),  # 垃圾: self-handling allowed, photos required
        ("ddy", "0507", places[2], "hotline"),  # county-held from the start
        ("zzzx", "0101", places[1], "citizen"),  # a town centre's own; no photos needed
    ]
    events = []
    for (reporter, matter, (lng, lat), source), urgency in zip(reports, urgencies, strict=True):
        data = ReportInput(
            matter, urgency, "随机游走测试事件", lng, lat, uuid.uuid4().hex, source=source
        )
        events.append(report_event(session, users[reporter], data, now=START).event)
    return World(session, users, events, departments, places, store, START)


# ---------------------------------------------------------------------------
# Invariants


@dataclass(frozen=True)
class Snapshot:
    state: str
    holder: tuple[Any, ...]
    due_at: datetime
    version: int


def snapshot(event: Event) -> Snapshot:
    holder = (
        event.holder_level,
        event.holder_region_code,
        event.holder_department_id,
        event.holder_user_id,
    )
    return Snapshot(event.state, holder, event.due_at, event.version)


def check_holder(session: Session, e: Event) -> None:
    state = S(e.state)
    if state == S.SHELVED:
        assert e.shelved_from is not None and e.shelved_at is not None
        state = S(e.shelved_from)
    level = e.holder_level
    assert (not state.is_open) == (level == HolderLevel.NONE), (e.state, level)
    if level in CENTRE_LEVELS:
        # A centre holds only what lies inside its own region (or it could not see it).
        assert e.holder_region_code and e.grid_code.startswith(e.holder_region_code)
        assert len(e.holder_region_code) == (9 if level == HolderLevel.TOWN else 6)
    if state in (S.DISPATCHED, S.HANDLING):
        leads = session.scalars(
            select(EventAssignment.department_id).where(
                EventAssignment.event_id == e.id,
                EventAssignment.role == "lead",
                EventAssignment.active.is_(True),
            )
        ).all()
        assert level == HolderLevel.DEPARTMENT and [e.holder_department_id] == leads, e.state
    elif state in (S.REPORTED, S.ACCEPTED, S.RETURNED, S.VERIFIED):
        assert level in CENTRE_LEVELS, (e.state, level)
    elif state == S.HANDLED:
        assert level in CENTRE_LEVELS | {HolderLevel.GRID_WORKER.value}, (e.state, level)


def check_history(session: Session, e: Event) -> None:
    if e.state == S.CLOSED:
        actions = set(
            session.scalars(select(EventAction.action).where(EventAction.event_id == e.id))
        )
        assert {"verify_pass", "close"} <= actions, actions
        assert e.closed_at is not None


class ChainWatch:
    """Checks, after each step, every audit entry appended since the last check.

    The whole chain (base data included) is verified by `verify_chain` at the end of each
    example; re-reading all ~2,500 base entries after every step would cost 0.1–0.2 s each.
    """

    def __init__(self, session: Session) -> None:
        head = session.execute(select(AuditHead.last_id, AuditHead.last_mac)).one()
        self.last_id, self.last_mac = head.last_id, head.last_mac

    def check(self, session: Session) -> None:
        table = AuditEntry.__table__
        rows = session.execute(
            select(table).where(table.c.id > self.last_id).order_by(table.c.id)
        ).all()
        for row in rows:
            assert row.id == self.last_id + 1 and row.prev_mac == self.last_mac, row.id
            fields = _entry_fields(
                row.id,
                row.at,
                Actor(row.actor_id, row.actor),
                row.action,
                row.object_type,
                row.object_id,
                row.data,
            )
            assert hmac.compare_digest(compute_mac(KEY, fields, row.prev_mac), row.mac), row.id
            self.last_id, self.last_mac = row.id, row.mac
        head = session.execute(select(AuditHead.last_id, AuditHead.last_mac)).one()
        assert (head.last_id, head.last_mac) == (self.last_id, self.last_mac)


# ---------------------------------------------------------------------------
# Steps


@dataclass
class Step:
    """What one step tried and whether it went through."""

    event: Event | None
    action: str
    ok: bool


def draw_inputs(data: st.DataObject, world: World, event: Event, action: str) -> dict[str, Any]:
    t = TRANSITIONS[action]
    inputs: dict[str, Any] = {}
    if "comment" in t.requires or data.draw(st.booleans()):
        inputs["comment"] = data.draw(st.sampled_from(COMMENTS[:2] * 4 + COMMENTS))
    if action == "dispatch" or data.draw(st.integers(0, 9)) == 0:
        inputs["lead_department_id"] = data.draw(st.sampled_from(world.departments))
        if data.draw(st.booleans()):
            inputs["assisting_department_ids"] = data.draw(
                st.lists(st.sampled_from(world.departments), max_size=2)
            )
    if action == "request_extension":
        inputs["days"] = data.draw(st.one_of(st.integers(0, 20), st.just("3")))
    if action == "evaluate":
        inputs["satisfaction"] = data.draw(
            st.sampled_from(["satisfied", "basically", "unsatisfied", "meh"])
        )
    if action == "merge":
        others = [e.id for e in world.events]
        inputs["target_event_id"] = data.draw(st.sampled_from([*others, "1"]))
    if action == "relocate":
        inputs["lng"], inputs["lat"] = data.draw(st.sampled_from(world.places))
    return inputs


def attach_photos(data: st.DataObject, world: World, user: User, event: Event) -> list[int]:
    kinds = data.draw(
        st.lists(st.sampled_from(["after", "before", "after", "evidence"]), max_size=3)
    )
    ids = []
    for kind in kinds:
        attachment, _ = attach_photo(world.session, user, event.id, png_bytes(), kind, world.store)
        ids.append(attachment.id)
    return ids


def take_step(data: st.DataObject, world: World) -> Step:
    session = world.session
    world.now += data.draw(st.sampled_from(ADVANCES), label="advance")
    if data.draw(st.integers(0, 9), label="sweep?") == 0:
        with session.begin_nested():
            sla_sweep(session, world.now)
        return Step(None, "sweep", True)

    # The grid worker's event has the longest paths (self-handling, verification by the
    # grid worker): it gets half of the steps.
    event = data.draw(st.sampled_from(world.events[:1] * 3 + world.events[1:]), label="event")
    allowed: dict[str, list[str]] = {}
    for name in ACTORS:
        for t in allowed_actions(session, world.users[name], event):
            allowed.setdefault(t.name, []).append(name)
    if allowed and data.draw(st.integers(0, 7), label="plausible?") > 0:
        weighted = [a for a in sorted(allowed) for _ in range(WEIGHTS.get(a, 1))]
        action = data.draw(st.sampled_from(weighted), label="action")
        username = data.draw(st.sampled_from(allowed[action]), label="actor")
    else:
        username = data.draw(st.sampled_from(ACTORS), label="actor")
        action = data.draw(st.sampled_from(sorted(TRANSITIONS)), label="action")
    user = world.users[username]
    inputs = draw_inputs(data, world, event, action)
    version = data.draw(st.sampled_from([None] * 6 + [event.version, event.version - 1]))
    try:
        with session.begin_nested():
            if data.draw(st.sampled_from(PHOTO_ODDS[action in PHOTO_ACTIONS]), label="photos?"):
                inputs["attachment_ids"] = attach_photos(data, world, user, event)
            perform(
                session, user, event.id, action, inputs, expected_version=version, now=world.now
            )
    except GridGovError:
        return Step(event, action, False)
    return Step(event, action, True)


@contextmanager
def example_session(db: Database) -> Iterator[Session]:
    """A session whose every change is rolled back at the end of the example."""
    session = db.sessions()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


def test_random_walks_keep_the_invariants(db: Database, tmp_path: Path) -> None:
    store = PhotoStore(tmp_path / "photos")

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        data=st.data(),
        urgencies=st.lists(
            st.sampled_from(["urgent", "pressing", "normal"]), min_size=3, max_size=3
        ),
    )
    def walk(data: st.DataObject, urgencies: list[str]) -> None:
        with example_session(db) as session:
            world = build_world(session, store, urgencies)
            watch = ChainWatch(session)
            for _ in range(STEPS):
                before = {e.id: snapshot(e) for e in world.events}
                step = take_step(data, world)
                for e in world.events:
                    after = snapshot(e)
                    if not step.ok:  # a refused step changed nothing
                        assert after == before[e.id], (step.action, e.id)
                    assert after.due_at >= before[e.id].due_at, (step.action, e.id)
                    if after.due_at > before[e.id].due_at:
                        assert step.event is e and step.action in DUE_MOVERS, step.action
                    check_holder(session, e)
                    check_history(session, e)
                watch.check(session)
            report = verify_chain(session, KEY)
            assert report.ok, report.problem
            assert report.entries == watch.last_id

    walk()


def test_an_edited_entry_after_some_steps_is_named(db: Database, tmp_path: Path) -> None:
    with example_session(db) as session:
        world = build_world(session, PhotoStore(tmp_path), ["normal"] * 3)
        first = world.events[0]
        perform(session, world.users["zzzx"], first.id, "accept", now=START)
        perform(session, world.users["zzzx"], first.id, "void", {"comment": "重复"}, now=START)
        entry_id = session.scalar(
            select(AuditEntry.id)
            .where(AuditEntry.object_type == "event", AuditEntry.object_id == str(first.id))
            .order_by(AuditEntry.id.desc())
        )
        assert verify_chain(session, KEY).ok
        session.execute(
            text("UPDATE audit_log SET data = :data WHERE id = :id"),
            {"data": '{"state": ["accepted", "closed"]}', "id": entry_id},
        )
        report = verify_chain(session, KEY)
        assert report.problem is not None
        assert (report.problem.entry_id, report.problem.kind) == (entry_id, "tampered")
