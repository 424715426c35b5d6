"""Administration pages (三员分立): system, security and audit administrators.

/admin/…            system administrator: overview, users, departments, matter list, holidays,
                    grid data
/admin/accounts     security administrator: roles, lockouts, forced password changes, status
/admin/audit        audit administrator: the audit log, read only, and its integrity check
(/admin/security, the security policy, lives in gridgov.web.auth_pages.)

Each view checks the role, parses the request and calls one operation of gridgov.admin_ops,
which holds the guards; a refused form is rendered again with the input kept (422).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

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
from sqlalchemy import func, select

from gridgov import admin_ops as ops
from gridgov import catalog, security
from gridgov.audit import AUTH_KINDS
from gridgov.db import utcnow
from gridgov.errors import NotFound, Unprocessable
from gridgov.models import (
    ROLE_LABELS,
    CalendarYear,
    Department,
    Level,
    Matter,
    MatterCategory,
    Role,
    Stage,
    Urgency,
    User,
)
from gridgov.regions import active_grid_set
from gridgov.web import get_session, page_arg, page_count
from gridgov.web.auth_pages import require_role, safe_next
from gridgov.web.forms import Form

bp = Blueprint("admin", __name__, url_prefix="/admin")

LOCAL_TZ = ZoneInfo("Asia/Shanghai")
SYS = Role.SYS_ADMIN
SEC = Role.SEC_ADMIN
AUDIT = Role.AUDIT_ADMIN
HOLIDAY_ROWS = 8
WORKDAY_ROWS = 6
HOLIDAY_NAMES = ("元旦", "春节", "清明节", "劳动节", "端午节", "中秋节", "国庆节")


@bp.context_processor
def _labels() -> dict[str, Any]:
    return {"role_label": lambda role: ROLE_LABELS.get(role, role)}


def _filter_args(filters: Any) -> dict[str, str]:
    """Return a filter dataclass's non-empty fields as query arguments (for the pager)."""
    return {k: str(v) for k, v in asdict(filters).items() if v}


def _today() -> date:
    return datetime.now(LOCAL_TZ).date()


def _refuse(form: Form, exc: Unprocessable) -> None:
    """Record a refused operation on the form: per field, plus one line for the whole form."""
    form.add_error_from(exc)
    if exc.details.get("fields"):
        what = exc.message.split("：", 1)[0]
        form.add_error("", f"{what}：请修改下面标出的内容")


def _render(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    return render_template(template, **context), status


def _uploads() -> ops.GridUploads:
    settings = current_app.extensions["gridgov.settings"]
    return ops.GridUploads(Path(settings.upload_folder) / "imports")


# ---------------------------------------------------------------- overview


@bp.get("/")
def index() -> Any:
    actor = require_role(SYS)
    session = get_session()
    area = actor.region_code
    users = dict(
        session.execute(
            select(User.active, func.count())
            .where(User.region_code.startswith(area))
            .group_by(User.active)
        ).all()
    )
    departments = session.scalar(
        select(func.count())
        .select_from(Department)
        .where(Department.region_code.startswith(area), Department.active.is_(True))
    )
    matters = session.scalar(
        select(func.count()).select_from(Matter).where(Matter.active.is_(True))
    )
    categories = session.scalar(select(func.count()).select_from(MatterCategory))
    grid_set = active_grid_set(session, area[:6])
    years = session.scalars(select(CalendarYear.year).order_by(CalendarYear.year)).all()
    return render_template(
        "admin/index.html",
        active_users=users.get(True, 0),
        inactive_users=users.get(False, 0),
        departments=departments or 0,
        matters=matters or 0,
        categories=categories or 0,
        grid_set=grid_set,
        years=years,
        warnings=ops.calendar_warnings(session, _today()),
    )


# ---------------------------------------------------------------- users (system administrator)


def _user_filter() -> ops.UserFilter:
    return ops.UserFilter(
        q=request.args.get("q", "").strip()[:64],
        role=request.args.get("role", ""),
        region=request.args.get("region", ""),
        status=request.args.get("status", ""),
    )


def _user_list(actor: User, now: datetime) -> dict[str, Any]:
    """Return the template context of a filtered, paged user list (users and accounts)."""
    session = get_session()
    filters = _user_filter()
    page = page_arg()
    rows, total = ops.search_users(session, actor, filters, page, now)
    return {
        "rows": rows,
        "total": total,
        "page": page,
        "pages": page_count(total, ops.PER_PAGE),
        "filters": filters,
        "args": _filter_args(filters),
        "roles": list(Role),
        "towns": ops.regions_under(session, actor.region_code, (Level.COUNTY, Level.TOWN)),
        "paths": {u.id: ops.region_path(session, u.region_code) for u in rows},
        "now": now,
    }


@bp.get("/users")
def users() -> Any:
    actor = require_role(SYS)
    listing = _user_list(actor, utcnow())
    return render_template(
        "admin/users.html",
        **listing,
        may_edit={u.id: ops.sys_admin_may_edit(actor, u) for u in listing["rows"]},
    )


def _user_input(form: Form) -> ops.UserInput:
    return ops.UserInput(
        username=form.text("username"),
        display_name=form.text("display_name"),
        role=form.text("role"),
        region_code=form.text("region_code"),
        department_id=form.text("department_id"),
        grid_codes=form.values("grid_codes"),
        phone=form.text("phone"),
        active=form.text("active") == "1",
        password=form.text("password"),
        confirm_password=form.text("confirm_password"),
    )


def _user_form(
    actor: User, form: Form, *, user: User | None = None, status: int = 200
) -> tuple[str, int]:
    session = get_session()
    role = Role(user.role) if user is not None else None
    region = form.text("region_code")
    current_dept = user.department_id if user is not None else None
    departments = [
        d for d in ops.departments_in(session, actor) if d.active or d.id == current_dept
    ]
    regions = ops.regions_under(session, actor.region_code)
    return _render(
        "admin/user_form.html",
        status,
        form=form,
        user=user,
        role=role,
        role_options=[(r.value, r.label) for r in ops.BUSINESS_ROLES],
        role_levels={r.value: [lv.value for lv in ops.ROLE_LEVELS[r]] for r in ops.BUSINESS_ROLES},
        regions=regions,
        region_names={r.code: r.name for r in regions},
        departments=departments,
        grids=ops.village_grids(session, region),
        rules=security.get_policy(session).describe(),
    )


@bp.route("/users/new", methods=["GET", "POST"])
def user_new() -> Any:
    actor = require_role(SYS)
    if request.method == "GET":
        return _user_form(actor, Form({"active": "1"}))
    form = Form.from_request(secret=("password", "confirm_password"))
    try:
        user = ops.create_user(get_session(), actor, _user_input(form))
    except Unprocessable as exc:
        _refuse(form, exc)
        return _user_form(actor, form, status=422)
    flash(f"用户 {user.username}（{user.display_name}）已创建；首次登录须修改初始密码", "success")
    return redirect(url_for("admin.users", q=user.username))


@bp.get("/users/grids")
def user_grids() -> Response:
    """The active grids of a village, for the user form's grid picker."""
    actor = require_role(SYS)
    village = request.args.get("village", "")
    grids = ops.village_grids(get_session(), village) if ops.in_jurisdiction(actor, village) else []
    return jsonify({"grids": [{"code": code, "name": name} for code, name in grids]})


@bp.route("/users/<int:user_id>", methods=["GET", "POST"])
def user_edit(user_id: int) -> Any:
    actor = require_role(SYS)
    session = get_session()
    user = ops.get_user(session, actor, user_id)
    ops.check_business_account(actor, user)
    if request.method == "GET":
        form = Form(
            {
                "display_name": user.display_name,
                "region_code": user.region_code,
                "department_id": str(user.department_id or ""),
                "grid_codes": user.grid_codes,
                "phone": user.phone,
                "active": "1" if user.active else "",
            }
        )
        return _user_form(actor, form, user=user)
    form = Form.from_request(secret=("password", "confirm_password"))
    try:
        ops.update_user(session, actor, user, _user_input(form))
    except Unprocessable as exc:
        _refuse(form, exc)
        return _user_form(actor, form, user=user, status=422)
    flash(f"用户 {user.username} 已保存", "success")
    return redirect(url_for("admin.users", q=user.username))


@bp.post("/users/<int:user_id>/active")
def user_active(user_id: int) -> Any:
    actor = require_role(SYS)
    session = get_session()
    user = ops.get_user(session, actor, user_id)
    active = request.form.get("active") == "1"
    ops.set_user_active(session, actor, user, active)
    flash(f"用户 {user.username} 已{'启用' if active else '停用'}", "success")
    return redirect(safe_next(request.form.get("next")) or url_for("admin.users"))


# ---------------------------------------------------------------- departments


@bp.get("/departments")
def departments() -> Any:
    actor = require_role(SYS)
    session = get_session()
    region = request.args.get("region", "")
    rows = ops.departments_in(session, actor, region)
    return render_template(
        "admin/departments.html",
        rows=rows,
        region=region,
        towns=ops.regions_under(session, actor.region_code, (Level.COUNTY, Level.TOWN)),
        names={r.code: r.name for r in ops.regions_under(session, actor.region_code)},
        staff=ops.department_staff(session, [d.id for d in rows]),
        kinds=catalog.kind_labels(),
    )


def _department_form(
    actor: User, form: Form, *, dept: Department | None = None, status: int = 200
) -> tuple[str, int]:
    session = get_session()
    return _render(
        "admin/department_form.html",
        status,
        form=form,
        dept=dept,
        regions=ops.regions_under(session, actor.region_code, (Level.COUNTY, Level.TOWN)),
        kinds=ops.department_kind_choices(),
        labels=catalog.kind_labels(),
        region_name=ops.region_path(session, dept.region_code) if dept else "",
    )


@bp.route("/departments/new", methods=["GET", "POST"])
def department_new() -> Any:
    actor = require_role(SYS)
    if request.method == "GET":
        return _department_form(actor, Form({"region_code": request.args.get("region", "")}))
    form = Form.from_request()
    try:
        dept = ops.create_department(
            get_session(),
            actor,
            name=form.text("name"),
            kind=form.text("kind"),
            region_code=form.text("region_code"),
        )
    except Unprocessable as exc:
        _refuse(form, exc)
        return _department_form(actor, form, status=422)
    flash(f"部门“{dept.name}”已创建（代码 {dept.code}）", "success")
    return redirect(url_for("admin.departments", region=dept.region_code))


@bp.route("/departments/<int:dept_id>", methods=["GET", "POST"])
def department_edit(dept_id: int) -> Any:
    actor = require_role(SYS)
    session = get_session()
    dept = ops.get_department(session, actor, dept_id)
    if request.method == "GET":
        form = Form({"name": dept.name, "active": "1" if dept.active else ""})
        return _department_form(actor, form, dept=dept)
    form = Form.from_request()
    try:
        ops.update_department(
            session, actor, dept, name=form.text("name"), active=form.text("active") == "1"
        )
    except Unprocessable as exc:
        _refuse(form, exc)
        return _department_form(actor, form, dept=dept, status=422)
    flash(f"部门“{dept.name}”已保存", "success")
    return redirect(url_for("admin.departments", region=dept.region_code))


@bp.post("/departments/<int:dept_id>/active")
def department_active(dept_id: int) -> Any:
    actor = require_role(SYS)
    session = get_session()
    dept = ops.get_department(session, actor, dept_id)
    active = request.form.get("active") == "1"
    ops.update_department(session, actor, dept, name=dept.name, active=active)
    flash(f"部门“{dept.name}”已{'启用' if active else '停用'}", "success")
    return redirect(url_for("admin.departments", region=dept.region_code))


# ---------------------------------------------------------------- the matter list


def _matters_page(status: int = 200, **extra: Any) -> tuple[str, int]:
    session = get_session()
    categories = catalog.export_matters(session)
    return _render(
        "admin/matters.html",
        status,
        data=categories,
        kinds=catalog.kind_labels(),
        levels=catalog.LEVEL_LABELS,
        units=catalog.UNIT_LABELS,
        urgencies=list(Urgency),
        stages=list(Stage),
        count=sum(len(c["matters"]) for c in categories["categories"]),
        **extra,
    )


@bp.get("/matters")
def matters() -> Any:
    require_role(SYS)
    return _matters_page()


@bp.get("/matters/export")
def matters_export() -> Response:
    actor = require_role(SYS)
    text = ops.export_matters(get_session(), actor)
    name = f"matters-{_today():%Y%m%d}.json"
    return Response(
        text,
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@bp.post("/matters/import")
def matters_import() -> Any:
    actor = require_role(SYS)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _matters_page(422, upload_messages=["请选择要上传的事项清单文件（JSON）"])
    try:
        count = ops.import_matters(get_session(), actor, upload.read())
    except Unprocessable as exc:
        messages = exc.details.get("messages") or [exc.message]
        return _matters_page(422, upload_messages=messages, upload_title=exc.message)
    flash(f"事项清单已导入：共 {count} 个事项", "success")
    return redirect(url_for("admin.matters"))


@bp.route("/matters/<code>/limits", methods=["GET", "POST"])
def matter_limits(code: str) -> Any:
    actor = require_role(SYS)
    session = get_session()
    matter = session.get(Matter, code)
    if matter is None:
        raise NotFound(f"事项 {code} 不存在", code="matter_not_found")
    status = 200
    messages: list[str] = []
    if request.method == "POST":
        form = Form.from_request()
        limits = {
            (u.value, s.value): (
                form.text(f"{u.value}-{s.value}"),
                form.text(f"{u.value}-{s.value}-unit"),
            )
            for u in Urgency
            for s in Stage
        }
        try:
            ops.update_matter_limits(session, actor, code, limits)
        except Unprocessable as exc:
            _refuse(form, exc)
            messages = list(exc.details.get("messages") or [])
            status = 422
        else:
            flash(f"事项 {code}「{matter.name}」的时限已保存", "success")
            return redirect(url_for("admin.matters") + f"#m-{code}")
    else:
        values: dict[str, str] = {}
        for limit in matter.limits:
            values[f"{limit.urgency}-{limit.stage}"] = str(limit.amount)
            values[f"{limit.urgency}-{limit.stage}-unit"] = limit.unit
        form = Form(values)
    return _render(
        "admin/matter_limits.html",
        status,
        form=form,
        matter=matter,
        messages=messages,
        urgencies=list(Urgency),
        stages=list(Stage),
        units=catalog.UNIT_LABELS,
        max_days=catalog.MAX_WORKING_DAYS,
    )


# ---------------------------------------------------------------- holidays


def _parse_day(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        return None


def _holidays_page(
    form: Form,
    holiday_rows: list[tuple[str, str, str]],
    workday_rows: list[str],
    status: int = 200,
) -> tuple[str, int]:
    session = get_session()
    shown = request.args.get("year", type=int)
    if shown is None and form.text("year").isdigit():
        shown = int(form.text("year"))
    years = ops.holiday_years(session)
    if shown is None:
        shown = years[0].year if years else _today().year
    days = ops.year_days(session, shown)
    ranges, _ = ops.year_ranges(days)
    holiday_rows = holiday_rows + [("", "", "")] * max(HOLIDAY_ROWS - len(holiday_rows), 2)
    workday_rows = workday_rows + [""] * max(WORKDAY_ROWS - len(workday_rows), 2)
    return _render(
        "admin/holidays.html",
        status,
        form=form,
        years=years,
        warnings=ops.calendar_warnings(session, _today()),
        shown=shown,
        days=days,
        ranges=ranges,
        holiday_rows=holiday_rows,
        workday_rows=workday_rows,
        placeholders=HOLIDAY_NAMES,
        this_year=_today().year,
        weekdays="一二三四五六日",
    )


def _stored_year_form(year: int) -> tuple[str, int]:
    """Render the entry form filled with what is stored for `year` (blank if nothing)."""
    session = get_session()
    ranges, workdays = ops.year_ranges(ops.year_days(session, year))
    entered = session.get(CalendarYear, year)
    form = Form({"year": str(year), "note": entered.note if entered else ""})
    rows = [(name, start.isoformat(), end.isoformat()) for start, end, name in ranges]
    return _holidays_page(form, rows, [d.isoformat() for d in workdays])


@bp.route("/holidays", methods=["GET", "POST"])
def holidays() -> Any:
    actor = require_role(SYS)
    session = get_session()
    today = _today()
    if request.method == "GET":
        return _stored_year_form(request.args.get("edit", type=int) or today.year + 1)

    form = Form.from_request()
    names = request.form.getlist("h_name")
    starts = request.form.getlist("h_start")
    ends = request.form.getlist("h_end")
    workday_texts = [w.strip() for w in request.form.getlist("workday")]
    holiday_rows = [
        (n.strip(), s.strip(), e.strip()) for n, s, e in zip(names, starts, ends, strict=False)
    ]
    year = form.integer("year", "年份", minimum=2004, maximum=today.year + 2)
    problems: list[str] = []
    holidays: list[tuple[date, date, str]] = []
    for i, (name, start_text, end_text) in enumerate(holiday_rows, 1):
        if not (start_text or end_text):
            continue  # a blank row (a name alone is only the placeholder's echo)
        start, end = _parse_day(start_text), _parse_day(end_text or start_text)
        if not name:
            problems.append(f"第 {i} 行节假日缺少名称")
        elif len(name) > 64:
            problems.append(f"第 {i} 行节假日名称超过 64 个字")
        elif start is None or end is None:
            problems.append(f"第 {i} 行“{name}”的日期格式应为 年-月-日（如 2027-10-01）")
        else:
            holidays.append((start, end, name))
    workdays: list[date] = []
    for text in workday_texts:
        if not text:
            continue
        day = _parse_day(text)
        if day is None:
            problems.append(f"调休上班日“{text}”的格式应为 年-月-日")
        else:
            workdays.append(day)
    if problems:
        form.add_error("", "节假日未保存：" + "；".join(problems))
    if form.ok and year is not None:
        try:
            ops.enter_holidays(session, actor, year, holidays, workdays, form.text("note"))
        except Unprocessable as exc:
            form.add_error("", f"节假日未保存：{exc.message}")
        else:
            flash(
                f"{year} 年节假日安排已录入：放假 {len(holidays)} 段，调休上班 {len(workdays)} 天",
                "success",
            )
            return redirect(url_for("admin.holidays", year=year, edit=year))
    return _holidays_page(form, holiday_rows, workday_texts, status=422)


# ---------------------------------------------------------------- grid data


def _grids_page(status: int = 200, **extra: Any) -> tuple[str, int]:
    actor = require_role(SYS)
    return _render(
        "admin/grids.html",
        status,
        counties=ops.grid_sets_by_county(get_session(), actor),
        suffixes=ops.GRID_FILE_SUFFIXES,
        **extra,
    )


@bp.get("/grids")
def grids() -> Any:
    require_role(SYS)
    return _grids_page(form=Form())


@bp.post("/grids/check")
def grids_check() -> Any:
    actor = require_role(SYS)
    form = Form.from_request()
    crs = form.optional("crs", "坐标系", max_length=64)
    name = form.optional("name", "网格集名称", max_length=200)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        form.add_error("file", "请选择网格文件")
    elif Path(upload.filename).suffix.lower() not in ops.GRID_FILE_SUFFIXES:
        form.add_error(
            "file",
            "只支持 ZIP 打包的 Shapefile（含 .shp .shx .dbf .prj 等）、GeoPackage（.gpkg）"
            "或 GeoJSON（.geojson / .json）",
        )
    if not form.ok or upload is None:
        return _grids_page(422, form=form)
    uploads = _uploads()
    token = uploads.save(
        upload.filename or "grids", upload.read(), crs=crs, name=name, user_id=actor.id
    )
    stored = uploads.get(token)
    assert stored is not None
    try:
        report = ops.check_grid_file(get_session(), actor, stored.path, crs=crs)
    except Exception:
        uploads.discard(token)
        raise
    if not report.ok:
        uploads.discard(token)
    return _render(
        "admin/grid_report.html",
        200 if report.ok else 422,
        report=report,
        token=token if report.ok else "",
        filename=stored.path.name,
        crs=crs,
        name=name,
    )


@bp.post("/grids/import")
def grids_import() -> Any:
    actor = require_role(SYS)
    uploads = _uploads()
    token = request.form.get("token", "")
    stored = uploads.get(token)
    if stored is None or stored.user_id != actor.id:
        flash("待导入的文件不存在或已过期，请重新上传", "error")
        return redirect(url_for("admin.grids"))
    report = ops.import_checked_grid_file(get_session(), actor, stored)
    uploads.discard(token)
    if not report.saved:
        return _render(
            "admin/grid_report.html",
            422,
            report=report,
            token="",
            filename=stored.path.name,
            crs=stored.crs,
            name=stored.name,
        )
    flash(
        f"已导入网格集 #{report.grid_set_id}「{report.grid_set_name}」，"
        f"共 {report.counts.get('grids', 0)} 个网格，已设为当前网格集",
        "success",
    )
    return redirect(url_for("admin.grids"))


@bp.post("/grids/discard")
def grids_discard() -> Any:
    require_role(SYS)
    _uploads().discard(request.form.get("token", ""))
    flash("已取消导入，上传的文件已删除", "info")
    return redirect(url_for("admin.grids"))


# ---------------------------------------------------------------- accounts (security admin)


@bp.get("/accounts")
def accounts() -> Any:
    actor = require_role(SEC)
    session = get_session()
    now = utcnow()
    listing = _user_list(actor, now)
    policy = security.get_policy(session)
    return render_template(
        "admin/accounts.html",
        **listing,
        locked={u.id: ops.is_locked(u, now) for u in listing["rows"]},
        expired={u.id: security.password_expired(policy, u, now) for u in listing["rows"]},
    )


def _account_page(actor: User, user: User, form: Form, status: int = 200) -> tuple[str, int]:
    session = get_session()
    now = utcnow()
    policy = security.get_policy(session)
    return _render(
        "admin/account.html",
        status,
        user=user,
        form=form,
        actor=actor,
        path=ops.region_path(session, user.region_code),
        business_roles=ops.BUSINESS_ROLES,
        admin_roles=ops.ADMIN_ROLES,
        locked=ops.is_locked(user, now),
        expired=security.password_expired(policy, user, now),
        expiry_days=policy.expiry_days,
    )


@bp.get("/accounts/<int:user_id>")
def account(user_id: int) -> Any:
    actor = require_role(SEC)
    user = ops.get_user(get_session(), actor, user_id)
    return _account_page(actor, user, Form({"role": user.role}))


@bp.post("/accounts/<int:user_id>/role")
def account_role(user_id: int) -> Any:
    actor = require_role(SEC)
    session = get_session()
    user = ops.get_user(session, actor, user_id)
    form = Form.from_request()
    try:
        changed = ops.assign_role(session, actor, user, form.text("role"))
    except Unprocessable as exc:
        _refuse(form, exc)
        return _account_page(actor, user, form, status=422)
    if changed:
        flash(f"已将 {user.username} 的角色设为{Role(user.role).label}", "success")
    else:
        flash("角色未变化", "info")
    return redirect(url_for("admin.account", user_id=user.id))


@bp.post("/accounts/<int:user_id>/unlock")
def account_unlock(user_id: int) -> Any:
    actor = require_role(SEC)
    session = get_session()
    user = ops.get_user(session, actor, user_id)
    if ops.unlock_account(session, actor, user):
        flash(f"账号 {user.username} 已解锁", "success")
    else:
        flash(f"账号 {user.username} 未被锁定", "info")
    return redirect(
        safe_next(request.form.get("next")) or url_for("admin.account", user_id=user.id)
    )


@bp.post("/accounts/<int:user_id>/reset-password")
def account_reset_password(user_id: int) -> Any:
    actor = require_role(SEC)
    session = get_session()
    user = ops.get_user(session, actor, user_id)
    try:
        ops.force_password_change(session, actor, user)
    except Unprocessable as exc:
        form = Form({"role": user.role})
        form.add_error("", exc.message)
        return _account_page(actor, user, form, status=422)
    flash(f"{user.username} 下次登录时须修改密码", "success")
    return redirect(url_for("admin.account", user_id=user.id))


@bp.post("/accounts/<int:user_id>/active")
def account_active(user_id: int) -> Any:
    actor = require_role(SEC)
    session = get_session()
    user = ops.get_user(session, actor, user_id)
    active = request.form.get("active") == "1"
    try:
        ops.set_account_active(session, actor, user, active)
    except Unprocessable as exc:
        form = Form({"role": user.role})
        form.add_error("", exc.message)
        return _account_page(actor, user, form, status=422)
    flash(f"账号 {user.username} 已{'启用' if active else '停用'}", "success")
    return redirect(url_for("admin.account", user_id=user.id))


# ---------------------------------------------------------------- audit log (audit administrator)


def _audit_filter(form: Form) -> ops.AuditFilter:
    return ops.AuditFilter(
        object_type=form.text("object_type"),
        object_id=form.optional("object_id", "对象编号", max_length=64),
        actor=form.optional("actor", "操作人", max_length=64),
        action=form.text("action"),
        outcome=form.text("outcome"),
        ip=form.optional("ip", "来源地址", max_length=45),
        date_from=_parse_date_field(form, "date_from", "开始日期"),
        date_to=_parse_date_field(form, "date_to", "结束日期"),
    )


def _parse_date_field(form: Form, name: str, label: str) -> date | None:
    text = form.text(name)
    if not text:
        return None
    day = _parse_day(text)
    if day is None:
        form.add_error(name, f"{label}的格式应为 年-月-日")
    return day


@bp.get("/audit")
def audit() -> Any:
    actor = require_role(AUDIT)
    session = get_session()
    form = Form({k: v for k, v in request.args.items() if k not in ("page", "verify")})
    filters = _audit_filter(form)
    page = page_arg()
    rows, total = ops.audit_entries(session, actor, filters, page)
    report = anchor = None
    if request.args.get("verify"):
        key = current_app.extensions["gridgov.db"].audit_key
        if key:
            report = ops.verify_audit_log(session, actor, key)
            anchor = ops.audit_anchor(session, actor) if report.ok else None
        else:
            form.add_error("", "未配置审计密钥，无法校验完整性")
    args = {k: v for k, v in request.args.items() if k not in ("page", "verify") and v}
    return render_template(
        "admin/audit.html",
        form=form,
        rows=rows,
        total=total,
        page=page,
        pages=page_count(total, ops.PER_PAGE),
        args=args,
        report=report,
        anchor=anchor,
        types=ops.AUDIT_TYPE_LABELS,
        data_actions=ops.DATA_ACTION_LABELS,
        auth_actions=AUTH_KINDS,
        actions=ops.AUDIT_ACTION_LABELS,
        outcomes=ops.AUDIT_OUTCOME_LABELS,
        changes={e.id: ops.audit_changes(e) for e in rows},
        sign_ins={e.id: ops.audit_sign_in(e) for e in rows},
    )
