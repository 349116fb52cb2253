"""What a library's words leave unnamed (``soundlib library words``).

Ingest mixes the concepts a file's words name into its vectors (:mod:`soundlib.name_concepts`); a file whose words
name no concept keeps the audio alone, which is right for ``take_03.wav`` and a loss for ``Hund_Bellen_01.wav`` or
``Grillen_Nacht.wav``. This module lists the words those unnamed files carry (folders below the root, the file name,
the embedded title / description / keywords / CatID: the words naming reads), by how many unnamed files carry each,
so a studio can put the ones that mean a concept into its own words table (``$SOUNDLIB_WORDS``); the next ingest
then remixes those files from the store without decoding them.

Words are the normalised words naming reads (:func:`soundlib.name_concepts.name_words`: lower case, camel case and
numbered takes split, a plural ``s`` dropped), so a listed word can go into the table as it is. Words of two
letters or fewer, and a few that never name a sound (:data:`IGNORED_WORDS`), are left out.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from soundlib.name_concepts import file_texts

#: Words that say how a file was recorded or cut, not what it sounds like; never listed.
IGNORED_WORDS: frozenset[str] = frozenset(
    "the and of with for from into onto over under off out big small large little short long loud soft quiet "
    "sfx fx sound sounds audio take mix edit final version var alt copy new old mono stereo wav mp3 ogg flac aiff "
    "left right close distant near far start end loop single multiple various misc other".split())


@dataclass
class WordCount:
    """One word of unnamed files: how many unnamed files carry it, and one of them (its stored path)."""

    word: str
    files: int
    example: str


@dataclass
class UnnamedWords:
    """The words of a collection's unnamed files (:func:`unnamed_words`).

    Attributes:
        mixed_files: files embedded with the name mixing (the others are not counted at all).
        unnamed_files: those of them whose words named no concept.
        words: the most frequent words of the unnamed files, most files first (ties by word).
    """

    mixed_files: int = 0
    unnamed_files: int = 0
    words: list[WordCount] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {"mixed_files": self.mixed_files, "unnamed_files": self.unnamed_files,
                "words": [{"word": w.word, "files": w.files, "example": w.example} for w in self.words]}


def unnamed_words(store: Any, limit: int = 40) -> UnnamedWords:
    """The words carried by the files of ``store`` whose words named no concept when they were mixed.

    Args:
        store: an open :class:`soundlib.store.SoundStore`.
        limit: words listed at most.

    Returns:
        An :class:`UnnamedWords`; all zero for a collection whose files were not mixed (a model without a concept
        bridge, ``ingest --no-names``).

    Raises:
        StoreError: the collection does not exist (one line naming the store).
    """
    store.require()
    heads = store.file_records(complete=False)  # window 0: the file's tags and the concepts its words named
    complete = store.file_records()
    mixed = [r for fid, r in heads.items() if fid in complete and complete[fid].named and r.named]
    unnamed = sorted((r for r in mixed if not r.info.get("named_concepts")), key=lambda r: r.rel)
    counts: Counter[str] = Counter()
    example: dict[str, str] = {}
    for rec in unnamed:
        words = {w for text in file_texts(rec.rel, rec.info) for w in text
                 if len(w) > 2 and not w.isdigit() and w not in IGNORED_WORDS}
        counts.update(words)
        for w in words:
            example.setdefault(w, rec.rel)
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max(0, int(limit))]
    return UnnamedWords(mixed_files=len(mixed), unnamed_files=len(unnamed),
                        words=[WordCount(w, n, example[w]) for w, n in top])
