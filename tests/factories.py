"""Builders shared by the workflow and API tests: points, photos, users and events in any state.

Events are built by driving the real operations (report → accept → dispatch → sign → …), so a
factory-made event is one the system itself could have produced.
"""

from __future__ import annotations

import io
import itertools
import time
import uuid
from datetime import datetime
from typing import Any

from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from gridgov.db import utcnow
from gridgov.events import ReportInput, attach_photo, perform, report_event
from gridgov.models import (
    Event,
    EventState,
    Grid,
    GridSet,
    HolderLevel,
    Matter,
    Role,
    User,
    UserGrid,
)
from gridgov.photos import PhotoStore

S = EventState

LUOXI = "441523105"
"""螺溪镇: the town of the demo accounts wgy, zzzx, hwsuo and pcs."""
HETIAN = "441523100"
"""河田镇: the town of wgy2 and zzzx2."""
LUHE = "441523"
JIAOLING = "441427"
"""蕉岭县: the second sample county; no demo account works there."""

TOWN_LEAD = "hwsuo"
"""Default lead department handler of a town dispatch (螺溪镇环卫所)."""
TOWN_ASSIST = "pcs"
"""Default assisting department handler (螺溪派出所)."""
COUNTY_LEAD = "cgj"
"""Default lead department handler of a county dispatch (县城管执法局)."""

_colours = itertools.count(1)


def png_bytes(size: tuple[int, int] = (40, 30)) -> bytes:
    """Return a small PNG whose bytes differ from every other call's."""
    n = next(_colours)
    image = Image.new("RGB", size, (n % 251, (n // 251) % 251, 97))
    image.putpixel((0, 0), (n % 256, 7, (n >> 8) % 256))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def active_grids(session: Session, prefix: str) -> list[Grid]:
    """Return the active grids whose code starts with `prefix`, by code."""
    return list(
        session.scalars(
            select(Grid)
            .join(GridSet, GridSet.id == Grid.grid_set_id)
            .where(GridSet.active.is_(True), Grid.code.startswith(prefix))
            .order_by(Grid.code)
        )
    )


def point_in(session: Session, grid_code: str) -> tuple[float, float]:
    """Return (lng, lat) of a point well inside an active grid."""
    grids = [g for g in active_grids(session, grid_code) if g.code == grid_code]
    assert grids, f"no active grid {grid_code}"
    p = grids[0].geom.representative_point()
    return p.x, p.y


TEST_CSRF = "factory-test-csrf"
"""The CSRF token of the browser sessions `signed_in` starts."""


def signed_in(client: Any, user: User) -> Any:
    """Start a signed-in browser session for `user` on a Flask test client; return the client.

    The sign-in form is tested elsewhere; form posts carry TEST_CSRF (see `post_form`).
    """
    with client.session_transaction() as s:
        s.clear()
        s.permanent = True
        s.update(user_id=user.id, seen=int(time.time()), csrf_token=TEST_CSRF)
    return client


def post_form(client: Any, url: str, data: dict[str, Any]) -> Any:
    """POST an HTML form with the CSRF token of a `signed_in` session."""
    return client.post(url, data={"csrf_token": TEST_CSRF, **data})


def outside_point(
    session: Session, prefix: str = LUHE, offset: float = 0.05
) -> tuple[float, float]:
    """Return (lng, lat) `offset` degrees west of the westmost active grid of `prefix`.

    0.05° is about 5 km: beyond the snapping tolerance, so the point lies outside every grid.
    """
    grids = active_grids(session, prefix)
    west = min(grids, key=lambda g: g.geom.bounds[0])
    minx, miny, _, maxy = west.geom.bounds
    return minx - offset, (miny + maxy) / 2


def queued_report(
    session: Session,
    users: dict[str, User],
    *,
    submitter: str = "ddy",
    point: tuple[float, float] | None = None,
    now: datetime | None = None,
    source: str = "hotline",
    address: str = "",
) -> Any:
    """Queue a hotline report whose position lies outside every grid (待定位); return it."""
    from gridgov.unplaced import Receipt, receive_report

    outcome = receive_report(
        session,
        users[submitter],
        ReportInput(
            matter_code="0501",
            urgency="normal",
            description="12345 来电：路边堆放大量建筑垃圾",
            lng=point[0] if point else outside_point(session)[0],
            lat=point[1] if point else outside_point(session)[1],
            client_key=uuid.uuid4().hex,
            source=source,
            address=address,
            reporter_name="王先生",
            reporter_phone="13800000000",
        ),
        now=now,
    )
    assert isinstance(outcome, Receipt) and outcome.created, outcome
    return outcome.report


def make_user(
    session: Session,
    username: str,
    role: Role,
    region_code: str,
    *,
    department_id: int | None = None,
    grid_codes: list[str] | None = None,
) -> User:
    """Create a user who never signs in (no usable password) in the test's transaction."""
    user = User(
        username=username,
        display_name=f"测试用户{username}",
        password_hash="!",
        role=role.value,
        region_code=region_code,
        department_id=department_id,
    )
    user.grids = [UserGrid(grid_code=c) for c in grid_codes or []]
    session.add(user)
    session.flush()
    return user


def outsiders(session: Session, users: dict[str, User]) -> dict[str, User]:
    """Create users of the county roles in 蕉岭县, and a second grid worker in wgy's village."""
    made = {
        "jl_ddy": make_user(session, "jl_ddy", Role.COUNTY_DISPATCHER, JIAOLING),
        "jl_zbz": make_user(session, "jl_zbz", Role.COUNTY_SHIFT_LEAD, JIAOLING),
        "jl_ld": make_user(session, "jl_ld", Role.LEADER, JIAOLING),
        "wgy_peer": make_user(
            session,
            "wgy_peer",
            Role.GRID_WORKER,
            users["wgy"].region_code,
            grid_codes=users["wgy"].grid_codes,
        ),
    }
    users.update(made)
    return made


def centre_user(session: Session, level: str, region_code: str) -> User:
    """Return an active operator of the town or county centre `region_code`."""
    role = Role.TOWN_OPERATOR if level == HolderLevel.TOWN else Role.COUNTY_DISPATCHER
    user = session.scalar(
        select(User)
        .where(User.role == role.value, User.region_code == region_code, User.active.is_(True))
        .order_by(User.id)
    )
    assert user is not None, f"no {role} in {region_code}"
    return user


def holder_user(session: Session, event: Event) -> User:
    """Return a user who holds `event` now (centre operator, department handler, grid worker)."""
    if event.holder_level == HolderLevel.GRID_WORKER:
        user = session.get(User, event.holder_user_id)
    elif event.holder_level == HolderLevel.DEPARTMENT:
        user = session.scalar(
            select(User)
            .where(
                User.department_id == event.holder_department_id,
                User.role == Role.DEPT_HANDLER.value,
            )
            .order_by(User.id)
        )
    else:
        assert event.holder_region_code is not None, event.holder_level
        user = centre_user(session, event.holder_level, event.holder_region_code)
    assert user is not None
    return user


def upload(session: Session, user: User, event: Event, kind: str, store: PhotoStore) -> int:
    """Attach a fresh photo of `kind` as `user`; return its id."""
    attachment, created = attach_photo(session, user, event.id, png_bytes(), kind, store)
    assert created
    return attachment.id


def report(
    session: Session,
    users: dict[str, User],
    *,
    reporter: str = "wgy",
    matter: str = "0101",
    grid: str | None = None,
    point: tuple[float, float] | None = None,
    now: datetime | None = None,
    urgency: str = "normal",
    source: str = "",
) -> Event:
    """File a fresh report (上报) by `reporter` at a point of `grid` (default: wgy's first)."""
    user = users[reporter]
    if point is None:
        point = point_in(session, grid or users["wgy"].grid_codes[0])
    if not source and user.role != Role.GRID_WORKER:
        source = "citizen"
    result = report_event(
        session,
        user,
        ReportInput(
            matter_code=matter,
            urgency=urgency,
            description="测试事件：门口堆放杂物",
            lng=point[0],
            lat=point[1],
            client_key=uuid.uuid4().hex,
            source=source,
        ),
        now=now,
    )
    assert result.created
    return result.event


def act(
    session: Session,
    user: User,
    event: Event,
    action: str,
    now: datetime | None = None,
    **inputs: Any,
) -> Event:
    """Take `action` as `user` with a default comment."""
    inputs.setdefault("comment", f"测试：{action}")
    return perform(session, user, event.id, action, inputs, now=now)


def department_of(users: dict[str, User], username: str) -> int:
    """Return the department id of a department handler."""
    department_id = users[username].department_id
    assert department_id is not None
    return department_id


def make_event(
    session: Session,
    users: dict[str, User],
    state: EventState | str = S.REPORTED,
    *,
    reporter: str = "wgy",
    matter: str = "0101",
    level: str = "town",
    lead: str | None = None,
    assisting: tuple[str, ...] | None = None,
    grid: str | None = None,
    now: datetime | None = None,
    store: PhotoStore | None = None,
    prior_dispatch: bool = False,
    shelve_from: EventState | str = S.HANDLING,
) -> Event:
    """Build an event in `state` by driving the real operations.

    level: the centre that accepts and dispatches ("town": 螺溪镇, "county": 陆河县; a town-held
    report is escalated to reach the county). lead/assisting: department handlers' usernames
    (defaults: hwsuo + pcs for the town, cgj + pcs for the county). prior_dispatch: first
    dispatch to the town's default lead, have it returned and escalate, so that handler has seen
    the event whatever its state (the county then carries on). shelve_from: the state a SHELVED
    event was shelved in. Photos (for matters that require them) need `store`.
    """
    state = S(state)
    now = now or utcnow()
    event = report(session, users, reporter=reporter, matter=matter, grid=grid, now=now)
    centre = holder_user(session, event)

    if prior_dispatch:
        act(session, centre, event, "accept", now)
        act(
            session,
            centre,
            event,
            "dispatch",
            now,
            lead_department_id=department_of(users, TOWN_LEAD),
        )
        act(session, users[TOWN_LEAD], event, "return", now)
        act(session, centre, event, "escalate", now)
        level = "county"
    if level == "county" and event.holder_level == HolderLevel.TOWN:
        act(session, holder_user(session, event), event, "escalate", now)
    centre = holder_user(session, event)

    if state == S.REPORTED:
        return event
    if state in (S.REJECTED, S.VOIDED, S.WITHDRAWN, S.MERGED):
        if state == S.REJECTED:
            return act(session, centre, event, "reject", now)
        if state == S.WITHDRAWN:
            return act(session, users[reporter], event, "withdraw", now)
        act(session, centre, event, "accept", now)
        if state == S.VOIDED:
            return act(session, centre, event, "void", now)
        target = report(session, users, reporter=reporter, matter=matter, grid=grid, now=now)
        return act(session, centre, event, "merge", now, target_event_id=target.id)

    act(session, centre, event, "accept", now)
    if state == S.ACCEPTED or (state == S.SHELVED and S(shelve_from) == S.ACCEPTED):
        return _maybe_shelve(session, users, event, state, now)

    lead = lead or (TOWN_LEAD if level == "town" else COUNTY_LEAD)
    assisting = (TOWN_ASSIST,) if assisting is None else assisting
    act(
        session,
        centre,
        event,
        "dispatch",
        now,
        lead_department_id=department_of(users, lead),
        assisting_department_ids=[department_of(users, a) for a in assisting],
    )
    if state == S.DISPATCHED or (state == S.SHELVED and S(shelve_from) == S.DISPATCHED):
        return _maybe_shelve(session, users, event, state, now)
    if state == S.RETURNED or (state == S.SHELVED and S(shelve_from) == S.RETURNED):
        act(session, users[lead], event, "return", now)
        return _maybe_shelve(session, users, event, state, now)

    act(session, users[lead], event, "sign", now)
    if state in (S.HANDLING, S.SHELVED):
        return _maybe_shelve(session, users, event, state, now)

    inputs: dict[str, Any] = {}
    if session.get(Matter, matter).photo_required:  # type: ignore[union-attr]
        assert store is not None, "this matter needs photos: pass store="
        inputs["attachment_ids"] = [upload(session, users[lead], event, "after", store)]
    act(session, users[lead], event, "handle", now, **inputs)
    if state == S.HANDLED:
        return event

    act(session, holder_user(session, event), event, "verify_pass", now)
    if state == S.VERIFIED:
        return event
    act(session, holder_user(session, event), event, "close", now)
    assert state == S.CLOSED, state
    return event


def _maybe_shelve(
    session: Session, users: dict[str, User], event: Event, state: EventState, now: datetime
) -> Event:
    if state == S.SHELVED:
        act(session, users["zbz"], event, "shelve", now)
    assert event.state == state, (event.state, state)
    return event


def self_handled(
    session: Session,
    users: dict[str, User],
    store: PhotoStore,
    *,
    matter: str = "0501",
    now: datetime | None = None,
) -> Event:
    """Return a report wgy handled on the spot (自办自结), waiting for the town to verify."""
    event = report(session, users, matter=matter, now=now)
    wgy = users["wgy"]
    ids = [
        upload(session, wgy, event, "before", store),
        upload(session, wgy, event, "after", store),
    ]
    return act(session, wgy, event, "self_handle", now, attachment_ids=ids)
