/* Small Leaflet maps of the event page and the register page (no basemap unless configured).
 *
 *   [data-event-map]  the event's grid polygon and point (GeoJSON from data-map-url); when the
 *                     page has a 更正位置 form, a tap on the map fills its 经度/纬度 fields.
 *   [data-pick-map]   the register form and the 待定位 place form: outlines of the places of the
 *                     user's area (data-areas-url); a tap sets lng/lat and names the grid it
 *                     falls in. data-received="lng,lat" also shows the position a queued
 *                     report arrived with (outside every grid), as a grey ring.
 *   [data-geocode]    a 查找 button next to a place-name input: /api/v1/geocode?q=…
 */
(function () {
  "use strict";

  var gg = window.gg;
  if (!window.L || !gg) return;
  var L = window.L;

  var GRID_STYLE = { color: "#1d5fa8", weight: 2, fillColor: "#1d5fa8", fillOpacity: 0.08 };
  var AREA_STYLE = { color: "#6b7785", weight: 1, fillColor: "#ffffff", fillOpacity: 0.35 };

  function baseMap(el) {
    var tiles = el.getAttribute("data-tiles");
    var map = L.map(el, { attributionControl: !!tiles, scrollWheelZoom: false, maxZoom: 19 });
    if (tiles) {
      L.tileLayer(tiles, { maxZoom: 18, attribution: el.getAttribute("data-attribution") || "" }).addTo(map);
    }
    return map;
  }

  function dot(latlng, colour) {
    return L.circleMarker(latlng, {
      radius: 8, color: "#ffffff", weight: 2, fillColor: colour || "#b3261e", fillOpacity: 1,
    });
  }

  function round(x) { return Math.round(x * 1e6) / 1e6; }

  function setPosition(form, lng, lat) {
    var lngInput = form.querySelector('input[name="lng"]');
    var latInput = form.querySelector('input[name="lat"]');
    if (lngInput) lngInput.value = String(round(lng));
    if (latInput) latInput.value = String(round(lat));
  }

  function describe(p) {
    return [p.town_name, p.village_name, p.grid_name].filter(Boolean).join(" · ");
  }

  /* 查找: place text → the village's point (and the map moves there). */
  function wireGeocode(form, onFound, status) {
    var button = form.querySelector("[data-geocode]");
    var input = form.querySelector('input[name="place"]');
    if (!button || !input) return;
    function search() {
      var text = input.value.trim();
      if (!text) { status("请先输入村（社区）名称", false); return; }
      status("正在查找……", null);
      gg.api("/api/v1/geocode?q=" + encodeURIComponent(text)).then(function (data) {
        if (data && data.placement) {
          setPosition(form, data.placement.lng, data.placement.lat);
          onFound(data.placement.lng, data.placement.lat);
          status("已定位到：" + describe(data.placement) + "（可在地图上点选更准确的位置）", true);
        } else {
          status("只定位到" + (data && data.name ? data.name : "该地名") + "，请在地图上点选具体位置", false);
        }
      }, function (error) { status(error.message, false); });
    }
    button.addEventListener("click", search);
    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter") { event.preventDefault(); search(); }
    });
  }

  /* The event page: grid polygon + point; a tap feeds the 更正位置 form. */
  function eventMap(el) {
    var map = baseMap(el);
    gg.api(el.getAttribute("data-map-url")).then(function (data) {
      var layer = L.geoJSON(data, {
        style: function (feature) { return feature.geometry.type === "Point" ? {} : GRID_STYLE; },
        pointToLayer: function (feature, latlng) { return dot(latlng); },
        onEachFeature: function (feature, lyr) {
          var p = feature.properties || {};
          lyr.bindTooltip(p.kind === "grid" ? p.name + "（" + p.code + "）" : "事件位置");
        },
      }).addTo(map);
      map.fitBounds(layer.getBounds(), { padding: [18, 18], maxZoom: 17 });
      el.setAttribute("data-ready", "1");
    }, function (error) {
      el.textContent = "地图加载失败：" + error.message;
    });

    var details = document.querySelector('details[data-action-form="relocate"]');
    if (!details) return;
    var form = details.querySelector("form");
    var moved = null;
    function place(lng, lat) {
      if (moved) moved.setLatLng([lat, lng]); else moved = dot([lat, lng], "#1e7b45").addTo(map);
      moved.bindTooltip("新位置").openTooltip();
    }
    map.on("click", function (event) {
      if (!details.open) return;
      setPosition(form, event.latlng.lng, event.latlng.lat);
      place(event.latlng.lng, event.latlng.lat);
    });
    wireGeocode(form, function (lng, lat) { place(lng, lat); map.panTo([lat, lng]); }, function (text) {
      gg.toast(text);
    });
  }

  /* The position a queued report arrived with: "lng,lat" → a grey ring, or null. */
  function receivedMarker(el) {
    var parts = (el.getAttribute("data-received") || "").split(",").map(parseFloat);
    if (parts.length !== 2 || !isFinite(parts[0]) || !isFinite(parts[1])) return null;
    return L.circleMarker([parts[1], parts[0]], {
      radius: 7, color: "#52606d", weight: 2, dashArray: "3 2", fillColor: "#ffffff", fillOpacity: 0.9,
    }).bindTooltip("收到的位置（不在任何网格内）");
  }

  /* The register page: tap a point inside the area; the grid is looked up at once. */
  function pickMap(el) {
    var form = el.closest("form");
    var statusEl = form.querySelector("[data-pick-status]");
    var map = baseMap(el);
    var marker = null;
    var received = receivedMarker(el);
    function status(text, ok) {
      if (!statusEl) return;
      statusEl.textContent = text;
      statusEl.classList.toggle("ok", ok === true);
      statusEl.classList.toggle("bad", ok === false);
    }
    function place(lng, lat) {
      if (marker) marker.setLatLng([lat, lng]); else marker = dot([lat, lng]).addTo(map);
    }
    function lookup(lng, lat) {
      status("正在确定所在网格……", null);
      gg.api("/api/v1/geocode?lng=" + lng + "&lat=" + lat).then(function (p) {
        status("已选位置：" + describe(p) + (p.snapped ? "（位于网格外，已归入最近网格）" : ""), true);
      }, function (error) { status(error.message, false); });
    }
    gg.api(el.getAttribute("data-areas-url")).then(function (data) {
      var layer = L.geoJSON(data, {
        style: function () { return AREA_STYLE; },
        onEachFeature: function (feature, lyr) {
          lyr.bindTooltip(feature.properties.name, { sticky: true });
        },
      }).addTo(map);
      var lng = parseFloat((form.querySelector('input[name="lng"]') || {}).value);
      var lat = parseFloat((form.querySelector('input[name="lat"]') || {}).value);
      if (isFinite(lng) && isFinite(lat)) {
        // The form came back (an error elsewhere): show the chosen point and its grid again.
        map.setView([lat, lng], 15, { animate: false }); // a view first: then layers can draw
        place(lng, lat);
        lookup(lng, lat);
      } else if (layer.getLayers().length) {
        var bounds = layer.getBounds();
        if (received) bounds.extend(received.getLatLng());
        map.fitBounds(bounds, { padding: [8, 8], animate: false });
      }
      if (received) received.addTo(map);
      el.setAttribute("data-ready", "1");
    }, function (error) { status("地图加载失败：" + error.message, false); });
    map.on("click", function (event) {
      var lng = round(event.latlng.lng), lat = round(event.latlng.lat);
      setPosition(form, lng, lat);
      place(lng, lat);
      lookup(lng, lat);
    });
    wireGeocode(form, function (lng, lat) { place(lng, lat); map.setView([lat, lng], 15); }, status);
  }

  document.querySelectorAll("[data-event-map]").forEach(eventMap);
  document.querySelectorAll("[data-pick-map]").forEach(pickMap);
})();
