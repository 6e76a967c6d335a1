// Loved CRM — the pipeline board: drag and drop (SortableJS), the "Move to…" menu, load-more
// bookkeeping and the column totals. No framework, no build. Moves go to the JSON API
// (POST /api/v1/leads/{id}/move with the card's version); a refusal puts the card back and
// a toast says why. live.js calls window.LovedBoard to re-read cards moved by teammates.
(function () {
  "use strict";
  var COLOR = /^#[0-9a-fA-F]{6}$/;
  var board = null;
  var messages = {};
  var mine = {};          // lead ids this page just moved: their echo is not highlighted
  var totalsTimer = null;

  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }
  function toast(text, kind) {
    if (window.LovedCRM && window.LovedCRM.toast) window.LovedCRM.toast(text, kind);
  }
  function announce(text) {
    var status = document.getElementById("board-status");
    if (status) status.textContent = text;
  }
  function withFilters(url) {
    var query = board ? board.getAttribute("data-filter-query") : "";
    if (!query) return url;
    return url + (url.indexOf("?") < 0 ? "?" : "&") + query;
  }
  function attrEq(name, value) {
    return "[" + name + '="' + String(value).replace(/["\\]/g, "\\$&") + '"]';
  }
  function listFor(stageId) {
    return board.querySelector(".column-cards" + attrEq("data-stage-id", stageId));
  }
  function cardsOf(list) {
    return Array.prototype.filter.call(list.children, function (el) {
      return el.classList.contains("lead-card");
    });
  }
  function sibling(el, dir) {
    var node = dir < 0 ? el.previousElementSibling : el.nextElementSibling;
    while (node && !node.classList.contains("lead-card")) {
      node = dir < 0 ? node.previousElementSibling : node.nextElementSibling;
    }
    return node;
  }
  function keepMoreLast(list) {
    var more = list.querySelector(":scope > [data-load-more]");
    if (more && more !== list.lastElementChild) list.appendChild(more);
  }
  function refreshEmpty(list) {
    if (!list) return;
    var column = list.closest(".column");
    var hint = column && column.querySelector("[data-empty]");
    if (hint) hint.hidden = cardsOf(list).length > 0;
  }
  function paint(el) {
    var c = el.getAttribute("data-color");
    if (c && COLOR.test(c)) el.style.setProperty("--stage", c);
  }
  function money(value) {
    try {
      return new Intl.NumberFormat(board.getAttribute("data-locale") || "pt-BR", {
        style: "currency",
        currency: board.getAttribute("data-currency") || "BRL",
        minimumFractionDigits: 0,
        maximumFractionDigits: 0
      }).format(value);
    } catch (e) {
      return String(Math.round(value));
    }
  }

  // --- totals ------------------------------------------------------------------------
  // At once on the page (count and sum), then the server's numbers a moment later.
  function bump(stageId, count, value) {
    var stats = board.querySelector(".column-stats" + attrEq("data-stats-for", stageId));
    if (!stats) return;
    var countEl = stats.querySelector("[data-count]");
    var sumEl = stats.querySelector("[data-sum]");
    if (countEl) {
      var n = Math.max(0, parseInt(countEl.getAttribute("data-count"), 10) + count);
      countEl.setAttribute("data-count", String(n));
      countEl.textContent = String(n);
    }
    if (sumEl) {
      var total = parseFloat(sumEl.getAttribute("data-sum")) + value;
      sumEl.setAttribute("data-sum", String(total));
      sumEl.textContent = money(total);
    }
  }
  function refreshTotals() {
    clearTimeout(totalsTimer);
    totalsTimer = setTimeout(function () {
      fetch(withFilters("/pipeline/totals"), { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (!html) return;
          var tpl = document.createElement("template");
          tpl.innerHTML = html;
          var sum = 0;
          tpl.content.querySelectorAll("[data-stats-for]").forEach(function (fresh) {
            var old = board.querySelector(".column-stats" + attrEq("data-stats-for", fresh.getAttribute("data-stats-for")));
            if (old) old.replaceWith(fresh);
            var c = fresh.querySelector("[data-count]");
            if (c) sum += parseInt(c.getAttribute("data-count"), 10) || 0;
          });
          var title = document.querySelector(".title-count");
          if (title) title.textContent = sum.toLocaleString(board.getAttribute("data-locale") || "pt-BR");
        })
        .catch(function () { /* the next event or reload fixes the numbers */ });
    }, 150);
  }

  // --- one card from the server ---------------------------------------------------------
  function position(card) { return parseFloat(card.getAttribute("data-position")); }
  function insertInOrder(list, card) {
    var pos = position(card);
    var cards = cardsOf(list);
    for (var i = 0; i < cards.length; i++) {
      var other = cards[i];
      if (other === card) continue;
      var p = position(other);
      if (p > pos || (p === pos && other.id > card.id)) { list.insertBefore(card, other); return true; }
    }
    // Beyond the loaded cards of a column with more to load: it shows up with "load more".
    if (list.querySelector(":scope > [data-load-more]")) return false;
    list.appendChild(card);
    return true;
  }
  function highlight(card) {
    card.classList.remove("flash");
    void card.offsetWidth; // restart the animation
    card.classList.add("flash");
    setTimeout(function () { card.classList.remove("flash"); }, 2000);
  }
  function refreshCard(leadId, showHighlight) {
    var url = withFilters("/pipeline/cards/" + encodeURIComponent(leadId));
    return fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) {
        var existing = document.getElementById("card-" + leadId);
        if (existing && (existing.classList.contains("saving") || existing.classList.contains("card-chosen"))) return;
        if (r.status === 404) {
          if (existing) { var from = existing.parentNode; existing.remove(); refreshEmpty(from); }
          return;
        }
        if (!r.ok) return;
        return r.text().then(function (html) {
          var tpl = document.createElement("template");
          tpl.innerHTML = html.trim();
          var fresh = tpl.content.querySelector(".lead-card");
          if (!fresh) return;
          existing = document.getElementById(fresh.id);
          var list = listFor(fresh.getAttribute("data-stage-id"));
          var oldList = existing ? existing.parentNode : null;
          if (existing) existing.remove();
          if (list && insertInOrder(list, fresh)) {
            paint(fresh);
            if (showHighlight && !mine[leadId]) highlight(fresh);
          }
          refreshEmpty(oldList);
          refreshEmpty(list);
        });
      })
      .catch(function () { /* offline: the next event or reload catches up */ });
  }

  // --- moves ----------------------------------------------------------------------------
  function setStage(card, list) {
    var column = list.closest(".column");
    card.setAttribute("data-stage-id", list.getAttribute("data-stage-id"));
    if (column) {
      card.setAttribute("data-color", column.getAttribute("data-color") || "");
      paint(card);
    }
    var select = card.querySelector(".move-form select");
    if (select) select.value = list.getAttribute("data-stage-id");
  }

  // origin: {list, next} where the card was; the card is already where it was dropped.
  function send(card, origin) {
    var list = card.parentNode;
    var leadId = card.getAttribute("data-lead-id");
    var value = parseFloat(card.getAttribute("data-value")) || 0;
    var crossed = origin.list !== list;
    var body = {
      stage_id: list.getAttribute("data-stage-id"),
      expected_version: parseInt(card.getAttribute("data-version"), 10)
    };
    var prev = sibling(card, -1);
    var next = sibling(card, 1);
    if (prev) body.after_id = prev.getAttribute("data-lead-id");
    if (next) body.before_id = next.getAttribute("data-lead-id");
    if (crossed) {
      bump(origin.list.getAttribute("data-stage-id"), -1, -value);
      bump(body.stage_id, 1, value);
      setStage(card, list);
    }
    refreshEmpty(origin.list);
    refreshEmpty(list);
    card.classList.add("saving");
    card.setAttribute("aria-busy", "true");
    mine[leadId] = true;
    setTimeout(function () { delete mine[leadId]; }, 4000);

    function putBack() {
      if (origin.next && origin.next.parentNode === origin.list) origin.list.insertBefore(card, origin.next);
      else origin.list.appendChild(card);
      keepMoreLast(origin.list);
      if (crossed) {
        bump(origin.list.getAttribute("data-stage-id"), 1, value);
        bump(body.stage_id, -1, -value);
        setStage(card, origin.list);
      }
      refreshEmpty(origin.list);
      refreshEmpty(list);
    }
    function done() {
      card.classList.remove("saving");
      card.removeAttribute("aria-busy");
    }

    fetch("/api/v1/leads/" + encodeURIComponent(leadId) + "/move", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify(body)
    })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (data) {
          return { ok: r.ok, status: r.status, data: data || {} };
        });
      })
      .then(function (res) {
        done();
        if (res.ok) {
          card.setAttribute("data-version", String(res.data.version));
          card.setAttribute("data-position", String(res.data.board_position));
          var field = card.querySelector("[data-version-field]");
          if (field) field.value = String(res.data.version);
          var column = list.closest(".column");
          var name = column ? column.querySelector("h2").textContent : "";
          announce((messages.moved || "%(stage)s").replace("%(stage)s", name));
          refreshTotals();
          return;
        }
        putBack();
        toast(messages[res.data.code] || res.data.detail || messages.error, "error");
        if (res.status === 409 && res.data.lead) refreshCard(leadId, true);
        refreshTotals();
      })
      .catch(function () {
        done();
        putBack();
        toast(messages.network || "Network error", "error");
      });
  }

  function clearTargets() {
    board.querySelectorAll(".column.drop-target").forEach(function (c) { c.classList.remove("drop-target"); });
  }

  function makeSortable(list) {
    if (!window.Sortable || list.getAttribute("data-sortable")) return;
    list.setAttribute("data-sortable", "1");
    var origin = null;
    window.Sortable.create(list, {
      group: "board",
      draggable: ".lead-card",
      filter: ".move-menu, .saving",
      preventOnFilter: false,
      animation: 180,
      delay: 150,
      delayOnTouchOnly: true,
      emptyInsertThreshold: 48,
      ghostClass: "card-ghost",
      chosenClass: "card-chosen",
      dragClass: "card-drag",
      onStart: function (evt) {
        origin = { list: evt.from, next: evt.item.nextElementSibling };
        board.classList.add("dragging");
      },
      onMove: function (evt) {
        clearTargets();
        var column = evt.to.closest(".column");
        if (column) column.classList.add("drop-target");
      },
      onEnd: function (evt) {
        board.classList.remove("dragging");
        clearTargets();
        var card = evt.item;
        keepMoreLast(evt.to);
        if (!origin || (evt.from === evt.to && card.nextElementSibling === origin.next)) return;
        send(card, origin);
      }
    });
  }

  // The "Move to…" menu with JavaScript: the card goes to the top of the chosen column.
  function onMoveForm(event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-move-form")) return;
    var card = form.closest(".lead-card");
    var select = form.querySelector("select[name=stage_id]");
    if (!card || !select || !board.contains(card)) return;
    event.preventDefault();
    var target = listFor(select.value);
    if (!target) { form.submit(); return; }
    var origin = { list: card.parentNode, next: card.nextElementSibling };
    var menu = form.closest("details");
    if (menu) menu.removeAttribute("open");
    if (origin.list === target && !sibling(card, -1)) return; // already on top
    target.insertBefore(card, target.firstElementChild);
    send(card, origin);
    var summary = card.querySelector("summary");
    if (summary) summary.focus();
  }

  function init() {
    // On a phone the filters start folded (unless some are on), leaving room for the board.
    var filters = document.querySelector("[data-filters]");
    if (filters && !filters.hasAttribute("data-active") && window.matchMedia("(max-width: 767px)").matches) {
      filters.removeAttribute("open");
    }
    board = document.querySelector("[data-board]");
    if (!board) return;
    try {
      messages = JSON.parse(document.getElementById("board-messages").textContent) || {};
    } catch (e) { messages = {}; }
    board.querySelectorAll("[data-color]").forEach(paint);
    if (board.getAttribute("data-can-move") === "true") {
      board.querySelectorAll(".column-cards").forEach(makeSortable);
      board.addEventListener("submit", onMoveForm);
    }
    // Cards added by "load more" (htmx): paint their stripe.
    var after = function (event) {
      if (event.target && event.target.querySelectorAll) event.target.querySelectorAll("[data-color]").forEach(paint);
      board.querySelectorAll(".lead-card[data-color]").forEach(paint);
    };
    document.addEventListener("htmx:after:swap", after);
    document.addEventListener("htmx:afterSwap", after);
  }

  window.LovedBoard = {
    refreshCard: function (leadId, showHighlight) { return board ? refreshCard(leadId, showHighlight) : null; },
    refreshTotals: function () { if (board) refreshTotals(); },
    hasCard: function (leadId) { return !!document.getElementById("card-" + leadId); }
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
