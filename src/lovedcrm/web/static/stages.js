// Loved CRM — stages settings: drag a stage by its handle to reorder the board's columns
// (POST /api/v1/pipeline/stages/reorder with every stage id). The ↑/↓ buttons do the same
// without a mouse (and without JavaScript).
(function () {
  "use strict";
  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }
  function init() {
    var list = document.querySelector("[data-stage-list]");
    if (!list || !window.Sortable) return;
    var messages = {};
    try { messages = JSON.parse(document.getElementById("stages-messages").textContent) || {}; } catch (e) { /* defaults */ }
    function toast(text, kind) {
      if (window.LovedCRM && window.LovedCRM.toast) window.LovedCRM.toast(text, kind);
    }
    var before = null;
    window.Sortable.create(list, {
      handle: ".drag-handle",
      draggable: ".stage-row",
      animation: 180,
      ghostClass: "card-ghost",
      onStart: function (evt) { before = evt.item.nextElementSibling; },
      onEnd: function (evt) {
        if (evt.oldIndex === evt.newIndex) return;
        var item = evt.item;
        var ids = Array.prototype.map.call(list.querySelectorAll(":scope > .stage-row"), function (row) {
          return row.getAttribute("data-stage-id");
        });
        fetch("/api/v1/pipeline/stages/reorder", {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrf() },
          body: JSON.stringify({ stage_ids: ids })
        })
          .then(function (r) {
            if (r.ok) { toast(messages.saved || "OK", "success"); return; }
            return r.json().catch(function () { return {}; }).then(function (data) {
              if (before && before.parentNode === list) list.insertBefore(item, before); else list.appendChild(item);
              toast(messages.failed || data.detail || "Error", "error");
            });
          })
          .catch(function () {
            if (before && before.parentNode === list) list.insertBefore(item, before); else list.appendChild(item);
            toast(messages.failed || "Error", "error");
          });
      }
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
