"""Benchmark point → grid lookup: gridgov's GridIndex against PostGIS on the same data.

Synthetic grids are Voronoi cells of seeded random points, clipped to the real 陆河县 (441523)
boundary from geodata/; query points are seeded random points inside the county. For each
grid count the benchmark measures, in one run and on the same machine:

- single lookups per second: `GridIndex.locate(lng, lat)` in a Python loop, against one
  `ST_Contains` query per point through SQLAlchemy + psycopg on one connection (GiST index on
  the grids);
- bulk throughput in points per second: `GridIndex.locate_many` over all points, against the
  polygon-outer LATERAL join over a points table loaded with COPY, GiST-indexed and (unless
  --no-cluster) clustered on that index, with every (grid, point) row fetched into Python;
- index build time: the STRtree behind GridIndex, against `CREATE INDEX … USING gist` on the
  grids table.

Both sides must agree on every sampled point that lies strictly inside one grid, or the run
fails. PostgreSQL is a throwaway cluster (gridgov.pgtemp); it needs the Debian packages
postgresql and postgresql-15-postgis-3 (scripts/test installs them).

Quick run (about a minute):  python bench/geocode.py
Full run (several minutes):  python bench/geocode.py --sizes 1000,10000,100000 \\
                                 --points 1000000 --single 20000
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Connection, create_engine, text

from gridgov.config import ROOT
from gridgov.geo.index import GridIndex
from gridgov.pgtemp import TemporaryPostgres

COUNTY = "441523"
BOUNDARY = ROOT / "geodata" / COUNTY / "boundary.geojson"
STRICT_MARGIN_DEG = 1e-7
"""A sampled point counts as strictly inside its grid if it is this far (≈1 cm) from the edge."""

SINGLE_SQL = text(
    "SELECT id FROM grids "
    "WHERE ST_Contains(geom, ST_SetSRID(ST_MakePoint(:lng, :lat), 4326)) "
    "LIMIT 1"
)
BULK_SQL = (
    "SELECT g.id, p.id FROM grids g CROSS JOIN LATERAL "
    "(SELECT p.id FROM points p WHERE ST_Contains(g.geom, p.geom) OFFSET 0) p"
)
"""The polygon-outer LATERAL join. `OFFSET 0` keeps it polygon-outer: without it PostgreSQL 15
flattens the subquery into a plain join and, at these sizes, picks a parallel points-outer
plan that is 2-5x slower (PostGIS can then not reuse one prepared polygon for many points)."""

T = TypeVar("T")


@dataclass
class Row:
    """The figures of one grid count."""

    size: int
    ours_build_s: float
    pg_build_s: float
    ours_single: float
    pg_single: float
    ours_bulk: float
    pg_bulk: float
    agreed: int


def load_boundary(path: Path = BOUNDARY) -> BaseGeometry:
    """Return the county boundary (one WGS84 (Multi)Polygon) from a GeoJSON file."""
    features = json.loads(path.read_text(encoding="utf-8"))["features"]
    return shapely.union_all([shape(f["geometry"]) for f in features])


def random_points_inside(
    region: BaseGeometry, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Return `n` uniformly random (lng, lat) pairs inside `region` (rejection sampling)."""
    minx, miny, maxx, maxy = region.bounds
    shapely.prepare(region)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    have = 0
    while have < n:
        batch = max(1024, 2 * (n - have))
        x = rng.uniform(minx, maxx, batch)
        y = rng.uniform(miny, maxy, batch)
        keep = shapely.contains_xy(region, x, y)
        xs.append(x[keep])
        ys.append(y[keep])
        have += int(keep.sum())
    return np.concatenate(xs)[:n], np.concatenate(ys)[:n]


def voronoi_grids(boundary: BaseGeometry, n: int, seed: int) -> np.ndarray:
    """Return about `n` Voronoi cells of seeded random points, clipped to the boundary."""
    rng = np.random.default_rng(seed)
    x, y = random_points_inside(boundary, n, rng)
    cells = shapely.get_parts(
        shapely.voronoi_polygons(shapely.multipoints(np.column_stack([x, y])), extend_to=boundary)
    )
    # Only the cells that cross the county edge need clipping; most lie wholly inside.
    shapely.prepare(boundary)
    inside = shapely.contains_properly(boundary, cells)
    clipped = cells.copy()
    clipped[~inside] = shapely.intersection(cells[~inside], boundary)
    clipped = clipped[~shapely.is_empty(clipped)]
    # Keep polygonal parts only (a clip can leave stray lines or points on the edge).
    polygons = [
        shapely.multipolygons(
            [p for p in shapely.get_parts(g) if p.geom_type == "Polygon" and p.area > 0]
        )
        for g in clipped
    ]
    return np.asarray([g for g in polygons if not g.is_empty], dtype=object)


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """Return fn()'s result and its wall-clock duration in seconds."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def best_of(repeat: int, fn: Callable[[], T]) -> tuple[T, float]:
    """Run fn `repeat` times; return the last result and the shortest duration."""
    best = float("inf")
    result: Any = None
    for _ in range(max(1, repeat)):
        result, seconds = timed(fn)
        best = min(best, seconds)
    return result, best


def copy_rows(conn: Connection, table: str, ids: np.ndarray, geoms: np.ndarray) -> None:
    """COPY (id, geom) rows into `table`, geometries as hex EWKB with SRID 4326."""
    hexes = shapely.to_wkb(shapely.set_srid(geoms, 4326), hex=True, include_srid=True)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    chunk = 200_000
    with cursor.copy(f"COPY {table} (id, geom) FROM STDIN") as copy:
        for start in range(0, len(ids), chunk):
            buffer = io.StringIO()
            for i, h in zip(
                ids[start : start + chunk].tolist(),
                hexes[start : start + chunk].tolist(),
                strict=True,
            ):
                buffer.write(f"{i}\t{h}\n")
            copy.write(buffer.getvalue())


@contextmanager
def postgis() -> Iterator[tuple[TemporaryPostgres, Connection]]:
    """Start a throwaway PostgreSQL + PostGIS and yield it with one autocommit connection."""
    with TemporaryPostgres(dbname="gridgov_bench") as pg:
        engine = create_engine(pg.url)
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            yield pg, conn
        engine.dispose()


def load_points(
    conn: Connection, lngs: np.ndarray, lats: np.ndarray, cluster: bool
) -> tuple[float, float]:
    """Create and fill the points table; return (COPY seconds, GiST build seconds).

    With `cluster`, the table is rewritten in the order of its GiST index, so that points
    near each other share pages: PostGIS's best case for the bulk join (random order, as
    events arrive, makes it read a heap page for nearly every point).
    """
    conn.exec_driver_sql("CREATE TABLE points (id integer PRIMARY KEY, geom geometry(Point, 4326))")
    ids = np.arange(len(lngs), dtype=np.int64)
    _, copy_s = timed(lambda: copy_rows(conn, "points", ids, shapely.points(lngs, lats)))
    _, gist_s = timed(
        lambda: conn.exec_driver_sql("CREATE INDEX points_geom ON points USING gist (geom)")
    )
    if cluster:
        conn.exec_driver_sql("CLUSTER points USING points_geom")
    conn.exec_driver_sql("VACUUM ANALYZE points")
    return copy_s, gist_s


def load_grids(conn: Connection, geoms: np.ndarray) -> float:
    """(Re)create and fill the grids table; return the GiST build seconds."""
    conn.exec_driver_sql("DROP TABLE IF EXISTS grids")
    conn.exec_driver_sql(
        "CREATE TABLE grids (id integer PRIMARY KEY, geom geometry(Geometry, 4326))"
    )
    copy_rows(conn, "grids", np.arange(1, len(geoms) + 1, dtype=np.int64), geoms)
    _, gist_s = timed(
        lambda: conn.exec_driver_sql("CREATE INDEX grids_geom ON grids USING gist (geom)")
    )
    conn.exec_driver_sql("VACUUM ANALYZE grids")
    return gist_s


def pg_single(conn: Connection, lngs: list[float], lats: list[float]) -> list[int]:
    """Look each point up with one ST_Contains query; return grid ids (0 outside)."""
    out = []
    for lng, lat in zip(lngs, lats, strict=True):
        found = conn.execute(SINGLE_SQL, {"lng": lng, "lat": lat}).scalar()
        out.append(0 if found is None else found)
    return out


def pg_bulk(conn: Connection) -> list[tuple[int, int]]:
    """Run the LATERAL join and fetch every (grid id, point id) row."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    cursor.execute(BULK_SQL)
    return cursor.fetchall()


def ours_single(index: GridIndex, lngs: list[float], lats: list[float]) -> list[int]:
    """Look each point up with GridIndex.locate; return grid ids (0 outside)."""
    out = []
    for lng, lat in zip(lngs, lats, strict=True):
        hit = index.locate(lng, lat)
        out.append(0 if hit is None else hit.grid_id)
    return out


def strictly_inside(geoms: np.ndarray, positions: np.ndarray, x: np.ndarray, y: np.ndarray):
    """Return a mask of the points that lie in their grid and away from its edge."""
    mask = positions >= 0
    pts = shapely.points(x[mask], y[mask])
    away = shapely.distance(shapely.boundary(geoms[positions[mask]]), pts) > STRICT_MARGIN_DEG
    result = np.zeros(len(positions), dtype=bool)
    result[np.flatnonzero(mask)[away]] = True
    return result


def run_size(
    conn: Connection,
    boundary: BaseGeometry,
    size: int,
    lngs: np.ndarray,
    lats: np.ndarray,
    single_n: int,
    sample_n: int,
    repeat: int,
    seed: int,
) -> Row:
    """Measure one grid count; raise if the two sides disagree."""
    geoms = voronoi_grids(boundary, size, seed + size)
    n = len(geoms)
    ids = list(range(1, n + 1))
    codes = [f"{i:07d}" for i in ids]
    index, ours_build_s = best_of(
        repeat, lambda: GridIndex(ids, codes, codes, ["0"] * n, list(geoms))
    )
    pg_build_s = load_grids(conn, geoms)
    plan = [r[0] for r in conn.exec_driver_sql("EXPLAIN " + BULK_SQL)]
    if not any("Seq Scan on grids" in line for line in plan[:3]):
        raise SystemExit("the bulk join is not polygon-outer:\n" + "\n".join(plan))

    s_lngs, s_lats = lngs[:single_n].tolist(), lats[:single_n].tolist()
    ours_single(index, s_lngs[:200], s_lats[:200])  # warm up
    pg_single(conn, s_lngs[:200], s_lats[:200])
    ours_ids, ours_single_s = best_of(repeat, lambda: ours_single(index, s_lngs, s_lats))
    pg_ids, pg_single_s = best_of(repeat, lambda: pg_single(conn, s_lngs, s_lats))

    positions, ours_bulk_s = best_of(repeat, lambda: index.locate_many(lngs, lats))
    rows, pg_bulk_s = best_of(repeat, lambda: pg_bulk(conn))

    # Agreement on points strictly inside one grid: PostGIS's grid id for each point
    # (0 = none; a point on a shared edge may get two rows, but such points are excluded).
    pg_pos = np.full(len(lngs), -1, dtype=np.int64)
    if rows:
        pairs = np.asarray(rows, dtype=np.int64)
        pg_pos[pairs[:, 1]] = pairs[:, 0] - 1
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(lngs), size=min(sample_n, len(lngs)), replace=False)
    strict = sample[strictly_inside(geoms, positions[sample], lngs[sample], lats[sample])]
    bad_bulk = int((positions[strict] != pg_pos[strict]).sum())
    s_pos = np.asarray(ours_ids, dtype=np.int64) - 1
    s_strict = np.flatnonzero(strictly_inside(geoms, s_pos, lngs[:single_n], lats[:single_n]))
    bad_single = int((np.asarray(ours_ids)[s_strict] != np.asarray(pg_ids)[s_strict]).sum())
    if bad_bulk or bad_single or len(strict) < 0.9 * len(sample):
        raise SystemExit(
            f"{size} grids: GridIndex and PostGIS disagree (bulk {bad_bulk} of {len(strict)}, "
            f"single {bad_single} of {len(s_strict)} strictly-inside points)"
        )
    return Row(
        size=n,
        ours_build_s=ours_build_s,
        pg_build_s=pg_build_s,
        ours_single=single_n / ours_single_s,
        pg_single=single_n / pg_single_s,
        ours_bulk=len(lngs) / ours_bulk_s,
        pg_bulk=len(lngs) / pg_bulk_s,
        agreed=len(strict) + len(s_strict),
    )


def machine() -> str:
    """Describe the machine: CPU model, core count, memory."""
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {os.cpu_count()} CPUs{mem}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--sizes", default="1000,10000", help="grid counts, comma-separated")
    parser.add_argument("--points", type=int, default=100_000, help="points for the bulk test")
    parser.add_argument("--single", type=int, default=2_000, help="points looked up one by one")
    parser.add_argument("--sample", type=int, default=10_000, help="points checked for agreement")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measure; best counts")
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument(
        "--no-cluster",
        action="store_true",
        help="leave the PostGIS points table in random order (default: CLUSTER on its GiST)",
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.single > args.points:
        parser.error("--single must not exceed --points")

    boundary = load_boundary()
    lngs, lats = random_points_inside(boundary, args.points, np.random.default_rng(args.seed))
    with postgis() as (_pg, conn):
        versions = conn.exec_driver_sql(
            "SELECT current_setting('server_version'), postgis_lib_version()"
        ).one()
        print(
            f"machine: {machine()}\n"
            f"python {platform.python_version()}, shapely {shapely.__version__} "
            f"(GEOS {shapely.geos_version_string}), PostgreSQL {versions[0]}, "
            f"PostGIS {versions[1]}\n"
            f"grids: Voronoi cells clipped to {COUNTY} ({BOUNDARY.relative_to(ROOT)}); "
            f"{args.points:,} bulk points, {args.single:,} single lookups, "
            f"best of {args.repeat}; points table "
            f"{'in random order' if args.no_cluster else 'clustered on its GiST index'}",
            flush=True,
        )
        # JIT compilation only adds time to these queries.
        conn.exec_driver_sql("SET jit = off")
        copy_s, gist_s = load_points(conn, lngs, lats, cluster=not args.no_cluster)
        print(
            f"PostGIS points table: COPY {copy_s:.2f} s "
            f"({args.points / copy_s:,.0f} rows/s), GiST index {gist_s:.2f} s\n",
            flush=True,
        )
        header = (
            f"{'grids':>7} | {'ours single/s':>13} {'PostGIS single/s':>16} {'ratio':>6} | "
            f"{'ours bulk pt/s':>14} {'PostGIS bulk pt/s':>17} {'ratio':>6} | "
            f"{'ours build':>10} {'PostGIS GiST':>12}"
        )
        print(header)
        print("-" * len(header), flush=True)
        for size in sizes:
            r = run_size(
                conn,
                boundary,
                size,
                lngs,
                lats,
                args.single,
                args.sample,
                args.repeat,
                args.seed,
            )
            print(
                f"{r.size:>7,} | {r.ours_single:>13,.0f} {r.pg_single:>16,.0f} "
                f"{r.ours_single / r.pg_single:>5.1f}x | "
                f"{r.ours_bulk:>14,.0f} {r.pg_bulk:>17,.0f} {r.ours_bulk / r.pg_bulk:>5.1f}x | "
                f"{r.ours_build_s * 1000:>8.0f}ms {r.pg_build_s * 1000:>10.0f}ms",
                flush=True,
            )
        print("\nratio = ours / PostGIS (higher is better for gridgov); both sides agreed on")
        print("every sampled point strictly inside one grid.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
