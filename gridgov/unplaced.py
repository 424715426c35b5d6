"""The queue of reports that could not be placed in a grid (待定位, 属地兜底, PRODUCT.md §3).

A county centre (dispatcher or shift lead) files hotline, sensor and citizen reports for
everyone who calls: when such a report's position lies outside every grid (beyond the snapping
tolerance), or it has no coordinates and its text names no village, refusing it would lose
it. `receive_report` files it as an event when it can be placed and queues it otherwise; the
county centre lists its queue (`queue`), places a report by hand at a point or a village
(`place`: the event is filed through `gridgov.events.report_event` as received, with the
received time as its report time, so deadlines count from reception) or discards it with a
reason (`discard`). Grid workers, towns, departments and leaders see nothing of the queue.

Like gridgov.events: check the guard, mutate, flush; the caller commits once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, false, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from gridgov.access import COUNTY_CENTRE_ROLES
from gridgov.db import utcnow
from gridgov.errors import Conflict, Forbidden, NotFound, Unprocessable
from gridgov.events import DuplicateRules, ReportInput, ReportResult, find_duplicates, report_event
from gridgov.geo.geocoder import DEFAULT_TOLERANCE_M, geocode, geocode_text
from gridgov.models import (
    QUEUE_SOURCES,
    Event,
    Matter,
    Role,
    Source,
    UnplacedReason,
    UnplacedReport,
    UnplacedStatus,
    Urgency,
    User,
)

ALREADY_RESOLVED = "already_resolved"
"""Error code of placing or discarding a report someone has already placed or discarded."""


@dataclass
class Receipt:
    """A queued report, and whether this call queued it (False: the same client key again)."""

    report: UnplacedReport
    created: bool


# ---------------------------------------------------------------------------
# Who may use the queue


def may_queue(user: User, source: str) -> bool:
    """Return whether an unplaceable report of `source` from `user` goes to the queue."""
    return Role(user.role) in COUNTY_CENTRE_ROLES and source in QUEUE_SOURCES


def visible_reports(user: User) -> ColumnElement[bool]:
    """Return a WHERE clause selecting the queued reports `user` may see: its county's."""
    if Role(user.role) in COUNTY_CENTRE_ROLES:
        return UnplacedReport.county_code == user.region_code
    return false()


def can_view_report(user: User, report: UnplacedReport) -> bool:
    """Return whether `user` may see (and so place or discard) `report`."""
    return Role(user.role) in COUNTY_CENTRE_ROLES and report.county_code == user.region_code


def get_report(
    session: Session, user: User, report_id: int, *, lock: bool = False
) -> UnplacedReport:
    """Return a queued report the user may see; 404 if missing, 403 if not the user's county.

    lock: read it afresh and hold its row until the transaction ends (PostgreSQL), so two
    dispatchers handling it at once are served one after the other.
    """
    report = session.get(
        UnplacedReport, report_id, with_for_update=lock or None, populate_existing=lock
    )
    if report is None:
        raise NotFound("待定位报告不存在", code="unplaced_not_found", unplaced_id=report_id)
    if not can_view_report(user, report):
        raise Forbidden("该待定位报告不属于您所在的县指挥中心", code="outside_jurisdiction")
    return report


def queue(
    session: Session,
    user: User,
    status: str = UnplacedStatus.QUEUED.value,
    *,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[UnplacedReport], int]:
    """Return one page of the user's queue in `status` ("all": every status), and the total.

    Waiting reports come oldest first (the longest waiting is the most urgent); handled ones
    newest first.
    """
    query = select(UnplacedReport).where(visible_reports(user))
    if status != "all":
        if status not in {s.value for s in UnplacedStatus}:
            known = "、".join(s.value for s in UnplacedStatus)
            raise Unprocessable(
                f"状态应为 {known} 或 all", code="bad_input", field="status", status=status
            )
        query = query.where(UnplacedReport.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    order: list[Any]
    if status == UnplacedStatus.QUEUED:
        order = [UnplacedReport.received_at.asc(), UnplacedReport.id.asc()]
    else:
        order = [UnplacedReport.received_at.desc(), UnplacedReport.id.desc()]
    rows = session.scalars(query.order_by(*order).limit(limit).offset(offset)).all()
    return list(rows), total


def count_waiting(session: Session, user: User) -> int:
    """Count the reports waiting in the user's queue (0 for anyone without a queue)."""
    return (
        session.scalar(
            select(func.count())
            .select_from(UnplacedReport)
            .where(visible_reports(user), UnplacedReport.status == UnplacedStatus.QUEUED.value)
        )
        or 0
    )


# ---------------------------------------------------------------------------
# Receiving


def receive_report(
    session: Session,
    user: User,
    data: ReportInput,
    *,
    place_text: str = "",
    now: datetime | None = None,
    tolerance_m: float = DEFAULT_TOLERANCE_M,
    duplicates: DuplicateRules | None = None,
) -> ReportResult | Receipt:
    """File a report, or queue it when a county centre's hotline/sensor/citizen report cannot
    be placed (outside every grid, or no coordinates and no village named).

    Everyone else, and every other failure, gets what `report_event` raises. Without
    coordinates the report is placed at the village its `place_text` (else its address) names.
    The same client key from the same user returns the same event or queued report.
    """
    now = now or utcnow()
    filing = {"now": now, "tolerance_m": tolerance_m, "duplicates": duplicates}
    if not may_queue(user, data.source):
        return report_event(session, user, data, **filing)  # type: ignore[arg-type]
    key = _client_key(data.client_key)
    earlier = session.scalar(
        select(Event).where(Event.reporter_id == user.id, Event.client_key == key)
    )
    if earlier is not None:
        return ReportResult(earlier, False, find_duplicates(session, earlier, duplicates))
    queued = _queued_by_key(session, user, key)
    if queued is not None:
        return Receipt(queued, False)
    if _blank(data.lng) or _blank(data.lat):
        point = _village_point(session, place_text or data.address)
        if point is None:
            return _enqueue(session, user, data, UnplacedReason.NO_LOCATION, {}, place_text, now)
        data = replace(data, lng=point[0], lat=point[1], crs="wgs84")
    try:
        return report_event(session, user, data, **filing)  # type: ignore[arg-type]
    except Unprocessable as exc:
        if exc.code != "outside_jurisdiction":  # geocode: outside every grid
            raise
        return _enqueue(
            session, user, data, UnplacedReason.OUTSIDE_GRIDS, exc.details, place_text, now
        )


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _client_key(value: Any) -> str:
    key = value.strip() if isinstance(value, str) else ""
    if not key:
        raise Unprocessable("请填写客户端编号", code="missing_input", field="client_key")
    if len(key) > 64:
        raise Unprocessable("客户端编号过长（最多 64 字）", code="too_long", field="client_key")
    return key


def _queued_by_key(session: Session, user: User, key: str) -> UnplacedReport | None:
    return session.scalar(
        select(UnplacedReport).where(
            UnplacedReport.submitted_by_id == user.id, UnplacedReport.client_key == key
        )
    )


def _village_point(session: Session, text: str) -> tuple[float, float] | None:
    """Return the point of the one village `text` names, or None (no village, or several)."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        found = geocode_text(session, text)
    except Unprocessable:
        return None
    placement = found.get("placement")
    return (placement["lng"], placement["lat"]) if placement else None


def _text(value: Any, name: str, label: str, max_len: int, *, required: bool = False) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if required and not text:
        raise Unprocessable(f"请填写{label}", code="missing_input", field=name)
    if len(text) > max_len:
        raise Unprocessable(f"{label}过长（最多 {max_len} 字）", code="too_long", field=name)
    return text


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _enqueue(
    session: Session,
    user: User,
    data: ReportInput,
    reason: UnplacedReason,
    details: dict[str, Any],
    place_text: str,
    now: datetime,
) -> Receipt:
    """Check the report as `report_event` would (all but its position) and queue it."""
    matter = session.get(Matter, (data.matter_code or "").strip())
    if matter is None or not matter.active:
        raise Unprocessable("事项不存在或已停用", code="unknown_matter", field="matter_code")
    if data.urgency not in {u.value for u in Urgency}:
        raise Unprocessable("紧急程度应为：紧急、较急或一般", code="bad_urgency", field="urgency")
    report = UnplacedReport(
        county_code=user.region_code,
        source=data.source,
        matter_code=matter.code,
        urgency=data.urgency,
        description=_text(data.description, "description", "事件描述", 2000, required=True),
        address=_text(data.address, "address", "详细地址", 200),
        place_text=_text(place_text, "place", "地点", 100),
        input_lng=_number(data.lng),
        input_lat=_number(data.lat),
        input_crs=(data.crs or "wgs84").lower()[:12],
        lng=details.get("lng"),
        lat=details.get("lat"),
        location_accuracy_m=data.accuracy_m,
        reporter_name=_text(data.reporter_name, "reporter_name", "反映人姓名", 64),
        reporter_phone=_text(data.reporter_phone, "reporter_phone", "联系电话", 32),
        submitted_by_id=user.id,
        client_key=_client_key(data.client_key),
        received_at=now,
        reason=reason.value,
        nearest_m=details.get("nearest_m"),
        nearest_grid_code=details.get("nearest_grid_code"),
        status=UnplacedStatus.QUEUED.value,
    )
    try:
        with session.begin_nested():
            session.add(report)
            session.flush()
    except IntegrityError:
        # Another request with the same client key won the race: answer with its report.
        existing = _queued_by_key(session, user, report.client_key)
        if existing is None:
            raise
        return Receipt(existing, False)
    return Receipt(report, True)


# ---------------------------------------------------------------------------
# Placing and discarding


def _claim(
    session: Session, user: User, report_id: int, expected_version: int | None
) -> UnplacedReport:
    """Return the report, locked, if it is still waiting; Conflict if someone handled it."""
    report = get_report(session, user, report_id, lock=True)
    if report.status != UnplacedStatus.QUEUED:
        raise Conflict(_resolved_message(session, report), code=ALREADY_RESOLVED)
    if expected_version is not None and expected_version != report.version:
        raise Conflict(
            "该待定位报告已被他人更新，请刷新后重试", code="stale_version", version=report.version
        )
    return report


def _resolved_message(session: Session, report: UnplacedReport) -> str:
    who = report.resolved_by.display_name if report.resolved_by else "他人"
    if report.status == UnplacedStatus.PLACED:
        event = session.get(Event, report.event_id)
        code = event.code if event else ""
        return f"该报告已由{who}定位，生成事件 {code}"
    return f"该报告已由{who}作废"


def _finish(session: Session, report: UnplacedReport) -> None:
    """Write the outcome; a concurrent change to the same row is a conflict, not a crash."""
    try:
        session.flush()
    except StaleDataError:
        raise Conflict("该待定位报告已被他人处理，请刷新后查看", code=ALREADY_RESOLVED) from None


def place(
    session: Session,
    user: User,
    report_id: int,
    *,
    lng: Any = None,
    lat: Any = None,
    crs: str = "wgs84",
    place_text: str = "",
    expected_version: int | None = None,
    now: datetime | None = None,
    tolerance_m: float = DEFAULT_TOLERANCE_M,
    duplicates: DuplicateRules | None = None,
) -> ReportResult:
    """Place a queued report by hand at a point (or the village `place_text` names).

    The point must fall in a grid of the report's county. The event is filed as received:
    reported by whoever submitted it, with its client key, at the time it was received; the
    report action records who placed it, and when.
    """
    now = now or utcnow()
    report = _claim(session, user, report_id, expected_version)
    if _blank(lng) or _blank(lat):
        text = (place_text or "").strip()
        if not text:
            raise Unprocessable(
                "请在地图上点选位置，或填写村（社区）名称", code="missing_input", field="lng"
            )
        found = geocode_text(session, text)
        if not found.get("placement"):
            raise Unprocessable(
                f"“{text}”只定位到{found.get('name', '')}，请补充村（社区）名称或在地图上点选",
                code="place_not_village",
                field="place",
            )
        lng, lat, crs = found["placement"]["lng"], found["placement"]["lat"], "wgs84"
    placement = geocode(session, lng, lat, crs or "wgs84", tolerance_m)
    if placement.county_code != report.county_code:
        raise Forbidden(
            f"该位置属于{placement.county_name or placement.county_code}，不在本县（区）",
            code="outside_jurisdiction",
            grid_code=placement.grid_code,
        )
    submitter = report.submitted_by
    result = report_event(
        session,
        submitter,
        ReportInput(
            matter_code=report.matter_code,
            urgency=report.urgency,
            description=report.description,
            lng=placement.lng,
            lat=placement.lat,
            client_key=report.client_key,
            crs="wgs84",
            address=report.address,
            source=report.source,
            accuracy_m=report.location_accuracy_m,
            reporter_name=report.reporter_name,
            reporter_phone=report.reporter_phone,
        ),
        now=report.received_at,
        tolerance_m=tolerance_m,
        duplicates=duplicates,
    )
    event = result.event
    if result.created:
        _note_placement(event, report, user, now)
    report.status = UnplacedStatus.PLACED.value
    report.event_id = event.id
    report.resolved_by_id = user.id
    report.resolved_at = now
    _finish(session, report)
    return result


def _note_placement(event: Event, report: UnplacedReport, user: User, now: datetime) -> None:
    """Record on the event's report action that it was placed by hand, by whom and when."""
    record = next(a for a in event.actions if a.action == "report")
    data = json.loads(record.data or "{}")
    data["unplaced"] = {
        "id": report.id,
        "reason": report.reason,
        "placed_by_id": user.id,
        "placed_by": user.display_name,
        "placed_at": now.isoformat(),
        "received_lng": report.input_lng,
        "received_lat": report.input_lat,
        "received_crs": report.input_crs,
    }
    record.data = json.dumps(data, ensure_ascii=False, sort_keys=True, default=str)
    record.comment = (
        f"待定位报告（{UnplacedReason(report.reason).label}），由{user.display_name}手动定位"
    )


def discard(
    session: Session,
    user: User,
    report_id: int,
    reason: Any,
    *,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> UnplacedReport:
    """Discard (作废) a queued report; the reason is required and kept."""
    text = _text(reason, "reason", "作废理由", 2000, required=True)
    report = _claim(session, user, report_id, expected_version)
    report.status = UnplacedStatus.DISCARDED.value
    report.discard_reason = text
    report.resolved_by_id = user.id
    report.resolved_at = now or utcnow()
    _finish(session, report)
    return report


# ---------------------------------------------------------------------------
# Representation


def describe(session: Session, report: UnplacedReport) -> dict[str, Any]:
    """Return the API representation of a queued report (times ISO 8601, UTC)."""
    event = session.get(Event, report.event_id) if report.event_id else None
    return {
        "id": report.id,
        "status": report.status,
        "status_label": UnplacedStatus(report.status).label,
        "reason": report.reason,
        "reason_label": UnplacedReason(report.reason).label,
        "distance_m": round(report.nearest_m, 1) if report.nearest_m is not None else None,
        "nearest_grid_code": report.nearest_grid_code,
        "county_code": report.county_code,
        "source": report.source,
        "source_label": Source(report.source).label,
        "matter_code": report.matter_code,
        "urgency": report.urgency,
        "description": report.description,
        "address": report.address,
        "place_text": report.place_text,
        "input": {"lng": report.input_lng, "lat": report.input_lat, "crs": report.input_crs},
        "lng": report.lng,
        "lat": report.lat,
        "reporter_name": report.reporter_name,
        "reporter_phone": report.reporter_phone,
        "submitted_by": report.submitted_by.display_name if report.submitted_by else "",
        "client_key": report.client_key,
        "received_at": report.received_at.isoformat(),
        "event_id": report.event_id,
        "event_code": event.code if event else None,
        "resolved_by": report.resolved_by.display_name if report.resolved_by else None,
        "resolved_at": report.resolved_at.isoformat() if report.resolved_at else None,
        "discard_reason": report.discard_reason or None,
        "version": report.version,
    }
