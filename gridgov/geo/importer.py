"""Import a county's grid map: read → normalise CRS → check → save, refused on any error.

Grid maps arrive from counties as Shapefile (plain or zipped), GeoPackage or GeoJSON, often
in CGCS2000 (EPSG:4490) or a Gauss–Krüger zone, sometimes with overlaps, gaps and slivers.
Each import runs the named steps of `STEPS` over one `GridImport`; each step adds `Problem`s
to the `ImportReport`, and a step that cannot go on stops the pipeline. The set is saved only
when no step reported an error: a set that does not tile its villages exactly (横向到边、
纵向到底) is refused whole, and nothing is repaired silently — an invalid polygon is an
error to fix in the GIS, never `make_valid`-ed here.

The reading steps (`read_file`, `read_fields`, `transform_to_wgs84` over a `LayerRead`) and
the checker (`check_tiling`, children of one level tiling parents of the level above, described
by a `Tier`) serve the region import (`gridgov.geo.regions_import`) as well.

Areas are geodesic square metres (`gridgov.geo.crs.area_m2`); locations are WGS84 (lng, lat).
"""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from time import perf_counter
from typing import Any, Literal, Protocol, TypeVar

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import pyogrio
import pyogrio.errors
import shapely
from pyproj import CRS as ProjCRS
from pyproj import Transformer
from pyproj.exceptions import CRSError
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry
from sqlalchemy import select
from sqlalchemy.orm import Session

from gridgov.geo.crs import area_m2
from gridgov.geo.gridsets import GridRecord, save_grid_set
from gridgov.models import CODE_LENGTHS, Level, Region
from gridgov.regions import active_grid_set

__all__ = [
    "CODE_FIELDS",
    "FLOOR_M2",
    "GRID_LAYER",
    "GRID_TIER",
    "NAME_FIELDS",
    "STEPS",
    "THRESHOLD_M2",
    "GridImport",
    "ImportReport",
    "LayerRead",
    "LayerSpec",
    "Problem",
    "Tier",
    "check_grids",
    "check_tiling",
    "county_villages",
    "import_grid_file",
    "read_fields",
    "read_file",
    "run_steps",
    "transform_to_wgs84",
]

Severity = Literal["error", "warning"]
ERROR: Severity = "error"
WARNING: Severity = "warning"

THRESHOLD_M2 = 1.0
"""An overlap, gap or outside piece larger than this (m²) refuses the set."""

FLOOR_M2 = 0.01
"""Pieces smaller than this (m²) are coordinate rounding (1e-7° ≈ 1 cm), not slivers."""

WGS84 = "EPSG:4326"
NAME_MAX_LENGTH = 64  # Grid.name is String(64)

CODE_FIELDS = ("code", "grid_code", "gridcode", "wgbm", "wgdm", "网格编码", "网格代码", "编码")
"""Column names accepted for the 15-digit grid code, in order of preference (any case)."""

NAME_FIELDS = ("name", "grid_name", "gridname", "wgmc", "网格名称", "名称")
"""Column names accepted for the grid name, in order of preference (any case)."""

KIND_LABELS: dict[str, str] = {
    "read_failed": "无法读取文件",
    "read_warning": "读取提示",
    "bad_encoding": "属性编码错误",
    "empty_file": "文件无要素",
    "no_layer": "图层不存在",
    "first_layer": "多图层",
    "no_code_field": "缺少编码字段",
    "no_name_field": "缺少名称字段",
    "no_county": "无法确定所属县",
    "unknown_county": "县不存在",
    "bad_crs": "坐标系无法识别",
    "no_crs": "缺少坐标系",
    "crs_assumed": "坐标系按经纬度处理",
    "crs_overridden": "坐标系以参数为准",
    "outside_county": "不在县域范围内",
    "empty_geometry": "空几何",
    "not_polygon": "非面几何",
    "invalid_geometry": "几何无效",
    "bad_coordinates": "坐标无效",
    "bad_code": "编码格式错误",
    "duplicate_code": "编码重复",
    "wrong_county": "编码不属于本县",
    "missing_parent": "所属村（社区）不存在",
    "empty_name": "名称为空",
    "name_too_long": "名称过长",
    "overlap": "网格重叠",
    "gap": "村内空隙",
    "outside_parent": "超出所属村（社区）",
    "village_without_geometry": "村（社区）无边界",
    "village_without_grids": "村（社区）无网格",
    "county_feature": "县界要素不唯一",
    "parent_mismatch": "上级编码与编码前缀不符",
    "county_without_towns": "县无镇（街道）",
    "town_without_villages": "镇（街道）无村（社区）",
    "region_has_grids": "删除的村（社区）仍有网格",
    "region_has_events": "删除的区划仍有事件",
    "region_in_grid_history": "删除的村（社区）在历史网格集中",
    "region_has_users": "删除的区划仍有用户",
    "region_has_departments": "删除的镇（街道）的部门仍在使用",
    "region_removed": "删除区划",
}
"""The Chinese name of each problem kind, as the text report prints it."""

_CODE_RE = re.compile(r"\d{15}")
_REASON_POINT_RE = re.compile(r"\[\s*([-+0-9.eE]+)\s+([-+0-9.eE]+)")
_POLYGONAL = (shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON)
_EARTH_RADIUS_M = 6371008.8
_UTF8_ONLY = (".gpkg", ".geojson", ".json")
_SUGGEST_WITHIN_M = 100_000.0


# ---------------------------------------------------------------------------
# Problems and the report


@dataclass(frozen=True)
class Problem:
    """One thing wrong with (error) or worth knowing about (warning) an imported grid map."""

    severity: Severity
    kind: str
    message_zh: str
    codes: list[str] = field(default_factory=list)
    area_m2: float | None = None
    location: tuple[float, float] | None = None
    label_zh: str | None = None  # the kind's name for a level other than grids

    @property
    def label(self) -> str:
        """Return the Chinese name of the problem's kind."""
        return self.label_zh or KIND_LABELS.get(self.kind, self.kind)

    def to_dict(self) -> dict[str, Any]:
        """Return the problem as JSON-ready data."""
        return {
            "severity": self.severity,
            "kind": self.kind,
            "label": self.label,
            "message": self.message_zh,
            "codes": list(self.codes),
            "area_m2": None if self.area_m2 is None else round(self.area_m2, 2),
            "location": None if self.location is None else list(self.location),
        }

    def to_text(self) -> str:
        """Return the problem as one line of the Chinese report."""
        severity = "错误" if self.severity == ERROR else "警告"
        codes = "、".join(self.codes) or "—"
        area = "—" if self.area_m2 is None else f"{self.area_m2:.2f}"
        where = "—" if self.location is None else f"{self.location[0]:.6f}, {self.location[1]:.6f}"
        return (
            f"[{severity}] 类型：{self.label}；编码：{codes}；面积(平方米)：{area}；"
            f"位置(经纬度)：{where}；{self.message_zh}"
        )


def _error(kind: str, message: str, codes: Sequence[str] = (), **where: Any) -> Problem:
    return Problem(ERROR, kind, message, list(codes), **where)


def _warning(kind: str, message: str, codes: Sequence[str] = (), **where: Any) -> Problem:
    return Problem(WARNING, kind, message, list(codes), **where)


@dataclass
class ImportReport:
    """What an import found and did: problems, counts, coordinate system, the saved set."""

    source: str
    dry_run: bool = False
    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    layer: str | None = None
    fields: dict[str, str | None] = field(default_factory=dict)
    crs: str | None = None
    crs_name: str | None = None
    crs_origin: Literal["file", "option", "assumed"] | None = None
    county_code: str | None = None
    county_name: str | None = None
    grid_set_id: int | None = None
    grid_set_name: str | None = None
    previous_grid_set_id: int | None = None
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        """Return the problems that refuse the set."""
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        """Return the problems that do not refuse the set."""
        return [p for p in self.problems if p.severity == WARNING]

    @property
    def ok(self) -> bool:
        """Return whether the file passed every check."""
        return not self.errors

    @property
    def saved(self) -> bool:
        """Return whether the set was stored (and made active)."""
        return self.grid_set_id is not None

    def sorted_problems(self) -> list[Problem]:
        """Return the problems, errors first, then by kind and code."""
        order = {kind: n for n, kind in enumerate(KIND_LABELS)}
        return sorted(
            self.problems,
            key=lambda p: (p.severity != ERROR, order.get(p.kind, len(order)), p.codes),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {
            "ok": self.ok,
            "saved": self.saved,
            "dry_run": self.dry_run,
            "source": self.source,
            "layer": self.layer,
            "fields": dict(self.fields),
            "crs": {"source": self.crs, "name": self.crs_name, "origin": self.crs_origin},
            "county": {"code": self.county_code, "name": self.county_name},
            "counts": {**self.counts, "errors": len(self.errors), "warnings": len(self.warnings)},
            "grid_set": (
                {
                    "id": self.grid_set_id,
                    "name": self.grid_set_name,
                    "grid_count": self.counts.get("grids", 0),
                    "previous_id": self.previous_grid_set_id,
                }
                if self.saved
                else None
            ),
            "problems": [p.to_dict() for p in self.sorted_problems()],
            "timings_s": {k: round(v, 4) for k, v in self.timings_s.items()},
        }

    def describe_source(self, title: str) -> list[str]:
        """Return the lines naming the file, its layer and its coordinate system."""
        lines = [f"{title}：{self.source}" + (f"（图层 {self.layer}）" if self.layer else "")]
        if self.crs:
            origin = {"file": "文件自带", "option": "--crs 指定", "assumed": "推定"}.get(
                self.crs_origin or "", ""
            )
            converted = "无需转换" if self.crs == WGS84 else "已转换为 WGS84（EPSG:4326）"
            lines.append(f"坐标系：{self.crs} {self.crs_name or ''}（{origin}），{converted}")
        return lines

    def to_text(self) -> str:
        """Return the report as Chinese text, one line per problem."""
        lines = self.describe_source("网格导入检查")
        if self.county_code:
            lines.append(f"县：{self.county_code} {self.county_name or ''}")
        labels = {
            "features": "要素",
            "villages_in_file": "涉及村（社区）",
            "villages_in_county": "本县村（社区）",
        }
        counted = [
            f"{label} {self.counts[key]} 个" for key, label in labels.items() if key in self.counts
        ]
        if counted:
            lines.append("；".join(counted))
        lines.append(f"检查结果：错误 {len(self.errors)} 个，警告 {len(self.warnings)} 个")
        lines.extend(p.to_text() for p in self.sorted_problems())
        lines.append(self.conclusion())
        return "\n".join(lines)

    def conclusion(self) -> str:
        """Return the one-line Chinese verdict."""
        if self.errors:
            return (
                f"结论：拒绝导入。存在 {len(self.errors)} 个错误，整套网格未导入，"
                "当前网格集保持不变；请在 GIS 软件中修正后重新导入（本系统不自动修复几何）。"
            )
        if self.saved:
            previous = (
                f"原网格集 #{self.previous_grid_set_id} 保留为历史版本（停用）。"
                if self.previous_grid_set_id
                else ""
            )
            return (
                f"结论：已导入网格集 #{self.grid_set_id}「{self.grid_set_name}」，"
                f"共 {self.counts.get('grids', 0)} 个网格，已设为当前网格集。{previous}"
            )
        return "结论：仅检查（--dry-run），未发现错误，可以导入。"


# ---------------------------------------------------------------------------
# The pipeline


@dataclass(frozen=True)
class LayerSpec:
    """What one layer holds: the Chinese noun of its features and the columns to look for."""

    what: str
    code_fields: tuple[str, ...]
    name_fields: tuple[str, ...]


GRID_LAYER = LayerSpec("网格", CODE_FIELDS, NAME_FIELDS)


@dataclass
class LayerRead:
    """One layer of one file on its way to WGS84 features: the state the reading steps share."""

    path: Path
    crs: str | None = None
    layer: str | None = None
    encoding: str | None = None
    spec: LayerSpec = GRID_LAYER
    need_code: bool = True  # a missing code column stops (else codes are left empty)
    need_name: bool = False  # a missing name column is an error (else the code stands in)
    report: ImportReport = field(init=False)
    frame: Any = None  # the GeoDataFrame as read
    codes: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    geoms: npt.NDArray[np.object_] | None = None  # WGS84 geometries, one per feature
    stopped: bool = False

    def __post_init__(self) -> None:
        self.report = ImportReport(source=str(self.path))

    def add(self, problem: Problem) -> None:
        """Record a problem."""
        self.report.problems.append(problem)

    def stop(self, problem: Problem) -> None:
        """Record a problem that leaves the later steps nothing to work on."""
        self.add(problem)
        self.stopped = True


@dataclass
class GridImport(LayerRead):
    """One grid import on its way through `STEPS`."""

    county: str | None = None
    name: str | None = None
    dry_run: bool = False
    threshold_m2: float = THRESHOLD_M2
    floor_m2: float = FLOOR_M2
    county_region: Region | None = None
    records: list[GridRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.report = ImportReport(source=str(self.path), dry_run=self.dry_run)


Step = Callable[[GridImport, Session], None]


def read_file(job: LayerRead) -> None:
    """Read the features of the file's chosen layer."""
    path = job.path
    if not path.exists():
        job.stop(_error("read_failed", f"文件不存在：{path}"))
        return
    try:
        layers = [str(row[0]) for row in pyogrio.list_layers(path)]
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
        job.stop(
            _error(
                "read_failed",
                f"无法读取 {path.name}（应为 Shapefile、ZIP 打包的 "
                f"Shapefile、GeoPackage 或 GeoJSON）：{exc}",
            )
        )
        return
    if not layers:
        job.stop(_error("empty_file", f"{path.name} 中没有图层"))
        return
    layer = job.layer
    if layer is None:
        layer = layers[0]
        if len(layers) > 1:
            job.add(
                _warning(
                    "first_layer",
                    f"文件含 {len(layers)} 个图层（{'、'.join(layers)}），已读取第一个图层"
                    f"「{layer}」；可用 --layer 指定",
                )
            )
    elif layer not in layers:
        job.stop(_error("no_layer", f"图层「{layer}」不存在；文件中的图层：{'、'.join(layers)}"))
        return
    job.report.layer = layer
    options: dict[str, Any] = {"layer": layer, "engine": "pyogrio"}
    if job.encoding and path.suffix.lower() in _UTF8_ONLY:
        job.add(
            _warning("read_warning", f"{path.suffix} 文件的属性总是 UTF-8 编码，已忽略 --encoding")
        )
    elif job.encoding:
        options["encoding"] = job.encoding
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            frame = gpd.read_file(path, **options)
    except (
        pyogrio.errors.DataSourceError,
        pyogrio.errors.DataLayerError,
        pyogrio.errors.FieldError,
        pyogrio.errors.GeometryError,
        pyogrio.errors.FeatureError,
        pyogrio.errors.CRSError,
        LookupError,
    ) as exc:
        job.stop(_error("read_failed", f"读取 {path.name} 失败：{exc}"))
        return
    except UnicodeDecodeError as exc:
        job.stop(
            _error(
                "read_failed",
                f"{path.name} 的属性表不能按 {job.encoding or 'UTF-8'} 解读（{exc.reason}）；"
                "中文 Shapefile 缺 .cpg 文件时多为 GBK 编码，请加 --encoding GBK 重试",
            )
        )
        return
    for warning in caught:
        job.add(_warning("read_warning", f"读取时提示：{warning.message}"))
    if len(frame) == 0:
        job.stop(_error("empty_file", f"{path.name} 图层「{layer}」中没有要素"))
        return
    job.frame = frame
    job.report.counts["features"] = len(frame)


def read_fields(job: LayerRead) -> None:
    """Find the code and name columns and read them as text."""
    frame = job.frame
    columns = {str(c).strip().lower(): str(c) for c in frame.columns if c != frame.geometry.name}
    if job.encoding is None:
        texts = [*columns.values()]
        for column in frame.columns:
            if column != frame.geometry.name:
                texts.extend(v for v in frame[column].head(200) if isinstance(v, str))
        decoded = _gbk_misread(texts)
        if decoded is not None:
            job.stop(
                _error(
                    "bad_encoding",
                    f"属性表疑似 GBK 编码被按 Latin-1 读成乱码（如「{decoded[0]}」应为"
                    f"「{decoded[1]}」）：Shapefile 缺 .cpg 文件时常见，请加 --encoding GBK 重试",
                )
            )
            return
    spec = job.spec
    code_col = next((columns[c] for c in spec.code_fields if c in columns), None)
    name_col = next((columns[c] for c in spec.name_fields if c in columns), None)
    job.report.fields = {"code": code_col, "name": name_col}
    found = "、".join(columns.values()) or "无"
    if code_col is not None:
        job.codes = [_code_text(v) for v in frame[code_col]]
    elif job.need_code:
        job.stop(_no_field("no_code_field", f"{spec.what}编码", spec.code_fields, found))
        return
    else:
        job.codes = [""] * len(frame)
    if name_col is not None:
        job.names = [_name_text(v) for v in frame[name_col]]
    elif job.need_name:
        job.stop(_no_field("no_name_field", f"{spec.what}名称", spec.name_fields, found))
    else:
        job.add(
            _warning(
                "no_name_field",
                f"未找到{spec.what}名称字段（可用字段名：{'、'.join(spec.name_fields)}），"
                f"名称以编码代替。文件中的字段：{found}",
            )
        )
        job.names = list(job.codes)


def _no_field(kind: str, what: str, accepted: Sequence[str], found: str) -> Problem:
    return _error(
        kind,
        f"未找到{what}字段；可用字段名：{'、'.join(accepted)}（不区分大小写）。文件中的字段：{found}",
    )


def resolve_county(job: GridImport, session: Session) -> None:
    """Take the county from --county, or from the codes' most common 6-digit prefix."""
    county = job.county
    if not county:
        prefixes = Counter(c[:6] for c in job.codes if _CODE_RE.fullmatch(c))
        if not prefixes:
            job.stop(
                _error("no_county", "没有格式正确的网格编码，无法确定所属县；请用 --county 指定")
            )
            return
        county = prefixes.most_common(1)[0][0]
    region = session.get(Region, county)
    if region is None or region.level != Level.COUNTY:
        job.stop(_error("unknown_county", f"县 {county} 不在区划表中", [county]))
        return
    job.county_region = region
    job.report.county_code = region.code
    job.report.county_name = region.name


def normalise_crs(job: GridImport, session: Session) -> None:
    """Transform the grids to WGS84, checking them against the county's boundary."""
    county = job.county_region
    place = f"{county.name}（{county.code}）" if county else ""
    transform_to_wgs84(job, county.geom if county else None, place, [county.code] if county else [])


def transform_to_wgs84(
    job: LayerRead, county_geom: BaseGeometry | None, place: str, codes: Sequence[str] = ()
) -> None:
    """Decide the file's CRS and transform every geometry to WGS84 lon/lat.

    `county_geom` (WGS84), when known, is where the features must lie: a file none of whose
    features meets it was read in the wrong CRS, and the error suggests the likely one.
    """
    frame = job.frame
    report = job.report
    file_crs: ProjCRS | None = frame.crs
    bounds = tuple(float(b) for b in frame.total_bounds)
    source: ProjCRS
    if job.crs:
        try:
            source = ProjCRS.from_user_input(job.crs)
        except CRSError as exc:
            job.stop(_error("bad_crs", f"无法识别 --crs {job.crs}：{exc}"))
            return
        report.crs_origin = "option"
        if file_crs is not None and not file_crs.equals(source, ignore_axis_order=True):
            job.add(
                _warning(
                    "crs_overridden",
                    f"文件自带坐标系 {_crs_label(file_crs)}，按 --crs 指定的 "
                    f"{_crs_label(source)} 解读",
                )
            )
    elif file_crs is not None:
        source = file_crs
        report.crs_origin = "file"
    elif _looks_lnglat(bounds):
        source = ProjCRS.from_epsg(4326)
        report.crs_origin = "assumed"
        job.add(
            _warning(
                "crs_assumed",
                "文件没有坐标系信息，坐标范围像经纬度，按 WGS84（EPSG:4326）处理；"
                "如不是，请用 --crs 指定",
            )
        )
    else:
        job.stop(
            _error(
                "no_crs",
                "文件没有坐标系信息（如 Shapefile 缺 .prj），坐标也不是经纬度"
                f"（范围 {bounds[0]:.0f}, {bounds[1]:.0f} – {bounds[2]:.0f}, {bounds[3]:.0f}）；"
                f"请用 --crs 指定坐标系。{_suggestion(bounds, county_geom)}",
            )
        )
        return
    report.crs = _crs_label(source)
    report.crs_name = source.name
    transformer = Transformer.from_crs(source, WGS84, always_xy=True)

    def to_wgs84(xy: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    raw = np.asarray(frame.geometry.values, dtype=object)
    raw = np.array([Polygon() if g is None else g for g in raw], dtype=object)
    with np.errstate(invalid="ignore"):
        job.geoms = shapely.transform(raw, to_wgs84)
    if county_geom is not None and not _near(job.geoms, county_geom):
        job.stop(
            _error(
                "outside_county",
                f"全部{job.spec.what}都不在 {place} 范围内或无法转换：坐标系可能有误"
                f"（现按 {report.crs} {source.name} 解读）。{_suggestion(bounds, county_geom)}",
                codes,
            )
        )


def check(job: GridImport, session: Session) -> None:
    """Run every grid check against the county's villages in the database."""
    assert job.geoms is not None and job.county_region is not None
    job.records = [
        GridRecord(code, name, geom)
        for code, name, geom in zip(job.codes, job.names, job.geoms, strict=True)
    ]
    villages = county_villages(session, job.county_region.code)
    job.report.problems.extend(
        check_grids(
            job.records,
            villages,
            job.county_region.code,
            threshold_m2=job.threshold_m2,
            floor_m2=job.floor_m2,
            timings=job.report.timings_s,
        )
    )
    in_file = {c[:12] for c in job.codes if _CODE_RE.fullmatch(c)}
    job.report.counts["villages_in_file"] = len(in_file)
    job.report.counts["villages_in_county"] = len(villages)
    job.report.counts["grids"] = len(job.records)


def save(job: GridImport, session: Session) -> None:
    """Store the set as the county's active one, unless checking only or refused."""
    if job.dry_run or job.report.errors:
        return
    assert job.county_region is not None
    county = job.county_region
    previous = active_grid_set(session, county.code)
    name = job.name or f"{county.name}网格（{job.path.name}）"
    grid_set = save_grid_set(
        session,
        county.code,
        job.records,
        name=name[:200],
        source=f"{job.path.name}；坐标系 {job.report.crs}（{job.report.crs_name}）",
    )
    job.report.grid_set_id = grid_set.id
    job.report.grid_set_name = grid_set.name
    job.report.previous_grid_set_id = previous.id if previous else None


STEPS: tuple[tuple[str, Step], ...] = (
    ("read", lambda job, _session: read_file(job)),
    ("fields", lambda job, _session: read_fields(job)),
    ("county", resolve_county),
    ("crs", normalise_crs),
    ("check", check),
    ("save", save),
)
"""The named steps of an import, in order."""


def import_grid_file(
    session: Session,
    path: str | Path,
    *,
    crs: str | None = None,
    layer: str | None = None,
    county: str | None = None,
    name: str | None = None,
    encoding: str | None = None,
    dry_run: bool = False,
    threshold_m2: float = THRESHOLD_M2,
) -> ImportReport:
    """Check a grid file and, unless dry_run or any error, save it as the county's active set.

    Writes only by flushing into `session`; the caller commits (or rolls back) once.
    """
    job = GridImport(
        Path(path),
        crs=crs,
        layer=layer,
        county=county,
        name=name,
        encoding=encoding,
        dry_run=dry_run,
        threshold_m2=threshold_m2,
    )
    run_steps(job, session, STEPS, job.report.timings_s)
    return job.report


class _Stoppable(Protocol):
    stopped: bool


JobT = TypeVar("JobT", bound=_Stoppable)


def run_steps(
    job: JobT,
    session: Session,
    steps: Sequence[tuple[str, Callable[[JobT, Session], None]]],
    timings: dict[str, float],
) -> None:
    """Run the named steps over `job` in order, timing each, until one stops it."""
    for step_name, step in steps:
        started = perf_counter()
        step(job, session)
        timings[step_name] = perf_counter() - started
        if job.stopped:
            break


# ---------------------------------------------------------------------------
# The checks (no database: records and parent polygons in, problems out)


@dataclass(frozen=True)
class Tier:
    """One level as the checker sees it: its features must tile their parents exactly.

    `labels` names the problem kinds for this level where KIND_LABELS (worded for grids)
    does not fit; `parent` is None for the county, which has no parent to tile.
    """

    level: Level
    child: str
    parent: str | None
    code_help: str
    parents_from: str = ""
    empty_parent_kind: str = ""
    empty_name: Severity = ERROR
    note_parent_without_geometry: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def parent_length(self) -> int:
        """Return the length of a parent's code (the prefix of a child's)."""
        order = list(CODE_LENGTHS.values())
        return order[order.index(self.level.code_length) - 1] if self.parent else 0


GRID_TIER = Tier(
    Level.GRID,
    "网格",
    "村（社区）",
    "15位数字（县6+镇3+村3+网格3）",
    parents_from="区划表",
    empty_parent_kind="village_without_grids",
    empty_name=WARNING,
    note_parent_without_geometry=True,
)


def county_villages(session: Session, county_code: str) -> dict[str, BaseGeometry | None]:
    """Return the county's villages (code → WGS84 polygon, None when it has none)."""
    rows = session.execute(
        select(Region.code, Region.geom).where(
            Region.level == Level.VILLAGE, Region.code.startswith(county_code)
        )
    )
    return {code: geom for code, geom in rows}


def check_grids(
    records: Sequence[GridRecord],
    villages: Mapping[str, BaseGeometry | None],
    county_code: str,
    *,
    threshold_m2: float = THRESHOLD_M2,
    floor_m2: float = FLOOR_M2,
    timings: dict[str, float] | None = None,
) -> list[Problem]:
    """Return every problem of `records` (WGS84) as a grid set of the county's `villages`."""
    return check_tiling(
        records,
        villages,
        county_code,
        GRID_TIER,
        threshold_m2=threshold_m2,
        floor_m2=floor_m2,
        timings=timings,
    )


def check_tiling(
    records: Sequence[GridRecord],
    parents: Mapping[str, BaseGeometry | None],
    county_code: str,
    tier: Tier,
    *,
    threshold_m2: float = THRESHOLD_M2,
    floor_m2: float = FLOOR_M2,
    timings: dict[str, float] | None = None,
) -> list[Problem]:
    """Return every problem of `records` (WGS84) as the `tier` level tiling its `parents`.

    A parent mapped to None has no polygon to check against (its children are still
    checked for codes, geometry and overlaps). Without a parent level (the county) only the
    geometry and the codes are checked.
    """
    checker = _Checker(records, parents, county_code, tier, threshold_m2, floor_m2)
    for name, run in _CHECKS:
        if tier.parent is None and name not in ("geometry", "codes"):
            continue
        started = perf_counter()
        run(checker)
        if timings is not None:
            timings[f"check.{name}"] = perf_counter() - started
    return checker.problems


class _Checker:
    """The state the checks share: geometries, which are usable, each feature's parent."""

    def __init__(
        self,
        records: Sequence[GridRecord],
        parents: Mapping[str, BaseGeometry | None],
        county_code: str,
        tier: Tier,
        threshold_m2: float,
        floor_m2: float,
    ) -> None:
        self.records = records
        self.parents = parents
        self.county = county_code
        self.tier = tier
        self.code_re = re.compile(rf"\d{{{tier.level.code_length}}}")
        self.threshold = threshold_m2
        self.floor = floor_m2
        self.problems: list[Problem] = []
        n = len(records)
        self.geoms = np.array([r.geom for r in records], dtype=object)
        self.usable = np.zeros(n, dtype=bool)  # a valid, non-empty (Multi)Polygon
        self.parent_of: list[str | None] = [None] * n  # an existing parent in this county
        self.outside_deg2 = np.zeros(n)
        self.overlap_parents: set[str] = set()
        lat = 0.0
        if n:
            _, min_y, _, max_y = shapely.total_bounds(self.geoms)
            if math.isfinite(min_y) and math.isfinite(max_y):
                lat = (min_y + max_y) / 2.0
        # Square metres per square degree here: planar degree areas only pre-filter pieces,
        # the areas reported are geodesic.
        self.m2_per_deg2 = (math.radians(1.0) * _EARTH_RADIUS_M) ** 2 * math.cos(math.radians(lat))

    def add(self, problem: Problem) -> None:
        label = self.tier.labels.get(problem.kind)
        self.problems.append(replace(problem, label_zh=label) if label else problem)

    def where(self, i: int) -> tuple[float, float] | None:
        """Return a location on feature `i` when its geometry is usable."""
        return _location(self.geoms[i]) if self.usable[i] else None

    def pieces(
        self, geom: BaseGeometry
    ) -> tuple[list[tuple[BaseGeometry, float]], BaseGeometry | None, float]:
        """Split `geom` into pieces above the threshold and the slivers between floor and it.

        Returns (large pieces with their areas, the slivers as one geometry, sliver area).
        """
        polygons = [
            p
            for p in shapely.get_parts(shapely.get_parts(geom))
            if shapely.get_type_id(p) == shapely.GeometryType.POLYGON
        ]
        large: list[tuple[BaseGeometry, float]] = []
        slivers: list[BaseGeometry] = []
        sliver_area = 0.0
        for polygon in polygons:
            if polygon.area * self.m2_per_deg2 < self.floor / 2:
                continue
            area = area_m2(polygon)
            if area > self.threshold:
                large.append((polygon, area))
            elif area >= self.floor:
                slivers.append(polygon)
                sliver_area += area
        sliver_geom = shapely.multipolygons(slivers) if slivers else None
        return large, sliver_geom, sliver_area

    def add_pieces(
        self,
        geom: BaseGeometry,
        kind: str,
        codes: Sequence[str],
        large_message: str,
        sliver_message: str,
        **fields: Any,
    ) -> None:
        """Report each large piece of `geom` as an error and its slivers as one warning.

        The messages are str.format templates of `fields` and `area` (square metres).
        """
        large, slivers, sliver_area = self.pieces(geom)
        for piece, area in large:
            message = large_message.format(area=area, **fields)
            self.add(_error(kind, message, codes, area_m2=area, location=_location(piece)))
        if slivers is not None:
            message = sliver_message.format(area=sliver_area, **fields)
            self.add(
                _warning(kind, message, codes, area_m2=sliver_area, location=_location(slivers))
            )


def _check_geometry(c: _Checker) -> None:
    """Report empty, non-polygonal, non-finite and invalid geometries."""
    geoms = c.geoms
    type_ids = shapely.get_type_id(geoms)
    empty = shapely.is_empty(geoms)
    non_finite = ~_finite(geoms)
    polygonal = np.isin(type_ids, _POLYGONAL)
    valid = shapely.is_valid(geoms)
    for i, record in enumerate(c.records):
        codes = [record.code] if record.code else []
        row = f"第 {i + 1} 个要素"
        if empty[i]:
            c.add(_error("empty_geometry", f"{row}几何为空", codes))
        elif not polygonal[i]:
            c.add(
                _error(
                    "not_polygon",
                    f"{row}是 {geoms[i].geom_type}，{c.tier.child}必须是面（Polygon/MultiPolygon）",
                    codes,
                    location=_location(geoms[i]),
                )
            )
        elif non_finite[i]:
            c.add(_error("bad_coordinates", f"{row}有无效坐标（坐标转换失败或非数值）", codes))
        elif not valid[i]:
            reason = shapely.is_valid_reason(geoms[i])
            c.add(
                _error(
                    "invalid_geometry",
                    f"{row}几何无效：{reason}；请在 GIS 软件中修复（本系统不自动修复）",
                    codes,
                    location=_reason_location(reason) or _location(geoms[i]),
                )
            )
        else:
            c.usable[i] = True


def _check_codes(c: _Checker) -> None:
    """Report malformed, duplicate and other-county codes, and empty or long names."""
    child = c.tier.child
    rows_of: dict[str, list[int]] = defaultdict(list)
    for i, record in enumerate(c.records):
        code = record.code
        if not c.code_re.fullmatch(code):
            c.add(
                _error(
                    "bad_code",
                    f"第 {i + 1} 个要素的编码「{code}」不是{c.tier.code_help}",
                    [code] if code else [],
                    location=c.where(i),
                )
            )
            continue
        rows_of[code].append(i)
        if code[:6] != c.county:
            c.add(
                _error(
                    "wrong_county",
                    f"{child} {code} 的县级代码 {code[:6]} 与导入的县 {c.county} 不符",
                    [code],
                    location=c.where(i),
                )
            )
        name = record.name
        if not name:
            c.add(Problem(c.tier.empty_name, "empty_name", f"{child} {code} 名称为空", [code]))
        elif len(name) > NAME_MAX_LENGTH:
            c.add(
                _error(
                    "name_too_long",
                    f"{child} {code} 名称超过 {NAME_MAX_LENGTH} 个字符：{name[:20]}…",
                    [code],
                )
            )
    for code, rows in rows_of.items():
        if len(rows) > 1:
            listed = "、".join(str(i + 1) for i in rows)
            c.add(
                _error(
                    "duplicate_code",
                    f"编码 {code} 出现 {len(rows)} 次（第 {listed} 个要素）",
                    [code],
                    location=c.where(rows[0]),
                )
            )


def _check_parents(c: _Checker) -> None:
    """Report features whose parent (their code's prefix) is not a parent of the county."""
    tier = c.tier
    for i, record in enumerate(c.records):
        code = record.code
        if not c.code_re.fullmatch(code) or code[:6] != c.county:
            continue
        parent = code[: tier.parent_length]
        if parent in c.parents:
            c.parent_of[i] = parent
        else:
            c.add(
                _error(
                    "missing_parent",
                    f"{tier.child} {code} 的所属{tier.parent} {parent} 不在{tier.parents_from}中",
                    [code, parent],
                    location=c.where(i),
                )
            )
    if not tier.note_parent_without_geometry:
        return
    for parent in sorted({p for p in c.parent_of if p and c.parents[p] is None}):
        c.add(
            _warning(
                "village_without_geometry",
                f"{tier.parent} {parent} 在{tier.parents_from}中没有边界，"
                f"未检查其{tier.child}的空隙与越界",
                [parent],
            )
        )


def _check_overlaps(c: _Checker) -> None:
    """Report every pair of features whose interiors overlap (STRtree candidates only)."""
    index = np.flatnonzero(c.usable)
    if len(index) < 2:
        return
    geoms = c.geoms[index]
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    keep = left < right
    left, right = left[keep], right[keep]
    # Neighbours share edges: their intersection is a line (area 0) and costs little.
    overlaps = shapely.intersection(geoms[left], geoms[right])
    areas = shapely.area(overlaps)
    child = c.tier.child
    for k in np.flatnonzero(areas > 0):
        i, j = int(index[left[k]]), int(index[right[k]])
        for p in (c.parent_of[i], c.parent_of[j]):
            if p:
                c.overlap_parents.add(p)
        if areas[k] * c.m2_per_deg2 < c.floor / 2:
            continue
        a, b = c.records[i].code, c.records[j].code
        c.add_pieces(
            overlaps[k],
            "overlap",
            [a, b],
            f"{child} {{a}} 与{child} {{b}} 重叠 {{area:.1f}} 平方米",
            f"{child} {{a}} 与{child} {{b}} 有细小重叠（碎片，合计 {{area:.3f}} 平方米，"
            "小于 {threshold:g} 平方米）",
            a=a,
            b=b,
            threshold=c.threshold,
        )


def _check_outside(c: _Checker) -> None:
    """Report the pieces of each feature that lie outside its parent."""
    index: list[int] = []
    parents: list[BaseGeometry] = []
    for i in np.flatnonzero(c.usable).tolist():
        code = c.parent_of[i]
        parent = c.parents[code] if code is not None else None
        if parent is not None:
            index.append(i)
            parents.append(parent)
    if not index:
        return
    parent_geoms = np.empty(len(parents), dtype=object)
    parent_geoms[:] = parents
    shapely.prepare(parent_geoms)
    outside = shapely.difference(c.geoms[index], parent_geoms)
    areas = shapely.area(outside)
    c.outside_deg2[index] = areas
    child, parent_label = c.tier.child, c.tier.parent
    for k in np.flatnonzero(areas * c.m2_per_deg2 >= c.floor / 2).tolist():
        i = index[k]
        code, parent = c.records[i].code, c.parent_of[i]
        assert parent is not None
        c.add_pieces(
            outside[k],
            "outside_parent",
            [code, parent],
            f"{child} {{code}} 有 {{area:.1f}} 平方米超出所属{parent_label} {{parent}} 的边界",
            f"{child} {{code}} 有细小部分超出所属{parent_label} {{parent}}"
            "（碎片，合计 {area:.3f} 平方米）",
            code=code,
            parent=parent,
        )


def _check_gaps(c: _Checker) -> None:
    """Report the pieces of each parent that none of its children covers."""
    members: dict[str, list[int]] = defaultdict(list)
    blocked: set[str] = set()
    for i, parent in enumerate(c.parent_of):
        if parent is None:
            continue
        members[parent].append(i)
        if not c.usable[i]:
            blocked.add(parent)  # its bad geometry is reported; a gap there would be noise
    child, parent_label = c.tier.child, c.tier.parent
    for parent, rows in sorted(members.items()):
        parent_geom = c.parents[parent]
        if parent in blocked or parent_geom is None:
            continue
        if parent not in c.overlap_parents:
            # Without overlaps the children cover (their area − their outside parts): skip
            # the union when that already fills the parent.
            covered = float(shapely.area(c.geoms[rows]).sum() - c.outside_deg2[rows].sum())
            if (parent_geom.area - covered) * c.m2_per_deg2 < c.floor / 2:
                continue
        gap = shapely.difference(parent_geom, shapely.union_all(c.geoms[rows]))
        c.add_pieces(
            gap,
            "gap",
            [parent],
            f"{parent_label} {{parent}} 内有 {{area:.1f}} 平方米不属于任何{child}"
            "（横向到边：须全覆盖）",
            f"{parent_label} {{parent}} 内有细小空隙（碎片，合计 {{area:.3f}} 平方米）",
            parent=parent,
        )


def _check_empty_parents(c: _Checker) -> None:
    """Report the county's parents that no feature belongs to."""
    tier = c.tier
    covered = {c.records[i].code[: tier.parent_length] for i in range(len(c.records))}
    for parent in sorted(set(c.parents) - covered):
        geom = c.parents[parent]
        c.add(
            _error(
                tier.empty_parent_kind,
                f"{tier.parent} {parent} 没有任何{tier.child}（横向到边：须全部划分{tier.child}）",
                [parent],
                area_m2=area_m2(geom) if geom is not None else None,
                location=_location(geom) if geom is not None else None,
            )
        )


_CHECKS: tuple[tuple[str, Callable[[_Checker], None]], ...] = (
    ("geometry", _check_geometry),
    ("codes", _check_codes),
    ("parents", _check_parents),
    ("overlaps", _check_overlaps),
    ("outside", _check_outside),
    ("gaps", _check_gaps),
    ("empty_parents", _check_empty_parents),
)


# ---------------------------------------------------------------------------
# Helpers


def _code_text(value: object) -> str:
    """Return a code cell as text (numeric columns come back as int or float)."""
    if value is None or (np.isscalar(value) and pd.isna(value)):
        return ""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    return str(value).strip()


def _name_text(value: object) -> str:
    """Return a name cell as text."""
    if value is None or (np.isscalar(value) and pd.isna(value)):
        return ""
    return str(value).strip()


def _gbk_misread(texts: Sequence[str]) -> tuple[str, str] | None:
    """Return (as read, as GBK) for the first text that is GBK Chinese read as Latin-1."""
    for text in texts:
        if not any("\x80" <= ch <= "\xff" for ch in text):
            continue
        try:
            decoded = text.encode("latin-1").decode("gbk")
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
        if any("\u4e00" <= ch <= "\u9fff" for ch in decoded):
            return text, decoded
    return None


def _location(geom: BaseGeometry | None) -> tuple[float, float] | None:
    """Return a point on `geom` as (lng, lat) rounded to 1e-6° (0.1 m)."""
    if geom is None or geom.is_empty:
        return None
    point = shapely.point_on_surface(geom)
    if point.is_empty or not (math.isfinite(point.x) and math.isfinite(point.y)):
        return None
    return round(point.x, 6), round(point.y, 6)


def _reason_location(reason: str) -> tuple[float, float] | None:
    """Return the position GEOS names in an invalidity reason, e.g. 'Self-intersection[x y]'."""
    match = _REASON_POINT_RE.search(reason)
    if not match:
        return None
    x, y = float(match.group(1)), float(match.group(2))
    return (round(x, 6), round(y, 6)) if math.isfinite(x) and math.isfinite(y) else None


def _crs_label(crs: ProjCRS) -> str:
    """Return 'EPSG:nnnn' when the CRS has a code, else its name."""
    authority = crs.to_authority(min_confidence=70)
    return f"{authority[0]}:{authority[1]}" if authority else crs.name


def _looks_lnglat(bounds: tuple[float, ...]) -> bool:
    """Return whether coordinate bounds are plausibly longitude/latitude."""
    min_x, min_y, max_x, max_y = bounds
    return -180.0 <= min_x <= max_x <= 180.0 and -90.0 <= min_y <= max_y <= 90.0


def _finite(geoms: npt.NDArray[np.object_]) -> npt.NDArray[np.bool_]:
    """Return which geometries have only finite coordinates (a failed transform gives inf)."""
    coords, owner = shapely.get_coordinates(geoms, return_index=True)
    finite = np.ones(len(geoms), dtype=bool)
    finite[owner[~np.isfinite(coords).all(axis=1)]] = False
    return finite


def _near(geoms: npt.NDArray[np.object_], county: BaseGeometry) -> bool:
    """Return whether the bounding box of the features with finite coordinates meets the county."""
    finite = geoms[_finite(geoms) & ~shapely.is_empty(geoms)]
    if len(finite) == 0:
        return False
    min_x, min_y, max_x, max_y = shapely.total_bounds(finite)
    return bool(shapely.box(min_x, min_y, max_x, max_y).intersects(county))


def _candidate_crs(lng: float) -> list[int]:
    """Return the CGCS2000 projected CRS codes a county at longitude `lng` might use."""
    zone3 = round(lng / 3.0)  # 3° zones: central meridian 3n, EPSG:4513 is zone 25 (75°E)
    zone6 = int(lng // 6.0) + 1  # 6° zones: central meridian 6n − 3, EPSG:4491 is zone 13
    candidates = []
    # Counties near a zone edge often use the neighbouring zone: try both sides.
    for zone in (zone3, zone3 - 1, zone3 + 1):
        if 25 <= zone <= 45:
            candidates += [4513 + zone - 25, 4534 + zone - 25]
    for zone in (zone6, zone6 - 1, zone6 + 1):
        if 13 <= zone <= 23:
            candidates += [4491 + zone - 13, 4502 + zone - 13]
    return [*candidates, 3857]


def _suggestion(bounds: tuple[float, ...], county: BaseGeometry | None) -> str:
    """Return a hint naming the CRS whose coordinates of the county match the file's."""
    if county is None:
        return "县级网格常用 CGCS2000（EPSG:4490）或高斯-克吕格投影（如 EPSG:4526、EPSG:4547）。"
    centre = county.centroid
    fx, fy = (bounds[0] + bounds[2]) / 2.0, (bounds[1] + bounds[3]) / 2.0
    matches = []
    for code in _candidate_crs(centre.x):
        x, y = Transformer.from_crs(WGS84, f"EPSG:{code}", always_xy=True).transform(
            centre.x, centre.y
        )
        if math.hypot(x - fx, y - fy) < _SUGGEST_WITHIN_M:
            matches.append(f"EPSG:{code}（{ProjCRS.from_epsg(code).name}）")
    if matches:
        return f"按县域位置推测可能是：{'、'.join(matches)}。"
    return (
        "按县域位置未能推测出坐标系；常用的有 CGCS2000（EPSG:4490）、高斯-克吕格 3 度带"
        f"（如 EPSG:{_candidate_crs(centre.x)[0]}）、Web 墨卡托（EPSG:3857）。"
    )
