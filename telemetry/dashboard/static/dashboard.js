/* llm-telemetry dashboard: a value readout under the cursor, and a quiet refresh of <main>.
   The charts are drawn by the server (inline SVG); nothing here is needed to see them. */
(function () {
  "use strict";

  function fmt(v, kind) {
    if (v === null || v === undefined || isNaN(v)) return "-";
    if (kind === "pct") return (100 * v).toFixed(1) + "%";
    if (kind === "usd") {
      if (Math.abs(v) >= 1) return "$" + v.toFixed(2);
      if (v === 0) return "$0";
      var digits = Math.max(0, 2 - Math.floor(Math.log10(Math.abs(v))));
      return "$" + v.toFixed(digits);
    }
    if (kind === "ms") return Math.abs(v) >= 1000 ? (v / 1000).toFixed(2) + " s" : Math.round(v) + " ms";
    return Math.abs(v) >= 10000 ? Math.round(v / 1000) + "k" : (Math.round(v * 10) / 10).toLocaleString();
  }

  function when(t) {
    return new Date(t).toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }

  function nearest(values, t) {
    var best = null, bestD = Infinity;
    for (var i = 0; i < values.length; i++) {
      var d = Math.abs(values[i][0] - t);
      if (d < bestD) { bestD = d; best = values[i]; }
    }
    return best;
  }

  function bind(root) {
    var figures = root.querySelectorAll("figure.chart[data-t0][data-fmt]");
    Array.prototype.forEach.call(figures, function (fig) {
      var svg = fig.querySelector("svg"), tip = fig.querySelector(".tip"), cursor = fig.querySelector(".cursor");
      if (!svg || !tip || !cursor) return;
      var t0 = +fig.dataset.t0, t1 = +fig.dataset.t1, px0 = +fig.dataset.px0, px1 = +fig.dataset.px1;
      var series = Array.prototype.map.call(fig.querySelectorAll("[data-values]"), function (el) {
        var cls = (el.getAttribute("class") || "").split(" ").filter(function (c) { return c !== "line" && c !== "stack"; });
        return { name: el.dataset.series, values: JSON.parse(el.dataset.values), cls: cls.join(" ") };
      });
      svg.addEventListener("mousemove", function (ev) {
        var m = svg.getScreenCTM();
        if (!m) return;
        var pt = svg.createSVGPoint();
        pt.x = ev.clientX; pt.y = ev.clientY;
        var x = pt.matrixTransform(m.inverse()).x;
        if (x < px0 || x > px1) { hide(); return; }
        var t = t0 + (x - px0) / (px1 - px0) * (t1 - t0);
        var rows = [], at = null;
        series.forEach(function (s) {
          var p = nearest(s.values, t);
          if (!p) return;
          at = at === null ? p[0] : at;
          rows.push('<div><i class="sw ' + s.cls + '"></i>' + escapeHtml(s.name) + ": <b>" + fmt(p[1], fig.dataset.fmt) + "</b></div>");
        });
        if (at === null) { hide(); return; }
        var cx = px0 + (at - t0) / (t1 - t0) * (px1 - px0);
        cursor.setAttribute("x1", cx); cursor.setAttribute("x2", cx); cursor.style.visibility = "visible";
        tip.innerHTML = "<div>" + when(at) + "</div>" + rows.join("");
        tip.hidden = false;
        var box = fig.getBoundingClientRect(), left = ev.clientX - box.left + 14;
        if (left + tip.offsetWidth > box.width) left = ev.clientX - box.left - tip.offsetWidth - 14;
        tip.style.left = Math.max(0, left) + "px";
      });
      svg.addEventListener("mouseleave", hide);
      function hide() { tip.hidden = true; cursor.style.visibility = "hidden"; }
    });
  }

  function escapeHtml(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function stamp(text, stale) {
    var el = document.getElementById("refreshed");
    if (el) el.textContent = text;
    var status = document.getElementById("status");
    if (status) status.classList.toggle("stale", !!stale);
  }

  function refresh() {
    if (document.hidden) return;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Dashboard-Refresh": "1" }, cache: "no-store" })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        var main = doc.getElementById("main"), status = doc.getElementById("status");
        if (!main) throw new Error("no content");
        document.getElementById("main").replaceWith(document.adoptNode(main));
        if (status) document.getElementById("status").replaceWith(document.adoptNode(status));
        bind(document.getElementById("main"));
        stamp("· refreshed " + new Date().toLocaleTimeString(), false);
        document.dispatchEvent(new CustomEvent("dashboard:refreshed"));
      })
      .catch(function (e) { stamp("· refresh failed (" + e.message + "), showing older data", true); });
  }

  function start() {
    bind(document);
    var every = +document.body.dataset.refresh || 0;
    if (every > 0) {
      stamp("· refreshes every " + every + " s", false);
      setInterval(refresh, every * 1000);
      document.addEventListener("visibilitychange", function () { if (!document.hidden) refresh(); });
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
