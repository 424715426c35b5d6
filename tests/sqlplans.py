"""SQLite query plans of the statements a piece of code runs (index-choice tests)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session


def sqlite_plans(session: Session, run: Callable[[], Any], marker: str) -> list[str]:
    """Run `run` and return SQLite's query plan of each statement it executes containing
    `marker` (EXPLAIN QUERY PLAN, details joined by spaces)."""
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if marker in statement:
            statements.append((statement, parameters))

    connection = session.connection()
    event.listen(connection, "before_cursor_execute", capture)
    try:
        run()
    finally:
        event.remove(connection, "before_cursor_execute", capture)
    cursor = connection.connection.driver_connection.cursor()
    plans = []
    for statement, parameters in statements:
        cursor.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)
        plans.append(" ".join(str(row[-1]) for row in cursor.fetchall()))
    return plans
