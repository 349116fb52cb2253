"""Which concepts a library holds, by name and by ear (``soundlib library concepts``).

``query --as piano`` and a picture read as a piano rank the library by its sounds' concept parts; in a library
with no piano at all, that ranking is made of other concepts' leftovers. This module says, per concept of a bridged
model, how many files of a collection are

- **named** it: their words (folders, file name, embedded tags) named it at ingest (``named_concepts``);
- **heard** as it: the concept the audio alone points at most, from the mean of the file's window concept parts
  (:func:`heard_concept`), right for about half of a held-out library's top 10 (the model card, "Words alone").
  Ingest stores it on the file's window 0 (``heard``), computed before the name is mixed in. For a file written
  before that, it is computed from the stored vectors: a named file's are half name (:mod:`soundlib.name_concepts`),
  and that half is taken back out first (:meth:`soundlib.name_concepts.NameConcepts.unmix`), so *heard* is the
  ear's own answer either way.

A concept with neither is one the library most likely lacks. Nothing is decoded or embedded; window 0 of each file
is read, and the vectors of the files without a stored ``heard``, in batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from soundlib.errors import SoundlibError
from soundlib.progress import ProgressFn

#: Files whose vectors are read per store call.
BATCH_FILES = 500


@dataclass
class ConceptCount:
    """One concept of a library: files named it, files heard as it, and one file of it (a stored path; named
    first)."""

    concept: str
    named: int = 0
    heard: int = 0
    example: str = ""


@dataclass
class ConceptCoverage:
    """The concepts of a collection (:func:`concept_coverage`).

    Attributes:
        files: complete files counted.
        concepts: every concept of the model, most files (named + heard) first, ties in column order.
    """

    files: int = 0
    concepts: list[ConceptCount] = field(default_factory=list)

    @property
    def absent(self) -> list[str]:
        """The concepts no file is named or heard as."""
        return [c.concept for c in self.concepts if not c.named and not c.heard]

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {"files": self.files, "concepts": [{"concept": c.concept, "named": c.named, "heard": c.heard,
                                                   "example": c.example} for c in self.concepts],
                "absent": self.absent}


def concept_coverage(store: Any, model: Any, progress: ProgressFn | None = None) -> ConceptCoverage:
    """Count, per concept of ``model``, the files of ``store`` named it and heard as it.

    Args:
        store: an open :class:`soundlib.store.SoundStore` built with ``model``.
        model: the collection's bridged model (``loaded.model``).
        progress: receives ``("concepts", files_done, files_total)``.

    Returns:
        A :class:`ConceptCoverage`.

    Raises:
        SoundlibError: the model has no concept columns. StoreError: no collection.
    """
    from soundlib.name_concepts import NameConcepts

    concepts = tuple(getattr(model.config, "concepts", None) or ())
    if getattr(model, "bridge", None) is None or not concepts:
        raise SoundlibError("this collection's model has no concept columns (the default model has them)")
    store.require()
    columns = NameConcepts.columns_only(concepts)
    heads = store.file_records(complete=False)  # window 0: the concepts its words named
    ids = sorted(fid for fid in store.file_records() if fid in heads)
    counts = [ConceptCount(c) for c in concepts]
    heard_example: dict[int, str] = {}  # used where no file is named the concept
    for lo in range(0, len(ids), BATCH_FILES):
        batch = ids[lo:lo + BATCH_FILES]
        unheard = [fid for fid in batch if _stored_heard(columns, heads[fid]) is None]
        vectors = store.file_vectors(unheard, {fid: heads[fid].n_windows for fid in unheard}) if unheard else {}
        for fid in batch:
            named, heard = _file_concepts(model, columns, heads[fid], vectors.get(fid))
            for i in named:
                counts[i].named += 1
                counts[i].example = counts[i].example or heads[fid].rel
            if heard is not None:
                counts[heard].heard += 1
                heard_example.setdefault(heard, heads[fid].rel)
        if progress is not None:
            progress("concepts", min(lo + BATCH_FILES, len(ids)), len(ids))
    for i, rel in heard_example.items():
        counts[i].example = counts[i].example or rel
    order = sorted(range(len(counts)), key=lambda i: (-(counts[i].named + counts[i].heard), i))
    return ConceptCoverage(files=len(ids), concepts=[counts[i] for i in order])


def heard_concept(model: Any, vectors: np.ndarray) -> str | None:
    """The concept a file's audio alone points at most: the largest component of the mean of its windows' unit
    concept parts.

    Args:
        model: a bridged model (any other gives ``None``).
        vectors: ``(W, D)`` the file's window embeddings *before* any name was mixed in.

    Returns:
        The concept's name; ``None`` without windows or concept mass. Ingest stores it as the file's ``heard``.
    """
    col = _heard_column(model, vectors)
    return str(model.config.concepts[col]) if col is not None else None


def _heard_column(model: Any, vectors: np.ndarray | None) -> int | None:
    """:func:`heard_concept` as a concept column."""
    if getattr(model, "bridge", None) is None or vectors is None or not len(vectors):
        return None
    part = np.asarray(vectors, dtype=np.float32)[:, int(model.config.embed_dim):]
    part = part / np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-12)
    mean = part.mean(axis=0)
    return int(np.argmax(mean)) if float(mean.max()) > 0 else None


def _stored_heard(columns: Any, head: Any) -> int | None:
    """The column of the ``heard`` concept ingest stored on a file's window 0 (``None``: not stored, as in files
    written before it, or not a concept of this model)."""
    heard = str(head.info.get("heard") or "")
    return columns.concepts.index(heard) if heard in columns.concepts else None


def _file_concepts(model: Any, columns: Any, head: Any, vecs: np.ndarray | None) -> tuple[list[int], int | None]:
    """The columns a file's words named (``head``: its window-0 :class:`soundlib.store.FileRecord`) and the column
    its audio alone points at most (``None``: no concept mass): the ``heard`` ingest stored, else computed from its
    stored ``(W, D)`` ``vecs`` with the words' half unmixed (``None`` when they are not given)."""
    said = str(head.info.get("named_concepts") or "") if head.named else ""
    named = columns.columns_of(said) if said else None
    named_cols = [int(i) for i in np.flatnonzero(named)] if named is not None else []
    stored = _stored_heard(columns, head)
    if stored is not None:
        return named_cols, stored
    if vecs is not None and len(vecs) and named is not None and named.any():
        vecs = columns.unmix(model, vecs, named)
    return named_cols, _heard_column(model, vecs)


def files_concepts(store: Any, model: Any, files: Mapping[str, Mapping[str, Any]]) -> dict[str, set[int]]:
    """The concept columns each file is named or heard as (as :func:`concept_coverage` counts them): what
    ``query`` checks its results against (:mod:`soundlib.aim`).

    Args:
        store, model: the open collection and its bridged model.
        files: file id -> its metadata as a search hit carries it (``Hit.metadata``: its window's facts with window
            0's description merged in, ``named_concepts`` and ``heard`` among them).

    Reads only the vectors of the files without a stored ``heard`` (written before ingest stored it), by id (key
    lookups, no metadata filter): for a collection ingested with it, nothing.

    Returns:
        file id -> the columns its words named, plus the one its audio alone points at most.
    """
    from soundlib.name_concepts import NameConcepts
    from soundlib.store import FileRecord

    columns = NameConcepts.columns_only(tuple(model.config.concepts))
    heads = {fid: FileRecord.from_metadata(m) for fid, m in files.items() if "file_id" in m}
    unheard = [fid for fid, h in heads.items() if _stored_heard(columns, h) is None]  # files from before `heard`
    vectors = store.file_vectors(unheard, {fid: heads[fid].n_windows for fid in unheard}) if unheard else {}
    out: dict[str, set[int]] = {}
    for fid, head in heads.items():
        named, heard = _file_concepts(model, columns, head, vectors.get(fid))
        out[fid] = set(named) | ({heard} if heard is not None else set())
    return out
