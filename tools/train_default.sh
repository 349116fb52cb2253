#!/usr/bin/env bash
# Reproduce soundlib's default model (soundlib/models/default.pt) from public media, with the recipe of
# soundlib/models/README.md: fetch media, prepare video pairs, build catalog pairs, train the default
# (pt-effnet-aisfx-bridge) plus the from-scratch m5 and m1 on the same pairs, evaluate the three side by side.
#
#   tools/train_default.sh WORK [--install]
#
#   WORK       folder for everything (media ~0.7 GB, features cache ~0.5 GB, runs)
#   --install  copy WORK/runs/default/best.pt to soundlib/models/default.pt at the end
#
# Environment: SHARED (default: <repo>/../shared/data: the get-debian-*.sh scripts, imagenet-samples,
# cifar10-train), SOUNDLIB (default: <repo>/.venv/bin/soundlib),
# THREADS (torch threads, default 1: fastest on a shared 2-core machine), SKIP_BASELINES=1 (default model only).
# Every step is idempotent: the fetch scripts skip what is unpacked, prepare skips prepared videos, training
# reuses the feature cache in WORK/cache (delete WORK/runs/<name> to train again).
set -euo pipefail

WORK=${1:?usage: tools/train_default.sh WORK [--install]}
INSTALL=${2:-}
REPO=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$REPO/../shared/data}
SOUNDLIB=${SOUNDLIB:-$REPO/.venv/bin/soundlib}
THREADS=${THREADS:-1}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
MEDIA=$WORK/media          # get-debian-media.sh: videos, wesnoth/scratch/lmms sounds, scratch sprites
MEDIA2=$WORK/media2        # get-debian-sfx-extra.sh: ~1,630 game sound effects by category, animal images
INSTR=$WORK/instruments    # tools/get-instruments.sh: real instrument recordings by concept (FluidR3_GM soundfont)
REAL=$WORK/real            # prepare: 1-fps frames + 48 kHz audio + train/val/test.csv (split by video)
CATALOG=$WORK/catalog      # catalog pairs: catalog_train.csv, catalog_val.csv
RUNS=$WORK/runs
CACHE=$WORK/cache
mkdir -p "$RUNS"

echo "== 1/6 fetch media (Debian packages)"
bash "$SHARED/get-debian-media.sh" "$MEDIA"
bash "$SHARED/get-debian-sfx-extra.sh" "$MEDIA2"
bash "$REPO/tools/get-instruments.sh" "$INSTR"

echo "== 2/6 prepare video pairs"
# exit code 1 = some videos had no audio track and were skipped (reported): not an error here
"$SOUNDLIB" prepare "$MEDIA/videos" --out "$REAL" || [ $? -eq 1 ]

echo "== 3/6 catalog pairs"
"$SOUNDLIB" catalog --map "$REPO/data/catalog/category_map.csv" \
  --sounds "$MEDIA/sfx" --sounds "$MEDIA2/sfx" --sounds "$INSTR/sfx" \
  --images "$SHARED/imagenet-samples" --images "$SHARED/cifar10-train" --images "$MEDIA/images" \
  --images "$MEDIA2/images" --out "$CATALOG" --json > "$CATALOG.json"

TRAIN=("$CATALOG/catalog_train.csv" "$REAL/train.csv")
VAL=(--val "$CATALOG/catalog_val.csv" --val "$REAL/val.csv")

echo "== 4/6 train the default model (frozen backbones' features are cached once, then heads train)"
# The recipes here (default model, m5, m1) are train.defaults.RECIPES, which `soundlib loso` trains with: change both.
# pt-effnet-aisfx-bridge: heads + the concept bridge (fitted on every labelled sound of the catalog's training side,
# catalog_sounds.csv, paired or not). Its settings were
# chosen on leave-one-source-out folds (the model card): 6 epochs (LOSO figures are flat over epochs 1-12), the
# epoch kept by the catalog val list among them. GCompris is never trained on: it stays an outside evaluation set.
if [ ! -f "$RUNS/default/best.pt" ]; then
  "$SOUNDLIB" train "${TRAIN[@]}" "${VAL[@]}" --model pt-effnet-aisfx-bridge --out "$RUNS/default" \
    --bridge-sounds "$CATALOG/catalog_sounds.csv" \
    --lr 0.01 --temperature 0.1 --batch 128 --epochs 6 --patience 6 --windows 3 --seed 1 \
    --cache "$CACHE" --threads "$THREADS" --json > "$RUNS/default.json"
fi

if [ -z "${SKIP_BASELINES:-}" ]; then
  echo "== 5/6 from-scratch baselines on the same pairs (width 0.25, 96 px: minutes, not hours)"
  for m in m5-attention-linear-infonce m1-baseline-linear-bce; do
    short=${m%%-*}
    if [ ! -f "$RUNS/$short/best.pt" ]; then
      "$SOUNDLIB" train "${TRAIN[@]}" "${VAL[@]}" --model "$m" --out "$RUNS/$short" --width 0.25 --image-size 96 \
        --epochs 4 --patience 4 --windows 3 --cache "$CACHE" --threads "$THREADS" --json > "$RUNS/$short.json"
    fi
  done
fi

echo "== 6/6 evaluate side by side"
MODELS=(--model "$RUNS/default/best.pt")
[ -z "${SKIP_BASELINES:-}" ] && MODELS+=(--model "$RUNS/m5/best.pt" --model "$RUNS/m1/best.pt")
for list in "$CATALOG/catalog_val.csv" "$REAL/val.csv"; do
  name=$(basename "$list" .csv)
  "$SOUNDLIB" eval "$list" "${MODELS[@]}" -k 1,5,10 --json > "$RUNS/eval_$name.json" || [ $? -eq 1 ]
  "$SOUNDLIB" eval "$list" "${MODELS[@]}" -k 1,5,10 || [ $? -eq 1 ]
done

if [ "$INSTALL" = "--install" ]; then
  install -m 644 "$RUNS/default/best.pt" "$REPO/soundlib/models/default.pt"
  echo "installed $REPO/soundlib/models/default.pt ($(du -h "$REPO/soundlib/models/default.pt" | cut -f1))"
fi
echo "done: runs and evaluations in $RUNS"
