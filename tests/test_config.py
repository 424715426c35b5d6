"""Settings come from GRIDGOV_* variables, typed by their defaults, and are validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridgov.config import ConfigError, Settings


def test_defaults_put_everything_under_the_instance_folder(tmp_path: Path) -> None:
    s = Settings.from_env({"GRIDGOV_INSTANCE_PATH": str(tmp_path)})
    assert s.database_url == f"sqlite:///{tmp_path / 'gridgov.sqlite3'}"
    assert s.upload_folder == tmp_path / "uploads"
    assert (s.snap_tolerance_m, s.basemap, s.duplicate_radius_m) == (200.0, "none", 300.0)


def test_values_are_typed_by_their_defaults(tmp_path: Path) -> None:
    s = Settings.from_env(
        {
            "GRIDGOV_INSTANCE_PATH": str(tmp_path),
            "GRIDGOV_MAX_UPLOAD_MB": "25",
            "GRIDGOV_SNAP_TOLERANCE_M": "50.5",
            "GRIDGOV_DUPLICATE_WINDOW_HOURS": "24",
            "GRIDGOV_DATABASE_URL": "postgresql+psycopg://u@h/db",
        }
    )
    assert s.max_upload_mb == 25 and isinstance(s.max_upload_mb, int)
    assert s.snap_tolerance_m == 50.5
    assert s.duplicate_window_hours == 24.0
    assert s.database_url == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize(
    "env",
    [
        {"GRIDGOV_MAX_UPLOAD_MB": "ten"},
        {"GRIDGOV_MAX_UPLOAD_MB": "0"},
        {"GRIDGOV_SNAP_TOLERANCE_M": "-1"},
        {"GRIDGOV_BASEMAP": "google"},
        {"GRIDGOV_BASEMAP": "tianditu"},
        {"GRIDGOV_BASEMAP": "xyz"},
        {"GRIDGOV_DUPLICATE_RADIUS_M": "-5"},
    ],
)
def test_bad_settings_are_refused_at_start(env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        Settings.from_env({"GRIDGOV_INSTANCE_PATH": str(tmp_path), **env})


def test_secrets_are_created_once_and_kept(tmp_path: Path) -> None:
    first = Settings(instance_path=tmp_path)
    key, audit = first.ensure_secret_key(), first.ensure_audit_key()
    second = Settings(instance_path=tmp_path)
    assert (second.ensure_secret_key(), second.ensure_audit_key()) == (key, audit)
    assert (tmp_path / "audit_key").stat().st_mode & 0o777 == 0o600
