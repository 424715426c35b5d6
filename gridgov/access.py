"""Who may see what: jurisdiction by region-code prefix, department, or own grids.

`can_view` (one event) and `visible` (a query filter) state the same rule twice, for
Python and for SQL; tests check they agree.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, false, or_, select, true

from gridgov.models import Event, EventAssignment, HolderLevel, Role, User

COUNTY_CENTRE_ROLES = frozenset({Role.COUNTY_DISPATCHER, Role.COUNTY_SHIFT_LEAD})
AREA_ROLES = frozenset({Role.TOWN_OPERATOR, *COUNTY_CENTRE_ROLES, Role.LEADER})


REGION_COLUMNS = {
    6: Event.county_code,
    9: Event.town_code,
    12: Event.village_code,
    15: Event.grid_code,
}
"""The code column of each region level, by code length (each indexed with reported_at)."""


def in_region(code: str) -> ColumnElement[bool]:
    """Return the SQL condition: the event lies in the region or grid `code`.

    An equality on the code column of the code's level, so both databases use its index
    (SQLite's LIKE is case-insensitive and can use no index for a prefix); any other length
    falls back to a prefix match on the grid code.
    """
    column = REGION_COLUMNS.get(len(code))
    return column == code if column is not None else Event.grid_code.startswith(code)


def centre_of(user: User) -> tuple[str, str] | None:
    """Return (holder level, region code) of the centre the user works in, if any."""
    if user.role == Role.TOWN_OPERATOR:
        return HolderLevel.TOWN.value, user.region_code
    if user.role in COUNTY_CENTRE_ROLES:
        return HolderLevel.COUNTY.value, user.region_code
    return None


def in_area(user: User, region_code: str) -> bool:
    """Return whether a region or grid code lies inside the user's jurisdiction."""
    return region_code.startswith(user.region_code)


def can_view(user: User, event: Event) -> bool:
    """Return whether `user` may see `event`."""
    role = Role(user.role)
    if role in AREA_ROLES:
        return in_area(user, event.grid_code)
    if role == Role.GRID_WORKER:
        return (
            event.reporter_id == user.id
            or event.holder_user_id == user.id
            or event.grid_code in set(user.grid_codes)
        )
    if role == Role.DEPT_HANDLER:
        return any(a.department_id == user.department_id for a in event.assignments)
    return False


def visible(user: User) -> ColumnElement[Any]:
    """Return a WHERE clause selecting the events `user` may see."""
    role = Role(user.role)
    if role in AREA_ROLES:
        return in_region(user.region_code)
    if role == Role.GRID_WORKER:
        grids = user.grid_codes
        return or_(
            Event.reporter_id == user.id,
            Event.holder_user_id == user.id,
            Event.grid_code.in_(grids) if grids else false(),
        )
    if role == Role.DEPT_HANDLER and user.department_id is not None:
        return Event.id.in_(
            select(EventAssignment.event_id).where(
                EventAssignment.department_id == user.department_id
            )
        )
    return false() if role not in AREA_ROLES else true()
