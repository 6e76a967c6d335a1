// The forecast chart (reports/forecast.html): won revenue per month, then the forecast's
// expected value with its 80 % and 95 % ranges. Data from the canvas's data-chart attribute.
(function () {
  "use strict";
  function draw() {
    var canvas = document.getElementById("forecast-chart");
    if (!canvas || typeof Chart === "undefined") return;
    var data = JSON.parse(canvas.dataset.chart || "{}");
    var history = data.history || [], forecast = data.forecast || [];
    var months = history.map(function (h) { return h.month; });
    forecast.forEach(function (m) { if (months.indexOf(m.month) < 0) months.push(m.month); });
    var labels = months.map(function (m) { return (data.labels || {})[m] || m; });
    function series(rows, key) {
      return months.map(function (m) {
        for (var i = 0; i < rows.length; i++) if (rows[i].month === m) return rows[i][key];
        return null;
      });
    }
    var money = new Intl.NumberFormat(data.locale || "pt-BR", {
      style: "currency", currency: data.currency || "BRL", maximumFractionDigits: 0
    });
    var band = "rgba(99, 102, 241, ";
    new Chart(canvas, {
      data: {
        labels: labels,
        datasets: [
          { type: "bar", label: canvas.dataset.labelWon, data: series(history, "revenue"),
            backgroundColor: "rgba(16, 185, 129, 0.7)", order: 3 },
          { type: "line", label: canvas.dataset.labelRange95, data: series(forecast, "high95"),
            borderWidth: 0, pointRadius: 0, backgroundColor: band + "0.12)", fill: "+1", order: 2 },
          { type: "line", label: "", data: series(forecast, "low95"), borderWidth: 0,
            pointRadius: 0, fill: false, order: 2 },
          { type: "line", label: canvas.dataset.labelRange80, data: series(forecast, "high80"),
            borderWidth: 0, pointRadius: 0, backgroundColor: band + "0.25)", fill: "+1", order: 1 },
          { type: "line", label: "", data: series(forecast, "low80"), borderWidth: 0,
            pointRadius: 0, fill: false, order: 1 },
          { type: "line", label: canvas.dataset.labelExpected, data: series(forecast, "expected"),
            borderColor: band + "1)", backgroundColor: band + "1)", order: 0 }
        ]
      },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        interaction: { mode: "index", intersect: false },
        plugins: {
          legend: { labels: { filter: function (item) { return item.text; } } },
          tooltip: {
            filter: function (item) { return item.dataset.label && item.raw !== null; },
            callbacks: { label: function (c) { return c.dataset.label + ": " + money.format(c.raw); } }
          }
        },
        scales: { y: { beginAtZero: true, ticks: { callback: function (v) { return money.format(v); } } } }
      }
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
})();
