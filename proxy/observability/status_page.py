"""`/`: the status page, one self-contained HTML document (no external assets).

It draws `/status` (fetched again every 2 s): each cluster with the routes that lead to it, and
each endpoint's state (and whether it is ejected), requests, new sessions and estimated active
sessions as bars scaled to the busiest endpoint of the cluster. Names from the routing table
reach the page only as text nodes.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sticky-proxy status</title>
<style>
  :root { --fg: #1d2430; --muted: #667085; --line: #e4e7ec; --ready: #12b76a;
          --draining: #f79009; --ejected: #f04438;
          --requests: #2e90fa; --new: #9e77ed; --active: #ee46bc; }
  body { font: 14px/1.4 system-ui, sans-serif; color: var(--fg); margin: 24px;
         background: #f9fafb; }
  h1 { font-size: 20px; margin: 0 0 4px; }
  #meta { color: var(--muted); margin-bottom: 16px; }
  .cluster { background: #fff; border: 1px solid var(--line); border-radius: 8px;
             padding: 12px 16px; margin-bottom: 16px; }
  .cluster h2 { font-size: 16px; margin: 0; }
  .affinity { color: var(--muted); font-weight: normal; font-size: 13px; margin-left: 8px; }
  .routes { color: var(--muted); margin: 4px 0 8px; padding: 0; list-style: none; }
  .routes code { color: var(--fg); }
  table { border-collapse: collapse; width: 100%; }
  th { text-align: left; color: var(--muted); font-weight: 500; font-size: 12px; padding: 4px; }
  td { padding: 6px 4px; border-top: 1px solid var(--line); vertical-align: middle; }
  td.name { width: 22%; } td.state { width: 8%; }
  .address { color: var(--muted); font-size: 12px; }
  .badge { border-radius: 10px; padding: 1px 8px; font-size: 12px; color: #fff; }
  .badge.ready { background: var(--ready); } .badge.draining { background: var(--draining); }
  .badge.ejected { background: var(--ejected); margin-left: 4px; }
  .track { position: relative; height: 18px; background: #f2f4f7; border-radius: 4px;
           min-width: 80px; }
  .bar { height: 100%; border-radius: 4px; min-width: 2px; }
  .bar.requests { background: var(--requests); } .bar.new_sessions { background: var(--new); }
  .bar.active_sessions { background: var(--active); }
  .value { position: absolute; left: 6px; top: 0; font-size: 12px; line-height: 18px; }
  .empty { color: var(--muted); }
</style>
</head>
<body>
<h1>sticky-proxy</h1>
<div id="meta">loading&hellip;</div>
<div id="clusters"></div>
<script>
"use strict";
const COLUMNS = [["requests", "requests"], ["new_sessions", "new sessions"],
                 ["active_sessions", "active sessions (est.)"]];

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function bar(column, value, max) {
  const track = el("div", "track");
  const fill = el("div", "bar " + column);
  fill.style.width = (max > 0 ? (100 * value / max) : 0) + "%";
  if (value === 0) fill.style.minWidth = "0";  // a sliver only for what is there
  track.append(fill, el("span", "value", String(value)));
  return track;
}

function drawCluster(cluster, routes) {
  const box = el("section", "cluster");
  box.dataset.cluster = cluster.name;
  const title = el("h2", "", cluster.name);
  title.append(el("span", "affinity", cluster.affinity
    ? cluster.affinity + " affinity, cookie " + cluster.cookie
    : "no affinity, " + cluster.balancing));
  box.append(title);
  const list = el("ul", "routes");
  for (const route of routes) {
    const item = el("li", "", "route ");
    item.append(el("code", "", route.host + route.path));
    item.append(" (" + route.type + (route.ingress ? ", " + route.ingress : "") + ")");
    if (route.canary) item.append(", canary " + route.canary);
    list.append(item);
  }
  box.append(list);
  if (cluster.endpoints.length === 0) {
    box.append(el("div", "empty", "no endpoints"));
    return box;
  }
  const table = el("table");
  const head = el("tr");
  for (const text of ["endpoint", "state", ...COLUMNS.map(c => c[1])]) {
    head.append(el("th", "", text));
  }
  table.append(head);
  const max = {};
  for (const [column] of COLUMNS) max[column] = Math.max(...cluster.endpoints.map(e => e[column]));
  for (const endpoint of cluster.endpoints) {
    const row = el("tr", "endpoint");
    row.dataset.endpoint = endpoint.endpoint;
    const name = el("td", "name", endpoint.endpoint);
    if (endpoint.pod) name.append(el("div", "address", endpoint.address));
    const state = el("td", "state");
    state.append(el("span", "badge " + endpoint.state, endpoint.state));
    if (endpoint.ejected > 0) state.append(el("span", "badge ejected", "ejected"));
    row.append(name, state);
    for (const [column] of COLUMNS) {
      const cell = el("td", column);
      cell.append(bar(column, endpoint[column], max[column]));
      row.append(cell);
    }
    table.append(row);
  }
  box.append(table);
  return box;
}

async function refresh() {
  const meta = document.getElementById("meta");
  try {
    const response = await fetch("status", {cache: "no-store"});
    const status = await response.json();
    const clusters = status.clusters.map(c =>
      drawCluster(c, status.routes.filter(r => r.cluster === c.name)));
    document.getElementById("clusters").replaceChildren(...clusters);
    meta.textContent = (status.ready ? "" : "not ready yet \\u00b7 ") + "updated " +
      new Date().toLocaleTimeString() + " \\u00b7 refreshes every 2 s";
  } catch (error) {
    meta.textContent = "cannot reach the proxy: " + error;
  }
}

refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
"""
