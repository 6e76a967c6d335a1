// Loved CRM — the bell: one EventSource on /api/v1/events/stream; a "notification" event (sent
// only to the member it is for) or a "resync" refreshes the bell (htmx: "notification from:body").
(function () {
  "use strict";
  if (!window.EventSource) return;
  var source = null;
  function refresh() {
    var bell = document.getElementById("bell");
    if (bell && bell.hasAttribute("open")) return; // do not close the open list under the reader
    document.body.dispatchEvent(new CustomEvent("notification", { bubbles: true }));
  }
  function connect() {
    if (!document.getElementById("bell")) return;
    source = new EventSource("/api/v1/events/stream");
    source.addEventListener("notification", refresh);
    source.addEventListener("resync", refresh);
  }
  window.addEventListener("pagehide", function () { if (source) source.close(); });
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", connect);
  else connect();
})();
