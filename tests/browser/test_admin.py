"""Administration pages in a real browser: screenshots of every page, and one 三员分立 flow."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import geopandas as gpd
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from gridgov.config import ROOT
from gridgov.models import Grid, GridSet, Region, User

pytestmark = pytest.mark.browser

COUNTY = "441523"
LUOXI = "441523105"


def second_village(live_server) -> tuple[str, str, list[str]]:
    """Return (code, name, grid codes) of 螺溪镇's second village (not the demo worker's)."""
    with live_server.session() as s:
        village = s.scalars(
            select(Region)
            .where(Region.parent_code == LUOXI, Region.level == "village")
            .order_by(Region.code)
        ).all()[1]
        grids = s.scalars(
            select(Grid.code)
            .join(GridSet, GridSet.id == Grid.grid_set_id)
            .where(GridSet.active.is_(True), Grid.village_code == village.code)
            .order_by(Grid.code)
        ).all()
        return village.code, village.name, list(grids)


def overlapping_zip(folder: Path) -> tuple[Path, str, str]:
    """Write the county's grids with one grid grown into its neighbour, as a zipped Shapefile."""
    frame = gpd.read_file(ROOT / "geodata" / COUNTY / "grids.geojson")[["code", "name", "geometry"]]
    best = (0.0, 0, 0)
    for i, j in zip(*frame.sindex.query(frame.geometry, predicate="touches"), strict=True):
        if i < j and frame.code[i][:12] == frame.code[j][:12]:
            best = max(best, (frame.geometry[i].intersection(frame.geometry[j]).length, i, j))
    _, i, j = best
    frame.loc[i, "geometry"] = frame.geometry[i].union(
        frame.geometry[j].intersection(frame.geometry[i].buffer(0.0003))
    )
    frame.to_file(folder / "grids.shp", encoding="utf-8")
    archive = folder / "陆河县网格（有重叠）.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for part in folder.glob("grids.*"):
            zf.write(part, part.name)
    archive.write_bytes(buffer.getvalue())
    return archive, str(frame.code[i]), str(frame.code[j])


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="退出").click()
    page.wait_for_url("**/login**")


def test_every_admin_page_on_a_desktop(page: Page, live_server, login, shot, tmp_path) -> None:
    page.set_viewport_size({"width": 1366, "height": 900})
    login(page, "xtgly")
    expect(page).to_have_url(f"{live_server.url}/admin/")
    expect(page.get_by_role("heading", name="系统管理")).to_be_visible()
    shot(page, "admin-overview")

    page.goto("/admin/users")
    expect(page.locator("table.admin-table")).to_be_visible()
    expect(page.get_by_text("由安全管理员管理").first).to_be_visible()
    shot(page, "admin-users")

    page.goto("/admin/users/new")
    page.get_by_label("用户名", exact=True).fill("weak1")
    page.get_by_label("姓名", exact=True).fill("弱密码示例")
    page.get_by_label("角色", exact=True).select_option("town_operator")
    page.get_by_label("辖区", exact=True).select_option(LUOXI)
    page.get_by_label("初始密码").fill("abc")
    page.get_by_role("button", name="创建用户").click()
    expect(page.locator(".field-error").first).to_contain_text("密码至少需要")
    expect(page.get_by_label("姓名", exact=True)).to_have_value("弱密码示例")
    shot(page, "admin-user-new")

    page.goto("/admin/departments?region=" + LUOXI)
    expect(page.locator("table.admin-table")).to_contain_text("环卫")
    shot(page, "admin-departments")

    page.goto("/admin/matters")
    expect(page.locator("#m-0101")).to_be_visible()
    page.set_viewport_size({"width": 1366, "height": 900})
    shot(page, "admin-matters")

    page.goto("/admin/matters/0101/limits")
    expect(page.get_by_label("一般·处置时限")).to_have_value("1")
    shot(page, "admin-matter-limits")

    page.goto("/admin/holidays")
    expect(page.get_by_role("heading", name="录入年度安排")).to_be_visible()
    shot(page, "admin-holidays")

    page.goto("/admin/grids")
    expect(page.get_by_text("当前").first).to_be_visible()
    shot(page, "admin-grids")

    archive, a, b = overlapping_zip(tmp_path)
    page.get_by_label("网格文件", exact=True).set_input_files(str(archive))
    page.get_by_role("button", name="上传并检查").click()
    expect(page.get_by_role("heading", name="网格导入检查")).to_be_visible()
    expect(page.locator("table.problems")).to_contain_text(a)
    expect(page.locator("table.problems")).to_contain_text(b)
    expect(page.get_by_role("button", name="确认导入")).to_have_count(0)
    shot(page, "admin-grid-report")
    sign_out(page)

    login(page, "aqgly")
    page.goto("/admin/accounts")
    expect(page.get_by_role("heading", name="角色与账号状态")).to_be_visible()
    shot(page, "admin-accounts")
    page.locator("tr", has_text="zbz").get_by_role("link", name="管理").click()
    expect(page.get_by_role("heading", name="分配角色")).to_be_visible()
    shot(page, "admin-account")
    sign_out(page)

    login(page, "sjgly")
    expect(page).to_have_url(f"{live_server.url}/admin/audit")
    page.get_by_role("button", name="校验完整性").click()
    expect(page.locator(".verify-result")).to_contain_text("完整性校验通过")
    shot(page, "admin-audit")


def test_sys_admin_creates_a_grid_worker_and_the_auditor_sees_it(
    page: Page, live_server, login, shot
) -> None:
    page.set_viewport_size({"width": 1366, "height": 900})
    village, village_name, grids = second_village(live_server)
    assert len(grids) >= 2
    login(page, "xtgly")
    page.goto("/admin/users/new")
    page.get_by_label("用户名", exact=True).fill("wgy_flow")
    page.get_by_label("姓名", exact=True).fill("钟敏（网格员）")
    page.get_by_label("角色", exact=True).select_option("grid_worker")
    expect(page.locator("#field-department_id")).to_be_hidden()
    page.get_by_label("辖区", exact=True).select_option(village)
    boxes = page.locator("#grid-list input[name=grid_codes]")
    expect(boxes).to_have_count(len(grids))
    boxes.nth(0).check()
    boxes.nth(1).check()
    page.get_by_label("联系电话").fill("13900002222")
    page.get_by_label("初始密码").fill("Wangge#2027x")
    page.get_by_label("再次输入密码").fill("Wangge#2027x")
    shot(page, "admin-user-new-grid-worker")
    page.get_by_role("button", name="创建用户").click()
    expect(page.locator(".alert-success")).to_contain_text("wgy_flow")
    row = page.locator("tr", has_text="wgy_flow")
    expect(row).to_contain_text("2 个")
    expect(row).to_contain_text(village_name)
    with live_server.session() as s:
        user = s.scalar(select(User).where(User.username == "wgy_flow"))
        assert user is not None and user.grid_codes == grids[:2]
        user_id = user.id
    sign_out(page)

    login(page, "sjgly")
    page.goto("/admin/audit?actor=xtgly")
    user_row = page.locator(f"tr:has(td code:text-is('{user_id}'))", has_text="用户")
    expect(user_row.first).to_contain_text("新增")
    expect(user_row.first).to_contain_text("wgy_flow")
    grid_rows = page.locator("tr", has_text="用户网格")
    expect(grid_rows).to_have_count(2)
    expect(grid_rows.first).to_contain_text("xtgly")
    page.get_by_role("button", name="校验完整性").click()
    expect(page.locator(".verify-result")).to_contain_text("完整性校验通过")
    expect(page.get_by_role("textbox", name="操作人")).to_have_value("xtgly")
    shot(page, "admin-audit-flow")
