"""Tests for gridgov.geo.crs: conversions, validation and metric helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Point, box

from gridgov.geo.crs import (
    CRS,
    BadCoordinates,
    UnknownCRS,
    area_m2,
    check_lnglat,
    convert,
    distance_m,
    from_wgs84,
    from_wgs84_array,
    local_metric,
    parse_crs,
    to_local_metres,
    to_wgs84,
    to_wgs84_array,
)

# WGS84 ellipsoid, for expected values computed independently of pyproj.
WGS84_A = 6378137.0
WGS84_E2 = 6.69437999014e-3

FORWARD_TOL = 1e-6  # degrees, ~0.1 m

# ---------------------------------------------------------------------------
# Published reference pairs (numbers only; no code taken from these sources)

# (wgs_lng, wgs_lat, gcj_lng, gcj_lat)
WGS_GCJ_REFERENCE = [
    # googollee/eviltransform, go/transform_test.go and python/test.py ("shanghai")
    pytest.param(121.5272106, 31.1774276, 121.531541859215, 31.17530398364597, id="shanghai"),
    # googollee/eviltransform, go/transform_test.go and python/test.py ("shenzhen")
    pytest.param(113.912316, 22.543847, 113.9171764808363, 22.540796131694766, id="shenzhen"),
    # googollee/eviltransform, go/transform_test.go and python/test.py ("beijing")
    pytest.param(116.377817, 39.911954, 116.38404722455657, 39.91334545536069, id="beijing"),
    # wandergis/coordtransform, test/app.js: wgs84togcj02(116.404, 39.915)
    pytest.param(116.404, 39.915, 116.41024449916938, 39.91640428150164, id="tiananmen"),
]

# (gcj_lng, gcj_lat, bd_lng, bd_lat)
GCJ_BD_REFERENCE = [
    # wandergis/coordtransform, test/app.js: gcj02tobd09(116.404, 39.915)
    pytest.param(116.404, 39.915, 116.41036949371029, 39.92133699351021, id="tiananmen"),
    # Alibaba Cloud 地址标准化 TransferCoord API doc, response example (printed to 6 decimals)
    # https://help.aliyun.com/zh/address-purification/addrpapi/developer-reference/coordinate-system-conversion
    pytest.param(120.026268, 30.279164, 120.032768, 30.285238, id="hangzhou-aliyun"),
]

# (bd_lng, bd_lat, gcj_lng, gcj_lat); the source uses Baidu's closed-form inverse, which is
# itself off by up to ~5e-7° here; ours is the exact (iterated) inverse.
BD_GCJ_REFERENCE = [
    # wandergis/coordtransform, test/app.js: bd09togcj02(116.404, 39.915)
    pytest.param(116.404, 39.915, 116.39762729119315, 39.90865673957631, id="tiananmen"),
]


@pytest.mark.parametrize(("wgs_lng", "wgs_lat", "gcj_lng", "gcj_lat"), WGS_GCJ_REFERENCE)
def test_wgs84_to_gcj02_matches_reference(
    wgs_lng: float, wgs_lat: float, gcj_lng: float, gcj_lat: float
) -> None:
    lng, lat = from_wgs84(wgs_lng, wgs_lat, CRS.GCJ02)
    assert lng == pytest.approx(gcj_lng, abs=FORWARD_TOL)
    assert lat == pytest.approx(gcj_lat, abs=FORWARD_TOL)


@pytest.mark.parametrize(("wgs_lng", "wgs_lat", "gcj_lng", "gcj_lat"), WGS_GCJ_REFERENCE)
def test_gcj02_to_wgs84_recovers_reference(
    wgs_lng: float, wgs_lat: float, gcj_lng: float, gcj_lat: float
) -> None:
    lng, lat = to_wgs84(gcj_lng, gcj_lat, CRS.GCJ02)
    # The one-step approximation is off by ~1e-5° here; the iterated inverse is not.
    assert lng == pytest.approx(wgs_lng, abs=1e-7)
    assert lat == pytest.approx(wgs_lat, abs=1e-7)


def test_gcj02_inverse_is_iterated_not_one_step() -> None:
    # wandergis/coordtransform, test/app.js: gcj02towgs84(116.404, 39.915) with the
    # one-step approximation gives (116.39775550083061, 39.91359571849836).
    one_step = (116.39775550083061, 39.91359571849836)
    ours = to_wgs84(116.404, 39.915, CRS.GCJ02)
    residual_ours = np.subtract(from_wgs84(*ours, CRS.GCJ02), (116.404, 39.915))
    residual_one_step = np.subtract(from_wgs84(*one_step, CRS.GCJ02), (116.404, 39.915))
    assert np.abs(residual_ours).max() < 1e-9
    assert np.abs(residual_one_step).max() > 1e-7
    assert ours == pytest.approx(one_step, abs=1e-6)


@pytest.mark.parametrize(("gcj_lng", "gcj_lat", "bd_lng", "bd_lat"), GCJ_BD_REFERENCE)
def test_gcj02_to_bd09_matches_reference(
    gcj_lng: float, gcj_lat: float, bd_lng: float, bd_lat: float
) -> None:
    lng, lat = convert(gcj_lng, gcj_lat, CRS.GCJ02, CRS.BD09)
    assert lng == pytest.approx(bd_lng, abs=FORWARD_TOL)
    assert lat == pytest.approx(bd_lat, abs=FORWARD_TOL)


@pytest.mark.parametrize(("bd_lng", "bd_lat", "gcj_lng", "gcj_lat"), BD_GCJ_REFERENCE)
def test_bd09_to_gcj02_matches_reference(
    bd_lng: float, bd_lat: float, gcj_lng: float, gcj_lat: float
) -> None:
    lng, lat = convert(bd_lng, bd_lat, CRS.BD09, CRS.GCJ02)
    assert lng == pytest.approx(gcj_lng, abs=FORWARD_TOL)
    assert lat == pytest.approx(gcj_lat, abs=FORWARD_TOL)
    # …and it is the exact inverse: going forward again lands on the input.
    assert convert(lng, lat, CRS.GCJ02, CRS.BD09) == pytest.approx((bd_lng, bd_lat), abs=1e-9)


def test_wgs84_to_bd09_goes_through_gcj02() -> None:
    wgs = (115.65, 23.30)
    gcj = from_wgs84(*wgs, CRS.GCJ02)
    assert from_wgs84(*wgs, CRS.BD09) == pytest.approx(
        convert(*gcj, CRS.GCJ02, CRS.BD09), abs=1e-12
    )


# ---------------------------------------------------------------------------
# Round trips

GUANGDONG_LNGS = np.linspace(109.7, 117.2, 16)
GUANGDONG_LATS = np.linspace(20.3, 25.5, 12)
CHINA_POINTS = [
    pytest.param(115.65, 23.30, id="luhe"),
    pytest.param(116.17, 24.65, id="jiaoling"),
    pytest.param(126.63, 45.75, id="harbin"),
    pytest.param(87.62, 43.83, id="urumqi"),
    pytest.param(91.11, 29.65, id="lhasa"),
    pytest.param(109.51, 18.25, id="sanya"),
    pytest.param(112.3, 16.83, id="xisha"),
    pytest.param(121.56, 25.04, id="taipei"),
    pytest.param(134.5, 48.2, id="fuyuan-edge"),
    pytest.param(73.6, 39.4, id="wuqia-edge"),
]


@pytest.mark.parametrize("crs", [CRS.GCJ02, CRS.BD09])
def test_round_trip_over_guangdong_grid(crs: CRS) -> None:
    lngs, lats = np.meshgrid(GUANGDONG_LNGS, GUANGDONG_LATS)
    back_lngs, back_lats = to_wgs84_array(*from_wgs84_array(lngs, lats, crs), crs)
    assert back_lngs.shape == lngs.shape
    assert np.abs(back_lngs - lngs).max() < 1e-6
    assert np.abs(back_lats - lats).max() < 1e-6


@pytest.mark.parametrize("crs", [CRS.GCJ02, CRS.BD09])
@pytest.mark.parametrize(("lng", "lat"), CHINA_POINTS)
def test_round_trip_across_china(lng: float, lat: float, crs: CRS) -> None:
    moved = from_wgs84(lng, lat, crs)
    assert distance_m(lng, lat, *moved) > 100  # it really is offset
    assert to_wgs84(*moved, crs) == pytest.approx((lng, lat), abs=1e-6)


# China's real extent (73.5–135.1°E, 3.8–53.6°N) lies well inside the GCJ-02 box, so the
# box test never splits a point from its offset image there.
china_lng = st.floats(73.5, 135.0, allow_nan=False)
china_lat = st.floats(3.9, 53.5, allow_nan=False)


@settings(max_examples=300, database=None, deadline=None)
@given(lng=china_lng, lat=china_lat, crs=st.sampled_from([CRS.GCJ02, CRS.BD09]))
def test_round_trip_property(lng: float, lat: float, crs: CRS) -> None:
    back = to_wgs84(*from_wgs84(lng, lat, crs), crs)
    assert abs(back[0] - lng) < 1e-6
    assert abs(back[1] - lat) < 1e-6


@settings(max_examples=100, database=None, deadline=None)
@given(lng=china_lng, lat=china_lat)
def test_gcj_bd_round_trip_property(lng: float, lat: float) -> None:
    back = convert(*convert(lng, lat, CRS.GCJ02, CRS.BD09), CRS.BD09, CRS.GCJ02)
    assert back == pytest.approx((lng, lat), abs=1e-6)


def test_array_and_scalar_agree() -> None:
    lngs = np.array([115.65, 121.5272106, -74.0])
    lats = np.array([23.30, 31.1774276, 40.7])
    for crs in (CRS.GCJ02, CRS.BD09):
        fwd = from_wgs84_array(lngs, lats, crs)
        inv = to_wgs84_array(lngs, lats, crs)
        for i in range(len(lngs)):
            assert (fwd[0][i], fwd[1][i]) == from_wgs84(lngs[i], lats[i], crs)
            assert (inv[0][i], inv[1][i]) == to_wgs84(lngs[i], lats[i], crs)


def test_array_passes_non_finite_through_and_broadcasts() -> None:
    lngs, lats = to_wgs84_array([math.nan, 115.65], 23.30, "amap")
    assert math.isnan(lngs[0])
    assert lats[0] == 23.30  # outside the GCJ-02 box, so left as given
    assert (lngs[1], lats[1]) == to_wgs84(115.65, 23.30, CRS.GCJ02)
    for crs in (CRS.GCJ02, CRS.BD09):
        lngs, lats = to_wgs84_array([math.inf, 115.6, 115.65], [23.3, -math.inf, 23.30], crs)
        assert not np.isfinite(lngs[0]) and not np.isfinite(lats[1])
        assert (lngs[2], lats[2]) == to_wgs84(115.65, 23.30, crs)
    empty = from_wgs84_array([], [], CRS.BD09)
    assert empty[0].shape == (0,) and empty[1].shape == (0,)


def test_gcj_offset_near_luhe_is_a_few_hundred_metres() -> None:
    gcj = from_wgs84(115.65, 23.30, CRS.GCJ02)
    assert 300 <= distance_m(115.65, 23.30, *gcj) <= 700


OUTSIDE_CHINA = [
    pytest.param(-74.006, 40.7128, id="new-york"),
    pytest.param(2.3522, 48.8566, id="paris"),
    pytest.param(139.6917, 35.6895, id="tokyo"),
    pytest.param(151.2093, -33.8688, id="sydney"),
    pytest.param(100.5018, -0.9492, id="padang"),
    pytest.param(37.6173, 55.7558, id="moscow"),
]


@pytest.mark.parametrize(("lng", "lat"), OUTSIDE_CHINA)
def test_gcj02_is_identity_outside_china(lng: float, lat: float) -> None:
    assert from_wgs84(lng, lat, CRS.GCJ02) == (lng, lat)
    assert to_wgs84(lng, lat, CRS.GCJ02) == (lng, lat)


@pytest.mark.parametrize(("lng", "lat"), [*OUTSIDE_CHINA, *CHINA_POINTS])
@pytest.mark.parametrize("crs", [CRS.WGS84, CRS.CGCS2000, "EPSG:4490", "tianditu"])
def test_wgs84_and_cgcs2000_are_identity(lng: float, lat: float, crs: CRS | str) -> None:
    assert from_wgs84(lng, lat, crs) == (lng, lat)
    assert to_wgs84(lng, lat, crs) == (lng, lat)
    assert convert(lng, lat, CRS.CGCS2000, CRS.WGS84) == (lng, lat)


# ---------------------------------------------------------------------------
# parse_crs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("wgs84", CRS.WGS84),
        ("WGS84", CRS.WGS84),
        ("WGS-84", CRS.WGS84),
        ("EPSG:4326", CRS.WGS84),
        ("epsg:4326", CRS.WGS84),
        ("4326", CRS.WGS84),
        (" wgs84 ", CRS.WGS84),
        ("gcj02", CRS.GCJ02),
        ("GCJ-02", CRS.GCJ02),
        ("amap", CRS.GCJ02),
        ("AMap", CRS.GCJ02),
        ("bd09", CRS.BD09),
        ("BD09", CRS.BD09),
        ("baidu", CRS.BD09),
        ("Baidu", CRS.BD09),
        ("cgcs2000", CRS.CGCS2000),
        ("CGCS2000", CRS.CGCS2000),
        ("EPSG:4490", CRS.CGCS2000),
        ("tianditu", CRS.CGCS2000),
        ("TianDiTu", CRS.CGCS2000),
        (CRS.BD09, CRS.BD09),
    ],
)
def test_parse_crs_aliases(text: str, expected: CRS) -> None:
    assert parse_crs(text) is expected


@pytest.mark.parametrize("text", ["", "wgs", "EPSG:3857", "google", "bd-11", "4527"])
def test_parse_crs_rejects_unknown(text: str) -> None:
    with pytest.raises(UnknownCRS, match="unknown coordinate system") as info:
        parse_crs(text)
    assert isinstance(info.value, ValueError)
    assert info.value.code == "unknown_crs"
    assert repr(text) in str(info.value)


def test_conversion_rejects_unknown_crs() -> None:
    with pytest.raises(UnknownCRS):
        to_wgs84(115.65, 23.30, "mercator")


def test_crs_is_a_str_enum() -> None:
    assert CRS.GCJ02 == "gcj02"
    assert [member.value for member in CRS] == ["wgs84", "gcj02", "bd09", "cgcs2000"]


# ---------------------------------------------------------------------------
# check_lnglat


@pytest.mark.parametrize(
    ("lng", "lat", "expected"),
    [
        (115.65, 23.30, (115.65, 23.30)),
        ("115.65", "23.3", (115.65, 23.3)),
        (180, -90, (180.0, -90.0)),
        (-180.0, 90.0, (-180.0, 90.0)),
        (0, 0, (0.0, 0.0)),
    ],
)
def test_check_lnglat_accepts(lng: object, lat: object, expected: tuple[float, float]) -> None:
    assert check_lnglat(lng, lat) == expected


@pytest.mark.parametrize(
    ("lng", "lat", "fragment"),
    [
        pytest.param(math.nan, 23.3, "有限", id="nan-lng"),
        pytest.param(115.6, math.nan, "有限", id="nan-lat"),
        pytest.param(math.inf, 23.3, "有限", id="inf-lng"),
        pytest.param(115.6, -math.inf, "有限", id="minus-inf-lat"),
        pytest.param(200.0, 23.3, "超出范围", id="lng-200"),
        pytest.param(-180.5, 23.3, "超出范围", id="lng-below"),
        pytest.param(115.6, -95.0, "超出范围", id="lat-minus-95"),
        pytest.param(115.6, 90.0001, "超出范围", id="lat-above"),
        pytest.param(23.0, 115.0, "写反", id="swapped"),
        pytest.param(None, 23.3, "不是数字", id="none"),
        pytest.param("abc", 23.3, "不是数字", id="text"),
    ],
)
def test_check_lnglat_rejects(lng: object, lat: object, fragment: str) -> None:
    with pytest.raises(BadCoordinates, match=fragment) as info:
        check_lnglat(lng, lat)
    assert isinstance(info.value, ValueError)
    assert info.value.code == "bad_coordinates"


def test_out_of_range_without_swap_gives_no_swap_hint() -> None:
    with pytest.raises(BadCoordinates) as info:
        check_lnglat(200.0, 23.3)
    assert "写反" not in str(info.value)


@pytest.mark.parametrize("crs", [CRS.WGS84, CRS.GCJ02, CRS.BD09])
def test_scalar_conversion_validates(crs: CRS) -> None:
    with pytest.raises(BadCoordinates):
        to_wgs84(math.nan, 23.3, crs)
    with pytest.raises(BadCoordinates, match="写反"):
        from_wgs84(23.3, 115.65, crs)


# ---------------------------------------------------------------------------
# Metric helpers


def meridian_radius(lat: float) -> float:
    """Return the meridional radius of curvature M at `lat` degrees."""
    s = math.sin(math.radians(lat))
    return WGS84_A * (1 - WGS84_E2) / (1 - WGS84_E2 * s * s) ** 1.5


def prime_vertical_radius(lat: float) -> float:
    """Return the prime-vertical radius of curvature N at `lat` degrees."""
    s = math.sin(math.radians(lat))
    return WGS84_A / math.sqrt(1 - WGS84_E2 * s * s)


@pytest.mark.parametrize(
    ("lng1", "lat1", "lng2", "lat2", "expected"),
    [
        # 1° of latitude at the equator (≈110.57 km)
        (115.0, 0.0, 115.0, 1.0, meridian_radius(0.5) * math.radians(1.0)),
        # 1° of latitude at 23°N (≈110.75 km)
        (115.0, 22.5, 115.0, 23.5, meridian_radius(23.0) * math.radians(1.0)),
        # 0.01° of longitude along 23°N (≈1.025 km)
        (
            115.0,
            23.0,
            115.01,
            23.0,
            prime_vertical_radius(23.0) * math.cos(math.radians(23.0)) * math.radians(0.01),
        ),
        # 1° of longitude on the equator (≈111.32 km)
        (100.0, 0.0, 101.0, 0.0, WGS84_A * math.radians(1.0)),
    ],
)
def test_distance_m_matches_ellipsoid_formulas(
    lng1: float, lat1: float, lng2: float, lat2: float, expected: float
) -> None:
    assert distance_m(lng1, lat1, lng2, lat2) == pytest.approx(expected, rel=0.005)


def test_distance_m_known_values() -> None:
    assert distance_m(115.0, 0.0, 115.0, 1.0) == pytest.approx(110_600, rel=0.005)
    assert distance_m(115.65, 23.30, 115.65, 23.30) == 0.0


def test_area_m2_of_small_square_at_23n() -> None:
    square = box(115.0, 22.995, 115.01, 23.005)
    width = prime_vertical_radius(23.0) * math.cos(math.radians(23.0)) * math.radians(0.01)
    height = meridian_radius(23.0) * math.radians(0.01)
    assert width == pytest.approx(1024.8, rel=0.005)
    assert height == pytest.approx(1107.4, rel=0.005)
    assert area_m2(square) == pytest.approx(width * height, rel=0.005)


def test_area_m2_is_orientation_free_and_handles_multipolygons() -> None:
    square = box(115.0, 23.0, 115.01, 23.01)
    clockwise = box(115.0, 23.0, 115.01, 23.01, ccw=False)
    other = box(116.0, 23.0, 116.01, 23.01)
    assert area_m2(clockwise) == pytest.approx(area_m2(square))
    assert area_m2(square.union(other)) == pytest.approx(area_m2(square) + area_m2(other))
    holed = square.difference(box(115.004, 23.004, 115.006, 23.006))
    assert area_m2(holed) < area_m2(square)


def test_to_local_metres_round_trips_and_preserves_area() -> None:
    grid = box(115.60, 23.25, 115.70, 23.35)
    metres, frame = to_local_metres(grid)
    assert metres.area == pytest.approx(area_m2(grid), rel=1e-3)
    assert frame.to_lnglat(metres).equals_exact(grid, tolerance=1e-9)
    assert metres.centroid.distance(Point(0, 0)) < 1000  # centred on the geometry


def test_local_metric_buffer_in_metres() -> None:
    frame = local_metric(115.65, 23.30)
    x, y = frame.point_to_metres(115.65, 23.30)
    circle = frame.to_lnglat(Point(x, y).buffer(100.0, quad_segs=64))
    assert area_m2(circle) == pytest.approx(math.pi * 100.0**2, rel=0.002)
    east = frame.point_to_lnglat(x + 500.0, y)
    assert distance_m(115.65, 23.30, *east) == pytest.approx(500.0, rel=1e-4)


def test_local_metric_frames_are_shared() -> None:
    assert local_metric(115.651, 23.302) == local_metric(115.6512, 23.3004)


def test_to_local_metres_rejects_empty_geometry() -> None:
    with pytest.raises(BadCoordinates):
        to_local_metres(Point())
