// sonicsearch web page: upload or record a clip, show what sounds like it.
"use strict";

const $ = (sel) => document.querySelector(sel);
let token = sessionStorage.getItem("sonicsearch_token") || "";
let info = null;
let last = null;  // what was searched last: {blob, name} or {similar: id}, to redo on a switch

function setToken(value) {
  token = value;
  sessionStorage.setItem("sonicsearch_token", value);
  // The token travels in this cookie only, for fetch() and <audio> alike: <audio> cannot
  // send headers, and a header cannot carry every token (fetch refuses non-Latin-1 text).
  // Percent-encoded, the cookie holds any token; the server decodes it.
  document.cookie = `sonicsearch_token=${encodeURIComponent(value)}; path=/; SameSite=Strict`;
}

async function api(path, options = {}) {
  const res = await fetch(path, options);
  if (res.status === 401) {
    $("#token-box").hidden = false;
    throw new Error(token ? "the server refused this token" : "this server needs its access token");
  }
  const body = res.headers.get("content-type")?.includes("json") ? await res.json() : null;
  if (!res.ok) {  // every error is {"detail": "...", "status": N, "errors": [...]}
    const err = new Error((body && body.detail) || `${res.status} ${res.statusText}`);
    err.status = res.status;
    throw err;
  }
  return body;
}

function status(text, isError = false) {
  const el = $("#status");
  el.textContent = text;
  el.className = isError ? "error" : "muted";
}

async function loadInfo() {
  try {
    info = await api("/info");
  } catch (e) {
    $("#index-info").textContent = e.message;
    return;
  }
  $("#token-box").hidden = true;
  $("#index-info").textContent =
    `${info.files} files · ${info.model.arch} · ${info.index_type} · ${info.generation}`;
  const select = $("#label");
  const labels = info.file_labels.length ? info.file_labels : info.labels;
  select.length = 1;
  for (const l of labels) select.add(new Option(l, l));
  $("#prefix").placeholder = "any (relative to the collection)";
  $("#prefix").title = info.root ? `relative to ${info.root}` : "";
}

function searchMode() {
  return new FormData($("#opts")).get("mode") || "recording";
}

function queryString() {
  const form = new FormData($("#opts"));
  const every = searchMode() === "occurrences";  // every span where it occurs: all of them
  const mode = every ? "recording" : searchMode();
  const q = new URLSearchParams({ view: "true", mode });
  if (every) q.set("occurrences", "true");
  const keys = ["label", "path_prefix", "min_duration", "max_duration", "max_per_folder"];
  if (!every) keys.push("k");
  if (mode === "recording" && !every) keys.push("rollup");  // roll-ups score window matches
  for (const key of keys) {
    const v = (form.get(key) || "").toString().trim();
    if (v) q.set(key, v);
  }
  const threshold = form.get("min_score_mode");
  // "auto" is the recording mode's calibrated no-match threshold; style lists the closest,
  // occurrences keep their own default (0.5)
  if (threshold === "auto" && mode === "recording" && !every) q.set("min_score", "auto");
  if (threshold === "custom") q.set("min_score", form.get("min_score_value") || "0");
  return q.toString();
}

async function similar(id, path, mode = null) {
  if (mode) document.querySelector(`input[name=mode][value=${mode}]`).checked = true;
  last = { similar: id, path };
  status(`finding ${searchMode() === "style" ? "more like" : "other copies of"} ` +
         `${path.split("/").pop()}…`);
  const t0 = performance.now();
  let res;
  try {
    res = await api(`/files/${id}/similar?${queryString()}`);
  } catch (e) {
    status(e.message, true);
    return;
  }
  const ms = Math.round(performance.now() - t0);
  status(`${res.results.length} result${res.results.length === 1 ? "" : "s"} in ${ms} ms · ` +
         (res.mode === "style" ? "more like an indexed file" : "its recording elsewhere"));
  show(res, id);
}

async function search(blob, name, converted = false) {
  last = { blob, name };
  status(`searching with ${name}…`);
  $("#results").replaceChildren();
  const body = new FormData();
  body.append("file", blob, name);
  const t0 = performance.now();
  let res;
  try {
    res = await api(`/query?${queryString()}`, { method: "POST", body });
  } catch (e) {
    if (e.status === 415 && !converted) {
      // e.g. Chrome records WebM, which this server cannot decode: convert here
      status(`${e.message.split(";")[0]}. Converting to WAV in the browser…`);
      try {
        const wav = await toWav(blob);
        return search(wav, name.replace(/\.[^.]*$/, "") + ".wav", true);
      } catch (e2) {
        status(`${e.message} (the browser could not convert it either)`, true);
        return;
      }
    }
    status(e.message, true);
    return;
  }
  const ms = Math.round(performance.now() - t0);
  const what = res.occurrences ? "occurrence" : "result";
  status(`${res.results.length} ${what}${res.results.length === 1 ? "" : "s"} in ${ms} ms` +
         (converted ? " · the server cannot read this format: it was converted to WAV " +
                      "in the browser" : ""));
  show(res);
}

function show(res, sourceId = null) {
  const q = $("#query");
  q.hidden = false;
  const pred = res.predicted_label ? `<span class="chip">sounds like: ${esc(res.predicted_label)}</span>` : "";
  const what = res.occurrences ? "every occurrence" :
    { style: "sounds similar", path: "similarity path" }[res.mode] || "same recording";
  const root = info && info.root ? info.root.replace(/\/$/, "") + "/" : "";
  const named = root && res.query.startsWith(root) ? res.query.slice(root.length) : res.query;
  q.innerHTML = `<div class="qhead"><span class="name" title="${esc(res.query)}">${esc(named)}</span>
    <span class="muted">${res.duration.toFixed(1)} s</span>${pred}
    <span class="chip mode">${what}</span></div>`;
  const canvas = specCanvas();
  q.append(canvas);
  if (res.view.spectrogram) drawSpec(canvas, res.view.spectrogram, null);
  else if (sourceId) {  // "more like this" of an indexed file: its own picture
    api(`/files/${sourceId}/spectrogram`).then((spec) => drawSpec(canvas, spec, null))
      .catch((e) => { canvas.title = e.message; });
  }

  const list = $("#results");
  list.replaceChildren();
  if (!res.results.length) {
    const box = el("section", "card nomatch");
    const why = res.reason || "nothing in the collection matches";
    box.innerHTML = `<h2>No match</h2><div>${esc(why)}.</div>
      <div class="muted small">This clip is probably not in the collection. Set the
      threshold to "off" under Filters to list the closest files anyway.</div>`;
    list.append(box);
    return;
  }
  const top = res.results[0].score || 1;
  res.results.forEach((r, i) => list.append(resultCard(r, res.view.ids[i], top, res)));
}

// the confidence --min-score auto accepts (the index's, from /info; its default before)
function sureAt() {
  return (info && info.no_match && info.no_match.min_confidence) || 0.7;
}

function confidenceText(p) {
  const pct = 100 * p;
  return `${pct >= 99.5 || pct < 0.5 ? pct.toFixed(1) : pct.toFixed(0)} % sure`;
}

function resultCard(r, id, top, res) {
  const card = el("article", "card result");
  const root = info && info.root ? info.root.replace(/\/$/, "") + "/" : "";
  const shown = root && r.path.startsWith(root) ? r.path.slice(root.length) : r.path;
  const slash = shown.lastIndexOf("/");
  const same = r.label && r.label === res.predicted_label ? " same" : "";
  const pct = Math.max(2, Math.min(100, (100 * r.score) / Math.max(top, 1e-9)));
  card.innerHTML = `<div class="rank">${r.rank}</div><div>
    <div class="title" title="${esc(r.path)}"><span class="file">${esc(shown.slice(slash + 1))}</span>
      <span class="folder">${esc(shown.slice(0, slash + 1))}</span></div>
    <div class="meta"><span class="score">${r.score.toFixed(3)}</span>
      ${r.confidence != null ? `<span class="confidence${r.confidence >= sureAt() ? " sure" : ""}"
        title="calibrated probability that the clip comes from this file">${
        confidenceText(r.confidence)}</span>` : ""}
      <span class="bar"><i style="width:${pct}%"></i></span>
      ${r.label ? `<span class="chip${same}">${esc(r.label)}</span>` : ""}
      <span class="muted">match ${clock(r.start)}–${clock(r.end)}</span>
      <button class="more" type="button" title="indexed files that sound like this one">More
        like this</button><button class="elsewhere" type="button" title="other files that
        hold this recording">Same recording elsewhere</button></div></div>`;
  const body = card.children[1];
  body.querySelector("button.more").addEventListener("click", () => similar(id, r.path, "style"));
  body.querySelector("button.elsewhere").addEventListener("click",
    () => similar(id, r.path, "recording"));
  const canvas = specCanvas();
  body.append(canvas);
  const audio = document.createElement("audio");
  audio.controls = true;
  audio.preload = "metadata";
  audio.src = `/files/${id}/audio#t=${r.start.toFixed(2)},${r.end.toFixed(2)}`;
  audio.addEventListener("loadedmetadata", () => {
    if (audio.currentTime < r.start - 0.05) audio.currentTime = r.start;
  }, { once: true });
  body.append(audio);
  api(`/files/${id}/spectrogram?start=${r.start}&end=${r.end}`)
    .then((spec) => {
      drawSpec(canvas, spec, [r.start, r.end]);
      canvas.onclick = (ev) => {
        const x = ev.offsetX / canvas.clientWidth;
        audio.currentTime = spec.offset + x * spec.duration;
        audio.play();
      };
    })
    .catch((e) => { canvas.title = e.message; });
  return card;
}

function specCanvas() {
  const c = document.createElement("canvas");
  c.className = "spec";
  return c;
}

// magma-like colour map, 5 stops
const STOPS = [[0, 0, 4], [81, 18, 124], [183, 55, 121], [252, 137, 97], [252, 253, 191]];
const LUT = Array.from({ length: 256 }, (_, v) => {
  const x = (v / 255) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(x));
  const f = x - i;
  return STOPS[i].map((c, j) => Math.round(c + f * (STOPS[i + 1][j] - c)));
});

function drawSpec(canvas, spec, span) {
  const { width, height } = spec;
  const bytes = Uint8Array.from(atob(spec.data), (ch) => ch.charCodeAt(0));
  const img = new ImageData(width, height);
  for (let y = 0; y < height; y++) {
    const row = height - 1 - y; // lowest frequency at the bottom
    for (let x = 0; x < width; x++) {
      const c = LUT[bytes[row * width + x]];
      const o = (y * width + x) * 4;
      img.data[o] = c[0]; img.data[o + 1] = c[1]; img.data[o + 2] = c[2]; img.data[o + 3] = 255;
    }
  }
  const src = document.createElement("canvas");
  src.width = width; src.height = height;
  src.getContext("2d").putImageData(img, 0, 0);
  const w = (canvas.width = canvas.clientWidth * devicePixelRatio || 600);
  const h = (canvas.height = canvas.clientHeight * devicePixelRatio || 72);
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(src, 0, 0, w, h);
  if (span) {
    const x0 = ((span[0] - spec.offset) / spec.duration) * w;
    const x1 = ((span[1] - spec.offset) / spec.duration) * w;
    ctx.fillStyle = "rgba(0,0,0,.55)"; // dim what lies outside the match
    ctx.fillRect(0, 0, Math.max(0, x0), h);
    ctx.fillRect(x1, 0, Math.max(0, w - x1), h);
    ctx.strokeStyle = "#ffd600";
    ctx.lineWidth = 2 * devicePixelRatio;
    ctx.strokeRect(x0, 1, x1 - x0, h - 2);
  }
}

// Decode anything the browser can play, down-mix to mono 16 kHz, and encode WAV.
async function toWav(blob) {
  const ctx = new AudioContext();
  const decoded = await ctx.decodeAudioData(await blob.arrayBuffer());
  ctx.close();
  const rate = 16000;
  const off = new OfflineAudioContext(1, Math.ceil(decoded.duration * rate), rate);
  const src = off.createBufferSource();
  src.buffer = decoded;
  src.connect(off.destination);
  src.start();
  const pcm = (await off.startRendering()).getChannelData(0);
  const buf = new DataView(new ArrayBuffer(44 + pcm.length * 2));
  const put = (o, s) => [...s].forEach((ch, i) => buf.setUint8(o + i, ch.charCodeAt(0)));
  put(0, "RIFF"); buf.setUint32(4, 36 + pcm.length * 2, true); put(8, "WAVEfmt ");
  buf.setUint32(16, 16, true); buf.setUint16(20, 1, true); buf.setUint16(22, 1, true);
  buf.setUint32(24, rate, true); buf.setUint32(28, rate * 2, true);
  buf.setUint16(32, 2, true); buf.setUint16(34, 16, true); put(36, "data");
  buf.setUint32(40, pcm.length * 2, true);
  pcm.forEach((v, i) => buf.setInt16(44 + i * 2, Math.max(-1, Math.min(1, v)) * 32767, true));
  return new Blob([buf], { type: "audio/wav" });
}

let recorder = null;
async function toggleRecord() {
  const button = $("#record");
  if (recorder) { recorder.stop(); return; }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (e) {
    status(`cannot use the microphone: ${e.message}`, true);
    return;
  }
  const type = ["audio/ogg;codecs=opus", "audio/webm;codecs=opus", "audio/webm"]
    .find((t) => window.MediaRecorder && MediaRecorder.isTypeSupported(t));
  recorder = new MediaRecorder(stream, type ? { mimeType: type } : {});
  const parts = [];
  recorder.ondataavailable = (ev) => parts.push(ev.data);
  recorder.onstop = () => {
    stream.getTracks().forEach((t) => t.stop());
    const mime = recorder.mimeType || "audio/webm";
    recorder = null;
    button.textContent = "● Record";
    button.classList.remove("recording");
    const ext = mime.includes("ogg") ? "ogg" : "webm";
    search(new Blob(parts, { type: mime }), `recording.${ext}`);
  };
  recorder.start();
  button.textContent = "■ Stop";
  button.classList.add("recording");
  status("recording… press Stop when done");
}

function el(tag, cls) { const e = document.createElement(tag); e.className = cls; return e; }
function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;",
    '"': "&quot;", "'": "&#39;" })[c]);
}
function clock(s) {
  const m = Math.floor(s / 60);
  return `${m}:${(s - m * 60).toFixed(1).padStart(4, "0")}`;
}

function init() {
  const drop = $("#drop");
  const file = $("#file");
  drop.addEventListener("click", (ev) => { if (ev.target.tagName !== "LABEL") file.click(); });
  drop.addEventListener("keydown", (ev) => { if (ev.key === "Enter") file.click(); });
  file.addEventListener("change", () => {
    if (file.files[0]) search(file.files[0], file.files[0].name);
    file.value = "";
  });
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    const f = ev.dataTransfer.files[0];
    if (f) search(f, f.name);
  });
  $("#record").addEventListener("click", toggleRecord);
  for (const radio of document.querySelectorAll('input[name="mode"]')) {
    radio.addEventListener("change", () => {  // the same question, asked the other way
      if (last && last.blob) search(last.blob, last.name);
      else if (last && last.similar) similar(last.similar, last.path);
    });
  }
  $("#min-mode").addEventListener("change", (ev) => {
    $("#min-custom").hidden = ev.target.value !== "custom";
  });
  $("#token-save").addEventListener("click", () => {
    setToken($("#token").value.trim());
    loadInfo();
  });
  if (token) setToken(token);
  loadInfo();
}

document.addEventListener("DOMContentLoaded", init);
