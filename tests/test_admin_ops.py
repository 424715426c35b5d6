"""Administration operations: 三员分立 guards, user and account rules, catalog, holidays, audit."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from gridgov import admin_ops as ops
from gridgov import catalog, security
from gridgov.auth import authenticate
from gridgov.calendar_store import load_calendar
from gridgov.db import utcnow
from gridgov.demo import DEMO_PASSWORD
from gridgov.errors import Forbidden, Unauthorized, Unprocessable
from gridgov.models import AuditEntry, Department, Grid, GridSet, Role, User

KEY = b"test-audit-key"
STRONG = "Wangge#2027x"
LUOXI = "441523105"

ROLE_ACCOUNTS = {
    Role.GRID_WORKER: "wgy",
    Role.TOWN_OPERATOR: "zzzx",
    Role.COUNTY_DISPATCHER: "ddy",
    Role.COUNTY_SHIFT_LEAD: "zbz",
    Role.DEPT_HANDLER: "cgj",
    Role.LEADER: "ld",
    Role.SYS_ADMIN: "xtgly",
    Role.SEC_ADMIN: "aqgly",
    Role.AUDIT_ADMIN: "sjgly",
}
"""One demo account per role."""


def village_with_grids(session: Session, prefix: str = LUOXI, skip: int = 1) -> tuple[str, list]:
    """Return a village of `prefix` (not the demo grid worker's) and its active grid codes."""
    rows = session.execute(
        select(Grid.village_code, Grid.code)
        .join(GridSet, GridSet.id == Grid.grid_set_id)
        .where(GridSet.active.is_(True), Grid.village_code.startswith(prefix))
        .order_by(Grid.village_code, Grid.code)
    ).all()
    villages: dict[str, list[str]] = {}
    for village, code in rows:
        villages.setdefault(village, []).append(code)
    village = sorted(villages)[skip]
    return village, villages[village]


def worker_input(session: Session, **changes: Any) -> ops.UserInput:
    village, grids = village_with_grids(session)
    data = ops.UserInput(
        username="wgy_new",
        display_name="孙丽（网格员）",
        role=Role.GRID_WORKER.value,
        region_code=village,
        grid_codes=grids[:2],
        phone="13800001111",
        password=STRONG,
        confirm_password=STRONG,
    )
    for key, value in changes.items():
        setattr(data, key, value)
    return data


def user_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(User)) or 0


# ---------------------------------------------------------------- who may do what (三员分立)


def _create_user(s: Session, actor: User, users: dict[str, User]) -> None:
    ops.create_user(s, actor, worker_input(s))


def _update_user(s: Session, actor: User, users: dict[str, User]) -> None:
    u = users["zzzx"]
    data = ops.UserInput(display_name="王芳", region_code=u.region_code, active=True)
    ops.update_user(s, actor, u, data)


def _set_user_active(s: Session, actor: User, users: dict[str, User]) -> None:
    ops.set_user_active(s, actor, users["ld"], False)


def _assign_role(s: Session, actor: User, users: dict[str, User]) -> None:
    ops.assign_role(s, actor, users["zbz"], Role.COUNTY_DISPATCHER.value)


def _unlock(s: Session, actor: User, users: dict[str, User]) -> None:
    ops.unlock_account(s, actor, users["ddy"])


def _force_change(s: Session, actor: User, users: dict[str, User]) -> None:
    ops.force_password_change(s, actor, users["ddy"])


def _set_account_active(s: Session, actor: User, users: dict[str, User]) -> None:
    ops.set_account_active(s, actor, users["ld"], False)


def _create_department(s: Session, actor: User, users: dict[str, User]) -> None:
    kind = next(k for k, level in catalog.department_kinds().items() if level == "county")
    dept = s.scalar(select(Department).where(Department.code == f"441523-{kind}"))
    assert dept is not None
    dept.code = f"441523-{kind}-old"  # free the code so creating it is valid
    s.flush()
    ops.create_department(s, actor, name="新部门", kind=kind, region_code="441523")


def _import_matters(s: Session, actor: User, users: dict[str, User]) -> None:
    ops.import_matters(s, actor, json.dumps(catalog.export_matters(s)).encode())


def _update_limits(s: Session, actor: User, users: dict[str, User]) -> None:
    ops.update_matter_limits(s, actor, "0101", {("normal", "handle"): ("2", "working_days")})


def _enter_holidays(s: Session, actor: User, users: dict[str, User]) -> None:
    ops.enter_holidays(s, actor, 2027, [(date(2027, 1, 1), date(2027, 1, 1), "元旦")], [])


def _check_grids(s: Session, actor: User, users: dict[str, User]) -> None:
    ops.check_grid_file(s, actor, Path("/nonexistent/grids.geojson"))


def _read_audit(s: Session, actor: User, users: dict[str, User]) -> None:
    ops.audit_entries(s, actor, ops.AuditFilter())


def _verify_audit(s: Session, actor: User, users: dict[str, User]) -> None:
    ops.verify_audit_log(s, actor, KEY)


def _search_users(s: Session, actor: User, users: dict[str, User]) -> None:
    ops.search_users(s, actor, ops.UserFilter())


OPERATIONS: dict[str, tuple[Callable[[Session, User, dict[str, User]], None], set[Role]]] = {
    "create_user": (_create_user, {Role.SYS_ADMIN}),
    "update_user": (_update_user, {Role.SYS_ADMIN}),
    "set_user_active": (_set_user_active, {Role.SYS_ADMIN}),
    "assign_role": (_assign_role, {Role.SEC_ADMIN}),
    "unlock_account": (_unlock, {Role.SEC_ADMIN}),
    "force_password_change": (_force_change, {Role.SEC_ADMIN}),
    "set_account_active": (_set_account_active, {Role.SEC_ADMIN}),
    "create_department": (_create_department, {Role.SYS_ADMIN}),
    "import_matters": (_import_matters, {Role.SYS_ADMIN}),
    "update_matter_limits": (_update_limits, {Role.SYS_ADMIN}),
    "enter_holidays": (_enter_holidays, {Role.SYS_ADMIN}),
    "check_grid_file": (_check_grids, {Role.SYS_ADMIN}),
    "audit_entries": (_read_audit, {Role.AUDIT_ADMIN}),
    "verify_audit_log": (_verify_audit, {Role.AUDIT_ADMIN}),
    "search_users": (_search_users, {Role.SYS_ADMIN, Role.SEC_ADMIN}),
}


@pytest.mark.parametrize("role", list(Role), ids=str)
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_each_operation_belongs_to_one_administrator(
    session: Session, users: dict[str, User], operation: str, role: Role
) -> None:
    call, allowed = OPERATIONS[operation]
    actor = users[ROLE_ACCOUNTS[role]]
    if role in allowed:
        call(session, actor, users)
    else:
        with pytest.raises(Forbidden) as refused:
            call(session, actor, users)
        assert "仅限" in refused.value.message


def test_audit_admin_cannot_change_anything(session: Session, users: dict[str, User]) -> None:
    own = [name for name, (_, allowed) in OPERATIONS.items() if Role.AUDIT_ADMIN in allowed]
    assert own == ["audit_entries", "verify_audit_log"]  # both read only
    before = session.scalar(select(func.max(AuditEntry.id)))
    ops.audit_entries(session, users["sjgly"], ops.AuditFilter())
    assert ops.verify_audit_log(session, users["sjgly"], KEY).ok
    session.flush()
    assert session.scalar(select(func.max(AuditEntry.id))) == before


# ---------------------------------------------------------------- users (system administrator)


def test_sys_admin_creates_a_grid_worker_with_grids_of_the_village(
    session: Session, users: dict[str, User]
) -> None:
    data = worker_input(session)
    user = ops.create_user(session, users["xtgly"], data)
    assert (user.role, user.region_code, user.grid_codes) == (
        "grid_worker",
        data.region_code,
        sorted(data.grid_codes),
    )
    assert user.active and user.department_id is None
    assert authenticate(session, "wgy_new", STRONG).id == user.id
    # Set by an administrator: expired, so the owner changes it at the first sign-in.
    assert user.password_changed_at == ops.MUST_CHANGE_AT
    assert security.password_expired(security.get_policy(session), user, utcnow())


def test_dept_handler_takes_the_jurisdiction_of_the_department(
    session: Session, users: dict[str, User]
) -> None:
    dept = users["hwsuo"].department
    assert dept is not None
    data = ops.UserInput(
        username="hws2",
        display_name="环卫所二号",
        role="dept_handler",
        region_code="441523",  # ignored: the unit decides
        department_id=str(dept.id),
        password=STRONG,
        confirm_password=STRONG,
    )
    user = ops.create_user(session, users["xtgly"], data)
    assert (user.department_id, user.region_code) == (dept.id, dept.region_code)


@pytest.mark.parametrize("role", ["sys_admin", "sec_admin", "audit_admin"])
def test_sys_admin_cannot_create_administrators(
    session: Session, users: dict[str, User], role: str
) -> None:
    before = user_count(session)
    with pytest.raises(Forbidden, match="三员分立"):
        ops.create_user(session, users["xtgly"], worker_input(session, role=role))
    assert user_count(session) == before


def test_sys_admin_cannot_change_a_role_or_touch_admin_accounts(
    session: Session, users: dict[str, User]
) -> None:
    sys_admin, target = users["xtgly"], users["zzzx"]
    data = ops.UserInput(
        display_name=target.display_name, region_code=target.region_code, role="leader"
    )
    with pytest.raises(Forbidden, match="安全管理员"):
        ops.update_user(session, sys_admin, target, data)
    assert target.role == "town_operator"
    for name in ("aqgly", "sjgly", "xtgly"):
        admin = users[name]
        data = ops.UserInput(display_name="改名", region_code=admin.region_code, active=True)
        with pytest.raises(Forbidden, match="管理员账号"):
            ops.update_user(session, sys_admin, admin, data)
        with pytest.raises(Forbidden):
            ops.set_user_active(session, sys_admin, admin, False)
        assert admin.active and admin.display_name != "改名"
    assert not ops.sys_admin_may_edit(sys_admin, users["aqgly"])
    assert ops.sys_admin_may_edit(sys_admin, target)


def test_a_weak_password_is_refused_in_chinese_and_nothing_is_created(
    session: Session, users: dict[str, User]
) -> None:
    before = user_count(session)
    with pytest.raises(Unprocessable) as refused:
        ops.create_user(
            session, users["xtgly"], worker_input(session, password="abc", confirm_password="abc")
        )
    fields = refused.value.details["fields"]
    assert "至少需要 10 个字符" in fields["password"]
    assert "字母、数字和符号" in fields["password"]
    assert user_count(session) == before


def test_form_errors_name_every_bad_field(session: Session, users: dict[str, User]) -> None:
    _, other_grids = village_with_grids(session, skip=2)
    data = worker_input(
        session,
        username="wgy",  # taken
        display_name="",
        phone="call me",
        grid_codes=other_grids[:1],  # another village's grid
        confirm_password="different#123",
    )
    with pytest.raises(Unprocessable) as refused:
        ops.create_user(session, users["xtgly"], data)
    fields = refused.value.details["fields"]
    assert fields["username"] == "用户名“wgy”已被使用"
    assert fields["display_name"] == "请填写姓名"
    assert "联系电话" in fields["phone"]
    assert "不是所选村（社区）当前网格集中的网格" in fields["grid_codes"]
    assert fields["confirm_password"] == "两次输入的密码不一致"


@pytest.mark.parametrize(
    ("role", "region", "message"),
    [
        ("grid_worker", LUOXI, "网格员的辖区应为村（社区）级"),
        ("town_operator", "441523", "镇综治中心操作员的辖区应为镇（街道）级"),
        ("county_dispatcher", LUOXI, "县指挥中心调度员的辖区应为县级"),
        ("leader", "441523105001", "领导的辖区应为县或镇（街道）级"),
        ("town_operator", "441427100", "不在您的管辖范围内"),
    ],
)
def test_the_jurisdiction_must_fit_the_role_and_the_admin_area(
    session: Session, users: dict[str, User], role: str, region: str, message: str
) -> None:
    data = worker_input(session, role=role, region_code=region, grid_codes=[])
    with pytest.raises(Unprocessable) as refused:
        ops.create_user(session, users["xtgly"], data)
    assert message in refused.value.details["fields"]["region_code"]


def test_sys_admin_edits_grids_and_deactivates_instead_of_deleting(
    session: Session, users: dict[str, User]
) -> None:
    worker = users["wgy"]
    kept = worker.grid_codes[:1]
    data = ops.UserInput(
        display_name="张伟", region_code=worker.region_code, grid_codes=kept, active=True
    )
    ops.update_user(session, users["xtgly"], worker, data)
    assert worker.grid_codes == kept and worker.display_name == "张伟"
    ops.set_user_active(session, users["xtgly"], worker, False)
    assert session.get(User, worker.id) is not None and not worker.active
    with pytest.raises(Unauthorized):
        authenticate(session, "wgy", DEMO_PASSWORD)


# ---------------------------------------------------------------- accounts (security administrator)


def test_sec_admin_assigns_roles_including_the_admin_roles(
    session: Session, users: dict[str, User]
) -> None:
    sec = users["aqgly"]
    assert ops.assign_role(session, sec, users["ddy"], "sys_admin")
    assert ops.assign_role(session, sec, users["ld"], "audit_admin")
    assert users["ddy"].role == "sys_admin" and users["ld"].role == "audit_admin"
    assert not ops.assign_role(session, sec, users["zbz"], "county_shift_lead")  # unchanged


def test_a_role_lifts_the_jurisdiction_and_drops_grids(
    session: Session, users: dict[str, User]
) -> None:
    worker = users["wgy"]
    assert worker.grids
    ops.assign_role(session, users["aqgly"], worker, "town_operator")
    assert (worker.role, worker.region_code, worker.grids) == ("town_operator", LUOXI, [])
    handler = users["hwsuo"]
    ops.assign_role(session, users["aqgly"], handler, "leader")
    assert (handler.region_code, handler.department_id) == (LUOXI, None)


def test_a_role_needing_a_narrower_area_or_a_department_is_refused(
    session: Session, users: dict[str, User]
) -> None:
    with pytest.raises(Unprocessable, match="系统管理员新建网格员账号"):
        ops.assign_role(session, users["aqgly"], users["ld"], "grid_worker")
    with pytest.raises(Unprocessable, match="没有所属部门"):
        ops.assign_role(session, users["aqgly"], users["ld"], "dept_handler")
    assert users["ld"].role == "leader"


def test_sec_admin_cannot_change_their_own_role_or_deactivate_themselves(
    session: Session, users: dict[str, User]
) -> None:
    sec = users["aqgly"]
    with pytest.raises(Forbidden, match="不能修改自己的角色"):
        ops.assign_role(session, sec, sec, "sys_admin")
    with pytest.raises(Forbidden, match="不能停用自己"):
        ops.set_account_active(session, sec, sec, False)
    assert sec.role == "sec_admin" and sec.active


def test_the_last_active_administrator_of_a_kind_stays(
    session: Session, users: dict[str, User]
) -> None:
    sec = users["aqgly"]
    with pytest.raises(Unprocessable, match="至少保留一名有效的审计管理员"):
        ops.assign_role(session, sec, users["sjgly"], "leader")
    with pytest.raises(Unprocessable, match="至少保留一名有效的系统管理员"):
        ops.set_account_active(session, sec, users["xtgly"], False)
    ops.assign_role(session, sec, users["ld"], "audit_admin")
    ops.assign_role(session, sec, users["sjgly"], "leader")
    assert users["sjgly"].role == "leader"


def test_sec_admin_unlocks_forces_a_password_change_and_deactivates(
    session: Session, users: dict[str, User]
) -> None:
    sec, user = users["aqgly"], users["ddy"]
    user.locked_until = utcnow() + timedelta(minutes=10)
    user.failed_logins = 3
    session.flush()
    with pytest.raises(Unauthorized, match="锁定"):
        authenticate(session, "ddy", DEMO_PASSWORD)
    assert ops.unlock_account(session, sec, user)
    assert authenticate(session, "ddy", DEMO_PASSWORD).id == user.id
    assert not ops.unlock_account(session, sec, user)

    policy = security.get_policy(session)
    assert not security.password_expired(policy, user, utcnow())
    ops.force_password_change(session, sec, user)
    assert security.password_expired(policy, user, utcnow())

    ops.set_account_active(session, sec, users["xtgly"], True)  # no change, allowed
    ops.set_account_active(session, sec, user, False)
    with pytest.raises(Unauthorized):
        authenticate(session, "ddy", DEMO_PASSWORD)


def test_forcing_a_change_without_expiry_is_refused(
    session: Session, users: dict[str, User]
) -> None:
    security.set_policy(session, expiry_days=0)
    with pytest.raises(Unprocessable, match="永不过期"):
        ops.force_password_change(session, users["aqgly"], users["ddy"])


def test_changes_to_users_are_audited(session: Session, users: dict[str, User]) -> None:
    before = session.scalar(select(func.max(AuditEntry.id))) or 0
    ops.assign_role(session, users["aqgly"], users["zbz"], "county_dispatcher")
    entries = session.scalars(select(AuditEntry).where(AuditEntry.id > before)).all()
    (entry,) = [e for e in entries if e.object_type == "user"]
    assert entry.object_id == str(users["zbz"].id)
    assert json.loads(entry.data)["role"] == ["county_shift_lead", "county_dispatcher"]


# ---------------------------------------------------------------- departments


def test_sys_admin_creates_a_town_office_once(session: Session, users: dict[str, User]) -> None:
    town_kinds = [k for k, level in catalog.department_kinds().items() if level == "town"]
    kind = town_kinds[0]
    town = "441523100"  # 河田镇
    existing = session.scalar(select(Department).where(Department.code == f"{town}-{kind}"))
    assert existing is not None
    with pytest.raises(Unprocessable) as refused:
        ops.create_department(session, users["xtgly"], name="重复", kind=kind, region_code=town)
    assert "该区划已有此类部门" in refused.value.details["fields"]["kind"]
    county_kind = next(k for k, level in catalog.department_kinds().items() if level == "county")
    with pytest.raises(Unprocessable) as refused:
        ops.create_department(
            session, users["xtgly"], name="错级", kind=county_kind, region_code=town
        )
    assert "县直部门" in refused.value.details["fields"]["kind"]

    existing.code = f"{town}-{kind}-2019"
    session.flush()
    dept = ops.create_department(
        session, users["xtgly"], name="河田镇新站", kind=kind, region_code=town
    )
    assert (dept.code, dept.level, dept.active) == (f"{town}-{kind}", "town", True)
    ops.update_department(session, users["xtgly"], dept, name="河田镇新站所", active=False)
    assert (dept.name, dept.active) == ("河田镇新站所", False)


# ---------------------------------------------------------------- matter list


def test_an_invalid_matter_list_changes_nothing(session: Session, users: dict[str, User]) -> None:
    before = catalog.export_matters(session)
    broken = json.loads(json.dumps(before))
    first = broken["categories"][0]["matters"][0]
    first["name"] = "改过的名称"
    first["lead_kind"] = "no_such_kind"
    first["limits"]["urgent"]["accept"] = [3, "working_days"]
    with pytest.raises(Unprocessable) as refused:
        ops.import_matters(session, users["xtgly"], json.dumps(broken).encode())
    messages = refused.value.details["messages"]
    assert any("no_such_kind" in m for m in messages)
    assert any("受理、分拨不应超过1个工作日" in m for m in messages)
    with pytest.raises(Unprocessable, match="不是有效的 JSON"):
        ops.import_matters(session, users["xtgly"], b"{not json")
    with pytest.raises(Unprocessable, match="UTF-8"):
        ops.import_matters(session, users["xtgly"], "事项".encode("gbk"))
    assert catalog.export_matters(session) == before


def test_an_edited_matter_list_and_one_matters_limits_are_saved(
    session: Session, users: dict[str, User]
) -> None:
    data = catalog.export_matters(session)
    data["categories"][0]["matters"][0]["name"] = "邻里纠纷（新）"
    code = data["categories"][0]["matters"][0]["code"]
    ops.import_matters(session, users["xtgly"], json.dumps(data, ensure_ascii=False).encode())
    assert (
        catalog.export_matters(session)["categories"][0]["matters"][0]["name"] == "邻里纠纷（新）"
    )

    ops.update_matter_limits(
        session, users["xtgly"], code, {("normal", "handle"): ("5", "working_days")}
    )
    limits = catalog.export_matters(session)["categories"][0]["matters"][0]["limits"]
    assert limits["normal"]["handle"] == [5, "working_days"]
    with pytest.raises(Unprocessable) as refused:
        ops.update_matter_limits(
            session, users["xtgly"], code, {("normal", "handle"): ("30", "working_days")}
        )
    assert any("超过最长15个工作日" in m for m in refused.value.details["messages"])
    with pytest.raises(Unprocessable) as refused:
        ops.update_matter_limits(
            session, users["xtgly"], code, {("normal", "verify"): ("两天", "working_days")}
        )
    assert refused.value.details["fields"] == {"normal-verify": "应为正整数"}
    assert limits == catalog.export_matters(session)["categories"][0]["matters"][0]["limits"]


# ---------------------------------------------------------------- holidays


def test_entering_2027_makes_the_work_calendar_use_it(
    session: Session, users: dict[str, User]
) -> None:
    assert not load_calendar(session).year_known(2027)
    assert any(
        "2027 年的节假日安排尚未录入" in w
        for w in ops.calendar_warnings(session, date(2026, 11, 23))
    )
    ops.enter_holidays(
        session,
        users["xtgly"],
        2027,
        [
            (date(2027, 1, 1), date(2027, 1, 3), "元旦"),
            (date(2027, 10, 1), date(2027, 10, 7), "国庆节"),
        ],
        [date(2027, 9, 26)],  # a Sunday
        "国办发明电〔2026〕测试",
    )
    calendar = load_calendar(session)
    assert calendar.year_known(2027)
    assert not calendar.is_workday(date(2027, 1, 1))  # Friday, holiday
    assert not calendar.is_workday(date(2027, 10, 4))  # Monday, holiday
    assert calendar.is_workday(date(2027, 9, 26))  # Sunday, make-up workday
    assert ops.calendar_warnings(session, date(2026, 11, 23)) == []
    (year,) = [y for y in ops.holiday_years(session) if y.year == 2027]
    assert (year.source_label, year.holidays, year.workdays) == ("管理员录入", 6, 1)
    ranges, workdays = ops.year_ranges(ops.year_days(session, 2027))
    assert ranges == [
        (date(2027, 1, 1), date(2027, 1, 1), "元旦"),
        (date(2027, 10, 1), date(2027, 10, 7), "国庆节"),
    ]
    assert workdays == [date(2027, 9, 26)]


def test_a_bad_schedule_is_refused_in_chinese(session: Session, users: dict[str, User]) -> None:
    with pytest.raises(Unprocessable, match="本来就是工作日"):
        ops.enter_holidays(
            session,
            users["xtgly"],
            2027,
            [(date(2027, 1, 1), date(2027, 1, 1), "元旦")],
            [date(2027, 9, 27)],  # a Monday
        )
    with pytest.raises(Unprocessable, match="请至少录入一个节假日"):
        ops.enter_holidays(session, users["xtgly"], 2027, [], [])
    assert not load_calendar(session).year_known(2027)


# ---------------------------------------------------------------- grid uploads


def test_grid_uploads_are_kept_under_a_random_token(tmp_path: Path) -> None:
    uploads = ops.GridUploads(tmp_path / "imports")
    token = uploads.save("../../陆河 网格.GeoJSON", b"{}", crs="EPSG:4490", name="", user_id=7)
    stored = uploads.get(token)
    assert stored is not None
    assert stored.path.parent == tmp_path / "imports" / token
    assert stored.path.name == "陆河_网格.geojson"
    assert (stored.crs, stored.user_id) == ("EPSG:4490", 7)
    assert uploads.get("../" + token) is None and uploads.get("0" * 32) is None
    uploads.purge(max_age_s=-1)
    assert uploads.get(token) is None


# ---------------------------------------------------------------- the audit log


def test_audit_entries_filter_and_the_chain_names_a_tampered_row(
    session: Session, users: dict[str, User]
) -> None:
    auditor = users["sjgly"]
    ops.assign_role(session, users["aqgly"], users["zbz"], "county_dispatcher")
    session.flush()
    rows, total = ops.audit_entries(
        session, auditor, ops.AuditFilter(object_type="user", object_id=str(users["zbz"].id))
    )
    assert total >= 2 and rows[0].action == "update"  # newest first; the create came before
    assert ops.verify_audit_log(session, auditor, KEY).ok
    target = rows[0].id
    session.execute(text("UPDATE audit_log SET data = '{}' WHERE id = :id"), {"id": target})
    report = ops.verify_audit_log(session, auditor, KEY)
    assert report.problem is not None
    assert (report.problem.entry_id, report.problem.kind) == (target, "tampered")
    assert f"第 {target} 条记录的内容被篡改" in report.problem.message
