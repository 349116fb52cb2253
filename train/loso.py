"""Leave-one-source-out (LOSO) evaluation: train without some sources, test on their pictures and sounds.

Recommendations must hold on pictures and sounds from sources the model never saw, so every choice (features,
loss, temperature, checkpoint, blend weights) is measured this way, never on a same-source validation list. A
*fold* names the picture sources and the sound sources it holds out; the model is trained on the catalog built
from every other source and tested on the held-out files only. ``soundlib loso`` is the command.

Sources (:func:`file_source`)
    - a **sound**'s source is the folder directly under the sound root given on the command line (a package:
      ``media/sfx/wesnoth/...`` -> ``wesnoth``, ``media2/sfx/0ad/...`` -> ``0ad``); a sound lying directly in the
      root belongs to a source named after the root;
    - a **picture** root is *one source*, named after the folder, when it holds pictures directly
      (``imagenet-samples/n01440764_tench.jpg`` -> ``imagenet-samples``) or when all its pictures lie exactly one
      folder down in two or more folders (class folders: ``cifar10-train/dog/0001.png`` -> ``cifar10-train``);
      otherwise every folder directly under it is a source (``media/images/scratch/...`` -> ``scratch``,
      ``media2/images/widelands/...`` -> ``widelands``) (:func:`picture_root`);
    - GCompris's files (``--gcompris DEST``, built by ``soundlib gcompris``) are the source ``gcompris``.

    Names are compared ignoring case. A fold naming a source that no root holds is refused before any work
    (:meth:`LosoMedia.check`), so a layout read otherwise than intended cannot silently hold out nothing.

The fold table (``data/loso/folds.csv``, :func:`read_folds`)
    CSV with a header: ``fold`` (a name, also the fold's folder), ``pictures`` and ``sounds`` (``;``-separated
    held-out sources), ``note``. GCompris is held out in both columns or in neither.

A fold's lists (:func:`build_fold`), in ``OUT/<fold>/``
    - ``train/catalog_train.csv``, ``train/catalog_val.csv``: :func:`train.catalog.build_catalog` over every root
      with the held-out sources' files left out (its ``keep``), plus GCompris's sounds and pictures with their
      reviewed concepts when the fold does not hold GCompris out (its ``extra``). With nothing held out this is
      exactly ``soundlib catalog``'s pairs. The catalog's own validation split (training sources only) chooses
      the checkpoint; the test never does. ``train/catalog_sounds.csv``: the catalog's labelled sounds of the
      training sources (paired or not), which a recipe with ``bridge_sounds="catalog"`` fits the concept bridge on.
    - ``test.csv``: the queries. For the root sources: the held-out pictures of every concept (map order) that
      also has held-out sounds, each picture once (at most ``queries_per_concept`` per concept, a seeded choice),
      paired round-robin with the held-out sounds of its concept (seeded order); ``category`` = the concept, the
      sample = that sound (whole file). For GCompris: its real picture-sound pairs (``gcompris_pairs.csv``).
    - ``candidates.csv``: every held-out sound that has a concept (``audio,category``: any concept, not only the
      queried ones: the others are distractors; a sound in several concepts takes the first); for GCompris every
      sound of ``gcompris_sounds.csv``. ``soundlib eval OUT/<fold>/test.csv --candidates OUT/<fold>/candidates.csv``
      reproduces a fold's figures.
    - ``fold.json``: what the lists were built from and their counts (:class:`FoldLists`).

Runs (:func:`run_loso`), in ``OUT/<fold>/<model>/``
    Each model is trained with :func:`train.loop.train_model` and its recipe (:func:`recipe`: ``train.defaults.
    RECIPES`` under the options given), its ``best.pt`` evaluated with
    :func:`soundlib.evaluation.retrieval.evaluate_list` on the test list plus the candidates, and the figures
    written to ``result.json``. Resumable: a fold's lists are built once (``fold.json``), a run continues where it
    stopped (``train_model(resume=True)``), a run with ``best.pt`` and ``result.json`` is not redone. Results made
    with other lists or other training options are refused, never mixed.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from encoders.atomic import atomic_write
from soundlib.config import DEFAULT_KS
from soundlib.errors import ListError, SoundlibError
from soundlib.lists import read_candidates, read_list, read_records, write_list, write_sound_list
from soundlib.media import media_kind
from soundlib.progress import ProgressFn, null_progress
from train.catalog import (CatalogReport, LabelledFile, MediaFile, build_catalog, match_files, read_category_map,
                           scan_media)
from train.defaults import DEFAULT_LOSO_QUERIES_PER_CONCEPT, DEFAULT_MAP, RECIPES

__all__ = ["GCOMPRIS_SOURCE", "FoldTableError", "LosoOutputError", "Fold", "read_folds", "select_folds",
           "SourceRoot", "sound_root", "picture_root", "file_source", "GcomprisSet", "read_gcompris_set", "LosoMedia",
           "FoldLists", "build_fold", "Recipe", "recipe", "FoldResult", "LosoReport", "run_loso"]

#: The source name of GCompris's files.
GCOMPRIS_SOURCE = "gcompris"
#: Columns of the fold table (``note`` optional).
FOLD_COLUMNS: tuple[str, ...] = ("fold", "pictures", "sounds", "note")
#: Separator of the source names in one cell of the fold table.
SOURCE_SEPARATOR = ";"
#: Files of a fold's folder.
TEST_LIST, CANDIDATES_LIST, FOLD_FILE, RESULT_FILE = "test.csv", "candidates.csv", "fold.json", "result.json"
#: Training options that do not change what a run learns: a finished run made with other values is reused.
RUNTIME_OPTIONS: tuple[str, ...] = ("threads", "workers", "cache_dir")
#: A recipe's ``bridge_sounds`` value that stands for each fold's own ``train/catalog_sounds.csv``.
FOLD_SOUNDS = "catalog"
#: The two modalities, as :mod:`train.catalog` names them.
MODALITIES: tuple[str, ...] = ("image", "sound")

_FOLD_NAME = re.compile(r"^[a-z0-9][a-z0-9+._-]*$", re.IGNORECASE)


# --- the fold table ----------------------------------------------------------------------------------------------

class FoldTableError(ListError):
    """A malformed fold table (missing column, bad or duplicate fold name, empty source list); ``line`` 1-based."""


class LosoOutputError(SoundlibError):
    """The output folder holds lists or results made with other settings: never mixed, never overwritten."""


@dataclass(frozen=True)
class Fold:
    """One fold: the sources it holds out.

    Attributes:
        name: the fold's name (also its folder under the output folder).
        pictures: held-out picture sources (lower case).
        sounds: held-out sound sources (lower case).
        note: why the fold is made this way (free text).
        line: 1-based line in the fold table (0 for a fold made in code).
        table: the fold table's path ("" for a fold made in code).
    """

    name: str
    pictures: tuple[str, ...]
    sounds: tuple[str, ...]
    note: str = ""
    line: int = 0
    table: str = ""

    def held_out(self, modality: str) -> tuple[str, ...]:
        """The held-out sources of ``modality`` (``"image"`` or ``"sound"``)."""
        return self.pictures if modality == "image" else self.sounds

    @property
    def where(self) -> str:
        """``table:line`` (or the fold's name) for error messages."""
        return f"{self.table}:{self.line}" if self.table and self.line else f"fold {self.name}"

    def spec(self) -> dict[str, Any]:
        """What defines the fold (for ``fold.json``)."""
        return {"name": self.name, "pictures": list(self.pictures), "sounds": list(self.sounds)}


def _sources(cell: str) -> tuple[str, ...]:
    names = [" ".join(n.split()).lower() for n in cell.split(SOURCE_SEPARATOR)]
    return tuple(dict.fromkeys(n for n in names if n))


def read_folds(path: str | Path) -> list[Fold]:
    """Read and validate a fold table.

    Args:
        path: CSV with the columns of :data:`FOLD_COLUMNS` (``note`` optional); blank lines and lines whose first
            cell starts with ``#`` are skipped.

    Returns:
        folds (list of Fold): in file order.

    Raises:
        FoldTableError: missing file or column, a fold name that is empty, not a plain folder name or used twice
            (ignoring case), a fold without a picture or a sound source, GCompris held out in one column only. The
            message names the file and the line.
    """
    path = Path(path)
    try:
        records = read_records(path, FOLD_COLUMNS[:3])
    except ListError as e:
        raise FoldTableError(e.reason.replace("list file", "fold table"), str(path)) from None
    folds: list[Fold] = []
    seen: dict[str, int] = {}
    for line, rec in records:
        name = rec.get("fold", "")
        if name.startswith("#"):
            continue
        if not _FOLD_NAME.match(name):
            raise FoldTableError(f"bad fold name {name!r} (letters, digits, + . _ - ; it names a folder)",
                                 str(path), line)
        if name.lower() in seen:
            raise FoldTableError(f"duplicate fold {name!r} (first on line {seen[name.lower()]})", str(path), line)
        seen[name.lower()] = line
        pictures, sounds = _sources(rec.get("pictures", "")), _sources(rec.get("sounds", ""))
        for column, got in (("pictures", pictures), ("sounds", sounds)):
            if not got:
                raise FoldTableError(f"fold {name!r}: no held-out source in '{column}'", str(path), line)
        if (GCOMPRIS_SOURCE in pictures) != (GCOMPRIS_SOURCE in sounds):
            raise FoldTableError(f"fold {name!r}: hold {GCOMPRIS_SOURCE} out in both columns or in neither (its test "
                                 "is its own picture-sound pairs)", str(path), line)
        folds.append(Fold(name, pictures, sounds, rec.get("note", ""), line, str(path)))
    if not folds:
        raise FoldTableError("no folds in the fold table", str(path))
    return folds


def select_folds(folds: Sequence[Fold], names: Sequence[str]) -> list[Fold]:
    """The folds named (in the order given; all of them when ``names`` is empty).

    Raises:
        SoundlibError: a name that is not in the table (the message lists the table's folds).
    """
    if not names:
        return list(folds)
    by = {f.name.lower(): f for f in folds}
    out = []
    for n in names:
        if n.lower() not in by:
            table = folds[0].table if folds else None
            raise SoundlibError(f"no fold {n!r} (folds: {', '.join(f.name for f in folds)})", table)
        if by[n.lower()] not in out:
            out.append(by[n.lower()])
    return out


# --- sources -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SourceRoot:
    """A folder given on the command line and how its files map to sources (see the module docstring).

    Attributes:
        path: the folder (resolved).
        whole: ``True``: every file below is one source named after the folder; ``False``: each folder directly
            under it is a source.
    """

    path: Path
    whole: bool

    @property
    def name(self) -> str:
        """The folder's own name, lower case."""
        return self.path.name.lower()


def _folder(path: str | Path) -> Path:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise SoundlibError("not a folder" if root.exists() else "folder not found", str(root))
    return root.resolve()


def sound_root(path: str | Path) -> SourceRoot:
    """A sound root: each folder directly under it is a source (a package).

    Raises:
        SoundlibError: not a folder.
    """
    return SourceRoot(_folder(path), whole=False)


def picture_root(path: str | Path) -> SourceRoot:
    """A picture root: one source when it holds pictures directly or only in class folders, else a folder of
    sources (the rule of the module docstring, read from the pictures' depths below it).

    Raises:
        SoundlibError: not a folder.
    """
    root = _folder(path)
    depths: set[int] = set()
    folders: set[str] = set()
    for p in root.rglob("*"):
        if media_kind(p) == "image" and p.is_file():
            rel = p.relative_to(root).parts
            depths.add(len(rel))
            if len(rel) > 1:
                folders.add(rel[0])
            if 1 in depths:
                break
    whole = 1 in depths or (depths == {2} and len(folders) >= 2)
    return SourceRoot(root, whole=whole)


def file_source(path: str | Path, roots: Sequence[SourceRoot]) -> str:
    """The source of a file below one of ``roots`` (the roots of its modality; the deepest one holding it counts).

    Args:
        path: the file.
        roots: :func:`sound_root` or :func:`picture_root` folders.

    Returns:
        The source name, lower case: the root's name (a *whole* root, or a file lying directly in the root), else
        the name of the folder directly under the root.

    Raises:
        SoundlibError: the file is below none of the roots.
    """
    p = Path(path)
    best: tuple[SourceRoot, tuple[str, ...]] | None = None
    for candidate in dict.fromkeys((p, p.expanduser().resolve())):
        for r in roots:
            try:
                rel = candidate.relative_to(r.path).parts
            except ValueError:
                continue
            if best is None or len(r.path.parts) > len(best[0].path.parts):
                best = (r, rel)
        if best is not None:
            break
    if best is None:
        raise SoundlibError("below none of the folders given", str(path))
    root, rel = best
    return root.name if root.whole or len(rel) <= 1 else rel[0].lower()


# --- GCompris ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GcomprisSet:
    """GCompris's lists as ``soundlib gcompris`` writes them (``data/gcompris/README.md``).

    Attributes:
        dest: the folder.
        pairs: ``gcompris_pairs.csv`` (the test list of a fold holding GCompris out).
        sounds: every sound with a concept (``gcompris_sounds.csv``).
        pictures: every paired picture with its concept (``gcompris_pictures.csv``).
    """

    dest: Path
    pairs: Path
    sounds: tuple[LabelledFile, ...]
    pictures: tuple[LabelledFile, ...]

    def files(self, modality: str) -> tuple[LabelledFile, ...]:
        """The sounds (``"sound"``) or the pictures (``"image"``)."""
        return self.sounds if modality == "sound" else self.pictures


def read_gcompris_set(dest: str | Path) -> GcomprisSet:
    """Read ``DEST/gcompris_pairs.csv``, ``gcompris_sounds.csv`` and ``gcompris_pictures.csv``.

    Raises:
        SoundlibError: a missing folder or list, a row without a concept, a file that is not there (one line naming
            the list and its line).
    """
    dest = _folder(dest)
    pairs = dest / "gcompris_pairs.csv"
    if not pairs.is_file():
        raise ListError("no gcompris_pairs.csv here (build it with tools/get-gcompris.sh DEST)", str(dest))
    out: dict[str, list[LabelledFile]] = {}
    for modality, name, column in (("sound", "gcompris_sounds.csv", "audio"),
                                   ("image", "gcompris_pictures.csv", "frame")):
        table = dest / name
        files: list[LabelledFile] = []
        for line, rec in read_records(table, (column, "category")):
            path = (dest / rec.get(column, "")).resolve()
            if not rec.get(column) or not path.is_file():
                raise ListError(f"{column} file not found: {rec.get(column, '')!r}", str(table), line)
            if not rec.get("category"):
                raise ListError("empty 'category'", str(table), line)
            files.append(LabelledFile(path, modality, rec["category"], GCOMPRIS_SOURCE))
        out[modality] = files
    return GcomprisSet(dest, pairs, tuple(out["sound"]), tuple(out["image"]))


@dataclass(frozen=True)
class LosoMedia:
    """The media of a LOSO run: sound roots, picture roots and GCompris's set (optional).

    Attributes:
        sounds: :func:`sound_root` of each ``--sounds`` folder.
        images: :func:`picture_root` of each ``--images`` folder.
        gcompris: :func:`read_gcompris_set` of ``--gcompris`` (or ``None``).
    """

    sounds: tuple[SourceRoot, ...]
    images: tuple[SourceRoot, ...]
    gcompris: GcomprisSet | None = None

    @classmethod
    def of(cls, sound_roots: Sequence[str | Path], image_roots: Sequence[str | Path],
           gcompris: str | Path | None = None) -> "LosoMedia":
        """Read the folders' layouts (and GCompris's lists).

        Raises:
            SoundlibError: a folder that does not exist; GCompris's lists unusable.
        """
        return cls(tuple(sound_root(r) for r in sound_roots), tuple(picture_root(r) for r in image_roots),
                   read_gcompris_set(gcompris) if gcompris else None)

    def roots(self, modality: str) -> tuple[SourceRoot, ...]:
        """The roots of ``modality`` (``"sound"`` or ``"image"``)."""
        return self.sounds if modality == "sound" else self.images

    def source(self, path: str | Path, modality: str) -> str:
        """:func:`file_source` of a file of ``modality`` below this run's roots."""
        return file_source(path, self.roots(modality))

    def inventory(self) -> dict[str, dict[str, int]]:
        """``{modality: {source: files}}`` of every file below the roots (by extension) and of GCompris's lists."""
        out: dict[str, dict[str, int]] = {}
        for modality, kind in (("image", "image"), ("sound", "audio")):
            counts: dict[str, int] = {}
            for f in scan_media([r.path for r in self.roots(modality)], kind):
                src = self.source(f.path, modality)
                counts[src] = counts.get(src, 0) + 1
            if self.gcompris is not None:
                counts[GCOMPRIS_SOURCE] = counts.get(GCOMPRIS_SOURCE, 0) + len(self.gcompris.files(modality))
            out[modality] = dict(sorted(counts.items()))
        return out

    def check(self, folds: Sequence[Fold], inventory: dict[str, dict[str, int]] | None = None) -> None:
        """Refuse a fold that names a source no root holds (or GCompris without ``--gcompris``).

        Raises:
            SoundlibError: one line naming the fold's line in its table, the source and the sources found.
        """
        inv = inventory if inventory is not None else self.inventory()
        for fold in folds:
            for modality, column in (("image", "pictures"), ("sound", "sounds")):
                for src in fold.held_out(modality):
                    if src in inv[modality]:
                        continue
                    if src == GCOMPRIS_SOURCE:
                        raise SoundlibError(f"fold {fold.name!r} holds out {GCOMPRIS_SOURCE}: give --gcompris DEST "
                                            "(or leave the fold out with --fold)", fold.where)
                    flag = "--images" if modality == "image" else "--sounds"
                    raise SoundlibError(f"fold {fold.name!r}: no {column} source {src!r} below the {flag} folders "
                                        f"(found: {', '.join(inv[modality]) or 'none'})", fold.where)

    def spec(self) -> dict[str, Any]:
        """The folders (for ``fold.json``)."""
        return {"sounds": [str(r.path) for r in self.sounds], "images": [str(r.path) for r in self.images],
                "gcompris": str(self.gcompris.dest) if self.gcompris else None}


class _Record:
    """A dataclass kept as JSON (``fold.json``, ``result.json``)."""

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict."""
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        """The record from :meth:`to_dict`'s dict (unknown keys ignored)."""
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})  # type: ignore[attr-defined]


# --- a fold's lists ----------------------------------------------------------------------------------------------

@dataclass
class FoldLists(_Record):
    """The lists of one fold (:func:`build_fold`), as ``fold.json`` keeps them.

    Attributes:
        fold: the fold's name.
        pictures, sounds: its held-out sources.
        train, val, test, candidates: the lists' paths.
        bridge_sounds: the training catalog's sound list (:data:`train.catalog.SOUNDS_LIST`).
        train_pairs, val_pairs: pairs of the training catalog's two lists.
        queries: rows of the test list (pictures queried).
        candidates_count: sounds ranked for each query (the test's sounds and the other held-out sounds).
        test_concepts: ``{concept: queries}``.
        held_out_files: ``{"image": n, "sound": n}``: files of the held-out sources (GCompris's counted too).
        skipped: ``[path, reason]`` of held-out files that cannot be decoded (left out of the test).
        spec: what the lists were built from (fold, folders, map, seed, queries per concept).
    """

    fold: str
    pictures: list[str]
    sounds: list[str]
    train: str
    val: str
    test: str
    candidates: str
    bridge_sounds: str = ""
    train_pairs: int = 0
    val_pairs: int = 0
    queries: int = 0
    candidates_count: int = 0
    test_concepts: dict[str, int] = field(default_factory=dict)
    held_out_files: dict[str, int] = field(default_factory=dict)
    skipped: list[list[str]] = field(default_factory=list)
    spec: dict[str, Any] = field(default_factory=dict)


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def build_fold(
    fold: Fold,
    media: LosoMedia,
    out_dir: str | Path,
    map_csv: str | Path = DEFAULT_MAP,
    seed: int = 0,
    queries_per_concept: int = DEFAULT_LOSO_QUERIES_PER_CONCEPT,
    check_files: bool = True,
    progress: ProgressFn | None = None,
) -> FoldLists:
    """Write one fold's training lists, test list and candidates (see the module docstring) to ``out_dir/<fold>``.

    Args:
        fold: the fold.
        media: the run's folders (:meth:`LosoMedia.of`).
        out_dir: the LOSO output folder.
        map_csv: the category map (:mod:`train.catalog`).
        seed: seeds the training catalog's split and pairing and the choice and order of the test's files.
        queries_per_concept: at most this many held-out pictures of a concept are queried (>= 1).
        check_files: open every file first and leave out those that cannot be decoded.
        progress: progress callback (the catalog's tasks).

    Returns:
        A :class:`FoldLists` (also written to ``out_dir/<fold>/fold.json``, last).

    Raises:
        SoundlibError: a source the fold names is not there (:meth:`LosoMedia.check`), a malformed map, no test
            query (no held-out picture shares a concept with a held-out sound).
        ValueError: ``queries_per_concept`` < 1.
    """
    if queries_per_concept < 1:
        raise ValueError(f"queries_per_concept must be >= 1, got {queries_per_concept}")
    media.check([fold])
    progress = progress or null_progress
    folder = Path(out_dir) / fold.name
    held = {m: set(fold.held_out(m)) for m in MODALITIES}

    def keep(item: MediaFile, modality: str) -> bool:
        return media.source(item.path, modality) not in held[modality]

    extra: list[LabelledFile] = []
    if media.gcompris is not None:
        for modality in MODALITIES:
            if GCOMPRIS_SOURCE not in held[modality]:
                extra.extend(media.gcompris.files(modality))
    cat = build_catalog(map_csv, [r.path for r in media.sounds], [r.path for r in media.images], folder / "train",
                        seed=seed, check_files=check_files, progress=progress, keep=keep, extra=extra)

    rows, cands, concepts, held_files, skipped = _root_test(fold, media, map_csv, seed, queries_per_concept,
                                                            check_files, progress)
    counts = {m: len(held_files[m]) for m in MODALITIES}
    held_paths = {p for m in MODALITIES for f in held_files[m] for p in (f.path, f.path.resolve())}
    if media.gcompris is not None and GCOMPRIS_SOURCE in held["image"]:
        g_rows, g_cands = _gcompris_test(media.gcompris)
        rows += g_rows
        cands += [c for c in g_cands if c[0] not in {a for a, _ in cands}]
        for r in g_rows:
            concepts[str(r["category"])] = concepts.get(str(r["category"]), 0) + 1
        for m in MODALITIES:
            files = media.gcompris.files(m)
            counts[m] += len(files)
            held_paths.update(f.path for f in files)
    if not rows:
        raise SoundlibError(f"fold {fold.name!r}: no held-out picture shares a concept with a held-out sound, "
                            "nothing to test", fold.where)
    _check_held_out(cat, held_paths)
    test, cand_path = folder / TEST_LIST, folder / CANDIDATES_LIST
    write_list(test, rows)
    write_sound_list(cand_path, cands)
    lists = FoldLists(
        fold=fold.name, pictures=list(fold.pictures), sounds=list(fold.sounds),
        train=cat.lists["train"], val=cat.lists["val"], test=str(test), candidates=str(cand_path),
        bridge_sounds=cat.lists["sounds"],
        train_pairs=cat.pairs("train"), val_pairs=cat.pairs("val"), queries=len(rows),
        candidates_count=len({a for a, _ in cands} | {Path(str(r["audio"])) for r in rows}),
        test_concepts=concepts, held_out_files=counts, skipped=[list(s) for s in skipped],
        spec=_fold_spec(fold, media, map_csv, seed, queries_per_concept, check_files))
    _write_json(folder / FOLD_FILE, lists.to_dict())
    return lists


def _fold_spec(fold: Fold, media: LosoMedia, map_csv: str | Path, seed: int, queries_per_concept: int,
               check_files: bool) -> dict[str, Any]:
    import hashlib

    map_path = Path(map_csv)
    return {"fold": fold.spec(), **media.spec(), "map": str(map_path.resolve()),
            "map_sha256": hashlib.sha256(map_path.read_bytes()).hexdigest(), "seed": int(seed),
            "queries_per_concept": int(queries_per_concept), "check_files": bool(check_files)}


def _root_test(fold: Fold, media: LosoMedia, map_csv: str | Path, seed: int, per_concept: int, check_files: bool,
               progress: ProgressFn
               ) -> tuple[list[dict[str, Any]], list[tuple[Path, str]], dict[str, int], dict[str, list[MediaFile]],
                          list]:
    """The test rows and candidates of the held-out files below the roots.

    Returns:
        ``(rows, [(sound, concept)] candidates, {concept: queries}, {modality: held-out files}, skipped files)``.
    """
    held = {m: set(fold.held_out(m)) for m in MODALITIES}
    sounds = [f for f in scan_media([r.path for r in media.sounds], "audio")
              if media.source(f.path, "sound") in held["sound"]]
    images = [f for f in scan_media([r.path for r in media.images], "image")
              if media.source(f.path, "image") in held["image"]]
    report = CatalogReport()
    matched = match_files(read_category_map(map_csv), sounds, images, report, check_files, progress=progress)
    cands: dict[Path, str] = {}
    for rule, snd, _ in matched:
        for s in snd:
            cands.setdefault(s.path, rule.concept)
    rows: list[dict[str, Any]] = []
    concepts: dict[str, int] = {}
    used: set[Path] = set()
    for rule, snd, img in matched:
        pictures = [i for i in img if i.path not in used]
        if not snd or not pictures:
            continue
        rng = random.Random(f"{seed}:{rule.concept}")
        rng.shuffle(pictures)
        pictures = pictures[:per_concept]
        order = list(snd)
        rng.shuffle(order)
        for k, im in enumerate(pictures):
            used.add(im.path)
            rows.append({"frame": str(im.path), "audio": str(order[k % len(order)].path), "start": None,
                         "category": rule.concept, "video": f"loso:{fold.name}:{rule.concept}"})
        concepts[rule.concept] = len(pictures)
    return rows, list(cands.items()), concepts, {"sound": sounds, "image": images}, report.skipped


def _gcompris_test(g: GcomprisSet) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    """GCompris's real pairs as test rows, and its every sound with a concept as candidates."""
    pairs = read_list(g.pairs)
    if pairs.errors:
        raise pairs.errors[0]
    rows = [{"frame": str(r.frame), "audio": str(r.audio), "start": r.start, "category": r.category,
             "video": r.video} for r in pairs.rows]
    return rows, [(f.path, f.concept) for f in g.sounds]


def _check_held_out(cat: CatalogReport, held: set[Path]) -> None:
    """Refuse training lists (the pairs and the bridge's sound list) that name a held-out file (a guard over the
    ``keep`` filter)."""
    for split, path in cat.lists.items():
        files = ([c.audio for c in read_candidates(path, check_files=False).rows] if split == "sounds" else
                 [p for row in read_list(path, check_files=False).rows for p in (row.frame, row.audio)])
        for p in files:
            if p in held:
                raise SoundlibError(f"held-out file in a training list: {p}", path)


# --- runs --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Recipe:
    """A model to train in every fold and how: keyword arguments of :func:`train.loop.train_model`.

    Attributes:
        model: registry name (``pt-effnet-aisfx-infonce``, ``m5-attention-linear-infonce``...).
        options: ``train_model`` keyword arguments (the names of ``soundlib train``'s options: ``epochs``, ``lr``,
            ``width``, ``cache_dir``...).
    """

    model: str
    options: dict[str, Any] = field(default_factory=dict)

    def result_options(self) -> dict[str, Any]:
        """The options that change what the run learns, JSON-able: all but :data:`RUNTIME_OPTIONS` and those left
        at ``None`` (the model's default; so a finished run stays comparable when a new option is added)."""
        return {k: _jsonable(v) for k, v in sorted(self.options.items())
                if k not in RUNTIME_OPTIONS and v is not None}


def _jsonable(v: Any) -> Any:
    return str(v) if isinstance(v, Path) else v


def recipe(model: str, options: dict[str, Any] | None = None, defaults: dict[str, Any] | None = None) -> Recipe:
    """The recipe of ``model``: ``defaults``, then ``train.defaults.RECIPES[model]`` (if any), then ``options``.

    Args:
        model: registry name.
        options: ``train_model`` keyword arguments that win over the recipe's (e.g. given on the command line).
        defaults: ``train_model`` keyword arguments the recipe's win over (e.g. ``soundlib train``'s defaults).
    """
    return Recipe(model, {**(defaults or {}), **RECIPES.get(model, {}), **(options or {})})


@dataclass
class FoldResult(_Record):
    """One model's figures on one fold.

    Attributes:
        fold, model: which.
        queries, candidates: the test's size as scored.
        topk: ``{k: {"sample": acc, "category": acc}}`` (fractions; keys are strings in JSON).
        chance: the same for a random ranking.
        mrr: mean reciprocal rank of the own sample.
        best_epoch, epochs_run, val_top10: the training run (its catalog-val top-10 sample accuracy, which chose
            ``best.pt``; ``None`` if no epoch ran).
        train_rows: training pairs.
        skipped: test rows or candidates that could not be scored.
        run_dir: the run folder.
        options: the recipe's options that change what is learnt.
        concept_accuracy: for a model with a concept bridge, how often each side names the right concept
            (:class:`soundlib.evaluation.concepts.ConceptAccuracy` as a dict); ``None`` otherwise (and in results
            written before it was measured).
    """

    fold: str
    model: str
    queries: int
    candidates: int
    topk: dict[str, dict[str, float | None]]
    chance: dict[str, dict[str, float | None]]
    mrr: float
    best_epoch: int = 0
    epochs_run: int = 0
    val_top10: float | None = None
    train_rows: int = 0
    skipped: int = 0
    run_dir: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    concept_accuracy: dict[str, Any] | None = None


def _weighted_average(values: Sequence[float | None], weights: Sequence[float]) -> float | None:
    """``sum(w * v) / sum(w)``; ``None`` if any value is ``None`` (a figure some fold did not measure)."""
    if any(v is None for v in values):
        return None
    return sum(w * v for w, v in zip(weights, values)) / sum(weights)  # type: ignore[operator]


def _weighted_figures(res: Sequence[FoldResult], weights: Sequence[float]) -> dict[str, Any]:
    """``{"topk", "chance", "mrr"}`` of fold results averaged with ``weights`` (one per fold)."""
    out: dict[str, Any] = {}
    for part in ("topk", "chance"):
        out[part] = {k: {lvl: _weighted_average([getattr(r, part)[k][lvl] for r in res], weights)
                         for lvl in ("sample", "category")} for k in res[0].topk}
    out["mrr"] = _weighted_average([r.mrr for r in res], weights)
    return out


@dataclass
class LosoReport:
    """What :func:`run_loso` measured.

    Attributes:
        out_dir: the output folder.
        ks: the cut-offs.
        recipes: the models and their options, in order.
        folds: the folds' lists (those that could be built).
        results: one :class:`FoldResult` per fold and model that finished.
        failed: ``(fold, model or None, reason)`` of what could not be done (the rest went on).
        reused: results read back from an earlier run instead of being redone.
        sources: ``{modality: {source: files}}`` found below the folders.
    """

    out_dir: str
    ks: list[int]
    recipes: list[Recipe]
    folds: list[FoldLists] = field(default_factory=list)
    results: list[FoldResult] = field(default_factory=list)
    failed: list[tuple[str, str | None, str]] = field(default_factory=list)
    reused: int = 0
    sources: dict[str, dict[str, int]] = field(default_factory=dict)

    def model_results(self, model: str) -> list[FoldResult]:
        """The results of ``model``, in fold order."""
        return [r for r in self.results if r.model == model]

    def mean(self, model: str) -> dict[str, Any] | None:
        """The mean over the folds of ``model``'s figures (each fold counts once): ``{"folds", "topk", "chance",
        "mrr", "queries", "candidates", "concept_accuracy"}`` (the last ``None`` unless every fold measured it:
        then the mean share of pictures, sound windows and sound files that name their concept); ``None`` without
        results."""
        res = self.model_results(model)
        if not res:
            return None
        once = [1.0] * len(res)
        out: dict[str, Any] = {"folds": len(res), **_weighted_figures(res, once)}
        out["queries"] = sum(r.queries for r in res) / len(res)
        out["candidates"] = sum(r.candidates for r in res) / len(res)
        named = [r.concept_accuracy for r in res]
        out["concept_accuracy"] = None if not all(named) else {
            part: _weighted_average([d.get(part) for d in named if d], once)
            for part in ("pictures", "sound_windows", "sound_files")}
        return out

    def pooled(self, model: str) -> dict[str, Any] | None:
        """``model``'s figures over all its folds' queries together (each query counts once): ``{"queries", "topk",
        "chance", "mrr"}``; ``None`` without results. Beside :meth:`mean`: a fold of 11 queries moves the mean by 1.8
        points of top-k per query it gains, and the pooled figure by 0.3 of 328; but a large fold weighs more, and its
        candidates differ in number from the others'."""
        res = self.model_results(model)
        n = sum(r.queries for r in res)
        if not res or n == 0:
            return None
        return {"queries": n, **_weighted_figures(res, [float(r.queries) for r in res])}

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {
            "out": self.out_dir,
            "ks": self.ks,
            "folds": [f.to_dict() for f in self.folds],
            "models": [{"model": r.model, "options": {k: _jsonable(v) for k, v in r.options.items()},
                        "folds": [x.to_dict() for x in self.model_results(r.model)], "mean": self.mean(r.model),
                        "pooled": self.pooled(r.model)}
                       for r in self.recipes],
            "failed": [{"fold": f, "model": m, "reason": why} for f, m, why in self.failed],
            "reused": self.reused,
            "sources": self.sources,
        }


def _fold_lists(fold: Fold, media: LosoMedia, out_dir: Path, map_csv: str | Path, seed: int, per_concept: int,
                check_files: bool, progress: ProgressFn) -> tuple[FoldLists, bool]:
    """The fold's lists: read back from ``fold.json`` when built from the same things, else built.

    Returns:
        ``(lists, reused)``.

    Raises:
        LosoOutputError: ``fold.json`` records other settings while runs are there (a new ``--out`` is needed).
    """
    folder = out_dir / fold.name
    marker = folder / FOLD_FILE
    spec = _fold_spec(fold, media, map_csv, seed, per_concept, check_files)
    if marker.is_file():
        try:
            old = FoldLists.from_dict(json.loads(marker.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as e:
            raise SoundlibError(f"unreadable ({e}); remove it to rebuild the fold", str(marker)) from None
        if old.spec == spec and old.bridge_sounds and all(
                Path(p).is_file() for p in (old.train, old.val, old.test, old.candidates, old.bridge_sounds)):
            return old, True
        runs = [p for p in folder.iterdir() if (p / "last_state.pt").exists() or (p / RESULT_FILE).exists()]
        if runs:
            changed = sorted(k for k in set(spec) | set(old.spec) if spec.get(k) != old.spec.get(k))
            why = (f"was built from other settings ({', '.join(changed)})" if changed else
                   "misses some of its lists (an older soundlib wrote no train/catalog_sounds.csv, or a list was "
                   "deleted)")
            raise LosoOutputError(f"fold {fold.name!r} {why} and has runs; use another --out", str(folder))
    return build_fold(fold, media, out_dir, map_csv, seed, per_concept, check_files, progress), False


def run_loso(
    folds: Sequence[Fold],
    media: LosoMedia,
    out_dir: str | Path,
    recipes: Sequence[Recipe],
    map_csv: str | Path = DEFAULT_MAP,
    ks: Sequence[int] = DEFAULT_KS,
    seed: int = 0,
    queries_per_concept: int = DEFAULT_LOSO_QUERIES_PER_CONCEPT,
    check_files: bool = True,
    progress: ProgressFn | None = None,
) -> LosoReport:
    """For each fold, build its lists, train every model on its training catalog and evaluate it on its test.

    Args:
        folds: the folds (:func:`read_folds`, :func:`select_folds`).
        media: the folders (:meth:`LosoMedia.of`); every source a fold names must be there.
        out_dir: output folder (``<fold>/`` lists and ``<fold>/<model>/`` runs; a feature cache ``.cache/`` unless a
            recipe names its ``cache_dir``).
        recipes: the models and their ``train_model`` options (:func:`recipe`); model names must be unique.
        map_csv: the category map.
        ks: cut-offs of the evaluation.
        seed: seed of the lists (:func:`build_fold`); the training seed is the recipe's.
        queries_per_concept: at most this many test pictures per concept.
        check_files: open every file before listing it.
        progress: progress callback: ``"loso"`` (one step per fold and model; info ``fold``, ``model``) and the
            tasks of the catalog, training and evaluation.

    Returns:
        A :class:`LosoReport`. A fold whose lists cannot be built, or a run that fails, is in ``failed``; the others
        go on.

    Raises:
        SoundlibError: a fold names a source that is not there, two recipes of one model, an unknown model or an
            option its family refuses (ConfigError): before any work.
        LosoOutputError: the output folder holds lists or results of other settings.
    """
    from soundlib.evaluation.retrieval import evaluate_list
    from train.loop import train_model

    progress = progress or null_progress
    names = [r.model for r in recipes]
    if len(set(names)) != len(names) or not names:
        raise SoundlibError(f"each model once, at least one (got {', '.join(names) or 'none'})")
    from train.setup import model_config

    for rec in recipes:  # an unknown model or an option its family refuses: said once, before any work
        o = rec.options
        model_config(rec.model, o.get("width"), o.get("image_size"), o.get("temperature"))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ks = sorted({int(k) for k in ks})
    report = LosoReport(str(out), ks, list(recipes))
    report.sources = media.inventory()
    media.check(folds, report.sources)
    total, step = len(folds) * len(recipes), 0
    for fold in folds:
        try:
            lists, _ = _fold_lists(fold, media, out, map_csv, seed, queries_per_concept, check_files, progress)
        except LosoOutputError:
            raise
        except SoundlibError as e:
            report.failed.append((fold.name, None, str(e)))
            step += len(recipes)
            progress("loso", step, total, fold=fold.name, model="-")
            continue
        report.folds.append(lists)
        for rec in recipes:
            progress("loso", step, total, fold=fold.name, model=rec.model)
            run_dir = out / fold.name / rec.model
            try:
                result, reused = _run_one(fold, lists, rec, run_dir, out, ks, progress, train_model, evaluate_list)
            except LosoOutputError:
                raise
            except SoundlibError as e:
                report.failed.append((fold.name, rec.model, str(e)))
            else:
                report.results.append(result)
                report.reused += int(reused)
            step += 1
            progress("loso", step, total, fold=fold.name, model=rec.model)
    return report


def _run_one(fold: Fold, lists: FoldLists, rec: Recipe, run_dir: Path, out: Path, ks: list[int],
             progress: ProgressFn, train_model: Any, evaluate_list: Any) -> tuple[FoldResult, bool]:
    """Train (or finish training) one model on one fold and evaluate it; reuse a finished result."""
    best, result_path = run_dir / "best.pt", run_dir / RESULT_FILE
    wanted = rec.result_options()
    if best.is_file() and result_path.is_file():
        try:
            done = FoldResult.from_dict(json.loads(result_path.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as e:
            raise SoundlibError(f"unreadable ({e}); remove it to evaluate again", str(result_path)) from None
        stored = {k: v for k, v in done.options.items() if v is not None}
        if stored != wanted or done.topk.keys() != {str(k) for k in ks}:
            raise LosoOutputError(f"holds a run of {rec.model} with other options or cut-offs; use another --out",
                                str(run_dir))
        return done, True
    options = dict(rec.options)
    if options.get("bridge_sounds") == FOLD_SOUNDS:  # the fold's own labelled training sounds
        options["bridge_sounds"] = lists.bridge_sounds
    if not options.get("cache_dir"):
        options["cache_dir"] = out / ".cache"
    tr = train_model([lists.train], [lists.val], rec.model, run_dir, resume=True, progress=progress, **options)
    if not best.is_file():
        raise SoundlibError("training kept no best.pt", str(run_dir))
    ev = evaluate_list(lists.test, [str(best)], ks, candidates=lists.candidates, progress=progress)
    if ev.queries == 0 or not ev.models:
        raise SoundlibError(f"nothing could be scored ({len(ev.problems)} rows skipped)", lists.test)
    sc = ev.models[0].scores
    result = FoldResult(
        fold=fold.name, model=rec.model, queries=ev.queries, candidates=ev.candidates,
        topk={str(k): {"sample": s, "category": c} for k, (s, c) in sc.topk.items()},
        chance={str(k): {"sample": s, "category": c} for k, (s, c) in sc.chance.items()},
        mrr=sc.mrr, best_epoch=tr.best_epoch, epochs_run=tr.epochs_run,
        val_top10=tr.best_top10 if math.isfinite(tr.best_top10) else None, train_rows=tr.train_rows,
        skipped=len(ev.problems), run_dir=str(run_dir), options=wanted,
        concept_accuracy=None if ev.models[0].concepts is None else ev.models[0].concepts.to_json())
    _write_json(result_path, result.to_dict())
    return result, False
