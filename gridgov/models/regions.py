"""Administrative regions (county → town → village) and versioned grid sets."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from shapely.geometry.base import BaseGeometry
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gridgov.db import Base, Geometry, UTCDateTime


class Level(StrEnum):
    """A level of the administrative hierarchy, named by the length of its code."""

    COUNTY = "county"
    TOWN = "town"
    VILLAGE = "village"
    GRID = "grid"

    @property
    def code_length(self) -> int:
        return CODE_LENGTHS[self]

    @property
    def label(self) -> str:
        return {"county": "县", "town": "镇（街道）", "village": "村（社区）", "grid": "网格"}[self]

    @classmethod
    def of_code(cls, code: str) -> Level:
        """Return the level a well-formed code belongs to; ValueError otherwise."""
        if not code.isdigit():
            raise ValueError(f"region code must be digits: {code!r}")
        for level, length in CODE_LENGTHS.items():
            if len(code) == length:
                return level
        raise ValueError(f"region code must have 6, 9, 12 or 15 digits: {code!r}")


CODE_LENGTHS = {Level.COUNTY: 6, Level.TOWN: 9, Level.VILLAGE: 12, Level.GRID: 15}


class Region(Base):
    """A county, town or village; the code prefix is the jurisdiction."""

    __tablename__ = "regions"
    __table_args__ = (
        CheckConstraint(
            "(level = 'county' AND length(code) = 6)"
            " OR (level = 'town' AND length(code) = 9)"
            " OR (level = 'village' AND length(code) = 12)",
            name="code_matches_level",
        ),
        CheckConstraint(
            "(level = 'county') OR (parent_code IS NOT NULL)", name="parent_below_county"
        ),
    )

    code: Mapped[str] = mapped_column(String(12), primary_key=True)
    level: Mapped[str] = mapped_column(String(8), index=True)
    name: Mapped[str] = mapped_column(String(64))
    parent_code: Mapped[str | None] = mapped_column(
        ForeignKey("regions.code", ondelete="RESTRICT"), index=True
    )
    geom: Mapped[BaseGeometry | None] = mapped_column(Geometry("MULTIPOLYGON"))
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(Text, default="")

    parent: Mapped[Region | None] = relationship(remote_side=[code], back_populates="children")
    children: Mapped[list[Region]] = relationship(back_populates="parent", order_by="Region.code")

    def __repr__(self) -> str:
        return f"<Region {self.code} {self.name}>"


class GridSet(Base):
    """One imported set of grids for a county; exactly one set per county is active."""

    __tablename__ = "grid_sets"
    __table_args__ = (
        Index(
            "uq_grid_sets_active_county",
            "county_code",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    county_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(Text, default="")
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    grid_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())

    grids: Mapped[list[Grid]] = relationship(back_populates="grid_set", order_by="Grid.code")


class Grid(Base):
    """A grid (网格): the smallest closed polygon a grid worker is responsible for."""

    __tablename__ = "grids"
    __table_args__ = (
        UniqueConstraint("grid_set_id", "code", name="uq_grids_set_code"),
        CheckConstraint("length(code) = 15", name="code_length"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    grid_set_id: Mapped[int] = mapped_column(
        ForeignKey("grid_sets.id", ondelete="CASCADE"), index=True
    )
    code: Mapped[str] = mapped_column(String(15), index=True)
    name: Mapped[str] = mapped_column(String(64))
    village_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)
    geom: Mapped[BaseGeometry] = mapped_column(Geometry("MULTIPOLYGON"))
    area_m2: Mapped[float] = mapped_column(Float, default=0.0)

    grid_set: Mapped[GridSet] = relationship(back_populates="grids")
    village: Mapped[Region] = relationship()

    def __repr__(self) -> str:
        return f"<Grid {self.code} {self.name}>"
