// Loved CRM — the inbox: live updates, the composer's keyboard, the thread's scroll.
// One EventSource on /api/v1/events/stream (as the board's live.js). Events carry ids only:
// on a message.* / conversation.read / lead.* event the page re-reads the conversation list
// (GET /inbox/list) and, when the event is about the open conversation, its body
// (GET /inbox/{id}/thread) and merges it: new bubbles are added, changed ones (status ticks,
// attachments) replaced, the composer left alone unless what it may send changed.
(function () {
  "use strict";
  var root = null;
  var leadId = "";
  var filter = "all";
  var source = null;
  var keepFromBottom = null; // the thread's distance from its bottom before "load older"
  var focusComposer = false;

  function thread() { return document.getElementById("thread"); }

  function nearBottom(el) {
    return el.scrollHeight - el.scrollTop - el.clientHeight < 48;
  }

  function toBottom(el) { el.scrollTop = el.scrollHeight; }

  function process(el) {
    if (window.htmx && el) {
      try { window.htmx.process(el); } catch (e) { /* ignore */ }
    }
  }

  // Two pages of messages may both start a day: keep the first separator of each day.
  function dedupeDays(el) {
    var seen = {};
    el.querySelectorAll("li.day-sep").forEach(function (sep) {
      var key = sep.getAttribute("data-key");
      if (seen[key]) sep.remove();
      else seen[key] = true;
    });
  }

  // After htmx swapped something in (the composer's answer, older messages, the simulate
  // form): a new thread starts at its bottom; older messages keep the reader's place.
  function tidy() {
    var el = thread();
    if (!el) return;
    dedupeDays(el);
    if (!el.hasAttribute("data-seen")) {
      el.setAttribute("data-seen", "");
      toBottom(el);
    } else if (keepFromBottom !== null) {
      el.scrollTop = el.scrollHeight - keepFromBottom;
    }
    keepFromBottom = null;
    if (focusComposer) {
      focusComposer = false;
      var box = document.querySelector("[data-composer-text]");
      if (box && !box.disabled) box.focus();
    }
  }

  function setBadge(value) {
    var badge = document.getElementById("nav-unread");
    if (!badge || value === null || value === undefined) return;
    var n = parseInt(value, 10) || 0;
    badge.setAttribute("data-count", String(n));
    badge.textContent = n > 99 ? "99+" : String(n);
    if (n > 0) badge.removeAttribute("hidden");
    else badge.setAttribute("hidden", "");
  }

  function get(url) {
    return fetch(url, {
      credentials: "same-origin",
      headers: { Accept: "text/html", "HX-Request": "true" }
    });
  }

  // --- the conversation list -------------------------------------------------------------

  function refreshList() {
    var list = document.getElementById("conversation-list");
    if (!list) return null;
    var shown = list.querySelectorAll("li.conv").length;
    var params = new URLSearchParams({
      filter: filter,
      active: leadId,
      limit: String(Math.min(200, Math.max(50, shown)))
    });
    return get("/inbox/list?" + params.toString())
      .then(function (r) {
        if (!r.ok) return null;
        setBadge(r.headers.get("X-Unread-Total"));
        return r.text();
      })
      .then(function (html) {
        if (html === null) return;
        var before = {};
        list.querySelectorAll("li.conv").forEach(function (li) {
          before[li.getAttribute("data-key")] = li.getAttribute("data-version");
        });
        list.innerHTML = html;
        list.querySelectorAll("li.conv").forEach(function (li) {
          var key = li.getAttribute("data-key");
          if (before[key] !== li.getAttribute("data-version") && key !== leadId) {
            li.classList.add("flash");
          }
        });
        process(list);
      });
  }

  // --- the open conversation --------------------------------------------------------------

  function byKey(scope, key) {
    return scope.querySelector('[data-key="' + key.replace(/["\\]/g, "") + '"]');
  }

  function mergeThread(current, fresh) {
    var stick = nearBottom(current);
    var prev = null;
    Array.prototype.forEach.call(fresh.children, function (item) {
      var key = item.getAttribute("data-key");
      if (!key || key === "older") return;
      var node = byKey(current, key);
      if (node) {
        if (!node.isEqualNode(item)) {
          var changed = document.importNode(item, true);
          node.replaceWith(changed);
          node = changed;
        }
      } else {
        node = document.importNode(item, true);
        if (node.classList.contains("msg-inbound")) node.classList.add("msg-new");
        if (prev) prev.after(node);
        else {
          var first = current.querySelector(":scope > li:not(.older)");
          current.insertBefore(node, first);
        }
      }
      prev = node;
    });
    if (!byKey(fresh, "empty")) {
      var empty = byKey(current, "empty");
      if (empty) empty.remove();
    }
    dedupeDays(current);
    process(current);
    if (stick) toBottom(current);
  }

  function refreshChat() {
    var current = thread();
    if (!leadId || !current) return null;
    var shown = current.querySelectorAll("li.msg").length;
    var params = new URLSearchParams({
      filter: filter,
      limit: String(Math.min(200, Math.max(40, shown))),
      read: document.visibilityState === "visible" ? "1" : "0"
    });
    return get("/inbox/" + encodeURIComponent(leadId) + "/thread?" + params.toString())
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var freshThread = doc.getElementById("thread");
        var el = thread();
        if (!freshThread || !el) return;
        mergeThread(el, freshThread);
        var notice = document.getElementById("chat-notice");
        var freshNotice = doc.getElementById("chat-notice");
        if (notice && freshNotice && !notice.isEqualNode(freshNotice)) {
          notice.replaceWith(document.importNode(freshNotice, true));
        }
        var composer = document.getElementById("composer");
        var freshComposer = doc.getElementById("composer");
        if (composer && freshComposer &&
            composer.getAttribute("data-state") !== freshComposer.getAttribute("data-state")) {
          var box = composer.querySelector("[data-composer-text]");
          var draft = box ? box.value : "";
          var node = document.importNode(freshComposer, true);
          composer.replaceWith(node);
          var newBox = node.querySelector("[data-composer-text]");
          if (newBox && !newBox.disabled && draft) newBox.value = draft;
          process(node);
        }
      });
  }

  // One re-read at a time per kind; events arriving meanwhile ask for one more.
  function scheduler(task) {
    var timer = null;
    var running = false;
    var again = false;
    function run() {
      timer = null;
      if (running) { again = true; return; }
      running = true;
      Promise.resolve()
        .then(task)
        .catch(function () { /* the next event tries again */ })
        .then(function () {
          running = false;
          if (again) { again = false; schedule(); }
        });
    }
    function schedule() {
      if (!timer) timer = setTimeout(run, 150);
    }
    return schedule;
  }

  var listSoon = scheduler(refreshList);
  var chatSoon = scheduler(refreshChat);

  function about(data) {
    if (!leadId || !data) return false;
    if (data.lead_id && data.lead_id === leadId) return true;
    return !!(data.message_id && document.getElementById("msg-" + data.message_id));
  }

  function onEvent(event) {
    var data = null;
    try { data = JSON.parse(event.data); } catch (e) { return; }
    listSoon();
    // conversation.read changes nothing a bubble shows (inbound messages have no ticks).
    if (event.type !== "conversation.read" && about(data)) chatSoon();
  }

  function connect() {
    if (!window.EventSource) return;
    source = new EventSource("/api/v1/events/stream");
    [
      "message.received", "message.sent", "message.status_changed", "message.updated",
      "conversation.read", "lead.created", "lead.updated", "lead.assigned", "lead.deleted"
    ].forEach(function (type) { source.addEventListener(type, onEvent); });
    source.addEventListener("resync", function () { listSoon(); chatSoon(); });
  }

  // --- the composer -----------------------------------------------------------------------

  function onKeydown(event) {
    var box = event.target;
    if (!(box instanceof HTMLTextAreaElement) || !box.hasAttribute("data-composer-text")) return;
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.altKey) return;
    event.preventDefault();
    if (!box.value.trim() || !box.form) return;
    if (box.form.requestSubmit) box.form.requestSubmit();
    else box.form.submit();
  }

  function onChange(event) {
    var select = event.target;
    if (!(select instanceof HTMLSelectElement) || !select.hasAttribute("data-template-select")) return;
    var preview = select.form && select.form.querySelector("[data-template-preview]");
    if (!preview) return;
    var option = select.options[select.selectedIndex];
    var text = option ? option.getAttribute("data-preview") : "";
    preview.textContent = text || "";
    if (text) preview.removeAttribute("hidden");
    else preview.setAttribute("hidden", "");
  }

  function onSubmit(event) {
    var form = event.target;
    if (form instanceof HTMLFormElement && form.closest("#composer")) focusComposer = true;
  }

  function onClick(event) {
    var target = event.target;
    if (!(target instanceof Element)) return;
    if (target.closest("#thread li.older a")) {
      var el = thread();
      if (el) keepFromBottom = el.scrollHeight - el.scrollTop;
    }
  }

  function start() {
    root = document.querySelector("[data-inbox]");
    if (!root) return;
    leadId = root.getAttribute("data-lead-id") || "";
    filter = root.getAttribute("data-filter") || "all";
    tidy();
    document.addEventListener("keydown", onKeydown);
    document.addEventListener("change", onChange);
    document.addEventListener("submit", onSubmit, true);
    document.addEventListener("click", onClick, true);
    ["htmx:afterSwap", "htmx:after:swap", "htmx:afterSettle", "htmx:after:settle"].forEach(
      function (name) { document.addEventListener(name, tidy); }
    );
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") { listSoon(); chatSoon(); }
    });
    connect();
  }

  window.addEventListener("pagehide", function () { if (source) source.close(); });
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
