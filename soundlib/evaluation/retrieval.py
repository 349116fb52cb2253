"""Retrieval (paper section 5, Table 1b): top-k sample and category accuracy of one or several models on a list.

- each row of the list is one *query* (its ``frame``); its ground truth is its own clip's ``sample`` and ``category``;
- the *search list* is every distinct ``(audio, start)`` clip of the list, embedded with the model under test into
  a temporary Chroma collection; the unit ranked and counted (a *candidate*) is the sample label, so the ``k``
  results are ``k`` distinct samples (exactly ``k``: the reference code's ``k + 1`` is not repeated);
- a row without ``start`` stands for the whole sound file: all its windows (up to ``max_windows``) are embedded and
  the file is scored by its best window (``file_score="best"``, what ``soundlib query`` does; the default, measured
  against the mean in ``bench/README.md``) or by the re-normalised mean of its windows (``"mean"``);
- metrics per ``k``: top-k sample accuracy, top-k category accuracy (when every row has a category), their chance
  levels (:mod:`soundlib.metrics`), and the mean reciprocal rank of the own sample over the exact full ranking
  (:func:`soundlib.evaluation.scoring.score_vectors`).

With ``candidates=CSV`` (``audio`` and optional ``category`` columns, :func:`soundlib.lists.read_candidates`) the
sound files listed there join the list's clips as whole-file candidates (distractors: no query has them as its own
sample unless the list also uses them); the chance levels are computed over all candidates.

With ``library=NAME`` the candidates are the files of an ingested collection instead, and a row's own sample is
the library file at its ``audio`` path.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from encoders.config import AudioConfig
from soundlib import metrics as M
from soundlib.config import DEFAULT_FILE_SCORE, DEFAULT_KS
from soundlib.errors import SoundlibError
from soundlib.evaluation.concepts import ConceptAccuracy, concept_accuracy
from soundlib.evaluation.inputs import (Clip, ListData, Problem, check_file_score, embed_list, load_models,
                                        model_labels, relative)
from soundlib.evaluation.scoring import RetrievalScores, score_vectors
from soundlib.lists import read_list
from soundlib.progress import ProgressFn, null_progress
from soundlib.reference_lists import ReferenceRoots

__all__ = ["ModelResult", "EvalReport", "evaluate_list", "chroma_ranking"]


@dataclass
class ModelResult:
    """One model's retrieval figures and its per-query recommendations (for ``--out``); for a model with a concept
    bridge, how often each side names the right concept (:mod:`soundlib.evaluation.concepts`)."""

    model: str
    checkpoint: str
    scores: RetrievalScores
    recommendations: dict[str, dict[str, Any]]
    concepts: ConceptAccuracy | None = None


@dataclass
class EvalReport:
    """Everything ``soundlib eval`` reports: figures per model, plus the rows that were skipped."""

    list_path: str
    ks: list[int]
    queries: int
    candidates: int
    clips: int
    rows: int
    models: list[ModelResult]
    problems: list[Problem]
    file_score: str
    library: str | None = None
    extra_candidates: int = 0
    candidates_path: str | None = None
    names: bool = False
    told: int | None = None
    picture_names: int | None = None

    @property
    def has_categories(self) -> bool:
        return any(c is not None for m in self.models for _, c in m.scores.topk.values())

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document of the eval issue (exactly its keys)."""
        doc: dict[str, Any] = {
            "list": self.list_path,
            "queries": self.queries,
            "candidates": self.candidates,
            "models": [self._model_json(m) for m in self.models],
        }
        if self.candidates_path is not None:  # --candidates: which file, and how many of the candidates it added
            doc["candidates_list"] = self.candidates_path
            doc["extra_candidates"] = self.extra_candidates
        if self.names:  # --names: the sounds' paths were mixed in (only then, so other documents keep their keys)
            doc["names"] = True
        if self.told is not None:  # --as-category: how many queries were told their category's concepts
            doc["as_category"] = self.told
        if self.picture_names is not None:  # --picture-names: how many pictures' names named a concept
            doc["picture_names"] = self.picture_names
        return doc

    @staticmethod
    def _model_json(m: ModelResult) -> dict[str, Any]:
        doc = m.scores.to_json(m.model)
        if m.concepts is not None:  # bridged models only: the other models' documents keep their keys
            doc["concept_accuracy"] = m.concepts.to_json()
        return doc

    def recommendations_json(self) -> dict[str, Any]:
        """The ``--out`` document: for one model the reference code's shape (frame -> knn, knn_dist, labels,
        ground truth); for several, ``{model: that}``."""
        if len(self.models) == 1:
            return self.models[0].recommendations
        return {m.model: m.recommendations for m in self.models}


def evaluate_list(
    list_path: str | Path,
    model_specs: Sequence[str | None] = (),
    ks: Iterable[int] = DEFAULT_KS,
    *,
    file_score: str | None = None,
    max_windows: int | None = None,
    library: str | None = None,
    db: str | None = None,
    url: str | None = None,
    progress: ProgressFn | None = None,
    roots: ReferenceRoots | None = None,
    norm_stats: str | os.PathLike | None = None,
    candidates: str | Path | None = None,
    names: bool = False,
    as_category: bool = False,
    picture_names: bool = False,
) -> EvalReport:
    """Evaluate one or several models on a pair list (same rows, same candidates for all of them).

    Args:
        list_path: the pair list (CSV, paths relative to its folder; or the reference code's format).
        model_specs: checkpoints (``None`` or empty = the default model).
        ks: cut-offs.
        file_score: how a whole-file row's windows are combined: ``"best"`` (min distance) or ``"mean"``
            (default :data:`soundlib.config.DEFAULT_FILE_SCORE`; a library is always ranked by best window, like ``query``).
        max_windows: cap of windows per whole file (default ``AudioConfig.max_windows``).
        library: evaluate against this ingested collection instead of the list's own clips.
        db, url: where that collection lives (see :func:`soundlib.store.open_store`).
        progress: progress callback.
        roots: where a reference-format list's frames and audio are (:mod:`soundlib.reference_lists`).
        norm_stats: a mean/variance ``.npy`` replacing the paper models' log-mel statistics
            (:mod:`soundlib.norm_stats`); not with ``library`` (its sounds were embedded with the checkpoint's).
        candidates: a candidates list (CSV: ``audio``, optional ``category``; paths relative to it) whose sound
            files join the list's clips as whole-file candidates (a file the list already uses is not added
            twice); a candidate that cannot be read is skipped and reported in ``problems``.
        names: mix the concepts each sound's path names into its windows, as ``soundlib ingest`` does
            (:mod:`soundlib.name_concepts`; bridged models; the path below the sounds' deepest common folder). Off by
            default: a model's own figures are the audio alone. With ``library`` the collection's vectors are used
            as ingested.
        as_category: tell each query picture its row's category, as ``query --as CATEGORY`` does
            (:mod:`soundlib.told_as`: the concepts those words name replace the picture's own); a category that
            names no concept keeps the picture's reading. What a user who says what each picture is gets, not the
            model's own figures (bridged models only; ``told`` in the report counts the queries told).
        picture_names: mix what each query picture's file name names into it, as ``query`` does
            (:meth:`soundlib.name_concepts.NameConcepts.picture_vector`; bridged models; ``picture_names`` in the
            report counts the pictures whose name named a concept). What a user whose pictures are well named gets,
            not the model's own figures; ``as_category`` replaces it where both are given, as ``query --as`` does.

    Returns:
        :class:`EvalReport`; ``queries == 0`` when nothing could be scored (every row is in ``problems``).

    Raises:
        ListError: the list file (or the candidates list) itself is unusable. CheckpointError: a model cannot be
        loaded. SoundlibError: ``candidates`` with ``library``.
    """
    if library is not None and file_score not in (None, "best"):
        raise SoundlibError("--library ranks files by their best window (as `soundlib query` does); "
                            "--file-score mean applies to lists only")
    if library is not None and norm_stats is not None:
        raise SoundlibError("--norm-stats cannot be used with --library: its sounds were embedded with the "
                            "checkpoint's own statistics")
    if library is not None and names:
        raise SoundlibError("--names mixes the list's sound paths in; with --library the collection's vectors are "
                            "used as they were ingested (see ingest --no-names)")
    if as_category and library is not None:
        raise SoundlibError("--as-category goes with a list's own clips, not --library")
    if picture_names and library is not None:
        raise SoundlibError("--picture-names goes with a list's own clips, not --library")
    if library is not None and candidates is not None:
        raise SoundlibError("--candidates adds sounds to a list's own clips; with --library the collection's files "
                            "are the candidates")
    file_score = file_score or DEFAULT_FILE_SCORE
    check_file_score(file_score)
    ks = M.parse_ks(list(ks))
    progress = progress or null_progress
    max_windows = int(max_windows or AudioConfig().max_windows)
    pairs = read_list(list_path, roots=roots)
    problems = [Problem(e.line, e.reason) for e in pairs.errors]
    data = ListData.from_pairs(pairs)
    extra = _add_candidates(data, candidates, problems) if candidates is not None else []
    loaded = load_models(model_specs, norm_stats)
    labels = model_labels([lm.name for _, lm in loaded], [spec or lm.info.path for spec, lm in loaded])
    n_rows = len(data.rows) + len(pairs.errors)
    if library is not None:
        return _evaluate_library(data, loaded, labels, ks, problems, library, db, url, progress, list_path, n_rows)

    # 1. embed frames and clips with every model; a row is scored only if it worked for all of them
    emb = embed_list([lm.model for _, lm in loaded], labels, data, progress, max_windows, names=names)
    ok_rows = emb.scorable_rows(data, range(len(data.rows)), problems)
    ok_clips = sorted({data.row_clip[i] for i in ok_rows})
    base = data.pairs.path.parent.resolve()
    cand_path = None if candidates is None else str(candidates)
    if not ok_rows:
        return EvalReport(str(list_path), ks, 0, 0, len(ok_clips), n_rows, [], problems, file_score,
                          candidates_path=cand_path, names=names)

    # 2. the candidate entries: one per distinct (clip, sample) of the scored rows, then the extra candidates
    entries: list[tuple[int, str, str | None]] = []
    seen: dict[tuple[int, str], int] = {}
    for i in ok_rows:
        row = data.rows[i]
        key = (data.row_clip[i], row.sample)
        if key not in seen:
            seen[key] = len(entries)
            entries.append((data.row_clip[i], row.sample, row.category))
    n_extra = 0
    for ci, sample, cat, where in extra:
        reason = emb.clip_errors.get(ci)
        if reason:
            problems.append(Problem(None, f"candidate {where}: {reason}"))
        else:
            entries.append((ci, sample, cat))
            n_extra += 1
    query_samples = [data.rows[i].sample for i in ok_rows]
    query_cats = [data.rows[i].category for i in ok_rows]

    results: list[ModelResult] = []
    told = named_pictures = None
    for m, (label, (spec, lm)) in enumerate(zip(labels, loaded)):
        own = qv = np.stack([emb.frames[m][data.row_frame[i]] for i in ok_rows])
        if picture_names:
            qv, named_pictures = _named_queries(lm.model, qv, [data.rows[i].frame.name for i in ok_rows])
        if as_category:
            qv, told = _told_queries(lm.model, qv, query_cats)
        vecs, v_samples, v_cats, v_meta = [], [], [], []
        for e, (ci, sample, cat) in enumerate(entries):
            starts, v = emb.clips[m][ci]
            clip = data.clips[ci]
            if clip.start is None and file_score == "mean":
                v = M.group_mean(v, np.zeros(len(v), dtype=np.int64), 1)
                starts = np.array([math.nan])
            for s, vec in zip(starts, v):
                vecs.append(vec)
                v_samples.append(sample)
                v_cats.append(cat)
                v_meta.append({"entry": e, "clip": relative(clip.audio, base),
                               "start": None if math.isnan(float(s)) else float(s)})
        cand = np.stack(vecs).astype(np.float32)
        ranked, ranked_dist, which = chroma_ranking(
            qv, cand, v_samples, v_cats, ks[-1], {"model": lm.name, "model_sha256": lm.sha256})
        hit_meta = [[v_meta[j] for j in row] for row in which]
        scores = score_vectors(qv, query_samples, query_cats, cand, v_samples, v_cats, ks,
                               ranked=ranked, ranked_distances=ranked_dist)
        recs = _recommendations(data, ok_rows, scores, hit_meta, base)
        sounds = {ci: (emb.clips[m][ci][1], cat) for ci, _, cat in entries}  # each sound (clip) once
        named = concept_accuracy(lm.model, own, query_cats, list(sounds.values()))  # the pictures' own reading
        results.append(ModelResult(label, spec or str(lm.info.path), scores, recs, named))
    n_cand = results[0].scores.n_candidates
    return EvalReport(str(list_path), ks, len(ok_rows), n_cand, len(ok_clips), n_rows, results, problems,
                      file_score, extra_candidates=n_extra, candidates_path=cand_path, names=names, told=told,
                      picture_names=named_pictures)


def _named_queries(model: Any, vectors: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, int]:
    """Query vectors with what each picture's file name names mixed in (``query``'s picture names), and how many
    names named a concept; a model without concept columns leaves them as they are."""
    from soundlib.name_concepts import for_model

    mixing = for_model(model)
    if mixing is None:
        return np.array(vectors, dtype=np.float32, copy=True), 0
    out, evidence = mixing.mix_pictures(model, vectors, names)
    return out, int(evidence.any(axis=1).sum())


def _told_queries(model: Any, vectors: np.ndarray, categories: Sequence[str | None]) -> tuple[np.ndarray, int]:
    """Query vectors with each one's concept part replaced by the concepts its category names (``query --as``), and
    how many were; a category that names no concept (or a missing one) leaves its query as it is."""
    from soundlib.told_as import as_told, told_concepts

    out = np.array(vectors, dtype=np.float32, copy=True)
    named: dict[str, Any] = {}  # category -> its Told (None: names no concept); a list repeats its categories
    told = 0
    for i, cat in enumerate(categories):
        if not cat:
            continue
        if cat not in named:
            try:
                named[cat] = told_concepts(model, cat)
            except SoundlibError:
                named[cat] = None
        if named[cat] is not None:
            out[i] = as_told(model, out[i:i + 1], named[cat])[0]
            told += 1
    return out, told


def _add_candidates(data: ListData, path: str | Path, problems: list[Problem]
                    ) -> list[tuple[int, str, str | None, str]]:
    """Append the files of a candidates list to ``data.clips`` as whole-file clips used by no row.

    A file some clip of the list already uses is left out (it is a candidate already). Its sample label is its
    path relative to the list's folder (the absolute path if a row's sample already has that label).

    Returns:
        ``[(clip index, sample label, category, "FILE:LINE")]`` of the added candidates; unusable rows of the
        candidates list go to ``problems``.
    """
    from soundlib.lists import read_candidates

    cands = read_candidates(path)
    problems.extend(Problem(None, f"candidates {e}") for e in cands.errors)
    base = data.pairs.path.parent.resolve()
    used = {c.audio for c in data.clips}
    labels = {r.sample for r in data.rows}
    out = []
    for c in cands.rows:
        if c.audio in used:
            continue
        used.add(c.audio)
        label = relative(c.audio, base)
        if label in labels:
            label = str(c.audio)
        labels.add(label)
        data.clips.append(Clip(c.audio, None))
        out.append((len(data.clips) - 1, label, c.category, f"{cands.path}:{c.line}"))
    return out


def chroma_ranking(queries: np.ndarray, vectors: np.ndarray, samples: Sequence[str],
                   categories: Sequence[str | None], k: int, store_meta: dict[str, Any] | None = None
                   ) -> tuple[list[list[str]], list[list[float]], list[list[int]]]:
    """Rank candidates with the product's search: a temporary Chroma collection, ``k`` distinct samples per query.

    Args:
        queries: (Q, D) query vectors.
        vectors: (M, D) candidate vectors (several may share a sample).
        samples, categories: (M,) per vector.
        k: results per query (``min(k, number of samples)`` come back).
        store_meta: extra collection metadata (model name and hash).

    Returns:
        Per query: the ranked sample labels, their distances, and the index (into ``vectors``) of each
        sample's best vector.
    """
    from soundlib.store import SoundStore

    vectors = np.asarray(vectors, dtype=np.float32)
    metadatas = []
    for i, (s, c) in enumerate(zip(samples, categories)):
        md: dict[str, Any] = {"sample": s, "vector": i}
        if c is not None:
            md["category"] = c
        metadatas.append(md)
    ids = [f"v{i}" for i in range(len(vectors))]
    with SoundStore.temporary(int(vectors.shape[1]), store_meta) as store:
        store.add_vectors(ids, vectors, metadatas)
        hits = store.search(np.asarray(queries, dtype=np.float32), k, distinct="sample")
    ranked = [[str(h.metadata["sample"]) for h in row] for row in hits]
    dists = [[float(h.distance) for h in row] for row in hits]
    which = [[int(h.metadata["vector"]) for h in row] for row in hits]
    return ranked, dists, which


def _clip_id(clip: str, start: float | None) -> str:
    return clip if start is None else f"{clip}@{start:g}"


def _recommendations(data: ListData, ok_rows: list[int], scores: RetrievalScores,
                     hit_meta: list[list[dict[str, Any]]], base: Path) -> dict[str, dict[str, Any]]:
    recs: dict[str, dict[str, Any]] = {}
    for q, i in enumerate(ok_rows):
        row = data.rows[i]
        key = relative(row.frame, base)
        if key in recs:
            key = f"{key}#{row.line}"
        recs[key] = {
            "line": row.line,
            "knn": [_clip_id(m["clip"], m["start"]) for m in hit_meta[q]],
            "knn_dist": [float(d) for d in scores.distances[q]],
            "knn_samples": [scores.samples[j] for j in scores.ranked[q]],
            "aud_labels": [scores.sample_categories[j] for j in scores.ranked[q]],
            "gt_sample": row.sample,
            "gt_label": row.category,
            "gt_rank": int(scores.ranks[q]),
        }
    return recs


def _library_vectors(store: Any) -> tuple[np.ndarray, list[str], list[dict[str, Any]]]:
    """Every window of a collection: ``(vectors (M, D), file ids (M,), metadatas (M,))``, read page by page."""
    vecs: list[np.ndarray] = []
    fids: list[str] = []
    metas: list[dict[str, Any]] = []
    for ids, emb, page_metas in store.iter_records():
        for i, m in zip(ids, page_metas):
            fids.append(str(m.get("file_id") or m.get("path") or i))
            metas.append(m)
        vecs.append(emb)
    if not vecs:
        raise SoundlibError(f"collection '{store.name}' is empty; fill it with `soundlib ingest`", store.location)
    return np.concatenate(vecs), fids, metas


def _evaluate_library(data: ListData, loaded: list[tuple[str, Any]], labels: list[str], ks: list[int],
                      problems: list[Problem], library: str, db: str | None, url: str | None,
                      progress: ProgressFn, list_path: str | Path, n_rows: int) -> EvalReport:
    """Retrieval against an ingested collection: candidates are its files (best window each, like ``query``).

    A row's own sample is the library file at its ``audio`` path (the row's ``start`` is ignored); its category
    is that file's library category (so both sides use the library's vocabulary).
    """
    from soundlib.store import open_store

    with open_store(db=db, url=url, collection=library) as store:
        for _, lm in loaded:
            store.check_model(lm)
        vectors, fids, metas = _library_vectors(store)
        file_path: dict[str, Path] = {}
        file_cat: dict[str, str | None] = {}
        for fid, m in zip(fids, metas):
            if fid not in file_path:
                root, rel = m.get("root"), str(m.get("path", ""))
                file_path[fid] = Path(os.path.join(root, rel) if root else rel)
                file_cat[fid] = str(m.get("category") or "") or None
        by_path: dict[str, str] = {}
        for fid, p in file_path.items():
            by_path.setdefault(str(p), fid)
            try:
                by_path.setdefault(str(p.resolve()), fid)
            except OSError:
                pass
        truth: dict[int, str] = {}
        for i, row in enumerate(data.rows):
            fid = by_path.get(str(row.audio)) or by_path.get(str(Path(row.audio).resolve()))
            if fid is None:
                problems.append(Problem(row.line, f"audio not in library '{library}': {row.audio}"))
            else:
                truth[i] = fid
        emb = embed_list([lm.model for _, lm in loaded], labels, data, progress, max_windows=None)
        ok_rows = emb.scorable_rows(data, sorted(truth), problems)
        n_files = len(file_path)
        if not ok_rows:
            return EvalReport(str(list_path), ks, 0, n_files, n_files, n_rows, [], problems, "best", library)
        base = data.pairs.path.parent.resolve()
        q_samples = [truth[i] for i in ok_rows]
        q_cats = [file_cat[truth[i]] for i in ok_rows]
        v_cats = [file_cat[f] for f in fids]
        results = []
        for m, (label, (spec, lm)) in enumerate(zip(labels, loaded)):
            qv = np.stack([emb.frames[m][data.row_frame[i]] for i in ok_rows]).astype(np.float32)
            hits = store.search(qv, ks[-1], distinct="path")
            ranked = [[str(h.metadata.get("file_id") or h.metadata.get("path") or h.id) for h in row] for row in hits]
            dists = [[float(h.distance) for h in row] for row in hits]
            scores = score_vectors(qv, q_samples, q_cats, vectors, fids, v_cats, ks, ranked=ranked,
                                   ranked_distances=dists)
            hit_meta = [[{"clip": relative(Path(h.path), base), "start": float(h.start)} for h in row] for row in hits]
            recs = _recommendations(data, ok_rows, scores, hit_meta, base)
            for q, key in enumerate(recs):
                recs[key]["knn_samples"] = [relative(file_path[f], base) for f in ranked[q]]
                recs[key]["gt_sample"] = relative(file_path[q_samples[q]], base)
                recs[key]["gt_label"] = q_cats[q]
            results.append(ModelResult(label, spec or str(lm.info.path), scores, recs))
    return EvalReport(str(list_path), ks, len(ok_rows), n_files, n_files, n_rows, results, problems, "best",
                      library)
