"""More catalog pictures through the concept layer: keep a drawing only where the ImageNet classifier agrees with
the concept its folder promises.

Debian's ``openclipart-svg`` holds ~8,000 public-domain SVG drawings sorted into folders (``animals/mammals/dogs``,
``recreation/music``, ``tools/weapons``...). A reviewed table (``data/concepts/openclipart_folders.csv``:
``folder,concepts,notes``) says which concepts each folder may show (one for ``animals/mammals/dogs``, a group for
``recreation/music``; an empty cell excludes a folder; a drawing takes the rule of its deepest listed folder,
unlisted folders are not used). In a folder of several concepts the file name must also name one of them: a word
table (``data/concepts/drawing_words.csv``: ``concept,words,notes``; English, Italian and French words, e.g.
``cavallo``, ``tigre``, ``gufo``) is matched against the name's tokens (``gatto_cat_architetto_fra_01`` ->
``gatto``, ``cat``, ``architetto``...), and only the concepts named stay allowed. Identical files (the same SVG in
two folders) are used once. Each drawing is rendered to a PNG on white (:func:`soundlib.images.render_drawing`,
CairoSVG), EfficientNet-Lite0 gives its ImageNet softmax, :func:`soundlib.concepts.concept_probabilities` sums it into concepts, and the drawing is kept
when the most probable column (the ``"other"`` mass included) is one of its folder's concepts.

Output (``DEST``; the catalog reads it through ``concept:NAME`` patterns, see :data:`train.catalog.CONCEPT_SOURCES`):

- ``DEST/openclipart/<concept>/<name>.png``: the kept drawings, 512 x 512, on white;
- ``DEST/openclipart.csv``: every candidate (``svg,folder,allowed,predicted,probability,kept,png``) for review;
- ``DEST/.render/``: the rendered candidates (a second run renders nothing again).

Run ``tools/get-openclipart.sh DEST`` (fetch + this step) or ``soundlib drawings --help``.
"""

from __future__ import annotations

import csv
import hashlib
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from soundlib.errors import SoundlibError
from soundlib.images import DRAWING_SIDE, render_drawing
from soundlib.progress import ProgressFn, null_progress
from train.defaults import DEFAULT_DRAWING_FOLDERS, DEFAULT_DRAWING_WORDS

#: The folder table shipped in the repo (present in a source checkout).
DEFAULT_FOLDERS = DEFAULT_DRAWING_FOLDERS
DEFAULT_WORDS = DEFAULT_DRAWING_WORDS
#: Name of the pair source (the folder under DEST; one of :data:`train.catalog.CONCEPT_SOURCES`).
SOURCE = "openclipart"
CANDIDATES_CSV = "openclipart.csv"
RENDER_DIR = ".render"


class FolderTableError(SoundlibError):
    """A malformed folder table (the message names the file and the line)."""


@dataclass(frozen=True)
class FolderRule:
    """One row of the folder table: a folder (``/``-separated, below the SVG root) and the concepts it may show
    (empty = excluded)."""

    folder: str
    concepts: tuple[str, ...]
    line: int


def _table(path: str | Path, header: tuple[str, str, str],
           what: str) -> tuple[dict[str, str], list[tuple[int, list[str]]]]:
    """The known concept names (lower-case -> as spelt) and the rows of a 3-column table (blank and ``#`` lines
    skipped), with their 1-based line numbers.

    Raises:
        FolderTableError: a missing file, another header, a row without 3 cells.
    """
    from soundlib.concepts import load_concepts

    p = Path(path)
    if not p.is_file():
        raise FolderTableError(f"{what} not found", str(p))
    rows = list(csv.reader(p.read_text(encoding="utf-8").splitlines()))
    if not rows or tuple(h.strip() for h in rows[0]) != header:
        raise FolderTableError(f"header must be {','.join(header)}", str(p))
    out = []
    for line, cells in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
            continue
        if len(cells) != 3:
            raise FolderTableError(f"line {line}: {len(cells)} cells, want {','.join(header)}", str(p))
        out.append((line, [c.strip() for c in cells]))
    return {n.lower(): n for n in load_concepts().names}, out


def read_folder_concepts(path: str | Path = DEFAULT_FOLDERS) -> list[FolderRule]:
    """Read the folder table and check its concepts against the concept table.

    Raises:
        FolderTableError: a missing file or column, a duplicate folder, an unknown concept, a row without a note.
    """
    known, rows = _table(path, ("folder", "concepts", "notes"), "folder table")
    out: list[FolderRule] = []
    seen: set[str] = set()
    for line, (folder, concepts, notes) in rows:
        folder = folder.strip("/").lower()
        if not folder or not notes or folder in seen:
            raise FolderTableError(f"line {line}: want a new folder and a note", str(path))
        seen.add(folder)
        names = [c.strip() for c in concepts.split(";") if c.strip()]
        bad = [c for c in names if c.lower() not in known]
        if bad:
            raise FolderTableError(f"line {line}: unknown concept(s) {', '.join(bad)}", str(path))
        out.append(FolderRule(folder, tuple(known[c.lower()] for c in names), line))
    return out


def read_drawing_words(path: str | Path = DEFAULT_WORDS) -> dict[str, frozenset[str]]:
    """Read the word table: concept -> the lower-case words that name it in file names.

    Raises:
        FolderTableError: a missing file or column, an unknown or duplicate concept, a row without words.
    """
    known, rows = _table(path, ("concept", "words", "notes"), "word table")
    out: dict[str, frozenset[str]] = {}
    for line, (name, words, _) in rows:
        concept = known.get(name.lower())
        vocab = frozenset(w.strip().lower() for w in words.split(";") if w.strip())
        if concept is None or concept in out or not vocab:
            raise FolderTableError(f"line {line}: want a known, new concept and its words", str(path))
        out[concept] = vocab
    return out


def name_tokens(stem: str) -> set[str]:
    """The words of a file name: lower-case alphanumeric runs, also without their digits
    (``"bee1_mimooh_01"`` -> ``{"bee1", "bee", "mimooh", "01"}``)."""
    runs = re.findall(r"[a-z0-9]+", stem.lower())
    return ({r for r in runs} | {re.sub(r"\d+", "", r) for r in runs}) - {""}


def allowed_concepts(stem: str, rule: "FolderRule", words: dict[str, frozenset[str]]) -> tuple[str, ...]:
    """The concepts a drawing may be kept as: its folder's one concept, or those of its folder's concepts that the
    file name names (see the module docstring)."""
    if len(rule.concepts) <= 1:
        return rule.concepts
    tokens = name_tokens(stem)
    return tuple(c for c in rule.concepts if tokens & words.get(c, frozenset()))


def rule_for(folder: str, rules: Sequence[FolderRule]) -> FolderRule | None:
    """The rule of the deepest listed folder that is ``folder`` or one of its parents (``None``: not listed)."""
    f = folder.strip("/").lower()
    best = None
    for r in rules:
        if (f == r.folder or f.startswith(r.folder + "/")) and (best is None or len(r.folder) > len(best.folder)):
            best = r
    return best


def picture_concepts(paths: Sequence[str | Path], batch_size: int = 32,
                     progress: ProgressFn | None = None) -> tuple[np.ndarray, np.ndarray, list[SoundlibError]]:
    """EfficientNet-Lite0's ImageNet softmax of pictures, and their concept probabilities.

    Pictures are read as the pretrained model reads them (short side 256, centre crop 224, alpha on white).

    Args:
        paths: picture files.
        batch_size: pictures per forward pass.
        progress: called as ``progress("classify", done, total)``.

    Returns:
        ``(imagenet, concepts, errors)``: ``(N, 1000)`` and ``(N, C + 1)`` float32 (columns of
        :func:`soundlib.concepts.concept_names`), rows of unreadable pictures all NaN; the errors of those.
    """
    import torch

    from encoders.backbones import effnet_load_size
    from encoders.pretrained import imagenet_logits
    from soundlib.concepts import concept_probabilities, load_concepts
    from soundlib.images import load_image

    progress = progress or null_progress
    table = load_concepts()
    n = len(paths)
    imagenet = np.full((n, 1000), np.nan, dtype=np.float32)
    concepts = np.full((n, len(table.names) + 1), np.nan, dtype=np.float32)
    errors: list[SoundlibError] = []
    size = effnet_load_size()
    for start in range(0, n, batch_size):
        idx, batch = [], []
        for k in range(start, min(n, start + batch_size)):
            try:
                batch.append(load_image(paths[k], size, detail=224))
                idx.append(k)
            except SoundlibError as e:
                errors.append(e)
        if batch:
            probs = torch.softmax(imagenet_logits(torch.stack(batch)), dim=1).numpy()
            imagenet[idx] = probs
            concepts[idx] = concept_probabilities(probs, table)
        progress("classify", min(n, start + batch_size), n)
    return imagenet, concepts, errors


@dataclass
class DrawingsReport:
    """What :func:`keep_drawings` did."""

    candidates: int = 0
    unnamed: int = 0
    duplicates: int = 0
    rendered: int = 0
    kept: Counter = field(default_factory=Counter)
    candidates_by_folder: Counter = field(default_factory=Counter)
    kept_by_folder: Counter = field(default_factory=Counter)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    out: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {"candidates": self.candidates, "unnamed": self.unnamed, "duplicates": self.duplicates,
                "rendered": self.rendered, "kept": sum(self.kept.values()),
                "kept_by_concept": dict(sorted(self.kept.items(), key=lambda kv: (-kv[1], kv[0]))),
                "by_folder": {f: {"candidates": n, "kept": self.kept_by_folder[f]}
                              for f, n in sorted(self.candidates_by_folder.items())},
                "skipped": [{"file": f, "reason": r} for f, r in self.skipped], "out": self.out}


def keep_drawings(svg_root: str | Path, out: str | Path, folders: str | Path = DEFAULT_FOLDERS,
                  words: str | Path = DEFAULT_WORDS, side: int = DRAWING_SIDE,
                  progress: ProgressFn | None = None) -> DrawingsReport:
    """Render the drawings of the listed folders and keep those the classifier agrees with.

    Args:
        svg_root: the SVG tree (``usr/share/openclipart/svg`` of the unpacked package).
        out: DEST (see the module docstring); ``DEST/openclipart/`` is rewritten, ``DEST/.render/`` reused.
        folders: the folder table.
        words: the word table.
        side: PNG side.
        progress: progress callback (``render``, ``classify``).

    Returns:
        The report (kept counts per concept and per folder; unrenderable drawings skipped with their reason).

    Raises:
        SoundlibError: ``svg_root`` is not a folder; FolderTableError for a bad table.
    """
    from soundlib.concepts import concept_names

    progress = progress or null_progress
    root, out = Path(svg_root), Path(out)
    if not root.is_dir():
        raise SoundlibError("not a folder" if root.exists() else "folder not found", str(root))
    rules = read_folder_concepts(folders)
    vocab = read_drawing_words(words)
    names = concept_names()
    report = DrawingsReport(out=str(out))
    cands: list[tuple[Path, str, tuple[str, ...]]] = []
    seen: set[str] = set()
    for svg in sorted(root.rglob("*.svg")):
        folder = svg.parent.relative_to(root).as_posix()
        rule = rule_for(folder, rules)
        if rule is None or not rule.concepts:
            continue
        allowed = allowed_concepts(svg.stem, rule, vocab)
        if not allowed:
            report.unnamed += 1
            continue
        digest = hashlib.sha256(svg.read_bytes()).hexdigest()
        if digest in seen:
            report.duplicates += 1
            continue
        seen.add(digest)
        cands.append((svg, folder, allowed))
    report.candidates = len(cands)
    rendered: list[tuple[Path, str, tuple[str, ...], Path]] = []
    for k, (svg, folder, allowed) in enumerate(cands):
        png = out / RENDER_DIR / folder / (svg.stem + ".png")
        report.candidates_by_folder[folder] += 1
        try:
            if not png.is_file():
                render_drawing(svg, png, side, background=(255, 255, 255))
                report.rendered += 1
            rendered.append((svg, folder, allowed, png))
        except SoundlibError as e:
            report.skipped.append((str(svg), e.reason))
        progress("render", k + 1, len(cands))
    _, concepts, errors = picture_concepts([r[3] for r in rendered], progress=progress)
    report.skipped += [(str(e.path), e.reason) for e in errors]

    dest = out / SOURCE
    if dest.exists():
        shutil.rmtree(dest)
    rows, used = [], set()
    for (svg, folder, allowed, png), p in zip(rendered, concepts):
        ok = bool(np.isfinite(p).all())
        best = int(np.argmax(p)) if ok else -1
        predicted = names[best] if ok else ""
        kept = ok and predicted in allowed
        target = ""
        if kept:
            stem = svg.stem
            while (predicted, stem) in used:  # the same file name in two folders
                stem += "~"
            used.add((predicted, stem))
            target_path = dest / predicted / f"{stem}.png"
            target_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(png, target_path)
            target = target_path.relative_to(out).as_posix()
            report.kept[predicted] += 1
            report.kept_by_folder[folder] += 1
        rows.append({"svg": svg.relative_to(root).as_posix(), "folder": folder, "allowed": ";".join(allowed),
                     "predicted": predicted, "probability": f"{p[best]:.3f}" if ok else "",
                     "kept": "yes" if kept else "no", "png": target})
    with (out / CANDIDATES_CSV).open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["svg", "folder", "allowed", "predicted", "probability", "kept", "png"],
                           lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return report
