"""The holiday table in the database: seeded from chinese-calendar, extended by administrators.

Only dates that differ from the Monday–Friday rule are stored (``CalendarDay``): holidays that
fall on a weekday (``is_workday=False``) and 调休 make-up workdays on a weekend
(``is_workday=True``), each named after its festival in Chinese. ``CalendarYear`` lists the years
whose official schedule has been entered; ``source`` says by whom. chinese-calendar 1.11.0 knows
2004–2026; later years come from administrators (the State Council publishes each next year's
schedule around November). Seeding never touches a year an administrator entered.

Functions flush, never commit: the caller commits once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from importlib.metadata import version

import chinese_calendar
from sqlalchemy import select
from sqlalchemy.orm import Session

from gridgov.models.calendar import CalendarDay, CalendarYear
from gridgov.workflow.worktime import GUANGDONG_OFFICE_HOURS, WorkCalendar

SEED_SOURCE = "chinese_calendar"
ADMIN_SOURCE = "admin"
MAKE_UP_NAME = "调休上班"
"""Name of a make-up workday when no holiday of the year is entered to name it after."""

HOLIDAY_NAMES = {
    chinese_calendar.Holiday.new_years_day: "元旦",
    chinese_calendar.Holiday.spring_festival: "春节",
    chinese_calendar.Holiday.tomb_sweeping_day: "清明节",
    chinese_calendar.Holiday.labour_day: "劳动节",
    chinese_calendar.Holiday.dragon_boat_festival: "端午节",
    chinese_calendar.Holiday.national_day: "国庆节",
    chinese_calendar.Holiday.mid_autumn_festival: "中秋节",
    chinese_calendar.Holiday.anti_fascist_70th_day: "抗战胜利70周年纪念日",
}
"""Chinese names of chinese-calendar's holidays (its own ``chinese`` omits 节 for some)."""

_WEEKDAYS = "一二三四五六日"

Schedule = dict[date, tuple[bool, str]]
"""The stored deviations of one year: date → (is_workday, name)."""


def _holiday_name(english: str) -> str:
    try:
        holiday = chinese_calendar.Holiday(english)
    except ValueError:
        return english
    return HOLIDAY_NAMES.get(holiday, holiday.chinese)


def package_schedule(year: int) -> Schedule | None:
    """Return chinese-calendar's deviations for ``year``, or None if it does not cover the year."""
    try:
        chinese_calendar.is_workday(date(year, 1, 1))
    except NotImplementedError:
        return None
    schedule: Schedule = {}
    for day, english in chinese_calendar.holidays.items():
        if day.year == year and day.weekday() < 5:
            schedule[day] = (False, _holiday_name(english))
    for day, english in chinese_calendar.workdays.items():
        if day.year == year and day.weekday() >= 5:
            schedule[day] = (True, _holiday_name(english))
    return schedule


def _sync_year(session: Session, year: int, schedule: Schedule) -> int:
    """Make the year's ``CalendarDay`` rows equal ``schedule``; return rows changed."""
    rows = session.execute(
        select(CalendarDay).where(
            CalendarDay.day >= date(year, 1, 1), CalendarDay.day <= date(year, 12, 31)
        )
    ).scalars()
    existing = {row.day: row for row in rows}
    changed = 0
    for day, stale in existing.items():
        if day not in schedule:
            session.delete(stale)
            changed += 1
    for day, (workday, name) in schedule.items():
        row = existing.get(day)
        if row is None:
            session.add(CalendarDay(day=day, is_workday=workday, name=name))
            changed += 1
        elif (row.is_workday, row.name) != (workday, name):
            row.is_workday, row.name = workday, name
            changed += 1
    session.flush()
    return changed


def seed_from_chinese_calendar(session: Session, years: Iterable[int] = range(2004, 2027)) -> int:
    """Fill the holiday table from chinese-calendar; return the number of days changed.

    Idempotent: a second run changes nothing and returns 0. Years an administrator entered
    (``CalendarYear.source == 'admin'``) and years the package does not cover are skipped.
    """
    note = f"chinese-calendar {version('chinese-calendar')}"
    changed = 0
    for year in years:
        entered = session.get(CalendarYear, year)
        if entered is not None and entered.source == ADMIN_SOURCE:
            continue
        schedule = package_schedule(year)
        if schedule is None:
            continue
        changed += _sync_year(session, year, schedule)
        if entered is None:
            session.add(CalendarYear(year=year, source=SEED_SOURCE, note=note))
        elif (entered.source, entered.note) != (SEED_SOURCE, note):
            entered.source, entered.note = SEED_SOURCE, note
    session.flush()
    return changed


def _nearest_holiday(day: date, holidays: Sequence[tuple[date, date, str]]) -> str:
    def distance(holiday: tuple[date, date, str]) -> tuple[int, date]:
        start, end, _ = holiday
        return (max((start - day).days, (day - end).days, 0), start)

    return min(holidays, key=distance)[2].strip() if holidays else MAKE_UP_NAME


def enter_year(
    session: Session,
    year: int,
    holidays: list[tuple[date, date, str]],
    workdays: list[date],
    note: str = "",
) -> None:
    """Enter ``year``'s official schedule as an administrator, replacing what was stored.

    ``holidays`` are inclusive date ranges with the festival's name (weekend days inside them
    are fine and simply stay days off); ``workdays`` are the weekend days worked in exchange
    (调休上班), each named after the nearest holiday. Raises ValueError (Chinese message) for a
    date outside the year, a range that ends before it starts, overlapping ranges, a date both
    holiday and workday, or a make-up workday that is not a Saturday or Sunday.
    """
    schedule: Schedule = {}
    for start, end, name in holidays:
        label = name.strip()
        if not label:
            raise ValueError(f"节假日 {start}–{end} 缺少名称")
        if start > end:
            raise ValueError(f"节假日“{label}”的开始日期 {start} 晚于结束日期 {end}")
        if start.year != year or end.year != year:
            raise ValueError(f"节假日“{label}”（{start}–{end}）不在 {year} 年内")
        day = start
        while day <= end:
            if day in schedule:
                raise ValueError(f"{day} 重复出现在多个节假日中")
            schedule[day] = (False, label)
            day += timedelta(days=1)
    for day in sorted(set(workdays)):
        if day.year != year:
            raise ValueError(f"调休上班日 {day} 不在 {year} 年内")
        if day in schedule:
            raise ValueError(f"{day} 不能既是节假日（{schedule[day][1]}）又是调休上班日")
        if day.weekday() < 5:
            raise ValueError(
                f"调休上班日 {day} 是星期{_WEEKDAYS[day.weekday()]}，本来就是工作日；"
                "只需录入周六、周日的调休上班日"
            )
        schedule[day] = (True, _nearest_holiday(day, holidays))
    deviations = {day: entry for day, entry in schedule.items() if entry[0] != (day.weekday() < 5)}
    _sync_year(session, year, deviations)
    entered = session.get(CalendarYear, year)
    if entered is None:
        session.add(CalendarYear(year=year, source=ADMIN_SOURCE, note=note))
    else:
        entered.source, entered.note = ADMIN_SOURCE, note
        entered.entered_at = datetime.now(UTC)
    session.flush()


def load_calendar(
    session: Session, *, office_hours: Sequence[tuple[time, time]] = GUANGDONG_OFFICE_HOURS
) -> WorkCalendar:
    """Build the WorkCalendar from the holiday table."""
    rows = session.execute(select(CalendarDay.day, CalendarDay.is_workday))
    overrides = {day: workday for day, workday in rows}
    known_years = set(session.execute(select(CalendarYear.year)).scalars())
    return WorkCalendar(overrides, known_years, office_hours=office_hours)
