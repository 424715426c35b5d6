"""The Flask edge: per-request database session, error rendering, blueprints."""

from __future__ import annotations

import math
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException

from gridgov.audit import Actor, set_actor
from gridgov.errors import Conflict, GridGovError, Unauthorized
from gridgov.models import User


def get_session() -> Session:
    """Return this request's session (one commit per request, at the edge)."""
    if "db_session" not in g:
        g.db_session = current_app.extensions["gridgov.db"].sessions()
    return g.db_session


def page_arg() -> int:
    """Return this request's ?page= number (1 when absent, malformed or below 1)."""
    return max(request.args.get("page", 1, type=int) or 1, 1)


def page_count(total: int, per_page: int) -> int:
    """Return how many pages `total` rows fill, at least one."""
    return max(math.ceil(total / per_page), 1)


def current_user() -> User | None:
    """Return the signed-in user: from a Bearer token, else from the browser session."""
    if "user" in g:
        return g.user
    from flask import session as cookie

    from gridgov.auth import user_for_token

    db = get_session()
    user: User | None = None
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        user = user_for_token(db, header[7:].strip())
    elif cookie.get("user_id") is not None:
        user = db.get(User, cookie["user_id"])
        if user is not None and not user.active:
            user = None
    if user is not None:
        set_actor(db, Actor(user.id, user.username))
    g.user = user
    return user


def require_user() -> User:
    """Return the signed-in user or raise 401."""
    user = current_user()
    if user is None:
        raise Unauthorized("请先登录", code="unauthorized")
    return user


def _commit(response: Response) -> Response:
    session: Session | None = g.get("db_session")
    if session is not None:
        if response.status_code < 400:
            session.commit()
        else:
            session.rollback()
    return response


def _close(exc: BaseException | None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        if exc is not None:
            session.rollback()
        session.close()


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def _domain_error(exc: GridGovError) -> Any:
    if _wants_json():
        return jsonify(exc.to_dict()), exc.status
    from flask import render_template

    return render_template("error.html", error=exc), exc.status


_HTTP_MESSAGES = {
    400: "请求格式错误",
    401: "请先登录",
    403: "无权访问",
    404: "页面或资源不存在",
    405: "不支持该请求方法",
    413: "上传内容过大",
    429: "请求过于频繁",
}


def _http_error(exc: HTTPException) -> Any:
    if exc.code is None or exc.code < 400:
        return exc  # redirects raised as exceptions (e.g. RequestRedirect)
    error = GridGovError(
        _HTTP_MESSAGES.get(exc.code, "请求失败"),
        code=(exc.name or "error").lower().replace(" ", "_"),
    )
    error.status = exc.code
    return _domain_error(error)


def _stale(exc: StaleDataError) -> Any:
    return _domain_error(Conflict("事件已被他人更新，请刷新后重试", code="stale_version"))


def init_app(app: Flask) -> None:
    """Wire sessions, error handlers and blueprints into `app`."""
    app.after_request(_commit)
    app.teardown_request(_close)
    app.register_error_handler(GridGovError, _domain_error)
    app.register_error_handler(StaleDataError, _stale)
    app.register_error_handler(HTTPException, _http_error)

    from gridgov.web import api, pages

    app.register_blueprint(api.bp)
    app.register_blueprint(pages.bp)

    from gridgov.web import auth_pages, forms

    # Order matters: the session guard (idle timeout) runs before the CSRF check.
    app.register_blueprint(auth_pages.bp)
    app.register_blueprint(forms.bp)
    app.context_processor(pages.layout_context)

    from gridgov.web import maps_pages

    app.register_blueprint(maps_pages.mappage)
    app.register_blueprint(maps_pages.dashboard)

    from gridgov.web import desk

    app.register_blueprint(desk.bp)
    app.register_blueprint(desk.inbox_bp)
    app.register_blueprint(desk.event_bp)

    from gridgov.web import worker

    app.register_blueprint(worker.bp)

    from gridgov.web import admin

    app.register_blueprint(admin.bp)
