"""Backups (等保 备份与恢复): one archive with a consistent database copy, photos and a manifest.

An archive is a single `gridgov-backup-YYYYMMDD-HHMMSS.tar.gz`: one file is what an operator
copies to a USB disk or another machine, and it appears under its final name only once it is
complete (written to a hidden `.partial` name first, then renamed). It holds

    database/gridgov.sqlite3   (SQLite: the online backup API, safe while the app runs)
    database/gridgov.pgdump    (PostgreSQL: `pg_dump -Fc`, same snapshot as the manifest)
    uploads/…                  the photo/upload folder
    keys/audit_key, keys/secret_key   only when asked: such an archive must be kept like a key
    manifest.json              written last: versions, counts, audit head, sha256 of every file

The database is copied before the photos: a photo file is written before the row that names
it commits, so every photo the copy refers to is in the archive.

Restoring reads the whole archive into a staging folder and checks every checksum before it
changes anything, and never overwrites data: see `restore_backup` for the rule.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import URL, Connection, create_engine, func, inspect, select
from sqlalchemy.pool import NullPool

from gridgov import __version__, migrate
from gridgov.audit import GENESIS_MAC, HEAD_ID, LOCAL_TZ, Anchor, verify_chain
from gridgov.config import Settings
from gridgov.db import Base, Database
from gridgov.models import Attachment, AuditEntry, AuditHead, Event, User
from gridgov.pgtemp import find_bin_dir

__all__ = [
    "BackupError",
    "BackupResult",
    "RestoreReport",
    "audit_key_id",
    "create_backup",
    "pg_bin_dir",
    "restore_backup",
    "verify_archive",
]

FORMAT = "gridgov-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DB_MEMBERS = {"sqlite": "database/gridgov.sqlite3", "postgresql": "database/gridgov.pgdump"}
UPLOADS = "uploads"
KEYS = "keys"
KEY_FILES = ("audit_key", "secret_key")
"""Secrets under instance/: archived only with include_keys."""

COUNTED = {"events": Event, "users": User, "audit_entries": AuditEntry, "attachments": Attachment}
"""What the manifest counts (and a restore compares)."""

DATA_TABLES = (
    "events",
    "event_actions",
    "attachments",
    "notices",
    "users",
    "api_tokens",
    "regions",
    "departments",
)
"""A target with a row in any of these holds data a restore must never overwrite."""

SEEDED_TYPES = (
    "calendar_day",
    "calendar_year",
    "matter_category",
    "matter",
    "matter_assist",
    "matter_time_limit",
    "setting",
)
"""Audit object types `gridgov init` writes while seeding reference data from the package.

Audit entries of any other type (sign-ins, users, events, regions…) count as data.
"""

FOREIGN_OK = {"spatial_ref_sys"}
"""PostGIS's own table, present in every PostGIS database."""

PACKAGES_HINT = "apt-get install postgresql-client-15 (or postgresql)"
_CHUNK = 1024 * 1024
_MAX_MANIFEST = 256 * 1024 * 1024
_KEY_ID_LABEL = b"gridgov-backup-audit-key-id"

_LIBPQ_ENV = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "passfile": "PGPASSFILE",
    "service": "PGSERVICE",
    "sslmode": "PGSSLMODE",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
}
"""libpq connection parameters an URL's query may carry, and their environment variables."""

# pg_restore -l lines of PostGIS itself: the target must already have it, and a database
# owner who is not a superuser may neither create nor comment on it, nor write its table of
# spatial reference systems (gridgov stores EPSG:4326 only, which PostGIS ships).
_EXTENSION_TOC = re.compile(
    r"^\s*\d+;\s+\d+\s+\d+\s+"
    r"(?:EXTENSION\s|COMMENT\s+-\s+EXTENSION\s|TABLE\s+DATA\s+\S+\s+spatial_ref_sys\s)"
)


class BackupError(Exception):
    """A backup, check or restore cannot go on; the message says why and what to do."""


# --- PostgreSQL client tools ------------------------------------------------------------------


def pg_bin_dir(explicit: Path | None = None) -> Path:
    """Return the folder of pg_dump/pg_restore: `explicit`, else the newest Debian one, else PATH.

    gridgov.pgtemp's search (newest /usr/lib/postgresql/<major>/bin, then PATH), for the
    client tools, so that a client-only install is found too.
    """
    if explicit is not None:
        return Path(explicit)
    found = find_bin_dir("pg_dump")
    if found is None:
        raise BackupError(f"pg_dump not found; install the PostgreSQL client: {PACKAGES_HINT}")
    return found


def _pg_tool(name: str, bin_dir: Path | None) -> Path:
    folder = pg_bin_dir(bin_dir)
    tool = folder / name
    if not tool.is_file() or not os.access(tool, os.X_OK):
        raise BackupError(
            f"{name} not found in {folder}: install the PostgreSQL client ({PACKAGES_HINT}) "
            "or name its folder with --pg-bin / GRIDGOV_PG_BIN"
        )
    return tool


def _pg_connection(url: URL) -> tuple[dict[str, str], str]:
    """Return libpq environment variables for `url` and the conninfo naming its database.

    The password travels only in PGPASSWORD, never on a command line (which `ps` shows).
    """
    env = dict(os.environ)
    values: dict[str, Any] = {
        "host": url.host,
        "port": url.port,
        "user": url.username,
        "password": url.password,
    }
    for key, value in url.query.items():
        if key in _LIBPQ_ENV:
            values[key] = value[-1] if isinstance(value, tuple) else value
    for key, value in values.items():
        if value is not None and value != "":
            env[_LIBPQ_ENV[key]] = str(value)
    if not url.database:
        raise BackupError("the database URL names no database")
    quoted = url.database.replace("\\", "\\\\").replace("'", "\\'")
    return env, f"dbname='{quoted}'"


def _run_pg(cmd: list[str], env: dict[str, str], what: str) -> str:
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd="/", check=False)
    except OSError as exc:
        raise BackupError(f"{what}: cannot run {cmd[0]}: {exc}") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()[-2000:] or "(no message)"
        raise BackupError(f"{what} failed (exit {done.returncode}): {detail}")
    return done.stdout


# --- what a database holds ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Summary:
    revision: str | None
    counts: dict[str, int]
    head: Anchor


def _summarize(conn: Connection) -> _Summary:
    """Read the schema revision, row counts and audit chain head through `conn`."""
    revision = MigrationContext.configure(conn).get_current_revision()
    if revision is None:
        return _Summary(None, {}, Anchor(0, GENESIS_MAC))
    counts = {
        name: int(conn.scalar(select(func.count()).select_from(model.__table__)) or 0)
        for name, model in COUNTED.items()
    }
    row = conn.execute(
        select(AuditHead.last_id, AuditHead.last_mac).where(AuditHead.id == HEAD_ID)
    ).first()
    head = Anchor(int(row.last_id), row.last_mac) if row else Anchor(0, GENESIS_MAC)
    return _Summary(revision, counts, head)


def audit_key_id(key: bytes) -> str:
    """Return a short identifier of an audit key, to tell a wrong key from a broken chain."""
    return hmac.new(key, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]


def _sqlite_path(db: Database) -> Path:
    name = db.engine.url.database
    if not name or name == ":memory:" or name.startswith("file:"):
        raise BackupError(f"cannot back up or restore the SQLite database {name!r}: not a file")
    return Path(name).resolve()


def _dump_sqlite(db: Database, target: Path) -> _Summary:
    """Copy the live database with SQLite's online backup API (one consistent snapshot)."""
    source_path = _sqlite_path(db)
    if not source_path.is_file():
        raise BackupError(f"the SQLite database {source_path} does not exist")
    source = sqlite3.connect(source_path, timeout=30)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)  # all pages in one step, under one read transaction
        copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
    finally:
        copy.close()
        source.close()
    engine = create_engine(f"sqlite:///{target}", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return _summarize(conn)
    finally:
        engine.dispose()


def _dump_postgresql(db: Database, target: Path, pg_bin: Path | None) -> _Summary:
    """Run `pg_dump -Fc` on the snapshot the manifest's counts and audit head are read from."""
    pg_dump = _pg_tool("pg_dump", pg_bin)
    env, conninfo = _pg_connection(db.engine.url)
    with db.engine.connect() as conn:
        conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            snapshot = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
            summary = _summarize(conn)
            if summary.revision is not None:
                _run_pg(
                    [
                        str(pg_dump),
                        "--format=custom",
                        "--no-password",
                        f"--snapshot={snapshot}",
                        f"--file={target}",
                        f"--dbname={conninfo}",
                    ],
                    env,
                    "pg_dump",
                )
    return summary


# --- writing an archive -------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupResult:
    """A finished archive and its manifest."""

    path: Path
    manifest: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "archive": str(self.path),
            "size": self.path.stat().st_size,
            "created_at": m["created_at"],
            "database": m["database"],
            "counts": m["counts"],
            "audit_head": m["audit_head"],
            "files": len(m["files"]),
            "includes_keys": m["includes_keys"],
        }


class _HashingReader:
    """A read-only file wrapper that hashes and counts what passes through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha.update(data)
        self.size += len(data)
        return data


def _add_file(tar: tarfile.TarFile, arcname: str, path: Path, mode: int) -> dict[str, Any]:
    with path.open("rb") as handle:
        stat = os.fstat(handle.fileno())
        info = tarfile.TarInfo(arcname)
        info.size, info.mtime, info.mode = stat.st_size, int(stat.st_mtime), mode
        reader = _HashingReader(handle)
        tar.addfile(info, reader)  # type: ignore[arg-type]
    return {"sha256": reader.sha.hexdigest(), "size": reader.size}


def _upload_files(folder: Path, skip: Path) -> list[tuple[str, Path]]:
    """Return (relative POSIX path, path) of every regular file under the upload folder."""
    if not folder.is_dir():
        return []
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if (here / d).resolve() != skip)
        for name in sorted(filenames):
            path = here / name
            if name.startswith(".") and name.endswith(".tmp"):
                continue  # a photo still being written (gridgov.photos writes then renames)
            if path.is_symlink() or not path.is_file():
                continue
            found.append((path.relative_to(folder).as_posix(), path))
    return found


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_backup(
    db: Database,
    settings: Settings,
    out_dir: Path,
    *,
    include_keys: bool = False,
    pg_bin: Path | None = None,
    now: datetime | None = None,
) -> BackupResult:
    """Write one archive of the database, the upload folder and (if asked) the keys.

    Safe while the app runs. Nothing appears under the final name unless the whole archive
    was written; on any failure the partial file is removed.
    """
    kind = db.dialect
    if kind not in DB_MEMBERS:
        raise BackupError(f"cannot back up a {kind} database (only SQLite and PostgreSQL)")
    now = (now or datetime.now(LOCAL_TZ)).astimezone(LOCAL_TZ)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"gridgov-backup-{now:%Y%m%d-%H%M%S}.tar.gz"
    final = out_dir / name
    if final.exists():
        raise BackupError(f"{final} already exists; not overwriting it")
    partial = out_dir / f".{name}.partial"
    staging = Path(tempfile.mkdtemp(prefix=".gridgov-backup-", dir=out_dir))
    try:
        db_file = staging / PurePosixPath(DB_MEMBERS[kind]).name
        if kind == "sqlite":
            summary = _dump_sqlite(db, db_file)
        else:
            summary = _dump_postgresql(db, db_file, pg_bin)
        if summary.revision is None:
            raise BackupError("the database has no gridgov schema (run `gridgov init`): no backup")
        members = [(DB_MEMBERS[kind], db_file, 0o600)]
        assert settings.upload_folder is not None
        members += [
            (f"{UPLOADS}/{rel}", path, 0o644)
            for rel, path in _upload_files(settings.upload_folder, out_dir)
        ]
        if include_keys:
            members += _stage_keys(db, settings, staging)
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "gridgov_version": __version__,
            "created_at": now.isoformat(timespec="seconds"),
            "database": {
                "kind": kind,
                "file": DB_MEMBERS[kind],
                "alembic_revision": summary.revision,
            },
            "counts": summary.counts,
            "audit_head": {"seq": summary.head.seq, "mac": summary.head.mac},
            "audit_key_id": audit_key_id(db.audit_key) if db.audit_key else None,
            "includes_keys": include_keys,
            "files": {},
        }
        with partial.open("xb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as tar:
                for arcname, path, mode in members:
                    manifest["files"][arcname] = _add_file(tar, arcname, path, mode)
                body = json.dumps(manifest, ensure_ascii=False, indent=2).encode()
                info = tarfile.TarInfo(MANIFEST)
                info.size, info.mtime, info.mode = len(body), int(now.timestamp()), 0o644
                tar.addfile(info, io.BytesIO(body))
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, final)
        _fsync_dir(out_dir)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BackupResult(final, manifest)


def _stage_keys(db: Database, settings: Settings, staging: Path) -> list[tuple[str, Path, int]]:
    """Write the keys in use (configured, else instance/) into the staging folder."""
    values = {
        "audit_key": db.audit_key.decode() if db.audit_key else settings.audit_key,
        "secret_key": settings.secret_key,
    }
    staged = []
    (staging / KEYS).mkdir(mode=0o700)
    for name in KEY_FILES:
        value = values[name]
        if not value and (settings.instance_path / name).is_file():
            value = (settings.instance_path / name).read_text().strip()
        if value:
            path = staging / KEYS / name
            path.write_text(value)
            path.chmod(0o600)
            staged.append((f"{KEYS}/{name}", path, 0o600))
    return staged


# --- reading and checking an archive ------------------------------------------------------------


def _allowed(name: str, kind_files: set[str]) -> bool:
    path = PurePosixPath(name)
    if path.is_absolute() or not path.parts or name != path.as_posix():
        return False
    if any(part in ("", ".", "..") for part in path.parts) or "\\" in name:
        return False
    if name == MANIFEST or name in kind_files:
        return True
    if path.parts[0] == UPLOADS and len(path.parts) > 1:
        return True
    return path.parts[0] == KEYS and len(path.parts) == 2 and path.parts[1] in KEY_FILES


def _copy_member(source: IO[bytes], target: Path | None) -> dict[str, Any]:
    sha, size = hashlib.sha256(), 0
    with _open_or_none(target) as out:
        while chunk := source.read(_CHUNK):
            sha.update(chunk)
            size += len(chunk)
            if out is not None:
                out.write(chunk)
    return {"sha256": sha.hexdigest(), "size": size}


@contextmanager
def _open_or_none(path: Path | None) -> Iterator[IO[bytes] | None]:
    """Open `path` for writing (creating its folders), or yield None when there is no path."""
    if path is None:
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("xb") as handle:
        yield handle


def _read_archive(archive: Path, into: Path | None) -> dict[str, Any]:
    """Read every member of `archive` (extracting it under `into`) and check the manifest.

    Raise BackupError listing every problem: an unreadable or damaged archive, a member that
    is not a plain file with an expected name, a file missing, extra or not matching its sha256.
    """
    archive = Path(archive)
    seen: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    manifest_body: bytes | None = None
    allowed = set(DB_MEMBERS.values())
    try:
        with gzip.open(archive, "rb") as gz:
            with tarfile.open(fileobj=gz, mode="r|") as tar:
                for member in tar:
                    name = member.name
                    if not member.isfile() or not _allowed(name, allowed):
                        problems.append(f"unexpected member {name!r} (not a gridgov backup file)")
                        continue
                    if name in seen or (name == MANIFEST and manifest_body is not None):
                        problems.append(f"{name}: stored twice")
                        continue
                    source = tar.extractfile(member)
                    assert source is not None
                    if name == MANIFEST:
                        manifest_body = source.read(_MAX_MANIFEST)
                        continue
                    seen[name] = _copy_member(source, None if into is None else into / name)
            while gz.read(_CHUNK):  # to the end, so gzip checks its CRC and length
                pass
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise BackupError(
            f"{archive}: damaged or not a gridgov backup archive ({type(exc).__name__}: {exc})"
        ) from exc
    if manifest_body is None:
        raise BackupError(f"{archive}: no {MANIFEST}: not a gridgov backup archive")
    try:
        manifest = json.loads(manifest_body)
        expected = manifest["files"]
        if manifest.get("format") != FORMAT or not isinstance(expected, dict):
            raise ValueError("not a gridgov backup manifest")
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{archive}: unreadable {MANIFEST}: {exc}") from exc
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(
            f"{archive}: backup format {manifest.get('format_version')} is not supported "
            f"(this gridgov reads format {FORMAT_VERSION})"
        )
    for name in sorted(set(expected) - set(seen)):
        problems.append(f"{name}: listed in the manifest but missing from the archive")
    for name in sorted(set(seen) - set(expected)):
        problems.append(f"{name}: in the archive but not in the manifest")
    for name in sorted(set(seen) & set(expected)):
        want = expected[name]
        if not isinstance(want, dict) or want.get("sha256") != seen[name]["sha256"]:
            problems.append(f"{name}: sha256 does not match the manifest (file changed)")
        elif want.get("size") != seen[name]["size"]:
            problems.append(f"{name}: size does not match the manifest")
    database = manifest.get("database") or {}
    if database.get("kind") not in DB_MEMBERS or database.get("file") not in expected:
        problems.append("the manifest names no database copy")
    if problems:
        raise BackupError(
            f"{archive} fails its check ({len(problems)} problem(s)):\n  " + "\n  ".join(problems)
        )
    return manifest


def verify_archive(archive: Path) -> dict[str, Any]:
    """Check an archive's manifest and every file's sha256 without restoring; return the manifest.

    Raise BackupError naming every problem.
    """
    return _read_archive(archive, None)


# --- restoring ----------------------------------------------------------------------------------


@dataclass
class RestoreReport:
    """What a restore did, and whether the audit chain verifies afterwards."""

    archive: str
    database: str
    target_was: str
    revision_in_archive: str
    revision_now: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    counts_match: bool = False
    photos_written: int = 0
    photos_already_present: int = 0
    keys_restored: list[str] = field(default_factory=list)
    audit: dict[str, Any] = field(default_factory=dict)

    @property
    def audit_ok(self) -> bool:
        return bool(self.audit.get("ok"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _target_state(db: Database) -> str:
    """Classify the configured database: "empty", "initialized" (schema, no data) or refuse.

    Raise BackupError when it holds data (any row in DATA_TABLES) or tables gridgov does not know.
    """
    if db.dialect == "sqlite":
        path = _sqlite_path(db)
        if not path.exists() or path.stat().st_size == 0:
            return "empty"
    known = set(Base.metadata.tables) | {"alembic_version"}
    with db.engine.connect() as conn:
        tables = set(inspect(conn).get_table_names()) - FOREIGN_OK
        if not tables:
            return "empty"
        unknown = sorted(tables - known)
        if unknown:
            raise BackupError(
                f"refused: the target database holds tables gridgov does not know "
                f"({', '.join(unknown[:5])}); restore into an empty database"
            )
        holding = []
        for table in DATA_TABLES:
            if table in tables:
                n = conn.scalar(select(func.count()).select_from(Base.metadata.tables[table]))
                if n:
                    holding.append(f"{table}: {n}")
        if "audit_log" in tables:
            n = conn.scalar(
                select(func.count())
                .select_from(AuditEntry)
                .where(AuditEntry.object_type.not_in(SEEDED_TYPES))
            )
            if n:
                holding.append(f"audit_log: {n} entries beyond the seeding of `gridgov init`")
    if holding:
        raise BackupError(
            "refused: the target database holds data (" + ", ".join(holding) + "). A restore "
            "never overwrites data: create an empty database (PostgreSQL: createdb + CREATE "
            "EXTENSION postgis; SQLite: a new GRIDGOV_DATABASE_URL file) and restore into it"
        )
    return "initialized"


def _check_revision(db: Database, revision: str) -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config(db.engine))
    try:
        known = script.get_revision(revision) is not None
    except CommandError:
        known = False
    if not known:
        raise BackupError(
            f"refused: the archive's schema revision {revision!r} is unknown to this gridgov "
            f"({__version__}): it comes from a newer version; upgrade gridgov first"
        )


def _plan_photos(staged: Path, folder: Path) -> tuple[list[tuple[Path, Path]], int]:
    """Return the (staged, target) photos to write and how many are already there, identical.

    Raise BackupError if a target file exists with other content: nothing is overwritten.
    """
    writes, same, clashes = [], 0, []
    if staged.is_dir():
        for path in sorted(p for p in staged.rglob("*") if p.is_file()):
            target = folder / path.relative_to(staged)
            if not target.exists():
                writes.append((path, target))
            elif target.is_file() and _same_bytes(path, target):
                same += 1
            else:
                clashes.append(str(target))
    if clashes:
        raise BackupError(
            f"refused: {len(clashes)} file(s) in the upload folder differ from the archive's, "
            f"e.g. {clashes[0]}; restore into an empty upload folder"
        )
    return writes, same


def _same_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            ca, cb = fa.read(_CHUNK), fb.read(_CHUNK)
            if ca != cb:
                return False
            if not ca:
                return True


def _put(source: Path, target: Path, mode: int) -> None:
    """Copy `source` to `target` through a temporary name beside it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            shutil.copyfileobj(src, out, _CHUNK)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _ensure_postgis(db: Database) -> None:
    with db.engine.connect() as conn:
        if conn.exec_driver_sql("SELECT 1 FROM pg_extension WHERE extname = 'postgis'").first():
            return
        try:
            with conn.begin():
                conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS postgis")
        except Exception as exc:
            raise BackupError(
                "refused: PostGIS is not enabled in the target database and cannot be enabled "
                "by this user; as a superuser run: psql -d <database> -c 'CREATE EXTENSION "
                f"postgis' ({type(exc).__name__})"
            ) from exc


def _restore_postgresql(db: Database, dump: Path, staging: Path, pg_bin: Path | None) -> None:
    pg_restore = _pg_tool("pg_restore", pg_bin)
    env, conninfo = _pg_connection(db.engine.url)
    listing = _run_pg([str(pg_restore), "--list", str(dump)], env, "pg_restore --list")
    toc = staging / "restore.list"
    toc.write_text(
        "".join(line + "\n" for line in listing.splitlines() if not _EXTENSION_TOC.match(line))
    )
    db.dispose()
    _run_pg(
        [
            str(pg_restore),
            "--no-owner",
            "--no-acl",
            "--no-password",
            "--single-transaction",
            "--exit-on-error",
            f"--use-list={toc}",
            f"--dbname={conninfo}",
            str(dump),
        ],
        env,
        "pg_restore",
    )


def _restore_sqlite(db: Database, copy: Path) -> None:
    """Put the archived file in place of the configured one (no app may be running)."""
    target = _sqlite_path(db)
    db.dispose()
    for suffix in ("-wal", "-shm", "-journal"):  # an old -wal would be replayed onto the copy
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    _put(copy, target, 0o600)
    _fsync_dir(target.parent)


def _restore_keys(staged: Path, instance: Path, stamp: str) -> tuple[list[str], bytes | None]:
    """Put archived keys into instance/, keeping any other key found there under a new name."""
    restored, audit_key = [], None
    for name in KEY_FILES:
        source = staged / name
        if not source.is_file():
            continue
        target = instance / name
        if target.is_file() and not _same_bytes(source, target):
            target.rename(instance / f"{name}.replaced-{stamp}")
        if not target.exists():
            _put(source, target, 0o600)
        restored.append(name)
        if name == "audit_key":
            audit_key = source.read_text().strip().encode()
    return restored, audit_key


def _check_audit(db: Database, key: bytes | None, manifest: dict[str, Any]) -> dict[str, Any]:
    head = manifest.get("audit_head") or {}
    expected = f"{head.get('seq', 0)}:{head.get('mac', GENESIS_MAC)}"
    if not key:
        return {"ok": False, "checked": False, "message": "no audit key configured"}
    wanted = manifest.get("audit_key_id")
    if wanted and audit_key_id(key) != wanted:
        return {
            "ok": False,
            "checked": False,
            "expected_head": expected,
            "message": "the configured audit key is not the one this backup was made with: "
            "put the right key in instance/audit_key (or GRIDGOV_AUDIT_KEY), then run "
            f"`gridgov audit verify --expect {expected}`",
        }
    anchors = [Anchor(int(head["seq"]), str(head["mac"]))] if head.get("seq") else []
    with db.session() as session:
        report = verify_chain(session, key, anchors)
    return {"checked": True, "expected_head": expected, **report.to_dict()}


def restore_backup(
    db: Database,
    settings: Settings,
    archive: Path,
    *,
    yes: bool = False,
    pg_bin: Path | None = None,
) -> RestoreReport:
    """Restore an archive into the configured database and upload folder, then upgrade and verify.

    The rule: the archive is read and every sha256 checked first. The target database must be
    empty (no gridgov tables), or, with `yes`, hold only a schema with no data (as `gridgov
    init --no-sample` or `serve` leave it: reference data and its audit entries, which are
    replaced). A database with any event, user, region or department, or an audit entry beyond
    init's seeding, is always refused, as are upload files that differ from the archive's.
    SQLite: the file is replaced, so no gridgov process may be running.
    """
    kind = db.dialect
    instance = Path(settings.instance_path)
    instance.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".gridgov-restore-", dir=instance))
    try:
        manifest = _read_archive(archive, staging)
        database = manifest["database"]
        if database["kind"] != kind:
            raise BackupError(
                f"refused: the archive holds a {database['kind']} database, the configured one "
                f"is {kind}"
            )
        _check_revision(db, database["alembic_revision"])
        state = _target_state(db)
        if state == "initialized" and not yes:
            raise BackupError(
                "refused: the target database has a gridgov schema (no data). Pass --yes to "
                "replace that empty schema with the archive's"
            )
        assert settings.upload_folder is not None
        photos, same = _plan_photos(staging / UPLOADS, Path(settings.upload_folder))
        report = RestoreReport(str(archive), kind, state, database["alembic_revision"])
        dump = staging / database["file"]
        if kind == "postgresql":
            _pg_tool("pg_restore", pg_bin)
            _ensure_postgis(db)
        # Everything is checked; from here on the target changes. Photos first: should the
        # database fail, the target is still empty and the same restore can run again.
        for source, target in photos:
            _put(source, target, 0o644)
        report.photos_written, report.photos_already_present = len(photos), same
        if kind == "postgresql":
            if state == "initialized":
                with db.engine.begin() as conn:
                    Base.metadata.drop_all(conn)
                    conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
            _restore_postgresql(db, dump, staging, pg_bin)
        else:
            _restore_sqlite(db, dump)
        stamp = datetime.now(LOCAL_TZ).strftime("%Y%m%d-%H%M%S")
        report.keys_restored, archived_key = _restore_keys(staging / KEYS, instance, stamp)
        migrate.upgrade(db.engine)
        report.revision_now = migrate.current_revision(db.engine)
        with db.engine.connect() as conn:
            report.counts = _summarize(conn).counts
        report.counts_match = report.counts == manifest.get("counts")
        report.audit = _check_audit(db, archived_key or db.audit_key, manifest)
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)
