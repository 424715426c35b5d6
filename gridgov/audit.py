"""The tamper-evident record: every change to audited tables appends a chained entry.

Each entry's MAC is HMAC-SHA256(audit key, entry fields + previous MAC). Editing,
inserting or deleting a row by SQL breaks the chain at that row, and `verify_chain`
names it. Entries are written by a session hook, so no code path can forget them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import event, insert, inspect, select, update
from sqlalchemy.orm import Session, UOWTransaction

from gridgov.db import utcnow
from gridgov.models import (
    AuditEntry,
    AuditHead,
    CalendarDay,
    CalendarYear,
    Department,
    Event,
    GridSet,
    Matter,
    MatterAssist,
    MatterCategory,
    MatterTimeLimit,
    Region,
    Setting,
    User,
    UserGrid,
)

AUDITED: dict[type, str] = {
    Event: "event",
    User: "user",
    UserGrid: "user_grid",
    Department: "department",
    Region: "region",
    GridSet: "grid_set",
    MatterCategory: "matter_category",
    Matter: "matter",
    MatterAssist: "matter_assist",
    MatterTimeLimit: "matter_time_limit",
    CalendarDay: "calendar_day",
    CalendarYear: "calendar_year",
    Setting: "setting",
}
"""Audited models and their object-type names. Grids are audited through their grid set."""

REDACTED = {"password_hash"}
HEAD_ID = 1
GENESIS_MAC = "0" * 64


@dataclass(frozen=True)
class Actor:
    """Who is changing things: a user, or the system (CLI, sweeps)."""

    id: int | None
    name: str


SYSTEM = Actor(None, "system")
_process_actor = SYSTEM


def set_process_actor(actor: Actor) -> None:
    """Attribute changes made without a signed-in user (CLI runs) to `actor`."""
    global _process_actor
    _process_actor = actor


def set_actor(session: Session, actor: Actor) -> None:
    """Attribute this session's coming changes to `actor`."""
    session.info["actor"] = actor


def _plain(value: Any) -> Any:
    if isinstance(value, BaseGeometry):
        return "wkb-sha256:" + hashlib.sha256(shapely.to_wkb(value)).hexdigest()
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _snapshot(obj: Any) -> dict[str, Any]:
    state = inspect(obj)
    return {
        attr.key: ("***" if attr.key in REDACTED else _plain(getattr(obj, attr.key)))
        for attr in state.mapper.column_attrs
    }


def _changes(obj: Any) -> dict[str, list[Any]]:
    state = inspect(obj)
    changed: dict[str, list[Any]] = {}
    for attr in state.mapper.column_attrs:
        hist = state.attrs[attr.key].history
        if hist.has_changes():
            old = hist.deleted[0] if hist.deleted else None
            new = hist.added[0] if hist.added else None
            if attr.key in REDACTED:
                old, new = "***", "***"
            changed[attr.key] = [_plain(old), _plain(new)]
    return changed


def _object_id(obj: Any) -> str:
    state = inspect(obj)
    # A row inserted by this flush has its key assigned only after after_flush: read the
    # primary key from the instance, or every "create" entry would name no object.
    identity = state.identity or state.mapper.primary_key_from_instance(obj)
    if identity is None:
        return ""
    return "/".join(str(_plain(v)) for v in identity)


def canonical(fields: dict[str, Any]) -> bytes:
    """Serialize entry fields deterministically (the bytes the MAC covers)."""
    return json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def compute_mac(key: bytes, entry_fields: dict[str, Any], prev_mac: str) -> str:
    """Return the chained MAC of one entry."""
    return hmac.new(
        key, canonical({**entry_fields, "prev_mac": prev_mac}), hashlib.sha256
    ).hexdigest()


def _entry_fields(
    entry_id: int, at: datetime, actor: Actor, action: str, otype: str, oid: str, data: str
) -> dict[str, Any]:
    return {
        "id": entry_id,
        "at": at.isoformat(),
        "actor_id": actor.id,
        "actor": actor.name,
        "action": action,
        "object_type": otype,
        "object_id": oid,
        "data": data,
    }


def _audited(session: Session) -> bool:
    return any(type(o) in AUDITED for o in (*session.new, *session.dirty, *session.deleted))


def _before_flush(session: Session, _flush: UOWTransaction, _instances: Any) -> None:
    # Take the chain lock before this flush writes any row: every writer locks the head
    # first, so concurrent transactions queue here instead of deadlocking on rows. Locked
    # on every audited flush (a no-op when held): a rolled-back savepoint releases it.
    if session.info.get("audit_key") and _audited(session):
        session.execute(select(AuditHead.id).where(AuditHead.id == HEAD_ID).with_for_update())


def _after_flush(session: Session, _flush: UOWTransaction) -> None:
    key: bytes | None = session.info.get("audit_key")
    if not key:
        return
    pending: list[tuple[str, str, str, str]] = []
    for obj in session.new:
        if type(obj) in AUDITED:
            pending.append(("create", AUDITED[type(obj)], _object_id(obj), _dump(_snapshot(obj))))
    for obj in session.dirty:
        if type(obj) in AUDITED and session.is_modified(obj, include_collections=False):
            changes = _changes(obj)
            if changes:
                pending.append(("update", AUDITED[type(obj)], _object_id(obj), _dump(changes)))
    for obj in _deleted(session, _flush):
        if type(obj) in AUDITED:
            pending.append(("delete", AUDITED[type(obj)], _object_id(obj), _dump(_snapshot(obj))))
    if not pending:
        return
    actor: Actor = session.info.get("actor", _process_actor)
    conn = session.connection()
    head = conn.execute(
        select(AuditHead.last_id, AuditHead.last_mac).where(AuditHead.id == HEAD_ID)
    ).one()
    last_id, last_mac = head.last_id, head.last_mac
    at = utcnow()
    rows = []
    for action, otype, oid, data in sorted(pending, key=lambda p: (p[1], p[2], p[0])):
        last_id += 1
        fields = _entry_fields(last_id, at, actor, action, otype, oid, data)
        mac = compute_mac(key, fields, last_mac)
        rows.append({**fields, "at": at, "prev_mac": last_mac, "mac": mac})
        last_mac = mac
    conn.execute(insert(AuditEntry), rows)
    conn.execute(
        update(AuditHead).where(AuditHead.id == HEAD_ID).values(last_id=last_id, last_mac=last_mac)
    )


def _deleted(session: Session, flush: UOWTransaction) -> list[Any]:
    """Return the objects this flush deletes, delete-orphans included.

    An orphan (e.g. a grid taken off `User.grids`) is deleted by the flush without ever
    being in `session.deleted`; the flush's own list of states has it.
    """
    found = list(session.deleted)
    seen = {id(obj) for obj in found}
    for state, (isdelete, listonly) in flush.states.items():
        obj = state.obj()
        if isdelete and not listonly and obj is not None and id(obj) not in seen:
            found.append(obj)
    return found


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, ensure_ascii=False, default=str)


event.listen(Session, "before_flush", _before_flush)
event.listen(Session, "after_flush", _after_flush)


@dataclass(frozen=True)
class ChainProblem:
    """The first place the chain breaks."""

    entry_id: int
    kind: str  # tampered | inserted | deleted | head_mismatch
    message: str


@dataclass(frozen=True)
class ChainReport:
    """Outcome of verifying the whole chain."""

    entries: int
    problem: ChainProblem | None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": self.ok, "entries": self.entries}
        if self.problem:
            body["problem"] = {
                "entry_id": self.problem.entry_id,
                "kind": self.problem.kind,
                "message": self.problem.message,
            }
        return body


def verify_chain(session: Session, key: bytes) -> ChainReport:
    """Recompute every MAC in order and name the first tampered, inserted or deleted entry."""
    expected_id, prev_mac, count = 1, GENESIS_MAC, 0
    # populate_existing: read what the database holds now, never objects this session cached.
    rows = session.execute(
        select(AuditEntry).order_by(AuditEntry.id).execution_options(populate_existing=True)
    ).scalars()
    previous_ok = True
    for entry in rows:
        count += 1
        fields = _entry_fields(
            entry.id,
            entry.at,
            Actor(entry.actor_id, entry.actor),
            entry.action,
            entry.object_type,
            entry.object_id,
            entry.data,
        )
        if entry.id != expected_id:
            kind = "deleted" if entry.id > expected_id else "inserted"
            return ChainReport(
                count,
                ChainProblem(
                    expected_id if kind == "deleted" else entry.id,  # the first missing entry
                    kind,
                    f"第 {expected_id} 条起的记录缺失或编号被改动（实际编号 {entry.id}）",
                ),
            )
        if entry.prev_mac != prev_mac:
            kind = "deleted" if previous_ok else "inserted"
            return ChainReport(
                count,
                ChainProblem(
                    entry.id, kind, f"第 {entry.id} 条记录与前一条不相连：其前有记录被删除或插入"
                ),
            )
        if not hmac.compare_digest(compute_mac(key, fields, entry.prev_mac), entry.mac):
            return ChainReport(
                count,
                ChainProblem(
                    entry.id, "tampered", f"第 {entry.id} 条记录的内容被篡改（或为伪造插入）"
                ),
            )
        prev_mac = entry.mac
        expected_id += 1
    head = session.get(AuditHead, HEAD_ID, populate_existing=True)
    if head is not None and (head.last_id != expected_id - 1 or head.last_mac != prev_mac):
        return ChainReport(
            count,
            ChainProblem(
                expected_id,
                "deleted",
                f"链尾记录缺失：应有 {head.last_id} 条，实际 {expected_id - 1} 条",
            ),
        )
    return ChainReport(count, None)
