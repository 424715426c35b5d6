"""Sign-in, CSRF, lockout, the security policy page, password change, idle timeout, notices."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from gridgov import security
from gridgov.auth import check_password
from gridgov.db import utcnow
from gridgov.demo import ACCOUNTS, DEMO_PASSWORD
from gridgov.models import Notice, Role, User
from gridgov.web.auth_pages import HOME_PATHS

CSRF = "test-csrf-token"
NEW_PASSWORD = "Zhili#2027!x"


def set_csrf(client: FlaskClient) -> str:
    """Give the client's cookie session a known CSRF token and return it."""
    with client.session_transaction() as s:
        s["csrf_token"] = CSRF
    return CSRF


def login(client: FlaskClient, username: str, password: str = DEMO_PASSWORD, **extra: str):
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": set_csrf(client), **extra},
    )


def sign_in(client: FlaskClient, user: User) -> None:
    """Start a signed-in session directly (tests that are not about the sign-in form)."""
    with client.session_transaction() as s:
        s.clear()
        s.permanent = True
        s.update(user_id=user.id, seen=int(time.time()), csrf_token=CSRF)


def token(client: FlaskClient) -> str:
    """Return the client's CSRF token (signing in replaces it with a fresh one)."""
    with client.session_transaction() as s:
        return s.setdefault("csrf_token", CSRF)


def post(client: FlaskClient, url: str, **data: str) -> TestResponse:
    return client.post(url, data={"csrf_token": token(client), **data})


def signed_in_id(client: FlaskClient) -> int | None:
    with client.session_transaction() as s:
        return s.get("user_id")


# -- sign-in ------------------------------------------------------------------------------


def test_login_page_is_chinese_and_carries_a_csrf_token(client: FlaskClient) -> None:
    page = client.get("/login")
    assert page.status_code == 200
    assert "用户登录" in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token and len(token.group(1)) > 20
    assert f'<meta name="csrf-token" content="{token.group(1)}">' in page.text


def test_home_sends_anonymous_users_to_login(client: FlaskClient) -> None:
    assert client.get("/").location == "/login"
    assert client.get("/notices").location == "/login?next=/notices"


def test_every_role_has_a_home() -> None:
    assert set(HOME_PATHS) == set(Role)


@pytest.mark.parametrize("account", ACCOUNTS, ids=lambda a: a.username)
def test_each_role_lands_on_its_own_page(client: FlaskClient, account) -> None:
    response = login(client, account.username)
    assert response.status_code == 302
    assert response.location == HOME_PATHS[account.role]
    assert client.get("/").location == HOME_PATHS[account.role]


def test_wrong_password_shows_chinese_error_and_keeps_username(client: FlaskClient) -> None:
    response = login(client, "zzzx", "wrong-password")
    assert response.status_code == 401
    assert "用户名或密码错误" in response.text
    assert 'value="zzzx"' in response.text
    assert "wrong-password" not in response.text
    assert signed_in_id(client) is None


def test_empty_fields_get_field_errors(client: FlaskClient) -> None:
    response = login(client, "", "")
    assert response.status_code == 422
    assert "请填写用户名" in response.text and "请输入密码" in response.text


def test_login_follows_next_but_never_off_site(client: FlaskClient) -> None:
    assert login(client, "zzzx", next="/notices").location == "/notices"
    client.post("/logout", data={"csrf_token": set_csrf(client)})
    assert login(client, "zzzx", next="//evil.example/x").location == "/desk/"
    client.post("/logout", data={"csrf_token": set_csrf(client)})
    assert login(client, "zzzx", next="https://evil.example/").location == "/desk/"


def test_header_shows_name_role_unit_and_jurisdiction(
    client: FlaskClient, users: dict[str, User]
) -> None:
    sign_in(client, users["pcs"])
    page = client.get("/notices").text
    assert "吴刚（螺溪派出所）" in page
    assert "职能部门处置员" in page
    assert 'class="who-unit">陆河县公安局螺溪派出所<' in page  # the department
    assert "陆河县 / 螺溪镇" in page
    assert 'class="badge" data-unread>0<' in page


def test_logout_ends_the_session(client: FlaskClient, users: dict[str, User]) -> None:
    sign_in(client, users["ld"])
    response = post(client, "/logout")
    assert response.location == "/login?logged_out=1"
    assert signed_in_id(client) is None
    assert client.get("/notices").status_code == 302
    assert "您已安全退出" in client.get("/login?logged_out=1").text


# -- CSRF ---------------------------------------------------------------------------------


def test_form_post_without_csrf_token_is_refused(client: FlaskClient) -> None:
    response = client.post("/login", data={"username": "zzzx", "password": DEMO_PASSWORD})
    assert response.status_code == 400
    assert "表单已过期，请刷新页面后重试" in response.text
    assert signed_in_id(client) is None


def test_form_post_with_wrong_csrf_token_is_refused(
    client: FlaskClient, users: dict[str, User]
) -> None:
    sign_in(client, users["zzzx"])
    response = client.post("/logout", data={"csrf_token": "forged"})
    assert response.status_code == 400
    assert "表单已过期" in response.text
    assert signed_in_id(client) is not None


def test_api_with_cookie_session_needs_the_csrf_header(
    client: FlaskClient, users: dict[str, User]
) -> None:
    sign_in(client, users["wgy"])
    refused = client.post("/api/v1/events", json={})
    assert refused.status_code == 400
    assert refused.get_json()["error"]["code"] == "csrf_failed"
    passed = client.post("/api/v1/events", json={}, headers={"X-CSRF-Token": token(client)})
    assert passed.get_json()["error"]["code"] != "csrf_failed"


def test_api_with_bearer_token_needs_no_csrf(client: FlaskClient) -> None:
    issued = client.post("/api/v1/auth/token", json={"username": "wgy", "password": DEMO_PASSWORD})
    assert issued.status_code == 200
    token = issued.get_json()["token"]
    response = client.post("/api/v1/events", json={}, headers={"Authorization": f"Bearer {token}"})
    assert response.get_json()["error"]["code"] != "csrf_failed"


# -- lockout ------------------------------------------------------------------------------


@pytest.mark.parametrize("max_failures", [3, None], ids=["policy-3", "default-5"])
def test_lockout_after_policy_failures(
    client: FlaskClient, session: Session, users: dict[str, User], max_failures: int | None
) -> None:
    if max_failures is not None:
        security.set_policy(session, max_failures=max_failures, lock_minutes=20)
        session.commit()
    policy = security.get_policy(session)
    for _ in range(policy.max_failures - 1):
        assert "用户名或密码错误" in login(client, "zbz", "nope").text
    assert login(client, "zbz").status_code == 302  # a success resets the count
    post(client, "/logout")
    for _ in range(policy.max_failures):
        assert login(client, "zbz", "nope").status_code == 401
    locked = login(client, "zbz")
    assert locked.status_code == 401
    assert "账号已临时锁定" in locked.text
    assert signed_in_id(client) is None
    user = users["zbz"]
    session.refresh(user)
    assert user.locked_until is not None
    expected = utcnow() + timedelta(minutes=policy.lock_minutes)
    assert abs((user.locked_until - expected).total_seconds()) < 60


def test_lock_ends_after_lock_minutes(
    client: FlaskClient, session: Session, users: dict[str, User]
) -> None:
    user = users["zbz"]
    user.locked_until = utcnow() - timedelta(seconds=1)
    session.commit()
    assert login(client, "zbz").status_code == 302


# -- security policy page -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "status"),
    [(a.username, 200 if a.role == Role.SEC_ADMIN else 403) for a in ACCOUNTS],
)
def test_only_the_security_admin_opens_the_policy_page(
    client: FlaskClient, users: dict[str, User], username: str, status: int
) -> None:
    sign_in(client, users[username])
    response = client.get("/admin/security")
    assert response.status_code == status
    if status == 403:
        assert "仅限安全管理员" in response.text
        assert post(client, "/admin/security", min_length="8").status_code == 403


def test_anonymous_policy_page_goes_to_login(client: FlaskClient) -> None:
    assert client.get("/admin/security").location == "/login?next=/admin/security"


def _policy_form(**changes: str) -> dict[str, str]:
    values = {n: str(getattr(security.DEFAULT_POLICY, n)) for n in security.policy_fields()}
    return {**values, **changes}


def test_security_admin_edits_the_policy(
    client: FlaskClient, users: dict[str, User], session: Session
) -> None:
    sign_in(client, users["aqgly"])
    page = client.get("/admin/security").text
    assert 'name="min_length" value="10"' in page
    response = post(client, "/admin/security", **_policy_form(min_length="12", idle_minutes="10"))
    assert response.status_code == 302
    assert "安全策略已保存" in client.get(response.location).text
    session.expire_all()
    policy = security.get_policy(session)
    assert (policy.min_length, policy.idle_minutes, policy.max_failures) == (12, 10, 5)


def test_invalid_policy_keeps_input_and_shows_field_errors(
    client: FlaskClient, users: dict[str, User], session: Session
) -> None:
    sign_in(client, users["aqgly"])
    form = _policy_form(min_length="3", idle_minutes="半小时", lock_minutes="")
    response = post(client, "/admin/security", **form)
    assert response.status_code == 422
    text = response.text
    assert "密码最短长度应在 8–64 之间" in text
    assert "会话空闲超时（分钟）应为整数" in text
    assert "请填写账号锁定时长（分钟）" in text
    assert 'name="min_length" value="3"' in text
    assert 'name="idle_minutes" value="半小时"' in text
    session.expire_all()
    assert security.get_policy(session) == security.DEFAULT_POLICY


# -- password change and expiry -----------------------------------------------------------


@pytest.mark.parametrize(
    ("new", "confirm", "current", "message"),
    [
        ("Ab#1", "Ab#1", DEMO_PASSWORD, "密码至少需要 10 个字符"),
        ("abcdefghijkl", "abcdefghijkl", DEMO_PASSWORD, "密码须同时包含字母、数字和符号"),
        ("zzzx#2027abc", "zzzx#2027abc", DEMO_PASSWORD, "密码不能包含用户名"),
        (NEW_PASSWORD, NEW_PASSWORD + "x", DEMO_PASSWORD, "两次输入的新密码不一致"),
        (NEW_PASSWORD, NEW_PASSWORD, "wrong", "当前密码不正确"),
        (DEMO_PASSWORD, DEMO_PASSWORD, DEMO_PASSWORD, "新密码不能与当前密码相同"),
    ],
)
def test_password_change_enforces_the_policy(
    client: FlaskClient,
    session: Session,
    users: dict[str, User],
    new: str,
    confirm: str,
    current: str,
    message: str,
) -> None:
    sign_in(client, users["zzzx"])
    response = post(
        client,
        "/account/password",
        current_password=current,
        new_password=new,
        confirm_password=confirm,
    )
    assert response.status_code == 422
    assert message in response.text
    session.refresh(users["zzzx"])
    assert check_password(users["zzzx"], DEMO_PASSWORD)


def test_password_change_follows_an_edited_policy(
    client: FlaskClient, users: dict[str, User], session: Session
) -> None:
    security.set_policy(session, min_length=14)
    session.commit()
    sign_in(client, users["zzzx"])
    response = post(
        client,
        "/account/password",
        current_password=DEMO_PASSWORD,
        new_password=NEW_PASSWORD,  # 12 characters
        confirm_password=NEW_PASSWORD,
    )
    assert "密码至少需要 14 个字符" in response.text
    assert "至少 14 个字符" in response.text  # the rules shown above the form


def test_password_change_succeeds(
    client: FlaskClient, session: Session, users: dict[str, User]
) -> None:
    login(client, "zzzx")
    before = utcnow()
    response = post(
        client,
        "/account/password",
        current_password=DEMO_PASSWORD,
        new_password=NEW_PASSWORD,
        confirm_password=NEW_PASSWORD,
    )
    assert response.location == "/desk/"
    session.refresh(users["zzzx"])
    assert users["zzzx"].password_changed_at >= before - timedelta(seconds=1)
    post(client, "/logout")
    assert login(client, "zzzx").status_code == 401
    assert login(client, "zzzx", NEW_PASSWORD).location == "/desk/"


def _age_password(session: Session, user: User, days: int) -> None:
    user.password_changed_at = utcnow() - timedelta(days=days)
    session.commit()


def test_expired_password_must_be_changed_first(
    client: FlaskClient, session: Session, users: dict[str, User]
) -> None:
    _age_password(session, users["ddy"], 91)
    response = login(client, "ddy")
    assert response.location == "/account/password"
    page = client.get("/account/password").text
    assert "您的密码已过期" in page
    assert client.get("/notices").location == "/account/password"
    assert client.get("/").location == "/account/password"
    api = client.get("/api/v1/events")
    assert api.status_code == 403
    assert api.get_json()["error"]["code"] == "password_expired"
    response = post(
        client,
        "/account/password",
        current_password=DEMO_PASSWORD,
        new_password=NEW_PASSWORD,
        confirm_password=NEW_PASSWORD,
    )
    assert response.location == "/desk/"
    assert client.get("/notices").status_code == 200


@pytest.mark.parametrize(
    ("days", "expiry", "expired"), [(89, 90, False), (30, 30, True), (999, 0, False)]
)
def test_expiry_follows_the_policy(
    client: FlaskClient,
    session: Session,
    users: dict[str, User],
    days: int,
    expiry: int,
    expired: bool,
) -> None:
    security.set_policy(session, expiry_days=expiry)
    _age_password(session, users["ddy"], days)
    expected = "/account/password" if expired else "/desk/"
    assert login(client, "ddy").location == expected


# -- idle timeout -------------------------------------------------------------------------


def _idle(client: FlaskClient, minutes: float) -> None:
    with client.session_transaction() as s:
        s["seen"] = int(time.time() - minutes * 60)


def test_idle_session_times_out(client: FlaskClient, users: dict[str, User]) -> None:
    sign_in(client, users["ld"])
    _idle(client, 29)
    assert client.get("/notices").status_code == 200  # activity refreshes the session
    _idle(client, 31)
    response = client.get("/notices")
    assert response.location == "/login?timeout=1&next=/notices"
    assert signed_in_id(client) is None
    assert "会话已超时" in client.get(response.location).text


def test_idle_timeout_follows_the_policy(
    client: FlaskClient, users: dict[str, User], session: Session
) -> None:
    security.set_policy(session, idle_minutes=5)
    session.commit()
    sign_in(client, users["ld"])
    _idle(client, 6)
    assert client.get("/notices").location.startswith("/login?timeout=1")


def test_timed_out_api_call_gets_json(client: FlaskClient, users: dict[str, User]) -> None:
    sign_in(client, users["ld"])
    _idle(client, 31)
    response = client.get("/api/v1/events")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "session_expired"


def test_background_polling_does_not_keep_the_session_alive(
    client: FlaskClient, users: dict[str, User]
) -> None:
    sign_in(client, users["ld"])
    _idle(client, 20)
    poll = client.get("/notices/unread", headers={"X-GG-Background": "1"})
    assert poll.get_json() == {"unread": 0}
    with client.session_transaction() as s:
        assert time.time() - s["seen"] > 19 * 60


def test_session_cookie_is_permanent(client: FlaskClient) -> None:
    response = login(client, "ld")
    cookie = response.headers["Set-Cookie"]
    assert "Expires=" in cookie and "HttpOnly" in cookie


# -- notices ------------------------------------------------------------------------------


@pytest.fixture
def notices(session: Session, users: dict[str, User]) -> dict[str, list[Notice]]:
    """Three notices for zzzx (one read), one for zzzx2."""
    now = utcnow()
    mine = [
        Notice(
            user_id=users["zzzx"].id,
            kind="new_event",
            text="新事件 A：占道经营",
            created_at=now - timedelta(hours=2),
        ),
        Notice(
            user_id=users["zzzx"].id,
            kind="returned",
            text="事件 B 被退回：不属本部门",
            created_at=now - timedelta(hours=1),
            read_at=now,
        ),
        Notice(user_id=users["zzzx"].id, kind="supervise", text="督办：事件 C", created_at=now),
    ]
    theirs = [
        Notice(user_id=users["zzzx2"].id, kind="new_event", text="河田镇的事件 D", created_at=now)
    ]
    session.add_all([*mine, *theirs])
    session.commit()
    return {"mine": mine, "theirs": theirs}


def test_notices_list_only_own_newest_first(
    client: FlaskClient, users: dict[str, User], notices
) -> None:
    sign_in(client, users["zzzx"])
    page = client.get("/notices").text
    assert "河田镇的事件 D" not in page
    positions = [page.index(t) for t in ("督办：事件 C", "事件 B 被退回", "新事件 A")]
    assert positions == sorted(positions)
    assert page.count('class="notice unread"') == 2
    assert 'class="badge" data-unread>2<' in page
    assert "共 3 条，未读 <strong data-unread-total>2</strong> 条" in page


def test_mark_one_notice_read(
    client: FlaskClient, users: dict[str, User], session: Session, notices
) -> None:
    sign_in(client, users["zzzx"])
    target = notices["mine"][0]
    response = post(client, f"/notices/{target.id}/read")
    assert response.location == "/notices"
    session.refresh(target)
    assert target.read_at is not None
    assert client.get("/notices/unread").get_json() == {"unread": 1}


def test_mark_read_answers_json_for_scripts(
    client: FlaskClient, users: dict[str, User], notices
) -> None:
    sign_in(client, users["zzzx"])
    target = notices["mine"][0]
    response = client.post(
        f"/notices/{target.id}/read",
        headers={"X-CSRF-Token": token(client), "Accept": "application/json"},
    )
    assert response.get_json() == {"unread": 1}


def test_cannot_mark_someone_elses_notice(
    client: FlaskClient, users: dict[str, User], session: Session, notices
) -> None:
    sign_in(client, users["zzzx"])
    theirs = notices["theirs"][0]
    response = post(client, f"/notices/{theirs.id}/read")
    assert response.status_code == 403
    assert "只能查看和处理自己的通知" in response.text
    session.refresh(theirs)
    assert theirs.read_at is None
    assert post(client, "/notices/999999/read").status_code == 404


def test_mark_all_read_touches_only_own(
    client: FlaskClient, users: dict[str, User], session: Session, notices
) -> None:
    sign_in(client, users["zzzx"])
    assert post(client, "/notices/read-all").location == "/notices"
    session.expire_all()
    assert all(n.read_at is not None for n in notices["mine"])
    assert notices["theirs"][0].read_at is None
    assert client.get("/notices/unread").get_json() == {"unread": 0}


def test_notices_need_login(client: FlaskClient, notices) -> None:
    assert client.get("/notices").status_code == 302
    set_csrf(client)
    response = post(client, f"/notices/{notices['mine'][0].id}/read")
    assert response.location.startswith("/login")
    unread = client.get("/notices/unread", headers={"Accept": "application/json"})
    assert unread.status_code == 401
    assert notices["mine"][0].read_at is None


def test_overview_needs_login_and_lists_counties(
    client: FlaskClient, users: dict[str, User]
) -> None:
    assert client.get("/overview").location == "/login?next=/overview"
    sign_in(client, users["ld"])
    page = client.get("/overview").text
    assert "辖区概览" in page and "陆河县" in page
