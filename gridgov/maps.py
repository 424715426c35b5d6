"""The 民情地图 shell, composed with folium: the one module that imports folium.

The page folium renders holds no events and no polygons — only the map, its basemap, empty
layers (areas, events with a marker-cluster group, heat) with a layer switcher, and the call
that hands them to static/js/map/map.js, which fetches GeoJSON by bounding box and zoom
(gridgov.mapdata). Every script and stylesheet is served from /static (vendored Leaflet,
Leaflet.markercluster and Leaflet.heat): folium's CDN defaults are replaced per instance, and
nothing from jQuery, Bootstrap or Font Awesome is needed.

Basemaps (Settings.basemap): none (offline default: a plain background), tianditu (天地图
vec_w + cva_w with the key; CGCS2000 = WGS84 at map scale), xyz (an intranet tile server; if
its tiles are GCJ-02, set GRIDGOV_BASEMAP_CRS=gcj02 and the data is converted for display),
osm. Only `none` keeps the browser entirely on this server.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import folium
from branca.element import Figure, MacroElement
from folium.elements import JSCSSMixin
from folium.plugins import HeatMap, MarkerCluster
from jinja2 import Template

from gridgov.config import Settings

TIANDITU_URL = (
    "https://t{s}.tianditu.gov.cn/{layer}_w/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0"
    "&LAYER={layer}&STYLE=default&TILEMATRIXSET=w&FORMAT=tiles"
    "&TILEMATRIX={{z}}&TILEROW={{y}}&TILECOL={{x}}&tk={key}"
)
TIANDITU_ATTR = "© 天地图 国家地理信息公共服务平台"
OSM_URL = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
OSM_ATTR = "© OpenStreetMap contributors"
MAX_ZOOM = 18
MIN_ZOOM = 6
DEFAULT_CENTER = (23.30, 115.66)
"""陆河县城, used only when the jurisdiction has no geometry."""

AssetUrl = Callable[[str], str]
"""Maps a path under static/ to its URL (the web layer passes Flask's url_for)."""


def display_crs(settings: Settings) -> str:
    """Return the CRS the map is drawn in: GCJ-02 only for a GCJ-02 intranet tile server."""
    return settings.basemap_crs if settings.basemap == "xyz" else "wgs84"


@dataclass(frozen=True)
class MapShell:
    """The three parts of the folium page, for a template to place."""

    header: str
    """<script>/<link> tags and the map's CSS (for <head>)."""
    html: str
    """The map <div>."""
    script: str
    """The JavaScript that builds the map (for a <script> at the end of <body>)."""
    map_name: str


class _Wiring(JSCSSMixin, MacroElement):
    """Load the page's own JS/CSS and hand folium's layers to it (gg.mapPage.start)."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
            gg.mapPage.start({
                map: {{ this._parent.get_name() }},
                areas: {{ this.areas.get_name() }},
                events: {{ this.events.get_name() }},
                cluster: {{ this.cluster.get_name() }},
                heat: {{ this.heat.get_name() }},
                layers: {{ this.control.get_name() }}
            }, {{ this.config|tojson }});
        {% endmacro %}
        """
    )

    def __init__(
        self,
        asset: AssetUrl,
        config: dict[str, Any],
        areas: folium.FeatureGroup,
        events: folium.FeatureGroup,
        cluster: MarkerCluster,
        heat: HeatMap,
        control: folium.LayerControl,
    ) -> None:
        super().__init__()
        self._name = "GridgovMap"
        self.config = config
        self.areas, self.events, self.cluster, self.heat = areas, events, cluster, heat
        self.control = control
        self.default_js = [("gridgov_map", asset("js/map/map.js"))]
        self.default_css = [("gridgov_map_css", asset("css/map.css"))]


def _basemaps(m: folium.Map, settings: Settings) -> None:
    if settings.basemap == "tianditu":
        for layer, name in (("vec", "天地图矢量"), ("cva", "天地图注记")):
            folium.TileLayer(
                tiles=TIANDITU_URL.format(s="{s}", layer=layer, key=settings.tianditu_key),
                attr=TIANDITU_ATTR,
                name=name,
                subdomains="01234567",
                max_zoom=MAX_ZOOM,
                overlay=layer == "cva",
                control=False,
            ).add_to(m)
    elif settings.basemap == "xyz":
        folium.TileLayer(
            tiles=settings.basemap_url,
            attr="内网地图服务",
            name="底图",
            max_zoom=MAX_ZOOM,
            control=False,
        ).add_to(m)
    elif settings.basemap == "osm":
        folium.TileLayer(
            tiles=OSM_URL, attr=OSM_ATTR, name="OpenStreetMap", max_zoom=MAX_ZOOM, control=False
        ).add_to(m)


_META = re.compile(r"<meta\b[^>]*>", re.IGNORECASE | re.DOTALL)


def map_shell(
    settings: Settings,
    asset: AssetUrl,
    config: dict[str, Any],
    bounds: list[list[float]] | None,
) -> MapShell:
    """Compose the map: basemap, empty layers, layer switcher and the JS wiring.

    `config` goes to gg.mapPage.start as JSON (URLs, filters, legend settings — no data);
    `bounds` [[south, west], [north, east]] is where the map opens: the script fits them
    without animation (folium's FitBounds animates, and a view restored from the URL right
    after would be undone when that animation ends).
    """
    center = (
        ((bounds[0][0] + bounds[1][0]) / 2, (bounds[0][1] + bounds[1][1]) / 2)
        if bounds
        else DEFAULT_CENTER
    )
    # folium drops max_zoom when tiles=None; MarkerCluster needs the map's maxZoom.
    options: dict[str, Any] = {"maxZoom": MAX_ZOOM, "minZoom": MIN_ZOOM, "zoomSnap": 1}
    m = folium.Map(
        location=center,
        zoom_start=10,
        tiles=None,
        control_scale=True,
        prefer_canvas=False,
        min_zoom=MIN_ZOOM,
        **options,
    )
    m.default_js = [("leaflet", asset("vendor/leaflet/leaflet.js"))]
    m.default_css = [("leaflet_css", asset("vendor/leaflet/leaflet.css"))]
    _basemaps(m, settings)

    areas = folium.FeatureGroup(name="区域着色", show=True)
    areas.add_to(m)
    events = folium.FeatureGroup(name="事件分布", show=True)
    events.add_to(m)
    cluster = MarkerCluster(
        control=False,
        options={
            "disableClusteringAtZoom": 17,
            "showCoverageOnHover": False,
            "spiderfyOnMaxZoom": True,
            "chunkedLoading": True,
            "maxClusterRadius": 50,
        },
    )
    cluster.default_js = [
        ("markerclusterjs", asset("vendor/leaflet.markercluster/leaflet.markercluster.js"))
    ]
    cluster.default_css = [
        ("markerclustercss", asset("vendor/leaflet.markercluster/MarkerCluster.css")),
        (
            "markerclusterdefaultcss",
            asset("vendor/leaflet.markercluster/MarkerCluster.Default.css"),
        ),
    ]
    cluster.add_to(events)
    heat = HeatMap([], name="热力图", show=False, radius=22, blur=18, min_opacity=0.35)
    heat.default_js = [("leaflet-heat.js", asset("vendor/leaflet.heat/leaflet-heat.js"))]
    heat.add_to(m)
    control = folium.LayerControl(position="topright", collapsed=False)
    control.add_to(m)
    config = {**config, "start": bounds}
    _Wiring(asset, config, areas, events, cluster, heat, control).add_to(m)

    root = m.get_root()
    assert isinstance(root, Figure)
    root.render()
    header = _META.sub("", root.header.render())  # base.html has charset and viewport
    return MapShell(
        header=header.strip(),
        html=root.html.render().strip(),
        script=root.script.render().strip(),
        map_name=m.get_name(),
    )
