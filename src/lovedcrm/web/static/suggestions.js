/* Suggested replies in the inbox (assistant/_suggestions.html): a click puts the text into
   the composer; when the message is sent, what happened to the suggestions shown is reported
   (picked as it was, edited, or ignored) to the JSON API with the session's CSRF token.
   Loaded by the fragment itself each time it is swapped in: it installs its listeners once. */
(function () {
  "use strict";
  if (window.lovedcrmSuggestions) return;
  window.lovedcrmSuggestions = true;

  var picked = null; // {leadId, id, text}

  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function send(leadId, body) {
    try {
      fetch("/api/v1/leads/" + encodeURIComponent(leadId) + "/suggested-replies/feedback", {
        method: "POST",
        credentials: "same-origin",
        keepalive: true,
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
        body: JSON.stringify(body),
      }).catch(function () {});
    } catch (e) { /* feedback is best effort */ }
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-suggestion]") : null;
    if (!button) return;
    var box = button.closest("[data-suggestions]");
    var text = document.getElementById("composer-text");
    if (!box || !text || text.disabled) return;
    text.value = button.getAttribute("data-text") || "";
    text.dispatchEvent(new Event("input", { bubbles: true }));
    text.focus();
    box.querySelectorAll("[data-suggestion]").forEach(function (b) {
      b.setAttribute("aria-pressed", b === button ? "true" : "false");
    });
    picked = { leadId: box.getAttribute("data-lead-id"), id: button.getAttribute("data-suggestion"), text: text.value };
  });

  // Capture: runs before htmx sends the form and swaps the composer away.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList || !form.classList.contains("composer-text")) return;
    var box = document.querySelector("[data-suggestions]");
    var text = form.querySelector("[data-composer-text]");
    if (!box || !text || !text.value.trim()) return;
    var leadId = box.getAttribute("data-lead-id");
    var sent = text.value.trim();
    if (picked && picked.leadId === leadId) {
      var same = sent === picked.text.trim();
      send(leadId, { suggestion_id: picked.id, action: same ? "picked" : "edited", text: sent });
    } else {
      box.querySelectorAll("[data-suggestion]").forEach(function (b) {
        send(leadId, { suggestion_id: b.getAttribute("data-suggestion"), action: "ignored", text: b.getAttribute("data-text") });
      });
    }
    picked = null;
  }, true);
})();
