"""The tamper-evident record: every change to audited tables appends a chained entry.

Each entry's MAC is HMAC-SHA256(audit key, entry fields + previous MAC). Editing,
inserting or deleting a row by SQL breaks the chain at that row, and `verify_chain`
names it. Data changes are written by a session hook, so no code path can forget them;
sign-in and account-security events (登录、退出、锁定、改密、令牌) are appended to the same
chain by `record`. Deleting the newest entries and rewriting the head leaves a valid chain:
an `Anchor` (the head, kept off the server) is what finds that.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import event, func, insert, inspect, select, update
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
    UnplacedReport,
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
    UnplacedReport: "unplaced_report",
}
"""Audited models and their object-type names. Grids are audited through their grid set."""

REDACTED = {"password_hash"}
HEAD_ID = 1
GENESIS_MAC = "0" * 64

AUTH = "auth"
"""Object type of sign-in and account-security entries; their object id is the account's."""

AUTH_KINDS: dict[str, str] = {
    "login": "登录成功",
    "login_failed": "登录失败",
    "account_locked": "账号锁定",
    "logout": "退出登录",
    "session_expired": "会话超时",
    "password_changed": "修改密码",
    "password_change_failed": "修改密码失败",
    "password_reset": "重置密码",
    "token_issued": "签发接口令牌",
    "token_revoked": "撤销接口令牌",
}
"""The kinds `record` writes (the entry's action), with their Chinese names."""

AUTH_FAILURES = frozenset({"login_failed", "account_locked", "password_change_failed"})
"""Kinds whose outcome is a failure; every other kind is a success."""

USER_AGENT_CHARS = 200
NAME_CHARS = 64


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


@dataclass(frozen=True)
class Client:
    """Where a request came from, as `record` writes it into sign-in entries.

    `ip` is the peer address the server saw; `forwarded_for` is the X-Forwarded-For header,
    kept apart because any client can write it.
    """

    ip: str = ""
    user_agent: str = ""
    channel: str = ""  # web | api
    forwarded_for: str = ""

    @classmethod
    def of(
        cls, ip: str | None, user_agent: str | None, channel: str, forwarded_for: str = ""
    ) -> Client:
        """Return a client with every field cut to the length the log keeps."""
        return cls(
            (ip or "")[:45], (user_agent or "")[:USER_AGENT_CHARS], channel, forwarded_for[:200]
        )

    def to_dict(self) -> dict[str, str]:
        """Return the non-empty fields."""
        return {k: v for k, v in vars(self).items() if v}


def set_client(session: Session, client: Client) -> None:
    """Attach the requesting client to this session's coming `record` calls."""
    session.info["audit_client"] = client


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
    if pending:
        actor: Actor = session.info.get("actor", _process_actor)
        _append(session, key, actor, sorted(pending, key=lambda p: (p[1], p[2], p[0])))


def _append(
    session: Session, key: bytes, actor: Actor, entries: list[tuple[str, str, str, str]]
) -> int:
    """Chain (action, object type, object id, data) entries after the head; return the last id.

    The caller holds the head's lock (taken before the flush, or by `record`).
    """
    conn = session.connection()
    head = conn.execute(
        select(AuditHead.last_id, AuditHead.last_mac).where(AuditHead.id == HEAD_ID)
    ).one()
    last_id, last_mac = head.last_id, head.last_mac
    at = utcnow()
    rows = []
    for action, otype, oid, data in entries:
        last_id += 1
        fields = _entry_fields(last_id, at, actor, action, otype, oid, data)
        mac = compute_mac(key, fields, last_mac)
        rows.append({**fields, "at": at, "prev_mac": last_mac, "mac": mac})
        last_mac = mac
    conn.execute(insert(AuditEntry), rows)
    conn.execute(
        update(AuditHead).where(AuditHead.id == HEAD_ID).values(last_id=last_id, last_mac=last_mac)
    )
    return last_id


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


def record(
    session: Session,
    kind: str,
    *,
    actor: Actor | None = None,
    object_id: str = "",
    reason: str = "",
    client: Client | None = None,
    **details: Any,
) -> int | None:
    """Append a sign-in or account-security entry (`AUTH_KINDS`) to the chain; return its id.

    The entry's data holds the outcome (from the kind), the reason, the client (by default
    the one `set_client` attached to the session) and `details`; never pass a password.
    Pending changes are flushed first, so their entries precede this one. Without an audit
    key nothing is written, as for data changes.
    """
    if kind not in AUTH_KINDS:
        raise ValueError(f"unknown audit record kind: {kind}")
    key: bytes | None = session.info.get("audit_key")
    if not key:
        return None
    session.flush()
    session.execute(select(AuditHead.id).where(AuditHead.id == HEAD_ID).with_for_update())
    who = actor or session.info.get("actor", _process_actor)
    who = Actor(who.id, who.name[:NAME_CHARS])
    client = client or session.info.get("audit_client") or Client()
    data: dict[str, Any] = {
        "outcome": "failure" if kind in AUTH_FAILURES else "success",
        **client.to_dict(),
        **details,
    }
    if reason:
        data["reason"] = reason
    return _append(session, key, who, [(kind, AUTH, object_id[:NAME_CHARS], _dump(data))])


def record_account(
    session: Session, kind: str, user: User, *, reason: str = "", **details: Any
) -> int | None:
    """Record `kind` about `user`'s own account, attributed to the user (see `record`)."""
    return record(
        session,
        kind,
        actor=Actor(user.id, user.username),
        object_id=str(user.id),
        reason=reason,
        username=user.username,
        **details,
    )


def data_fragment(name: str, value: str) -> str:
    """Return how `"name": value` appears in an entry's stored data (for text filters)."""
    return _dump({name: value})[1:-1]


@dataclass(frozen=True)
class ChainProblem:
    """The first place the chain breaks, or an anchored entry that is gone or changed."""

    entry_id: int
    kind: str  # tampered | inserted | deleted | truncated | anchor_mismatch
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"entry_id": self.entry_id, "kind": self.kind, "message": self.message}


@dataclass(frozen=True)
class ChainReport:
    """Outcome of verifying the whole chain (and, if given, the anchors kept off the server)."""

    entries: int
    problem: ChainProblem | None
    anchors: int = 0
    anchor_problems: tuple[ChainProblem, ...] = ()

    @property
    def ok(self) -> bool:
        return self.problem is None and not self.anchor_problems

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": self.ok, "entries": self.entries}
        if self.problem:
            body["problem"] = self.problem.to_dict()
        if self.anchors:
            body["anchors"] = {
                "checked": self.anchors,
                "problems": [p.to_dict() for p in self.anchor_problems],
            }
        return body


LOCAL_TZ = ZoneInfo("Asia/Shanghai")
ANCHOR_RE = re.compile(r"(?<![0-9A-Za-z])(\d+):([0-9a-fA-F]{64})(?![0-9A-Za-z])")


@dataclass(frozen=True)
class Anchor:
    """The chain's head at one moment (sequence number and MAC), to be kept off the server.

    With the key, whoever controls the database can delete the newest entries and rewrite the
    head, or rewrite the tail with valid MACs; neither passes an anchor taken before.
    """

    seq: int
    mac: str
    at: datetime | None = None

    def line(self) -> str:
        """Return the anchor as one line for a log book: `gridgov-audit-anchor SEQ:MAC TIME`."""
        when = self.at.astimezone(LOCAL_TZ).isoformat(timespec="seconds") if self.at else "-"
        return f"gridgov-audit-anchor {self.seq}:{self.mac} {when}"


def parse_anchors(text: str) -> list[Anchor]:
    """Read anchors from text: every line holding SEQ:MAC (blank and # lines are skipped).

    Raise ValueError naming the first line that holds none.
    """
    anchors = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = ANCHOR_RE.search(stripped)
        if match is None:
            raise ValueError(f"line {number} holds no SEQ:MAC anchor: {stripped[:80]!r}")
        anchors.append(Anchor(int(match.group(1)), match.group(2).lower()))
    return anchors


def current_anchor(session: Session) -> Anchor:
    """Return the chain's head as an anchor (sequence 0 and the genesis MAC when empty)."""
    head = session.get(AuditHead, HEAD_ID, populate_existing=True)
    if head is None or head.last_id == 0:
        return Anchor(0, GENESIS_MAC)
    at = session.scalar(select(AuditEntry.at).where(AuditEntry.id == head.last_id))
    return Anchor(head.last_id, head.last_mac, at)


def check_anchors(session: Session, anchors: Sequence[Anchor]) -> list[ChainProblem]:
    """Name every anchored entry that is no longer in the chain or no longer the same."""
    seqs = {a.seq for a in anchors if a.seq > 0}
    stored: dict[int, str] = {
        entry_id: mac
        for entry_id, mac in session.execute(
            select(AuditEntry.id, AuditEntry.mac).where(AuditEntry.id.in_(seqs))
        )
    }
    last = session.scalar(select(func.max(AuditEntry.id))) or 0
    problems = []
    for anchor in sorted(set(anchors), key=lambda a: a.seq):
        if anchor.seq == 0:
            continue
        mac = stored.get(anchor.seq)
        if mac is None and anchor.seq > last:
            problems.append(
                ChainProblem(
                    anchor.seq,
                    "truncated",
                    f"锚定的第 {anchor.seq} 条记录已不在链中：链只到第 {last} 条，"
                    f"第 {last + 1}–{anchor.seq} 条被删除",
                )
            )
        elif mac is None:
            problems.append(
                ChainProblem(anchor.seq, "deleted", f"锚定的第 {anchor.seq} 条记录已被删除")
            )
        elif mac != anchor.mac:
            problems.append(
                ChainProblem(
                    anchor.seq,
                    "anchor_mismatch",
                    f"第 {anchor.seq} 条记录与锚点不符（锚定时 MAC 为 {anchor.mac[:16]}…，"
                    f"现为 {mac[:16]}…）：该条或其前的记录被改写",
                )
            )
    return problems


def verify_chain(session: Session, key: bytes, anchors: Sequence[Anchor] = ()) -> ChainReport:
    """Recompute every MAC in order and name the first tampered, inserted or deleted entry.

    With `anchors`, also check that each anchored entry is still in the chain unchanged (so
    the chain reaches at least the highest anchored sequence number).
    """
    report = _verify_links(session, key)
    if not anchors:
        return report
    return ChainReport(
        report.entries, report.problem, len(anchors), tuple(check_anchors(session, anchors))
    )


def stored_fields(entry: AuditEntry) -> dict[str, Any]:
    """Return the fields of a stored entry that its MAC covers (with the previous MAC)."""
    return _entry_fields(
        entry.id,
        entry.at,
        Actor(entry.actor_id, entry.actor),
        entry.action,
        entry.object_type,
        entry.object_id,
        entry.data,
    )


def _verify_links(session: Session, key: bytes) -> ChainReport:
    expected_id, prev_mac, count = 1, GENESIS_MAC, 0
    # populate_existing: read what the database holds now, never objects this session cached.
    rows = session.execute(
        select(AuditEntry).order_by(AuditEntry.id).execution_options(populate_existing=True)
    ).scalars()
    previous_ok = True
    for entry in rows:
        count += 1
        fields = stored_fields(entry)
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
