// Loved CRM — live pages: one EventSource on /api/v1/events/stream. Events carry ids only;
// on a lead.* event the board re-reads that card (GET /pipeline/cards/{id}, 404 = not on this
// board any more) and moves it to its column with a brief highlight. EventSource reconnects
// by itself (the server asks for 3 s); a "resync" means events were missed: reload quietly.
(function () {
  "use strict";
  if (!window.EventSource) return;
  var LEAD_EVENTS = [
    "lead.created", "lead.updated", "lead.stage_changed", "lead.assigned",
    "lead.converted", "lead.lost", "lead.deleted"
  ];
  var pending = {};
  var source = null;

  function onLeadEvent(event) {
    var data;
    try { data = JSON.parse(event.data); } catch (e) { return; }
    var leadId = data && data.lead_id;
    if (!leadId || !window.LovedBoard) return;
    // Several events for one change (updated + stage_changed): re-read once.
    clearTimeout(pending[leadId]);
    pending[leadId] = setTimeout(function () {
      delete pending[leadId];
      window.LovedBoard.refreshCard(leadId, true);
      window.LovedBoard.refreshTotals();
    }, 120);
  }

  function resync() {
    if (document.querySelector(".lead-card.saving, .board.dragging, details[open]")) return;
    fetch(location.pathname + location.search, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        doc.querySelectorAll(".lead-card").forEach(function (card) {
          var id = card.getAttribute("data-lead-id");
          if (id && window.LovedBoard.hasCard(id)) window.LovedBoard.refreshCard(id, false);
        });
        window.LovedBoard.refreshTotals();
      })
      .catch(function () { /* ignore */ });
  }

  function connect() {
    if (!document.querySelector("[data-board]")) return;
    source = new EventSource("/api/v1/events/stream");
    LEAD_EVENTS.forEach(function (type) { source.addEventListener(type, onLeadEvent); });
    source.addEventListener("resync", resync);
  }

  window.addEventListener("pagehide", function () { if (source) source.close(); });
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", connect);
  else connect();
})();
