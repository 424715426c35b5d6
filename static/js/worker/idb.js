/* The grid worker's storage on the phone: one IndexedDB database, promise helpers.
 *
 *   ggw.idb.get(store, key) / put(store, value) / del(store, key) / all(store)
 *
 * Stores (keyPath in brackets):
 *   outbox [client_key]  reports not yet confirmed by the server, with their photo blobs
 *   drafts [username]    the report form being filled in (client key, fields, photos)
 */
(function () {
  "use strict";

  var ggw = (window.ggw = window.ggw || {});
  var NAME = "gridgov-worker";
  var VERSION = 1;
  var opening = null;

  function open() {
    if (opening) return opening;
    opening = new Promise(function (resolve, reject) {
      if (!window.indexedDB) {
        reject(new Error("此浏览器不支持离线存储（IndexedDB）"));
        return;
      }
      var request = indexedDB.open(NAME, VERSION);
      request.onupgradeneeded = function () {
        var db = request.result;
        if (!db.objectStoreNames.contains("outbox")) db.createObjectStore("outbox", { keyPath: "client_key" });
        if (!db.objectStoreNames.contains("drafts")) db.createObjectStore("drafts", { keyPath: "username" });
      };
      request.onsuccess = function () {
        var db = request.result;
        db.onversionchange = function () { db.close(); opening = null; };
        resolve(db);
      };
      request.onerror = function () { opening = null; reject(request.error); };
      request.onblocked = function () { opening = null; reject(new Error("离线存储被其他页面占用，请关闭其他标签页后重试")); };
    });
    return opening;
  }

  function run(store, mode, work) {
    return open().then(function (db) {
      return new Promise(function (resolve, reject) {
        var tx = db.transaction(store, mode);
        var result;
        var request = work(tx.objectStore(store));
        if (request) request.onsuccess = function () { result = request.result; };
        tx.oncomplete = function () { resolve(result); };
        tx.onerror = function () { reject(tx.error); };
        tx.onabort = function () { reject(tx.error || new Error("存储操作被中止")); };
      });
    });
  }

  ggw.idb = {
    get: function (store, key) { return run(store, "readonly", function (s) { return s.get(key); }); },
    put: function (store, value) { return run(store, "readwrite", function (s) { return s.put(value); }); },
    del: function (store, key) { return run(store, "readwrite", function (s) { return s.delete(key); }); },
    all: function (store) { return run(store, "readonly", function (s) { return s.getAll(); }); },
  };
})();
