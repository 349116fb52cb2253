"""Videos -> the paper's reference-code layout (``soundlib prepare --layout reference``), so that our prepared data
feeds the reference code (``athenas-lab/aud_vis_correlation_vggsound``) and soundlib's reference-format reader
(:mod:`soundlib.reference_lists`) alike.

Each video is cut into clips of ``clip_seconds`` (10 s, as VGG-Sound's) named ``<video id>_<second>``: the video's
name (its file stem when that is only letters, digits, ``_`` and ``-`` and no other input has it, else
:func:`train.prepare.video_id`) and the clip's start second in it, as VGG-Sound names a YouTube clip. Layout under
``out``::

    frames_1fps/<clip id>/image_001.jpg ...   frame N of a clip is at its second N - 1 (1 fps, ffmpeg's numbering)
    audio/<clip id>.wav                        the clip's audio, mono 48 kHz PCM_16
    lists/vggsound_{train,val,test}.txt        <clip id>|<label>, one clip per line, split by video
    lists/{train,val,test}.csv                 the same rows as soundlib pair lists (read back from the .txt)
    lists/vid2aud_{train,val,test}.json        {clip id: {label, pos_aud, neg_aud}} within the split
    lists/labels2vid.json                      {label: [clip ids]} (the reference evaluation opens it)
    lists/vggsound_train_mean_var.npy          per-band log-mel mean and variance of the train clips, (2, 64)
    done/<video key>.json                      written last per video: re-runs skip it

A frame is kept when its 1-s window is >= 90 % inside the audio track (as in our layout), so the window aligned with
``image_005.jpg`` (second 4) exists whenever that frame does. The label of a clip is its video's entry in
``labels``, else the name of the video's folder when the video lies in a subfolder of an input folder, else
``unlabelled``. The mean and variance are taken over every 1-s window of every train clip, each window's 100
log-mel frames (:class:`encoders.frontend.LogMel`), per mel band; the reference repository does not hold the
script that made its own file.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterable, Sequence

from encoders.atomic import atomic_write
from encoders.config import AudioConfig
from soundlib.errors import SoundlibError
from soundlib.progress import ProgressFn
from train.defaults import DEFAULT_CLIP_SECONDS
from train.prepare import (MIN_WINDOW_FRACTION, SPLITS, PrepareReport, _label_for, _shrink, _write, find_videos,
                           read_labels, run_videos, split_videos, usable_track, video_id)

__all__ = ["UNLABELLED", "MARKER_VERSION", "reference_ids", "prepare_reference"]

#: The label of a clip whose video has none.
UNLABELLED = "unlabelled"
#: Version of the per-video done-marker of this layout.
MARKER_VERSION = 1

_SAFE = re.compile(r"[A-Za-z0-9_-]+")


def reference_ids(videos: Sequence[Path]) -> dict[Path, str]:
    """The name of each video in clip ids: its stem when it is safe (letters, digits, ``_``, ``-``) and unique among
    ``videos``, else :func:`train.prepare.video_id` (sanitised stem + path hash)."""
    stems: dict[str, int] = {}
    for v in videos:
        stems[v.stem] = stems.get(v.stem, 0) + 1
    return {v: v.stem if (_SAFE.fullmatch(v.stem) and stems[v.stem] == 1) else video_id(v) for v in videos}


def _folder_label(video: Path, inputs: Sequence[Path]) -> str | None:
    """The video's folder name when it lies in a subfolder of an input folder, else ``None``."""
    for root in inputs:
        try:
            rel = video.relative_to(root)
        except ValueError:
            continue
        return video.parent.name if len(rel.parts) > 1 else None
    return None


def _cut_clips(video: Path, ref: str, out: Path, clip_seconds: int, acfg: AudioConfig,
               frame_size: int | None) -> dict[str, Any]:
    """Decode one video into its clips' frames and audio; returns the marker. Raises SoundlibError."""
    import numpy as np
    import soundfile as sf

    from soundlib.errors import VideoError
    from soundlib.images import save_jpeg, video_frames
    from soundlib.reference_lists import AUDIO_DIR, FRAMES_DIR, frame_name

    wave = usable_track(video, acfg.sample_rate)
    sr = acfg.sample_rate
    audio_seconds = wave.shape[0] / sr

    def keep(second: int) -> bool:  # the frame's 1-s window is (almost) inside the track; a short track keeps 0
        return second + MIN_WINDOW_FRACTION * acfg.window_seconds <= audio_seconds + 1e-9 or second == 0

    def clip_id(c: int) -> str:
        return f"{ref}_{c * clip_seconds}"

    for old in [*(out / FRAMES_DIR).glob(f"{ref}_*"), *(out / AUDIO_DIR).glob(f"{ref}_*.wav")]:
        if Path(old.stem if old.suffix == ".wav" else old.name).name.rpartition("_")[0] != ref:
            continue  # another video's clip
        if old.is_dir():  # left by an interrupted run: start clean
            shutil.rmtree(old)
        else:
            old.unlink()
    frames: dict[int, int] = {}  # clip index -> frames written
    last = -1
    for t, img in video_frames(video, every=1.0):
        second = int(math.floor(float(t) + 1e-3))
        if second <= last or not keep(second):
            continue
        last = second
        c, n = divmod(second, clip_seconds)
        if frame_size:
            img = _shrink(img, frame_size)
        save_jpeg(img, out / FRAMES_DIR / clip_id(c) / frame_name(n + 1))
        frames[c] = frames.get(c, 0) + 1
    if not frames:
        raise VideoError("no frames decoded", video)
    clips = []
    for c in sorted(frames):
        start = c * clip_seconds
        seg = np.clip(wave[start * sr:(start + clip_seconds) * sr], -1.0, 1.0)
        with atomic_write(out / AUDIO_DIR / f"{clip_id(c)}.wav") as tmp:
            sf.write(str(tmp), seg, sr, subtype="PCM_16")
        clips.append({"id": clip_id(c), "start": start, "frames": frames[c], "seconds": round(seg.size / sr, 6)})
    return {"version": MARKER_VERSION, "layout": "reference", "source": str(video), "ref": ref,
            "clip_seconds": clip_seconds, "seconds": round(audio_seconds, 6), "frames": sum(frames.values()),
            "clips": clips}


def _read_marker(path: Path, ref: str, clip_seconds: int) -> dict[str, Any] | None:
    from soundlib.reference_lists import AUDIO_DIR, FRAMES_DIR

    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (m.get("version") != MARKER_VERSION or m.get("layout") != "reference" or m.get("ref") != ref
            or m.get("clip_seconds") != clip_seconds):
        return None
    root = path.parent.parent
    for c in m.get("clips", []):
        if not (root / AUDIO_DIR / f"{c['id']}.wav").is_file() or not (root / FRAMES_DIR / c["id"]).is_dir():
            return None
    return m


def _rel(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` (``../frames_1fps/...``), so the CSV lists move with the folder."""
    return Path(os.path.relpath(path, base)).as_posix()


def _train_mean_var(audio_files: Iterable[Path], acfg: AudioConfig) -> tuple[Any, Any]:
    """Per-band log-mel mean and variance over every 1-s window of the files (float64 accumulation)."""
    from soundlib.audio import RunningBandStats, cut_windows, load_audio, log_mel_batch, window_starts

    acc = RunningBandStats(floor=0.0)
    for path in audio_files:
        y = load_audio(path, acfg.sample_rate)
        starts = window_starts(y.size / acfg.sample_rate, acfg, max_windows=0)
        acc.update(log_mel_batch(cut_windows(y, starts, acfg), acfg))
    mean, std = acc.result()
    return mean.numpy(), std.double().numpy() ** 2


def prepare_reference(
    videos: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    split: Sequence[float],
    labels: str | os.PathLike | dict[str, str] | None = None,
    seed: int = 0,
    frame_size: int | None = None,
    clip_seconds: int = DEFAULT_CLIP_SECONDS,
    progress: ProgressFn | None = None,
) -> PrepareReport:
    """Write the reference layout (module docstring) from videos; called by :func:`train.prepare.prepare_videos`.

    Args:
        videos: video files and/or folders (searched recursively by video extension).
        out: output folder (created).
        split: (train, val, test) fractions of the clips, assigned per video.
        labels: a labels CSV path (or a ready dict) mapping video file name / stem / id to a label.
        seed: seed of the video split.
        frame_size: frames are saved with their shorter side scaled down to this (``None``: as decoded).
        clip_seconds: length of a clip (whole seconds >= 1).
        progress: called as ``progress("prepare", done, total, video=name)`` and ``("norm stats", done, total)``.

    Returns:
        A :class:`~train.prepare.PrepareReport` (a video's ``pairs`` are its clips; ``lists`` the ``.txt`` lists,
        ``files`` everything else written under ``lists/``).

    Raises:
        SoundlibError: bad arguments, an unreadable labels file, a label holding ``|``, or no usable video.
    """
    from soundlib.lists import write_list
    from soundlib.progress import null_progress
    from soundlib.reference_lists import (LISTS_DIR, ReferenceRoots, labels2vid, read_reference_list, vid2aud,
                                          write_reference_list, write_vid2aud)
    from soundlib.norm_stats import write_norm_stats

    if not (isinstance(clip_seconds, int) and clip_seconds >= 1):
        raise SoundlibError(f"bad clip length {clip_seconds!r}: whole seconds >= 1")
    progress = progress or null_progress
    out = Path(out).expanduser().resolve()
    label_map = labels if isinstance(labels, dict) else (read_labels(labels) if labels else None)
    acfg = AudioConfig()
    inputs = [Path(v).expanduser().resolve() for v in videos]
    files, missing = find_videos(inputs)
    report = PrepareReport(out=str(out), fps=1.0, layout="reference")
    report.videos.extend(missing)
    if not files and not missing:
        raise SoundlibError("no video files found in the given paths")
    out.mkdir(parents=True, exist_ok=True)
    (out / "done").mkdir(exist_ok=True)
    refs = reference_ids(files)
    markers, results = run_videos(
        files, out, report, refs.__getitem__, lambda marker, ref: _read_marker(marker, ref, clip_seconds),
        lambda video, ref: _cut_clips(video, ref, out, clip_seconds, acfg, frame_size),
        lambda m: len(m["clips"]), progress)
    for ref, res in results.items():
        if res.status == "skipped":
            continue
        video = Path(res.path)
        label = _label_for(video, video_id(video), label_map) if label_map is not None else None
        if label_map is not None and label is None:
            report.unlabeled.append(video.name)
        res.category = label or _folder_label(video, inputs) or UNLABELLED

    assignment = split_videos({r: len(m["clips"]) for r, m in markers.items()}, split, seed)
    by_split: dict[str, list[tuple[str, str]]] = {s: [] for s in SPLITS}
    for ref, m in sorted(markers.items()):
        res = results[ref]
        res.split = assignment[ref]
        by_split[res.split] += [(c["id"], str(res.category)) for c in m["clips"]]
    lists_dir = out / LISTS_DIR
    roots = ReferenceRoots(out / "frames_1fps", out / "audio")
    for s in SPLITS:
        txt = lists_dir / f"vggsound_{s}.txt"
        try:
            write_reference_list(txt, by_split[s])
        except ValueError as e:
            raise SoundlibError(f"cannot write the reference list ({e})", str(txt)) from None
        rows = read_reference_list(txt, txt.read_text(encoding="utf-8").splitlines(), roots).rows
        csv_path = lists_dir / f"{s}.csv"
        _write(csv_path, [{"frame": _rel(r.frame, lists_dir), "audio": _rel(r.audio, lists_dir),
                           "start": f"{r.start:g}", "sample": r.sample, "category": r.category, "video": r.video}
                          for r in rows], write_list)
        pairs_path = lists_dir / f"vid2aud_{s}.json"
        write_vid2aud(pairs_path, vid2aud(by_split[s]))
        report.lists[s] = str(txt)
        report.rows[s] = len(by_split[s])
        report.files[f"{s}.csv"] = str(csv_path)
        report.files[f"vid2aud_{s}.json"] = str(pairs_path)
    all_clips = [c for s in SPLITS for c in by_split[s]]
    write_vid2aud(lists_dir / "labels2vid.json", labels2vid(all_clips))
    report.files["labels2vid.json"] = str(lists_dir / "labels2vid.json")
    train_audio = [out / "audio" / f"{c}.wav" for c, _ in by_split["train"]]
    if train_audio:
        progress("norm stats", 0, 1)
        mean, var = _train_mean_var(train_audio, acfg)
        stats = lists_dir / "vggsound_train_mean_var.npy"
        write_norm_stats(stats, mean, var)
        report.files["vggsound_train_mean_var.npy"] = str(stats)
        progress("norm stats", 1, 1)
    return report
