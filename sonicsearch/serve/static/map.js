// sonicsearch web page: the map of the collection (GET /map), each point playable, and
// the similarity path between two of its files (GET /files/{id}/path), drawn on the map
// and listed as result cards. Uses app.js's api(), status(), show(), similar() and esc().
"use strict";

const PALETTE = ["#3457d5", "#d1495b", "#2a9d5c", "#edae49", "#7b4bb7", "#00a6a6",
  "#e07a1f", "#8c564b", "#d45fa8", "#5c6b7a", "#9bb31f", "#1b6ca8"];
const mapState = { data: null, xy: [], colours: {}, pick: null, start: null, end: null,
  path: null };

async function loadMap() {
  let data;
  try {
    data = await api("/map");
  } catch (e) {
    $("#map-facts").textContent = `· ${e.message}`;
    return;
  }
  mapState.data = data;
  const ex = data.explained.map((e) => `${Math.round(100 * e)} %`).join(" + ");
  $("#map-facts").textContent = `· ${data.files} files · the two axes keep ${ex} of the ` +
    "style variance";
  drawMap();
}

function category(p) {
  const key = $("#map-colour").value;
  if (key === "folder") {
    const root = info && info.root ? info.root.replace(/\/$/, "") + "/" : "";
    return (root && (p.folder + "/").startsWith(root) ? (p.folder + "/").slice(root.length)
      : p.folder).replace(/\/$/, "") || "(top folder)";
  }
  return p.label || "(no label)";
}

function drawMap() {
  const data = mapState.data;
  const canvas = $("#map");
  if (!data || !canvas.clientWidth) return;
  const dpr = devicePixelRatio || 1;
  const w = (canvas.width = canvas.clientWidth * dpr);
  const h = (canvas.height = canvas.clientHeight * dpr);
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, w, h);
  const xs = data.points.map((p) => p.x), ys = data.points.map((p) => p.y);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const pad = 14 * dpr, sx = (w - 2 * pad) / Math.max(x1 - x0, 1e-9);
  const sy = (h - 2 * pad) / Math.max(y1 - y0, 1e-9);
  mapState.xy = data.points.map((p) => [pad + (p.x - x0) * sx, h - pad - (p.y - y0) * sy]);
  const counts = {};
  for (const p of data.points) counts[category(p)] = (counts[category(p)] || 0) + 1;
  const names = Object.keys(counts).sort((a, b) => counts[b] - counts[a] || a.localeCompare(b));
  mapState.colours = Object.fromEntries(names.map((n, i) =>
    [n, i < PALETTE.length ? PALETTE[i] : "#9aa3ad"]));
  const r = (data.files > 2000 ? 2.2 : 4) * dpr;
  data.points.forEach((p, i) => {
    ctx.fillStyle = mapState.colours[category(p)];
    ctx.globalAlpha = 0.85;
    ctx.beginPath();
    ctx.arc(mapState.xy[i][0], mapState.xy[i][1], r, 0, 2 * Math.PI);
    ctx.fill();
  });
  ctx.globalAlpha = 1;
  if (mapState.path) drawPath(ctx, dpr);
  // the path's ends in black (the end a ring wider), the picked file in amber
  for (const [which, colour, grow] of [["start", "#111", 4], ["end", "#111", 7],
                                       ["pick", "#ffb000", 10]]) {
    const i = mapState[which];
    if (i === null) continue;
    ctx.strokeStyle = colour;
    ctx.lineWidth = 2 * dpr;
    ctx.beginPath();
    ctx.arc(mapState.xy[i][0], mapState.xy[i][1], r + grow * dpr, 0, 2 * Math.PI);
    ctx.stroke();
  }
  const shown = names.slice(0, PALETTE.length);
  const rest = names.length - shown.length;
  $("#map-legend").innerHTML = shown.map((n) => `<span><i style="background:` +
    `${mapState.colours[n]}"></i>${esc(n)} (${counts[n]})</span>`).join("") +
    (rest > 0 ? `<span><i style="background:#9aa3ad"></i>${rest} more</span>` : "");
}

function drawPath(ctx, dpr) {
  const at = Object.fromEntries(mapState.data.points.map((p, i) => [p.id, i]));
  ctx.strokeStyle = "rgba(17,17,17,.7)";
  ctx.lineWidth = 1.5 * dpr;
  ctx.beginPath();
  mapState.path.forEach((id, k) => {
    const [x, y] = mapState.xy[at[id]];
    if (k) ctx.lineTo(x, y); else ctx.moveTo(x, y);
  });
  ctx.stroke();
  for (const id of mapState.path) {  // each file of the path ringed
    const [x, y] = mapState.xy[at[id]];
    ctx.beginPath();
    ctx.arc(x, y, 6 * dpr, 0, 2 * Math.PI);
    ctx.stroke();
  }
}

function pickAt(ev) {
  const canvas = $("#map");
  const dpr = devicePixelRatio || 1;
  const x = ev.offsetX * dpr, y = ev.offsetY * dpr;
  let best = null, bestD = (12 * dpr) ** 2;
  mapState.xy.forEach(([px, py], i) => {
    const d = (px - x) ** 2 + (py - y) ** 2;
    if (d < bestD) { best = i; bestD = d; }
  });
  if (best !== null) pick(best, true);
  canvas.focus();
}

function pick(i, play) {
  const p = mapState.data.points[i];
  mapState.pick = i;
  $("#map-pick").hidden = false;
  $("#pick-name").textContent = p.path.split("/").pop();
  $("#pick-name").title = p.path;
  $("#pick-label").textContent = category(p);
  const audio = $("#pick-audio");
  audio.src = `/files/${p.id}/audio`;
  if (play) audio.play().catch(() => {});
  drawMap();
}

function setEnd(which) {
  if (mapState.pick === null) return;
  mapState[which] = mapState.pick;
  const name = (k) => (mapState[k] === null ? "…" :
    mapState.data.points[mapState[k]].path.split("/").pop());
  $("#path-ends").textContent = `path from ${name("start")} to ${name("end")}`;
  if (mapState.start !== null && mapState.end !== null) makePath();
}

async function makePath() {
  const a = mapState.data.points[mapState.start], b = mapState.data.points[mapState.end];
  const n = Math.max(2, parseInt($("#path-n").value, 10) || 8);
  status(`finding a path of ${n} files…`);
  const t0 = performance.now();
  let res;
  try {
    res = await api(`/files/${a.id}/path?to=${b.id}&n=${n}`);
  } catch (e) {
    status(e.message, true);
    return;
  }
  const ms = Math.round(performance.now() - t0);
  mapState.path = res.files.map((f) => f.id);
  drawMap();
  status(`${res.n} files in ${ms} ms · similarity path (worst step ` +
         `${res.worst_step.toFixed(3)})`);
  last = null;
  show({
    query: `${shortName(res.from)} → ${shortName(res.to)}`,
    duration: res.files.reduce((s, f) => s + f.duration, 0),
    mode: "path", predicted_label: null, view: { ids: mapState.path },
    results: res.files.map((f) => ({ rank: f.step + 1, path: f.path, score: f.similarity,
      label: f.label, start: 0, end: f.duration })),
  }, a.id);
}

function shortName(path) {  // relative to the collection's root, as the cards show it
  const root = info && info.root ? info.root.replace(/\/$/, "") + "/" : "";
  return root && path.startsWith(root) ? path.slice(root.length) : path;
}

function initMap() {
  const box = $("#map-box");
  box.addEventListener("toggle", () => {
    if (box.open && !mapState.data) loadMap(); else drawMap();
  });
  $("#map").addEventListener("click", pickAt);
  $("#map-colour").addEventListener("change", () => {
    drawMap();
    if (mapState.pick !== null) $("#pick-label").textContent =
      category(mapState.data.points[mapState.pick]);
  });
  const current = () => mapState.data.points[mapState.pick];
  $("#pick-more").addEventListener("click", () => similar(current().id, current().path, "style"));
  $("#pick-elsewhere").addEventListener("click",
    () => similar(current().id, current().path, "recording"));
  $("#pick-start").addEventListener("click", () => setEnd("start"));
  $("#pick-end").addEventListener("click", () => setEnd("end"));
  window.addEventListener("resize", drawMap);
}

document.addEventListener("DOMContentLoaded", initMap);
