/* The upload queue (待上传): reports that have not reached the server yet, kept on the phone.
 *
 * A report is saved here BEFORE the first attempt to send it, with its photos as blobs, so
 * closing the browser, a reload or a dead battery cannot lose it. Sending an item is a
 * sequence of idempotent steps, each remembered in the item as soon as it succeeds:
 *
 *   1. POST /api/v1/events with the item's client_key (generated on the phone when the form
 *      was opened): the server answers a repeated key with the event it already has;
 *   2. each photo to /api/v1/events/<id>/attachments (the server keeps one copy per content);
 *   3. for 现场自行处置, the self_handle action with the photos' ids (a repeat after a lost
 *      answer is recognised from the event's history).
 *
 * The item is deleted only after the event and every photo (and the action) are confirmed.
 * A network failure, timeout, 5xx or 429 leaves it waiting; it is retried on page load, on
 * the browser's `online` event, every 30 s while something waits, and by 立即重试. A 4xx
 * answer is a reason to show, not to retry by itself. Items belong to the account that saved
 * them and are only ever sent by that account.
 *
 *   ggw.outbox.add(item) → Promise        ggw.outbox.list() → Promise<items>
 *   ggw.outbox.send(key) → Promise<{outcome: "sent"|"queued"|"rejected"|"failed"|"auth", …}>
 *   ggw.outbox.flush({force}) → Promise   ggw.outbox.remove(key) → Promise
 *   ggw.outbox.start()                    window events "ggw:outbox" (changed), "ggw:sent"
 */
(function () {
  "use strict";

  var ggw = (window.ggw = window.ggw || {});
  var STORE = "outbox";
  var RETRY_MS = 30000;
  var STALE_SENDING_MS = 120000;
  var TIMEOUT_MS = { probe: 15000, event: 30000, photo: 90000, action: 30000 };
  var SENT_LOG = 10;
  var running = null;
  var channel = window.BroadcastChannel ? new BroadcastChannel("ggw-outbox") : null;

  function username() {
    var meta = document.querySelector('meta[name="gg-user"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function changed(fromOtherTab) {
    if (!fromOtherTab && channel) channel.postMessage("changed");
    return list().then(function (items) {
      updateBadges(items);
      window.dispatchEvent(new CustomEvent("ggw:outbox", { detail: { items: items } }));
      return items;
    });
  }
  if (channel) channel.onmessage = function () { changed(true); };

  function list() {
    return ggw.idb.all(STORE).then(function (items) {
      return items.sort(function (a, b) { return a.created_at < b.created_at ? -1 : 1; });
    });
  }

  function save(item) {
    item.updated_at = new Date().toISOString();
    return ggw.idb.put(STORE, item).then(function () { return changed(); });
  }

  function add(item) {
    item.username = item.username || username();
    item.created_at = item.created_at || new Date().toISOString();
    item.status = "waiting";
    item.error = "";
    item.attempts = 0;
    return save(item);
  }

  function remove(key) {
    return ggw.idb.del(STORE, key).then(function () { return changed(); });
  }

  // -- talking to the server -------------------------------------------------------------

  function timeoutError() {
    return new gg.ApiError("timeout", "连接超时：网络信号弱，稍后自动重试", 0);
  }

  function call(url, options, ms) {
    var controller = window.AbortController ? new AbortController() : null;
    var timer = setTimeout(function () { if (controller) controller.abort(); }, ms);
    var opts = Object.assign({}, options, { signal: controller ? controller.signal : undefined });
    return gg.api(url, opts).then(function (body) {
      clearTimeout(timer);
      return body;
    }, function (err) {
      clearTimeout(timer);
      throw err && err.name === "AbortError" ? timeoutError() : err;
    });
  }

  /* "transient" (retry by itself), "auth" (wait for sign-in), "csrf", or "permanent". */
  function classify(err) {
    var status = err && typeof err.status === "number" ? err.status : 0;
    if (status === 0 || status >= 500 || status === 408 || status === 429) return "transient";
    if (status === 401 || (err.code === "password_expired") || (err.code === "role_not_allowed" && status === 403)) return "auth";
    if (err.code === "csrf_failed") return "csrf";
    return "permanent";
  }

  function reason(err) {
    if (!err) return "未知错误";
    if (err.status === 0 && err.code === "network") return navigator.onLine === false ? "等待网络" : "网络连接失败，稍后自动重试";
    if (err.status >= 500) return "服务器暂时不可用（" + err.status + "），稍后自动重试";
    return err.message || String(err);
  }

  /* Ask who is signed in and take a fresh CSRF token (the page may come from the cache). */
  function probe() {
    return call("/m/session", { background: true }, TIMEOUT_MS.probe).then(function (info) {
      var meta = document.querySelector('meta[name="csrf-token"]');
      if (meta && info && info.csrf_token) meta.setAttribute("content", info.csrf_token);
      return info;
    });
  }

  function selfHandleDone(eventId) {
    return call("/api/v1/events/" + eventId, {}, TIMEOUT_MS.action).then(function (detail) {
      return (detail.history || []).some(function (h) { return h.action === "self_handle"; });
    });
  }

  function sendSteps(item) {
    var step = Promise.resolve();
    if (!item.event) {
      step = call("/api/v1/events", { json: item.payload }, TIMEOUT_MS.event).then(function (body) {
        item.event = {
          id: body.id, code: body.code, state: body.state, grid_code: body.grid_code,
          village_name: body.village_name, town_name: body.town_name, deadline: body.deadline,
        };
        return save(item);
      });
    }
    (item.photos || []).forEach(function (photo, index) {
      step = step.then(function () {
        if (photo.attachment_id) return null;
        var form = new FormData();
        form.append("file", photo.blob, "photo-" + (index + 1) + ".jpg");
        form.append("kind", photo.kind);
        return call("/api/v1/events/" + item.event.id + "/attachments", { form: form }, TIMEOUT_MS.photo)
          .then(function (body) {
            photo.attachment_id = body.id;
            photo.server_width = body.width;
            photo.server_height = body.height;
            return save(item);
          });
      });
    });
    if (item.mode === "self_handle") {
      step = step.then(function () {
        if (item.self_handled) return null;
        var ids = item.photos.map(function (p) { return p.attachment_id; });
        return call("/api/v1/events/" + item.event.id + "/actions/self_handle",
          { json: { comment: item.self_comment, attachment_ids: ids } }, TIMEOUT_MS.action)
          .catch(function (err) {
            if (err.status !== 409) throw err;
            return selfHandleDone(item.event.id).then(function (done) { if (!done) throw err; });
          })
          .then(function () {
            item.self_handled = true;
            return save(item);
          });
      });
    }
    return step;
  }

  function logSent(item) {
    var key = "ggw-sent-" + item.username;
    var log = [];
    try { log = JSON.parse(localStorage.getItem(key) || "[]"); } catch (e) { log = []; }
    log.unshift({ id: item.event.id, code: item.event.code, matter_name: item.matter_name,
                  photos: (item.photos || []).length, at: new Date().toISOString(), mode: item.mode });
    try { localStorage.setItem(key, JSON.stringify(log.slice(0, SENT_LOG))); } catch (e) { /* full */ }
  }

  /* Send one item through all its steps; resolve to an outcome, never reject. */
  function sendItem(item, info, csrfRetried) {
    if (item.username !== info.username) {
      item.status = "auth";
      item.error = "此条由账号 " + item.username + " 保存，请用该账号登录后上传";
      return save(item).then(function () { return { outcome: "auth", item: item }; });
    }
    item.status = "sending";
    item.error = "";
    item.attempts = (item.attempts || 0) + 1;
    item.last_try = new Date().toISOString();
    return save(item).then(function () { return sendSteps(item); }).then(function () {
      logSent(item);
      return ggw.idb.del(STORE, item.client_key).then(function () {
        return changed();
      }).then(function () {
        window.dispatchEvent(new CustomEvent("ggw:sent", { detail: { item: item } }));
        return { outcome: "sent", item: item, event: item.event };
      });
    }, function (err) {
      var kind = classify(err);
      if (kind === "csrf" && !csrfRetried) {
        return probe().then(function (fresh) { return sendItem(item, fresh, true); },
                            function (e) { return fail(item, e, classify(e)); });
      }
      return fail(item, err, kind === "csrf" ? "transient" : kind);
    });
  }

  function fail(item, err, kind) {
    if (kind === "permanent" && !item.event) {
      // Nothing reached the server and nothing will: hand the problem back to the form.
      return ggw.idb.del(STORE, item.client_key).then(function () { return changed(); }).then(function () {
        return { outcome: "rejected", item: item, error: err };
      });
    }
    item.status = kind === "transient" ? "waiting" : kind === "auth" ? "auth" : "failed";
    item.error = kind === "auth" ? "登录已失效，请重新登录后自动上传" : reason(err);
    return save(item).then(function () {
      return { outcome: kind === "transient" ? "queued" : kind === "auth" ? "auth" : "failed", item: item, error: err };
    });
  }

  function markAll(items, status, message) {
    return items.reduce(function (step, item) {
      return step.then(function () {
        return ggw.idb.get(STORE, item.client_key).then(function (fresh) {
          if (!fresh) return null;
          fresh.status = status;
          fresh.error = message;
          fresh.updated_at = new Date().toISOString();
          return ggw.idb.put(STORE, fresh);
        });
      });
    }, Promise.resolve()).then(function () { return changed(); });
  }

  function exclusive(work) {
    if (navigator.locks && navigator.locks.request) {
      return navigator.locks.request("ggw-outbox", work);
    }
    return work();
  }

  /* Run `work(info)` alone (one sender per phone), after checking the network and sign-in. */
  function withSender(items, work) {
    if (running) {
      return running.then(function () { return withSender(items, work); });
    }
    running = exclusive(function () {
      if (navigator.onLine === false) {
        return markAll(items, "waiting", "等待网络").then(function () { return { outcome: "queued" }; });
      }
      return probe().then(work, function (err) {
        var kind = classify(err);
        var status = kind === "auth" ? "auth" : "waiting";
        var message = kind === "auth" ? "登录已失效，请重新登录后自动上传" : reason(err);
        return markAll(items, status, message).then(function () {
          return { outcome: kind === "auth" ? "auth" : "queued", error: err };
        });
      });
    });
    var done = function () { running = null; };
    running.then(done, done);
    return running;
  }

  function send(key) {
    return ggw.idb.get(STORE, key).then(function (item) {
      if (!item) return { outcome: "missing" };
      return withSender([item], function (info) {
        return ggw.idb.get(STORE, key).then(function (fresh) {
          return fresh ? sendItem(fresh, info) : { outcome: "sent", item: item, event: item.event };
        });
      });
    });
  }

  function flush(options) {
    var force = !!(options && options.force);
    return list().then(function (items) {
      var due = items.filter(function (item) {
        return item.username === username() && (force || item.status !== "failed");
      });
      if (!due.length) return { outcome: "empty" };
      return withSender(due, function (info) {
        var results = [];
        return due.reduce(function (step, item) {
          return step.then(function (stop) {
            if (stop) return true;
            return ggw.idb.get(STORE, item.client_key).then(function (fresh) {
              if (!fresh) return false;
              return sendItem(fresh, info).then(function (result) {
                results.push(result);
                return result.outcome === "queued" || result.outcome === "auth"; // the network is down: stop
              });
            });
          });
        }, Promise.resolve(false)).then(function () { return { outcome: "done", results: results }; });
      });
    });
  }

  // -- badges ----------------------------------------------------------------------------

  function menuBadge() {
    var link = document.querySelector('.workmenu a[href="/m/queue"]');
    if (!link) return null;
    var badge = link.querySelector(".m-badge");
    if (!badge) {
      badge = document.createElement("span");
      badge.className = "m-badge";
      badge.setAttribute("data-queue-count", "");
      link.appendChild(badge);
    }
    return badge;
  }

  function updateBadges(items) {
    var mine = items.filter(function (i) { return i.username === username(); });
    var count = mine.length;
    menuBadge();
    document.querySelectorAll("[data-queue-count]").forEach(function (el) {
      el.textContent = String(count);
      el.classList.toggle("is-zero", count === 0);
    });
    document.querySelectorAll("[data-queue-strip]").forEach(function (el) {
      el.hidden = count === 0 || location.pathname === "/m/queue";
    });
    var failed = mine.filter(function (i) { return i.status === "failed"; }).length;
    document.querySelectorAll("[data-queue-sub]").forEach(function (el) {
      el.textContent = count === 0 ? "没有未发出的上报" : failed ? failed + " 条上传失败，请查看" : count + " 条等待上传";
    });
  }

  var started = false;
  function start() {
    if (started) return;
    started = true;
    var cutoff = Date.now() - STALE_SENDING_MS;
    list().then(function (items) {
      // A page closed mid-send leaves "sending" behind: it is simply waiting again.
      var stale = items.filter(function (i) { return i.status === "sending" && Date.parse(i.updated_at) < cutoff; });
      return stale.length ? markAll(stale, "waiting", "上次上传被中断，等待重试") : changed(true);
    }).then(function () { return flush(); }).catch(function () { /* shown per item */ });
    window.addEventListener("online", function () { flush(); });
    setInterval(function () {
      list().then(function (items) {
        if (items.some(function (i) { return i.username === username() && i.status !== "failed"; })) flush();
      });
    }, RETRY_MS);
  }

  ggw.outbox = {
    add: add, list: list, send: send, flush: flush, remove: remove, start: start,
    username: username, statusLabel: function (item) {
      return { waiting: "等待网络", sending: "上传中", failed: "失败", auth: "需要登录" }[item.status] || item.status;
    },
  };
})();
