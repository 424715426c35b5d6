"""Demo accounts (one per role) for the sample county; used by `gridgov seed-demo` and tests."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from gridgov.auth import hash_password
from gridgov.models import Department, Grid, GridSet, Region, Role, User, UserGrid

DEMO_PASSWORD = "Gridgov#2026"
"""The one password of every demo account (documented in the README; demo data only)."""


@dataclass(frozen=True)
class DemoAccount:
    """One demo account: where it sits and what it is for."""

    username: str
    display_name: str
    role: Role
    region: str
    """Region code, or 'town:N' / 'village:N' = the N-th town / village of the county."""
    department_kind: str = ""


ACCOUNTS = (
    DemoAccount("wgy", "张伟（网格员）", Role.GRID_WORKER, "village:螺溪镇"),
    DemoAccount("wgy2", "李娜（网格员）", Role.GRID_WORKER, "village:河田镇"),
    DemoAccount("zzzx", "王芳（螺溪镇综治中心）", Role.TOWN_OPERATOR, "town:螺溪镇"),
    DemoAccount("zzzx2", "陈静（河田镇综治中心）", Role.TOWN_OPERATOR, "town:河田镇"),
    DemoAccount("ddy", "刘洋（县指挥中心调度员）", Role.COUNTY_DISPATCHER, "county"),
    DemoAccount("zbz", "黄磊（县指挥中心值班长）", Role.COUNTY_SHIFT_LEAD, "county"),
    DemoAccount("cgj", "赵强（县城管执法局）", Role.DEPT_HANDLER, "county", "urban_management"),
    DemoAccount(
        "hwsuo", "周敏（螺溪镇环卫所）", Role.DEPT_HANDLER, "town:螺溪镇", "town_sanitation"
    ),
    DemoAccount("pcs", "吴刚（螺溪派出所）", Role.DEPT_HANDLER, "town:螺溪镇", "police_station"),
    DemoAccount("ld", "郑书记（县领导）", Role.LEADER, "county"),
    DemoAccount("xtgly", "系统管理员", Role.SYS_ADMIN, "county"),
    DemoAccount("aqgly", "安全管理员", Role.SEC_ADMIN, "county"),
    DemoAccount("sjgly", "审计管理员", Role.AUDIT_ADMIN, "county"),
)


def _region(session: Session, county_code: str, spec: str) -> Region:
    if spec == "county":
        region = session.get(Region, county_code)
    else:
        level, town_name = spec.split(":", 1)
        town = session.scalar(
            select(Region).where(
                Region.level == "town", Region.name == town_name, Region.parent_code == county_code
            )
        )
        if town is None:
            raise LookupError(f"demo town {town_name} missing in {county_code}")
        region = town if level == "town" else town.children[0]
    if region is None:
        raise LookupError(f"demo region {spec} missing in {county_code}")
    return region


def create_demo_users(
    session: Session, county_code: str = "441523", password: str = DEMO_PASSWORD
) -> dict[str, User]:
    """Create (or return the existing) demo accounts; grid workers get their village's grids."""
    password_hash = hash_password(password)
    users: dict[str, User] = {}
    for account in ACCOUNTS:
        user = session.scalar(select(User).where(User.username == account.username))
        if user is None:
            region = _region(session, county_code, account.region)
            department_id = None
            if account.department_kind:
                dept = session.scalar(
                    select(Department).where(
                        Department.kind == account.department_kind,
                        Department.region_code == region.code,
                    )
                )
                if dept is None:
                    raise LookupError(f"demo department {account.department_kind} missing")
                department_id = dept.id
            user = User(
                username=account.username,
                display_name=account.display_name,
                password_hash=password_hash,
                role=account.role.value,
                region_code=region.code,
                department_id=department_id,
            )
            if account.role == Role.GRID_WORKER:
                codes = session.scalars(
                    select(Grid.code)
                    .join(GridSet, GridSet.id == Grid.grid_set_id)
                    .where(GridSet.active.is_(True), Grid.village_code == region.code)
                )
                user.grids = [UserGrid(grid_code=c) for c in codes]
            session.add(user)
            session.flush()
        users[account.username] = user
    return users
