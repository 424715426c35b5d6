"""Administration: users, departments, the matter list, holidays, grid files, accounts, audit.

三员分立 (等保 level 3 separation of duties), as the guards in this module enforce it:

- the system administrator (sys_admin) manages business users, departments, the matter list,
  the holiday table and grid data; never an administrator account and never anyone's role;
- the security administrator (sec_admin) assigns roles (administrator roles included, but never
  their own), unlocks accounts, forces password changes, activates and deactivates accounts;
- the audit administrator (audit_admin) reads the audit log and verifies its chain; nothing else.

Nobody alters the audit log here: entries are appended by the session hooks of gridgov.audit
for every change these operations make. Every operation checks its guard before it reads
input, validates everything before it changes anything, flushes and never commits.
No Flask: views parse the request and call one function.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time as clock
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, case, func, or_, select
from sqlalchemy.orm import Session, selectinload

from gridgov import audit, catalog, security
from gridgov.audit import ChainReport, verify_chain
from gridgov.auth import hash_password, revoke_tokens
from gridgov.calendar_store import ADMIN_SOURCE, enter_year, load_calendar
from gridgov.errors import Forbidden, NotFound, Unprocessable
from gridgov.geo.importer import ImportReport, import_grid_file
from gridgov.models import (
    AuditEntry,
    CalendarDay,
    CalendarYear,
    Department,
    Grid,
    GridSet,
    Level,
    Region,
    Role,
    User,
    UserGrid,
)

LOCAL_TZ = ZoneInfo("Asia/Shanghai")

BUSINESS_ROLES: tuple[Role, ...] = (
    Role.GRID_WORKER,
    Role.TOWN_OPERATOR,
    Role.COUNTY_DISPATCHER,
    Role.COUNTY_SHIFT_LEAD,
    Role.DEPT_HANDLER,
    Role.LEADER,
)
"""Roles the system administrator may give a new user."""

ADMIN_ROLES: tuple[Role, ...] = (Role.SYS_ADMIN, Role.SEC_ADMIN, Role.AUDIT_ADMIN)
"""The three administrators (三员): only the security administrator assigns these roles."""

ROLE_LEVELS: dict[Role, tuple[Level, ...]] = {
    Role.GRID_WORKER: (Level.VILLAGE,),
    Role.TOWN_OPERATOR: (Level.TOWN,),
    Role.COUNTY_DISPATCHER: (Level.COUNTY,),
    Role.COUNTY_SHIFT_LEAD: (Level.COUNTY,),
    Role.DEPT_HANDLER: (Level.COUNTY, Level.TOWN),
    Role.LEADER: (Level.COUNTY, Level.TOWN),
    Role.SYS_ADMIN: (Level.COUNTY,),
    Role.SEC_ADMIN: (Level.COUNTY,),
    Role.AUDIT_ADMIN: (Level.COUNTY,),
}
"""The level of jurisdiction each role works at (a department handler: their unit's)."""

MUST_CHANGE_AT = datetime(2000, 1, 1, tzinfo=UTC)
"""`password_changed_at` of a password someone else set: expired, so its owner must change it
at the next sign-in (as long as the policy lets passwords expire at all)."""

USERNAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{1,63}\Z")
PHONE_RE = re.compile(r"\+?[0-9][0-9\- ]{4,30}\Z")
PER_PAGE = 50

AUDIT_TYPE_LABELS: dict[str, str] = {
    "event": "事件",
    "user": "用户",
    "user_grid": "用户网格",
    "department": "部门",
    "region": "区划",
    "grid_set": "网格集",
    "matter_category": "事项大类",
    "matter": "事项",
    "matter_assist": "事项协办部门",
    "matter_time_limit": "事项时限",
    "calendar_day": "节假日",
    "calendar_year": "节假日年度",
    "setting": "系统设置",
    "unplaced_report": "待定位报告",
    audit.AUTH: "登录与账号安全",
}
"""Chinese names of the audited object types (gridgov.audit.AUDITED, and sign-in entries)."""

DATA_ACTION_LABELS = {"create": "新增", "update": "修改", "delete": "删除"}
AUDIT_ACTION_LABELS = {**DATA_ACTION_LABELS, **audit.AUTH_KINDS}
"""Chinese names of entry actions: data changes, then sign-in and account-security kinds."""

AUDIT_OUTCOME_LABELS = {"success": "成功", "failure": "失败"}

AUDIT_REASON_LABELS = {
    "unknown_user": "用户名不存在",
    "inactive": "账号已停用",
    "locked": "账号锁定中",
    "bad_password": "密码错误",
    "too_many_failures": "连续失败次数达到上限",
    "bad_current_password": "当前密码错误",
    "rejected": "新密码不符合要求",
    "password_changed": "密码已修改",
    "password_reset": "密码被管理员重置",
}

AUDIT_CHANNEL_LABELS = {"web": "网页", "api": "接口"}

SOURCE_LABELS = {ADMIN_SOURCE: "管理员录入", "chinese_calendar": "系统预置"}
"""Who entered a year of the holiday table."""


# ---------------------------------------------------------------- guards


def _require(actor: User, role: Role, what: str) -> None:
    if actor.role != role:
        raise Forbidden(
            f"{what}仅限{role.label}操作（三员分立）", code="separation_of_duties", role=role.value
        )


def _require_any(actor: User, roles: Sequence[Role], what: str) -> None:
    if Role(actor.role) not in roles:
        labels = "、".join(r.label for r in roles)
        raise Forbidden(f"{what}仅限{labels}操作（三员分立）", code="separation_of_duties")


def in_jurisdiction(actor: User, code: str) -> bool:
    """Return whether a region, department or grid code lies in the administrator's area."""
    return code.startswith(actor.region_code)


def _check_in_area(actor: User, user: User) -> None:
    if not in_jurisdiction(actor, user.region_code):
        raise Forbidden("该用户不在您的管辖范围内", code="outside_jurisdiction")


def is_admin_account(user: User) -> bool:
    """Return whether the user holds one of the three administrator roles."""
    return Role(user.role) in ADMIN_ROLES


def sys_admin_may_edit(actor: User, user: User) -> bool:
    """Return whether the system administrator may edit this user (business accounts only)."""
    return (
        actor.role == Role.SYS_ADMIN
        and not is_admin_account(user)
        and in_jurisdiction(actor, user.region_code)
    )


def check_business_account(actor: User, user: User) -> None:
    _require(actor, Role.SYS_ADMIN, "修改用户")
    _check_in_area(actor, user)
    if is_admin_account(user):
        raise Forbidden(
            "系统管理员不能修改管理员账号（三员分立）：管理员账号由安全管理员管理",
            code="admin_account",
        )


def _unprocessable(what: str, errors: dict[str, str], code: str) -> Unprocessable:
    return Unprocessable(f"{what}：" + "；".join(errors.values()), code=code, fields=errors)


# ---------------------------------------------------------------- regions and grids


@dataclass(frozen=True)
class RegionOption:
    """A region an administrator can choose, in tree order."""

    code: str
    name: str
    level: str
    depth: int

    @property
    def label(self) -> str:
        return f"{self.name}（{self.code}）"


def regions_under(
    session: Session, prefix: str, levels: Iterable[Level] = tuple(Level)
) -> list[RegionOption]:
    """Return the regions whose code starts with `prefix`, county → towns → villages."""
    wanted = [level.value for level in levels]
    rows = session.execute(
        select(Region.code, Region.name, Region.level)
        .where(Region.code.startswith(prefix), Region.level.in_(wanted))
        .order_by(Region.code)
    ).all()
    depth = {Level.COUNTY.value: 0, Level.TOWN.value: 1, Level.VILLAGE.value: 2}
    return [RegionOption(code, name, level, depth[level]) for code, name, level in rows]


def region_path(session: Session, code: str) -> str:
    """Return 'county / town / village' names of a region code."""
    prefixes = [code[:n] for n in (6, 9, 12) if len(code) >= n]
    names = dict(
        session.execute(select(Region.code, Region.name).where(Region.code.in_(prefixes))).all()
    )
    return " / ".join(names.get(p, p) for p in prefixes)


def village_grids(session: Session, village_code: str) -> list[tuple[str, str]]:
    """Return (code, name) of the active grids of a village."""
    if len(village_code) != Level.VILLAGE.code_length:
        return []
    return [
        (code, name)
        for code, name in session.execute(
            select(Grid.code, Grid.name)
            .join(GridSet, GridSet.id == Grid.grid_set_id)
            .where(GridSet.active.is_(True), Grid.village_code == village_code)
            .order_by(Grid.code)
        )
    ]


def _level_names(levels: Sequence[Level]) -> str:
    return "或".join(level.label for level in levels)


# ---------------------------------------------------------------- users (system administrator)


@dataclass
class UserInput:
    """What an administrator typed for a user: raw text, validated by the operations."""

    username: str = ""
    display_name: str = ""
    role: str = ""
    region_code: str = ""
    department_id: str = ""
    grid_codes: list[str] = field(default_factory=list)
    phone: str = ""
    active: bool = True
    password: str = ""
    confirm_password: str = ""


@dataclass
class _Profile:
    display_name: str
    region_code: str
    department_id: int | None
    grid_codes: list[str]
    phone: str


def _profile(
    session: Session, actor: User, role: Role, data: UserInput, current: User | None
) -> tuple[_Profile, dict[str, str]]:
    """Validate the fields every business user has; return them and the errors per field."""
    errors: dict[str, str] = {}
    name = data.display_name.strip()
    if not name:
        errors["display_name"] = "请填写姓名"
    elif len(name) > 64:
        errors["display_name"] = "姓名不能超过 64 个字"
    phone = data.phone.strip()
    if phone and not PHONE_RE.match(phone):
        errors["phone"] = "联系电话格式不正确（数字，可含 + - 和空格）"

    region_code = data.region_code.strip()
    department_id: int | None = None
    if role == Role.DEPT_HANDLER:
        dept = None
        if not data.department_id.strip():
            errors["department_id"] = "职能部门处置员须选择所属部门"
        else:
            try:
                dept = session.get(Department, int(data.department_id))
            except ValueError:
                dept = None
            if dept is None or not in_jurisdiction(actor, dept.region_code):
                errors["department_id"] = "所选部门不存在或不在您的管辖范围内"
                dept = None
            elif not dept.active and (current is None or current.department_id != dept.id):
                errors["department_id"] = f"部门“{dept.name}”已停用，不能再分配人员"
        if dept is not None:
            department_id = dept.id
            region_code = dept.region_code  # a handler's jurisdiction is their unit's
    else:
        levels = ROLE_LEVELS[role]
        region = session.get(Region, region_code) if region_code else None
        if not region_code:
            errors["region_code"] = "请选择辖区"
        elif region is None or not in_jurisdiction(actor, region_code):
            errors["region_code"] = "所选辖区不存在或不在您的管辖范围内"
        elif Level(region.level) not in levels:
            errors["region_code"] = f"{role.label}的辖区应为{_level_names(levels)}级"

    grid_codes: list[str] = []
    if role == Role.GRID_WORKER and "region_code" not in errors:
        grid_codes = sorted({c.strip() for c in data.grid_codes if c.strip()})
        available = {code for code, _ in village_grids(session, region_code)}
        unknown = [c for c in grid_codes if c not in available]
        if not grid_codes:
            errors["grid_codes"] = "请为网格员选择至少一个网格"
        elif unknown:
            errors["grid_codes"] = f"网格 {'、'.join(unknown)} 不是所选村（社区）当前网格集中的网格"
    return _Profile(name, region_code, department_id, grid_codes, phone), errors


def _password_errors(
    session: Session, username: str, password: str, confirm: str, *, required: bool
) -> dict[str, str]:
    errors: dict[str, str] = {}
    if not password:
        if required:
            errors["password"] = "请设置初始密码"
        return errors
    problems = security.check_password_strength(
        security.get_policy(session), password, username=username
    )
    if problems:
        errors["password"] = "；".join(problems)
    elif confirm != password:
        errors["confirm_password"] = "两次输入的密码不一致"
    return errors


def _set_password(user: User, password: str) -> None:
    user.password_hash = hash_password(password)
    user.password_changed_at = MUST_CHANGE_AT  # set by an administrator: change at sign-in
    user.failed_logins = 0
    user.locked_until = None


def _apply_profile(user: User, profile: _Profile) -> None:
    user.display_name = profile.display_name
    user.region_code = profile.region_code
    user.department_id = profile.department_id
    user.phone = profile.phone
    have = set(user.grid_codes)
    wanted = set(profile.grid_codes)
    for link in list(user.grids):
        if link.grid_code not in wanted:
            user.grids.remove(link)
    user.grids += [UserGrid(grid_code=c) for c in profile.grid_codes if c not in have]


def create_user(session: Session, actor: User, data: UserInput) -> User:
    """Create a business user with an initial password (to be changed at first sign-in).

    Only the system administrator creates users, and only with a business role: the three
    administrator accounts and every role change belong to the security administrator.
    """
    _require(actor, Role.SYS_ADMIN, "新建用户")
    if data.role in {r.value for r in ADMIN_ROLES}:
        raise Forbidden(
            "系统管理员不能创建管理员账号（三员分立）：请由安全管理员分配管理员角色",
            code="admin_account",
        )
    errors: dict[str, str] = {}
    username = data.username.strip()
    if not username:
        errors["username"] = "请填写用户名"
    elif not USERNAME_RE.match(username):
        errors["username"] = "用户名须以字母开头，2–64 位字母、数字、下划线、点或减号"
    elif session.scalar(
        select(func.count()).select_from(User).where(func.lower(User.username) == username.lower())
    ):
        errors["username"] = f"用户名“{username}”已被使用"
    role: Role | None = None
    if not data.role:
        errors["role"] = "请选择角色"
    elif data.role not in {r.value for r in BUSINESS_ROLES}:
        errors["role"] = "角色的取值无效"
    else:
        role = Role(data.role)
    profile = None
    if role is not None:
        profile, profile_errors = _profile(session, actor, role, data, None)
        errors.update(profile_errors)
    errors.update(
        _password_errors(session, username, data.password, data.confirm_password, required=True)
    )
    if errors or role is None or profile is None:
        raise _unprocessable("用户未创建", errors, "bad_user")
    user = User(
        username=username,
        display_name=profile.display_name,
        role=role.value,
        region_code=profile.region_code,
        department_id=profile.department_id,
        phone=profile.phone,
        active=data.active,
        failed_logins=0,
    )
    user.grids = [UserGrid(grid_code=c) for c in profile.grid_codes]
    _set_password(user, data.password)
    session.add(user)
    session.flush()
    return user


def update_user(session: Session, actor: User, user: User, data: UserInput) -> User:
    """Change a business user's name, jurisdiction, unit, grids, phone, status or password.

    The role is not the system administrator's to change: a submitted role that differs from
    the user's is refused (403), whatever else the form holds.
    """
    check_business_account(actor, user)
    if data.role and data.role != user.role:
        raise Forbidden(
            "用户角色由安全管理员分配，系统管理员不能修改（三员分立）", code="role_by_sec_admin"
        )
    role = Role(user.role)
    profile, errors = _profile(session, actor, role, data, user)
    errors.update(
        _password_errors(
            session, user.username, data.password, data.confirm_password, required=False
        )
    )
    if errors:
        raise _unprocessable("用户未保存", errors, "bad_user")
    _apply_profile(user, profile)
    if user.active != data.active:
        user.active = data.active
    if data.password:
        _set_password(user, data.password)
        audit.record(session, "password_reset", object_id=str(user.id), username=user.username)
        revoke_tokens(session, user, "password_reset")
    session.flush()
    return user


def set_user_active(session: Session, actor: User, user: User, active: bool) -> None:
    """Activate or deactivate a business user (users are never deleted)."""
    check_business_account(actor, user)
    if user.active != active:
        user.active = active
        session.flush()


_ROLE_ORDER = case({role.value: n for n, role in enumerate(Role)}, value=User.role, else_=99)
"""Users of one region listed in the order of `Role`: business roles first, administrators last."""


@dataclass(frozen=True)
class UserFilter:
    """Search of the user lists."""

    q: str = ""
    role: str = ""
    region: str = ""
    status: str = ""  # '' | active | inactive | locked


def search_users(
    session: Session, actor: User, filters: UserFilter, page: int = 1, now: datetime | None = None
) -> tuple[list[User], int]:
    """Return one page of users in the administrator's area matching `filters`, and the total."""
    _require_any(actor, (Role.SYS_ADMIN, Role.SEC_ADMIN), "查看用户")
    query: Select[Any] = select(User).where(User.region_code.startswith(actor.region_code))
    if filters.q:
        like = f"%{filters.q}%"
        query = query.outerjoin(Department, Department.id == User.department_id).where(
            or_(
                User.username.ilike(like),
                User.display_name.ilike(like),
                User.phone.ilike(like),
                Department.name.ilike(like),
            )
        )
    if filters.role in {r.value for r in Role}:
        query = query.where(User.role == filters.role)
    if filters.region and in_jurisdiction(actor, filters.region):
        query = query.where(User.region_code.startswith(filters.region))
    if filters.status == "active":
        query = query.where(User.active.is_(True))
    elif filters.status == "inactive":
        query = query.where(User.active.is_(False))
    elif filters.status == "locked":
        query = query.where(User.locked_until > (now or datetime.now(UTC)))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.options(selectinload(User.department), selectinload(User.grids))
        .order_by(User.region_code, _ROLE_ORDER, User.username)
        .offset((max(page, 1) - 1) * PER_PAGE)
        .limit(PER_PAGE)
    ).all()
    return list(rows), total


def get_user(session: Session, actor: User, user_id: int) -> User:
    """Return a user in the administrator's area (404 otherwise)."""
    _require_any(actor, (Role.SYS_ADMIN, Role.SEC_ADMIN), "查看用户")
    user = session.get(User, user_id)
    if user is None or not in_jurisdiction(actor, user.region_code):
        raise NotFound("用户不存在", code="user_not_found")
    return user


# ---------------------------------------------------------------- accounts (security admin)


def _check_account(actor: User, user: User, what: str) -> None:
    _require(actor, Role.SEC_ADMIN, what)
    _check_in_area(actor, user)


def _keep_last_admin(session: Session, user: User, what: str) -> None:
    """Refuse to take away the last active holder of an administrator role."""
    role = Role(user.role)
    if role not in ADMIN_ROLES or not user.active:
        return
    others = session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.role == role.value, User.active.is_(True), User.id != user.id)
    )
    if not others:
        raise Unprocessable(
            f"{what}：系统中须至少保留一名有效的{role.label}", code="last_admin", role=role.value
        )


def assign_role(session: Session, actor: User, user: User, role_value: str) -> bool:
    """Give a user another role (one role per user); return whether anything changed.

    Only the security administrator assigns roles, administrator roles included, and never
    their own. The jurisdiction follows the role upwards (a village grid worker made a town
    operator works for the village's town); a role that needs a narrower area than the user
    has, or a department the user lacks, is refused with what the system administrator must do.
    """
    _check_account(actor, user, "分配角色")
    if user.id == actor.id:
        raise Forbidden("安全管理员不能修改自己的角色", code="own_role")
    try:
        role = Role(role_value)
    except ValueError:
        raise Unprocessable(
            "角色的取值无效", code="bad_role", fields={"role": "角色的取值无效"}
        ) from None
    if role == user.role:
        return False
    _keep_last_admin(session, user, "角色未修改")
    region_code = user.region_code
    department_id = user.department_id
    if role == Role.DEPT_HANDLER:
        dept = session.get(Department, department_id) if department_id else None
        if dept is None:
            message = "该用户没有所属部门，不能设为职能部门处置员；请由系统管理员新建处置员账号"
            raise Unprocessable(message, code="role_needs_department", fields={"role": message})
        region_code = dept.region_code
    else:
        department_id = None  # only department handlers belong to a department
        levels = ROLE_LEVELS[role]
        current = Level.of_code(region_code)
        if current not in levels:
            wider = [lv for lv in levels if lv.code_length < current.code_length]
            if not wider:
                message = (
                    f"{role.label}的辖区应为{_level_names(levels)}级，该用户的辖区为"
                    f"{current.label}级；请由系统管理员新建{role.label}账号"
                )
                raise Unprocessable(message, code="role_needs_region", fields={"role": message})
            region_code = region_code[: max(lv.code_length for lv in wider)]
    user.role = role.value
    user.region_code = region_code
    user.department_id = department_id
    if role != Role.GRID_WORKER:
        user.grids.clear()  # grids belong to grid workers only
    session.flush()
    return True


def unlock_account(session: Session, actor: User, user: User) -> bool:
    """Lift a lockout after too many failed sign-ins; return whether the account was locked."""
    _check_account(actor, user, "解锁账号")
    changed = user.locked_until is not None or user.failed_logins != 0
    if changed:
        user.locked_until = None
        user.failed_logins = 0
        session.flush()
    return changed


def force_password_change(session: Session, actor: User, user: User) -> None:
    """Make the user change their password at the next sign-in (the password expires now)."""
    _check_account(actor, user, "强制修改密码")
    if not security.get_policy(session).expiry_days:
        raise Unprocessable(
            "当前安全策略的密码有效期为 0（永不过期），强制改密不会生效；请先设置密码有效期",
            code="no_expiry",
        )
    user.password_changed_at = MUST_CHANGE_AT
    session.flush()


def set_account_active(session: Session, actor: User, user: User, active: bool) -> None:
    """Activate or deactivate any account in the area, administrators included (not oneself)."""
    _check_account(actor, user, "启用或停用账号")
    if user.id == actor.id:
        raise Forbidden("安全管理员不能停用自己的账号", code="own_account")
    if user.active == active:
        return
    if not active:
        _keep_last_admin(session, user, "账号未停用")
    user.active = active
    session.flush()


def is_locked(user: User, now: datetime) -> bool:
    """Return whether the account is locked out now."""
    return user.locked_until is not None and user.locked_until > now


# ---------------------------------------------------------------- departments


def department_kind_choices() -> dict[str, list[tuple[str, str]]]:
    """Return the department kinds per level ('county', 'town') as (kind, label)."""
    levels = catalog.department_kinds()
    labels = catalog.kind_labels()
    choices: dict[str, list[tuple[str, str]]] = {"county": [], "town": []}
    for kind, level in levels.items():
        choices[level].append((kind, labels.get(kind, kind)))
    return choices


def departments_in(session: Session, actor: User, region: str = "") -> list[Department]:
    """Return the departments of the administrator's area (of one county or town if given)."""
    _require_any(actor, (Role.SYS_ADMIN, Role.SEC_ADMIN), "查看部门")
    if region and in_jurisdiction(actor, region):
        query = select(Department).where(Department.region_code == region)
    else:
        query = select(Department).where(Department.region_code.startswith(actor.region_code))
    return list(session.scalars(query.order_by(Department.region_code, Department.code)))


def create_department(
    session: Session, actor: User, *, name: str, kind: str, region_code: str
) -> Department:
    """Add a county bureau or a town office; its code is `<region>-<kind>`."""
    _require(actor, Role.SYS_ADMIN, "新建部门")
    errors: dict[str, str] = {}
    name = name.strip()
    if not name:
        errors["name"] = "请填写部门名称"
    elif len(name) > 100:
        errors["name"] = "部门名称不能超过 100 个字"
    region = session.get(Region, region_code) if region_code else None
    level = ""
    if not region_code:
        errors["region_code"] = "请选择所属县或镇（街道）"
    elif region is None or not in_jurisdiction(actor, region_code):
        errors["region_code"] = "所选区划不存在或不在您的管辖范围内"
    elif region.level not in (Level.COUNTY, Level.TOWN):
        errors["region_code"] = "部门只能设在县或镇（街道）"
    else:
        level = region.level
    kinds = catalog.department_kinds()
    if not kind:
        errors["kind"] = "请选择部门类型"
    elif kind not in kinds:
        errors["kind"] = "部门类型的取值无效"
    elif level and kinds[kind] != level:
        where = "县直部门" if kinds[kind] == "county" else "镇属站所"
        errors["kind"] = f"该类型是{where}，与所属区划的级别不符"
    code = f"{region_code}-{kind}"
    if not errors:
        existing = session.scalar(select(Department).where(Department.code == code))
        if existing is not None:
            errors["kind"] = f"该区划已有此类部门：{existing.name}（{code}）"
    if errors:
        raise _unprocessable("部门未创建", errors, "bad_department")
    dept = Department(code=code, name=name, kind=kind, level=level, region_code=region_code)
    dept.active = True
    session.add(dept)
    session.flush()
    return dept


def get_department(session: Session, actor: User, department_id: int) -> Department:
    """Return a department of the administrator's area (404 otherwise)."""
    _require(actor, Role.SYS_ADMIN, "管理部门")
    dept = session.get(Department, department_id)
    if dept is None or not in_jurisdiction(actor, dept.region_code):
        raise NotFound("部门不存在", code="department_not_found")
    return dept


def update_department(
    session: Session, actor: User, dept: Department, *, name: str, active: bool
) -> Department:
    """Rename a department or switch it on or off (departments are never deleted)."""
    _require(actor, Role.SYS_ADMIN, "修改部门")
    if not in_jurisdiction(actor, dept.region_code):
        raise Forbidden("该部门不在您的管辖范围内", code="outside_jurisdiction")
    name = name.strip()
    if not name:
        raise _unprocessable("部门未保存", {"name": "请填写部门名称"}, "bad_department")
    if len(name) > 100:
        raise _unprocessable("部门未保存", {"name": "部门名称不能超过 100 个字"}, "bad_department")
    if dept.name != name:
        dept.name = name
    if dept.active != active:
        dept.active = active
    session.flush()
    return dept


def department_staff(session: Session, dept_ids: Iterable[int]) -> dict[int, int]:
    """Return the number of active users of each department."""
    ids = list(dept_ids)
    if not ids:
        return {}
    rows = session.execute(
        select(User.department_id, func.count())
        .where(User.department_id.in_(ids), User.active.is_(True))
        .group_by(User.department_id)
    )
    return {int(dept_id): int(n) for dept_id, n in rows if dept_id is not None}


# ---------------------------------------------------------------- the matter list


def import_matters(session: Session, actor: User, raw: bytes) -> int:
    """Validate and load an edited matter-list file; nothing is written on any error.

    Raises Unprocessable whose `messages` detail lists every problem in Chinese.
    """
    _require(actor, Role.SYS_ADMIN, "导入事项清单")
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        messages = ["文件不是 UTF-8 编码的文本；请上传从本页下载并编辑的 JSON 文件"]
        raise Unprocessable(messages[0], code="bad_matter_list", messages=messages) from None
    except json.JSONDecodeError as exc:
        messages = [
            f"文件不是有效的 JSON：第 {exc.lineno} 行第 {exc.colno} 列附近有误（{exc.msg}）"
        ]
        raise Unprocessable(messages[0], code="bad_matter_list", messages=messages) from None
    try:
        return catalog.load_matters_data(session, data)
    except catalog.CatalogError as exc:
        raise Unprocessable(
            f"事项清单未导入：发现 {len(exc.messages)} 个问题",
            code="bad_matter_list",
            messages=exc.messages,
        ) from None


def export_matters(session: Session, actor: User) -> str:
    """Return the matter list as JSON text in the layout of the shipped file."""
    _require(actor, Role.SYS_ADMIN, "导出事项清单")
    return catalog.format_json(catalog.export_matters(session))


LimitInput = dict[tuple[str, str], tuple[str, str]]
"""(urgency, stage) → (amount text, unit) as typed."""


def update_matter_limits(session: Session, actor: User, code: str, limits: LimitInput) -> None:
    """Change one matter's time limits (urgency × stage), validated like an uploaded list."""
    _require(actor, Role.SYS_ADMIN, "修改事项时限")
    data = catalog.export_matters(session)
    matter = next((m for c in data["categories"] for m in c["matters"] if m["code"] == code), None)
    if matter is None:
        raise NotFound(f"事项 {code} 不存在", code="matter_not_found")
    errors: dict[str, str] = {}
    for (urgency, stage), (amount_text, unit) in limits.items():
        name = f"{urgency}-{stage}"
        try:
            amount = int(amount_text.strip(), 10)
        except ValueError:
            errors[name] = "应为正整数"
            continue
        if amount < 1:
            errors[name] = "至少为 1"
            continue
        if unit not in catalog.UNIT_LABELS:
            errors[name] = "单位无效"
            continue
        matter["limits"].setdefault(urgency, {})[stage] = [amount, unit]
    if errors:
        raise Unprocessable(
            "时限未保存：请修正标出的格子", code="bad_limits", fields=errors, messages=[]
        )
    try:
        catalog.load_matters_data(session, data)
    except catalog.CatalogError as exc:
        raise Unprocessable(
            f"时限未保存：发现 {len(exc.messages)} 个问题",
            code="bad_limits",
            messages=exc.messages,
        ) from None


# ---------------------------------------------------------------- holidays


@dataclass(frozen=True)
class YearStatus:
    """One year of the holiday table."""

    year: int
    source: str
    note: str
    entered_at: datetime | None
    holidays: int
    workdays: int

    @property
    def source_label(self) -> str:
        return SOURCE_LABELS.get(self.source, self.source)


def holiday_years(session: Session) -> list[YearStatus]:
    """Return every entered year, newest first, with its counts of holidays and workdays."""
    counts: dict[tuple[int, bool], int] = {}
    for day, workday in session.execute(select(CalendarDay.day, CalendarDay.is_workday)):
        key = (day.year, bool(workday))
        counts[key] = counts.get(key, 0) + 1
    return [
        YearStatus(
            y.year,
            y.source,
            y.note,
            y.entered_at,
            counts.get((y.year, False), 0),
            counts.get((y.year, True), 0),
        )
        for y in session.scalars(select(CalendarYear).order_by(CalendarYear.year.desc()))
    ]


def calendar_warnings(session: Session, today: date) -> list[str]:
    """Return the warnings for this year and the next if their schedule is not entered."""
    calendar = load_calendar(session)
    return calendar.schedule_warnings(date(today.year, 1, 1), date(today.year + 1, 12, 31))


def year_days(session: Session, year: int) -> list[CalendarDay]:
    """Return the stored deviations (holidays on weekdays, make-up workdays) of a year."""
    return list(
        session.scalars(
            select(CalendarDay)
            .where(CalendarDay.day >= date(year, 1, 1), CalendarDay.day <= date(year, 12, 31))
            .order_by(CalendarDay.day)
        )
    )


def year_ranges(days: Sequence[CalendarDay]) -> tuple[list[tuple[date, date, str]], list[date]]:
    """Rebuild holiday ranges (joined across weekends) and make-up workdays from stored days."""
    ranges: list[tuple[date, date, str]] = []
    workdays: list[date] = []
    for row in days:
        if row.is_workday:
            workdays.append(row.day)
            continue
        if ranges:
            start, end, name = ranges[-1]
            between = [end + timedelta(days=n) for n in range(1, (row.day - end).days)]
            if name == row.name and all(d.weekday() >= 5 for d in between):
                ranges[-1] = (start, row.day, name)
                continue
        ranges.append((row.day, row.day, row.name))
    return ranges, workdays


def enter_holidays(
    session: Session,
    actor: User,
    year: int,
    holidays: list[tuple[date, date, str]],
    workdays: list[date],
    note: str = "",
) -> None:
    """Enter a year's official holiday schedule (replacing what was stored for the year)."""
    _require(actor, Role.SYS_ADMIN, "录入节假日")
    if not holidays:
        raise Unprocessable("请至少录入一个节假日", code="bad_holidays")
    try:
        enter_year(session, year, holidays, workdays, note.strip()[:500])
    except ValueError as exc:
        raise Unprocessable(str(exc), code="bad_holidays") from None


# ---------------------------------------------------------------- grid files


GRID_FILE_SUFFIXES = (".zip", ".gpkg", ".geojson", ".json")
"""Accepted uploads: a zipped Shapefile (all its parts), a GeoPackage or GeoJSON."""

UPLOAD_TTL_S = 24 * 3600
_TOKEN_RE = re.compile(r"[0-9a-f]{32}\Z")
_UNSAFE_NAME = re.compile(r"[^\w.\-（）()]+")


@dataclass(frozen=True)
class StoredUpload:
    """A grid file kept between the check and the confirmed import."""

    token: str
    path: Path
    crs: str
    name: str
    user_id: int


class GridUploads:
    """Uploaded grid files under `root/<random token>/`, kept until imported or a day old."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @staticmethod
    def safe_name(filename: str) -> str:
        """Return a harmless file name that keeps the original's stem and suffix."""
        base = Path(filename.replace("\\", "/")).name
        suffix = Path(base).suffix.lower()
        stem = _UNSAFE_NAME.sub("_", Path(base).stem).strip("._") or "grids"
        return f"{stem[:80]}{suffix}"

    def save(self, filename: str, content: bytes, *, crs: str, name: str, user_id: int) -> str:
        """Store an upload and return its token."""
        self.purge()
        token = secrets.token_hex(16)
        folder = self.root / token
        folder.mkdir(parents=True)
        path = folder / self.safe_name(filename)
        path.write_bytes(content)
        meta = {"file": path.name, "crs": crs, "name": name, "user_id": user_id}
        (folder / "upload.json").write_text(json.dumps(meta, ensure_ascii=False), "utf-8")
        return token

    def get(self, token: str) -> StoredUpload | None:
        """Return a stored upload, or None if the token is malformed, unknown or expired."""
        if not _TOKEN_RE.match(token):
            return None
        folder = self.root / token
        try:
            meta = json.loads((folder / "upload.json").read_text("utf-8"))
        except (OSError, ValueError):
            return None
        path = folder / str(meta.get("file", ""))
        if path.parent != folder or not path.is_file():
            return None
        return StoredUpload(
            token, path, str(meta.get("crs", "")), str(meta.get("name", "")), int(meta["user_id"])
        )

    def discard(self, token: str) -> None:
        """Remove a stored upload."""
        if _TOKEN_RE.match(token):
            shutil.rmtree(self.root / token, ignore_errors=True)

    def purge(self, max_age_s: float = UPLOAD_TTL_S) -> None:
        """Remove uploads older than `max_age_s`."""
        if not self.root.is_dir():
            return
        limit = clock.time() - max_age_s
        for folder in self.root.iterdir():
            if _TOKEN_RE.match(folder.name) and folder.stat().st_mtime < limit:
                shutil.rmtree(folder, ignore_errors=True)


def _check_grid_county(actor: User, report: ImportReport) -> None:
    if report.county_code and not in_jurisdiction(actor, report.county_code):
        raise Forbidden(
            f"文件中的网格属于 {report.county_name or report.county_code}，不在您的管辖范围内",
            code="outside_jurisdiction",
        )


def check_grid_file(session: Session, actor: User, path: Path, *, crs: str = "") -> ImportReport:
    """Run every check of a grid import without storing anything (dry run)."""
    _require(actor, Role.SYS_ADMIN, "导入网格")
    report = import_grid_file(session, path, crs=crs or None, dry_run=True)
    _check_grid_county(actor, report)
    return report


def import_checked_grid_file(session: Session, actor: User, upload: StoredUpload) -> ImportReport:
    """Import a checked upload for real: it becomes the county's active grid set if clean."""
    _require(actor, Role.SYS_ADMIN, "导入网格")
    report = import_grid_file(session, upload.path, crs=upload.crs or None, dry_run=True)
    _check_grid_county(actor, report)
    if not report.ok:
        return report
    return import_grid_file(
        session, upload.path, crs=upload.crs or None, name=upload.name or None, dry_run=False
    )


@dataclass(frozen=True)
class CountyGrids:
    """A county of the administrator's area with its grid sets (newest first)."""

    code: str
    name: str
    villages: int
    sets: list[GridSet]
    workers: int


def grid_sets_by_county(session: Session, actor: User) -> list[CountyGrids]:
    """Return every county of the area with its grid sets and the number of grid workers."""
    _require(actor, Role.SYS_ADMIN, "查看网格数据")
    out = []
    counties = session.scalars(
        select(Region)
        .where(Region.level == Level.COUNTY, Region.code == actor.region_code[:6])
        .order_by(Region.code)
    )
    for county in counties:
        sets = list(
            session.scalars(
                select(GridSet)
                .where(GridSet.county_code == county.code)
                .order_by(GridSet.created_at.desc(), GridSet.id.desc())
            )
        )
        villages = session.scalar(
            select(func.count())
            .select_from(Region)
            .where(Region.level == Level.VILLAGE, Region.code.startswith(county.code))
        )
        workers = session.scalar(
            select(func.count())
            .select_from(User)
            .where(
                User.role == Role.GRID_WORKER,
                User.active.is_(True),
                User.region_code.startswith(county.code),
            )
        )
        out.append(CountyGrids(county.code, county.name, villages or 0, sets, workers or 0))
    return out


# ---------------------------------------------------------------- the audit log (read only)


@dataclass(frozen=True)
class AuditFilter:
    """Filters of the audit log view."""

    object_type: str = ""
    object_id: str = ""
    actor: str = ""
    action: str = ""
    outcome: str = ""
    ip: str = ""
    date_from: date | None = None
    date_to: date | None = None


def _local_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=LOCAL_TZ)


def audit_entries(
    session: Session, actor: User, filters: AuditFilter, page: int = 1, per_page: int = PER_PAGE
) -> tuple[list[AuditEntry], int]:
    """Return one page of audit entries (newest first) matching `filters`, and the total.

    The audit administrator's alone: neither the system nor the security administrator reads
    the record of their own actions (三员分立).
    """
    _require(actor, Role.AUDIT_ADMIN, "查看审计日志")
    query = select(AuditEntry)
    if filters.object_type in AUDIT_TYPE_LABELS:
        query = query.where(AuditEntry.object_type == filters.object_type)
    if filters.object_id:
        query = query.where(AuditEntry.object_id == filters.object_id)
    if filters.actor:
        query = query.where(AuditEntry.actor.ilike(f"%{filters.actor}%"))
    if filters.action in AUDIT_ACTION_LABELS:
        query = query.where(AuditEntry.action == filters.action)
    if filters.outcome in AUDIT_OUTCOME_LABELS:
        failures = AuditEntry.action.in_(sorted(audit.AUTH_FAILURES))
        query = query.where(AuditEntry.object_type == audit.AUTH)
        query = query.where(failures if filters.outcome == "failure" else ~failures)
    if filters.ip:
        query = query.where(
            AuditEntry.object_type == audit.AUTH,
            AuditEntry.data.contains(audit.data_fragment("ip", filters.ip), autoescape=True),
        )
    if filters.date_from:
        query = query.where(AuditEntry.at >= _local_midnight(filters.date_from))
    if filters.date_to:
        query = query.where(AuditEntry.at < _local_midnight(filters.date_to + timedelta(days=1)))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(AuditEntry.id.desc()).offset((max(page, 1) - 1) * per_page).limit(per_page)
    ).all()
    return list(rows), total


def verify_audit_log(session: Session, actor: User, key: bytes) -> ChainReport:
    """Recompute the whole chain and name the first broken entry (audit administrator only)."""
    _require(actor, Role.AUDIT_ADMIN, "校验审计日志")
    return verify_chain(session, key)


def audit_anchor(session: Session, actor: User) -> audit.Anchor:
    """Return the chain's head for the audit administrator to keep off the server."""
    _require(actor, Role.AUDIT_ADMIN, "查看审计日志锚点")
    return audit.current_anchor(session)


@dataclass(frozen=True)
class SignInView:
    """A sign-in or account-security entry, in the words the audit page shows."""

    outcome: str
    outcome_label: str
    reason: str
    channel: str
    ip: str
    forwarded_for: str
    user_agent: str
    details: dict[str, Any]


_SIGN_IN_FIELDS = {"outcome", "reason", "channel", "ip", "forwarded_for", "user_agent"}


def audit_sign_in(entry: AuditEntry) -> SignInView | None:
    """Return a sign-in entry's outcome, reason and client for display (None for others)."""
    if entry.object_type != audit.AUTH:
        return None
    try:
        data = json.loads(entry.data)
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    outcome = str(data.get("outcome", ""))
    reason = str(data.get("reason", ""))
    return SignInView(
        outcome=outcome,
        outcome_label=AUDIT_OUTCOME_LABELS.get(outcome, outcome),
        reason=AUDIT_REASON_LABELS.get(reason, reason),
        channel=AUDIT_CHANNEL_LABELS.get(str(data.get("channel", "")), ""),
        ip=str(data.get("ip", "")),
        forwarded_for=str(data.get("forwarded_for", "")),
        user_agent=str(data.get("user_agent", "")),
        details={k: v for k, v in data.items() if k not in _SIGN_IN_FIELDS},
    )


def audit_changes(entry: AuditEntry) -> list[tuple[str, Any, Any]] | dict[str, Any] | str:
    """Return an entry's data for display: (field, old, new) rows for an update, else a dict."""
    try:
        data = json.loads(entry.data)
    except ValueError:
        return entry.data
    if entry.action == "update" and isinstance(data, dict):
        return [
            (key, *value) if isinstance(value, list) and len(value) == 2 else (key, None, value)
            for key, value in data.items()
        ]
    return data if isinstance(data, dict) else entry.data
