"""Real concurrency on a committed database: threads, each with its own connection.

The same report sent at once from 20 threads is filed once; two dispatches of one event at
once give one success and one conflict; two SLA sweeps at once notify once; the audit chain
never forks. The database is a fresh one per backend, committed for real (threads must see
it), served by an app whose Database has its own engine and pool.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import pytest
from flask import Flask
from sqlalchemy import func, select

from gridgov import create_app, mapdata, sla
from gridgov.audit import verify_chain
from gridgov.auth import issue_token
from gridgov.background import Periodic
from gridgov.bootstrap import init_database
from gridgov.config import Settings
from gridgov.db import Database
from gridgov.demo import create_demo_users
from gridgov.events import ReportInput, perform, report_event
from gridgov.models import (
    Department,
    Event,
    EventAction,
    EventAssignment,
    Grid,
    GridSet,
    Notice,
    User,
)
from gridgov.workflow.worktime import SHANGHAI

KEY = "k"
T = TypeVar("T")


@dataclass
class Live:
    """An app on a fresh, committed database, and bearer tokens of the demo users."""

    app: Flask
    db: Database
    tokens: dict[str, str]

    def user(self, username: str) -> User:
        with self.db.session() as s:
            user = s.scalar(select(User).where(User.username == username))
            assert user is not None
            return user

    def headers(self, username: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[username]}"}

    def verify_chain(self) -> None:
        with self.db.session() as s:
            report = verify_chain(s, KEY.encode())
        assert report.ok, report.problem


@pytest.fixture(scope="module")
def live(
    backend: str, fresh_database_url: Callable[[str], str], tmp_path_factory
) -> Iterator[Live]:
    url = fresh_database_url(backend)
    setup = Database(url, audit_key=KEY.encode())
    try:
        init_database(setup, ("441523",))
        with setup.session() as s:
            users = create_demo_users(s)
            tokens = {name: issue_token(s, users[name]) for name in ("wgy", "ddy", "zbz")}
    finally:
        setup.dispose()
    settings = Settings(
        instance_path=tmp_path_factory.mktemp("instance"),
        database_url=url,
        secret_key="x",
        audit_key=KEY,
    )
    app = create_app(settings)
    app.testing = True
    db: Database = app.extensions["gridgov.db"]
    try:
        yield Live(app, db, tokens)
    finally:
        db.dispose()


def all_at_once(n: int, task: Callable[[int], T]) -> list[T]:
    """Run `task(i)` in n threads released together by a barrier; return the results."""
    barrier = threading.Barrier(n)

    def run(i: int) -> T:
        barrier.wait(timeout=30)
        return task(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def wgy_point(live: Live) -> tuple[float, float]:
    with live.db.session() as s:
        wgy = s.scalar(select(User).where(User.username == "wgy"))
        assert wgy is not None
        grid = s.scalar(
            select(Grid)
            .join(GridSet, GridSet.id == Grid.grid_set_id)
            .where(GridSet.active.is_(True), Grid.code == wgy.grid_codes[0])
        )
        assert grid is not None
        p = grid.geom.representative_point()
        return p.x, p.y


def test_the_same_report_sent_twenty_times_at_once_is_filed_once(live: Live) -> None:
    lng, lat = wgy_point(live)
    body = {
        "matter_code": "0101",
        "urgency": "normal",
        "description": "信号不好，手机重复提交了同一条上报",
        "lng": lng,
        "lat": lat,
        "client_key": uuid.uuid4().hex,
    }

    def send(_: int) -> tuple[int, Any]:
        response = live.app.test_client().post(
            "/api/v1/events", json=body, headers=live.headers("wgy")
        )
        return response.status_code, response.get_json()

    results = all_at_once(20, send)
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 19 + [201], results
    assert len({answer["id"] for _, answer in results}) == 1
    with live.db.session() as s:
        rows = s.scalars(select(Event).where(Event.client_key == body["client_key"])).all()
        assert [e.id for e in rows] == [results[0][1]["id"]]
        reports = s.scalar(
            select(func.count())
            .select_from(EventAction)
            .where(EventAction.event_id == rows[0].id, EventAction.action == "report")
        )
        assert reports == 1
        first = rows[0].code
    # The 19 losers rolled their code-counter increments back: the next code follows on.
    body["client_key"] = uuid.uuid4().hex
    status, answer = send(0)
    with live.db.session() as s:
        following = s.get(Event, answer["id"])
        assert status == 201 and following is not None
        assert int(following.code[-4:]) == int(first[-4:]) + 1, (first, following.code)
    live.verify_chain()


def accepted_county_event(live: Live) -> int:
    """Register a hotline event at the county centre and accept it; return its id."""
    lng, lat = wgy_point(live)
    with live.db.session() as s:
        ddy = s.scalar(select(User).where(User.username == "ddy"))
        assert ddy is not None
        key = uuid.uuid4().hex
        data = ReportInput("0507", "normal", "热线反映：占道经营", lng, lat, key, source="hotline")
        event = report_event(s, ddy, data).event
        perform(s, ddy, event.id, "accept")
        return event.id


@pytest.mark.parametrize("dispatchers", [("ddy", "zbz"), ("ddy", "ddy")], ids="+".join)
def test_two_dispatches_at_once_one_wins_one_conflicts(
    live: Live, dispatchers: tuple[str, str]
) -> None:
    event_id = accepted_county_event(live)
    with live.db.session() as s:
        lead = s.scalar(select(Department.id).where(Department.code == "441523-urban_management"))

    def dispatch(i: int) -> tuple[int, Any]:
        response = live.app.test_client().post(
            f"/api/v1/events/{event_id}/actions/dispatch",
            json={"lead_department_id": lead, "comment": f"第 {i + 1} 位调度员派遣"},
            headers=live.headers(dispatchers[i]),
        )
        return response.status_code, response.get_json()

    results = all_at_once(2, dispatch)
    assert sorted(status for status, _ in results) == [200, 409], results
    [refused] = [body for status, body in results if status == 409]
    assert refused["error"]["code"] in ("state_conflict", "stale_version")
    with live.db.session() as s:
        event = s.get(Event, event_id)
        assert event is not None
        assert (event.state, event.holder_department_id) == ("dispatched", lead)
        [won] = [body for status, body in results if status == 200]
        assert won["version"] == event.version  # the refused dispatch changed nothing
        actions = s.scalars(
            select(EventAction.action).where(EventAction.event_id == event_id)
        ).all()
        assert actions == ["report", "accept", "dispatch"]
        leads = s.scalar(
            select(func.count())
            .select_from(EventAssignment)
            .where(EventAssignment.event_id == event_id, EventAssignment.active.is_(True))
        )
        assert leads == 1
    live.verify_chain()


def test_two_sweeps_at_once_notify_once(live: Live) -> None:
    reported = datetime(2026, 3, 9, 9, 0, tzinfo=SHANGHAI)
    lng, lat = wgy_point(live)
    with live.db.session() as s:
        wgy = s.scalar(select(User).where(User.username == "wgy"))
        assert wgy is not None
        ids = [
            report_event(
                s,
                wgy,
                ReportInput("0101", "normal", "旧事件", lng, lat, uuid.uuid4().hex),
                now=reported,
            ).event.id
            for _ in range(6)
        ]
        notices_before = s.scalar(select(func.count()).select_from(Notice))

    late = datetime(2026, 3, 9, 10, 30, tzinfo=SHANGHAI)  # accept stages due 10:00, all late
    counts = all_at_once(2, lambda _: sla.run_sweep(live.db, late))
    assert sum(c["supervised"] for c in counts) == len(ids), counts
    with live.db.session() as s:
        per_event = dict(
            s.execute(
                select(EventAction.event_id, func.count())
                .where(EventAction.event_id.in_(ids), EventAction.action == "supervise")
                .group_by(EventAction.event_id)
            ).all()
        )
        assert per_event == dict.fromkeys(ids, 1)
        centre_staff = 1  # zzzx, the only operator of 螺溪镇's centre
        notices = s.scalar(select(func.count()).select_from(Notice))
        assert notices - notices_before == len(ids) * centre_staff
    live.verify_chain()


def run_until(task: Periodic, runs: int, timeout_s: float = 60) -> None:
    """Let a background task run `runs` times (or time out), check its thread, stop it."""
    try:
        deadline = time.monotonic() + timeout_s
        while task.runs < runs and time.monotonic() < deadline:
            time.sleep(0.01)
        assert task.thread.is_alive() and task.thread.daemon
    finally:
        task.stop()
    assert not task.thread.is_alive()


def test_the_background_sweeper_survives_errors(
    live: Live, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []
    real_run_sweep = sla.run_sweep

    def flaky(db: Database, now: datetime | None = None) -> dict[str, int]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database went away")
        return real_run_sweep(db, now)

    monkeypatch.setattr(sla, "run_sweep", flaky)
    caplog.set_level(logging.ERROR, logger="gridgov.sla")
    sweeper = sla.start_background_sweeper(live.app, interval_s=0.02, first_delay_s=0)
    run_until(sweeper, 3)
    assert sweeper.runs >= 3 and sweeper.failures == 1
    assert "SLA sweep failed" in caplog.text and "database went away" in caplog.text
    live.verify_chain()


def test_the_cache_warmer_builds_the_map_polygons_in_the_background(live: Live) -> None:
    mapdata.clear_cache()
    warmer = mapdata.start_cache_warmer(live.app, interval_s=0.05, first_delay_s=0)
    run_until(warmer, 2)
    assert warmer.runs >= 2 and warmer.failures == 0
    # Everything is built: a request for any county's polygons at any zoom builds nothing.
    with live.db.session() as session:
        assert mapdata.warm(session) == 0
