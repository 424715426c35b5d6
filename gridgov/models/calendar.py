"""The holiday table: public holidays and make-up workdays (调休), per year."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from gridgov.db import Base, UTCDateTime


class CalendarDay(Base):
    """A date that differs from the Monday–Friday rule: a holiday or a make-up workday."""

    __tablename__ = "calendar_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    is_workday: Mapped[bool] = mapped_column(Boolean)
    name: Mapped[str] = mapped_column(String(64), default="")


class CalendarYear(Base):
    """A year whose official schedule has been entered (seeded or by an administrator)."""

    __tablename__ = "calendar_years"

    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())


class Setting(Base):
    """A runtime setting administrators change (password policy, tolerances …), as JSON."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
