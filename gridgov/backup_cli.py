"""Backup commands: `gridgov backup` (and `backup --verify ARCHIVE`) and `gridgov restore`."""

from __future__ import annotations

from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from gridgov import settings_of
from gridgov.backup import BackupError, create_backup, restore_backup, verify_archive
from gridgov.cli import app_db, echo_json

RESTORED_UNVERIFIED = 3
"""Exit status of a restore that wrote everything but whose audit chain did not verify."""

_pg_bin_option = click.option(
    "--pg-bin",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="GRIDGOV_PG_BIN",
    default=None,
    help="Folder of pg_dump/pg_restore (default: newest /usr/lib/postgresql/*/bin, else PATH).",
)


@click.command("backup")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the archive (default: instance/backups). Copy archives off the server.",
)
@click.option(
    "--include-keys",
    is_flag=True,
    help="Also archive instance/audit_key and secret_key: keep such an archive like a key.",
)
@click.option(
    "--verify",
    "verify_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    metavar="ARCHIVE",
    help="Only check ARCHIVE's manifest and every checksum; back nothing up.",
)
@_pg_bin_option
@with_appcontext
def backup_command(
    out: Path | None, include_keys: bool, verify_path: Path | None, pg_bin: Path | None
) -> None:
    """Write gridgov-backup-YYYYMMDD-HHMMSS.tar.gz: database, photos, manifest (JSON printed).

    Safe while the server runs. Exit 1 with the reason if anything fails; no partial archive
    is left under the final name.
    """
    try:
        if verify_path is not None:
            if out is not None or include_keys:
                raise click.UsageError("--verify takes no --out or --include-keys")
            manifest = verify_archive(verify_path)
            echo_json(
                {
                    "ok": True,
                    "archive": str(verify_path),
                    "files_checked": len(manifest["files"]),
                    **{k: manifest.get(k) for k in ("created_at", "gridgov_version")},
                    **{k: manifest.get(k) for k in ("database", "counts", "audit_head")},
                    "includes_keys": manifest.get("includes_keys"),
                }
            )
            return
        settings = settings_of(current_app)
        folder = out if out is not None else Path(settings.instance_path) / "backups"
        result = create_backup(app_db(), settings, folder, include_keys=include_keys, pg_bin=pg_bin)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    echo_json(result.to_dict())


@click.command("restore")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--yes",
    is_flag=True,
    help="Also restore into a database with a gridgov schema but no data (replaced).",
)
@_pg_bin_option
@with_appcontext
def restore_command(archive: Path, yes: bool, pg_bin: Path | None) -> None:
    """Restore ARCHIVE into the configured (empty) database and upload folder.

    \b
    Every checksum is verified before anything is written. The target must be empty; with
    --yes it may hold what `gridgov init --no-sample` leaves (schema, holidays, matter list),
    which is replaced. A database with any event, user, region, department or audit entry
    beyond init's is always refused. SQLite: stop the server first (the file is replaced).
    PostgreSQL: the database must have PostGIS. Then the schema is upgraded and the audit
    chain verified against the archive's head.
    Exit 0: restored and verified; 1: refused or failed; 3: restored, audit chain NOT verified.
    """
    try:
        report = restore_backup(app_db(), settings_of(current_app), archive, yes=yes, pg_bin=pg_bin)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    echo_json(report.to_dict())
    if not report.audit_ok:
        click.echo(
            "Data restored, but the audit chain did not verify: "
            + report.audit.get("message", "see `audit` above"),
            err=True,
        )
        raise SystemExit(RESTORED_UNVERIFIED)


commands = [backup_command, restore_command]
