"""Settings from the environment (GRIDGOV_*), validated at start."""

from __future__ import annotations

import os
import secrets
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
"""The project checkout: templates/, static/ and geodata/ live here."""

BASEMAPS = ("none", "tianditu", "xyz", "osm")
BASEMAP_CRSES = ("wgs84", "gcj02")
"""What the basemap tiles are drawn in: GCJ-02 for Amap-style intranet tiles (xyz)."""


class ConfigError(ValueError):
    """A setting is missing or malformed."""


@dataclass
class Settings:
    """Every setting gridgov reads, with its default."""

    instance_path: Path = field(default_factory=lambda: ROOT / "instance")
    database_url: str = ""
    secret_key: str = ""
    audit_key: str = ""
    upload_folder: Path | None = None
    max_upload_mb: int = 10
    snap_tolerance_m: float = 200.0
    basemap: str = "none"
    basemap_url: str = ""
    basemap_crs: str = "wgs84"
    tianditu_key: str = ""
    default_county: str = "441523"
    duplicate_radius_m: float = 300.0
    """An open event of the same matter this near counts as a possible duplicate (并案)."""
    duplicate_window_hours: float = 168.0
    """… if reported within this many hours of the new one."""

    def __post_init__(self) -> None:
        self.instance_path = Path(self.instance_path)
        if not self.database_url:
            self.database_url = f"sqlite:///{self.instance_path / 'gridgov.sqlite3'}"
        if self.upload_folder is None:
            self.upload_folder = self.instance_path / "uploads"
        self.upload_folder = Path(self.upload_folder)
        if self.basemap not in BASEMAPS:
            raise ConfigError(f"GRIDGOV_BASEMAP must be one of {', '.join(BASEMAPS)}")
        if self.basemap == "tianditu" and not self.tianditu_key:
            raise ConfigError("GRIDGOV_BASEMAP=tianditu needs GRIDGOV_TIANDITU_KEY")
        if self.basemap == "xyz" and not self.basemap_url:
            raise ConfigError("GRIDGOV_BASEMAP=xyz needs GRIDGOV_BASEMAP_URL")
        if self.basemap_crs not in BASEMAP_CRSES:
            raise ConfigError(f"GRIDGOV_BASEMAP_CRS must be one of {', '.join(BASEMAP_CRSES)}")
        if self.snap_tolerance_m < 0:
            raise ConfigError("GRIDGOV_SNAP_TOLERANCE_M must be >= 0")
        if self.duplicate_radius_m < 0 or self.duplicate_window_hours < 0:
            raise ConfigError("GRIDGOV_DUPLICATE_RADIUS_M/_WINDOW_HOURS must be >= 0")
        if self.max_upload_mb <= 0:
            raise ConfigError("GRIDGOV_MAX_UPLOAD_MB must be > 0")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Read GRIDGOV_<NAME> variables, then apply explicit overrides."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"GRIDGOV_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            kind = type(f.default) if f.default is not MISSING else str
            try:
                values[f.name] = kind(raw) if kind in (int, float) else raw
            except ValueError as exc:
                raise ConfigError(f"GRIDGOV_{f.name.upper()}: {exc}") from exc
        values.update(overrides)
        return cls(**values)

    def ensure_secret_key(self) -> str:
        """Return the session secret, creating a persistent one under instance/ if unset."""
        if not self.secret_key:
            self.secret_key = self._instance_secret("secret_key")
        return self.secret_key

    def ensure_audit_key(self) -> bytes:
        """Return the audit-chain key, creating a persistent one under instance/ if unset.

        Keep it apart from the database: whoever holds it can forge a consistent chain.
        """
        if not self.audit_key:
            self.audit_key = self._instance_secret("audit_key")
        return self.audit_key.encode()

    def _instance_secret(self, name: str) -> str:
        path = self.instance_path / name
        if path.exists():
            return path.read_text().strip()
        self.instance_path.mkdir(parents=True, exist_ok=True)
        value = secrets.token_hex(32)
        path.write_text(value)
        path.chmod(0o600)
        return value
