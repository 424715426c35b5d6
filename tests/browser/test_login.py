"""Signing in with a real Chromium: every role lands on its page, errors, header, sign-out."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from gridgov.demo import ACCOUNTS
from gridgov.web.auth_pages import HOME_PATHS

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("account", ACCOUNTS, ids=lambda a: a.username)
def test_each_role_lands_on_its_page(page: Page, login, live_server, account) -> None:
    login(page, account.username)
    assert page.url == live_server.url + HOME_PATHS[account.role]


def test_wrong_password_shows_chinese_error_and_keeps_username(page: Page, shot) -> None:
    page.goto("/login")
    page.get_by_label("用户名").fill("zzzx")
    page.get_by_label("密码").fill("not-the-password")
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_role("alert")).to_have_text("用户名或密码错误")
    expect(page.get_by_label("用户名")).to_have_value("zzzx")
    expect(page.get_by_label("密码")).to_have_value("")
    expect(page.get_by_label("密码")).to_be_focused()
    shot(page, "login-error-desktop")


def test_header_shows_name_role_unit_and_logout(page: Page, login, shot) -> None:
    login(page, "zzzx")
    page.goto("/notices")
    header = page.locator("header.topbar")
    expect(header.locator(".who-name")).to_have_text("王芳（螺溪镇综治中心）")
    expect(header.locator(".who-role")).to_have_text("镇综治中心操作员")
    expect(header.locator(".who-unit")).to_have_text("螺溪镇")
    expect(header.locator(".who-jurisdiction")).to_have_text("辖区：陆河县 / 螺溪镇")
    expect(header.get_by_role("link", name=re.compile("通知"))).to_have_attribute(
        "href", "/notices"
    )
    shot(page, "notices-desktop")
    header.get_by_role("button", name="退出").click()
    expect(page).to_have_url(re.compile(r"/login\?logged_out=1$"))
    expect(page.get_by_role("status")).to_have_text("您已安全退出")
    page.goto("/notices")
    expect(page).to_have_url(re.compile(r"/login\?next=/notices$"))


def test_phone_login_screen(phone_context, login, shot) -> None:
    context: BrowserContext = phone_context(viewport={"width": 360, "height": 640})
    page = context.new_page()
    page.goto("/login")
    expect(page.get_by_role("heading", name="用户登录")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360  # no sideways scroll
    shot(page, "login-phone-360")
    login(page, "wgy")
    page.goto("/notices")
    expect(page.locator(".who-name")).to_have_text("张伟（网格员）")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    shot(page, "notices-phone-360")


def test_desktop_login_screen(page: Page, shot) -> None:
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto("/login")
    expect(page.get_by_role("heading", name="用户登录")).to_be_visible()
    shot(page, "login-desktop")


def test_security_admin_policy_form_keeps_input_on_error(page: Page, login, shot) -> None:
    login(page, "aqgly")
    expect(page).to_have_url(re.compile(r"/admin/security$"))
    field = page.get_by_label("密码最短长度")
    expect(field).to_have_value("10")
    field.fill("6")
    page.get_by_label("会话空闲超时（分钟）").fill("20")
    page.get_by_role("button", name="保存策略").click()
    expect(page.locator(".field-error")).to_have_text(["密码最短长度应在 8–64 之间"])
    expect(field).to_have_value("6")
    expect(page.get_by_label("会话空闲超时（分钟）")).to_have_value("20")
    shot(page, "security-policy-error-desktop")
    field.fill("12")
    page.get_by_role("button", name="保存策略").click()
    expect(page.get_by_role("status")).to_have_text("安全策略已保存")
    expect(page.get_by_label("密码最短长度")).to_have_value("12")
    field = page.get_by_label("密码最短长度")
    field.fill("10")  # the module's database is shared: put the defaults back
    page.get_by_label("会话空闲超时（分钟）").fill("30")
    page.get_by_role("button", name="保存策略").click()
    expect(page.get_by_label("密码最短长度")).to_have_value("10")
    expect(page.get_by_label("会话空闲超时（分钟）")).to_have_value("30")
