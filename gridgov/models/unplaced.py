"""Reports that could not be placed in a grid (待定位), queued for the county centre (属地兜底).

A report from the hotline, a sensor or a citizen whose position lies outside every grid, or
that has no position and whose text names no village, is kept here exactly as received until
a dispatcher places it by hand (it then becomes an event) or discards it with a reason.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gridgov.db import Base, UTCDateTime
from gridgov.models.events import Event
from gridgov.models.matters import URGENCY_CHECK, Matter
from gridgov.models.org import User


class UnplacedStatus(StrEnum):
    """Where a queued report stands."""

    QUEUED = "queued"  # 待定位
    PLACED = "placed"  # 已定位: it became an event
    DISCARDED = "discarded"  # 已作废

    @property
    def label(self) -> str:
        return {"queued": "待定位", "placed": "已定位", "discarded": "已作废"}[self]


class UnplacedReason(StrEnum):
    """Why a report could not be placed."""

    OUTSIDE_GRIDS = "outside_grids"  # its position lies outside every grid (beyond tolerance)
    NO_LOCATION = "no_location"  # no coordinates, and its text names no village

    @property
    def label(self) -> str:
        return {"outside_grids": "位置不在任何网格内", "no_location": "无坐标且未能识别地名"}[self]


QUEUE_SOURCES = ("hotline", "sensor", "citizen")
"""The sources whose unplaceable reports are queued (a grid worker or a centre knows where)."""

_STATUSES = ", ".join(f"'{s.value}'" for s in UnplacedStatus)
_REASONS = ", ".join(f"'{r.value}'" for r in UnplacedReason)
_SOURCES = ", ".join(f"'{s}'" for s in QUEUE_SOURCES)


class UnplacedReport(Base):
    """A received report waiting to be placed by hand; `version` guards concurrent handling."""

    __tablename__ = "unplaced_reports"
    __table_args__ = (
        UniqueConstraint(
            "submitted_by_id", "client_key", name="uq_unplaced_reports_submitter_client_key"
        ),
        CheckConstraint(f"status IN ({_STATUSES})", name="status"),
        CheckConstraint(f"reason IN ({_REASONS})", name="reason"),
        CheckConstraint(f"source IN ({_SOURCES})", name="source"),
        CheckConstraint(URGENCY_CHECK, name="urgency"),
        CheckConstraint(
            "(reason <> 'outside_grids') OR (lng IS NOT NULL AND lat IS NOT NULL)",
            name="outside_has_position",
        ),
        CheckConstraint(
            "(status = 'queued') OR (resolved_by_id IS NOT NULL AND resolved_at IS NOT NULL)",
            name="resolved_has_actor",
        ),
        CheckConstraint("(status <> 'placed') OR (event_id IS NOT NULL)", name="placed_has_event"),
        CheckConstraint(
            "(status <> 'discarded') OR (discard_reason <> '')", name="discarded_has_reason"
        ),
        Index("ix_unplaced_reports_county_status", "county_code", "status", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    county_code: Mapped[str] = mapped_column(ForeignKey("regions.code"))
    """The county centre whose queue holds it (the submitter's county)."""
    source: Mapped[str] = mapped_column(String(16))
    matter_code: Mapped[str] = mapped_column(ForeignKey("matters.code"))
    urgency: Mapped[str] = mapped_column(String(12))
    description: Mapped[str] = mapped_column(Text)
    address: Mapped[str] = mapped_column(String(200), default="")
    place_text: Mapped[str] = mapped_column(String(100), default="")
    """The place name typed at the desk (the API's `address` is kept in `address`)."""
    input_lng: Mapped[float | None] = mapped_column(Float)
    input_lat: Mapped[float | None] = mapped_column(Float)
    input_crs: Mapped[str] = mapped_column(String(12), default="wgs84")
    lng: Mapped[float | None] = mapped_column(Float)
    """The received position in WGS84 (None without coordinates)."""
    lat: Mapped[float | None] = mapped_column(Float)
    location_accuracy_m: Mapped[float | None] = mapped_column(Float)
    reporter_name: Mapped[str] = mapped_column(String(64), default="")
    reporter_phone: Mapped[str] = mapped_column(String(32), default="")
    submitted_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    client_key: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)

    reason: Mapped[str] = mapped_column(String(16))
    nearest_m: Mapped[float | None] = mapped_column(Float)
    """Distance to the nearest grid (outside_grids)."""
    nearest_grid_code: Mapped[str | None] = mapped_column(String(15))

    status: Mapped[str] = mapped_column(String(12), default=UnplacedStatus.QUEUED.value)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id"), index=True)
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    """Who placed or discarded it."""
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    discard_reason: Mapped[str] = mapped_column(Text, default="")
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 (read by SQLAlchemy)

    matter: Mapped[Matter] = relationship()
    event: Mapped[Event | None] = relationship()
    submitted_by: Mapped[User] = relationship(foreign_keys=[submitted_by_id])
    resolved_by: Mapped[User | None] = relationship(foreign_keys=[resolved_by_id])

    def __repr__(self) -> str:
        return f"<UnplacedReport {self.id} {self.status}>"
