"""Events (事件), their recorded actions, department assignments, photos and notices."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gridgov.db import Base, UTCDateTime
from gridgov.models.matters import URGENCY_CHECK, Matter


class EventState(StrEnum):
    """Where an event stands in the closed loop."""

    REPORTED = "reported"  # 待受理: waiting for the holding centre to accept (立案)
    ACCEPTED = "accepted"  # 待分拨: accepted, waiting for dispatch
    DISPATCHED = "dispatched"  # 待签收: dispatched to a lead department
    HANDLING = "handling"  # 处置中: signed for (or sent back for rework)
    RETURNED = "returned"  # 退回待重派: the department returned it
    SHELVED = "shelved"  # 挂账: unsolvable for now, clock paused
    HANDLED = "handled"  # 待核查: handled, waiting for verification
    VERIFIED = "verified"  # 待结案: verified, waiting for closing
    CLOSED = "closed"  # 已办结
    REJECTED = "rejected"  # 不予受理
    VOIDED = "voided"  # 已作废
    MERGED = "merged"  # 已并案 into another event
    WITHDRAWN = "withdrawn"  # 已撤单

    @property
    def label(self) -> str:
        return STATE_LABELS[self]

    @property
    def is_open(self) -> bool:
        return self not in TERMINAL_STATES


STATE_LABELS = {
    EventState.REPORTED: "待受理",
    EventState.ACCEPTED: "待分拨",
    EventState.DISPATCHED: "待签收",
    EventState.HANDLING: "处置中",
    EventState.RETURNED: "退回待重派",
    EventState.SHELVED: "挂账",
    EventState.HANDLED: "待核查",
    EventState.VERIFIED: "待结案",
    EventState.CLOSED: "已办结",
    EventState.REJECTED: "不予受理",
    EventState.VOIDED: "已作废",
    EventState.MERGED: "已并案",
    EventState.WITHDRAWN: "已撤单",
}

TERMINAL_STATES = frozenset(
    {
        EventState.CLOSED,
        EventState.REJECTED,
        EventState.VOIDED,
        EventState.MERGED,
        EventState.WITHDRAWN,
    }
)


class Source(StrEnum):
    """Where a report came from."""

    GRID_WORKER = "grid_worker"
    HOTLINE = "hotline"
    SENSOR = "sensor"
    CITIZEN = "citizen"
    CENTRE = "centre"

    @property
    def label(self) -> str:
        return {
            "grid_worker": "网格员上报",
            "hotline": "12345热线",
            "sensor": "感知设备告警",
            "citizen": "群众反映",
            "centre": "中心登记",
        }[self]


class HolderLevel(StrEnum):
    """Who holds an event now: a centre, a department, or a grid worker (to verify)."""

    TOWN = "town"  # the town centre of holder_region_code (9 digits)
    COUNTY = "county"  # the county centre of holder_region_code (6 digits)
    DEPARTMENT = "department"  # holder_department_id
    GRID_WORKER = "grid_worker"  # holder_user_id
    NONE = "none"  # terminal states


_STATES = ", ".join(f"'{s.value}'" for s in EventState)
_SOURCES = ", ".join(f"'{s.value}'" for s in Source)
_HOLDERS = ", ".join(f"'{h.value}'" for h in HolderLevel)

COVERED_COLUMNS = (
    "town_code",
    "village_code",
    "grid_code",
    "matter_code",
    "source",
    "state",
    "lead_department_id",
    "reporter_id",
    "accepted_at",
    "dispatched_at",
    "handled_at",
    "verified_at",
    "closed_at",
    "due_at",
    "shelved_at",
    "overdue",
    "self_handled",
    "handle_late",
    "verify_late",
    "extension_count",
    "rework_count",
    "return_count",
    "satisfaction",
    "lng",
    "lat",
)
"""The Event columns gridgov.stats and the map's clusters read, besides the region and the
report time: the covering indexes below carry them (tests/test_stats.py checks the list)."""


class Event(Base):
    """One reported matter travelling the loop; `version` guards concurrent changes."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("reporter_id", "client_key", name="uq_events_reporter_client_key"),
        CheckConstraint(f"state IN ({_STATES})", name="state"),
        CheckConstraint(f"source IN ({_SOURCES})", name="source"),
        CheckConstraint(f"holder_level IN ({_HOLDERS})", name="holder_level"),
        CheckConstraint(URGENCY_CHECK, name="urgency"),
        CheckConstraint(
            "(holder_level <> 'department') OR (holder_department_id IS NOT NULL)",
            name="department_holder_named",
        ),
        CheckConstraint(
            "(holder_level <> 'grid_worker') OR (holder_user_id IS NOT NULL)",
            name="grid_worker_holder_named",
        ),
        CheckConstraint(
            "(holder_level NOT IN ('town', 'county')) OR (holder_region_code IS NOT NULL)",
            name="centre_holder_named",
        ),
        CheckConstraint(
            "(state NOT IN ('closed', 'rejected', 'voided', 'merged', 'withdrawn'))"
            " OR (holder_level = 'none')",
            name="terminal_has_no_holder",
        ),
        CheckConstraint("(state <> 'merged') OR (merged_into_id IS NOT NULL)", name="merge_target"),
        CheckConstraint("(state <> 'closed') OR (closed_at IS NOT NULL)", name="closed_has_time"),
        CheckConstraint(
            "satisfaction IS NULL OR satisfaction IN ('satisfied', 'basically', 'unsatisfied')",
            name="satisfaction",
        ),
        Index("ix_events_lng_lat", "lng", "lat"),
        Index("ix_events_state_due", "state", "due_at"),
        Index("ix_events_state_stage_due", "state", "stage_due_at"),
        Index("ix_events_reported_at", "reported_at"),
        # A jurisdiction or region filter is an equality on its level's code column, and
        # almost every list and number also bounds reported_at. For counties and towns the
        # index also carries every column the numbers and the map's clusters read, so a
        # two-year KPI query reads the index alone instead of every page of the table
        # (bench/README.md: 2-year county stats 414 -> 101 ms at 10^6 events).
        Index("ix_events_county_cover", "county_code", "reported_at", *COVERED_COLUMNS),
        Index(
            "ix_events_town_cover",
            "town_code",
            "reported_at",
            *(c for c in COVERED_COLUMNS if c != "town_code"),
        ),
        Index("ix_events_village_reported", "village_code", "reported_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(24), unique=True)
    source: Mapped[str] = mapped_column(String(16))
    matter_code: Mapped[str] = mapped_column(ForeignKey("matters.code"), index=True)
    urgency: Mapped[str] = mapped_column(String(12))
    title: Mapped[str] = mapped_column(String(120), default="")
    description: Mapped[str] = mapped_column(Text)
    address: Mapped[str] = mapped_column(String(200), default="")
    lng: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    input_crs: Mapped[str] = mapped_column(String(12), default="wgs84")
    input_lng: Mapped[float | None] = mapped_column(Float)
    input_lat: Mapped[float | None] = mapped_column(Float)
    location_accuracy_m: Mapped[float | None] = mapped_column(Float)
    snapped_m: Mapped[float | None] = mapped_column(Float)
    grid_id: Mapped[int] = mapped_column(ForeignKey("grids.id"), index=True)
    grid_code: Mapped[str] = mapped_column(String(15), index=True)
    village_code: Mapped[str] = mapped_column(String(12))
    town_code: Mapped[str] = mapped_column(String(9))
    county_code: Mapped[str] = mapped_column(String(6))
    reporter_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    reporter_name: Mapped[str] = mapped_column(String(64), default="")
    reporter_phone: Mapped[str] = mapped_column(String(32), default="")
    client_key: Mapped[str] = mapped_column(String(64))

    state: Mapped[str] = mapped_column(String(16), index=True)
    holder_level: Mapped[str] = mapped_column(String(16))
    holder_region_code: Mapped[str | None] = mapped_column(String(12), index=True)
    holder_department_id: Mapped[int | None] = mapped_column(
        ForeignKey("departments.id"), index=True
    )
    holder_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    dispatcher_level: Mapped[str | None] = mapped_column(String(16))
    dispatcher_region_code: Mapped[str | None] = mapped_column(String(12))
    lead_department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))

    reported_at: Mapped[datetime] = mapped_column(UTCDateTime)
    stage: Mapped[str | None] = mapped_column(String(12))
    stage_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stage_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stage_unit: Mapped[str | None] = mapped_column(String(16))
    """How the current stage's limit is counted (hours / working_hours / working_days)."""
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    """Overall deadline (办结时限); moves only by approved extension or a shelving pause."""
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    shelved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    shelved_from: Mapped[str | None] = mapped_column(String(16))
    overdue: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    """Closed late, or open past due_at (set by the SLA sweep and at closing)."""
    overdue_notice_for: Mapped[datetime | None] = mapped_column(UTCDateTime)
    warning_notice_for: Mapped[datetime | None] = mapped_column(UTCDateTime)
    extension_pending_days: Mapped[int | None] = mapped_column(Integer)
    extension_count: Mapped[int] = mapped_column(Integer, default=0)
    rework_count: Mapped[int] = mapped_column(Integer, default=0)
    return_count: Mapped[int] = mapped_column(Integer, default=0)
    self_handled: Mapped[bool] = mapped_column(Boolean, default=False)
    handle_late: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """A department reported it handled (处置反馈) at least once after the stage deadline."""
    verify_late: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """It was verified (核查, passed or failed) at least once after the stage deadline."""
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("events.id"))
    satisfaction: Mapped[str | None] = mapped_column(String(12))
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__: ClassVar[dict[str, Any]] = {"version_id_col": version}

    matter: Mapped[Matter] = relationship()
    actions: Mapped[list[EventAction]] = relationship(
        back_populates="event", order_by="EventAction.id", cascade="all, delete-orphan"
    )
    assignments: Mapped[list[EventAssignment]] = relationship(
        back_populates="event", order_by="EventAssignment.id", cascade="all, delete-orphan"
    )
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="event", order_by="Attachment.id", cascade="all, delete-orphan"
    )

    def __repr__(self) -> str:
        return f"<Event {self.code} {self.state}>"


class EventAction(Base):
    """A recorded transition: who did what, when, from which state to which, and why."""

    __tablename__ = "event_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor_name: Mapped[str] = mapped_column(String(64))
    actor_role: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    holder_before: Mapped[str] = mapped_column(String(80), default="")
    holder_after: Mapped[str] = mapped_column(String(80), default="")
    comment: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[str] = mapped_column(Text, default="{}")
    """Action-specific inputs as JSON (departments, days, satisfaction, target …)."""

    event: Mapped[Event] = relationship(back_populates="actions")
    attachments: Mapped[list[Attachment]] = relationship(back_populates="action")


class EventAssignment(Base):
    """A department's part in an event: lead (主办) or assisting (协办), per dispatch."""

    __tablename__ = "event_assignments"
    __table_args__ = (CheckConstraint("role IN ('lead', 'assist')", name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"), index=True)
    role: Mapped[str] = mapped_column(String(8))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime)

    event: Mapped[Event] = relationship(back_populates="assignments")


class Attachment(Base):
    """A photo: re-encoded JPEG with thumbnail; EXIF time and position kept as data."""

    __tablename__ = "attachments"
    __table_args__ = (
        CheckConstraint("kind IN ('before', 'after', 'evidence')", name="kind"),
        UniqueConstraint("event_id", "sha256", name="uq_attachments_event_sha256"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    action_id: Mapped[int | None] = mapped_column(ForeignKey("event_actions.id"), index=True)
    kind: Mapped[str] = mapped_column(String(12))
    sha256: Mapped[str] = mapped_column(String(64))
    """Digest of the uploaded bytes: the same photo sent twice is stored once."""
    path: Mapped[str] = mapped_column(String(255))
    thumb_path: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(32), default="image/jpeg")
    original_format: Mapped[str] = mapped_column(String(16))
    size: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    exif_lng: Mapped[float | None] = mapped_column(Float)
    exif_lat: Mapped[float | None] = mapped_column(Float)
    uploaded_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())

    event: Mapped[Event] = relationship(back_populates="attachments")
    action: Mapped[EventAction | None] = relationship(back_populates="attachments")


class EventCounter(Base):
    """Per county and day, the last sequence number used in event codes."""

    __tablename__ = "event_counters"

    county_code: Mapped[str] = mapped_column(String(6), primary_key=True)
    day: Mapped[str] = mapped_column(String(8), primary_key=True)
    last: Mapped[int] = mapped_column(Integer)


class Notice(Base):
    """A message to one user about an event: dispatch, return, 督办, approval, 批示 …"""

    __tablename__ = "notices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(24))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
