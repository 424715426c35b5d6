"""Engine, sessions, the declarative Base and the portable geometry column type."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    LargeBinary,
    MetaData,
    create_engine,
    event,
    func,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator, TypeEngine, UserDefinedType

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every gridgov model."""

    metadata = MetaData(naming_convention=NAMING)


class PostGISGeometry(UserDefinedType[bytes]):
    """PostGIS `geometry(<type>, 4326)` exchanged with Python as WKB bytes."""

    cache_ok = True

    def __init__(self, geometry_type: str = "GEOMETRY", srid: int = 4326) -> None:
        # Reflection passes the column's (type, srid) modifiers positionally.
        self.geometry_type = str(geometry_type).upper()
        self.srid = srid

    def get_col_spec(self, **kw: Any) -> str:
        return f"geometry({self.geometry_type},4326)"

    def bind_expression(self, bindvalue: Any) -> ColumnElement[Any]:
        return func.ST_GeomFromWKB(bindvalue, 4326, type_=self)


class Geometry(TypeDecorator[BaseGeometry]):
    """A WGS84 geometry: PostGIS `geometry(…, 4326)` on PostgreSQL, WKB bytes elsewhere.

    Python code always sees shapely geometries.
    """

    impl = LargeBinary
    cache_ok = True

    def __init__(self, geometry_type: str = "GEOMETRY") -> None:
        super().__init__()
        self.geometry_type = geometry_type

    def load_dialect_impl(self, dialect: Dialect | None) -> TypeEngine[Any]:
        if dialect is not None and dialect.name == "postgresql":
            return dialect.type_descriptor(PostGISGeometry(self.geometry_type))
        return LargeBinary() if dialect is None else dialect.type_descriptor(LargeBinary())

    def column_expression(self, colexpr: Any) -> ColumnElement[Any]:
        # On PostGIS select WKB; typed as self so process_result_value turns it into shapely.
        if isinstance(self.impl_instance, PostGISGeometry):
            return func.ST_AsBinary(colexpr, type_=self)
        return colexpr

    def process_bind_param(self, value: BaseGeometry | None, dialect: Dialect) -> Any:
        return None if value is None else shapely.to_wkb(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> BaseGeometry | None:
        return None if value is None else shapely.from_wkb(bytes(value))


class UTCDateTime(TypeDecorator[datetime]):
    """An instant: stored as UTC, always returned timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC column; pass an aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """Return the current instant, timezone-aware in UTC."""
    return datetime.now(UTC)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not pysqlite, issue BEGIN: SAVEPOINTs then work (tests roll back),
    # and BEGIN IMMEDIATE takes the write lock up front, so concurrent writers queue on
    # busy_timeout instead of failing with "database is locked" on a lock upgrade.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine with the per-dialect settings gridgov relies on."""
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {}).setdefault("timeout", 10)
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # psycopg prepares a statement on the server after 5 executions, and PostgreSQL then
    # settles on a generic plan that cannot see the period, box or region of a query:
    # 2-year stats and the map's clusters went 2-4x slower from the 11th identical request
    # (bench/README.md, scale.py). Planning each query costs 0.3-2.5 ms.
    connect_args = kwargs.setdefault("connect_args", {})
    connect_args.setdefault("options", "-c plan_cache_mode=force_custom_plan")
    return create_engine(url, pool_pre_ping=True, **kwargs)


class Database:
    """An engine and the session factory bound to it (or to one test connection)."""

    def __init__(self, url: str, *, audit_key: bytes | None = None, **engine_kwargs: Any) -> None:
        import gridgov.audit  # noqa: F401  (registers the audit hooks on every Session)

        self.url = url
        self.audit_key = audit_key
        self.engine = make_engine(url, **engine_kwargs)
        self.sessions = sessionmaker(
            bind=self.engine, expire_on_commit=False, info=self._session_info()
        )

    def _session_info(self) -> dict[str, Any]:
        # gridgov.audit appends a chained entry for every audited change when a key is set.
        return {"audit_key": self.audit_key} if self.audit_key else {}

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def bound_to(self, connection: Connection) -> Database:
        """Return a copy whose sessions join `connection`'s transaction (tests roll it back)."""
        clone = copy.copy(self)
        clone.sessions = sessionmaker(
            bind=connection,
            expire_on_commit=False,
            join_transaction_mode="create_savepoint",
            info=self._session_info(),
        )
        return clone

    @contextmanager
    def session(self) -> Iterator[Session]:
        """Yield a session; commit on success, roll back on any exception."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


def _register_postgis_reflection() -> None:
    # Lets reflection (Alembic's compare, inspection) recognise PostGIS geometry columns.
    from sqlalchemy.dialects.postgresql.base import ischema_names

    ischema_names.setdefault("geometry", PostGISGeometry)


_register_postgis_reflection()
