"""The transition table applied: role × action, state × action, inputs, and each behaviour.

Every table here is generated from gridgov.workflow.machine.TRANSITIONS and the demo accounts,
so a new transition or role enters every test without editing it.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from factories import (
    HETIAN,
    LUHE,
    LUOXI,
    TOWN_ASSIST,
    TOWN_LEAD,
    act,
    active_grids,
    department_of,
    holder_user,
    make_event,
    outsiders,
    point_in,
    report,
    self_handled,
    upload,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from gridgov.calendar_store import load_calendar
from gridgov.demo import ACCOUNTS
from gridgov.errors import Conflict, Forbidden, GridGovError, NotFound, Unprocessable
from gridgov.events import (
    DuplicateRules,
    ReportInput,
    allowed_actions,
    holder_label,
    perform,
    report_event,
)
from gridgov.geo.crs import distance_m
from gridgov.models import (
    Attachment,
    Department,
    Event,
    EventAction,
    EventState,
    HolderLevel,
    Notice,
    Role,
    User,
)
from gridgov.photos import PhotoStore
from gridgov.workflow.machine import CENTRES, TRANSITIONS, Relation, Transition
from gridgov.workflow.worktime import SHANGHAI

S = EventState
R = Role

T0 = datetime(2026, 3, 9, 9, 0, tzinfo=SHANGHAI)
"""A Monday in a month without public holidays."""

DEMO_ROLES = list(dict.fromkeys(a.role for a in ACCOUNTS))
ADMIN_ROLES = frozenset({R.SYS_ADMIN, R.SEC_ADMIN, R.AUDIT_ADMIN})
COUNTY_CENTRE = frozenset({R.COUNTY_DISPATCHER, R.COUNTY_SHIFT_LEAD})
SOURCE_ORDER = (
    S.REPORTED,
    S.ACCEPTED,
    S.RETURNED,
    S.DISPATCHED,
    S.HANDLING,
    S.SHELVED,
    S.HANDLED,
    S.VERIFIED,
    S.CLOSED,
    S.REJECTED,
    S.VOIDED,
    S.MERGED,
    S.WITHDRAWN,
)
assert set(SOURCE_ORDER) == set(S)

OUTSIDERS: dict[Role, list[tuple[str, str]]] = {
    R.GRID_WORKER: [("wgy2", "outside_jurisdiction"), ("wgy_peer", "not_holder")],
    R.TOWN_OPERATOR: [("zzzx2", "outside_jurisdiction")],
    R.COUNTY_DISPATCHER: [("jl_ddy", "outside_jurisdiction")],
    R.COUNTY_SHIFT_LEAD: [("jl_zbz", "outside_jurisdiction")],
    R.LEADER: [("jl_ld", "outside_jurisdiction")],
}
"""Users of a role who must be refused: elsewhere (outside_jurisdiction) or not holding."""

REQUIREMENTS = {
    "comment": ("comment", {"missing_input"}),
    "lead_department_id": ("lead_department_id", {"missing_input", "unknown_department"}),
    "days": ("days", {"missing_input", "bad_input"}),
    "satisfaction": ("satisfaction", {"missing_input"}),
    "target_event_id": ("target_event_id", {"missing_input"}),
    "before_photos": ("attachment_ids", {"missing_photo"}),
    "after_photos": ("attachment_ids", {"missing_photo"}),
    "lng_lat": ("lng", {"missing_input"}),
}
"""For each `requires` entry: the field a 422 must name, and its acceptable codes."""


@pytest.fixture
def store(tmp_path) -> PhotoStore:
    return PhotoStore(tmp_path / "photos")


# ---------------------------------------------------------------------------
# Scenes: an event a transition accepts, and who takes it


def source_state(t: Transition) -> EventState:
    """Return the earliest state of the loop from which `t` may be taken."""
    return next(s for s in SOURCE_ORDER if s in t.sources)


def actor_name(role: Role, t: Transition) -> str:
    """Return the demo account that takes `t` in the role table."""
    if role == R.DEPT_HANDLER:
        return TOWN_ASSIST if t.relation == Relation.ASSISTING_DEPARTMENT else TOWN_LEAD
    return next(a.username for a in ACCOUNTS if a.role == role)


def first_role(t: Transition) -> Role:
    """Return the role that normally takes `t` (for tests that need just one)."""
    order = (R.TOWN_OPERATOR, R.DEPT_HANDLER, R.GRID_WORKER, R.COUNTY_SHIFT_LEAD, R.LEADER)
    return next(r for r in (*order, *DEMO_ROLES) if r in t.roles)


def build_scene(
    session: Session, users: dict[str, User], store: PhotoStore, t: Transition, role: Role
) -> tuple[Event, User]:
    """Build an event in a state `t` accepts, held so that `role`'s demo user may take it."""
    level = "county" if role in COUNTY_CENTRE else "town"
    # A centre verifies only what a centre registered (a grid worker's report goes back to them).
    reporter = "zzzx" if t.relation == Relation.VERIFIER and role in CENTRES else "wgy"
    event = make_event(session, users, source_state(t), reporter=reporter, level=level)
    if t.name in ("approve_extension", "refuse_extension"):
        act(session, holder_user(session, event), event, "request_extension", days=2)
    return event, users[actor_name(role, t)]


def other_village_point(session: Session, event: Event) -> tuple[float, float]:
    """Return a point in a 螺溪镇 grid of another village than the event's."""
    grid = next(g for g in active_grids(session, LUOXI) if g.village_code != event.village_code)
    return point_in(session, grid.code)


def valid_inputs(
    session: Session,
    users: dict[str, User],
    store: PhotoStore,
    t: Transition,
    actor: User,
    event: Event,
    *,
    target: Event | None = None,
) -> dict[str, Any]:
    """Return inputs that satisfy every requirement of `t` (uploading photos as `actor`)."""
    inputs: dict[str, Any] = {"comment": f"测试{t.label}"}
    if "lead_department_id" in t.requires:
        lead = TOWN_LEAD if actor.role == R.TOWN_OPERATOR else "cgj"
        inputs["lead_department_id"] = department_of(users, lead)
    if "days" in t.requires:
        inputs["days"] = 2
    if "satisfaction" in t.requires:
        inputs["satisfaction"] = "satisfied"
    if "target_event_id" in t.requires:
        target = target or report(session, users)
        inputs["target_event_id"] = target.id
    if "lng_lat" in t.requires:
        inputs["lng"], inputs["lat"] = other_village_point(session, event)
    kinds = [k for k in ("before", "after") if f"{k}_photos" in t.requires]
    if kinds:
        # A user who may not upload here is refused by perform anyway.
        with contextlib.suppress(GridGovError):
            inputs["attachment_ids"] = [upload(session, actor, event, k, store) for k in kinds]
    return inputs


def expected_state(t: Transition, before: Event) -> EventState:
    """Return the state `t` leaves the event in (the table's target, or the computed one)."""
    if t.target is not None:
        return t.target
    if t.name == "resume":
        return S(before.shelved_from)
    if t.name == "verify_fail":
        return S.ACCEPTED if before.self_handled else S.HANDLING
    return S(before.state)


def snapshot(event: Event) -> tuple[Any, ...]:
    return (event.state, holder_label(event), event.version, len(event.actions), event.due_at)


def check_refused(
    session: Session, user: User, event: Event, action: str, inputs: dict[str, Any], code: str
) -> None:
    """Assert `user` is refused `action` with 403 `code` and the event is untouched."""
    before = snapshot(event)
    with pytest.raises(Forbidden) as err:
        perform(session, user, event.id, action, dict(inputs))
    assert err.value.code == code, (user.username, action, err.value.code, err.value.message)
    assert err.value.status == 403
    assert snapshot(event) == before


def check_done(
    session: Session, user: User, event: Event, t: Transition, inputs: dict[str, Any]
) -> EventAction:
    """Take `t` as `user`; assert the state it reaches and the action recorded."""
    from_state, holder_before = S(event.state), holder_label(event)
    target_state = expected_state(t, event)
    count = len(event.actions)
    perform(session, user, event.id, t.name, dict(inputs))
    assert event.state == target_state
    assert len(event.actions) == count + 1
    record = event.actions[-1]
    assert record.action == t.name
    assert record.actor_id == user.id
    assert record.actor_role == user.role
    assert record.actor_name == user.display_name
    assert record.from_state == from_state
    assert record.to_state == event.state
    assert record.holder_before == holder_before
    assert record.holder_after == holder_label(event)
    assert record.comment == inputs["comment"]
    for attachment_id in inputs.get("attachment_ids", []):
        assert session.get(Attachment, attachment_id).action_id == record.id
    return record


def refusal_code(role: Role, user: User, event: Event) -> str:
    """Return the 403 code for a role the transition does not name.

    Users who may not see the event at all (the three administrators, a department it was
    never assigned to) learn only that it is outside their jurisdiction.
    """
    if role in ADMIN_ROLES:
        return "outside_jurisdiction"
    if role == R.DEPT_HANDLER and not any(
        a.department_id == user.department_id for a in event.assignments
    ):
        return "outside_jurisdiction"
    return "role_not_allowed"


# ---------------------------------------------------------------------------
# Role × action

ROLE_PAIRS = [(name, role) for name in TRANSITIONS for role in DEMO_ROLES]


@pytest.mark.parametrize(("action", "role"), ROLE_PAIRS, ids=[f"{a}-{r}" for a, r in ROLE_PAIRS])
def test_role_table(session, users, store, action, role):
    t = TRANSITIONS[action]
    event, actor = build_scene(session, users, store, t, role)
    inputs = valid_inputs(session, users, store, t, actor, event)

    if role not in t.roles:
        check_refused(session, actor, event, action, inputs, refusal_code(role, actor, event))
        return

    outsiders(session, users)
    refused = list(OUTSIDERS.get(role, []))
    if role == R.DEPT_HANDLER:
        other = TOWN_LEAD if actor.username == TOWN_ASSIST else TOWN_ASSIST
        refused += [("cgj", "outside_jurisdiction"), (other, "not_holder")]
    assert refused, f"no outsider defined for {role}"
    for username, code in refused:
        check_refused(session, users[username], event, action, inputs, code)

    check_done(session, actor, event, t, inputs)


def test_role_table_covers_every_role_and_transition():
    assert {r for _, r in ROLE_PAIRS} == set(Role)
    assert {a for a, _ in ROLE_PAIRS} == set(TRANSITIONS)
    assert all(t.roles for t in TRANSITIONS.values())


# ---------------------------------------------------------------------------
# State × action


STATE_ACTORS = ("zzzx", "zbz", "ddy", "ld", TOWN_LEAD, "wgy")
"""Demo users who can see every event the factory builds with prior_dispatch (by preference)."""


def state_actor(t: Transition) -> str:
    """Return the first of STATE_ACTORS whose role may take `t`."""
    role_of = {a.username: a.role for a in ACCOUNTS}
    return next(u for u in STATE_ACTORS if role_of[u] in t.roles)


@pytest.mark.parametrize("state", SOURCE_ORDER, ids=[s.value for s in SOURCE_ORDER])
def test_state_table(session, users, store, state):
    event = make_event(session, users, state, prior_dispatch=True, store=store)
    before = snapshot(event)
    wrong = []
    for t in TRANSITIONS.values():
        if state in t.sources:
            continue
        actor = users[state_actor(t)]
        inputs = {"comment": "测试", "days": 2, "satisfaction": "satisfied", "target_event_id": 1}
        try:
            perform(session, actor, event.id, t.name, inputs)
        except Conflict as exc:
            if exc.code != "state_conflict" or exc.status != 409:
                wrong.append((t.name, exc.code))
        except GridGovError as exc:
            wrong.append((t.name, exc.code))
        else:
            wrong.append((t.name, "accepted"))
    assert wrong == []
    assert snapshot(event) == before


def test_state_conflict_message_names_the_state(session, users):
    event = make_event(session, users, S.CLOSED)
    with pytest.raises(Conflict) as err:
        perform(session, users["zzzx"], event.id, "accept", {})
    assert err.value.code == "state_conflict"
    assert "已办结" in err.value.message and "受理" in err.value.message


# ---------------------------------------------------------------------------
# Required inputs

REQUIRED_PAIRS = [(t.name, req) for t in TRANSITIONS.values() for req in t.requires]


@pytest.mark.parametrize(
    ("action", "requirement"), REQUIRED_PAIRS, ids=[f"{a}-{r}" for a, r in REQUIRED_PAIRS]
)
def test_required_inputs(session, users, store, action, requirement):
    t = TRANSITIONS[action]
    assert requirement in REQUIREMENTS, f"new requirement {requirement}: add it to REQUIREMENTS"
    event, actor = build_scene(session, users, store, t, first_role(t))
    inputs = valid_inputs(session, users, store, t, actor, event)
    broken = dict(inputs)
    if requirement in ("before_photos", "after_photos"):
        kind = requirement.split("_")[0]
        broken["attachment_ids"] = [
            i for i in inputs["attachment_ids"] if session.get(Attachment, i).kind != kind
        ]
    elif requirement == "lng_lat":
        del broken["lng"], broken["lat"]
    else:
        del broken[requirement]
    before = snapshot(event)

    with pytest.raises(Unprocessable) as err:
        perform(session, actor, event.id, action, broken)
    field, codes = REQUIREMENTS[requirement]
    assert err.value.status == 422
    assert err.value.details.get("field") == field
    assert err.value.code in codes
    if requirement.endswith("_photos"):
        assert err.value.details["kind"] == requirement.split("_")[0]
    assert snapshot(event) == before

    check_done(session, actor, event, t, inputs)


@pytest.mark.parametrize("comment", [None, "", "   ", 42])
def test_blank_comment_is_missing(session, users, comment):
    event = make_event(session, users, S.REPORTED)
    with pytest.raises(Unprocessable) as err:
        perform(session, users["zzzx"], event.id, "reject", {"comment": comment})
    assert (err.value.code, err.value.details["field"]) == ("missing_input", "comment")


def test_handle_needs_an_after_photo_when_the_matter_says_so(session, users, store):
    event = make_event(session, users, S.HANDLING, matter="0501")  # 乱堆乱放: photo required
    hwsuo = users[TOWN_LEAD]
    before_id = upload(session, hwsuo, event, "before", store)
    for ids in ([], [before_id]):
        with pytest.raises(Unprocessable) as err:
            perform(
                session, hwsuo, event.id, "handle", {"comment": "已清理", "attachment_ids": ids}
            )
        assert err.value.code == "missing_photo"
        assert err.value.details == {"field": "attachment_ids", "kind": "after"}
    after_id = upload(session, hwsuo, event, "after", store)
    perform(session, hwsuo, event.id, "handle", {"comment": "已清理", "attachment_ids": [after_id]})
    assert event.state == S.HANDLED
    assert session.get(Attachment, after_id).action_id == event.actions[-1].id


def test_handle_without_photo_when_not_required(session, users):
    event = make_event(session, users, S.HANDLING, matter="0101")  # 邻里纠纷: no photo needed
    perform(session, users[TOWN_LEAD], event.id, "handle", {"comment": "已调解"})
    assert event.state == S.HANDLED


def test_photos_must_be_the_actors_own_unused_photos_of_this_event(session, users, store):
    event = make_event(session, users, S.HANDLING, matter="0501")
    other = make_event(session, users, S.HANDLING, matter="0501")
    hwsuo = users[TOWN_LEAD]
    foreign = upload(session, hwsuo, other, "after", store)
    by_other_user = upload(session, users["zzzx"], event, "after", store)
    for ids in ([foreign], [by_other_user], [999_999], "1", [True, "x"]):
        with pytest.raises(Unprocessable) as err:
            perform(session, hwsuo, event.id, "handle", {"comment": "x", "attachment_ids": ids})
        assert err.value.details["field"] == "attachment_ids"
        assert err.value.code in ("bad_attachment", "bad_input")


# ---------------------------------------------------------------------------
# Behaviours


def notices(session: Session, user: User, event: Event, kind: str) -> list[Notice]:
    session.flush()
    return list(
        session.scalars(
            select(Notice).where(
                Notice.user_id == user.id, Notice.event_id == event.id, Notice.kind == kind
            )
        )
    )


def test_report_is_held_by_the_town_centre_and_notifies_it(session, users):
    event = make_event(session, users, S.REPORTED)
    assert (event.holder_level, event.holder_region_code) == (HolderLevel.TOWN, LUOXI)
    assert event.town_code == LUOXI and event.grid_code == users["wgy"].grid_codes[0]
    assert [a.action for a in event.actions] == ["report"]
    assert notices(session, users["zzzx"], event, "new_event")
    assert not notices(session, users["zzzx2"], event, "new_event")


def test_escalate_moves_the_event_to_the_county_centre(session, users):
    event = make_event(session, users, S.ACCEPTED)
    act(session, users["zzzx"], event, "escalate")
    assert event.state == S.REPORTED
    assert (event.holder_level, event.holder_region_code) == (HolderLevel.COUNTY, LUHE)
    assert event.actions[-1].holder_before == f"town:{LUOXI}"
    assert event.actions[-1].holder_after == f"county:{LUHE}"
    assert notices(session, users["ddy"], event, "escalated")
    assert notices(session, users["zbz"], event, "escalated")
    with pytest.raises(Forbidden) as err:
        act(session, users["zzzx"], event, "accept")
    assert err.value.code == "not_holder"
    act(session, users["ddy"], event, "accept")
    assert event.state == S.ACCEPTED


def test_dispatch_creates_assignments_and_notices(session, users):
    event = make_event(session, users, S.ACCEPTED)
    lead, assist = department_of(users, TOWN_LEAD), department_of(users, TOWN_ASSIST)
    act(
        session,
        users["zzzx"],
        event,
        "dispatch",
        lead_department_id=lead,
        assisting_department_ids=[assist, assist],
    )
    assert event.state == S.DISPATCHED
    assert [(a.department_id, a.role, a.active) for a in event.assignments] == [
        (lead, "lead", True),
        (assist, "assist", True),
    ]
    assert (event.holder_level, event.holder_department_id) == (HolderLevel.DEPARTMENT, lead)
    assert (event.dispatcher_level, event.dispatcher_region_code) == (HolderLevel.TOWN, LUOXI)
    assert event.lead_department_id == lead
    assert notices(session, users[TOWN_LEAD], event, "dispatched")
    assert notices(session, users[TOWN_ASSIST], event, "assist")
    assert not notices(session, users["cgj"], event, "dispatched")
    data = json.loads(event.actions[-1].data)
    assert data["lead_department_id"] == lead and data["assisting_department_ids"] == [assist]
    # The assisting department may add notes but not sign.
    with pytest.raises(Forbidden) as err:
        act(session, users[TOWN_ASSIST], event, "sign")
    assert err.value.code == "not_holder"
    act(session, users[TOWN_ASSIST], event, "assist_note")
    assert notices(session, users[TOWN_LEAD], event, "assist_note")


def _dept(session: Session, code: str) -> int:
    dept = session.scalar(select(Department).where(Department.code == code))
    assert dept is not None, code
    return dept.id


@pytest.mark.parametrize(
    ("dispatcher", "lead", "assisting"),
    [
        ("zzzx", f"{LUHE}-urban_management", None),  # a town may not send to a county bureau
        ("zzzx", f"{HETIAN}-town_sanitation", None),  # nor to another town's office
        ("zzzx", f"{LUOXI}-town_sanitation", f"{HETIAN}-police_station"),
        ("zzzx", f"{LUOXI}-town_sanitation", f"{LUHE}-police"),
        ("ddy", "441427-urban_management", None),  # the county only inside its county
        ("ddy", f"{LUHE}-urban_management", "441427100-police_station"),
    ],
)
def test_dispatch_outside_the_centre_is_refused(session, users, dispatcher, lead, assisting):
    event = make_event(
        session, users, S.ACCEPTED, level="town" if dispatcher == "zzzx" else "county"
    )
    inputs: dict[str, Any] = {"lead_department_id": _dept(session, lead)}
    if assisting:
        inputs["assisting_department_ids"] = [_dept(session, assisting)]
    with pytest.raises(Forbidden) as err:
        act(session, users[dispatcher], event, "dispatch", **inputs)
    assert err.value.code == "department_outside"
    assert event.state == S.ACCEPTED and not event.assignments


def test_county_may_dispatch_to_county_bureaus_and_town_offices(session, users):
    event = make_event(session, users, S.ACCEPTED, level="county")
    act(
        session,
        users["ddy"],
        event,
        "dispatch",
        lead_department_id=department_of(users, "cgj"),
        assisting_department_ids=[department_of(users, TOWN_LEAD)],
    )
    assert (event.dispatcher_level, event.dispatcher_region_code) == (HolderLevel.COUNTY, LUHE)
    assert event.holder_department_id == department_of(users, "cgj")


def test_dispatch_bad_departments(session, users):
    event = make_event(session, users, S.ACCEPTED)
    lead = department_of(users, TOWN_LEAD)
    cases = [
        ({"lead_department_id": 999_999}, "unknown_department"),
        ({"lead_department_id": str(lead)}, "unknown_department"),
        ({"lead_department_id": lead, "assisting_department_ids": str(lead)}, "bad_input"),
        ({"lead_department_id": lead, "assisting_department_ids": [lead]}, "bad_input"),
        ({"lead_department_id": lead, "assisting_department_ids": [0]}, "unknown_department"),
    ]
    for inputs, code in cases:
        with pytest.raises(Unprocessable) as err:
            act(session, users["zzzx"], event, "dispatch", **inputs)
        assert err.value.code == code, inputs
    assert event.state == S.ACCEPTED and not event.assignments


def test_return_goes_back_to_the_dispatching_centre_and_redispatch_works(session, users):
    event = make_event(session, users, S.HANDLING)
    act(session, users[TOWN_LEAD], event, "return", comment="不属于本所职责")
    assert event.state == S.RETURNED
    assert (event.holder_level, event.holder_region_code) == (HolderLevel.TOWN, LUOXI)
    assert event.return_count == 1
    assert not any(a.active for a in event.assignments)
    assert notices(session, users["zzzx"], event, "returned")
    assert event.actions[-1].comment == "不属于本所职责"

    police = department_of(users, TOWN_ASSIST)
    act(session, users["zzzx"], event, "dispatch", lead_department_id=police)
    assert event.state == S.DISPATCHED
    assert event.holder_department_id == police
    assert [(a.department_id, a.active) for a in event.assignments if a.active] == [(police, True)]
    with pytest.raises(Forbidden) as err:  # the old lead still sees it, but no longer holds it
        act(session, users[TOWN_LEAD], event, "sign")
    assert err.value.code == "not_holder"
    act(session, users[TOWN_ASSIST], event, "sign")
    assert event.state == S.HANDLING


def test_extension_moves_the_deadline_only_when_approved(session, users):
    cal = load_calendar(session)
    event = make_event(session, users, S.HANDLING, now=T0)
    assert event.due_at == datetime(2026, 3, 11, 11, 0, tzinfo=SHANGHAI)
    due, stage_due = event.due_at, event.stage_due_at
    hwsuo, zzzx = users[TOWN_LEAD], users["zzzx"]

    act(session, hwsuo, event, "request_extension", T0, days=3)
    assert (event.extension_pending_days, event.due_at) == (3, due)
    assert notices(session, zzzx, event, "extension")
    with pytest.raises(Conflict) as err:
        act(session, hwsuo, event, "request_extension", T0, days=1)
    assert err.value.code == "precondition_failed"

    act(session, zzzx, event, "approve_extension", T0)
    assert event.due_at == cal.add(due, 3, "working_days")
    assert event.due_at == datetime(2026, 3, 16, 11, 0, tzinfo=SHANGHAI)
    assert event.stage_due_at == cal.add(stage_due, 3, "working_days")
    assert (event.extension_pending_days, event.extension_count) == (None, 1)
    assert json.loads(event.actions[-1].data)["days"] == 3
    assert notices(session, hwsuo, event, "extension_approved")
    assert event.state == S.HANDLING

    for action in ("approve_extension", "refuse_extension"):
        with pytest.raises(Conflict) as err:
            act(session, zzzx, event, action, T0)
        assert err.value.code == "precondition_failed"

    moved = event.due_at
    act(session, hwsuo, event, "request_extension", T0, days=5)
    act(session, zzzx, event, "refuse_extension", T0, comment="理由不充分")
    assert (event.due_at, event.extension_pending_days, event.extension_count) == (moved, None, 1)
    assert notices(session, hwsuo, event, "extension_refused")
    act(session, hwsuo, event, "request_extension", T0, days=1)  # may ask again
    assert event.extension_pending_days == 1


@pytest.mark.parametrize("days", [0, 16, -1, "3", 2.5, True, None])
def test_extension_days_out_of_range(session, users, days):
    event = make_event(session, users, S.HANDLING)
    with pytest.raises(Unprocessable) as err:
        act(session, users[TOWN_LEAD], event, "request_extension", days=days)
    assert err.value.details["field"] == "days"
    assert event.extension_pending_days is None


def test_only_the_dispatching_centre_decides_extensions(session, users):
    event = make_event(session, users, S.HANDLING, level="county")
    act(session, users["cgj"], event, "request_extension", days=2)
    with pytest.raises(Forbidden) as err:
        act(session, users["zzzx"], event, "approve_extension")
    assert err.value.code == "not_holder"
    with pytest.raises(Forbidden) as err:
        act(session, users["ddy"], event, "approve_extension")
    assert err.value.code == "role_not_allowed"
    act(session, users["zbz"], event, "approve_extension")
    assert event.extension_count == 1


@pytest.mark.parametrize("shelved_from", [S.ACCEPTED, S.RETURNED, S.DISPATCHED, S.HANDLING])
def test_shelve_pauses_the_clock_and_resume_restores_the_state(session, users, shelved_from):
    cal = load_calendar(session)
    event = make_event(session, users, shelved_from, now=T0)
    due, holder = event.due_at, holder_label(event)
    paused_at = datetime(2026, 3, 9, 14, 0, tzinfo=SHANGHAI)  # Monday afternoon
    resumed_at = datetime(2026, 3, 12, 14, 0, tzinfo=SHANGHAI)  # Thursday: 3 working days on

    act(session, users["zbz"], event, "shelve", paused_at, comment="需协调上级资金")
    assert event.state == S.SHELVED
    assert (event.shelved_from, event.shelved_at) == (shelved_from, paused_at)
    assert event.due_at == due and holder_label(event) == holder

    act(session, users["zbz"], event, "resume", resumed_at)
    assert event.state == shelved_from
    assert (event.shelved_from, event.shelved_at) == (None, None)
    assert event.due_at == cal.add(due, 3, "working_days")  # 0101 handles in working days
    assert event.due_at == datetime(2026, 3, 16, 11, 0, tzinfo=SHANGHAI)  # Wed + 3 = Mon
    data = json.loads(event.actions[-1].data)
    assert datetime.fromisoformat(data["due_after"]) == event.due_at
    assert event.actions[-1].from_state == S.SHELVED
    assert event.actions[-1].to_state == shelved_from


def test_resume_over_a_weekend_counts_working_time_only(session, users):
    cal = load_calendar(session)
    event = make_event(session, users, S.HANDLING, now=T0)
    due = event.due_at
    friday = datetime(2026, 3, 13, 10, 0, tzinfo=SHANGHAI)
    monday = datetime(2026, 3, 16, 10, 0, tzinfo=SHANGHAI)
    act(session, users["zbz"], event, "shelve", friday)
    act(session, users["zbz"], event, "resume", monday)
    assert event.due_at == cal.add(due, 1, "working_days")


def test_handle_goes_to_the_reporting_grid_worker_who_may_send_it_back(session, users):
    event = make_event(session, users, S.HANDLING)
    wgy, hwsuo = users["wgy"], users[TOWN_LEAD]
    act(session, hwsuo, event, "handle", comment="已调解")
    assert event.state == S.HANDLED
    assert (event.holder_level, event.holder_user_id) == (HolderLevel.GRID_WORKER, wgy.id)
    assert event.handled_at is not None
    assert notices(session, wgy, event, "verify")
    with pytest.raises(Forbidden) as err:  # the town centre does not verify this one
        act(session, users["zzzx"], event, "verify_pass")
    assert err.value.code == "not_holder"

    act(session, wgy, event, "verify_fail", comment="现场仍有争执")
    assert event.state == S.HANDLING
    assert event.rework_count == 1
    assert (event.holder_level, event.holder_department_id) == (
        HolderLevel.DEPARTMENT,
        department_of(users, TOWN_LEAD),
    )
    assert notices(session, hwsuo, event, "rework")
    assert json.loads(event.actions[-1].data) == {"to": "rework"}

    act(session, hwsuo, event, "handle", comment="再次调解")
    act(session, wgy, event, "verify_pass")
    assert event.state == S.VERIFIED
    assert (event.holder_level, event.holder_region_code) == (HolderLevel.TOWN, LUOXI)
    assert event.verified_at is not None


def test_centre_registered_event_is_verified_by_the_dispatching_centre(session, users):
    event = make_event(session, users, S.HANDLED, reporter="zzzx", level="county")
    assert event.source == "citizen"
    assert (event.holder_level, event.holder_region_code) == (HolderLevel.COUNTY, LUHE)
    act(session, users["ddy"], event, "verify_pass")
    assert (event.state, event.holder_level) == (S.VERIFIED, HolderLevel.COUNTY)


def test_inactive_reporter_hands_verification_to_the_centre(session, users):
    event = make_event(session, users, S.HANDLING)
    users["wgy"].active = False
    act(session, users[TOWN_LEAD], event, "handle")
    assert (event.holder_level, event.holder_region_code) == (HolderLevel.TOWN, LUOXI)


def test_close_ends_the_event_and_marks_it_overdue_only_when_late(session, users):
    on_time = make_event(session, users, S.VERIFIED, now=T0)
    late = make_event(session, users, S.VERIFIED, now=T0)
    zzzx = users["zzzx"]
    act(session, zzzx, on_time, "close", T0 + timedelta(hours=1))
    closed_late = datetime(2026, 3, 20, 10, 0, tzinfo=SHANGHAI)
    assert closed_late > late.due_at
    act(session, zzzx, late, "close", closed_late)
    for event, when, overdue in (
        (on_time, T0 + timedelta(hours=1), False),
        (late, closed_late, True),
    ):
        assert event.state == S.CLOSED
        assert event.closed_at == when and event.ended_at == when
        assert event.holder_level == HolderLevel.NONE
        assert holder_label(event) == "none"
        assert event.overdue is overdue
        assert json.loads(event.actions[-1].data) == {"overdue": overdue}


def test_evaluate_once(session, users):
    event = make_event(session, users, S.CLOSED)
    with pytest.raises(Unprocessable) as err:
        act(session, users["wgy"], event, "evaluate", satisfaction="很好")
    assert err.value.details["field"] == "satisfaction"
    act(session, users["wgy"], event, "evaluate", satisfaction="basically")
    assert event.satisfaction == "basically"
    assert event.state == S.CLOSED
    for user in ("wgy", "zzzx"):
        with pytest.raises(Conflict) as err:
            act(session, users[user], event, "evaluate", satisfaction="satisfied")
        assert err.value.code == "precondition_failed"
    assert event.satisfaction == "basically"
    act(session, users["zzzx"], event, "callback", comment="回访：群众满意")
    assert event.actions[-1].action == "callback"


def test_merge_keeps_both_histories(session, users):
    target = make_event(session, users, S.ACCEPTED)
    event = make_event(session, users, S.REPORTED)
    zzzx = users["zzzx"]
    act(session, zzzx, event, "merge", target_event_id=target.id, comment="同一处堆放")
    assert event.state == S.MERGED
    assert event.merged_into_id == target.id
    assert event.holder_level == HolderLevel.NONE
    assert [a.action for a in event.actions] == ["report", "merge"]
    assert json.loads(event.actions[-1].data)["target_event_id"] == target.id
    assert target.state == S.ACCEPTED
    assert [a.action for a in target.actions] == ["report", "accept", "merge"]
    note = target.actions[-1]
    assert event.code in note.comment and "同一处堆放" in note.comment
    assert json.loads(note.data) == {
        "merged_event_id": event.id,
        "merged_event_code": event.code,
    }
    assert note.actor_id == zzzx.id
    assert note.from_state == note.to_state == S.ACCEPTED


def test_merge_refusals(session, users):
    event = make_event(session, users, S.REPORTED)
    closed = make_event(session, users, S.CLOSED)
    elsewhere = make_event(
        session, users, S.REPORTED, reporter="wgy2", grid=users["wgy2"].grid_codes[0]
    )
    zzzx = users["zzzx"]
    with pytest.raises(Unprocessable) as err:
        act(session, zzzx, event, "merge", target_event_id=event.id)
    assert err.value.code == "bad_input"
    with pytest.raises(Unprocessable) as err:
        act(session, zzzx, event, "merge", target_event_id=str(closed.id))
    assert err.value.code == "missing_input"
    with pytest.raises(Conflict) as err:
        act(session, zzzx, event, "merge", target_event_id=closed.id)
    assert err.value.code == "state_conflict"
    with pytest.raises(Forbidden):
        act(session, zzzx, event, "merge", target_event_id=elsewhere.id)
    with pytest.raises(NotFound):
        act(session, zzzx, event, "merge", target_event_id=999_999)
    assert event.state == S.REPORTED and len(event.actions) == 1


@pytest.mark.parametrize("state", [S.REPORTED, S.ACCEPTED])
def test_withdraw_by_the_reporter(session, users, state):
    event = make_event(session, users, state)
    act(session, users["wgy"], event, "withdraw", comment="群众已自行解决")
    assert event.state == S.WITHDRAWN
    assert event.holder_level == HolderLevel.NONE and event.ended_at is not None


def test_self_handle_then_town_verifies_and_closes(session, users, store):
    event = self_handled(session, users, store, matter="0501")
    assert event.state == S.HANDLED
    assert event.self_handled is True
    assert (event.holder_level, event.holder_region_code) == (HolderLevel.TOWN, LUOXI)
    record = event.actions[-1]
    assert sorted(p.kind for p in record.attachments) == ["after", "before"]
    assert notices(session, users["zzzx"], event, "verify")
    act(session, users["zzzx"], event, "verify_pass")
    assert (event.state, event.holder_region_code) == (S.VERIFIED, LUOXI)
    act(session, users["zzzx"], event, "close")
    assert event.state == S.CLOSED
    assert [a.action for a in event.actions] == [
        "report",
        "self_handle",
        "verify_pass",
        "close",
    ]


def test_failed_self_handle_goes_back_to_the_town_for_dispatch(session, users, store):
    event = self_handled(session, users, store, matter="0501")
    act(session, users["zzzx"], event, "verify_fail", comment="仍有垃圾")
    assert event.state == S.ACCEPTED
    assert event.self_handled is False and event.rework_count == 1
    assert (event.holder_level, event.holder_region_code) == (HolderLevel.TOWN, LUOXI)
    act(
        session,
        users["zzzx"],
        event,
        "dispatch",
        lead_department_id=department_of(users, TOWN_LEAD),
    )
    assert event.state == S.DISPATCHED


def test_self_handle_of_a_matter_that_does_not_allow_it(session, users, store):
    event = report(session, users, matter="0601")  # 违章搭建
    wgy = users["wgy"]
    ids = [upload(session, wgy, event, k, store) for k in ("before", "after")]
    with pytest.raises(Unprocessable) as err:
        act(session, wgy, event, "self_handle", attachment_ids=ids)
    assert err.value.code == "self_handle_not_allowed"
    assert event.state == S.REPORTED


def test_supervise_and_instruct_notify_the_holder(session, users):
    event = make_event(session, users, S.HANDLING)
    hwsuo, zzzx = users[TOWN_LEAD], users["zzzx"]
    act(session, users["zbz"], event, "supervise", comment="请加快办理")
    assert len(notices(session, hwsuo, event, "supervise")) == 1
    assert "请加快办理" in notices(session, hwsuo, event, "supervise")[0].text
    act(session, users["ld"], event, "supervise", comment="领导督办")
    assert len(notices(session, hwsuo, event, "supervise")) == 2

    act(session, users["ld"], event, "instruct", comment="务必妥善处理")
    assert notices(session, hwsuo, event, "instruction")
    assert notices(session, zzzx, event, "instruction")  # the dispatching centre hears too
    assert event.state == S.HANDLING and event.actions[-1].action == "instruct"

    closed = make_event(session, users, S.CLOSED)
    act(session, users["ld"], closed, "instruct", comment="总结经验")
    assert closed.actions[-1].action == "instruct"
    with pytest.raises(Conflict):
        act(session, users["zbz"], closed, "supervise")


def test_relocate_changes_the_grid_and_records_both_places(session, users):
    event = make_event(session, users, S.ACCEPTED)
    old_grid, old_lng = event.grid_code, event.lng
    lng, lat = other_village_point(session, event)
    act(session, users["zzzx"], event, "relocate", lng=lng, lat=lat, comment="位置有误")
    assert event.grid_code != old_grid and event.village_code != old_grid[:12]
    assert event.town_code == LUOXI
    assert (event.lng, event.lat) == (lng, lat)
    data = json.loads(event.actions[-1].data)
    assert data["before"]["grid_code"] == old_grid and data["before"]["lng"] == old_lng
    assert data["after"]["grid_code"] == event.grid_code
    assert event.state == S.ACCEPTED

    elsewhere = point_in(session, users["wgy2"].grid_codes[0])
    with pytest.raises(Forbidden) as err:
        act(session, users["zzzx"], event, "relocate", lng=elsewhere[0], lat=elsewhere[1])
    assert err.value.code == "outside_jurisdiction"
    with pytest.raises(Unprocessable) as err:
        act(session, users["zzzx"], event, "relocate", lng="abc", lat=lat)
    assert err.value.code == "bad_coordinates"


def test_unknown_action_and_event(session, users):
    event = make_event(session, users, S.REPORTED)
    with pytest.raises(NotFound) as err:
        perform(session, users["zzzx"], event.id, "fly", {})
    assert err.value.code == "unknown_action"
    with pytest.raises(NotFound) as err:
        perform(session, users["zzzx"], 999_999, "accept", {})
    assert err.value.code == "event_not_found"


def test_stale_version_is_refused(session, users):
    event = make_event(session, users, S.REPORTED)
    with pytest.raises(Conflict) as err:
        perform(session, users["zzzx"], event.id, "accept", {}, expected_version=event.version - 1)
    assert err.value.code == "stale_version"
    perform(session, users["zzzx"], event.id, "accept", {}, expected_version=event.version)
    assert event.state == S.ACCEPTED


# ---------------------------------------------------------------------------
# allowed_actions agrees with perform


def _handling_with_extension(session, users, store):
    event = make_event(session, users, S.HANDLING)
    act(session, users[TOWN_LEAD], event, "request_extension", days=2)
    return event


def _closed_evaluated(session, users, store):
    event = make_event(session, users, S.CLOSED)
    act(session, users["wgy"], event, "evaluate", satisfaction="satisfied")
    return event


SCENES = {
    "reported": lambda s, u, st: make_event(s, u, S.REPORTED),
    "reported-county": lambda s, u, st: make_event(s, u, S.REPORTED, level="county"),
    "accepted": lambda s, u, st: make_event(s, u, S.ACCEPTED),
    "returned": lambda s, u, st: make_event(s, u, S.RETURNED),
    "dispatched": lambda s, u, st: make_event(s, u, S.DISPATCHED),
    "handling": lambda s, u, st: make_event(s, u, S.HANDLING),
    "handling-extension": _handling_with_extension,
    "shelved": lambda s, u, st: make_event(s, u, S.SHELVED),
    "handled-grid-worker": lambda s, u, st: make_event(s, u, S.HANDLED),
    "handled-centre": lambda s, u, st: make_event(s, u, S.HANDLED, reporter="zzzx"),
    "handled-self": lambda s, u, st: self_handled(s, u, st),
    "verified-county": lambda s, u, st: make_event(s, u, S.VERIFIED, level="county"),
    "closed": lambda s, u, st: make_event(s, u, S.CLOSED),
    "closed-evaluated": _closed_evaluated,
    "withdrawn": lambda s, u, st: make_event(s, u, S.WITHDRAWN),
}


@pytest.mark.parametrize("scene", SCENES)
def test_allowed_actions_is_what_perform_accepts(session, users, store, scene):
    outsiders(session, users)
    event = SCENES[scene](session, users, store)
    target = report(session, users)
    session.flush()
    mismatches = []
    for user in users.values():
        listed = {t.name for t in allowed_actions(session, user, event)}
        accepted = set()
        for t in TRANSITIONS.values():
            # Isolate the attempts that may get past the role and state guards (and change
            # the event); the others must fail before touching anything.
            isolate = user.role in t.roles and event.state in t.sources
            savepoint = session.begin_nested() if isolate else None
            try:
                inputs = valid_inputs(session, users, store, t, user, event, target=target)
                perform(session, user, event.id, t.name, inputs)
            except (Forbidden, Conflict) as exc:
                if t.name in listed:
                    mismatches.append((user.username, t.name, "listed but refused", exc.code))
            except GridGovError as exc:
                mismatches.append((user.username, t.name, "bad test inputs", exc.code))
            else:
                accepted.add(t.name)
                assert isolate, f"{user.username} took {t.name} against the table"
            finally:
                if savepoint is not None:
                    savepoint.rollback()
        mismatches += [
            (user.username, name, "accepted but not listed") for name in accepted - listed
        ]
    assert mismatches == []


def test_allowed_actions_sample(session, users):
    event = make_event(session, users, S.REPORTED)
    names = lambda u: {t.name for t in allowed_actions(session, users[u], event)}  # noqa: E731
    centre = {"accept", "reject", "void", "merge", "withdraw", "escalate", "relocate"}
    assert names("zzzx") == centre
    assert names("wgy") == {"withdraw", "self_handle"}
    assert names("ddy") == {"withdraw"}  # a centre whose area covers it, not the holder
    assert names("zbz") == {"withdraw", "supervise"}
    assert names("ld") == {"supervise", "instruct"}
    assert names("zzzx2") == names("hwsuo") == names("xtgly") == set()


# ---------------------------------------------------------------------------
# report_event


def _input(point: tuple[float, float], key: str, matter: str = "0101", **kw: Any) -> ReportInput:
    return ReportInput(
        matter_code=matter,
        urgency=kw.pop("urgency", "normal"),
        description=kw.pop("description", "门口堆放杂物"),
        lng=point[0],
        lat=point[1],
        client_key=key,
        **kw,
    )


def test_report_is_idempotent_per_client_key(session, users):
    wgy = users["wgy"]
    point = point_in(session, wgy.grid_codes[0])
    first = report_event(session, wgy, _input(point, "phone-1"))
    again = report_event(session, wgy, _input(point, "phone-1", description="重发"))
    assert first.created and not again.created
    assert again.event.id == first.event.id
    assert again.event.description == "门口堆放杂物"
    assert session.scalar(select(Event.id).where(Event.client_key == "phone-1")) == first.event.id
    # Another user's identical key is another report.
    other = report_event(session, users["zzzx"], _input(point, "phone-1", source="hotline"))
    assert other.created and other.event.id != first.event.id
    # A hotline report goes straight to the county centre.
    assert (other.event.holder_level, other.event.holder_region_code) == ("county", LUHE)


def test_report_codes_are_sequential_per_county_and_day(session, users):
    a = report(session, users, now=T0)
    b = report(session, users, now=T0)
    assert a.code.startswith(f"{LUHE}-20260309-") and b.code.startswith(f"{LUHE}-20260309-")
    assert int(b.code[-4:]) == int(a.code[-4:]) + 1


def test_grid_worker_may_not_report_in_another_town(session, users):
    point = point_in(session, users["wgy2"].grid_codes[0])
    with pytest.raises(Forbidden) as err:
        report_event(session, users["wgy"], _input(point, "k"))
    assert err.value.code == "outside_jurisdiction"
    # Elsewhere in their own town is fine (a neighbour's grid).
    other = next(g for g in active_grids(session, LUOXI) if g.code not in users["wgy"].grid_codes)
    result = report_event(session, users["wgy"], _input(point_in(session, other.code), "k2"))
    assert result.event.grid_code == other.code


def test_town_operator_may_not_report_in_another_town(session, users):
    point = point_in(session, users["wgy2"].grid_codes[0])
    with pytest.raises(Forbidden) as err:
        report_event(session, users["zzzx"], _input(point, "k", source="citizen"))
    assert err.value.code == "outside_jurisdiction"


@pytest.mark.parametrize("username", ["hwsuo", "ld", "xtgly"])
def test_roles_that_do_not_report(session, users, username):
    point = point_in(session, users["wgy"].grid_codes[0])
    with pytest.raises(Forbidden) as err:
        report_event(session, users[username], _input(point, "k"))
    assert err.value.code == "role_not_allowed"


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"matter_code": "9999"}, "unknown_matter", "matter_code"),
        ({"matter_code": ""}, "unknown_matter", "matter_code"),
        ({"urgency": "asap"}, "bad_urgency", "urgency"),
        ({"description": "   "}, "missing_input", "description"),
        ({"client_key": ""}, "missing_input", "client_key"),
        ({"lng": "abc"}, "bad_coordinates", None),
        ({"lat": 95.0}, "bad_coordinates", None),
        ({"lng": None}, "bad_coordinates", None),
        ({"lng": float("nan")}, "bad_coordinates", None),
        ({"lng": 0.0, "lat": 0.0}, "outside_jurisdiction", None),
        ({"crs": "epsg:12345"}, "unknown_crs", None),
        ({"source": "hotline"}, "bad_source", None),
    ],
)
def test_report_validation(session, users, change, code, field):
    point = point_in(session, users["wgy"].grid_codes[0])
    data = _input(point, "k")
    for key, value in change.items():
        setattr(data, key, value)
    with pytest.raises(Unprocessable) as err:
        report_event(session, users["wgy"], data)
    assert err.value.code == code
    if field:
        assert err.value.details["field"] == field
    assert session.scalar(select(Event.id).where(Event.client_key == "k")) is None


def _offset(point: tuple[float, float], metres_north: float) -> tuple[float, float]:
    return point[0], point[1] + metres_north / 111_195


def test_duplicates(session, users):
    wgy = users["wgy"]
    grid = wgy.grid_codes[0]
    base = point_in(session, grid)
    first = report_event(session, wgy, _input(base, "k1", matter="0501")).event

    near = _offset(base, 50)
    assert 45 < distance_m(*base, *near) < 55
    second = report_event(session, wgy, _input(near, "k2", matter="0501"))
    assert [d["id"] for d in second.duplicates] == [first.id]
    dup = second.duplicates[0]
    assert dup["code"] == first.code and 45 < dup["distance_m"] < 55

    other_matter = report_event(session, wgy, _input(near, "k3", matter="0101"))
    assert other_matter.duplicates == []

    far_grid = next(
        g
        for g in active_grids(session, LUOXI)
        if 1500 < distance_m(*base, *point_in(session, g.code)) < 8000
    )
    far = report_event(session, wgy, _input(point_in(session, far_grid.code), "k4", matter="0501"))
    assert first.id not in [d["id"] for d in far.duplicates]

    # Closed events and events outside the time window are not candidates.
    closed = make_event(session, users, S.CLOSED, matter="0101")
    again = report_event(session, wgy, _input(near, "k5", matter="0101"))
    assert closed.id not in [d["id"] for d in again.duplicates]
    later = report_event(
        session, wgy, _input(near, "k6", matter="0501"), now=first.reported_at + timedelta(days=8)
    )
    assert first.id not in [d["id"] for d in later.duplicates]
    tight = report_event(
        session, wgy, _input(near, "k2", matter="0501"), duplicates=DuplicateRules(radius_m=20)
    )
    assert tight.duplicates == []
