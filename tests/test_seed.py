"""The demo seeder: accounts, a small run driven through the real workflow, and its CLI.

Seeding takes seconds, so this module seeds once per backend inside one outer transaction
(rolled back at the end) and every test reads that data; the determinism check runs the
same seed twice, rolling the first run back.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from flask import Flask
from shapely.geometry import Point
from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session, selectinload

from gridgov.db import Database
from gridgov.demo import ACCOUNTS
from gridgov.models import (
    Attachment,
    Event,
    EventState,
    Grid,
    Region,
    Role,
    Setting,
    User,
)
from gridgov.photos import PhotoStore
from gridgov.seed import OPEN_STATES, seed_demo
from gridgov.workflow.worktime import SHANGHAI

COUNTY = "441523"
NOW = datetime(2025, 6, 18, 10, 30, tzinfo=SHANGHAI)  # a Wednesday
EVENTS, DAYS, SEED = 150, 30, 7


@dataclass
class Seeded:
    summary: dict[str, Any]
    first_run: list[tuple[str, ...]]
    second_run: list[tuple[str, ...]]
    store: PhotoStore


def _fingerprint(session: Session) -> list[tuple[str, ...]]:
    rows = session.execute(
        select(
            Event.code, Event.state, Event.matter_code, Event.grid_code, Event.source, Event.urgency
        )
        .where(Event.county_code == COUNTY)
        .order_by(Event.code)
    )
    return [tuple(r) for r in rows]


@pytest.fixture(scope="module")
def connection(database: Database) -> Iterator[Connection]:
    """One outer transaction for the whole module (overrides the per-test one)."""
    with database.engine.connect() as conn:
        trans = conn.begin()
        yield conn
        trans.rollback()


@pytest.fixture(scope="module")
def seeded(
    database: Database, connection: Connection, tmp_path_factory: pytest.TempPathFactory
) -> Seeded:
    db = database.bound_to(connection)
    store = PhotoStore(tmp_path_factory.mktemp("uploads"))
    first = db.sessions()
    seed_demo(first, COUNTY, EVENTS, DAYS, SEED, NOW, store=store)
    first_run = _fingerprint(first)
    first.rollback()  # the session's SAVEPOINT: the second run starts from the same state
    first.close()
    second = db.sessions()
    summary = seed_demo(second, COUNTY, EVENTS, DAYS, SEED, NOW, store=store)
    second_run = _fingerprint(second)
    second.commit()  # releases the SAVEPOINT into the module's transaction
    second.close()
    return Seeded(summary, first_run, second_run, store)


@pytest.fixture
def events(seeded: Seeded, session: Session) -> list[Event]:
    return list(
        session.scalars(
            select(Event)
            .where(Event.county_code == COUNTY)
            .options(selectinload(Event.actions), selectinload(Event.attachments))
            .order_by(Event.id)
        )
    )


def _actions(event: Event) -> list[str]:
    return [a.action for a in event.actions]


def test_every_state_appears_and_the_counts_add_up(seeded: Seeded, events: list[Event]) -> None:
    states = seeded.summary["states"]
    assert set(states) == {s.value for s in EventState}
    assert all(states[s.value] > 0 for s in EventState), states
    assert sum(states.values()) == seeded.summary["events"] == EVENTS == len(events)
    assert Counter(e.state for e in events) == {k: v for k, v in states.items() if v}
    assert seeded.summary["open"] == sum(states[s.value] for s in OPEN_STATES)
    closed = states[EventState.CLOSED]
    assert closed == seeded.summary["closed_on_time"] + seeded.summary["closed_late"]
    # Most events are closed, most of those on time; the demo shows live work too.
    assert closed > EVENTS / 2
    assert seeded.summary["closed_on_time"] > 0.7 * closed
    assert seeded.summary["open"] >= 2 * len(OPEN_STATES)


def test_a_mix_of_outcomes(seeded: Seeded, events: list[Event]) -> None:
    s = seeded.summary
    assert s["self_handled"] and s["reworked"] and s["returned"] and s["extended"]
    assert s["closed_late"] > 0
    evaluations = s["evaluations"]
    assert evaluations["satisfied"] > evaluations["basically"] + evaluations["unsatisfied"]
    sources = Counter(e.source for e in events)
    assert sources["grid_worker"] > sources["hotline"] + sources["citizen"] > 0
    urgencies = Counter(e.urgency for e in events)
    assert urgencies["normal"] > urgencies["pressing"] + urgencies["urgent"]
    actions = Counter(a for e in events for a in _actions(e))
    for action in (
        "accept",
        "dispatch",
        "sign",
        "handle",
        "verify_pass",
        "verify_fail",
        "close",
        "evaluate",
        "escalate",
        "return",
        "request_extension",
        "approve_extension",
        "refuse_extension",
        "shelve",
        "self_handle",
        "reject",
        "void",
        "merge",
        "withdraw",
        "supervise",
    ):
        assert actions[action] > 0, action
    assert actions["report"] == EVENTS


def test_histories_and_deadlines_are_consistent(events: list[Event]) -> None:
    for e in events:
        history = _actions(e)
        assert history[0] == "report", e.code
        times = [a.at for a in e.actions]
        assert times == sorted(times), e.code
        assert times[-1] <= NOW
        assert e.reported_at <= e.due_at
        if e.stage_due_at is not None:
            assert e.stage_started_at is not None and e.stage_started_at <= e.stage_due_at
        if e.state == EventState.CLOSED:
            assert "verify_pass" in history and history[-1] in ("close", "evaluate", "callback")
            assert e.closed_at is not None
            assert e.overdue == (e.closed_at > e.due_at), e.code
            assert e.holder_level == "none"
        if e.extension_count:
            assert "approve_extension" in history
        if e.rework_count:
            assert history.count("handle") >= 2 and "verify_fail" in history
        if e.return_count:
            assert "return" in history
            if e.state != EventState.RETURNED:  # re-dispatched since
                assert history.count("dispatch") >= 2, e.code
        if e.self_handled:
            kinds = {p.kind for p in e.attachments}
            assert {"before", "after"} <= kinds, e.code
        if e.state == EventState.MERGED:
            assert e.merged_into_id is not None
        if e.state not in {s.value for s in OPEN_STATES}:
            assert e.ended_at is not None and e.holder_level == "none", e.code


def test_late_events_are_flagged_overdue(events: list[Event]) -> None:
    late = [e for e in events if e.state == EventState.CLOSED and e.closed_at > e.due_at]
    assert late and all(e.overdue for e in late)
    # Each was 督办'd before it was handled, past its deadline.
    assert any("supervise" in _actions(e) for e in late)
    # Open events past their deadline are flagged by the final SLA sweep.
    for e in events:
        if e.state in {s.value for s in OPEN_STATES} - {EventState.SHELVED} and e.due_at < NOW:
            assert e.overdue, e.code


def test_open_events_are_recent_and_held_by_someone(events: list[Event]) -> None:
    for e in events:
        if e.state in {s.value for s in OPEN_STATES}:
            assert e.holder_level != "none", e.code
        if e.state == EventState.HANDLED and e.source == "grid_worker":
            assert e.holder_level == "grid_worker" and e.holder_user_id == e.reporter_id


def test_events_lie_inside_their_grids(session: Session, events: list[Event]) -> None:
    grids = {g.id: g for g in session.scalars(select(Grid).where(Grid.code.startswith(COUNTY)))}
    for e in events:
        grid = grids[e.grid_id]
        assert grid.code == e.grid_code
        assert grid.geom.contains(Point(e.lng, e.lat)), e.code
        assert e.village_code == grid.village_code


def test_photos_are_stored(seeded: Seeded, session: Session) -> None:
    photos = list(
        session.scalars(select(Attachment).join(Event).where(Event.county_code == COUNTY).limit(20))
    )
    assert photos
    for photo in photos:
        assert seeded.store.open(photo.path).is_file()
        assert photo.action_id is not None  # every photo belongs to the action it documents


def test_the_same_seed_gives_the_same_events(seeded: Seeded) -> None:
    assert len(seeded.first_run) == EVENTS
    assert seeded.first_run == seeded.second_run


def test_accounts_for_every_village_town_and_department(session: Session, seeded: Seeded) -> None:
    villages = session.scalars(
        select(Region.code).where(Region.level == "village", Region.code.startswith(COUNTY))
    ).all()
    workers = {
        u.username: u
        for u in session.scalars(select(User).where(User.username.startswith(f"wg{COUNTY}")))
    }
    assert set(workers) == {f"wg{v}" for v in villages}
    assert all(w.grids and w.role == Role.GRID_WORKER for w in workers.values())
    towns = session.scalars(
        select(Region.code).where(Region.level == "town", Region.parent_code == COUNTY)
    ).all()
    operators = session.scalars(select(User.username).where(User.username.startswith("zz"))).all()
    assert {f"zz{t}" for t in towns} <= set(operators)
    handlers = session.scalars(select(User).where(User.username.startswith(f"bm{COUNTY}"))).all()
    assert handlers and all(h.department_id for h in handlers)
    # One Argon2 hash shared by all generated accounts (hashing is slow by design).
    assert len({w.password_hash for w in workers.values()}) == 1
    assert seeded.summary["users_created"]["wg"] == len(villages)


def test_seeding_twice_creates_nothing(seeded: Seeded, session: Session) -> None:
    users = session.scalar(select(func.count()).select_from(User))
    setting = session.get(Setting, f"demo.seeded.{COUNTY}")
    assert setting is not None and json.loads(setting.value)["seed"] == SEED
    again = seed_demo(session, COUNTY, EVENTS, DAYS, SEED, NOW, store=seeded.store)
    assert again["created"] is False
    assert again["states"] == seeded.summary["states"]
    assert session.scalar(select(func.count()).select_from(User)) == users
    assert session.scalar(select(func.count()).select_from(Event)) >= EVENTS


def test_cli_seeds_and_prints_the_account_table_once(app: Flask, seeded: Seeded) -> None:
    runner = app.test_cli_runner()
    # Another county: no demo accounts live there, so it gets its own centre accounts.
    result = runner.invoke(
        args=["seed-demo", "--county", "441427", "--events", "40", "--days", "10", "--seed", "3"]
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "已生成演示数据：40 件事件" in out
    assert "已办结" in out and "处置中" in out
    assert out.count("用户名") == 1
    for account in ACCOUNTS:
        assert account.username in out
    assert "Gridgov#2026" in out
    assert "wg<村居代码>" in out and "dd<县代码>" in out
    assert "wg441427" not in out  # generated accounts are counted, not listed
    assert (app.extensions["gridgov.settings"].upload_folder).is_dir()

    again = runner.invoke(args=["seed-demo", "--county", "441427"])
    assert again.exit_code == 0, again.output
    assert "已有演示数据" in again.output and again.output.count("用户名") == 1
