// stagegate status page: keeps the page current without a reload. Every 2 s it reads
// /status; the header figures are written in place (as text, never as HTML), and when the
// newest evaluations, audit rows or models seen differ from those the page was drawn with
// (the body's data-stamp) the page is fetched again and its <main> swapped. Nothing is
// requested from anywhere else.
(function () {
  "use strict";
  var stamp = document.body.getAttribute("data-stamp");
  var busy = false;

  function text(id, value) {
    var el = document.getElementById(id);
    if (el) el.textContent = value;
    return el;
  }
  function pad(n) { return n < 10 ? "0" + n : "" + n; }
  function uptime(s) {
    var h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, sec = s % 60;
    if (h > 0) return h + "h " + pad(m) + "m " + pad(sec) + "s";
    if (m > 0) return m + "m " + pad(sec) + "s";
    return sec + "s";
  }
  function when(t) {
    return t ? t.slice(0, 10) + " " + t.slice(11, 19) + "Z" : "—";
  }
  // The same parts and format as the server's stamp (layout::stamp).
  function stampOf(s) {
    var c = s.changes || {};
    return (s.recent || []).map(function (r) {
      return r.id + "." + r.status + "." + (r.action || "");
    }).join(",") + "|" + c.audit + "|" + c.registry;
  }

  function header(s) {
    var paused = s.mode === "paused";
    var mode = text("h-mode", paused ? "paused" : "running");
    if (mode) mode.classList.toggle("paused", paused);
    var bp = document.getElementById("b-paused");
    if (bp) bp.hidden = !paused;
    var up = s.mlflow && s.mlflow.reachable;
    var ml = text("h-mlflow", up ? "reachable" : "unreachable");
    if (ml) ml.classList.toggle("down", !up);
    var bm = document.getElementById("b-mlflow");
    if (bm) bm.hidden = !!up;
    text("b-mlflow-why", (s.mlflow && s.mlflow.last_error) || "not reached yet");
    text("h-uptime", uptime(s.uptime_s));
    text("h-poll-last", when(s.poll && s.poll.last_started));
    text("h-poll-next", when(s.poll && s.poll.next));
    text("h-webhooks", s.webhooks && s.webhooks.enabled ? "on" : "off");
    var q = s.queue || {};
    text("h-queue", q.depth + " waiting, " + q.in_flight + " running, " + q.delayed + " scheduled re-checks");
  }

  function refresh() {
    return fetch(location.href, { cache: "no-store", credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.querySelector("main"), old = document.querySelector("main");
        if (fresh && old) old.replaceWith(document.adoptNode(fresh));
        stamp = doc.body.getAttribute("data-stamp");
      });
  }

  function tick() {
    if (busy) return;
    busy = true;
    fetch("/status", { cache: "no-store", credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (s) {
        header(s);
        text("h-live", "live");
        if (stampOf(s) !== stamp) return refresh();
      })
      .catch(function () { text("h-live", "daemon not answering"); })
      .then(function () { busy = false; });
  }

  setInterval(tick, 2000);
})();
