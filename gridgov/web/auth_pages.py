"""Sign-in, sign-out, password change, the security policy page, and the session guard.

Browser sessions are Flask's signed cookie: ``user_id`` (who), ``seen`` (last activity, epoch
seconds) and ``csrf_token``. Before every request the guard ends a session idle longer than
the policy allows and sends a user whose password has expired to the change-password page.

Sign-in, sign-out, idle-timeout expiry and password changes are recorded in the audit chain
(gridgov.audit.record), with the client address and user agent attached to each request's
database session here. An idle session is seen to expire only when its browser comes back.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response

from gridgov import audit, security
from gridgov.auth import authenticate
from gridgov.db import utcnow
from gridgov.errors import Forbidden, Unauthorized, Unprocessable
from gridgov.models import Role, User
from gridgov.web import current_user, get_session
from gridgov.web.forms import Form, csrf_token

bp = Blueprint("auth", __name__)

SESSION_COOKIE_LIFETIME = timedelta(hours=12)
"""How long the browser keeps the cookie; the idle timeout (policy) ends sessions sooner."""

BACKGROUND_HEADER = "X-GG-Background"
"""Requests carrying this header (polling) do not count as activity for the idle timeout."""

HOME_PATHS: dict[Role, str] = {
    Role.GRID_WORKER: "/m/",
    Role.TOWN_OPERATOR: "/desk/",
    Role.COUNTY_DISPATCHER: "/desk/",
    Role.COUNTY_SHIFT_LEAD: "/desk/",
    Role.DEPT_HANDLER: "/inbox/",
    Role.LEADER: "/dashboard/",
    Role.SYS_ADMIN: "/admin/",
    Role.SEC_ADMIN: "/admin/security",
    Role.AUDIT_ADMIN: "/admin/audit",
}

_GUARD_EXEMPT = frozenset({"static", "auth.login", "auth.logout"})
_EXPIRED_ALLOWED = frozenset({"auth.change_password"})


@bp.record_once
def _configure(state: Any) -> None:
    state.app.config["PERMANENT_SESSION_LIFETIME"] = SESSION_COOKIE_LIFETIME


def home_for(user: User) -> str:
    """Return the path of the user's own work page (where sign-in lands)."""
    return HOME_PATHS[Role(user.role)]


def safe_next(target: str | None) -> str | None:
    """Return `target` if it is a path on this site, else None (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def _is_api() -> bool:
    """Return whether the caller wants JSON: an /api/ path, or gg.api's Accept header."""
    return request.path.startswith("/api/") or (request.accept_mimetypes.best == "application/json")


def _json_error(status: int, code: str, message: str) -> Response:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


def _login_url(**args: Any) -> str:
    if request.method == "GET" and request.endpoint != "pages.index":
        args.setdefault("next", request.full_path.rstrip("?"))
    return url_for("auth.login", **args)


def page_user() -> User:
    """Return the signed-in user, or send the browser to the sign-in page and back after."""
    user = current_user()
    if user is None:
        abort(_json_error(401, "unauthorized", "请先登录") if _is_api() else redirect(_login_url()))
    return user


def require_role(*roles: Role) -> User:
    """Return the signed-in user if they have one of `roles`; 403 page otherwise."""
    user = page_user()
    if Role(user.role) not in roles:
        labels = "、".join(r.label for r in roles)
        raise Forbidden(f"此页面仅限{labels}使用", code="role_not_allowed")
    return user


def _start_session(user: User) -> None:
    session.clear()
    session.permanent = True
    session["user_id"] = user.id
    session["seen"] = int(time.time())
    csrf_token()


def request_client() -> audit.Client:
    """Return who is calling, as the audit log records it (peer address, user agent)."""
    return audit.Client.of(
        request.remote_addr,
        request.user_agent.string,
        "api" if request.path.startswith("/api/") else "web",
        request.headers.get("X-Forwarded-For", ""),
    )


@bp.before_app_request
def note_client() -> None:
    """Attach the caller to this request's database session for sign-in audit records."""
    if request.endpoint != "static":
        audit.set_client(get_session(), request_client())


def _record_expiry(user_id: Any, idle_seconds: int, idle_minutes: int) -> None:
    db = get_session()
    user = db.get(User, user_id) if isinstance(user_id, int) else None
    if user is None:
        return
    audit.record_account(
        db,
        "session_expired",
        user,
        reason="idle_timeout",
        idle_seconds=idle_seconds,
        idle_minutes=idle_minutes,
    )


@bp.before_app_request
def guard_session() -> Any:
    """End idle browser sessions; keep users with an expired password on the change page.

    Registered before the CSRF check, so a form posted after the timeout leads to the
    sign-in page with 会话已超时 rather than to a CSRF error.
    """
    if request.endpoint in _GUARD_EXEMPT or session.get("user_id") is None:
        return None
    if request.headers.get("Authorization", "").startswith("Bearer "):
        return None  # the token, not the cookie, identifies this caller
    policy = security.get_policy(get_session())
    now = int(time.time())
    seen = session.get("seen", now)
    if now - int(seen) > policy.idle_minutes * 60:
        _record_expiry(session.get("user_id"), now - int(seen), policy.idle_minutes)
        get_session().commit()  # the 401 / redirect below must not roll the record back
        session.clear()
        if _is_api():
            return _json_error(401, "session_expired", "会话已超时，请重新登录")
        return redirect(_login_url(timeout=1))
    if not request.headers.get(BACKGROUND_HEADER):
        session["seen"] = now
    if request.endpoint in _EXPIRED_ALLOWED:
        return None
    user = current_user()
    if user is not None and security.password_expired(policy, user, utcnow()):
        if _is_api():
            return _json_error(403, "password_expired", "密码已过期，请先修改密码")
        return redirect(url_for("auth.change_password"))
    return None


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    next_url = safe_next(request.values.get("next"))
    if request.method == "GET":
        user = current_user()
        if user is not None:
            return redirect(next_url or home_for(user))
        notice = ""
        if request.args.get("timeout"):
            notice = "会话已超时，请重新登录"
        elif request.args.get("logged_out"):
            notice = "您已安全退出"
        return render_template("auth/login.html", form=Form(), next=next_url, notice=notice)

    form = Form.from_request(secret=("password",))
    username = form.required("username", "用户名", max_length=64)
    password = form.text("password")
    if not password:
        form.add_error("password", "请输入密码")
    if not form.ok:
        return render_template("auth/login.html", form=form, next=next_url), 422
    db = get_session()
    try:
        user = authenticate(db, username, password)
    except Unauthorized as exc:
        db.commit()  # keep the failure count: the error response would roll it back
        form.add_error("", exc.message)
        return render_template("auth/login.html", form=form, next=next_url), 401
    _start_session(user)
    if security.password_expired(security.get_policy(db), user, utcnow()):
        flash("您的密码已过期，请先修改密码", "warning")
        return redirect(url_for("auth.change_password"))
    return redirect(next_url or home_for(user))


@bp.post("/logout")
def logout() -> Response:
    user = current_user()
    if user is not None:
        audit.record_account(get_session(), "logout", user)
    session.clear()
    return redirect(url_for("auth.login", logged_out=1))


@bp.route("/account/password", methods=["GET", "POST"])
def change_password() -> Any:
    user = page_user()
    db = get_session()
    policy = security.get_policy(db)
    expired = security.password_expired(policy, user, utcnow())
    form = Form()
    if request.method == "POST":
        form = Form.from_request(secret=("current_password", "new_password", "confirm_password"))
        try:
            security.change_password(
                db,
                user,
                form.text("current_password"),
                form.text("new_password"),
                form.text("confirm_password"),
                utcnow(),
            )
        except Unprocessable as exc:
            db.commit()  # keep the failed attempt's audit record: the 422 would roll it back
            form.add_error_from(exc)
        else:
            flash("密码已修改", "success")
            return redirect(home_for(user))
    status = 200 if form.ok else 422
    page = render_template(
        "auth/password.html", form=form, rules=policy.describe(), expired=expired
    )
    return page, status


@bp.route("/admin/security", methods=["GET", "POST"])
def security_policy() -> Any:
    require_role(Role.SEC_ADMIN)
    db = get_session()
    policy = security.get_policy(db)
    names = security.policy_fields()
    if request.method == "POST":
        form = Form.from_request()
        try:
            security.set_policy(db, **{name: form.text(name) for name in names})
        except Unprocessable as exc:
            form.add_error_from(exc)
        else:
            flash("安全策略已保存", "success")
            return redirect(url_for("auth.security_policy"))
    else:
        form = Form({name: str(getattr(policy, name)) for name in names})
    page = render_template(
        "auth/security.html",
        form=form,
        policy=policy,
        defaults=security.DEFAULT_POLICY,
        labels=security.FIELD_LABELS,
        limits=security.LIMITS,
        names=names,
    )
    return page, 200 if form.ok else 422
