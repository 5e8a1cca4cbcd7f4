// The Metrics page's live refresh: every 10 s each panel is fetched again from the server (which draws it)
// and swapped in place, so the graphs follow the data without a page reload or a charting library.
(function () {
  const panels = document.querySelector("div.panels");
  if (!panels) return;
  const range = panels.dataset.range || "1h";
  async function refresh() {
    for (const fig of document.querySelectorAll("figure.panel")) {
      const q = new URLSearchParams({ range: range, series: fig.dataset.series });
      if (fig.dataset.stat) q.set("stat", fig.dataset.stat);
      if (fig.dataset.labels) q.set("labels", fig.dataset.labels);
      try {
        const res = await fetch("/graphs?" + q.toString(), { credentials: "same-origin" });
        if (!res.ok) continue;
        const html = await res.text();
        const tpl = document.createElement("template");
        tpl.innerHTML = html.trim();
        const next = tpl.content.querySelector("figure.panel");
        if (next) {
          // Keep the dashboard's title for the panel.
          const title = fig.querySelector("figcaption strong");
          const nextTitle = next.querySelector("figcaption strong");
          if (title && nextTitle) nextTitle.textContent = title.textContent;
          fig.replaceWith(next);
        }
      } catch (e) {
        // The server is away: try again next time.
      }
    }
  }
  setInterval(refresh, 10000);
})();
