// soundlib serve: drop pictures or a video, hear the sounds that fit, pick and export them.
import * as api from "./api.js";
import { drawWaveform, timeAt } from "./waveform.js";

const $ = (id) => document.getElementById(id);
const player = $("player");
const MIME = { wav: "audio/wav", flac: "audio/flac", ogg: "audio/ogg", oga: "audio/ogg", opus: "audio/ogg",
  mp3: "audio/mpeg", m4a: "audio/mp4", aiff: "audio/aiff", aif: "audio/aiff" };

const state = {
  info: null,
  files: [],          // the last uploaded File objects (re-ranked when k or the category changes)
  words: "",          // the words of the last words-alone query (re-ranked the same way)
  answer: null,       // the last /api/query answer (frames, results)
  like: null,         // the file of the last "more like this", when that is what is shown
  frame: null,        // index of the frame whose ranking is shown (null: the combined ranking)
  view: 0,            // index of the picture shown (and explained)
  rows: [],           // [{...row, peaks, canvas, li}]
  selected: -1,
  playing: -1,
  picks: [],
};

// --- status and errors ----------------------------------------------------------------------------------------

function showError(message) {
  const el = $("error");
  el.textContent = message;
  el.hidden = !message;
}

function status(text) { $("status").textContent = text; }

// --- the library ----------------------------------------------------------------------------------------------

async function loadInfo() {
  try {
    const info = await api.getJSON("/api/info");
    state.info = info;
    const ear = info.adapted ? ` · ear adapted to ${info.adapted.named_files} named files` : "";
    $("library").textContent = `${info.collection}: ${info.files} sounds, ${info.windows} windows · ${info.model}${ear}`;
    const sel = $("category");
    for (const [name, n] of Object.entries(info.categories)) {
      const o = document.createElement("option");
      o.value = name;
      o.textContent = `${name} (${n})`;
      sel.append(o);
    }
    const names = $("concept-names");  // what the "it is" and words fields offer as you type
    for (const c of info.concepts || []) {
      const o = document.createElement("option");
      o.value = c;
      names.append(o);
    }
    $("words-form").hidden = !(info.concepts || []).length;  // words alone need a model with concepts
    $("k").value = info.default_k;
    $("k").max = info.limits.k;
    $("heat-method").textContent = info.explain ? `(${info.explain})` : "(this model has no heatmap)";
    $("heat").disabled = !info.explain;
  } catch (e) {
    showError(e.message);
  }
}

// --- queries --------------------------------------------------------------------------------------------------

function k() { return Math.max(1, Math.min(Number($("k").value) || 10, state.info ? state.info.limits.k : 100)); }
function category() { return $("category").value; }
function asWords() { return $("as").value.trim(); }

// new pictures: what the last ones were said to be does not carry over
function newQuery(files) {
  if (!files.length) return;
  $("as").value = "";
  state.words = "";
  runQuery(files);
}

// words alone: no picture; the rows are the sounds the words' concepts point at
async function runWords(words) {
  if (!words) return;
  state.words = words;
  state.files = [];
  state.like = null;
  showError("");
  status(`finding ${words}…`);
  document.body.dataset.busy = "1";
  try {
    const answer = await api.query([], k(), category(), words);
    state.answer = answer;
    state.frame = null;
    state.view = 0;
    showPicture();
    showStrip();
    showRows(answer.results, `Sounds for "${words}"`);
    showTold(answer);
    const seen = $("read-as");
    seen.textContent = toldText(answer);
    seen.classList.toggle("warn", lacks(answer));
    seen.hidden = false;
    status(`${answer.results.length} sounds for "${words}"`);
  } catch (e) {
    showError(e.message);
    status("");
  } finally {
    delete document.body.dataset.busy;
  }
}

async function runQuery(files) {
  if (!files.length) return;
  state.files = files;
  state.like = null;
  showError("");
  status(`ranking ${files.length === 1 ? files[0].name : files.length + " files"}…`);
  document.body.dataset.busy = "1";
  const t0 = performance.now();
  try {
    const answer = await api.query(files, k(), category(), asWords());
    state.answer = answer;
    state.frame = null;
    state.view = 0;
    showPicture();
    showStrip();
    showRows(answer.results, titleFor(answer), answer.read_as);
    showTold(answer);
    const ms = performance.now() - t0;
    document.body.dataset.lastQueryMs = ms.toFixed(1);
    status(`${answer.results.length} sounds for ${answer.inputs.join(", ")} · ${ms.toFixed(0)} ms`);
  } catch (e) {
    showError(e.message);
    status("");
  } finally {
    delete document.body.dataset.busy;
  }
}

function titleFor(answer) {
  const n = answer.frames.length;
  if (answer.inputs.length === 1 && n > 1) return `Combined ranking of ${n} frames of ${answer.inputs[0]}`;
  return n > 1 ? `Combined ranking of ${n} pictures` : `Sounds for ${answer.inputs[0]}`;
}

async function moreLike(row) {
  showError("");
  status(`more like ${row.name}…`);
  try {
    const answer = await api.moreLike(row.file, k(), category());
    state.like = row;
    showRows(answer.results, `More like ${row.name}`);
    showTold(null);
    status(`${answer.results.length} sounds like ${row.name}`);
  } catch (e) {
    showError(e.message);
    status("");
  }
}

function rerun() {
  if (state.like) moreLike(state.like);
  else if (state.words) runWords(state.words);
  else if (state.files.length) runQuery(state.files);
}

// --- picture, heatmap and frame strip -------------------------------------------------------------------------

function showPicture() {
  const a = state.answer;
  $("picture").hidden = !a || !a.query;  // words alone: no picture
  if (!a || !a.query) return;
  const row = state.rows[state.selected];
  const img = $("view");
  const want = row && $("heat").checked && state.info && state.info.explain
    ? api.explainURL(a.query, state.view, row.window) : api.frameURL(a.query, state.view);
  if (img.getAttribute("src") !== want) img.src = want;
}

function showStrip() {
  const strip = $("strip");
  strip.replaceChildren();
  const frames = state.answer ? state.answer.frames : [];
  strip.hidden = frames.length < 2;
  if (frames.length < 2) return;
  const all = document.createElement("button");
  all.className = "frame all" + (state.frame === null ? " current" : "");
  all.textContent = "all";
  all.title = "the combined ranking";
  all.addEventListener("click", () => chooseFrame(null));
  strip.append(all);
  for (const f of frames) {
    const b = document.createElement("button");
    b.className = "frame" + (state.frame === f.index ? " current" : "");
    b.dataset.index = f.index;
    const img = document.createElement("img");
    img.src = api.frameURL(state.answer.query, f.index);
    img.alt = `${f.input} at ${f.time.toFixed(1)} s`;
    const cap = document.createElement("span");
    cap.textContent = state.answer.inputs.length === 1 ? `${f.time.toFixed(0)} s` : f.input;
    b.append(img, cap);
    b.addEventListener("click", () => chooseFrame(f.index));
    strip.append(b);
  }
}

function chooseFrame(index) {
  const a = state.answer;
  state.frame = index;
  state.view = index === null ? state.view : index;
  state.like = null;
  showStrip();
  showRows(index === null ? a.results : a.frames[index].results,
    index === null ? titleFor(a) : `Frame ${index} (${a.frames[index].input} at ${a.frames[index].time.toFixed(1)} s)`,
    index === null ? a.read_as : a.frames[index].read_as);
  $("told").hidden = index !== null;  // the check counts the combined ranking's results, not a frame's
  showPicture();
}

// --- result rows ----------------------------------------------------------------------------------------------

// what the picture(s) were read as: the concepts the query points at (bridged models; null otherwise)
// and what the pictures' file names named (mixed into the query, as ingest mixes the library's names)
function readAsText(readAs, named = null) {
  if (!readAs) return "";
  const seen = readAs.length ? readAs.map((c) => `${c.concept} ${Math.round(c.share * 100)} %`).join(" · ") : "no concept";
  if (!named || !named.length) return `read as: ${seen}`;
  const more = named.length > 5 ? ` and ${named.length - 5} more` : "";
  return `read as: ${seen} · named: ${named.slice(0, 5).join(", ")}${more}`;
}

// the "it is ..." field: offered under a picture's ranking when the model reads concepts (read_as is not null)
function showTold(answer) {
  $("as-form").hidden = !answer || answer.read_as === null || answer.read_as === undefined;
  const told = $("told");
  told.textContent = answer ? toldText(answer) : "";
  told.hidden = false;
  told.classList.toggle("warn", lacks(answer));
}

// true when the ranking was checked and none of its results is what it looked for, or none is one of the concepts
// the picture was read as or named
function lacks(answer) {
  const fits = answer && answer.fits;
  if (!fits || !answer.results.length) return false;
  return (fits.lacking || []).length > 0;
}

// "ranked as: horse · 3 of 10 named or heard as it" (told), "4 of 10 named or heard as dog" (what the picture was
// read as), or a warning when none is: the library may lack it (the check's words come with the answer)
function toldText(answer) {
  const head = answer.as ? `ranked as: ${answer.as.concepts.join(", ")}` : "";
  const check = answer.fits ? answer.fits.text : "";
  return [head, check].filter(Boolean).join(" · ");
}

function showRows(results, title, readAs = null) {
  stop();
  $("title").textContent = title;
  const seen = $("read-as");
  seen.textContent = readAsText(readAs, state.answer && readAs ? state.answer.named : null);
  seen.hidden = !readAs;
  const list = $("rows");
  list.replaceChildren();
  state.rows = results.map((r, i) => ({ ...r, index: i, peaks: null }));
  state.selected = -1;
  for (const row of state.rows) list.append(rowElement(row));
  document.body.dataset.rows = String(state.rows.length);
  for (const row of state.rows) loadPeaks(row);
  if (state.rows.length) select(0, false);
}

function rowElement(row) {
  const li = document.createElement("li");
  li.className = "row";
  li.draggable = true;
  li.dataset.file = row.file;
  li.dataset.start = row.start;
  const play = document.createElement("button");
  play.className = "play";
  play.title = "play from the best window";
  play.textContent = "▶";
  play.addEventListener("click", (e) => { e.stopPropagation(); toggle(row.index); });
  const meta = document.createElement("div");
  meta.className = "meta";
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = row.name;
  name.title = row.path;
  const cat = document.createElement("span");
  cat.className = "category";
  cat.textContent = row.category;
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = row.score.toFixed(3);
  score.title = `cosine similarity ${row.score.toFixed(4)} (distance ${row.distance.toFixed(4)}); best window at ${row.start.toFixed(1)} s`;
  meta.append(name, cat, score);
  if (row.fits && row.fits.length) {  // named or heard as (one of) what the ranking looked for
    const told = document.createElement("span");
    told.className = "told-hit";
    told.textContent = `✓ ${row.fits.join(" or ")}`;
    told.title = "its name says so, or its audio sounds most like it";
    meta.append(told);
  }
  if (row.named) {  // the concepts its name and tags named: ingest mixed them into its vector
    const named = document.createElement("span");
    named.className = "named";
    named.textContent = `named: ${row.named}`;
    named.title = "its name, folders or description name these; they count for half of its concepts";
    meta.append(named);
  }
  const canvas = document.createElement("canvas");
  canvas.className = "wave";
  canvas.addEventListener("click", (e) => {
    e.stopPropagation();
    const dur = row.peaks ? row.peaks.duration : row.duration;
    play(row.index, timeAt(canvas, e.clientX, dur));
  });
  const like = document.createElement("button");
  like.className = "like";
  like.textContent = "more like this";
  like.addEventListener("click", (e) => { e.stopPropagation(); moreLike(row); });
  const pick = document.createElement("button");
  pick.className = "pick";
  pick.textContent = "+ pick";
  pick.addEventListener("click", (e) => { e.stopPropagation(); addPick(row); });
  li.append(play, meta, canvas, like, pick);
  li.addEventListener("click", () => select(row.index, false));
  li.addEventListener("dragstart", (e) => {
    const ext = row.name.split(".").pop().toLowerCase();
    const url = new URL(api.audioURL(row.file, true), location.href).href;
    e.dataTransfer.setData("DownloadURL", `${MIME[ext] || "application/octet-stream"}:${row.name}:${url}`);
    e.dataTransfer.setData("text/uri-list", url);
    e.dataTransfer.setData("text/plain", url);
  });
  row.li = li;
  row.canvas = canvas;
  row.button = play;
  return li;
}

async function loadPeaks(row) {
  try {
    row.peaks = await api.getJSON(`/api/peaks/${encodeURIComponent(row.file)}`);
  } catch (e) {
    row.li.title = e.message;
  }
  redraw(row);
  if (row.index === state.playing) applyVolume(row);
}

function redraw(row) {
  const head = row.index === state.playing ? player.currentTime : null;
  drawWaveform(row.canvas, row.peaks, row.start, head);
}

function select(i, audition) {
  if (i < 0 || i >= state.rows.length) return;
  if (state.selected >= 0 && state.rows[state.selected]) state.rows[state.selected].li.classList.remove("selected");
  state.selected = i;
  const row = state.rows[i];
  row.li.classList.add("selected");
  row.li.scrollIntoView({ block: "nearest" });
  document.body.dataset.selected = String(i);
  showPicture();
  if (audition) play(i, row.start);
}

// --- playback -------------------------------------------------------------------------------------------------

function applyVolume(row) {
  const gain = row && row.peaks && $("loudness").checked ? row.peaks.preview_gain_db : 0;
  player.volume = Math.min(1, Math.pow(10, gain / 20));
}

function play(i, at) {
  const row = state.rows[i];
  if (!row) return;
  if (state.selected !== i) select(i, false);
  const previous = state.rows[state.playing];
  state.playing = i;
  if (previous && previous !== row) { previous.button.textContent = "▶"; redraw(previous); }
  row.button.textContent = "■";
  applyVolume(row);
  const src = new URL(api.audioURL(row.file), location.href).href;
  const start = () => {
    player.currentTime = at;
    player.play().catch((e) => { if (e.name !== "AbortError") showError(`cannot play ${row.name}: ${e.message}`); });
  };
  if (player.src === src && player.readyState >= 1) {
    start();
  } else {
    player.src = src;
    player.addEventListener("loadedmetadata", start, { once: true });
    player.load();
  }
  document.body.dataset.playing = String(i);
}

function stop() {
  player.pause();
  const row = state.rows[state.playing];
  state.playing = -1;
  delete document.body.dataset.playing;
  if (row) { row.button.textContent = "▶"; redraw(row); }
}

function toggle(i) {
  if (state.playing === i && !player.paused) stop();
  else play(i, state.rows[i].start);
}

player.addEventListener("timeupdate", () => { const r = state.rows[state.playing]; if (r) redraw(r); });
player.addEventListener("ended", () => stop());
player.addEventListener("error", () => {
  const r = state.rows[state.playing];
  if (r) showError(`cannot play ${r.name}: the browser cannot decode it`);
});

// --- picks ----------------------------------------------------------------------------------------------------

function queryText() {
  if (state.like) return `like ${state.like.path}`;
  if (state.answer && !state.answer.inputs.length && state.answer.as) return state.answer.as.words;
  return state.answer ? state.answer.inputs.join(", ") : "";
}

function addPick(row) {
  if (state.picks.some((p) => p.file === row.file && p.start === row.start)) return;
  state.picks.push({ file: row.file, name: row.name, start: row.start, score: row.distance, query: queryText() });
  showPicks();
}

function showPicks() {
  const list = $("picks");
  list.replaceChildren();
  state.picks.forEach((p, i) => {
    const li = document.createElement("li");
    const name = document.createElement("span");
    name.textContent = `${p.name} @ ${p.start.toFixed(1)} s`;
    const rm = document.createElement("button");
    rm.textContent = "×";
    rm.title = "remove";
    rm.addEventListener("click", () => { state.picks.splice(i, 1); showPicks(); });
    li.append(name, rm);
    list.append(li);
  });
  $("pick-count").textContent = String(state.picks.length);
  $("export").disabled = !state.picks.length;
}

async function exportPicks() {
  showError("");
  const clip = $("clips").checked ? Math.max(0, Number($("handles").value) || 0) : null;
  try {
    const blob = await api.exportPicks(state.picks.map(({ file, start, score, query }) => ({ file, start, score, query })), clip);
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = "soundlib-picks.zip";
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 60000);
    status(`exported ${state.picks.length} picks`);
  } catch (e) {
    showError(e.message);
  }
}

// --- wiring ---------------------------------------------------------------------------------------------------

function wire() {
  const drop = $("drop");
  $("files").addEventListener("change", (e) => newQuery([...e.target.files]));
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    newQuery([...e.dataTransfer.files]);
  });
  $("k").addEventListener("change", rerun);
  $("category").addEventListener("change", rerun);
  $("words-form").addEventListener("submit", (e) => {
    e.preventDefault();
    runWords($("words").value.trim());
  });
  $("as-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (!state.like && state.files.length) runQuery(state.files);
  });
  $("heat").addEventListener("change", showPicture);
  $("loudness").addEventListener("change", () => applyVolume(state.rows[state.playing]));
  $("export").addEventListener("click", exportPicks);
  document.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement) return;
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      const next = state.selected + (e.key === "ArrowDown" ? 1 : -1);
      if (next >= 0 && next < state.rows.length) select(next, true);
    } else if (e.key === " ") {
      e.preventDefault();
      if (state.playing >= 0 && !player.paused) stop();
      else if (state.selected >= 0) play(state.selected, state.rows[state.selected].start);
    }
  });
  window.addEventListener("resize", () => state.rows.forEach(redraw));
}

wire();
loadInfo();
