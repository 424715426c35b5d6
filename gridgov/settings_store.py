"""Text settings kept in the `settings` table (key → JSON string), read and written here."""

from __future__ import annotations

import json

from sqlalchemy.orm import Session

from gridgov.models import Setting


def get_text(session: Session, key: str) -> str:
    """Return the text stored under `key`, or "" if none."""
    setting = session.get(Setting, key)
    if setting is None:
        return ""
    value = json.loads(setting.value)
    return value if isinstance(value, str) else ""


def put_text(session: Session, key: str, value: str) -> None:
    """Store `value` under `key` (through the ORM, so the audit log records a change)."""
    encoded = json.dumps(value, ensure_ascii=False)
    setting = session.get(Setting, key)
    if setting is None:
        session.add(Setting(key=key, value=encoded))
    elif setting.value != encoded:
        setting.value = encoded
