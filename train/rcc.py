"""Read Qt binary resource archives (``.rcc``): list their files and extract them, bounded and checked.

GCompris (Debian ``gcompris-qt-data``) ships each activity's pictures, sounds and QML as one ``.rcc`` file made by
Qt's ``rcc --binary`` tool. This module reads that format with the standard library only (``struct``, ``zlib``).

The format (Qt 5/6 ``rcc.cpp`` writes it, ``qresource.cpp`` reads it; all integers big-endian)
    Header: ``b"qres"``, version (u32: 1, 2 or 3), tree offset, data offset, names offset (u32 each, from the start
    of the file) and, from version 3, the overall flags (u32: the OR of the entries' compression flags).

    Tree: an array of fixed-size entries (14 bytes; 22 from version 2, which adds a u64 last-modified time in ms).
    Entry 0 is the root directory. Each entry starts with the offset of its name in the names section (u32) and
    its flags (u16: ``0x01`` zlib-compressed, ``0x02`` directory, ``0x04`` zstd-compressed). A directory then holds
    its child count (u32) and the tree index of its first child (u32; the children are contiguous). A file holds
    its territory and language (u16 each; 0 = any locale) and the offset of its data in the data section (u32).

    Names: u16 length in UTF-16 code units, u32 hash (``qt_hash`` of the name), then the name in UTF-16BE.

    Data: u32 length, then the payload. A zlib-compressed payload is ``qCompress`` output: u32 uncompressed size,
    then a zlib stream.

Bounds
    Every offset and count is checked against the file before it is used; a directory visited twice (a loop, or
    two parents sharing children) is refused; nesting deeper than :data:`MAX_DEPTH`, more than
    :data:`MAX_ENTRIES` entries, an archive larger than :data:`MAX_ARCHIVE_BYTES` or an entry that inflates to
    more than :data:`MAX_ENTRY_BYTES` (or to another size than it declares) are refused. zstd-compressed entries
    (``rcc --compress-algo zstd``) are refused with one line: the standard library has no zstd decoder, and the
    Debian GCompris archives use zlib. Every refusal is an :class:`RccError` whose text is one line naming the
    archive (and the entry) and the reason.

Example::

    archive = read_rcc("explore_farm_animals.rcc")
    for entry in archive.files:
        print(entry.path, entry.compression, entry.stored_size)
    extract_rcc("explore_farm_animals.rcc", "out/", select=lambda e: e.path.endswith(".qml"))
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from encoders.errors import SoundlibError

MAGIC = b"qres"
#: Format versions this reader knows (Qt 4.x-5.7 wrote 1, Qt 5.8+ writes 2, Qt 5.13+ writes 3).
VERSIONS = (1, 2, 3)
#: Entry flags (``qresource.cpp``).
FLAG_ZLIB, FLAG_DIRECTORY, FLAG_ZSTD = 0x01, 0x02, 0x04
#: ``QLocale::AnyLanguage`` and ``QLocale::C``: what rcc writes for files without a ``lang`` attribute.
DEFAULT_LANGUAGES = (0, 1)
#: Refuse archives larger than this (bytes; GCompris's largest is 4.7 MB).
MAX_ARCHIVE_BYTES = 1 << 30
#: Refuse an entry that inflates to more than this (bytes).
MAX_ENTRY_BYTES = 256 << 20
#: Refuse archives with more tree entries than this.
MAX_ENTRIES = 1_000_000
#: Refuse directories nested deeper than this.
MAX_DEPTH = 64


class RccError(SoundlibError):
    """A file that is not a readable Qt resource archive (bad magic, truncated, out-of-range offset, loop...)."""


@dataclass(frozen=True)
class RccEntry:
    """One file of an archive.

    Attributes:
        path: its path inside the archive, ``/``-separated, without the leading ``:/`` (``gcompris/src/a.qml``).
        compression: ``"none"``, ``"zlib"`` or ``"zstd"``.
        stored_size: the payload's size in the archive (bytes; compressed size when compressed).
        size: the file's size once decompressed (bytes; the size the zlib payload declares), None for zstd.
        territory: Qt ``QLocale::Territory`` number of the entry (0 = any).
        language: Qt ``QLocale::Language`` number of the entry (0 or 1 = any / C locale).
        data_offset: where the payload's length field starts (bytes from the start of the file).
    """

    path: str
    compression: str
    stored_size: int
    size: int | None
    territory: int
    language: int
    data_offset: int

    @property
    def default_locale(self) -> bool:
        """True for the entry Qt serves in any locale (``<qresource>`` without ``lang``): language C/any, any
        territory."""
        return self.language in DEFAULT_LANGUAGES and self.territory == 0


@dataclass
class RccArchive:
    """A parsed archive: its source path, format version and files (sorted by path)."""

    path: Path
    version: int
    files: list[RccEntry]
    _blob: bytes

    def read(self, entry: RccEntry) -> bytes:
        """The content of one file, decompressed.

        Args:
            entry: an entry of :attr:`files`.

        Returns:
            The file's bytes.

        Raises:
            RccError: the payload is corrupt, too large, or zstd-compressed.
        """
        start = entry.data_offset + 4
        payload = self._blob[start:start + entry.stored_size]
        if entry.compression == "none":
            return payload
        if entry.compression == "zstd":
            raise RccError(f"{entry.path}: zstd-compressed entry not supported (rebuild with rcc --compress-algo zlib)",
                           self.path)
        if len(payload) < 4:
            raise RccError(f"{entry.path}: compressed payload shorter than its 4-byte size field", self.path)
        size = struct.unpack_from(">I", payload)[0]
        if size > MAX_ENTRY_BYTES:
            raise RccError(f"{entry.path}: declares {size} bytes uncompressed (limit {MAX_ENTRY_BYTES})", self.path)
        inflater = zlib.decompressobj()
        try:
            data = inflater.decompress(payload[4:], size + 1)
        except zlib.error as e:
            raise RccError(f"{entry.path}: corrupt zlib data ({e})", self.path) from None
        if len(data) != size or not inflater.eof:
            raise RccError(f"{entry.path}: zlib data inflates to {len(data)}{'+' if len(data) > size else ''} bytes, "
                           f"not the declared {size}{'' if inflater.eof else ' (stream cut short)'}", self.path)
        return data


def read_rcc(path: str | Path) -> RccArchive:
    """Parse an archive's header and tree (payloads are checked for bounds, decompressed only by ``read``).

    Args:
        path: the ``.rcc`` file.

    Returns:
        An :class:`RccArchive` listing every file.

    Raises:
        RccError: the file is missing, unreadable, too large, or not a well-formed archive (one line naming it).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_ARCHIVE_BYTES:
            raise RccError(f"archive of {size} bytes is larger than the limit ({MAX_ARCHIVE_BYTES})", path)
        blob = path.read_bytes()
    except RccError:
        raise
    except OSError as e:
        raise RccError(f"cannot read ({e.strerror or e})", path) from None
    return _parse(blob, path)


def extract_rcc(path: str | Path, dest: str | Path,
                select: Callable[[RccEntry], bool] | None = None) -> list[Path]:
    """Extract an archive's files (or the selected ones) under ``dest``, keeping their paths.

    Locale variants (entries of a ``<qresource lang="...">``) are skipped: each path gets the entry Qt serves by
    default. Files that already exist with the size the entry declares are left alone, so running it again does
    no work. A path that would escape ``dest`` (``..``, ``.``, an empty part) is refused.

    Args:
        path: the ``.rcc`` file.
        dest: the folder to write into (created).
        select: keep only entries for which this returns True (default: all default-locale entries).

    Returns:
        The paths of the selected files under ``dest`` (written or already there).

    Raises:
        RccError: the archive is bad (nothing is written for the bad entry; earlier ones stay).
    """
    archive = read_rcc(path)
    dest = Path(dest)
    out: list[Path] = []
    for entry in archive.files:
        if not entry.default_locale or (select is not None and not select(entry)):
            continue
        target = dest.joinpath(*_safe_parts(entry.path, archive.path))
        if not (target.is_file() and target.stat().st_size == entry.size):
            data = archive.read(entry)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".part")
            tmp.write_bytes(data)
            tmp.replace(target)
        out.append(target)
    return out


def _safe_parts(name: str, archive: Path) -> Iterable[str]:
    parts = PurePosixPath(name).parts
    if not parts or any(p in ("", ".", "..") or "/" in p or "\\" in p or "\0" in p for p in parts):
        raise RccError(f"unsafe entry path {name!r}", archive)
    return parts


class _Reader:
    """Bounds-checked big-endian reads from the archive's bytes."""

    def __init__(self, blob: bytes, path: Path) -> None:
        self.blob, self.path = blob, path

    def fail(self, reason: str) -> RccError:
        return RccError(reason, self.path)

    def unpack(self, fmt: str, offset: int, what: str) -> tuple[int, ...]:
        end = offset + struct.calcsize(fmt)
        if offset < 0 or end > len(self.blob):
            raise self.fail(f"truncated or corrupt: {what} at byte {offset} lies past the end ({len(self.blob)} bytes)")
        return struct.unpack_from(fmt, self.blob, offset)


def _parse(blob: bytes, path: Path) -> RccArchive:
    r = _Reader(blob, path)
    if len(blob) < 4 or blob[:4] != MAGIC:
        raise r.fail("not a Qt resource archive (no 'qres' magic)")
    version, tree, data, names = r.unpack(">4I", 4, "header")
    if version not in VERSIONS:
        raise r.fail(f"unknown rcc format version {version} (known: {', '.join(map(str, VERSIONS))})")
    header = 24 if version >= 3 else 20
    for label, offset in (("tree", tree), ("data", data), ("names", names)):
        if not header <= offset <= len(blob):
            raise r.fail(f"truncated or corrupt: {label} offset {offset} outside the file ({len(blob)} bytes)")
    entry_size = 22 if version >= 2 else 14
    n_entries = (len(blob) - tree) // entry_size
    if n_entries < 1:
        raise r.fail("truncated or corrupt: no room for the root entry")

    def name_at(offset: int) -> str:
        (length,) = r.unpack(">H", names + offset, "name length")
        start = names + offset + 6
        if start + 2 * length > len(blob):
            raise r.fail(f"truncated or corrupt: name at byte {names + offset} runs past the end")
        return blob[start:start + 2 * length].decode("utf-16-be", errors="replace")

    files: list[RccEntry] = []
    seen_dirs: set[int] = {0}
    root_flags = r.unpack(">H", tree + 4, "root entry")[0]
    if not root_flags & FLAG_DIRECTORY:
        raise r.fail("corrupt: the root entry is not a directory")
    stack: list[tuple[int, str, int]] = [(0, "", 0)]  # (tree index, path, depth)
    while stack:
        index, prefix, depth = stack.pop()
        count, first = r.unpack(">2I", tree + index * entry_size + 6, "directory entry")
        if count > MAX_ENTRIES or first + count > n_entries:
            raise r.fail(f"truncated or corrupt: directory {prefix or '/'} lists children {first}..{first + count - 1} "
                         f"beyond the {n_entries} tree entries")
        if len(files) + len(seen_dirs) + count > MAX_ENTRIES:
            raise r.fail(f"more than {MAX_ENTRIES} entries")
        for child in range(first, first + count):
            at = tree + child * entry_size
            name_offset, flags = r.unpack(">IH", at, "tree entry")
            name = name_at(name_offset)
            child_path = f"{prefix}/{name}" if prefix else name
            if flags & FLAG_DIRECTORY:
                if child in seen_dirs:
                    raise r.fail(f"corrupt: directory {child_path} is reached twice (a loop in the tree)")
                if depth + 1 > MAX_DEPTH:
                    raise r.fail(f"directories nested deeper than {MAX_DEPTH} at {child_path}")
                seen_dirs.add(child)
                stack.append((child, child_path, depth + 1))
                continue
            territory, language, data_offset = r.unpack(">HHI", at + 6, f"entry {child_path}")
            (stored,) = r.unpack(">I", data + data_offset, f"data length of {child_path}")
            if data + data_offset + 4 + stored > len(blob):
                raise r.fail(f"truncated or corrupt: {child_path} holds {stored} bytes past the end of the file")
            compression = "zstd" if flags & FLAG_ZSTD else "zlib" if flags & FLAG_ZLIB else "none"
            size: int | None = stored
            if compression == "zlib":
                if stored < 4:
                    raise r.fail(f"corrupt: {child_path} is compressed but shorter than its 4-byte size field")
                (size,) = r.unpack(">I", data + data_offset + 4, f"size of {child_path}")
            elif compression == "zstd":
                size = None
            files.append(RccEntry(child_path, compression, stored, size, territory, language, data + data_offset))
    files.sort(key=lambda e: (e.path, e.territory, e.language))
    return RccArchive(path=path, version=version, files=files, _blob=blob)
