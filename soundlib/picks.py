"""Exporting picked sounds: the files (or a clip of each) plus ``picks.csv``, ``picks.json`` and ``picks.m3u``.

Used by ``soundlib query ... --export DIR`` and by the web page's basket (a ZIP download).

What is written, into a folder (:func:`export_picks`) or a ZIP (:func:`picks_zip`), the same content either way:

- each picked sound: the original file, byte for byte; or, with ``clip=SECONDS``, its best window
  (``start`` .. ``start + window``) with ``clip`` seconds of handles on each side (cut at the file's ends), in the
  file's own format when soundfile can write it (PCM is copied sample for sample), else as WAV (mono, the file's
  sample rate: formats only FFmpeg reads, such as m4a);
- ``picks.csv`` and ``picks.json``: one row per pick (rank, file in the export, original path, start, score,
  query, category, clip span);
- ``picks.m3u``: an extended M3U playlist (UTF-8) of the exported files, in rank order.

Rules:

- **Never overwrites.** A name that exists already gets a suffix (``door.wav`` -> ``door-2.wav``); a file is
  created with ``O_EXCL``, so not even a dangling link is followed.
- **Never writes outside the folder.** Names are reduced to one safe path component (no separators, no leading
  dot, no control characters, at most :data:`MAX_NAME_BYTES` bytes of UTF-8) and the target's folder is checked
  against the resolved export folder.
- A pick whose file cannot be read is skipped with its reason (``ExportReport.skipped``); the rest is exported.
- The same file picked twice is copied once (with ``clip``: once per distinct window).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import shutil
import tempfile
import unicodedata
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable

from soundlib.errors import SoundlibError

#: Longest exported file name, in bytes of UTF-8 (file systems allow 255).
MAX_NAME_BYTES = 180
#: Names of the listing files written beside the sounds.
LISTING_NAMES = ("picks.csv", "picks.json", "picks.m3u")
#: Seconds of the window a pick's ``start`` begins (the model's analysis window).
WINDOW_SECONDS = 1.0
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')


class ExportError(SoundlibError):
    """The export folder cannot be used (a file, not writable), or an export cannot be written."""


@dataclass
class Pick:
    """One picked sound.

    Attributes:
        path: the sound file.
        start: start of its best window, seconds.
        score: the ranking's score (a distance for picture and sound queries: smaller is closer; a relevance for
            word searches: larger is better).
        query: what it was picked for (the query's inputs or words).
        category: the sound's category, if known.
        description: the sound's description (embedded metadata), if known.
    """

    path: Path
    start: float
    score: float
    query: str
    category: str | None = None
    description: str | None = None


@dataclass
class ExportedPick:
    """A pick as exported: ``file`` is its name in the folder (or ZIP); ``clip_start``/``clip_end`` the span cut
    (seconds of the original; ``None`` for a whole-file copy)."""

    rank: int
    pick: Pick
    file: str
    clip_start: float | None = None
    clip_end: float | None = None

    def row(self) -> dict[str, Any]:
        """One row of ``picks.csv`` / ``picks.json``."""
        p = self.pick
        return {"rank": self.rank, "file": self.file, "path": printable(str(p.path)), "start": round(p.start, 3),
                "score": round(float(p.score), 6), "query": printable(p.query),
                "category": printable(p.category or ""), "description": printable(p.description or ""),
                "clip_start": None if self.clip_start is None else round(self.clip_start, 3),
                "clip_end": None if self.clip_end is None else round(self.clip_end, 3)}


@dataclass
class ExportReport:
    """What an export wrote.

    Attributes:
        dest: the export folder (resolved), or ``"<zip>"`` for :func:`picks_zip`.
        picks: the exported picks, in rank order.
        listings: names of the listing files written (``picks.csv`` ... or their suffixed names).
        skipped: ``(path, reason)`` of picks that could not be exported.
        clip: the handles in seconds, ``None`` for whole files.
        bytes: bytes written (sound files and listings).
    """

    dest: str
    picks: list[ExportedPick] = field(default_factory=list)
    listings: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    clip: float | None = None
    bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document of an export."""
        return {"dest": printable(self.dest), "clip": self.clip, "picks": [e.row() for e in self.picks],
                "listings": list(self.listings), "bytes": self.bytes,
                "skipped": [{"path": printable(p), "reason": r} for p, r in self.skipped]}


# --- names --------------------------------------------------------------------------------------------------------

def printable(text: str) -> str:
    """``text`` as valid UTF-8: bytes of a non-UTF-8 file name (``os.fsdecode`` surrogates) become ``\\xNN``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def safe_name(name: str, default: str = "sound") -> str:
    """One safe file name from ``name``: separators, control and reserved characters -> ``_``; no leading dot or
    space, no trailing dot or space; undecodable bytes -> ``_``; NFC; at most :data:`MAX_NAME_BYTES` of UTF-8
    (the extension kept). Empty -> ``default``."""
    name = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace").replace("\ufffd", "_")
    name = unicodedata.normalize("NFC", _UNSAFE.sub("_", name)).strip(" .")
    name = "".join(c if c.isprintable() else "_" for c in name)
    if not name or name.lstrip("_") == "":
        name = default
    stem, ext = os.path.splitext(name)
    if len(ext.encode("utf-8")) > 16:
        stem, ext = name, ""
    budget = MAX_NAME_BYTES - len(ext.encode("utf-8"))
    raw = stem.encode("utf-8")
    if len(raw) > budget:
        stem = raw[:budget].decode("utf-8", "ignore").rstrip(" .") or default
    return stem + ext


def _numbered(name: str, n: int) -> str:
    stem, ext = os.path.splitext(name)
    return f"{stem}-{n}{ext}"


def _clip_name(path: Path, a: float, b: float, ext: str) -> str:
    return f"{path.stem}_{a:.1f}-{b:.1f}s{ext}"


# --- clips --------------------------------------------------------------------------------------------------------

@dataclass
class _Clip:
    """A cut span ready to write: samples ``(n, channels)``, rate, libsndfile format/subtype, span in seconds."""

    data: Any
    sample_rate: int
    format: str
    subtype: str | None
    start: float
    end: float
    ext: str


def _dtype_for(subtype: str) -> str:
    """Read PCM as int32 (libsndfile shifts it exactly), floats as float64, the rest (lossy) as float32."""
    if subtype.startswith("PCM_") or subtype in ("ULAW", "ALAW"):
        return "int32"
    return "float64" if subtype in ("FLOAT", "DOUBLE") else "float32"


def cut_clip(path: str | os.PathLike, start: float, handles: float, window: float = WINDOW_SECONDS) -> _Clip:
    """Cut ``[start - handles, start + window + handles]`` (clamped to the file) out of a sound file.

    Args:
        path: the sound file.
        start: the best window's start, seconds.
        handles: seconds kept on each side of the window (>= 0).
        window: the window's length, seconds.

    Returns:
        The span with the file's own format when soundfile can write it, else WAV PCM_16 mono.

    Raises:
        AudioError: the file cannot be decoded, or ``start`` lies past its end.
    """
    import soundfile as sf

    from soundlib.errors import AudioError

    p = Path(path)
    try:
        info = sf.info(str(p))
    except (RuntimeError, sf.LibsndfileError):
        info = None
    except OSError as e:
        raise AudioError(f"cannot read ({e.strerror or e})", str(p)) from None
    if info is not None and info.frames > 0:
        sr = int(info.samplerate)
        a = max(0, int(round((start - handles) * sr)))
        b = min(int(info.frames), int(round((start + window + handles) * sr)))
        if a >= b:
            raise AudioError(f"start {start:.3f} s is past the end ({info.frames / sr:.3f} s)", str(p))
        try:
            data, _ = sf.read(str(p), start=a, stop=b, dtype=_dtype_for(info.subtype), always_2d=True)
        except (RuntimeError, sf.LibsndfileError) as e:
            raise AudioError(f"cannot decode ({getattr(e, 'error_string', None) or e})", str(p)) from None
        fmt, subtype = info.format, info.subtype
        if fmt not in sf.available_formats() or not sf.check_format(fmt, subtype):
            fmt, subtype = "WAV", "PCM_16"
        ext = p.suffix if fmt == info.format and p.suffix else ".wav"
        return _Clip(data, sr, fmt, subtype, a / sr, a / sr + len(data) / sr, ext)
    # formats only FFmpeg decodes (m4a, wma, ...): mono at the file's own rate, as WAV
    from soundlib.audio import load_audio, probe_audio

    pinfo = probe_audio(p)
    lo = max(0.0, start - handles)
    hi = min(pinfo.duration, start + window + handles)
    if lo >= hi:
        raise AudioError(f"start {start:.3f} s is past the end ({pinfo.duration:.3f} s)", str(p))
    y = load_audio(p, sample_rate=pinfo.sample_rate, offset=lo, duration=hi - lo)
    return _Clip(y[:, None], pinfo.sample_rate, "WAV", "PCM_16", lo, lo + len(y) / pinfo.sample_rate, ".wav")


def _write_clip(clip: _Clip, out: IO[bytes], source: Path) -> None:
    """Encode ``clip`` into ``out``.

    Raises:
        ExportError: libsndfile refuses (named with ``source``).
    """
    import soundfile as sf

    try:
        with sf.SoundFile(out, "w", samplerate=clip.sample_rate, channels=clip.data.shape[1], format=clip.format,
                          subtype=clip.subtype) as f:
            block = 1 << 15  # Vorbis: libsndfile crashes on very large single writes
            for i in range(0, len(clip.data), block):
                f.write(clip.data[i:i + block])
    except (RuntimeError, ValueError, TypeError) as e:  # LibsndfileError is a RuntimeError
        raise ExportError(f"cannot encode the clip as {clip.format} ({e})", str(source)) from None


# --- the plan: what goes where -------------------------------------------------------------------------------------

@dataclass
class _Item:
    """One sound to write: copy ``source`` whole, or write ``clip``."""

    name: str
    source: Path
    clip: _Clip | None = None


def _plan(picks: Sequence[Pick], clip: float | None, taken: Callable[[str], bool],
          report: ExportReport) -> Iterator[_Item]:
    """Yield each distinct sound to write with a free name, filling ``report.picks`` / ``report.skipped``."""
    if clip is not None and not (math.isfinite(clip) and clip >= 0):
        raise ExportError(f"clip handles must be a finite number of seconds >= 0, got {clip}")
    names: set[str] = set()
    done: dict[tuple[str, float | None], ExportedPick] = {}

    def free(name: str) -> str:
        n, candidate = 1, name
        while candidate in names or candidate in LISTING_NAMES or taken(candidate):
            n += 1
            candidate = _numbered(name, n)
        names.add(candidate)
        return candidate

    for rank, pick in enumerate(picks, 1):
        src = Path(pick.path)
        key = (os.path.abspath(src), None if clip is None else round(float(pick.start), 3))
        if key in done:
            prev = done[key]
            report.picks.append(ExportedPick(rank, pick, prev.file, prev.clip_start, prev.clip_end))
            continue
        try:
            if clip is None:
                if not src.is_file():
                    raise ExportError("file not found" if not src.exists() else "not a regular file", str(src))
                if not os.access(src, os.R_OK):
                    raise ExportError("permission denied", str(src))
                item = _Item(free(safe_name(src.name)), src)
                exported = ExportedPick(rank, pick, item.name)
            else:
                c = cut_clip(src, float(pick.start), float(clip))
                item = _Item(free(safe_name(_clip_name(src, c.start, c.end, c.ext))), src, c)
                exported = ExportedPick(rank, pick, item.name, c.start, c.end)
        except SoundlibError as e:
            report.skipped.append((str(src), e.reason))
            continue
        done[key] = exported
        report.picks.append(exported)
        yield item


def _listings(report: ExportReport) -> list[tuple[str, bytes]]:
    """``(name, content)`` of picks.csv, picks.json and picks.m3u."""
    rows = [e.row() for e in report.picks]
    buf = io.StringIO()
    cols = ["rank", "file", "path", "start", "score", "query", "category", "description", "clip_start", "clip_end"]
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r[k] is None else r[k] for k in cols})
    doc = {"clip": report.clip, "picks": rows,
           "skipped": [{"path": printable(p), "reason": r} for p, r in report.skipped]}
    m3u = ["#EXTM3U", "#EXTENC:UTF-8"]
    seen: set[str] = set()
    for e in report.picks:
        if e.file in seen:
            continue
        seen.add(e.file)
        length = -1 if e.clip_start is None else round(e.clip_end - e.clip_start)  # type: ignore[operator]
        title = printable(f"{e.pick.category + ' - ' if e.pick.category else ''}{Path(e.pick.path).stem}")
        m3u += [f"#EXTINF:{length},{title.replace(chr(10), ' ')}", e.file]
    return [("picks.csv", buf.getvalue().encode("utf-8")),
            ("picks.json", (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode("utf-8")),
            ("picks.m3u", ("\n".join(m3u) + "\n").encode("utf-8"))]


# --- writing into a folder -----------------------------------------------------------------------------------------

def _prepare_dest(dest_dir: str | os.PathLike) -> Path:
    """Create (if needed) and check the export folder; returns it resolved.

    Raises:
        ExportError: it is a file, cannot be created, or cannot be written to.
    """
    dest = Path(dest_dir).expanduser()
    if dest.exists() and not dest.is_dir():
        raise ExportError("export folder is a file, not a folder", str(dest))
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ExportError("export folder is a file, not a folder", str(dest)) from None
    except OSError as e:
        raise ExportError(f"cannot create the export folder ({e.strerror or e})", str(dest)) from None
    real = dest.resolve()
    try:  # a real probe: permission bits say nothing for root, nor for read-only mounts
        fd, probe = tempfile.mkstemp(prefix=".soundlib-probe-", dir=real)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ExportError(f"export folder is not writable ({e.strerror or e})", str(dest)) from None
    return real


def check_export_dir(dest_dir: str | os.PathLike) -> None:
    """Check, without creating anything, that :func:`export_picks` can write into ``dest_dir`` (so a command can
    refuse a bad folder before its long work).

    Raises:
        ExportError: it is a file, or it (or, if missing, its nearest existing parent) cannot be written to.
    """
    dest = Path(dest_dir).expanduser()
    if dest.exists() and not dest.is_dir():
        raise ExportError("export folder is a file, not a folder", str(dest))
    probe_in = dest
    while not probe_in.exists():
        if probe_in.parent == probe_in:
            break
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        raise ExportError(f"cannot create the export folder ({probe_in} is a file)", str(dest))
    try:
        fd, probe = tempfile.mkstemp(prefix=".soundlib-probe-", dir=probe_in)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        what = "export folder is not writable" if probe_in == dest else f"cannot create the export folder in {probe_in}"
        raise ExportError(f"{what} ({e.strerror or e})", str(dest)) from None


def _target(dest: Path, name: str) -> str:
    """``dest/name`` after checking that it names an entry directly inside ``dest``."""
    if name in ("", ".", "..") or os.sep in name or (os.altsep and os.altsep in name):
        raise ExportError(f"refusing unsafe file name {name!r}", str(dest))
    target = os.path.join(dest, name)
    if os.path.dirname(os.path.abspath(target)) != str(dest):
        raise ExportError(f"refusing to write outside the export folder ({name!r})", str(dest))
    return target


@contextlib.contextmanager
def _exclusive(dest: Path, name: str) -> Iterator[tuple[IO[bytes], str]]:
    """Create ``dest/name`` (never an existing entry, never through a link) for writing; remove it on failure.
    Yields ``(file, name)``: the name gets a suffix if it was taken meanwhile."""
    n, candidate = 1, name
    while True:
        try:
            fd = os.open(_target(dest, candidate), os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                         0o644)
            break
        except FileExistsError:
            n += 1
            candidate = _numbered(name, n)
        except OSError as e:
            raise ExportError(f"cannot create {candidate} ({e.strerror or e})", str(dest)) from None
    path = _target(dest, candidate)
    ok = False
    try:
        with os.fdopen(fd, "wb") as f:
            yield f, candidate
        ok = True
    finally:
        if not ok:
            with contextlib.suppress(OSError):
                os.unlink(path)


def export_picks(picks: Iterable[Pick], dest_dir: str | os.PathLike, clip: float | None = None) -> ExportReport:
    """Write the picked sounds and their listings into ``dest_dir`` (rules in the module docstring).

    Args:
        picks: the picks, best first.
        dest_dir: the export folder; created if missing.
        clip: ``None`` copies whole files; a number cuts each pick's best window with that many seconds of handles
            on each side.

    Returns:
        An :class:`ExportReport`; picks whose file could not be read are in ``skipped``.

    Raises:
        ExportError: the folder is a file or cannot be written; a write fails (what was written is removed, the
            files exported before stay).
    """
    picks = list(picks)
    dest = _prepare_dest(dest_dir)
    report = ExportReport(dest=str(dest), clip=clip)
    for item in _plan(picks, clip, lambda name: os.path.lexists(os.path.join(dest, name)), report):
        with _exclusive(dest, item.name) as (out, name):
            try:
                if item.clip is not None:
                    _write_clip(item.clip, out, item.source)
                else:
                    with open(item.source, "rb") as src:
                        shutil.copyfileobj(src, out, 1 << 20)
            except OSError as e:
                raise ExportError(f"cannot write {name} ({e.strerror or e})", str(item.source)) from None
            report.bytes += out.tell()
        if name != item.name:  # taken by someone else meanwhile
            for e in report.picks:
                if e.file == item.name:
                    e.file = name
        if item.clip is None:
            with contextlib.suppress(OSError):
                st = item.source.stat()
                os.utime(_target(dest, name), ns=(st.st_atime_ns, st.st_mtime_ns))
    n = 1  # one suffix for the three listings, so they stay a set: picks-2.csv, picks-2.json, picks-2.m3u
    while any(os.path.lexists(os.path.join(dest, _numbered(x, n) if n > 1 else x)) for x in LISTING_NAMES):
        n += 1
    for listing, content in _listings(report):
        with _exclusive(dest, _numbered(listing, n) if n > 1 else listing) as (out, name):
            out.write(content)
        report.listings.append(name)
        report.bytes += len(content)
    return report


# --- writing a ZIP -------------------------------------------------------------------------------------------------

def picks_zip(picks: Iterable[Pick], fileobj: IO[bytes], clip: float | None = None) -> ExportReport:
    """Write the same content as :func:`export_picks` as a ZIP archive into ``fileobj`` (all entries at the top).

    Sounds are stored (they rarely compress), listings deflated. ``fileobj`` need not be seekable (e.g. an HTTP
    response body written through a pipe).

    Args:
        picks: the picks, best first.
        fileobj: a binary file object opened for writing.
        clip: as in :func:`export_picks`.

    Returns:
        An :class:`ExportReport` with ``dest="<zip>"``.

    Raises:
        ExportError: a source file cannot be read while it is being copied.
    """
    picks = list(picks)
    report = ExportReport(dest="<zip>", clip=clip)
    with zipfile.ZipFile(fileobj, "w", compression=zipfile.ZIP_STORED) as zf:
        for item in _plan(picks, clip, lambda name: False, report):
            info = zipfile.ZipInfo(item.name, date_time=_zip_time(item.source))
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as out:
                if item.clip is not None:
                    buf = io.BytesIO()
                    _write_clip(item.clip, buf, item.source)
                    out.write(buf.getvalue())
                    report.bytes += buf.tell()
                else:
                    try:
                        with open(item.source, "rb") as src:
                            while chunk := src.read(1 << 20):
                                out.write(chunk)
                                report.bytes += len(chunk)
                    except OSError as e:
                        raise ExportError(f"cannot read ({e.strerror or e})", str(item.source)) from None
        for name, content in _listings(report):
            zf.writestr(name, content, compress_type=zipfile.ZIP_DEFLATED)
            report.listings.append(name)
            report.bytes += len(content)
    return report


def _zip_time(path: Path) -> tuple[int, int, int, int, int, int]:
    import time

    try:
        t = time.localtime(path.stat().st_mtime)
    except OSError:
        t = time.localtime()
    return (max(1980, t.tm_year), t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)
