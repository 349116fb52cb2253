// Waveform of one result row on a canvas: min/max peaks from the server, the best 1-s window highlighted,
// a playhead while it plays.

const WINDOW_SECONDS = 1.0;

export function drawWaveform(canvas, peaks, start, playhead = null) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
  const h = Math.max(1, Math.round(canvas.clientHeight * dpr));
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, w, h);
  if (!peaks) {
    g.fillStyle = "#3a3f4b";
    g.fillRect(0, h / 2 - 1, w, 2);
    return;
  }
  const dur = peaks.duration || 1;
  const x0 = (start / dur) * w;
  const x1 = (Math.min(dur, start + WINDOW_SECONDS) / dur) * w;
  g.fillStyle = "rgba(255, 176, 59, 0.22)";
  g.fillRect(x0, 0, Math.max(2, x1 - x0), h);
  const n = peaks.mins.length;
  const mid = h / 2;
  for (let x = 0; x < w; x++) {
    const a = Math.floor((x / w) * n);
    const b = Math.max(a + 1, Math.floor(((x + 1) / w) * n));
    let lo = 1, hi = -1;
    for (let i = a; i < b && i < n; i++) {
      if (peaks.mins[i] < lo) lo = peaks.mins[i];
      if (peaks.maxs[i] > hi) hi = peaks.maxs[i];
    }
    if (hi < lo) continue;
    g.fillStyle = x >= x0 && x <= x1 ? "#ffb03b" : "#7fb4ff";
    const top = mid - hi * mid * 0.95;
    const bottom = mid - lo * mid * 0.95;
    g.fillRect(x, top, 1, Math.max(1, bottom - top));
  }
  if (playhead !== null) {
    const px = (playhead / dur) * w;
    g.fillStyle = "#ffffff";
    g.fillRect(px, 0, Math.max(1, dpr), h);
  }
}

// Seconds under a click at clientX on the canvas.
export function timeAt(canvas, clientX, duration) {
  const r = canvas.getBoundingClientRect();
  const f = Math.min(1, Math.max(0, (clientX - r.left) / Math.max(1, r.width)));
  return f * duration;
}
