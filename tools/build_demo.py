"""Assemble the bundled demo library (demo/) from the Debian media fetched by ../shared/data/get-debian-*.sh.

Run once by a maintainer (the result is committed; users never need to run it):

    python tools/build_demo.py --media /path/to/media --media-extra /path/to/media-extra --out demo

Sounds longer than ``--max-seconds`` are cut to that length (OGG Vorbis); short ones are copied as they are.
Every source package's copyright file is copied to demo/licences/.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import soundfile as sf

# category -> [(source tree, glob, max files)]; trees: "m" = media (get-debian-media.sh), "x" = media-extra
SOUNDS: dict[str, list[tuple[str, str, int]]] = {
    "horse": [("x", "sfx/0ad/horse/*", 3), ("m", "sfx/scratch/Animal/Horse*.wav", 2)],
    "dog": [("m", "sfx/scratch/Animal/Dog*.wav", 2), ("x", "sfx/*/dog/*", 2)],
    "cat": [("m", "sfx/scratch/Animal/Meow.wav", 1), ("m", "sfx/scratch/Animal/Kitten.wav", 1),
            ("m", "sfx/scratch/Animal/Cat.mp3", 1)],
    "bird": [("m", "sfx/scratch/Animal/Bird.wav", 1), ("m", "sfx/scratch/Animal/Owl.wav", 1),
             ("x", "sfx/*/bird/*", 3)],
    "cow": [("x", "sfx/0ad/cattle/*", 3)],
    "sheep": [("x", "sfx/0ad/sheep/*", 2)],
    "chicken": [("x", "sfx/0ad/chicken/*", 2), ("m", "sfx/scratch/Animal/Rooster.wav", 1)],
    "elephant": [("x", "sfx/0ad/elephant/*", 3)],
    "lion": [("x", "sfx/0ad/lion/*", 3)],
    "duck": [("m", "sfx/scratch/Animal/Duck.wav", 1), ("x", "sfx/*/duck/*", 2)],
    "water": [("x", "sfx/0ad/river med/*", 1), ("x", "sfx/0ad/wave crash/*", 1), ("x", "sfx/0ad/waterfall/*", 1),
              ("m", "sfx/scratch/Effects/WaterRunning.mp3", 1), ("m", "sfx/scratch/Effects/Bubbles.wav", 1)],
    "rain": [("x", "sfx/0ad/rain/*", 1), ("x", "sfx/0ad/thunder/*", 1)],
    "fire": [("x", "sfx/0ad/fire/*", 3)],
    "sword": [("x", "sfx/0ad/sword hit/*", 3), ("x", "sfx/0ad/sword attack/*", 1)],
    "footsteps": [("x", "sfx/0ad/footstep snow/*", 2), ("x", "sfx/0ad/footstep gravel/*", 2),
                  ("m", "sfx/scratch/Human/Footsteps-1.wav", 1)],
    "vehicle": [("m", "sfx/scratch/Effects/CarPassing.wav", 1), ("m", "sfx/scratch/Effects/MotorcyclePassing.wav", 1),
                ("x", "sfx/*/car horn/*", 2), ("x", "sfx/scorched3d/helicopter/helicopter.wav", 1)],
    "crowd": [("x", "sfx/0ad/market ambience/*", 1), ("m", "sfx/scratch/Human/PartyNoise.wav", 1)],
    "drums": [("m", "sfx/lmms/drums/*kick*", 1), ("m", "sfx/lmms/drums/*snare*", 1), ("m", "sfx/lmms/drums/*tom*", 1)],
    "explosion": [("x", "sfx/hedgewars/explosion/*", 1), ("x", "sfx/scorched3d/explosion/acid.wav", 1),
                  ("x", "sfx/0ad/explode debris/*", 1)],
    # (the OpenTTD WAVs are left out: get-debian-sfx-extra.sh cuts them a few bytes short)
}

# output name -> (tree, path); frames from videos are taken at the given second
IMAGES: dict[str, tuple[str, str]] = {
    "dog-photo.png": ("m", "videos/VID_20191220_170832.mp4@0.5"),
    "cockatoo-photo.png": ("m", "videos/cockatoo.mp4@0"),
    "rocket-launch.png": ("m", "videos/oa4_launch.webm@2"),
    "horse.png": ("m", "images/scratch/Animals/horse1-a.png"),
    "cow.png": ("m", "images/scratch/Animals/cow1.gif"),
    "lion.png": ("m", "images/scratch/Animals/lion1-a.png"),
    "elephant.png": ("m", "images/scratch/Animals/elephant1-a.png"),
    "duck.png": ("m", "images/scratch/Animals/duck1.png"),
    "car.png": ("m", "images/scratch/Transportation/car1.png"),
    "helicopter.png": ("m", "images/scratch/Transportation/helicopter1.png"),
    "sail-boat.png": ("m", "images/scratch/Transportation/sail-boat.gif"),
    "drum.png": ("m", "images/scratch/Things/drum1.gif"),
}

PACKAGES = {"0ad": "0ad-data", "scratch": "scratch", "lmms": "lmms-common", "wesnoth": "wesnoth-1.16-data"}


def copy_sound(src: Path, dst_dir: Path, max_seconds: float) -> Path:
    info = sf.info(str(src))
    dst_dir.mkdir(parents=True, exist_ok=True)
    name = src.name.replace(" ", "_")
    if info.duration <= max_seconds:
        dst = dst_dir / name
        shutil.copy2(src, dst)
        return dst
    y, sr = sf.read(str(src), frames=int(max_seconds * info.samplerate), always_2d=True)
    dst = dst_dir / (Path(name).stem + ".ogg")
    sf.write(str(dst), y, sr, format="OGG", subtype="VORBIS")
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--media", type=Path, required=True)
    ap.add_argument("--media-extra", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("demo"))
    ap.add_argument("--max-seconds", type=float, default=6.0)
    args = ap.parse_args()
    trees = {"m": args.media, "x": args.media_extra}
    out: Path = args.out
    for sub in ("sounds", "images", "licences"):
        shutil.rmtree(out / sub, ignore_errors=True)
    used_pkgs: set[str] = set()
    for cat, specs in SOUNDS.items():
        for tree, pattern, n in specs:
            files = sorted(p for p in trees[tree].glob(pattern) if p.is_file())[:n]
            for f in files:
                try:
                    copy_sound(f, out / "sounds" / cat, args.max_seconds)
                except Exception as e:  # noqa: BLE001 - a maintainer tool: report and go on
                    print(f"skip {f}: {e}")
                    continue
                parts = f.relative_to(trees[tree]).parts
                used_pkgs.add(parts[1])
    from PIL import Image

    (out / "images").mkdir(parents=True, exist_ok=True)
    for name, (tree, spec) in IMAGES.items():
        path, _, at = spec.partition("@")
        src = trees[tree] / path
        if at:
            from soundlib.images import video_frames

            for t, frame in video_frames(src, every=max(float(at), 0.5)):
                if t >= float(at):
                    import numpy as np
                    arr = (frame.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                    img = Image.fromarray(arr)
                    img.thumbnail((480, 480))
                    img.save(out / "images" / name)
                    break
        else:
            img = Image.open(src)
            img.seek(0)
            img = img.convert("RGBA")
            img.thumbnail((480, 480))
            img.save(out / "images" / name)
    lic = out / "licences"
    lic.mkdir(parents=True, exist_ok=True)
    for src_pkg in sorted(used_pkgs):
        deb = PACKAGES.get(src_pkg, src_pkg + "-data")
        for tree in trees.values():
            for cand in (tree / "licences" / f"{deb}.txt", tree / "licences" / f"{src_pkg}.txt"):
                if cand.exists():
                    shutil.copy2(cand, lic / cand.name)
    for deb in ("forensics-samples-files", "python3-imageio", "renpy-demo", "scratch"):
        cand = args.media / "licences" / f"{deb}.txt"
        if cand.exists():
            shutil.copy2(cand, lic / cand.name)
    print("done:", sum(1 for _ in (out / "sounds").rglob("*") if _.is_file()), "sounds")


if __name__ == "__main__":
    main()
