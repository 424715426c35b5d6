"""The tamper-evident record: every audited change is chained, and any SQL edit is named."""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import factories
import pytest
from factories import department_of, make_event
from flask import Flask
from shapely.geometry import box
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from gridgov import create_app
from gridgov.audit import (
    GENESIS_MAC,
    Actor,
    compute_mac,
    parse_anchors,
    set_actor,
    stored_fields,
    verify_chain,
)
from gridgov.calendar_store import enter_year
from gridgov.config import Settings
from gridgov.db import Database
from gridgov.events import ReportInput, perform, report_event
from gridgov.geo.gridsets import GridRecord, save_grid_set
from gridgov.models import AuditEntry, AuditHead, EventState, Grid, Matter, Region, User
from gridgov.photos import PhotoStore
from gridgov.regions import active_grid_set

KEY = b"test-audit-key"
"""The key the test database was built with (tests/conftest.py)."""

Entry = tuple[str, str, str]
"""(action, object_type, object_id) of one audit entry."""


def last_id(session: Session) -> int:
    return session.scalar(select(func.max(AuditEntry.id))) or 0


def entries_after(session: Session, after: int) -> list[AuditEntry]:
    return list(session.scalars(select(AuditEntry).where(AuditEntry.id > after).order_by("id")))


def report(session: Session, user: User) -> int:
    grid = session.scalar(select(Grid).where(Grid.code == user.grid_codes[0]))
    assert grid is not None
    point = grid.geom.representative_point()
    data = ReportInput("0101", "normal", "邻里纠纷", point.x, point.y, uuid.uuid4().hex)
    return report_event(session, user, data).event.id


# Each change returns the entries it must append (in chain order: by type, id, action).


def report_an_event(session: Session, users: dict[str, User]) -> list[Entry]:
    event_id = report(session, users["wgy"])
    return [("create", "event", str(event_id))]


def change_a_user(session: Session, users: dict[str, User]) -> list[Entry]:
    users["wgy2"].phone = "13800000000"
    users["wgy2"].password_hash = "argon2-new"
    session.flush()
    return [("update", "user", str(users["wgy2"].id))]


def take_a_grid_away(session: Session, users: dict[str, User]) -> list[Entry]:
    wgy = users["wgy"]
    gone = wgy.grids[0].grid_code
    wgy.grids = wgy.grids[1:]
    session.flush()
    return [("delete", "user_grid", f"{wgy.id}/{gone}")]


def edit_a_matter(session: Session, users: dict[str, User]) -> list[Entry]:
    matter = session.get(Matter, "0101")
    assert matter is not None
    matter.description += "（已修订）"
    matter.limits[0].amount += 1
    session.flush()
    limit = matter.limits[0]
    return [
        ("update", "matter", "0101"),
        ("update", "matter_time_limit", f"0101/{limit.urgency}/{limit.stage}"),
    ]


def import_a_grid_set(session: Session, users: dict[str, User]) -> list[Entry]:
    village = session.get(Region, "441523105203")
    assert village is not None and village.geom is not None
    p = village.geom.representative_point()
    previous = active_grid_set(session, "441523")
    assert previous is not None
    grid_set = save_grid_set(
        session,
        "441523",
        [GridRecord("441523105203901", "测试网格", box(p.x - 0.001, p.y - 0.001, p.x, p.y))],
        name="测试网格集",
    )
    # The previous set is deactivated, the new one created, then its grid count set and the
    # geodata given a new version (the caches of every process follow it).
    return [
        ("update", "grid_set", str(previous.id)),
        ("create", "grid_set", str(grid_set.id)),
        ("update", "grid_set", str(grid_set.id)),
        ("update", "setting", "geodata.version"),
    ]


def enter_a_holiday_year(session: Session, users: dict[str, User]) -> list[Entry]:
    enter_year(session, 2030, [(date(2030, 1, 1), date(2030, 1, 1), "元旦")], [])
    return [("create", "calendar_day", "2030-01-01"), ("create", "calendar_year", "2030")]


CHANGES: list[Callable[[Session, dict[str, User]], list[Entry]]] = [
    report_an_event,
    change_a_user,
    take_a_grid_away,
    edit_a_matter,
    import_a_grid_set,
    enter_a_holiday_year,
]


@pytest.mark.parametrize("change", CHANGES, ids=lambda c: c.__name__)
def test_every_audited_change_appends_chained_entries(
    session: Session,
    users: dict[str, User],
    change: Callable[[Session, dict[str, User]], list[Entry]],
) -> None:
    set_actor(session, Actor(users["xtgly"].id, "xtgly"))
    before = last_id(session)
    expected = change(session, users)
    session.flush()
    added = entries_after(session, before)
    assert [(e.action, e.object_type, e.object_id) for e in added] == expected
    assert {(e.actor_id, e.actor) for e in added} == {(users["xtgly"].id, "xtgly")}
    assert [e.id for e in added] == list(range(before + 1, before + 1 + len(added)))
    assert all(b.prev_mac == a.mac for a, b in itertools.pairwise(added))
    head = session.get(AuditHead, 1, populate_existing=True)
    assert head is not None and (head.last_id, head.last_mac) == (added[-1].id, added[-1].mac)
    report = verify_chain(session, KEY)
    assert report.ok, report.problem
    assert report.entries == added[-1].id


def test_entries_record_what_changed_but_never_a_password(
    session: Session, users: dict[str, User]
) -> None:
    before = last_id(session)
    change_a_user(session, users)
    [entry] = entries_after(session, before)
    assert json.loads(entry.data) == {
        "password_hash": ["***", "***"],
        "phone": ["", "13800000000"],
    }
    before = last_id(session)
    report_an_event(session, users)
    [created] = entries_after(session, before)
    snapshot = json.loads(created.data)
    assert snapshot["state"] == "reported" and snapshot["reporter_id"] == users["wgy"].id


def test_changes_without_a_signed_in_user_are_the_systems(
    session: Session, users: dict[str, User]
) -> None:
    before = last_id(session)
    report_an_event(session, users)
    [entry] = entries_after(session, before)
    assert entry.actor_id is None


def test_unaudited_tables_append_nothing(session: Session, users: dict[str, User]) -> None:
    before = last_id(session)
    grid = session.scalar(select(Grid).where(Grid.code == users["wgy"].grid_codes[0]))
    assert grid is not None
    grid.name += "（改）"  # grids are audited through their grid set, as a whole
    session.flush()
    assert last_id(session) == before


def test_a_wrong_key_fails_at_the_first_entry(session: Session) -> None:
    report = verify_chain(session, b"not-the-key")
    assert not report.ok and report.problem is not None
    assert (report.problem.entry_id, report.problem.kind) == (1, "tampered")


# ---------------------------------------------------------------------------
# Tampering by SQL


@pytest.fixture
def chain(session: Session, users: dict[str, User]) -> int:
    """Append entries of this test's own (the chain is intact: see the test above); return
    the chain's length."""
    change_a_user(session, users)
    take_a_grid_away(session, users)
    return last_id(session)


def problem_of(session: Session) -> tuple[int, str, str]:
    report = verify_chain(session, KEY)
    assert not report.ok and report.problem is not None
    return report.problem.entry_id, report.problem.kind, report.problem.message


TAMPERING = [
    ("data", '{"phone": ["", "13900000000"]}'),
    ("actor", "forged-actor"),
    ("actor_id", 424242),
    ("action", "forged"),
    ("object_id", "999"),
    ("prev_mac", None),
    ("mac", "0" * 64),
]


@pytest.mark.parametrize("where", ["middle", "last"])
def test_an_edited_entry_is_named(session: Session, chain: int, where: str) -> None:
    n = chain // 2 if where == "middle" else chain
    for column, value in TAMPERING:
        edit = session.begin_nested()
        if column == "prev_mac":  # a link copied from elsewhere in the chain
            value = session.scalar(text("SELECT prev_mac FROM audit_log WHERE id = 2"))
        session.execute(
            text(f"UPDATE audit_log SET {column} = :value WHERE id = :id"),
            {"value": value, "id": n},
        )
        entry_id, kind, message = problem_of(session)
        assert entry_id == n, column
        assert kind == ("deleted" if column == "prev_mac" else "tampered"), column
        assert f"第 {n} 条" in message
        edit.rollback()
    assert verify_chain(session, KEY).ok


def test_an_edited_time_is_named(session: Session, chain: int) -> None:
    session.execute(
        text(
            "UPDATE audit_log SET at = (SELECT a.at FROM audit_log a WHERE a.id = 1) WHERE id = :id"
        ),
        {"id": chain - 1},
    )
    assert problem_of(session)[:2] == (chain - 1, "tampered")


def test_a_deleted_entry_in_the_middle_is_named(session: Session, chain: int) -> None:
    n = chain - 1
    session.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": n})
    entry_id, kind, message = problem_of(session)
    assert (entry_id, kind) == (n, "deleted")
    assert f"第 {n} 条" in message


def test_deleted_and_renumbered_entries_are_found(session: Session, chain: int) -> None:
    n = chain - 1
    session.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": n})
    session.execute(text("UPDATE audit_log SET id = :n WHERE id = :last"), {"n": n, "last": chain})
    session.execute(text("UPDATE audit_head SET last_id = :n"), {"n": n})
    assert problem_of(session)[:2] == (n, "deleted")


def test_the_deleted_last_entry_is_found_through_the_head(session: Session, chain: int) -> None:
    session.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": chain})
    entry_id, kind, message = problem_of(session)
    assert (entry_id, kind) == (chain, "deleted")
    assert str(chain) in message


def test_a_forged_entry_at_the_end_is_found(session: Session, chain: int) -> None:
    head = session.execute(text("SELECT last_id, last_mac FROM audit_head")).one()
    forged_mac = hmac.new(b"guessed-key", b"forged", hashlib.sha256).hexdigest()
    session.execute(
        text(
            "INSERT INTO audit_log (id, at, actor_id, actor, action, object_type, object_id,"
            " data, prev_mac, mac) SELECT :id, at, NULL, 'system', 'update', 'user', '5',"
            ' \'{"role": ["leader", "sys_admin"]}\', :prev, :mac FROM audit_log WHERE id = 1'
        ),
        {"id": head.last_id + 1, "prev": head.last_mac, "mac": forged_mac},
    )
    session.execute(
        text("UPDATE audit_head SET last_id = :id, last_mac = :mac"),
        {"id": head.last_id + 1, "mac": forged_mac},
    )
    assert problem_of(session)[:2] == (chain + 1, "tampered")


def test_a_forged_entry_before_the_first_is_found(session: Session, chain: int) -> None:
    session.execute(
        text(
            "INSERT INTO audit_log (id, at, actor_id, actor, action, object_type, object_id,"
            " data, prev_mac, mac) SELECT 0, at, NULL, 'system', 'create', 'user', '99',"
            " '{}', :genesis, :genesis FROM audit_log WHERE id = 1"
        ),
        {"genesis": GENESIS_MAC},
    )
    assert problem_of(session)[:2] == (0, "inserted")


def test_verification_reads_the_database_not_the_sessions_cache(
    session: Session, users: dict[str, User], chain: int
) -> None:
    # The session holds the head and every entry while the chain grows and is then edited.
    head = session.get(AuditHead, 1)
    held = session.scalars(select(AuditEntry)).all()
    report_an_event(session, users)  # the hook moves the head by SQL, not through `head`
    assert verify_chain(session, KEY).ok
    session.execute(text("UPDATE audit_log SET data = '{}' WHERE id = :id"), {"id": chain})
    assert problem_of(session)[:2] == (chain, "tampered")
    assert head is not None and held


# ---------------------------------------------------------------------------
# The command


def test_cli_verify_exit_codes_and_json(app: Flask, session: Session, chain: int) -> None:
    runner = app.test_cli_runner()
    ok = runner.invoke(args=["audit", "verify"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output) == {"ok": True, "entries": chain}

    n = chain // 2
    session.execute(text("UPDATE audit_log SET data = '{}' WHERE id = :id"), {"id": n})
    session.commit()  # releases this test's savepoint; the test transaction still rolls back
    broken = runner.invoke(args=["audit", "verify"])
    assert broken.exit_code == 1
    body = json.loads(broken.output)
    assert body["ok"] is False and body["entries"] == n
    assert body["problem"]["entry_id"] == n
    assert body["problem"]["kind"] == "tampered"
    assert f"第 {n} 条" in body["problem"]["message"]


def test_cli_verify_without_a_key_says_so(db: Database, tmp_path: Path) -> None:
    keyless = copy.copy(db)
    keyless.audit_key = None
    settings = Settings(instance_path=tmp_path, secret_key="x", audit_key="unused")
    result = (
        create_app(settings, database=keyless).test_cli_runner().invoke(args=["audit", "verify"])
    )
    assert result.exit_code == 2
    assert "no audit key" in result.output


# ---------------------------------------------------------------------------
# Anchors: what a tail cut off with the head rewritten leaves behind


def cut_tail(session: Session, keep: int) -> None:
    """Delete the entries after `keep` and point the head at it, as a database insider can."""
    session.execute(text("DELETE FROM audit_log WHERE id > :keep"), {"keep": keep})
    mac = session.scalar(text("SELECT mac FROM audit_log WHERE id = :keep"), {"keep": keep})
    session.execute(
        text("UPDATE audit_head SET last_id = :k, last_mac = :m"), {"k": keep, "m": mac}
    )


def rewrite_with_the_key(session: Session, entry_id: int, data: str) -> None:
    """Change one entry and re-chain every later one with the real key (an insider with it)."""
    rows = session.scalars(
        select(AuditEntry)
        .where(AuditEntry.id >= entry_id)
        .order_by(AuditEntry.id)
        .execution_options(populate_existing=True)
    ).all()
    prev = rows[0].prev_mac
    for row in rows:
        body = data if row.id == entry_id else row.data
        mac = compute_mac(KEY, {**stored_fields(row), "data": body}, prev)
        session.execute(
            text("UPDATE audit_log SET data = :d, prev_mac = :p, mac = :m WHERE id = :id"),
            {"d": body, "p": prev, "m": mac, "id": row.id},
        )
        prev = mac
    session.execute(text("UPDATE audit_head SET last_mac = :m"), {"m": prev})


def anchor_now(app: Flask, out: Path) -> str:
    result = app.test_cli_runner().invoke(args=["audit", "anchor", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def verify(app: Flask, *args: str) -> tuple[int, dict]:
    result = app.test_cli_runner().invoke(args=["audit", "verify", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, json.loads(result.output)


def test_cli_anchor_prints_the_head_and_appends_it(
    app: Flask, session: Session, users: dict[str, User], chain: int, tmp_path: Path
) -> None:
    out = tmp_path / "anchors.txt"
    first = anchor_now(app, out)
    head = session.get(AuditHead, 1, populate_existing=True)
    assert head is not None
    assert first.startswith(f"gridgov-audit-anchor {chain}:{head.last_mac} ")
    assert first.endswith("+08:00")  # local time, for the log book
    report_an_event(session, users)
    second = anchor_now(app, out)
    assert out.read_text().splitlines() == [first, second]
    assert [a.seq for a in parse_anchors(out.read_text())] == [chain, chain + 1]


def test_cli_anchor_refuses_a_broken_chain(app: Flask, session: Session, chain: int) -> None:
    session.execute(text("UPDATE audit_log SET data = '{}' WHERE id = :id"), {"id": chain})
    result = app.test_cli_runner().invoke(args=["audit", "anchor"])
    assert result.exit_code == 1
    assert json.loads(result.output)["problem"]["kind"] == "tampered"
    assert "gridgov-audit-anchor" not in result.output


@pytest.mark.parametrize("given", ["file", "expect"])
def test_a_cut_tail_passes_verify_alone_but_not_an_anchor(
    app: Flask,
    session: Session,
    users: dict[str, User],
    chain: int,
    tmp_path: Path,
    given: str,
) -> None:
    out = tmp_path / "anchors.txt"
    line = anchor_now(app, out)
    report_an_event(session, users)  # the chain grows past the anchor: still fine
    args = ["--anchor", str(out)] if given == "file" else ["--expect", line.split()[1]]
    assert verify(app, *args) == (0, {"ok": True, "entries": chain + 1, **no_problems(1)})

    cut_tail(session, chain - 2)
    code, alone = verify(app)
    assert (code, alone) == (0, {"ok": True, "entries": chain - 2})  # what the anchor adds:
    code, anchored = verify(app, *args)
    assert code == 1 and anchored["ok"] is False and "problem" not in anchored
    [problem] = anchored["anchors"]["problems"]
    assert (problem["entry_id"], problem["kind"]) == (chain, "truncated")
    assert f"第 {chain} 条" in problem["message"]
    assert f"链只到第 {chain - 2} 条" in problem["message"]
    assert f"第 {chain - 1}–{chain} 条被删除" in problem["message"]


def no_problems(checked: int) -> dict:
    return {"anchors": {"checked": checked, "problems": []}}


def test_a_rewritten_anchored_entry_is_named(
    app: Flask, session: Session, chain: int, tmp_path: Path
) -> None:
    out = tmp_path / "anchors.txt"
    anchor_now(app, out)
    n = chain - 1
    rewrite_with_the_key(session, n, '{"phone": ["", "13900000000"]}')
    assert verify(app) == (0, {"ok": True, "entries": chain})  # valid MACs: the key was used
    code, body = verify(app, "--anchor", str(out))
    assert code == 1
    [problem] = body["anchors"]["problems"]
    assert (problem["entry_id"], problem["kind"]) == (chain, "anchor_mismatch")
    assert f"第 {chain} 条记录与锚点不符" in problem["message"]


def test_every_anchor_in_the_file_is_checked_and_each_failure_named(
    app: Flask, session: Session, users: dict[str, User], chain: int, tmp_path: Path
) -> None:
    out = tmp_path / "anchors.txt"
    anchor_now(app, out)
    report_an_event(session, users)
    anchor_now(app, out)
    out.write_text("# 审计锚点登记\n\n" + out.read_text())
    cut_tail(session, chain - 1)
    code, body = verify(app, "--anchor", str(out))
    assert code == 1 and body["anchors"]["checked"] == 2
    assert [(p["entry_id"], p["kind"]) for p in body["anchors"]["problems"]] == [
        (chain, "truncated"),
        (chain + 1, "truncated"),
    ]


@pytest.mark.parametrize(
    "args",
    [
        ["--expect", "12"],
        ["--expect", "12:abc"],
        ["--expect", ""],
        ["--anchor", "ANCHOR_FILE"],
    ],
)
def test_unreadable_anchors_are_refused(app: Flask, tmp_path: Path, args: list[str]) -> None:
    junk = tmp_path / "junk.txt"
    junk.write_text("not an anchor\n")
    args = [str(junk) if a == "ANCHOR_FILE" else a for a in args]
    result = app.test_cli_runner().invoke(args=["audit", "verify", *args])
    assert result.exit_code == 2, result.output


def test_parse_anchors_reads_printed_and_typed_lines() -> None:
    mac = "AB" * 32
    text_in = f"# log\n\ngridgov-audit-anchor 7:{'0' * 64} 2026-01-01T08:00:00+08:00\n 9:{mac}\n"
    assert [(a.seq, a.mac) for a in parse_anchors(text_in)] == [(7, "0" * 64), (9, mac.lower())]
    with pytest.raises(ValueError, match="line 2"):
        parse_anchors(f"1:{mac}\n1:{mac[:-1]}\n")


# ---------------------------------------------------------------------------
# One workflow action, one entry per changed row


def test_a_dispatch_leaves_one_update_entry_with_the_final_values(
    session: Session, users: dict[str, User]
) -> None:
    event = make_event(session, users, EventState.ACCEPTED)
    version = event.version
    before = last_id(session)
    perform(
        session,
        users["zzzx"],
        event.id,
        "dispatch",
        {"lead_department_id": department_of(users, "pcs"), "comment": "派给派出所"},
    )
    [entry] = entries_after(session, before)
    assert (entry.action, entry.object_type, entry.object_id) == ("update", "event", str(event.id))
    changes = json.loads(entry.data)
    assert changes["state"] == ["accepted", "dispatched"]
    assert changes["holder_level"] == ["town", "department"]
    assert changes["stage"] == ["dispatch", "handle"]
    assert changes["lead_department_id"] == [None, department_of(users, "pcs")]
    assert event.version == version + 1


@pytest.mark.parametrize("level", ["town", "county"])
def test_each_step_of_a_lifecycle_leaves_one_entry_per_changed_row(
    session: Session,
    users: dict[str, User],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    level: str,
) -> None:
    steps: list[tuple[str, Counter[Entry]]] = []

    def counted(s: Session, user: User, event_id: int, action: str, *a: Any, **kw: Any) -> Any:
        before = last_id(s)
        done = perform(s, user, event_id, action, *a, **kw)
        rows = entries_after(s, before)
        steps.append((action, Counter((e.action, e.object_type, e.object_id) for e in rows)))
        assert ("update", "event", str(event_id)) in steps[-1][1], action
        return done

    monkeypatch.setattr(factories, "perform", counted)
    make_event(session, users, EventState.CLOSED, level=level, store=PhotoStore(tmp_path))
    assert len(steps) >= 5
    assert [(action, max(n.values())) for action, n in steps] == [(a, 1) for a, _ in steps]


def test_a_merge_leaves_one_entry_for_the_merged_event(
    session: Session, users: dict[str, User]
) -> None:
    target = make_event(session, users, EventState.REPORTED)
    merged = make_event(session, users, EventState.REPORTED)
    before = last_id(session)
    perform(session, users["zzzx"], merged.id, "merge", {"target_event_id": target.id})
    mine = [e for e in entries_after(session, before) if e.object_id == str(merged.id)]
    assert len(mine) == 1
