"""A throwaway PostgreSQL + PostGIS cluster for tests and benchmarks.

Runs `initdb` into a temporary directory (as the `postgres` user when we are root),
starts it on a free loopback port with durability off, and removes it on stop.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

PACKAGES_HINT = "apt-get install postgresql postgresql-15-postgis-3"


def find_bin_dir(tool: str) -> Path | None:
    """Return the folder holding PostgreSQL's `tool` (initdb, pg_dump …), or None.

    The newest Debian /usr/lib/postgresql/<major>/bin that has it, else the PATH's.
    """
    candidates = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else -1,
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which(tool)
    return Path(found).parent if found else None


def _bin_dir() -> Path:
    found = find_bin_dir("initdb")
    if found is None:
        raise RuntimeError(f"PostgreSQL server binaries not found; install them: {PACKAGES_HINT}")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TemporaryPostgres:
    """Start a private PostgreSQL cluster; use as a context manager."""

    def __init__(self, dbname: str = "gridgov_test") -> None:
        self.dbname = dbname
        self.bin = _bin_dir()
        self.dir = Path(tempfile.mkdtemp(prefix="gridgov-pg-"))
        self.port = _free_port()
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, cwd="/")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{self.dbname}"

    def start(self) -> TemporaryPostgres:
        data = self.dir / "data"
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100 "
            "-c shared_buffers=256MB"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(self.dir / "server.log"),
            "-w",
            "start",
        )
        self.create_database(self.dbname)
        return self

    def create_database(self, name: str) -> str:
        """Create a database on this cluster (with PostGIS) and return its URL."""
        client = ("-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres")
        self._run(str(self.bin / "createdb"), *client, name)
        self._run(
            str(self.bin / "psql"), *client, "-d", name, "-q", "-c", "CREATE EXTENSION postgis"
        )
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        data = self.dir / "data"
        if data.exists():
            subprocess.run(
                (["runuser", "-u", "postgres", "--"] if self._as_postgres else [])
                + [str(self.bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True,
                cwd="/",
            )
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> TemporaryPostgres:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
