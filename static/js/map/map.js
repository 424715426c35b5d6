/* 民情地图: fills the layers folium composed (gridgov/maps.py) with GeoJSON fetched by
 * bounding box and zoom from /api/v1/map/areas and /api/v1/map/events, and in live mode
 * polls /api/v1/map/feed. The page itself carries no events and no polygons.
 *
 *   gg.mapPage.start({map, areas, events, cluster, heat, layers}, config)
 *
 * Filters live in the form #map-filters and in the page URL (replaceState), so a view can
 * be shared by copying the address. #map-layout carries data-level, data-events-mode,
 * data-areas, data-events-total and data-loads (a counter) for tests and styling.
 */
(function () {
  "use strict";

  var gg = (window.gg = window.gg || {});
  var LIST_PARAMS = ["state", "category", "source"];
  var REFRESH_DELAY = 250;
  var TICKER_MAX = 40;
  var FLASH_MS = 60000;

  function esc(value) {
    return String(value === null || value === undefined ? "" : value).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function time(iso) {
    if (!iso) return "";
    return iso.slice(0, 16).replace("T", " ");
  }

  function formatKpi(key, value, rateKeys) {
    if (value === null || value === undefined) return "—";
    if (key === "avg_handling_hours") return value.toFixed(1) + " 小时";
    if (rateKeys[key]) return (value * 100).toFixed(1) + "%";
    return String(Math.round(value)).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }

  function MapPage(layers, config) {
    this.map = layers.map;
    this.layers = layers;
    this.config = config;
    this.form = document.getElementById("map-filters");
    this.layout = document.getElementById("map-layout");
    this.status = document.getElementById("map-status");
    this.crumbBox = document.getElementById("map-crumbs");
    this.crumbs = [];
    this.pending = {};
    this.timer = null;
    this.loads = 0;
    this.level = null;
    this.rateKeys = {
      closure_rate: 1, overdue_rate: 1, on_time_rate: 1, satisfaction_rate: 1,
      due_closure_rate: 1, due_on_time_rate: 1, rework_rate: 1, extension_rate: 1, valid_rate: 1,
    };
    this.serverClusters = L.layerGroup().addTo(layers.events);
    this.flashes = L.layerGroup().addTo(this.map);
    this.map.getContainer().classList.add("gg-map");
    this.map.attributionControl.setPrefix("Leaflet");
    this.addLegend();
    this.bindForm();
    this.restoreView();
    var self = this;
    this.map.on("moveend", function () { self.schedule(); });
    this.map.on("overlayadd overlayremove", function () { self.updateStatus(); });
    this.small = !!(window.matchMedia && window.matchMedia("(max-width: 800px)").matches);
    this.legendOpen = !this.small;
    if (this.small) {
      // Phones: filters folded under the map, legend and layer switcher folded on it.
      var panel = document.getElementById("map-filter-panel");
      if (panel) panel.open = false;
      if (layers.layers && layers.layers.collapse) {
        layers.layers.collapse();
        this.map.on("click", function () { layers.layers.collapse(); });
      }
      setTimeout(function () { self.map.invalidateSize(); }, 0);
    }
    this.refresh();
    if (config.live) this.startLive();
  }

  // ---- filters and URLs ------------------------------------------------------------

  MapPage.prototype.filter = function () {
    var data = new FormData(this.form);
    var out = {
      from: data.get("from") || "",
      to: data.get("to") || "",
      matter: data.get("matter") || "",
      town: data.get("town") || "",
      metric: data.get("metric") || "received",
      department: data.get("department") || "",
      overdue: data.get("overdue") ? "1" : "",
    };
    var form = this.form;
    LIST_PARAMS.forEach(function (name) {
      var boxes = form.querySelectorAll('input[type="checkbox"][name="' + name + '"]');
      var checked = [];
      boxes.forEach(function (box) { if (box.checked) checked.push(box.value); });
      // Everything ticked means no filter; nothing ticked shows nothing.
      out[name] = checked.length === boxes.length ? "" : (checked.length ? checked.join(",") : "-");
    });
    return out;
  };

  MapPage.prototype.common = function (f) {
    var p = new URLSearchParams();
    if (f.from) p.set("from", f.from);
    if (f.to) p.set("to", f.to);
    if (f.matter) p.set("matter", f.matter);
    if (f.town) p.set("region", f.town);
    if (this.config.crs !== "wgs84") p.set("crs", this.config.crs);
    return p;
  };

  MapPage.prototype.bbox = function () {
    var b = this.map.getBounds().pad(0.15);
    var clamp = function (v, lo, hi) { return Math.max(lo, Math.min(hi, v)); };
    return [
      clamp(b.getWest(), -180, 180), clamp(b.getSouth(), -85, 85),
      clamp(b.getEast(), -180, 180), clamp(b.getNorth(), -85, 85),
    ].map(function (v) { return v.toFixed(5); }).join(",");
  };

  MapPage.prototype.areasUrl = function (f) {
    var p = this.common(f);
    p.set("bbox", this.bbox());
    p.set("zoom", String(this.map.getZoom()));
    p.set("metric", f.metric);
    if (f.source && f.source !== "-" && f.source.indexOf(",") < 0) p.set("source", f.source);
    return this.config.urls.areas + "?" + p.toString();
  };

  MapPage.prototype.eventsUrl = function (f) {
    var p = this.common(f);
    p.set("bbox", this.bbox());
    p.set("zoom", String(this.map.getZoom()));
    ["state", "category", "source"].forEach(function (name) { if (f[name]) p.set(name, f[name]); });
    if (f.department) p.set("department", f.department);
    if (f.overdue) p.set("overdue", "1");
    return this.config.urls.events + "?" + p.toString();
  };

  MapPage.prototype.statsQuery = function (f) {
    // The same filter as GET /api/v1/stats (the numbers panel shows the areas' totals).
    var p = new URLSearchParams();
    if (f.from) p.set("from", f.from);
    if (f.to) p.set("to", f.to);
    if (f.matter) p.set("matter", f.matter);
    if (f.town) p.set("region", f.town);
    if (f.source && f.source !== "-" && f.source.indexOf(",") < 0) p.set("source", f.source);
    return p.toString();
  };

  MapPage.prototype.pageUrl = function (f) {
    var p = new URLSearchParams();
    ["from", "to", "matter", "town", "department", "overdue"].forEach(function (k) { if (f[k]) p.set(k, f[k]); });
    if (f.metric && f.metric !== "received") p.set("metric", f.metric);
    LIST_PARAMS.forEach(function (k) { if (f[k]) p.set(k, f[k] === "-" ? "" : f[k]); });
    var c = this.map.getCenter();
    p.set("at", c.lat.toFixed(5) + "," + c.lng.toFixed(5) + "," + this.map.getZoom());
    if (this.config.live) p.set("live", "1");
    return this.config.urls.page + "?" + p.toString();
  };

  MapPage.prototype.syncUrl = function () {
    var url = this.pageUrl(this.filter());
    if (url !== location.pathname + location.search) history.replaceState(null, "", url);
    var at = this.form.querySelector('input[name="at"]');
    var c = this.map.getCenter();
    if (at) at.value = c.lat.toFixed(5) + "," + c.lng.toFixed(5) + "," + this.map.getZoom();
    var link = document.getElementById("map-dashboard-link");
    if (link) link.href = "/dashboard/?" + this.statsQuery(this.filter());
  };

  MapPage.prototype.restoreView = function () {
    var at = new URLSearchParams(location.search).get("at");
    var parts = at ? at.split(",").map(Number) : [];
    if (parts.length === 3 && parts.every(isFinite)) {
      this.map.setView([parts[0], parts[1]], parts[2], { animate: false });
    } else if (this.config.start) {
      this.map.fitBounds(this.config.start, { animate: false });
    }
  };

  MapPage.prototype.bindForm = function () {
    var self = this;
    this.form.addEventListener("change", function (event) {
      var target = event.target;
      if (target && target.name === "town") {
        self.flyToTown(target.value);
        return; // moveend refreshes
      }
      self.refresh();
    });
    this.form.addEventListener("submit", function (event) {
      event.preventDefault();
      self.refresh();
    });
    this.form.querySelectorAll("[data-days]").forEach(function (button) {
      button.addEventListener("click", function () {
        var days = Number(button.getAttribute("data-days"));
        var to = new Date(Date.now() + 8 * 3600 * 1000); // Shanghai calendar day
        var from = new Date(to.getTime() - (days - 1) * 86400000);
        self.form.elements.to.value = to.toISOString().slice(0, 10);
        self.form.elements.from.value = from.toISOString().slice(0, 10);
        self.refresh();
      });
    });
  };

  MapPage.prototype.flyToTown = function (code) {
    var self = this;
    this.crumbs = [];
    if (!code) {
      this.goHome();
      return;
    }
    var town = (this.config.towns || []).filter(function (t) { return t.code === code; })[0];
    // The areas endpoint answers with the polygons; ask for the town at town level first.
    var f = this.filter();
    var p = this.common(f);
    p.set("level", "town");
    p.set("zoom", "10");
    p.set("metric", f.metric);
    gg.api(this.config.urls.areas + "?" + p.toString()).then(function (data) {
      var feature = (data.features || []).filter(function (x) { return x.id === code; })[0];
      if (!feature) { self.refresh(); return; }
      var bounds = L.geoJSON(feature).getBounds();
      self.crumbs = [{ code: code, name: town ? town.name : feature.properties.name, level: "town", bounds: bounds }];
      self.zoomInto("village", bounds);
      self.schedule();
    }, function (error) { self.fail(error); });
  };

  MapPage.prototype.goHome = function () {
    var home = this.config.home;
    this.crumbs = [];
    if (home) this.map.fitBounds(home);
    this.schedule();
  };

  // ---- loading -----------------------------------------------------------------------

  MapPage.prototype.schedule = function () {
    var self = this;
    clearTimeout(this.timer);
    this.timer = setTimeout(function () { self.refresh(); }, REFRESH_DELAY);
  };

  MapPage.prototype.fetch = function (name, url) {
    if (this.pending[name]) this.pending[name].abort();
    var controller = new AbortController();
    this.pending[name] = controller;
    var self = this;
    return gg.api(url, { signal: controller.signal, background: !!this.config.live }).then(function (data) {
      if (self.pending[name] === controller) delete self.pending[name];
      return data;
    });
  };

  MapPage.prototype.refresh = function () {
    clearTimeout(this.timer);
    var self = this;
    var f = this.filter();
    this.syncUrl();
    this.layout.setAttribute("aria-busy", "true");
    var areas = this.fetch("areas", this.areasUrl(f)).then(function (data) { self.drawAreas(data); });
    var nothing = LIST_PARAMS.some(function (name) { return f[name] === "-"; });
    var events = nothing
      ? Promise.resolve({ type: "FeatureCollection", mode: "points", total: 0, features: [] })
      : this.fetch("events", this.eventsUrl(f));
    events = events.then(function (data) { self.drawEvents(data); });
    return Promise.all([areas, events]).then(function () {
      self.loads += 1;
      self.layout.setAttribute("data-loads", String(self.loads));
      self.layout.removeAttribute("aria-busy");
      self.updateStatus();
    }, function (error) {
      if (error && error.name === "AbortError") return;
      self.layout.removeAttribute("aria-busy");
      self.fail(error);
    });
  };

  MapPage.prototype.fail = function (error) {
    if (error && (error.status === 401 || error.code === "session_expired")) {
      location.assign(this.config.urls.login + "?timeout=1&next=" + encodeURIComponent(location.pathname + location.search));
      return;
    }
    this.status.textContent = "加载失败：" + (error && error.message ? error.message : "请稍后重试");
    if (gg.toast) gg.toast(error && error.message ? error.message : "地图数据加载失败", { type: "error" });
  };

  // ---- areas (choropleth) ------------------------------------------------------------

  MapPage.prototype.drawAreas = function (data) {
    var self = this;
    var level = data.level;
    this.level = level;
    this.areaData = data;
    this.layout.setAttribute("data-level", level);
    this.layout.setAttribute("data-areas", String(data.features.length));
    this.layers.areas.clearLayers();
    var weight = { town: 2, village: 1.2, grid: 0.8 }[level] || 1;
    var geo = L.geoJSON(data, {
      style: function (feature) {
        return {
          color: "#4b5563",
          weight: weight,
          opacity: 0.9,
          fillColor: feature.properties.color,
          fillOpacity: 0.6,
          className: "gg-area gg-area-" + feature.properties.level + " gg-area-" + feature.properties.code,
        };
      },
      onEachFeature: function (feature, layer) {
        var p = feature.properties;
        var label = "<strong>" + esc(p.name) + "</strong><br>" + esc(data.metric.name) + "：" + esc(p.display);
        if (level === "town") {
          layer.bindTooltip(label, { permanent: true, direction: "center", className: "gg-area-label" });
        } else {
          layer.bindTooltip(label, { sticky: true, className: "gg-area-tip" });
        }
        layer.on("mouseover", function () { layer.setStyle({ weight: weight + 1.5, color: "#111827" }); });
        layer.on("mouseout", function () { layer.setStyle({ weight: weight, color: "#4b5563" }); });
        layer.on("click", function (event) { self.drill(feature, layer, event); });
      },
    });
    geo.addTo(this.layers.areas);
    this.trimCrumbs(level);
    this.drawLegend(data);
    this.drawTotals(data.totals);
  };

  MapPage.prototype.drill = function (feature, layer, event) {
    var p = feature.properties;
    if (p.level === "grid") {
      L.popup({ maxWidth: 280 })
        .setLatLng(event && event.latlng ? event.latlng : layer.getBounds().getCenter())
        .setContent(this.areaPopup(p))
        .openOn(this.map);
      return;
    }
    var next = p.level === "town" ? "village" : "grid";
    this.crumbs = this.crumbs.filter(function (c) { return c.level === "town" && p.level !== "town"; });
    this.crumbs.push({ code: p.code, name: p.name, level: p.level, bounds: layer.getBounds() });
    this.zoomInto(next, layer.getBounds());
  };

  MapPage.prototype.zoomInto = function (level, bounds) {
    var zooms = this.config.levels[level].zooms;
    var fit = this.map.getBoundsZoom(bounds, false, L.point(20, 20));
    var zoom = Math.max(zooms[0], Math.min(zooms[1], fit));
    this.map.setView(bounds.getCenter(), zoom);
  };

  MapPage.prototype.areaPopup = function (p) {
    var rows = [
      ["受理量", p.received], ["办结量", p.closed], ["在办", p.open], ["逾期", p.overdue],
      ["办结率", formatKpi("closure_rate", p.closure_rate, this.rateKeys)],
      ["逾期率", formatKpi("overdue_rate", p.overdue_rate, this.rateKeys)],
    ];
    return '<div class="gg-popup"><div class="gg-popup-head"><strong>' + esc(p.name) + "</strong> <small>" + esc(p.code) +
      "</small></div><dl>" + rows.map(function (r) { return "<dt>" + esc(r[0]) + "</dt><dd>" + esc(r[1]) + "</dd>"; }).join("") +
      "</dl></div>";
  };

  MapPage.prototype.trimCrumbs = function (level) {
    var order = { town: 0, village: 1, grid: 2 };
    this.crumbs = this.crumbs.filter(function (c) { return order[c.level] < order[level]; });
    var self = this;
    var box = this.crumbBox;
    if (!box) return;
    box.innerHTML = "";
    var root = document.createElement("button");
    root.type = "button";
    root.className = "crumb";
    root.textContent = this.config.jurisdiction.name;
    root.addEventListener("click", function () { self.goHome(); });
    box.appendChild(root);
    this.crumbs.forEach(function (c, i) {
      var sep = document.createElement("span");
      sep.className = "crumb-sep";
      sep.textContent = "›";
      box.appendChild(sep);
      var b = document.createElement("button");
      b.type = "button";
      b.className = "crumb";
      b.textContent = c.name;
      b.addEventListener("click", function () {
        self.crumbs = self.crumbs.slice(0, i + 1);
        self.zoomInto(c.level === "town" ? "village" : "grid", c.bounds);
      });
      box.appendChild(b);
    });
    var here = document.createElement("span");
    here.className = "crumb-level";
    here.textContent = "按" + this.config.levels[level].label + "显示";
    box.appendChild(here);
  };

  // ---- legend and numbers ------------------------------------------------------------

  MapPage.prototype.addLegend = function () {
    var self = this;
    var control = L.control({ position: "bottomright" });
    control.onAdd = function () {
      var div = L.DomUtil.create("div", "gg-legend");
      L.DomEvent.disableClickPropagation(div);
      L.DomEvent.disableScrollPropagation(div);
      self.legendBox = div;
      return div;
    };
    control.addTo(this.map);
  };

  MapPage.prototype.drawLegend = function (data) {
    var c = this.config;
    var html = "<details" + (this.legendOpen ? " open" : "") + "><summary>图例</summary>";
    html += '<h3>' + esc(data.metric.name) + ' <span class="info" tabindex="0" title="' + esc(data.metric.definition) + '">ⓘ</span></h3>';
    html += '<p class="gg-legend-sub">按' + esc(data.level_label) + '着色</p><ul>';
    data.legend.forEach(function (cls) {
      html += '<li><i style="background:' + esc(cls.color) + '"></i>' + esc(cls.label) + "</li>";
    });
    html += "</ul><h3>事件状态</h3><ul>";
    c.state_groups.forEach(function (g) {
      html += '<li title="' + esc(g.title) + '"><i class="dot" style="background:' + esc(g.color) + '"></i>' + esc(g.label) + "</li>";
    });
    html += '<li><i class="dot ring" style="border-color:' + esc(c.overdue_color) + '"></i>超期在办</li>';
    html += '<li><i class="dot cluster"></i>聚合（数字为事件数）</li></ul></details>';
    this.legendBox.innerHTML = html;
    var self = this;
    var details = this.legendBox.querySelector("details");
    details.addEventListener("toggle", function () { self.legendOpen = details.open; });
  };

  MapPage.prototype.drawTotals = function (totals) {
    var self = this;
    document.querySelectorAll("#map-totals [data-kpi]").forEach(function (item) {
      var key = item.getAttribute("data-kpi");
      var dd = item.querySelector("dd");
      var value = totals[key];
      dd.setAttribute("data-value", value === null || value === undefined ? "" : String(value));
      dd.textContent = formatKpi(key, value, self.rateKeys);
    });
    var f = this.filter();
    var period = document.getElementById("map-totals-period");
    if (period) period.textContent = f.from + " 至 " + f.to;
  };

  // ---- events: server clusters, points, heat -----------------------------------------

  MapPage.prototype.drawEvents = function (data) {
    var self = this;
    this.eventData = data;
    this.serverClusters.clearLayers();
    this.layers.cluster.clearLayers();
    var heat = [];
    var maxWeight = 1;
    if (data.mode === "clusters") {
      data.features.forEach(function (f) {
        var ll = [f.geometry.coordinates[1], f.geometry.coordinates[0]];
        self.serverClusters.addLayer(self.clusterMarker(f, ll));
        heat.push([ll[0], ll[1], f.properties.count]);
        maxWeight = Math.max(maxWeight, f.properties.count);
      });
    } else {
      var markers = data.features.map(function (f) {
        var ll = [f.geometry.coordinates[1], f.geometry.coordinates[0]];
        heat.push([ll[0], ll[1], 1]);
        return self.pointMarker(f, ll);
      });
      this.layers.cluster.addLayers(markers);
    }
    this.layers.heat.setOptions({ max: maxWeight });
    this.layers.heat.setLatLngs(heat);
    this.layout.setAttribute("data-events-mode", data.mode);
    this.layout.setAttribute("data-events-total", String(data.total));
  };

  MapPage.prototype.clusterMarker = function (f, ll) {
    var p = f.properties;
    var size = p.count < 10 ? "small" : p.count < 100 ? "medium" : "large";
    var html = "<div><span>" + p.count + "</span></div>";
    if (p.overdue_open) html += '<b class="gg-cluster-late" title="超期在办">' + p.overdue_open + "</b>";
    var marker = L.marker(ll, {
      icon: L.divIcon({ html: html, className: "marker-cluster marker-cluster-" + size + " gg-cluster", iconSize: L.point(40, 40) }),
      title: p.count + " 件事件（在办 " + p.open + "，超期在办 " + p.overdue_open + "），点击放大",
      riseOnHover: true,
    });
    var map = this.map;
    marker.on("click", function () {
      var b = p.bounds;
      var bounds = L.latLngBounds([b[1], b[0]], [b[3], b[2]]);
      var zoom = Math.min(map.getMaxZoom(), Math.max(map.getZoom() + 2, map.getBoundsZoom(bounds.pad(0.3))));
      map.setView(bounds.getCenter(), zoom);
    });
    return marker;
  };

  MapPage.prototype.pointMarker = function (f, ll) {
    var p = f.properties;
    var marker = L.marker(ll, {
      icon: L.divIcon({
        className: "gg-pin gg-pin-" + p.group + (p.overdue_open ? " gg-pin-late" : ""),
        html: '<span style="background:' + esc(p.color) + '"></span>',
        iconSize: L.point(18, 18),
      }),
      title: p.code + " " + p.matter_name + "（" + p.state_label + "）",
    });
    marker.bindPopup(this.eventPopup(p), { maxWidth: 300 });
    return marker;
  };

  MapPage.prototype.eventPopup = function (p) {
    var place = p.address || [p.town_name, p.village_name].filter(Boolean).join(" ");
    var rows = [
      ["地点", place],
      ["上报", time(p.reported_at) + " · " + p.source_label],
      ["时限", time(p.deadline)],
    ];
    if (p.closed_at) rows.push(["办结", time(p.closed_at)]);
    if (p.department) rows.push(["主办", p.department]);
    return '<div class="gg-popup"><div class="gg-popup-head"><strong>' + esc(p.code) + '</strong> <span class="gg-state" style="background:' +
      esc(p.color) + '">' + esc(p.state_label) + "</span>" + (p.late ? ' <span class="gg-late">逾期</span>' : "") +
      '</div><div class="gg-popup-matter">' + esc(p.matter_name) + "</div>" +
      (p.description ? '<p class="gg-popup-desc">' + esc(p.description) + "</p>" : "") +
      "<dl>" + rows.map(function (r) { return "<dt>" + esc(r[0]) + "</dt><dd>" + esc(r[1]) + "</dd>"; }).join("") + "</dl>" +
      '<a class="gg-popup-link" href="' + esc(p.url) + '">查看详情 ›</a></div>';
  };

  MapPage.prototype.updateStatus = function () {
    if (!this.areaData || !this.eventData) return;
    var e = this.eventData;
    var text = "当前按" + this.areaData.level_label + "显示 · 视野内 " + this.areaData.features.length + " 个区域 · 事件 " +
      e.total + " 件" + (e.mode === "clusters" ? "（聚合显示，放大查看单个事件）" : "");
    if (e.truncated) text += " · 聚合过多，仅显示最大的部分";
    this.status.textContent = text;
  };

  // ---- live mode ---------------------------------------------------------------------

  MapPage.prototype.startLive = function () {
    var self = this;
    this.seen = {};
    this.cursor = null;
    this.ticker = document.getElementById("ticker-list");
    var clock = document.getElementById("live-clock");
    var tick = function () {
      if (clock) clock.textContent = new Date().toLocaleTimeString("zh-CN", { hour12: false, timeZone: "Asia/Shanghai" });
    };
    tick();
    setInterval(tick, 1000);
    this.poll(true);
  };

  MapPage.prototype.poll = function (first) {
    var self = this;
    var f = this.filter();
    var p = new URLSearchParams();
    if (this.cursor) p.set("since", this.cursor);
    if (f.matter) p.set("matter", f.matter);
    if (f.town) p.set("region", f.town);
    if (this.config.crs !== "wgs84") p.set("crs", this.config.crs);
    gg.api(this.config.urls.feed + "?" + p.toString(), { background: true }).then(function (data) {
      self.cursor = data.cursor;
      self.polls = (self.polls || 0) + 1;
      self.layout.setAttribute("data-polls", String(self.polls));
      var fresh = data.items.filter(function (item) {
        var key = item.kind + ":" + item.id;
        if (self.seen[key]) return false;
        self.seen[key] = true;
        return true;
      });
      fresh.slice().reverse().forEach(function (item) { self.addTicker(item, !first); });
      if (!first && fresh.length) {
        fresh.forEach(function (item) { self.flash(item); });
        self.schedule();
      }
      setTimeout(function () { self.poll(false); }, self.config.poll_ms);
    }, function (error) {
      if (error && (error.status === 401 || error.code === "session_expired")) { self.fail(error); return; }
      setTimeout(function () { self.poll(false); }, self.config.poll_ms);
    });
  };

  MapPage.prototype.addTicker = function (item, isNew) {
    if (!this.ticker) return;
    var li = document.createElement("li");
    li.className = "ticker-item ticker-" + item.kind + (isNew ? " ticker-fresh" : "");
    li.setAttribute("data-event-id", String(item.id));
    li.setAttribute("data-kind", item.kind);
    li.innerHTML = '<time>' + esc(time(item.at).slice(11)) + '</time><span class="tag" style="background:' + esc(item.color) + '">' +
      esc(item.kind_label) + '</span><a href="' + esc(item.url) + '">' + esc(item.code) + "</a> " + esc(item.matter_name) +
      '<span class="ticker-place">' + esc([item.town_name, item.village_name].filter(Boolean).join(" ")) + "</span>";
    var map = this.map;
    li.addEventListener("mouseenter", function () {
      map.panTo([item.coordinates[1], item.coordinates[0]]);
    });
    this.ticker.insertBefore(li, this.ticker.firstChild);
    if (isNew) setTimeout(function () { li.classList.remove("ticker-fresh"); }, FLASH_MS);
    var empty = document.getElementById("ticker-empty");
    if (empty) empty.hidden = true;
    while (this.ticker.children.length > TICKER_MAX) this.ticker.removeChild(this.ticker.lastChild);
  };

  MapPage.prototype.flash = function (item) {
    var layer = L.circleMarker([item.coordinates[1], item.coordinates[0]], {
      radius: 14, color: item.color, weight: 3, fillOpacity: 0.25, className: "gg-flash gg-flash-" + item.kind,
    }).bindTooltip(item.kind_label + " " + item.code + " " + item.matter_name);
    this.flashes.addLayer(layer);
    var flashes = this.flashes;
    setTimeout(function () { flashes.removeLayer(layer); }, FLASH_MS);
  };

  gg.mapPage = {
    start: function (layers, config) {
      var page = new MapPage(layers, config);
      gg.mapPage.current = page;
      return page;
    },
  };
})();
