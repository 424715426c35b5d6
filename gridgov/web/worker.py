"""The grid worker's phone pages under /m/: report, my reports, verification tasks, upload queue.

The pages are server-rendered and enhanced by static/js/worker/*: the report is sent by the
phone through an IndexedDB outbox (idempotent by client key, retried until the server has the
event and every photo), and a service worker with scope /m/ keeps the report page usable
offline. A plain form POST to /m/report still works without JavaScript.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from shapely.geometry.base import BaseGeometry
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gridgov import eventdata, events, settings_of
from gridgov.access import can_view
from gridgov.calendar_store import load_calendar
from gridgov.config import ROOT
from gridgov.db import utcnow
from gridgov.errors import GridGovError, Unprocessable
from gridgov.models import (
    STATE_LABELS,
    Event,
    EventState,
    Grid,
    GridSet,
    HolderLevel,
    Level,
    Matter,
    MatterCategory,
    Region,
    Role,
    Urgency,
    User,
)
from gridgov.photos import PhotoStore
from gridgov.web import get_session, page_arg, page_count
from gridgov.web.auth_pages import require_role
from gridgov.web.forms import Form, csrf_token
from gridgov.workflow.machine import TRANSITIONS
from gridgov.workflow.worktime import SHANGHAI

bp = Blueprint("worker", __name__, url_prefix="/m")

REPORTS_PER_PAGE = 20
NEARBY_LIMIT = 5
GEOJSON_DECIMALS = 6

URGENCY_CHOICES = [(u.value, u.label) for u in (Urgency.NORMAL, Urgency.PRESSING, Urgency.URGENT)]
"""一般 first: the default a grid worker changes only when it matters."""

ACTION_LABELS = {"report": "上报", **{name: t.label for name, t in TRANSITIONS.items()}}
LIGHT_LABELS = {
    "green": "正常",
    "yellow": "临期",
    "red": "超期",
    "done": "已结束",
    "paused": "挂账暂停",
}

SW_SOURCE = ROOT / "static" / "js" / "worker" / "sw.js"
OFFLINE_ASSETS = (
    "app.css",
    "css/worker.css",
    "js/app.js",
    "js/worker/idb.js",
    "js/worker/photos.js",
    "js/worker/outbox.js",
    "js/worker/shell.js",
    "js/worker/report.js",
    "js/worker/queue-page.js",
    "vendor/leaflet/leaflet.css",
    "vendor/leaflet/leaflet.js",
)
"""Static files the service worker keeps for offline use (paths under /static/)."""
OFFLINE_PAGES = ("/m/", "/m/report", "/m/queue", "/m/offline", "/m/grids.geojson")
"""Pages the service worker keeps (refreshed whenever they load online)."""

_PUBLIC_ENDPOINTS = frozenset({"worker.service_worker"})
_JSON_ENDPOINTS = frozenset(
    {"worker.grids_geojson", "worker.nearby", "worker.session_info", "worker.service_worker"}
)


# ---------------------------------------------------------------------------
# Guard, errors, formatting


@bp.app_template_filter("worker_time")
def worker_time(value: str | datetime | None) -> str:
    """Format an instant (ISO text or datetime) as short Beijing time: 11-23 17:30."""
    if not value:
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    local = moment.astimezone(SHANGHAI)
    if local.year != datetime.now(SHANGHAI).year:
        return local.strftime("%Y-%m-%d %H:%M")
    return local.strftime("%m-%d %H:%M")


@bp.before_request
def _grid_workers_only() -> None:
    if request.endpoint not in _PUBLIC_ENDPOINTS:
        require_role(Role.GRID_WORKER)


@bp.errorhandler(GridGovError)
def _error(exc: GridGovError) -> Any:
    if request.endpoint in _JSON_ENDPOINTS or request.accept_mimetypes.best == "application/json":
        return jsonify(exc.to_dict()), exc.status
    return render_template("error.html", error=exc), exc.status


def _me() -> User:
    return require_role(Role.GRID_WORKER)


def _town_code(user: User) -> str:
    return user.region_code[:9]


# ---------------------------------------------------------------------------
# Home


@bp.get("/")
def home() -> Any:
    user = _me()
    session = get_session()
    open_states = [s.value for s in EventState if s.is_open]
    open_reports = session.scalar(
        select(func.count())
        .select_from(Event)
        .where(Event.reporter_id == user.id, Event.state.in_(open_states))
    )
    return render_template(
        "worker/home.html",
        open_reports=open_reports or 0,
        tasks=_task_count(session, user),
        grids=_grid_names(session, user),
    )


def _tasks_query(user: User) -> Any:
    return select(Event).where(
        Event.holder_level == HolderLevel.GRID_WORKER.value,
        Event.holder_user_id == user.id,
        Event.state == EventState.HANDLED.value,
    )


def _task_count(session: Session, user: User) -> int:
    query = _tasks_query(user).with_only_columns(func.count())
    return session.scalar(query) or 0


def _active_grids(session: Session, user: User) -> list[Grid]:
    codes = user.grid_codes
    if not codes:
        return []
    return list(
        session.scalars(
            select(Grid)
            .join(GridSet, GridSet.id == Grid.grid_set_id)
            .where(GridSet.active.is_(True), Grid.code.in_(codes))
            .order_by(Grid.code)
        )
    )


def _grid_names(session: Session, user: User) -> list[str]:
    return [g.name for g in _active_grids(session, user)]


# ---------------------------------------------------------------------------
# Report


def _matter_groups(session: Session) -> list[dict[str, Any]]:
    groups = []
    for category in session.scalars(
        select(MatterCategory).order_by(MatterCategory.sort, MatterCategory.code)
    ):
        matters = [
            {
                "code": m.code,
                "name": m.name,
                "self_handle": m.self_handle_allowed,
                "photo_required": m.photo_required,
            }
            for m in category.matters
            if m.active
        ]
        if matters:
            groups.append({"code": category.code, "name": category.name, "matters": matters})
    return groups


def _villages(session: Session, user: User) -> list[dict[str, str]]:
    town = session.get(Region, _town_code(user))
    rows = session.execute(
        select(Region.code, Region.name)
        .where(Region.level == Level.VILLAGE.value, Region.parent_code == _town_code(user))
        .order_by(Region.code)
    ).all()
    own = {code[:12] for code in user.grid_codes}
    villages = [
        {"code": r.code, "name": r.name, "query": f"{town.name if town else ''}{r.name}"}
        for r in rows
    ]
    return sorted(villages, key=lambda v: (v["code"] not in own, v["code"]))


def _report_context(session: Session, user: User, form: Form) -> dict[str, Any]:
    town = session.get(Region, _town_code(user))
    groups = _matter_groups(session)
    return {
        "form": form,
        "groups": groups,
        "urgencies": URGENCY_CHOICES,
        "villages": _villages(session, user),
        "town_code": _town_code(user),
        "town_name": town.name if town else "",
        "own_grids": user.grid_codes,
        "page_data": {
            "groups": groups,
            "townCode": _town_code(user),
            "townName": town.name if town else "",
            "ownGrids": user.grid_codes,
            "username": user.username,
        },
    }


@bp.get("/report")
def report() -> Any:
    user = _me()
    form = Form({"urgency": Urgency.NORMAL.value, "client_key": str(uuid.uuid4())})
    return render_template("worker/report.html", **_report_context(get_session(), user, form))


@bp.post("/report")
def report_submit() -> Any:
    """File a report from the plain HTML form (the page's script normally sends it itself)."""
    user = _me()
    session = get_session()
    form = Form.from_request()
    data = _parse_report(session, user, form)
    photos = [f for f in request.files.getlist("photos") if f and f.filename]
    if form.ok and data is not None:
        try:
            settings = settings_of(current_app)
            result = events.report_event(
                session,
                user,
                data,
                tolerance_m=settings.snap_tolerance_m,
                duplicates=events.DuplicateRules.from_settings(settings),
            )
            store = _photo_store()
            max_bytes = settings.max_upload_mb * 1024 * 1024
            for photo in photos:
                content = photo.read()
                events.attach_photo(
                    session, user, result.event.id, content, "evidence", store, max_bytes=max_bytes
                )
        except GridGovError as exc:
            session.rollback()
            form.add_error_from(_location_error(exc))
        else:
            flash(f"上报成功：事件编号 {result.event.code}", "success")
            return redirect(url_for("worker.event_page", event_id=result.event.id))
    if photos and not form.ok:
        form.add_error("photos", "照片未上传，请重新选择照片")
    context = _report_context(session, user, form)
    return render_template("worker/report.html", **context), 422


def _parse_report(session: Session, user: User, form: Form) -> events.ReportInput | None:
    codes = session.scalars(select(Matter.code).where(Matter.active.is_(True))).all()
    matter = form.choice("matter_code", "事项", codes)
    urgency = form.choice("urgency", "紧急程度", [u.value for u in Urgency])
    description = form.required("description", "事件描述", max_length=2000)
    address = form.optional("address", "地点说明", max_length=200)
    lng, lat = _number(form.text("lng")), _number(form.text("lat"))
    accuracy = _number(form.text("accuracy_m"))
    if (lng is None or lat is None) and form.text("village"):
        point = _village_point(session, user, form.text("village"))
        if point is None:
            form.add_error("location", "所选村（社区）不在您的辖区内或没有位置数据")
        else:
            (lng, lat), accuracy = point, None
    if lng is None or lat is None:
        form.add_error(
            "location", "请确定事件位置：允许手机定位，或在地图上点选，或选择所在村（社区）"
        )
    client_key = form.text("client_key") or str(uuid.uuid4())
    form.data["client_key"] = client_key
    if not form.ok:
        return None
    return events.ReportInput(
        matter_code=matter,
        urgency=urgency,
        description=description,
        lng=lng,
        lat=lat,
        client_key=client_key[:64],
        address=address,
        accuracy_m=accuracy,
    )


def _village_point(session: Session, user: User, code: str) -> tuple[float, float] | None:
    """Return a representative point of a village of the worker's town."""
    village = session.get(Region, code)
    if (
        village is None
        or village.level != Level.VILLAGE.value
        or village.parent_code != _town_code(user)
        or village.geom is None
        or village.geom.is_empty
    ):
        return None
    point = village.geom.representative_point()
    return point.x, point.y


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _location_error(exc: GridGovError) -> GridGovError:
    """Show position problems (outside every grid, outside the town) at the location field."""
    field = (exc.details or {}).get("field")
    if exc.code in ("outside_jurisdiction", "bad_coordinates") or field in ("lng", "lat"):
        exc.details = {**(exc.details or {}), "field": "location"}
    return exc


def _photo_store() -> PhotoStore:
    folder = settings_of(current_app).upload_folder
    assert folder is not None
    return PhotoStore(folder)


# ---------------------------------------------------------------------------
# JSON for the report page: the worker's grids, nearby events, the session


def _rounded(geom: BaseGeometry) -> dict[str, Any]:
    geom = shapely.transform(geom, lambda xy: np.round(xy, GEOJSON_DECIMALS))
    result: dict[str, Any] = json.loads(shapely.to_geojson(geom))
    return result


@bp.get("/grids.geojson")
def grids_geojson() -> Any:
    """Return the worker's own grids and the outlines of their villages (WGS84 GeoJSON)."""
    user = _me()
    session = get_session()
    grids = _active_grids(session, user)
    features = []
    village_codes = sorted({g.village_code for g in grids})
    for village in session.scalars(select(Region).where(Region.code.in_(village_codes))):
        if village.geom is not None and not village.geom.is_empty:
            features.append(
                {
                    "type": "Feature",
                    "geometry": _rounded(village.geom),
                    "properties": {"kind": "village", "code": village.code, "name": village.name},
                }
            )
    for grid in grids:
        features.append(
            {
                "type": "Feature",
                "geometry": _rounded(grid.geom),
                "properties": {
                    "kind": "grid",
                    "code": grid.code,
                    "name": grid.name,
                    "village_code": grid.village_code,
                },
            }
        )
    response = jsonify({"type": "FeatureCollection", "features": features})
    response.mimetype = "application/geo+json"
    return response


@bp.get("/nearby")
def nearby() -> Any:
    """Return open events of a matter within the duplicate radius of a point (附近类似事件)."""
    user = _me()
    session = get_session()
    matter_code = (request.args.get("matter") or "").strip()
    errors: dict[str, str] = {}
    if not matter_code:
        errors["matter"] = "请先选择事项"
    elif session.get(Matter, matter_code) is None:
        errors["matter"] = "事项不存在"
    lng = _number(request.args.get("lng", ""))
    lat = _number(request.args.get("lat", ""))
    if lng is None or not -180 <= lng <= 180:
        errors["lng"] = "经度应为 -180 到 180 之间的数字"
    if lat is None or not -90 <= lat <= 90:
        errors["lat"] = "纬度应为 -90 到 90 之间的数字"
    if errors:
        raise Unprocessable(
            "；".join(errors.values()),
            code="bad_parameter",
            fields=errors,
            field=next(iter(errors)),
        )
    assert lng is not None and lat is not None
    rules = events.DuplicateRules.from_settings(settings_of(current_app))
    found = events.find_nearby(session, matter_code, lng, lat, utcnow(), rules)
    by_id = {
        e.id: e for e in session.scalars(select(Event).where(Event.id.in_(f["id"] for f in found)))
    }
    items = []
    for item in found:
        event = by_id[item["id"]]
        visible = can_view(user, event)
        if not visible and event.town_code != _town_code(user):
            continue  # another town's event: not even its existence is the worker's business
        items.append(
            {
                **item,
                "state_label": STATE_LABELS[EventState(event.state)],
                "can_add": visible and EventState(event.state).is_open,
                "mine": event.reporter_id == user.id,
                "url": url_for("worker.event_page", event_id=event.id) if visible else None,
                "description": item["description"] if visible else "",
            }
        )
    return jsonify({"items": items[:NEARBY_LIMIT], "radius_m": rules.radius_m})


@bp.get("/session")
def session_info() -> Any:
    """Tell the upload queue who is signed in, with a fresh CSRF token (the page may be cached)."""
    user = _me()
    return jsonify({"username": user.username, "csrf_token": csrf_token()})


# ---------------------------------------------------------------------------
# My reports, one event, verification tasks, the queue


@bp.get("/reports")
def reports() -> Any:
    user = _me()
    session = get_session()
    page = page_arg()
    base = select(Event).where(Event.reporter_id == user.id)
    total = session.scalar(base.with_only_columns(func.count())) or 0
    rows = session.scalars(
        base.order_by(Event.reported_at.desc(), Event.id.desc())
        .limit(REPORTS_PER_PAGE)
        .offset((page - 1) * REPORTS_PER_PAGE)
    ).all()
    calendar, now, names = load_calendar(session), utcnow(), eventdata.Names.load(session)
    items = [eventdata.summary(e, calendar, now, names) for e in rows]
    pages = page_count(total, REPORTS_PER_PAGE)
    return render_template(
        "worker/reports.html",
        items=items,
        total=total,
        page=page,
        pages=pages,
        light_labels=LIGHT_LABELS,
    )


def _split_photos(body: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Sort an event's photos: scene/before (report), after (handling), verification."""
    actions = {h["id"]: h["action"] for h in body["history"]}
    groups: dict[str, list[dict[str, Any]]] = {"before": [], "after": [], "verify": []}
    for photo in body["photos"]:
        action = actions.get(photo["action_id"]) if photo["action_id"] else None
        if action in ("verify_fail", "verify_pass"):
            groups["verify"].append(photo)
        elif photo["kind"] == "after":
            groups["after"].append(photo)
        else:
            groups["before"].append(photo)
    return groups


@bp.get("/events/<int:event_id>")
def event_page(event_id: int) -> Any:
    user = _me()
    session = get_session()
    event = events.get_event(session, user, event_id)
    body = eventdata.detail(session, user, event, load_calendar(session), utcnow())
    return render_template(
        "worker/event.html",
        e=body,
        photos=_split_photos(body),
        action_labels=ACTION_LABELS,
        light_labels=LIGHT_LABELS,
        urgency_labels=dict(URGENCY_CHOICES),
    )


@bp.get("/tasks")
def tasks() -> Any:
    user = _me()
    session = get_session()
    calendar, now = load_calendar(session), utcnow()
    rows = session.scalars(_tasks_query(user).order_by(Event.stage_due_at, Event.id)).all()
    items = []
    for event in rows:
        body = eventdata.detail(session, user, event, calendar, now)
        handling = [h for h in body["history"] if h["action"] in ("handle", "self_handle")]
        items.append({"e": body, "photos": _split_photos(body), "handling": handling[-1:]})
    return render_template("worker/tasks.html", items=items, light_labels=LIGHT_LABELS)


@bp.get("/queue")
def queue() -> Any:
    _me()
    return render_template("worker/queue.html")


@bp.get("/offline")
def offline() -> Any:
    _me()
    return render_template("worker/offline.html")


# ---------------------------------------------------------------------------
# The service worker (scope /m/)


@lru_cache(maxsize=8)
def _assets_version(stamps: tuple[tuple[str, int, int], ...]) -> str:
    """Return a short hash of the service worker and every file it caches."""
    digest = hashlib.sha256(SW_SOURCE.read_bytes())
    for name, _mtime, _size in stamps:
        digest.update(name.encode())
        digest.update((ROOT / "static" / name).read_bytes())
    return digest.hexdigest()[:12]


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


@bp.get("/sw.js")
def service_worker() -> Response:
    """Serve the service worker, versioned by the content of everything it caches."""
    stamps = tuple((name, *_stamp(ROOT / "static" / name)) for name in OFFLINE_ASSETS)
    version = _assets_version((*stamps, ("js/worker/sw.js", *_stamp(SW_SOURCE))))
    assets = [url_for("static", filename=name) for name in OFFLINE_ASSETS]
    source = (
        SW_SOURCE.read_text(encoding="utf-8")
        .replace("__VERSION__", version)
        .replace('"__ASSETS__"', json.dumps(assets))
        .replace('"__PAGES__"', json.dumps(list(OFFLINE_PAGES)))
    )
    response = Response(source, mimetype="text/javascript")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Service-Worker-Allowed"] = "/m/"
    return response
