// The server's JSON API. Every failure becomes an Error whose message is the server's one-line reason.

async function answer(resp) {
  if (resp.ok) return resp;
  let reason = `${resp.status} ${resp.statusText}`;
  try {
    const doc = await resp.json();
    if (doc && doc.error) reason = doc.error;
  } catch (_) { /* not JSON: keep the status line */ }
  throw new Error(reason);
}

export async function getJSON(url) {
  return (await answer(await fetch(url, { credentials: "same-origin" }))).json();
}

export async function query(files, k, category, as) {
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  form.append("k", String(k));
  if (category) form.append("category", category);
  if (as) form.append("as", as);
  const resp = await fetch("/api/query", { method: "POST", body: form, credentials: "same-origin" });
  return (await answer(resp)).json();
}

export async function moreLike(file, k, category) {
  const params = new URLSearchParams({ k: String(k) });
  if (category) params.append("category", category);
  return getJSON(`/api/like/${encodeURIComponent(file)}?${params}`);
}

export async function exportPicks(picks, clip) {
  const body = JSON.stringify({ picks, clip });
  const resp = await fetch("/api/picks", {
    method: "POST", body, credentials: "same-origin", headers: { "Content-Type": "application/json" },
  });
  return (await answer(resp)).blob();
}

export function explainURL(queryId, frame, windowId) {
  const p = new URLSearchParams({ query: queryId, frame: String(frame), window: windowId });
  return `/api/explain?${p}`;
}

export function frameURL(queryId, frame) {
  return `/api/frame/${encodeURIComponent(queryId)}/${frame}.png`;
}

export function audioURL(file, download = false) {
  return `/audio/${encodeURIComponent(file)}${download ? "?download=1" : ""}`;
}
