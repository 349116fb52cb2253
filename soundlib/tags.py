"""Embedded metadata of sound files: what a sound designer wrote into them, and how loud they are.

:func:`read_tags` reads, in order of preference for each field:

- WAV (RIFF/WAVE): a small bounded chunk reader (this module) for ``bext`` (Broadcast Wave: Description,
  Originator), ``iXML`` (``USER``: DESCRIPTION, KEYWORDS, CATID, FXNAME, LIBRARY, DESIGNER...; NOTE, PROJECT) and
  ``LIST/INFO`` (INAM, IART, ICMT, IKEY, IPRD, ISBJ), plus an ``id3 `` chunk through mutagen;
- every other format through mutagen: Vorbis comments (Ogg, Opus, FLAC), ID3 (MP3, AIFF), MP4 atoms (m4a).

Fields (all optional, strings): ``description``, ``keywords``, ``comment``, ``title``, ``artist``, ``library``,
``cat_id`` (iXML). Each is cleaned (control characters and NULs removed, whitespace collapsed) and capped at
:data:`FIELD_CAP` characters (description: :data:`DESCRIPTION_CAP`); bytes that are not UTF-8 are read as Latin-1
(what BWF tools write). Chunks larger than :data:`CHUNK_CAP` are not read (a ``bext`` is read up to its fixed part);
at most :data:`MAX_CHUNKS` chunks are walked; files whose ID3 tag is larger than :data:`CHUNK_CAP` are not given to
mutagen. So a hostile file costs a bounded amount of memory and time.

Failures never stop an ingest: :func:`read_tags` raises :class:`TagError` with one line, and the caller keeps the
file without tags.

:func:`loudness` measures the samples ingest decodes anyway (mono, the model's rate): peak (dBFS) and integrated
loudness (LUFS, ITU-R BS.1770 through ``pyloudnorm``).
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from soundlib.errors import SoundlibError

#: Characters kept of each text field (Chroma metadata stays small; a description keeps more).
FIELD_CAP = 200
DESCRIPTION_CAP = 1000
#: Bytes of one chunk / ID3 tag read at most; larger ones are skipped.
CHUNK_CAP = 1 << 20
#: RIFF chunks walked at most.
MAX_CHUNKS = 512
#: Field names, in the order they are shown.
TAG_FIELDS: tuple[str, ...] = ("title", "description", "keywords", "comment", "artist", "library", "cat_id")

_BEXT_FIXED = 602  # Description 256, Originator 32, OriginatorReference 32, date 10, time 8, ...
_SPACE = re.compile(r"\s+")


class TagError(SoundlibError):
    """A file's embedded metadata cannot be read (the file itself may still be a good sound). ``partial`` holds
    the fields read before the failure (e.g. a ``bext`` description before a broken ``iXML``)."""

    partial: dict[str, str] = {}


def clean_text(value: Any, cap: int = FIELD_CAP) -> str:
    """One line of printable text from a tag value (bytes: UTF-8, else Latin-1), at most ``cap`` characters."""
    if isinstance(value, (list, tuple)):
        value = "; ".join(clean_text(v, cap) for v in value if v is not None)
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value).split(b"\x00", 1)[0]
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            value = raw.decode("latin-1")
    text = str(value).encode("utf-8", "replace").decode("utf-8")  # lone surrogates -> "?"
    text = "".join(c if c.isprintable() else " " for c in text)
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= cap else text[: cap - 1].rstrip() + "…"


@dataclass
class _Found:
    fields: dict[str, str]

    def offer(self, key: str, value: Any) -> None:
        """Keep the first non-empty value of a field."""
        if key in self.fields or value is None:
            return
        text = clean_text(value, DESCRIPTION_CAP if key == "description" else FIELD_CAP)
        if text:
            self.fields[key] = text


# --- RIFF / WAVE --------------------------------------------------------------------------------------------------

_INFO = {b"INAM": "title", b"IART": "artist", b"ICMT": "comment", b"IKEY": "keywords", b"IPRD": "library",
         b"ISBJ": "description"}
_IXML = {"DESCRIPTION": "description", "KEYWORDS": "keywords", "CATID": "cat_id", "FXNAME": "title",
         "TRACKTITLE": "title", "LIBRARY": "library", "DESIGNER": "artist", "RECORDIST": "artist",
         "NOTES": "comment", "BWF_DESCRIPTION": "description", "NOTE": "comment", "PROJECT": "library"}


def _chunks(f: BinaryIO, end: int) -> Any:
    """Yield ``(id, size, data_offset)`` of the chunks from the current position to ``end`` (bounded walk)."""
    for _ in range(MAX_CHUNKS):
        pos = f.tell()
        if pos + 8 > end:
            return
        head = f.read(8)
        if len(head) < 8:
            return
        cid, size = head[:4], struct.unpack("<I", head[4:])[0]
        yield cid, size, pos + 8
        f.seek(pos + 8 + size + (size & 1))


def _read_capped(f: BinaryIO, offset: int, size: int, cap: int = CHUNK_CAP) -> bytes | None:
    if size > cap:
        return None
    f.seek(offset)
    return f.read(size)


def _ixml(data: bytes, found: _Found) -> None:
    import xml.etree.ElementTree as ET

    head = data[:4096].upper()
    if b"<!DOCTYPE" in head or b"<!ENTITY" in data.upper():
        raise TagError("iXML chunk declares entities (refused)")
    try:
        root = ET.fromstring(data.rstrip(b"\x00 \r\n\t"))
    except ET.ParseError as e:
        raise TagError(f"iXML chunk is not valid XML ({e})") from None
    for el in root.iter():
        key = _IXML.get(str(el.tag).upper())
        if key and el.text and el.text.strip():
            found.offer(key, el.text)


def _read_riff(path: Path, found: _Found) -> bool:
    """Read bext / iXML / LIST-INFO of a RIFF/WAVE file; returns True if an ``id3 `` chunk is there too."""
    has_id3 = False
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return False
        end = os.fstat(f.fileno()).st_size
        for cid, size, off in _chunks(f, end):
            if cid == b"bext":
                data = _read_capped(f, off, min(size, _BEXT_FIXED))
                if data:
                    found.offer("description", data[:256])
                    found.offer("artist", data[256:288])
            elif cid == b"iXML":
                data = _read_capped(f, off, size)
                if data is None:
                    raise TagError(f"iXML chunk of {size} bytes is larger than {CHUNK_CAP} bytes (skipped)")
                _ixml(data, found)
            elif cid == b"LIST":
                data = _read_capped(f, off, size)
                if data is not None and data[:4] == b"INFO":
                    i = 4
                    while i + 8 <= len(data):
                        sid, ssize = data[i:i + 4], struct.unpack("<I", data[i + 4:i + 8])[0]
                        key = _INFO.get(sid)
                        if key:
                            found.offer(key, data[i + 8:i + 8 + ssize])
                        i += 8 + ssize + (ssize & 1)
            elif cid in (b"id3 ", b"ID3 "):
                has_id3 = True
    return has_id3


# --- mutagen ------------------------------------------------------------------------------------------------------

_VORBIS = {"description": "description", "keywords": "keywords", "comment": "comment", "comments": "comment",
           "title": "title", "artist": "artist", "album": "library", "subject": "description",
           "ucs_catid": "cat_id", "catid": "cat_id"}
_ID3 = {"TIT2": "title", "TPE1": "artist", "TALB": "library", "TIT3": "description", "COMM": "comment",
        "TXXX:DESCRIPTION": "description", "TXXX:KEYWORDS": "keywords", "TXXX:CATID": "cat_id"}
_MP4 = {"\xa9nam": "title", "\xa9ART": "artist", "\xa9alb": "library", "\xa9cmt": "comment", "desc": "description",
        "ldes": "description", "keyw": "keywords"}


def _id3_too_big(path: Path) -> bool:
    """True if the file starts with an ID3v2 tag larger than :data:`CHUNK_CAP` (mutagen would read it whole)."""
    with open(path, "rb") as f:
        h = f.read(10)
    if len(h) < 10 or h[:3] != b"ID3":
        return False
    size = (h[6] & 0x7F) << 21 | (h[7] & 0x7F) << 14 | (h[8] & 0x7F) << 7 | (h[9] & 0x7F)
    return size > CHUNK_CAP


def _read_mutagen(path: Path, found: _Found) -> None:
    import mutagen

    if _id3_too_big(path):
        raise TagError(f"ID3 tag larger than {CHUNK_CAP} bytes (skipped)")
    try:
        f = mutagen.File(str(path))
    except Exception as e:  # noqa: BLE001 - mutagen raises many types for broken tags
        raise TagError(f"cannot read tags ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    tags = getattr(f, "tags", None) if f is not None else None
    if not tags:
        return
    for key in list(tags.keys()):
        name = str(key)
        try:
            value = tags[key]
        except Exception:  # noqa: BLE001
            continue
        if name.startswith("COMM"):
            found.offer("comment", getattr(value, "text", value))
            continue
        field = _VORBIS.get(name.lower()) or _ID3.get(name) or _ID3.get(name.upper()) or _MP4.get(name)
        if field is None:
            continue
        found.offer(field, getattr(value, "text", value))


def read_tags(path: str | os.PathLike) -> dict[str, str]:
    """The embedded metadata of a sound file (fields and rules in the module docstring).

    Returns:
        ``{field: text}`` for the fields found (empty if none).

    Raises:
        TagError: a tag or chunk is corrupt, oversized or hostile (one line; the sound may still be used; the
            fields read before are in its ``partial``).
    """
    p = Path(path)
    found = _Found({})
    try:
        has_id3 = _read_riff(p, found)
        with open(p, "rb") as f:
            is_riff = f.read(4) in (b"RIFF", b"RIFX")
        if has_id3 or not is_riff:
            _read_mutagen(p, found)
    except TagError as e:
        err = TagError(e.reason, str(p))
    except (OSError, struct.error, MemoryError) as e:
        err = TagError(f"cannot read tags ({type(e).__name__}: {e})", str(p))
    else:
        return found.fields
    err.partial = dict(found.fields)
    raise err


def read_tags_partial(path: str | os.PathLike) -> tuple[dict[str, str], str | None]:
    """:func:`read_tags` for callers that use a sound whatever its tags: ``(fields, None)``, or on a
    :class:`TagError` the fields read before it and its one-line reason."""
    try:
        return read_tags(path), None
    except TagError as e:
        return dict(e.partial), e.reason


# --- loudness -----------------------------------------------------------------------------------------------------

#: Floor of the reported levels (dBFS / LUFS): digital silence is reported as this, never as -inf.
LEVEL_FLOOR = -120.0


def loudness(windows: np.ndarray, sample_rate: int) -> dict[str, float]:
    """Peak level and integrated loudness of the analysed audio.

    Args:
        windows: ``(N, samples)`` mono float32 windows (what ingest decodes: the whole file for files up to
            ``max_windows`` seconds, else the evenly sampled windows).
        sample_rate: their rate in Hz.

    Returns:
        ``{"peak_dbfs": float, "loudness_lufs": float}``, each at least :data:`LEVEL_FLOOR`.
    """
    x = np.asarray(windows, dtype=np.float64).reshape(-1)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    out = {"peak_dbfs": round(max(LEVEL_FLOOR, 20 * float(np.log10(peak))) if peak > 0 else LEVEL_FLOOR, 2)}
    lufs = LEVEL_FLOOR
    if x.size >= int(0.4 * sample_rate):
        import warnings

        import pyloudnorm

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = pyloudnorm.Meter(sample_rate).integrated_loudness(x)
        if np.isfinite(value):
            lufs = max(LEVEL_FLOOR, float(value))
    out["loudness_lufs"] = round(lufs, 2)
    return out
