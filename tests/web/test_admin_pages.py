"""Administration pages: who sees which page (三员分立), forms that keep input, uploads, audit."""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from datetime import date
from pathlib import Path

import geopandas as gpd
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from gridgov import catalog
from gridgov.calendar_store import load_calendar
from gridgov.config import ROOT
from gridgov.models import AuditEntry, GridSet, Role, User
from gridgov.regions import active_grid_set

CSRF = "test-csrf-token"
STRONG = "Wangge#2027x"
COUNTY = "441523"
GRIDS = ROOT / "geodata" / COUNTY / "grids.geojson"

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

PAGES: dict[str, Role] = {
    "/admin/": Role.SYS_ADMIN,
    "/admin/users": Role.SYS_ADMIN,
    "/admin/users/new": Role.SYS_ADMIN,
    "/admin/departments": Role.SYS_ADMIN,
    "/admin/departments/new": Role.SYS_ADMIN,
    "/admin/matters": Role.SYS_ADMIN,
    "/admin/matters/export": Role.SYS_ADMIN,
    "/admin/matters/0101/limits": Role.SYS_ADMIN,
    "/admin/holidays": Role.SYS_ADMIN,
    "/admin/grids": Role.SYS_ADMIN,
    "/admin/security": Role.SEC_ADMIN,
    "/admin/accounts": Role.SEC_ADMIN,
    "/admin/audit": Role.AUDIT_ADMIN,
}
"""Every administration page and the one role it belongs to."""


def sign_in(client: FlaskClient, user: User) -> FlaskClient:
    with client.session_transaction() as s:
        s.clear()
        s.permanent = True
        s.update(user_id=user.id, seen=int(time.time()), csrf_token=CSRF)
    return client


def post(client: FlaskClient, url: str, data: dict | None = None, **kwargs) -> TestResponse:
    return client.post(url, data={"csrf_token": CSRF, **(data or {})}, **kwargs)


def as_role(client: FlaskClient, users: dict[str, User], role: Role) -> FlaskClient:
    return sign_in(client, users[ROLE_ACCOUNTS[role]])


def audit_tail(session: Session) -> int:
    return session.scalar(select(func.max(AuditEntry.id))) or 0


# ---------------------------------------------------------------- who sees which page


@pytest.mark.parametrize("role", list(Role), ids=str)
@pytest.mark.parametrize("path", list(PAGES))
def test_each_admin_page_opens_for_its_role_only(
    client: FlaskClient, users: dict[str, User], path: str, role: Role
) -> None:
    response = as_role(client, users, role).get(path)
    if PAGES[path] == role:
        assert response.status_code == 200, response.text[:500]
    else:
        assert response.status_code == 403
        assert "无权访问" in response.text and f"仅限{PAGES[path].label}" in response.text


@pytest.mark.parametrize("path", list(PAGES))
def test_anonymous_visitors_are_sent_to_sign_in(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response.location.startswith("/login?next=")


def test_the_overview_links_every_sys_admin_page(
    client: FlaskClient, users: dict[str, User]
) -> None:
    page = as_role(client, users, Role.SYS_ADMIN).get("/admin/").text
    for path in ("/admin/users", "/admin/departments", "/admin/matters", "/admin/holidays"):
        assert f'href="{path}"' in page
    assert 'href="/admin/grids"' in page and "三员分立" in page
    assert 'href="/admin/audit"' not in page and 'href="/admin/accounts"' not in page


# ---------------------------------------------------------------- users


def worker_form(session: Session, **changes: str) -> dict:
    village = session.scalar(
        select(User.region_code).where(User.username == "wgy")
    )  # the demo grid worker's village
    grids = [
        g
        for g in session.scalars(
            select(GridSet).where(GridSet.county_code == COUNTY, GridSet.active.is_(True))
        )
        .one()
        .grids
        if g.village_code == village
    ]
    data = {
        "username": "wgy3",
        "display_name": "孙丽（网格员）",
        "role": "grid_worker",
        "region_code": village,
        "grid_codes": [grids[0].code, grids[1].code],
        "phone": "13800001111",
        "active": "1",
        "password": STRONG,
        "confirm_password": STRONG,
    }
    data.update(changes)
    return data


def test_sys_admin_creates_a_grid_worker_and_the_audit_log_names_them(
    client: FlaskClient, session: Session, users: dict[str, User]
) -> None:
    before = audit_tail(session)
    data = worker_form(session)
    response = post(as_role(client, users, Role.SYS_ADMIN), "/admin/users/new", data)
    assert response.status_code == 302
    user = session.scalar(select(User).where(User.username == "wgy3"))
    assert user is not None and user.grid_codes == sorted(data["grid_codes"])
    assert "已创建" in client.get(response.location).text
    entries = session.scalars(select(AuditEntry).where(AuditEntry.id > before)).all()
    assert {(e.action, e.object_type) for e in entries} >= {
        ("create", "user"),
        ("create", "user_grid"),
    }
    assert {e.actor for e in entries} == {"xtgly"}
    assert "***" in next(e.data for e in entries if e.object_type == "user")  # no hash


def test_a_weak_password_is_refused_in_chinese_keeping_the_input(
    client: FlaskClient, session: Session, users: dict[str, User]
) -> None:
    data = worker_form(session, password="abc123", confirm_password="abc123")
    response = post(as_role(client, users, Role.SYS_ADMIN), "/admin/users/new", data)
    assert response.status_code == 422
    page = response.text
    assert "密码至少需要 10 个字符" in page and "用户未创建" in page
    assert 'value="wgy3"' in page and 'value="孙丽（网格员）"' in page
    assert 'value="13800001111"' in page
    assert all(f'value="{code}" checked' in page for code in data["grid_codes"])
    assert "abc123" not in page
    assert session.scalar(select(User).where(User.username == "wgy3")) is None


def test_sys_admin_cannot_assign_roles_or_touch_admin_accounts(
    client: FlaskClient, session: Session, users: dict[str, User]
) -> None:
    as_role(client, users, Role.SYS_ADMIN)
    target = users["zzzx"]
    edit = {"display_name": "王芳", "region_code": target.region_code, "active": "1"}
    refused = post(client, f"/admin/users/{target.id}", {**edit, "role": "leader"})
    assert refused.status_code == 403 and "安全管理员" in refused.text
    assert post(client, f"/admin/accounts/{target.id}/role", {"role": "leader"}).status_code == 403
    for name in ("sys_admin", "sec_admin", "audit_admin"):
        created = post(client, "/admin/users/new", worker_form(session, role=name))
        assert created.status_code == 403
    admin = users["aqgly"]
    assert client.get(f"/admin/users/{admin.id}").status_code == 403
    assert post(client, f"/admin/users/{admin.id}/active", {"active": "0"}).status_code == 403
    session.expire_all()
    assert (target.role, admin.active) == ("town_operator", True)
    assert session.scalar(select(User).where(User.username == "wgy3")) is None
    # The role shows on the edit page, but only as text.
    page = client.get(f"/admin/users/{target.id}").text
    assert 'name="role"' not in page and "由安全管理员" in page
    assert post(client, f"/admin/users/{target.id}", edit).status_code == 302


def test_the_user_list_searches_by_name_role_and_unit(
    client: FlaskClient, users: dict[str, User]
) -> None:
    as_role(client, users, Role.SYS_ADMIN)
    page = client.get("/admin/users?q=螺溪").text  # department names
    assert "周敏（螺溪镇环卫所）" in page and "刘洋" not in page
    page = client.get("/admin/users?role=grid_worker").text
    assert "张伟（网格员）" in page and "王芳" not in page
    page = client.get("/admin/users?region=441523100").text  # 河田镇
    assert "李娜（网格员）" in page and "张伟（网格员）" not in page
    grids = client.get(f"/admin/users/grids?village={users['wgy'].region_code}").get_json()
    assert {g["code"] for g in grids["grids"]} == set(users["wgy"].grid_codes)


# ---------------------------------------------------------------- accounts (security administrator)


def test_sec_admin_assigns_roles_unlocks_and_forces_a_password_change(
    client: FlaskClient, session: Session, users: dict[str, User]
) -> None:
    as_role(client, users, Role.SEC_ADMIN)
    target = users["ddy"]
    response = post(client, f"/admin/accounts/{target.id}/role", {"role": "sys_admin"})
    assert response.status_code == 302
    assert "系统管理员" in client.get(response.location).text
    assert post(client, f"/admin/accounts/{target.id}/reset-password").status_code == 302
    assert post(client, f"/admin/accounts/{target.id}/unlock").status_code == 302
    assert post(client, f"/admin/accounts/{target.id}/active", {"active": "0"}).status_code == 302
    session.expire_all()
    assert (target.role, target.active) == ("sys_admin", False)
    own = users["aqgly"]
    refused = post(client, f"/admin/accounts/{own.id}/role", {"role": "leader"})
    assert refused.status_code == 403 and "不能修改自己的角色" in refused.text
    narrow = post(client, f"/admin/accounts/{users['ld'].id}/role", {"role": "grid_worker"})
    assert narrow.status_code == 422 and "新建网格员账号" in narrow.text


def test_audit_admin_cannot_change_anything(
    client: FlaskClient, session: Session, users: dict[str, User]
) -> None:
    as_role(client, users, Role.AUDIT_ADMIN)
    target = users["ddy"]
    before = audit_tail(session)
    attempts = [
        ("/admin/users/new", worker_form(session)),
        (f"/admin/users/{target.id}", {"display_name": "x", "region_code": COUNTY}),
        (f"/admin/users/{target.id}/active", {"active": "0"}),
        (f"/admin/accounts/{target.id}/role", {"role": "sys_admin"}),
        (f"/admin/accounts/{target.id}/active", {"active": "0"}),
        (f"/admin/accounts/{target.id}/reset-password", {}),
        ("/admin/holidays", {"year": "2027"}),
        ("/admin/departments/new", {"name": "x"}),
        ("/admin/grids/check", {}),
        ("/admin/security", {"min_length": "8"}),
    ]
    for url, data in attempts:
        assert post(client, url, data).status_code == 403, url
    assert audit_tail(session) == before
    # The audit log itself has no route that changes it.
    assert client.post("/admin/audit", data={"csrf_token": CSRF}).status_code == 405


# ---------------------------------------------------------------- matter list


def test_an_invalid_matter_upload_shows_every_message_and_changes_nothing(
    client: FlaskClient, session: Session, users: dict[str, User]
) -> None:
    as_role(client, users, Role.SYS_ADMIN)
    before = catalog.export_matters(session)
    downloaded = client.get("/admin/matters/export")
    assert downloaded.mimetype == "application/json"
    assert "attachment" in downloaded.headers["Content-Disposition"]
    data = json.loads(downloaded.text)
    assert data == before
    data["categories"][0]["matters"][0]["name"] = "改过的名称"
    data["categories"][0]["matters"][0]["lead_kind"] = "no_such_kind"
    data["categories"][1]["matters"][0]["limits"]["normal"]["handle"] = [40, "working_days"]
    upload = io.BytesIO(json.dumps(data, ensure_ascii=False).encode())
    response = post(
        client,
        "/admin/matters/import",
        {"file": (upload, "matters.json")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 422
    assert "数据未作任何修改" in response.text
    assert "主办部门类型“no_such_kind”未在部门清单中定义" in response.text
    assert "超过最长15个工作日" in response.text
    garbage = post(
        client,
        "/admin/matters/import",
        {"file": (io.BytesIO(b"[1, 2"), "m.json")},
        content_type="multipart/form-data",
    )
    assert garbage.status_code == 422 and "不是有效的 JSON" in garbage.text
    session.expire_all()
    assert catalog.export_matters(session) == before


def test_a_valid_matter_upload_is_saved(
    client: FlaskClient, session: Session, users: dict[str, User]
) -> None:
    as_role(client, users, Role.SYS_ADMIN)
    data = json.loads(client.get("/admin/matters/export").text)
    data["categories"][0]["matters"][0]["photo_required"] = True
    upload = io.BytesIO(json.dumps(data, ensure_ascii=False).encode())
    response = post(
        client,
        "/admin/matters/import",
        {"file": (upload, "matters.json")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 302
    assert "事项清单已导入" in client.get(response.location).text
    session.expire_all()
    assert catalog.export_matters(session)["categories"][0]["matters"][0]["photo_required"]


def limit_form(page: str) -> dict[str, str]:
    """Return the limits form of a matter as the browser would submit it unchanged."""
    form = dict(re.findall(r'name="([a-z]+-[a-z]+)" id="f-[^"]+" value="(\d+)"', page))
    for key in list(form):
        unit = re.search(rf'name="{key}-unit".*?<option value="([a-z_]+)" selected', page, re.S)
        assert unit is not None
        form[f"{key}-unit"] = unit.group(1)
    return form


def test_a_matter_limit_is_edited_inline(
    client: FlaskClient, session: Session, users: dict[str, User]
) -> None:
    as_role(client, users, Role.SYS_ADMIN)
    form = limit_form(client.get("/admin/matters/0101/limits").text)
    assert len(form) == 24
    bad = post(client, "/admin/matters/0101/limits", {**form, "normal-handle": "0"})
    assert bad.status_code == 422 and "至少为 1" in bad.text
    slow = {**form, "urgent-accept": "3", "urgent-accept-unit": "working_days"}
    refused = post(client, "/admin/matters/0101/limits", slow)
    assert refused.status_code == 422 and "受理、分拨不应超过1个工作日" in refused.text
    assert 'name="urgent-accept" id="f-urgent-accept" value="3"' in refused.text  # kept
    form["normal-handle"], form["normal-handle-unit"] = "3", "working_days"
    response = post(client, "/admin/matters/0101/limits", form)
    assert response.status_code == 302 and response.location.endswith("#m-0101")
    session.expire_all()
    matter = catalog.export_matters(session)["categories"][0]["matters"][0]
    assert matter["limits"]["normal"]["handle"] == [3, "working_days"]
    assert matter["limits"]["urgent"]["accept"] == [1, "hours"]


# ---------------------------------------------------------------- holidays


def test_entering_2027_holidays_feeds_the_work_calendar(
    client: FlaskClient, session: Session, users: dict[str, User]
) -> None:
    as_role(client, users, Role.SYS_ADMIN)
    next_year = date.today().year + 1
    if next_year == 2027:
        assert "2027 年的节假日安排尚未录入" in client.get("/admin/holidays").text
    data = {
        "year": "2027",
        "note": "国办发明电〔2026〕测试",
        "h_name": ["元旦", "春节", "国庆节", ""],
        "h_start": ["2027-01-01", "2027-02-06", "2027-10-01", ""],
        "h_end": ["2027-01-01", "2027-02-12", "2027-10-07", ""],
        "workday": ["2027-02-14", "2027-09-26", ""],
    }
    response = post(client, "/admin/holidays", data)
    assert response.status_code == 302, response.text[:2000]
    calendar = load_calendar(session)
    assert calendar.year_known(2027)
    assert not calendar.is_workday(date(2027, 2, 8))  # Monday of the Spring Festival
    assert calendar.is_workday(date(2027, 2, 14))  # Sunday, make-up workday
    assert not calendar.is_workday(date(2027, 10, 6))
    page = client.get(response.location).text
    assert "2027-02-14" in page and "调休上班" in page and "管理员录入" in page
    assert "2027 年的节假日安排尚未录入" not in page


def test_a_bad_holiday_schedule_is_refused_keeping_the_rows(
    client: FlaskClient, session: Session, users: dict[str, User]
) -> None:
    as_role(client, users, Role.SYS_ADMIN)
    data = {
        "year": "2027",
        "h_name": ["元旦", "春节"],
        "h_start": ["2027-01-01", "2027-02-06"],
        "h_end": ["2027-01-01", "2027-02-12"],
        "workday": ["2027-02-15"],  # a Monday
    }
    response = post(client, "/admin/holidays", data)
    assert response.status_code == 422
    assert "调休上班日 2027-02-15 是星期一，本来就是工作日" in response.text
    assert 'value="2027-02-06"' in response.text and 'value="2027-02-15"' in response.text
    assert not load_calendar(session).year_known(2027)


# ---------------------------------------------------------------- grid data


@pytest.fixture(scope="module")
def sample() -> gpd.GeoDataFrame:
    return gpd.read_file(GRIDS)[["code", "name", "geometry"]]


def _zipped_shapefile(frame: gpd.GeoDataFrame, folder: Path) -> bytes:
    """Return the grids as a zipped Shapefile (small enough to stay in memory on upload)."""
    frame.to_file(folder / "grids.shp", encoding="utf-8")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for part in folder.glob("grids.*"):
            zf.write(part, part.name)
    return archive.getvalue()


def _neighbours(frame: gpd.GeoDataFrame) -> tuple[int, int]:
    """Return two grids of one village that share the longest edge."""
    best = (0.0, 0, 0)
    for i, j in zip(*frame.sindex.query(frame.geometry, predicate="touches"), strict=True):
        if i < j and frame.code[i][:12] == frame.code[j][:12]:
            shared = frame.geometry[i].intersection(frame.geometry[j]).length
            best = max(best, (shared, int(i), int(j)))
    return best[1], best[2]


def _upload(client: FlaskClient, content: bytes, filename: str, **fields: str) -> TestResponse:
    return post(
        client,
        "/admin/grids/check",
        {"file": (io.BytesIO(content), filename), **fields},
        content_type="multipart/form-data",
    )


def test_overlapping_grids_are_reported_by_code_and_nothing_changes(
    app: Flask,
    client: FlaskClient,
    session: Session,
    users: dict[str, User],
    sample: gpd.GeoDataFrame,
    tmp_path: Path,
) -> None:
    as_role(client, users, Role.SYS_ADMIN)
    before = active_grid_set(session, COUNTY)
    assert before is not None
    i, j = _neighbours(sample)
    frame = sample.copy()
    frame.loc[i, "geometry"] = sample.geometry[i].union(
        sample.geometry[j].intersection(sample.geometry[i].buffer(0.0003))
    )
    response = _upload(client, _zipped_shapefile(frame, tmp_path), "重叠网格.zip")
    assert response.status_code == 422
    page = response.text
    assert "网格重叠" in page and "拒绝导入" in page
    assert sample.code[i] in page and sample.code[j] in page
    assert "确认导入" not in page
    imports = Path(app.extensions["gridgov.settings"].upload_folder) / "imports"
    assert not any(imports.iterdir())  # the refused file is not kept
    session.expire_all()
    assert active_grid_set(session, COUNTY).id == before.id


def test_a_clean_grid_file_is_checked_then_imported_on_confirmation(
    client: FlaskClient,
    session: Session,
    users: dict[str, User],
    sample: gpd.GeoDataFrame,
    tmp_path: Path,
) -> None:
    as_role(client, users, Role.SYS_ADMIN)
    before = active_grid_set(session, COUNTY)
    assert before is not None
    content = _zipped_shapefile(sample, tmp_path)
    checked = _upload(client, content, "陆河网格.zip", name="陆河县网格 2027 版")
    assert checked.status_code == 200 and "检查通过" in checked.text
    token = re.search(r'name="token" value="([0-9a-f]{32})"', checked.text)
    assert token is not None
    session.expire_all()
    assert active_grid_set(session, COUNTY).id == before.id  # the check wrote nothing
    stranger = sign_in(client, users["aqgly"])
    assert post(stranger, "/admin/grids/import", {"token": token.group(1)}).status_code == 403
    as_role(client, users, Role.SYS_ADMIN)
    done = post(client, "/admin/grids/import", {"token": token.group(1)})
    assert done.status_code == 302
    session.expire_all()
    after = active_grid_set(session, COUNTY)
    assert after is not None and after.id != before.id
    assert (after.name, after.grid_count) == ("陆河县网格 2027 版", len(sample))
    assert "陆河县网格 2027 版" in client.get("/admin/grids").text
    again = post(client, "/admin/grids/import", {"token": token.group(1)})
    assert again.status_code == 302  # the upload is gone: back to the page with a message
    assert "已过期" in client.get(again.location).text


def test_a_grid_upload_of_the_wrong_type_is_refused(
    client: FlaskClient, users: dict[str, User]
) -> None:
    as_role(client, users, Role.SYS_ADMIN)
    response = _upload(client, b"not a map", "grids.xlsx", crs="EPSG:4490")
    assert response.status_code == 422 and "只支持 ZIP 打包的 Shapefile" in response.text
    assert 'value="EPSG:4490"' in response.text


# ---------------------------------------------------------------- the audit log


def test_the_audit_page_lists_filters_and_verifies_then_names_a_tampered_row(
    client: FlaskClient, session: Session, users: dict[str, User]
) -> None:
    target = users["zbz"]
    post(sign_in(client, users["aqgly"]), f"/admin/accounts/{target.id}/role", {"role": "leader"})
    as_role(client, users, Role.AUDIT_ADMIN)
    page = client.get(f"/admin/audit?object_type=user&object_id={target.id}&actor=aqgly").text
    assert "county_shift_lead" in page and "leader" in page and "修改" in page
    entry_id = session.scalar(
        select(func.max(AuditEntry.id)).where(
            AuditEntry.object_type == "user", AuditEntry.object_id == str(target.id)
        )
    )
    today = date.today().isoformat()
    assert f'id="audit-{entry_id}"' in client.get(f"/admin/audit?date_from={today}").text
    assert f'id="audit-{entry_id}"' not in client.get("/admin/audit?date_to=2020-01-01").text
    verified = client.get("/admin/audit?verify=1").text
    assert "完整性校验通过" in verified

    session.execute(text("UPDATE audit_log SET actor = 'nobody' WHERE id = :id"), {"id": entry_id})
    session.commit()
    broken = client.get("/admin/audit?verify=1")
    assert broken.status_code == 200
    assert "完整性校验未通过" in broken.text
    assert f"第 {entry_id} 条记录的内容被篡改" in broken.text
    assert f'id="audit-{entry_id}" class="action-update row-broken"' in broken.text
