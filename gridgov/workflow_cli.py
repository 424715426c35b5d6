"""Workflow commands: `gridgov sla-sweep`, `gridgov audit verify` and `gridgov audit anchor`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import click
from flask.cli import AppGroup, with_appcontext

from gridgov.cli import app_db, echo_json
from gridgov.workflow.worktime import SHANGHAI


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

    echo_json(run_sweep(app_db(), _instant(now_text)))


class _NoAuditKey(click.ClickException):
    exit_code = 2  # 1 means "the chain is broken"; this is "could not check at all"


audit_group = AppGroup(
    "audit",
    help="""The tamper-evident audit record.

\b
Tail truncation: whoever controls the database can delete the newest entries and rewrite
the stored head, and `verify` alone still finds a whole chain. Keep anchors off the server:
  gridgov audit anchor --out /mnt/usb/audit-anchors.txt   (e.g. daily from cron; or copy
                                                           the printed line into a log book)
  gridgov audit verify --anchor /mnt/usb/audit-anchors.txt
  gridgov audit verify --expect 1234:<mac>
verify then also fails (exit 1) when an anchored entry is gone or changed, naming it.""",
)


def _audit_key() -> bytes:
    key = app_db().audit_key
    if not key:
        raise _NoAuditKey(
            "no audit key configured (GRIDGOV_AUDIT_KEY or instance/audit_key): cannot verify"
        )
    return key


def _read_anchors(files: tuple[Path, ...], expected: tuple[str, ...]) -> list[Any]:
    from gridgov.audit import parse_anchors

    anchors = []
    for path in files:
        try:
            anchors.extend(parse_anchors(path.read_text(encoding="utf-8")))
        except ValueError as exc:
            raise click.BadParameter(f"{path}: {exc}", param_hint="--anchor") from exc
    for text in expected:
        try:
            found = parse_anchors(text)
        except ValueError:
            found = []
        if len(found) != 1:
            raise click.BadParameter(f"{text!r} is not SEQ:MAC", param_hint="--expect")
        anchors.extend(found)
    if files and not anchors:
        raise click.BadParameter("the anchor files hold no anchor", param_hint="--anchor")
    return anchors


@audit_group.command("verify")
@click.option(
    "--anchor",
    "anchor_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File of anchors written by `gridgov audit anchor` (repeatable).",
)
@click.option(
    "--expect",
    "expected",
    multiple=True,
    metavar="SEQ:MAC",
    help="An anchor given by hand, e.g. from a log book (repeatable).",
)
def audit_verify_command(anchor_files: tuple[Path, ...], expected: tuple[str, ...]) -> None:
    """Verify the audit chain; exit 0 if intact, 1 if broken (the first bad entry is named).

    With anchors, also check that every anchored entry is still in the chain unchanged and
    that the chain reaches the highest anchored sequence number; each one that is not is named.
    """
    from gridgov.audit import verify_chain

    anchors = _read_anchors(anchor_files, expected)
    key = _audit_key()
    with app_db().session() as session:
        report = verify_chain(session, key, anchors)
    echo_json(report.to_dict())
    if not report.ok:
        raise SystemExit(1)


@audit_group.command("anchor")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Also append the line to this file (keep it off the server).",
)
def audit_anchor_command(out: Path | None) -> None:
    """Print the chain's head (sequence number, MAC, time) as one line to keep off the server.

    The chain is verified first: a broken chain is reported (exit 1) and not anchored.
    """
    from gridgov.audit import current_anchor, verify_chain

    key = _audit_key()
    with app_db().session() as session:
        report = verify_chain(session, key)
        if not report.ok:
            echo_json(report.to_dict())
            raise SystemExit(1)
        line = current_anchor(session).line()
    click.echo(line)
    if out is not None:
        with out.open("a", encoding="utf-8") as file:
            file.write(line + "\n")


commands = [sla_sweep_command, audit_group]
