"""Regenerate the Qt resource archives under tests/data/ with Qt's own ``rcc`` tool.

    apt-get install qtbase5-dev-tools        # /usr/lib/qt5/bin/rcc (5.15.8 made the committed files)
    .venv/bin/python tests/data/make_rcc_fixtures.py

Writes (a few KB in all):

- ``mini_farm.rcc``: a miniature GCompris activity in the real layout (``gcompris/src/activities/mini_farm/``):
  a board file pairing pictures with sounds the way ``explore_farm_animals`` does, SVG drawings (zlib-compressed
  by rcc), tiny real WebP photos and WAV sounds, an incompressible file (stored), and a French variant of the
  README (a locale entry). ``rcc --binary --compress-algo zlib`` (format version 3).
- ``tiny-v1.rcc``: two small files in format version 1 (14-byte tree entries, no timestamps).
- ``tiny-zstd.rcc``: one zstd-compressed file (which the reader refuses with one line).

The tests compare what the reader extracts with :data:`TEXT_FILES` below, byte for byte, so this file is the
single description of what the archives hold. The binary files are generated from fixed parameters.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
RCC = "/usr/lib/qt5/bin/rcc"
ACTIVITY = "gcompris/src/activities/mini_farm"

BOARD = """/* A miniature board in the layout of explore_farm_animals/resource/board/board1.qml. */
import QtQuick 2.12
import GCompris 1.0 as GCompris

QtObject {
    property string backgroundImage: "qrc:/gcompris/src/activities/mini_farm/resource/farm.svg"
    property var tab : [
        {
            "image": "qrc:/gcompris/src/activities/mini_farm/resource/animals/cow.svg",
            "title": qsTr("Cow"),
            "audio": GCompris.ApplicationInfo.getAudioFilePath("qrc:/gcompris/src/activities/mini_farm/resource/animals/cow.$CA"),
            "image2": "qrc:/gcompris/src/activities/mini_farm/resource/animals/cow.webp",
            "x": 0.18
        },
        {
            "image": "qrc:/gcompris/src/activities/mini_farm/resource/icon.svg",
            "title": qsTr("Dog"),
            "audio": GCompris.ApplicationInfo.getAudioFilePath("qrc:/gcompris/src/activities/mini_farm/resource/animals/dog.$CA"),
            "image2": "qrc:/gcompris/src/activities/mini_farm/resource/animals/dog.webp"
        },
        {
            "image": "qrc:/gcompris/src/activities/mini_farm/resource/icon.svg",
            "title": qsTr("Bell"),
            "audio": GCompris.ApplicationInfo.getAudioFilePath("qrc:/gcompris/src/activities/mini_farm/resource/animals/bell.$CA")
        }
    ]
}
"""


def _svg(fill: str, shape: str) -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<svg xmlns="http://www.w3.org/2000/svg" width="200" height="100" viewBox="0 0 200 100">\n'
            f'  <!-- a {fill} drawing for the soundlib rcc fixture; padding so zlib has something to do -->\n'
            f'  {shape.format(fill=fill)}\n</svg>\n')


#: Text files of mini_farm.rcc (path below ACTIVITY -> content).
TEXT_FILES: dict[str, str] = {
    "resource/board/board1.qml": BOARD,
    "resource/animals/cow.svg": _svg("black", '<rect x="10" y="10" width="180" height="80" fill="{fill}"/>'),
    "resource/icon.svg": _svg("orange", '<circle cx="100" cy="50" r="40" fill="{fill}"/>'),
    "resource/farm.svg": _svg("green", '<rect width="200" height="100" fill="{fill}"/>'),
    "resource/README": "Miniature GCompris activity for the soundlib tests.\nLicense: CC0-1.0\n" * 4,
}
#: The French variant of resource/README (a locale entry; the reader keeps the default one).
README_FR = "Activite GCompris miniature pour les tests de soundlib.\n"
#: Sounds of mini_farm.rcc (name -> tone frequency in Hz); rain_copy.wav is a byte copy of rain.wav.
TONES: dict[str, float] = {"cow": 220.0, "dog": 880.0, "bell": 1760.0, "rain": 330.0, "knock": 110.0}
#: Photos of mini_farm.rcc (name -> RGB colour); 16 x 16 lossless WebP.
PHOTOS: dict[str, tuple[int, int, int]] = {"cow": (40, 40, 40), "dog": (160, 110, 60)}
#: Tiny-v1 files.
TINY_FILES: dict[str, str] = {"hello.txt": "hello world\n" * 40, "sub/dir/b.txt": "bee\n"}


def wav_bytes(freq: float, seconds: float = 0.05, rate: int = 8000) -> bytes:
    """A short 16-bit mono WAV tone."""
    import numpy as np
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (0.5 * np.sin(2 * np.pi * freq * t)).astype("float32"), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def webp_bytes(rgb: tuple[int, int, int]) -> bytes:
    """A 16 x 16 lossless WebP of one colour."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), rgb).save(buf, format="WEBP", lossless=True)
    return buf.getvalue()


def noise_bytes(n: int = 600) -> bytes:
    """Incompressible bytes (rcc stores them uncompressed)."""
    import numpy as np

    return np.random.default_rng(12).integers(0, 256, n, dtype=np.uint8).tobytes()


def _qrc(prefix: str, files: list[str], lang_files: dict[str, str] | None = None) -> str:
    lines = ["<!DOCTYPE RCC><RCC version=\"1.0\">", f'<qresource prefix="/{prefix}">']
    lines += [f"  <file>{f}</file>" for f in files]
    lines.append("</qresource>")
    for lang, f in (lang_files or {}).items():
        lines += [f'<qresource prefix="/{prefix}" lang="{lang}">', f'  <file alias="{f.split(":")[0]}">'
                  f'{f.split(":")[1]}</file>', "</qresource>"]
    lines.append("</RCC>")
    return "\n".join(lines) + "\n"


def _run(qrc: Path, out: Path, *args: str) -> None:
    subprocess.run([RCC, "--binary", *args, str(qrc), "-o", str(out)], check=True, cwd=qrc.parent)
    print(f"{out.name}: {out.stat().st_size} bytes")


def main() -> int:
    if not Path(RCC).is_file():
        print(f"{RCC} not found: apt-get install qtbase5-dev-tools", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp)
        files: list[str] = []
        for rel, text in TEXT_FILES.items():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_text(text, encoding="utf-8")
            files.append(rel)
        for name, freq in TONES.items():
            (src / f"resource/animals/{name}.wav").write_bytes(wav_bytes(freq))
            files.append(f"resource/animals/{name}.wav")
        shutil.copy(src / "resource/animals/rain.wav", src / "resource/animals/rain_copy.wav")
        files.append("resource/animals/rain_copy.wav")
        for name, rgb in PHOTOS.items():
            (src / f"resource/animals/{name}.webp").write_bytes(webp_bytes(rgb))
            files.append(f"resource/animals/{name}.webp")
        (src / "resource/noise.bin").write_bytes(noise_bytes())
        files.append("resource/noise.bin")
        (src / "README.fr").write_text(README_FR, encoding="utf-8")
        (src / "mini.qrc").write_text(_qrc(ACTIVITY, sorted(files), {"fr": "resource/README:README.fr"}))
        _run(src / "mini.qrc", HERE / "mini_farm.rcc", "--compress-algo", "zlib")

        for rel, text in TINY_FILES.items():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_text(text, encoding="utf-8")
        (src / "tiny.qrc").write_text(_qrc("", list(TINY_FILES)))
        _run(src / "tiny.qrc", HERE / "tiny-v1.rcc", "--format-version", "1", "--compress-algo", "zlib")
        (src / "z.qrc").write_text(_qrc("", ["hello.txt"]))
        _run(src / "z.qrc", HERE / "tiny-zstd.rcc", "--compress-algo", "zstd")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
