/* /m/report: the grid worker's report form on a phone.
 *
 * Parts: the matter picker (grouped, searchable), photos (downscaled on the phone by
 * photos.js), the position (GPS with its accuracy, a tap on the small grid map, or a village's
 * representative point), a preview of the grid and village the position resolves to, nearby
 * open events of the same matter (with "补充照片到此事件"), 现场自行处置 for matters that allow
 * it, and the submit, which goes through the upload queue (outbox.js): the report is stored on
 * the phone first, then sent; a weak signal leaves it in 待上传.
 *
 * The form is kept as a draft in IndexedDB (fields, photos and the client key generated when
 * the form was first opened), so a reload or a closed browser does not lose what was typed.
 */
(function () {
  "use strict";

  var ggw = window.ggw;
  var form = document.getElementById("report-form");
  if (!form) return;
  var DATA = JSON.parse(document.getElementById("report-data").textContent);
  var USERNAME = DATA.username;
  var MATTERS = {};
  DATA.groups.forEach(function (g) {
    g.matters.forEach(function (m) { MATTERS[m.code] = Object.assign({ category: g.name }, m); });
  });

  var $ = function (sel, root) { return (root || document).querySelector(sel); };
  var $$ = function (sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); };

  var state = {
    clientKey: $("[data-client-key]").value,
    photos: [], // {id, kind, blob, width, height, url}
    pendingPhotos: 0,
    photoWork: Promise.resolve(),
    position: null, // {lng, lat, accuracy, source: "gps" | "map" | "village"}
    lastGps: null,
    placement: null, // geocode answer, or {error}
    submitting: false,
  };
  var nextPhotoId = 1;

  function newClientKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    var hex = Array.prototype.map.call(bytes, function (b) { return (b + 0x100).toString(16).slice(1); }).join("");
    return hex.slice(0, 8) + "-" + hex.slice(8, 12) + "-" + hex.slice(12, 16) + "-" + hex.slice(16, 20) + "-" + hex.slice(20);
  }

  function escapeHtml(text) {
    return String(text == null ? "" : text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  // -- field errors ----------------------------------------------------------------------

  var formError = document.createElement("div");
  formError.className = "alert alert-error";
  formError.setAttribute("role", "alert");
  formError.hidden = true;
  form.insertBefore(formError, form.firstChild);

  function setError(name, message) {
    var el = $('[data-error-for="' + name + '"]', form);
    if (!el) {
      formError.textContent = message;
      formError.hidden = !message;
      return;
    }
    el.textContent = message || "";
    el.hidden = !message;
    var field = el.closest(".field, .m-section");
    if (field) field.classList.toggle("has-error", !!message);
  }

  function clearErrors() {
    $$("[data-error-for]", form).forEach(function (el) { setError(el.getAttribute("data-error-for"), ""); });
    formError.hidden = true;
  }

  function showErrors(errors) {
    var first = null;
    Object.keys(errors).forEach(function (name) {
      setError(name, errors[name]);
      var el = $('[data-error-for="' + name + '"]', form);
      if (!first) first = el && !el.hidden ? el.closest(".m-section") || el : formError;
    });
    if (first && first.scrollIntoView) first.scrollIntoView({ block: "center" });
  }

  // -- matter picker ---------------------------------------------------------------------

  var select = $("[data-matter-select]");
  var picker = $("[data-matter-picker]");
  var list = $("[data-matter-list]");
  var search = $("#f-matter-search");
  var chosen = $("[data-matter-chosen]");
  var browse = $("[data-matter-browse]");
  select.hidden = true;
  picker.hidden = false;

  function matterButton(m, showCategory) {
    var tags = "";
    if (m.self_handle) tags += '<span class="m-tag m-tag-self">可自办</span>';
    if (m.photo_required) tags += '<span class="m-tag">须附照片</span>';
    return '<button type="button" class="m-matter" data-code="' + m.code + '">' +
      '<span class="m-matter-name">' + escapeHtml(m.name) + "</span>" +
      (showCategory ? '<span class="m-matter-cat">' + escapeHtml(m.category) + "</span>" : "") +
      tags + "</button>";
  }

  function renderMatters() {
    var q = search.value.trim();
    var html = "";
    if (!q) {
      DATA.groups.forEach(function (g) {
        html += '<details class="m-cat"><summary>' + escapeHtml(g.name) +
          ' <span class="muted">' + g.matters.length + "</span></summary>" +
          g.matters.map(function (m) { return matterButton(MATTERS[m.code], false); }).join("") + "</details>";
      });
    } else {
      var hits = Object.keys(MATTERS).sort().map(function (c) { return MATTERS[c]; }).filter(function (m) {
        return m.name.indexOf(q) >= 0 || m.category.indexOf(q) >= 0 || m.code.indexOf(q) === 0;
      });
      html = hits.length
        ? '<p class="muted m-hits">找到 ' + hits.length + " 个事项</p>" + hits.map(function (m) { return matterButton(m, true); }).join("")
        : '<p class="muted m-hits">没有找到“' + escapeHtml(q) + "”相关的事项，请换个说法，或清空搜索后按分类查找。</p>";
    }
    list.innerHTML = html;
  }

  function chooseMatter(code, quiet) {
    var m = MATTERS[code];
    select.value = m ? code : "";
    chosen.hidden = !m;
    browse.hidden = !!m;
    if (m) {
      $("[data-matter-name]").textContent = m.name;
      $("[data-matter-cat]").textContent = "（" + m.category + "）";
      setError("matter_code", "");
    }
    updateSelfHandle();
    if (!quiet) {
      saveDraft();
      checkNearby();
    }
  }

  list.addEventListener("click", function (event) {
    var button = event.target.closest("[data-code]");
    if (button) chooseMatter(button.getAttribute("data-code"));
  });
  search.addEventListener("input", renderMatters);
  search.addEventListener("keydown", function (event) {
    if (event.key === "Enter") event.preventDefault(); // Enter must not submit the report
  });
  $("[data-matter-change]").addEventListener("click", function () {
    chosen.hidden = true;
    browse.hidden = false;
    search.focus();
  });

  // -- 现场自行处置 (self-handling) ------------------------------------------------------

  var selfSection = $("[data-self-section]");
  var selfToggle = $("[data-self-toggle]");
  var selfFields = $("[data-self-fields]");
  var submitButton = $("[data-submit]");

  function selfHandling() {
    var m = MATTERS[select.value];
    return !!(m && m.self_handle && selfToggle.checked);
  }

  function updateSelfHandle() {
    var m = MATTERS[select.value];
    selfSection.hidden = !(m && m.self_handle);
    var on = selfHandling();
    selfFields.hidden = !on;
    $("[data-photos-title]").textContent = on ? "处置前照片" : "现场照片";
    submitButton.textContent = on ? "上报并自办自结" : "提交上报";
  }
  selfToggle.addEventListener("change", function () { updateSelfHandle(); saveDraft(); });

  // -- photos ----------------------------------------------------------------------------

  function renderThumbs() {
    $$("[data-thumbs]").forEach(function (ul) {
      var kind = ul.getAttribute("data-thumbs");
      var photos = state.photos.filter(function (p) { return p.kind === kind; });
      ul.innerHTML = photos.map(function (p, i) {
        return '<li class="m-thumb"><img src="' + p.url + '" alt="照片 ' + (i + 1) + '">' +
          '<span class="m-thumb-size">' + p.width + "×" + p.height + "</span>" +
          '<button type="button" class="m-thumb-remove" data-remove-photo="' + p.id + '" aria-label="删除照片 ' + (i + 1) + '">×</button></li>';
      }).join("");
    });
    var pending = state.pendingPhotos;
    $("[data-photo-hint]").textContent = pending
      ? "正在压缩 " + pending + " 张照片…"
      : "照片在手机上压缩（长边不超过 1600 像素）后上传，节省流量。";
  }

  function addPhoto(kind, blob, width, height) {
    state.photos.push({ id: nextPhotoId++, kind: kind, blob: blob, width: width, height: height, url: URL.createObjectURL(blob) });
  }

  function takeFiles(input) {
    var kind = input.getAttribute("data-photo-input");
    var files = Array.prototype.slice.call(input.files || []);
    input.value = "";
    if (!files.length) return;
    state.pendingPhotos += files.length;
    renderThumbs();
    state.photoWork = state.photoWork.then(function () {
      return files.reduce(function (step, file) {
        return step.then(function () {
          return ggw.photos.prepare(file).then(function (photo) {
            addPhoto(kind, photo.blob, photo.width, photo.height);
          }, function (err) {
            gg.toast(err.message || "无法读取照片", { type: "error" });
          }).then(function () {
            state.pendingPhotos -= 1;
            renderThumbs();
          });
        });
      }, Promise.resolve());
    }).then(function () {
      setError(kind === "after" ? "after_photos" : "photos", "");
      saveDraft();
    });
  }

  $$("[data-photo-input]").forEach(function (input) {
    input.addEventListener("change", function () { takeFiles(input); });
  });
  form.addEventListener("click", function (event) {
    var remove = event.target.closest("[data-remove-photo]");
    if (!remove) return;
    var id = Number(remove.getAttribute("data-remove-photo"));
    state.photos = state.photos.filter(function (p) {
      if (p.id === id) URL.revokeObjectURL(p.url);
      return p.id !== id;
    });
    renderThumbs();
    saveDraft();
  });

  // -- draft -----------------------------------------------------------------------------

  var draftTimer = null;
  function draftValue() {
    return {
      username: USERNAME,
      client_key: state.clientKey,
      matter_code: select.value,
      urgency: (form.querySelector('input[name="urgency"]:checked') || {}).value || "normal",
      description: form.description.value,
      address: form.address.value,
      self_handle: selfToggle.checked,
      self_comment: form.self_comment.value,
      photos: state.photos.map(function (p) { return { kind: p.kind, blob: p.blob, width: p.width, height: p.height }; }),
      saved_at: new Date().toISOString(),
    };
  }

  function writeDraft() {
    clearTimeout(draftTimer);
    draftTimer = null;
    var draft = draftValue();
    return ggw.idb.put("drafts", draft).then(function () {
      form.setAttribute("data-draft-saved", draft.saved_at);
    }, function () { /* no storage: the form still works */ });
  }

  function saveDraft() {
    clearTimeout(draftTimer);
    draftTimer = setTimeout(writeDraft, 250);
  }
  // Opening the camera app may send this page to the background for good: save now.
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden" && draftTimer !== null) writeDraft();
  });
  window.addEventListener("pagehide", function () {
    if (draftTimer !== null) writeDraft();
  });

  function dropDraft() {
    clearTimeout(draftTimer);
    return ggw.idb.del("drafts", USERNAME).catch(function () { return null; });
  }

  function fillForm(draft) {
    state.clientKey = draft.client_key;
    $("[data-client-key]").value = draft.client_key;
    var urgency = form.querySelector('input[name="urgency"][value="' + (draft.urgency || "normal") + '"]');
    if (urgency) urgency.checked = true;
    form.description.value = draft.description || "";
    form.address.value = draft.address || "";
    selfToggle.checked = !!draft.self_handle;
    form.self_comment.value = draft.self_comment || "";
    state.photos.forEach(function (p) { URL.revokeObjectURL(p.url); });
    state.photos = [];
    (draft.photos || []).forEach(function (p) { addPhoto(p.kind, p.blob, p.width, p.height); });
    chooseMatter(draft.matter_code || "", true);
    if (!draft.matter_code) {
      chosen.hidden = true;
      browse.hidden = false;
    }
    renderThumbs();
  }

  function blankDraft() {
    return { username: USERNAME, client_key: newClientKey(), urgency: "normal", photos: [] };
  }

  function hasContent(draft) {
    return !!(draft && (draft.matter_code || draft.description || (draft.photos && draft.photos.length) || draft.self_comment));
  }

  form.addEventListener("input", function (event) {
    if (event.target === search) return;
    if (event.target.name) setError(event.target.name, "");
    saveDraft();
  });
  form.addEventListener("change", function (event) {
    if (event.target.name === "urgency") saveDraft();
  });
  $("[data-draft-clear]").addEventListener("click", function () {
    fillForm(blankDraft());
    $("[data-draft-note]").hidden = true;
    clearErrors();
    dropDraft();
  });

  // -- position --------------------------------------------------------------------------

  var status = $("[data-loc-status]");
  var placementBox = $("[data-placement]");
  var map = null;
  var marker = null;
  var accuracyCircle = null;
  var gridsLayer = null;
  var gridFeatures = [];
  var watchId = null;

  function setStatus(text, kind) {
    status.textContent = text;
    status.className = "m-loc-status" + (kind ? " m-loc-" + kind : "");
  }

  function describeAccuracy(pos) {
    if (pos.source === "map") return "已在地图上点选位置";
    if (pos.source === "village") return "已按“" + pos.label + "”的代表位置定位，请尽量在地图上点选准确位置";
    var metres = Math.max(1, Math.round(pos.accuracy || 0));
    var text = "定位精度约 " + metres + " 米";
    if (metres > 100) text += "（精度较差，建议在地图上点选准确位置）";
    return text;
  }

  function setPosition(pos) {
    state.position = pos;
    form.lng.value = pos.lng.toFixed(7);
    form.lat.value = pos.lat.toFixed(7);
    form.accuracy_m.value = pos.accuracy == null ? "" : String(Math.round(pos.accuracy * 10) / 10);
    setStatus(describeAccuracy(pos), pos.source === "gps" && pos.accuracy > 100 ? "warn" : "ok");
    setError("location", "");
    if (map) {
      var latlng = [pos.lat, pos.lng];
      if (!marker) {
        marker = L.circleMarker(latlng, { radius: 8, color: "#fff", weight: 2, fillColor: "#b3261e", fillOpacity: 1 }).addTo(map);
      } else {
        marker.setLatLng(latlng);
      }
      if (pos.accuracy && pos.source === "gps") {
        if (!accuracyCircle) {
          accuracyCircle = L.circle(latlng, { radius: pos.accuracy, color: "#1d5fa8", weight: 1, fillOpacity: 0.08, interactive: false }).addTo(map);
        } else {
          accuracyCircle.setLatLng(latlng).setRadius(pos.accuracy);
        }
      } else if (accuracyCircle) {
        map.removeLayer(accuracyCircle);
        accuracyCircle = null;
      }
      if (!map.getBounds().contains(latlng)) map.panTo(latlng);
    }
    resolvePlacement();
    checkNearby();
  }

  function onGps(position) {
    var c = position.coords;
    state.lastGps = { lng: c.longitude, lat: c.latitude, accuracy: c.accuracy, source: "gps" };
    if (!state.position || state.position.source === "gps") setPosition(state.lastGps);
  }

  function onGpsError(err) {
    if (state.position) return; // keep the position we have
    var why = err && err.code === 1 ? "未获得定位权限"
      : err && err.code === 3 ? "定位超时" : "暂时收不到定位信号";
    setStatus("无法定位（" + why + "）。请在地图上点按事件位置，或在下面选择所在村（社区）。", "error");
    $("[data-village-box]").open = true;
  }

  function startGps() {
    if (!navigator.geolocation) {
      onGpsError({ code: 2 });
      return;
    }
    setStatus("正在定位…");
    if (watchId !== null) navigator.geolocation.clearWatch(watchId);
    watchId = navigator.geolocation.watchPosition(onGps, onGpsError, { enableHighAccuracy: true, maximumAge: 10000, timeout: 20000 });
  }

  $("[data-locate]").addEventListener("click", function () {
    if (state.lastGps) {
      setPosition(state.lastGps);
    } else {
      state.position = null;
    }
    startGps();
  });

  var villageSelect = $("[data-village-select]");
  villageSelect.addEventListener("change", function () {
    var option = villageSelect.selectedOptions[0];
    if (!option || !option.value) return;
    var query = option.getAttribute("data-query");
    setStatus("正在查找“" + option.textContent + "”的位置…");
    gg.api("/api/v1/geocode?q=" + encodeURIComponent(query)).then(function (answer) {
      var p = answer.placement;
      if (!p) throw new gg.ApiError("no_point", "该村（社区）没有位置数据，请在地图上点选", 422);
      setPosition({ lng: p.lng, lat: p.lat, accuracy: null, source: "village", label: option.textContent });
    }).catch(function (err) {
      setStatus((err.status === 0 ? "离线时无法按村定位，请在地图上点选位置" : err.message), "error");
    });
  });

  function initMap() {
    var box = document.getElementById("m-map");
    if (!window.L || !box) return;
    box.hidden = false;
    $("[data-loc-actions]").hidden = false;
    map = L.map(box, { attributionControl: false, zoomSnap: 0.5 }).setView([23.3, 115.65], 13);
    map.on("click", function (event) {
      setPosition({ lng: event.latlng.lng, lat: event.latlng.lat, accuracy: null, source: "map" });
    });
    gg.api(box.getAttribute("data-grids-url")).then(function (body) {
      var geojson = typeof body === "string" ? JSON.parse(body) : body; // application/geo+json
      gridFeatures = geojson.features || [];
      gridsLayer = L.geoJSON(geojson, {
        style: function (f) {
          return f.properties.kind === "village"
            ? { color: "#6b7785", weight: 2, dashArray: "6 4", fill: false, interactive: false }
            : { color: "#b3261e", weight: 1.5, fillColor: "#b3261e", fillOpacity: 0.06 };
        },
        onEachFeature: function (f, layer) {
          if (f.properties.kind === "grid") layer.bindTooltip(f.properties.name, { sticky: true });
        },
      }).addTo(map);
      // Clicks on a grid polygon must still set the point.
      gridsLayer.on("click", function (event) {
        setPosition({ lng: event.latlng.lng, lat: event.latlng.lat, accuracy: null, source: "map" });
      });
      var bounds = gridsLayer.getBounds();
      if (bounds.isValid()) {
        map.fitBounds(bounds, { padding: [8, 8] });
        if (state.position) map.panTo([state.position.lat, state.position.lng]);
      }
    }).catch(function () { /* no grids offline: the map still takes taps */ });
  }

  // -- placement preview and nearby events -----------------------------------------------

  function inRing(x, y, ring) {
    var inside = false;
    for (var i = 0, j = ring.length - 1; i < ring.length; j = i++) {
      var xi = ring[i][0], yi = ring[i][1], xj = ring[j][0], yj = ring[j][1];
      if ((yi > y) !== (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) inside = !inside;
    }
    return inside;
  }

  function localGrid(lng, lat) {
    for (var k = 0; k < gridFeatures.length; k++) {
      var f = gridFeatures[k];
      if (f.properties.kind !== "grid") continue;
      var polys = f.geometry.type === "Polygon" ? [f.geometry.coordinates] : f.geometry.coordinates;
      for (var p = 0; p < polys.length; p++) {
        if (inRing(lng, lat, polys[p][0]) && !polys[p].slice(1).some(function (hole) { return inRing(lng, lat, hole); })) return f.properties;
      }
    }
    return null;
  }

  var placementSeq = 0;
  var placementTimer = null;
  function resolvePlacement() {
    clearTimeout(placementTimer);
    placementTimer = setTimeout(function () {
      var pos = state.position;
      if (!pos) return;
      var seq = ++placementSeq;
      placementBox.hidden = false;
      placementBox.className = "m-placement";
      placementBox.textContent = "正在确认所属网格…";
      gg.api("/api/v1/geocode?lng=" + pos.lng + "&lat=" + pos.lat + "&crs=wgs84", { background: true }).then(function (p) {
        if (seq !== placementSeq) return;
        state.placement = p;
        var ownTown = p.town_code === DATA.townCode;
        var own = DATA.ownGrids.indexOf(p.grid_code) >= 0;
        var html = '<span class="m-placement-label">将上报至</span>' +
          '<strong data-grid-name>' + escapeHtml(p.grid_name) + "</strong>" +
          (own ? '<span class="m-tag m-tag-own">您负责的网格</span>' : "") +
          '<span class="m-placement-where"><span data-village-name>' + escapeHtml(p.village_name) + "</span> · " + escapeHtml(p.town_name) + "</span>";
        if (p.snapped) html += '<span class="m-placement-note">位置在网格边界外约 ' + Math.round(p.distance_m) + " 米，已归入最近的网格</span>";
        if (!ownTown) {
          html += '<span class="m-placement-note m-placement-bad">该位置属于' + escapeHtml(p.town_name) + "，不在您的辖区（" + escapeHtml(DATA.townName) + "）内，不能上报。请确认位置。</span>";
        }
        placementBox.className = "m-placement" + (ownTown ? " m-placement-ok" : " m-placement-error");
        placementBox.innerHTML = html;
      }, function (err) {
        if (seq !== placementSeq) return;
        if (err.status === 0) {
          state.placement = null;
          var local = localGrid(pos.lng, pos.lat);
          placementBox.className = "m-placement m-placement-offline";
          placementBox.innerHTML = local
            ? '<span class="m-placement-label">离线判断</span><strong data-grid-name>' + escapeHtml(local.name) + '</strong><span class="m-placement-note">以上传时服务器的判断为准</span>'
            : "离线：暂时无法确认所属网格，上传时由服务器确定。";
          return;
        }
        state.placement = { error: err };
        placementBox.className = "m-placement m-placement-error";
        placementBox.textContent = err.message;
      });
    }, 250);
  }

  var nearbyBox = $("[data-nearby]");
  var nearbySeq = 0;
  var nearbyTimer = null;
  function checkNearby() {
    clearTimeout(nearbyTimer);
    nearbyTimer = setTimeout(function () {
      var pos = state.position;
      var matter = select.value;
      var seq = ++nearbySeq;
      if (!pos || !matter) {
        nearbyBox.hidden = true;
        return;
      }
      var url = "/m/nearby?matter=" + encodeURIComponent(matter) + "&lng=" + pos.lng + "&lat=" + pos.lat;
      gg.api(url, { background: true }).then(function (answer) {
        if (seq !== nearbySeq) return;
        renderNearby(answer);
      }, function () {
        if (seq === nearbySeq) nearbyBox.hidden = true;
      });
    }, 300);
  }

  function renderNearby(answer) {
    var items = answer.items || [];
    if (!items.length) {
      nearbyBox.hidden = true;
      nearbyBox.innerHTML = "";
      return;
    }
    nearbyBox.hidden = false;
    nearbyBox.innerHTML = "<h2>附近已有类似事件</h2>" +
      '<p class="field-hint">' + Math.round(answer.radius_m) + " 米内、同一事项、尚未办结。如果是同一件事，可把照片补充到已有事件，不必重复上报。</p>" +
      '<ul class="m-nearby-list">' + items.map(function (item) {
        var head = '<span class="m-nearby-code">' + escapeHtml(item.code) + "</span>" +
          '<span class="m-tag">' + escapeHtml(item.state_label) + "</span>" +
          '<span class="muted">相距约 ' + Math.round(item.distance_m) + " 米</span>";
        var body = item.description ? '<p class="m-nearby-desc">' + escapeHtml(item.description) + "</p>" : "";
        var actions = item.can_add
          ? '<button type="button" class="btn btn-small" data-add-to="' + item.id + '" data-add-code="' + escapeHtml(item.code) + '">补充照片到此事件</button>' +
            (item.url ? ' <a class="btn btn-small btn-ghost" href="' + item.url + '">查看</a>' : "")
          : '<span class="muted">不在您的网格内，仅供参考</span>';
        return '<li class="m-nearby-item" data-nearby-id="' + item.id + '"><div class="m-nearby-head">' + head + "</div>" + body +
          '<div class="m-nearby-actions">' + actions + "</div></li>";
      }).join("") + "</ul>";
  }

  nearbyBox.addEventListener("click", function (event) {
    var button = event.target.closest("[data-add-to]");
    if (!button) return;
    var photos = state.photos.filter(function (p) { return p.kind === "evidence"; });
    var code = button.getAttribute("data-add-code");
    if (!photos.length) {
      gg.toast("请先拍摄或选择照片，再补充到事件 " + code, { type: "error" });
      $("#sec-photos").scrollIntoView({ block: "center" });
      return;
    }
    if (!window.confirm("把 " + photos.length + " 张照片补充到事件 " + code + "，不再新建事件？")) return;
    addToExisting(Number(button.getAttribute("data-add-to")), code, photos, button);
  });

  function addToExisting(eventId, code, photos, button) {
    button.disabled = true;
    button.textContent = "正在上传…";
    photos.reduce(function (step, photo, i) {
      return step.then(function () {
        var data = new FormData();
        data.append("file", photo.blob, "photo-" + (i + 1) + ".jpg");
        data.append("kind", "evidence");
        return gg.api("/api/v1/events/" + eventId + "/attachments", { form: data });
      });
    }, Promise.resolve()).then(function () {
      showResult("added", { code: code, id: eventId, photos: photos.length });
      resetForm();
    }, function (err) {
      button.disabled = false;
      button.textContent = "补充照片到此事件";
      gg.toast(err.status === 0 ? "网络不佳，照片未能补充，请稍后再试" : err.message, { type: "error" });
    });
  }

  // -- submit ----------------------------------------------------------------------------

  function validate() {
    var errors = {};
    var m = MATTERS[select.value];
    if (!m) errors.matter_code = "请选择事项";
    if (!form.description.value.trim()) errors.description = "请填写事件描述";
    if (!state.position) {
      errors.location = "请确定事件位置：允许手机定位，或在地图上点选，或选择所在村（社区）";
    } else if (state.placement && state.placement.error) {
      errors.location = state.placement.error.message;
    } else if (state.placement && state.placement.town_code && state.placement.town_code !== DATA.townCode) {
      errors.location = "该位置不在您的辖区（" + DATA.townName + "）内，请确认位置";
    }
    var evidence = state.photos.filter(function (p) { return p.kind === "evidence"; }).length;
    var after = state.photos.filter(function (p) { return p.kind === "after"; }).length;
    if (selfHandling()) {
      if (!evidence) errors.photos = "现场自行处置须拍摄处置前照片";
      if (!after) errors.after_photos = "现场自行处置须拍摄处置后照片";
      if (!form.self_comment.value.trim()) errors.self_comment = "请填写处置说明";
    } else if (m && m.photo_required && !evidence) {
      errors.photos = "此事项须附现场照片";
    }
    return errors;
  }

  function buildItem() {
    var m = MATTERS[select.value];
    var pos = state.position;
    var selfMode = selfHandling();
    var payload = {
      matter_code: m.code,
      urgency: (form.querySelector('input[name="urgency"]:checked') || {}).value || "normal",
      description: form.description.value.trim(),
      lng: Number(pos.lng.toFixed(7)),
      lat: Number(pos.lat.toFixed(7)),
      crs: "wgs84",
      address: form.address.value.trim(),
      client_key: state.clientKey,
    };
    if (pos.accuracy != null) payload.accuracy_m = Math.round(pos.accuracy * 10) / 10;
    return {
      client_key: state.clientKey,
      username: USERNAME,
      mode: selfMode ? "self_handle" : "report",
      payload: payload,
      self_comment: selfMode ? form.self_comment.value.trim() : "",
      matter_name: m.name,
      place: state.placement && state.placement.grid_name
        ? state.placement.grid_name + "（" + state.placement.village_name + "）" : "",
      photos: state.photos.filter(function (p) { return selfMode || p.kind === "evidence"; }).map(function (p) {
        return { kind: selfMode ? (p.kind === "after" ? "after" : "before") : "evidence", blob: p.blob, attachment_id: null };
      }),
    };
  }

  var FIELD_OF = { matter_code: "matter_code", description: "description", urgency: "urgency", lng: "location",
                   lat: "location", location: "location", address: "address", comment: "self_comment",
                   attachment_ids: "photos", file: "photos" };

  function errorsFromApi(err) {
    var details = err.details || {};
    var errors = {};
    if (details.fields && typeof details.fields === "object") {
      Object.keys(details.fields).forEach(function (f) { errors[FIELD_OF[f] || ""] = details.fields[f]; });
    } else if (err.code === "outside_jurisdiction" || err.code === "bad_coordinates") {
      errors.location = err.message;
    } else {
      errors[FIELD_OF[details.field] || ""] = err.message;
    }
    return errors;
  }

  function busy(on) {
    state.submitting = on;
    submitButton.disabled = on;
    if (on) submitButton.textContent = "正在提交…";
    else updateSelfHandle();
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (state.submitting) return;
    busy(true); // before anything asynchronous: a second tap finds the button disabled
    clearErrors();
    state.photoWork.then(function () {
      var errors = validate();
      if (Object.keys(errors).length) {
        busy(false);
        showErrors(errors);
        return null;
      }
      var item = buildItem();
      return ggw.outbox.add(item).then(function () {
        return dropDraft();
      }).then(function () {
        return ggw.outbox.send(item.client_key);
      }).then(function (result) {
        busy(false);
        if (result.outcome === "rejected") {
          saveDraft(); // the report stays in the form, with the same client key
          showErrors(errorsFromApi(result.error));
          return;
        }
        showResult(result.outcome, result.item && result.item.event ? result.item.event : null, result, item);
        resetForm();
      });
    }).catch(function (err) {
      busy(false);
      showErrors({ "": "无法保存上报：" + (err && err.message ? err.message : err) });
    });
  });

  function resetForm() {
    fillForm(blankDraft());
    search.value = "";
    renderMatters();
    $("[data-draft-note]").hidden = true;
    nearbyBox.hidden = true;
    clearErrors();
    dropDraft();
  }

  var resultBox = $("[data-result]");
  function showResult(outcome, ev, result, item) {
    var html;
    var photos = item ? item.photos.length : 0;
    if (outcome === "sent") {
      html = '<h2 class="m-result-ok">' + (item.mode === "self_handle" ? "已上报并自办自结" : "上报成功") + "</h2>" +
        '<p>事件编号 <strong data-event-code>' + escapeHtml(ev.code) + "</strong></p>" +
        "<p>" + escapeHtml(ev.town_name + " · " + ev.village_name) + (photos ? "，照片 " + photos + " 张已上传" : "") + "</p>" +
        (item.mode === "self_handle" ? '<p class="muted">已转镇综治中心核查。</p>' : "") +
        '<p class="m-result-actions"><a class="btn" href="/m/events/' + ev.id + '">查看事件</a>' +
        ' <button type="button" class="btn btn-primary" data-again>继续上报</button></p>';
    } else if (outcome === "added") {
      html = '<h2 class="m-result-ok">已补充到已有事件</h2><p>' + ev.photos + " 张照片已补充到事件 <strong data-event-code>" +
        escapeHtml(ev.code) + '</strong>，没有新建事件。</p><p class="m-result-actions"><a class="btn" href="/m/events/' + ev.id +
        '">查看事件</a> <button type="button" class="btn btn-primary" data-again>继续上报</button></p>';
    } else if (outcome === "failed") {
      html = '<h2 class="m-result-warn">事件已上报，但还有步骤未完成</h2><p>事件编号 <strong data-event-code>' +
        escapeHtml(ev.code) + "</strong>。原因：" + escapeHtml(result.item.error) +
        '</p><p class="m-result-actions"><a class="btn btn-primary" href="/m/queue">查看待上传</a> <button type="button" class="btn" data-again>继续上报</button></p>';
    } else {
      var why = result && result.item && result.item.error && result.item.error !== "等待网络" ? "（" + result.item.error + "）" : "";
      var text = outcome === "auth"
        ? "登录已失效：上报已保存在手机上，重新登录后会自动上传。"
        : "没有网络或信号太弱" + why + "。上报已保存在手机上，联网后自动上传，不会重复上报。";
      html = '<h2 class="m-result-queued">已保存到待上传</h2>' +
        "<p>" + escapeHtml(text) + "</p>" +
        (photos ? "<p>含照片 " + photos + " 张。</p>" : "") +
        '<p class="m-result-actions"><a class="btn btn-primary" href="/m/queue">查看待上传</a> <button type="button" class="btn" data-again>继续上报</button></p>';
    }
    resultBox.innerHTML = html;
    resultBox.hidden = false;
    resultBox.setAttribute("data-outcome", outcome);
    form.hidden = true;
    resultBox.focus();
    window.scrollTo(0, 0);
  }

  resultBox.addEventListener("click", function (event) {
    if (!event.target.closest("[data-again]")) return;
    resultBox.hidden = true;
    form.hidden = false;
    if (map) map.invalidateSize();
    window.scrollTo(0, 0);
  });

  // -- start -----------------------------------------------------------------------------

  renderMatters();
  initMap();
  var serverErrors = $$("[data-error-for]", form).some(function (el) { return !el.hidden; }) || !!document.querySelector(".content > .alert-error");
  if (serverErrors) {
    // The server sent the form back with errors: keep what it echoed, not an older draft.
    chooseMatter(select.value, true);
    if (form.lng.value && form.lat.value) {
      setPosition({ lng: Number(form.lng.value), lat: Number(form.lat.value), accuracy: Number(form.accuracy_m.value) || null, source: "map" });
    }
    renderThumbs();
    startGps();
    return;
  }
  ggw.idb.get("drafts", USERNAME).then(function (draft) {
    if (hasContent(draft)) {
      fillForm(draft);
      $("[data-draft-note]").hidden = false;
    } else {
      fillForm(draft && draft.client_key ? draft : Object.assign(blankDraft(), { client_key: state.clientKey }));
      saveDraft(); // the client key is now kept with the draft
    }
  }, function () {
    chooseMatter("", true);
  }).then(function () {
    form.setAttribute("data-ready", "1");
    startGps();
  });
})();
