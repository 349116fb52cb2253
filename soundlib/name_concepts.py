"""Concepts a sound's file name and folders name, mixed into its embedding at ingest (bridged models).

A studio's library is named: ``Dog Bark Large 03.wav``, ``ANMLDog_Growl_JD.wav``, ``animals/cow/moo2.ogg``. The
bridged model's sound classifier names the right concept for about one sound window in five from sources it never
saw (``soundlib loso``), while the picture side names it for most photos. A name that says ``dog`` is better
evidence than that, so ingest moves a file's concept part towards the concepts its name and folders name
(:func:`encoders.bridge.mix_concepts`, share :data:`soundlib.config.NAME_SHARE`): half the concept part comes from
the audio, half from the words. A name with no concept word (``take_03.wav``) changes nothing; a name with two
(``Fire Crackling Campfire Guitar``: fire, acoustic guitar) spreads its half over them and the audio decides
between them. Phrases are read longest first and use their words up: ``Sea Lion Bark`` names sea lion (not big cat
by ``lion``, nor dog by ``bark``: ``bark`` is read after ``sea lion``, so it still names dog); ``Fire Engine``
names siren, not fire.

The words live in ``soundlib/data/concept_words.csv`` (``concept,words,notes``; words ``;``-separated, a word may
be two, e.g. ``sea lion``): a reviewed table of what names a concept in English sound-library names, normalised like
every other word in soundlib (:func:`soundlib.words.tokens`: lower case, camel case and ``_`` split, a plural ``s``
dropped). Which words count (:data:`TAG_FIELDS`): the folders below the ingest root and the file name without its
extension, and the embedded ``title``, ``description``, ``keywords`` and UCS ``cat_id`` read at the same ingest
(a studio's ``SFX_0412.wav`` often says "Large dog barking, outdoors" only in its BWF description). Not the comment
(recording notes), the artist or the library (``Boom Library`` is not an explosion). Tags live inside the file, so
they cannot change without the file's bytes changing and the file being embedded again; a file first ingested with
``--no-metadata`` is embedded again by the first ingest that reads its tags.

A studio adds its own words (another language, its own vocabulary) in a table of the same shape named by
``$SOUNDLIB_WORDS`` (:func:`user_words`); its concepts must be the model's. Files remember the words they were
mixed under (:func:`names_version`), so after a change of that table the next ingest brings them up to date.

Only bridged models have a concept part; for the others :func:`for_model` returns ``None`` and nothing changes.
Stored files remember the :data:`soundlib.config.NAMES_VERSION` their vectors were made under (``named``), so a
library ingested before, or under another table, is brought up to date by the next ingest from its stored vectors
(*remixed*, no decoding; :mod:`soundlib.ingest`): the audio alone is mixed in place, a mix of other concepts is
first undone exactly (:meth:`NameConcepts.unmix`; every stored mix was made at :data:`soundlib.config.NAME_SHARE`).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from soundlib.config import NAME_SHARE, NAMES_VERSION, WORDS_ENV
from soundlib.errors import SoundlibError
from soundlib.lists import read_records
from soundlib.words import stem, tokens

#: The reviewed concept -> words table shipped with soundlib.
WORDS_TABLE = Path(__file__).resolve().parent / "data" / "concept_words.csv"
#: Embedded tags (:mod:`soundlib.tags`, the file's ``info``) whose words count besides its path.
TAG_FIELDS: tuple[str, ...] = ("title", "description", "keywords", "cat_id")


def concept_words(path: str | Path = WORDS_TABLE) -> dict[str, tuple[tuple[str, ...], ...]]:
    """A words table (``concept,words[,notes]``) as ``{concept: (phrase, ...)}``, each phrase the normalised words
    of one entry (read once per file version).

    Raises:
        SoundlibError: the table is missing, unreadable, not UTF-8 text or lacks its columns
            (:func:`soundlib.lists.read_records`), names a concept twice, or holds an entry with no word left after
            normalising (one line naming the file).
    """
    try:
        st = Path(path).stat()
    except OSError:  # read_records names what is wrong with it
        return _read_table(str(path), -1, -1)
    return _read_table(str(path), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=8)
def _read_table(path: str, mtime_ns: int, size: int) -> dict[str, tuple[tuple[str, ...], ...]]:
    """:func:`concept_words`'s reading, cached by the file's path, mtime and size."""
    table: dict[str, tuple[tuple[str, ...], ...]] = {}
    for line, row in read_records(path, ("concept", "words")):
        concept = row["concept"].lower()
        if not concept or concept in table:
            raise SoundlibError(f"line {line}: empty or repeated concept {concept!r}", path)
        phrases = []
        for entry in row["words"].split(";"):
            phrase = tuple(tokens(entry))
            if entry.strip() and not phrase:
                raise SoundlibError(f"line {line}: {entry!r} has no word soundlib keeps", path)
            if phrase:
                phrases.append(phrase)
        table[concept] = tuple(phrases)
    return table


_DIGITS = re.compile(r"(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])")


def name_words(text: str) -> list[str]:
    """:func:`soundlib.words.tokens` with letters and digits parted too (``Dog1`` -> ``dog``, ``shaker01`` ->
    ``shaker``): numbered takes are how libraries name files. Word search keeps ``dog1`` whole."""
    out: list[str] = []
    for word in tokens(text):
        out += [stem(w) for w in _DIGITS.split(word) if len(w) > 1 and not w.isdigit()]
    return out


#: Words a query picture's or video's file name uses for the picture itself, not for what it shows
#: (``shot_012.png``, ``dog-photo.jpg``, ``camera_A.mov``): left out where such a name is read
#: (:meth:`NameConcepts.picture_vector`); in a sound's name ``shot`` and ``camera`` do name what is heard.
PICTURE_MEDIUM_WORDS = ("shot", "take", "camera", "cam", "photo", "photograph", "pic", "picture", "image", "img",
                        "frame", "still", "screenshot", "scene", "clip", "render", "sketch", "drawing", "storyboard",
                        "video", "movie", "film", "footage")
_PICTURE_MEDIUM_STEMS = frozenset(stem(w) for w in PICTURE_MEDIUM_WORDS)


def path_words(rel: str) -> list[str]:
    """The normalised words of a stored path (folders below the root, then the name without its extension)."""
    parts = PurePosixPath(rel.replace("\\", "/")).parts
    out: list[str] = []
    for i, part in enumerate(parts):
        out += name_words(PurePosixPath(part).stem if i == len(parts) - 1 else part)
    return out


def file_texts(rel: str, info: Mapping[str, Any] | None = None) -> list[list[str]]:
    """The word sequences that may name a file's concepts: its path (:func:`path_words`), then each of its
    :data:`TAG_FIELDS` present in ``info`` (kept apart: a phrase never spans two of them)."""
    texts = [path_words(rel)]
    for key in TAG_FIELDS:
        value = (info or {}).get(key)
        if value:
            texts.append(name_words(str(value)))
    return texts


def named_columns(words: Sequence[str], phrases: Sequence[Sequence[tuple[str, ...]]]) -> set[int]:
    """Columns named in ``words``, read left to right taking the longest phrase that starts at each word; the words
    of a phrase are used up (``sea lion`` names sea lion, not also big cat by ``lion``)."""
    by_phrase: dict[tuple[str, ...], set[int]] = {}
    for col, ps in enumerate(phrases):
        for p in ps:
            by_phrase.setdefault(p, set()).add(col)
    longest = max((len(p) for p in by_phrase), default=0)
    out: set[int] = set()
    i = 0
    while i < len(words):
        for n in range(min(longest, len(words) - i), 0, -1):
            cols = by_phrase.get(tuple(words[i:i + n]))
            if cols:
                out |= cols
                i += n
                break
        else:
            i += 1
    return out


def user_words() -> Path | None:
    """The studio's own words table named by ``$SOUNDLIB_WORDS`` (:data:`WORDS_ENV`), or ``None``."""
    value = os.environ.get(WORDS_ENV, "").strip()
    return Path(value).expanduser() if value else None


def names_version(extra: str | Path | None = None) -> int:
    """The version stored with mixed files (``named``): :data:`soundlib.config.NAMES_VERSION`, or with a studio's
    words table a number drawn from it and its content (sha256, 31 bits, never 0 or 1), so a file mixed under other
    words is brought up to date by the next ingest."""
    if extra is None:
        return NAMES_VERSION
    try:
        data = Path(extra).read_bytes()
    except OSError as e:
        raise SoundlibError(f"cannot read ({e.strerror or e})", str(extra)) from e
    digest = hashlib.sha256(f"{NAMES_VERSION}\n".encode() + data).digest()
    return 2 + int.from_bytes(digest[:4], "big") % (2**31 - 2)


@dataclass(frozen=True)
class NameConcepts:
    """The concept columns of one bridged model, with the words that name each.

    Attributes:
        concepts: the model's concept columns, in order (``config.concepts``).
        phrases: per column, the phrases naming it (empty for a column the table does not list).
        share: the share of the concept part the name gets (:data:`soundlib.config.NAME_SHARE`).
        version: what mixed files store as ``named`` (:func:`names_version`).
    """

    concepts: tuple[str, ...]
    phrases: tuple[tuple[tuple[str, ...], ...], ...]
    share: float = NAME_SHARE
    version: int = NAMES_VERSION

    @classmethod
    def for_concepts(cls, concepts: Sequence[str], share: float = NAME_SHARE, table: str | Path = WORDS_TABLE,
                     extra: str | Path | None = None) -> "NameConcepts":
        """The columns ``concepts`` with the words of ``table``, plus those of a studio's ``extra`` table.

        Raises:
            SoundlibError: a table is unusable, or ``extra`` names a concept that is not one of ``concepts`` (one
                line naming the file).
        """
        words = {c: list(ps) for c, ps in concept_words(table).items()}
        names = tuple(str(c) for c in concepts)
        if extra is not None:
            known = {c.strip().lower() for c in names}
            for concept, phrases in concept_words(extra).items():
                if concept not in known:
                    raise SoundlibError(f"{concept!r} is not a concept of this model (its concepts are the rows "
                                        f"of soundlib/data/concept_words.csv)", str(extra))
                words.setdefault(concept, []).extend(p for p in phrases if p not in words.get(concept, []))
        return cls(names, tuple(tuple(words.get(c.strip().lower(), ())) for c in names), share,
                   names_version(extra))

    @classmethod
    def columns_only(cls, concepts: Sequence[str]) -> "NameConcepts":
        """The columns ``concepts`` with no words: for :meth:`columns_of`, :meth:`names_of`, :meth:`mix` and
        :meth:`unmix` where no name is read (``ingest --no-names``, ``library concepts``)."""
        names = tuple(str(c) for c in concepts)
        return cls(names, tuple(() for _ in names))

    def _columns(self, rel: str, info: Mapping[str, Any] | None) -> set[int]:
        cols: set[int] = set()
        for words in file_texts(rel, info):
            cols |= named_columns(words, self.phrases)
        return cols

    def picture_vector(self, name: str) -> np.ndarray:
        """The :meth:`vector` of a query picture's or video's file name (``horse.png`` -> horse), its
        :data:`PICTURE_MEDIUM_WORDS` left out (``dog-photo.jpg`` names a dog, not a camera shutter)."""
        words = [w for w in name_words(PurePosixPath(name.replace("\\", "/")).stem)
                 if w not in _PICTURE_MEDIUM_STEMS]
        out = np.zeros(len(self.concepts), np.float32)
        out[sorted(named_columns(words, self.phrases))] = 1.0
        return out

    def named(self, rel: str, info: Mapping[str, Any] | None = None) -> list[str]:
        """The concepts the path (and the tags in ``info``) name, in column order."""
        return self.names_of(self.vector(rel, info))

    def vector(self, rel: str, info: Mapping[str, Any] | None = None) -> np.ndarray:
        """``(C,)`` float32: 1 for each concept the path (and the tags in ``info``) name, else 0 (all zero:
        nothing named)."""
        out = np.zeros(len(self.concepts), np.float32)
        out[sorted(self._columns(rel, info))] = 1.0
        return out

    def names_of(self, named: np.ndarray) -> list[str]:
        """The concepts of a :meth:`vector`, in column order."""
        return [self.concepts[i] for i in np.flatnonzero(named)]

    def mix(self, model: Any, vectors: np.ndarray, named: np.ndarray) -> np.ndarray:
        """One file's ``(N, D)`` window embeddings with their concept part mixed with its :meth:`vector`."""
        import torch

        if not named.any() or len(vectors) == 0:
            return vectors
        out = model.with_sound_evidence(torch.from_numpy(np.asarray(vectors, np.float32)), torch.from_numpy(named),
                                        self.share)
        return out.detach().float().cpu().numpy()

    def columns_of(self, names: str) -> np.ndarray | None:
        """The :meth:`vector` of a stored ``named_concepts`` (``"dog; cat"``); ``None`` when it names a concept that
        is not one of these columns."""
        out = np.zeros(len(self.concepts), np.float32)
        for name in (n.strip() for n in names.split(";")):
            if name:
                if name not in self.concepts:
                    return None
                out[self.concepts.index(name)] = 1.0
        return out

    def unmix(self, model: Any, vectors: np.ndarray, named: np.ndarray, share: float = NAME_SHARE) -> np.ndarray:
        """One file's ``(N, D)`` window embeddings mixed with ``named`` at ``share`` (the share every stored mix was
        made at, :data:`soundlib.config.NAME_SHARE`) -> the audio alone (exact up to rounding)."""
        import torch

        if not named.any() or len(vectors) == 0:
            return vectors
        out = model.without_sound_evidence(torch.from_numpy(np.asarray(vectors, np.float32)),
                                           torch.from_numpy(named), share)
        return out.detach().float().cpu().numpy()

    def mix_pictures(self, model: Any, vectors: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Query pictures' ``(N, D)`` embeddings, row ``i`` from the file named ``names[i]`` (a video's name repeats
        for its frames), each mixed with what its name names (:meth:`picture_vector`).

        Returns:
            the mixed ``(N, D)`` float32 embeddings (rows whose name names nothing as given) and the ``(N, C)``
            evidence each row was mixed with (all zero: nothing named).
        """
        out = np.array(vectors, dtype=np.float32, copy=True)
        evidence = np.zeros((len(out), len(self.concepts)), np.float32)
        rows: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            rows.setdefault(name, []).append(i)
        for name, idx in rows.items():
            named = self.picture_vector(name)
            if named.any():
                out[idx] = self.mix(model, out[idx], named)
                evidence[idx] = named
        return out, evidence

    def apply(self, model: Any, rel: str, vectors: np.ndarray, info: Mapping[str, Any] | None = None) -> np.ndarray:
        """One file's ``(N, D)`` window embeddings with their concept part mixed with what its path (and the tags in
        ``info``) name."""
        return self.mix(model, vectors, self.vector(rel, info))


def for_model(model: Any, share: float = NAME_SHARE) -> NameConcepts | None:
    """The name mixing of a model, with the studio's own words of ``$SOUNDLIB_WORDS`` when set: ``None`` for a
    model without a concept bridge (nothing to mix into)."""
    if getattr(model, "bridge", None) is None or not getattr(model.config, "concepts", None):
        return None
    return NameConcepts.for_concepts(model.config.concepts, share, extra=user_words())
