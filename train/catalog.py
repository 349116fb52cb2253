"""Catalog pairs: an image and a sound of the same kind of thing, from a reviewed category map, as pair lists.

We have no labelled audio-visual dataset, so besides the temporal pairs of real videos (:mod:`train.prepare`) the
default model learns from *catalog pairs*: an ImageNet photo of a dog with a dog bark, a bow with an arrow's
twang. Which sounds go with which pictures is decided by a small category map kept in the repo
(``data/catalog/category_map.csv``, reviewed row by row; see ``data/catalog/README.md``), never guessed.

The map
    CSV with a header; columns ``concept, sound_patterns, image_patterns, notes`` (``notes`` optional). Patterns are
    separated by ``;`` and matched case-insensitively. A pattern is one of

    - ``wnid:n02085620-n02113978`` (or ``wnid:n02085620``): ImageNet files whose name starts with a WordNet id in
      the range (inclusive), e.g. all 118 dog breeds;
    - ``imagenet:tiger_cat``: ImageNet files ``<wnid>_<class name>.<ext>`` whose class name matches (a glob);
    - ``concept:big cat``: the ImageNet files whose class the concept table (:mod:`soundlib.concepts`, built from
      WordNet) puts in that concept, and the files of a concept-sorted pair source (:data:`CONCEPT_SOURCES`,
      laid out ``<source>/<concept>/<file>``, e.g. the openclipart drawings the classifier agreed with);
    - anything else: a glob (:mod:`fnmatch`: ``*`` also crosses ``/``) over the file's *key*: its path below the root
      folder given on the command line, lower-case, without the extension (``wesnoth/wolf-growl-2``,
      ``megaglest/wolf/wolf1``, ``scratch/animals/dog1-a``, ``dog/0001``), or the same prefixed with the root
      folder's own name (``cifar10-train/dog/0001``);
    - any of these prefixed with ``!`` excludes what it matches from the row.

    A file may belong to several concepts.

Pairs and the split
    Per concept the matched images and sounds are split into train and validation *by file* (about
    ``val_fraction`` of each, at least one when there are :data:`MIN_SPLIT_ITEMS` or more, none otherwise), so no
    image and no sound appears on both sides; a file shared by several concepts keeps the side it got first.
    Train pairs join train images with train sounds only, validation pairs validation files only. Each side gets
    ``min(cap, max(images * pairs_per_image, sounds * pairs_per_sound), images * sounds)`` distinct pairs, images
    and sounds used as evenly as possible (round-robin, each image meeting consecutive sounds), sources
    (ImageNet, CIFAR, sprites; each sound package) interleaved so a capped concept still mixes them. ``cap`` is
    ``max_pairs_per_concept`` for train and the same scaled by ``val_fraction / (1 - val_fraction)`` for
    validation: big concepts (ImageNet's dogs, CIFAR's 500 images a class) do not drown small ones.

Rows
    ``frame`` = image, ``audio`` = sound file, ``start`` empty (the whole file; loaders use its first window) or,
    with ``windows > 1``, one of the file's loudest 1-s windows (within :data:`train.features.WINDOW_KEEP_DB` dB of
    the loudest),
    ``sample`` = the audio path as written (every window of a file is one sample), ``category`` = concept,
    ``video`` = a group id ``catalog:<split>:<concept>``: the connected component of the (image, sound) pair graph,
    so a split of the list by video keeps every image and sound on one side too. Paths are written relative to the
    list file when they lie below its folder, absolute otherwise (:func:`soundlib.lists.write_list`): a catalog
    built here points at the media folders of this machine.

The command line is ``soundlib catalog`` (``soundlib catalog --help``).
"""

from __future__ import annotations

import csv
import fnmatch
import math
import random
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from encoders.config import AudioConfig
from soundlib.errors import ListError, SoundlibError
from soundlib.lists import write_list, write_sound_list
from soundlib.media import media_kind
from soundlib.progress import ProgressFn, null_progress
from train.defaults import DEFAULT_MAP  # noqa: F401 (part of this module's interface: the shipped map)
from train.defaults import (DEFAULT_CATALOG_WINDOWS, DEFAULT_MAX_PAIRS_PER_CONCEPT, DEFAULT_PAIRS_PER_IMAGE,
                            DEFAULT_PAIRS_PER_SOUND, DEFAULT_VAL_FRACTION, MIN_SPLIT_ITEMS)

#: Columns of the category map (``notes`` is optional).
MAP_COLUMNS: tuple[str, ...] = ("concept", "sound_patterns", "image_patterns", "notes")
#: Separator of the patterns inside one cell.
PATTERN_SEPARATOR = ";"
#: File names of the two lists written under ``out_dir``.
TRAIN_LIST, VAL_LIST = "catalog_train.csv", "catalog_val.csv"
#: File name of the sound list written beside them: every labelled sound not on the validation side (``audio,
#: category``), paired or not, for fitting the concept bridge's sound classifier (``soundlib train --bridge-sounds``).
SOUNDS_LIST = "catalog_sounds.csv"

#: Pair sources laid out ``<source>/<concept>/<file>`` (written by ``tools/concept_images.py``): a
#: ``concept:NAME`` pattern selects the files of their ``NAME`` folder.
CONCEPT_SOURCES: tuple[str, ...] = ("openclipart",)

_WNID = re.compile(r"^(n\d{8})_(.+)$")
_WNID_RANGE = re.compile(r"^(n\d{8})(?:-(n\d{8}))?$")
_TRAILING_NUMBER = re.compile(r"[\s_.-]*\d+[a-z]?$")


class CatalogMapError(ListError):
    """A malformed category map (missing column, empty or duplicate concept, bad pattern); ``line`` is 1-based."""


# --- the map -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pattern:
    """One pattern of a map cell (see the module docstring).

    Attributes:
        text: the pattern as written (stripped).
        kind: ``"glob"``, ``"wnid"``, ``"imagenet"`` or ``"concept"``.
        negate: ``True`` for an exclusion (``!`` prefix).
        value: the lower-case glob (``glob``, ``imagenet``), ``"first-last"`` WordNet ids (``wnid``) or the
            lower-case concept name (``concept``).
        literal: the longest wildcard-free run of a glob: a quick substring test before the regex.
    """

    text: str
    kind: str
    negate: bool
    value: str
    literal: str = ""

    def matches(self, item: "MediaFile") -> bool:
        """True when ``item`` matches (ignoring ``negate``)."""
        if self.kind == "glob":
            if self.literal not in item.rooted:  # rooted ends with key: a literal of either match is in it
                return False
            rx = _glob(self.value)
            return rx.match(item.key) is not None or rx.match(item.rooted) is not None
        if self.kind == "concept":
            return _in_concept(item, self.value)
        if not item.wnid:
            return False
        if self.kind == "wnid":
            lo, hi = self.value.split("-")
            return lo <= item.wnid <= hi
        return _glob(self.value).match(item.class_name) is not None


_GLOBS: dict[str, re.Pattern[str]] = {}


def _glob(pattern: str) -> re.Pattern[str]:
    rx = _GLOBS.get(pattern)
    if rx is None:
        rx = _GLOBS[pattern] = re.compile(fnmatch.translate(pattern))
    return rx


def _in_concept(item: "MediaFile", concept: str) -> bool:
    if item.wnid:
        from soundlib.concepts import load_concepts

        got = load_concepts().concept_of_wnid(item.wnid)
        return got is not None and got.lower() == concept
    parts = item.rooted.split("/")
    return any(parts[i] in CONCEPT_SOURCES and parts[i + 1] == concept for i in range(len(parts) - 2))


def parse_pattern(text: str) -> Pattern:
    """Parse one pattern (``wnid:A-B``, ``imagenet:NAME``, ``concept:NAME``, a glob; ``!`` prefix = exclusion).

    Raises:
        ValueError: empty pattern, malformed WordNet id range, an empty name after a prefix, or a ``concept:``
            name that is not in the concept table.
    """
    t = text.strip()
    negate = t.startswith("!")
    body = t[1:].strip() if negate else t
    if not body:
        raise ValueError(f"empty pattern {text!r}")
    low = body.lower()
    if low.startswith("wnid:"):
        m = _WNID_RANGE.match(low[5:].strip())
        if not m:
            raise ValueError(f"bad WordNet id range {body!r} (want wnid:n01234567 or wnid:n01234567-n07654321)")
        lo, hi = m.group(1), m.group(2) or m.group(1)
        if hi < lo:
            raise ValueError(f"WordNet id range {body!r} runs backwards")
        return Pattern(t, "wnid", negate, f"{lo}-{hi}")
    if low.startswith("imagenet:"):
        name = low[9:].strip()
        if not name:
            raise ValueError(f"empty ImageNet class name in {body!r}")
        return Pattern(t, "imagenet", negate, name)
    if low.startswith("concept:"):
        from soundlib.concepts import load_concepts

        name = " ".join(low[8:].split())
        if not name:
            raise ValueError(f"empty concept name in {body!r}")
        if name not in {n.lower() for n in load_concepts().names}:
            raise ValueError(f"{body!r}: no such concept in the concept table (data/concepts/senses.csv)")
        return Pattern(t, "concept", negate, name)
    glob = low.replace("\\", "/")
    literal = max(re.split(r"[*?\[\]]", glob), key=len)
    return Pattern(t, "glob", negate, glob, literal)


@dataclass(frozen=True)
class ConceptRule:
    """One row of the category map.

    Attributes:
        concept: the concept (written to the lists' ``category`` column).
        sound_patterns, image_patterns: the parsed patterns of each modality.
        notes: the reviewer's note (free text).
        line: 1-based line of the row in the map file.
    """

    concept: str
    sound_patterns: tuple[Pattern, ...]
    image_patterns: tuple[Pattern, ...]
    notes: str
    line: int

    def select(self, items: Iterable["MediaFile"], modality: str) -> list["MediaFile"]:
        """The ``items`` that match a positive pattern of ``modality`` (``"sound"``/``"image"``) and no exclusion."""
        pats = self.sound_patterns if modality == "sound" else self.image_patterns
        pos = [p for p in pats if not p.negate]
        neg = [p for p in pats if p.negate]
        return [it for it in items if any(p.matches(it) for p in pos) and not any(p.matches(it) for p in neg)]


def read_category_map(path: str | Path) -> list[ConceptRule]:
    """Read and validate a category map.

    Args:
        path: CSV with the columns of :data:`MAP_COLUMNS` (``notes`` optional); blank lines and lines whose first cell
            starts with ``#`` are skipped.

    Returns:
        rules (list of ConceptRule): in file order.

    Raises:
        CatalogMapError: missing file or column, an empty concept, a duplicate concept (case-insensitive), a modality
            without a positive pattern, an empty or malformed pattern. The message names the line.
    """
    path = Path(path)
    if not path.is_file():
        raise CatalogMapError("category map not found" if not path.exists() else "not a file", str(path))
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise CatalogMapError(f"cannot read ({e})", str(path)) from None
    lines = text.splitlines()
    if not lines:
        raise CatalogMapError("empty category map", str(path))
    reader = csv.reader(lines)
    header = [h.strip().lower() for h in next(reader)]
    missing = [c for c in MAP_COLUMNS[:3] if c not in header]
    if missing:
        raise CatalogMapError(f"missing column(s) {', '.join(missing)} (header: {','.join(header)})", str(path))
    col = {c: header.index(c) for c in MAP_COLUMNS if c in header}
    rules: list[ConceptRule] = []
    seen: dict[str, int] = {}
    for line, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
            continue
        if len(cells) > len(header):
            raise CatalogMapError(f"{len(cells)} cells for {len(header)} columns (quote a cell that holds a comma)",
                                  str(path), line)
        get = lambda c: cells[col[c]].strip() if c in col and col[c] < len(cells) else ""  # noqa: E731
        concept = get("concept")
        if not concept:
            raise CatalogMapError("empty concept", str(path), line)
        low = concept.lower()
        if low in seen:
            raise CatalogMapError(f"duplicate concept {concept!r} (first on line {seen[low]})", str(path), line)
        seen[low] = line
        parsed: dict[str, tuple[Pattern, ...]] = {}
        for modality in ("sound_patterns", "image_patterns"):
            cell = get(modality)
            parts = cell.split(PATTERN_SEPARATOR)
            try:
                pats = tuple(parse_pattern(p) for p in parts)
            except ValueError as e:
                raise CatalogMapError(f"{concept!r} {modality}: {e}", str(path), line) from None
            if not any(not p.negate for p in pats):
                raise CatalogMapError(f"{concept!r}: no positive pattern in {modality}", str(path), line)
            parsed[modality] = pats
        rules.append(ConceptRule(concept, parsed["sound_patterns"], parsed["image_patterns"], get("notes"), line))
    if not rules:
        raise CatalogMapError("no concepts in the category map", str(path))
    return rules


# --- media files -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MediaFile:
    """A sound or image file found under a root folder.

    Attributes:
        path: absolute, resolved path.
        key: path below the root, lower-case, ``/``-separated, without the extension (``megaglest/wolf/wolf1``).
        rooted: ``<root folder name>/<key>`` (``sfx/megaglest/wolf/wolf1``).
        stem: file name without the extension (original case).
        source: where it comes from, for interleaving: the first folder below the root, or the root's own name
            for files directly in it (``imagenet-samples``, ``megaglest``, ``scratch``).
        group: a category label for reports: the first two folders (``megaglest/wolf``, ``scratch/animal``), or
            ``folder/stem`` without a trailing number for files one level down (``wesnoth/wolf-growl``).
        wnid, class_name: for a file named ``<WordNet id>_<class>.<ext>`` (ImageNet), the id and the lower-case
            class name; ``""`` otherwise.
    """

    path: Path
    key: str
    rooted: str
    stem: str
    source: str
    group: str
    wnid: str = ""
    class_name: str = ""


def _media_file(path: Path, root: Path) -> MediaFile:
    rel = path.relative_to(root)
    parts = [p.lower() for p in rel.with_suffix("").parts]
    key = "/".join(parts)
    stem = _TRAILING_NUMBER.sub("", parts[-1]) or parts[-1]
    if len(parts) >= 3:
        group = "/".join(parts[:2])
    elif len(parts) == 2:
        group = f"{parts[0]}/{stem}"
    else:
        group = f"{root.name.lower()}/{stem}"
    m = _WNID.match(path.stem)
    return MediaFile(path=path, key=key, rooted=f"{root.name.lower()}/{key}", stem=path.stem,
                     source=parts[0] if len(parts) > 1 else root.name.lower(), group=group,
                     wnid=m.group(1) if m else "", class_name=m.group(2).lower() if m else "")


def scan_media(roots: Sequence[str | Path], kind: str) -> list[MediaFile]:
    """All files of ``kind`` (``"audio"``/``"image"``, by extension) below ``roots``, sorted by path.

    Raises:
        SoundlibError: a root that is not a folder.
    """
    out: dict[Path, MediaFile] = {}
    for r in roots:
        root = Path(r).expanduser()
        if not root.is_dir():
            raise SoundlibError("not a folder" if root.exists() else "folder not found", str(root))
        root = root.resolve()
        for p in sorted(root.rglob("*")):
            if media_kind(p) == kind and p.is_file():
                rp = p.resolve()
                out.setdefault(rp, _media_file(p, root))
    return [out[p] for p in sorted(out)]


@dataclass(frozen=True)
class LabelledFile:
    """A file whose concept is already known (a reviewed list such as GCompris's), added to a catalog build.

    Attributes:
        path: the file.
        modality: ``"sound"`` or ``"image"``.
        concept: its concept: the map row of that name (case-insensitive), or a new concept of its own.
        source: where it comes from (``gcompris``): its key is ``<source>/<concept>/<file stem>``.
    """

    path: Path
    modality: str
    concept: str
    source: str

    def media_file(self) -> MediaFile:
        """The file as the catalog's other files are described (key ``<source>/<concept>/<stem>``)."""
        path = Path(self.path).expanduser().resolve()
        concept = " ".join(self.concept.lower().split())
        key = f"{self.source.lower()}/{concept}/{path.stem.lower()}"
        return MediaFile(path=path, key=key, rooted=key, stem=path.stem, source=self.source.lower(),
                         group=f"{self.source.lower()}/{concept}")


# --- report ------------------------------------------------------------------------------------------------------

@dataclass
class ConceptStats:
    """What one concept got. ``sounds``/``images`` count usable matched files; the rest are per split."""

    concept: str
    line: int
    sounds: int = 0
    images: int = 0
    train_sounds: int = 0
    train_images: int = 0
    val_sounds: int = 0
    val_images: int = 0
    train_pairs: int = 0
    val_pairs: int = 0

    @property
    def status(self) -> str:
        """``"ok"``, ``"no sounds"``, ``"no images"`` or ``"no sounds, no images"``."""
        missing = [m for m, n in (("sounds", self.sounds), ("images", self.images)) if n == 0]
        return "ok" if not missing else ", ".join(f"no {m}" for m in missing)


@dataclass
class CatalogReport:
    """Result of :func:`build_catalog`.

    Attributes:
        lists: ``{"train": path, "val": path}`` of the lists written.
        concepts: one :class:`ConceptStats` per map row, in map order.
        dead_patterns: ``(concept, modality, pattern)`` that matched no file at all (typo, or media not present).
        warnings: other remarks (e.g. an ``imagenet:`` name matching several WordNet ids).
        skipped: ``(path, reason)`` of matched files that cannot be decoded (left out).
        unmapped_sounds: ``{group: files}`` of the scanned sounds no concept matched, largest first.
        shared_files: files matched by more than one concept.
        scanned_sounds, scanned_images: files found under the roots.
        settings: the parameters used.
    """

    lists: dict[str, str] = field(default_factory=dict)
    concepts: list[ConceptStats] = field(default_factory=list)
    dead_patterns: list[tuple[str, str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    unmapped_sounds: dict[str, int] = field(default_factory=dict)
    shared_files: int = 0
    scanned_sounds: int = 0
    scanned_images: int = 0
    used_sounds: int = 0
    used_images: int = 0
    labelled_sounds: int = 0
    settings: dict[str, Any] = field(default_factory=dict)

    def pairs(self, split: str) -> int:
        """Pairs written to ``split`` (``"train"`` or ``"val"``)."""
        return sum(getattr(c, f"{split}_pairs") for c in self.concepts)

    @property
    def unmatched(self) -> list[ConceptStats]:
        """Concepts that got no pairs (no usable sound or no usable image)."""
        return [c for c in self.concepts if c.status != "ok"]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary."""
        return {
            "lists": self.lists,
            "totals": {"concepts": len(self.concepts), "concepts_with_pairs": len(self.concepts) - len(self.unmatched),
                       "train_pairs": self.pairs("train"), "val_pairs": self.pairs("val"),
                       "used_images": self.used_images, "used_sounds": self.used_sounds,
                       "scanned_images": self.scanned_images, "scanned_sounds": self.scanned_sounds,
                       "shared_files": self.shared_files, "labelled_sounds": self.labelled_sounds},
            "concepts": [{**asdict(c), "status": c.status} for c in self.concepts],
            "dead_patterns": [list(d) for d in self.dead_patterns],
            "warnings": self.warnings,
            "skipped": [list(s) for s in self.skipped],
            "unmapped_sounds": self.unmapped_sounds,
            "settings": self.settings,
        }


# --- building ----------------------------------------------------------------------------------------------------

def _check_files(files: Sequence[MediaFile], modality: str, progress: ProgressFn
                 ) -> tuple[dict[Path, float], dict[Path, str]]:
    """Open every file once: sounds with :func:`soundlib.audio.probe_audio` (-> duration), images with
    :func:`soundlib.images.open_image`. Returns (durations or 0.0 for images, {path: reason} of the bad ones)."""
    good: dict[Path, float] = {}
    bad: dict[Path, str] = {}
    task = f"check {modality}s"
    if modality == "sound":
        from soundlib.audio import probe_audio
    else:
        from soundlib.images import open_image
    for i, f in enumerate(files):
        try:
            if modality == "sound":
                good[f.path] = probe_audio(f.path).duration
            else:
                open_image(f.path).close()
                good[f.path] = 0.0
        except SoundlibError as e:
            bad[f.path] = e.reason
        if (i + 1) % 50 == 0 or i + 1 == len(files):
            progress(task, i + 1, len(files), bad=len(bad))
    return good, bad


def _interleave(items: Sequence[MediaFile], rng: random.Random) -> list[MediaFile]:
    """Shuffle within each source, then take one per source in turn (source order shuffled too)."""
    by_source: dict[str, list[MediaFile]] = defaultdict(list)
    for it in items:
        by_source[it.source].append(it)
    groups = [by_source[s] for s in sorted(by_source)]
    rng.shuffle(groups)
    for g in groups:
        rng.shuffle(g)
    out: list[MediaFile] = []
    for i in range(max((len(g) for g in groups), default=0)):
        out.extend(g[i] for g in groups if i < len(g))
    return out


def pair_count(images: int, sounds: int, pairs_per_image: int, pairs_per_sound: int, cap: int) -> int:
    """Pairs a concept side gets: ``min(cap, max(images*pairs_per_image, sounds*pairs_per_sound), images*sounds)``."""
    if images <= 0 or sounds <= 0:
        return 0
    return max(0, min(cap, max(images * pairs_per_image, sounds * pairs_per_sound), images * sounds))


def round_robin_pairs(a: int, b: int, n: int) -> list[tuple[int, int]]:
    """``n`` distinct (image index, sound index) pairs over ``a`` images and ``b`` sounds, each used evenly.

    Pair ``k`` is ``(k mod a, (k mod a + k div a) mod b)``: round ``r`` gives every image once, image ``i`` the
    sound ``i + r``; distinct for ``n <= a * b``, image uses differ by at most one, sound uses by at most one per
    round.
    """
    n = min(n, a * b)
    return [(k % a, (k % a + k // a) % b) for k in range(n)]


def _split_sizes(n: int, val_fraction: float, min_items: int = MIN_SPLIT_ITEMS) -> int:
    if val_fraction <= 0 or n < min_items:
        return 0
    return min(n - 1, max(1, int(math.floor(val_fraction * n + 0.5))))


def _assign_split(items: Sequence[MediaFile], side: dict[Path, str], val_fraction: float, rng: random.Random,
                  min_items: int = MIN_SPLIT_ITEMS) -> tuple[list[MediaFile], list[MediaFile], list[MediaFile]]:
    """Proposed (train, val, fresh) for one modality of a concept; files decided by an earlier concept keep their
    side. ``fresh`` = files this concept decides (not yet written to ``side``)."""
    want_val = _split_sizes(len(items), val_fraction, min_items)
    fixed_val = [it for it in items if side.get(it.path) == "val"]
    fixed_train = [it for it in items if side.get(it.path) == "train"]
    fresh = [it for it in items if it.path not in side]
    rng.shuffle(fresh)
    k = max(0, min(len(fresh), want_val - len(fixed_val)))
    # never leave a concept without a train file of this modality
    if not fixed_train and k == len(fresh) and fresh:
        k -= 1
    return fixed_train + fresh[k:], fixed_val + fresh[:k], fresh


def _loud_starts(path: Path, n: int, duration: float, cfg: AudioConfig) -> list[float | None]:
    """Up to ``n`` window starts (seconds, in time order) among the loudest of the file; ``[None]`` for a file no
    longer than one window or ``n <= 1``."""
    if n <= 1 or duration <= cfg.window_seconds:
        return [None]
    from soundlib.audio import load_windows
    from train.features import loudest_starts

    starts, wins = load_windows(path, cfg, max_windows=0)  # every window, as train.features picks them
    return loudest_starts(starts, wins, n)


def _as_written(path: Path, base: Path) -> str:
    """The audio path as :func:`soundlib.lists.write_list` writes it for a list in ``base``."""
    try:
        return path.resolve().relative_to(base).as_posix()
    except ValueError:
        return str(path)


class _Groups:
    """Union-find over files, to name each connected component of a split's pair graph."""

    def __init__(self) -> None:
        self.parent: dict[Any, Any] = {}

    def find(self, x: Any) -> Any:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: Any, b: Any) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def build_catalog(
    map_csv: str | Path,
    sound_roots: Sequence[str | Path],
    image_roots: Sequence[str | Path],
    out_dir: str | Path,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    pairs_per_image: int = DEFAULT_PAIRS_PER_IMAGE,
    pairs_per_sound: int = DEFAULT_PAIRS_PER_SOUND,
    max_pairs_per_concept: int = DEFAULT_MAX_PAIRS_PER_CONCEPT,
    windows: int = DEFAULT_CATALOG_WINDOWS,
    min_split_items: int = MIN_SPLIT_ITEMS,
    check_files: bool = True,
    audio_config: AudioConfig | None = None,
    progress: ProgressFn | None = None,
    keep: Callable[[MediaFile, str], bool] | None = None,
    extra: Sequence[LabelledFile] = (),
) -> CatalogReport:
    """Build ``out_dir/catalog_train.csv`` and ``out_dir/catalog_val.csv`` from a category map, and
    ``out_dir/catalog_sounds.csv``: every matched sound that is not on the validation side, with its concept (the first
    map row that matches it), whether a pair uses it or not (a concept's sounds beyond its pair cap, or of a concept
    with no pictures). The concept bridge's sound classifier learns from it (``soundlib train --bridge-sounds``): it
    needs labelled sounds, not pairs.

    Args:
        map_csv: the category map (:func:`read_category_map`).
        sound_roots: folders searched recursively for sound files (by extension, :mod:`soundlib.media`).
        image_roots: folders searched recursively for image files.
        out_dir: where the two lists are written (created).
        val_fraction: share in [0, 1) of each concept's images and of its sounds held out for validation (see the
            module docstring).
        seed: seeds every shuffle (per concept, so adding a row does not reshuffle the others).
        pairs_per_image: wanted uses (>= 1) of each image (the larger of the two totals wins, up to the cap and
            ``images * sounds``).
        pairs_per_sound: wanted uses (>= 1) of each sound.
        max_pairs_per_concept: cap (>= 1) of a concept's train pairs; validation gets the same cap times
            ``val_fraction / (1 - val_fraction)``.
        windows: distinct 1-s windows (>= 1) used per sound file. ``1``: ``start`` empty (the whole file). More:
            the file is decoded and pairs cycle through its loudest windows (costs a decode of every sound used).
        min_split_items: a modality of a concept with fewer usable files (>= 2) keeps them all for training (the
            concept then has no validation pairs).
        check_files: open every matched file first and leave out the ones that cannot be decoded (reported in
            ``skipped``).
        audio_config: window length and sample rate for ``windows > 1`` (default ``AudioConfig()``).
        progress: progress callback (tasks ``"scan"``, ``"check sounds"``, ``"check images"``,
            ``"choose windows"``).
        keep: ``keep(file, modality)`` (``"sound"``/``"image"``): only the scanned files for which it is true are
            used (e.g. every source but the held-out ones of a leave-one-source-out fold, :mod:`train.loso`);
            ``None``: all.
        extra: files with a known concept, added to that concept's row after the map's patterns (a concept the
            map does not name becomes a row of its own, after the map's rows); checked like the others.

    Returns:
        A :class:`CatalogReport`.

    Raises:
        CatalogMapError: a malformed map.
        SoundlibError: a root folder that does not exist.
        ValueError: a parameter out of range.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    for name, v in (("pairs_per_image", pairs_per_image), ("pairs_per_sound", pairs_per_sound),
                    ("max_pairs_per_concept", max_pairs_per_concept), ("windows", windows)):
        if int(v) < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    if min_split_items < 2:
        raise ValueError(f"min_split_items must be >= 2, got {min_split_items}")
    progress = progress or null_progress
    rules = read_category_map(map_csv)
    report = CatalogReport(settings={
        "map": str(map_csv), "sound_roots": [str(r) for r in sound_roots], "image_roots": [str(r) for r in image_roots],
        "val_fraction": val_fraction, "seed": seed, "pairs_per_image": pairs_per_image,
        "pairs_per_sound": pairs_per_sound, "max_pairs_per_concept": max_pairs_per_concept, "windows": windows,
        "min_split_items": min_split_items, "check_files": check_files})
    if extra:
        report.settings["extra_files"] = len(extra)

    sounds = scan_media(sound_roots, "audio")
    images = scan_media(image_roots, "image")
    if keep is not None:
        sounds, images = [f for f in sounds if keep(f, "sound")], [f for f in images if keep(f, "image")]
    report.scanned_sounds, report.scanned_images = len(sounds), len(images)
    progress("scan", 1, 1, sounds=len(sounds), images=len(images))
    durations: dict[Path, float] = {}
    matched = match_files(rules, sounds, images, report, check_files, durations, progress, extra)
    uses = Counter(it.path for _, s, i in matched for it in (*s, *i))
    report.shared_files = sum(1 for n in uses.values() if n > 1)
    plan, side = _plan_pairs(matched, val_fraction, seed, pairs_per_image, pairs_per_sound, max_pairs_per_concept,
                             min_split_items, report)
    used_sounds = list({s.path: s for split in plan for _, _, s in plan[split]}.values())
    report.used_sounds = len(used_sounds)
    report.used_images = len({i.path for split in plan for _, i, _ in plan[split]})
    starts = _choose_windows(used_sounds, windows, durations, audio_config or AudioConfig(), progress)
    _write_lists(plan, starts, Path(out_dir), report)
    _write_sounds(matched, side, Path(out_dir), report)
    return report


#: Per map row: the rule, its matched sounds, its matched images.
_Matched = list[tuple[ConceptRule, list[MediaFile], list[MediaFile]]]
#: Per split: ``(concept, image, sound)`` pairs in list order.
_Plan = dict[str, list[tuple[str, MediaFile, MediaFile]]]


def match_files(rules: Sequence[ConceptRule], sounds: list[MediaFile], images: list[MediaFile],
                report: CatalogReport, check_files: bool = True, durations: dict[Path, float] | None = None,
                progress: ProgressFn | None = None, extra: Sequence[LabelledFile] = ()
                ) -> list[tuple[ConceptRule, list[MediaFile], list[MediaFile]]]:
    """Each map row with the files it matches (its sounds, its images), undecodable files left out.

    Args:
        rules: the map (:func:`read_category_map`).
        sounds, images: the candidate files (:func:`scan_media`).
        report: receives the dead patterns, warnings, unmapped sounds and skipped files.
        check_files: open every matched file and leave out those that cannot be decoded.
        durations: filled with the duration (seconds) of every sound checked.
        progress: progress callback (``"check sounds"``, ``"check images"``).
        extra: files with a known concept (:class:`LabelledFile`), joined to their row (or a new row).

    Returns:
        ``[(rule, sounds, images)]`` in map order, then the new concepts of ``extra``.
    """
    matched = _match_rules(rules, sounds, images, report)
    if extra:
        matched = _add_extra(matched, extra)
    if check_files:
        matched = _drop_undecodable(matched, {} if durations is None else durations, report,
                                    progress or null_progress)
    return matched


def _add_extra(matched: "_Matched", extra: Sequence[LabelledFile]) -> "_Matched":
    """``matched`` with each labelled file in its concept's row (a file once per row); new concepts appended."""
    rows = {rule.concept.lower(): k for k, (rule, _, _) in enumerate(matched)}
    out = [(rule, list(snd), list(img)) for rule, snd, img in matched]
    for lf in extra:
        if lf.modality not in ("sound", "image"):
            raise ValueError(f"{lf.path}: modality must be 'sound' or 'image', got {lf.modality!r}")
        name = " ".join(lf.concept.split())
        if not name:
            raise ValueError(f"{lf.path}: empty concept")
        k = rows.get(name.lower())
        if k is None:
            k = rows[name.lower()] = len(out)
            out.append((ConceptRule(name, (), (), f"only files of {lf.source}", 0), [], []))
        files = out[k][1] if lf.modality == "sound" else out[k][2]
        item = lf.media_file()
        if all(it.path != item.path for it in files):
            files.append(item)
    return out


def _match_rules(rules: Sequence[ConceptRule], sounds: list[MediaFile], images: list[MediaFile],
                 report: CatalogReport) -> _Matched:
    """Match every rule; note patterns that match nothing, ambiguous ImageNet names and unmapped sounds."""
    matched: _Matched = []
    # files named <wnid>_<class>: the only candidates of wnid:/imagenet: patterns
    named = {m: [k for k, it in enumerate(pool) if it.wnid] for m, pool in (("sound", sounds), ("image", images))}
    for rule in rules:
        got = {}
        for modality, pool in (("sound", sounds), ("image", images)):
            pats = rule.sound_patterns if modality == "sound" else rule.image_patterns
            pos: set[int] = set()
            neg: set[int] = set()
            for p in pats:
                cand = range(len(pool)) if p.kind in ("glob", "concept") else named[modality]
                hits = [k for k in cand if p.matches(pool[k])]
                (neg if p.negate else pos).update(hits)
                if not hits:
                    report.dead_patterns.append((rule.concept, modality, p.text))
                elif p.kind == "imagenet" and not any(ch in p.value for ch in "*?["):
                    wnids = sorted({pool[k].wnid for k in hits})
                    if len(wnids) > 1:
                        report.warnings.append(f"{rule.concept}: {p.text} matches several ImageNet classes "
                                               f"({', '.join(wnids)}); use wnid: to pick one")
            got[modality] = [pool[k] for k in sorted(pos - neg)]
        matched.append((rule, got["sound"], got["image"]))
    mapped_sounds = {it.path for _, s, _ in matched for it in s}
    unmapped = Counter(it.group for it in sounds if it.path not in mapped_sounds)
    report.unmapped_sounds = dict(sorted(unmapped.items(), key=lambda kv: (-kv[1], kv[0])))
    return matched


def _drop_undecodable(matched: _Matched, durations: dict[Path, float], report: CatalogReport,
                      progress: ProgressFn) -> _Matched:
    """Open every matched file once; leave out (and report) those that cannot be decoded; note sound durations."""
    bad: dict[Path, str] = {}
    for modality, idx in (("sound", 1), ("image", 2)):
        todo = list({it.path: it for m in matched for it in m[idx]}.values())
        good, b = _check_files(todo, modality, progress)
        durations.update(good)
        bad.update(b)
    report.skipped = sorted((str(p), r) for p, r in bad.items())
    return [(r, [it for it in s if it.path not in bad], [it for it in i if it.path not in bad])
            for r, s, i in matched]


def _plan_pairs(matched: _Matched, val_fraction: float, seed: int, pairs_per_image: int, pairs_per_sound: int,
                max_pairs_per_concept: int, min_split_items: int, report: CatalogReport
                ) -> tuple[_Plan, dict[Path, str]]:
    """Split each concept's files into train and validation (by file), then pair within each side.

    Returns:
        ``(plan, side)``: the pairs per split, and the split (``"train"``/``"val"``) of every file assigned one."""
    side: dict[Path, str] = {}
    val_cap = max(1, int(round(max_pairs_per_concept * val_fraction / (1 - val_fraction)))) if val_fraction else 0
    caps = {"train": max_pairs_per_concept, "val": val_cap}
    plan: _Plan = {"train": [], "val": []}
    for rule, snd, img in matched:
        st = ConceptStats(rule.concept, rule.line, sounds=len(snd), images=len(img))
        report.concepts.append(st)
        if not snd or not img:
            continue
        rng = random.Random(f"{seed}:{rule.concept}")
        img_train, img_val, img_fresh = _assign_split(img, side, val_fraction, rng, min_split_items)
        snd_train, snd_val, snd_fresh = _assign_split(snd, side, val_fraction, rng, min_split_items)
        if not img_val or not snd_val:  # one modality too small to hold out: this concept has no validation pairs
            fresh = {it.path for it in (*img_fresh, *snd_fresh)}
            img_train += [it for it in img_val if it.path in fresh]
            snd_train += [it for it in snd_val if it.path in fresh]
            img_val = [it for it in img_val if it.path not in fresh]
            snd_val = [it for it in snd_val if it.path not in fresh]
        for split, ims, sns in (("train", img_train, snd_train), ("val", img_val, snd_val)):
            for it in (*ims, *sns):
                side.setdefault(it.path, split)
            ims = _interleave(ims, rng)
            sns = _interleave(sns, rng)
            n = pair_count(len(ims), len(sns), pairs_per_image, pairs_per_sound, caps[split])
            pairs = round_robin_pairs(len(ims), len(sns), n)
            plan[split].extend((rule.concept, ims[i], sns[j]) for i, j in pairs)
            setattr(st, f"{split}_images", len({i for i, _ in pairs}))
            setattr(st, f"{split}_sounds", len({j for _, j in pairs}))
            setattr(st, f"{split}_pairs", len(pairs))
    return plan, side


def _choose_windows(used_sounds: Sequence[MediaFile], windows: int, durations: dict[Path, float],
                    cfg: AudioConfig, progress: ProgressFn) -> dict[Path, list[float | None]]:
    """Window starts per sound used (``windows > 1`` decodes each); ``{}``: every row takes the whole file."""
    starts: dict[Path, list[float | None]] = {}
    if windows <= 1:
        return starts
    from soundlib.audio import probe_audio

    for k, s in enumerate(used_sounds):
        try:
            dur = durations.get(s.path) or probe_audio(s.path).duration
            starts[s.path] = _loud_starts(s.path, windows, dur, cfg)
        except SoundlibError:
            starts[s.path] = [None]
        if (k + 1) % 20 == 0 or k + 1 == len(used_sounds):
            progress("choose windows", k + 1, len(used_sounds))
    return starts


def _write_sounds(matched: _Matched, side: dict[Path, str], out_dir: Path, report: CatalogReport) -> None:
    """Write :data:`SOUNDS_LIST`: each matched sound not on the validation side, once, with its first concept."""
    rows: dict[Path, str] = {}
    for rule, snd, _ in matched:
        for s in snd:
            if side.get(s.path) != "val":
                rows.setdefault(s.path, rule.concept)
    path = out_dir / SOUNDS_LIST
    write_sound_list(path, list(rows.items()))
    report.lists["sounds"] = str(path)
    report.labelled_sounds = len(rows)


def _write_lists(plan: _Plan, starts: dict[Path, list[float | None]], out_dir: Path, report: CatalogReport) -> None:
    """Write the train and validation lists; each row's ``video`` names its connected component of the pair graph."""
    out_dir.mkdir(parents=True, exist_ok=True)
    base = out_dir.resolve()
    for split, name in (("train", TRAIN_LIST), ("val", VAL_LIST)):
        groups = _Groups()
        first_concept: dict[Any, str] = {}
        for concept, im, sn in plan[split]:
            groups.union(("image", im.path), ("sound", sn.path))
        for concept, im, _ in plan[split]:
            first_concept.setdefault(groups.find(("image", im.path)), concept)
        turn: Counter[Path] = Counter()
        rows: list[dict[str, object]] = []
        for concept, im, sn in plan[split]:
            opts = starts.get(sn.path, [None])
            start = opts[turn[sn.path] % len(opts)]
            turn[sn.path] += 1
            rows.append({"frame": str(im.path), "audio": str(sn.path),
                         "start": None if start is None else f"{start:.6f}".rstrip("0").rstrip("."),
                         "sample": _as_written(sn.path, base), "category": concept,
                         "video": f"catalog:{split}:{first_concept[groups.find(('image', im.path))]}"})
        path = out_dir / name
        write_list(path, rows)
        report.lists[split] = str(path)
