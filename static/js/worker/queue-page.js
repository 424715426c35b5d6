/* /m/queue: what is waiting on this phone, each item's state, 立即重试 and 删除. */
(function () {
  "use strict";

  var ggw = window.ggw;
  var listEl = document.querySelector("[data-queue-list]");
  if (!listEl) return;
  var emptyEl = document.querySelector("[data-queue-empty]");
  var summaryEl = document.querySelector("[data-queue-summary]");
  var retryButton = document.querySelector("[data-retry-now]");

  function escapeHtml(text) {
    return String(text == null ? "" : text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function when(iso) {
    if (!iso) return "";
    var d = new Date(iso);
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    return pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + pad(d.getHours()) + ":" + pad(d.getMinutes());
  }

  function statusText(item) {
    if (item.status === "sending") return "上传中…";
    if (item.status === "failed") return "失败：" + (item.error || "未知原因");
    if (item.status === "auth") return item.error || "需要重新登录";
    if (item.error && item.error !== "等待网络") return "等待网络（" + item.error + "）";
    return "等待网络";
  }

  function render(items) {
    var me = ggw.outbox.username();
    var mine = items.filter(function (i) { return i.username === me; });
    var others = items.length - mine.length;
    listEl.innerHTML = items.map(function (item) {
      var photos = item.photos || [];
      var sent = photos.filter(function (p) { return p.attachment_id; }).length;
      var progress = item.event
        ? "已生成事件 " + escapeHtml(item.event.code) + "，照片已传 " + sent + "/" + photos.length
        : "照片 " + photos.length + " 张";
      if (item.attempts) progress += " · 已尝试 " + item.attempts + " 次" + (item.last_try ? "（最近 " + when(item.last_try) + "）" : "");
      var self = item.mode === "self_handle" ? '<span class="m-tag m-tag-self">现场自行处置</span>' : "";
      return '<li class="m-card m-queue-item m-queue-' + item.status + '" data-queue-item="' + escapeHtml(item.client_key) + '">' +
        '<div class="m-event-top"><strong>' + escapeHtml(item.matter_name || item.payload.matter_code) + "</strong>" + self +
        '<span class="muted">' + when(item.created_at) + "</span></div>" +
        '<p class="m-event-desc">' + escapeHtml((item.payload.description || "").slice(0, 80)) + "</p>" +
        (item.place ? '<p class="muted">' + escapeHtml(item.place) + "</p>" : "") +
        '<p class="m-queue-progress">' + progress + "</p>" +
        '<p class="m-queue-status" data-status="' + item.status + '">' + escapeHtml(statusText(item)) + "</p>" +
        (item.username !== me ? "" : '<div class="m-queue-actions"><button type="button" class="btn btn-small btn-ghost" data-delete="' +
          escapeHtml(item.client_key) + '">删除</button></div>') +
        "</li>";
    }).join("");
    emptyEl.hidden = items.length > 0;
    var failed = mine.filter(function (i) { return i.status === "failed"; }).length;
    summaryEl.textContent = mine.length
      ? "共 " + mine.length + " 条" + (failed ? "，" + failed + " 条失败" : "") + (others ? "；另有其他账号的 " + others + " 条" : "")
      : others ? "其他账号保存的 " + others + " 条，需用该账号登录后上传" : "全部已上传";
    retryButton.disabled = mine.length === 0;
    renderSent();
  }

  function renderSent() {
    var box = document.querySelector("[data-sent-box]");
    var log = [];
    try { log = JSON.parse(localStorage.getItem("ggw-sent-" + ggw.outbox.username()) || "[]"); } catch (e) { log = []; }
    box.hidden = log.length === 0;
    document.querySelector("[data-sent-list]").innerHTML = log.map(function (s) {
      return '<li><a href="/m/events/' + s.id + '">' + escapeHtml(s.code) + "</a> " + escapeHtml(s.matter_name || "") +
        ' <span class="muted">' + when(s.at) + " 上传，照片 " + s.photos + " 张</span></li>";
    }).join("");
  }

  function refresh() { return ggw.outbox.list().then(render); }

  window.addEventListener("ggw:outbox", function (event) { render(event.detail.items); });
  window.addEventListener("ggw:sent", function (event) {
    gg.toast("事件 " + event.detail.item.event.code + " 已上传", { type: "success" });
  });

  retryButton.addEventListener("click", function () {
    retryButton.disabled = true;
    retryButton.textContent = "正在重试…";
    ggw.outbox.flush({ force: true }).then(function (result) {
      var results = (result && result.results) || [];
      if (result && result.outcome === "queued") gg.toast("仍然没有网络，稍后自动重试", { type: "error" });
      else if (result && result.outcome === "auth") gg.toast("登录已失效，请重新登录", { type: "error" });
      else if (results.some(function (r) { return r.outcome === "queued"; })) gg.toast("网络不佳，部分未能上传，稍后自动重试", { type: "error" });
    }).then(function () {
      retryButton.textContent = "立即重试";
      return refresh();
    });
  });

  listEl.addEventListener("click", function (event) {
    var button = event.target.closest("[data-delete]");
    if (!button) return;
    var key = button.getAttribute("data-delete");
    ggw.outbox.list().then(function (items) {
      var item = items.filter(function (i) { return i.client_key === key; })[0];
      if (!item) return null;
      var question = item.event
        ? "事件 " + item.event.code + " 已上报，删除后其余照片将不再上传。确定删除？"
        : "删除后这条上报不会上传，确定删除？";
      if (!window.confirm(question)) return null;
      return ggw.outbox.remove(key);
    });
  });

  refresh();
})();
