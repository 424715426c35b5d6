"""Synthesize sample town, village and grid polygons inside a real county boundary.

No public source offers town, village or grid polygons for the sample counties, so this
module generates plausible ones. They are SYNTHETIC: every feature it writes carries
``"synthetic": true``. How they are made:

1. Towns. The county is cut into a few hundred "atoms": seeded random points, relaxed twice
   with Lloyd's algorithm, whose Voronoi cells are clipped to the county. Each town grows
   from a seed atom over shared edges, the least-filled town (area / target area) first,
   until every atom is taken. Towns are contiguous, uneven in size (seeded log-normal
   targets) and have ragged edges, not a lattice.
2. Villages: the same inside each town with finer atoms. The seeds of the 社区居委会 are
   the ones nearest the town's centre, so the communities cluster like a town seat, and
   they get smaller targets than the 村委会.
3. Grids: the same inside each village; a village gets 3–8 grids by its area rank in the
   county (the smallest sixth 3, the largest sixth 8).
4. One exact coverage. The outlines of all grids and of the county are noded together on
   a 1e-7° grid and polygonized; each face goes to the grid covering it. A grid is the
   union of its faces, a village the union of its grids' faces, a town the union of its
   villages' faces, so every layer tiles its parent exactly (no gaps, no overlaps, shared
   edges with identical vertices) and the towns tile the county.

Codes. A village without a code in divisions.csv gets town code + 3 digits in file order:
村委会 201, 202, …; 社区居委会/居委会 001, 002, … (codes already present are kept). Grids get
village code + 001, 002, … in reading order: rows north→south, each row as tall as a typical
grid of the village (sqrt(village area / grid count)) and counted from the village's northern
edge; within a row west→east. A grid's row and position are those of its centroid.

Determinism. Same inputs and the same shapely/GEOS and numpy versions give byte-identical
files: each random stream is seeded from a SHA-256 of the code it serves, features are
sorted by code, coordinates are snapped to 1e-7° (about 1 cm) and written by a fixed JSON
writer (one feature per line).

Run ``python -m gridgov.geo.synth 441523 441427`` to regenerate geodata/<county>/ in place
(``--src`` / ``--out`` to read or write elsewhere). Areas here are planar in a local
equal-area projection (`equal_area_m2`, `to_equal_area`); gridgov.geo.crs.area_m2 is the
geodesic equivalent the rest of the project uses.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import heapq
import json
import math
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from pyproj import Transformer
from shapely import STRtree
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry

from gridgov.config import ROOT

__all__ = [
    "Division",
    "assign_village_codes",
    "equal_area_m2",
    "generate",
    "grid_name_stem",
    "read_divisions",
    "reading_order",
    "to_equal_area",
]

GEODATA = ROOT / "geodata"
PRECISION = 1e-7
"""Coordinate grid of the output in degrees (about 1 cm); also the 7 written decimals."""
DECIMALS = 7

TOWN_ATOMS_PER_TOWN = 60
VILLAGE_ATOMS_PER_VILLAGE = 24
GRID_ATOMS_PER_GRID = 10
MIN_GRIDS, MAX_GRIDS = 3, 8
COMMUNITY_WEIGHT = 0.3
"""Target area of a 社区 relative to a 村 before the random factor."""

FloatArray = npt.NDArray[np.float64]
LAYERS = ("towns", "villages", "grids")
Feature = tuple[dict[str, Any], BaseGeometry]
"""A feature to write: its properties and its lon/lat geometry."""


# ---------------------------------------------------------------------------- divisions


@dataclass(frozen=True)
class Division:
    """One row of divisions.csv: a county, town or village/community."""

    level: str
    code: str
    parent_code: str
    name: str

    @property
    def is_community(self) -> bool:
        """Return True for a 社区居委会/居委会 (urban community), False for a 村委会."""
        return self.level == "village" and not self.name.endswith("村委会")


def read_divisions(path: Path) -> list[Division]:
    """Read divisions.csv (level, code, parent_code, name) in file order."""
    with path.open(encoding="utf-8", newline="") as fh:
        return [
            Division(r["level"], r["code"].strip(), r["parent_code"].strip(), r["name"].strip())
            for r in csv.DictReader(fh)
        ]


def write_divisions(path: Path, rows: Sequence[Division]) -> None:
    """Write divisions.csv in the source's layout (UTF-8, CRLF, no quoting needed)."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\r\n")
        writer.writerow(["level", "code", "parent_code", "name"])
        writer.writerows([r.level, r.code, r.parent_code, r.name] for r in rows)


def assign_village_codes(rows: Sequence[Division]) -> list[Division]:
    """Fill blank village codes: town + 2xx for 村委会, town + 0xx for 社区, in file order."""
    towns = {r.code for r in rows if r.level == "town"}
    used: dict[str, set[str]] = {t: set() for t in towns}
    for r in rows:
        if r.level != "village":
            continue
        if r.parent_code not in towns:
            raise ValueError(f"{r.name}: parent {r.parent_code!r} is not a town in the file")
        if r.code:
            if len(r.code) != 12 or not r.code.isdigit() or not r.code.startswith(r.parent_code):
                raise ValueError(f"{r.name}: village code {r.code!r} is not town code + 3 digits")
            used[r.parent_code].add(r.code)
    counters = {(t, series): 0 for t in towns for series in (0, 200)}
    out: list[Division] = []
    for r in rows:
        if r.level == "village" and not r.code:
            key = (r.parent_code, 0 if r.is_community else 200)
            while True:
                counters[key] += 1
                code = f"{r.parent_code}{key[1] + counters[key]:03d}"
                if code not in used[r.parent_code]:
                    break
            if counters[key] > 99:
                raise ValueError(f"town {r.parent_code}: more than 99 villages in one series")
            used[r.parent_code].add(code)
            r = replace(r, code=code)
        out.append(r)
    return out


def grid_name_stem(village_name: str) -> str:
    """Return the short name grids are named after: 欧田村委会 → 欧田村, 城东居委会 → 城东社区."""
    for suffix, short in (("村委会", "村"), ("社区居委会", "社区"), ("居委会", "社区")):
        if village_name.endswith(suffix):
            return village_name[: -len(suffix)] + short
    return village_name


# ---------------------------------------------------------------------------- areas


@lru_cache(maxsize=64)
def _laea(lon0: float, lat0: float) -> Transformer:
    """Return a WGS84 → Lambert azimuthal equal-area transformer centred on (lon0, lat0)."""
    target = f"+proj=laea +lat_0={lat0} +lon_0={lon0} +x_0=0 +y_0=0 +ellps=WGS84 +units=m"
    return Transformer.from_crs("EPSG:4326", target, always_xy=True)


def to_equal_area(geoms: Any, lon0: float, lat0: float) -> Any:
    """Return lon/lat geometries (one or an array) in an equal-area projection in metres."""
    transformer = _laea(round(lon0, 2), round(lat0, 2))

    def move(coords: FloatArray) -> FloatArray:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geoms, move)


def equal_area_m2(geom: BaseGeometry) -> float:
    """Return the area in square metres of a lon/lat geometry (equal-area projection)."""
    if geom.is_empty:
        return 0.0
    c = geom.centroid
    return float(to_equal_area(geom, c.x, c.y).area)


# ---------------------------------------------------------------------------- geometry


class _Plane:
    """A local plane in approximate metres: x east, y north, affine in lon/lat."""

    def __init__(self, lon0: float, lat0: float) -> None:
        self.lon0, self.lat0 = lon0, lat0
        self.kx = 111_320.0 * math.cos(math.radians(lat0))
        self.ky = 110_574.0

    def to_plane(self, geom: Any) -> Any:
        """Return lon/lat geometries in plane metres."""
        scale = np.array([self.kx, self.ky])
        origin = np.array([self.lon0, self.lat0])
        return shapely.transform(geom, lambda c: (c - origin) * scale)

    def to_lonlat(self, geom: Any) -> Any:
        """Return plane geometries in lon/lat."""
        scale = np.array([self.kx, self.ky])
        origin = np.array([self.lon0, self.lat0])
        return shapely.transform(geom, lambda c: c / scale + origin)


def _rng(*parts: str) -> np.random.Generator:
    """Return a random stream seeded from the given codes and purpose."""
    digest = hashlib.sha256(":".join(("gridgov-synth", *parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def _polygonal(geom: BaseGeometry) -> BaseGeometry:
    """Return the valid, non-empty polygonal part of `geom` as a Polygon or MultiPolygon."""
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    parts = [
        q  # make_valid can return a GeometryCollection holding MultiPolygons
        for p in shapely.get_parts(geom)
        for q in shapely.get_parts(p)
        if isinstance(q, Polygon) and q.area > 0
    ]
    if not parts:
        return Polygon()
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


def _sample_points(region: BaseGeometry, n: int, rng: np.random.Generator) -> FloatArray:
    """Return `n` uniform random points inside `region`."""
    min_x, min_y, max_x, max_y = region.bounds
    shapely.prepare(region)
    found: list[FloatArray] = []
    count = 0
    while count < n:
        batch = rng.uniform((min_x, min_y), (max_x, max_y), size=(max(4 * n, 64), 2))
        inside = batch[shapely.contains_xy(region, batch[:, 0], batch[:, 1])]
        found.append(inside)
        count += len(inside)
    return np.concatenate(found)[:n]


def _cells(points: FloatArray, region: BaseGeometry) -> npt.NDArray[np.object_]:
    """Return the Voronoi cells of `points` clipped to `region`, in point order."""
    diagram = shapely.voronoi_polygons(shapely.multipoints(points), extend_to=region, ordered=True)
    return shapely.intersection(shapely.get_parts(diagram), region)


def _relax(points: FloatArray, region: BaseGeometry, iterations: int) -> FloatArray:
    """Move points towards the centroids of their clipped Voronoi cells (Lloyd)."""
    for _ in range(iterations):
        cells = _cells(points, region)
        centroids = shapely.get_coordinates(shapely.centroid(cells))
        outside = ~shapely.contains_xy(region, centroids[:, 0], centroids[:, 1])
        if outside.any():
            centroids[outside] = shapely.get_coordinates(shapely.point_on_surface(cells[outside]))
        points = centroids
    return points


def _atoms(region: BaseGeometry, n: int, rng: np.random.Generator) -> list[Polygon]:
    """Cut `region` into about `n` irregular convex-ish pieces."""
    points = _relax(_sample_points(region, n, rng), region, 2)
    parts = shapely.get_parts(_cells(points, region))
    return [p for p in parts if isinstance(p, Polygon) and p.area > 1.0]


def _adjacency(atoms: Sequence[Polygon]) -> list[list[int]]:
    """Return, per atom, the atoms sharing an edge with it (ascending)."""
    tree = STRtree(atoms)
    left, right = tree.query(atoms, predicate="intersects")
    keep = left < right
    left, right = left[keep], right[keep]
    boundaries = shapely.boundary(np.asarray(atoms, dtype=object))
    shared = shapely.length(shapely.intersection(boundaries[left], boundaries[right]))
    neighbours: list[list[int]] = [[] for _ in atoms]
    for i, j, length in zip(left.tolist(), right.tolist(), shared.tolist(), strict=True):
        if length > 1e-6:
            neighbours[i].append(j)
            neighbours[j].append(i)
    return [sorted(n) for n in neighbours]


def _grow(
    atoms: Sequence[Polygon],
    seeds: Sequence[int],
    targets: FloatArray,
    rng: np.random.Generator,
) -> list[int]:
    """Grow one region per seed atom over shared edges; return the owner of every atom."""
    adjacency = _adjacency(atoms)
    areas = shapely.area(np.asarray(atoms, dtype=object))
    centres = shapely.get_coordinates(shapely.centroid(np.asarray(atoms, dtype=object)))
    roughness = rng.lognormal(0.0, 0.35, len(atoms))
    owner = [-1] * len(atoms)
    filled = np.zeros(len(seeds))
    heaps: list[list[tuple[float, int]]] = [[] for _ in seeds]

    def claim(atom: int, region: int) -> None:
        owner[atom] = region
        filled[region] += areas[atom]
        origin = centres[seeds[region]]
        for nb in adjacency[atom]:
            if owner[nb] < 0:
                cost = float(np.hypot(*(centres[nb] - origin)) * roughness[nb])
                heapq.heappush(heaps[region], (cost, nb))

    for region, atom in enumerate(seeds):
        claim(atom, region)
    while True:
        best, best_fill = -1, math.inf
        for region, heap in enumerate(heaps):
            while heap and owner[heap[0][1]] >= 0:
                heapq.heappop(heap)
            if heap and filled[region] / targets[region] < best_fill:
                best, best_fill = region, filled[region] / targets[region]
        if best < 0:
            break
        claim(heapq.heappop(heaps[best])[1], best)

    # Atoms no seed could reach (a detached part of the region) join the nearest region.
    while left := [i for i, o in enumerate(owner) if o < 0]:
        touching = [i for i in left if any(owner[nb] >= 0 for nb in adjacency[i])]
        if touching:
            for i in touching:
                owner[i] = min(owner[nb] for nb in adjacency[i] if owner[nb] >= 0)
            continue
        taken = [i for i, o in enumerate(owner) if o >= 0]
        distances = shapely.distance(atoms[left[0]], np.asarray([atoms[i] for i in taken]))
        owner[left[0]] = owner[taken[int(np.argmin(distances))]]
    return owner


def _partition(
    region: BaseGeometry,
    weights: Sequence[float],
    rng: np.random.Generator,
    atoms_per_child: int,
    central: Sequence[bool] | None = None,
) -> list[BaseGeometry]:
    """Split `region` into contiguous children with areas roughly proportional to `weights`.

    Children flagged in `central` get the seeds nearest the middle of the region.
    """
    k = len(weights)
    if k == 1:
        return [region]
    atoms = _atoms(region, max(atoms_per_child * k, 4 * k), rng)
    centres = shapely.get_coordinates(shapely.centroid(np.asarray(atoms, dtype=object)))
    seed_points = _relax(_sample_points(region, k, rng), region, 4)

    # Seed atoms: the free atom nearest each seed point.
    seed_atoms: list[int] = []
    for p in seed_points:
        order = np.argsort(np.hypot(*(centres - p).T), kind="stable")
        seed_atoms.append(next(int(i) for i in order if int(i) not in seed_atoms))

    # Central children take the seeds nearest the seat (seed nearest the region's centroid).
    middle = np.array(region.centroid.coords[0])
    seat = seed_points[int(np.argmin(np.hypot(*(seed_points - middle).T)))]
    by_centrality = np.argsort(np.hypot(*(seed_points - seat).T), kind="stable").tolist()
    flags = list(central) if central is not None else [False] * k
    n_central = sum(flags)
    rest = [by_centrality[i] for i in rng.permutation(k - n_central) + n_central]
    central_seeds = iter(by_centrality[:n_central])
    other_seeds = iter(rest)
    seeds = [seed_atoms[next(central_seeds) if f else next(other_seeds)] for f in flags]

    w = np.asarray(weights, dtype=float)
    targets = region.area * w / w.sum()
    owner = _grow(atoms, seeds, targets, rng)
    children = []
    for child in range(k):
        mine = [atoms[i] for i, o in enumerate(owner) if o == child]
        children.append(_polygonal(shapely.union_all(mine)))
    return children


def _exact_coverage(county: BaseGeometry, pieces: Sequence[BaseGeometry]) -> list[list[Polygon]]:
    """Node all outlines on the output grid and hand each face to the piece that covers it."""
    lines = [county.boundary, *(p.boundary for p in pieces)]
    noded = shapely.union_all(lines, grid_size=PRECISION)
    faces = list(shapely.get_parts(shapely.polygonize(shapely.get_parts(noded))))
    county_on_grid = shapely.set_precision(county, PRECISION)
    shapely.prepare(county_on_grid)
    tree = STRtree(pieces)
    result: list[list[Polygon]] = [[] for _ in pieces]
    for face in faces:
        probe = face.point_on_surface()
        if not county_on_grid.contains(probe):
            continue
        inside = sorted(tree.query(probe, predicate="within").tolist())
        if len(inside) == 1:
            result[inside[0]].append(face)
            continue
        near = sorted(tree.query(face, predicate="intersects").tolist())
        overlap = [shapely.intersection(face, pieces[i]).area for i in near]
        if near and max(overlap) > 0:
            result[near[int(np.argmax(overlap))]].append(face)
        else:
            result[int(tree.query_nearest(face, all_matches=False)[0])].append(face)
    return result


def _union(faces: Sequence[Polygon]) -> BaseGeometry:
    """Return the union of faces that share edges exactly, oriented as RFC 7946 wants."""
    merged = _polygonal(shapely.coverage_union_all(np.asarray(faces, dtype=object)))
    return shapely.orient_polygons(merged, exterior_cw=False)


def reading_order(geoms: Sequence[BaseGeometry]) -> list[int]:
    """Return indices of lon/lat `geoms` in reading order: rows north→south, then west→east.

    Rows are as tall as a typical piece (sqrt(total area / count)) and counted from the
    northern edge of the union; a piece's row and position are those of its centroid.
    """
    whole = shapely.union_all(np.asarray(geoms, dtype=object))
    plane = _Plane(round(whole.centroid.x, 3), round(whole.centroid.y, 3))
    flat = plane.to_plane(np.asarray(geoms, dtype=object))
    whole_flat = plane.to_plane(whole)
    band = math.sqrt(whole_flat.area / len(geoms))
    north = whole_flat.bounds[3]
    centres = shapely.get_coordinates(shapely.centroid(flat))
    keys = [(math.floor((north - y) / band), x) for x, y in centres.tolist()]
    return sorted(range(len(geoms)), key=lambda i: keys[i])


# ---------------------------------------------------------------------------- output


def _ring(coords: Any) -> list[list[float]]:
    return [[round(float(x), DECIMALS), round(float(y), DECIMALS)] for x, y in coords]


def _geometry_json(geom: BaseGeometry) -> dict[str, Any]:
    def polygon(p: Polygon) -> list[list[list[float]]]:
        return [_ring(p.exterior.coords), *(_ring(r.coords) for r in p.interiors)]

    if isinstance(geom, Polygon):
        return {"type": "Polygon", "coordinates": polygon(geom)}
    if isinstance(geom, MultiPolygon):
        return {"type": "MultiPolygon", "coordinates": [polygon(p) for p in geom.geoms]}
    raise ValueError(f"only polygons are written, got {geom.geom_type}")


def write_geojson(path: Path, name: str, features: Sequence[Feature]) -> None:
    """Write a FeatureCollection with one feature per line, in the given order."""
    lines = [
        json.dumps(
            {"type": "Feature", "properties": props, "geometry": _geometry_json(geom)},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        for props, geom in features
    ]
    head = json.dumps({"type": "FeatureCollection", "name": name}, ensure_ascii=False)[:-1]
    text = head + ', "features": [\n' + ",\n".join(lines) + "\n]}\n"
    path.write_text(text, encoding="utf-8")


def _source(src_dir: Path, county_code: str, name: str) -> Path:
    """Return src_dir/<name> or, failing that, src_dir/<county>_<name>."""
    for candidate in (src_dir / name, src_dir / f"{county_code}_{name}"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{src_dir}: neither {name} nor {county_code}_{name}")


def _read_boundary(path: Path) -> BaseGeometry:
    features = json.loads(path.read_text(encoding="utf-8"))["features"]
    geom = shapely.union_all([shape(f["geometry"]) for f in features])
    return _polygonal(geom)


# ---------------------------------------------------------------------------- generator


def generate(county_code: str, src_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Write the county's sample geodata (boundary, divisions, towns, villages, grids)."""
    boundary_path = _source(src_dir, county_code, "boundary.geojson")
    rows = assign_village_codes(read_divisions(_source(src_dir, county_code, "divisions.csv")))
    county_rows = [r for r in rows if r.level == "county"]
    if [r.code for r in county_rows] != [county_code]:
        raise ValueError(f"divisions.csv does not describe county {county_code}")
    towns = [r for r in rows if r.level == "town"]
    villages = {t.code: [r for r in rows if r.parent_code == t.code] for t in towns}
    if any(not v for v in villages.values()):
        raise ValueError("every town needs at least one village")
    county = _read_boundary(boundary_path)
    plane = _Plane(round(county.centroid.x, 3), round(county.centroid.y, 3))
    county_flat = plane.to_plane(county)

    # Towns, then villages in each town, in plane metres.
    rng = _rng(county_code, "towns")
    weights = [
        sum(COMMUNITY_WEIGHT if v.is_community else 1.0 for v in villages[t.code])
        * rng.lognormal(0.0, 0.25)
        for t in towns
    ]
    town_flat = _partition(county_flat, weights, rng, TOWN_ATOMS_PER_TOWN)
    village_flat: dict[str, BaseGeometry] = {}
    for town, town_geom in zip(towns, town_flat, strict=True):
        members = villages[town.code]
        rng = _rng(town.code, "villages")
        weights = [
            (COMMUNITY_WEIGHT if v.is_community else 1.0) * rng.lognormal(0.0, 0.5) for v in members
        ]
        pieces = _partition(
            town_geom,
            weights,
            rng,
            VILLAGE_ATOMS_PER_VILLAGE,
            central=[v.is_community for v in members],
        )
        village_flat.update(zip((v.code for v in members), pieces, strict=True))

    # Grid counts by area rank: the smallest sixth of villages get 3 grids, the largest 8.
    all_villages = [v for t in towns for v in villages[t.code]]
    ranked = sorted(all_villages, key=lambda v: (village_flat[v.code].area, v.code))
    span = MAX_GRIDS - MIN_GRIDS + 1
    grid_count = {
        v.code: MIN_GRIDS + min(span - 1, span * rank // len(ranked))
        for rank, v in enumerate(ranked)
    }
    grid_pieces: list[BaseGeometry] = []
    grid_village: list[Division] = []
    for v in all_villages:
        rng = _rng(v.code, "grids")
        n = grid_count[v.code]
        weights = rng.lognormal(0.0, 0.25, n).tolist()
        for piece in _partition(village_flat[v.code], weights, rng, GRID_ATOMS_PER_GRID):
            grid_pieces.append(plane.to_lonlat(piece))
            grid_village.append(v)

    # One exact coverage of the county; villages and towns are unions of grid faces.
    faces = _exact_coverage(county, grid_pieces)
    if any(not f for f in faces):
        raise RuntimeError("a synthetic grid lost all its area while snapping")
    village_faces: dict[str, list[Polygon]] = {v.code: [] for v in all_villages}
    grids_by_village: dict[str, list[int]] = {v.code: [] for v in all_villages}
    for i, v in enumerate(grid_village):
        village_faces[v.code].extend(faces[i])
        grids_by_village[v.code].append(i)

    town_features: list[Feature] = []
    village_features: list[Feature] = []
    grid_features: list[Feature] = []
    for town in towns:
        town_faces = [f for v in villages[town.code] for f in village_faces[v.code]]
        town_features.append((_props(town, "town"), _union(town_faces)))
        for v in villages[town.code]:
            village_features.append((_props(v, "village"), _union(village_faces[v.code])))
            geoms = [_union(faces[i]) for i in grids_by_village[v.code]]
            stem = grid_name_stem(v.name)
            for number, idx in enumerate(reading_order(geoms), start=1):
                grid = Division("grid", f"{v.code}{number:03d}", v.code, f"{stem}第{number}网格")
                grid_features.append((_props(grid, "grid"), geoms[idx]))

    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "boundary.geojson"
    if not target.exists() or not target.samefile(boundary_path):
        shutil.copyfile(boundary_path, target)
    write_divisions(out_dir / "divisions.csv", rows)
    for layer, features in zip(
        LAYERS, (town_features, village_features, grid_features), strict=True
    ):
        features.sort(key=lambda f: f[0]["code"])
        write_geojson(out_dir / f"{layer}.geojson", f"{county_code}_{layer}", features)
    return {
        "county": county_code,
        "towns": len(town_features),
        "villages": len(village_features),
        "grids": len(grid_features),
        "out_dir": str(out_dir),
    }


def _props(row: Division, level: str) -> dict[str, Any]:
    return {
        "code": row.code,
        "name": row.name,
        "parent_code": row.parent_code,
        "level": level,
        "synthetic": True,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Regenerate geodata/<county>/ from its boundary.geojson and divisions.csv."""
    parser = argparse.ArgumentParser(prog="python -m gridgov.geo.synth", description=main.__doc__)
    parser.add_argument("county", nargs="+", help="6-digit county code, e.g. 441523")
    parser.add_argument(
        "--src",
        type=Path,
        default=GEODATA,
        help="folder holding <county>/ or <county>_boundary.geojson and <county>_divisions.csv"
        " (default: geodata/)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=GEODATA,
        help="folder to write <county>/ into (default: geodata/)",
    )
    args = parser.parse_args(argv)
    for code in args.county:
        src = args.src / code if (args.src / code).is_dir() else args.src
        print(json.dumps(generate(code, src, args.out / code), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
