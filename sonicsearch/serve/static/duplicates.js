// sonicsearch web page: the duplicates of the collection (GET /duplicates?view=true), each
// group with the spans its files share, each span playable. Uses app.js's api(), esc(),
// clock() and el().
"use strict";

let dupLoaded = false;

async function loadDuplicates() {
  dupLoaded = true;
  $("#dup-facts").textContent = "· searching the stored vectors…";
  const t0 = performance.now();
  let res;
  try {
    res = await api("/duplicates?view=true");
  } catch (e) {
    $("#dup-facts").textContent = `· ${e.message}`;
    dupLoaded = false;
    return;
  }
  const s = ((performance.now() - t0) / 1000).toFixed(1);
  const held = res.groups.reduce((n, g) => n + g.files.length, 0);
  $("#dup-facts").textContent = `· ${res.groups.length} group${res.groups.length === 1 ? "" :
    "s"} holding ${held} of ${res.files} files (${s} s)`;
  const list = $("#dup-list");
  list.replaceChildren();
  if (!res.groups.length) {
    list.append(Object.assign(el("div", "muted"), {
      textContent: `No two files share ${res.min_overlap} s of one recording.` }));
  }
  for (const g of res.groups) list.append(groupBox(g, res.view.ids));
}

function groupBox(g, ids) {
  const box = el("div", "dup-group");
  const names = g.files.map((f) => f.path.split("/").pop());
  box.innerHTML = `<div class="qhead"><span class="name">group ${g.group}</span>
    <span class="score">${g.confidence.toFixed(3)}</span>
    <span class="muted">${esc(names.join(" · "))}</span></div>`;
  for (const m of g.matches) {
    const row = el("div", "dup-match");
    row.append(spanPlayer(m.a, m.a_start, m.a_end, ids), spanPlayer(m.b, m.b_start, m.b_end, ids));
    const note = el("div", "muted small");
    note.textContent = `${m.overlap.toFixed(1)} s shared · confidence ${m.confidence.toFixed(3)}`;
    row.append(note);
    box.append(row);
  }
  return box;
}

function spanPlayer(path, start, end, ids) {
  // a button per span; one shared player plays the span clicked (many groups, one player)
  const button = el("button", "dup-file");
  button.type = "button";
  button.title = `play ${path} from ${clock(start)} to ${clock(end)}`;
  button.innerHTML = `▶ <span class="file">${esc(path.split("/").pop())}</span>
    <span class="muted">${clock(start)}–${clock(end)}</span>`;
  button.addEventListener("click", () => {
    const audio = $("#dup-audio");
    audio.hidden = false;
    audio.src = `/files/${ids[path]}/audio#t=${start.toFixed(2)},${end.toFixed(2)}`;
    audio.play().catch(() => {});
  });
  return button;
}

document.addEventListener("DOMContentLoaded", () => {
  const box = $("#dup-box");
  box.addEventListener("toggle", () => { if (box.open && !dupLoaded) loadDuplicates(); });
});
