"""Working time: holiday table, deadlines, elapsed time, pauses and traffic lights."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta

import chinese_calendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from gridgov import calendar_store
from gridgov.db import Base
from gridgov.models import CalendarDay, CalendarYear, TimeUnit  # registers every table
from gridgov.workflow.worktime import SHANGHAI, WorkCalendar

H, WH, WD = TimeUnit.HOURS, TimeUnit.WORKING_HOURS, TimeUnit.WORKING_DAYS

PLAIN = WorkCalendar()
"""Monday–Friday, Guangdong office hours. 2026-03-09 is a Monday; March 2026 has no holiday."""


def package_calendar(year: int) -> WorkCalendar:
    """Return a calendar built straight from chinese-calendar's schedule of ``year``."""
    schedule = calendar_store.package_schedule(year)
    assert schedule is not None
    return WorkCalendar({day: workday for day, (workday, _) in schedule.items()}, {year})


CAL_2026 = package_calendar(2026)


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    """Return an aware Shanghai datetime."""
    return datetime(year, month, day, hour, minute, second, tzinfo=SHANGHAI)


@pytest.fixture
def session() -> Iterator[Session]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        yield session
    engine.dispose()


def days_of(session: Session, start: date, end: date) -> dict[date, tuple[bool, str]]:
    rows = session.execute(
        select(CalendarDay).where(CalendarDay.day >= start, CalendarDay.day <= end)
    ).scalars()
    return {row.day: (row.is_workday, row.name) for row in rows}


# ----------------------------------------------------------------- 2026 National Day


def test_chinese_calendar_2026_national_day_is_what_we_assume() -> None:
    off = [date(2026, 10, d) for d in range(1, 8)]
    assert all(chinese_calendar.is_holiday(d) for d in off)
    assert chinese_calendar.is_workday(date(2026, 10, 8))  # not 10/1–10/8: 10/8 is worked
    assert chinese_calendar.is_workday(date(2026, 10, 10))  # Saturday, 调休
    assert chinese_calendar.is_workday(date(2026, 9, 20))  # Sunday, 调休
    assert chinese_calendar.is_holiday(date(2026, 9, 25))  # Mid-Autumn, Friday


def test_seed_stores_only_deviations_with_chinese_names(session: Session) -> None:
    calendar_store.seed_from_chinese_calendar(session, years=[2026])
    stored = days_of(session, date(2026, 9, 1), date(2026, 10, 31))
    assert stored == {
        date(2026, 9, 20): (True, "国庆节"),
        date(2026, 9, 25): (False, "中秋节"),
        date(2026, 10, 1): (False, "国庆节"),
        date(2026, 10, 2): (False, "国庆节"),
        date(2026, 10, 5): (False, "国庆节"),
        date(2026, 10, 6): (False, "国庆节"),
        date(2026, 10, 7): (False, "国庆节"),
        date(2026, 10, 10): (True, "国庆节"),
    }
    names = {name for _, name in days_of(session, date(2026, 1, 1), date(2026, 12, 31)).values()}
    assert names == {"元旦", "春节", "清明节", "劳动节", "端午节", "中秋节", "国庆节"}
    year = session.get(CalendarYear, 2026)
    assert year is not None and year.source == "chinese_calendar"


@pytest.mark.parametrize(
    ("day", "workday"),
    [
        (date(2026, 9, 19), False),  # Saturday
        (date(2026, 9, 20), True),  # Sunday worked for National Day
        (date(2026, 9, 25), False),  # Mid-Autumn (Friday)
        (date(2026, 9, 30), True),
        (date(2026, 10, 1), False),
        (date(2026, 10, 5), False),  # Monday inside the holiday
        (date(2026, 10, 7), False),
        (date(2026, 10, 8), True),
        (date(2026, 10, 10), True),  # Saturday worked for National Day
        (date(2026, 10, 11), False),
    ],
)
def test_2026_workdays(session: Session, day: date, workday: bool) -> None:
    calendar_store.seed_from_chinese_calendar(session)
    calendar = calendar_store.load_calendar(session)
    assert calendar.is_workday(day) is workday
    assert calendar.is_workday(day) is chinese_calendar.is_workday(day)


@pytest.mark.parametrize(
    ("start", "amount", "unit", "deadline"),
    [
        # Wednesday before the holiday: 10/8, 10/9, then Saturday 10/10 (调休).
        (at(2026, 9, 30, 16), 3, WD, at(2026, 10, 10, 16)),
        (at(2026, 9, 30, 16), 1, WD, at(2026, 10, 8, 16)),
        (at(2026, 10, 9, 10), 1, WD, at(2026, 10, 10, 10)),
        (at(2026, 10, 9, 10), 2, WD, at(2026, 10, 12, 10)),  # Sunday 10/11 is off
        (at(2026, 10, 3, 10), 1, WD, at(2026, 10, 9, 8, 30)),  # reported in the holiday
        (at(2026, 9, 18, 16), 1, WD, at(2026, 9, 20, 16)),  # Friday → Sunday 调休
        (at(2026, 9, 24, 16), 1, WD, at(2026, 9, 28, 16)),  # Mid-Autumn Friday skipped
        (at(2026, 9, 30, 16), 2, WH, at(2026, 10, 8, 9)),  # 1.5 h + 0.5 h after the holiday
        (at(2026, 9, 30, 16), 72, H, at(2026, 10, 3, 16)),  # natural hours ignore it
    ],
)
def test_2026_national_day_deadlines(
    session: Session, start: datetime, amount: int, unit: TimeUnit, deadline: datetime
) -> None:
    calendar_store.seed_from_chinese_calendar(session)
    calendar = calendar_store.load_calendar(session)
    assert calendar.add(start, amount, unit) == deadline
    assert calendar.elapsed(start, deadline, unit) == amount


# ----------------------------------------------------------------- 2027, entered by an admin

SPRING_2027 = [(date(2027, 2, 6), date(2027, 2, 13), "春节")]
MAKE_UP_2027 = [date(2027, 2, 14)]


def test_2027_falls_back_to_monday_to_friday_until_entered(session: Session) -> None:
    calendar_store.seed_from_chinese_calendar(session)
    before = calendar_store.load_calendar(session)
    assert before.unknown_years(date(2026, 12, 1), date(2027, 3, 1)) == [2027]
    assert not before.year_known(2027) and before.year_known(2026)
    assert before.schedule_warnings(date(2027, 2, 1), date(2027, 2, 1)) == [
        "2027 年的节假日安排尚未录入，暂按周一至周五为工作日计算"
    ]
    assert before.is_workday(date(2027, 2, 8)) and not before.is_workday(date(2027, 2, 14))
    assert before.add(at(2027, 2, 5, 16), 3, WD) == at(2027, 2, 10, 16)

    calendar_store.enter_year(session, 2027, SPRING_2027, MAKE_UP_2027, note="测试安排")
    after = calendar_store.load_calendar(session)
    assert after.unknown_years(date(2026, 12, 1), date(2027, 3, 1)) == []
    assert after.schedule_warnings(date(2027, 1, 1), date(2027, 12, 31)) == []
    assert not after.is_workday(date(2027, 2, 8)) and after.is_workday(date(2027, 2, 14))
    # Friday 2/5 16:00: Sunday 2/14 (调休), Monday 2/15, Tuesday 2/16.
    assert after.add(at(2027, 2, 5, 16), 3, WD) == at(2027, 2, 16, 16)
    assert after.add(at(2027, 2, 5, 16), 2, WH) == at(2027, 2, 14, 9)
    year = session.get(CalendarYear, 2027)
    assert year is not None and (year.source, year.note) == ("admin", "测试安排")
    assert days_of(session, date(2027, 2, 1), date(2027, 2, 28)) == {
        **{date(2027, 2, d): (False, "春节") for d in (8, 9, 10, 11, 12)},
        date(2027, 2, 14): (True, "春节"),
    }


def test_enter_year_replaces_the_year(session: Session) -> None:
    calendar_store.enter_year(session, 2027, SPRING_2027, MAKE_UP_2027)
    calendar_store.enter_year(
        session, 2027, [(date(2027, 1, 1), date(2027, 1, 1), "元旦")], [], note="改正"
    )
    assert days_of(session, date(2027, 1, 1), date(2027, 12, 31)) == {
        date(2027, 1, 1): (False, "元旦")
    }
    assert calendar_store.load_calendar(session).is_workday(date(2027, 2, 8))


@pytest.mark.parametrize(
    ("holidays", "workdays", "message"),
    [
        ([(date(2026, 12, 31), date(2027, 1, 1), "元旦")], [], "不在 2027 年内"),
        ([(date(2027, 2, 13), date(2027, 2, 6), "春节")], [], "晚于结束日期"),
        ([(date(2027, 2, 6), date(2027, 2, 13), " ")], [], "缺少名称"),
        (SPRING_2027, [date(2028, 1, 1)], "不在 2027 年内"),
        (SPRING_2027, [date(2027, 2, 13)], "不能既是节假日"),
        (SPRING_2027, [date(2027, 2, 15)], "本来就是工作日"),
        ([*SPRING_2027, (date(2027, 2, 12), date(2027, 2, 15), "补假")], [], "重复"),
    ],
)
def test_enter_year_validates(
    session: Session,
    holidays: list[tuple[date, date, str]],
    workdays: list[date],
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        calendar_store.enter_year(session, 2027, holidays, workdays)
    assert session.execute(select(CalendarDay)).first() is None
    assert session.get(CalendarYear, 2027) is None


def test_seeding_twice_changes_nothing(session: Session) -> None:
    first = calendar_store.seed_from_chinese_calendar(session)
    snapshot = days_of(session, date(2004, 1, 1), date(2026, 12, 31))
    assert first == len(snapshot) > 500
    assert calendar_store.seed_from_chinese_calendar(session) == 0
    assert days_of(session, date(2004, 1, 1), date(2026, 12, 31)) == snapshot
    years = session.execute(select(CalendarYear.year)).scalars().all()
    assert sorted(years) == list(range(2004, 2027))  # 2027 is not in the package: skipped

    session.delete(session.get(CalendarDay, date(2026, 10, 1)))
    session.flush()
    assert calendar_store.seed_from_chinese_calendar(session, years=[2026]) == 1
    assert days_of(session, date(2004, 1, 1), date(2026, 12, 31)) == snapshot


def test_seeding_leaves_admin_years_alone(session: Session) -> None:
    calendar_store.seed_from_chinese_calendar(session)
    national_day = [(date(2026, 10, 1), date(2026, 10, 8), "国庆节、中秋节")]
    calendar_store.enter_year(session, 2026, national_day, [date(2026, 10, 10)], note="管理员")
    entered = days_of(session, date(2026, 1, 1), date(2026, 12, 31))
    assert calendar_store.seed_from_chinese_calendar(session) == 0
    assert days_of(session, date(2026, 1, 1), date(2026, 12, 31)) == entered
    year = session.get(CalendarYear, 2026)
    assert year is not None and (year.source, year.note) == ("admin", "管理员")
    assert not calendar_store.load_calendar(session).is_workday(date(2026, 10, 8))


# ----------------------------------------------------------------- office hours


@pytest.mark.parametrize(
    ("start", "hours", "deadline"),
    [
        (at(2026, 3, 9, 9), 1, at(2026, 3, 9, 10)),
        (at(2026, 3, 9, 8, 30), 3.5, at(2026, 3, 9, 12)),  # ends at noon, not 14:00
        (at(2026, 3, 9, 11), 2, at(2026, 3, 9, 15)),  # across lunch
        (at(2026, 3, 9, 12, 30), 1, at(2026, 3, 9, 15)),  # reported at lunch
        (at(2026, 3, 9, 6), 1, at(2026, 3, 9, 9, 30)),  # before opening
        (at(2026, 3, 9, 17), 1, at(2026, 3, 10, 9)),  # across a night
        (at(2026, 3, 9, 20), 1, at(2026, 3, 10, 9, 30)),
        (at(2026, 3, 9, 8, 30), 7, at(2026, 3, 9, 17, 30)),
        (at(2026, 3, 9, 8, 30), 7.5, at(2026, 3, 10, 9)),
        (at(2026, 3, 13, 17), 1, at(2026, 3, 16, 9)),  # across a weekend
        (at(2026, 3, 14, 10), 1, at(2026, 3, 16, 9, 30)),  # reported on Saturday
        (at(2026, 3, 9, 10, 15, 30), 0.25, at(2026, 3, 9, 10, 30, 30)),
        (at(2026, 3, 9, 20), 0, at(2026, 3, 9, 20)),
    ],
)
def test_working_hours(start: datetime, hours: float, deadline: datetime) -> None:
    assert PLAIN.add(start, hours, WH) == deadline
    assert PLAIN.elapsed(start, deadline, WH) == hours


@pytest.mark.parametrize(
    ("start", "days", "deadline"),
    [
        (at(2026, 3, 13, 16), 1, at(2026, 3, 16, 16)),  # Friday → Monday, same clock
        (at(2026, 3, 14, 10), 1, at(2026, 3, 17, 8, 30)),  # Saturday → Monday 08:30 + 1
        (at(2026, 3, 13, 12), 1, at(2026, 3, 16, 14)),  # a closing time is outside office
        (at(2026, 3, 13, 17, 30), 1, at(2026, 3, 17, 8, 30)),
        (at(2026, 3, 9, 7), 1, at(2026, 3, 10, 8, 30)),
        (at(2026, 3, 9, 9), 5, at(2026, 3, 16, 9)),
        (at(2026, 3, 9, 9), 15, at(2026, 3, 30, 9)),
        (at(2026, 3, 13, 16), 0.5, at(2026, 3, 16, 10, 30)),  # 3.5 working hours
        (at(2026, 3, 14, 10), 0, at(2026, 3, 16, 8, 30)),
    ],
)
def test_working_days(start: datetime, days: float, deadline: datetime) -> None:
    assert PLAIN.add(start, days, WD) == deadline
    assert PLAIN.elapsed(start, deadline, WD) == days


def test_natural_hours_ignore_holidays_and_time_zones_convert() -> None:
    assert CAL_2026.add(at(2026, 10, 1, 9), 24, H) == at(2026, 10, 2, 9)
    assert CAL_2026.add(at(2026, 10, 1, 9), 1.5, "hours") == at(2026, 10, 1, 10, 30)
    utc = datetime(2026, 3, 9, 0, 30, tzinfo=UTC)  # 08:30 in Shanghai
    assert PLAIN.add(utc, 1, WH) == at(2026, 3, 9, 9, 30)
    assert PLAIN.add(utc, 1, WH).tzinfo is SHANGHAI
    naive = datetime(2026, 3, 9, 8, 30)  # taken as Shanghai local time
    assert PLAIN.add(naive, 1, WH) == at(2026, 3, 9, 9, 30)
    assert PLAIN.elapsed(utc, naive, H) == 0
    assert PLAIN.is_workday(datetime(2026, 3, 13, 17, tzinfo=UTC)) is False  # Saturday 01:00


def test_elapsed_is_signed_and_remaining_goes_negative() -> None:
    assert PLAIN.elapsed(at(2026, 3, 13, 16), at(2026, 3, 16, 10), WH) == 3
    assert PLAIN.elapsed(at(2026, 3, 16, 10), at(2026, 3, 13, 16), WH) == -3
    deadline = at(2026, 3, 16, 16)
    assert PLAIN.remaining(deadline, at(2026, 3, 16, 14), WH) == 2
    assert PLAIN.remaining(deadline, at(2026, 3, 17, 9), WH) == -2
    assert PLAIN.remaining(deadline, at(2026, 3, 13, 16), WD) == 1


def test_long_limits_do_not_step_minute_by_minute() -> None:
    assert PLAIN.add(at(2026, 3, 9, 9), 7 * 5 * 52 * 10, WH) == at(2036, 2, 25, 9)
    assert PLAIN.elapsed(at(2026, 3, 9, 9), at(2036, 2, 25, 9), WD) == 5 * 52 * 10


@pytest.mark.parametrize(
    "office_hours",
    [(), ((time(9), time(9)),), ((time(14), time(17)), (time(8), time(12)))],
)
def test_bad_office_hours_are_rejected(office_hours: tuple[tuple[time, time], ...]) -> None:
    with pytest.raises(ValueError):
        WorkCalendar(office_hours=office_hours)


def test_other_office_hours_and_bad_input() -> None:
    nine_to_five = WorkCalendar(office_hours=[(time(9), time(17))])
    assert nine_to_five.hours_per_day == 8
    assert nine_to_five.add(at(2026, 3, 13, 16), 2, WH) == at(2026, 3, 16, 10)
    assert PLAIN.hours_per_day == 7
    with pytest.raises(ValueError):
        PLAIN.add(at(2026, 3, 9, 9), -1, WH)
    with pytest.raises(ValueError):
        PLAIN.add(at(2026, 3, 9, 9), 1, "minutes")
    with pytest.raises(TypeError):
        PLAIN.add(date(2026, 3, 9), 1, WH)  # type: ignore[arg-type]


# ----------------------------------------------------------------- pauses (挂账)


@pytest.mark.parametrize(
    ("unit", "paused_from", "paused_to", "shifted"),
    [
        (WH, at(2026, 3, 10, 10), at(2026, 3, 11, 10), at(2026, 3, 18, 16)),  # 7 wh
        (WH, at(2026, 3, 14, 9), at(2026, 3, 15, 18), at(2026, 3, 17, 16)),  # weekend: none
        (WH, at(2026, 3, 10, 12), at(2026, 3, 10, 14), at(2026, 3, 17, 16)),  # lunch: none
        (WD, at(2026, 3, 10, 10), at(2026, 3, 12, 10), at(2026, 3, 19, 16)),
        (H, at(2026, 3, 14, 9), at(2026, 3, 16, 9), at(2026, 3, 19, 16)),  # 48 natural h
    ],
)
def test_shift_extends_by_the_paused_time(
    unit: TimeUnit, paused_from: datetime, paused_to: datetime, shifted: datetime
) -> None:
    assert PLAIN.shift(at(2026, 3, 17, 16), paused_from, paused_to, unit) == shifted


def test_shift_rejects_a_pause_that_ends_before_it_starts() -> None:
    with pytest.raises(ValueError):
        PLAIN.shift(at(2026, 3, 17, 16), at(2026, 3, 11, 10), at(2026, 3, 10, 10), WH)


# ----------------------------------------------------------------- traffic light


@pytest.mark.parametrize(
    ("used", "light"),
    [(0, "green"), (79, "green"), (80, "green"), (81, "yellow"), (100, "yellow"), (101, "red")],
)
def test_traffic_light_natural_hours(used: int, light: str) -> None:
    started = at(2026, 10, 1, 9)
    deadline = CAL_2026.add(started, 100, H)
    now = started + timedelta(hours=used)
    assert CAL_2026.traffic_light(started, deadline, now, H) == light


@pytest.mark.parametrize(
    ("used", "light"),
    [(7.9, "green"), (8, "green"), (8.1, "yellow"), (10, "yellow"), (10.1, "red")],
)
def test_traffic_light_working_hours(used: float, light: str) -> None:
    started = at(2026, 3, 13, 8, 30)  # Friday; 10 working hours → Monday 11:30
    deadline = PLAIN.add(started, 10, WH)
    assert deadline == at(2026, 3, 16, 11, 30)
    now = PLAIN.add(started, used, WH)
    assert PLAIN.traffic_light(started, deadline, now, WH) == light


@pytest.mark.parametrize(
    ("now", "light"),
    [
        (at(2026, 3, 14, 12), "green"),  # weekend after 7 of 10 hours: 70 % used
        (at(2026, 3, 16, 8, 0), "green"),
        (at(2026, 3, 16, 9, 30), "green"),  # 80 % exactly
        (at(2026, 3, 16, 9, 31), "yellow"),
        (at(2026, 3, 16, 11, 30), "yellow"),  # at the deadline
        (at(2026, 3, 16, 12, 30), "red"),  # past it, though no working time passed
        (at(2026, 3, 13, 8), "green"),  # before the start
    ],
)
def test_traffic_light_measures_working_time(now: datetime, light: str) -> None:
    started, deadline = at(2026, 3, 13, 8, 30), at(2026, 3, 16, 11, 30)
    assert PLAIN.traffic_light(started, deadline, now, WH) == light


@pytest.mark.parametrize(
    ("now", "light"),
    [
        (at(2026, 9, 30, 16), "green"),
        (at(2026, 10, 7, 16), "green"),  # holiday: 1.5 of 7 h used
        (at(2026, 10, 8, 13), "green"),  # 1.5 + 3.5 = 5 h: 71 %
        (at(2026, 10, 8, 14, 36), "green"),  # 5.6 h: 80 %
        (at(2026, 10, 8, 14, 37), "yellow"),
        (at(2026, 10, 8, 16, 1), "red"),
    ],
)
def test_traffic_light_working_days_across_the_holiday(now: datetime, light: str) -> None:
    started = at(2026, 9, 30, 16)
    deadline = CAL_2026.add(started, 1, WD)
    assert deadline == at(2026, 10, 8, 16)
    assert CAL_2026.traffic_light(started, deadline, now, WD) == light


# ----------------------------------------------------------------- properties

moments = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 20)).map(
    lambda moment: moment.replace(tzinfo=SHANGHAI)
)
minutes = st.integers(min_value=0, max_value=60 * 7 * 40)


@settings(database=None, deadline=None)
@given(start=moments, amount=minutes)
def test_elapsed_inverts_add_in_working_hours(start: datetime, amount: int) -> None:
    hours = amount / 60
    deadline = CAL_2026.add(start, hours, WH)
    assert deadline >= start
    assert CAL_2026.elapsed(start, deadline, WH) == hours


@settings(database=None, deadline=None)
@given(start=moments, amount=st.floats(min_value=0, max_value=300))
def test_elapsed_inverts_add_for_any_amount(start: datetime, amount: float) -> None:
    for unit in (H, WH):
        assert CAL_2026.elapsed(start, CAL_2026.add(start, amount, unit), unit) == pytest.approx(
            amount, abs=1e-9
        )
    days = amount / 7
    assert CAL_2026.elapsed(start, CAL_2026.add(start, days, WD), WD) == pytest.approx(
        days, abs=1e-9
    )


@settings(database=None, deadline=None)
@given(start=moments, first=minutes, second=minutes)
def test_adding_working_hours_in_two_steps_is_adding_once(
    start: datetime, first: int, second: int
) -> None:
    halfway = CAL_2026.add(start, first / 60, WH)
    assert CAL_2026.add(halfway, second / 60, WH) == CAL_2026.add(start, (first + second) / 60, WH)


@settings(database=None, deadline=None, max_examples=40)
@given(
    start=moments.map(lambda m: m.replace(second=0, microsecond=0)),
    span=st.integers(min_value=0, max_value=60 * 24 * 6),
)
def test_elapsed_working_hours_counts_office_minutes(start: datetime, span: int) -> None:
    def in_office(moment: datetime) -> bool:
        clock = moment.time()
        return CAL_2026.is_workday(moment.date()) and (
            time(8, 30) <= clock < time(12) or time(14) <= clock < time(17, 30)
        )

    counted = sum(in_office(start + timedelta(minutes=i)) for i in range(span))
    elapsed = CAL_2026.elapsed(start, start + timedelta(minutes=span), WH)
    assert elapsed == pytest.approx(counted / 60, abs=1e-12)
