"""Geocoding: a position or a place name → the grid, village, town and county it belongs to.

The one service behind the API, the CLI and event reporting. Positions are located in a
combined `GridIndex` of every county's active grid set, built once and cached; free text is
matched against town and village names (see `resolve_text`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from gridgov.errors import BadRequest, Unprocessable
from gridgov.geo import crs as crs_module
from gridgov.geo.index import GridIndex, Hit
from gridgov.models import Grid, GridSet, Level, Region
from gridgov.regions import geodata_version

__all__ = [
    "GridCatalog",
    "Placement",
    "TextMatch",
    "clear_index_cache",
    "geocode",
    "geocode_query",
    "geocode_text",
    "grid_catalog",
    "name_variants",
    "place_wgs84",
    "resolve_text",
]

DEFAULT_TOLERANCE_M = 200.0
_DECIMALS = 7


# ---------------------------------------------------------------------------
# Placement


@dataclass(frozen=True)
class Placement:
    """Where a WGS84 position falls: its grid and the administrative units above it."""

    grid_id: int
    grid_code: str
    grid_name: str
    village_code: str
    village_name: str
    town_code: str
    town_name: str
    county_code: str
    county_name: str
    snapped: bool
    distance_m: float
    lng: float
    lat: float

    def to_dict(self) -> dict[str, Any]:
        """Return the API representation (WGS84 position rounded to 7 decimals)."""
        return {
            "grid_code": self.grid_code,
            "grid_name": self.grid_name,
            "village_code": self.village_code,
            "village_name": self.village_name,
            "town_code": self.town_code,
            "town_name": self.town_name,
            "county_code": self.county_code,
            "county_name": self.county_name,
            "snapped": self.snapped,
            "distance_m": round(self.distance_m, 1),
            "lng": round(self.lng, _DECIMALS),
            "lat": round(self.lat, _DECIMALS),
        }


# ---------------------------------------------------------------------------
# The cached index of all active grid sets


@dataclass(frozen=True)
class GridCatalog:
    """The combined grid index of every active grid set, with the names of their regions."""

    index: GridIndex
    region_names: Mapping[str, str]

    def placement(self, hit: Hit, lng: float, lat: float) -> Placement:
        """Return the Placement of a WGS84 point the index located as `hit`."""
        position = hit.position
        village = self.index.village_codes[position]
        town, county = village[:9], village[:6]
        return Placement(
            grid_id=hit.grid_id,
            grid_code=hit.grid_code,
            grid_name=self.index.names[position],
            village_code=village,
            village_name=self.region_names.get(village, ""),
            town_code=town,
            town_name=self.region_names.get(town, ""),
            county_code=county,
            county_name=self.region_names.get(county, ""),
            snapped=hit.snapped,
            distance_m=hit.distance_m,
            lng=lng,
            lat=lat,
        )


_CACHE_SIZE = 4
_cache: OrderedDict[Hashable, GridCatalog] = OrderedDict()
_cache_lock = threading.Lock()


def _database_key(session: Session) -> str:
    """Return the URL of the database the session talks to (password hidden)."""
    return str(session.get_bind().engine.url)


def _active_sets_key(session: Session) -> tuple[Hashable, ...]:
    """Return what identifies the active grid sets: a changed set gives a changed key.

    Besides the id, the key holds the count, name and creation time, so that an id SQLite
    reuses after a rolled-back import cannot bring back a stale index.
    """
    rows = session.execute(
        select(GridSet.id, GridSet.grid_count, GridSet.name, GridSet.created_at)
        .where(GridSet.active.is_(True))
        .order_by(GridSet.id)
    ).all()
    return tuple((r.id, r.grid_count, r.name, str(r.created_at)) for r in rows)


def _build_catalog(session: Session, set_ids: list[int]) -> GridCatalog:
    rows = session.execute(
        select(Grid.id, Grid.code, Grid.name, Grid.village_code, Grid.geom)
        .where(Grid.grid_set_id.in_(set_ids))
        .order_by(Grid.code)
    ).all()
    index = GridIndex(
        [r.id for r in rows],
        [r.code for r in rows],
        [r.name for r in rows],
        [r.village_code for r in rows],
        [r.geom for r in rows],
    )
    names = {code: name for code, name in session.execute(select(Region.code, Region.name))}
    return GridCatalog(index, names)


def grid_catalog(session: Session) -> GridCatalog:
    """Return the cached index of all active grid sets, building it after any change."""
    sets = _active_sets_key(session)
    key = (_database_key(session), geodata_version(session), sets)
    catalog = _cache.get(key)
    if catalog is not None:
        return catalog
    with _cache_lock:
        catalog = _cache.get(key)
        if catalog is None:
            catalog = _build_catalog(session, [s[0] for s in sets])  # type: ignore[index]
            _cache[key] = catalog
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
        return catalog


def clear_index_cache() -> None:
    """Forget every cached index (the next lookup rebuilds)."""
    with _cache_lock:
        _cache.clear()


# ---------------------------------------------------------------------------
# Position → placement


def _approx(metres: float) -> str:
    if metres < 10_000:
        return f"约 {metres:,.0f} 米"
    return f"约 {metres / 1000:,.0f} 公里"


def _to_wgs84(lng: object, lat: object, crs: str) -> tuple[float, float, crs_module.CRS]:
    """Return the WGS84 position of input in `crs`, or raise Unprocessable."""
    try:
        system = crs_module.parse_crs(crs)
    except crs_module.UnknownCRS:
        known = "、".join(c.value for c in crs_module.CRS)
        raise Unprocessable(
            f"未知的坐标系 {crs!r}：应为 {known} 之一", code="unknown_crs", crs=str(crs)
        ) from None
    try:
        x, y = crs_module.check_lnglat(lng, lat)
        wgs_lng, wgs_lat = crs_module.to_wgs84(x, y, system)
    except crs_module.BadCoordinates as exc:
        raise Unprocessable(
            str(exc), code="bad_coordinates", lng=str(lng), lat=str(lat), crs=system.value
        ) from None
    return wgs_lng, wgs_lat, system


def place_wgs84(
    session: Session, lng: float, lat: float, tolerance_m: float = DEFAULT_TOLERANCE_M
) -> Placement | None:
    """Return the Placement of a valid WGS84 position, or None if it is outside every grid."""
    catalog = grid_catalog(session)
    hit = catalog.index.locate(lng, lat, tolerance_m)
    return None if hit is None else catalog.placement(hit, lng, lat)


def geocode(
    session: Session,
    lng: object,
    lat: object,
    crs: str = "wgs84",
    tolerance_m: float = DEFAULT_TOLERANCE_M,
) -> Placement:
    """Return the grid of a position given in `crs`; raise Unprocessable if bad or outside."""
    wgs_lng, wgs_lat, system = _to_wgs84(lng, lat, crs)
    catalog = grid_catalog(session)
    hit = catalog.index.locate(wgs_lng, wgs_lat, tolerance_m)
    if hit is not None:
        return catalog.placement(hit, wgs_lng, wgs_lat)
    details: dict[str, Any] = {
        "lng": round(wgs_lng, _DECIMALS),
        "lat": round(wgs_lat, _DECIMALS),
        "crs": system.value,
        "tolerance_m": tolerance_m,
    }
    nearest = catalog.index.nearest(wgs_lng, wgs_lat)
    if nearest is None:
        message = "坐标不在本系统管辖范围内（系统中尚无启用的网格）"
    else:
        details["nearest_m"] = round(nearest.distance_m, 1)
        details["nearest_grid_code"] = nearest.grid_code
        message = f"坐标不在本系统管辖范围内（最近网格距离{_approx(nearest.distance_m)}）"
    raise Unprocessable(message, code="outside_jurisdiction", **details)


# ---------------------------------------------------------------------------
# Free text → region

_VILLAGE_FORMS = (
    # (suffix of the official name, other suffixes people write for the same unit)
    ("社区居委会", ("社区", "居委会", "社区居委会")),
    ("居民委员会", ("社区", "居委会", "社区居委会")),
    ("村民委员会", ("村", "村委会", "村委")),
    ("居委会", ("社区", "社区居委会")),
    ("村委会", ("村", "村委", "村民委员会")),
    ("社区", ("居委会", "社区居委会")),
    ("村", ("村委会", "村委")),
)
_TOWN_FORMS = (
    ("街道办事处", ("街道", "街道办")),
    ("街道", ("街道办事处", "街道办")),
    ("镇", ()),
    ("乡", ()),
)
_COUNTY_FORMS = (("自治县", ()), ("县", ()), ("区", ()), ("市", ()))
_FORMS = {Level.VILLAGE.value: _VILLAGE_FORMS, Level.TOWN.value: _TOWN_FORMS}
_MIN_BARE = 2
_LEVEL_ORDER = {Level.COUNTY.value: 0, Level.TOWN.value: 1, Level.VILLAGE.value: 2}


def name_variants(name: str, level: str) -> list[tuple[str, bool]]:
    """Return the ways `name` may be written, each flagged strong (with a suffix) or bare."""
    variants: dict[str, bool] = {name: True}
    for suffix, others in _FORMS.get(level, _COUNTY_FORMS):
        if name.endswith(suffix) and len(name) > len(suffix):
            base = name[: -len(suffix)]
            for other in others:
                variants.setdefault(base + other, True)
            if len(base) >= _MIN_BARE:
                variants.setdefault(base, False)
            break
    return list(variants.items())


@dataclass(frozen=True)
class TextMatch:
    """What a piece of text names: one region, or (region None) the candidates it might mean."""

    region: Region | None
    candidates: tuple[Region, ...] = ()


@dataclass(frozen=True)
class _Mention:
    start: int
    end: int
    region: Region
    strong: bool

    def inside(self, other: _Mention) -> bool:
        return (
            other.start <= self.start
            and self.end <= other.end
            and (other.end - other.start) > (self.end - self.start)
        )


def _mentions(text: str, regions: list[Region]) -> list[_Mention]:
    found = []
    for region in regions:
        for variant, strong in name_variants(region.name, region.level):
            start = text.find(variant)
            while start >= 0:
                found.append(_Mention(start, start + len(variant), region, strong))
                start = text.find(variant, start + 1)
    # A name inside a longer name is part of it: 螺溪 in 螺溪镇, 三圳镇 in 三圳镇居委会.
    kept = [m for m in found if not any(m.inside(o) for o in found)]
    # The same words naming several units: a written suffix beats a bare name, and a bare
    # name means the higher unit (螺溪 is 螺溪镇, not 螺溪村委会).
    spans: dict[tuple[int, int], list[_Mention]] = {}
    for m in kept:
        spans.setdefault((m.start, m.end), []).append(m)
    result = []
    for group in spans.values():
        if any(m.strong for m in group):
            group = [m for m in group if m.strong]
        else:
            top = min(_LEVEL_ORDER[m.region.level] for m in group)
            group = [m for m in group if _LEVEL_ORDER[m.region.level] == top]
        result.extend(group)
    return result


def _unique(regions: list[Region]) -> list[Region]:
    return sorted({r.code: r for r in regions}.values(), key=lambda r: r.code)


def _decide(regions: list[Region], strong_codes: set[str]) -> TextMatch:
    """Return the one region among `regions`, preferring those written with a suffix."""
    if len(regions) == 1:
        return TextMatch(regions[0], ())
    strong = [r for r in regions if r.code in strong_codes]
    if len(strong) == 1:
        return TextMatch(strong[0], ())
    return TextMatch(None, tuple(regions))


def resolve_text(session: Session, text: str) -> TextMatch:
    """Return the village (else town, else county) that free text names.

    "螺溪镇欧田村委会附近" → 欧田村委会 of 螺溪镇. A village named in several towns resolves
    only when the text also names its town (or county); otherwise the match has no region
    and lists the candidates. Nothing recognised → no region and no candidates.
    """
    text = "".join(str(text).split())
    if not text:
        return TextMatch(None, ())
    regions = list(
        session.scalars(
            select(Region)
            .where(Region.level.in_([Level.COUNTY, Level.TOWN, Level.VILLAGE]))
            .options(defer(Region.geom))
            .order_by(Region.code)
        )
    )
    mentions = _mentions(text, regions)
    strong_codes = {m.region.code for m in mentions if m.strong}
    by_level: dict[str, list[Region]] = {level: [] for level in _LEVEL_ORDER}
    for m in mentions:
        by_level[m.region.level].append(m.region)
    counties = _unique(by_level[Level.COUNTY.value])
    towns = _unique(by_level[Level.TOWN.value])
    villages = _unique(by_level[Level.VILLAGE.value])
    if counties:
        prefixes = tuple(c.code for c in counties)
        towns = [t for t in towns if t.code.startswith(prefixes)] or towns
        villages = [v for v in villages if v.code.startswith(prefixes)] or villages
    if towns:
        within = [v for v in villages if v.parent_code in {t.code for t in towns}]
        if within:
            return _decide(within, strong_codes)
        if villages:
            return TextMatch(None, tuple(towns + villages))
        return _decide(towns, strong_codes)
    if villages:
        return _decide(villages, strong_codes)
    if counties:
        return _decide(counties, strong_codes)
    return TextMatch(None, ())


def _region_brief(region: Region) -> dict[str, Any]:
    return {"code": region.code, "name": region.name, "level": region.level}


def geocode_text(session: Session, text: str) -> dict[str, Any]:
    """Return the region free text names, with a placement at a village's representative point.

    Raise Unprocessable `place_not_found` if nothing is recognised and `ambiguous_place`
    (listing the candidates) if the text fits several units equally.
    """
    match = resolve_text(session, text)
    if match.region is None:
        if match.candidates:
            raise Unprocessable(
                f"地名不唯一：“{text}”可能指 "
                + "、".join(_qualified(session, c) for c in match.candidates)
                + "，请补充镇（街道）名称",
                code="ambiguous_place",
                query=text,
                candidates=[_region_brief(c) for c in match.candidates],
            )
        raise Unprocessable(
            f"未能从“{text}”中识别出本系统管辖的镇（街道）或村（社区）",
            code="place_not_found",
            query=text,
        )
    region = match.region
    result: dict[str, Any] = {"query": text, **_region_brief(region)}
    for level, length in ((Level.COUNTY, 6), (Level.TOWN, 9)):
        if len(region.code) > length:
            parent = session.get(Region, region.code[:length])
            result[f"{level.value}_code"] = region.code[:length]
            result[f"{level.value}_name"] = parent.name if parent else ""
    result["placement"] = None
    if region.level == Level.VILLAGE and region.geom is not None and not region.geom.is_empty:
        point = region.geom.representative_point()
        result["placement"] = _village_placement(session, region.code, point.x, point.y)
    return result


def _qualified(session: Session, region: Region) -> str:
    """Return the region's name preceded by its town's (or county's) name."""
    parent = session.get(Region, region.parent_code) if region.parent_code else None
    return f"{parent.name}{region.name}" if parent else region.name


def _village_placement(
    session: Session, village_code: str, lng: float, lat: float
) -> dict[str, Any] | None:
    """Return the placement of a point inside a village, in one of that village's grids."""
    catalog = grid_catalog(session)
    index = catalog.index
    hit = index.locate(lng, lat)
    if hit is None or index.village_codes[hit.position] != village_code:
        # Grids should tile their village; where they do not, take the village's nearest grid.
        own = [p for p, code in enumerate(index.village_codes) if code == village_code]
        hit = index.nearest_of(lng, lat, own) if own else None
    if hit is None:
        return None
    return catalog.placement(hit, lng, lat).to_dict()


# ---------------------------------------------------------------------------
# Request parameters → answer (the API's one domain call)


def geocode_query(
    session: Session, params: Mapping[str, str], tolerance_m: float = DEFAULT_TOLERANCE_M
) -> dict[str, Any]:
    """Answer a geocoding request: `q` (free text) or `lng`, `lat` and optional `crs`."""
    text = (params.get("q") or "").strip()
    if text:
        return geocode_text(session, text)
    missing = [name for name in ("lng", "lat") if not (params.get(name) or "").strip()]
    if missing:
        raise BadRequest(
            "缺少参数：" + "、".join(missing) + "（或以 q 传入地名）",
            code="missing_parameter",
            missing=missing,
        )
    crs = (params.get("crs") or "").strip() or "wgs84"
    return geocode(session, params["lng"], params["lat"], crs, tolerance_m).to_dict()
