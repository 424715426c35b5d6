"""Coordinate systems and metric helpers: the one converter of the project.

gridgov stores WGS84 lon/lat. Phones send WGS84; Amap/Tencent send GCJ-02 (火星坐标);
Baidu sends BD-09; Tianditu (天地图) and county survey data use CGCS2000, which equals WGS84
at map scale (differences of a few centimetres). Convert at the edges with `to_wgs84` /
`from_wgs84`; measure with `distance_m` / `area_m2`; buffer in metres via `to_local_metres`.

All conversion maths is written once with numpy so that the scalar functions and the
`*_array` functions share the same formulas.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import shapely
from pyproj import Geod, Transformer
from shapely.geometry.base import BaseGeometry

__all__ = [
    "CRS",
    "BadCoordinates",
    "LocalMetric",
    "UnknownCRS",
    "area_m2",
    "check_lnglat",
    "convert",
    "convert_array",
    "distance_m",
    "from_wgs84",
    "from_wgs84_array",
    "in_china_box",
    "local_metric",
    "parse_crs",
    "to_local_metres",
    "to_wgs84",
    "to_wgs84_array",
]

ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]


class CRS(StrEnum):
    """A coordinate reference system a lon/lat pair can arrive in."""

    WGS84 = "wgs84"
    GCJ02 = "gcj02"
    BD09 = "bd09"
    CGCS2000 = "cgcs2000"


class UnknownCRS(ValueError):
    """Raised for a coordinate system name that is not recognised."""

    code = "unknown_crs"
    status = 400


class BadCoordinates(ValueError):
    """Raised for a lon/lat pair that is not finite or not on the globe."""

    code = "bad_coordinates"
    status = 400


_ALIASES: dict[str, CRS] = {
    "wgs84": CRS.WGS84,
    "wgs-84": CRS.WGS84,
    "wgs_84": CRS.WGS84,
    "wgs 84": CRS.WGS84,
    "epsg:4326": CRS.WGS84,
    "4326": CRS.WGS84,
    "gps": CRS.WGS84,
    "gcj02": CRS.GCJ02,
    "gcj-02": CRS.GCJ02,
    "gcj_02": CRS.GCJ02,
    "gcj": CRS.GCJ02,
    "amap": CRS.GCJ02,
    "gaode": CRS.GCJ02,
    "autonavi": CRS.GCJ02,
    "tencent": CRS.GCJ02,
    "qq": CRS.GCJ02,
    "mars": CRS.GCJ02,
    "bd09": CRS.BD09,
    "bd-09": CRS.BD09,
    "bd_09": CRS.BD09,
    "bd09ll": CRS.BD09,
    "baidu": CRS.BD09,
    "cgcs2000": CRS.CGCS2000,
    "cgcs-2000": CRS.CGCS2000,
    "cgcs_2000": CRS.CGCS2000,
    "epsg:4490": CRS.CGCS2000,
    "4490": CRS.CGCS2000,
    "tianditu": CRS.CGCS2000,
    "天地图": CRS.CGCS2000,
}


def parse_crs(text: str | CRS) -> CRS:
    """Return the CRS named by `text`, accepting common aliases in any case."""
    if isinstance(text, CRS):
        return text
    key = str(text).strip().lower()
    try:
        return _ALIASES[key]
    except KeyError:
        known = ", ".join(member.value for member in CRS)
        raise UnknownCRS(
            f"unknown coordinate system {text!r}; expected one of {known} "
            "(or an alias such as EPSG:4326, amap, baidu, tianditu)"
        ) from None


# ---------------------------------------------------------------------------
# Validation


def check_lnglat(lng: object, lat: object) -> tuple[float, float]:
    """Return (lng, lat) as floats, or raise BadCoordinates if they are not a valid position."""
    try:
        x = float(lng)  # type: ignore[arg-type]
        y = float(lat)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BadCoordinates(f"坐标不是数字：经度 {lng!r}，纬度 {lat!r}") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise BadCoordinates(f"坐标不是有限数值：经度 {x}，纬度 {y}")
    if -180.0 <= x <= 180.0 and -90.0 <= y <= 90.0:
        return x, y
    message = f"坐标超出范围：经度 {x} 应在 −180…180，纬度 {y} 应在 −90…90"
    if -90.0 <= x <= 90.0 and -180.0 <= y <= 180.0:
        message += f"；经纬度可能写反了（应为 经度 {y}，纬度 {x}？）"
    raise BadCoordinates(message)


# ---------------------------------------------------------------------------
# GCJ-02 and BD-09 (public algorithm, Krasovsky 1940 ellipsoid)

_KRASOVSKY_A = 6378245.0
_KRASOVSKY_EE = 0.00669342162296594323
_X_PI = math.pi * 3000.0 / 180.0
_CHINA_LNG = (72.004, 137.8347)
_CHINA_LAT = (0.8293, 55.8271)
_INVERSE_TOLERANCE_DEG = 1e-7
_INVERSE_MAX_ITERATIONS = 20


def _floats(values: ArrayLike) -> FloatArray:
    """Return `values` as a float64 array (0-d for scalars)."""
    return np.asarray(values, dtype=np.float64)


def in_china_box(lng: ArrayLike, lat: ArrayLike) -> npt.NDArray[np.bool_]:
    """Return where (lng, lat) falls in the bounding box inside which GCJ-02 is offset."""
    x, y = _floats(lng), _floats(lat)
    return (x >= _CHINA_LNG[0]) & (x <= _CHINA_LNG[1]) & (y >= _CHINA_LAT[0]) & (y <= _CHINA_LAT[1])


def _gcj_offset(lng: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Return the GCJ-02 minus WGS84 offset in degrees at a WGS84 position (no box test)."""
    x = lng - 105.0
    y = lat - 35.0
    periodic_x = (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    d_lat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x))
    d_lat += periodic_x
    d_lat += (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    d_lat += (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    d_lng = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x))
    d_lng += periodic_x
    d_lng += (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    d_lng += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0

    rad_lat = np.radians(lat)
    magic = 1.0 - _KRASOVSKY_EE * np.sin(rad_lat) ** 2
    sqrt_magic = np.sqrt(magic)
    d_lat = (d_lat * 180.0) / (
        (_KRASOVSKY_A * (1.0 - _KRASOVSKY_EE)) / (magic * sqrt_magic) * np.pi
    )
    d_lng = (d_lng * 180.0) / (_KRASOVSKY_A / sqrt_magic * np.cos(rad_lat) * np.pi)
    return d_lng, d_lat


def _wgs_to_gcj_unboxed(lng: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Return GCJ-02 for WGS84 positions, offsetting everywhere."""
    d_lng, d_lat = _gcj_offset(lng, lat)
    return lng + d_lng, lat + d_lat


def _wgs_to_gcj(lng: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Return GCJ-02 for WGS84 positions; identity outside the China box."""
    g_lng, g_lat = _wgs_to_gcj_unboxed(lng, lat)
    inside = in_china_box(lng, lat)
    return np.where(inside, g_lng, lng), np.where(inside, g_lat, lat)


def _invert(
    forward: Callable[[FloatArray, FloatArray], tuple[FloatArray, FloatArray]],
    lng: FloatArray,
    lat: FloatArray,
    start: tuple[FloatArray, FloatArray],
) -> tuple[FloatArray, FloatArray]:
    """Return the positions that `forward` maps onto (lng, lat), by fixed-point iteration.

    Both offsets are near-translations (their Jacobians differ from the identity by under 2 %),
    so each step shrinks the error at least fiftyfold and three or four steps reach 1e-7°.
    Each point stops on its own, so a point converts the same alone or in a batch.
    """
    w_lng, w_lat = start
    active = np.ones(np.shape(lng), dtype=bool)
    for _ in range(_INVERSE_MAX_ITERATIONS):
        f_lng, f_lat = forward(w_lng, w_lat)
        err_lng = f_lng - lng
        err_lat = f_lat - lat
        w_lng = np.where(active, w_lng - err_lng, w_lng)
        w_lat = np.where(active, w_lat - err_lat, w_lat)
        # NaN compares False, so non-finite points drop out at once.
        active &= (np.abs(err_lng) >= _INVERSE_TOLERANCE_DEG) | (
            np.abs(err_lat) >= _INVERSE_TOLERANCE_DEG
        )
        if not active.any():
            break
    return w_lng, w_lat


def _gcj_to_wgs(lng: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Return WGS84 for GCJ-02 positions; identity outside the China box (tested on input)."""
    w_lng, w_lat = _invert(_wgs_to_gcj_unboxed, lng, lat, start=(lng, lat))
    inside = in_china_box(lng, lat)
    return np.where(inside, w_lng, lng), np.where(inside, w_lat, lat)


def _gcj_to_bd(lng: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Return BD-09 for GCJ-02 positions."""
    z = np.hypot(lng, lat) + 0.00002 * np.sin(lat * _X_PI)
    theta = np.arctan2(lat, lng) + 0.000003 * np.cos(lng * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def _bd_to_gcj(lng: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Return GCJ-02 for BD-09 positions.

    Baidu's published closed-form inverse is only good to about 2e-6° (0.2 m); it is used as
    the starting point and refined with the same fixed-point iteration as GCJ-02.
    """
    x = lng - 0.0065
    y = lat - 0.006
    z = np.hypot(x, y) - 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _X_PI)
    return _invert(_gcj_to_bd, lng, lat, start=(z * np.cos(theta), z * np.sin(theta)))


def _frame(crs: CRS) -> CRS:
    """Return the CRS whose formulas apply to `crs` (CGCS2000 is WGS84 at map scale)."""
    return CRS.WGS84 if crs is CRS.CGCS2000 else crs


def convert_array(
    lngs: ArrayLike, lats: ArrayLike, source: CRS | str, target: CRS | str
) -> tuple[FloatArray, FloatArray]:
    """Return longitude and latitude arrays converted from `source` to `target`.

    Values are not validated (use `check_lnglat` at the edge); non-finite input comes out
    non-finite rather than raising, so one bad row does not sink a bulk import.
    """
    src, dst = _frame(parse_crs(source)), _frame(parse_crs(target))
    x, y = np.broadcast_arrays(_floats(lngs), _floats(lats))
    with np.errstate(invalid="ignore"):
        return _convert(x, y, src, dst)


def _convert(x: FloatArray, y: FloatArray, src: CRS, dst: CRS) -> tuple[FloatArray, FloatArray]:
    """Return (x, y) converted from `src` to `dst` (both WGS84, GCJ02 or BD09)."""
    if src is dst:
        return x.copy(), y.copy()
    if src is CRS.GCJ02 and dst is CRS.BD09:
        return _gcj_to_bd(x, y)
    if src is CRS.BD09 and dst is CRS.GCJ02:
        return _bd_to_gcj(x, y)
    if src is CRS.GCJ02:
        x, y = _gcj_to_wgs(x, y)
    elif src is CRS.BD09:
        x, y = _gcj_to_wgs(*_bd_to_gcj(x, y))
    if dst is CRS.GCJ02:
        return _wgs_to_gcj(x, y)
    if dst is CRS.BD09:
        return _gcj_to_bd(*_wgs_to_gcj(x, y))
    return x.copy(), y.copy()


def to_wgs84_array(
    lngs: ArrayLike, lats: ArrayLike, crs: CRS | str
) -> tuple[FloatArray, FloatArray]:
    """Return WGS84 longitude and latitude arrays for positions given in `crs`."""
    return convert_array(lngs, lats, crs, CRS.WGS84)


def from_wgs84_array(
    lngs: ArrayLike, lats: ArrayLike, crs: CRS | str
) -> tuple[FloatArray, FloatArray]:
    """Return longitude and latitude arrays in `crs` for WGS84 positions."""
    return convert_array(lngs, lats, CRS.WGS84, crs)


def convert(lng: float, lat: float, source: CRS | str, target: CRS | str) -> tuple[float, float]:
    """Return (lng, lat) converted from `source` to `target`; raise BadCoordinates if invalid."""
    x, y = convert_array(*check_lnglat(lng, lat), source, target)
    return float(x), float(y)


def to_wgs84(lng: float, lat: float, crs: CRS | str) -> tuple[float, float]:
    """Return the WGS84 (lng, lat) of a position given in `crs`."""
    return convert(lng, lat, crs, CRS.WGS84)


def from_wgs84(lng: float, lat: float, crs: CRS | str) -> tuple[float, float]:
    """Return the (lng, lat) in `crs` of a WGS84 position."""
    return convert(lng, lat, CRS.WGS84, crs)


# ---------------------------------------------------------------------------
# Metric helpers


@lru_cache(maxsize=1)
def _geod() -> Geod:
    """Return the shared WGS84 ellipsoid."""
    return Geod(ellps="WGS84")


def distance_m(lng1: float, lat1: float, lng2: float, lat2: float) -> float:
    """Return the geodesic distance in metres between two WGS84 positions."""
    _fwd, _back, dist = _geod().inv(lng1, lat1, lng2, lat2)
    return float(dist)


def area_m2(geom: BaseGeometry) -> float:
    """Return the geodesic area in square metres of a lon/lat (Multi)Polygon."""
    area, _perimeter = _geod().geometry_area_perimeter(geom)
    return abs(float(area))


@lru_cache(maxsize=256)
def _aeqd_transformers(lng0: float, lat0: float) -> tuple[Transformer, Transformer]:
    """Return (to metres, to lon/lat) transformers of an azimuthal equidistant projection."""
    local = f"+proj=aeqd +lat_0={lat0} +lon_0={lng0} +x_0=0 +y_0=0 +ellps=WGS84 +units=m"
    forward = Transformer.from_crs("EPSG:4326", local, always_xy=True)
    inverse = Transformer.from_crs(local, "EPSG:4326", always_xy=True)
    return forward, inverse


def _apply(transformer: Transformer, geom: BaseGeometry) -> BaseGeometry:
    """Return `geom` with every vertex passed through `transformer`."""

    def move(coords: FloatArray) -> FloatArray:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geom, move)


@dataclass(frozen=True)
class LocalMetric:
    """A local azimuthal equidistant frame in metres centred on (lng0, lat0).

    Distances from the centre are exact and the scale error is c²/6 (1e-5 at 50 km), so a
    county-sized geometry can be buffered or simplified in metres and brought back.
    """

    lng0: float
    lat0: float

    def to_metres(self, geom: BaseGeometry) -> BaseGeometry:
        """Return `geom` (WGS84 lon/lat) in this frame's metres."""
        return _apply(_aeqd_transformers(self.lng0, self.lat0)[0], geom)

    def to_lnglat(self, geom: BaseGeometry) -> BaseGeometry:
        """Return `geom` (this frame's metres) in WGS84 lon/lat."""
        return _apply(_aeqd_transformers(self.lng0, self.lat0)[1], geom)

    def point_to_metres(self, lng: float, lat: float) -> tuple[float, float]:
        """Return the (x, y) in metres of a WGS84 position."""
        x, y = _aeqd_transformers(self.lng0, self.lat0)[0].transform(lng, lat)
        return float(x), float(y)

    def point_to_lnglat(self, x: float, y: float) -> tuple[float, float]:
        """Return the WGS84 (lng, lat) of a position in metres."""
        lng, lat = _aeqd_transformers(self.lng0, self.lat0)[1].transform(x, y)
        return float(lng), float(lat)


def local_metric(lng: float, lat: float) -> LocalMetric:
    """Return the local metric frame for work near (lng, lat).

    The centre is rounded to 0.01° (about 1 km) so nearby callers share cached transformers;
    that moves the centre too little to matter for county-sized work.
    """
    lng, lat = check_lnglat(lng, lat)
    return LocalMetric(round(lng, 2) + 0.0, round(lat, 2) + 0.0)


def to_local_metres(geom: BaseGeometry) -> tuple[BaseGeometry, LocalMetric]:
    """Return `geom` projected into metres around its centre, and the frame to project back."""
    if geom.is_empty:
        raise BadCoordinates("空几何无法投影到局部坐标")
    min_x, min_y, max_x, max_y = geom.bounds
    frame = local_metric((min_x + max_x) / 2.0, (min_y + max_y) / 2.0)
    return frame.to_metres(geom), frame
