"""Moving a sound library between stores: ``soundlib library export FILE`` / ``soundlib library import FILE``.

The export file
    One ZIP archive (any name; ``.soundlib.zip`` by convention) holding the collection in chunks of at most
    ``batch`` windows, so neither side ever holds a whole library in memory:

    - ``chunk-NNNNN.npy``: the chunk's embeddings, ``(n, dim)`` float32 (stored as Chroma returns them: bit-exact);
    - ``chunk-NNNNN.jsonl``: one ``{"id": ..., "metadata": {...}}`` line per window, in the same order;
    - ``manifest.json`` (written last): :data:`FORMAT`, :data:`VERSION`, the collection's name and metadata
      (model, model_sha256, dim, ...), the window and file counts and the chunk list.

    It is written to a temporary file renamed when complete (:func:`encoders.atomic.atomic_write`), so an
    interrupted export never leaves a file that looks whole. The ZIP's CRCs catch a damaged copy on import.

Export
    Pages through the collection (ids, embeddings, metadata). Nothing is locked (it only reads); if the collection
    changes while it is read (an ingest running), the counts before and after differ and the export is refused.

Import
    Into a new collection (created with the exported metadata and this build's HNSW settings) or into one built
    with the same model (same checkpoint sha256 and dim; another model is refused). Records are upserted, so
    importing the same file twice changes nothing. The windows flagged ``last`` (one per file, kept in memory
    while the archive is read once) are written after every other window: an interrupted import leaves no file that counts as complete without all its windows,
    and running it again finishes the job. ``roots`` rewrites library roots (``{"/old/sfx": "/srv/sfx"}``) and
    recomputes the record ids from them, so a later ``soundlib ingest /srv/sfx`` on the new machine finds every
    file already there.
"""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from encoders.atomic import atomic_write
from soundlib.errors import SoundlibError, StoreError
from soundlib.progress import ProgressFn
from soundlib.store import SoundStore, file_key, window_id

#: Value of the manifest's ``format`` field.
FORMAT = "soundlib-library-export"
#: Version of the file layout; import refuses newer versions.
VERSION = 1
#: Windows per chunk of an export file (and per read from the store).
EXPORT_BATCH = 5000
MANIFEST = "manifest.json"
#: Collection metadata that describes the collection itself (copied on import); anything else is copied as well.
_VALUE_TYPES = (str, int, float, bool)


class TransferError(SoundlibError):
    """An export file that is missing, not an export, damaged, or of a newer format."""


@dataclass
class TransferReport:
    """What an export or import did.

    Attributes:
        collection: collection name (source of an export, target of an import).
        location: the store (folder or server URL).
        file: the export file.
        windows: windows written to the file (export) or read from it (import).
        files: sound files among them (windows flagged ``last``).
        new_windows: import only: how many windows the collection gained (0 when importing the same file again).
        created: import only: the collection was created by this import.
        bytes: size of the export file.
        seconds: wall time.
    """

    collection: str
    location: str
    file: str
    windows: int
    files: int
    bytes: int
    seconds: float
    new_windows: int | None = None
    created: bool | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document."""
        doc = {"collection": self.collection, "store": self.location, "file": self.file, "windows": self.windows,
               "files": self.files, "bytes": self.bytes, "seconds": round(self.seconds, 3)}
        if self.new_windows is not None:
            doc.update(new_windows=self.new_windows, created=bool(self.created))
        return doc


def _collection_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): v for k, v in meta.items() if isinstance(v, _VALUE_TYPES) and not str(k).startswith("hnsw:")}


def export_library(store: SoundStore, path: str | os.PathLike, batch: int = EXPORT_BATCH,
                   progress: ProgressFn | None = None) -> TransferReport:
    """Write the store's collection to one export file (layout in the module docstring).

    Args:
        store: the open source store; its collection must exist.
        path: the export file (replaced if it exists, only once the new one is complete).
        batch: windows per chunk and per read (memory: ``batch`` x (dim x 4 bytes + metadata)).
        progress: receives ``("export", windows_done, windows_total)``.

    Raises:
        StoreError: no such collection, the store cannot be read, or the collection changed during the export.
        TransferError: the file cannot be written.
    """
    t0 = time.perf_counter()
    meta = _collection_metadata(store.metadata)
    total = store.count()
    path = Path(path)
    seen: set[str] = set()
    chunks: list[dict[str, Any]] = []
    files = 0
    dim = meta.get("dim")
    try:
        with atomic_write(path) as partial, zipfile.ZipFile(partial, "w", allowZip64=True) as z:
            for ids, vecs, metas in store.iter_records(batch):
                keep = [i for i, rid in enumerate(ids) if rid not in seen]
                if not keep:
                    continue
                seen.update(ids[i] for i in keep)
                vecs = vecs[keep]
                if dim is None:
                    dim = int(vecs.shape[1])
                elif vecs.shape[1] != int(dim):
                    raise StoreError(f"stored vectors have {vecs.shape[1]} dimensions, the collection says {dim}",
                                     store.location)
                name = f"chunk-{len(chunks):05d}"
                with z.open(f"{name}.npy", "w", force_zip64=True) as f:
                    np.save(f, np.ascontiguousarray(vecs, dtype=np.float32), allow_pickle=False)
                lines = []
                for i in keep:
                    files += bool(metas[i].get("last"))
                    lines.append(json.dumps({"id": ids[i], "metadata": metas[i]}, ensure_ascii=False,
                                            allow_nan=False))
                z.writestr(zipfile.ZipInfo(f"{name}.jsonl", date_time=time.localtime()[:6]),
                           ("\n".join(lines) + "\n").encode("utf-8"), compress_type=zipfile.ZIP_DEFLATED)
                chunks.append({"name": name, "windows": len(keep)})
                if progress is not None:
                    progress("export", len(seen), total)
            after = store.count()
            if not (len(seen) == total == after):
                raise StoreError(f"the collection changed during the export ({total} windows before, {after} "
                                 f"after, {len(seen)} read); is an ingest running? export again when it is done",
                                 store.location)
            manifest = {"format": FORMAT, "version": VERSION, "collection": store.name, "metadata": meta,
                        "dim": dim, "windows": len(seen), "files": files, "chunks": chunks,
                        "source": store.location, "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            z.writestr(MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1))
    except OSError as e:
        raise TransferError(f"cannot write the export file ({e.strerror or e})", str(path)) from None
    return TransferReport(collection=store.name, location=store.location, file=str(path), windows=len(seen),
                          files=files, bytes=path.stat().st_size, seconds=time.perf_counter() - t0)


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of an export file, checked (format, version, chunk list).

    Raises:
        TransferError: missing file, not an export file, damaged, or written by a newer soundlib.
    """
    path = Path(path)
    if not path.is_file():
        raise TransferError("export file not found" if not path.exists() else "not a file", str(path))
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if MANIFEST not in names:
                raise TransferError("not a soundlib library export (no manifest)", str(path))
            manifest = json.loads(z.read(MANIFEST).decode("utf-8"))
    except (zipfile.BadZipFile, EOFError) as e:
        raise TransferError(f"not a soundlib library export, or damaged ({e})", str(path)) from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise TransferError("damaged export file (unreadable manifest)", str(path)) from None
    except OSError as e:
        raise TransferError(f"cannot read ({e.strerror or e})", str(path)) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise TransferError("not a soundlib library export (unknown manifest)", str(path))
    if not isinstance(manifest.get("version"), int) or manifest["version"] > VERSION:
        raise TransferError(f"export format version {manifest.get('version')} is newer than this soundlib reads "
                            f"({VERSION}); update soundlib", str(path))
    chunks = manifest.get("chunks")
    meta = manifest.get("metadata")
    if not isinstance(chunks, list) or not isinstance(meta, dict) or not isinstance(manifest.get("collection"), str):
        raise TransferError("damaged export file (incomplete manifest)", str(path))
    for c in chunks:
        if not (isinstance(c, dict) and {f"{c.get('name')}.npy", f"{c.get('name')}.jsonl"} <= names):
            raise TransferError(f"damaged export file (chunk {c!r} missing)", str(path))
    return manifest


def _chunks(path: Path, manifest: dict[str, Any]) -> Iterator[tuple[list[str], np.ndarray, list[dict[str, Any]]]]:
    """``(ids, vectors, metadatas)`` of each chunk, checked against the manifest."""
    dim = manifest.get("dim")
    try:
        with zipfile.ZipFile(path) as z:
            for c in manifest["chunks"]:
                name = c["name"]
                vecs = np.load(io.BytesIO(z.read(f"{name}.npy")), allow_pickle=False)
                recs = [json.loads(line) for line in z.read(f"{name}.jsonl").decode("utf-8").splitlines() if line]
                n = int(c.get("windows", len(recs)))
                if vecs.ndim != 2 or len(vecs) != n or len(recs) != n or (dim is not None and vecs.shape[1] != dim):
                    raise TransferError(f"damaged export file (chunk {name} does not match the manifest)", str(path))
                if not np.isfinite(vecs).all():
                    raise TransferError(f"damaged export file (chunk {name} holds non-finite values)", str(path))
                try:
                    ids = [str(r["id"]) for r in recs]
                    metas = [dict(r["metadata"]) for r in recs]
                except (KeyError, TypeError, ValueError):
                    raise TransferError(f"damaged export file (chunk {name}: bad record)", str(path)) from None
                yield ids, vecs.astype(np.float32, copy=False), metas
    except (zipfile.BadZipFile, EOFError, ValueError, UnicodeDecodeError) as e:
        raise TransferError(f"damaged export file ({type(e).__name__}: {e})", str(path)) from None
    except OSError as e:
        raise TransferError(f"cannot read ({e.strerror or e})", str(path)) from None


def _reroot(ids: list[str], metas: list[dict[str, Any]], roots: Mapping[str, str]) -> list[str]:
    """Rewrite ``root`` (and ``file_id``, and the record id) of records under one of ``roots`` (old -> new)."""
    if not roots:
        return ids
    out = []
    for rid, m in zip(ids, metas):
        root = str(m.get("root", ""))
        for old, new in roots.items():
            prefix = old if old.endswith("/") else old + "/"
            if root == old or root.startswith(prefix):
                m["root"] = new if root == old else os.path.join(new, root[len(prefix):])
                if "path" in m and "window" in m:
                    m["file_id"] = file_key(m["root"], str(m["path"]))
                    rid = window_id(m["file_id"], int(m["window"]))
                break
        out.append(rid)
    return out


def parse_roots(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["/old=/new", ...]`` -> ``{"/old": "/new"}`` (absolute paths; trailing slashes dropped).

    Raises:
        SoundlibError: a pair without ``=`` or with a relative path.
    """
    out: dict[str, str] = {}
    for p in pairs:
        old, sep, new = p.partition("=")
        if not sep or not old or not new:
            raise SoundlibError(f"--root takes OLD=NEW, got {p!r}")
        if not (old.startswith("/") and new.startswith("/")):
            raise SoundlibError(f"--root paths must be absolute, got {p!r}")
        out[old.rstrip("/") or "/"] = new.rstrip("/") or "/"
    return out


def import_library(path: str | os.PathLike, store: SoundStore, roots: Mapping[str, str] | None = None,
                   progress: ProgressFn | None = None) -> TransferReport:
    """Load an export file into ``store`` (its collection is created, or must have been built by the same model).

    Args:
        path: the export file.
        store: the open target store; ``store.name`` is the target collection.
        roots: library roots to rewrite, old -> new (absolute paths), e.g. where the sounds live on the server.
        progress: receives ``("import", windows_done, windows_total)`` (all windows but the last of
            each file, then the last windows).

    Raises:
        TransferError: not an export file, damaged, newer format.
        ModelMismatchError: the target collection was built with another model.
        StoreError: the store cannot be written, or another process is writing to it.
    """
    with store.writing("library import"):
        return _import_locked(path, store, roots, progress)


def _import_locked(path: str | os.PathLike, store: SoundStore, roots: Mapping[str, str] | None,
                   progress: ProgressFn | None) -> TransferReport:
    """:func:`import_library`'s work, with the store's writer lock held."""
    t0 = time.perf_counter()
    path = Path(path)
    manifest = read_manifest(path)
    meta = _collection_metadata(manifest["metadata"])
    total = int(manifest.get("windows", 0))
    existing = store.collection
    created = existing is None
    if existing is None:
        store.create(meta)
    else:
        store.check_built_with(str(meta.get("model", "?")), str(meta.get("model_sha256")), meta.get("dim"),
                               "import into another --collection")
        store.tune_search()
    before = store.count()
    done = 0
    last_ids: list[str] = []  # each file's last window, written at the end (memory: one window per file)
    last_vecs: list[np.ndarray] = []
    last_metas: list[dict[str, Any]] = []
    for ids, vecs, metas in _chunks(path, manifest):
        ids = _reroot(ids, metas, roots or {})
        pick = [i for i, m in enumerate(metas) if not m.get("last")]
        if pick:
            store.add_vectors([ids[i] for i in pick], vecs[pick], [metas[i] for i in pick])
        for i, m in enumerate(metas):
            if m.get("last"):
                last_ids.append(ids[i])
                last_vecs.append(vecs[i])
                last_metas.append(m)
        done += len(pick)
        if progress is not None:
            progress("import", done, total)
    step = store.max_batch_size  # after all other windows: an interrupted import leaves no file that looks complete
    for lo in range(0, len(last_ids), step):
        store.add_vectors(last_ids[lo:lo + step], np.stack(last_vecs[lo:lo + step]), last_metas[lo:lo + step])
        done += len(last_ids[lo:lo + step])
        if progress is not None:
            progress("import", done, total)
    files = len(last_ids)
    return TransferReport(collection=store.name, location=store.location, file=str(path), windows=done,
                          files=files, bytes=path.stat().st_size, seconds=time.perf_counter() - t0,
                          new_windows=store.count() - before, created=created)
