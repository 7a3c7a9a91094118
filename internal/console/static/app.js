// The console's only script, and only an enhancement: every page works
// without it. It refreshes the overview by a periodic fetch of /live, and
// asks before the buttons that carry data-confirm submit.
"use strict";
(function () {
  var live = document.getElementById("live");
  if (live) {
    var every = parseInt(live.getAttribute("data-refresh"), 10);
    if (every > 0) {
      var busy = false;
      var refresh = function () {
        if (busy || document.hidden) { return; }
        busy = true;
        fetch("/live", { credentials: "same-origin", cache: "no-store", headers: { "Accept": "text/html" } })
          .then(function (r) {
            if (r.status === 401) { window.location.reload(); return null; }
            if (!r.ok) { return null; }
            return r.text();
          })
          .then(function (html) {
            if (html !== null && html !== undefined) {
              // Server-rendered and escaped by html/template, from this
              // origin only (CSP connect-src 'self'); no script runs in it.
              live.innerHTML = html;
              live.setAttribute("data-refreshed", String(Date.now()));
            }
          })
          .catch(function () {})
          .then(function () { busy = false; });
      };
      setInterval(refresh, every * 1000);
      document.addEventListener("visibilitychange", function () { if (!document.hidden) { refresh(); } });
    }
  }
  document.addEventListener("click", function (ev) {
    var t = ev.target;
    if (!(t instanceof Element)) { return; }
    var b = t.closest("button[data-confirm]");
    if (b && !window.confirm(b.getAttribute("data-confirm"))) { ev.preventDefault(); }
  });
})();
