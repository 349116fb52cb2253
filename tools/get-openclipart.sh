#!/usr/bin/env bash
# Fetches Debian's openclipart-svg (~25 MB, ~8,100 public-domain SVG drawings sorted into folders) and keeps the
# drawings the ImageNet classifier agrees with, as a concept-sorted pair source for the catalog.
#
#   tools/get-openclipart.sh DEST        (default DEST: ./media/drawings; idempotent: a second run re-renders nothing)
#
#   DEST/openclipart/<concept>/*.png   kept drawings, 512 x 512 on white (train/concept_images.py)
#   DEST/openclipart.csv               every candidate: svg,folder,allowed,predicted,probability,kept,png
#   DEST/licences/openclipart-svg.txt  the package's copyright file (public-domain dedication)
#   DEST/debs/                         the .deb (kept); DEST/.render/ the rendered candidates (reused)
#
# Add the drawings to the catalog like any image folder (rows select them with concept:NAME patterns):
#   soundlib catalog --sounds ... --images ... --images DEST --out DIR
# Needs apt-get and dpkg (Debian) and the system's libcairo2 (for CairoSVG); Python from $PYTHON (default: the
# repo's .venv). See data/concepts/README.md.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/tools/debian-fetch.sh"
begin_fetch "${1:-media/drawings}"

pkg=openclipart-svg
fetch_deb "$pkg" "$DEST" "$work"

(cd "$repo" && "$PY" -m cli drawings --svg "$work/$pkg/usr/share/openclipart/svg" --out "$DEST")
echo "kept: $(find "$DEST/openclipart" -name '*.png' | wc -l) drawings -> $DEST/openclipart"
