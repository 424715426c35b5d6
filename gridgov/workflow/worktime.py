"""Working time: deadlines, elapsed time and traffic lights under the Chinese office calendar.

Rules (PRODUCT.md §4), in one place:

* Time zone. Everything is measured on the Asia/Shanghai clock. Aware datetimes are converted
  to Shanghai time; naive datetimes are taken to be Shanghai local time already. Every datetime
  returned is aware, in Asia/Shanghai.
* Workdays. A date listed in ``overrides`` is a workday or not as listed (holidays on weekdays,
  调休 make-up workdays on weekends); any other date is a workday Monday–Friday. Years outside
  ``known_years`` have no official schedule entered: they fall back to Monday–Friday and
  :meth:`WorkCalendar.unknown_years` / :meth:`WorkCalendar.schedule_warnings` say so.
* Office hours. Default: Guangdong government offices, 08:30–12:00 and 14:00–17:30, i.e. one
  working day = 7 working hours. (Guangdong's summer timetable, 14:30–18:00 in the afternoon, is
  also 7 h; pass ``office_hours`` to use another timetable.) Each period is half-open
  [opening, closing): a closing time itself is outside office time.
* ``hours`` are natural hours: holidays, nights and weekends count.
* ``working_hours`` count only office hours on workdays. A start outside office time begins
  counting at the next opening. The deadline is the earliest instant at which the amount is used
  up, so 08:30 + 3.5 working hours is 12:00 (not 14:00) and Friday 17:00 + 1 is Monday 09:00.
* ``working_days``: the start is first moved to the next office moment (unchanged if already in
  office time), then the deadline is the same clock time N workdays later. Friday 16:00 + 1 →
  Monday 16:00; Saturday 10:00 + 1 → Monday 08:30 + 1 → Tuesday 08:30; Friday 12:00 + 1 →
  Monday 14:00. One working day is worth exactly one day's office hours, so ``elapsed`` in working
  days is working time ÷ 7 h and ``elapsed(s, add(s, x, u), u) == x``. A fractional amount
  adds its whole days this way and the fraction as working hours.
* Pauses (挂账 shelving) stop the clock: :meth:`WorkCalendar.shift` extends a deadline by the
  time, in the limit's own unit, that passed during the pause.
* Traffic light: red once ``now`` is past the deadline; otherwise green while at most 80 % of
  the limit is used (measured in the limit's unit: working time for working units), else yellow.

Arithmetic is exact to the microsecond and steps whole days at most (counting workdays between
two dates is arithmetic plus a binary search over the overrides), so long limits cost nothing.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from itertools import accumulate
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from gridgov.models.matters import TimeUnit

SHANGHAI = ZoneInfo("Asia/Shanghai")

GUANGDONG_OFFICE_HOURS: tuple[tuple[time, time], ...] = (
    (time(8, 30), time(12, 0)),
    (time(14, 0), time(17, 30)),
)
"""Office hours of Guangdong government offices (winter timetable): 7 hours a day."""

HOURS = "hours"
WORKING_HOURS = "working_hours"
WORKING_DAYS = "working_days"
UNITS = (HOURS, WORKING_HOURS, WORKING_DAYS)
"""The values of ``gridgov.models.TimeUnit``; that enum is a ``str``, so either is accepted."""

YELLOW_AT = (4, 5)
"""The light turns yellow once more than 4/5 (80 %) of the limit is used."""

Light = Literal["green", "yellow", "red"]

_US_PER_HOUR = 3_600_000_000


def _unit(unit: TimeUnit | str) -> str:
    value = str(unit)
    if value not in UNITS:
        raise ValueError(f"unknown time unit {unit!r}; expected one of {', '.join(UNITS)}")
    return value


def _us_of_day(t: time) -> int:
    return ((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000 + t.microsecond


def _to_us(amount: float, us_per_unit: int) -> int:
    return round(amount * us_per_unit)


class WorkCalendar:
    """The office calendar of one county: workdays, office hours and time arithmetic on them."""

    def __init__(
        self,
        overrides: Mapping[date, bool] | None = None,
        known_years: Iterable[int] = (),
        office_hours: Sequence[tuple[time, time]] = GUANGDONG_OFFICE_HOURS,
    ) -> None:
        self.overrides: dict[date, bool] = dict(overrides or {})
        self.known_years: frozenset[int] = frozenset(known_years)
        self.office_hours: tuple[tuple[time, time], ...] = tuple(office_hours)
        self._periods = self._check_office_hours(self.office_hours)
        self.day_us = sum(end - start for start, end in self._periods)
        """Office microseconds in one working day."""

        # Overrides that actually deviate from Monday–Friday, as +1 (extra workday) or
        # −1 (lost workday), with prefix sums for counting workdays between two dates.
        deviations = sorted(
            (day, 1 if workday else -1)
            for day, workday in self.overrides.items()
            if workday != (day.weekday() < 5)
        )
        self._dev_days = [day for day, _ in deviations]
        self._dev_prefix = [0, *accumulate(delta for _, delta in deviations)]

    @staticmethod
    def _check_office_hours(office_hours: Sequence[tuple[time, time]]) -> list[tuple[int, int]]:
        if not office_hours:
            raise ValueError("office hours must contain at least one (opening, closing) period")
        periods = [(_us_of_day(start), _us_of_day(end)) for start, end in office_hours]
        previous_end = -1
        for (start, end), (t_start, t_end) in zip(periods, office_hours, strict=True):
            if t_start.tzinfo is not None or t_end.tzinfo is not None:
                raise ValueError("office hours are Shanghai clock times without a time zone")
            if start >= end:
                raise ValueError(f"office period {t_start}–{t_end} must open before it closes")
            if start < previous_end:
                raise ValueError("office periods must be in order and must not overlap")
            previous_end = end
        return periods

    @property
    def hours_per_day(self) -> float:
        """Return the office hours of one working day."""
        return self.day_us / _US_PER_HOUR

    # ----------------------------------------------------------------- dates and years

    def is_workday(self, day: date) -> bool:
        """Return whether ``day`` (a date, or a datetime's Shanghai date) is a workday."""
        if isinstance(day, datetime):
            day = self._local(day).date()
        workday = self.overrides.get(day)
        return day.weekday() < 5 if workday is None else workday

    def year_known(self, year: int) -> bool:
        """Return whether the official holiday schedule of ``year`` has been entered."""
        return year in self.known_years

    def unknown_years(self, start: date, end: date) -> list[int]:
        """Return the years from ``start`` to ``end`` with no schedule entered (Mon–Fri assumed)."""
        first, last = sorted((self._date(start).year, self._date(end).year))
        return [year for year in range(first, last + 1) if year not in self.known_years]

    def schedule_warnings(self, start: date, end: date) -> list[str]:
        """Return one visible warning (Chinese, for the UI) per year without a schedule."""
        return [
            f"{year} 年的节假日安排尚未录入，暂按周一至周五为工作日计算"
            for year in self.unknown_years(start, end)
        ]

    def count_workdays(self, start: date, end: date) -> int:
        """Return the number of workdays in [start, end); negative if ``end`` is earlier."""
        if end < start:
            return -self.count_workdays(end, start)
        weeks, rest = divmod((end - start).days, 7)
        first = start.weekday()
        count = 5 * weeks + sum(1 for i in range(rest) if (first + i) % 7 < 5)
        lo = bisect_left(self._dev_days, start)
        hi = bisect_left(self._dev_days, end)
        return count + self._dev_prefix[hi] - self._dev_prefix[lo]

    def nth_workday(self, start: date, n: int) -> date:
        """Return the workday on or after ``start`` preceded by exactly ``n`` workdays from it.

        ``nth_workday(d, 0)`` is ``d`` itself if a workday, else the next workday.
        """
        if n < 0:
            raise ValueError("n must be ≥ 0")
        # The answer is the smallest e with count_workdays(start, e + 1) > n.
        span = n + 1
        while self.count_workdays(start, start + timedelta(days=span)) <= n:
            span *= 2
        lo, hi = n, span - 1  # day offsets; at least n + 1 days are needed for n + 1 workdays
        while lo < hi:
            mid = (lo + hi) // 2
            if self.count_workdays(start, start + timedelta(days=mid + 1)) > n:
                hi = mid
            else:
                lo = mid + 1
        return start + timedelta(days=lo)

    # ----------------------------------------------------------------- arithmetic

    def add(self, start: datetime, amount: float, unit: TimeUnit | str) -> datetime:
        """Return the deadline ``amount`` ``unit`` after ``start`` (see the module rules)."""
        unit = _unit(unit)
        if not math.isfinite(amount) or amount < 0:
            raise ValueError(f"a time amount must be a finite number ≥ 0, not {amount!r}")
        if unit == HOURS:
            utc = self._aware(start).astimezone(UTC)
            return (utc + timedelta(microseconds=_to_us(amount, _US_PER_HOUR))).astimezone(SHANGHAI)
        local = self._local(start)
        if unit == WORKING_HOURS:
            return self._aware(self._add_working_us(local, _to_us(amount, _US_PER_HOUR)))
        whole = math.floor(amount)
        fraction_us = _to_us(amount - whole, self.day_us)
        opened = self._next_office_moment(local)
        day = self.nth_workday(opened.date(), whole)
        deadline = datetime.combine(day, opened.time())
        return self._aware(self._add_working_us(deadline, fraction_us))

    def elapsed(self, start: datetime, end: datetime, unit: TimeUnit | str) -> float:
        """Return the time from ``start`` to ``end`` in ``unit``; negative if ``end`` is earlier."""
        unit = _unit(unit)
        return self._measure_us(start, end, unit) / self._us_per(unit)

    def remaining(self, deadline: datetime, now: datetime, unit: TimeUnit | str) -> float:
        """Return the time left until ``deadline`` in ``unit``; negative once overdue."""
        return self.elapsed(now, deadline, unit)

    def shift(
        self,
        deadline: datetime,
        paused_from: datetime,
        paused_to: datetime,
        unit: TimeUnit | str,
    ) -> datetime:
        """Return ``deadline`` extended by the time in ``unit`` that passed while paused (挂账)."""
        unit = _unit(unit)
        if self._local(paused_to) < self._local(paused_from):
            raise ValueError("a pause cannot end before it starts")
        paused = self.elapsed(paused_from, paused_to, unit)
        if paused == 0:
            return self._aware(deadline)
        return self.add(deadline, paused, unit)

    def traffic_light(
        self, started: datetime, deadline: datetime, now: datetime, unit: TimeUnit | str
    ) -> Light:
        """Return red past the deadline, green while ≤ 80 % of the limit is used, else yellow."""
        unit = _unit(unit)
        if self._local(now) > self._local(deadline):
            return "red"
        total = self._measure_us(started, deadline, unit)
        used = self._measure_us(started, now, unit)
        numerator, denominator = YELLOW_AT
        if total > 0 and used * denominator <= total * numerator:
            return "green"
        return "yellow"

    # ----------------------------------------------------------------- internals

    @staticmethod
    def _date(value: date) -> date:
        if isinstance(value, datetime):
            return WorkCalendar._local(value).date()
        return value

    @staticmethod
    def _local(moment: datetime) -> datetime:
        """Return ``moment`` as a naive Shanghai wall-clock datetime."""
        if not isinstance(moment, datetime):
            raise TypeError(f"expected a datetime, not {type(moment).__name__}")
        if moment.tzinfo is None:
            return moment
        return moment.astimezone(SHANGHAI).replace(tzinfo=None)

    @staticmethod
    def _aware(moment: datetime) -> datetime:
        """Return ``moment`` as an aware Asia/Shanghai datetime."""
        if not isinstance(moment, datetime):
            raise TypeError(f"expected a datetime, not {type(moment).__name__}")
        if moment.tzinfo is None:
            return moment.replace(tzinfo=SHANGHAI)
        return moment.astimezone(SHANGHAI)

    def _us_per(self, unit: str) -> int:
        return self.day_us if unit == WORKING_DAYS else _US_PER_HOUR

    def _measure_us(self, start: datetime, end: datetime, unit: str) -> int:
        """Return natural (``hours``) or working (working units) microseconds from start to end."""
        if unit == HOURS:
            delta = self._aware(end).astimezone(UTC) - self._aware(start).astimezone(UTC)
            return delta // timedelta(microseconds=1)
        a, b = self._local(start), self._local(end)
        days = self.count_workdays(a.date(), b.date())
        return days * self.day_us + self._office_us_before(b) - self._office_us_before(a)

    def _office_us_before(self, moment: datetime) -> int:
        """Return the office microseconds of ``moment``'s date that lie before ``moment``."""
        if not self.is_workday(moment.date()):
            return 0
        now = _us_of_day(moment.time())
        return sum(min(max(now - start, 0), end - start) for start, end in self._periods)

    def _add_working_us(self, start: datetime, amount_us: int) -> datetime:
        """Return the earliest naive moment when ``amount_us`` of office time is used up."""
        if amount_us == 0:
            return start
        total = self._office_us_before(start) + amount_us  # counted from start's midnight
        index = -(-total // self.day_us) - 1  # which workday, 0 = start's date if a workday
        left = total - index * self.day_us  # in (0, day_us]
        day = self.nth_workday(start.date(), index)
        counted = 0
        for opening, closing in self._periods:
            if left <= counted + closing - opening:
                at = opening + left - counted
                break
            counted += closing - opening
        else:  # pragma: no cover - left <= day_us always ends the loop
            raise AssertionError(left)
        return datetime.combine(day, time()) + timedelta(microseconds=at)

    def _next_office_moment(self, moment: datetime) -> datetime:
        """Return ``moment`` if inside office time, else the next opening (naive)."""
        day = moment.date()
        if self.is_workday(day):
            now = _us_of_day(moment.time())
            for opening, closing in self._periods:
                if now < opening:
                    return datetime.combine(day, time()) + timedelta(microseconds=opening)
                if now < closing:
                    return moment
        day = self.nth_workday(day + timedelta(days=1), 0)
        return datetime.combine(day, time()) + timedelta(microseconds=self._periods[0][0])
