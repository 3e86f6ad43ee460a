/* IA SOLARIS admin panel: toasts, mobile menu, confirmations, charts and the live feed (SSE).
   No inline scripts anywhere (the CSP forbids them): pages pass data in JSON <script> blocks. */
(function () {
  "use strict";

  function readJson(id) {
    var el = document.getElementById(id);
    if (!el) return null;
    try { return JSON.parse(el.textContent); } catch (e) { return null; }
  }

  var I18N = readJson("panel-i18n") || { toasts: {}, lang: "pt-BR" };
  var LOCALE = I18N.lang;
  var numberFmt = new Intl.NumberFormat(LOCALE, { maximumFractionDigits: 0 });
  var moneyFmt = new Intl.NumberFormat(LOCALE, { style: "currency", currency: "USD", minimumFractionDigits: 4, maximumFractionDigits: 4 });
  var PALETTE = ["#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#06b6d4", "#ec4899", "#84cc16", "#f97316", "#64748b"];

  /* -- toasts --------------------------------------------------------------------------- */
  var toastBox = document.getElementById("toasts");
  function toast(text, kind) {
    if (!toastBox) return;
    var el = document.createElement("div");
    el.className = "toast toast-" + (kind || "error");
    el.setAttribute("role", kind === "error" ? "alert" : "status");
    el.textContent = text;
    toastBox.appendChild(el);
    armToast(el);
  }
  function armToast(el) {
    var close = document.createElement("button");
    close.type = "button";
    close.className = "toast-close";
    close.setAttribute("aria-label", "×");
    close.textContent = "×";
    close.addEventListener("click", function () { el.remove(); });
    el.appendChild(close);
    setTimeout(function () { el.classList.add("toast-leaving"); setTimeout(function () { el.remove(); }, 400); }, 7000);
  }
  function statusToast(status) {
    var t = I18N.toasts;
    toast(t[String(status)] || (status >= 500 ? t["500"] : t.unexpected), "error");
  }
  Array.prototype.forEach.call(document.querySelectorAll("#toasts .toast"), armToast);
  window.solarisToast = toast;

  /* -- navigation, confirmations, small conveniences -------------------------------------- */
  var menuButton = document.getElementById("menu-toggle");
  var sidebar = document.getElementById("sidebar");
  if (menuButton && sidebar) {
    menuButton.addEventListener("click", function () {
      var open = sidebar.classList.toggle("open");
      menuButton.setAttribute("aria-expanded", open ? "true" : "false");
      if (open) { var first = sidebar.querySelector("a"); if (first) first.focus(); }
    });
    document.addEventListener("keydown", function (e) {
      if (e.key === "Escape" && sidebar.classList.contains("open")) {
        sidebar.classList.remove("open");
        menuButton.setAttribute("aria-expanded", "false");
        menuButton.focus();
      }
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll(".auto-submit"), function (el) {
    el.addEventListener("change", function () { el.form.submit(); });
  });
  Array.prototype.forEach.call(document.querySelectorAll(".confirm"), function (el) {
    el.addEventListener("click", function (e) {
      if (!window.confirm(el.getAttribute("data-confirm"))) e.preventDefault();
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll(".copy-button"), function (el) {
    el.addEventListener("click", function () {
      var text = document.getElementById(el.getAttribute("data-copy")).textContent;
      if (navigator.clipboard) navigator.clipboard.writeText(text).then(function () { toast("✓", "success"); });
    });
  });

  /* -- charts ----------------------------------------------------------------------------- */
  var charts = {};
  window.solarisCharts = charts;
  function shortDate(iso) {
    var d = new Date(iso + "T12:00:00");
    return d.toLocaleDateString(LOCALE, { day: "2-digit", month: "2-digit" });
  }
  function makeChart(id, config) {
    var canvas = document.getElementById(id);
    if (!canvas || typeof Chart === "undefined") return null;
    config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: { duration: 300 },
      plugins: { legend: { labels: { boxWidth: 12 } } } }, config.options || {});
    charts[id] = new Chart(canvas, config);
    return charts[id];
  }
  function lineConfig(days, key, label, color) {
    return { type: "line", data: { labels: days.map(function (d) { return shortDate(d.date); }),
      datasets: [{ label: label, data: days.map(function (d) { return d[key]; }), borderColor: color,
        backgroundColor: color + "33", fill: true, tension: 0.3, pointRadius: 2 }] },
      options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true,
        ticks: { callback: function (v) { return numberFmt.format(v); } } } } } };
  }
  function doughnutConfig(items, labelKey, valueKey) {
    return { type: "doughnut", data: { labels: items.map(function (m) { return m[labelKey]; }),
      datasets: [{ data: items.map(function (m) { return m[valueKey]; }), backgroundColor: PALETTE }] },
      options: { plugins: { legend: { position: "bottom" } } } };
  }
  function alertsConfig(m) {
    return { type: "bar", data: { labels: [I18N.alert80, I18N.alert95, I18N.blocked],
      datasets: [{ data: [m.alertsSent.alert80, m.alertsSent.alert95, m.alertsSent.blocked],
        backgroundColor: ["#f59e0b", "#f97316", "#ef4444"], borderRadius: 6 }] },
      options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } } };
  }

  function drawDashboard(m) {
    makeChart("chart-usage", lineConfig(m.usageByDay, "tokens", I18N.usage, "#2563eb"));
    makeChart("chart-models", doughnutConfig(m.topModels, "model", "usage"));
    makeChart("chart-alerts", alertsConfig(m));
  }
  function updateDashboard(m) {
    Array.prototype.forEach.call(document.querySelectorAll("[data-metric]"), function (el) {
      var value = m[el.getAttribute("data-metric")];
      if (value === undefined) return;
      var text = el.getAttribute("data-format") === "money" ? moneyFmt.format(value) : numberFmt.format(value);
      if (el.textContent !== text) { el.textContent = text; el.classList.remove("bump"); void el.offsetWidth; el.classList.add("bump"); }
    });
    function replace(id, config) {
      var chart = charts[id];
      if (!chart) { makeChart(id, config); return; }
      chart.data.labels = config.data.labels;
      chart.data.datasets[0].data = config.data.datasets[0].data;
      chart.update();
    }
    replace("chart-usage", lineConfig(m.usageByDay, "tokens", I18N.usage, "#2563eb"));
    replace("chart-models", doughnutConfig(m.topModels, "model", "usage"));
    replace("chart-alerts", alertsConfig(m));
    Object.keys(m.systemHealth || {}).forEach(function (part) {
      var li = document.querySelector('[data-health="' + part + '"]');
      if (!li) return;
      li.querySelector(".dot").className = "dot dot-" + m.systemHealth[part];
    });
    var note = document.querySelector(".empty-note");
    if (note && m.topModels && m.topModels.length) note.remove();
    document.body.setAttribute("data-refreshed", String(Date.now()));
  }

  var refreshTimer = null;
  function refreshDashboard() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(function () {
      refreshTimer = null;
      fetch("/admin/dashboard.json" + window.location.search, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) {
          if (r.status === 401) { window.location.href = "/admin/login?expired=1&next=" + encodeURIComponent(location.pathname); return null; }
          if (!r.ok) { statusToast(r.status); return null; }
          return r.json();
        })
        .then(function (m) { if (m) updateDashboard(m); })
        .catch(function () { toast(I18N.toasts.connection, "error"); });
    }, 500);
  }

  function addFeedItem(data) {
    var feed = document.getElementById("feed");
    if (!feed) return;
    if (data.requestId && feed.querySelector('[data-request="' + data.requestId + '"]')) return;  // at-least-once delivery
    var empty = feed.querySelector(".feed-empty");
    if (empty) empty.remove();
    var li = document.createElement("li");
    if (data.requestId) li.setAttribute("data-request", data.requestId);
    var when = new Date(data.createdAt || Date.now()).toLocaleTimeString(LOCALE);
    li.textContent = when + " · " + (data.userName || data.userEmail || "#" + data.userId) + " · " + data.model + " · " + numberFmt.format(data.totalTokens || 0) + " " + I18N.usage.toLowerCase();
    feed.insertBefore(li, feed.firstChild);
    while (feed.children.length > 12) feed.removeChild(feed.lastChild);
  }

  var page = document.body.getAttribute("data-page");
  document.addEventListener("DOMContentLoaded", function () {
    var dash = readJson("dashboard-data");
    if (dash) drawDashboard(dash);
    var ua = readJson("user-analytics");
    if (ua) {
      makeChart("chart-user-daily", lineConfig(ua.dailyUsage, "tokens", I18N.usage, "#2563eb"));
      makeChart("chart-user-models", doughnutConfig(ua.modelUsage, "model", "tokens"));
    }
    var an = readJson("analytics-data");
    if (an) {
      var daily = lineConfig(an.usageByDay, "tokens", I18N.usage, "#2563eb");
      daily.data.datasets.push({ label: I18N.cost, data: an.usageByDay.map(function (d) { return d.cost; }), borderColor: "#f59e0b",
        backgroundColor: "#f59e0b33", yAxisID: "y1", tension: 0.3, pointRadius: 2 });
      daily.options.plugins.legend.display = true;
      daily.options.scales.y1 = { beginAtZero: true, position: "right", grid: { drawOnChartArea: false } };
      makeChart("chart-analytics-daily", daily);
      makeChart("chart-analytics-models", doughnutConfig(an.topModels, "model", "usage"));
      var users = lineConfig(an.usageByDay, "users", I18N.requests, "#10b981");
      users.type = "bar";
      makeChart("chart-analytics-users", users);
    }
    connectFeed();
  });

  /* -- the live feed ------------------------------------------------------------------------ */
  var live = document.getElementById("live-status");
  function setLive(on) {
    if (!live) return;
    live.textContent = on ? I18N.live : I18N.offline;
    live.classList.toggle("on", on);
  }
  var lostShown = false;
  function connectFeed() {
    if (!document.body.classList.contains("signed-in") || typeof EventSource === "undefined") return;
    var source = new EventSource("/admin/events");
    window.solarisFeed = source;
    source.onopen = function () { setLive(true); lostShown = false; document.body.setAttribute("data-live", "1"); };
    source.onerror = function () {
      setLive(false);
      document.body.setAttribute("data-live", "0");
      fetch("/admin/session", { credentials: "same-origin" }).then(function (r) {
        if (r.status === 401) { source.close(); window.location.href = "/admin/login?expired=1&next=" + encodeURIComponent(location.pathname); }
      }).catch(function () {
        if (!lostShown) { toast(I18N.toasts.connection, "error"); lostShown = true; }
      });
    };
    function parse(e) { try { return JSON.parse(e.data); } catch (err) { return null; } }
    source.addEventListener("usage_update", function (e) {
      var msg = parse(e);
      if (!msg) return;
      document.body.setAttribute("data-last-usage", msg.data.requestId || "");
      if (page === "dashboard") { addFeedItem(msg.data); refreshDashboard(); }
    });
    source.addEventListener("alert", function (e) {
      var msg = parse(e);
      if (!msg || !msg.data) return;
      if (msg.data.status === "acknowledged") return;
      toast(I18N.newAlert + ": " + ((msg.data.summaries || {})[LOCALE] || msg.data.title || msg.data.type), msg.data.severity === "critical" || msg.data.severity === "error" ? "error" : "warning");
      if (page === "dashboard") refreshDashboard();
    });
    source.addEventListener("user_update", function () { if (page === "dashboard") refreshDashboard(); });
    source.addEventListener("system_status", function () { if (page === "dashboard") refreshDashboard(); });
    source.addEventListener("real_time_metrics", function () { if (page === "dashboard") refreshDashboard(); });
  }
})();
