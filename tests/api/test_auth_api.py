"""Signing in for API tokens: credentials, lockout after repeated failures, token validity."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from gridgov.auth import MAX_FAILURES
from gridgov.db import utcnow
from gridgov.demo import DEMO_PASSWORD
from gridgov.models import ApiToken, User

CJK = re.compile(r"[\u4e00-\u9fff]")
TOKEN_URL = "/api/v1/auth/token"


def sign_in(client, username: str, password: str) -> Any:
    return client.post(TOKEN_URL, json={"username": username, "password": password})


def error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert CJK.search(body["error"]["message"])
    return body["error"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def user(session, username: str) -> User:
    session.expire_all()
    found = session.scalar(select(User).where(User.username == username))
    assert found is not None
    return found


def test_good_credentials_give_a_working_token(client, session):
    r = sign_in(client, "zzzx", DEMO_PASSWORD)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert isinstance(body["token"], str) and len(body["token"]) >= 32
    assert body["expires_in"] == 12 * 3600
    assert client.get("/api/v1/events", headers=bearer(body["token"])).status_code == 200
    # Only a digest is stored.
    digest = hashlib.sha256(body["token"].encode()).hexdigest()
    row = session.get(ApiToken, digest)
    assert row is not None and row.user_id == user(session, "zzzx").id
    assert session.scalar(select(ApiToken).where(ApiToken.digest == body["token"])) is None


def test_each_sign_in_gives_a_new_token(client):
    first = sign_in(client, "wgy", DEMO_PASSWORD).get_json()["token"]
    second = sign_in(client, "wgy", DEMO_PASSWORD).get_json()["token"]
    assert first != second
    for token in (first, second):
        assert client.get("/api/v1/events", headers=bearer(token)).status_code == 200


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("zzzx", "wrong-password"),
        ("zzzx", ""),
        ("nobody", DEMO_PASSWORD),
        ("", ""),
        ("ZZZX", DEMO_PASSWORD),
    ],
)
def test_bad_credentials(client, username, password):
    err = error(sign_in(client, username, password), 401, "bad_credentials")
    assert err["message"] == "用户名或密码错误"  # never says which of the two was wrong


def test_sign_in_needs_a_json_object(client):
    error(client.post(TOKEN_URL, data="username=zzzx"), 400, "bad_json")


def test_inactive_user_cannot_sign_in(client, session):
    user(session, "wgy2").active = False
    session.flush()
    error(sign_in(client, "wgy2", DEMO_PASSWORD), 401, "bad_credentials")


def test_repeated_failures_lock_the_account(client, session):
    for _ in range(MAX_FAILURES):
        error(sign_in(client, "zzzx", "wrong-password"), 401, "bad_credentials")
    locked = user(session, "zzzx")
    assert locked.locked_until is not None and locked.locked_until > utcnow()
    error(sign_in(client, "zzzx", DEMO_PASSWORD), 401, "account_locked")
    error(sign_in(client, "zzzx", "wrong-password"), 401, "account_locked")
    # Other accounts are not affected.
    assert sign_in(client, "zzzx2", DEMO_PASSWORD).status_code == 200

    # Once the lock has run out, the right password works again and clears the record.
    locked = user(session, "zzzx")
    locked.locked_until = utcnow() - timedelta(seconds=1)
    session.flush()
    assert sign_in(client, "zzzx", DEMO_PASSWORD).status_code == 200
    cleared = user(session, "zzzx")
    assert (cleared.failed_logins, cleared.locked_until) == (0, None)


def test_a_success_resets_the_failure_count(client, session):
    for _ in range(MAX_FAILURES - 1):
        error(sign_in(client, "ddy", "wrong-password"), 401, "bad_credentials")
    assert user(session, "ddy").failed_logins == MAX_FAILURES - 1
    assert sign_in(client, "ddy", DEMO_PASSWORD).status_code == 200
    assert user(session, "ddy").failed_logins == 0
    error(sign_in(client, "ddy", "wrong-password"), 401, "bad_credentials")
    assert user(session, "ddy").failed_logins == 1  # counting starts again: no lock yet


def test_expired_token_is_refused(client, session):
    token = sign_in(client, "zzzx", DEMO_PASSWORD).get_json()["token"]
    row = session.get(ApiToken, hashlib.sha256(token.encode()).hexdigest())
    row.expires_at = utcnow() - timedelta(seconds=1)
    session.flush()
    error(client.get("/api/v1/events", headers=bearer(token)), 401, "unauthorized")


def test_token_of_a_deactivated_user_is_refused(client, session):
    token = sign_in(client, "zzzx", DEMO_PASSWORD).get_json()["token"]
    user(session, "zzzx").active = False
    session.flush()
    error(client.get("/api/v1/events", headers=bearer(token)), 401, "unauthorized")


@pytest.mark.parametrize(
    "header",
    ["Bearer garbage", "Bearer ", "Bearer " + "A" * 43, "Token abc", "bearer abc", ""],
)
def test_garbage_token_is_refused(client, header):
    error(client.get("/api/v1/events", headers={"Authorization": header}), 401, "unauthorized")
