"""Departments, users, roles and their jurisdictions."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gridgov.db import Base, UTCDateTime


class Role(StrEnum):
    """The roles of PRODUCT.md §2; administrators are split three ways (三员分立)."""

    GRID_WORKER = "grid_worker"
    TOWN_OPERATOR = "town_operator"
    COUNTY_DISPATCHER = "county_dispatcher"
    COUNTY_SHIFT_LEAD = "county_shift_lead"
    DEPT_HANDLER = "dept_handler"
    LEADER = "leader"
    SYS_ADMIN = "sys_admin"
    SEC_ADMIN = "sec_admin"
    AUDIT_ADMIN = "audit_admin"

    @property
    def label(self) -> str:
        return ROLE_LABELS[self]


ROLE_LABELS = {
    Role.GRID_WORKER: "网格员",
    Role.TOWN_OPERATOR: "镇综治中心操作员",
    Role.COUNTY_DISPATCHER: "县指挥中心调度员",
    Role.COUNTY_SHIFT_LEAD: "县指挥中心值班长",
    Role.DEPT_HANDLER: "职能部门处置员",
    Role.LEADER: "领导",
    Role.SYS_ADMIN: "系统管理员",
    Role.SEC_ADMIN: "安全管理员",
    Role.AUDIT_ADMIN: "审计管理员",
}

_ROLE_VALUES = ", ".join(f"'{r.value}'" for r in Role)


class Department(Base):
    """A county bureau (县直部门) or a town office (镇属站所) that handles events."""

    __tablename__ = "departments"
    __table_args__ = (CheckConstraint("level IN ('county', 'town')", name="level"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(32), index=True)
    """What the unit is (e.g. 'police', 'justice'); the matter list names kinds, and the
    event's town or county picks the actual unit of that kind."""
    level: Mapped[str] = mapped_column(String(8))
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    def __repr__(self) -> str:
        return f"<Department {self.code} {self.name}>"


class User(Base):
    """A person who signs in; one role, one jurisdiction (a region code prefix)."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(f"role IN ({_ROLE_VALUES})", name="role"),
        CheckConstraint(
            "(role <> 'dept_handler') OR (department_id IS NOT NULL)", name="handler_has_dept"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32), index=True)
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"), index=True)
    phone: Mapped[str] = mapped_column(String(32), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())

    department: Mapped[Department | None] = relationship()
    grids: Mapped[list[UserGrid]] = relationship(
        cascade="all, delete-orphan", order_by="UserGrid.grid_code"
    )

    @property
    def grid_codes(self) -> list[str]:
        return [g.grid_code for g in self.grids]

    def __repr__(self) -> str:
        return f"<User {self.username} {self.role}>"


class UserGrid(Base):
    """A grid a grid worker is responsible for, by grid code (survives re-imports)."""

    __tablename__ = "user_grids"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    grid_code: Mapped[str] = mapped_column(String(15), primary_key=True, index=True)
