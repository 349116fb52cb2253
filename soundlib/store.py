"""The sound library in Chroma: one collection per library, one vector per 1-second window.

Layout of a collection:

- created with ``embedding_function=None`` (nothing touches the network) and the HNSW settings of
  :class:`soundlib.config.StoreConfig` (space ``l2``; the defaults gave recall@10 of only 0.92 here);
- collection metadata: ``model`` (name), ``model_sha256`` (checkpoint hash), ``dim``, ``soundlib_version`` and
  ``model_path`` (where the checkpoint was, the default model of later queries);
  a different model is refused with :class:`ModelMismatchError`;
- record id ``"<file_id>:<window index>"`` where ``file_id`` is a stable hash of (root, relative path);
- record metadata: ``path`` (relative to ``root``), ``root``, ``category``, ``folder``, ``start`` (s), ``duration``
  (of the file, s), ``sha256``, ``mtime`` (s; Chroma may round it in the last bit), ``mtime_ns`` (exact),
  ``size``, ``sample_rate`` (of the file), ``window`` (index),
  ``n_windows``, ``file_id`` and ``last`` (True on the window with the highest index), ``category_from`` (the
  rule that made ``category``, :mod:`soundlib.categories`), ``meta`` (version of the file facts below) and
  ``features`` (the model's ``audio_features_version`` that made the vector; absent on windows written before it
  existed = 1) and ``named`` (the :data:`soundlib.config.NAMES_VERSION` under which the file's name was mixed
  into its vectors, :mod:`soundlib.name_concepts`; 0 = not mixed: a model without a concept bridge, or windows
  written before names were mixed in);
- on window 0 only, what describes the file (:data:`FILE_INFO_KEYS`): embedded tags (``title``, ``description``,
  ``keywords``, ``comment``, ``artist``, ``library``, ``cat_id``; :mod:`soundlib.tags`), UCS name blocks
  (``ucs_fx_name``, ``ucs_creator``, ``ucs_source``), ``channels``, ``peak_dbfs``, ``loudness_lufs``, and
  ``named_concepts`` (the concepts its words named and ingest mixed into its vectors, ``"; "``-joined,
  :mod:`soundlib.name_concepts`; absent when none) and ``heard`` (the concept its audio alone points at most,
  :func:`soundlib.concept_coverage.heard_concept`; bridged models; absent in files written before it). Search results
  get them merged into their metadata (window 0's id is known from any window's id: one ``get`` for both);
- on the last window only, two lists for filters: ``levels`` (lower-case category levels, ``--category``) and
  ``words`` (normalised words of the name, folders and tags, :mod:`soundlib.words`). A filter lists matching ids
  only (``"<file_id>:<last index>"`` gives the file and its window count), which is ~10x faster than metadata.

A file is written as a whole: its old windows are deleted, then its windows are upserted in index order, so the
window flagged ``last`` is written last. A file counts as present only when its ``last`` window exists; a file
that has a window 0 but no ``last`` window was cut by a crash and is redone on the next ingest.

Distances reported by :meth:`SoundStore.search` are Euclidean (not squared) between L2-normalised vectors, so
they lie in [0, 2] and order results like cosine similarity.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from encoders.version import package_version
from soundlib.config import TOKEN_ENV, StoreConfig
from soundlib.errors import ModelMismatchError, SoundlibError, StoreError

_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")
#: Records fetched per page when listing metadata.
_PAGE = 5000


def _is_connection_error(e: BaseException) -> bool:
    """True for a server that is gone or unreachable (refused, reset, timed out), as httpx or the OS report it."""
    try:
        import httpx

        if isinstance(e, httpx.TransportError):
            return True
    except ImportError:  # pragma: no cover - httpx comes with chromadb
        pass
    return isinstance(e, (ConnectionError, TimeoutError))


def _first_line(e: BaseException, limit: int = 300) -> str:
    """The first line of an exception's text (or its type name), at most ``limit`` characters."""
    text = next((line.strip() for line in str(e).splitlines() if line.strip()), "") or type(e).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def store_error(action: str, e: BaseException, location: str) -> StoreError:
    """One line for a failed Chroma call; a lost server says so and that running the command again resumes."""
    if _is_connection_error(e):
        return StoreError(f"{action} failed: the Chroma server does not answer ({type(e).__name__}: "
                          f"{_first_line(e)}); start it again and run the same command again "
                          "(what was written before is kept)", location)
    return StoreError(f"{action} failed: {_first_line(e)}", location)


def file_key(root: str, rel: str) -> str:
    """Stable id of a file in the store: a hash of its root and its POSIX path relative to the root."""
    return hashlib.sha1(f"{root}\0{rel}".encode("utf-8", "surrogatepass")).hexdigest()[:24]


def window_id(fid: str, index: int) -> str:
    """Record id of window ``index`` of file ``fid``."""
    return f"{fid}:{index}"


def default_db_path(cfg: StoreConfig | None = None) -> Path:
    """``$SOUNDLIB_HOME/chroma`` (default ``~/.soundlib/chroma``)."""
    cfg = cfg or StoreConfig()
    home = os.environ.get(cfg.home_env) or cfg.default_home
    return Path(home).expanduser() / "chroma"


def embedded_path(db: str | os.PathLike | None, cfg: StoreConfig | None = None) -> Path:
    """The folder of the embedded store ``open_store(db=db)`` opens: ``db`` (``~`` expanded) or the default."""
    return Path(db).expanduser() if db else default_db_path(cfg)


def writer_lock(db: str | os.PathLike | None, url: str | None, command: str) -> contextlib.AbstractContextManager:
    """The one-writer lock of the store ``open_store(db=db, url=url)`` opens, to take before opening it.

    Taken first, a second writer is refused before a model loads, and two first runs never create one store
    together. :meth:`SoundStore.writing` takes the same lock again (re-entrant) around the write itself.
    A Chroma server (``url``) has no lock here.
    """
    if url:
        return contextlib.nullcontext()
    from soundlib.locking import exclusive_lock

    return exclusive_lock(embedded_path(db), command=command)


#: Version of the per-file facts ingest writes (tags, loudness, levels, words); files stored with an older one are
#: described again (no embedding) by the next ingest.
META_VERSION = 1
#: Metadata keys describing a whole file, kept on its window 0 and merged into search results.
FILE_INFO_KEYS: tuple[str, ...] = ("title", "description", "keywords", "comment", "artist", "library", "cat_id",
                                   "ucs_fx_name", "ucs_creator", "ucs_source", "channels", "peak_dbfs",
                                   "loudness_lufs", "named_concepts", "heard")


def info_metadata(info: dict[str, Any]) -> dict[str, Any]:
    """What a file's window 0 holds besides the window facts: ``info`` (:data:`FILE_INFO_KEYS` only, empty values
    left out)."""
    return {k: v for k, v in info.items() if k in FILE_INFO_KEYS and v not in (None, "")}


def filter_metadata(levels: Sequence[str], words: Sequence[str]) -> dict[str, Any]:
    """What a file's last window holds for filters: ``levels`` and ``words`` (left out when empty: Chroma refuses
    empty lists)."""
    out: dict[str, Any] = {}
    if levels:
        out["levels"] = list(levels)
    if words:
        out["words"] = list(words)
    return out


@dataclass(frozen=True)
class FileFacts:
    """What the store keeps about a sound file.

    Attributes:
        root: the library root the file was found under; ``rel``: its POSIX path relative to ``root``.
        category: by the rule ``category_from`` (:mod:`soundlib.categories`); ``folder``: its full folder path.
        size: bytes; ``mtime``: seconds; ``mtime_ns``: exact; ``sha256``: hex hash of the bytes.
        duration: length in seconds; ``sample_rate``: the file's own rate in Hz.
        category_from: the category rule (``""`` for files stored before rules existed).
        meta: :data:`META_VERSION` the file was described with (0: never).
        levels: lower-case category levels (last window only; empty when read back from another window).
        words: normalised words for word search (last window only).
        info: :data:`FILE_INFO_KEYS` values (window 0 only).
    """

    root: str
    rel: str
    category: str
    folder: str
    size: int
    mtime: float
    mtime_ns: int
    sha256: str
    duration: float
    sample_rate: int
    category_from: str = field(default="", kw_only=True)
    meta: int = field(default=0, kw_only=True)
    levels: tuple[str, ...] = field(default=(), kw_only=True)
    words: tuple[str, ...] = field(default=(), kw_only=True)
    info: dict[str, Any] = field(default_factory=dict, kw_only=True)



@dataclass(frozen=True)
class FileRecord(FileFacts):
    """One file as the store knows it (read from the metadata of one of its windows): its facts, its id and its
    window count."""

    file_id: str
    n_windows: int
    features: int = 1
    named: int = 0

    @classmethod
    def from_metadata(cls, m: dict[str, Any]) -> "FileRecord":
        return cls(file_id=str(m["file_id"]), root=str(m["root"]), rel=str(m["path"]),
                   category=str(m.get("category", "")), folder=str(m.get("folder", "")),
                   size=int(m.get("size", -1)), mtime=float(m.get("mtime", -1.0)),
                   mtime_ns=int(m.get("mtime_ns", -1)), sha256=str(m.get("sha256", "")),
                   duration=float(m.get("duration", 0.0)), sample_rate=int(m.get("sample_rate", 0)),
                   n_windows=int(m.get("n_windows", 0)), category_from=str(m.get("category_from", "")),
                   meta=int(m.get("meta", 0)), levels=tuple(m.get("levels") or ()), words=tuple(m.get("words") or ()),
                   info={k: m[k] for k in FILE_INFO_KEYS if k in m}, features=int(m.get("features", 1)),
                   named=int(m.get("named", 0)))


@dataclass(frozen=True)
class FileVectors(FileFacts):
    """Everything written for one file: its facts (:class:`FileFacts`), its window starts and one embedding per
    window.

    Attributes:
        starts: window start times in seconds, length ``N``.
        vectors: ``(N, D)`` float32 embeddings (L2-normalised).
        features: the model's ``audio_features_version`` that computed them.
        named: the ``NAMES_VERSION`` their concept part was mixed with the file's name under (0: not mixed).
    """

    starts: Sequence[float]
    vectors: np.ndarray
    features: int = 1
    named: int = 0

    @property
    def file_id(self) -> str:
        return file_key(self.root, self.rel)

    def records(self) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
        """``(ids, vectors, metadatas)`` of this file's windows, in index order."""
        n = len(self.starts)
        fid = self.file_id
        ids = [window_id(fid, i) for i in range(n)]
        metas = [{
            "path": self.rel, "root": self.root, "category": self.category, "folder": self.folder,
            "start": float(s), "duration": float(self.duration), "sha256": self.sha256,
            "mtime": float(self.mtime), "mtime_ns": int(self.mtime_ns), "size": int(self.size),
            "sample_rate": int(self.sample_rate), "window": i, "n_windows": n, "file_id": fid, "last": i == n - 1,
            "category_from": self.category_from, "meta": int(self.meta), "features": int(self.features),
            "named": int(self.named),
        } for i, s in enumerate(self.starts)]
        if metas:
            metas[0].update(info_metadata(self.info))
            metas[-1].update(filter_metadata(self.levels, self.words))
        return ids, np.asarray(self.vectors, dtype=np.float32).reshape(n, -1), metas


@dataclass
class Hit:
    """One search result: a distinct file (or sample) with its best window.

    Attributes:
        path: absolute path of the sound file (root joined with the relative path; for collections without a
            ``root``, the stored ``path`` as is).
        category: the stored category (``""`` if none).
        start: start of the best-matching window, seconds.
        distance: Euclidean distance between the query and that window's embedding.
        id: record id of that window.
        metadata: the window's full metadata.
    """

    path: str
    category: str
    start: float
    distance: float
    id: str
    metadata: dict[str, Any] = field(default_factory=dict)


class SoundStore:
    """A Chroma collection holding a sound library (see the module docstring for its layout).

    Open one with :func:`open_store` (or :meth:`temporary`); use it as a context manager or call :meth:`close`.
    """

    def __init__(self, client: Any, name: str, location: str, tempdir: str | None = None,
                 cfg: StoreConfig | None = None, folder: str | os.PathLike | None = None) -> None:
        self.client = client
        self.name = name
        self.location = location
        #: The embedded store's folder (holds the one-writer lock); ``None`` for a Chroma server.
        self.folder = Path(folder) if folder is not None else None
        self.cfg = cfg or StoreConfig()
        self._tempdir = tempdir
        self._collection: Any = None
        #: Records per write; ``None``: the client's maximum (``client.get_max_batch_size()``).
        self.write_batch: int | None = None

    # --- lifecycle --------------------------------------------------------------------------------------------

    def writing(self, command: str = "ingest") -> contextlib.AbstractContextManager:
        """Hold the embedded store's one-writer lock for a block (:func:`soundlib.locking.exclusive_lock`).

        :func:`soundlib.ingest.ingest` and :func:`soundlib.transfer.import_library` write inside it, so two writers
        never interleave, whether they are CLI runs or library callers. A Chroma server store has no lock here
        (the server orders its own writes).

        Args:
            command: what writes (``"ingest"``, ``"library import"``), named in the message a second writer gets.

        Raises:
            StoreError: another process is writing to this store.
        """
        if self.folder is None:
            return contextlib.nullcontext()
        from soundlib.locking import exclusive_lock

        return exclusive_lock(self.folder, command=command)

    @classmethod
    def temporary(cls, dim: int, meta: dict[str, Any] | None = None, name: str = "temporary") -> "SoundStore":
        """A store in a fresh temporary folder, removed again by :meth:`close` (e.g. for evaluation).

        Args:
            dim: embedding size (recorded as ``dim``).
            meta: extra collection metadata (str/int/float/bool values).
        """
        import chromadb
        from chromadb.config import Settings

        tmp = tempfile.mkdtemp(prefix="soundlib-chroma-")
        client = chromadb.PersistentClient(path=tmp, settings=Settings(anonymized_telemetry=False))
        store = cls(client, name, tmp, tempdir=tmp, folder=tmp)
        store._create({"dim": int(dim), "soundlib_version": package_version(), **(meta or {})})
        return store

    def close(self) -> None:
        """Release the client (and delete the folder of a :meth:`temporary` store)."""
        client, self.client, self._collection = self.client, None, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - best effort; the HTTP client may have nothing to close
                pass
        if self._tempdir:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None

    def __enter__(self) -> "SoundStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- the collection and its model -------------------------------------------------------------------------

    def _hnsw(self) -> dict[str, Any]:
        c = self.cfg
        return {"hnsw": {"space": c.hnsw_space, "ef_construction": c.hnsw_ef_construction,
                         "ef_search": c.hnsw_ef_search, "max_neighbors": c.hnsw_max_neighbors}}

    @contextlib.contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Turn any failure of a Chroma call in the block into one :class:`StoreError` line."""
        try:
            yield
        except SoundlibError:
            raise
        except Exception as e:  # noqa: BLE001 - chromadb and httpx raise many types; report one line
            raise store_error(action, e, self.location) from e

    def _create(self, metadata: dict[str, Any]) -> Any:
        with self._guard(f"creating collection '{self.name}'"):
            self._collection = self.client.create_collection(
                self.name, embedding_function=None, metadata=metadata, configuration=self._hnsw())
        return self._collection

    def create(self, metadata: dict[str, Any]) -> None:
        """Create the collection with ``metadata`` (model, model_sha256, dim, ...) and the configured HNSW settings.

        Raises:
            StoreError: it exists already, or the store refuses.
        """
        if self.collection is not None:
            raise StoreError(f"collection '{self.name}' exists already", self.location)
        self._create(dict(metadata))

    @property
    def collection(self) -> Any | None:
        """The Chroma collection, or ``None`` if it does not exist (yet)."""
        if self._collection is None:
            from chromadb.errors import NotFoundError

            try:
                self._collection = self.client.get_collection(self.name, embedding_function=None)
            except (NotFoundError, ValueError):
                return None
            except Exception as e:  # noqa: BLE001
                raise store_error(f"opening collection '{self.name}'", e, self.location) from e
        return self._collection

    def require(self) -> Any:
        """The collection; raises :class:`StoreError` if it does not exist."""
        col = self.collection
        if col is None:
            raise StoreError(f"no collection '{self.name}' here; build it with `soundlib ingest FOLDER`"
                             f"{' --collection ' + self.name if self.name != self.cfg.default_collection else ''}",
                             self.location)
        return col

    @property
    def metadata(self) -> dict[str, Any]:
        """The collection's metadata (model name, checkpoint hash, dim, soundlib version)."""
        return dict(self.require().metadata or {})

    def prepare(self, loaded: Any) -> None:
        """Create the collection for ``loaded`` (a :class:`soundlib.models.LoadedModel`), or check it matches.

        Raises:
            ModelMismatchError: the collection was built with another model.
        """
        if self.collection is None:
            meta = {"model": loaded.name, "model_sha256": loaded.sha256, "dim": int(loaded.dim),
                    "soundlib_version": package_version()}
            path = getattr(getattr(loaded, "info", None), "path", None)
            if path:
                meta["model_path"] = str(Path(path).resolve())
            self._create(meta)
        else:
            self.check_model(loaded)
            self.tune_search()

    def search_breadth(self) -> int | None:
        """The collection's HNSW ``ef_search`` (``None`` if it does not say)."""
        conf = getattr(self.require(), "configuration_json", None) or {}  # raw: `.configuration` warns
        ef = (conf.get("hnsw") or {}).get("ef_search") if isinstance(conf, dict) else None
        return int(ef) if ef is not None else None

    def tune_search(self) -> bool:
        """Raise the collection's HNSW ``ef_search`` to :attr:`StoreConfig.hnsw_ef_search` if it is lower (a
        collection made by an older soundlib). Takes effect in processes that load the index afterwards.

        Returns:
            True if the setting was changed.
        """
        ef = self.search_breadth()
        if ef is None or ef >= self.cfg.hnsw_ef_search:
            return False
        with self._guard("updating the search settings"), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # chromadb: "legacy embedding function config"
            self.require().modify(configuration={"hnsw": {"ef_search": int(self.cfg.hnsw_ef_search)}})
        return True

    def check_model(self, loaded: Any) -> None:
        """Refuse a model other than the one the collection was built with.

        Raises:
            StoreError: the collection does not exist.
            ModelMismatchError: different checkpoint hash or embedding size, with a message offering ``--collection``.
        """
        self.check_built_with(loaded.name, loaded.sha256, loaded.dim,
                              "use the same --model, or --collection NAME to keep a library for this model",
                              same_weights=loaded.same_weights_as)

    def check_built_with(self, model: str, sha256: str, dim: int | None, advice: str,
                         same_weights: Iterable[str] = ()) -> None:
        """Refuse vectors of a model (``model`` name, checkpoint ``sha256``, embedding ``dim``) other than the
        collection's; ``advice`` ends the error line. ``same_weights``: hashes of earlier checkpoint files with the
        same weights bit for bit (their collections hold the same vectors), accepted too.

        Raises:
            StoreError: the collection does not exist.
            ModelMismatchError: different checkpoint hash or embedding size.
        """
        meta = self.metadata
        want_sha, want_dim = meta.get("model_sha256"), meta.get("dim")
        same_file = want_sha == sha256 or (want_sha is not None and want_sha in set(same_weights))
        if same_file and (want_dim is None or dim is None or int(want_dim) == int(dim)):
            return
        raise ModelMismatchError(
            f"collection '{self.name}' was built with model {meta.get('model', '?')} "
            f"(sha256 {str(want_sha)[:12]}, dim {want_dim}), not {model} (sha256 {str(sha256)[:12]}, "
            f"dim {dim}); {advice}", self.location)

    def recorded_model_path(self) -> str | None:
        """The checkpoint the collection was built with, if it is still there (a default for ``query``)."""
        col = self.collection
        path = (col.metadata or {}).get("model_path") if col is not None else None
        return str(path) if path and os.path.isfile(str(path)) else None

    def category_rule(self) -> str | None:
        """The category rule the collection was last ingested with (``None``: never recorded)."""
        col = self.collection
        rule = (col.metadata or {}).get("category_from") if col is not None else None
        return str(rule) if rule else None

    def set_collection_metadata(self, **changes: Any) -> None:
        """Merge ``changes`` into the collection's metadata (Chroma's ``modify`` replaces it whole)."""
        col = self.require()
        meta = dict(col.metadata or {})
        if all(meta.get(k) == v for k, v in changes.items()):
            return
        meta.update(changes)
        with self._guard("updating the collection"), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            col.modify(metadata=meta)

    @property
    def max_batch_size(self) -> int:
        """Records per write: :attr:`write_batch` if set, else the client's largest accepted write."""
        if self.write_batch:
            return int(self.write_batch)
        try:
            return int(self.client.get_max_batch_size())
        except Exception:  # noqa: BLE001 - older servers
            return 5000

    def windows(self, ids: Iterable[str] | None = None, file_id: str | None = None,
                ) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
        """Stored windows by record id, or every window of one file: ``(ids, (N, D) vectors, metadatas)``.

        Args:
            ids: record ids (``"<file_id>:<window>"``); ids that do not exist are left out.
            file_id: instead, every window of this file (:func:`file_key`), in the store's order.

        Returns:
            The records found (none: empty lists and a ``(0, D)`` array).
        """
        col = self.require()
        want = None if file_id is not None else sorted(set(ids or ()))
        got: dict[str, Any] = {}
        with self._guard("reading"):
            if file_id is not None:
                got = col.get(where={"file_id": str(file_id)}, include=["embeddings", "metadatas"])
            elif want:
                got = col.get(ids=want, include=["embeddings", "metadatas"])
        found = list(got.get("ids") or [])
        if not found:
            return [], np.zeros((0, int(self.metadata.get("dim") or 0)), np.float32), []
        vecs = np.asarray(got["embeddings"], dtype=np.float32).reshape(len(found), -1)
        return found, vecs, [dict(m or {}) for m in got.get("metadatas") or [{}] * len(found)]

    def count(self) -> int:
        """Number of records (windows) in the collection (0 if it does not exist)."""
        col = self.collection
        if col is None:
            return 0
        with self._guard("counting"):
            return int(col.count())

    # --- files ------------------------------------------------------------------------------------------------

    def _get_all(self, where: dict[str, Any], metadatas: bool = True) -> tuple[list[str], list[dict[str, Any]]]:
        """All ``(ids, metadatas)`` matching ``where``, paged (ids only are ~10x faster to list than metadata)."""
        col = self.require()
        ids: list[str] = []
        metas: list[dict[str, Any]] = []
        offset = 0
        while True:
            with self._guard("reading"):
                res = col.get(where=where, include=["metadatas"] if metadatas else [], limit=_PAGE, offset=offset)
            page = res.get("ids") or []
            ids += page
            if metadatas:
                metas += [dict(m or {}) for m in res.get("metadatas") or []]
            if len(page) < _PAGE:
                return ids, metas
            offset += _PAGE

    def iter_records(self, batch: int = _PAGE) -> Iterator[tuple[list[str], np.ndarray, list[dict[str, Any]]]]:
        """Every record of the collection, in pages: ``(ids, (n, D) float32 embeddings, metadatas)``.

        Pages are read with offsets: a writer running at the same time may shift records between pages (compare
        :meth:`count` before and after when that matters).
        """
        col = self.require()
        offset = 0
        while True:
            with self._guard("reading"):
                res = col.get(include=["embeddings", "metadatas"], limit=batch, offset=offset)
            ids = list(res.get("ids") or [])
            if not ids:
                return
            emb = res.get("embeddings")
            vecs = np.asarray(emb if emb is not None else [], dtype=np.float32).reshape(len(ids), -1)
            yield ids, vecs, [dict(m or {}) for m in (res.get("metadatas") or [None] * len(ids))]
            if len(ids) < batch:
                return
            offset += len(ids)

    def file_records(self, complete: bool = True, file_ids: Iterable[str] | None = None) -> dict[str, FileRecord]:
        """Files in the store, by file id.

        Args:
            complete: True: files whose ``last`` window is present (fully written), read from that window.
                False: every file with a window 0 (including files cut by a crash), read from window 0.
            file_ids: only these files (``None``: all).
        """
        if self.collection is None:
            return {}
        base: dict[str, Any] = {"last": True} if complete else {"window": 0}
        if file_ids is None:
            wheres = [base]
        else:
            fids = sorted(set(file_ids))
            wheres = [{"$and": [base, {"file_id": {"$in": fids[lo:lo + 500]}}]} for lo in range(0, len(fids), 500)]
        out: dict[str, FileRecord] = {}
        for where in wheres:
            for m in self._get_all(where)[1]:
                if "file_id" in m:
                    rec = FileRecord.from_metadata(m)
                    out[rec.file_id] = rec
        return out

    def started_file_ids(self) -> set[str]:
        """Ids of every file with a window 0 (complete or cut by a crash); lists ids only, so it is fast."""
        if self.collection is None:
            return set()
        return {i.rsplit(":", 1)[0] for i in self._get_all({"window": 0}, metadatas=False)[0]}

    def write_files(self, files: Sequence[FileVectors], replace: Iterable[str] = ()) -> int:
        """Write whole files: delete the old windows of files in ``replace``, then upsert every window.

        Writes go in chunks of :attr:`max_batch_size` records, each file's windows in index order, so a crash
        leaves at most one file without its ``last`` window (redone by the next ingest).

        Args:
            files: the files to write.
            replace: file ids whose previous windows must be deleted first (changed or half-written files).

        Returns:
            Number of windows written.
        """
        col = self.require()
        replace = set(replace)
        ids: list[str] = []
        vecs: list[np.ndarray] = []
        metas: list[dict[str, Any]] = []
        for f in files:
            i, v, m = f.records()
            ids += i
            vecs.append(v)
            metas += m
        if not ids:
            return 0
        allv = np.concatenate(vecs, axis=0)
        step = self.max_batch_size
        for lo in range(0, len(ids), step):
            hi = min(lo + step, len(ids))
            starting = sorted({m["file_id"] for m in metas[lo:hi] if m["window"] == 0 and m["file_id"] in replace})
            with self._guard("write"):
                if starting:
                    col.delete(where={"file_id": {"$in": starting}})
                col.upsert(ids=ids[lo:hi], embeddings=allv[lo:hi], metadatas=metas[lo:hi])
        return len(ids)

    def delete_files(self, file_ids: Iterable[str]) -> int:
        """Delete every window of the given files. Returns the number of windows deleted."""
        col = self.require()
        fids = sorted(set(file_ids))
        n = 0
        for lo in range(0, len(fids), 500):
            where = {"file_id": {"$in": fids[lo:lo + 500]}}
            n += len(self._get_all(where, metadatas=False)[0])  # ids only: no count() (linear in the store)
            with self._guard("delete"):
                col.delete(where=where)
        return n

    def touch_file(self, rec: FileRecord, **changes: Any) -> None:
        """Update metadata fields (e.g. ``mtime``) of all windows of a file; the ``last`` window goes last."""
        col = self.require()
        ids = [window_id(rec.file_id, i) for i in range(rec.n_windows)]
        step = self.max_batch_size
        for lo in range(0, len(ids), step):
            chunk = ids[lo:lo + step]
            with self._guard("update"):
                col.update(ids=chunk, metadatas=[dict(changes) for _ in chunk])

    def update_files(self, changes: Sequence[tuple[FileRecord, dict[str, Any], dict[str, Any], dict[str, Any]]],
                     vectors: Mapping[str, np.ndarray] | None = None) -> int:
        """Rewrite metadata of stored files, and the embeddings of some, in place (no model involved; their ids,
        windows and other fields are kept).

        Args:
            changes: ``(file, on_every_window, on_window_0, on_last_window)``: fields to set on all of the file's
                windows, plus extra fields for its window 0 (:func:`info_metadata`) and its last window
                (:func:`filter_metadata`); a field set to ``None`` is removed. A file's ``last`` window is written
                after its others, so a crash leaves the file looking unchanged and the next run redoes it.
            vectors: new ``(n_windows, D)`` embeddings of some of these files, by file id, in window order.

        Returns:
            Number of windows updated.
        """
        col = self.require()
        vectors = vectors or {}
        # two runs of updates: metadata only, and metadata with embeddings (one Chroma call cannot mix them)
        runs: dict[bool, tuple[list[str], list[dict[str, Any]], list[np.ndarray]]] = {False: ([], [], []),
                                                                                      True: ([], [], [])}
        for rec, every, head, tail in changes:
            ids, metas, embeddings = runs[rec.file_id in vectors]
            for i in range(rec.n_windows):
                ids.append(window_id(rec.file_id, i))
                metas.append({**every, **(head if i == 0 else {}), **(tail if i == rec.n_windows - 1 else {})})
            if rec.file_id in vectors:
                vecs = np.asarray(vectors[rec.file_id], dtype=np.float32)
                if vecs.shape[0] != rec.n_windows:
                    raise ValueError(f"{rec.file_id}: {vecs.shape[0]} vectors for {rec.n_windows} windows")
                embeddings.append(vecs)
        step = self.max_batch_size
        for ids, metas, embeddings in runs.values():
            allv = np.concatenate(embeddings) if embeddings else None
            for lo in range(0, len(ids), step):
                with self._guard("update"):
                    col.update(ids=ids[lo:lo + step], metadatas=metas[lo:lo + step],
                               **({"embeddings": allv[lo:lo + step]} if allv is not None else {}))
        return sum(len(ids) for ids, _, _ in runs.values())

    def file_vectors(self, file_ids: Iterable[str], windows: Mapping[str, int] | None = None,
                     ) -> dict[str, np.ndarray]:
        """The stored embeddings of whole files: file id -> ``(n_windows, D)`` in window order (files with no
        window left out).

        Args:
            file_ids: the files.
            windows: their window counts (``FileRecord.n_windows``) when known: the windows are then read by id,
                a key lookup (a query's top k at 200k windows: ~1 ms), not by a metadata filter, which scans every
                record (~50 ms there). A file cut by a crash may hold fewer: the ones present are returned.
        """
        col = self.require()
        fids = sorted(set(file_ids))
        rows: dict[str, dict[int, np.ndarray]] = {}

        def keep(got: dict[str, Any]) -> None:
            emb = got.get("embeddings")
            for rid, v in zip(got.get("ids") or [], emb if emb is not None else []):
                fid, _, index = rid.rpartition(":")
                rows.setdefault(fid, {})[int(index)] = np.asarray(v, dtype=np.float32)

        if windows is not None:
            want = [window_id(f, i) for f in fids for i in range(max(1, int(windows.get(f, 1))))]
            for lo in range(0, len(want), self.max_batch_size):
                with self._guard("reading"):
                    keep(col.get(ids=want[lo:lo + self.max_batch_size], include=["embeddings"]))
        else:
            for lo in range(0, len(fids), 500):
                with self._guard("reading"):
                    keep(col.get(where={"file_id": {"$in": fids[lo:lo + 500]}}, include=["embeddings"]))
        return {fid: np.stack([w[i] for i in sorted(w)]) for fid, w in rows.items()}

    def files_matching(self, where: dict[str, Any] | None = None) -> dict[str, int]:
        """The complete files whose last window matches ``where``: file id -> window count (ids listed only).

        Args:
            where: a Chroma metadata filter on keys only last windows hold (``levels``, ``words``), e.g.
                ``{"words": {"$contains": "door"}}``; ``None``: every complete file. (Adding ``{"last": True}``
                to a filter made it 20x slower at 20k windows: Chroma scans the flag on every record.)
        """
        if self.collection is None:
            return {}
        full = where or {"last": True}
        out: dict[str, int] = {}
        for rid in self._get_all(full, metadatas=False)[0]:
            fid, _, index = rid.rpartition(":")
            if _file_id_of(rid) is not None:  # a filter on keys every window holds lists them all: keep the last
                out[fid] = max(out.get(fid, 0), int(index) + 1)
        return out

    def file_heads(self, file_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Window-0 metadata (what describes each file) of the given files, by file id (missing ones left out)."""
        want = [window_id(f, 0) for f in dict.fromkeys(file_ids)]
        out: dict[str, dict[str, Any]] = {}
        step = self.max_batch_size
        for lo in range(0, len(want), step):
            for rid, m in self._metadata_by_id(want[lo:lo + step]).items():
                out[rid.rpartition(":")[0]] = m
        return out

    def add_vectors(self, ids: Sequence[str], vectors: np.ndarray, metadatas: Sequence[dict[str, Any]]) -> None:
        """Upsert raw records (ids, ``(N, D)`` vectors, metadatas) in chunks of the client's max batch size."""
        col = self.require()
        vectors = np.asarray(vectors, dtype=np.float32)
        step = self.max_batch_size
        for lo in range(0, len(ids), step):
            with self._guard("write"):
                col.upsert(ids=list(ids[lo:lo + step]), embeddings=vectors[lo:lo + step],
                           metadatas=[dict(m) for m in metadatas[lo:lo + step]])

    # --- search -----------------------------------------------------------------------------------------------

    def search(self, vectors: np.ndarray, k: int, where: dict[str, Any] | None = None,
               distinct: str = "path", files: Mapping[str, int] | None = None) -> list[list[Hit]]:
        """For each query vector, the ``k`` nearest distinct files (or other ``distinct`` values), best window each.

        Chroma is asked for :meth:`candidates` windows (``k * candidate_factor``); these are
        re-ranked exactly (Euclidean distance recomputed from the returned embeddings) and reduced to the best
        window per distinct value. If fewer than ``k`` distinct values came back, the fetch widens (x4) until there
        are ``k`` or the collection (under ``where``) is exhausted.

        For ``distinct="path"`` the candidates are fetched without metadata: the store's record ids are
        ``"<file_id>:<window>"``, so the best window per file is picked from the ids and only the ``k`` winners'
        metadata is read (one ``get`` for all queries). Metadata costs several times the embeddings per record,
        so this is what keeps a search at 200k windows near Chroma's own query time (bench/query.py). Records
        with other ids (or a winner whose stored ``file_id`` disagrees with its id) fall back to reading every
        candidate's metadata, as any other ``distinct`` key does.

        Args:
            vectors: ``(Q, D)`` (or ``(D,)``) query embeddings, L2-normalised like the stored ones.
            k: results per query.
            where: Chroma metadata filter, e.g. ``{"category": {"$in": ["dogs", "rain"]}}``.
            distinct: metadata key whose values must be distinct among the results. ``"path"`` means the file
                (root + relative path, so equal relative paths under two roots stay apart).
            files: only these files (file id -> window count, e.g. from :meth:`file_heads` ``n_windows``): see
                :meth:`search_within`. ``where`` and ``distinct`` are then ignored.

        Returns:
            One list per query of up to ``k`` :class:`Hit` sorted by increasing distance (fewer only if the
            collection holds fewer distinct values matching ``where``).
        """
        if files is not None:
            return self.search_within(vectors, k, files)
        col = self.require()
        q = _query_rows(vectors, k)
        # No count() here: Chroma counts linearly (bench/README.md). Chroma accepts n_results above the
        # collection's size and returns what there is, so "fewer ids than asked for" means exhausted.
        by_id = distinct == "path"
        include = ["embeddings"] if by_id else ["embeddings", "metadatas"]

        def one_round(pending: list[int], fetch: int) -> list[_Candidates]:
            with self._guard("query"):
                res = col.query(query_embeddings=q[pending], n_results=fetch, where=where, include=include)
            rows = [_Candidates.of(q[qi], res, j, fetch) for j, qi in enumerate(pending)]
            if by_id:
                self._winners_by_file_id(rows, k)
            slow = [r for r in rows if r.hits is None and r.ids]
            if slow:  # every candidate's metadata (other distinct keys, foreign ids)
                self._read_metadata(slow)
                for r in slow:
                    r.hits = _best_per_key(r, distinct)
            return rows

        return _widening(len(q), k, self.candidates(k), one_round)

    def search_within(self, vectors: np.ndarray, k: int, files: Mapping[str, int]) -> list[list[Hit]]:
        """:meth:`search` restricted to ``files`` (file id -> window count): the words and category filters.

        Three ways, by the number of allowed windows (the fastest of each range in bench/search.py at 200k):

        - at most :data:`EXACT_WINDOWS`: their embeddings are read by id and searched exactly in numpy;
        - more, but less than :data:`HNSW_SHARE` of the library: Chroma searches only those windows
          (``query(ids=...)``, its own filter), ``k * candidate_factor`` candidates, widening (x4) until ``k``
          files or all allowed windows;
        - a larger share: Chroma's unfiltered HNSW candidates are kept when their file is allowed; the first fetch
          is ``k * candidate_factor`` divided by that share, widening (x4) until ``k`` files are found or the
          collection is exhausted.

        The library's size is the ``windows`` count ingest records in the collection's metadata (else a count).

        Every way re-ranks its candidates exactly (distances from the returned embeddings).

        Returns:
            One list per query of up to ``k`` :class:`Hit` by increasing distance.
        """
        col = self.require()
        q = _query_rows(vectors, k)
        allowed = {f: int(n) for f, n in files.items() if int(n) > 0}
        total = sum(allowed.values())
        if not allowed:
            return [[] for _ in range(len(q))]
        if total <= EXACT_WINDOWS:
            ids = [window_id(f, i) for f, n in allowed.items() for i in range(n)]
            got_ids: list[str] = []
            embs: list[np.ndarray] = []
            step = self.max_batch_size
            for lo in range(0, len(ids), step):
                with self._guard("reading"):
                    got = col.get(ids=ids[lo:lo + step], include=["embeddings"])
                page = list(got.get("ids") or [])
                if page:
                    got_ids += page
                    embs.append(np.asarray(got["embeddings"], dtype=np.float32).reshape(len(page), -1))
            e = np.concatenate(embs) if embs else np.zeros((0, q.shape[1]), np.float32)
            rows = []
            for v in q:
                d = np.sqrt(np.maximum(((e - v[None, :]) ** 2).sum(axis=1), 0.0))
                rows.append(_Candidates(v, got_ids, e, d, np.argsort(d, kind="stable"), exhausted=True))
            self._winners_by_file_id(rows, k)
            return [(r.hits or [])[:k] for r in rows]
        library = int((col.metadata or {}).get("windows") or 0) or self.count()
        share = total / max(library, total)
        if share < HNSW_SHARE:
            ids = [window_id(f, i) for f, n in allowed.items() for i in range(n)]

            def by_ids(pending: list[int], fetch: int) -> list[_Candidates]:
                n = min(fetch, total)
                with self._guard("query"):
                    res = col.query(query_embeddings=q[pending], ids=ids, n_results=n, include=["embeddings"])
                rows = [_Candidates.of(q[qi], res, j, n) for j, qi in enumerate(pending)]
                for r in rows:
                    r.exhausted = r.exhausted or n >= total
                self._winners_by_file_id(rows, k)
                return rows

            return _widening(len(q), k, self.candidates(k), by_ids)
        factor = min(64.0, 1.0 / share)

        def one_round(pending: list[int], fetch: int) -> list[_Candidates]:
            with self._guard("query"):
                res = col.query(query_embeddings=q[pending], n_results=fetch, include=["embeddings"])
            rows = []
            for j, qi in enumerate(pending):
                full = _Candidates.of(q[qi], res, j, fetch)
                keep = [i for i, rid in enumerate(full.ids) if _file_id_of(rid) in allowed]
                d = full.distances[keep]
                rows.append(_Candidates(q[qi], [full.ids[i] for i in keep], full.embeddings[keep], d,
                                        np.argsort(d, kind="stable"), exhausted=full.exhausted))
            self._winners_by_file_id(rows, k)
            return rows

        return _widening(len(q), k, int(self.candidates(k) * factor), one_round)

    def candidates(self, k: int) -> int:
        """Windows asked of Chroma for a top-``k`` search (``k * candidate_factor``)."""
        return max(k, k * self.cfg.candidate_factor)

    def _winners_by_file_id(self, rows: list["_Candidates"], k: int) -> None:
        """Set ``hits`` of rows whose ids follow the store's scheme: best window per file id, winners' metadata
        read with one ``get``. Rows with fewer than ``k`` files that are not exhausted get ``hits = []`` (widen);
        rows that cannot be decided from the ids keep ``hits = None`` (read every candidate's metadata)."""
        chosen: dict[int, list[int]] = {}
        for n, r in enumerate(rows):
            keys = [_file_id_of(i) for i in r.ids]
            if not r.ids or any(key is None for key in keys):
                continue
            seen: set[str] = set()
            pick: list[int] = []
            for i in r.order:
                if keys[i] not in seen:
                    seen.add(keys[i])  # type: ignore[arg-type]
                    pick.append(int(i))
                    if len(pick) == k:
                        break
            if len(pick) < k and not r.exhausted:
                r.hits = []  # too few files among the candidates: widen, no metadata needed yet
            else:
                chosen[n] = pick
        winners = {rows[n].ids[i] for n, pick in chosen.items() for i in pick}
        heads = {window_id(_file_id_of(i), 0) for i in winners}  # type: ignore[arg-type]
        metas = self._metadata_by_id(winners | heads)  # one get: the winners and what describes their files
        for n, pick in chosen.items():
            r = rows[n]
            if all(metas.get(r.ids[i], {}).get("file_id") == _file_id_of(r.ids[i]) for i in pick):
                r.metas = [_with_head(metas[r.ids[i]], metas.get(window_id(_file_id_of(r.ids[i]), 0)))  # type: ignore[arg-type]
                           if i in pick else None for i in range(len(r.ids))]
                r.hits = _best_per_key(r, "path", only=pick)
            # else: a winner was deleted meanwhile or uses another scheme -> hits stay None (slow path)

    def _read_metadata(self, rows: list["_Candidates"]) -> None:
        """Fill ``metas`` of rows fetched without metadata (one ``get`` for all); records deleted since the query
        get ``None`` and are skipped by the re-rank."""
        need = [r for r in rows if r.metas is None or any(m is None for m in r.metas)]
        metas = self._metadata_by_id({i for r in need for i in r.ids})
        for r in need:
            r.metas = [metas.get(i) for i in r.ids]

    def _metadata_by_id(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """``{id: metadata}`` of the records that exist among ``ids`` (one ``get``; none for no ids)."""
        want = sorted(set(ids))
        if not want:
            return {}
        with self._guard("reading"):
            got = self.require().get(ids=want, include=["metadatas"])
        return {i: dict(m or {}) for i, m in zip(got.get("ids") or [], got.get("metadatas") or [])}

    # --- summary ----------------------------------------------------------------------------------------------

    def stats(self, records: dict[str, FileRecord] | None = None) -> dict[str, Any]:
        """``{"collection", "model", "files", "windows", "categories": {category: n_files}}`` (complete files;
        ``records``: :meth:`file_records` when already read)."""
        meta = self.metadata
        recs = self.file_records() if records is None else records
        cats = Counter(r.category for r in recs.values())
        return {"collection": self.name, "model": str(meta.get("model", "")), "files": len(recs),
                "windows": self.count(), "categories": dict(sorted(cats.items()))}

    def names(self, records: dict[str, FileRecord] | None = None) -> dict[str, int] | None:
        """How the files' words count (:mod:`soundlib.name_concepts`): ``{"mixed_files": files embedded with the
        name mixing, "named_files": those whose words named at least one concept}``; ``None`` when no file was
        mixed (a model without a concept bridge, or ``ingest --no-names``). Reads window 0 of the mixed files."""
        recs = self.file_records() if records is None else records
        mixed = [fid for fid, r in recs.items() if r.named]
        if not mixed:
            return None
        heads = self.file_heads(mixed)
        return {"mixed_files": len(mixed), "named_files": sum(1 for m in heads.values() if m.get("named_concepts"))}

    def describe(self) -> dict[str, Any]:
        """:meth:`stats` plus where the store is, the model hash and file (``model_path``, e.g. an adapted model's),
        dim, the store's size on disk (embedded) and, when
        files were mixed with their names, :meth:`names` (``names``)."""
        recs = self.file_records()
        out = self.stats(recs)
        names = self.names(recs)
        if names is not None:
            out["names"] = names
        meta = self.metadata
        out.update(location=self.location, model_sha256=str(meta.get("model_sha256", "")),
                   model_path=meta.get("model_path"), category_from=meta.get("category_from"),
                   dim=meta.get("dim"), soundlib_version=meta.get("soundlib_version"),
                   size_bytes=_folder_size(self.location) if os.path.isdir(self.location) else None)
        return out


def _folder_size(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, f))
            except OSError:
                pass
    return total


_STORE_ID = re.compile(r"^([0-9a-f]{24}):[0-9]+$")
#: Restricted searches (:meth:`SoundStore.search_within`) over at most this many windows read them and search
#: exactly in numpy; below :data:`HNSW_SHARE` of the library Chroma searches those ids; a larger share filters
#: HNSW candidates. At 200k windows (bench/search.py): numpy 29 / 61 / 123 ms at 0.8k / 2.3k / 4.3k windows,
#: Chroma's ids 275 / 130 / 91 / 49 / 30 ms at 0.8k / 2.3k / 4.3k / 8.9k / 23k, HNSW filtered 424 / 158 / 14 / 10 ms
#: at 2% / 4.4% / 11% / 31% of the library.
EXACT_WINDOWS = 2_500
HNSW_SHARE = 0.1


def _query_rows(vectors: np.ndarray, k: int) -> np.ndarray:
    """``(Q, D)`` float32 query rows of one vector or several; ``ValueError`` for ``k < 1``."""
    if k < 1:
        raise ValueError("k must be >= 1")
    q = np.asarray(vectors, dtype=np.float32)
    return q[None, :] if q.ndim == 1 else q


def _widening(n: int, k: int, fetch: int, one_round: Any) -> list[list[Hit]]:
    """Run ``one_round(pending query indices, fetch) -> rows`` (rows with ``hits`` decided, or ``[]`` to widen)
    until each of the ``n`` queries has ``k`` hits or is exhausted, fetching 4x more windows each round."""
    results: list[list[Hit]] = [[] for _ in range(n)]
    pending = list(range(n))
    while pending:
        rows = one_round(pending, fetch)
        still = []
        for qi, r in zip(pending, rows):
            hits = r.hits or []
            if len(hits) >= k or r.exhausted:
                results[qi] = hits[:k]
            else:
                still.append(qi)
        pending = still
        fetch *= 4
    return results


def _with_head(meta: dict[str, Any], head: dict[str, Any] | None) -> dict[str, Any]:
    """A window's metadata plus the file-describing keys of its window 0 (:data:`FILE_INFO_KEYS`)."""
    if not head or head is meta:
        return meta
    return {**{k: head[k] for k in FILE_INFO_KEYS if k in head}, **meta}


def _file_id_of(record_id: str) -> str | None:
    """The file id of a record id written by the store (``"<file_id>:<window>"``), else ``None``."""
    m = _STORE_ID.match(record_id)
    return m.group(1) if m else None


@dataclass
class _Candidates:
    """One query's candidate windows from Chroma: ids, ``(n, D)`` embeddings, exact distances and their order,
    metadata (``None`` until read; an entry stays ``None`` for a record deleted since), and the hits once decided."""

    query: np.ndarray
    ids: list[str]
    embeddings: np.ndarray
    distances: np.ndarray
    order: np.ndarray
    exhausted: bool
    metas: list[dict[str, Any] | None] | None = None
    hits: list[Hit] | None = None

    @classmethod
    def of(cls, query: np.ndarray, res: dict[str, Any], j: int, fetch: int) -> "_Candidates":
        ids = list(res["ids"][j])
        embs = res.get("embeddings")
        if ids and embs is not None:
            e = np.asarray(embs[j], dtype=np.float32).reshape(len(ids), -1)
        else:
            e = np.zeros((0, len(query)), dtype=np.float32)
        d = np.sqrt(np.maximum(((e - query[None, :]) ** 2).sum(axis=1), 0.0))
        metas = res.get("metadatas")
        row_metas = [dict(m or {}) for m in metas[j]] if metas is not None and metas[j] is not None else None
        return cls(query, ids, e, d, np.argsort(d, kind="stable"), exhausted=len(ids) < fetch, metas=row_metas)


def _best_per_key(r: _Candidates, distinct: str, only: Sequence[int] | None = None) -> list[Hit]:
    """The best window per ``distinct`` value among the candidates (all, or the indices ``only``), by distance."""
    assert r.metas is not None
    allowed = None if only is None else set(only)
    best: dict[Any, Hit] = {}
    for i in r.order:
        m = r.metas[i]
        if m is None or (allowed is not None and int(i) not in allowed):
            continue  # deleted since the query, or not among the winners
        if distinct == "path" and "file_id" in m:
            key = m["file_id"]
        else:
            key = m.get(distinct, r.ids[i])
        if key in best:
            continue
        root, rel = m.get("root"), str(m.get("path", r.ids[i]))
        best[key] = Hit(path=os.path.join(root, rel) if root else rel, category=str(m.get("category", "")),
                        start=float(m.get("start", 0.0)), distance=float(r.distances[i]), id=r.ids[i], metadata=dict(m))
    return list(best.values())


def _refused_status(u: Any, headers: dict[str, str] | None) -> int | None:
    """401/403 if the server (or an authenticating proxy in front of it) refuses these headers, else ``None``."""
    import httpx

    base = f"{u.scheme or 'http'}://{u.netloc}"
    try:
        r = httpx.get(f"{base}/api/v2/tenants/default_tenant", headers=headers or {}, timeout=5)
    except Exception:  # noqa: BLE001 - unreachable: not an authentication problem
        return None
    return r.status_code if r.status_code in (401, 403) else None


def open_store(db: str | os.PathLike | None = None, url: str | None = None, collection: str | None = None,
               token: str | None = None, create: bool = False) -> SoundStore:
    """Open the library store: embedded (``PersistentClient``) or a Chroma server (``HttpClient``).

    Args:
        db: embedded store folder (default ``$SOUNDLIB_HOME/chroma``, i.e. ``~/.soundlib/chroma``).
        url: ``http(s)://host:port`` of a ``chroma run`` server; wins over ``db``.
        collection: collection name (default ``StoreConfig.default_collection``); 3-512 chars of [a-zA-Z0-9._-].
        token: server token (default ``$SOUNDLIB_CHROMA_TOKEN``), sent as ``Authorization: Bearer``.
        create: create the embedded folder if missing (ingest); otherwise a missing folder is an error.

    Raises:
        StoreError: bad collection name, missing store folder, or the server cannot be reached.
    """
    import chromadb
    from chromadb.config import Settings

    cfg = StoreConfig()
    name = collection or cfg.default_collection
    if not _NAME_RE.match(name):
        raise StoreError(f"bad collection name '{name}': use 3-512 characters of letters, digits, '.', '_', '-'")
    settings = Settings(anonymized_telemetry=False)
    if url:
        from urllib.parse import urlparse

        u = urlparse(url if "://" in url else f"http://{url}")
        if not u.hostname:
            raise StoreError("bad Chroma server URL", url)
        token = token if token is not None else os.environ.get(TOKEN_ENV)
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            client = chromadb.HttpClient(host=u.hostname, port=u.port or (443 if u.scheme == "https" else 8000),
                                         ssl=u.scheme == "https", headers=headers, settings=settings)
            client.heartbeat()
        except Exception as e:  # noqa: BLE001
            refused = _refused_status(u, headers)
            if refused:
                raise StoreError(f"the Chroma server refused access (HTTP {refused}): "
                                 f"{'wrong token in' if token else 'it wants a token; set'} ${TOKEN_ENV}", url) from e
            raise StoreError(f"cannot reach the Chroma server ({type(e).__name__}: {_first_line(e)})", url) from e
        return SoundStore(client, name, url, cfg=cfg)
    path = embedded_path(db, cfg)
    if not path.exists():
        if not create:
            raise StoreError("no sound library here yet; build one with `soundlib ingest FOLDER`", str(path))
        path.mkdir(parents=True, exist_ok=True)
    if not path.is_dir():
        raise StoreError("not a folder", str(path))
    client = _persistent_client(path, settings, _open_wait(cfg))
    return SoundStore(client, name, str(path), cfg=cfg, folder=path)


def _open_wait(cfg: StoreConfig) -> float:
    """Seconds to wait for a locked store: ``$SOUNDLIB_STORE_WAIT`` if set (and a number), else the config's."""
    try:
        return max(0.1, float(os.environ[cfg.wait_env]))
    except (KeyError, ValueError):
        return float(cfg.open_wait_seconds)


def _persistent_client(path: Path, settings: Any, wait: float) -> Any:
    """``chromadb.PersistentClient`` on ``path``, after waiting at most ``wait`` seconds for its database.

    Chroma writes to its SQLite database when it opens a store, and waits for the database without end and without
    releasing Python's GIL (so no thread or signal can time it out). The store's journal is a rollback journal, so
    a write must wait for every reader as well as for a writer. A process holds its lock for milliseconds; a
    suspended one (Ctrl-Z) holds it until it is resumed, whether it was writing or reading. So the exclusive lock
    (what a write needs) is taken and released here first, with a timeout, and a store that stays locked becomes a
    :class:`StoreError` that names the holder when it is a soundlib writer.

    Raises:
        StoreError: the store cannot be opened, or stayed locked for ``wait`` seconds.
    """
    import sqlite3

    import chromadb

    db_file = path / "chroma.sqlite3"
    if db_file.is_file():
        try:
            con = sqlite3.connect(db_file, timeout=wait, isolation_level=None)
            try:
                con.execute("BEGIN EXCLUSIVE")
                con.execute("ROLLBACK")
            finally:
                con.close()
        except sqlite3.OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):
                from soundlib.locking import current_writer

                why = current_writer(path) or "another process holds its database; try again when it has finished"
                raise StoreError(f"the store stayed locked for {wait:g} s: {why}", str(path)) from None
            # anything else (e.g. a read-only store): Chroma reports it below
        except sqlite3.DatabaseError as e:  # "file is not a database", "database disk image is malformed"
            raise StoreError(f"cannot open the store: {db_file.name} is damaged or not a database ({e})",
                             str(path)) from None
    try:
        return chromadb.PersistentClient(path=str(path), settings=settings)
    except Exception as e:  # noqa: BLE001
        raise StoreError(f"cannot open the store ({type(e).__name__}: {e})", str(path)) from e
