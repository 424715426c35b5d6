"""The security policy: defaults, validated edits, password strength, expiry."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from gridgov import security
from gridgov.db import utcnow
from gridgov.errors import Unprocessable
from gridgov.models import Setting, User
from gridgov.security import DEFAULT_POLICY, SecurityPolicy


def test_defaults() -> None:
    defaults = {
        "min_length": 10,
        "min_classes": 3,
        "expiry_days": 90,
        "max_failures": 5,
        "lock_minutes": 15,
        "idle_minutes": 30,
    }
    assert asdict(DEFAULT_POLICY) == defaults


def test_missing_or_broken_setting_gives_defaults(session: Session) -> None:
    assert security.get_policy(session) == DEFAULT_POLICY
    session.add(Setting(key=security.POLICY_KEY, value="not json"))
    session.flush()
    assert security.get_policy(session) == DEFAULT_POLICY


def test_out_of_range_stored_values_fall_back_per_field(session: Session) -> None:
    session.add(Setting(key=security.POLICY_KEY, value='{"min_length": 2, "idle_minutes": 20}'))
    session.flush()
    policy = security.get_policy(session)
    assert (policy.min_length, policy.idle_minutes) == (10, 20)


def test_set_policy_stores_and_merges(session: Session) -> None:
    security.set_policy(session, min_length=12)
    policy = security.set_policy(session, idle_minutes="15")
    assert (policy.min_length, policy.idle_minutes) == (12, 15)
    assert security.get_policy(session) == policy


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"min_length": 7}, "min_length", "密码最短长度应在 8–64 之间"),
        ({"min_classes": 4}, "min_classes", "应在 1–3 之间"),
        ({"expiry_days": -1}, "expiry_days", "应在 0–365 之间"),
        ({"max_failures": 50}, "max_failures", "应在 3–10 之间"),
        ({"lock_minutes": "十五"}, "lock_minutes", "账号锁定时长（分钟）应为整数"),
        ({"idle_minutes": ""}, "idle_minutes", "请填写会话空闲超时（分钟）"),
        ({"idle_minutes": True}, "idle_minutes", "应为整数"),
    ],
)
def test_set_policy_validates(session: Session, changes, field: str, message: str) -> None:
    with pytest.raises(Unprocessable) as caught:
        security.set_policy(session, **{"idle_minutes": 20, **changes})
    assert message in caught.value.details["fields"][field]
    assert security.get_policy(session) == DEFAULT_POLICY  # nothing stored


def test_set_policy_refuses_unknown_keys(session: Session) -> None:
    with pytest.raises(Unprocessable, match="未知的安全策略项"):
        security.set_policy(session, allow_everything=1)


@pytest.mark.parametrize(
    ("password", "problems"),
    [
        ("Gridgov#2026", []),
        ("短#1a", ["密码至少需要 10 个字符"]),
        ("onlyletters", ["密码须同时包含字母、数字和符号"]),
        ("letters2026", ["密码须同时包含字母、数字和符号"]),
        ("网格治理密码测试#2026", []),  # Chinese characters count as letters
        ("Grid gov#2026", ["密码不能包含空格"]),
    ],
)
def test_password_strength(password: str, problems: list[str]) -> None:
    assert security.check_password_strength(DEFAULT_POLICY, password) == problems


def test_strength_follows_min_classes_and_username() -> None:
    relaxed = SecurityPolicy(min_classes=2)
    assert security.check_password_strength(relaxed, "letters2026") == []
    assert security.check_password_strength(relaxed, "onlyletters") == [
        "密码须包含字母、数字、符号中的至少 2 类"
    ]
    assert security.check_password_strength(DEFAULT_POLICY, "Zzzx#20261", username="zzzx") == [
        "密码不能包含用户名"
    ]


def test_password_expiry(users: dict[str, User]) -> None:
    user = users["ddy"]
    now = utcnow()
    user.password_changed_at = now - timedelta(days=89)
    assert not security.password_expired(DEFAULT_POLICY, user, now)
    assert security.password_expired(DEFAULT_POLICY, user, now + timedelta(days=1))
    assert not security.password_expired(
        SecurityPolicy(expiry_days=0), user, now + timedelta(days=999)
    )
