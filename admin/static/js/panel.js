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
  // On a phone a table's rows become small cards (panel.css); each cell is labelled there with its
  // column's heading. The first column (who or when) needs no label; a heading only for screen
  // readers (the actions column) gives none.
  function labelCells(root) {
    Array.prototype.forEach.call(root.querySelectorAll("table.table"), function (table) {
      var heads = Array.prototype.map.call(table.querySelectorAll("thead th"), function (th) {
        return th.querySelector(".sr-only") ? "" : th.textContent.trim();
      });
      Array.prototype.forEach.call(table.querySelectorAll("tbody tr"), function (tr) {
        Array.prototype.forEach.call(tr.children, function (td, i) {
          if (i > 0 && heads[i] && !td.hasAttribute("colspan")) td.setAttribute("data-label", heads[i]);
        });
      });
    });
  }

  function arm(root) {  // the page's controls, also in a part of it re-rendered live
    labelCells(root);
    Array.prototype.forEach.call(root.querySelectorAll(".auto-submit"), function (el) {
      el.addEventListener("change", function () { el.form.submit(); });
    });
    Array.prototype.forEach.call(root.querySelectorAll(".confirm"), function (el) {
      el.addEventListener("click", function (e) {
        if (!window.confirm(el.getAttribute("data-confirm"))) e.preventDefault();
      });
    });
    Array.prototype.forEach.call(root.querySelectorAll(".copy-button"), function (el) {
      el.addEventListener("click", function () {
        var text = document.getElementById(el.getAttribute("data-copy")).textContent;
        if (navigator.clipboard) navigator.clipboard.writeText(text).then(function () { toast("✓", "success"); });
      });
    });
  }
  arm(document);

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
    // an hour's point carries its label (in the server's zone); a day's is its date
    return { type: "line", data: { labels: days.map(function (d) { return d.label || shortDate(d.date); }),
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
    makeChart("chart-usage", lineConfig(m.usageByHour || m.usageByDay, "tokens", I18N.usage, "#2563eb"));
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
    replace("chart-usage", lineConfig(m.usageByHour || m.usageByDay, "tokens", I18N.usage, "#2563eb"));
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
    var when = new Date(data.createdAt || Date.now()).toLocaleTimeString(LOCALE, { timeZone: I18N.timezone });
    var who = data.userName || data.userEmail || ("#" + data.userId);
    li.textContent = when + " · " + who + " · " + data.model + " · " + numberFmt.format(data.totalTokens || 0) + " " + I18N.usage.toLowerCase();
    feed.insertBefore(li, feed.firstChild);
    while (feed.children.length > 12) feed.removeChild(feed.lastChild);
  }

  var page = document.body.getAttribute("data-page");
  var pageLoaded = Date.now();
  document.addEventListener("DOMContentLoaded", function () {
    var dash = readJson("dashboard-data");
    if (dash) drawDashboard(dash);
    var ua = readJson("user-analytics");
    if (ua) {
      makeChart("chart-user-daily", lineConfig(ua.hourlyUsage || ua.dailyUsage, "tokens", I18N.usage, "#2563eb"));
      makeChart("chart-user-models", doughnutConfig(ua.modelUsage, "model", "tokens"));
    }
    var an = readJson("analytics-data");
    if (an) {
      var series = an.usageByHour || an.usageByDay;  // the 24-hour period by hour
      var daily = lineConfig(series, "tokens", I18N.usage, "#2563eb");
      daily.data.datasets.push({ label: I18N.cost, data: series.map(function (d) { return d.cost; }), borderColor: "#f59e0b",
        backgroundColor: "#f59e0b33", yAxisID: "y1", tension: 0.3, pointRadius: 2 });
      daily.options.plugins.legend.display = true;
      daily.options.scales.y1 = { beginAtZero: true, position: "right", grid: { drawOnChartArea: false } };
      makeChart("chart-analytics-daily", daily);
      makeChart("chart-analytics-models", doughnutConfig(an.topModels, "model", "usage"));
      var users = lineConfig(series, "users", I18N.requests, "#10b981");
      users.type = "bar";
      makeChart("chart-analytics-users", users);
    }
    connectFeed();
  });

  /* -- live parts of a page ------------------------------------------------------------------
     An element with `data-live-region` (and an id) is re-rendered by the server when an event it
     lists in `data-live-on` arrives: the page is fetched again and that element swapped for its new
     version, so names, numbers, dates and words are exactly what a reload would show. With
     `data-live-user`, only events about that user count; a usage event counts for a list only when
     one of its rows (`data-user-id`) is that user's. */
  var regionTimer = null;
  function eventUser(data) {
    if (!data) return null;
    if (data.userId !== undefined && data.userId !== null) return String(data.userId);
    if (data.user && data.user.id !== undefined) return String(data.user.id);
    return null;
  }
  function regionWants(el, type, data) {
    if ((" " + el.getAttribute("data-live-on") + " ").indexOf(" " + type + " ") < 0) return false;
    var user = eventUser(data);
    var only = el.getAttribute("data-live-user");
    if (only) return user === only;
    if (type === "usage_update") return user !== null && !!el.querySelector('[data-user-id="' + user + '"]');
    return true;
  }
  function refreshRegions() {
    if (regionTimer) return;
    regionTimer = setTimeout(function () {
      regionTimer = null;
      fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (r) { return r.ok && !r.redirected ? r.text() : null; })
        .then(function (html) {
          if (!html) return;
          var fresh = new DOMParser().parseFromString(html, "text/html");
          Array.prototype.forEach.call(document.querySelectorAll("[data-live-region]"), function (el) {
            var next = fresh.getElementById(el.id);
            if (!next || next.innerHTML === el.innerHTML) return;
            var copy = document.importNode(next, true);
            el.replaceWith(copy);
            arm(copy);
            copy.classList.add("live-changed");
          });
          document.body.setAttribute("data-regions-refreshed", String(Date.now()));
        })
        .catch(function () { toast(I18N.toasts.connection, "error"); });
    }, 800);  // a burst of events costs one fetch
  }
  function liveEvent(type, data) {
    var wanted = Array.prototype.some.call(document.querySelectorAll("[data-live-region]"), function (el) {
      return regionWants(el, type, data);
    });
    if (wanted) refreshRegions();
  }

  /* -- real-time metrics: each process reports its own traffic every few seconds ------------- */
  var rates = {};
  function showRates(data) {
    var box = document.getElementById("realtime");
    if (!box || !data) return;
    rates[data.processId || "?"] = { at: Date.now(), r: data.requestsPerSecond || 0, t: data.tokensPerSecond || 0, s: data.activeStreams || 0 };
    var sum = { r: 0, t: 0, s: 0 };
    Object.keys(rates).forEach(function (id) {
      if (Date.now() - rates[id].at > 15000) { delete rates[id]; return; }  // a process that went quiet
      sum.r += rates[id].r; sum.t += rates[id].t; sum.s += rates[id].s;
    });
    var decimal = new Intl.NumberFormat(LOCALE, { maximumFractionDigits: 1 });
    box.querySelector("[data-rate=requests]").textContent = decimal.format(sum.r);
    box.querySelector("[data-rate=tokens]").textContent = decimal.format(sum.t);
    box.querySelector("[data-rate=streams]").textContent = numberFmt.format(sum.s);
  }

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
      liveEvent("usage_update", msg.data);
    });
    source.addEventListener("alert", function (e) {
      var msg = parse(e);
      if (!msg || !msg.data) return;
      liveEvent("alert", msg.data);
      if (msg.data.status === "acknowledged") return;
      toast(I18N.newAlert + ": " + ((msg.data.summaries || {})[LOCALE] || msg.data.title || msg.data.type), msg.data.severity === "critical" || msg.data.severity === "error" ? "error" : "warning");
      if (page === "dashboard") refreshDashboard();
    });
    source.addEventListener("user_update", function (e) {
      var msg = parse(e);
      if (page === "dashboard") refreshDashboard();
      if (msg) liveEvent("user_update", msg.data);
    });
    source.addEventListener("system_status", function () { if (page === "dashboard") refreshDashboard(); });
    source.addEventListener("real_time_metrics", function (e) {
      var msg = parse(e);
      if (msg) showRates(msg.data);
      // The figures follow events; health has none, so it is read again every half minute.
      var last = Number(document.body.getAttribute("data-refreshed") || pageLoaded);
      if (page === "dashboard" && Date.now() - last > 30000) refreshDashboard();
    });
  }
})();
