"""The reference code's data layout (``athenas-lab/aud_vis_correlation_vggsound``): its lists, frames and audio.

Someone who prepared VGG-Sound for the paper's reference code can run ``soundlib eval`` / ``train`` on it as it is.
:func:`soundlib.lists.read_list` hands a list here when it has no CSV header and its lines hold ``|``.

Layout (what the reference code reads; file and line of that code, as read at its commit dff058e, in brackets)::

    lists/vggsound_test.txt        one "<clip id>|<label>" per line, no header  [misc/metadata.py outSplits]
    frames_1fps/<clip id>/image_001.jpg ...   1-fps frames, numbered from 1 (ffmpeg's image_%03d)
    <audio root>/<clip id>.<ext>   the clip's audio (the reference code reads precomputed log-mel .npy features
                                   there instead [eval/gen_aud_embs.py genAudEmb]; soundlib reads the audio
                                   itself, any extension it decodes)
    lists/vid2aud_<split>.json     {clip id: {"label", "pos_aud": [ids], "neg_aud": [ids]}}
                                   [misc/create_pos_neg_aud.py createPosNegPairs]
    lists/vggsound_train_mean_var.npy   per-band log-mel mean (row 0) and variance (row 1): see
                                   :mod:`soundlib.norm_stats`

A clip id is ``<video id>_<second>``: the YouTube id and the start second of the 10-s VGG-Sound clip in that video,
joined with ``_`` from ``vggsound.csv`` [misc/metadata.py processMeta, l. 33: ``parts[0] + "_" + parts[1]``]. The
video id may itself hold ``_`` and ``-`` (``-Q_UXiwWR_c_30``), so the second is what follows the LAST underscore.
(The reference code uses the clip id whole; where it appends a frame's second to one, it takes it off again at the
last underscore [data/vggsound_dataset_contrast.py VGGSound.__getitem__].) The whole clip id names the frame folder
and the audio file; the second is only checked (a whole number).

How a line becomes a pair (:class:`soundlib.lists.PairRow`):

- **frame**: ``frames_1fps/<clip id>/image_005.jpg``, or ``image_001.jpg`` when a clip has no fifth frame
  [eval/main_eval_reco.py getVisList, l. 83-86];
- **audio**: the 1-s window aligned with that frame: frame ``image_00N`` is at second ``N - 1`` of the clip
  ("audio frame starts from 0, vframe starts from 1. So aframe = vframe - 1" [data/vggsound_dataset_contrast.py
  getCorAud, l. 41-50], used by the training loader), so ``start`` is 4 s (or 0 s). This is the paper's
  evaluation ("one video frame and its corresponding 1-second audio sample from each of the test videos",
  section 5). The reference *eval* script instead embeds the mean log-mel of the clip's first <= 5 seconds
  [eval/aud_loader.py TestDataset.__getitem__]; that is not repeated here.
- **sample** = the clip id; **category** = the label; **video** = the video id (splits and negatives by video).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from soundlib.errors import ListError
from soundlib.lists import PairList, PairRow

__all__ = ["FRAMES_DIR", "AUDIO_DIR", "LISTS_DIR", "PREFERRED_FRAME", "FALLBACK_FRAME", "ReferenceRoots",
           "is_reference_text", "split_clip_id", "frame_name", "pick_frame", "AudioIndex", "read_reference_list",
           "write_reference_list", "Vid2Aud", "read_vid2aud", "vid2aud", "write_vid2aud", "labels2vid"]

#: Folder names of the layout (``prepare --layout reference`` writes them; reading looks for them by default).
FRAMES_DIR, AUDIO_DIR, LISTS_DIR = "frames_1fps", "audio", "lists"
#: The frame the reference evaluation takes (``image_005.jpg``), and the one it falls back to.
PREFERRED_FRAME, FALLBACK_FRAME = 5, 1

_SECOND = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class ReferenceRoots:
    """Where a reference-format list's frames and audio are (``--frames-root``, ``--audio-root``).

    ``None``: the ``frames_1fps`` / ``audio`` folder in the list's folder or its parent (the layout ``soundlib
    prepare --layout reference`` writes: ``OUT/lists/*.txt`` next to ``OUT/frames_1fps`` and ``OUT/audio``).
    """

    frames: Path | None = None
    audio: Path | None = None

    @classmethod
    def of(cls, frames: str | os.PathLike | None, audio: str | os.PathLike | None) -> "ReferenceRoots":
        return cls(Path(frames).expanduser() if frames else None, Path(audio).expanduser() if audio else None)


def is_reference_text(lines: Sequence[str]) -> bool:
    """True when the first non-empty line holds ``|`` and is no CSV header (no ``frame`` and ``audio`` columns)."""
    first = next((ln for ln in lines if ln.strip()), "")
    if "|" not in first:
        return False
    cols = {c.strip() for c in first.split(",")}
    return not {"frame", "audio"} <= cols


def split_clip_id(clip_id: str) -> tuple[str, int]:
    """``"-Q_UXiwWR_c_30"`` -> ``("-Q_UXiwWR_c", 30)``: split on the last underscore.

    Raises:
        ValueError: no underscore, an empty video id, or a second that is not a whole number.
    """
    video, sep, second = clip_id.rpartition("_")
    if not sep or not video or not _SECOND.fullmatch(second):
        raise ValueError(f"bad clip id {clip_id!r}: expected <video id>_<second> (second: a whole number)")
    return video, int(second)


def frame_name(n: int) -> str:
    """The file name of frame ``n`` (1-based, as ffmpeg's ``image_%03d.jpg`` numbers them)."""
    return f"image_{n:03d}.jpg"


def pick_frame(frames_root: Path, clip_id: str) -> tuple[Path, int] | None:
    """The frame the reference evaluation uses for a clip: ``image_005.jpg``, else ``image_001.jpg``.

    Returns:
        ``(path, frame number)``, or ``None`` when neither exists.
    """
    folder = frames_root / clip_id
    for n in (PREFERRED_FRAME, FALLBACK_FRAME):
        p = folder / frame_name(n)
        if p.is_file():
            return p, n
    return None


class AudioIndex:
    """The audio files of an audio root by clip id: ``<root>/<clip id>.<ext>`` with any extension soundlib decodes.

    The folder is listed once. Audio extensions are preferred; a video file (whose sound track is decoded) is taken
    only when no audio file has that id. Other files (the reference code's ``.npy`` features, notes) are ignored.
    """

    def __init__(self, root: Path) -> None:
        from soundlib.media import media_kind

        self.root = root
        self._audio: dict[str, list[str]] = {}
        self._video: dict[str, list[str]] = {}
        try:
            entries = sorted(os.scandir(root), key=lambda e: e.name)
        except OSError as e:
            raise ListError(f"cannot list the audio root ({e.strerror or e})", str(root)) from None
        for entry in entries:
            stem, dot, _ = entry.name.rpartition(".")
            if not dot or not stem:
                continue
            kind = media_kind(entry.name)
            if kind == "audio":
                self._audio.setdefault(stem, []).append(entry.name)
            elif kind == "video":
                self._video.setdefault(stem, []).append(entry.name)

    def find(self, clip_id: str) -> Path:
        """The clip's audio file.

        Raises:
            LookupError: none, or several of the same kind (the message names them).
        """
        for table in (self._audio, self._video):
            names = table.get(clip_id)
            if names and len(names) == 1:
                return self.root / names[0]
            if names:
                raise LookupError(f"several audio files for {clip_id}: {', '.join(names)} (keep one)")
        raise LookupError(f"audio file not found: {self.root / clip_id}.*")


def _default_root(list_path: Path, given: Path | None, name: str, option: str) -> Path:
    if given is not None:
        if not given.is_dir():
            raise ListError(f"{option}: not a folder: {given}", str(list_path))
        return given
    for base in (list_path.parent, list_path.parent.parent):
        if (base / name).is_dir():
            return base / name
    raise ListError(f"a reference-format list needs {option} DIR (no {name}/ folder next to the list or its "
                    "folder)", str(list_path))


def read_reference_list(path: Path, lines: Sequence[str], roots: ReferenceRoots | None = None) -> PairList:
    """Read a reference-format list (see the module docstring for how a line becomes a pair).

    Args:
        path: the list file (for messages and the default roots).
        lines: its lines (``path``'s text, already read).
        roots: where the frames and the audio are (default: next to the list, see :class:`ReferenceRoots`).

    Returns:
        A :class:`~soundlib.lists.PairList`; malformed lines (no single ``|``, a bad clip id) and lines whose frame
        or audio file is missing are left out and described in ``errors`` with their 1-based line numbers. A clip
        id listed twice is kept once (reported).

    Raises:
        ListError: the frames or audio root cannot be found or listed.
    """
    roots = roots or ReferenceRoots()
    frames_root = _default_root(path, roots.frames, FRAMES_DIR, "--frames-root").resolve()
    audio = AudioIndex(_default_root(path, roots.audio, AUDIO_DIR, "--audio-root").resolve())
    where = str(path)
    rows: list[PairRow] = []
    errors: list[ListError] = []
    seen: set[str] = set()
    for i, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        if line.count("|") != 1:
            errors.append(ListError(f"expected <video id>_<second>|<label>, got {line[:80]!r}", where, i))
            continue
        clip_id, label = (part.strip() for part in line.split("|"))
        try:
            video, _ = split_clip_id(clip_id)
        except ValueError as e:
            errors.append(ListError(str(e), where, i))
            continue
        if clip_id in seen:
            errors.append(ListError(f"duplicate clip id {clip_id} (kept the first)", where, i))
            continue
        picked = pick_frame(frames_root, clip_id)
        if picked is None:
            errors.append(ListError(f"frame file not found: {frames_root / clip_id}/{frame_name(PREFERRED_FRAME)} "
                                    f"(nor {frame_name(FALLBACK_FRAME)})", where, i))
            continue
        try:
            audio_path = audio.find(clip_id)
        except LookupError as e:
            errors.append(ListError(str(e), where, i))
            continue
        frame, n = picked
        seen.add(clip_id)
        rows.append(PairRow(frame=frame, audio=audio_path, start=float(n - 1), sample=clip_id,
                            category=label or None, video=video, line=i))
    return PairList(path=path, rows=rows, errors=errors)


def write_reference_list(path: Path, clips: Iterable[tuple[str, str]]) -> None:
    """Write ``(clip id, label)`` pairs as ``<clip id>|<label>`` lines (no header), atomically.

    Raises:
        ValueError: a clip id that :func:`split_clip_id` refuses, or a ``|`` or line break in an id or a label.
    """
    from encoders.atomic import atomic_write

    out = []
    for clip_id, label in clips:
        split_clip_id(clip_id)
        if any(c in s for s in (clip_id, label) for c in "|\n\r"):
            raise ValueError(f"'|' or a line break in {clip_id!r} / {label!r}")
        out.append(f"{clip_id}|{label}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        tmp.write_text("".join(out), encoding="utf-8")


@dataclass(frozen=True)
class Vid2Aud:
    """One entry of a ``vid2aud_<split>.json``: the clip's label, its positive and its negative audio clip ids."""

    label: str
    pos_aud: tuple[str, ...]
    neg_aud: tuple[str, ...]


def read_vid2aud(path: str | os.PathLike) -> dict[str, Vid2Aud]:
    """Read a ``vid2aud_<split>.json`` (``{clip id: {"label", "pos_aud": [ids], "neg_aud": [ids]}}``).

    Raises:
        ListError: missing, unreadable, not JSON, or not of that shape (the first bad entry is named).
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ListError("pairs file not found", str(path)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ListError(f"cannot read ({getattr(e, 'strerror', None) or e})", str(path)) from None
    except ValueError as e:
        raise ListError(f"not JSON ({e})", str(path)) from None
    if not isinstance(doc, dict) or not doc:
        raise ListError('expected {clip id: {"label", "pos_aud", "neg_aud"}}', str(path))
    out: dict[str, Vid2Aud] = {}
    for key, v in doc.items():
        ok = (isinstance(v, dict) and all(isinstance(v.get(f), list) for f in ("pos_aud", "neg_aud"))
              and all(isinstance(x, str) for f in ("pos_aud", "neg_aud") for x in v[f]))
        if not ok:
            raise ListError(f"entry {key!r}: expected {{\"label\", \"pos_aud\": [ids], \"neg_aud\": [ids]}}",
                            str(path))
        out[str(key)] = Vid2Aud(str(v.get("label", "")), tuple(v["pos_aud"]), tuple(v["neg_aud"]))
    return out


def vid2aud(clips: Sequence[tuple[str, str]]) -> dict[str, dict[str, object]]:
    """The reference's positive / negative audio of each clip of a split: positives are the split's clips with the
    same label (the clip itself included), negatives all the others [misc/create_pos_neg_aud.py createPosNegPairs]."""
    by_label: dict[str, list[str]] = {}
    for clip_id, label in clips:
        by_label.setdefault(label, []).append(clip_id)
    ids = [c for c, _ in clips]
    out: dict[str, dict[str, object]] = {}
    for clip_id, label in clips:
        pos = by_label[label]
        pos_set = set(pos)
        out[clip_id] = {"label": label, "neg_aud": [c for c in ids if c not in pos_set], "pos_aud": list(pos)}
    return out


def labels2vid(clips: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """``{label: [clip ids]}`` (the reference's ``lists/labels2vid.json``, which its evaluation opens)."""
    out: dict[str, list[str]] = {}
    for clip_id, label in clips:
        out.setdefault(label, []).append(clip_id)
    return out


def write_vid2aud(path: Path, doc: dict[str, object]) -> None:
    """Write a JSON document as the reference code does (sorted keys, indent 2), atomically."""
    from encoders.atomic import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
