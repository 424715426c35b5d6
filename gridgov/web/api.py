"""The JSON API under /api/v1: each route parses the request and calls one domain function."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, current_app, jsonify, request, send_file
from sqlalchemy.orm import Session

from gridgov import auth, eventdata, events, settings_of, unplaced
from gridgov import regions as region_service
from gridgov.calendar_store import load_calendar
from gridgov.catalog import export_matters
from gridgov.db import utcnow
from gridgov.errors import BadRequest, NotFound, Unauthorized, Unprocessable
from gridgov.geo import geocoder
from gridgov.models import Attachment
from gridgov.openapi import build_spec
from gridgov.photos import PhotoStore
from gridgov.web import get_session, require_user

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("请求体应为 JSON 对象", code="bad_json")
    return body


def _photo_store() -> PhotoStore:
    folder = settings_of(current_app).upload_folder
    assert folder is not None
    return PhotoStore(folder)


def _now() -> datetime:
    return utcnow()


@bp.get("/openapi.json")
def openapi() -> Any:
    return jsonify(build_spec())


@bp.get("/health")
def health() -> Any:
    return jsonify({"status": "ok"})


@bp.post("/auth/token")
def token() -> Any:
    body = _json_body()
    session = get_session()
    try:
        user = auth.authenticate(
            session, str(body.get("username", "")), str(body.get("password", ""))
        )
    except Unauthorized:
        session.commit()  # keep the failure count: the error response would roll it back
        raise
    return jsonify({"token": auth.issue_token(session, user), "expires_in": 12 * 3600})


@bp.get("/regions/<code>")
def region(code: str) -> Any:
    return jsonify(region_service.describe(get_session(), code))


@bp.get("/geocode")
def geocode() -> Any:
    tolerance_m = settings_of(current_app).snap_tolerance_m
    return jsonify(geocoder.geocode_query(get_session(), request.args, tolerance_m))


@bp.get("/matters")
def matters() -> Any:
    return jsonify(export_matters(get_session()))


@bp.post("/events")
def create_event() -> Any:
    user = require_user()
    body = _json_body()
    settings = settings_of(current_app)
    accuracy = body.get("accuracy_m")
    data = events.ReportInput(
        matter_code=str(body.get("matter_code") or ""),
        urgency=str(body.get("urgency") or "normal"),
        description=body.get("description") or "",
        lng=body.get("lng"),
        lat=body.get("lat"),
        client_key=body.get("client_key") or "",
        crs=str(body.get("crs") or "wgs84"),
        address=str(body.get("address") or ""),
        source=str(body.get("source") or ""),
        accuracy_m=float(accuracy) if isinstance(accuracy, int | float) else None,
        reporter_name=str(body.get("reporter_name") or ""),
        reporter_phone=str(body.get("reporter_phone") or ""),
    )
    session = get_session()
    outcome = unplaced.receive_report(
        session,
        user,
        data,
        tolerance_m=settings.snap_tolerance_m,
        duplicates=events.DuplicateRules.from_settings(settings),
    )
    if isinstance(outcome, unplaced.Receipt):
        # 属地兜底: kept for the county centre to place by hand (202: accepted, not yet an event).
        queued = unplaced.describe(session, outcome.report)
        return jsonify({**queued, "queued": True, "created": outcome.created}), 202
    return jsonify(_event_body(session, outcome)), 201 if outcome.created else 200


def _event_body(session: Session, result: events.ReportResult) -> dict[str, Any]:
    """Return the answer to a filed report: the event's place, deadline and duplicates."""
    e = result.event
    return {
        "id": e.id,
        "code": e.code,
        "state": e.state,
        "grid_code": e.grid_code,
        "village_name": region_service.name_of(session, e.village_code),
        "town_name": region_service.name_of(session, e.town_code),
        "deadline": eventdata.summary(e, load_calendar(session), _now())["deadline"],
        "duplicates": result.duplicates,
        "created": result.created,
    }


@bp.get("/unplaced")
def list_unplaced() -> Any:
    user = require_user()
    session = get_session()
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    per_page = min(max(request.args.get("per_page", 50, type=int) or 50, 1), 100)
    rows, total = unplaced.queue(
        session,
        user,
        request.args.get("status") or "queued",
        limit=per_page,
        offset=(page - 1) * per_page,
    )
    items = [unplaced.describe(session, r) for r in rows]
    return jsonify({"items": items, "total": total, "page": page, "per_page": per_page})


def _version(body: dict[str, Any]) -> int | None:
    version = body.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise Unprocessable("version 应为整数", code="bad_input", field="version")
    return version


@bp.post("/unplaced/<int:report_id>/place")
def place_unplaced(report_id: int) -> Any:
    user = require_user()
    body = _json_body()
    settings = settings_of(current_app)
    session = get_session()
    result = unplaced.place(
        session,
        user,
        report_id,
        lng=body.get("lng"),
        lat=body.get("lat"),
        crs=str(body.get("crs") or "wgs84"),
        place_text=str(body.get("place") or ""),
        expected_version=_version(body),
        tolerance_m=settings.snap_tolerance_m,
        duplicates=events.DuplicateRules.from_settings(settings),
    )
    report = unplaced.get_report(session, user, report_id)
    body_out = {"event": _event_body(session, result), **unplaced.describe(session, report)}
    return jsonify(body_out), 201 if result.created else 200


@bp.post("/unplaced/<int:report_id>/discard")
def discard_unplaced(report_id: int) -> Any:
    user = require_user()
    body = _json_body()
    session = get_session()
    report = unplaced.discard(
        session, user, report_id, body.get("reason"), expected_version=_version(body)
    )
    return jsonify(unplaced.describe(session, report))


@bp.get("/events")
def list_events() -> Any:
    user = require_user()
    session = get_session()
    flt = eventdata.EventFilter.from_args(request.args)
    return jsonify(eventdata.list_events(session, user, flt, load_calendar(session), _now()))


@bp.get("/events/<int:event_id>")
def get_event(event_id: int) -> Any:
    user = require_user()
    session = get_session()
    event = events.get_event(session, user, event_id)
    return jsonify(eventdata.detail(session, user, event, load_calendar(session), _now()))


@bp.post("/events/<int:event_id>/actions/<action>")
def act(event_id: int, action: str) -> Any:
    user = require_user()
    body = request.get_json(silent=True) if request.data else {}
    if not isinstance(body, dict):
        raise BadRequest("请求体应为 JSON 对象", code="bad_json")
    version = body.pop("version", None)
    if version is not None and not isinstance(version, int):
        raise Unprocessable("version 应为整数", code="bad_input", field="version")
    session = get_session()
    event = events.perform(
        session,
        user,
        event_id,
        action,
        body,
        expected_version=version,
        tolerance_m=settings_of(current_app).snap_tolerance_m,
    )
    return jsonify(eventdata.detail(session, user, event, load_calendar(session), _now()))


@bp.post("/events/<int:event_id>/attachments")
def upload(event_id: int) -> Any:
    user = require_user()
    file = request.files.get("file")
    if file is None:
        raise Unprocessable("请选择要上传的照片（字段 file）", code="missing_input", field="file")
    kind = request.form.get("kind", "evidence")
    settings = settings_of(current_app)
    attachment, created = events.attach_photo(
        get_session(),
        user,
        event_id,
        file.read(),
        kind,
        _photo_store(),
        max_bytes=settings.max_upload_mb * 1024 * 1024,
    )
    body = {
        "id": attachment.id,
        "kind": attachment.kind,
        "width": attachment.width,
        "height": attachment.height,
        "sha256": attachment.sha256,
        "created": created,
    }
    return jsonify(body), 201 if created else 200


@bp.get("/attachments/<int:attachment_id>")
def attachment_file(attachment_id: int) -> Any:
    user = require_user()
    session = get_session()
    attachment = session.get(Attachment, attachment_id)
    if attachment is None:
        raise NotFound("照片不存在", code="attachment_not_found")
    events.get_event(session, user, attachment.event_id)
    rel = attachment.thumb_path if request.args.get("thumb") else attachment.path
    return send_file(_photo_store().open(rel), mimetype="image/jpeg", max_age=3600)


@bp.get("/stats")
def get_stats() -> Any:
    from gridgov import stats  # local: the route was appended without touching shared imports

    user = require_user()
    now = _now()
    query = stats.parse_args(request.args, now)
    return jsonify(stats.compute(get_session(), user, **query, as_of=now))
