"""Backups: `gridgov backup` archives database, photos and a manifest; `gridgov restore` puts
them back into an empty database only after every checksum matched, then upgrades and verifies
the audit chain. Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from factories import make_event, report, self_handled
from flask import Flask
from sqlalchemy import URL, create_engine, func, inspect, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from gridgov import create_app, migrate
from gridgov.audit import current_anchor, verify_chain
from gridgov.backup import (
    BackupError,
    _pg_connection,
    audit_key_id,
    create_backup,
    restore_backup,
    verify_archive,
)
from gridgov.bootstrap import init_database
from gridgov.config import Settings
from gridgov.db import Base, Database
from gridgov.demo import create_demo_users
from gridgov.models import Attachment, AuditEntry, Event, EventState, User
from gridgov.pgtemp import TemporaryPostgres
from gridgov.photos import PhotoStore

BACKENDS = ["sqlite", "postgresql"]
AUDIT_KEY = "backup-test-audit-key-0123456789abcdef"
SECRET_KEY = "backup-test-secret-key-fedcba9876543210"
COMPARED = (
    "events",
    "event_actions",
    "event_assignments",
    "attachments",
    "notices",
    "users",
    "user_grids",
    "audit_log",
    "audit_head",
)


@dataclass
class Site:
    """One gridgov installation: its instance folder, settings, database and app."""

    settings: Settings
    db: Database
    app: Flask

    @property
    def uploads(self) -> Path:
        assert self.settings.upload_folder is not None
        return Path(self.settings.upload_folder)

    def cli(self, *args: str) -> Any:
        return self.app.test_cli_runner().invoke(args=list(args))

    def session(self) -> Session:
        return self.db.sessions()


def make_site(folder: Path, url: str, audit_key: str = AUDIT_KEY) -> Site:
    """Set up an installation whose keys live in instance/ files, as in production."""
    instance = folder / "instance"
    instance.mkdir(parents=True)
    (instance / "audit_key").write_text(audit_key)
    (instance / "secret_key").write_text(SECRET_KEY)
    settings = Settings(instance_path=instance, database_url=url)
    db = Database(url, audit_key=settings.ensure_audit_key())
    return Site(settings, db, create_app(settings, database=db))


def table_rows(db: Database, name: str) -> list[tuple[Any, ...]]:
    table = Base.metadata.tables[name]
    with db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(table).order_by(*table.primary_key))]


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def gridgov_tables(db: Database) -> set[str]:
    with db.engine.connect() as conn:
        return set(inspect(conn).get_table_names()) - {"spatial_ref_sys"}


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def repack(archive: Path, out: Path, change: Callable[[str, bytes], bytes]) -> Path:
    """Write a copy of `archive` with each member's bytes passed through `change`."""
    with tarfile.open(archive, "r:gz") as src, tarfile.open(out, "w:gz") as dst:
        for member in src.getmembers():
            data = change(member.name, src.extractfile(member).read())  # type: ignore[union-attr]
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    return out


def flip_byte(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


@pytest.fixture(scope="module", params=BACKENDS)
def source(
    request: pytest.FixtureRequest, fresh_database_url, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """An installation with events (one closed), photos, users and audit entries."""
    site = make_site(tmp_path_factory.mktemp("source"), fresh_database_url(request.param))
    init_database(site.db, ("441523",))
    store = PhotoStore(site.uploads)
    with site.db.session() as session:
        users = create_demo_users(session)
        make_event(session, users, EventState.CLOSED, store=store)
        self_handled(session, users, store)
        report(session, users)
    yield site
    site.db.dispose()


@pytest.fixture(scope="module")
def archive(source: Site, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A backup of `source` made with `gridgov backup --out DIR`."""
    out = tmp_path_factory.mktemp("backups")
    result = source.cli("backup", "--out", str(out))
    assert result.exit_code == 0, result.output
    return Path(json.loads(result.output)["archive"])


@pytest.fixture
def new_site(fresh_database_url, tmp_path: Path) -> Iterator[Callable[..., Site]]:
    """Return a maker of installations on empty databases; their engines are disposed after."""
    made: list[Site] = []

    def make(name: str, backend: str, audit_key: str = AUDIT_KEY) -> Site:
        made.append(make_site(tmp_path / name, fresh_database_url(backend), audit_key))
        return made[-1]

    yield make
    for site in made:
        site.db.dispose()


@pytest.fixture
def target(source: Site, new_site: Callable[..., Site]) -> Site:
    """An empty database of the same kind, with the same audit key in its instance/."""
    return new_site("target", source.db.dialect)


# --- backup -------------------------------------------------------------------------------------


def test_archive_is_one_file_with_a_complete_manifest(source: Site, archive: Path) -> None:
    assert archive.name.startswith("gridgov-backup-") and archive.name.endswith(".tar.gz")
    assert [p.name for p in archive.parent.iterdir()] == [archive.name]  # no partial, no staging
    content = members(archive)
    manifest = json.loads(content.pop("manifest.json"))
    kind = source.db.dialect
    assert manifest["database"] == {
        "kind": kind,
        "file": "database/gridgov.sqlite3" if kind == "sqlite" else "database/gridgov.pgdump",
        "alembic_revision": migrate.head_revision(source.db.engine),
    }
    assert manifest["gridgov_version"] and manifest["created_at"][:2] == "20"
    with source.session() as s:
        anchor = current_anchor(s)
        counts = {
            "events": s.scalar(select(func.count()).select_from(Event)),
            "users": s.scalar(select(func.count()).select_from(User)),
            "audit_entries": s.scalar(select(func.count()).select_from(AuditEntry)),
            "attachments": s.scalar(select(func.count()).select_from(Attachment)),
        }
    assert counts["events"] >= 3 and counts["attachments"] >= 2 and anchor.seq > 0
    assert manifest["counts"] == counts
    assert manifest["audit_head"] == {"seq": anchor.seq, "mac": anchor.mac}
    assert manifest["audit_key_id"] == audit_key_id(AUDIT_KEY.encode())
    photos = files_under(source.uploads)
    assert len(photos) >= 4
    assert {f"uploads/{name}": data for name, data in photos.items()} == {
        name: data for name, data in content.items() if name.startswith("uploads/")
    }
    assert set(manifest["files"]) == set(content)
    for name, data in content.items():
        assert manifest["files"][name] == {
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
        }


def test_archive_holds_no_keys_unless_asked(source: Site, archive: Path, tmp_path: Path) -> None:
    def secrets_in(content: dict[str, bytes]) -> set[str]:
        return {
            name
            for name, data in content.items()
            for secret in (AUDIT_KEY, SECRET_KEY)
            if secret.encode() in data
        }

    plain = members(archive)
    assert not [n for n in plain if n.startswith("keys/")]
    assert secrets_in(plain) == set()

    result = source.cli("backup", "--out", str(tmp_path), "--include-keys")
    assert result.exit_code == 0, result.output
    with_keys = members(Path(json.loads(result.output)["archive"]))
    assert with_keys["keys/audit_key"].decode() == AUDIT_KEY
    assert with_keys["keys/secret_key"].decode() == SECRET_KEY
    assert secrets_in(with_keys) == {"keys/audit_key", "keys/secret_key"}
    assert json.loads(with_keys["manifest.json"])["includes_keys"] is True


def test_verify_checks_an_archive_without_restoring(source: Site, archive: Path) -> None:
    result = source.cli("backup", "--verify", str(archive))
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["ok"] is True
    assert body["files_checked"] == len(verify_archive(archive)["files"])


def test_pg_connection_keeps_the_password_off_the_command_line() -> None:
    url = URL.create(
        "postgresql+psycopg",
        username="gridgov",
        password="s3cr'et pw",
        host="db.example",
        port=5433,
        database="grid'gov",
        query={"sslmode": "require", "options": "-c x=y"},
    )
    env, conninfo = _pg_connection(url)
    assert env["PGPASSWORD"] == "s3cr'et pw"
    assert (env["PGHOST"], env["PGPORT"], env["PGUSER"]) == ("db.example", "5433", "gridgov")
    assert env["PGSSLMODE"] == "require"
    assert conninfo == "dbname='grid\\'gov'"
    assert "s3cr" not in conninfo


# --- restore ------------------------------------------------------------------------------------


def test_restore_into_an_empty_database_gives_the_same_data(
    source: Site, archive: Path, target: Site
) -> None:
    result = target.cli("restore", str(archive))
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["target_was"] == "empty" and body["counts_match"] is True
    assert body["audit"]["ok"] is True and body["audit"]["checked"] is True

    for table in COMPARED:
        rows = table_rows(source.db, table)
        assert table_rows(target.db, table) == rows, table
    assert table_rows(target.db, "events")
    assert files_under(target.uploads) == files_under(source.uploads)
    assert migrate.current_revision(target.db.engine) == migrate.head_revision(target.db.engine)
    with source.session() as s:
        head = current_anchor(s)
    with target.session() as s:
        assert verify_chain(s, AUDIT_KEY.encode(), [head]).ok
        assert current_anchor(s) == head


def test_restored_database_keeps_working(source: Site, archive: Path, target: Site) -> None:
    restore_backup(target.db, target.settings, archive)
    with target.db.session() as s:
        users = {u.username: u for u in s.scalars(select(User))}
        report(s, users)  # sequences and the audit chain carry on after the restored rows
    with target.session() as s:
        assert verify_chain(s, AUDIT_KEY.encode()).ok
        assert (
            current_anchor(s).seq
            > json.loads(members(archive)["manifest.json"])["audit_head"]["seq"]
        )


def test_restore_with_another_audit_key_restores_but_reports_the_chain_unverified(
    source: Site, archive: Path, new_site: Callable[..., Site]
) -> None:
    stranger = new_site("stranger", source.db.dialect, audit_key="other-key")
    result = stranger.cli("restore", str(archive))
    assert result.exit_code == 3, result.output
    assert "not the one this backup was made with" in result.output
    assert table_rows(stranger.db, "events") == table_rows(source.db, "events")


def test_keys_in_the_archive_are_restored_and_the_old_ones_kept(
    source: Site, new_site: Callable[..., Site], tmp_path: Path
) -> None:
    with_keys = create_backup(source.db, source.settings, tmp_path / "out", include_keys=True)
    stranger = new_site("stranger", source.db.dialect, audit_key="other-key")
    report_ = restore_backup(stranger.db, stranger.settings, with_keys.path)
    assert report_.keys_restored == ["audit_key", "secret_key"]
    assert report_.audit_ok, report_.audit
    instance = stranger.settings.instance_path
    assert (instance / "audit_key").read_text() == AUDIT_KEY
    assert oct((instance / "audit_key").stat().st_mode & 0o777) == "0o600"
    assert [p.read_text() for p in instance.glob("audit_key.replaced-*")] == ["other-key"]


def test_restore_refuses_a_database_that_holds_data(source: Site, archive: Path) -> None:
    before = table_rows(source.db, "events"), files_under(source.uploads)
    for args in (["restore", str(archive)], ["restore", "--yes", str(archive)]):
        result = source.cli(*args)
        assert result.exit_code == 1, result.output
        assert "holds data" in result.output and "events: " in result.output
    assert (table_rows(source.db, "events"), files_under(source.uploads)) == before


def test_restore_into_an_initialized_empty_database_needs_yes(
    source: Site, archive: Path, target: Site
) -> None:
    init_database(target.db)  # what `gridgov init --no-sample` leaves: schema, calendar, matters
    refused = target.cli("restore", str(archive))
    assert refused.exit_code == 1, refused.output
    assert "--yes" in refused.output
    assert not target.uploads.exists()

    result = target.cli("restore", "--yes", str(archive))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["target_was"] == "initialized"
    assert table_rows(target.db, "events") == table_rows(source.db, "events")
    assert table_rows(target.db, "audit_log") == table_rows(source.db, "audit_log")


def test_restore_refuses_upload_files_that_differ(
    source: Site, archive: Path, target: Site
) -> None:
    name = next(n for n in files_under(source.uploads) if n.endswith(".jpg"))
    (target.uploads / name).parent.mkdir(parents=True)
    (target.uploads / name).write_bytes(b"another photo")
    result = target.cli("restore", str(archive))
    assert result.exit_code == 1, result.output
    assert "differ from the archive" in result.output
    assert gridgov_tables(target.db) == set()
    assert files_under(target.uploads) == {name: b"another photo"}


@pytest.mark.parametrize("victim", ["uploads/", "database/"])
def test_a_changed_byte_in_a_file_is_refused_before_anything_is_written(
    source: Site, archive: Path, target: Site, tmp_path: Path, victim: str
) -> None:
    changed: list[str] = []

    def change(name: str, data: bytes) -> bytes:
        if name.startswith(victim) and not changed:
            changed.append(name)
            return flip_byte(data, len(data) // 2)
        return data

    bad = repack(archive, tmp_path / "bad.tar.gz", change)
    with pytest.raises(BackupError, match="sha256 does not match") as caught:
        verify_archive(bad)
    assert changed[0] in str(caught.value)

    result = target.cli("restore", str(bad))
    assert result.exit_code == 1, result.output
    assert changed[0] in result.output
    assert gridgov_tables(target.db) == set()
    assert not target.uploads.exists()
    assert {p.name for p in target.settings.instance_path.iterdir()} == {"audit_key", "secret_key"}


def test_a_damaged_archive_is_refused(
    source: Site, archive: Path, target: Site, tmp_path: Path
) -> None:
    data = archive.read_bytes()
    bad = tmp_path / "damaged.tar.gz"
    bad.write_bytes(flip_byte(data, len(data) // 2))
    checked = source.cli("backup", "--verify", str(bad))
    assert checked.exit_code == 1, checked.output
    assert "damaged.tar.gz" in checked.output

    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(data[: len(data) - 40])
    with pytest.raises(BackupError):
        verify_archive(truncated)

    without_photos = tmp_path / "without-photos.tar.gz"
    with tarfile.open(archive, "r:gz") as src, tarfile.open(without_photos, "w:gz") as dst:
        for member in src.getmembers():
            if not member.name.startswith("uploads/"):
                dst.addfile(member, src.extractfile(member))
    with pytest.raises(BackupError, match="missing from the archive"):
        verify_archive(without_photos)

    result = target.cli("restore", str(bad))
    assert result.exit_code == 1, result.output
    assert gridgov_tables(target.db) == set()
    assert not target.uploads.exists()


def test_an_older_schema_is_upgraded_after_restore(
    source: Site, new_site: Callable[..., Site], tmp_path: Path
) -> None:
    kind = source.db.dialect
    old = new_site("old", kind)
    script = ScriptDirectory.from_config(migrate.alembic_config(old.db.engine))
    previous = script.get_revision(migrate.head_revision(old.db.engine)).down_revision
    assert isinstance(previous, str)
    migrate.upgrade(old.db.engine, previous)
    made = create_backup(old.db, old.settings, tmp_path / "out")
    assert made.manifest["database"]["alembic_revision"] == previous

    new = new_site("new", kind)
    restored = restore_backup(new.db, new.settings, made.path)
    assert restored.revision_in_archive == previous
    assert restored.revision_now == migrate.head_revision(new.db.engine)
    assert restored.audit_ok, restored.audit


# --- PostgreSQL client tools (PostgreSQL only) -----------------------------------------------


@pytest.fixture(scope="module")
def pg_site(fresh_database_url, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A PostgreSQL installation with the schema and nothing else."""
    site = make_site(tmp_path_factory.mktemp("pg"), fresh_database_url("postgresql"))
    migrate.upgrade(site.db.engine)
    yield site
    site.db.dispose()


def test_missing_pg_dump_is_a_clear_error_and_leaves_no_archive(
    pg_site: Site, tmp_path: Path
) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    out = tmp_path / "out"
    result = pg_site.cli("backup", "--out", str(out), "--pg-bin", str(empty_bin))
    assert result.exit_code == 1, result.output
    assert f"pg_dump not found in {empty_bin}" in result.output
    assert list(out.iterdir()) == []


def test_pg_bin_comes_from_the_environment(
    pg_site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRIDGOV_PG_BIN", str(tmp_path))
    result = pg_site.cli("backup", "--out", str(tmp_path / "out"))
    assert result.exit_code == 1, result.output
    assert f"pg_dump not found in {tmp_path}" in result.output


def test_a_failing_pg_dump_leaves_no_archive(pg_site: Site, tmp_path: Path) -> None:
    bad_bin = tmp_path / "bin"
    bad_bin.mkdir()
    fake = bad_bin / "pg_dump"
    fake.write_text(
        '#!/bin/sh\nfor a; do case "$a" in --file=*) echo half > "${a#--file=}";; esac; done\n'
        'echo "pg_dump: error: connection to server failed" >&2\nexit 1\n'
    )
    fake.chmod(0o755)
    out = tmp_path / "out"
    result = pg_site.cli("backup", "--out", str(out), "--pg-bin", str(bad_bin))
    assert result.exit_code == 1, result.output
    assert "pg_dump failed (exit 1)" in result.output
    assert "connection to server failed" in result.output
    assert list(out.iterdir()) == []


def test_missing_pg_restore_is_refused_before_the_target_changes(
    pg_site: Site, new_site: Callable[..., Site], tmp_path: Path
) -> None:
    made = create_backup(pg_site.db, pg_site.settings, tmp_path / "out")
    target = new_site("target", "postgresql")
    result = target.cli("restore", str(made.path), "--pg-bin", str(tmp_path))
    assert result.exit_code == 1, result.output
    assert f"pg_restore not found in {tmp_path}" in result.output
    assert gridgov_tables(target.db) == set()
    assert not target.uploads.exists()


@pytest.mark.parametrize("source", ["postgresql"], indirect=True)
def test_a_database_owner_who_is_not_superuser_can_restore(
    source: Site, archive: Path, pg_server: TemporaryPostgres, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    role, name = f"owner_{suffix}", f"owned_{suffix}"
    admin = create_engine(pg_server.url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD 'pw' NOSUPERUSER")
        conn.exec_driver_sql(f"CREATE DATABASE {name} OWNER {role}")
    admin.dispose()
    on_new = create_engine(
        pg_server.url.rsplit("/", 1)[0] + f"/{name}", isolation_level="AUTOCOMMIT"
    )
    with on_new.connect() as conn:
        conn.exec_driver_sql("CREATE EXTENSION postgis")  # a superuser's step, as in the README
    on_new.dispose()

    owner = make_site(tmp_path, f"postgresql+psycopg://{role}:pw@127.0.0.1:{pg_server.port}/{name}")
    try:
        result = owner.cli("restore", str(archive))
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["audit"]["ok"] is True
        assert table_rows(owner.db, "events") == table_rows(source.db, "events")
        with owner.db.engine.connect() as conn:
            owners = conn.exec_driver_sql(
                "SELECT DISTINCT tableowner FROM pg_tables WHERE tablename = ANY(%(t)s)",
                {"t": list(COMPARED)},
            ).scalars()
            assert list(owners) == [role]
    finally:
        owner.db.dispose()
