"""The work menu of each role, in one place (base.html renders it)."""

from __future__ import annotations

from gridgov.models import Role

MenuItem = tuple[str, str]
"""(Chinese label, URL path)."""

_CENTRE: list[MenuItem] = [
    ("调度台", "/desk/"),
    ("事件查询", "/desk/events"),
    ("登记事件", "/desk/new"),
    ("民情地图", "/map/"),
    ("统计分析", "/dashboard/"),
]

MENU: dict[Role, list[MenuItem]] = {
    Role.GRID_WORKER: [
        ("上报", "/m/report"),
        ("我的上报", "/m/reports"),
        ("待核查", "/m/tasks"),
        ("待上传", "/m/queue"),
    ],
    Role.TOWN_OPERATOR: _CENTRE,
    Role.COUNTY_DISPATCHER: _CENTRE,
    Role.COUNTY_SHIFT_LEAD: _CENTRE,
    Role.DEPT_HANDLER: [("待办事件", "/inbox/"), ("已办事件", "/inbox/done")],
    Role.LEADER: [("民情地图", "/map/"), ("统计分析", "/dashboard/"), ("事件查询", "/desk/events")],
    Role.SYS_ADMIN: [
        ("用户", "/admin/users"),
        ("部门", "/admin/departments"),
        ("事项清单", "/admin/matters"),
        ("节假日", "/admin/holidays"),
        ("网格数据", "/admin/grids"),
    ],
    Role.SEC_ADMIN: [("安全策略", "/admin/security"), ("角色与账号状态", "/admin/accounts")],
    Role.AUDIT_ADMIN: [("审计日志", "/admin/audit")],
}


def menu_for(role: str) -> list[MenuItem]:
    """Return the menu items of a role."""
    return MENU.get(Role(role), [])


def active_item(menu: list[MenuItem], path: str) -> str | None:
    """Return the path of the menu item `path` belongs to: exact, else the longest folder."""
    if any(item_path == path for _, item_path in menu):
        return path
    folders = [p for _, p in menu if p.endswith("/") and path.startswith(p)]
    return max(folders, key=len, default=None)
