"""Videos -> training data: 1-fps JPEG frames, the 48 kHz mono audio track, and ``train/val/test.csv`` split by video.

Layout under ``out``::

    frames/<video-id>/000000.jpg ...   frame i is the frame at t = i / fps seconds
    audio/<video-id>.wav               the whole audio track, mono, 48 kHz (PCM_16), trimmed to the track's duration
    done/<video-id>.json               written last: the video is complete (re-runs skip it)
    train.csv, val.csv, test.csv       pair lists (see :mod:`soundlib.lists`): frame at t <-> audio window [t, t+1 s)

A pair is made for every frame time ``t`` whose 1-s window is (almost, >= 90 %) inside the audio track; the few
missing samples of the last window are wrap-padded by the loaders. A video shorter than one window gives one pair at
``t = 0`` (wrap-padded), as the paper does for short clips.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from encoders.atomic import atomic_write
from encoders.config import AudioConfig
from soundlib.errors import SoundlibError
from soundlib.progress import ProgressFn, null_progress
from train.defaults import DEFAULT_CLIP_SECONDS, DEFAULT_FPS, DEFAULT_FRAME_SIZE, DEFAULT_SPLIT, LAYOUTS

#: Split names, in the order of the ``split`` fractions.
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: Fraction of a window that must lie inside the audio track for a pair to be made (the rest is wrap-padded).
MIN_WINDOW_FRACTION = 0.9
#: val/test accept a video only while their pairs stay under this multiple of their target share.
SPLIT_SLACK = 1.5
#: Version of the per-video done-marker; a marker of another version is redone.
MARKER_VERSION = 1


@dataclass
class VideoResult:
    """What happened to one input video.

    Attributes:
        path: the video file as given (resolved).
        video_id: folder/file stem used under ``out`` (stable for a path).
        status: ``"prepared"`` (done now), ``"cached"`` (done by an earlier run) or ``"skipped"``.
        reason: why it was skipped (one line), else ``None``.
        seconds: audio duration in seconds.
        frames: frames written.
        pairs: (frame, 1-s window) pairs.
        split: ``"train"``, ``"val"`` or ``"test"`` (``None`` when skipped).
        category: label from ``--labels`` (``None`` when absent).
    """

    path: str
    video_id: str
    status: str
    reason: str | None = None
    seconds: float = 0.0
    frames: int = 0
    pairs: int = 0
    split: str | None = None
    category: str | None = None


@dataclass
class PrepareReport:
    """Result of :func:`prepare_videos`: one :class:`VideoResult` per input video and the lists written.

    ``layout`` is ``"soundlib"`` or ``"reference"`` (:mod:`train.prepare_reference`: ``lists`` are its ``.txt``
    lists, ``files`` the other files it wrote under ``lists/``; a video's ``pairs`` are its clips).
    """

    out: str
    fps: float
    videos: list[VideoResult] = field(default_factory=list)
    lists: dict[str, str] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    unlabeled: list[str] = field(default_factory=list)
    layout: str = "soundlib"
    files: dict[str, str] = field(default_factory=dict)

    @property
    def usable(self) -> list[VideoResult]:
        return [v for v in self.videos if v.status != "skipped"]

    @property
    def skipped(self) -> list[VideoResult]:
        return [v for v in self.videos if v.status == "skipped"]

    @property
    def seconds(self) -> float:
        return float(sum(v.seconds for v in self.usable))

    @property
    def pairs(self) -> int:
        return int(sum(v.pairs for v in self.usable))

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": self.out, "fps": self.fps, "videos": len(self.videos), "usable": len(self.usable),
            "prepared": sum(v.status == "prepared" for v in self.videos),
            "cached": sum(v.status == "cached" for v in self.videos),
            "skipped": len(self.skipped), "seconds": round(self.seconds, 3), "pairs": self.pairs,
            "lists": self.lists, "rows": self.rows, "unlabeled": self.unlabeled,
            "layout": self.layout, "files": self.files,
            "items": [asdict(v) for v in self.videos],
        }


# --- ids, inputs, labels ----------------------------------------------------------------------------------------

def video_id(path: str | os.PathLike) -> str:
    """Stable, filesystem-safe id of a video: its sanitised stem (<= 40 chars) + 8 hex of the resolved path's hash.

    >>> video_id("/data/My clip (1).mp4")  # doctest: +SKIP
    'My_clip_1-3f2a9c10'
    """
    p = Path(path).resolve()
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", p.stem).strip("._-")[:40] or "video"
    digest = hashlib.sha1(str(p).encode("utf-8")).hexdigest()[:8]
    return f"{stem}-{digest}"


def find_videos(inputs: Iterable[str | os.PathLike]) -> tuple[list[Path], list[VideoResult]]:
    """Expand files and folders (recursively, by video extension) into video files.

    Returns:
        ``(videos, missing)``: resolved, de-duplicated video paths in input order (folders sorted), and a skipped
        :class:`VideoResult` for every input that does not exist.
    """
    from soundlib.media import media_kind

    seen: set[Path] = set()
    videos: list[Path] = []
    missing: list[VideoResult] = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and media_kind(f) == "video"
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
        elif p.is_file():
            found = [p]
        else:
            missing.append(VideoResult(path=str(p), video_id=video_id(p), status="skipped", reason="not found"))
            continue
        for f in found:
            r = f.resolve()
            if r not in seen:
                seen.add(r)
                videos.append(r)
    return videos, missing


def read_labels(path: str | os.PathLike) -> dict[str, str]:
    """Read a labels CSV: ``video,category`` rows (header optional) mapping a video to its category.

    The key may be the video's file name (``clip.mp4``), its stem (``clip``), a path, or its video id.

    Raises:
        SoundlibError: missing or unreadable file, or no usable row.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SoundlibError("labels file not found", path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SoundlibError(f"cannot read labels ({e})", path) from None
    rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
    if not rows:
        raise SoundlibError("empty labels file", path)
    header = [c.strip().lower() for c in rows[0]]
    key_names = ("video", "file", "filename", "path", "id", "name")
    cat_names = ("category", "label", "class")
    ki = ci = None
    if any(h in key_names for h in header) and any(h in cat_names for h in header):
        ki = next(i for i, h in enumerate(header) if h in key_names)
        ci = next(i for i, h in enumerate(header) if h in cat_names)
        rows = rows[1:]
    else:
        ki, ci = 0, 1
    labels: dict[str, str] = {}
    for n, r in enumerate(rows, start=1):
        if len(r) <= max(ki, ci):
            raise SoundlibError(f"line {n}: expected two columns (video, category)", path)
        key, cat = r[ki].strip(), r[ci].strip()
        if key and cat:
            labels[key] = cat
    if not labels:
        raise SoundlibError("no (video, category) rows", path)
    return labels


def _label_for(video: Path, vid: str, labels: dict[str, str]) -> str | None:
    for key in (vid, video.name, video.stem, str(video)):
        if key in labels:
            return labels[key]
    for key, cat in labels.items():  # a relative path given in the labels file
        if "/" in key or os.sep in key:
            try:
                if Path(key).expanduser().resolve() == video:
                    return cat
            except OSError:
                continue
    return None


# --- one video ------------------------------------------------------------------------------------------------

def pair_starts(frame_times: Sequence[float], audio_seconds: float, window: float) -> list[float]:
    """The frame times that get a pair: the 1-s window ``[t, t + window)`` is >= 90 % inside the audio.

    A track shorter than a window still gives one pair at the first frame (wrap-padded by the loaders).
    """
    starts = [t for t in frame_times if t + MIN_WINDOW_FRACTION * window <= audio_seconds + 1e-9]
    if not starts and frame_times and audio_seconds > 0:
        starts = [frame_times[0]]
    return starts


def usable_track(video: Path, sample_rate: int) -> Any:
    """A video's sound track, checked: mono float32 ``(samples,)`` at ``sample_rate``, trimmed to the track's length.

    Raises:
        VideoError: no video stream, no audio track, an empty or silent track, or an undecodable one.
    """
    import numpy as np

    from soundlib.audio import SILENCE_PEAK
    from soundlib.errors import VideoError
    from soundlib.images import video_info

    info = video_info(video)
    if not info.has_video:
        raise VideoError("no video stream", video)
    if not info.has_audio:
        raise VideoError("no audio track", video)
    wave, track_seconds = decode_track(video, sample_rate)
    limit = track_seconds or (info.duration if info.duration and math.isfinite(info.duration) else 0.0)
    if limit > 0:
        exact = int(round(float(limit) * sample_rate))
        if 0 < exact < wave.shape[0]:
            wave = wave[:exact]  # AAC and friends decode a few samples long
    if wave.size == 0:
        raise VideoError("empty audio track", video)
    if float(np.max(np.abs(wave))) < SILENCE_PEAK:
        raise VideoError("silent audio track", video)
    return wave


def _prepare_one(video: Path, vid: str, out: Path, fps: float, acfg: AudioConfig,
                 frame_size: int | None) -> dict[str, Any]:
    """Decode one video into frames + wav; returns the marker dict. Raises SoundlibError for unusable videos."""
    import numpy as np
    import soundfile as sf

    from soundlib.errors import VideoError
    from soundlib.images import save_jpeg, video_frames

    wave = usable_track(video, acfg.sample_rate)
    audio_seconds = wave.shape[0] / acfg.sample_rate

    frame_dir = out / "frames" / vid
    if frame_dir.exists():  # left by an interrupted run: start clean so no stale frame survives
        shutil.rmtree(frame_dir)
    frame_dir.mkdir(parents=True, exist_ok=True)
    times: list[float] = []
    for t, img in video_frames(video, every=1.0 / fps):
        i = int(math.floor(float(t) * fps + 1e-3))  # the latest target time <= t (the frame at or after it)
        if times and i <= int(round(times[-1] * fps)):
            continue  # two frames for one slot: keep the first
        if frame_size:
            img = _shrink(img, frame_size)
        save_jpeg(img, frame_dir / f"{i:06d}.jpg")
        times.append(round(i / fps, 6))
    if not times:
        raise VideoError("no frames decoded", video)

    audio_path = out / "audio" / f"{vid}.wav"
    with atomic_write(audio_path) as tmp:
        sf.write(str(tmp), np.clip(wave, -1.0, 1.0), acfg.sample_rate, subtype="PCM_16")

    starts = pair_starts(times, audio_seconds, acfg.window_seconds)
    return {
        "version": MARKER_VERSION, "source": str(video), "video_id": vid, "fps": fps,
        "seconds": round(audio_seconds, 6), "samples": int(wave.shape[0]), "sample_rate": acfg.sample_rate,
        "frames": len(times), "frame_times": times, "starts": starts,
        "audio": f"audio/{vid}.wav", "frame_dir": f"frames/{vid}",
    }


def decode_track(path: Path, sample_rate: int) -> tuple[Any, float]:
    """Decode a video's first audio track to mono float32 at ``sample_rate``, frames laid end to end.

    Written when :func:`soundlib.audio.load_audio` still placed every frame by its 1 ms Matroska timestamp (which
    garbled AAC/Vorbis); ``load_audio`` now lays frames end to end too, but honours the track's first timestamp
    (e.g. 12 ms of leading silence in play101.mkv) where this function starts at the first decoded sample.
    Folding this into ``load_audio`` is left for later (it shifts prepared audio by that offset).

    Returns:
        ``(samples (n,) float32, track seconds from the stream header or 0.0 when unknown)``.

    Raises:
        VideoError: no audio stream, or the track cannot be decoded.
    """
    import av
    import numpy as np
    import soxr

    from soundlib.audio import RESAMPLE_QUALITY
    from soundlib.errors import VideoError

    try:
        with av.open(str(path)) as c:
            if not c.streams.audio:
                raise VideoError("no audio track", path)
            s = c.streams.audio[0]
            seconds = float(s.duration * s.time_base) if (s.duration and s.time_base) else 0.0
            native = int(s.codec_context.sample_rate or 0)
            if native <= 0:
                raise VideoError("audio track without a sample rate", path)
            mono = av.AudioResampler(format="fltp", layout="mono", rate=native)
            chunks: list[Any] = []
            for frame in c.decode(s):
                for out in mono.resample(frame):
                    chunks.append(out.to_ndarray()[0].astype(np.float32, copy=False))
            for out in mono.resample(None):
                chunks.append(out.to_ndarray()[0].astype(np.float32, copy=False))
    except av.error.FFmpegError as e:
        raise VideoError(f"cannot decode the audio track ({getattr(e, 'strerror', None) or e})", path) from None
    y = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if not np.isfinite(y).all():
        raise VideoError("audio track contains NaN or infinite samples", path)
    if native != sample_rate and y.size:
        y = soxr.resample(y, native, sample_rate, quality=RESAMPLE_QUALITY).astype(np.float32, copy=False)
    return y, seconds


def _shrink(img: Any, size: int) -> Any:
    """Scale a (3, H, W) tensor down so its shorter side is ``size`` (never up)."""
    import torch

    h, w = int(img.shape[-2]), int(img.shape[-1])
    short = min(h, w)
    if short <= size:
        return img
    nh, nw = max(1, round(h * size / short)), max(1, round(w * size / short))
    x = torch.nn.functional.interpolate(img.unsqueeze(0).float(), size=(nh, nw), mode="bilinear",
                                        align_corners=False, antialias=True)
    return x.squeeze(0).clamp(0.0, 1.0)


def _read_marker(path: Path, fps: float) -> dict[str, Any] | None:
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if m.get("version") != MARKER_VERSION or abs(float(m.get("fps", -1)) - fps) > 1e-9:
        return None
    root = path.parent.parent
    if not (root / m["audio"]).is_file() or not (root / m["frame_dir"]).is_dir():
        return None
    return m


def run_videos(files: Sequence[Path], out: Path, report: PrepareReport, key: Callable[[Path], str],
               cached: Callable[[Path, str], dict[str, Any] | None], make: Callable[[Path, str], dict[str, Any]],
               n_pairs: Callable[[dict[str, Any]], int], progress: ProgressFn
               ) -> tuple[dict[str, dict[str, Any]], dict[str, VideoResult]]:
    """Prepare each video once: ``make(video, key)`` decodes it and returns its marker, written last to
    ``out/done/<video_id>.json``; a video whose marker ``cached(marker path, key)`` accepts is not decoded again.

    Every video gets a :class:`VideoResult` in ``report.videos`` (unusable ones ``"skipped"`` with the reason).

    Returns:
        ``({key: marker}, {key: result})`` of the usable videos and of all of them.

    Raises:
        SoundlibError: no video is usable.
    """
    markers: dict[str, dict[str, Any]] = {}
    results: dict[str, VideoResult] = {}
    progress("prepare", 0, len(files))
    for n, video in enumerate(files, start=1):
        k = key(video)
        marker_path = out / "done" / f"{video_id(video)}.json"
        res = VideoResult(path=str(video), video_id=k, status="prepared")
        m = cached(marker_path, k)
        if m is not None:
            res.status = "cached"
        else:
            try:
                m = make(video, k)
            except SoundlibError as e:
                res.status, res.reason = "skipped", e.reason
            except (OSError, ValueError, RuntimeError) as e:  # decoder errors not wrapped by the front end
                res.status, res.reason = "skipped", f"cannot decode ({type(e).__name__}: {e})"
            else:
                with atomic_write(marker_path) as tmp:  # written last: the video is complete
                    tmp.write_text(json.dumps(m, indent=1), encoding="utf-8")
        if m is not None and res.status != "skipped":
            markers[k] = m
            res.seconds, res.frames, res.pairs = float(m["seconds"]), int(m["frames"]), n_pairs(m)
        report.videos.append(res)
        results[k] = res
        progress("prepare", n, len(files), video=video.name)
    if not markers:
        reasons = "; ".join(f"{Path(v.path).name}: {v.reason}" for v in report.skipped[:3])
        raise SoundlibError(f"no usable video ({reasons})")
    return markers, results


# --- split ----------------------------------------------------------------------------------------------------

def split_videos(sizes: dict[str, int], fractions: Sequence[float], seed: int = 0) -> dict[str, str]:
    """Assign videos to train/val/test, deterministically by ``seed``, balancing the number of pairs.

    Videos are shuffled (numpy Generator seeded by ``seed``) and each goes to the split furthest below its target
    share of pairs, except that val and test never grow beyond :data:`SPLIT_SLACK` x their target (a long video goes
    to train instead of swallowing the test set). With >= 3 videos, val and test (when their fraction is > 0) get
    at least one video each (the smallest ones taken from the largest split).

    Args:
        sizes: video id -> number of pairs.
        fractions: (train, val, test) fractions, summing to > 0.
        seed: shuffle seed.

    Returns:
        video id -> split name.
    """
    import numpy as np

    fr = [max(0.0, float(f)) for f in fractions]
    total_f = sum(fr) or 1.0
    fr = [f / total_f for f in fr]
    ids = sorted(sizes)
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    total = float(sum(max(1, sizes[v]) for v in ids))
    filled = [0.0] * len(SPLITS)
    members: dict[str, list[str]] = {s: [] for s in SPLITS}
    for v in order:
        size = max(1, sizes[v])
        # val/test take a video only while it keeps them under 1.5x their target; train takes the rest
        fits = [i for i in range(len(SPLITS))
                if fr[i] > 0 and (i == 0 or filled[i] + size <= SPLIT_SLACK * fr[i] * total)]
        k = max(fits, key=lambda i: (1.0 - filled[i] / (fr[i] * total), -i))  # furthest below its target
        members[SPLITS[k]].append(v)
        filled[k] += size
    if len(ids) >= 3:
        for k in (1, 2):
            s = SPLITS[k]
            if fr[k] > 0 and not members[s]:
                donors = [d for d in ("train", "val", "test") if d != s and len(members[d]) > 1]
                if donors:
                    donor = max(donors, key=lambda d: len(members[d]))
                    smallest = min(members[donor], key=lambda v: (sizes[v], v))
                    members[donor].remove(smallest)
                    members[s].append(smallest)
    return {v: s for s, vs in members.items() for v in vs}


def parse_split(text: str) -> tuple[float, float, float]:
    """Parse ``"0.8,0.1,0.1"`` into three non-negative fractions (normalised to sum to 1).

    Raises:
        SoundlibError: not three non-negative numbers with a positive train share.
    """
    parts = [p.strip() for p in str(text).split(",")]
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        raise SoundlibError(f"bad --split {text!r}: expected three numbers like 0.8,0.1,0.1") from None
    if len(vals) != 3 or any(not math.isfinite(v) or v < 0 for v in vals) or vals[0] <= 0:
        raise SoundlibError(f"bad --split {text!r}: expected three numbers >= 0 (train > 0) like 0.8,0.1,0.1")
    s = sum(vals)
    return (vals[0] / s, vals[1] / s, vals[2] / s)


# --- the command ----------------------------------------------------------------------------------------------

def prepare_videos(
    videos: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    fps: float = DEFAULT_FPS,
    split: Sequence[float] = DEFAULT_SPLIT,
    labels: str | os.PathLike | dict[str, str] | None = None,
    seed: int = 0,
    frame_size: int | None = DEFAULT_FRAME_SIZE,
    progress: ProgressFn | None = None,
    layout: str = LAYOUTS[0],
    clip_seconds: int | None = None,
) -> PrepareReport:
    """Turn videos into frames, audio and pair lists split by video.

    Args:
        videos: video files and/or folders (searched recursively by video extension).
        out: output folder (created).
        fps: frames per second to extract (1 in the paper); frame ``i`` is at ``i / fps`` seconds.
        split: (train, val, test) fractions of the pairs, assigned per video.
        labels: a labels CSV path (or a ready dict) mapping video file name / stem / id to a category.
        seed: seed of the video split.
        frame_size: frames are saved with their shorter side scaled down to this many pixels (``None``: as decoded).
        progress: called as ``progress("prepare", done, total, video=name)``.
        layout: ``"soundlib"`` (above) or ``"reference"``: the paper's reference-code layout of 10-s clips
            (:mod:`train.prepare_reference`; 1 fps only).
        clip_seconds: clip length of the reference layout (default 10 s).

    Returns:
        A :class:`PrepareReport`. Unusable videos (no audio track, no frames, undecodable) are skipped and reported;
        videos prepared by an earlier run (done-marker present) are not decoded again.

    Raises:
        SoundlibError: bad arguments, an unreadable labels file, or no usable video at all.
    """
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise SoundlibError(f"bad fps {fps!r}: must be > 0")
    if len(tuple(split)) != 3:
        raise SoundlibError("split needs three fractions (train, val, test)")
    if layout not in LAYOUTS:
        raise SoundlibError(f"unknown layout {layout!r} (use {' or '.join(LAYOUTS)})")
    if layout == "reference":
        from train.prepare_reference import prepare_reference

        if abs(float(fps) - 1.0) > 1e-9:
            raise SoundlibError(f"the reference layout is 1 fps (frames_1fps); got fps {fps:g}")
        return prepare_reference(videos, out, split, labels=labels, seed=seed, frame_size=frame_size,
                                 clip_seconds=DEFAULT_CLIP_SECONDS if clip_seconds is None else clip_seconds,
                                 progress=progress)
    if clip_seconds is not None:
        raise SoundlibError("clip seconds apply to the reference layout only")
    progress = progress or null_progress
    out = Path(out).expanduser().resolve()
    label_map = labels if isinstance(labels, dict) else (read_labels(labels) if labels else None)
    acfg = AudioConfig()

    files, missing = find_videos(videos)
    report = PrepareReport(out=str(out), fps=float(fps))
    report.videos.extend(missing)
    if not files and not missing:
        raise SoundlibError("no video files found in the given paths")
    out.mkdir(parents=True, exist_ok=True)
    (out / "done").mkdir(exist_ok=True)

    markers, results = run_videos(
        files, out, report, video_id, lambda marker, vid: _read_marker(marker, float(fps)),
        lambda video, vid: _prepare_one(video, vid, out, float(fps), acfg, frame_size),
        lambda m: len(m["starts"]), progress)
    if label_map is not None:
        for vid, res in results.items():
            if res.status != "skipped":
                res.category = _label_for(Path(res.path), vid, label_map)
                if res.category is None:
                    report.unlabeled.append(Path(res.path).name)

    assignment = split_videos({v: len(m["starts"]) for v, m in markers.items()}, split, seed)
    lists: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for vid, m in sorted(markers.items()):
        res = results[vid]
        res.split = assignment[vid]
        for t in m["starts"]:
            i = int(round(t * fps))
            lists[res.split].append({
                "frame": f"{m['frame_dir']}/{i:06d}.jpg", "audio": m["audio"], "start": f"{t:g}",
                "sample": f"{vid}@{t:g}",
                "category": (res.category or "") if label_map is not None else None, "video": vid,
            })
    from soundlib.lists import write_list

    for s in SPLITS:
        path = out / f"{s}.csv"
        _write(path, lists[s], write_list)
        report.lists[s] = str(path)
        report.rows[s] = len(lists[s])
    return report


def _write(path: Path, rows: list[dict[str, Any]], write_list: Any) -> None:
    if rows:
        write_list(path, rows)
    else:  # an empty split still gets a header, so later commands fail with a clear "empty list"
        path.write_text(",".join(("frame", "audio", "start", "sample", "category", "video")) + "\n",
                        encoding="utf-8")
