"""Incremental ingest of sound folders into the Chroma library (``soundlib ingest``).

For each audio file under the given folders (see :mod:`soundlib.scan`), compared with what the store holds:

- **added**: not in the store (or only half-written by an interrupted run) -> embedded and written;
- **unchanged**: same size and mtime (ns) -> nothing is decoded or embedded. Same size, new mtime, same sha256 ->
  only the stored ``mtime``/``mtime_ns`` are refreshed (still *unchanged*: the sound did not change);
- **updated**: content changed (size or sha256 differ), the window layout changed (e.g. another
  ``--max-windows``), or its windows were embedded by another version of the model's audio features
  (``audio_features_version``, e.g. a faster front end) or of the name mixing (``named``, below) -> re-embedded;
  its old windows are replaced as a whole;
- **skipped**: cannot be decoded (reason from :mod:`soundlib.audio`); windows stored for an earlier version of
  that file are deleted, so the library never recommends a file that no longer plays;
- **removed** (``prune=True``): in the store under the given folders but gone from disk;
- **relabelled**: unchanged, but stored under another category rule (``category_from``) -> only its metadata is
  rewritten (no decoding, no embedding);
- **described**: unchanged, but stored before soundlib read embedded metadata (or with ``metadata=False``) -> its
  tags are read and its windows decoded again for peak and loudness, its metadata rewritten (no embedding).
- **remixed**: unchanged, but stored under another name mixing (``named``: another words table, ``names=False``,
  an older soundlib) -> brought up to date from its stored vectors, without decoding (:func:`_remix`): vectors
  holding the audio alone are mixed in place, a mix of the concepts its words name now is kept, and a mix of
  other concepts is undone exactly and mixed again with what its words name now.

With a bridged model (the default), the concepts a file's words name (its folders and name; its embedded title,
description, keywords and CatID) are mixed into its vectors' concept part (:mod:`soundlib.name_concepts`;
``names=False`` for the audio alone), and listed as ``named_concepts`` on its window 0, beside ``heard``: the
concept its audio alone points at most (:func:`soundlib.concept_coverage.heard_concept`, computed before the mix;
what ``library concepts`` and the "is it" check of ``query`` count). Files remember the version
of that mixing (``named``); a file stored under another one is *remixed* (above), and a file stored without its
tags (``--no-metadata``) when this ingest reads them is embedded again.

Categories follow the rule ``category_from`` (:mod:`soundlib.categories`); the collection remembers the last rule
used, which is the default of the next ingest. Embedded metadata (:mod:`soundlib.tags`) is read in the decoding
thread; a file whose tags cannot be read is still ingested and reported in ``warnings``.

Files half-written by a crash that are no longer on disk are cleaned up even without ``prune``.
Interrupting (the ``stop`` event, set on the first Ctrl-C or SIGTERM by :func:`graceful_interrupt`) finishes the
batch in flight, writes the files completed so far and returns; the next run finishes the job. Completed files are
written whenever a store batch fills up and at least every :data:`FLUSH_SECONDS`, so a hard crash (SIGKILL, power
loss) loses at most that much work and never leaves a half-written file that counts as present.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from soundlib.categories import DEFAULT_RULE, categorize, check_rule
from soundlib.concept_coverage import heard_concept
from soundlib.config import INFERENCE_BATCH
from soundlib.embedding import EmbeddedFile, FailedFile, decode_file, embed_windows_batched
from soundlib.errors import SoundlibError
from soundlib.name_concepts import NameConcepts
from soundlib.name_concepts import for_model as name_mixing
from soundlib.progress import ProgressFn
from soundlib.scan import SoundFile, file_sha256, plan_roots, scan
from soundlib.store import (META_VERSION, FileRecord, FileVectors, SoundStore, file_key, filter_metadata,
                            info_metadata)
from soundlib.words import file_words

#: Files whose metadata is rewritten per store update while relabelling / describing (a crash loses at most these).
UPDATE_FILES = 500


def labels(rel: str, root: str, rule: str, info: dict[str, Any]) -> dict[str, Any]:
    """The category fields of a file: ``category``, ``category_from``, and for window 0 ``levels``, ``words`` and
    the UCS blocks of its name (``ucs_fx_name``, ``ucs_creator``, ``ucs_source``) merged into ``info``."""
    cat = categorize(rel, root, rule, cat_id=info.get("cat_id"))
    head = dict(info)
    if cat.ucs is not None:
        head.update(ucs_fx_name=cat.ucs.fx_name, ucs_creator=cat.ucs.creator_id or "",
                    ucs_source=cat.ucs.source_id or "", cat_id=cat.ucs.cat_id)
    return {"category": cat.category, "category_from": rule, "levels": cat.levels,
            "words": file_words(rel, cat.category, head), "info": head}

#: Embedded files are written at least this often (seconds): what a crash (SIGKILL, power loss) can lose.
FLUSH_SECONDS: float = 5.0


@dataclass
class IngestReport:
    """What an ingest did. ``skipped`` holds ``(path, reason)``; ``seconds`` is wall time."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    windows: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    relabelled: int = 0
    described: int = 0
    remixed: int = 0
    warnings: list[tuple[str, str]] = field(default_factory=list)
    category_from: str = DEFAULT_RULE

    @property
    def windows_per_s(self) -> float:
        """Windows embedded and written per second of wall time."""
        return self.windows / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document (shape fixed by the library issue)."""
        return {"added": self.added, "updated": self.updated, "unchanged": self.unchanged, "removed": self.removed,
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped], "windows": self.windows,
                "seconds": round(self.seconds, 3), "relabelled": self.relabelled, "described": self.described,
                "remixed": self.remixed,
                "warnings": [{"path": p, "reason": r} for p, r in self.warnings], "category_from": self.category_from}


@contextlib.contextmanager
def graceful_interrupt() -> Iterator[threading.Event]:
    """Yield an event set by the first Ctrl-C (SIGINT) or SIGTERM (``kill``, ``docker stop``, a service manager);
    a second one of the same signal acts as usual (``KeyboardInterrupt`` for Ctrl-C, termination for SIGTERM).

    A signal the process was started with ignored stays ignored (``cmd &`` in a script, ``nohup``: the shell's
    promise that a terminal Ctrl-C does not reach a background job). Outside the main thread (where signal handlers
    cannot be installed) the event is simply never set.
    """
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        event.set()
        signal.signal(signum, previous[signum])

    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield event
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _expected_windows(rec: FileRecord, cfg: Any, max_windows: int) -> int:
    from soundlib.audio import window_starts

    return len(window_starts(rec.duration, cfg, max_windows))


def ingest(folders: Iterable[str], loaded_model: Any, store: SoundStore, max_windows: int | None = None,
           prune: bool = False, progress: ProgressFn | None = None, batch_size: int = INFERENCE_BATCH,
           stop: threading.Event | None = None, flush_seconds: float = FLUSH_SECONDS,
           category_from: str | None = None, metadata: bool = True, workers: int | None = None,
           names: bool = True) -> IngestReport:
    """Bring the store up to date with the audio files under ``folders`` (rules in the module docstring).

    Args:
        folders: library roots (folders, or single audio files).
        loaded_model: a :class:`soundlib.models.LoadedModel`; the collection is created for it or must match it.
        store: the open store.
        max_windows: windows per file at most (evenly sampled); default ``AudioConfig.max_windows``; 0 = no cap.
        prune: delete stored files under ``folders`` that are gone from disk.
        progress: receives ``("scan", n, None)``, ``("embed", files_done, files_total, windows=, windows_per_s=)``.
        batch_size: windows per model call.
        stop: when set (e.g. Ctrl-C), finish the batch in flight, write what is complete and return.
        flush_seconds: write the files embedded so far at least this often (seconds of work a crash can lose),
            besides whenever :attr:`SoundStore.max_batch_size` windows are waiting.
        category_from: the category rule (:data:`soundlib.categories.CATEGORY_RULES`); ``None``: the rule the
            collection was last ingested with, else ``auto``. Files stored under another rule are relabelled.
        metadata: read embedded tags and measure loudness (``False``: faster, files stay undescribed until an
            ingest with metadata).
        workers: model workers (:func:`soundlib.embedding.embed_windows_batched`; default one per torch thread).
        names: mix the concepts a file's name, folders and embedded title / description / keywords / CatID name
            into its vectors (bridged models only; :mod:`soundlib.name_concepts`). Files stored under the other
            choice are remixed from their stored vectors.

    Returns:
        An :class:`IngestReport`.

    Raises:
        SoundlibError: a folder does not exist (before any work).
        ModelMismatchError: the collection was built with another model.
        StoreError: the store cannot be written, or another process is writing to it.
    """
    if category_from is not None:
        check_rule(category_from)
    with store.writing("ingest"):
        return _ingest_locked(list(folders), loaded_model, store, max_windows, prune, progress, batch_size, stop,
                              flush_seconds, category_from, metadata, workers, names)


def _ingest_locked(folders: list[str], loaded_model: Any, store: SoundStore, max_windows: int | None,
                   prune: bool, progress: ProgressFn | None, batch_size: int, stop: threading.Event | None,
                   flush_seconds: float, category_from: str | None, metadata: bool,
                   workers: int | None, names: bool) -> IngestReport:
    """:func:`ingest`'s work, with the store's writer lock held."""
    t0 = time.perf_counter()
    cfg = loaded_model.model.config.audio
    version = int(getattr(loaded_model.model, "audio_features_version", 1))
    cap = cfg.max_windows if max_windows is None else int(max_windows)
    mixing = name_mixing(loaded_model.model) if names else None
    named = mixing.version if mixing is not None else 0
    report = IngestReport()
    plan_roots(folders)  # every argument must exist before the store is touched
    store.prepare(loaded_model)
    rule = category_from or store.category_rule() or DEFAULT_RULE
    report.category_from = rule
    store.set_collection_metadata(category_from=rule)  # first: an interrupted run is finished under this rule
    complete = store.file_records(complete=True)  # one metadata listing (the files' last windows)...
    started_ids = store.started_file_ids()  # ...and one fast ids-only listing
    # files cut by a crash (a window 0 but no last window): rare, read their window 0
    started = {**store.file_records(complete=False, file_ids=started_ids - complete.keys()), **complete}
    known_roots = {r.root for r in started.values()}
    plans = plan_roots(folders, known_roots)

    def stopped() -> bool:
        return stop is not None and stop.is_set()

    files: list[SoundFile] = []
    for sf in scan(plans, on_skip=lambda p, r: report.skipped.append((p, r)),
                   known_roots=known_roots):
        if stopped():
            break
        files.append(sf)
        if progress is not None and len(files) % 1000 == 0:
            progress("scan", len(files), None)
    if progress is not None:
        progress("scan", len(files), len(files))

    todo: list[SoundFile] = []
    replace: set[str] = set()
    kind: dict[str, str] = {}
    on_disk: set[str] = set()
    refresh: list[tuple[SoundFile, FileRecord]] = []  # unchanged files whose metadata is out of date
    remix: list[tuple[SoundFile, FileRecord]] = []  # unchanged files stored under another name mixing

    def unchanged(sf: SoundFile, rec: FileRecord) -> None:
        report.unchanged += 1
        if rec.category_from != rule or (metadata and rec.meta < META_VERSION):
            refresh.append((sf, rec))

    for sf in files:
        if stopped():
            break
        fid = file_key(sf.root, sf.rel)
        on_disk.add(fid)
        rec = complete.get(fid)
        if rec is None:
            kind[fid] = "added"
            if fid in started:
                replace.add(fid)
            todo.append(sf)
            continue
        current = (_expected_windows(rec, cfg, cap) == rec.n_windows and rec.features == version  # the audio
                   and not (mixing is not None and metadata and rec.meta < META_VERSION))  # a mix lacking the tags
        same = current and rec.size == sf.size and rec.mtime_ns == sf.mtime_ns
        if current and rec.size == sf.size and not same:
            try:
                sha = file_sha256(sf.path)
            except OSError as e:
                report.skipped.append((sf.path, f"cannot read ({e.strerror or e})"))
                continue
            if sha == rec.sha256:
                store.touch_file(rec, mtime=sf.mtime, mtime_ns=sf.mtime_ns)
                same = True
        if same and rec.named == named:
            unchanged(sf, rec)
        elif same:
            remix.append((sf, rec))
        else:
            kind[fid] = "updated"
            replace.add(fid)
            todo.append(sf)
    if remix and not stopped():  # before embedding: the files it cannot bring up to date are embedded below
        redo: set[str] = set()
        for sf in _remix(remix, loaded_model.model, store, mixing, named, rule, report, progress, stopped):
            fid = file_key(sf.root, sf.rel)
            kind[fid] = "updated"
            replace.add(fid)
            todo.append(sf)
            redo.add(fid)
        if metadata:  # stored without the current metadata (its tags): described too, after its remix
            refresh += [(sf, rec) for sf, rec in remix if rec.meta < META_VERSION and rec.file_id not in redo]

    buffer: list[FileVectors] = []
    buffered = 0
    limit = store.max_batch_size
    last_flush = time.monotonic()

    def flush() -> None:
        nonlocal buffer, buffered, last_flush
        if buffer:
            report.windows += store.write_files(buffer, replace)
            for fv in buffer:
                setattr(report, kind[fv.file_id], getattr(report, kind[fv.file_id]) + 1)
        buffer, buffered = [], 0
        last_flush = time.monotonic()

    stale: set[str] = set()
    try:
        for res in embed_windows_batched(loaded_model.model, todo, batch_size=batch_size, progress=progress,
                                         max_windows=cap, total=len(todo), stop=stop, metadata=metadata,
                                         workers=workers):
            sf = res.sound
            fid = file_key(sf.root, sf.rel)
            if isinstance(res, FailedFile):
                report.skipped.append((sf.path, res.reason))
                if fid in started or fid in complete:
                    stale.add(fid)
                continue
            assert isinstance(res, EmbeddedFile)
            if res.warning:
                report.warnings.append((sf.path, res.warning))
            vectors, info = res.vectors, res.info
            lab = labels(sf.rel, sf.root, rule, info)
            lab["info"]["heard"] = heard_concept(loaded_model.model, vectors)  # the audio alone, before any name
            if mixing is not None:  # the concepts its words name: in its vectors, and shown with results
                evidence = mixing.vector(sf.rel, lab["info"])  # what it stores: a remix reads the same
                vectors = mixing.mix(loaded_model.model, vectors, evidence)
                lab["info"]["named_concepts"] = "; ".join(mixing.names_of(evidence))
            buffer.append(FileVectors(root=sf.root, rel=sf.rel, folder=sf.folder, size=sf.size, mtime=sf.mtime,
                                      mtime_ns=sf.mtime_ns, sha256=res.sha256, duration=res.duration,
                                      sample_rate=res.sample_rate, starts=res.starts, vectors=vectors,
                                      features=version, named=named, meta=META_VERSION if metadata else 0, **lab))
            buffered += len(res.starts)
            if buffered >= limit or time.monotonic() - last_flush >= flush_seconds:
                flush()
    except BaseException:
        with contextlib.suppress(Exception):
            flush()  # keep the files embedded before the error (or a second Ctrl-C)
        raise
    flush()
    if refresh and not stopped():
        _refresh(refresh, store, rule, metadata, cfg, cap, report, progress, stopped)
    report.interrupted = stopped()

    in_scope = {fid for fid, r in started.items() if any(p.covers(r.root, r.rel) for p in plans)}
    gone = in_scope - on_disk
    if report.interrupted:  # the walk may be incomplete: nothing counts as gone
        store.delete_files(stale)
    elif prune:
        store.delete_files(gone | stale)
        report.removed = len(gone)
    else:  # half-written files that are gone are garbage either way
        store.delete_files({fid for fid in gone if fid not in complete} | stale)
    if report.windows or report.removed or stale:
        store.set_collection_metadata(windows=store.count())  # sizes the first fetch of filtered searches
    report.seconds = time.perf_counter() - t0
    return report


def _relabelled(rec: FileRecord, sf: SoundFile, rule: str, info: dict[str, Any], every: dict[str, Any],
                head: dict[str, Any] | None = None
                ) -> tuple[FileRecord, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A :meth:`SoundStore.update_files` change for an unchanged file: its category fields under ``rule`` and the
    other fields of ``every`` on all windows, its ``info`` (and ``head``) on window 0, its filter lists on the last."""
    lab = labels(sf.rel, sf.root, rule, info)
    return (rec, {**every, "category": lab["category"], "category_from": rule},
            {**info_metadata(lab["info"]), **(head or {})}, filter_metadata(lab["levels"], lab["words"]))


def _remix(items: list[tuple[SoundFile, FileRecord]], model: Any, store: SoundStore, mixing: NameConcepts | None,
           named: int, rule: str, report: IngestReport, progress: ProgressFn | None, stopped: Any) -> list[SoundFile]:
    """Bring unchanged files stored under another name mixing (``named``: another words table, ``--no-names``, an
    older soundlib) up to date without decoding them, as far as their stored vectors allow.

    What a file's words name now is read from its path and the tags stored on its window 0. Its vectors:

    - hold the audio alone (stored unmixed, or its words named nothing): mixed in place with what they name now;
    - hold a mix of the same concepts they name now: kept (only ``named`` is rewritten);
    - hold a mix of other concepts (its ``named_concepts``): the mix is undone exactly
      (:meth:`NameConcepts.unmix`, at :data:`soundlib.config.NAME_SHARE`, the share of every stored mix), and the
      audio alone is mixed with what they name now, if anything;

    A file whose windows disagree on ``named`` (a crash cut its last remix), whose stored windows are incomplete or
    whose stored concepts are not the model's is returned, to be embedded again. Files brought up to date count as
    ``remixed``; they are relabelled under ``rule`` on the way.
    """
    heads = store.file_records(complete=False, file_ids=[rec.file_id for _, rec in items])
    again: list[SoundFile] = []
    changes: list[tuple[FileRecord, dict[str, Any], dict[str, Any], dict[str, Any]]] = []
    # files whose stored vectors change: (the concepts their stored mix named, what they name now); zero: none
    evidence: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    columns = mixing if mixing is not None else \
        NameConcepts.columns_only(getattr(model.config, "concepts", None) or ())

    def write() -> None:
        stored = store.file_vectors(evidence)
        mixed: dict[str, np.ndarray] = {}
        for rec, *_ in changes:
            if rec.file_id in evidence:
                vecs = stored.get(rec.file_id)
                if vecs is None or len(vecs) != rec.n_windows:  # windows lost: embed it again
                    again.append(files[rec.file_id])
                    continue
                before, now = evidence[rec.file_id]
                mixed[rec.file_id] = columns.mix(model, columns.unmix(model, vecs, before), now)
        keep = [c for c in changes if c[0].file_id not in evidence or c[0].file_id in mixed]
        store.update_files(keep, mixed)
        report.remixed += len(keep)
        changes.clear()
        evidence.clear()

    files = {rec.file_id: sf for sf, rec in items}
    for n, (sf, rec) in enumerate(items):
        if stopped():
            break
        head = heads.get(rec.file_id)
        if head is None or head.named != rec.named:
            again.append(sf)
            continue
        before = str(head.info.get("named_concepts") or "") if rec.named else ""
        before_vector = columns.columns_of(before)
        now_vector = mixing.vector(sf.rel, head.info) if mixing is not None else np.zeros(len(columns.concepts),
                                                                                            np.float32)
        now = "; ".join(columns.names_of(now_vector))
        if before_vector is None:  # stored concepts this model does not have: embed it again
            again.append(sf)
            continue
        if before != now:
            evidence[rec.file_id] = (before_vector, now_vector)
        changes.append(_relabelled(rec, sf, rule, head.info, {"named": named}, {"named_concepts": now or None}))
        if len(changes) >= UPDATE_FILES:
            write()
        if progress is not None:
            progress("metadata", n + 1, len(items))
    write()
    return again


def _refresh(items: list[tuple[SoundFile, FileRecord]], store: SoundStore, rule: str, metadata: bool, cfg: Any,
             cap: int, report: IngestReport, progress: ProgressFn | None, stopped: Any) -> None:
    """Rewrite the metadata of unchanged files: relabel them under ``rule``; describe files stored without the
    current metadata (tags + a decode for loudness). Nothing is embedded."""
    heads = store.file_records(complete=False, file_ids=[rec.file_id for _, rec in items])  # window 0: their info
    changes: list[tuple[FileRecord, dict[str, Any], dict[str, Any], dict[str, Any]]] = []
    counts = {"relabelled": 0, "described": 0}

    def write() -> None:
        store.update_files(changes)
        report.relabelled += counts["relabelled"]
        report.described += counts["described"]
        changes.clear()
        counts.update(relabelled=0, described=0)

    for n, (sf, rec) in enumerate(items):
        if stopped():
            break
        head = heads.get(rec.file_id)
        info = dict(head.info) if head is not None else {}
        every: dict[str, Any] = {}
        if metadata and rec.meta < META_VERSION:
            try:
                decoded = decode_file(sf, cfg, cap, metadata=True)
            except SoundlibError as e:  # unreadable now: the next ingest sees its new mtime, or the same error
                report.warnings.append((sf.path, f"cannot describe ({e.reason})"))
                continue
            if decoded.warning:
                report.warnings.append((sf.path, decoded.warning))
            info = decoded.info
            every["meta"] = META_VERSION
            counts["described"] += 1
        else:
            counts["relabelled"] += 1
        changes.append(_relabelled(rec, sf, rule, info, every))
        if len(changes) >= UPDATE_FILES:
            write()
        if progress is not None:
            progress("metadata", n + 1, len(items))
    write()
