"""The KPIs of gridgov.stats against numbers computed by hand, on both backends.

`build_march` drives the real operations (report_event / perform) with explicit times to
make twelve events received in March 2025 (Shanghai time) plus one on each side of it;
the expected values below are literals with their arithmetic.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from factories import png_bytes
from sqlalchemy import Column, and_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import visitors
from sqlplans import sqlite_plans

from gridgov.errors import Forbidden, Unprocessable
from gridgov.eventdata import event_conditions
from gridgov.events import ReportInput, attach_photo, perform, report_event
from gridgov.models import COVERED_COLUMNS, Event, Grid, GridSet, Region, User
from gridgov.photos import PhotoStore
from gridgov.stats import (
    COUNTS,
    DIMENSIONS,
    KPIS,
    RATES,
    Context,
    compute,
    counts_for,
    definitions,
    parse_args,
)
from gridgov.workflow.worktime import SHANGHAI

LUOXI = "441523105"  # 螺溪镇: wgy, zzzx, hwsuo, pcs
HETIAN = "441523100"  # 河田镇: wgy2, zzzx2
MARCH = {"date_from": date(2025, 3, 1), "date_to": date(2025, 3, 31)}
AS_OF = datetime(2025, 4, 1, 8, 0, tzinfo=SHANGHAI)


def at(month: int, day: int, hour: int = 9, minute: int = 0) -> datetime:
    """Return a Shanghai wall-clock instant in 2025."""
    return datetime(2025, month, day, hour, minute, tzinfo=SHANGHAI)


def point_of(session: Session, grid_code: str) -> tuple[float, float]:
    grid = session.query(Grid).filter(Grid.code == grid_code).order_by(Grid.id.desc()).first()
    assert grid is not None
    p = grid.geom.representative_point()
    return p.x, p.y


@dataclass
class March:
    """The events of the scenario, by name."""

    events: dict[str, Event]
    users: dict[str, User]


def build_march(session: Session, users: dict[str, User], store: PhotoStore) -> March:
    """Build the March 2025 scenario through the real operations (see the module docstring)."""
    wgy, wgy2, zzzx, hwsuo, pcs = (users[u] for u in ("wgy", "wgy2", "zzzx", "hwsuo", "pcs"))
    home = point_of(session, wgy.grid_codes[0])
    events: dict[str, Event] = {}

    def report(name: str, when: datetime, matter: str = "0101", by: User = wgy, **kw: Any) -> Event:
        point = kw.pop("point", home)
        result = report_event(
            session,
            by,
            ReportInput(
                matter_code=matter,
                urgency="normal",
                description=f"统计测试事件 {name}",
                lng=point[0],
                lat=point[1],
                client_key=uuid.uuid4().hex,
                source=kw.pop("source", ""),
            ),
            now=when,
        )
        assert result.created
        events[name] = result.event
        return result.event

    def do(user: User, e: Event, action: str, when: datetime, **inputs: Any) -> Event:
        inputs.setdefault("comment", f"测试：{action}")
        return perform(session, user, e.id, action, inputs, now=when)

    def to_handling(e: Event, day: int) -> None:
        do(zzzx, e, "accept", at(3, day, 9, 10))
        do(zzzx, e, "dispatch", at(3, day, 9, 20), lead_department_id=hwsuo.department_id)
        do(hwsuo, e, "sign", at(3, day, 9, 30))

    def finish(e: Event, day: int) -> None:
        do(hwsuo, e, "handle", at(3, day, 10))
        do(wgy, e, "verify_pass", at(3, day, 11))
        do(zzzx, e, "close", at(3, day, 12))

    # E1 closed on time, 满意: reported 3-3 09:00, closed 3-4 12:00 = 27 h.
    e1 = report("E1", at(3, 3))
    to_handling(e1, 3)
    finish(e1, 4)
    do(wgy, e1, "evaluate", at(3, 4, 13), satisfaction="satisfied")
    assert e1.closed_at is not None and e1.closed_at <= e1.due_at

    # E2 closed late, 基本满意: reported 3-5 09:00, closed 3-20 12:00 = 15 × 24 + 3 = 363 h.
    e2 = report("E2", at(3, 5))
    to_handling(e2, 5)
    finish(e2, 20)
    do(zzzx, e2, "evaluate", at(3, 20, 13), satisfaction="basically")
    assert e2.closed_at is not None and e2.closed_at > e2.due_at and e2.overdue

    # E3 open past its deadline (no sweep ran: the flag is still false); returned once by
    # 环卫所, re-dispatched to 派出所.
    e3 = report("E3", at(3, 6), "0202")
    to_handling(e3, 6)
    do(hwsuo, e3, "return", at(3, 6, 10))
    do(zzzx, e3, "dispatch", at(3, 6, 11), lead_department_id=pcs.department_id)
    do(pcs, e3, "sign", at(3, 6, 12))
    assert e3.due_at < AS_OF and not e3.overdue

    # E4 withdrawn by the reporter.
    do(wgy, report("E4", at(3, 7)), "withdraw", at(3, 7, 10))

    # E5 reworked (verify_fail, then pass), closed on time, 不满意: 3-10 09:00 → 3-11 12:00.
    e5 = report("E5", at(3, 10))
    to_handling(e5, 10)
    do(hwsuo, e5, "handle", at(3, 10, 14))
    do(wgy, e5, "verify_fail", at(3, 10, 15))
    finish(e5, 11)
    do(wgy, e5, "evaluate", at(3, 11, 13), satisfaction="unsatisfied")
    assert e5.rework_count == 1 and e5.closed_at is not None and e5.closed_at <= e5.due_at

    # E6 extended (request + approve), closed on time: 3-12 09:00 → 3-13 12:00 = 27 h.
    e6 = report("E6", at(3, 12))
    to_handling(e6, 12)
    do(hwsuo, e6, "request_extension", at(3, 12, 10), days=2)
    do(zzzx, e6, "approve_extension", at(3, 12, 11))
    finish(e6, 13)
    assert e6.extension_count == 1 and e6.closed_at is not None and e6.closed_at <= e6.due_at

    # E7 rejected; reported at the very first instant of the period (3-1 00:00 Shanghai).
    do(zzzx, report("E7", at(3, 1, 0, 0)), "reject", at(3, 3, 9))

    # E8 open, not yet due; reported in the last minute of the period.
    e8 = report("E8", at(3, 31, 23, 59))
    assert e8.due_at > AS_OF

    # E9 a citizen report the town centre registered, voided.
    do(zzzx, report("E9", at(3, 17), "0506", by=zzzx, source="citizen"), "void", at(3, 17, 10))

    # E10 a duplicate of E3, merged into it.
    do(zzzx, report("E10", at(3, 18), "0202"), "merge", at(3, 18, 10), target_event_id=e3.id)

    # E11 self-handled by the grid worker (自办自结), closed: 3-19 09:00 → 12:00 = 3 h.
    e11 = report("E11", at(3, 19), "0501")
    photos = [
        attach_photo(session, wgy, e11.id, png_bytes(), kind, store)[0].id
        for kind in ("before", "after")
    ]
    do(wgy, e11, "self_handle", at(3, 19, 10), attachment_ids=photos)
    do(zzzx, e11, "verify_pass", at(3, 19, 11))
    do(zzzx, e11, "close", at(3, 19, 12))
    assert e11.self_handled and e11.closed_at is not None and e11.closed_at <= e11.due_at

    # E12 in 河田镇 (outside 螺溪镇), open, not yet due.
    e12 = report("E12", at(3, 28), "0102", by=wgy2, point=point_of(session, wgy2.grid_codes[0]))
    assert e12.due_at > AS_OF and e12.town_code == HETIAN

    # Just outside March on either side (Shanghai calendar).
    report("B1", at(2, 28, 23, 59))
    report("B2", at(4, 1, 0, 0))
    return March(events, users)


@pytest.fixture
def march(session: Session, users: dict[str, User], tmp_path: Path) -> March:
    return build_march(session, users, PhotoStore(tmp_path / "photos"))


# Over the county (leader ld), March: E1…E12.
COUNTY_MARCH = {
    "received": 12,  # E1…E12
    "valid": 6,  # accepted: E1 E2 E3 E5 E6; self-handled: E11
    "closed": 5,  # E1 E2 E5 E6 E11
    "closed_on_time": 4,  # E1 E5 E6 E11
    "closed_late": 1,  # E2
    "open": 3,  # E3 E8 E12
    "overdue_open": 1,  # E3
    "overdue": 2,  # E2 + E3
    "due": 6,  # closed 5 + overdue_open 1
    "withdrawn": 1,  # E4
    "rejected": 1,  # E7
    "voided": 1,  # E9
    "merged": 1,  # E10
    "self_handled": 1,  # E11
    "dispatched": 5,  # E1 E2 E3 E5 E6
    "extended": 1,  # E6
    "handled": 5,  # E1 E2 E5 E6 E11
    "handled_by_department": 4,  # E1 E2 E5 E6 (E11 self-handled)
    # Handle stage: 1 working day from dispatch (0101). E1 dispatched Mon 3-3 09:20, handled
    # Tue 10:00 (40 minutes late); E2 handled 3-20 for a 3-6 deadline. E5 (both times) and
    # E6 (extended by 2 days) on time.
    "handled_late": 2,  # E1 E2
    "verified": 5,  # passed: E1 E2 E5 E6 E11 (E5 also failed once)
    "verified_late": 0,  # each verified within the hour after handling
    "reworked": 1,  # E5
    "returns": 1,  # E3 once
    "evaluated": 3,  # E1 E2 E5
    "satisfied": 1,  # E1
    "basically": 1,  # E2
    "unsatisfied": 1,  # E5
    "handling_hours": 447.0,  # 27 + 363 + 27 + 27 + 3
    "closure_rate": 0.4167,  # 5 / 12
    "overdue_rate": 0.1667,  # 2 / 12
    "on_time_rate": 0.8333,  # 1 − 2 / 12
    "due_closure_rate": 0.8333,  # 5 / 6
    "due_on_time_rate": 0.6667,  # 4 / 6
    "rework_rate": 0.2,  # 1 / 5
    "handle_on_time_rate": 0.5,  # 1 − 2 / 4
    "verify_on_time_rate": 1.0,  # 1 − 0 / 5
    "extension_rate": 0.2,  # 1 / 5
    "satisfaction_rate": 0.6667,  # (1 + 1) / 3
    "valid_rate": 0.5,  # 6 / 12
    "avg_handling_hours": 89.4,  # 447 / 5
}


def test_every_kpi_by_hand(session: Session, users: dict[str, User], march: March) -> None:
    result = compute(session, users["ld"], **MARCH, as_of=AS_OF)
    assert result["totals"] == COUNTY_MARCH
    assert result["groups"] == []
    assert set(result["definitions"]) == set(COUNTY_MARCH) == set(KPIS)
    assert result["filter"] == {
        "region": None,
        "jurisdiction": "441523",
        "from": "2025-03-01",
        "to": "2025-03-31",
        "group_by": None,
        "matter": None,
        "source": None,
        "as_of": "2025-04-01T08:00:00+08:00",
    }


def test_town_operator_counts_only_their_town(
    session: Session, users: dict[str, User], march: March
) -> None:
    totals = compute(session, users["zzzx"], **MARCH, as_of=AS_OF)["totals"]
    # Everything but E12 (河田镇).
    expected = COUNTY_MARCH | {
        "received": 11,
        "open": 2,  # E3 E8
        "closure_rate": 0.4545,  # 5 / 11
        "overdue_rate": 0.1818,  # 2 / 11
        "on_time_rate": 0.8182,  # 1 − 2 / 11
        "valid_rate": 0.5455,  # 6 / 11
    }
    assert totals == expected
    hetian = compute(session, users["zzzx2"], **MARCH, as_of=AS_OF)["totals"]
    assert hetian["received"] == 1 and hetian["open"] == 1 and hetian["closure_rate"] == 0.0


def test_region_filter_and_jurisdiction(
    session: Session, users: dict[str, User], march: March
) -> None:
    ld = users["ld"]
    town = compute(session, ld, region=LUOXI, **MARCH, as_of=AS_OF)["totals"]
    assert town == compute(session, users["zzzx"], **MARCH, as_of=AS_OF)["totals"]
    village = march.events["E12"].village_code
    assert compute(session, ld, region=village, **MARCH, as_of=AS_OF)["totals"]["received"] == 1
    grid = march.events["E1"].grid_code
    assert compute(session, ld, region=grid, **MARCH, as_of=AS_OF)["totals"]["received"] == 11
    with pytest.raises(Forbidden):
        compute(session, ld, region="441427", **MARCH)  # 蕉岭县
    with pytest.raises(Forbidden):
        compute(session, users["zzzx"], region="441523", **MARCH)  # wider than 螺溪镇
    with pytest.raises(Forbidden):
        compute(session, users["zzzx"], region=HETIAN, **MARCH)


def test_department_handler_sees_events_of_their_department(
    session: Session, users: dict[str, User], march: March
) -> None:
    totals = compute(session, users["hwsuo"], **MARCH, as_of=AS_OF)["totals"]
    # Assigned to 环卫所 at some point: E1 E2 E3 E5 E6.
    assert totals["received"] == 5
    assert totals["closed"] == 4  # E1 E2 E5 E6
    assert totals["overdue"] == 2  # E2 E3


def test_matter_and_source_filters(session: Session, users: dict[str, User], march: March) -> None:
    ld = users["ld"]
    by_matter = compute(session, ld, matter="0202", **MARCH, as_of=AS_OF)["totals"]
    assert (by_matter["received"], by_matter["merged"], by_matter["overdue"]) == (2, 1, 1)
    category = compute(session, ld, matter="05", **MARCH, as_of=AS_OF)["totals"]
    assert (category["received"], category["voided"], category["self_handled"]) == (2, 1, 1)
    citizen = compute(session, ld, source="citizen", **MARCH, as_of=AS_OF)["totals"]
    assert (citizen["received"], citizen["voided"], citizen["valid_rate"]) == (1, 1, 0.0)


def test_empty_period_has_null_rates(
    session: Session, users: dict[str, User], march: March
) -> None:
    result = compute(
        session, users["ld"], date_from=date(2025, 1, 1), date_to=date(2025, 1, 31), as_of=AS_OF
    )
    totals = result["totals"]
    assert all(totals[c.key] == 0 for c in COUNTS)
    assert all(totals[r.key] is None for r in RATES)
    assert result["groups"] == []
    months = compute(
        session,
        users["ld"],
        date_from=date(2025, 1, 1),
        date_to=date(2025, 1, 31),
        group_by="month",
        as_of=AS_OF,
    )
    assert [(g["key"], g["received"], g["closure_rate"]) for g in months["groups"]] == [
        ("2025-01", 0, None)
    ]


def test_as_of_decides_open_overdue(session: Session, users: dict[str, User], march: March) -> None:
    # On 3-7 E3 (due 3-11 or later) was not yet late; E2 was closed late whenever one looks.
    early = compute(session, users["ld"], **MARCH, as_of=at(3, 7))["totals"]
    assert (early["overdue_open"], early["overdue"], early["due"]) == (0, 1, 5)


def _sums(groups: list[dict[str, Any]]) -> dict[str, float]:
    return {c.key: round(sum(g[c.key] for g in groups), 6) for c in COUNTS}


def test_groups_sum_to_totals(session: Session, users: dict[str, User], march: March) -> None:
    for group_by in DIMENSIONS:
        result = compute(session, users["ld"], **MARCH, group_by=group_by, as_of=AS_OF)
        assert result["totals"] == COUNTY_MARCH, group_by
        sums = _sums(result["groups"])
        assert sums == {c.key: COUNTY_MARCH[c.key] for c in COUNTS}, group_by
        for g in result["groups"]:
            assert set(g) == {"key", "name", *KPIS}, group_by
            assert g["name"], (group_by, g["key"])
        keys = [g["key"] for g in result["groups"]]
        if group_by in ("day", "week", "month"):
            assert keys == sorted(keys), group_by
        else:
            received = [g["received"] for g in result["groups"]]
            assert received == sorted(received, reverse=True), group_by


def _by_key(result: dict[str, Any]) -> dict[Any, dict[str, Any]]:
    return {g["key"]: g for g in result["groups"]}


def test_group_numbers(session: Session, users: dict[str, User], march: March) -> None:
    ld, ev = users["ld"], march.events

    def groups(group_by: str) -> dict[Any, dict[str, Any]]:
        return _by_key(compute(session, ld, **MARCH, group_by=group_by, as_of=AS_OF))

    towns = groups("town")
    assert {k: g["received"] for k, g in towns.items()} == {LUOXI: 11, HETIAN: 1}
    names = dict(session.query(Region.code, Region.name).filter(Region.code.in_(towns)).all())
    assert towns[LUOXI]["name"] == names[LUOXI] == "螺溪镇"

    villages = groups("village")
    assert {k: g["received"] for k, g in villages.items()} == {
        ev["E1"].village_code: 11,
        ev["E12"].village_code: 1,
    }

    sources = groups("source")
    assert {k: (g["received"], g["name"]) for k, g in sources.items()} == {
        "grid_worker": (11, "网格员上报"),
        "citizen": (1, "群众反映"),
    }

    matters = groups("matter")
    # 0101: E1 E2 E4 E5 E6 E7 E8; 0202: E3 E10; 0501: E11; 0506: E9; 0102: E12.
    assert {k: g["received"] for k, g in matters.items()} == {
        "0101": 7,
        "0202": 2,
        "0501": 1,
        "0506": 1,
        "0102": 1,
    }
    assert next(iter(matters)) == "0101" and matters["0101"]["name"] == "邻里纠纷"
    categories = groups("category")
    assert {k: g["received"] for k, g in categories.items()} == {"01": 8, "02": 2, "05": 2}
    assert categories["01"]["name"] == "矛盾纠纷"

    reporters = groups("reporter")
    wgy, wgy2, zzzx = users["wgy"], users["wgy2"], users["zzzx"]
    assert {k: g["received"] for k, g in reporters.items()} == {wgy.id: 10, zzzx.id: 1, wgy2.id: 1}
    mine = reporters[wgy.id]
    assert mine["name"] == wgy.display_name
    # wgy reported E1–E8, E10, E11: valid E1 E2 E3 E5 E6 E11 → 6 / 10.
    assert (mine["valid"], mine["valid_rate"], mine["self_handled"]) == (6, 0.6, 1)

    departments = groups("department")
    hw, pcs = users["hwsuo"].department_id, users["pcs"].department_id
    # Lead: 环卫所 E1 E2 E5 E6; 派出所 E3; never dispatched: E4 E7 E8 E9 E10 E11 E12.
    assert {k: g["received"] for k, g in departments.items()} == {None: 7, hw: 4, pcs: 1}
    assert departments[None]["name"] == "未分拨"
    # The return of E3 is counted against 环卫所, which made it, not 派出所 (now lead).
    assert (departments[hw]["returns"], departments[pcs]["returns"]) == (1, 0)
    # 环卫所: closed E1 E2 E5 E6, late E2 → 按期结案率 3 / 4; reworked E5 of 4 handled.
    hw_row = departments[hw]
    assert (hw_row["due_on_time_rate"], hw_row["rework_rate"], hw_row["extension_rate"]) == (
        0.75,
        0.25,
        0.25,
    )
    assert departments[pcs]["overdue_rate"] == 1.0  # E3


def test_time_buckets_follow_the_shanghai_calendar(
    session: Session, users: dict[str, User], march: March
) -> None:
    ld = users["ld"]
    days = _by_key(compute(session, ld, **MARCH, group_by="day", as_of=AS_OF))
    assert list(days) == [f"2025-03-{d:02d}" for d in range(1, 32)]
    assert days["2025-03-01"]["received"] == 1  # E7 at 00:00 Shanghai (still 2-28 in UTC)
    assert days["2025-03-31"]["received"] == 1  # E8 at 23:59 Shanghai (4-1 in UTC: no)
    assert days["2025-03-02"]["received"] == 0 and days["2025-03-02"]["closure_rate"] is None
    assert days["2025-03-01"]["name"] == "2025年3月1日"

    weeks = _by_key(compute(session, ld, **MARCH, group_by="week", as_of=AS_OF))
    # Weeks start on Monday: 2-24 (holds 3-1, 3-2), 3-3, 3-10, 3-17, 3-24, 3-31.
    assert {k: g["received"] for k, g in weeks.items()} == {
        "2025-02-24": 1,  # E7
        "2025-03-03": 4,  # E1 E2 E3 E4
        "2025-03-10": 2,  # E5 E6
        "2025-03-17": 3,  # E9 E10 E11
        "2025-03-24": 1,  # E12
        "2025-03-31": 1,  # E8
    }

    spring = compute(
        session,
        ld,
        date_from=date(2025, 2, 1),
        date_to=date(2025, 4, 30),
        group_by="month",
        as_of=AS_OF,
    )
    months = [(g["key"], g["name"], g["received"]) for g in spring["groups"]]
    assert months == [
        ("2025-02", "2025年2月", 1),
        ("2025-03", "2025年3月", 12),
        ("2025-04", "2025年4月", 1),
    ]
    assert spring["totals"]["received"] == 14  # B1 + 12 + B2


def test_shelved_clock_is_paused(session: Session, users: dict[str, User], tmp_path: Path) -> None:
    scenario = build_march(session, users, PhotoStore(tmp_path / "photos"))
    zbz = users["zbz"]
    e8 = scenario.events["E8"]  # due early April, reported 3-31 23:59
    perform(session, users["zzzx"], e8.id, "accept", {}, now=at(4, 1, 9))
    perform(session, zbz, e8.id, "shelve", {"comment": "挂账"}, now=at(4, 1, 10))
    e3 = scenario.events["E3"]  # past its deadline since mid-March
    perform(session, zbz, e3.id, "shelve", {"comment": "挂账"}, now=at(4, 1, 10))
    # Long after E8's deadline: E8 was shelved in time (clock paused), E3 was already late.
    totals = compute(session, users["ld"], **MARCH, as_of=at(6, 1))["totals"]
    assert e8.due_at < at(6, 1)
    # Overdue open: E3 (shelved late) + E12 (河田镇, due early April, open); not E8.
    assert totals["overdue_open"] == 2


# Week of Monday 2025-04-07 (no holiday); matter 0101: handle and verify 1 working day each,
# the handle stage from dispatch (Mon 09:20), the verify stage from handling.
# Steps after signing (Mon 09:30): (actor, action, day, hour, minute, inputs).
TIMELINESS = {
    "handled a minute early": (
        [("hwsuo", "handle", 8, 9, 19, {}), ("wgy", "verify_pass", 8, 10, 0, {})],
        (False, False),
    ),
    "handled a minute late": (
        [("hwsuo", "handle", 8, 9, 21, {}), ("wgy", "verify_pass", 8, 10, 0, {})],
        (True, False),
    ),
    "late only without the approved extension": (
        [
            ("hwsuo", "request_extension", 7, 10, 0, {"days": 2}),
            ("zzzx", "approve_extension", 7, 11, 0, {}),
            ("hwsuo", "handle", 10, 9, 0, {}),
            ("wgy", "verify_pass", 10, 10, 0, {}),
        ],
        (False, False),
    ),
    "verified a day and a minute after handling": (
        [("hwsuo", "handle", 8, 9, 0, {}), ("wgy", "verify_pass", 9, 9, 1, {})],
        (False, True),
    ),
    "failed late, reworked and passed in time": (
        [
            ("hwsuo", "handle", 7, 14, 0, {}),
            ("wgy", "verify_fail", 8, 15, 0, {}),
            ("hwsuo", "handle", 9, 9, 0, {}),
            ("wgy", "verify_pass", 9, 10, 0, {}),
        ],
        (False, True),
    ),
}


@pytest.mark.parametrize("case", list(TIMELINESS))
def test_handling_and_verification_timeliness(
    session: Session, users: dict[str, User], case: str
) -> None:
    steps, (handle_late, verify_late) = TIMELINESS[case]
    wgy, zzzx, hwsuo = users["wgy"], users["zzzx"], users["hwsuo"]
    point = point_of(session, wgy.grid_codes[0])
    event = report_event(
        session,
        wgy,
        ReportInput("0101", "normal", "时效测试", point[0], point[1], uuid.uuid4().hex),
        now=at(4, 7, 9, 0),
    ).event
    perform(session, zzzx, event.id, "accept", {}, now=at(4, 7, 9, 10))
    perform(
        session,
        zzzx,
        event.id,
        "dispatch",
        {"lead_department_id": hwsuo.department_id},
        now=at(4, 7, 9, 20),
    )
    perform(session, hwsuo, event.id, "sign", {}, now=at(4, 7, 9, 30))
    for who, action, day, hour, minute, inputs in steps:
        perform(
            session,
            users[who],
            event.id,
            action,
            {"comment": action, **inputs},
            now=at(4, day, hour, minute),
        )
    assert (event.handle_late, event.verify_late) == (handle_late, verify_late)
    april = {"date_from": date(2025, 4, 7), "date_to": date(2025, 4, 7)}
    totals = compute(session, users["ld"], **april, as_of=at(4, 11))["totals"]
    assert (totals["handled_by_department"], totals["verified"]) == (1, 1)
    assert (totals["handled_late"], totals["verified_late"]) == (handle_late, verify_late)
    assert totals["handle_on_time_rate"] == (0.0 if handle_late else 1.0)
    assert totals["verify_on_time_rate"] == (0.0 if verify_late else 1.0)
    by_worker = compute(session, users["ld"], **april, group_by="reporter", as_of=at(4, 11))
    assert [(g["key"], g["verify_on_time_rate"]) for g in by_worker["groups"]] == [
        (wgy.id, 0.0 if verify_late else 1.0)
    ]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"region": "4415"}, "region"),
        ({"region": "44152310x"}, "region"),
        ({"group_by": "county"}, "group_by"),
        ({"source": "wechat"}, "source"),
        ({"matter": "01%"}, "matter"),
        ({"date_from": date(2025, 4, 1), "date_to": date(2025, 3, 1)}, "from"),
        ({"date_from": date(2000, 1, 1), "date_to": date(2025, 3, 1)}, "to"),
    ],
)
def test_bad_filters(
    session: Session, users: dict[str, User], kwargs: dict[str, Any], field: str
) -> None:
    args: dict[str, Any] = dict(MARCH) | kwargs
    with pytest.raises(Unprocessable) as caught:
        compute(session, users["ld"], **args)
    assert caught.value.details["field"] == field


def test_parse_args_defaults_to_the_last_30_days() -> None:
    now = datetime(2025, 3, 31, 17, 0, tzinfo=SHANGHAI)  # 3-31 09:00 UTC
    assert parse_args({}, now) == {
        "region": None,
        "date_from": date(2025, 3, 2),
        "date_to": date(2025, 3, 31),
        "group_by": None,
        "matter": None,
        "source": None,
    }
    after_midnight = datetime(2025, 3, 31, 16, 30, tzinfo=UTC)  # 4-1 00:30 in Shanghai
    assert parse_args({"from": "2025-03-01"}, after_midnight)["date_to"] == date(2025, 4, 1)
    with pytest.raises(Unprocessable):
        parse_args({"to": "31/03/2025"}, now)


def test_definitions_are_complete() -> None:
    defs = definitions()
    assert list(defs) == list(KPIS)
    for key, d in defs.items():
        assert d["name"] and d["definition"] and d["formula"], key
    assert defs["closure_rate"]["name"] == "办结率"
    assert defs["on_time_rate"]["formula"] == "1 - overdue / received"
    for r in RATES:
        assert set(r.numerator) | {r.denominator} <= {c.key for c in COUNTS}


def test_grid_names_for_many_grids(session: Session) -> None:
    # More than one batch of codes (both sample counties, ~1,300 grids) and a code that
    # names no grid: every known grid gets its active set's name, the unknown code none.
    active = dict(
        session.execute(
            select(Grid.code, Grid.name)
            .join(GridSet, GridSet.id == Grid.grid_set_id)
            .where(GridSet.active.is_(True))
        ).all()
    )
    assert len(active) > 1000
    unknown = "441523999999999"
    names = DIMENSIONS["grid"].names(session, [*active, unknown, None])
    assert names == active
    few = sorted(active)[:3]
    assert DIMENSIONS["grid"].names(session, few) == {c: active[c] for c in few}


def _event_columns(expr: Any) -> set[str]:
    return {
        e.name
        for e in visitors.iterate(expr)
        if isinstance(e, Column) and e.table is Event.__table__
    }


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_covering_indexes_hold_every_column_the_numbers_read(dialect: str) -> None:
    ctx = Context(as_of=AS_OF, dialect=dialect)
    read: set[str] = set()
    for c in COUNTS:
        read |= _event_columns(c.aggregate(ctx))
    for dim in DIMENSIONS.values():
        read |= _event_columns(dim.column(ctx))
    read |= _event_columns(and_(*event_conditions(date_from=date(2025, 3, 1), matter="01")))
    assert "satisfaction" in read and "handled_at" in read  # the walk finds columns
    covered = {"county_code", "reported_at", *COVERED_COLUMNS}
    assert read <= covered, f"not covered: {sorted(read - covered)}"


# SQLite only: its planner's choice does not depend on table statistics, while PostgreSQL's
# depends on the row counts (a handful here), so a plan test there could not be trusted.
@pytest.mark.parametrize("backend", ["sqlite"], scope="session")
@pytest.mark.parametrize(
    "who, index", [("ld", "ix_events_county_cover"), ("zzzx", "ix_events_town_cover")]
)
def test_numbers_read_the_covering_index(
    session: Session, users: dict[str, User], backend: str, who: str, index: str
) -> None:
    # The statement stats.compute runs for an area role reads the jurisdiction's covering
    # index alone (the table is never read).
    plans = sqlite_plans(
        session,
        lambda: compute(
            session,
            users[who],
            date_from=date(2025, 1, 1),
            date_to=date(2025, 12, 31),
            group_by="town",
        ),
        "GROUP BY",
    )
    assert len(plans) == 1
    assert f"USING COVERING INDEX {index}" in plans[0], plans[0]


def test_any_subset_of_kpis_gives_the_same_numbers(
    session: Session, users: dict[str, User], march: March
) -> None:
    full = compute(session, users["ld"], **MARCH, group_by="department", as_of=AS_OF)
    for key in KPIS:
        part = compute(
            session, users["ld"], **MARCH, group_by="department", as_of=AS_OF, kpis=[key]
        )
        made_of = {c.key for c in counts_for([key])}
        assert key in part["totals"] and "received" in made_of
        assert set(part["totals"]) <= made_of | set(RATES_BY_KEY), key
        assert part["totals"] == {k: full["totals"][k] for k in part["totals"]}, key
        assert [g["key"] for g in part["groups"]] == [g["key"] for g in full["groups"]]
        for got, want in zip(part["groups"], full["groups"], strict=True):
            assert got == {k: want[k] for k in got}, (key, got["key"])
    assert counts_for(["closure_rate"]) == tuple(
        c for c in COUNTS if c.key in ("received", "closed")
    )
    with pytest.raises(ValueError, match="unknown KPIs"):
        counts_for(["no_such_kpi"])


RATES_BY_KEY = {r.key for r in RATES}
