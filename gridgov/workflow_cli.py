"""Workflow commands: `gridgov sla-sweep` and `gridgov audit verify`."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from gridgov.db import Database
from gridgov.workflow.worktime import SHANGHAI


def _db() -> Database:
    return current_app.extensions["gridgov.db"]


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


def _instant(text: str | None) -> datetime | None:
    """Parse --now: ISO 8601; without an offset it is Asia/Shanghai local time."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise click.BadParameter(
            f"{text!r} is not an ISO 8601 time (e.g. 2026-03-09T10:00+08:00)", param_hint="--now"
        ) from exc
    return moment.replace(tzinfo=SHANGHAI) if moment.tzinfo is None else moment


@click.command("sla-sweep")
@click.option("--now", "now_text", default=None, help="Sweep as of this ISO time (default: now).")
@with_appcontext
def sla_sweep_command(now_text: str | None) -> None:
    """Mark overdue events, send 督办 and deadline warnings; print the counts as JSON."""
    from gridgov.sla import run_sweep

    _echo_json(run_sweep(_db(), _instant(now_text)))


class _NoAuditKey(click.ClickException):
    exit_code = 2  # 1 means "the chain is broken"; this is "could not check at all"


audit_group = AppGroup("audit", help="The tamper-evident audit record.")


@audit_group.command("verify")
def audit_verify_command() -> None:
    """Verify the audit chain; exit 0 if intact, 1 if broken (the first bad entry is named)."""
    from gridgov.audit import verify_chain

    db = _db()
    if not db.audit_key:
        raise _NoAuditKey(
            "no audit key configured (GRIDGOV_AUDIT_KEY or instance/audit_key): cannot verify"
        )
    with db.session() as session:
        report = verify_chain(session, db.audit_key)
    _echo_json(report.to_dict())
    if not report.ok:
        raise SystemExit(1)


commands = [sla_sweep_command, audit_group]
