// Conductor console: live updates. Polls one cheap endpoint (the audit head and the
// number of held calls) and, when either moves, re-renders the page's main region from
// the server (the same escaped HTML a reload would give). No inline script anywhere:
// the CSP forbids it.
(function () {
  "use strict";
  var base = "/console";
  var dot = document.getElementById("live");
  var count = document.getElementById("pending-count");
  if (!dot) { return; } // the login page: nothing to watch
  var last = null;
  var busy = false;

  function editing() {
    var a = document.activeElement;
    if (!a) { return false; }
    var t = a.tagName;
    return (t === "INPUT" || t === "TEXTAREA" || t === "SELECT") && a.value !== "" && a.type !== "hidden";
  }

  function refresh() {
    if (editing()) { return; }
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("main");
        var main = document.getElementById("main");
        if (fresh && main && !editing()) { main.replaceChildren.apply(main, Array.prototype.slice.call(fresh.childNodes)); }
      })
      .catch(function () {});
  }

  function poll() {
    if (busy) { return; }
    busy = true;
    fetch(base + "/api/live", { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) {
        if (r.status === 401) { window.location.href = base + "/login"; return null; }
        return r.ok ? r.json() : null;
      })
      .then(function (v) {
        busy = false;
        if (!v) { dot.classList.remove("on"); return; }
        dot.classList.add("on");
        if (count) {
          if (typeof v.pending === "number" && v.pending > 0) { count.textContent = String(v.pending); count.hidden = false; }
          else { count.hidden = true; }
        }
        var key = v.head + "/" + v.pending;
        if (last !== null && key !== last) { refresh(); }
        last = key;
      })
      .catch(function () { busy = false; dot.classList.remove("on"); });
  }

  poll();
  window.setInterval(poll, 1500);
})();
