"""gridgov: a grid-based social governance event system (网格化社会治理事件系统)."""

from __future__ import annotations

from typing import Any

from flask import Flask

from gridgov.config import ROOT, Settings
from gridgov.db import Database

__version__ = "0.1.0"


def create_app(settings: Settings | None = None, database: Database | None = None) -> Flask:
    """Build the Flask application: settings → database → blueprints → CLI."""
    settings = settings or Settings.from_env()
    app = Flask(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
        instance_path=str(settings.instance_path),
        instance_relative_config=False,
    )
    app.config.update(
        SECRET_KEY=settings.ensure_secret_key(),
        MAX_CONTENT_LENGTH=settings.max_upload_mb * 1024 * 1024,
        JSON_AS_ASCII=False,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.extensions["gridgov.settings"] = settings
    app.extensions["gridgov.db"] = database or Database(
        settings.database_url, audit_key=settings.ensure_audit_key()
    )

    from gridgov.web import init_app as init_web

    init_web(app)

    from gridgov.cli import init_app as init_cli

    init_cli(app)
    return app


def settings_of(app: Any) -> Settings:
    """Return the Settings an app was built with."""
    return app.extensions["gridgov.settings"]
