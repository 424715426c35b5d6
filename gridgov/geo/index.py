"""Point → grid lookup over an STRtree of WGS84 grid polygons (no Flask, no database).

Rules, fixed so that every caller gets the same answer for the same point:

- A point belongs to the grids whose *closed* polygon covers it (boundary included). When
  several do — the point lies on a shared edge or vertex — the grid with the lowest code
  wins (ties in code: the lowest position). `locate` and `locate_many` apply the same rule.
- A point covered by no grid snaps to the grid nearest to it when that grid is within the
  tolerance, measured as the geodesic distance in metres to the nearest point of the polygon.
  Equally near grids (within a millimetre) are again decided by the lowest code.
- Further out the point is outside: `locate` returns None, `locate_many` gives -1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry.base import BaseGeometry

from gridgov.geo.crs import distance_m

__all__ = ["GridIndex", "Hit"]

# Metres per degree on the WGS84 ellipsoid: latitude varies 110 574 (equator) … 111 694 (pole);
# longitude is 111 320·cos(lat). The smaller of the two converts a distance in metres into a
# degree distance that is never too short.
_M_PER_DEG_LAT_MIN = 110_574.0
_M_PER_DEG_LAT_MAX = 111_694.0
_M_PER_DEG_LNG_EQUATOR = 111_320.0
_DEGREE_MARGIN = 1.05
_TIE_M = 1e-3
_EXACT_NEAREST_M = 50_000.0


@dataclass(frozen=True)
class Hit:
    """The grid a point belongs to: its position in the index, id, code and how it was found."""

    position: int
    grid_id: int
    grid_code: str
    distance_m: float
    snapped: bool


def _metres_per_degree_lng(lat: float) -> float:
    return _M_PER_DEG_LNG_EQUATOR * max(math.cos(math.radians(min(abs(lat), 89.9))), 1e-3)


def degrees_for_metres(metres: float, lat: float) -> float:
    """Return a degree distance that covers at least `metres` in every direction at `lat`."""
    metres_per_degree = min(_M_PER_DEG_LAT_MIN, _metres_per_degree_lng(lat))
    return metres / metres_per_degree * _DEGREE_MARGIN


class GridIndex:
    """An immutable spatial index of one or more grid sets, built once and queried often."""

    def __init__(
        self,
        ids: Sequence[int],
        codes: Sequence[str],
        names: Sequence[str],
        village_codes: Sequence[str],
        geoms: Sequence[BaseGeometry],
    ) -> None:
        n = len(ids)
        if not (len(codes) == len(names) == len(village_codes) == len(geoms) == n):
            raise ValueError("GridIndex needs parallel sequences of equal length")
        self.ids: list[int] = [int(i) for i in ids]
        self.codes: list[str] = [str(c) for c in codes]
        self.names: list[str] = [str(x) for x in names]
        self.village_codes: list[str] = [str(v) for v in village_codes]
        self.geoms = np.asarray(list(geoms), dtype=object)
        if n and not all(isinstance(g, BaseGeometry) and not g.is_empty for g in self.geoms):
            raise ValueError("every grid needs a non-empty geometry")
        # rank[i] orders position i by (code, position): the tie-break of every lookup.
        self._rank = np.empty(n, dtype=np.int64)
        self._rank[np.argsort(np.asarray(self.codes, dtype=object), kind="stable")] = np.arange(n)
        self._tree = shapely.STRtree(self.geoms)

    def __len__(self) -> int:
        return len(self.ids)

    def _hit(self, position: int, distance: float, snapped: bool) -> Hit:
        return Hit(position, self.ids[position], self.codes[position], distance, snapped)

    def _first(self, positions: npt.NDArray[np.intp]) -> int:
        """Return the position that wins the tie-break among `positions`."""
        if len(positions) == 1:
            return int(positions[0])
        return int(positions[np.argmin(self._rank[positions])])

    def covering(self, lng: float, lat: float) -> list[int]:
        """Return the positions of every grid whose closed polygon covers the point, by code."""
        found = self._tree.query(shapely.Point(lng, lat), predicate="intersects")
        return [int(p) for p in found[np.argsort(self._rank[found])]]

    def locate(self, lng: float, lat: float, tolerance_m: float = 0.0) -> Hit | None:
        """Return the one grid of a WGS84 point, snapping up to `tolerance_m`; None if outside."""
        if not (math.isfinite(lng) and math.isfinite(lat)):
            return None
        point = shapely.Point(lng, lat)
        found = self._tree.query(point, predicate="intersects")
        if len(found):
            return self._hit(self._first(found), 0.0, False)
        if tolerance_m <= 0:
            return None
        candidates = self._tree.query(
            point, predicate="dwithin", distance=degrees_for_metres(tolerance_m, lat)
        )
        best = self._nearest_of(lng, lat, candidates)
        if best is None or best[1] > tolerance_m:
            return None
        return self._hit(best[0], best[1], True)

    def nearest(self, lng: float, lat: float) -> Hit | None:
        """Return the nearest grid at any distance (the degree-nearest beyond 50 km)."""
        if not len(self) or not (math.isfinite(lng) and math.isfinite(lat)):
            return None
        point = shapely.Point(lng, lat)
        found = self._tree.query(point, predicate="intersects")
        if len(found):
            return self._hit(self._first(found), 0.0, False)
        # The nearest in degrees need not be the nearest in metres: search again out to the
        # degree distance the metric nearest can have, and measure every candidate. Far away
        # that would measure every grid, and the degree-nearest is a good enough answer.
        candidates, degrees = self._tree.query_nearest(point, return_distance=True)
        metres_upper = float(degrees[0]) * max(_M_PER_DEG_LAT_MAX, _metres_per_degree_lng(lat))
        if metres_upper <= _EXACT_NEAREST_M:
            candidates = self._tree.query(
                point, predicate="dwithin", distance=degrees_for_metres(metres_upper, lat)
            )
        best = self._nearest_of(lng, lat, candidates)
        return None if best is None else self._hit(best[0], best[1], True)

    def nearest_of(self, lng: float, lat: float, positions: Sequence[int]) -> Hit | None:
        """Return the nearest of the given grids (distance 0 if one covers the point)."""
        chosen = np.asarray(positions, dtype=np.intp)
        covering = chosen[shapely.intersects_xy(self.geoms[chosen], lng, lat)]
        if len(covering):
            return self._hit(self._first(covering), 0.0, False)
        best = self._nearest_of(lng, lat, chosen)
        return None if best is None else self._hit(best[0], best[1], True)

    def _nearest_of(
        self, lng: float, lat: float, candidates: npt.NDArray[np.intp]
    ) -> tuple[int, float] | None:
        """Return (position, metres) of the candidate nearest to the point, tie-broken by code.

        The nearest point of each polygon is found in a local equirectangular frame (longitude
        scaled by cos(lat)), which is conformal enough at these distances for the nearest point
        to be the metric one; the distance itself is geodesic.
        """
        if not len(candidates):
            return None
        k = math.cos(math.radians(lat))
        scale = np.array([k, 1.0])
        scaled = shapely.transform(self.geoms[candidates], lambda xy: xy * scale)
        lines = shapely.shortest_line(scaled, shapely.Point(lng * k, lat))
        # Each line runs from the polygon's nearest point to the point: keep its first vertex.
        on_polygons = shapely.get_coordinates(lines).reshape(-1, 2, 2)[:, 0, :]
        best: tuple[int, float] | None = None
        best_key: tuple[int, int, int] | None = None
        for position, (x, y) in zip(candidates.tolist(), on_polygons.tolist(), strict=True):
            metres = distance_m(lng, lat, x / k, y)
            key = (round(metres / _TIE_M), int(self._rank[position]), position)
            if best_key is None or key < best_key:
                best, best_key = (position, metres), key
        return best

    def locate_many(
        self, lngs: npt.ArrayLike, lats: npt.ArrayLike, tolerance_m: float = 0.0
    ) -> npt.NDArray[np.int64]:
        """Return the grid position of each WGS84 point (-1 outside), same rule as `locate`."""
        x = np.asarray(lngs, dtype=np.float64).ravel()
        y = np.asarray(lats, dtype=np.float64).ravel()
        if x.shape != y.shape:
            raise ValueError("lngs and lats must have the same length")
        result = np.full(x.shape, -1, dtype=np.int64)
        if not len(self) or not len(x):
            return result
        finite = np.isfinite(x) & np.isfinite(y)
        points = shapely.points(np.where(finite, x, 0.0), np.where(finite, y, 0.0))
        points[~finite] = None
        point_idx, grid_idx = self._tree.query(points, predicate="intersects")
        if len(point_idx):
            # Sort by point, then by rank; the first row of each point is its winner.
            order = np.lexsort((self._rank[grid_idx], point_idx))
            point_idx, grid_idx = point_idx[order], grid_idx[order]
            first = np.flatnonzero(np.r_[True, point_idx[1:] != point_idx[:-1]])
            result[point_idx[first]] = grid_idx[first]
        if tolerance_m > 0:
            for i in np.flatnonzero((result < 0) & finite).tolist():
                hit = self.locate(float(x[i]), float(y[i]), tolerance_m)
                if hit is not None:
                    result[i] = hit.position
        return result
