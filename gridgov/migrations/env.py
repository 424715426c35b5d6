"""Alembic environment: runs on the connection gridgov.migrate hands it."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

import gridgov.models  # noqa: F401  (registers every table)
from gridgov.db import Base, Geometry, UTCDateTime, make_engine

config = context.config
target_metadata = Base.metadata


def _render_item(type_: str, obj: object, autogen_context: object) -> str | bool:
    if type_ == "type" and isinstance(obj, Geometry):
        return f"gridgov.db.Geometry({obj.geometry_type!r})"
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    # GiST indexes on geometry columns are created by hand in the PostgreSQL branch of
    # migrations; the models do not declare them.
    return not (type_ == "index" and name is not None and name.endswith("_geom"))


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        render_item=_render_item,
        compare_type=True,
        include_object=_include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()
