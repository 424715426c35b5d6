"""The security policy (等保): password rules, lockout, idle timeout — stored as one Setting.

The security administrator edits it at runtime; every value has a sane default and a
validated range, so a bad value can never lock everyone out or switch protection off.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from gridgov.errors import Unprocessable
from gridgov.models import Setting, User

POLICY_KEY = "security.policy"


@dataclass(frozen=True)
class SecurityPolicy:
    """Password, lockout and session rules; the defaults apply until an administrator edits."""

    min_length: int = 10
    """Shortest password accepted."""
    min_classes: int = 3
    """How many of the classes letters / digits / symbols a password must mix (1–3)."""
    expiry_days: int = 90
    """Days until a password must be changed; 0 = never expires."""
    max_failures: int = 5
    """Failed sign-ins in a row that lock the account."""
    lock_minutes: int = 15
    """How long a locked account stays locked."""
    idle_minutes: int = 30
    """Inactivity after which a browser session ends."""

    @property
    def lockout(self) -> timedelta:
        return timedelta(minutes=self.lock_minutes)

    @property
    def idle_timeout(self) -> timedelta:
        return timedelta(minutes=self.idle_minutes)

    def describe(self) -> list[str]:
        """Return the password rules as Chinese sentences (for forms)."""
        rules = [f"至少 {self.min_length} 个字符"]
        if self.min_classes >= 3:
            rules.append("须同时包含字母、数字和符号")
        elif self.min_classes == 2:
            rules.append("须包含字母、数字、符号中的至少两类")
        if self.expiry_days:
            rules.append(f"每 {self.expiry_days} 天须更换一次")
        return rules


DEFAULT_POLICY = SecurityPolicy()

FIELD_LABELS = {
    "min_length": "密码最短长度",
    "min_classes": "密码须包含的字符类别数",
    "expiry_days": "密码有效期（天）",
    "max_failures": "连续登录失败锁定次数",
    "lock_minutes": "账号锁定时长（分钟）",
    "idle_minutes": "会话空闲超时（分钟）",
}

LIMITS = {
    "min_length": (8, 64),
    "min_classes": (1, 3),
    "expiry_days": (0, 365),
    "max_failures": (3, 10),
    "lock_minutes": (1, 1440),
    "idle_minutes": (5, 480),
}
"""Inclusive ranges: 等保 level 3 asks for ≥ 8 characters, lockout and a session timeout."""

CLASS_NAMES = ("字母", "数字", "符号")


def get_policy(session: Session) -> SecurityPolicy:
    """Return the stored policy; missing or unreadable values fall back to the defaults."""
    row = session.get(Setting, POLICY_KEY)
    if row is None:
        return DEFAULT_POLICY
    try:
        stored = json.loads(row.value)
    except ValueError:
        return DEFAULT_POLICY
    if not isinstance(stored, dict):
        return DEFAULT_POLICY
    values: dict[str, int] = {}
    for name, (low, high) in LIMITS.items():
        value = stored.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            values[name] = value
    return replace(DEFAULT_POLICY, **values)


def _parse(name: str, raw: Any) -> tuple[int | None, str | None]:
    label = FIELD_LABELS[name]
    low, high = LIMITS[name]
    if isinstance(raw, bool):
        return None, f"{label}应为整数"
    if isinstance(raw, str):
        raw = raw.strip()
        if not raw:
            return None, f"请填写{label}"
        try:
            raw = int(raw, 10)
        except ValueError:
            return None, f"{label}应为整数"
    if not isinstance(raw, int):
        return None, f"{label}应为整数"
    if not low <= raw <= high:
        return None, f"{label}应在 {low}–{high} 之间"
    return raw, None


def set_policy(session: Session, **changes: Any) -> SecurityPolicy:
    """Validate and store changes to the policy; raise Unprocessable with per-field errors.

    Values may be ints or decimal strings (as a form sends them). Nothing is stored unless
    every change is valid.
    """
    unknown = sorted(set(changes) - set(LIMITS))
    if unknown:
        raise Unprocessable(f"未知的安全策略项：{'、'.join(unknown)}", code="bad_policy", fields={})
    values: dict[str, int] = {}
    errors: dict[str, str] = {}
    for name, raw in changes.items():
        value, error = _parse(name, raw)
        if error is not None:
            errors[name] = error
        else:
            assert value is not None
            values[name] = value
    if errors:
        raise Unprocessable(
            "安全策略未保存：" + "；".join(errors.values()), code="bad_policy", fields=errors
        )
    policy = replace(get_policy(session), **values)
    row = session.get(Setting, POLICY_KEY)
    stored = json.dumps(asdict(policy), sort_keys=True)
    if row is None:
        session.add(Setting(key=POLICY_KEY, value=stored))
    elif row.value != stored:
        row.value = stored
    session.flush()
    return policy


def policy_fields() -> list[str]:
    """Return the policy's field names in display order."""
    return [f.name for f in fields(SecurityPolicy)]


def character_classes(password: str) -> int:
    """Count the classes (letters, digits, symbols) a password uses."""
    letters = any(c.isalpha() for c in password)
    digits = any(c.isdigit() for c in password)
    symbols = any(not c.isalnum() and not c.isspace() for c in password)
    return letters + digits + symbols


def check_password_strength(
    policy: SecurityPolicy, password: str, *, username: str = ""
) -> list[str]:
    """Return what is wrong with a new password, as Chinese sentences; [] if acceptable."""
    problems: list[str] = []
    if len(password) < policy.min_length:
        problems.append(f"密码至少需要 {policy.min_length} 个字符")
    if character_classes(password) < policy.min_classes:
        if policy.min_classes >= 3:
            problems.append("密码须同时包含字母、数字和符号")
        else:
            problems.append(f"密码须包含字母、数字、符号中的至少 {policy.min_classes} 类")
    if any(c.isspace() for c in password):
        problems.append("密码不能包含空格")
    if username and username.lower() in password.lower():
        problems.append("密码不能包含用户名")
    return problems


def password_expired(policy: SecurityPolicy, user: User, now: datetime) -> bool:
    """Return whether the user's password is older than the policy allows."""
    if not policy.expiry_days:
        return False
    changed = user.password_changed_at
    if changed is None:
        return True
    return now - changed >= timedelta(days=policy.expiry_days)


def change_password(
    session: Session, user: User, current: str, new: str, confirm: str, now: datetime
) -> None:
    """Replace the user's password after checking the current one and the policy.

    Raises Unprocessable with per-field errors (`fields`) when anything is wrong. Success and
    failure are recorded in the audit chain (the caller commits even when this raises); a
    change revokes the user's API tokens.
    """
    from gridgov import audit
    from gridgov.auth import check_password, hash_password, revoke_tokens

    policy = get_policy(session)
    errors: dict[str, str] = {}
    if not current:
        errors["current_password"] = "请输入当前密码"
    elif not check_password(user, current):
        errors["current_password"] = "当前密码不正确"
    problems = check_password_strength(policy, new, username=user.username)
    if not new:
        errors["new_password"] = "请输入新密码"
    elif problems:
        errors["new_password"] = "；".join(problems)
    elif current and new == current:
        errors["new_password"] = "新密码不能与当前密码相同"
    if new and confirm != new:
        errors["confirm_password"] = "两次输入的新密码不一致"
    if errors:
        audit.record_account(
            session,
            "password_change_failed",
            user,
            reason="bad_current_password" if "current_password" in errors else "rejected",
            fields=sorted(errors),
        )
        raise Unprocessable(
            "密码未修改：" + "；".join(errors.values()), code="bad_password", fields=errors
        )
    user.password_hash = hash_password(new)
    user.password_changed_at = now
    session.flush()
    audit.record_account(session, "password_changed", user)
    revoke_tokens(session, user, "password_changed")
