"""Import a county's own regions: its boundary, towns (乡镇/街道) and villages (村/社区).

The named steps of `STEPS` run over one `RegionImport`: read each layer with the grid
importer's reader (any format and CRS), pick the county, transform to WGS84, check every
layer with the grid importer's checker (codes, names, geometry; towns tile the county,
villages tile their town), compare with the database (a removal that would orphan grids,
events, users or departments is refused), check that the county's grid set — the active one,
or the one given with the regions — still tiles the new villages, and save. Any error refuses
the whole import and writes nothing; nothing is repaired silently.

The code prefix is the jurisdiction (PRODUCT.md §3): a village's town is the first 9 digits of
its code, so a village cannot move to another town under the same code — it gets a new code,
and the old one is a removal.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from gridgov.bootstrap import setup_county
from gridgov.geo.gridsets import GridRecord, save_grid_set
from gridgov.geo.importer import (
    ERROR,
    GRID_LAYER,
    THRESHOLD_M2,
    WARNING,
    ImportReport,
    LayerRead,
    LayerSpec,
    Problem,
    Tier,
    check_grids,
    check_tiling,
    read_fields,
    read_file,
    run_steps,
    transform_to_wgs84,
)
from gridgov.geo.sample import upsert_region
from gridgov.models import (
    Department,
    Event,
    EventAssignment,
    Grid,
    Level,
    Region,
    User,
)
from gridgov.regions import active_grid_set, mark_geodata_changed

__all__ = [
    "COUNTY_LAYER",
    "ROLES",
    "STEPS",
    "TOWN_LAYER",
    "VILLAGE_LAYER",
    "RegionImport",
    "RegionImportReport",
    "Source",
    "import_region_files",
]

_CODES = ("code", "xzqdm", "xzqhdm", "qhdm", "dm", "区划代码", "行政区划代码", "行政区代码")
_NAMES = ("name", "xzqmc", "qhmc", "mc", "区划名称", "行政区名称", "名称")

COUNTY_LAYER = LayerSpec(
    "县", ("county_code", *_CODES, "adcode", "编码", "代码"), ("county_name", *_NAMES, "district")
)
TOWN_LAYER = LayerSpec(
    "镇（街道）",
    ("town_code", "xzdm", *_CODES, "乡镇代码", "编码", "代码"),
    ("town_name", "xzmc", *_NAMES, "乡镇名称"),
)
VILLAGE_LAYER = LayerSpec(
    "村（社区）",
    ("village_code", "cjdm", *_CODES, "村代码", "村级代码", "编码", "代码"),
    ("village_name", "cjmc", *_NAMES, "村名称", "村级名称"),
)
PARENT_FIELDS = (
    "parent_code",
    "parent_cod",
    "parent",
    "sjdm",
    "sjbm",
    "上级代码",
    "上级编码",
    "上级区划代码",
)
"""Column names of an optional parent code; when present it must equal the code's prefix."""

ROLES: dict[str, tuple[str, LayerSpec]] = {
    "county": ("县界", COUNTY_LAYER),
    "towns": ("镇（街道）", TOWN_LAYER),
    "villages": ("村（社区）", VILLAGE_LAYER),
    "grids": ("网格", GRID_LAYER),
}
"""Each input's Chinese title and what its layer holds, in reading order."""

COUNTY_TIER = Tier(Level.COUNTY, "县", None, "6位数字（GB/T 2260 县级代码）")
TOWN_TIER = Tier(
    Level.TOWN,
    "镇（街道）",
    "县",
    "9位数字（县6+镇3）",
    parents_from="县界",
    empty_parent_kind="county_without_towns",
    labels={"overlap": "镇（街道）重叠", "gap": "县内空隙", "outside_parent": "超出县界"},
)
VILLAGE_TIER = Tier(
    Level.VILLAGE,
    "村（社区）",
    "镇（街道）",
    "12位数字（县6+镇3+村3）",
    parents_from="镇（街道）图层",
    empty_parent_kind="town_without_villages",
    labels={
        "overlap": "村（社区）重叠",
        "gap": "镇（街道）内空隙",
        "outside_parent": "超出所属镇（街道）",
        "missing_parent": "所属镇（街道）不存在",
    },
)
_LEVEL_ROLES = {Level.TOWN: "towns", Level.VILLAGE: "villages"}


@dataclass(frozen=True)
class Source:
    """One input file and, for a GeoPackage of several layers, the layer to read."""

    path: Path
    layer: str | None = None


# ---------------------------------------------------------------------------
# The report


@dataclass
class RegionImportReport:
    """What a region import found and did: problems by layer, changes, grid set, departments."""

    dry_run: bool = False
    layers: dict[str, ImportReport] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)  # not of one layer
    county_code: str | None = None
    county_name: str | None = None
    county_created: bool = False
    changes: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    grids_checked: str | None = None
    departments: int | None = None
    removed_departments: list[str] = field(default_factory=list)
    grid_set_id: int | None = None
    grid_set_name: str | None = None
    grid_count: int = 0
    previous_grid_set_id: int | None = None
    saved: bool = False
    timings_s: dict[str, float] = field(default_factory=dict)

    def all_problems(self) -> list[tuple[str | None, Problem]]:
        """Return (input role or None, problem) for every problem, errors first."""
        tagged: list[tuple[str | None, Problem]] = [
            (role, p) for role, layer in self.layers.items() for p in layer.sorted_problems()
        ]
        tagged += [(None, p) for p in ImportReport("", problems=self.problems).sorted_problems()]
        return sorted(tagged, key=lambda t: t[1].severity != ERROR)

    @property
    def errors(self) -> list[Problem]:
        """Return the problems that refuse the import."""
        return [p for _, p in self.all_problems() if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        """Return the problems that do not refuse the import."""
        return [p for _, p in self.all_problems() if p.severity != ERROR]

    @property
    def ok(self) -> bool:
        """Return whether every check passed."""
        return not self.errors

    @property
    def changed(self) -> bool:
        """Return whether the import wrote anything."""
        return self.saved and (
            self.county_created
            or self.grid_set_id is not None
            or any(c[k] for c in self.changes.values() for k in ("added", "updated", "removed"))
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {
            "ok": self.ok,
            "saved": self.saved,
            "changed": self.changed,
            "dry_run": self.dry_run,
            "county": {
                "code": self.county_code,
                "name": self.county_name,
                "created": self.county_created,
            },
            "layers": {
                role: {
                    "source": layer.source,
                    "layer": layer.layer,
                    "fields": dict(layer.fields),
                    "crs": {
                        "source": layer.crs,
                        "name": layer.crs_name,
                        "origin": layer.crs_origin,
                    },
                    "features": layer.counts.get("features", 0),
                }
                for role, layer in self.layers.items()
            },
            "changes": {level: dict(c) for level, c in self.changes.items()},
            "grids_checked": self.grids_checked,
            "departments": self.departments,
            "removed_departments": list(self.removed_departments),
            "grid_set": (
                {
                    "id": self.grid_set_id,
                    "name": self.grid_set_name,
                    "grid_count": self.grid_count,
                    "previous_id": self.previous_grid_set_id,
                }
                if self.grid_set_id is not None
                else None
            ),
            "counts": {"errors": len(self.errors), "warnings": len(self.warnings)},
            "problems": [{**p.to_dict(), "layer": role} for role, p in self.all_problems()],
            "timings_s": {k: round(v, 4) for k, v in self.timings_s.items()},
        }

    def to_text(self) -> str:
        """Return the report as Chinese text, one line per problem."""
        county = f"{self.county_code or '?'} {self.county_name or ''}".strip()
        lines = [f"区划导入检查：县 {county}" + ("（新建）" if self.county_created else "")]
        for role, layer in self.layers.items():
            lines.extend(layer.describe_source(ROLES[role][0]))
        counted = [
            f"{ROLES[role][0]} {layer.counts['features']} 个"
            for role, layer in self.layers.items()
            if "features" in layer.counts
        ]
        if counted:
            lines.append("要素：" + "；".join(counted))
        if self.grids_checked:
            lines.append(f"网格一致性：已按新的村（社区）边界检查{self.grids_checked}")
        lines.append(f"检查结果：错误 {len(self.errors)} 个，警告 {len(self.warnings)} 个")
        for tag, problem in self.all_problems():
            where = f"〔{ROLES[tag][0]}〕" if tag else ""
            lines.append(where + problem.to_text())
        lines.extend(self._change_lines())
        lines.append(self.conclusion())
        return "\n".join(lines)

    def _change_lines(self) -> list[str]:
        lines = []
        for level, label in (("town", "镇（街道）"), ("village", "村（社区）")):
            c = self.changes.get(level)
            if c is None:
                continue
            line = (
                f"{label}：新增 {len(c['added'])} 个，更新 {len(c['updated'])} 个，"
                f"删除 {len(c['removed'])} 个，不变 {len(c['unchanged'])} 个"
            )
            if c["removed"]:
                line += f"（删除：{'、'.join(c['removed'])}）"
            lines.append(line)
        if self.removed_departments:
            lines.append(f"随镇（街道）删除的部门：{'、'.join(self.removed_departments)}")
        return lines

    def conclusion(self) -> str:
        """Return the one-line Chinese verdict."""
        if self.errors:
            return (
                f"结论：拒绝导入。存在 {len(self.errors)} 个错误，区划整体未导入，数据库保持不变；"
                "请在 GIS 软件中修正后重新导入（本系统不自动修复几何）。"
            )
        if not self.saved:
            return "结论：仅检查（--dry-run），未发现错误，可以导入。"
        if not self.changed:
            return "结论：文件与数据库中的区划一致，未作任何改动。"
        grid_set = (
            f"已导入网格集 #{self.grid_set_id}「{self.grid_set_name}」"
            f"（{self.grid_count} 个网格），已设为当前网格集。"
            if self.grid_set_id is not None
            else ""
        )
        return (
            f"结论：已导入 {self.county_name}（{self.county_code}）的区划"
            + ("（新建县）" if self.county_created else "")
            + f"；部门 {self.departments or 0} 个已就绪。{grid_set}"
        )


# ---------------------------------------------------------------------------
# The pipeline


@dataclass
class RegionImport:
    """One region import on its way through `STEPS`."""

    sources: dict[str, Source]
    county: str | None = None
    name: str | None = None
    crs: str | None = None
    encoding: str | None = None
    dry_run: bool = False
    threshold_m2: float = THRESHOLD_M2
    report: RegionImportReport = field(init=False)
    reads: dict[str, LayerRead] = field(default_factory=dict)
    county_record: GridRecord | None = None
    county_row: int = 0
    records: dict[str, list[GridRecord]] = field(default_factory=dict)
    existing: dict[str, Region] = field(default_factory=dict)
    removed: dict[str, list[str]] = field(default_factory=dict)
    stopped: bool = False

    def __post_init__(self) -> None:
        self.report = RegionImportReport(dry_run=self.dry_run)

    def add(self, problem: Problem) -> None:
        """Record a problem that belongs to no one layer."""
        self.report.problems.append(problem)

    def stop_if_errors(self) -> None:
        """Stop the pipeline when anything so far is an error."""
        self.stopped = self.stopped or not self.report.ok


RegionStep = Callable[[RegionImport, Session], None]


def read_layers(job: RegionImport, session: Session) -> None:
    """Read every input's layer and find its code and name columns."""
    for role, (_title, spec) in ROLES.items():
        source = job.sources.get(role)
        if source is None:
            continue
        read = LayerRead(
            source.path,
            crs=job.crs,
            layer=source.layer,
            encoding=job.encoding,
            spec=spec,
            need_code=not (role == "county" and job.county),
            need_name=role in ("towns", "villages") or (role == "county" and not job.name),
        )
        job.reads[role] = read
        job.report.layers[role] = read.report
        read_file(read)
        if not read.stopped:
            read_fields(read)
        job.stopped = job.stopped or read.stopped


def pick_county(job: RegionImport, session: Session) -> None:
    """Choose the county's feature: the only one, or the one coded --county."""
    read = job.reads["county"]
    rows = list(range(len(read.codes)))
    if job.county and any(read.codes):
        rows = [i for i in rows if read.codes[i] == job.county]
    if len(rows) != 1:
        found = "、".join(sorted({c for c in read.codes if c})) or "无编码"
        read.add(
            Problem(
                ERROR,
                "county_feature",
                f"县界图层须恰有 1 个该县的要素，现有 {len(rows)} 个（图层中的编码：{found}）；"
                "多个县的图层请用 --county 选定，一个县分成多个要素的请在 GIS 软件中合并",
                [job.county] if job.county else [],
            )
        )
        job.stopped = True
        return
    i = job.county_row = rows[0]
    code = job.county or read.codes[i]
    name = job.name or read.names[i]
    job.county_record = GridRecord(code, name, read.frame.geometry.values[i])
    job.report.county_code, job.report.county_name = code, name


def normalise_crs(job: RegionImport, session: Session) -> None:
    """Transform every layer to WGS84, checking each against the county's boundary."""
    assert job.county_record is not None
    code = job.county_record.code
    existing = session.get(Region, code)
    place = f"{job.county_record.name}（{code}）"
    county_read = job.reads["county"]
    transform_to_wgs84(county_read, existing.geom if existing else None, place, [code])
    if county_read.stopped:
        job.stopped = True
        return
    assert county_read.geoms is not None
    geom = county_read.geoms[job.county_row]
    job.county_record = replace(job.county_record, geom=geom)
    usable = _usable([geom])[0]
    for role, read in job.reads.items():
        if role == "county":
            continue
        transform_to_wgs84(read, geom if usable else None, place)
        job.stopped = job.stopped or read.stopped
        if not read.stopped:
            assert read.geoms is not None
            job.records[role] = [
                GridRecord(c, n, g)
                for c, n, g in zip(read.codes, read.names, read.geoms, strict=True)
            ]


def check_layers(job: RegionImport, session: Session) -> None:
    """Check the county, then towns tiling the county, then villages tiling their towns."""
    assert job.county_record is not None
    county = job.county_record
    threshold = job.threshold_m2
    timings = job.report.timings_s
    layers = job.report.layers
    layers["county"].problems += check_tiling([county], {}, county.code, COUNTY_TIER)
    county_geom = county.geom if _usable([county.geom])[0] else None
    towns = job.records["towns"]
    layers["towns"].problems += check_tiling(
        towns,
        {county.code: county_geom},
        county.code,
        TOWN_TIER,
        threshold_m2=threshold,
        timings=timings,
    )
    usable = _usable([t.geom for t in towns])
    town_geoms = {
        t.code: (t.geom if ok else None)
        for t, ok in zip(towns, usable, strict=True)
        if len(t.code) == 9 and t.code.isdigit() and t.code.startswith(county.code)
    }
    layers["villages"].problems += check_tiling(
        job.records["villages"],
        town_geoms,
        county.code,
        VILLAGE_TIER,
        threshold_m2=threshold,
        timings=timings,
    )
    for role in ("towns", "villages"):
        _check_parent_column(job.reads[role], county.code)
    job.stop_if_errors()


def compare(job: RegionImport, session: Session) -> None:
    """Find what the import adds, updates and removes; refuse removals that orphan data."""
    assert job.county_record is not None
    county = job.county_record.code
    job.existing = {
        r.code: r
        for r in session.scalars(
            select(Region).where(
                Region.code.startswith(county), Region.level.in_([Level.TOWN, Level.VILLAGE])
            )
        )
    }
    job.report.county_created = session.get(Region, county) is None
    for level, role in _LEVEL_ROLES.items():
        in_file = {r.code for r in job.records[role]}
        stored = {c for c, r in job.existing.items() if r.level == level}
        job.removed[role] = sorted(stored - in_file)
    _guard_removals(job, session)
    job.stop_if_errors()


def check_grids_still_tile(job: RegionImport, session: Session) -> None:
    """Check the grid set to be active — the given one or the stored one — on the new villages."""
    assert job.county_record is not None
    county = job.county_record.code
    villages = {r.code: r.geom for r in job.records["villages"]}
    given = job.records.get("grids")
    if given is not None:
        job.report.layers["grids"].problems += check_grids(
            given, villages, county, threshold_m2=job.threshold_m2
        )
        job.report.grids_checked = f"随区划导入的网格（{len(given)} 个）"
        job.stop_if_errors()
        return
    active = active_grid_set(session, county)
    if active is None:
        return
    rows = session.execute(
        select(Grid.code, Grid.name, Grid.geom).where(Grid.grid_set_id == active.id)
    ).all()
    stored = [GridRecord(code, name, geom) for code, name, geom in rows]
    reported = {c for p in job.report.problems if p.kind == "region_has_grids" for c in p.codes}
    prefix = f"当前网格集 #{active.id}「{active.name}」："
    for problem in check_grids(stored, villages, county, threshold_m2=job.threshold_m2):
        if problem.severity != ERROR:
            continue  # slivers the set was accepted with
        if problem.kind == "missing_parent" and problem.codes[-1] in reported:
            continue  # reported once, as the removal it is
        job.add(replace(problem, message_zh=prefix + problem.message_zh))
    job.report.grids_checked = f"当前网格集 #{active.id}（{len(stored)} 个网格）"
    job.stop_if_errors()


def save(job: RegionImport, session: Session) -> None:
    """Write the regions, remove the dropped ones, set up departments, store the grid set."""
    if job.dry_run or not job.report.ok:
        return
    assert job.county_record is not None
    county = job.county_record
    report = job.report
    upsert_region(
        session,
        county.code,
        Level.COUNTY,
        county.name,
        None,
        county.geom,
        synthetic=False,
        source=_source_note(job.reads["county"].report),
    )
    for level, role in _LEVEL_ROLES.items():
        changes: dict[str, list[str]] = {"added": [], "updated": [], "unchanged": []}
        source = _source_note(job.reads[role].report)
        for record in job.records[role]:
            outcome = upsert_region(
                session,
                record.code,
                level,
                record.name,
                record.code[: 6 if level == Level.TOWN else 9],
                record.geom,
                synthetic=False,
                source=source,
            )
            changes[outcome].append(record.code)
            session.flush()  # a town before its villages (the parent key)
        report.changes[level.value] = {**changes, "removed": job.removed[role]}
    session.flush()
    removed_towns = job.removed["towns"]
    for department in session.scalars(
        select(Department).where(Department.region_code.in_(removed_towns))
    ):
        report.removed_departments.append(department.code)
        session.delete(department)
    for role in ("villages", "towns"):
        for code in job.removed[role]:
            session.delete(job.existing[code])
            mark_geodata_changed(session)
        session.flush()
    report.departments = setup_county(session, county.code)["departments"]
    given = job.records.get("grids")
    if given is not None:
        previous = active_grid_set(session, county.code)
        grids_read = job.reads["grids"].report
        grid_set = save_grid_set(
            session,
            county.code,
            given,
            name=f"{county.name}网格（{Path(grids_read.source).name}）"[:200],
            source=_source_note(grids_read),
        )
        report.grid_set_id, report.grid_set_name = grid_set.id, grid_set.name
        report.grid_count = grid_set.grid_count
        report.previous_grid_set_id = previous.id if previous else None
    report.saved = True


STEPS: tuple[tuple[str, RegionStep], ...] = (
    ("read", read_layers),
    ("county", pick_county),
    ("crs", normalise_crs),
    ("check", check_layers),
    ("compare", compare),
    ("grids", check_grids_still_tile),
    ("save", save),
)
"""The named steps of a region import, in order."""


def import_region_files(
    session: Session,
    *,
    county_file: Source | str | Path,
    towns: Source | str | Path,
    villages: Source | str | Path,
    grids: Source | str | Path | None = None,
    county: str | None = None,
    name: str | None = None,
    crs: str | None = None,
    encoding: str | None = None,
    dry_run: bool = False,
    threshold_m2: float = THRESHOLD_M2,
) -> RegionImportReport:
    """Check a county's region layers and, unless dry_run or any error, save them.

    With `grids`, that grid file is checked against the new villages and becomes the
    county's active grid set in the same transaction. Writes only by flushing into
    `session`; the caller commits (or rolls back) once, then forgets cached geometry
    (`forget_cached_geometry`).
    """
    given = {"county": county_file, "towns": towns, "villages": villages, "grids": grids}
    job = RegionImport(
        {role: _as_source(s) for role, s in given.items() if s is not None},
        county=county,
        name=name,
        crs=crs,
        encoding=encoding,
        dry_run=dry_run,
        threshold_m2=threshold_m2,
    )
    run_steps(job, session, STEPS, job.report.timings_s)
    return job.report


def forget_cached_geometry() -> None:
    """Drop this process's cached grid index and map polygons (after a committed import)."""
    from gridgov import mapdata
    from gridgov.geo.geocoder import clear_index_cache

    clear_index_cache()
    mapdata.clear_cache()


# ---------------------------------------------------------------------------
# Helpers


def _as_source(value: Source | str | Path) -> Source:
    return value if isinstance(value, Source) else Source(Path(value))


def _source_note(report: ImportReport) -> str:
    return f"{Path(report.source).name}；坐标系 {report.crs}（{report.crs_name}）"


def _usable(geoms: Sequence[BaseGeometry | None]) -> list[bool]:
    """Return which geometries are valid, non-empty polygons with finite coordinates."""
    array = np.array([shapely.Polygon() if g is None else g for g in geoms], dtype=object)
    polygonal = np.isin(
        shapely.get_type_id(array),
        [shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON],
    )
    finite = np.array([np.isfinite(shapely.get_coordinates(g)).all() for g in array], dtype=bool)
    ok = polygonal & finite & ~shapely.is_empty(array)
    ok[ok] = shapely.is_valid(array[ok])
    return [bool(x) for x in ok]


def _check_parent_column(read: LayerRead, county: str) -> None:
    """Report rows whose parent-code column names another parent than the code's prefix."""
    frame = read.frame
    columns = {str(c).strip().lower(): c for c in frame.columns if c != frame.geometry.name}
    column = next((columns[c] for c in PARENT_FIELDS if c in columns), None)
    if column is None:
        return
    length = 6 if read.spec is TOWN_LAYER else 9
    for code, value in zip(read.codes, frame[column], strict=True):
        parent = "" if value is None else str(value).strip()
        if parent.endswith(".0"):
            parent = parent[:-2]
        if not parent or len(code) != length + 3 or not code.isdigit():
            continue
        if parent != code[:length]:
            read.add(
                Problem(
                    ERROR,
                    "parent_mismatch",
                    f"{read.spec.what} {code} 的上级编码为 {parent}，但编码前缀表明属于 "
                    f"{code[:length]}：编码前缀即隶属关系，改隶须换新编码",
                    [code, parent],
                )
            )


def _count_by(session: Session, column: Any, codes: Iterable[str], *where: Any) -> dict[str, int]:
    """Return how many rows have each of `codes` in `column`."""
    codes = list(codes)
    if not codes:
        return {}
    rows = session.execute(
        select(column, func.count()).where(column.in_(codes), *where).group_by(column)
    )
    return {code: n for code, n in rows}


def _guard_removals(job: RegionImport, session: Session) -> None:
    """Refuse to remove a region that grids, events, users or departments still need."""
    county = job.report.county_code or ""
    removed_villages, removed_towns = job.removed["villages"], job.removed["towns"]
    removed = removed_villages + removed_towns
    if not removed:
        return
    active = active_grid_set(session, county)
    given = job.records.get("grids")
    in_active: dict[str, int] = defaultdict(int)
    if given is not None:
        for record in given:
            if record.code[:12] in removed_villages:
                in_active[record.code[:12]] += 1
    elif active is not None:
        in_active.update(
            _count_by(session, Grid.village_code, removed_villages, Grid.grid_set_id == active.id)
        )
    history: dict[str, set[int]] = defaultdict(set)
    history_query = select(Grid.village_code, Grid.grid_set_id).where(
        Grid.village_code.in_(removed_villages)
    )
    if given is None and active is not None:
        history_query = history_query.where(Grid.grid_set_id != active.id)
    for village, set_id in session.execute(history_query.distinct()):
        history[village].add(set_id)
    events: dict[str, int] = defaultdict(int)
    for column in (
        Event.village_code,
        Event.town_code,
        Event.holder_region_code,
        Event.dispatcher_region_code,
    ):
        for code, n in _count_by(session, column, removed).items():
            events[code] += n
    users = _count_by(session, User.region_code, removed)
    busy_departments = _busy_departments(session, removed_towns)
    for code in removed:
        level = "村（社区）" if len(code) == 12 else "镇（街道）"
        if in_active.get(code):
            which = "随区划导入的网格" if given is not None else f"当前网格集 #{active.id}"  # type: ignore[union-attr]
            job.add(
                Problem(
                    ERROR,
                    "region_has_grids",
                    f"文件中没有{level} {code}，但{which}中仍有它的 {in_active[code]} 个网格；"
                    "请先导入不含该村的网格（可用 --grids 与区划一并导入）",
                    [code],
                )
            )
        if history.get(code):
            sets = "、".join(f"#{i}" for i in sorted(history[code]))
            job.add(
                Problem(
                    ERROR,
                    "region_in_grid_history",
                    f"文件中没有{level} {code}，但历史网格集 {sets} 仍引用它，不能删除",
                    [code],
                )
            )
        if events.get(code):
            job.add(
                Problem(
                    ERROR,
                    "region_has_events",
                    f"文件中没有{level} {code}，但有 {events[code]} 个事件属于它；"
                    "事件保留其区划，不能删除",
                    [code],
                )
            )
        if users.get(code):
            job.add(
                Problem(
                    ERROR,
                    "region_has_users",
                    f"文件中没有{level} {code}，但有 {users[code]} 个用户的辖区是它；"
                    "请先调整这些用户的辖区",
                    [code],
                )
            )
        if busy_departments.get(code):
            job.add(
                Problem(
                    ERROR,
                    "region_has_departments",
                    f"文件中没有{level} {code}，但其部门 {'、'.join(busy_departments[code])} "
                    "仍有用户或事件",
                    [code, *busy_departments[code]],
                )
            )
    for code in removed:
        if not any(p.codes[:1] == [code] for p in job.report.problems):
            level = "村（社区）" if len(code) == 12 else "镇（街道）"
            job.add(
                Problem(
                    WARNING,
                    "region_removed",
                    f"文件中没有{level} {code}（{job.existing[code].name}），导入时将删除",
                    [code],
                )
            )


def _busy_departments(session: Session, towns: Sequence[str]) -> dict[str, list[str]]:
    """Return, per town, the codes of its departments that users or events refer to."""
    if not towns:
        return {}
    busy: dict[str, list[str]] = defaultdict(list)
    for department in session.scalars(
        select(Department).where(Department.region_code.in_(towns)).order_by(Department.code)
    ):
        used = session.scalar(
            select(func.count()).select_from(User).where(User.department_id == department.id)
        ) or session.scalar(
            select(func.count())
            .select_from(Event)
            .where(
                or_(
                    Event.holder_department_id == department.id,
                    Event.lead_department_id == department.id,
                )
            )
        )
        used = used or session.scalar(
            select(func.count())
            .select_from(EventAssignment)
            .where(EventAssignment.department_id == department.id)
        )
        if used:
            busy[department.region_code].append(department.code)
    return busy
