/* Every /m/ page: the offline banner, the upload queue's retries and badges, and the service
 * worker that keeps the report page, the queue and their assets on the phone (scope /m/). */
(function () {
  "use strict";

  var ggw = window.ggw || {};

  function showNetwork() {
    var banner = document.querySelector("[data-net-status]");
    if (banner) banner.hidden = navigator.onLine !== false;
    document.body.classList.toggle("is-offline", navigator.onLine === false);
  }
  window.addEventListener("online", showNetwork);
  window.addEventListener("offline", showNetwork);
  showNetwork();

  if (ggw.outbox) ggw.outbox.start();

  var sw = document.querySelector('meta[name="gg-sw"]');
  if (sw && "serviceWorker" in navigator && window.isSecureContext) {
    navigator.serviceWorker.register(sw.getAttribute("content"), { scope: "/m/" }).catch(function () {
      // Without the service worker everything works online, and the queue still works offline.
    });
  }
})();
