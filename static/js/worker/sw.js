/* The grid worker's service worker (served as /m/sw.js, scope /m/).
 *
 * Keeps the report page, the queue page, the worker's grid map and their scripts, styles and
 * vendored Leaflet on the phone, so /m/report opens with no signal; the report itself then
 * waits in the IndexedDB queue (outbox.js). Deliberately small:
 *   - pages under /m/: network first; the answer refreshes the cached copy; when the network
 *     fails (or is slower than NAV_TIMEOUT_MS) the cached copy, else the offline page;
 *   - the listed static files: cache first (the cache's name carries a hash of their content,
 *     filled in by the server, so any change installs a new worker and a new cache);
 *   - everything else (API calls, photos, POSTs) is not touched at all.
 * Signing out (POST /logout from a /m/ page) drops the cached pages.
 */
"use strict";

var VERSION = "__VERSION__";
var ASSETS = "__ASSETS__";
var PAGES = "__PAGES__";
var PREFIX = "gg-worker-";
var CACHE = PREFIX + VERSION;
var OFFLINE_PAGE = "/m/offline";
var NAV_TIMEOUT_MS = 4000;

function cacheable(response) {
  return response && response.ok && !response.redirected && response.type === "basic";
}

function refreshPage(cache, path) {
  return fetch(path, { credentials: "same-origin", cache: "no-cache" }).then(function (response) {
    if (cacheable(response)) return cache.put(path, response);
    return null;
  }).catch(function () { return null; });
}

self.addEventListener("install", function (event) {
  event.waitUntil(
    caches.open(CACHE).then(function (cache) {
      var assets = ASSETS.map(function (url) { return new Request(url, { cache: "no-cache" }); });
      return cache.addAll(assets).then(function () {
        return Promise.all(PAGES.map(function (path) { return refreshPage(cache, path); }));
      });
    }).then(function () { return self.skipWaiting(); })
  );
});

self.addEventListener("activate", function (event) {
  event.waitUntil(
    caches.keys().then(function (names) {
      return Promise.all(names.filter(function (name) {
        return name.indexOf(PREFIX) === 0 && name !== CACHE;
      }).map(function (name) { return caches.delete(name); }));
    }).then(function () { return self.clients.claim(); })
  );
});

function forgetPages() {
  return caches.open(CACHE).then(function (cache) {
    return Promise.all(PAGES.map(function (path) { return cache.delete(path); }));
  });
}

function fromCache(path) {
  return caches.open(CACHE).then(function (cache) {
    return cache.match(path).then(function (hit) { return hit || cache.match(OFFLINE_PAGE); });
  });
}

function page(request, path) {
  var keep = PAGES.indexOf(path) >= 0;
  var network = fetch(request).then(function (response) {
    if (keep && cacheable(response)) {
      var copy = response.clone();
      caches.open(CACHE).then(function (cache) { return cache.put(path, copy); });
    }
    return response;
  });
  var timeout = new Promise(function (resolve) {
    setTimeout(function () { resolve(null); }, NAV_TIMEOUT_MS);
  });
  return Promise.race([network.catch(function () { return null; }), timeout]).then(function (response) {
    if (response) return response;
    return fromCache(path).then(function (hit) {
      return hit || network; // nothing cached: keep waiting for the network (or its error)
    });
  });
}

function asset(request, path) {
  return caches.open(CACHE).then(function (cache) {
    return cache.match(path).then(function (hit) {
      return hit || fetch(request).then(function (response) {
        if (cacheable(response)) cache.put(path, response.clone());
        return response;
      });
    });
  });
}

function networkFirst(request, path) {
  return fetch(request).then(function (response) {
    if (cacheable(response)) {
      var copy = response.clone();
      caches.open(CACHE).then(function (cache) { return cache.put(path, copy); });
    }
    return response;
  }, function (err) {
    return caches.open(CACHE).then(function (cache) { return cache.match(path); }).then(function (hit) {
      if (hit) return hit;
      throw err;
    });
  });
}

self.addEventListener("fetch", function (event) {
  var request = event.request;
  var url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.method === "POST" && url.pathname === "/logout") {
    event.waitUntil(forgetPages());
    return;
  }
  if (request.method !== "GET") return;
  if (request.mode === "navigate" && url.pathname.indexOf("/m/") === 0) {
    event.respondWith(page(request, url.pathname));
  } else if (ASSETS.indexOf(url.pathname) >= 0) {
    event.respondWith(asset(request, url.pathname));
  } else if (url.pathname === "/m/grids.geojson") {
    event.respondWith(networkFirst(request, url.pathname));
  }
});
