// The Timeline page's live updates: new events from the server-sent stream appear at the top, without reload.
// Rows are built with textContent only, so nothing an event says can become markup.
(function () {
  "use strict";
  var table = document.getElementById("timeline");
  if (!table || !table.dataset.stream) return;
  var tbody = document.getElementById("events");
  var status = document.getElementById("live-status");

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function human(iso) {
    var d = new Date(iso);
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " +
      pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds());
  }
  function cell(cls) { var td = document.createElement("td"); td.className = cls; return td; }
  function link(href, text, cls) {
    var a = document.createElement("a"); a.href = href; a.textContent = text; if (cls) a.className = cls; return a;
  }
  function row(e) {
    var tr = document.createElement("tr");
    tr.className = "new";
    tr.dataset.id = e.id;
    var at = cell("at"); var t = document.createElement("time"); t.dateTime = e.at; t.textContent = human(e.at); at.appendChild(t);
    var who = cell("actor"); who.textContent = e.actor.name;
    var via = document.createElement("span"); via.className = "via"; via.textContent = " via " + e.actor.via; who.appendChild(via);
    var kind = cell("kind"); kind.appendChild(link("/timeline?kind=" + encodeURIComponent(e.kind), e.kind));
    var subject = cell("subject");
    if (e.subject) subject.appendChild(link("/timeline?subject=" + encodeURIComponent(e.subject), e.subject));
    var summary = cell("summary"); summary.textContent = e.summary;
    (e.links || []).forEach(function (l) {
      if (/^(\/(?!\/)|https?:\/\/)/.test(l.href)) { summary.appendChild(document.createTextNode(" ")); summary.appendChild(link(l.href, l.rel, "link")); }
    });
    [at, who, kind, subject, summary].forEach(function (td) { tr.appendChild(td); });
    setTimeout(function () { tr.className = ""; }, 4000);
    return tr;
  }

  var source = new EventSource(table.dataset.stream);
  source.onopen = function () { if (status) status.textContent = "Live: new events appear at the top."; };
  source.onerror = function () { if (status) status.textContent = "Reconnecting to the live stream…"; };
  source.onmessage = function (m) {
    var e = JSON.parse(m.data);
    if (tbody.querySelector('tr[data-id="' + e.id + '"]')) return;
    var empty = document.getElementById("empty");
    if (empty) empty.remove();
    tbody.insertBefore(row(e), tbody.firstChild);
  };
})();
