#!/usr/bin/env bash
# Fetches qABCs's pictures and noises (Debian qabcs-data, ~34 MB, GPL-3+) and builds a second independent
# evaluation set from them: 241 pictures (photos and drawings of animals, instruments, toys, food) with the noise of
# the same thing, 61 of them of a concept (the reviewed table data/qabcs/concepts.csv; see train/qabcs.py).
#
#   tools/get-qabcs.sh DEST        (default DEST: ./media/qabcs; idempotent: run again to rebuild)
#
#   DEST/qabcs_pairs.csv           every pair: soundlib eval DEST/qabcs_pairs.csv
#   DEST/qabcs_concept_pairs.csv   the pairs with a concept:
#                                  soundlib eval DEST/qabcs_concept_pairs.csv --candidates DEST/qabcs_pairs.csv
#   DEST/pictures/, DEST/noises/   the pairs' files
#   DEST/licences/qabcs-data.txt   the package's copyright file
#
# Needs apt-get and dpkg (Debian); Python from $PYTHON (default: the repo's .venv).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/tools/debian-fetch.sh"
begin_fetch "${1:-media/qabcs}"

pkg=qabcs-data
fetch_deb "$pkg" "$DEST" "$work"
(cd "$repo" && "$PY" -m train.qabcs --package "$work/$pkg" --out "$DEST")
