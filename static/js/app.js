/* gridgov shared helpers (plain JS, no framework, no network beyond this site).
 *
 *   gg.api(url, {method, json, form, headers, background, signal}) -> Promise
 *     fetch with the session cookie; sends X-CSRF-Token (from <meta name="csrf-token">)
 *     on every non-GET request; resolves to the parsed JSON (or text) body; rejects with
 *     a gg.ApiError {code, message, status, details} — message is Chinese, ready to show.
 *     `json`: a value sent as application/json (method defaults to POST);
 *     `form`: a <form>, FormData or plain object sent as multipart/form-data;
 *     `background: true`: polling that must not keep an idle session alive.
 *   gg.toast(message, {type: "info" | "success" | "error", timeout: ms})
 *
 * Also, for every page: forms are not submitted twice (their submit buttons are disabled
 * while the request is in flight), buttons with data-confirm="…" ask first, and the header's
 * notice badge refreshes every minute.
 */
(function () {
  "use strict";

  var gg = (window.gg = window.gg || {});

  var STATUS_MESSAGES = {
    400: "请求有误",
    401: "请先登录",
    403: "无权执行此操作",
    404: "内容不存在",
    409: "数据已被他人更新，请刷新后重试",
    413: "上传内容过大",
    422: "填写的内容有误",
    429: "操作过于频繁，请稍后再试",
  };

  function ApiError(code, message, status, details) {
    this.name = "ApiError";
    this.code = code;
    this.message = message;
    this.status = status;
    this.details = details || {};
  }
  ApiError.prototype = Object.create(Error.prototype);
  ApiError.prototype.constructor = ApiError;
  gg.ApiError = ApiError;

  gg.csrfToken = function () {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  };

  function toFormData(form) {
    if (form instanceof FormData) return form;
    if (typeof HTMLFormElement !== "undefined" && form instanceof HTMLFormElement) {
      return new FormData(form);
    }
    var data = new FormData();
    Object.keys(form).forEach(function (key) {
      var value = form[key];
      (Array.isArray(value) ? value : [value]).forEach(function (v) {
        if (v !== undefined && v !== null) data.append(key, v);
      });
    });
    return data;
  }

  gg.api = function (url, options) {
    var opts = options || {};
    var hasBody = opts.json !== undefined || opts.form !== undefined;
    var method = (opts.method || (hasBody ? "POST" : "GET")).toUpperCase();
    var headers = new Headers(opts.headers || {});
    headers.set("Accept", "application/json");
    if (method !== "GET" && method !== "HEAD") headers.set("X-CSRF-Token", gg.csrfToken());
    if (opts.background) headers.set("X-GG-Background", "1");
    var body;
    if (opts.json !== undefined) {
      headers.set("Content-Type", "application/json");
      body = JSON.stringify(opts.json);
    } else if (opts.form !== undefined) {
      body = toFormData(opts.form); // the browser sets the multipart boundary
    }
    return fetch(url, {
      method: method,
      headers: headers,
      body: body,
      credentials: "same-origin",
      signal: opts.signal,
    }).then(
      function (response) {
        var type = response.headers.get("Content-Type") || "";
        var parsed = type.indexOf("application/json") >= 0
          ? response.json().catch(function () { return null; })
          : response.text();
        return parsed.then(function (data) {
          if (response.ok) return data;
          var error = data && typeof data === "object" && data.error ? data.error : {};
          throw new ApiError(
            error.code || "http_" + response.status,
            error.message || STATUS_MESSAGES[response.status] || "请求失败（" + response.status + "）",
            response.status,
            error.details
          );
        });
      },
      function (err) {
        if (err && err.name === "AbortError") throw err;
        throw new ApiError("network", "网络连接失败，请检查网络后重试", 0);
      }
    );
  };

  gg.toast = function (message, options) {
    var opts = options || {};
    var box = document.getElementById("gg-toasts");
    if (!box) {
      box = document.createElement("div");
      box.id = "gg-toasts";
      box.className = "toasts";
      box.setAttribute("aria-live", "polite");
      document.body.appendChild(box);
    }
    var item = document.createElement("div");
    item.className = "toast" + (opts.type ? " toast-" + opts.type : "");
    item.setAttribute("role", opts.type === "error" ? "alert" : "status");
    item.textContent = message;
    box.appendChild(item);
    var timeout = opts.timeout === undefined ? (opts.type === "error" ? 6000 : 3500) : opts.timeout;
    function hide() {
      item.classList.add("hiding");
      setTimeout(function () { item.remove(); }, 300);
    }
    if (timeout > 0) setTimeout(hide, timeout);
    item.addEventListener("click", hide);
    return item;
  };

  // Confirm before destructive actions: <button data-confirm="确定退回该事件？">.
  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target.closest("[data-confirm]") : null;
    if (target && !window.confirm(target.getAttribute("data-confirm"))) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  // No double submission: disable a form's submit buttons once it is on its way (after
  // the browser has read the clicked button's name/value). Opt out with data-resubmit.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (event.defaultPrevented || !(form instanceof HTMLFormElement) || form.hasAttribute("data-resubmit")) return;
    setTimeout(function () {
      form.querySelectorAll('button[type="submit"], button:not([type]), input[type="submit"]')
        .forEach(function (button) { button.disabled = true; });
    }, 0);
  });
  // Coming back with the browser's back button must not leave buttons disabled.
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) return;
    document.querySelectorAll("form button:disabled, form input[type=submit]:disabled")
      .forEach(function (button) { button.disabled = false; });
  });

  // The header's unread-notice badge: refresh every minute while the page is visible.
  gg.refreshUnread = function () {
    var link = document.querySelector("[data-unread-url]");
    if (!link) return Promise.resolve(null);
    return gg.api(link.getAttribute("data-unread-url"), { background: true }).then(function (data) {
      if (!data || typeof data.unread !== "number") return null;
      var badge = link.querySelector("[data-unread]");
      if (badge) badge.textContent = data.unread > 99 ? "99+" : String(data.unread);
      link.classList.toggle("has-unread", data.unread > 0);
      link.setAttribute("aria-label", "通知（" + data.unread + " 条未读）");
      return data.unread;
    }, function (error) {
      // The session ended (idle timeout): show the sign-in page now, not at the next click.
      if (error && (error.code === "session_expired" || error.status === 401)) {
        window.location.assign("/login?timeout=1&next=" + encodeURIComponent(location.pathname + location.search));
      }
      return null;
    });
  };
  if (document.querySelector("[data-unread-url]")) {
    setInterval(function () {
      if (document.visibilityState === "visible") gg.refreshUnread();
    }, 60000);
  }
})();
