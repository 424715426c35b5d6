"""The `gridgov` command."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext

from gridgov.db import Database

SUBSYSTEM_COMMANDS = (
    "gridgov.backup_cli",
    "gridgov.geo.geocode_cli",
    "gridgov.geo.import_cli",
    "gridgov.seed_cli",
    "gridgov.workflow_cli",
)
"""Modules that each export `commands`, a list of click commands."""


def app_db() -> Database:
    """Return the Database of the current app (inside a command's app context)."""
    return current_app.extensions["gridgov.db"]


def echo_json(data: Any) -> None:
    """Print `data` as indented JSON, Chinese left readable (what every command prints)."""
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


@click.command("init")
@click.option(
    "--county",
    "counties",
    multiple=True,
    default=("441523", "441427"),
    show_default=True,
    help="Sample county to load (repeatable).",
)
@click.option("--no-sample", is_flag=True, help="Only create/upgrade the schema and seed tables.")
@with_appcontext
def init_command(counties: tuple[str, ...], no_sample: bool) -> None:
    """Create or upgrade the database and load the sample counties."""
    from gridgov.bootstrap import init_database

    report = init_database(app_db(), () if no_sample else counties)
    echo_json(report)


@click.command("serve")
@click.option("--bind", default="127.0.0.1:5000", show_default=True)
@click.option("--workers", default=2, show_default=True, type=int)
@click.option("--certfile", default=None, help="TLS certificate (browsers give GPS only to HTTPS).")
@click.option("--keyfile", default=None)
@with_appcontext
def serve_command(bind: str, workers: int, certfile: str | None, keyfile: str | None) -> None:
    """Serve the app with gunicorn (schema upgraded once, before workers fork)."""
    from gridgov import migrate
    from gridgov.server import run_gunicorn

    db = app_db()
    migrate.upgrade(db.engine)
    db.dispose()
    run_gunicorn(bind=bind, workers=workers, certfile=certfile, keyfile=keyfile)


def init_app(app: Flask) -> None:
    """Register gridgov's commands on the app's CLI group."""
    import importlib

    for command in (init_command, serve_command):
        app.cli.add_command(command)
    for module in SUBSYSTEM_COMMANDS:
        for command in importlib.import_module(module).commands:
            app.cli.add_command(command)


def main() -> None:
    """Entry point of the `gridgov` console script."""
    import getpass

    from gridgov import create_app
    from gridgov.audit import Actor, set_process_actor

    set_process_actor(Actor(None, f"cli:{getpass.getuser()}"))
    cli = FlaskGroup(
        name="gridgov",
        create_app=lambda: create_app(),
        add_default_commands=False,
        add_version_option=False,
        load_dotenv=False,
        set_debug_flag=False,
    )
    cli.main(args=sys.argv[1:], prog_name="gridgov")
