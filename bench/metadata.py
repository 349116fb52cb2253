"""Ingest with embedded metadata (tags + peak + BS.1770 loudness) against without, in the same run.

The library is bench/ingest.py's (real audio files, 0.3-60 s, wav/flac/ogg/mp3, 8-48 kHz, mono and stereo), with
tags written into half of them (Vorbis comments / ID3 through mutagen, a ``bext`` + ``iXML`` description into the
WAVs), so both the readers and the loudness meter do real work. For each model (m5 at the fast width, where any
overhead shows most, and the default pretrained family) ingests with ``metadata=True`` and ``metadata=False`` into
fresh embedded stores are alternated (N M N M ... ; medians), so load drift on this shared machine hits both.
Goal: metadata costs little (ratio >= 0.9); it is read in the decoding thread, behind the model.

Run: ``.venv/bin/python bench/metadata.py [--quick]`` -> ``bench/results/metadata.json``.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path
from typing import Any

from common import CACHE_DIR, FAST_M5, PRETRAINED, Result, median, model_label, parser, saved_model
from ingest import make_library, run_ingest

GOAL_RATIO = 0.9


def tag_copy(src: Path, files: list[dict[str, Any]], dest: Path) -> int:
    """Copy the library to ``dest`` and tag every other file; returns the number tagged."""
    import mutagen

    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest)
    tagged = 0
    for i, f in enumerate(files):
        if i % 2:
            continue
        path = dest / Path(f["path"]).relative_to(src)
        text = f"synthetic {path.stem.replace('_', ' ')} for the metadata benchmark, take {i}"
        if path.suffix == ".wav":
            raw = path.read_bytes()
            desc = text.encode()[:256].ljust(256, b"\0") + b"Bench".ljust(32, b"\0") + b"\0" * (602 - 288)
            ixml = f"<BWFXML><USER><DESCRIPTION>{text}</DESCRIPTION><KEYWORDS>bench, synth</KEYWORDS></USER></BWFXML>"
            extra = b"bext" + struct.pack("<I", len(desc)) + desc
            ixml_b = ixml.encode() + (b" " if len(ixml) % 2 else b"")
            extra += b"iXML" + struct.pack("<I", len(ixml_b)) + ixml_b
            body = raw[8:] + extra
            path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
        else:
            m = mutagen.File(path, easy=True)
            if m is None:
                continue
            if m.tags is None:
                m.add_tags()
            m["title"] = text
            m["album"] = "Bench"
            m.save()
        tagged += 1
    return tagged


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    n_files, max_seconds = (12, 20.0) if args.quick else (48, 60.0)
    rounds = 1 if args.quick else 3
    res = Result("metadata", args.quick, params={"files": n_files, "max_seconds": max_seconds, "rounds": rounds})
    root = CACHE_DIR / f"ingest-library-{n_files}-{max_seconds:g}"
    files = make_library(root, n_files, max_seconds)
    tagged_root = CACHE_DIR / f"metadata-library-{n_files}-{max_seconds:g}"
    res.details["tagged_files"] = tag_copy(root, files, tagged_root)
    models_dir = CACHE_DIR / "models"
    for name, overrides in (FAST_M5, PRETRAINED):
        label = model_label(name, overrides)
        loaded = saved_model(name, models_dir, **overrides)
        run_ingest(loaded, tagged_root, 64, metadata=True)  # warm-up (kernels, imports, file cache)
        t_with, t_without, warnings, n = [], [], 0, 0
        for _ in range(rounds):
            rep, wall = run_ingest(loaded, tagged_root, 64, metadata=False)
            t_without.append(wall)
            rep, wall = run_ingest(loaded, tagged_root, 64, metadata=True)
            t_with.append(wall)
            warnings, n = len(rep.warnings), rep.windows
        with_rate, without_rate = n / median(t_with), n / median(t_without)
        res.add(f"ingest {label} with metadata", with_rate, "windows/s", baseline="the same ingest without metadata",
                baseline_value=without_rate, ratio=with_rate / without_rate, goal=f">= {GOAL_RATIO}",
                met=with_rate / without_rate >= GOAL_RATIO,
                note=f"{n} windows of {len(files)} files ({res.details['tagged_files']} tagged); medians of {rounds} "
                     f"alternated runs; tag warnings {warnings}")
        res.details[label] = {"with_s": t_with, "without_s": t_without, "windows": n}
    res.finish()


if __name__ == "__main__":
    main()
