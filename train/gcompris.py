"""GCompris media as an independent evaluation set and extra real recordings.

GCompris (Debian ``gcompris-qt-data``) keeps each activity's files in one Qt resource archive
(``usr/share/gcompris-qt/rcc/<activity>.rcc``). Three activities pair a picture with the recorded sound of the same
thing in their own data files: ``explore_farm_animals`` (a photo and a drawing of each animal, its call),
``instruments`` (a drawing of each instrument, the instrument played) and ``explore_world_music`` (a photo of the
musicians or instruments, the music). Other activities play recorded sounds (a dog barking, rain, a train, coins,
a xylophone...) without a matching picture: these become sound-only recordings.

What is used, and under which concept, is decided by a reviewed table kept in the repo,
``data/gcompris/sound_concepts.csv`` (``data/gcompris/README.md`` says how it was reviewed):

    ``sound``     the sound's path in its archive below ``gcompris/src/activities/``, without the extension (the
                  data files write ``$CA``, GCompris's "compressed audio" extension; here ``.ogg``) or with it;
    ``concept``   the concept: a ``concept`` of ``data/catalog/category_map.csv`` where the thing is one of those,
                  else a new name; empty = reviewed and left out (``notes`` says why);
    ``notes``     what the sound is, what the pictures show.

Only the archives of the activities named in the table are opened.

Pairs come from the activities' data files, never from file names: every ``.qml``/``.js``/``.json`` file of an
activity is searched for object literals holding an ``"audio"`` entry and ``"image"``/``"image2"`` entries
(:func:`parse_media_items`); each picture of such an item makes one pair with its sound, when the sound has a
concept and the picture stands for no other sound (``explore_world_music`` shows the same suitcase button on every
item: a picture shared by several different sounds is an icon, not the thing, and is dropped).

Outputs under ``out``
    ``gcompris_pairs.csv``     the pair list (``frame,audio,start,sample,category,video``; ``start`` empty: the whole
                               file; ``sample`` = the sound's path; ``video`` = ``gcompris/<activity>/<sound stem>``
                               so the photo and the drawing of one sound stay on one side of a split);
    ``gcompris_sounds.csv``    every sound with a concept (``audio,category,activity,seconds,paired``): extra real
                               recordings for training folds that leave GCompris out of the test;
    ``gcompris_pictures.csv``  every paired picture (``frame,category,activity,kind``; ``kind`` = photo | drawing);
    ``gcompris_summary.json``  counts (:meth:`GcomprisReport.to_dict`);
    ``extracted/``             the archives' files as they are (photos are used from here);
    ``pictures/``              the drawings (SVG) rendered to PNG with CairoSVG, centred on a transparent square
                               (:data:`DRAWING_SIDE` pixels) so the centre crop of ``load_image`` keeps the whole
                               drawing.

Paths in the CSV files are relative to ``out``. Running it again reuses what is already extracted and rendered.
``tools/get-gcompris.sh DEST`` fetches the package and runs this; the command line is ``soundlib gcompris``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from encoders.atomic import atomic_write
from soundlib.errors import ListError, SoundlibError
from soundlib.images import DRAWING_SIDE, render_drawing
from soundlib.lists import write_list
from soundlib.progress import ProgressFn, null_progress
from train.defaults import DEFAULT_GCOMPRIS_CONCEPTS, DEFAULT_MAP
from train.rcc import RccError, extract_rcc

#: The reviewed table shipped in the repo.
DEFAULT_CONCEPTS = DEFAULT_GCOMPRIS_CONCEPTS
#: The catalog's category map (its concept names are the ones to reuse).
DEFAULT_CATEGORY_MAP = DEFAULT_MAP
#: Where activities live inside the archives.
ACTIVITY_PREFIX = "gcompris/src/activities"
#: Output file names.
PAIRS_LIST, SOUNDS_LIST, PICTURES_LIST, SUMMARY = (
    "gcompris_pairs.csv", "gcompris_sounds.csv", "gcompris_pictures.csv", "gcompris_summary.json")
#: Extensions tried, in order, for GCompris's ``$CA`` placeholder (Linux builds ship Ogg Vorbis).
AUDIO_EXTENSIONS = ("ogg", "opus", "mp3", "aac", "m4a", "wav", "flac")
DRAWING_EXTENSIONS = ("svg", "svgz")
PHOTO_EXTENSIONS = ("webp", "jpg", "jpeg", "png")
DATA_EXTENSIONS = ("qml", "js", "json")

_OBJECT = re.compile(r"\{[^{}]*\}")
_QRC_ENTRY = re.compile(r'"(image2?|audio)"\s*:\s*[^,\n]*?"qrc:/([^"]+)"')


@dataclass(frozen=True)
class MediaItem:
    """One item of an activity's data: a sound and the pictures shown with it (archive paths, ``$CA`` kept)."""

    audio: str
    images: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class SoundConcept:
    """A row of the reviewed table: ``concept`` is ``""`` for a sound reviewed and left out."""

    sound: str
    concept: str
    notes: str
    line: int


@dataclass
class GcomprisReport:
    """What :func:`build_gcompris` wrote and left out.

    ``left_out``: items of the data files whose sound the table leaves out (or lacks), with the reason;
    ``icons``: pictures dropped because the data shows them with several different sounds (path -> count);
    ``skipped``: files that failed a check, duplicates, table rows naming no file (one line each).
    """

    out: Path
    pairs: list[dict[str, Any]] = field(default_factory=list)
    sounds: list[dict[str, Any]] = field(default_factory=list)
    pictures: list[dict[str, Any]] = field(default_factory=list)
    new_concepts: list[str] = field(default_factory=list)
    left_out: list[dict[str, str]] = field(default_factory=list)
    icons: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Counts and lists, JSON-ready."""
        secs = sorted(float(s["seconds"]) for s in self.sounds)
        paired_sounds = {p["audio"] for p in self.pairs}
        kinds = Counter(p["kind"] for p in self.pictures)
        return {
            "out": str(self.out),
            "pairs": len(self.pairs),
            "pictures": len(self.pictures),
            "photos": kinds.get("photo", 0),
            "drawings": kinds.get("drawing", 0),
            "paired_sounds": len(paired_sounds),
            "sounds": len(self.sounds),
            "pair_concepts": len({p["category"] for p in self.pairs}),
            "sound_concepts": len({s["category"] for s in self.sounds}),
            "seconds": {
                "total": round(sum(secs), 2),
                "min": secs[0] if secs else None,
                "median": secs[len(secs) // 2] if secs else None,
                "max": secs[-1] if secs else None,
            },
            "paired_seconds": sorted(float(s["seconds"]) for s in self.sounds if s["audio"] in paired_sounds),
            "pairs_per_concept": dict(sorted(Counter(p["category"] for p in self.pairs).items())),
            "sounds_per_concept": dict(sorted(Counter(s["category"] for s in self.sounds).items())),
            "new_concepts": self.new_concepts,
            "left_out": self.left_out,
            "icons": self.icons,
            "skipped": self.skipped,
        }


def read_sound_concepts(path: str | Path = DEFAULT_CONCEPTS) -> dict[str, SoundConcept]:
    """Read the reviewed table.

    Args:
        path: the CSV (columns ``sound, concept, notes``).

    Returns:
        ``{sound key (no extension): SoundConcept}``.

    Raises:
        ListError: missing file or column, an empty ``sound``, a sound listed twice, a row without notes.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise ListError(f"cannot read the GCompris concept table ({e.strerror or e})", str(path)) from None
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in ("sound", "concept", "notes") if c not in (reader.fieldnames or [])]
    if missing:
        raise ListError(f"missing column(s) {', '.join(missing)}", str(path))
    table: dict[str, SoundConcept] = {}
    for line, row in enumerate(reader, start=2):
        sound = _sound_key((row.get("sound") or "").strip())
        if not sound:
            raise ListError("empty 'sound'", str(path), line)
        if sound in table:
            raise ListError(f"sound {sound!r} listed twice (first on line {table[sound].line})", str(path), line)
        notes = (row.get("notes") or "").strip()
        if not notes:
            raise ListError(f"no notes for {sound!r} (say what it is, or why it is left out)", str(path), line)
        table[sound] = SoundConcept(sound, (row.get("concept") or "").strip(), notes, line)
    return table


def parse_media_items(text: str, source: str = "") -> list[MediaItem]:
    """Find the (sound, pictures) items in the text of an activity's data file.

    An item is a JavaScript/QML object literal without nested braces that holds an ``"audio"`` entry and at least
    one ``"image"`` or ``"image2"`` entry whose values contain ``"qrc:/..."`` paths, e.g.
    ``{"image": "qrc:/a/cow.svg", "audio": ApplicationInfo.getAudioFilePath("qrc:/a/cow.$CA"), "image2": ...}``.

    Args:
        text: the file's text.
        source: a label kept on each item (the file's path).

    Returns:
        The items, in file order (paths without the ``qrc:/`` prefix).
    """
    items = []
    for block in _OBJECT.findall(text):
        entries: dict[str, str] = {}
        for key, value in _QRC_ENTRY.findall(block):
            entries.setdefault(key, value)
        images = tuple(entries[k] for k in ("image", "image2") if k in entries)
        if "audio" in entries and images:
            items.append(MediaItem(entries["audio"], images, source))
    return items


def category_map_concepts(path: str | Path = DEFAULT_CATEGORY_MAP) -> set[str]:
    """The concept names of the catalog's category map, lower-case."""
    from train.catalog import read_category_map

    return {rule.concept.lower() for rule in read_category_map(path)}


def build_gcompris(rcc_dir: str | Path, out: str | Path, concepts: str | Path = DEFAULT_CONCEPTS,
                   category_map: str | Path = DEFAULT_CATEGORY_MAP, check_files: bool = True,
                   progress: ProgressFn = null_progress) -> GcomprisReport:
    """Extract the reviewed activities' archives and write the pair, sound and picture lists.

    Args:
        rcc_dir: the folder holding ``<activity>.rcc`` (the package's ``usr/share/gcompris-qt/rcc``).
        out: the output folder (created; see the module docstring for what goes in it).
        concepts: the reviewed table.
        category_map: the catalog map whose concept names are reused (others are reported as new).
        check_files: decode every sound's header and every picture before listing it (a file that fails is
            skipped and reported).
        progress: progress callback.

    Returns:
        A :class:`GcomprisReport`.

    Raises:
        ListError: the table is malformed.
        RccError: an archive the table needs is missing or corrupt (one line naming it).
    """
    rcc_dir, out = Path(rcc_dir), Path(out).resolve()
    table = read_sound_concepts(concepts)
    known = category_map_concepts(category_map)
    report = GcomprisReport(out=out)
    activities = sorted({key.split("/", 1)[0] for key in table})
    extracted = out / "extracted"
    for activity in activities:
        if not (rcc_dir / f"{activity}.rcc").is_file():
            raise RccError("archive not found (is this the gcompris-qt-data rcc folder?)", rcc_dir / f"{activity}.rcc")
    for i, activity in enumerate(activities):
        progress("extract", i, len(activities), activity=activity)
        extract_rcc(rcc_dir / f"{activity}.rcc", extracted,
                    select=lambda e: e.path.startswith(f"{ACTIVITY_PREFIX}/{activity}/"))
    progress("extract", len(activities), len(activities))
    root = extracted / ACTIVITY_PREFIX

    # Sounds: every audio file of the selected activities, keyed like the table.
    sound_files: dict[str, Path] = {}
    for activity in activities:
        for f in sorted((root / activity).rglob("*")):
            if f.is_file() and f.suffix.lower().lstrip(".") in AUDIO_EXTENSIONS:
                sound_files.setdefault(_sound_key(f.relative_to(root).as_posix()), f)
    for key in sorted(set(table) - set(sound_files)):
        report.skipped.append(f"{concepts}:{table[key].line}: sound {key!r} is not in the archives")

    # Items from the data files, resolved to files.
    items: list[tuple[str, Path, list[Path]]] = []  # (sound key, sound file, picture files)
    for activity in activities:
        for f in sorted((root / activity).rglob("*")):
            if not (f.is_file() and f.suffix.lower().lstrip(".") in DATA_EXTENSIONS):
                continue
            for item in parse_media_items(f.read_text(encoding="utf-8", errors="replace"), str(f)):
                key = _sound_key(_below_activities(item.audio))
                if key not in sound_files:
                    continue
                pictures = [extracted / p for p in item.images]
                items.append((key, sound_files[key], [p for p in pictures if p.is_file()]))
    sounds_of_picture: dict[Path, set[str]] = defaultdict(set)
    for key, _, pictures in items:
        for p in pictures:
            sounds_of_picture[p].add(key)

    # Sound checks, durations and duplicates.
    seconds: dict[str, float] = {}
    digests: dict[str, str] = {}
    usable = [k for k in sorted(sound_files) if k in table and table[k].concept]
    for i, key in enumerate(usable):
        progress("sounds", i, len(usable))
        f = sound_files[key]
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        if digest in digests:
            report.skipped.append(f"{f}: the same bytes as {sound_files[digests[digest]]} (kept once)")
            continue
        try:
            seconds[key] = _duration(f) if check_files else 0.0
        except SoundlibError as e:
            report.skipped.append(str(e))
            continue
        digests[digest] = key
    progress("sounds", len(usable), len(usable))

    # Pairs.
    seen: set[tuple[Path, str]] = set()
    picture_rows: dict[Path, dict[str, Any]] = {}
    for key, sound, pictures in items:
        entry = table.get(key)
        if entry is None or not entry.concept:
            why = "not in the table" if entry is None else entry.notes
            report.left_out.append({"sound": key, "why": why, "pictures": ", ".join(p.name for p in pictures)})
            continue
        if key not in seconds:
            continue
        for picture in pictures:
            if (picture, key) in seen:
                continue
            seen.add((picture, key))
            if len(sounds_of_picture[picture]) > 1:
                report.icons[_rel(picture, out)] = len(sounds_of_picture[picture])
                continue
            frame = picture_rows.get(picture, {}).get("path") or _picture_file(picture, root, out, report,
                                                                                 check_files)
            if frame is None:
                continue
            activity = key.split("/", 1)[0]
            kind = "drawing" if picture.suffix.lower().lstrip(".") in DRAWING_EXTENSIONS else "photo"
            picture_rows[picture] = {"path": frame, "frame": frame, "category": entry.concept,
                                     "activity": activity, "kind": kind}
            report.pairs.append({"frame": frame, "audio": sound, "start": "", "sample": _rel(sound, out),
                                 "category": entry.concept, "video": f"gcompris/{activity}/{Path(key).name}",
                                 "kind": kind})
    # A left-out sound is listed once even when several of its pictures were.
    uniq: dict[tuple[str, str], dict[str, str]] = {}
    for row in report.left_out:
        uniq.setdefault((row["sound"], row["why"]), row)
    report.left_out = list(uniq.values())

    paired = {r["audio"] for r in report.pairs}
    for key in sorted(seconds):
        f = sound_files[key]
        report.sounds.append({"audio": f, "category": table[key].concept, "activity": key.split("/", 1)[0],
                              "seconds": round(seconds[key], 3), "paired": "yes" if f in paired else "no"})
    report.pictures = [{k: v for k, v in r.items() if k != "path"} for r in picture_rows.values()]
    report.new_concepts = sorted({s["category"] for s in report.sounds if s["category"].lower() not in known})

    write_list(out / PAIRS_LIST, [{k: v for k, v in r.items() if k != "kind"} for r in report.pairs])
    _write_csv(out / SOUNDS_LIST, ["audio", "category", "activity", "seconds", "paired"], report.sounds, out)
    _write_csv(out / PICTURES_LIST, ["frame", "category", "activity", "kind"], report.pictures, out)
    (out / SUMMARY).write_text(json.dumps(report.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return report


def _picture_file(picture: Path, root: Path, out: Path, report: GcomprisReport, check: bool) -> Path | None:
    """The file a list should name for ``picture``: a rendered PNG for drawings, the photo itself otherwise."""
    from soundlib.images import open_image

    ext = picture.suffix.lower().lstrip(".")
    try:
        if ext in DRAWING_EXTENSIONS:
            dst = (out / "pictures" / picture.relative_to(root)).with_suffix(".png")
            if not (dst.is_file() and dst.stat().st_mtime >= picture.stat().st_mtime):
                render_drawing(picture, dst)
            path = dst
        elif ext in PHOTO_EXTENSIONS:
            path = picture
        else:
            report.skipped.append(f"{picture}: not a picture format used here (.{ext})")
            return None
        if check:
            open_image(path)
        return path
    except SoundlibError as e:
        report.skipped.append(str(e))
        return None


def _duration(path: Path) -> float:
    from soundlib.audio import probe_audio

    return float(probe_audio(path).duration)


def _sound_key(path: str) -> str:
    """``a/b/cow.ogg`` / ``a/b/cow.$CA`` / ``a/b/cow`` -> ``a/b/cow``."""
    p = path.strip().strip("/")
    stem, dot, ext = p.rpartition(".")
    if dot and "/" not in ext and (ext == "$CA" or ext.lower() in AUDIO_EXTENSIONS):
        return stem
    return p


def _below_activities(archive_path: str) -> str:
    prefix = ACTIVITY_PREFIX + "/"
    return archive_path[len(prefix):] if archive_path.startswith(prefix) else archive_path


def _rel(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(path)


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]], base: Path) -> None:
    with atomic_write(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: _rel(v, base) if isinstance(v, Path) else v for c, v in r.items() if c in columns})
