"""GridIndex on small hand-made grids: covering, tie-breaks, snapping in metres, bulk lookup."""

from __future__ import annotations

import math

import numpy as np
import pytest
from shapely.geometry import box

from gridgov.geo.crs import distance_m
from gridgov.geo.index import GridIndex, degrees_for_metres

LNG0, LAT0 = 115.6, 23.3
STEP = 0.01  # about 1 km

# A 2 × 2 block of squares whose codes do NOT follow their positions, so that a tie-break
# by position and a tie-break by code give different answers.
#   position 0: south-west, code …004    position 1: south-east, code …002
#   position 2: north-west, code …003    position 3: north-east, code …001
CODES = ["441523105203004", "441523105203002", "441523105203003", "441523105203001"]
SQUARES = [
    box(LNG0, LAT0, LNG0 + STEP, LAT0 + STEP),
    box(LNG0 + STEP, LAT0, LNG0 + 2 * STEP, LAT0 + STEP),
    box(LNG0, LAT0 + STEP, LNG0 + STEP, LAT0 + 2 * STEP),
    box(LNG0 + STEP, LAT0 + STEP, LNG0 + 2 * STEP, LAT0 + 2 * STEP),
]


def make_index(geoms=SQUARES, codes=CODES) -> GridIndex:
    n = len(geoms)
    return GridIndex(
        ids=[100 + i for i in range(n)],
        codes=codes,
        names=[f"第{i}网格" for i in range(n)],
        village_codes=[c[:12] for c in codes],
        geoms=geoms,
    )


def metres_east(lng: float, lat: float, metres: float) -> float:
    """Return the longitude `metres` east of (lng, lat)."""
    per_milli_degree = distance_m(lng, lat, lng + 1e-3, lat)
    return lng + metres / per_milli_degree * 1e-3


def metres_north(lng: float, lat: float, metres: float) -> float:
    """Return the latitude `metres` north of (lng, lat)."""
    per_milli_degree = distance_m(lng, lat, lng, lat + 1e-3)
    return lat + metres / per_milli_degree * 1e-3


def test_interior_point_is_in_exactly_its_grid() -> None:
    index = make_index()
    hit = index.locate(LNG0 + 0.5 * STEP, LAT0 + 1.5 * STEP)
    assert hit is not None
    assert (hit.position, hit.grid_id, hit.grid_code) == (2, 102, CODES[2])
    assert (hit.snapped, hit.distance_m) == (False, 0.0)


@pytest.mark.parametrize(
    ("point", "covering", "winner"),
    [
        # Shared vertical edge between positions 0 (…004) and 1 (…002).
        ((LNG0 + STEP, LAT0 + 0.5 * STEP), [1, 0], 1),
        # Shared horizontal edge between positions 0 (…004) and 2 (…003).
        ((LNG0 + 0.5 * STEP, LAT0 + STEP), [2, 0], 2),
        # The vertex shared by all four: …001 wins.
        ((LNG0 + STEP, LAT0 + STEP), [3, 1, 2, 0], 3),
        # An outer edge belongs to its only grid (polygons are closed).
        ((LNG0, LAT0 + 0.5 * STEP), [0], 0),
    ],
)
def test_shared_boundary_goes_to_the_lowest_code(
    point: tuple[float, float], covering: list[int], winner: int
) -> None:
    index = make_index()
    assert index.covering(*point) == covering
    answers = {index.locate(*point, tolerance_m=200).position for _ in range(50)}  # type: ignore[union-attr]
    assert answers == {winner}
    # A rebuilt index over the same grids in another order gives the same grid.
    order = [3, 1, 0, 2]
    shuffled = make_index([SQUARES[i] for i in order], [CODES[i] for i in order])
    assert shuffled.locate(*point).grid_code == CODES[winner]  # type: ignore[union-attr]
    # The bulk lookup follows the same rule.
    assert make_index().locate_many([point[0]], [point[1]]).tolist() == [winner]


def test_point_outside_snaps_within_tolerance_with_distance_in_metres() -> None:
    index = make_index()
    lat = LAT0 + 0.5 * STEP
    edge = LNG0 + 2 * STEP  # east edge of position 1
    lng = metres_east(edge, lat, 50.0)
    assert distance_m(edge, lat, lng, lat) == pytest.approx(50.0, abs=1e-3)
    hit = index.locate(lng, lat, tolerance_m=200)
    assert hit is not None
    assert (hit.position, hit.snapped) == (1, True)
    assert hit.distance_m == pytest.approx(50.0, abs=0.05)
    assert index.locate(lng, lat, tolerance_m=49.0) is None
    assert index.locate(lng, lat) is None  # no tolerance, no snapping


def test_snapping_chooses_the_nearest_in_metres_not_in_degrees() -> None:
    # At 23° a degree of longitude is ~8 % shorter than one of latitude. Grid A lies 0.0010°
    # east (≈102 m), grid B 0.00095° north (≈105 m): B is nearer in degrees, A in metres.
    lng, lat = 115.0, 23.0
    a = box(lng + 0.0010, lat - 0.005, lng + 0.01, lat + 0.0005)
    b = box(lng - 0.01, lat + 0.00095, lng + 0.0009, lat + 0.01)
    index = make_index([a, b], ["441523105203001", "441523105203002"])
    to_a = distance_m(lng, lat, lng + 0.0010, lat)
    to_b = distance_m(lng, lat, lng, lat + 0.00095)
    assert to_a < to_b
    hit = index.locate(lng, lat, tolerance_m=200)
    assert hit is not None
    assert hit.grid_code == "441523105203001"
    assert hit.distance_m == pytest.approx(to_a, abs=0.05)
    nearest = index.nearest(lng, lat)
    assert nearest is not None
    assert nearest.grid_code == "441523105203001"


def test_snapping_tie_goes_to_the_lowest_code() -> None:
    # Straight south of the vertex that positions 0 and 1 share: both are equally near.
    index = make_index()
    lng = LNG0 + STEP
    lat = metres_north(lng, LAT0, -30.0)
    answers = {index.locate(lng, lat, tolerance_m=200).position for _ in range(20)}  # type: ignore[union-attr]
    assert answers == {1}
    hit = index.locate(lng, lat, tolerance_m=200)
    assert hit is not None
    assert hit.distance_m == pytest.approx(30.0, abs=0.05)


def test_far_point_is_outside_but_nearest_still_measures_it() -> None:
    index = make_index()
    lng, lat = LNG0 - 0.1, LAT0 + 0.5 * STEP
    assert index.locate(lng, lat, tolerance_m=200) is None
    nearest = index.nearest(lng, lat)
    assert nearest is not None
    assert nearest.position in (0,)
    assert nearest.distance_m == pytest.approx(distance_m(lng, lat, LNG0, lat), rel=1e-3)


def test_locate_many_matches_locate_point_by_point() -> None:
    index = make_index()
    rng = np.random.default_rng(7)
    lngs = rng.uniform(LNG0 - 0.005, LNG0 + 2 * STEP + 0.005, 2000)
    lats = rng.uniform(LAT0 - 0.005, LAT0 + 2 * STEP + 0.005, 2000)
    # Put some points exactly on shared edges and vertices.
    lngs[:10] = LNG0 + STEP
    lats[10:20] = LAT0 + STEP
    lngs[20], lats[20] = LNG0 + STEP, LAT0 + STEP
    for tolerance in (0.0, 200.0):
        bulk = index.locate_many(lngs, lats, tolerance_m=tolerance)
        single = [index.locate(x, y, tolerance) for x, y in zip(lngs, lats, strict=True)]
        assert bulk.tolist() == [-1 if h is None else h.position for h in single]
    assert (index.locate_many(lngs, lats) == -1).any()
    assert (index.locate_many(lngs, lats) >= 0).any()


def test_locate_many_marks_non_finite_points_outside() -> None:
    index = make_index()
    inside = LNG0 + 0.5 * STEP, LAT0 + 0.5 * STEP
    result = index.locate_many([math.nan, inside[0], math.inf], [inside[1], inside[1], 0.0], 200)
    assert result.tolist() == [-1, 0, -1]
    assert index.locate(math.nan, LAT0) is None


def test_empty_index_locates_nothing() -> None:
    index = make_index([], [])
    assert len(index) == 0
    assert index.locate(LNG0, LAT0, tolerance_m=200) is None
    assert index.nearest(LNG0, LAT0) is None
    assert index.locate_many([LNG0], [LAT0]).tolist() == [-1]


def test_sequences_must_be_parallel() -> None:
    with pytest.raises(ValueError, match="parallel"):
        GridIndex([1, 2], CODES[:1], ["a"], ["v"], SQUARES[:1])


@pytest.mark.parametrize("lat", [0.0, 23.3, 45.0, 70.0])
def test_degrees_for_metres_never_falls_short(lat: float) -> None:
    degrees = degrees_for_metres(200.0, lat)
    assert distance_m(100.0, lat, 100.0 + degrees, lat) >= 200.0
    assert distance_m(100.0, lat, 100.0, lat + degrees) >= 200.0
