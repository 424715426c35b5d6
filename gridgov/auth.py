"""Identity: password hashing, sign-in with lockout, API bearer tokens.

Every sign-in outcome, lockout, token issue and revocation is appended to the audit chain
(gridgov.audit.record) with the client the edge attached to the session.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from gridgov import audit
from gridgov.db import utcnow
from gridgov.errors import Unauthorized
from gridgov.models import ApiToken, User
from gridgov.security import DEFAULT_POLICY, get_policy, password_expired

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

    The thresholds come from the security policy (gridgov.security). Every outcome is
    recorded in the audit chain with the username tried (never the password) and the reason;
    the caller must commit even when this raises, or the failure count and the record are
    lost with the rollback. The message refusing an unknown, inactive or wrong-password
    account is the same: only the audit record says which it was.
    """
    policy = get_policy(session)
    user = session.scalar(select(User).where(User.username == username))
    now = utcnow()
    refused = Unauthorized("用户名或密码错误", code="bad_credentials")
    if user is None or not user.active:
        _spend_check(password)
        if user is None:
            audit.record(
                session,
                "login_failed",
                actor=audit.Actor(None, username),
                reason="unknown_user",
                username=username[: audit.NAME_CHARS],
            )
        else:
            audit.record_account(session, "login_failed", user, reason="inactive")
        raise refused
    if user.locked_until is not None and user.locked_until > now:
        audit.record_account(
            session,
            "login_failed",
            user,
            reason="locked",
            locked_until=user.locked_until.isoformat(),
        )
        raise Unauthorized(
            "连续登录失败次数过多，账号已临时锁定，请稍后再试", code="account_locked"
        )
    if not check_password(user, password):
        failures = user.failed_logins + 1
        user.failed_logins = failures
        if failures >= policy.max_failures:
            user.locked_until = now + policy.lockout
            user.failed_logins = 0
        session.flush()
        audit.record_account(
            session, "login_failed", user, reason="bad_password", failures=failures
        )
        if user.locked_until is not None and user.locked_until > now:
            audit.record_account(
                session,
                "account_locked",
                user,
                reason="too_many_failures",
                failures=failures,
                locked_until=user.locked_until.isoformat(),
            )
        raise refused
    if user.failed_logins or user.locked_until:
        user.failed_logins = 0
        user.locked_until = None
    details = {"password_expired": True} if password_expired(policy, user, now) else {}
    audit.record_account(session, "login", user, **details)
    return user


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_id(digest: str) -> str:
    """Return how the audit log names a token: the first 12 hex digits of its digest."""
    return digest[:12]


def issue_token(session: Session, user: User) -> str:
    """Create a bearer token for `user`; only its digest is stored, and its issue recorded."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.execute(delete(ApiToken).where(ApiToken.expires_at < now))
    row = ApiToken(
        digest=_digest(token), user_id=user.id, created_at=now, expires_at=now + TOKEN_LIFETIME
    )
    session.add(row)
    session.flush()
    audit.record_account(
        session,
        "token_issued",
        user,
        token=token_id(row.digest),
        expires_at=row.expires_at.isoformat(),
    )
    return token


def revoke_tokens(session: Session, user: User, reason: str) -> int:
    """Revoke every unexpired API token of `user`; record it if there were any; return how many.

    Called when the password changes or is reset: a token taken with the old password must
    not outlive it.
    """
    now = utcnow()
    digests = list(
        session.scalars(
            select(ApiToken.digest).where(ApiToken.user_id == user.id, ApiToken.expires_at >= now)
        )
    )
    session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
    if digests:
        audit.record(
            session,
            "token_revoked",
            object_id=str(user.id),
            reason=reason,
            username=user.username,
            tokens=sorted(token_id(d) for d in digests),
        )
    return len(digests)


def user_for_token(session: Session, token: str) -> User | None:
    """Return the active user a valid token belongs to."""
    row = session.get(ApiToken, _digest(token))
    if row is None or row.expires_at < utcnow():
        return None
    user = session.get(User, row.user_id)
    return user if user is not None and user.active else None
