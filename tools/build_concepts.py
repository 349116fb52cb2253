"""Build the picture-side concept table (``data/concepts/imagenet_concepts.csv``) from WordNet 3.0, offline.

EfficientNet's 1,000 ImageNet-1k classes are WordNet 3.0 noun synsets: a class's wnid is ``n`` + the synset's
8-digit offset in ``data.noun``. A reviewed sense table (``data/concepts/senses.csv``) says, per concept, which
synsets make it up: a class belongs to a concept when one of the concept's ``include`` synsets is the class itself
or one of its hypernyms (direct or inherited, instance hypernyms too) and none of its ``exclude`` synsets is.
This tool walks the hypernym graph of ``data.noun`` and writes one row per ImageNet class, in the classifier's
logit order (the sorted wnids: the standard ImageNet-1k order).

Run once by a maintainer whenever ``senses.csv`` changes (the result is committed; nothing reads WordNet at run
time)::

    apt-get download wordnet-base && dpkg -x wordnet-base_*.deb /tmp/wn
    python tools/build_concepts.py --wordnet /tmp/wn/usr/share/wordnet \\
        --imagenet /work/shared/data/imagenet-samples            # or --wnids FILE (one wnid a line)

It refuses (exit 2, one line) a sense whose offset is not in WordNet or whose lemma is not one of the synset's
words (a typo in an offset), a concept that covers no ImageNet class, an ImageNet class claimed by two concepts,
and a class list that is not 1,000 sorted wnids. ``--report`` prints every concept's classes for review.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SENSES = ROOT / "data" / "concepts" / "senses.csv"
DEFAULT_OUT = ROOT / "data" / "concepts" / "imagenet_concepts.csv"
#: Hypernym pointer symbols of data.noun (``@`` hypernym, ``@i`` instance hypernym).
HYPERNYM_POINTERS = ("@", "@i")
#: Columns of the sense table and of the written class table.
SENSE_COLUMNS = ("concept", "include", "exclude", "notes")
CLASS_COLUMNS = ("index", "wnid", "name", "concept", "via")


class BuildError(Exception):
    """A problem with the inputs; ``str`` is one line naming the file."""


@dataclass
class Synset:
    """One noun synset of WordNet 3.0.

    Attributes:
        offset: the 8-digit byte offset (``"02084071"``); the ImageNet wnid is ``"n" + offset``.
        lemmas: its words, lower-case, ``_`` for spaces (``["dog", "domestic_dog", "canis_familiaris"]``).
        hypernyms: offsets of its direct hypernyms and instance hypernyms.
        gloss: the definition (for reports).
    """

    offset: str
    lemmas: list[str]
    hypernyms: list[str] = field(default_factory=list)
    gloss: str = ""

    @property
    def name(self) -> str:
        """The first lemma (``dog``)."""
        return self.lemmas[0]


def read_data_noun(path: str | Path) -> dict[str, Synset]:
    """Parse WordNet 3.0 ``data.noun`` (format: ``wndb(5WN)``).

    Args:
        path: the ``data.noun`` file, or the folder holding it (Debian: ``/usr/share/wordnet``).

    Returns:
        Every synset by offset.

    Raises:
        BuildError: the file is missing or not a WordNet data file.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "data.noun"
    if not p.is_file():
        raise BuildError(f"{p}: WordNet data.noun not found (apt-get download wordnet-base; dpkg -x)")
    out: dict[str, Synset] = {}
    with p.open(encoding="latin-1") as f:
        for line in f:
            if line.startswith("  "):  # the licence header
                continue
            head, _, gloss = line.partition(" | ")
            tok = head.split()
            if len(tok) < 4 or not tok[0].isdigit():
                raise BuildError(f"{p}: not a WordNet data file (line {line[:40]!r})")
            n_words = int(tok[3], 16)
            lemmas = [tok[4 + 2 * i].lower() for i in range(n_words)]
            k = 4 + 2 * n_words
            n_ptr = int(tok[k])
            hyper = []
            for i in range(n_ptr):
                sym, off, pos = tok[k + 1 + 4 * i: k + 4 + 4 * i]
                if sym in HYPERNYM_POINTERS and pos == "n":
                    hyper.append(off)
            out[tok[0]] = Synset(tok[0], lemmas, hyper, gloss.strip())
    if not out:
        raise BuildError(f"{p}: no synsets")
    return out


def ancestors(offset: str, synsets: dict[str, Synset]) -> set[str]:
    """``offset`` and every synset above it (all hypernym paths)."""
    seen = {offset}
    todo = [offset]
    while todo:
        for h in synsets[todo.pop()].hypernyms:
            if h not in seen:
                seen.add(h)
                todo.append(h)
    return seen


@dataclass(frozen=True)
class Sense:
    """A synset named in the sense table: offset and the lemma written next to it (checked against WordNet)."""

    offset: str
    lemma: str


@dataclass(frozen=True)
class ConceptSenses:
    """One row of ``senses.csv``."""

    concept: str
    include: tuple[Sense, ...]
    exclude: tuple[Sense, ...]
    notes: str
    line: int


def parse_senses_cell(cell: str) -> tuple[Sense, ...]:
    """``"n02084071 dog; n02115335 wild_dog"`` -> senses (empty cell -> ``()``).

    Raises:
        ValueError: an item that is not ``n<8 digits> <lemma>``.
    """
    out = []
    for item in cell.split(";"):
        item = item.strip()
        if not item:
            continue
        wnid, _, lemma = item.partition(" ")
        if len(wnid) != 9 or wnid[0] != "n" or not wnid[1:].isdigit() or not lemma.strip():
            raise ValueError(f"bad sense {item!r} (want 'n01234567 lemma')")
        out.append(Sense(wnid[1:], lemma.strip().lower().replace(" ", "_")))
    return tuple(out)


def read_senses(path: str | Path) -> list[ConceptSenses]:
    """Read the sense table (columns :data:`SENSE_COLUMNS`; ``#`` lines and blank lines skipped).

    Raises:
        BuildError: missing file or column, empty or duplicate concept, no include sense, a malformed sense.
    """
    p = Path(path)
    if not p.is_file():
        raise BuildError(f"{p}: sense table not found")
    rows: list[ConceptSenses] = []
    seen: dict[str, int] = {}
    with p.open(encoding="utf-8", newline="") as f:
        lines = [ln for ln in f]
    reader = csv.reader(lines)
    header = [h.strip() for h in next(reader, [])]
    if header[: len(SENSE_COLUMNS)] != list(SENSE_COLUMNS):
        raise BuildError(f"{p}: header must be {','.join(SENSE_COLUMNS)}, got {','.join(header)}")
    for line, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
            continue
        if len(cells) != len(SENSE_COLUMNS):
            raise BuildError(f"{p}:{line}: {len(cells)} cells, want {len(SENSE_COLUMNS)}")
        concept, inc, exc, notes = (c.strip() for c in cells)
        if not concept or concept.lower() in seen:
            raise BuildError(f"{p}:{line}: empty or duplicate concept {concept!r}")
        seen[concept.lower()] = line
        try:
            include, exclude = parse_senses_cell(inc), parse_senses_cell(exc)
        except ValueError as e:
            raise BuildError(f"{p}:{line}: {concept}: {e}") from None
        if not include:
            raise BuildError(f"{p}:{line}: {concept}: no include sense")
        if not notes:
            raise BuildError(f"{p}:{line}: {concept}: no note")
        rows.append(ConceptSenses(concept, include, exclude, notes, line))
    return rows


def check_senses(rows: Iterable[ConceptSenses], synsets: dict[str, Synset], where: str) -> None:
    """Every sense names a WordNet synset that has the written lemma.

    Raises:
        BuildError: naming the line, the offset and the synset's real words.
    """
    for r in rows:
        for s in (*r.include, *r.exclude):
            syn = synsets.get(s.offset)
            if syn is None:
                raise BuildError(f"{where}:{r.line}: {r.concept}: n{s.offset} is not a WordNet 3.0 noun synset")
            if s.lemma not in syn.lemmas:
                raise BuildError(f"{where}:{r.line}: {r.concept}: n{s.offset} is {'/'.join(syn.lemmas)}, "
                                 f"not {s.lemma!r}")


@dataclass(frozen=True)
class ClassConcept:
    """One row of the class table: an ImageNet class, its concept (``""`` = none) and the sense that put it there."""

    index: int
    wnid: str
    name: str
    concept: str
    via: str


def assign_concepts(wnids: Sequence[str], names: Sequence[str], rows: Sequence[ConceptSenses],
                    synsets: dict[str, Synset], where: str = "senses.csv") -> list[ClassConcept]:
    """The concept of every class (``wnids`` in logit order).

    Raises:
        BuildError: a wnid not in WordNet, a class claimed by two concepts, a concept with no class.
    """
    out = []
    used: dict[str, int] = defaultdict(int)
    for i, (wnid, name) in enumerate(zip(wnids, names)):
        off = wnid[1:]
        if off not in synsets:
            raise BuildError(f"{where}: ImageNet class {wnid} ({name}) is not a WordNet 3.0 noun synset")
        up = ancestors(off, synsets)
        hits = []
        for r in rows:
            via = next((s for s in r.include if s.offset in up), None)
            if via is not None and not any(s.offset in up for s in r.exclude):
                hits.append((r, via))
        if len(hits) > 1:
            raise BuildError(f"{where}: ImageNet class {wnid} ({name}) is in several concepts: "
                             + ", ".join(f"{r.concept} (line {r.line}, via n{v.offset} {v.lemma})" for r, v in hits))
        if hits:
            r, via = hits[0]
            used[r.concept] += 1
            out.append(ClassConcept(i, wnid, name, r.concept, f"n{via.offset} {via.lemma}"))
        else:
            out.append(ClassConcept(i, wnid, name, "", ""))
    empty = [f"{r.concept} (line {r.line})" for r in rows if not used[r.concept]]
    if empty:
        raise BuildError(f"{where}: concepts that cover no ImageNet class: {', '.join(empty)}")
    return out


def imagenet_classes(folder: str | Path | None, wnids_file: str | Path | None) -> tuple[list[str], list[str]]:
    """The 1,000 ImageNet-1k wnids and names in the classifier's order (sorted wnids).

    Args:
        folder: ImageNet sample files named ``<wnid>_<name>.<ext>`` (one per class), or
        wnids_file: one ``wnid`` (optionally ``wnid name``) per line.

    Raises:
        BuildError: not 1,000 distinct wnids.
    """
    pairs: list[tuple[str, str]] = []
    if folder is not None:
        for p in sorted(Path(folder).iterdir()):
            if len(p.stem) > 10 and p.stem[0] == "n" and p.stem[1:9].isdigit() and p.stem[9] == "_":
                pairs.append((p.stem[:9], p.stem[10:]))
        src = str(folder)
    else:
        assert wnids_file is not None
        for ln in Path(wnids_file).read_text().split("\n"):
            if ln.strip():
                w, _, n = ln.strip().partition(" ")
                pairs.append((w, n.strip()))
        src = str(wnids_file)
    pairs = sorted(set(pairs))
    wnids = [w for w, _ in pairs]
    if len(wnids) != 1000 or len(set(wnids)) != 1000:
        raise BuildError(f"{src}: want 1,000 distinct ImageNet-1k wnids, found {len(set(wnids))}")
    return wnids, [n for _, n in pairs]


def write_table(path: str | Path, table: Sequence[ClassConcept]) -> None:
    """Write the class table (columns :data:`CLASS_COLUMNS`)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(CLASS_COLUMNS)
        for c in table:
            w.writerow([c.index, c.wnid, c.name, c.concept, c.via])


def report(table: Sequence[ClassConcept], rows: Sequence[ConceptSenses]) -> str:
    """Every concept with its classes (for review), then the count of classes without a concept."""
    by: dict[str, list[str]] = defaultdict(list)
    for c in table:
        if c.concept:
            by[c.concept].append(c.name)
    lines = [f"{r.concept} ({len(by[r.concept])}): {', '.join(by[r.concept])}" for r in rows]
    lines.append(f"classes with a concept: {sum(len(v) for v in by.values())} of {len(table)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    ap = argparse.ArgumentParser(prog="python tools/build_concepts.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--wordnet", required=True, help="folder holding WordNet 3.0 data.noun (or the file)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--imagenet", help="folder of ImageNet sample files <wnid>_<name>.<ext>")
    src.add_argument("--wnids", help="file with one wnid (optionally 'wnid name') per line")
    ap.add_argument("--senses", default=str(DEFAULT_SENSES), help="sense table (default: %(default)s)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="class table to write (default: %(default)s)")
    ap.add_argument("--report", action="store_true", help="print every concept's classes")
    a = ap.parse_args(argv)
    try:
        synsets = read_data_noun(a.wordnet)
        rows = read_senses(a.senses)
        check_senses(rows, synsets, a.senses)
        wnids, names = imagenet_classes(a.imagenet, a.wnids)
        table = assign_concepts(wnids, names, rows, synsets, a.senses)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_table(a.out, table)
    if a.report:
        print(report(table, rows))
    n = sum(1 for c in table if c.concept)
    print(f"{a.out}: {len(table)} classes, {n} in {len(rows)} concepts", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
