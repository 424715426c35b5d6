"""Exports (gridgov.exports, /dashboard/export/*): the Excel monthly report is stats.compute;
CSV and GeoJSON hold exactly the events the user may see, streamed in chunks."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from factories import make_event, report
from flask.testing import FlaskClient
from openpyxl import load_workbook
from sqlalchemy import select
from sqlalchemy.orm import Session

from gridgov import exports, stats
from gridgov.access import visible
from gridgov.db import Database, utcnow
from gridgov.errors import Forbidden, Unprocessable
from gridgov.models import Event, EventState, User
from gridgov.photos import PhotoStore
from gridgov.workflow.worktime import SHANGHAI

S = EventState
LUOXI = "441523105"


def at(month_day: tuple[int, int], hour: int = 9) -> datetime:
    return datetime(2025, month_day[0], month_day[1], hour, tzinfo=SHANGHAI)


@pytest.fixture
def events(session: Session, users: dict[str, User], tmp_path: Path) -> dict[str, Event]:
    """Events of March 2025 in 螺溪镇 and 河田镇, two reported at the same instant."""
    store = PhotoStore(tmp_path)
    hetian = users["wgy2"].grid_codes[0]
    made = {
        "closed": make_event(session, users, S.CLOSED, now=at((3, 3)), store=store),
        "handling": make_event(session, users, S.HANDLING, now=at((3, 5)), store=store),
        "withdrawn": make_event(session, users, S.WITHDRAWN, now=at((3, 7))),
        "twin_a": report(session, users, now=at((3, 10))),
        "twin_b": report(session, users, matter="0501", now=at((3, 10))),
        "hetian": report(session, users, reporter="ddy", grid=hetian, now=at((3, 12))),
        "hotline": report(session, users, reporter="ddy", source="hotline", now=at((3, 20))),
        "april": report(session, users, now=at((4, 2))),
        "february": report(session, users, now=at((2, 27))),
    }
    session.flush()
    return made


MARCH = (date(2025, 3, 1), date(2025, 3, 31))
AS_OF = datetime(2025, 4, 1, 8, tzinfo=SHANGHAI)


# -- the monthly report -------------------------------------------------------------------


def _table(ws: Any, header_row: int = 1) -> list[dict[str, Any]]:
    rows = list(ws.iter_rows(values_only=True))
    header = rows[header_row - 1]
    return [dict(zip(header, r, strict=True)) for r in rows[header_row:]]


@pytest.mark.parametrize("username", ["ld", "zzzx"])
def test_monthly_report_numbers_are_stats(
    session: Session, users: dict[str, User], events: dict[str, Event], username: str
) -> None:
    user = users[username]
    body = exports.monthly_report(session, user, date_from=MARCH[0], date_to=MARCH[1], as_of=AS_OF)
    wb = load_workbook(io.BytesIO(body))
    assert wb.sheetnames == ["总体", "按镇街", "按部门", "按事项", "指标定义"]
    args = {"date_from": MARCH[0], "date_to": MARCH[1], "as_of": AS_OF}
    totals = stats.compute(session, user, **args)["totals"]
    assert totals["received"] == (7 if username == "ld" else 6)

    overall = wb["总体"]
    assert "2025年3月 事件办理月报" in overall["A1"].value
    rows = {r["代码"]: r for r in _table(overall, header_row=4)}
    assert set(rows) == set(stats.KPIS)
    for key, value in totals.items():
        assert rows[key]["数值"] == value, key
        assert rows[key]["指标"] == stats.KPIS[key].name

    names = {k.name: k.key for k in stats.KPIS.values()}
    for sheet, dim in (("按镇街", "town"), ("按部门", "department"), ("按事项", "matter")):
        result = stats.compute(session, user, group_by=dim, **args)
        table = _table(wb[sheet])
        groups, total_row = table[:-1], table[-1]
        assert len(groups) == len(result["groups"])
        for rank, (row, group) in enumerate(zip(groups, result["groups"], strict=True), 1):
            assert row["排名"] == rank
            assert (row["代码"] or "") == ("" if group["key"] is None else str(group["key"]))
            values = {names[h]: v for h, v in row.items() if h in names}
            assert values == {k: group[k] for k in stats.KPIS}, (sheet, group["key"])
        totals_in_sheet = {names[h]: v for h, v in total_row.items() if h in names}
        assert totals_in_sheet == result["totals"]

    definitions = {r["代码"]: r for r in _table(wb["指标定义"])}
    for key, d in stats.definitions().items():
        assert definitions[key]["定义"] == d["definition"]
        assert definitions[key]["公式"] == d["formula"]


def test_report_rates_are_formatted_as_percent(
    session: Session, users: dict[str, User], events: dict[str, Event]
) -> None:
    body = exports.monthly_report(
        session, users["ld"], date_from=MARCH[0], date_to=MARCH[1], as_of=AS_OF
    )
    ws = load_workbook(io.BytesIO(body))["总体"]
    formats = {row[1].value: row[2].number_format for row in ws.iter_rows(min_row=5)}
    assert formats["closure_rate"] == "0.00%"
    assert formats["received"] == "0"
    assert formats["avg_handling_hours"] == "0.00"


def test_parse_month() -> None:
    assert exports.parse_month("2025-02", date(2026, 1, 1)) == (date(2025, 2, 1), date(2025, 2, 28))
    assert exports.parse_month(None, date(2024, 2, 10)) == (date(2024, 2, 1), date(2024, 2, 29))
    with pytest.raises(Unprocessable):
        exports.parse_month("2025-13", date(2026, 1, 1))


# -- CSV and GeoJSON ----------------------------------------------------------------------


def _visible_ids(session: Session, user: User, flt: exports.ExportFilter) -> set[int]:
    return set(session.scalars(select(Event.id).where(*flt.where(user))))


def _csv_rows(text: str) -> list[dict[str, str]]:
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text[1:])))


@pytest.mark.parametrize("username", ["ld", "zzzx", "zzzx2"])
def test_csv_and_geojson_hold_exactly_the_visible_events(
    db: Database,
    session: Session,
    users: dict[str, User],
    events: dict[str, Event],
    username: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(exports, "CHUNK", 2)  # several chunks, and a tie on reported_at
    user = users[username]
    flt = exports.ExportFilter(date_from=MARCH[0], date_to=MARCH[1])
    expected = _visible_ids(session, user, flt)
    in_march = {
        e.id
        for name, e in events.items()
        if name not in ("april", "february")
        and session.scalar(select(Event.id).where(Event.id == e.id, visible(user)))
    }
    assert expected == in_march and expected

    rows = _csv_rows("".join(exports.events_csv(db.sessions, user, flt, AS_OF)))
    assert sorted(int(r["编号"]) for r in rows) == sorted(expected)
    assert list(rows[0]) == [label for _, label in exports.COLUMNS]
    by_id = {int(r["编号"]): r for r in rows}
    closed = events["closed"]
    if closed.id in by_id:
        row = by_id[closed.id]
        assert row["事件编号"] == closed.code and row["状态"] == "已办结"
        assert row["镇（街道）"] == "螺溪镇" and row["逾期"] == "否"
        assert float(row["经度（WGS84）"]) == closed.lng

    collection = json.loads("".join(exports.events_geojson(db.sessions, user, flt, AS_OF)))
    assert collection["type"] == "FeatureCollection"
    assert sorted(f["id"] for f in collection["features"]) == sorted(expected)
    for f in collection["features"]:
        e = session.get(Event, f["id"])
        assert e is not None
        assert f["geometry"]["coordinates"] == [e.lng, e.lat]
        assert f["properties"]["code"] == e.code


def test_export_filter_by_state_region_and_the_late_flag(
    db: Database, session: Session, users: dict[str, User], events: dict[str, Event]
) -> None:
    ld = users["ld"]
    flt = exports.ExportFilter(date_from=MARCH[0], date_to=MARCH[1], states=("reported",))
    rows = _csv_rows("".join(exports.events_csv(db.sessions, ld, flt, AS_OF)))
    assert {int(r["编号"]) for r in rows} == {
        events[n].id for n in ("twin_a", "twin_b", "hetian", "hotline")
    }
    # On 2025-04-01 the early March reports still open are past their deadline: 逾期.
    late = {r["事件编号"] for r in rows if r["逾期"] == "是"}
    assert events["twin_a"].code in late
    flt = exports.ExportFilter(date_from=MARCH[0], date_to=MARCH[1], region="441523100")
    rows = _csv_rows("".join(exports.events_csv(db.sessions, ld, flt, AS_OF)))
    assert [int(r["编号"]) for r in rows] == [events["hetian"].id]


def test_export_filter_from_args_checks_the_jurisdiction(users: dict[str, User]) -> None:
    now = utcnow()
    with pytest.raises(Forbidden):
        exports.ExportFilter.from_args(users["zzzx"], {"region": "441523100"}, now)
    with pytest.raises(Unprocessable):
        exports.ExportFilter.from_args(users["ld"], {"state": "lost"}, now)
    flt = exports.ExportFilter.from_args(
        users["ld"], {"from": "2025-03-01", "to": "2025-03-31", "state": "closed"}, now
    )
    assert flt.states == ("closed",) and flt.date_from == date(2025, 3, 1)


# -- over HTTP ----------------------------------------------------------------------------


def sign_in(client: FlaskClient, user: User) -> None:
    with client.session_transaction() as s:
        s.update(user_id=user.id, seen=int(time.time()), csrf_token="t")


def test_download_endpoints(
    client: FlaskClient, session: Session, users: dict[str, User], events: dict[str, Event]
) -> None:
    sign_in(client, users["zzzx"])
    params = {"from": "2025-03-01", "to": "2025-03-31"}
    with client.get("/dashboard/export/events.csv", query_string=params) as response:
        assert response.status_code == 200
        assert response.mimetype == "text/csv"
        assert "attachment" in response.headers["Content-Disposition"]
        ids = {int(r["编号"]) for r in _csv_rows(response.get_data(as_text=True))}
    flt = exports.ExportFilter(date_from=MARCH[0], date_to=MARCH[1])
    assert ids == _visible_ids(session, users["zzzx"], flt)
    assert events["hetian"].id not in ids
    with client.get("/dashboard/export/events.geojson", query_string=params) as response:
        assert response.mimetype == "application/geo+json"
        assert {f["id"] for f in json.loads(response.get_data(as_text=True))["features"]} == ids
    with client.get("/dashboard/export/report.xlsx", query_string={"month": "2025-03"}) as r:
        assert r.status_code == 200
        wb = load_workbook(io.BytesIO(r.get_data()))
        rows = {row["代码"]: row for row in _table(wb["总体"], header_row=4)}
        assert rows["received"]["数值"] == 6
    refused = client.get("/dashboard/export/events.csv", query_string={"region": "441523100"})
    assert refused.status_code == 403
    bad = client.get("/dashboard/export/report.xlsx", query_string={"month": "March"})
    assert bad.status_code == 422


@pytest.mark.parametrize("username", ["wgy", "hwsuo", "xtgly", "sjgly"])
def test_downloads_are_for_centres_and_leaders(
    client: FlaskClient, users: dict[str, User], username: str
) -> None:
    sign_in(client, users[username])
    for path in ("events.csv", "events.geojson", "report.xlsx"):
        assert client.get(f"/dashboard/export/{path}").status_code == 403


def test_long_periods_stream_in_chunks(
    db: Database,
    session: Session,
    users: dict[str, User],
    events: dict[str, Event],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(exports, "CHUNK", 3)
    flt = exports.ExportFilter(date_from=date(2025, 1, 1), date_to=date(2025, 12, 31))
    chunks = list(exports.events_csv(db.sessions, users["ld"], flt, AS_OF))
    assert len(chunks) >= 3  # header, then one chunk per three rows
    assert sum(c.count("\r\n") for c in chunks) == len(events) + 1
