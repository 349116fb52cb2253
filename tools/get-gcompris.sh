#!/usr/bin/env bash
# Fetches GCompris's media (Debian gcompris-qt-data, ~44 MB) and builds an independent evaluation set from it:
# pictures and the recorded sound of the same thing (farm animals, instruments, world music), plus recorded sounds
# by concept (extra real recordings for training folds that leave GCompris out of the test).
#
#   tools/get-gcompris.sh DEST        (default DEST: ./media/gcompris; idempotent: run again to resume)
#
#   DEST/gcompris_pairs.csv      pair list for `soundlib eval` (frame,audio,start,sample,category,video)
#   DEST/gcompris_sounds.csv     every sound with a concept (audio,category,activity,seconds,paired)
#   DEST/gcompris_pictures.csv   every paired picture (frame,category,activity,kind: photo | drawing)
#   DEST/gcompris_summary.json   counts; DEST/extracted/ the activities' files; DEST/pictures/ drawings as PNG
#   DEST/licences/               the package's copyright file and the activities' own README/licence files
#
# The activities' files sit inside Qt .rcc resource archives: train/rcc.py reads them, train/gcompris.py builds
# the lists from the activities' data files and the reviewed table data/gcompris/sound_concepts.csv
# (see data/gcompris/README.md). Needs apt-get and dpkg (Debian); Python from $PYTHON (default: the repo's .venv).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/tools/debian-fetch.sh"
begin_fetch "${1:-media/gcompris}"

pkg=gcompris-qt-data
fetch_deb "$pkg" "$DEST" "$work"

(cd "$repo" && "$PY" -m cli gcompris --rcc "$work/$pkg/usr/share/gcompris-qt/rcc" --out "$DEST")

# The activities' own licence notes (per-file authors and licences; more precise than the package's file).
(cd "$DEST/extracted/gcompris/src/activities" \
  && find . -type f \( -iname 'README*' -o -iname 'licen*' \) -exec cp --parents {} "$DEST/licences/" \;)
echo "pairs: $(($(wc -l < "$DEST/gcompris_pairs.csv") - 1))  sounds: $(($(wc -l < "$DEST/gcompris_sounds.csv") - 1))  -> $DEST"
