"""Defaults of the training side (prepare, catalog, train), in one place: the library functions and the command
line both read them. Imports nothing, so ``soundlib --help`` pays nothing for it.

Model hyper-parameters (batch, learning rate, temperature, width, image size) are the model configuration's
(:mod:`encoders.config`, :mod:`encoders.registry`); ``None`` in :func:`train.loop.train_model` means "the
configuration's".
"""

from __future__ import annotations

from pathlib import Path

# --- prepare (videos -> frames, audio, pair lists) ---------------------------------------------------------------
#: Frames extracted per second of video.
DEFAULT_FPS = 1.0
#: Fractions of the pairs for train / val / test (assigned per video).
DEFAULT_SPLIT: tuple[float, float, float] = (0.8, 0.1, 0.1)
#: Frames are saved with their shorter side scaled down to this (``None`` / 0: as decoded).
DEFAULT_FRAME_SIZE = 256
#: Output layouts of prepare: ours, and the paper's reference code's (train/prepare_reference.py); the first is
#: the default.
LAYOUTS: tuple[str, ...] = ("soundlib", "reference")
#: Clip length of the reference layout in seconds (VGG-Sound's clips are 10 s).
DEFAULT_CLIP_SECONDS = 10

# --- catalog (category map -> catalog pair lists) ----------------------------------------------------------------
#: The category map shipped in the repo (present in a source checkout).
DEFAULT_MAP = Path(__file__).resolve().parent.parent / "data" / "catalog" / "category_map.csv"
#: Share of each concept's images and sounds held out for validation.
DEFAULT_VAL_FRACTION = 0.15
#: Wanted uses of each image / each sound in a concept's pairs.
DEFAULT_PAIRS_PER_IMAGE = 2
DEFAULT_PAIRS_PER_SOUND = 4
#: Cap of a concept's train pairs.
DEFAULT_MAX_PAIRS_PER_CONCEPT = 200
#: A modality of a concept with fewer files than this keeps them all for training (no validation files).
MIN_SPLIT_ITEMS = 3
#: Distinct 1-s windows per catalog sound (1: the whole file, empty ``start``).
DEFAULT_CATALOG_WINDOWS = 1

# --- gcompris (the GCompris evaluation set) ----------------------------------------------------------------------
#: The reviewed table of GCompris sounds and their concepts, shipped in the repo.
DEFAULT_GCOMPRIS_CONCEPTS = Path(__file__).resolve().parent.parent / "data" / "gcompris" / "sound_concepts.csv"

# --- drawings (openclipart drawings kept by concept) ------------------------------------------------------------
#: Which openclipart folders hold which concepts (reviewed table shipped in the repo).
DEFAULT_DRAWING_FOLDERS = Path(__file__).resolve().parent.parent / "data" / "concepts" / "openclipart_folders.csv"
#: Words naming a concept in drawing file names (English, Italian, French), for folders of several concepts.
DEFAULT_DRAWING_WORDS = DEFAULT_DRAWING_FOLDERS.with_name("drawing_words.csv")

# --- loso (leave-one-source-out evaluation) ----------------------------------------------------------------------
#: The reviewed table of default folds (which picture and sound sources each fold holds out).
DEFAULT_FOLDS = Path(__file__).resolve().parent.parent / "data" / "loso" / "folds.csv"
#: A fold's test queries: at most this many held-out pictures per concept (a seeded choice).
DEFAULT_LOSO_QUERIES_PER_CONCEPT = 20
#: Models a LOSO run trains when none is named.
DEFAULT_LOSO_MODELS: tuple[str, ...] = ("pt-effnet-aisfx-bridge",)
#: Training recipes per model configuration (keyword arguments of ``train.loop.train_model``, the names of
#: ``soundlib train``'s options): what ``soundlib loso --model NAME`` trains with unless the command line gives
#: the option. The default model's is ``tools/train_default.sh``'s (soundlib/models/default.pt); the paper's m5
#: and m1 are trained from scratch, shrunk to minutes on a CPU as in that script. ``"bridge_sounds": "catalog"``
#: fits the concept bridge on each fold's own labelled training sounds (``train.loso.FOLD_SOUNDS``; the script
#: passes ``--bridge-sounds WORK/catalog/catalog_sounds.csv``).
RECIPES: dict[str, dict[str, object]] = {
    "pt-effnet-aisfx-infonce": {"lr": 0.01, "temperature": 0.1, "batch": 128, "epochs": 40, "patience": 10,
                                "windows": 3, "seed": 1},
    "pt-effnet-aisfx-bridge": {"lr": 0.01, "temperature": 0.1, "batch": 128, "epochs": 6, "patience": 6,
                               "windows": 3, "seed": 1, "bridge_sounds": "catalog"},
    "m5-attention-linear-infonce": {"width": 0.25, "image_size": 96, "epochs": 4, "patience": 4, "windows": 3},
    "m1-baseline-linear-bce": {"width": 0.25, "image_size": 96, "epochs": 4, "patience": 4, "windows": 3},
}

# --- train -------------------------------------------------------------------------------------------------------
#: Model configuration trained when none is named.
DEFAULT_MODEL = "m5-attention-linear-infonce"
#: Last epoch to run.
DEFAULT_EPOCHS = 50
#: Stop after this many epochs without a better validation metric (the paper: 20).
DEFAULT_PATIENCE = 20
#: Epochs without improvement before the learning rate is divided by 10.
DEFAULT_PLATEAU_PATIENCE = 5
#: SGD weight decay (the paper's).
DEFAULT_WEIGHT_DECAY = 1e-4
#: Cached windows per whole-file clip (its loudest; one is drawn per epoch).
DEFAULT_WINDOWS = 3
#: Numeric precisions of training; the first is the default (bf16 autocast).
PRECISIONS: tuple[str, ...] = ("bf16", "fp32")
DEFAULT_PRECISION = PRECISIONS[0]
#: Frame-decoding worker processes (paper models).
DEFAULT_WORKERS = 1
#: Frames are preloaded into RAM as uint8 when they need at most this many MiB (paper models).
DEFAULT_PRELOAD_MB = 1024.0
