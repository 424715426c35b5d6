"""SQLAlchemy models; importing this package registers every table on Base.metadata."""

from gridgov.models.calendar import CalendarDay, CalendarYear, Setting
from gridgov.models.matters import (
    Matter,
    MatterAssist,
    MatterCategory,
    MatterTimeLimit,
    Stage,
    TimeUnit,
    Urgency,
)
from gridgov.models.org import ROLE_LABELS, Department, Role, User, UserGrid
from gridgov.models.regions import CODE_LENGTHS, Grid, GridSet, Level, Region

__all__ = [
    "CODE_LENGTHS",
    "ROLE_LABELS",
    "CalendarDay",
    "CalendarYear",
    "Department",
    "Grid",
    "GridSet",
    "Level",
    "Matter",
    "MatterAssist",
    "MatterCategory",
    "MatterTimeLimit",
    "Region",
    "Role",
    "Setting",
    "Stage",
    "TimeUnit",
    "Urgency",
    "User",
    "UserGrid",
]
