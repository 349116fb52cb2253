"""Walking sound-library folders: which files to ingest, and what they are called in the store.

Rules (``soundlib ingest DIR...``):

- Only files whose extension is in :data:`soundlib.media.AUDIO_EXTENSIONS` (case-insensitive) are yielded.
- Hidden files and folders (name starting with ``.``) are skipped.
- Symbolic links are followed, each real folder and each real file at most once per scan: a link loop, a link
  to an ancestor of the walked folder (up to its root), or a second link to the same folder or file (also across
  several roots, e.g. ``ingest sfx sfx/dogs``) is not walked again. The first path met wins; the walk is sorted,
  so "first" is deterministic.
- ``rel`` is the POSIX path relative to the root; ``folder`` is its folder (``""`` for files directly in the root).
- ``category`` is the first folder under the root (``sfx/dogs/barks/a.wav`` -> ``dogs``). Files lying directly in
  the root take the root folder's own name (``ingest sfx/dogs`` -> ``dogs``), so a category folder can be ingested
  on its own and keeps its category.
- A root may also be a single audio file: its root is then its parent folder.
- ``known_roots`` (roots already in the store) keep names stable: an argument inside a known root is named from
  that root, and a known root met during a walk becomes the root of the files below it (see :class:`ScanRoot`).
- Entries that cannot be used (a broken link, a file that vanished, a folder without permission, a name that is
  not valid UTF-8) are reported
  through ``on_skip(path, reason)`` and the walk goes on.
"""

from __future__ import annotations

from encoders.hashing import file_sha256  # noqa: F401 (re-exported)

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from stat import S_ISREG

from soundlib.errors import SoundlibError

#: Called with (path, reason) for an entry that is skipped during the walk.
SkipFn = Callable[[str, str], None]


@dataclass(frozen=True)
class SoundFile:
    """One audio file found under a library root.

    Attributes:
        path: absolute path of the file (as reached through the root, links not resolved).
        rel: POSIX path relative to ``root``; with ``root`` it identifies the file in the store.
        root: absolute path of the library root (resolved), as stored in the collection's ``root`` metadata.
        category: first folder under the root (or the root's own name for files directly in it).
        folder: full relative folder (POSIX; ``""`` for files directly in the root).
        size: bytes.
        mtime: modification time, seconds since the epoch.
        mtime_ns: the same in integer nanoseconds (exact; what change detection compares).
    """

    path: str
    rel: str
    root: str
    category: str
    folder: str
    size: int
    mtime: float
    mtime_ns: int


def audio_extensions() -> frozenset[str]:
    """Lower-case audio extensions with the dot (from :mod:`soundlib.media`)."""
    from soundlib.media import AUDIO_EXTENSIONS

    return frozenset(e.lower() if e.startswith(".") else "." + e.lower() for e in AUDIO_EXTENSIONS)




@dataclass(frozen=True)
class ScanRoot:
    """What one command-line argument means: walk ``folder`` (or the single ``file``), naming files from ``root``.

    ``root`` is the folder itself, or a library root already in the store that contains it (so ``ingest sfx``
    then ``ingest sfx/dogs`` names ``sfx/dogs/a.wav`` the same way both times and never stores it twice).
    """

    folder: Path
    root: Path
    file: Path | None = None

    def covers(self, root: str, rel: str) -> bool:
        """True if the stored file (``root``, ``rel``) lies where this argument walks (used by ``--prune``)."""
        full = Path(root) / rel
        if self.file is not None:
            return full == self.file
        return full == self.folder or self.folder in full.parents


def plan_roots(folders: Iterable[str | os.PathLike], known_roots: Iterable[str] = ()) -> list[ScanRoot]:
    """Resolve command-line arguments to :class:`ScanRoot` s (all checked before any work is done).

    Arguments inside another folder argument (or repeated) are dropped: that folder's walk covers them.

    Args:
        folders: folders or single audio files.
        known_roots: roots already in the store (absolute paths); the deepest one containing an argument becomes
            that argument's root.

    Raises:
        SoundlibError: an argument does not exist or is neither a folder nor a file.
    """
    known = sorted({Path(r) for r in known_roots}, key=lambda p: len(p.parts), reverse=True)
    plans = []
    for f in folders:
        p = Path(f).expanduser()
        if not p.exists():
            raise SoundlibError("no such file or folder", str(p))
        rp = p.resolve()
        if rp.is_dir():
            folder, single = rp, None
        elif rp.is_file():
            folder, single = rp.parent, rp
        else:
            raise SoundlibError("not a folder or a file", str(p))
        root = next((k for k in known if k == folder or k in folder.parents), folder)
        plans.append(ScanRoot(folder=folder, root=root, file=single))
    # an argument inside another folder argument (or given twice) is walked as part of that one
    walked = [p.folder for p in plans if p.file is None]

    def redundant(i: int, p: ScanRoot) -> bool:
        target = p.file if p.file is not None else p.folder
        return any(w in target.parents for w in walked) or any(
            (q.file if q.file is not None else q.folder) == target for q in plans[:i])

    return [p for i, p in enumerate(plans) if not redundant(i, p)]


def category_of(rel: str, root: str | os.PathLike) -> tuple[str, str]:
    """``(category, folder)`` of a file from its POSIX path ``rel`` relative to ``root`` (rules in the module doc)."""
    parts = PurePosixPath(rel).parts
    folder = "/".join(parts[:-1])
    category = parts[0] if len(parts) > 1 else (Path(root).name or str(root))
    return category, folder


def scan(folders: Iterable[str | os.PathLike] | Iterable[ScanRoot], on_skip: SkipFn | None = None,
         extensions: Iterable[str] | None = None, known_roots: Iterable[str] = ()) -> Iterator[SoundFile]:
    """Yield every audio file under ``folders`` (rules in the module docstring).

    Order: arguments in the order given; within a folder its files sorted by name, then its subfolders (sorted),
    depth first.

    Args:
        folders: library roots (folders or single audio files), or :class:`ScanRoot` s from :func:`plan_roots`.
        on_skip: receives ``(path, reason)`` for each unusable entry (broken link, unreadable folder...).
        extensions: override of the accepted extensions (with the dot); default: the audio extensions.
        known_roots: roots already in the store; a walked folder that is one of them becomes the root of the
            files below it (see :class:`ScanRoot`).

    Raises:
        SoundlibError: an argument does not exist (raised before anything is yielded).
    """
    exts = frozenset(e.lower() for e in extensions) if extensions is not None else audio_extensions()
    skip = on_skip or (lambda path, reason: None)
    known = {str(Path(r)) for r in known_roots}
    folders = list(folders)
    plans = [f for f in folders if isinstance(f, ScanRoot)]
    plans += plan_roots([f for f in folders if not isinstance(f, ScanRoot)], known)
    seen_dirs: set[str] = set()
    seen_files: set[str] = set()
    for plan in plans:
        if plan.file is not None:
            sf = _sound_file(plan.file, plan.root, exts, seen_files, skip)
            if sf is not None:
                yield sf
            continue
        yield from _walk(plan.folder, plan.root, exts, known, seen_dirs, seen_files, skip)


def _walk(start: Path, root: Path, exts: frozenset[str], known: set[str], seen_dirs: set[str],
          seen_files: set[str], skip: SkipFn) -> Iterator[SoundFile]:
    real = os.path.realpath(start)
    if real in seen_dirs:
        return
    seen_dirs.add(real)
    # a link to the walked folder or to one of its ancestors up to the root is a loop: never followed
    ancestors = {real} | {os.path.realpath(a) for a in start.parents if a == root or root in a.parents}
    stack = [(start, root)]
    while stack:
        folder, root = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            skip(str(folder), f"cannot list folder ({e.strerror or e})")
            continue
        subdirs = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir:
                real = os.path.realpath(entry.path)
                if real not in seen_dirs and real not in ancestors:
                    seen_dirs.add(real)
                    sub = Path(entry.path)
                    subdirs.append((sub, sub if str(sub) in known else root))
                continue
            if os.path.splitext(entry.name)[1].lower() not in exts:
                continue
            sf = _sound_file(Path(entry.path), root, exts, seen_files, skip)
            if sf is not None:
                yield sf
        stack.extend(reversed(subdirs))  # depth first, in sorted order

def _sound_file(path: Path, root: Path, exts: frozenset[str], seen_files: set[str],
                skip: SkipFn) -> SoundFile | None:
    if path.suffix.lower() not in exts:
        skip(str(path), f"not an audio file extension ({path.suffix or 'none'})")
        return None
    try:
        st = path.stat()  # follows links
    except FileNotFoundError:
        skip(str(path), "broken link or file vanished")
        return None
    except OSError as e:
        skip(str(path), f"cannot stat ({e.strerror or e})")
        return None
    if not S_ISREG(st.st_mode):  # from the stat above: no second system call
        skip(str(path), "not a regular file")
        return None
    real = os.path.realpath(path)
    if real in seen_files:
        return None
    seen_files.add(real)
    rel = path.relative_to(root).as_posix()
    try:
        (str(root) + rel).encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes in the name (os.fsdecode surrogates): Chroma needs UTF-8
        skip(str(path).encode("utf-8", "replace").decode("utf-8"), "file name is not valid UTF-8; rename it")
        return None
    category, folder = category_of(rel, root)
    return SoundFile(path=str(path), rel=rel, root=str(root), category=category, folder=folder,
                     size=int(st.st_size), mtime=float(st.st_mtime),
                     mtime_ns=int(st.st_mtime_ns))
