"""The concept layer: what EfficientNet's ImageNet classifier already knows, summed into the catalog's concepts.

EfficientNet-Lite0's 1,000 ImageNet-1k classes are WordNet 3.0 synsets. A reviewed sense table
(``data/concepts/senses.csv``) names, per concept, the synsets whose hyponyms make it up on the picture side (``dog``
= dog.n.01, ``big cat`` = big_cat.n.01 minus snow leopard and cheetah...); ``tools/build_concepts.py`` walks
WordNet's hypernym graph once and ships the result, one row per ImageNet class in logit order
(``data/concepts/imagenet_concepts.csv``: ``index,wnid,name,concept,via``; an empty ``concept`` = none). This
module only reads those two small tables (numpy only; nothing reads WordNet at run time).

A picture's concept probabilities are its ImageNet softmax summed over each concept's classes, plus an
``"other"`` mass (the classes that belong to no concept), so every row sums to 1::

    from encoders.pretrained import imagenet_logits            # (N, 1000)
    probs = softmax(logits)                                    # rows sum to 1
    p = concept_probabilities(probs)                           # (N, C + 1); p[:, -1] is "other"
    names = concept_names()                                    # C concept names, then "other"

Concept names are those of ``data/catalog/category_map.csv`` (same spelling) plus the new concepts documented in
``data/concepts/README.md`` (notes starting with ``NEW.``).
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soundlib.errors import SoundlibError

#: The folder of the shipped tables (present in a source checkout).
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "data" / "concepts"
SENSES_FILE, CLASSES_FILE = "senses.csv", "imagenet_concepts.csv"
#: Name of the last column of :func:`concept_probabilities`: the mass of classes in no concept.
OTHER = "other"
#: ImageNet-1k classes (EfficientNet's logits).
N_CLASSES = 1000


class ConceptTableError(SoundlibError):
    """A concept table that is missing or malformed (the message names the file and the line)."""


@dataclass(frozen=True, eq=False)  # identity hash: cached per table object
class ConceptTable:
    """The picture-side concept layer.

    Attributes:
        names: the ``C`` concepts, in the order of ``senses.csv`` (``"other"`` is not among them).
        notes: the reviewer's note of each concept (same order).
        class_concept: ``(1000,)`` int: the concept index of each ImageNet class in logit order, ``-1`` for none.
        wnids: the 1,000 WordNet ids in logit order (sorted).
        class_names: the 1,000 class names as the table spells them.
        via: per class, the sense that put it in its concept (``"n02084071 dog"``; ``""`` for none).
    """

    names: tuple[str, ...]
    notes: tuple[str, ...]
    class_concept: np.ndarray
    wnids: tuple[str, ...]
    class_names: tuple[str, ...]
    via: tuple[str, ...]

    def index(self, concept: str) -> int:
        """Index of ``concept`` (case-insensitive) in :attr:`names`.

        Raises:
            KeyError: an unknown concept.
        """
        low = concept.strip().lower()
        for i, n in enumerate(self.names):
            if n.lower() == low:
                return i
        raise KeyError(f"unknown concept {concept!r}")

    def classes_of(self, concept: str) -> list[int]:
        """The ImageNet class indices (logit order) of ``concept``."""
        return np.flatnonzero(self.class_concept == self.index(concept)).tolist()

    def concept_of_wnid(self, wnid: str) -> str | None:
        """The concept of the ImageNet class ``wnid`` (``n01234567``), ``None`` when it has none or is unknown."""
        k = _wnid_index(self.wnids).get(wnid.strip().lower())
        if k is None or self.class_concept[k] < 0:
            return None
        return self.names[int(self.class_concept[k])]

    def membership(self) -> np.ndarray:
        """``(1000, C + 1)`` float32 one-hot: class -> its concept, the last column for "other"."""
        m = np.zeros((N_CLASSES, len(self.names) + 1), dtype=np.float32)
        cols = np.where(self.class_concept >= 0, self.class_concept, len(self.names))
        m[np.arange(N_CLASSES), cols] = 1.0
        return m


@functools.lru_cache(maxsize=16)
def _wnid_index(wnids: tuple[str, ...]) -> dict[str, int]:
    return {w: i for i, w in enumerate(wnids)}


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    if not path.is_file():
        raise ConceptTableError("concept table not found" if not path.exists() else "not a file", str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConceptTableError(f"cannot read ({e})", str(path)) from None
    reader = csv.reader(text.splitlines())
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in columns if c not in header]
    if missing:
        raise ConceptTableError(f"missing column(s) {', '.join(missing)}", str(path))
    out = []
    for line, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
            continue
        if len(cells) != len(header):
            raise ConceptTableError(f"line {line}: {len(cells)} cells for {len(header)} columns", str(path))
        out.append((line, {h: c.strip() for h, c in zip(header, cells)}))
    return out


def load_concepts(directory: str | Path | None = None) -> ConceptTable:
    """Read and check the shipped tables (cached per folder).

    Args:
        directory: folder holding ``senses.csv`` and ``imagenet_concepts.csv`` (default :data:`DEFAULT_DIR`).

    Returns:
        The :class:`ConceptTable`.

    Raises:
        ConceptTableError: a missing file or column, a duplicate concept, not exactly 1,000 classes in index
            order with sorted distinct wnids, a class whose concept is not in ``senses.csv``, a concept with no
            class.
    """
    return _load(Path(directory).resolve() if directory is not None else DEFAULT_DIR)


@functools.lru_cache(maxsize=4)
def _load(folder: Path) -> ConceptTable:
    senses_path, classes_path = folder / SENSES_FILE, folder / CLASSES_FILE
    names: list[str] = []
    notes: list[str] = []
    seen: set[str] = set()
    for line, row in _read_csv(senses_path, ("concept", "include", "exclude", "notes")):
        c = row["concept"]
        if not c or c.lower() in seen or c.lower() == OTHER:
            raise ConceptTableError(f"line {line}: empty, duplicate or reserved concept {c!r}", str(senses_path))
        seen.add(c.lower())
        names.append(c)
        notes.append(row["notes"])
    index = {n: i for i, n in enumerate(names)}
    rows = _read_csv(classes_path, ("index", "wnid", "name", "concept", "via"))
    if len(rows) != N_CLASSES:
        raise ConceptTableError(f"{len(rows)} classes, want {N_CLASSES}", str(classes_path))
    class_concept = np.full(N_CLASSES, -1, dtype=np.int64)
    wnids, cnames, via = [], [], []
    for k, (line, row) in enumerate(rows):
        if row["index"] != str(k):
            raise ConceptTableError(f"line {line}: index {row['index']!r}, want {k}", str(classes_path))
        w = row["wnid"].lower()
        if len(w) != 9 or w[0] != "n" or not w[1:].isdigit() or (wnids and w <= wnids[-1]):
            raise ConceptTableError(f"line {line}: wnid {row['wnid']!r} is malformed or out of order",
                                    str(classes_path))
        if row["concept"]:
            if row["concept"] not in index:
                raise ConceptTableError(f"line {line}: concept {row['concept']!r} is not in {SENSES_FILE}",
                                        str(classes_path))
            class_concept[k] = index[row["concept"]]
        wnids.append(w)
        cnames.append(row["name"])
        via.append(row["via"])
    empty = [n for i, n in enumerate(names) if not (class_concept == i).any()]
    if empty:
        raise ConceptTableError(f"concepts without an ImageNet class: {', '.join(empty)} (rebuild with "
                                "tools/build_concepts.py)", str(classes_path))
    class_concept.setflags(write=False)
    return ConceptTable(tuple(names), tuple(notes), class_concept, tuple(wnids), tuple(cnames), tuple(via))


def concept_names(table: ConceptTable | None = None) -> list[str]:
    """The columns of :func:`concept_probabilities`: the ``C`` concepts, then ``"other"``."""
    t = table or load_concepts()
    return [*t.names, OTHER]


def class_concept_index(table: ConceptTable | None = None) -> np.ndarray:
    """``(1000,)`` int: the column of each ImageNet class in :func:`concept_probabilities` (``C`` = "other")."""
    t = table or load_concepts()
    return np.where(t.class_concept >= 0, t.class_concept, len(t.names))


def concept_probabilities(imagenet_probs: np.ndarray, table: ConceptTable | None = None) -> np.ndarray:
    """Sum ImageNet class probabilities into concept probabilities.

    Args:
        imagenet_probs: ``(N, 1000)`` (or ``(1000,)``) softmax of EfficientNet's logits, in logit order;
            non-negative (rows summing to 1 give rows summing to 1).
        table: the concept table (default: the shipped one).

    Returns:
        ``(N, C + 1)`` (or ``(C + 1,)``) float32: column ``c`` is the mass of concept ``c``'s classes, the last
        column the mass of the classes in no concept ("other"); columns as :func:`concept_names`.

    Raises:
        ValueError: not 1,000 classes on the last axis, more than 2 dimensions, negative or non-finite values.
    """
    t = table or load_concepts()
    p = np.asarray(imagenet_probs, dtype=np.float32)
    if p.ndim not in (1, 2) or p.shape[-1] != N_CLASSES:
        raise ValueError(f"imagenet_probs must be (N, {N_CLASSES}) or ({N_CLASSES},), got {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("imagenet_probs must be finite and non-negative (a softmax, not logits)")
    return p @ _membership(t)


@functools.lru_cache(maxsize=4)
def _membership(t: ConceptTable) -> np.ndarray:
    return t.membership()
