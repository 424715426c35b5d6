"""The state machine of the closed loop, in one table.

Each transition names the states it leaves, the state it enters (None: unchanged or
decided by the operation), who may take it (roles × a relation to the event), and the
inputs it requires. Operations (gridgov.events) apply the table; pages, API, tests and
docs read it. Pure domain: no Flask, no SQLAlchemy.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gridgov.models.events import EventState as S
from gridgov.models.org import Role as R


class Relation(StrEnum):
    """How the acting user must stand to the event (jurisdiction by code or holding)."""

    HOLDING_CENTRE = "holding_centre"  # the town/county centre that holds it now
    DISPATCHING_CENTRE = "dispatching_centre"  # the centre that dispatched it
    HOLDING_DEPARTMENT = "holding_department"  # the lead department holding it
    ASSISTING_DEPARTMENT = "assisting_department"  # an active assisting department
    VERIFIER = "verifier"  # the grid worker or centre holding it for verification
    REPORTER = "reporter"  # the user who reported it
    REPORTER_OR_CENTRE = "reporter_or_centre"  # reporter, or a centre whose area covers it
    JURISDICTION = "jurisdiction"  # the event lies inside the user's region code


OPEN = frozenset(s for s in S if s.is_open)
CENTRES = frozenset({R.TOWN_OPERATOR, R.COUNTY_DISPATCHER, R.COUNTY_SHIFT_LEAD})
COUNTY_CENTRE = frozenset({R.COUNTY_DISPATCHER, R.COUNTY_SHIFT_LEAD})


@dataclass(frozen=True)
class Transition:
    """One row of the table."""

    name: str
    label: str
    sources: frozenset[S]
    target: S | None
    roles: frozenset[R]
    relation: Relation
    requires: tuple[str, ...] = ()
    """Inputs that must be present: comment, lead_department_id, days, satisfaction,
    target_event_id, after_photos, before_photos, lng_lat."""


def _t(
    name: str,
    label: str,
    sources: set[S] | frozenset[S],
    target: S | None,
    roles: set[R] | frozenset[R],
    relation: Relation,
    *requires: str,
) -> Transition:
    return Transition(name, label, frozenset(sources), target, frozenset(roles), relation, requires)


TRANSITIONS: dict[str, Transition] = {
    t.name: t
    for t in (
        _t("accept", "受理", {S.REPORTED}, S.ACCEPTED, CENTRES, Relation.HOLDING_CENTRE),
        _t(
            "reject",
            "不予受理",
            {S.REPORTED},
            S.REJECTED,
            CENTRES,
            Relation.HOLDING_CENTRE,
            "comment",
        ),
        _t(
            "void",
            "作废",
            {S.REPORTED, S.ACCEPTED, S.RETURNED},
            S.VOIDED,
            CENTRES,
            Relation.HOLDING_CENTRE,
            "comment",
        ),
        _t(
            "merge",
            "并案",
            {S.REPORTED, S.ACCEPTED, S.RETURNED},
            S.MERGED,
            CENTRES,
            Relation.HOLDING_CENTRE,
            "target_event_id",
        ),
        _t(
            "withdraw",
            "撤单",
            {S.REPORTED, S.ACCEPTED},
            S.WITHDRAWN,
            {R.GRID_WORKER, *CENTRES},
            Relation.REPORTER_OR_CENTRE,
            "comment",
        ),
        _t(
            "escalate",
            "上报上级",
            {S.REPORTED, S.ACCEPTED, S.RETURNED},
            S.REPORTED,
            {R.TOWN_OPERATOR},
            Relation.HOLDING_CENTRE,
            "comment",
        ),
        _t(
            "self_handle",
            "自办自结",
            {S.REPORTED},
            S.HANDLED,
            {R.GRID_WORKER},
            Relation.REPORTER,
            "comment",
            "before_photos",
            "after_photos",
        ),
        _t(
            "dispatch",
            "分拨",
            {S.ACCEPTED, S.RETURNED},
            S.DISPATCHED,
            CENTRES,
            Relation.HOLDING_CENTRE,
            "lead_department_id",
        ),
        _t(
            "sign",
            "签收",
            {S.DISPATCHED},
            S.HANDLING,
            {R.DEPT_HANDLER},
            Relation.HOLDING_DEPARTMENT,
        ),
        _t(
            "return",
            "回退",
            {S.DISPATCHED, S.HANDLING},
            S.RETURNED,
            {R.DEPT_HANDLER},
            Relation.HOLDING_DEPARTMENT,
            "comment",
        ),
        _t(
            "request_extension",
            "申请延期",
            {S.HANDLING},
            None,
            {R.DEPT_HANDLER},
            Relation.HOLDING_DEPARTMENT,
            "days",
            "comment",
        ),
        _t(
            "approve_extension",
            "批准延期",
            {S.HANDLING},
            None,
            {R.TOWN_OPERATOR, R.COUNTY_SHIFT_LEAD},
            Relation.DISPATCHING_CENTRE,
        ),
        _t(
            "refuse_extension",
            "驳回延期",
            {S.HANDLING},
            None,
            {R.TOWN_OPERATOR, R.COUNTY_SHIFT_LEAD},
            Relation.DISPATCHING_CENTRE,
            "comment",
        ),
        _t(
            "shelve",
            "挂账",
            {S.ACCEPTED, S.RETURNED, S.DISPATCHED, S.HANDLING},
            S.SHELVED,
            {R.COUNTY_SHIFT_LEAD},
            Relation.JURISDICTION,
            "comment",
        ),
        _t("resume", "恢复办理", {S.SHELVED}, None, {R.COUNTY_SHIFT_LEAD}, Relation.JURISDICTION),
        _t(
            "assist_note",
            "协办反馈",
            {S.DISPATCHED, S.HANDLING},
            None,
            {R.DEPT_HANDLER},
            Relation.ASSISTING_DEPARTMENT,
            "comment",
        ),
        _t(
            "handle",
            "处置反馈",
            {S.HANDLING},
            S.HANDLED,
            {R.DEPT_HANDLER},
            Relation.HOLDING_DEPARTMENT,
            "comment",
        ),
        _t(
            "verify_pass",
            "核查通过",
            {S.HANDLED},
            S.VERIFIED,
            {R.GRID_WORKER, *CENTRES},
            Relation.VERIFIER,
        ),
        _t(
            "verify_fail",
            "核查不通过（返工）",
            {S.HANDLED},
            None,
            {R.GRID_WORKER, *CENTRES},
            Relation.VERIFIER,
            "comment",
        ),
        _t("close", "结案", {S.VERIFIED}, S.CLOSED, CENTRES, Relation.HOLDING_CENTRE),
        _t(
            "evaluate",
            "评价",
            {S.CLOSED},
            None,
            {R.GRID_WORKER, *CENTRES},
            Relation.REPORTER_OR_CENTRE,
            "satisfaction",
        ),
        _t("callback", "回访", {S.CLOSED}, None, CENTRES, Relation.JURISDICTION, "comment"),
        _t(
            "supervise",
            "督办",
            OPEN,
            None,
            {R.COUNTY_SHIFT_LEAD, R.LEADER},
            Relation.JURISDICTION,
            "comment",
        ),
        _t(
            "instruct", "领导批示", frozenset(S), None, {R.LEADER}, Relation.JURISDICTION, "comment"
        ),
        _t(
            "relocate",
            "更正位置",
            OPEN - {S.SHELVED},
            None,
            CENTRES,
            Relation.HOLDING_CENTRE,
            "lng_lat",
            "comment",
        ),
    )
}
"""Every transition but the report itself (gridgov.events.report_event)."""

SATISFACTION = {"satisfied": "满意", "basically": "基本满意", "unsatisfied": "不满意"}
MAX_EXTENSION_DAYS = 15


def transition(name: str) -> Transition | None:
    """Return the transition called `name`, or None."""
    return TRANSITIONS.get(name)


def available(state: S) -> list[Transition]:
    """List the transitions whose source states include `state`."""
    return [t for t in TRANSITIONS.values() if state in t.sources]
