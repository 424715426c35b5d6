"""Sign-in and account-security events on the audit chain, and how the auditor finds them.

One table: each sign-in outcome × (web form, API token) → the audit entries it must leave.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from gridgov import admin_ops as ops
from gridgov import audit, security
from gridgov.audit import AUTH, verify_chain
from gridgov.auth import issue_token, revoke_tokens, user_for_token
from gridgov.db import utcnow
from gridgov.demo import DEMO_PASSWORD
from gridgov.models import ApiToken, AuditEntry, User

KEY = b"test-audit-key"
CSRF = "test-csrf-token"
WRONG = "Wrong#Pass-4711"
"""A wrong password distinctive enough to search every new entry for."""
PEER = "192.0.2.10"
"""The client address the test requests come from (TEST-NET-1, documentation only)."""
LONG_AGENT = "Mozilla/5.0 (Linux; Android 13) " + "X" * 400
NEW_PASSWORD = "Zhili#2027!x"


# ---------------------------------------------------------------- helpers


def last_id(session: Session) -> int:
    return session.scalar(select(func.max(AuditEntry.id))) or 0


def entries_after(session: Session, after: int, object_type: str | None = AUTH) -> list[AuditEntry]:
    query = select(AuditEntry).where(AuditEntry.id > after).order_by(AuditEntry.id)
    if object_type:
        query = query.where(AuditEntry.object_type == object_type)
    return list(session.scalars(query.execution_options(populate_existing=True)))


def data(entry: AuditEntry) -> dict[str, Any]:
    return json.loads(entry.data)


def web_sign_in(client: FlaskClient, username: str, password: str) -> TestResponse:
    with client.session_transaction() as s:
        s["csrf_token"] = CSRF
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": CSRF},
        headers={"User-Agent": LONG_AGENT},
        environ_base={"REMOTE_ADDR": PEER},
    )


def api_sign_in(client: FlaskClient, username: str, password: str) -> TestResponse:
    return client.post(
        "/api/v1/auth/token",
        json={"username": username, "password": password},
        headers={"User-Agent": LONG_AGENT},
        environ_base={"REMOTE_ADDR": PEER},
    )


def start_session(client: FlaskClient, user: User, *, seen: int | None = None) -> None:
    with client.session_transaction() as s:
        s.clear()
        s.permanent = True
        s.update(user_id=user.id, seen=seen or int(time.time()), csrf_token=CSRF)


def reload(session: Session, username: str) -> User:
    session.expire_all()
    user = session.scalar(select(User).where(User.username == username))
    assert user is not None
    return user


# ---------------------------------------------------------------- the sign-in table


@dataclass(frozen=True)
class Case:
    """One sign-in outcome: how to arrange the account, what to type, what the log must say."""

    name: str
    username: str
    password: str
    arrange: Callable[[Session], None]
    expected: list[tuple[str, str]]
    """(action, reason) of the auth entries, in chain order, for the web form."""
    api_extra: list[tuple[str, str]]
    """Entries the API sign-in leaves after those (the token it issues)."""
    status: int
    known: bool = True


def _nothing(session: Session) -> None:
    pass


def _deactivate(session: Session) -> None:
    reload(session, "zzzx").active = False
    session.flush()


def _lock(session: Session) -> None:
    reload(session, "zzzx").locked_until = utcnow() + timedelta(minutes=10)
    session.flush()


def _one_failure_from_lock(session: Session) -> None:
    reload(session, "zzzx").failed_logins = security.get_policy(session).max_failures - 1
    session.flush()


CASES = [
    Case("success", "zzzx", DEMO_PASSWORD, _nothing, [("login", "")], [("token_issued", "")], 200),
    Case("bad_password", "zzzx", WRONG, _nothing, [("login_failed", "bad_password")], [], 401),
    Case(
        "unknown_user",
        "nobody-here",
        WRONG,
        _nothing,
        [("login_failed", "unknown_user")],
        [],
        401,
        known=False,
    ),
    Case("inactive", "zzzx", DEMO_PASSWORD, _deactivate, [("login_failed", "inactive")], [], 401),
    Case("while_locked", "zzzx", DEMO_PASSWORD, _lock, [("login_failed", "locked")], [], 401),
    Case(
        "locking_failure",
        "zzzx",
        WRONG,
        _one_failure_from_lock,
        [("login_failed", "bad_password"), ("account_locked", "too_many_failures")],
        [],
        401,
    ),
]

CHANNELS = {"web": web_sign_in, "api": api_sign_in}


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_each_sign_in_outcome_leaves_its_entries(
    client: FlaskClient, session: Session, users: dict[str, User], case: Case, channel: str
) -> None:
    case.arrange(session)
    before = last_id(session)
    response = CHANNELS[channel](client, case.username, case.password)
    assert response.status_code == (302 if channel == "web" and case.status == 200 else case.status)

    added = entries_after(session, before)
    expected = case.expected + (case.api_extra if channel == "api" else [])
    assert [(e.action, data(e).get("reason", "")) for e in added] == expected
    account = users.get(case.username)
    for entry in added:
        body = data(entry)
        assert (entry.actor_id, entry.actor) == (account.id if case.known else None, case.username)
        assert entry.object_id == (str(account.id) if case.known else "")
        assert body["outcome"] == ("success" if case.status == 200 else "failure")
        assert body["username"] == case.username
        assert (body["channel"], body["ip"]) == (channel, PEER)
        assert body["user_agent"] == LONG_AGENT[: audit.USER_AGENT_CHARS]
    # Nowhere in the log, data changes included, is the password typed.
    everything = entries_after(session, before, object_type=None)
    assert not any(case.password in e.data for e in everything)
    assert verify_chain(session, KEY).ok


def test_the_api_token_entry_names_the_token_by_its_digest(
    client: FlaskClient, session: Session
) -> None:
    before = last_id(session)
    token = api_sign_in(client, "zzzx", DEMO_PASSWORD).get_json()["token"]
    issued = entries_after(session, before)[-1]
    row = session.scalars(select(ApiToken)).all()
    [mine] = [r for r in row if r.digest.startswith(data(issued)["token"])]
    assert data(issued)["token"] == mine.digest[:12]
    assert token not in issued.data and mine.digest not in issued.data


def test_an_unknown_username_is_answered_like_a_wrong_password(
    client: FlaskClient, session: Session
) -> None:
    # The log says the account does not exist; nothing the person signing in sees does.
    unknown = web_sign_in(client, "nobody-here", WRONG)
    known = web_sign_in(client, "zzzx", WRONG)
    assert unknown.status_code == known.status_code == 401
    assert unknown.text.replace("nobody-here", "USER") == known.text.replace("zzzx", "USER")
    api_unknown = api_sign_in(client, "nobody-here", WRONG)
    api_known = api_sign_in(client, "zzzx", WRONG)
    assert api_unknown.status_code == api_known.status_code == 401
    assert api_unknown.get_json() == api_known.get_json()
    reasons = [data(e)["reason"] for e in entries_after(session, 0)[-4:]]
    assert reasons == ["unknown_user", "bad_password", "unknown_user", "bad_password"]


def test_a_long_username_is_cut_to_the_column(client: FlaskClient, session: Session) -> None:
    before = last_id(session)
    api_sign_in(client, "x" * 500, WRONG)
    [entry] = entries_after(session, before)
    assert entry.actor == "x" * audit.NAME_CHARS
    assert data(entry)["username"] == "x" * audit.NAME_CHARS
    assert verify_chain(session, KEY).ok


def test_a_forwarded_for_header_is_kept_apart_from_the_peer(
    client: FlaskClient, session: Session
) -> None:
    before = last_id(session)
    client.post(
        "/api/v1/auth/token",
        json={"username": "zzzx", "password": WRONG},
        headers={"X-Forwarded-For": "203.0.113.7"},
        environ_base={"REMOTE_ADDR": PEER},
    )
    [entry] = entries_after(session, before)
    assert (data(entry)["ip"], data(entry)["forwarded_for"]) == (PEER, "203.0.113.7")


# ---------------------------------------------------------------- the rest of a session


def test_sign_out_is_recorded(
    client: FlaskClient, session: Session, users: dict[str, User]
) -> None:
    start_session(client, users["wgy"])
    before = last_id(session)
    response = client.post("/logout", data={"csrf_token": CSRF}, environ_base={"REMOTE_ADDR": PEER})
    assert response.status_code == 302
    [entry] = entries_after(session, before)
    assert (entry.action, entry.actor_id, entry.object_id) == (
        "logout",
        users["wgy"].id,
        str(users["wgy"].id),
    )
    assert (data(entry)["outcome"], data(entry)["ip"]) == ("success", PEER)


def test_signing_out_when_not_signed_in_records_nothing(
    client: FlaskClient, session: Session
) -> None:
    before = last_id(session)
    with client.session_transaction() as s:
        s["csrf_token"] = CSRF
    client.post("/logout", data={"csrf_token": CSRF})
    assert entries_after(session, before) == []


@pytest.mark.parametrize(("path", "status"), [("/notices", 302), ("/api/v1/events", 401)])
def test_an_idle_timeout_is_recorded_when_the_browser_returns(
    client: FlaskClient, session: Session, users: dict[str, User], path: str, status: int
) -> None:
    idle = security.get_policy(session).idle_minutes * 60 + 5
    start_session(client, users["zzzx"], seen=int(time.time()) - idle)
    before = last_id(session)
    assert client.get(path).status_code == status
    [entry] = entries_after(session, before)
    assert (entry.action, entry.actor_id) == ("session_expired", users["zzzx"].id)
    body = data(entry)
    assert (body["reason"], body["outcome"]) == ("idle_timeout", "success")
    assert body["idle_seconds"] >= idle


def test_an_active_session_records_no_timeout(
    client: FlaskClient, session: Session, users: dict[str, User]
) -> None:
    start_session(client, users["zzzx"])
    before = last_id(session)
    assert client.get("/notices").status_code == 200
    assert entries_after(session, before) == []


def test_password_change_and_its_failures_are_recorded(
    client: FlaskClient, session: Session, users: dict[str, User]
) -> None:
    start_session(client, users["zzzx"])
    form = {"new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD, "csrf_token": CSRF}
    before = last_id(session)
    refused = client.post("/account/password", data={**form, "current_password": WRONG})
    assert refused.status_code == 422  # the page is refused, yet the record is kept
    changed = client.post("/account/password", data={**form, "current_password": DEMO_PASSWORD})
    assert changed.status_code == 302
    added = entries_after(session, before)
    assert [(e.action, data(e).get("reason", "")) for e in added] == [
        ("password_change_failed", "bad_current_password"),
        ("password_changed", ""),
    ]
    assert {e.actor_id for e in added} == {users["zzzx"].id}
    assert data(added[0])["outcome"] == "failure"
    assert not any(p in e.data for e in added for p in (WRONG, DEMO_PASSWORD, NEW_PASSWORD))


def test_a_changed_password_revokes_the_api_tokens(
    session: Session, users: dict[str, User]
) -> None:
    user = users["ddy"]
    token = issue_token(session, user)
    before = last_id(session)
    security.change_password(session, user, DEMO_PASSWORD, NEW_PASSWORD, NEW_PASSWORD, utcnow())
    assert user_for_token(session, token) is None
    added = entries_after(session, before)
    assert [e.action for e in added] == ["password_changed", "token_revoked"]
    revoked = data(added[1])
    assert revoked["reason"] == "password_changed" and len(revoked["tokens"]) == 1
    # Nothing left to revoke: nothing recorded.
    before = last_id(session)
    assert revoke_tokens(session, user, "password_changed") == 0
    assert entries_after(session, before) == []


def test_a_password_reset_by_the_system_administrator_is_recorded(
    session: Session, users: dict[str, User]
) -> None:
    admin, target = users["xtgly"], users["zzzx"]
    audit.set_actor(session, audit.Actor(admin.id, admin.username))
    issue_token(session, target)
    before = last_id(session)
    data_in = ops.UserInput(
        display_name=target.display_name,
        region_code=target.region_code,
        active=True,
        password=NEW_PASSWORD,
        confirm_password=NEW_PASSWORD,
    )
    ops.update_user(session, admin, target, data_in)
    added = entries_after(session, before)
    assert [(e.action, e.actor_id, e.object_id) for e in added] == [
        ("password_reset", admin.id, str(target.id)),
        ("token_revoked", admin.id, str(target.id)),
    ]
    assert NEW_PASSWORD not in "".join(e.data for e in added)


def test_record_refuses_an_unknown_kind(session: Session) -> None:
    with pytest.raises(ValueError, match="unknown audit record kind"):
        audit.record(session, "login_maybe")


# ---------------------------------------------------------------- the auditor's page


def auditor_page(client: FlaskClient, users: dict[str, User], **args: str) -> str:
    start_session(client, users["sjgly"])
    page = client.get("/admin/audit", query_string=args)
    assert page.status_code == 200
    return page.text


def rows_of(page: str) -> list[str]:
    return page.split("<tbody>", 1)[1].split("</tbody>", 1)[0].split("<tr ")[1:]


def test_the_auditor_sees_and_filters_sign_in_entries(
    client: FlaskClient, session: Session, users: dict[str, User]
) -> None:
    api_sign_in(client, "nobody-here", WRONG)
    api_sign_in(client, "zzzx", DEMO_PASSWORD)
    client.post("/api/v1/auth/token", json={"username": "ddy", "password": WRONG})

    failures = rows_of(auditor_page(client, users, action="login_failed"))
    assert len(failures) == 2
    assert "登录失败" in failures[0] and "密码错误" in failures[0] and "ddy" in failures[0]
    assert "用户名不存在" in failures[1] and "nobody-here" in failures[1]
    assert PEER in failures[1] and "接口" in failures[1]

    from_peer = rows_of(auditor_page(client, users, ip=PEER))
    assert len(from_peer) == 3  # unknown user; zzzx's sign-in and token (ddy came from elsewhere)
    assert all(PEER in row for row in from_peer)
    successes = rows_of(auditor_page(client, users, object_type=AUTH, outcome="success"))
    # The auditor's own page views add no entries; zzzx's sign-in and token are the successes.
    assert ["签发接口令牌" in successes[0], "登录成功" in successes[1]] == [True, True]
    assert len(successes) == 2
    page = auditor_page(client, users)
    assert "登录与账号安全" in page and '<optgroup label="登录与账号安全">' in page


def test_the_auditor_gets_the_anchor_after_a_successful_check(
    client: FlaskClient, session: Session, users: dict[str, User]
) -> None:
    page = auditor_page(client, users, verify="1")
    anchor = audit.current_anchor(session)
    assert "完整性校验通过" in page
    assert f"{anchor.seq}:{anchor.mac}" in page
