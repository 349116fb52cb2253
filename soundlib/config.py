"""The library's defaults: the store's settings, the environment variables soundlib reads, the inference batch.

Model, audio and image defaults live in :mod:`encoders.config`; training defaults in :mod:`train.defaults`. The
command line reads these constants (Click defaults and ``envvar=``), so each value is written once. Torch-free
and cheap to import.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Environment variable naming the default model checkpoint (``--model``).
MODEL_ENV = "SOUNDLIB_MODEL"
#: Environment variable naming a Chroma server (``--chroma-url``).
CHROMA_URL_ENV = "SOUNDLIB_CHROMA_URL"
#: Environment variable holding the Chroma server token (never on the command line).
TOKEN_ENV = "SOUNDLIB_CHROMA_TOKEN"
#: Environment variable naming a studio's own words table (``concept,words``: its words for the model's concepts,
#: any language), read besides the shipped one when ingest mixes names (:mod:`soundlib.name_concepts`).
WORDS_ENV = "SOUNDLIB_WORDS"

#: Items (1-s windows or pictures) per model call at inference: ingest, query, eval, training's validation and
#: feature caches. Results do not depend on it; memory grows with it (64 windows of audio: 12 MB).
INFERENCE_BATCH = 64


@dataclass(frozen=True)
class StoreConfig:
    """Defaults of the sound library store (Chroma).

    Attributes:
        home_env: environment variable of soundlib's home folder (the embedded store is ``<home>/chroma``).
        default_home: the home folder when that variable is not set.
        default_collection: collection name when ``--collection`` is not given.
        hnsw_space, hnsw_ef_construction, hnsw_max_neighbors: HNSW settings at creation (Chroma's defaults gave
            a top-10 recall of 0.92 on picture queries here).
        hnsw_ef_search: HNSW search breadth (Chroma searches with ``ef = max(ef_search, n_results)``); the only
            HNSW setting Chroma lets change later, so ingest raises it on older collections (measured in
            ``bench/README.md``).
        open_wait_seconds: how long opening the embedded store waits while another process holds its write lock.
        wait_env: environment variable that overrides ``open_wait_seconds``.
        candidate_factor: a search asks Chroma for ``k * candidate_factor`` windows, then re-ranks them exactly.
    """

    home_env: str = "SOUNDLIB_HOME"
    default_home: str = "~/.soundlib"
    default_collection: str = "sounds"
    hnsw_space: str = "l2"
    hnsw_ef_construction: int = 200
    hnsw_max_neighbors: int = 32
    hnsw_ef_search: int = 800
    open_wait_seconds: float = 30.0
    wait_env: str = "SOUNDLIB_STORE_WAIT"
    candidate_factor: int = 8

#: Share of a bridged sound embedding's concept part given to the concepts its file name and folders name
#: (:mod:`soundlib.name_concepts`); the audio keeps the rest. Half: the words and the audio count equally.
NAME_SHARE = 0.5
#: Version of the name mixing (the words table and the rule), stored with each file's windows (``named``): files
#: embedded under another version (or before names were mixed in) are remixed by the next ingest from their stored
#: vectors. Every stored mix was made at NAME_SHARE: a change of share must come with a new version, and with the
#: old share kept to undo the mixes stored under it (``soundlib.ingest._remix``).
NAMES_VERSION = 1

#: Sounds (distinct files) a query returns.
DEFAULT_K = 10
#: Cut-offs of ``soundlib eval`` (the paper's top-1/5/10).
DEFAULT_KS: tuple[int, ...] = (1, 5, 10)
#: How ``soundlib eval`` scores a whole-file row from its windows: its best (nearest) window, what ``soundlib
#: query`` does, or the re-normalised mean of its windows. The first is the default (measured against the mean
#: in ``bench/README.md``).
FILE_SCORES: tuple[str, ...] = ("best", "mean")
DEFAULT_FILE_SCORE = FILE_SCORES[0]
