"""Pair lists: the CSV interface between ``prepare``, ``train`` and ``eval``.

A list is CSV with a header, whatever its extension, or the paper's reference-code format (``<video id>_<second>|
<label>`` lines, no header; read by :mod:`soundlib.reference_lists`). CSV columns (paths relative to the list
file's folder):

=========  ========  ====================================================================
column     required  meaning
=========  ========  ====================================================================
frame      yes       image path (a video frame or any picture)
audio      yes       audio file path
start      no        seconds into the audio file; empty/absent = the whole file (a library item)
sample     no        sample label (default: ``"<audio>@<start>"``, or ``"<audio>"`` for a whole file)
category   no        category label
video      no        video id (keeps train/test splits apart by video)
=========  ========  ====================================================================

A *candidates list* (``soundlib eval --candidates``, :func:`read_candidates`) is the same kind of CSV with an
``audio`` column and an optional ``category``: more sound files to rank (whole files) besides a list's own clips.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from encoders.atomic import atomic_write
from soundlib.errors import ListError

if TYPE_CHECKING:
    from soundlib.reference_lists import ReferenceRoots

COLUMNS: tuple[str, ...] = ("frame", "audio", "start", "sample", "category", "video")
REQUIRED: tuple[str, ...] = ("frame", "audio")


@dataclass(frozen=True)
class PairRow:
    """One row of a pair list, paths resolved to absolute paths.

    ``start`` is ``None`` when the row stands for the whole audio file.
    ``line`` is the 1-based line number in the file (the header is line 1).
    """

    frame: Path
    audio: Path
    start: float | None
    sample: str
    category: str | None
    video: str | None
    line: int

    @property
    def clip_key(self) -> tuple[str, float | None]:
        """Identity of the audio clip this row points at: (absolute audio path, start)."""
        return (str(self.audio), self.start)


@dataclass
class PairList:
    """A parsed list: the good rows, and one :class:`ListError` per row that was skipped."""

    path: Path
    rows: list[PairRow]
    errors: list[ListError]

    @property
    def has_categories(self) -> bool:
        """True when every row carries a category."""
        return bool(self.rows) and all(r.category for r in self.rows)


def default_sample(audio_rel: str, start: float | None) -> str:
    """The default sample label: the audio path as written in the list, plus ``@start`` when a start is given."""
    return audio_rel if start is None else f"{audio_rel}@{start:g}"


def read_list(path: str | Path, check_files: bool = True, roots: "ReferenceRoots | None" = None) -> PairList:
    """Read a pair list: CSV, or the reference code's ``<video id>_<second>|<label>`` lines.

    A file whose first line is no CSV header and holds ``|`` is read by
    :func:`soundlib.reference_lists.read_reference_list` (frames and audio found under ``roots``; its frame and
    audio files are always looked up, whatever ``check_files``).

    Args:
        path: the list file (any extension).
        check_files: report CSV rows whose frame or audio file does not exist (as skipped rows).
        roots: where a reference-format list's frames and audio are (ignored for CSV lists).

    Returns:
        A :class:`PairList`; rows that are malformed (bad number, empty required field, missing file) are left out
        and described in ``errors`` with their line numbers. Exact duplicate rows are kept once (reported).

    Raises:
        ListError: the file is missing, unreadable, empty, or lacks a required column.
    """
    path = Path(path)
    lines = _read_lines(path)
    from soundlib.reference_lists import is_reference_text, read_reference_list

    if is_reference_text(lines):
        return read_reference_list(path, lines, roots)
    base = path.parent
    rows: list[PairRow] = []
    errors: list[ListError] = []
    seen: set[tuple] = set()
    for i, rec in _csv_records(path, lines, REQUIRED):
        try:
            row = _parse_row(rec, base, i, str(path), check_files)
        except ListError as e:
            errors.append(e)
            continue
        key = (row.frame, row.audio, row.start, row.sample, row.category, row.video)
        if key in seen:
            errors.append(ListError("duplicate row (kept the first)", str(path), i))
            continue
        seen.add(key)
        rows.append(row)
    return PairList(path=path, rows=rows, errors=errors)


def read_records(path: str | Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """``(line, {column: stripped value})`` of every non-blank data line of a CSV file with a header (the header is
    line 1; a UTF-8 BOM is allowed).

    Raises:
        ListError: the file is missing, a folder, unreadable, empty, or lacks a ``required`` column.
    """
    path = Path(path)
    return _csv_records(path, _read_lines(path), required)


def _read_lines(path: Path) -> list[str]:
    """The text lines of a list file (a UTF-8 BOM is allowed).

    Raises:
        ListError: the file is missing, a folder, unreadable or empty.
    """
    if not path.exists():
        raise ListError("list file not found", str(path))
    if path.is_dir():
        raise ListError("is a folder, not a list file", str(path))
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ListError("not a text (UTF-8 CSV) file", str(path)) from None
    except OSError as e:
        raise ListError(f"cannot read ({e.strerror or e})", str(path)) from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise ListError("empty list (no header line)", str(path))
    return lines


def _csv_records(path: Path, lines: list[str], required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """``(line, {column: stripped value})`` of the non-blank data lines of a CSV text with a header.

    Raises:
        ListError: a ``required`` column is missing.
    """
    reader = csv.DictReader(lines)
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in required if c not in header]
    if missing:
        raise ListError(f"missing column(s) {', '.join(missing)} (header: {','.join(header)})", str(path))
    reader.fieldnames = header
    out = []
    for i, raw in enumerate(reader, start=2):
        rec = {k: (v or "").strip() for k, v in raw.items() if k is not None}
        if any(rec.values()):
            out.append((i, rec))
    return out


@dataclass(frozen=True)
class Candidate:
    """One sound of a candidates list: an extra whole-file candidate of ``soundlib eval --candidates``."""

    audio: Path
    category: str | None
    line: int


@dataclass
class CandidateList:
    """A parsed candidates list: the good rows, and one :class:`ListError` per row that was skipped."""

    path: Path
    rows: list[Candidate]
    errors: list[ListError]


def read_candidates(path: str | Path, check_files: bool = True) -> CandidateList:
    """Read a candidates list: CSV with an ``audio`` column and an optional ``category`` (paths relative to it).

    Args:
        path: the CSV file.
        check_files: report rows whose audio file does not exist (as skipped rows).

    Returns:
        A :class:`CandidateList`; a row with an empty or missing audio file is in ``errors`` with its line, a file
        listed twice is kept once.

    Raises:
        ListError: the file is missing, unreadable, empty, or has no ``audio`` column.
    """
    path = Path(path)
    rows: list[Candidate] = []
    errors: list[ListError] = []
    seen: set[Path] = set()
    for i, rec in read_records(path, ("audio",)):
        if not rec.get("audio"):
            errors.append(ListError("empty 'audio'", str(path), i))
            continue
        audio = (path.parent / rec["audio"]).resolve()
        if check_files and not audio.is_file():
            errors.append(ListError(f"audio file not found: {rec['audio']}", str(path), i))
            continue
        if audio in seen:
            continue
        seen.add(audio)
        rows.append(Candidate(audio, rec.get("category") or None, i))
    return CandidateList(path, rows, errors)


def write_sound_list(path: str | Path, rows: Sequence[tuple[Path, str | None]]) -> None:
    """Write a sound list (``audio,category``: the format :func:`read_candidates` reads), atomically, each path
    absolute (so the list reads the same wherever it is copied on this machine)."""
    with atomic_write(Path(path)) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["audio", "category"])
        for audio, category in rows:
            w.writerow([str(Path(audio).resolve()), category or ""])


def _parse_row(rec: dict[str, str], base: Path, line: int, list_path: str, check_files: bool) -> PairRow:
    for col in REQUIRED:
        if not rec.get(col):
            raise ListError(f"empty '{col}'", list_path, line)
    start: float | None = None
    if rec.get("start"):
        try:
            start = float(rec["start"])
        except ValueError:
            raise ListError(f"bad number in 'start': {rec['start']!r}", list_path, line) from None
        if not math.isfinite(start) or start < 0:
            raise ListError(f"bad 'start' {rec['start']!r} (must be a finite number >= 0)", list_path, line)
    frame = (base / rec["frame"]).resolve()
    audio = (base / rec["audio"]).resolve()
    if check_files:
        for col, p in (("frame", frame), ("audio", audio)):
            if not p.is_file():
                raise ListError(f"{col} file not found: {rec[col]}", list_path, line)
    return PairRow(
        frame=frame,
        audio=audio,
        start=start,
        sample=rec.get("sample") or default_sample(rec["audio"], start),
        category=rec.get("category") or None,
        video=rec.get("video") or None,
        line=line,
    )


def write_list(path: str | Path, rows: list[dict[str, object]]) -> None:
    """Write rows (dicts with any of :data:`COLUMNS`) as a list; paths given absolute are made relative to the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = [c for c in COLUMNS if any(c in r and r[c] is not None for r in rows)] or list(REQUIRED)
    for c in REQUIRED:
        if c not in cols:
            cols.insert(REQUIRED.index(c), c)
    base = path.parent.resolve()
    with atomic_write(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            out = {}
            for c in cols:
                v = r.get(c)
                if c in ("frame", "audio") and v is not None:
                    p = Path(str(v))
                    if p.is_absolute():
                        try:
                            v = p.resolve().relative_to(base).as_posix()
                        except ValueError:
                            v = str(p)
                out[c] = "" if v is None else v
            w.writerow(out)
