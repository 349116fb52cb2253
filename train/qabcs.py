"""A second independent evaluation set, from qABCs (Debian ``qabcs-data``, GPL-3+): pictures and their noises.

qABCs is an alphabet game for children. For each word of its alphabets it shows a picture (``pics/<group>/<stem>.png``:
photos and drawings cut out on transparency, in five groups: animals, instruments, misc, toys, food) and plays a
noise of the thing (``noises/<stem>.ogg``: a dog's bark, a violin, a helicopter; 0.3-8 s). 241 pictures have a noise:
241 picture + sound pairs, from a source no fold of the catalog trains on, like GCompris (:mod:`train.gcompris`).

What each pair is comes from the reviewed table ``data/qabcs/concepts.csv`` (``stem,group,concept,notes``): the
concept of ``data/concepts/`` the stem names, read like a file name and then reviewed (a paper plane is no airplane,
a rocking horse no horse, a security camera's motor no shutter), or empty. 61 pairs have a concept; the others
(food, toys, instruments no concept names) keep their stem as their category, so they still count as candidates and
as queries of their own kind.

Written to ``DEST`` (by :func:`build_qabcs`, or ``tools/get-qabcs.sh DEST``):

    DEST/pictures/<group>/<stem>.png, DEST/noises/<stem>.ogg   the pairs' files
    DEST/qabcs_pairs.csv           every pair (frame,audio,category): ``soundlib eval DEST/qabcs_pairs.csv``
    DEST/qabcs_concept_pairs.csv   the pairs with a concept: ``soundlib eval DEST/qabcs_concept_pairs.csv
                                   --candidates DEST/qabcs_pairs.csv`` (61 queries, 241 candidates)
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from soundlib.errors import ListError, SoundlibError
from soundlib.lists import read_records, write_list
from train.scripts import run_script

#: The shipped reviewed table.
DEFAULT_TABLE = Path(__file__).resolve().parent.parent / "data" / "qabcs" / "concepts.csv"
#: Where the package keeps the pictures and noises, below its root.
PACKAGE_DIR = Path("usr") / "share" / "qabcs" / "abcs" / "all"


@dataclass(frozen=True)
class QabcsRow:
    """One reviewed stem: its picture group and its concept (``""``: none)."""

    stem: str
    group: str
    concept: str


@dataclass
class QabcsReport:
    """What :func:`build_qabcs` wrote: ``pairs`` (all), ``concept_pairs`` (with a concept), and the stems the
    package has but the table does not (``unreviewed``: their stem is their category) or the table has but the
    package does not (``missing``)."""

    pairs: int = 0
    concept_pairs: int = 0
    unreviewed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def summary(self, dest: str | Path) -> str:
        """What the script prints: the counts, and the stems that are in only one of the table and the package."""
        lines = [f"{self.pairs} pairs, {self.concept_pairs} with a concept -> {dest}"]
        for label, stems in (("not in the table (their stem is their category)", self.unreviewed),
                             ("in the table, not in the package", self.missing)):
            if stems:
                lines.append(f"{len(stems)} {label}: {', '.join(stems[:10])}{' ...' if len(stems) > 10 else ''}")
        return "\n".join(lines)


def read_table(path: str | Path = DEFAULT_TABLE) -> dict[str, QabcsRow]:
    """Read the reviewed table, by stem.

    Raises:
        ListError: the file is missing or unreadable, a column is missing, a stem is empty or listed twice (one
            line naming the file and the row).
    """
    out: dict[str, QabcsRow] = {}
    for line, r in read_records(path, ("stem", "group", "concept")):
        stem = r["stem"]
        if not stem:
            raise ListError("empty stem", str(path), line)
        if stem in out:
            raise ListError(f"stem {stem!r} listed twice", str(path), line)
        out[stem] = QabcsRow(stem, r["group"], r["concept"])
    return out


def category_of(stem: str, row: QabcsRow | None) -> str:
    """A pair's category: its reviewed concept, else its stem as words (``giant_panda`` -> ``giant panda``)."""
    return row.concept if row is not None and row.concept else stem.replace("_", " ").replace("-", " ")


def build_qabcs(package_root: str | Path, dest: str | Path, table: str | Path = DEFAULT_TABLE) -> QabcsReport:
    """Copy the pairs' files from an unpacked ``qabcs-data`` package and write the pair lists.

    Args:
        package_root: the folder ``dpkg -x qabcs-data_*.deb`` unpacked into (holding ``usr/share/qabcs``), or the
            ``abcs/all`` folder itself.
        dest: output folder (created; files already there are replaced).
        table: the reviewed table.

    Raises:
        SoundlibError: the package folder holds no pictures with noises (one line naming it).
        ListError: a bad table.
    """
    root = Path(package_root)
    src = root / PACKAGE_DIR if (root / PACKAGE_DIR).is_dir() else root
    reviewed = read_table(table)
    pictures = sorted(src.glob("pics/*/*.png"))
    pairs = [(p, src / "noises" / f"{p.stem}.ogg") for p in pictures if (src / "noises" / f"{p.stem}.ogg").is_file()]
    if not pairs:
        raise SoundlibError("no qABCs picture with a noise here (pics/<group>/<stem>.png + noises/<stem>.ogg)",
                            str(src))
    out = Path(dest)
    rows: list[dict[str, str]] = []
    report = QabcsReport()
    for picture, noise in pairs:
        frame = out / "pictures" / picture.parent.name / picture.name
        audio = out / "noises" / noise.name
        for a, b in ((picture, frame), (noise, audio)):
            b.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(a, b)
        row = reviewed.get(picture.stem)
        if row is None:
            report.unreviewed.append(picture.stem)
        rows.append({"frame": f"pictures/{picture.parent.name}/{picture.name}", "audio": f"noises/{noise.name}",
                     "category": category_of(picture.stem, row), "concept": row.concept if row else ""})
    report.missing = sorted(set(reviewed) - {p.stem for p, _ in pairs})
    report.pairs = len(rows)
    report.concept_pairs = sum(1 for r in rows if r["concept"])
    write_list(out / "qabcs_pairs.csv", rows)  # frame,audio,category: "concept" is no list column
    write_list(out / "qabcs_concept_pairs.csv", [r for r in rows if r["concept"]])
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--package", required=True, help="the unpacked qabcs-data package (dpkg -x)")
    p.add_argument("--out", required=True, help="DEST: pictures/, noises/ and the pair lists")
    p.add_argument("--table", default=str(DEFAULT_TABLE))
    args = p.parse_args(argv)
    return run_script(lambda: build_qabcs(args.package, args.out, args.table).summary(args.out))


if __name__ == "__main__":
    sys.exit(main())
