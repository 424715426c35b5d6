"""Browser-test fixtures: a live gridgov server per test module, Debian Chromium, phone contexts.

Browser tests run on SQLite only: the server thread needs a committed database (the
per-test rolled-back transaction of tests/conftest.py cannot be shared with another
thread), and the domain rules are already tested on SQLite and PostgreSQL.

How the pieces fit (pytest-playwright 0.10):
- `browser` (one Chromium for the whole run) is session-scoped; `context` and `page` are
  function-scoped, so every test starts with no cookies and signs in again (`login`).
- `live_server` is module-scoped: one fresh database (陆河县 441523 + demo accounts) and
  one server thread per test module. Tests in a module share its data; a test that changes
  shared state (a password, the policy, a lockout) should use an account nobody else in
  the module needs, or restore it.
- `browser_context_args` is overridden at module scope to point `base_url` at the live
  server, so `page.goto("/login")` works, and to set zh-CN / Asia/Shanghai.
- Without pytest-xdist everything runs in one process: one browser, servers one after
  another. (Under xdist each worker would get its own browser and servers; nothing here
  depends on a fixed port.)

Usage::

    def test_notices(page, live_server, login, shot):
        login(page, "zzzx")
        with live_server.session() as s:      # committed at the end of the block
            ...                               # create data the page should show
        page.goto("/notices")
        expect(page.locator(".notice")).to_have_count(1)
        shot(page, "notices-desktop")

    def test_report_on_phone(phone_page, login):   # Pixel 7, zh-CN, GPS at 陆河县城
        login(phone_page, "wgy")

`login` and `shot` are fixtures returning the functions `sign_in` and `screenshot` below
(test modules cannot import from a conftest).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import BrowserContext, Page, Playwright
from sqlalchemy.orm import Session
from werkzeug.serving import BaseWSGIServer, make_server

from gridgov import create_app
from gridgov.config import ROOT, Settings
from gridgov.db import Database
from gridgov.demo import DEMO_PASSWORD

AUDIT_KEY = b"browser-test-audit-key"
COUNTY = "441523"
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

PHONE_DEVICE = "Pixel 7"
LUHE_CENTRE = {"latitude": 23.3016, "longitude": 115.6563}
"""陆河县城 (河田镇), WGS84: where the phone's GPS says it is unless a test moves it."""


@dataclass
class LiveServer:
    """A gridgov server on 127.0.0.1 and the committed database behind it."""

    url: str
    app: Flask
    db: Database

    @contextmanager
    def session(self) -> Iterator[Session]:
        """Yield a database session that commits on exit (the server sees the data)."""
        with self.db.session() as s:
            yield s


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Launch Debian's Chromium (Playwright's own download does not work here)."""
    args = {k: v for k, v in browser_type_launch_args.items() if k != "channel"}
    return {**args, "executable_path": CHROMIUM, "args": CHROMIUM_FLAGS}


@pytest.fixture(scope="session")
def base_url() -> str | None:
    """Shadow pytest-playwright's fallback `base_url` (see below): None, as without --base-url.

    Without pytest-base-url installed, pytest-playwright 0.10 registers a plugin-class
    instance-method fixture, which pytest 9 deprecates (PytestRemovedIn10Warning, an error
    under filterwarnings=error). The live server's URL goes in `browser_context_args`.
    """
    return None


@pytest.fixture(scope="module")
def live_server(
    fresh_database_url: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """Serve gridgov from a thread, on a fresh SQLite database with the demo accounts."""
    from gridgov.bootstrap import init_database
    from gridgov.demo import create_demo_users

    db = Database(fresh_database_url("sqlite"), audit_key=AUDIT_KEY)
    init_database(db, (COUNTY,))
    with db.session() as s:
        create_demo_users(s, COUNTY)
    instance = tmp_path_factory.mktemp("live-instance")
    settings = Settings(
        instance_path=instance,
        database_url=db.url,
        secret_key="browser-test-secret",
        audit_key=AUDIT_KEY.decode(),
        default_county=COUNTY,
    )
    app = create_app(settings, database=db)
    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(f"http://127.0.0.1:{server.server_port}", app, db)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        db.dispose()


@pytest.fixture(scope="module")
def browser_context_args(
    browser_context_args: dict[str, Any], live_server: LiveServer
) -> dict[str, Any]:
    """Every context (desktop `page` and phones) talks to the live server, in Chinese."""
    return {
        **browser_context_args,
        "base_url": live_server.url,
        "locale": "zh-CN",
        "timezone_id": "Asia/Shanghai",
    }


@pytest.fixture
def phone_context(
    playwright: Playwright, new_context: Callable[..., BrowserContext], browser_context_args: dict
) -> Callable[..., BrowserContext]:
    """Return a factory of phone contexts: Pixel 7 with GPS permission at 陆河县城.

    Keyword arguments override the device (`viewport={"width": 360, "height": 640}`,
    `geolocation=...`, `offline=True`); contexts close when the test ends.
    """

    def make(**overrides: Any) -> BrowserContext:
        args = {
            **playwright.devices[PHONE_DEVICE],
            "geolocation": LUHE_CENTRE,
            "permissions": ["geolocation"],
            **overrides,
        }
        clash = sorted(set(args) & set(browser_context_args))
        if clash:  # new_context() passes browser_context_args itself
            raise pytest.UsageError(f"phone_context: {clash} come from browser_context_args")
        return new_context(**args)

    return make


@pytest.fixture
def phone_page(phone_context: Callable[..., BrowserContext]) -> Page:
    """A page on a Pixel 7 (412×839, touch, zh-CN, GPS allowed)."""
    return phone_context().new_page()


def sign_in(page: Page, username: str, password: str = DEMO_PASSWORD) -> Page:
    """Sign in through the form and wait until the browser has left the sign-in page."""
    page.goto("/login")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(lambda url: "/login" not in url)
    return page


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot to test-artifacts/screenshots/<name>.png (gitignored)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def login() -> Callable[..., Page]:
    """`login(page, username, password=DEMO_PASSWORD)`: sign in via the form, wait to land."""
    return sign_in


@pytest.fixture
def shot() -> Callable[[Page, str], Path]:
    """`shot(page, name)`: full-page screenshot to test-artifacts/screenshots/<name>.png."""
    return screenshot
