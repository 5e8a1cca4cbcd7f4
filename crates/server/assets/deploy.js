// A deploy's page: its output appears as it is written, until the deploy ends. Text only, never markup.
(function () {
  "use strict";
  var pre = document.getElementById("deploy-log");
  if (!pre) return;
  var status = document.getElementById("deploy-status");
  var offset = parseInt(pre.dataset.offset || "0", 10);
  function poll() {
    fetch(pre.dataset.log + "?offset=" + offset, { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (v) {
        (v.lines || []).forEach(function (l) { pre.appendChild(document.createTextNode(l + "\n")); });
        offset = v.next_offset;
        if (status) status.textContent = v.status;
        if (v.status === "running" || (v.lines || []).length > 0) setTimeout(poll, 400);
      })
      .catch(function () { setTimeout(poll, 2000); });
  }
  if (pre.dataset.status === "running") poll();
})();
