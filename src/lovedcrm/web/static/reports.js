/* Report charts (Chart.js, vendored). The numbers come from the page's JSON block
   (#report-data: each report's table, the same rows the HTML tables and the CSV show); each
   <canvas data-chart> names its report and which columns are the labels and the values. One
   accent color plus greys; no animation; the tables stay the source for screen readers. */
(function () {
  "use strict";

  function accent() {
    var value = getComputedStyle(document.documentElement).getPropertyValue("--accent");
    return (value || "#6366f1").trim() || "#6366f1";
  }

  function draw() {
    var block = document.getElementById("report-data");
    if (!block || typeof window.Chart === "undefined") return;
    var data;
    try {
      data = JSON.parse(block.textContent || "{}");
    } catch (e) {
      return;
    }
    var color = accent();
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var table = data[canvas.dataset.chart];
      if (!table || !table.rows || !table.rows.length) return;
      var labelCol = parseInt(canvas.dataset.labelCol || "0", 10);
      var valueCol = parseInt(canvas.dataset.valueCol || "1", 10);
      var lang = document.documentElement.lang || "pt-BR";
      var labels = table.rows.map(function (row) {
        var label = String(row[labelCol] || "—");
        if (/^\d{4}-\d{2}-\d{2}$/.test(label)) {  // a day: 06/12 in pt-BR, 12/06 in English
          var d = new Date(label + "T12:00:00");
          label = d.toLocaleDateString(lang, { day: "2-digit", month: "2-digit" });
        }
        return label;
      });
      var values = table.rows.map(function (row) {
        var v = parseFloat(row[valueCol]);
        return isFinite(v) ? v : 0;
      });
      var kind = canvas.dataset.kind === "line" ? "line" : "bar";
      var narrow = window.matchMedia("(max-width: 600px)").matches;
      new window.Chart(canvas, {
        type: kind,
        data: {
          labels: labels,
          datasets: [{
            label: canvas.dataset.series || "",
            data: values,
            backgroundColor: color,
            borderColor: color,
            pointRadius: kind === "line" ? 0 : undefined,
            tension: 0.2,
          }],
        },
        options: {
          animation: false,
          responsive: true,
          maintainAspectRatio: false,
          indexAxis: kind === "bar" && narrow ? "y" : "x",
          plugins: { legend: { display: false } },
          scales: {
            x: { ticks: { autoSkip: true, maxRotation: 0, maxTicksLimit: narrow ? 6 : 12 }, grid: { display: false } },
            y: { beginAtZero: true, ticks: { precision: 0 } },
          },
        },
      });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
