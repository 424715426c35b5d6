"""Identity: password hashing, sign-in with lockout, API bearer tokens."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from gridgov.db import utcnow
from gridgov.errors import Unauthorized
from gridgov.models import ApiToken, User
from gridgov.security import DEFAULT_POLICY, get_policy

_hasher = PasswordHasher()
MAX_FAILURES = DEFAULT_POLICY.max_failures
"""Default lockout threshold; the one in force is gridgov.security.get_policy()."""
LOCKOUT = DEFAULT_POLICY.lockout
TOKEN_LIFETIME = timedelta(hours=12)


def hash_password(password: str) -> str:
    """Hash a password with Argon2id."""
    return _hasher.hash(password)


def check_password(user: User, password: str) -> bool:
    """Return whether `password` is the user's password."""
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


_DUMMY_HASH = _hasher.hash("gridgov-timing-equaliser")


def _spend_check(password: str) -> None:
    # Spend the cost of a real check, so the response time does not reveal whether the
    # username exists (等保: no account enumeration).
    with contextlib.suppress(VerificationError, InvalidHashError):
        _hasher.verify(_DUMMY_HASH, password)


def authenticate(session: Session, username: str, password: str) -> User:
    """Return the user for these credentials; count failures and lock after too many.

    The thresholds come from the security policy (gridgov.security); the caller must
    commit even when this raises, or the failure count is lost with the rollback.
    """
    policy = get_policy(session)
    user = session.scalar(select(User).where(User.username == username))
    now = utcnow()
    refused = Unauthorized("用户名或密码错误", code="bad_credentials")
    if user is None or not user.active:
        _spend_check(password)
        raise refused
    if user.locked_until is not None and user.locked_until > now:
        raise Unauthorized(
            "连续登录失败次数过多，账号已临时锁定，请稍后再试", code="account_locked"
        )
    if not check_password(user, password):
        user.failed_logins += 1
        if user.failed_logins >= policy.max_failures:
            user.locked_until = now + policy.lockout
            user.failed_logins = 0
        session.flush()
        raise refused
    if user.failed_logins or user.locked_until:
        user.failed_logins = 0
        user.locked_until = None
    return user


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, user: User) -> str:
    """Create a bearer token for `user`; only its digest is stored."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.execute(delete(ApiToken).where(ApiToken.expires_at < now))
    session.add(
        ApiToken(
            digest=_digest(token), user_id=user.id, created_at=now, expires_at=now + TOKEN_LIFETIME
        )
    )
    session.flush()
    return token


def user_for_token(session: Session, token: str) -> User | None:
    """Return the active user a valid token belongs to."""
    row = session.get(ApiToken, _digest(token))
    if row is None or row.expires_at < utcnow():
        return None
    user = session.get(User, row.user_id)
    return user if user is not None and user.active else None
