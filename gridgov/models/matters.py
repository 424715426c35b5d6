"""The matter list (事项清单): categories, matters, departments in charge, time limits."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gridgov.db import Base


class Urgency(StrEnum):
    """How fast a matter must move (紧急 / 较急 / 一般)."""

    URGENT = "urgent"
    PRESSING = "pressing"
    NORMAL = "normal"

    @property
    def label(self) -> str:
        return {"urgent": "紧急", "pressing": "较急", "normal": "一般"}[self]


URGENCY_CHECK = f"urgency IN ({', '.join(repr(u.value) for u in Urgency)})"
"""The CHECK constraint of every table with an urgency column."""


class Stage(StrEnum):
    """A timed stage of the loop; each has its own limit per matter × urgency."""

    ACCEPT = "accept"
    DISPATCH = "dispatch"
    HANDLE = "handle"
    VERIFY = "verify"

    @property
    def label(self) -> str:
        return {"accept": "受理", "dispatch": "分拨", "handle": "处置", "verify": "核查"}[self]


class TimeUnit(StrEnum):
    """How a limit is counted: natural hours, working hours or working days."""

    HOURS = "hours"
    WORKING_HOURS = "working_hours"
    WORKING_DAYS = "working_days"


class MatterCategory(Base):
    """A category (大类) of the matter list."""

    __tablename__ = "matter_categories"

    code: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    sort: Mapped[int] = mapped_column(Integer, default=0)

    matters: Mapped[list[Matter]] = relationship(back_populates="category", order_by="Matter.code")


class Matter(Base):
    """A matter (小类): who leads, who assists, at which level, how fast."""

    __tablename__ = "matters"
    __table_args__ = (
        CheckConstraint("handling_level IN ('village', 'town', 'county')", name="handling_level"),
    )

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    category_code: Mapped[str] = mapped_column(ForeignKey("matter_categories.code"), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    handling_level: Mapped[str] = mapped_column(String(8))
    lead_kind: Mapped[str] = mapped_column(String(32))
    """Department kind that leads (主办); resolved to a unit by the event's town/county."""
    self_handle_allowed: Mapped[bool] = mapped_column(Boolean, default=False)
    photo_required: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    category: Mapped[MatterCategory] = relationship(back_populates="matters")
    assisting: Mapped[list[MatterAssist]] = relationship(
        cascade="all, delete-orphan", order_by="MatterAssist.kind"
    )
    limits: Mapped[list[MatterTimeLimit]] = relationship(cascade="all, delete-orphan")

    @property
    def assisting_kinds(self) -> list[str]:
        return [a.kind for a in self.assisting]


class MatterAssist(Base):
    """A department kind that assists (协办) with a matter."""

    __tablename__ = "matter_assists"

    matter_code: Mapped[str] = mapped_column(
        ForeignKey("matters.code", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)


class MatterTimeLimit(Base):
    """The limit of one stage of one matter at one urgency."""

    __tablename__ = "matter_time_limits"
    __table_args__ = (
        CheckConstraint(URGENCY_CHECK, name="urgency"),
        CheckConstraint("stage IN ('accept', 'dispatch', 'handle', 'verify')", name="stage"),
        CheckConstraint("unit IN ('hours', 'working_hours', 'working_days')", name="unit"),
        CheckConstraint("amount > 0", name="amount_positive"),
    )

    matter_code: Mapped[str] = mapped_column(
        ForeignKey("matters.code", ondelete="CASCADE"), primary_key=True
    )
    urgency: Mapped[str] = mapped_column(String(12), primary_key=True)
    stage: Mapped[str] = mapped_column(String(12), primary_key=True)
    amount: Mapped[int] = mapped_column(Integer)
    unit: Mapped[str] = mapped_column(String(16))
