/* The dispatch desk: select rows for batch dispatch (全选, count, no empty submission). */
(function () {
  "use strict";

  var form = document.querySelector("[data-batch]");
  if (!form) return;
  var all = form.querySelector("[data-check-all]");
  var counter = form.querySelector("[data-selected-count]");
  var submit = form.querySelector("[data-batch-submit]");

  function rows() { return Array.prototype.slice.call(form.querySelectorAll("[data-row-check]")); }

  function update() {
    var checked = rows().filter(function (box) { return box.checked; }).length;
    if (counter) counter.textContent = "（已选 " + checked + " 件）";
    if (all) {
      all.checked = checked > 0 && checked === rows().length;
      all.indeterminate = checked > 0 && checked < rows().length;
    }
    if (submit) submit.textContent = checked ? "分拨所选 " + checked + " 件事件" : "分拨所选事件";
  }

  if (all) {
    all.addEventListener("change", function () {
      rows().forEach(function (box) { box.checked = all.checked; });
      update();
    });
  }
  form.addEventListener("change", function (event) {
    if (event.target.hasAttribute && event.target.hasAttribute("data-row-check")) update();
  });
  form.addEventListener("submit", function (event) {
    var checked = rows().some(function (box) { return box.checked; });
    var lead = form.querySelector('select[name="lead_department_id"]');
    if (!checked) {
      event.preventDefault();
      window.gg.toast("请至少勾选一件要分拨的事件", { type: "error" });
    } else if (lead && !lead.value) {
      event.preventDefault();
      window.gg.toast("请选择主办部门", { type: "error" });
      lead.focus();
    }
  });
  update();
})();
