"""SQLAlchemy models; importing this package registers every table on Base.metadata."""

from gridgov.models.audit import ApiToken, AuditEntry, AuditHead
from gridgov.models.calendar import CalendarDay, CalendarYear, Setting
from gridgov.models.events import (
    COVERED_COLUMNS,
    STATE_LABELS,
    TERMINAL_STATES,
    Attachment,
    Event,
    EventAction,
    EventAssignment,
    EventCounter,
    EventState,
    HolderLevel,
    Notice,
    Source,
)
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
from gridgov.models.unplaced import (
    QUEUE_SOURCES,
    UnplacedReason,
    UnplacedReport,
    UnplacedStatus,
)

__all__ = [
    "CODE_LENGTHS",
    "COVERED_COLUMNS",
    "QUEUE_SOURCES",
    "ROLE_LABELS",
    "STATE_LABELS",
    "TERMINAL_STATES",
    "ApiToken",
    "Attachment",
    "AuditEntry",
    "AuditHead",
    "CalendarDay",
    "CalendarYear",
    "Department",
    "Event",
    "EventAction",
    "EventAssignment",
    "EventCounter",
    "EventState",
    "Grid",
    "GridSet",
    "HolderLevel",
    "Level",
    "Matter",
    "MatterAssist",
    "MatterCategory",
    "MatterTimeLimit",
    "Notice",
    "Region",
    "Role",
    "Setting",
    "Source",
    "Stage",
    "TimeUnit",
    "UnplacedReason",
    "UnplacedReport",
    "UnplacedStatus",
    "Urgency",
    "User",
    "UserGrid",
]
