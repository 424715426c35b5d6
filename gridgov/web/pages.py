"""HTML pages: the home redirect, the regions overview, notices, and the page header's data."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, jsonify, redirect, render_template, request, url_for
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from gridgov import regions as region_service
from gridgov.db import utcnow
from gridgov.errors import Forbidden, NotFound
from gridgov.events import unread_notices
from gridgov.models import Notice, Region, Role, User
from gridgov.web import current_user, get_session, page_arg, page_count
from gridgov.web.auth_pages import home_for, page_user, safe_next
from gridgov.web.menu import active_item, menu_for

bp = Blueprint("pages", __name__)

LOCAL_TZ = ZoneInfo("Asia/Shanghai")
NOTICES_PER_PAGE = 50

NOTICE_KINDS = {
    "new_event": "新事件",
    "escalated": "上报",
    "dispatched": "派遣",
    "assist": "协办",
    "assist_note": "协办反馈",
    "returned": "退回",
    "extension": "延期申请",
    "extension_approved": "延期批准",
    "extension_refused": "延期驳回",
    "verify": "待核查",
    "rework": "返工",
    "close": "待结案",
    "supervise": "督办",
    "instruction": "批示",
}


@bp.app_template_filter("local_time")
def local_time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Format an instant in China Standard Time (every stored time is UTC)."""
    if value is None:
        return ""
    return value.astimezone(LOCAL_TZ).strftime(fmt)


def _jurisdiction(session: Session, code: str) -> list[str]:
    prefixes = [code[:n] for n in (6, 9, 12) if len(code) >= n]
    names = dict(
        session.execute(select(Region.code, Region.name).where(Region.code.in_(prefixes))).all()
    )
    return [names[p] for p in prefixes if p in names]


def describe_user(session: Session, user: User) -> dict[str, Any]:
    """Return what the page header shows about a user: name, role, unit, jurisdiction."""
    path = _jurisdiction(session, user.region_code)
    if user.department is not None:
        unit = user.department.name
    elif len(path) >= 2:
        unit = path[1]  # the town: a village grid worker belongs to the town's grid system
    else:
        unit = path[0] if path else user.region_code
    jurisdiction = " / ".join(path) or user.region_code
    role = Role(user.role)
    if role == Role.GRID_WORKER and user.grids:
        jurisdiction += f"（{len(user.grids)}\u00a0个网格）"
    return {
        "name": user.display_name,
        "username": user.username,
        "role": role.value,
        "role_label": role.label,
        "unit": unit,
        "jurisdiction": jurisdiction,
        "region_code": user.region_code,
        "home": home_for(user),
        "unread": unread_notices(session, user),
    }


def layout_context() -> dict[str, Any]:
    """Template globals for base.html: `me` (the signed-in user's header data) or None."""
    if request.path.startswith("/api/"):
        return {"me": None, "menu": [], "menu_active": None}
    user = current_user()
    if user is None:
        return {"me": None, "menu": [], "menu_active": None}
    menu = menu_for(user.role)
    return {
        "me": describe_user(get_session(), user),
        "menu": menu,
        "menu_active": active_item(menu, request.path),
    }


@bp.get("/")
def index() -> Any:
    user = current_user()
    if user is None:
        return redirect(url_for("auth.login"))
    return redirect(home_for(user))


@bp.get("/overview")
def overview() -> Any:
    page_user()
    counties = region_service.counties(get_session())
    return render_template("index.html", counties=counties)


@bp.get("/notices")
def notices() -> Any:
    user = page_user()
    session = get_session()
    page = page_arg()
    total = (
        session.scalar(select(func.count()).select_from(Notice).where(Notice.user_id == user.id))
        or 0
    )
    rows = session.scalars(
        select(Notice)
        .where(Notice.user_id == user.id)
        .order_by(Notice.created_at.desc(), Notice.id.desc())
        .limit(NOTICES_PER_PAGE)
        .offset((page - 1) * NOTICES_PER_PAGE)
    ).all()
    pages = page_count(total, NOTICES_PER_PAGE)
    return render_template(
        "notices/list.html",
        notices=rows,
        kinds=NOTICE_KINDS,
        page=page,
        pages=pages,
        total=total,
        unread=unread_notices(session, user),
    )


@bp.get("/notices/unread")
def notices_unread() -> Any:
    """Return the unread count as JSON (the header badge polls it)."""
    user = page_user()
    return jsonify({"unread": unread_notices(get_session(), user)})


def _own_notice(session: Session, user: User, notice_id: int) -> Notice:
    notice = session.get(Notice, notice_id)
    if notice is None:
        raise NotFound("通知不存在", code="notice_not_found")
    if notice.user_id != user.id:
        raise Forbidden("只能查看和处理自己的通知", code="not_your_notice")
    return notice


def _after_marking(session: Session, user: User) -> Any:
    if request.accept_mimetypes.best == "application/json":
        return jsonify({"unread": unread_notices(session, user)})
    return redirect(safe_next(request.form.get("next")) or url_for("pages.notices"))


@bp.post("/notices/<int:notice_id>/read")
def notice_read(notice_id: int) -> Any:
    user = page_user()
    session = get_session()
    notice = _own_notice(session, user, notice_id)
    if notice.read_at is None:
        notice.read_at = utcnow()
        session.flush()
    return _after_marking(session, user)


@bp.post("/notices/read-all")
def notices_read_all() -> Any:
    user = page_user()
    session = get_session()
    session.execute(
        update(Notice)
        .where(Notice.user_id == user.id, Notice.read_at.is_(None))
        .values(read_at=utcnow())
    )
    return _after_marking(session, user)
