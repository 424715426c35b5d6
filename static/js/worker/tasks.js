/* /m/tasks: verify a department's handling on the spot (核查通过 / 核查不通过 with a reason and
 * optional photos), through the actions API. Verification needs the network: it is done
 * standing at the place, and its answer decides who works next. */
(function () {
  "use strict";

  var ggw = window.ggw;

  function escapeHtml(text) {
    return String(text == null ? "" : text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function setup(card) {
    var id = card.getAttribute("data-task");
    var code = card.getAttribute("data-code");
    var version = Number(card.getAttribute("data-version"));
    var actions = card.querySelector("[data-task-actions]");
    var failForm = card.querySelector("[data-fail-form]");
    var result = card.querySelector("[data-task-result]");
    var reasonError = failForm.querySelector('[data-error-for="comment"]');
    var photos = [];
    var photoWork = Promise.resolve();

    function done(kind, text) {
      actions.hidden = true;
      failForm.hidden = true;
      result.hidden = false;
      result.className = "m-task-result m-task-" + kind;
      result.innerHTML = text;
      card.classList.add("is-done");
    }

    function failed(err) {
      var message = err.status === 0 ? "网络不佳，未能提交，请稍后重试" : err.message;
      gg.toast(message, { type: "error" });
    }

    function act(name, body) {
      return gg.api("/api/v1/events/" + id + "/actions/" + name, { json: Object.assign({ version: version }, body) });
    }

    card.querySelector("[data-verify-pass]").addEventListener("click", function (event) {
      var button = event.currentTarget;
      if (!window.confirm("确认事件 " + code + " 已处置到位，核查通过？")) return;
      button.disabled = true;
      act("verify_pass", {}).then(function (detail) {
        done("ok", "已核查通过：事件 " + escapeHtml(code) + " 转" + escapeHtml(detail.holder) + "结案。");
      }, function (err) {
        button.disabled = false;
        failed(err);
      });
    });

    card.querySelector("[data-verify-fail-open]").addEventListener("click", function () {
      failForm.hidden = false;
      actions.hidden = true;
      failForm.querySelector("textarea").focus();
    });
    failForm.querySelector("[data-fail-cancel]").addEventListener("click", function () {
      failForm.hidden = true;
      actions.hidden = false;
    });

    function renderThumbs() {
      failForm.querySelector("[data-thumbs]").innerHTML = photos.map(function (p, i) {
        return '<li class="m-thumb"><img src="' + p.url + '" alt="核查照片 ' + (i + 1) + '">' +
          '<button type="button" class="m-thumb-remove" data-remove="' + i + '" aria-label="删除照片 ' + (i + 1) + '">×</button></li>';
      }).join("");
    }
    failForm.addEventListener("click", function (event) {
      var remove = event.target.closest("[data-remove]");
      if (!remove) return;
      var removed = photos.splice(Number(remove.getAttribute("data-remove")), 1)[0];
      if (removed) URL.revokeObjectURL(removed.url);
      renderThumbs();
    });
    failForm.querySelectorAll("[data-photo-input]").forEach(function (input) {
      input.addEventListener("change", function () {
        var files = Array.prototype.slice.call(input.files || []);
        input.value = "";
        photoWork = photoWork.then(function () {
          return files.reduce(function (step, file) {
            return step.then(function () {
              return ggw.photos.prepare(file).then(function (p) {
                photos.push({ blob: p.blob, url: URL.createObjectURL(p.blob) });
                renderThumbs();
              }, function (err) { gg.toast(err.message, { type: "error" }); });
            });
          }, Promise.resolve());
        });
      });
    });

    failForm.comment.addEventListener("input", function () {
      if (!failForm.comment.value.trim()) return;
      reasonError.hidden = true;
      failForm.querySelector(".field").classList.remove("has-error");
    });

    var submitting = false;
    failForm.addEventListener("submit", function (event) {
      event.preventDefault();
      if (submitting) return;
      var comment = failForm.comment.value.trim();
      reasonError.hidden = !!comment;
      reasonError.textContent = comment ? "" : "请填写核查不通过的理由";
      failForm.querySelector(".field").classList.toggle("has-error", !comment);
      if (!comment) return;
      submitting = true;
      var button = failForm.querySelector('button[type="submit"]');
      button.disabled = true;
      button.textContent = "正在提交…";
      photoWork.then(function () {
        return photos.reduce(function (step, photo, i) {
          return step.then(function (ids) {
            var data = new FormData();
            data.append("file", photo.blob, "verify-" + (i + 1) + ".jpg");
            data.append("kind", "evidence");
            return gg.api("/api/v1/events/" + id + "/attachments", { form: data }).then(function (body) {
              return ids.concat([body.id]);
            });
          });
        }, Promise.resolve([]));
      }).then(function (ids) {
        return act("verify_fail", ids.length ? { comment: comment, attachment_ids: ids } : { comment: comment });
      }).then(function (detail) {
        done("fail", "已退回返工：事件 " + escapeHtml(code) + " 回到" + escapeHtml(detail.holder) + "（" +
          escapeHtml(detail.state_label) + "）。理由：" + escapeHtml(comment));
      }, function (err) {
        submitting = false;
        button.disabled = false;
        button.textContent = "确认不通过";
        if (err.details && err.details.field === "comment") {
          reasonError.hidden = false;
          reasonError.textContent = err.message;
        } else {
          failed(err);
        }
      });
    });
  }

  document.querySelectorAll("[data-task]").forEach(setup);
})();
