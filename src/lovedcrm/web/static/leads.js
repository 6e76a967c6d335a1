// The leads list's bulk bar: select all on the page, a count of the selection, only the
// select the chosen action needs, and the bar hidden while nothing is selected. Without
// JavaScript the bar is always shown and the form works as it is.
(function () {
  "use strict";

  function setup(form) {
    var bar = form.querySelector("[data-bulk-bar]");
    if (!bar) return;
    var all = form.querySelector("[data-select-all]");
    var count = bar.querySelector("[data-bulk-count]");
    var action = bar.querySelector("[data-bulk-action]");
    var clear = bar.querySelector("[data-bulk-clear]");
    var boxes = function () {
      return Array.prototype.slice.call(form.querySelectorAll('input[type="checkbox"][name="ids"]'));
    };

    function showFor() {
      bar.querySelectorAll("[data-bulk-for]").forEach(function (el) {
        el.hidden = el.getAttribute("data-bulk-for") !== action.value;
      });
    }

    function refresh() {
      var list = boxes();
      var n = list.filter(function (b) { return b.checked; }).length;
      bar.hidden = n === 0;
      bar.classList.toggle("is-active", n > 0);
      count.hidden = n === 0;
      count.textContent = n === 1 ? count.dataset.one : count.dataset.many.replace("{count}", String(n));
      if (clear) clear.hidden = n === 0;
      if (all) {
        all.checked = n > 0 && n === list.length;
        all.indeterminate = n > 0 && n < list.length;
      }
    }

    form.addEventListener("change", function (event) {
      var target = event.target;
      if (target === all) {
        boxes().forEach(function (b) { b.checked = all.checked; });
      }
      if (target === action) showFor();
      refresh();
    });
    if (clear) {
      clear.addEventListener("click", function () {
        boxes().forEach(function (b) { b.checked = false; });
        refresh();
      });
    }
    showFor();
    refresh();
  }

  function init() {
    document.querySelectorAll("form.bulk-form").forEach(setup);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
