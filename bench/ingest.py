"""Ingest throughput: end-to-end ``soundlib.ingest.ingest`` windows/s vs the encoder alone, in the same run.

1. A library of real audio files is generated (cached under ``bench/.cache``): durations log-uniform from 0.3 s to
   60 s, sample rates 8 / 22.05 / 44.1 / 48 kHz, formats wav (PCM-16) / flac / ogg (Vorbis) / mp3, mono and stereo,
   three kinds of content (tones, noise bursts, chirps) in three category folders.
2. For each model (the paper's m5 at the fast width 0.25, and the pretrained family ``pt-effnet-aisfx-infonce``,
   untrained, as saved checkpoints): every file is decoded into its windows once per audio configuration
   (timed: "decode only", one thread, as the ingest's decoder thread does it); the windows, already in memory, go through
   ``model.embed_audio`` in batches of ``INFERENCE_BATCH`` ("encoder only": log-mel + network, the work ingest
   cannot avoid), alternated with the ingest runs (E I E I E I E; medians), so load drift on this shared machine
   hits both; the ingest itself writes into a fresh embedded Chroma store in a temp folder (scan, probe,
   decode + resample, sha256, model, Chroma upserts).
   Goal: ingest windows/s >= 0.5 x encoder-only windows/s (decoding, mel and Chroma writes hidden behind the model).
3. Front end: ``soundlib.audio.log_mel_batch`` on the decoded windows vs plain per-clip
   ``librosa.feature.melspectrogram`` + log with the same parameters (and the largest difference between the two).

4. Real files, **today's code against this tree in the same run**: ``soundlib ingest`` of a real sound library
   (default ``/work/work/media2/sfx``, the 1,632-file Debian sfx-extra set; ``--sounds DIR``; ``--quick`` takes
   every 10th file) with the default model, once with the code of :data:`BASELINE_REF` (the commit before issue
   16's speed-ups, unpacked with ``git archive`` into ``bench/.cache``) and once with this tree, each as a fresh
   ``python -m cli ingest --json`` process into a fresh store, alternated (B N B N ...). windows/s = windows /
   the ingest's own ``seconds`` (scan, decode, model, Chroma writes; not the imports); CPU time per window and
   peak RSS of each process (``wait4``: CPU time moves less with the load of a shared machine than wall time);
   and how far the embeddings moved: cosine between the two stores' vectors of the same windows.
5. The same real library stored without names (``--no-names``, as an older soundlib stored it) and brought up to
   date by this tree's next ingest, which *remixes* it from the stored vectors without decoding: files/s, and the
   ratio to the time this tree's ingest above took to embed the same files with names; its vectors must equal that
   ingest's. Then back to the audio alone (``--no-names`` again): every named file's mix is undone in place; its
   vectors must equal the ``--no-names`` ingest's.

6. With ``--shipped``: ``soundlib adapt`` (``train.adapt.adapt_model``) of the demo library (66 real recordings, every
   one named) against an ingest of the same library with the same model, alternated (I A I A ...): adapt reads
   every window of the named files as ingest does, then fits the sound classifier; windows/s of each and the ratio.

Run: ``.venv/bin/python bench/ingest.py [--quick] [--sounds DIR] [--rounds N] [--skip-synthetic]``
-> ``bench/results/ingest.json`` (``ingest-real.json`` with ``--skip-synthetic``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import CACHE_DIR, FAST_M5, PRETRAINED, ROOT, SHIPPED, Result, median, model_label, parser, saved_model

GOAL_RATIO = 0.5
RATES = (8000, 22050, 44100, 48000)
FORMATS = (("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_16"), ("ogg", "OGG", "VORBIS"),
           ("mp3", "MP3", "MPEG_LAYER_III"))
KINDS = ("tones", "noise", "chirps")
#: "Today's path": the commit before issue 16's ingest speed-ups (its ``soundlib ingest`` runs beside this tree's).
BASELINE_REF = "141d40e"
#: Real sound library of the comparison (Debian sfx-extra packages, fetched by get-debian-sfx-extra.sh).
REAL_SOUNDS = Path("/work/work/media2/sfx")
GOAL_SPEEDUP = 2.5


def synth(kind: str, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """``seconds`` of mono float32 audio at ``sr`` Hz (peak 0.5): notes, filtered noise bursts or chirps."""
    n = max(1, int(round(seconds * sr)))
    t = np.arange(n) / sr
    nyq = sr / 2
    if kind == "tones":  # notes of harmonic tones with vibrato and a decay, a new note every 0.2-0.8 s
        y = np.zeros(n)
        pos = 0.0
        while pos < seconds:
            length = rng.uniform(0.2, 0.8)
            f0 = min(rng.uniform(80, 1200), nyq / 4)
            m = (t >= pos) & (t < pos + length)
            tt = t[m] - pos
            phase = 2 * np.pi * f0 * tt + 3 * np.sin(2 * np.pi * 5 * tt)
            note = sum(np.sin(h * phase) / h for h in (1, 2, 3) if h * f0 < nyq)
            y[m] += note * np.exp(-tt * rng.uniform(1, 8))
            pos += length
    elif kind == "noise":  # low-passed noise with random bursts (rain / wind like)
        y = rng.standard_normal(n)
        k = max(1, int(sr / rng.uniform(500, 4000)))
        y = np.convolve(y, np.ones(k) / k, mode="same")
        env = np.interp(t, np.linspace(0, seconds, max(2, int(seconds * 4))),
                        rng.uniform(0.1, 1.0, max(2, int(seconds * 4))))
        y *= env
    else:  # repeated exponential chirps between 100 Hz and 0.8 x Nyquist
        period = rng.uniform(0.3, 2.0)
        tt = t % period
        f_lo, f_hi = 100.0, 0.8 * nyq
        rate = np.log(f_hi / f_lo) / period
        y = np.sin(2 * np.pi * f_lo * (np.exp(rate * tt) - 1) / rate) * np.exp(-tt)
    y = y + 0.01 * rng.standard_normal(n)
    return (0.5 * y / max(np.max(np.abs(y)), 1e-9)).astype(np.float32)


def make_library(folder: Path, n_files: int, max_seconds: float, seed: int = 0) -> list[dict[str, Any]]:
    """Write ``n_files`` sound files under ``folder/<kind>/`` (formats x rates cycled, durations log-uniform from
    0.3 s to ``max_seconds``, the two ends included; every other file stereo). Reuses a finished library."""
    import soundfile as sf

    manifest = folder / "manifest.json"
    if manifest.exists():
        return json.loads(manifest.read_text())
    if folder.exists():
        shutil.rmtree(folder)
    rng = np.random.default_rng(seed)
    durations = np.exp(rng.uniform(np.log(0.3), np.log(max_seconds), n_files))
    durations[0], durations[-1] = 0.3, max_seconds
    files = []
    for i, dur in enumerate(durations):
        ext, fmt, sub = FORMATS[i % len(FORMATS)]
        sr = RATES[(i // len(FORMATS)) % len(RATES)]
        kind = KINDS[i % len(KINDS)]
        y = synth(kind, float(dur), sr, rng)
        if i % 2:  # stereo: a slightly different second channel
            y = np.stack([y, np.roll(y, 7) * 0.8], axis=1)
        path = folder / kind / f"{i:03d}-{kind}-{sr}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        # in 1-second blocks: one big write of Vorbis overflows the stack in libvorbis (libsndfile issue #1095)
        with sf.SoundFile(path, "w", sr, y.shape[1] if y.ndim == 2 else 1, format=fmt, subtype=sub) as out:
            for lo in range(0, len(y), sr):
                out.write(y[lo:lo + sr])
        files.append({"path": str(path), "seconds": round(float(dur), 3), "rate": sr, "format": ext,
                      "channels": 2 if i % 2 else 1})
    manifest.write_text(json.dumps(files, indent=1))
    return files


def decode_all(files: list[dict[str, Any]], cfg: Any) -> tuple[np.ndarray, float]:
    """All windows of all files (as ingest cuts them) and the seconds it took (one thread)."""
    from soundlib.audio import load_windows

    t = time.perf_counter()
    wins = [load_windows(f["path"], cfg)[1] for f in files]
    return np.concatenate(wins), time.perf_counter() - t


def encoder_only(model: Any, windows: np.ndarray, batch: int) -> float:
    """Seconds to embed every window in batches of ``batch`` (windows in memory), with the function ingest uses."""
    from soundlib.embedding import embed_windows

    t = time.perf_counter()
    embed_windows(model, windows, batch)
    return time.perf_counter() - t


def run_ingest(loaded: Any, root: Path, batch: int, metadata: bool = True) -> tuple[Any, float]:
    """One ingest of ``root`` into a fresh embedded store in a temp folder: ``(report, wall seconds)``;
    ``metadata=False`` skips reading tags and measuring loudness."""
    from soundlib.ingest import ingest
    from soundlib.store import open_store

    tmp = tempfile.mkdtemp(prefix="bench-ingest-")
    try:
        with open_store(db=tmp, create=True) as store:
            t = time.perf_counter()
            report = ingest([str(root)], loaded, store, batch_size=batch, metadata=metadata)
            wall = time.perf_counter() - t
            assert store.count() == report.windows, (store.count(), report.windows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report, wall


def bench_model(res: Result, name: str, overrides: dict[str, Any], root: Path, files: list[dict[str, Any]],
                models_dir: Path, rounds: int, decoded: dict[Any, tuple[np.ndarray, float]]) -> np.ndarray:
    """Encoder-only and ingest runs alternated (E I E I ... E) so load changes on the shared machine hit both;
    each ingest is compared with the mean of the encoder runs on either side of it."""
    import torch

    from soundlib.config import INFERENCE_BATCH

    label = model_label(name, overrides)
    loaded = saved_model(name, models_dir, **overrides)
    model = loaded.model
    cfg = model.config.audio
    if cfg not in decoded:  # models with the same audio settings share one decode
        decoded[cfg] = decode_all(files, cfg)
    windows, t_decode = decoded[cfg]
    n = len(windows)
    batch = INFERENCE_BATCH
    # warm-up: builds the front end, loads backbones, and lets oneDNN create its kernels for both batch shapes
    for size in {batch, n % batch or batch}:
        model.embed_audio(torch.from_numpy(windows[:size]))
    t_enc = [encoder_only(model, windows, batch)]
    t_ing = []
    for _ in range(rounds):
        report, wall = run_ingest(loaded, root, batch)
        if report.skipped or report.windows != n:
            raise RuntimeError(f"ingest wrote {report.windows} windows of {n}; skipped {report.skipped}")
        t_ing.append(wall)
        t_enc.append(encoder_only(model, windows, batch))
    enc = n / median(t_enc)
    ing = n / median(t_ing)
    per_round = [(n / t_ing[i]) / (n / ((t_enc[i] + t_enc[i + 1]) / 2)) for i in range(rounds)]
    res.add(f"ingest {label}", ing, "windows/s", baseline="encoder only (windows in memory)", baseline_value=enc,
            ratio=ing / enc, goal=f">= {GOAL_RATIO}", met=ing / enc >= GOAL_RATIO,
            note=f"{n} windows of {len(files)} files; medians of {rounds} ingests / {rounds + 1} encoder runs; "
                 f"per-round ratios " + ", ".join(f"{r:.2f}" for r in per_round) + "; decode alone (one thread) "
                 f"{n / t_decode:.1f} windows/s")
    res.details[label] = {"model": name, "overrides": overrides, "windows": n, "files": len(files),
                          "batch": batch, "decode_s": t_decode, "encoder_s": t_enc, "ingest_wall_s": t_ing,
                          "per_round_ratio": per_round}
    return windows


def bench_adapt(res: Result, rounds: int) -> None:
    """``adapt_model`` of the demo library vs an ingest of it with the shipped default, alternated (I A I A ...)."""
    from soundlib.config import INFERENCE_BATCH
    from soundlib.models import load_model
    from train.adapt import adapt_model

    library = ROOT / "demo" / "sounds"
    loaded = load_model(None)
    t_ing, t_ad, windows, named = [], [], 0, 0
    tmp = Path(tempfile.mkdtemp(prefix="bench-adapt-"))
    try:
        for i in range(rounds):
            report, wall = run_ingest(loaded, library, INFERENCE_BATCH)
            t_ing.append(wall)
            windows = report.windows
            t = time.perf_counter()
            ad = adapt_model(None, [library], tmp / f"ear-{i}.pt")
            t_ad.append(time.perf_counter() - t)
            named = ad.named_files
            assert ad.windows == windows, (ad.windows, windows)  # every window of every (named) file, as ingest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ing, ad_rate = windows / median(t_ing), windows / median(t_ad)
    res.add("adapt the demo library (shipped default)", ad_rate, "windows/s",
            baseline="ingest of the same library, same model", baseline_value=ing, ratio=ad_rate / ing,
            note=f"{windows} windows of {named} named files; medians of {rounds} alternated runs; adapt "
                 + ", ".join(f"{x:.1f}" for x in t_ad) + " s (model load, reading, fit), ingest "
                 + ", ".join(f"{x:.1f}" for x in t_ing) + " s")
    res.details["adapt"] = {"windows": windows, "adapt_s": t_ad, "ingest_s": t_ing}


def bench_frontend(res: Result, windows: np.ndarray, n_ours: int, n_librosa: int) -> None:
    import librosa

    from encoders.config import AudioConfig
    from soundlib.audio import log_mel_batch

    cfg = AudioConfig()
    ours_in = windows[:n_ours]
    log_mel_batch(ours_in[:8], cfg)  # builds the cached module
    t = time.perf_counter()
    ours = log_mel_batch(ours_in, cfg).numpy()
    t_ours = time.perf_counter() - t

    def plain(y: np.ndarray) -> np.ndarray:
        m = librosa.feature.melspectrogram(
            y=y, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
            n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax, center=True, pad_mode="constant", power=2.0)
        return np.log(m + cfg.log_offset)[:, :cfg.frames]

    plain(windows[0])
    t = time.perf_counter()
    ref = np.stack([plain(w) for w in windows[:n_librosa]])
    t_lib = time.perf_counter() - t
    ours_rate, lib_rate = n_ours / t_ours, n_librosa / t_lib
    diff = float(np.max(np.abs(ours[:n_librosa] - ref)))
    res.add("front end: log_mel_batch", ours_rate, "windows/s", baseline="per-clip librosa melspectrogram + log",
            baseline_value=lib_rate, ratio=ours_rate / lib_rate,
            note=f"{n_ours} / {n_librosa} windows; max |difference| {diff:.2e} (log-mel units)")
    res.details["frontend"] = {"ours_windows": n_ours, "ours_s": t_ours, "librosa_windows": n_librosa,
                               "librosa_s": t_lib, "max_abs_diff": diff}


def baseline_tree(ref: str) -> Path:
    """The source tree of commit ``ref`` (``git archive``), unpacked once under ``bench/.cache``."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", ref], capture_output=True, text=True,
                            check=True).stdout.strip()
    tree = CACHE_DIR / f"baseline-{commit}"
    if not (tree / ".complete").exists():
        shutil.rmtree(tree, ignore_errors=True)
        tree.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", commit], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        (tree / ".complete").write_text(commit)
    return tree


def real_library(source: Path, every: int) -> Path:
    """``source`` itself, or (``every`` > 1) a mirror of every ``every``-th of its files as symbolic links."""
    if every <= 1:
        return source
    mirror = CACHE_DIR / f"real-{source.name}-every{every}"
    if not (mirror / ".complete").exists():
        shutil.rmtree(mirror, ignore_errors=True)
        files = sorted(p for p in source.rglob("*") if p.is_file())[::every]
        for f in files:
            link = mirror / f.relative_to(source)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(f)
        (mirror / ".complete").write_text(str(len(files)))
    return mirror


def cli_ingest(tree: Path, sounds: Path, db: Path, *options: str) -> dict[str, Any]:
    """``python -m cli ingest SOUNDS --db DB --json [OPTIONS]`` run with the code in ``tree``: its JSON report plus
    the process's wall time and peak RSS (MB, from ``wait4``)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "cli", "ingest", str(sounds), "--db", str(db), "--json",
                                 *options], cwd=tree, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if code not in (0, 1):  # 1: some files skipped (the sfx-extra library has two empty WAVs)
            raise RuntimeError(f"ingest with {tree} exited {code}: {err.read().decode(errors='replace')[-800:]}")
        report = json.loads(out.read())
    report["process_wall_s"] = wall
    report["process_cpu_s"] = usage.ru_utime + usage.ru_stime
    report["peak_rss_mb"] = usage.ru_maxrss / 1024
    return report


def store_vectors(db: Path) -> dict[str, np.ndarray]:
    """Every record of the store's default collection: id -> embedding."""
    from soundlib.store import open_store

    out: dict[str, np.ndarray] = {}
    with open_store(db=db) as store:
        for ids, vecs, _ in store.iter_records():
            out.update(zip(ids, vecs))
    return out


def bench_real(res: Result, sounds: Path, every: int, rounds: int, ref: str) -> None:
    """Today's ingest (``ref``) against this tree's on real files, alternated in one run (B N B N ...)."""
    old_tree = baseline_tree(ref)
    library = real_library(sounds, every)
    runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "new": []}
    keep = Path(tempfile.mkdtemp(prefix="bench-ingest-real-"))
    try:
        for r in range(rounds):
            for label, tree in (("baseline", old_tree), ("new", ROOT)):
                db = keep / f"{label}-{r}"
                load = os.getloadavg()
                rep = cli_ingest(tree, library, db)
                rep["loadavg_start"] = [round(x, 2) for x in load]
                runs[label].append(rep)
                print(f"  {label}: {rep['windows']} windows in {rep['seconds']:.1f} s = "
                      f"{rep['windows'] / rep['seconds']:.1f} windows/s (load {load[0]:.1f})", flush=True)
                if r < rounds - 1:
                    shutil.rmtree(db)
        old_v, new_v = store_vectors(keep / f"baseline-{rounds - 1}"), store_vectors(keep / f"new-{rounds - 1}")
        bench_remix(res, library, keep / "remix", runs["new"][-1], new_v)
    finally:
        shutil.rmtree(keep, ignore_errors=True)
    common_ids = sorted(old_v.keys() & new_v.keys())
    a = np.stack([old_v[i] for i in common_ids])
    b = np.stack([new_v[i] for i in common_ids])
    same_model = a.shape == b.shape  # the bundled default itself changed since ``ref`` (128-d heads -> 244-d bridge)
    cos = (np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)) if same_model
           else np.full(len(common_ids), np.nan))
    rate = {k: [x["windows"] / x["seconds"] for x in v] for k, v in runs.items()}
    old_rate, new_rate = median(rate["baseline"]), median(rate["new"])
    per_round = [n / o for n, o in zip(rate["new"], rate["baseline"])]
    rss = {k: max(x["peak_rss_mb"] for x in v) for k, v in runs.items()}
    cpu = {k: median([x["process_cpu_s"] / x["windows"] * 1000 for x in v]) for k, v in runs.items()}
    n_files = runs["new"][-1]["added"]
    res.add("ingest real files, default model: this tree", new_rate, "windows/s",
            baseline=f"the same ingest with the code of {ref} (today's path)", baseline_value=old_rate,
            ratio=new_rate / old_rate, goal=f">= {GOAL_SPEEDUP}x", met=new_rate / old_rate >= GOAL_SPEEDUP,
            note=f"{runs['new'][-1]['windows']} windows of {n_files} files ({library}); medians of {rounds} "
                 f"alternated runs; per-round ratios " + ", ".join(f"{x:.2f}" for x in per_round) +
                 f"; CPU time per window (whole process: imports, model load, ingest) {cpu['new']:.1f} ms vs "
                 f"{cpu['baseline']:.1f} ms ({cpu['baseline'] / cpu['new']:.2f}x less); peak RSS {rss['new']:.0f} MB "
                 f"vs {rss['baseline']:.0f} MB; loads at start "
                 + ", ".join(f"{x['loadavg_start'][0]:.1f}" for k in ("baseline", "new") for x in runs[k]))
    if same_model:
        res.add("embeddings of the same windows, this tree vs today's", float(np.mean(cos)), "cosine",
                note=f"{len(common_ids)} windows; p10 {np.percentile(cos, 10):.4f}, min {np.min(cos):.4f} "
                     f"(1.0: unchanged)")
    else:
        print(f"  embeddings not compared: the default model differs ({a.shape[1]}-d at {ref}, {b.shape[1]}-d here), "
              "so the speed ratio compares two models as well as two ingest paths", flush=True)
    res.details["real"] = {"sounds": str(sounds), "every": every, "baseline_ref": ref, "runs": runs,
                           "dims": [int(a.shape[1]), int(b.shape[1])],
                           "cosine": None if not same_model else {
                               "mean": float(np.mean(cos)), "p10": float(np.percentile(cos, 10)),
                               "p1": float(np.percentile(cos, 1)), "min": float(np.min(cos)),
                               "windows": len(common_ids)}}


def bench_remix(res: Result, library: Path, db: Path, embedded: dict[str, Any], want: dict[str, np.ndarray]) -> None:
    """Bringing a library stored without names up to date (an older soundlib's, or ``--no-names``): this tree's
    ingest *remixes* it from the stored vectors without decoding. Against the ingest that embeds the same files with
    names (``embedded``, this tree's last run above), and checked against that ingest's vectors. Then the names taken
    back out (``--no-names`` again): every mix undone in place, checked against the first ``--no-names`` vectors."""
    first = cli_ingest(ROOT, library, db, "--no-names")
    plain = store_vectors(db)
    remix = _remix_row(res, "ingest of a library stored without names: remixed from the store",
                       cli_ingest(ROOT, library, db), db, want, "a fresh ingest's", embedded,
                       f"; the --no-names ingest before it took {first['seconds']:.1f} s")
    back = _remix_row(res, "names taken back out (--no-names after names): unmixed in the store",
                      cli_ingest(ROOT, library, db, "--no-names"), db, plain, "the --no-names ingest's", embedded)
    res.details["remix"] = {"no_names": first, "remix": remix[0], "max_abs_diff": remix[1], "unmix": back[0],
                            "unmix_max_abs_diff": back[1]}


def _remix_row(res: Result, measure: str, run: dict[str, Any], db: Path, want: dict[str, np.ndarray], whose: str,
               embedded: dict[str, Any], extra: str = "") -> tuple[dict[str, Any], float | None]:
    """One remixing ingest's row: files/s against embedding the same files, and the largest difference between the
    store's vectors and ``want`` (``None``: other ids)."""
    got = store_vectors(db)
    diff = max((float(np.abs(got[i] - want[i]).max()) for i in want), default=float("nan")) \
        if got.keys() == want.keys() else None
    print(f"  {measure}: {run['remixed']} files in {run['seconds']:.1f} s (embedding them: "
          f"{embedded['seconds']:.1f} s; largest difference from {whose} vectors {diff})", flush=True)
    res.add(measure, run["remixed"] / run["seconds"], "files/s",
            baseline="the same files embedded with names (this tree's ingest above)",
            baseline_value=embedded["added"] / embedded["seconds"], ratio=embedded["seconds"] / run["seconds"],
            note=f"{run['remixed']} files remixed, {run['updated']} embedded again, {run['windows']} windows "
                 f"embedded; vectors vs {whose}: "
                 + ("different ids" if diff is None else f"largest absolute difference {diff:.2g}") + extra)
    return run, diff


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--sounds", type=Path, default=REAL_SOUNDS, help=f"real sound library (default {REAL_SOUNDS})")
    p.add_argument("--rounds", type=int, default=0, help="alternated baseline/new ingests (default 2; --quick 1)")
    p.add_argument("--baseline-ref", default=BASELINE_REF, help=f"commit of today's path (default {BASELINE_REF})")
    p.add_argument("--skip-synthetic", action="store_true", help="only the real-file comparison")
    p.add_argument("--skip-real", action="store_true", help="only the generated-library measurements")
    p.add_argument("--shipped", action="store_true",
                   help="the generated-library measurements with the shipped default checkpoint instead of an "
                        "untrained pt-effnet-aisfx-infonce (implies --skip-real; writes results/ingest-shipped.json)")
    args = p.parse_args()
    if args.shipped:
        args.skip_real = True
    n_files, max_seconds = (12, 20.0) if args.quick else (48, 60.0)
    # a run of only the real-file part keeps its own file, so the generated-library rows of a full run stay
    name = "ingest-shipped" if args.shipped else "ingest-real" if args.skip_synthetic else "ingest"
    res = Result(name, args.quick,
                 params={"files": n_files, "max_seconds": max_seconds, "min_seconds": 0.3, "rates": RATES,
                         "formats": [f[0] for f in FORMATS]})
    if not args.skip_real:
        if args.sounds.is_dir():
            bench_real(res, args.sounds, 10 if args.quick else 1, args.rounds or (1 if args.quick else 2),
                       args.baseline_ref)
        else:
            print(f"no real sound library at {args.sounds}: skipping the real-file comparison (--sounds DIR)")
    if args.skip_synthetic:
        res.finish()
        return
    root = CACHE_DIR / f"ingest-library-{n_files}-{max_seconds:g}"
    files = make_library(root, n_files, max_seconds)
    res.details["library"] = {"files": len(files), "seconds": round(sum(f["seconds"] for f in files), 1),
                              "formats": sorted({f["format"] for f in files}),
                              "rates": sorted({f["rate"] for f in files})}
    models_dir = CACHE_DIR / "models"
    windows = None
    decoded: dict[Any, tuple[np.ndarray, float]] = {}
    for name, overrides in (FAST_M5, SHIPPED if args.shipped else PRETRAINED):
        w = bench_model(res, name, overrides, root, files, models_dir, rounds=1 if args.quick else 3,
                        decoded=decoded)
        windows = w if windows is None else windows
    assert windows is not None
    bench_frontend(res, windows, n_ours=min(len(windows), 512), n_librosa=min(len(windows), 32 if args.quick else 128))
    if args.shipped:
        bench_adapt(res, rounds=1 if args.quick else 2)
    res.finish()


if __name__ == "__main__":
    main()
