#!/usr/bin/env bash
# Renders real instrument recordings by concept from the General MIDI soundfont of Debian's fluid-soundfont-gm
# (FluidR3_GM, MIT licence, ~120 MB download) with Debian's fluidsynth: a few ~3-s clips per instrument of
# data/instruments/gm_programs.csv (phrases, chords, held notes; beats, fills and hits for percussion).
#
#   tools/get-instruments.sh DEST     (idempotent: run again to resume)
#
#   DEST/sfx/fluidr3/<concept>/*.wav  pass DEST/sfx as a --sounds root to `soundlib catalog` / `soundlib loso`
#                                     (its package, the LOSO source, is "fluidr3"; the category map's
#                                     fluidr3/<concept>/* patterns pick the files)
#   DEST/licences/                    the soundfont package's copyright file
#
# Needs apt-get and dpkg (Debian); installs the fluidsynth package when it is missing (root). Python from $PYTHON
# (default: the repo's .venv).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/tools/debian-fetch.sh"
begin_fetch "${1:?usage: tools/get-instruments.sh DEST}"

command -v fluidsynth >/dev/null || apt-get install -y --no-install-recommends fluidsynth >/dev/null
pkg=fluid-soundfont-gm
fetch_deb "$pkg" "$DEST" "$work"
(cd "$repo" && "$PY" -m train.instruments --sf2 "$work/$pkg/usr/share/sounds/sf2/FluidR3_GM.sf2" --out "$DEST")
