// Loved CRM — the little script every page needs (no framework, no build).
// "/" focuses search; the sidebar collapses (remembered); toasts leave after 4 s;
// selects marked data-autosubmit submit on change; htmx requests carry the CSRF token;
// the organization's color (<body data-accent>) becomes --accent; [data-copy] buttons copy a
// field. No inline script or style anywhere: the Content-Security-Policy allows none.
(function () {
  "use strict";
  var root = document.documentElement;
  var COLOR = /^#[0-9a-fA-F]{6}$/;
  root.classList.add("js");
  try {
    if (localStorage.getItem("lovedcrm.sidebar") === "collapsed") root.classList.add("collapsed");
  } catch (e) { /* storage may be blocked */ }
  var accent = document.body && document.body.getAttribute("data-accent");
  if (accent && COLOR.test(accent)) root.style.setProperty("--accent", accent);

  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : null;
  }

  function dismiss(toast) {
    if (!toast || toast.classList.contains("leaving")) return;
    toast.classList.add("leaving");
    setTimeout(function () { toast.remove(); }, 200);
  }

  function armToasts(scope) {
    (scope || document).querySelectorAll("[data-toast]").forEach(function (toast) {
      if (toast.dataset.armed) return;
      toast.dataset.armed = "1";
      var timer = setTimeout(function () { dismiss(toast); }, 4000);
      toast.addEventListener("mouseenter", function () { clearTimeout(timer); });
      toast.addEventListener("focusin", function () { clearTimeout(timer); });
      toast.addEventListener("mouseleave", function () {
        timer = setTimeout(function () { dismiss(toast); }, 2000);
      });
    });
  }

  // A toast from script (e.g. after an htmx request): LovedCRM.toast("Salvo", "success").
  function toast(text, kind) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var el = document.createElement("div");
    el.className = "toast toast-" + (kind || "info");
    el.setAttribute("data-toast", "");
    var span = document.createElement("span");
    span.textContent = text;
    var close = document.createElement("button");
    close.type = "button";
    close.className = "toast-close";
    close.setAttribute("data-dismiss", "");
    close.setAttribute("aria-label", root.lang === "en" ? "Close" : "Fechar");
    close.textContent = "×";
    el.appendChild(span);
    el.appendChild(close);
    box.appendChild(el);
    armToasts(box);
  }
  window.LovedCRM = { toast: toast };

  function paintStages(scope) {
    (scope || document).querySelectorAll("[data-color]").forEach(function (el) {
      var c = el.getAttribute("data-color");
      if (c && COLOR.test(c)) el.style.setProperty("--stage", c);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    armToasts();
    paintStages();
    // Tabs that scroll sideways (phones) show the current one.
    var tab = document.querySelector(".tabs .tab.active");
    if (tab && tab.parentElement.scrollWidth > tab.parentElement.clientWidth) {
      tab.parentElement.scrollLeft = tab.offsetLeft - (tab.parentElement.clientWidth - tab.offsetWidth) / 2;
    }
    var toggle = document.querySelector("[data-collapse]");
    if (toggle) {
      toggle.setAttribute("aria-expanded", String(!root.classList.contains("collapsed")));
      toggle.addEventListener("click", function () {
        var collapsed = root.classList.toggle("collapsed");
        toggle.setAttribute("aria-expanded", String(!collapsed));
        try { localStorage.setItem("lovedcrm.sidebar", collapsed ? "collapsed" : "open"); } catch (e) { /* ignore */ }
      });
    }
    document.querySelectorAll("[data-color-sync]").forEach(function (picker) {
      var field = document.getElementById(picker.getAttribute("data-color-sync"));
      if (!field) return;
      picker.addEventListener("input", function () { field.value = picker.value; });
      field.addEventListener("input", function () {
        if (COLOR.test(field.value)) picker.value = field.value.toLowerCase();
      });
    });
  });

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!(target instanceof Element)) return;
    var close = target.closest("[data-dismiss]");
    if (close) dismiss(close.closest("[data-toast]"));
    // "Copy" next to a read-only field (data-copy="<field id>", data-copied="<message>").
    var copy = target.closest("[data-copy]");
    var field = copy ? document.getElementById(copy.getAttribute("data-copy")) : null;
    if (field) {
      var done = function () { toast(copy.getAttribute("data-copied"), "success"); };
      field.select();
      if (navigator.clipboard) {
        navigator.clipboard.writeText(field.value).then(done, function () { document.execCommand("copy"); done(); });
      } else {
        document.execCommand("copy");
        done();
      }
    }
    // A click outside an open menu closes it.
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      if (!menu.contains(target)) menu.removeAttribute("open");
    });
  });

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target instanceof HTMLSelectElement && target.hasAttribute("data-autosubmit") && target.form) {
      target.form.requestSubmit ? target.form.requestSubmit() : target.form.submit();
    }
  });

  document.addEventListener("keydown", function (event) {
    var target = event.target;
    var typing = target instanceof HTMLElement &&
      (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
    if (event.key === "/" && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
      var search = document.querySelector("[data-search]");
      if (search) { event.preventDefault(); search.focus(); }
    } else if (event.key === "Escape") {
      document.querySelectorAll("details.menu[open]").forEach(function (menu) {
        menu.removeAttribute("open");
        var summary = menu.querySelector("summary");
        if (summary) summary.focus();
      });
      if (typing && target.matches("[data-search]")) target.blur();
    }
  });

  // htmx 2 (htmx:configRequest) and htmx 4 (htmx:config:request): send the CSRF token.
  function addCsrf(event) {
    var token = csrf();
    if (!token || !event.detail) return;
    var headers = event.detail.headers || (event.detail.ctx && event.detail.ctx.request && event.detail.ctx.request.headers);
    if (headers) headers["X-CSRF-Token"] = token;
  }
  document.addEventListener("htmx:configRequest", addCsrf);
  document.addEventListener("htmx:config:request", addCsrf);
  document.addEventListener("htmx:afterSwap", function (event) {
    armToasts(event.target);
    paintStages(event.target);
  });
  document.addEventListener("htmx:after:swap", function (event) {
    armToasts(event.target);
    paintStages(event.target);
  });
})();
