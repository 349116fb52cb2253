"""Adapting a bridged model's ear to a studio's own library: ``soundlib adapt LIBRARY --out MODEL``.

The concept bridge's sound classifier (:mod:`train.bridge`) names the right concept for about one sound window in
five from sources it never saw: each library records, mixes and names its sounds its own way. A studio's library
says what most of its sounds are in their names and tags (``Dog Bark Large 03.wav``, ``animals/cow/moo2.ogg``, a BWF
description): the same words ingest already mixes into a file's vector (:mod:`soundlib.name_concepts`). Adapting
fits the classifier again on the windows it was fitted on (the checkpoint's :class:`~encoders.bridge.BridgeFitSet`)
plus every window of the library's named files, each labelled with the concepts its name names. The new model hears
this library's sounds as their names taught it, the unnamed ones too. Everything else (the heads, the picture side,
the columns) stays as it was, so pictures read the same.

Measured end to end on the leave-one-source-out folds (each fold's model adapted to its held-out library, then
``soundlib eval --names``; the model card has the table): with every file named, top-10 sample / category 50.1 /
70.9 -> 52.1 / 71.5 % (MRR 0.289 both); with half the names hidden, the pictures whose sound is unnamed 37.2 / 67.3
-> 42.7 / 71.0 % (MRR 0.210 -> 0.208). Libraries of a few dozen named files gained nothing or lost
(:data:`SMALL_LIBRARY_NAMED_FILES`).

The adapted checkpoint keeps the base's fit set (adapting it again starts from the base, never from an earlier
adaptation) and records what it learnt from under ``training["adapted"]``. Ingest a library with it into its own
collection (``soundlib ingest LIBRARY --model MODEL --collection NAME``); later queries of that collection use it.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from soundlib.errors import SoundlibError
from soundlib.progress import ProgressFn, null_progress

#: Fewest concepts the library's names must name (a softmax regression needs two classes to learn anything).
MIN_NAMED_CONCEPTS = 2
#: Below this many named files a library is small: on the LOSO folds, the 61- and 140-file libraries (25-129
#: named) gained nothing or lost, while those of 200-500 named files gained (the model card's table).
SMALL_LIBRARY_NAMED_FILES = 150
#: Windows per model call while reading the library.
ADAPT_BATCH = 64


@dataclass
class AdaptReport:
    """What :func:`adapt_model` did.

    Attributes:
        base: the checkpoint adapted (path) and ``base_sha256`` its hash.
        out: the adapted checkpoint written, ``sha256`` its hash.
        library: the library folders read.
        files: audio files found; ``named_files`` those whose name names a concept (the ones read).
        windows: windows of the named files fitted on; ``base_rows`` windows of the base's fit set.
        concepts: ``{concept: named files}``, most files first.
        skipped: ``(path, reason)`` of named files that could not be read (left out).
        seconds: wall time.
    """

    base: str
    base_sha256: str
    out: str
    sha256: str
    library: list[str]
    files: int
    named_files: int
    windows: int
    base_rows: int
    concepts: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def caution(self) -> str | None:
        """A one-line warning when the library is small enough that adapting may not help (``None`` otherwise)."""
        if self.named_files >= SMALL_LIBRARY_NAMED_FILES:
            return None
        files = f"{self.named_files} named file" + ("" if self.named_files == 1 else "s")
        return (f"only {files}: libraries this small gained nothing or lost on the "
                f"leave-one-source-out folds; compare both models on a few pictures before you keep it")

    def to_json(self) -> dict[str, Any]:
        return {"base": self.base, "base_sha256": self.base_sha256, "out": self.out, "sha256": self.sha256,
                "library": self.library, "files": self.files, "named_files": self.named_files,
                "windows": self.windows, "base_rows": self.base_rows, "concepts": self.concepts,
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped], "caution": self.caution,
                "seconds": round(self.seconds, 2)}


def _check_model(loaded: Any) -> Any:
    """The model's fit set, or a one-line error naming the checkpoint."""
    model, path = loaded.model, str(loaded.info.path)
    if getattr(model, "bridge", None) is None:
        raise SoundlibError(f"model {loaded.name} has no concept bridge, so it has no ear to adapt "
                            f"(adapt needs a pt-effnet-aisfx-bridge model such as the default)", path)
    fit = getattr(model, "bridge_fit", None)
    if fit is None:
        raise SoundlibError("this checkpoint was saved without its sound classifier's fit set (trained before "
                            "`soundlib adapt` existed): train it again with `soundlib train` to adapt it", path)
    return fit


def _check_writable(out: Path) -> None:
    """A one-line error when ``out`` cannot be written: a folder, or a parent that cannot be made or written."""
    if out.is_dir():
        raise SoundlibError("is a folder; --out names the checkpoint file to write", str(out))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SoundlibError(f"cannot make its folder ({e.strerror or e})", str(out)) from None
    import tempfile

    try:  # a real write: permissions, read-only mounts and pseudo file systems all answer it
        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=".adapt-probe-"):
            pass
    except OSError as e:
        raise SoundlibError(f"cannot write in its folder ({e.strerror or e})", str(out)) from None


def named_library_files(folders: Sequence[str], model: Any, on_skip: Any = None,
                        metadata: bool = True) -> tuple[int, list[tuple[Any, Any]]]:
    """Scan ``folders``; returns ``(files found, [(SoundFile, named vector (C,)), ...])`` for the files whose
    words name at least one of the model's concepts, read as ingest reads them: the folders below the root, the
    file name and (``metadata``) the embedded title, description, keywords and UCS CatID (a studio's
    ``SFX_0412.wav`` described "Large dog barking" is a dog), plus a studio's ``$SOUNDLIB_WORDS`` table."""
    from soundlib.categories import DEFAULT_RULE
    from soundlib.ingest import labels
    from soundlib.name_concepts import for_model
    from soundlib.scan import scan
    from soundlib.tags import read_tags_partial

    names = for_model(model)
    found, named = 0, []
    for sf in scan(folders, on_skip=on_skip):
        found += 1
        tags = read_tags_partial(sf.path)[0] if metadata else {}  # unreadable tags: the name still counts
        vec = names.vector(sf.rel, labels(sf.rel, sf.root, DEFAULT_RULE, tags)["info"])
        if vec.any():
            named.append((sf, vec))
    return found, named


def library_rows(model: Any, named: Sequence[tuple[Any, Any]], max_windows: int | None,
                 progress: ProgressFn) -> tuple[np.ndarray, np.ndarray, int, list[tuple[str, str]]]:
    """The classifier inputs of every window of the named files, one row per (window, named concept).

    Returns:
        ``(x (R, F) float16, y (R,) int64 columns, windows read, skipped [(path, reason)])``.
    """
    import torch

    from soundlib.audio import load_windows
    from soundlib.errors import AudioError

    cfg = model.config.audio
    cap = cfg.max_windows if max_windows is None else int(max_windows)
    xs, ys, skipped, n_windows = [], [], [], 0
    progress("adapt", 0, len(named))
    for n, (sf, vec) in enumerate(named, start=1):
        try:
            _, windows = load_windows(sf.path, cfg, max_windows=cap)
        except AudioError as e:
            skipped.append((sf.path, e.reason))
            progress("adapt", n, len(named))
            continue
        with torch.no_grad():
            feats = torch.cat([model.audio_features(torch.from_numpy(windows[i:i + ADAPT_BATCH]))
                               for i in range(0, len(windows), ADAPT_BATCH)])
            x = model.sound_classifier_input(feats).float().numpy()
        n_windows += len(x)
        x = x.astype(np.float16)  # half the memory of a large library's rows; the fit standardises them
        for col in np.flatnonzero(vec):
            xs.append(x)
            ys.append(np.full(len(x), int(col), np.int64))
        progress("adapt", n, len(named), windows=len(x))
    if not xs:
        return np.zeros((0, 0), np.float16), np.zeros(0, np.int64), 0, skipped
    return np.concatenate(xs), np.concatenate(ys), n_windows, skipped


def adapted_classifier(fit: Any, x: np.ndarray, y: np.ndarray, n_concepts: int) -> tuple[Any, Any, Any, Any]:
    """The softmax regression fitted on the base's fit set (each row its count) plus the rows ``x``, ``y``
    (once each), with the base's L2 penalty: ``(mean, std, weight, bias)``."""
    import torch

    from train.bridge import fit_softmax_regression

    xa = torch.cat([fit.x.float(), torch.as_tensor(x, dtype=torch.float32)]) if len(x) else fit.x.float()
    ya = np.concatenate([fit.y.numpy(), y]) if len(y) else fit.y.numpy()
    wa = np.concatenate([fit.count.numpy().astype(np.float64), np.ones(len(y))])
    return fit_softmax_regression(xa, ya, n_concepts, fit.weight_decay, sample_weight=wa)


def adapt_model(model_spec: str | None, folders: Sequence[str | Path], out: str | Path,
                max_windows: int | None = None, progress: ProgressFn | None = None,
                metadata: bool = True) -> AdaptReport:
    """Fit a bridged model's sound classifier again with a library's named files and write the result.

    Args:
        model_spec: the base model (a checkpoint path or registry name; ``None``: the bundled default).
        folders: the library's folders (or files), read as ingest reads them.
        out: the checkpoint to write (its folder is created; written atomically).
        max_windows: windows per file (default: the model's ``max_windows``, as ingest).
        progress: receives ``("adapt", files done, named files)``.
        metadata: read the files' embedded tags for words too (ingest's default; ``--no-metadata``).

    Returns:
        an :class:`AdaptReport`.

    Raises:
        SoundlibError: a missing folder; a model without a bridge or a fit set; names that name fewer than
            :data:`MIN_NAMED_CONCEPTS` concepts; ``out`` is the base checkpoint itself.
    """
    from encoders.checkpoint import save_checkpoint
    from soundlib.models import load_model

    t0 = time.perf_counter()
    progress = progress or null_progress
    loaded = load_model(model_spec)
    fit = _check_model(loaded)
    model = loaded.model
    out = Path(out).expanduser()
    if out.exists() and out.resolve() == Path(loaded.info.path).resolve():
        raise SoundlibError("the adapted model would overwrite its base: give another --out", str(out))
    _check_writable(out)  # before the library is read, not after
    roots = [str(Path(f).expanduser()) for f in folders]
    skipped: list[tuple[str, str]] = []
    found, named = named_library_files(roots, model, on_skip=lambda p, r: skipped.append((str(p), r)),
                                       metadata=metadata)
    concepts = list(model.config.concepts)
    per_concept = Counter(concepts[c] for _, vec in named for c in np.flatnonzero(vec))
    if len(per_concept) < MIN_NAMED_CONCEPTS:
        what = f"only {next(iter(per_concept))}" if per_concept else "none"
        files = f"{found} audio file" + ("" if found == 1 else "s")
        raise SoundlibError(f"the words of its {files} name {what} of the model's {len(concepts)} "
                            f"concepts; adapting needs files named after at least {MIN_NAMED_CONCEPTS} "
                            f"(e.g. 'dog_bark_01.wav', 'rain/heavy.wav')", ", ".join(roots))
    x, y, n_windows, bad = library_rows(model, named, max_windows, progress)
    skipped += bad
    if not len(y):
        raise SoundlibError(f"none of the {len(named)} named files could be read", ", ".join(roots))
    mean, std, weight, bias = adapted_classifier(fit, x, y, len(concepts))
    model.bridge.set_sound_classifier(mean, std, weight, bias)
    training = dict(loaded.info.training)
    training.pop("same_weights_as", None)  # its weights are its own now: no earlier file's collections fit it
    training["adapted"] = {  # base: the model whose fit set it started from (an adapted model's own base)
        "base_sha256": (loaded.info.training.get("adapted") or {}).get("base_sha256", loaded.sha256),
        "library": [str(Path(r).resolve()) for r in roots], "files": found,
        "named_files": len(named) - len(bad), "windows": n_windows,
        "concepts": dict(per_concept.most_common()),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        digest = save_checkpoint(out, model, training=training)
    except (OSError, RuntimeError) as e:  # torch reports a failed open as a RuntimeError
        raise SoundlibError(f"cannot write the adapted model ({str(e).splitlines()[0][:160]})", str(out)) from None
    return AdaptReport(base=str(loaded.info.path), base_sha256=training["adapted"]["base_sha256"], out=str(out),
                       sha256=digest, library=roots, files=found, named_files=len(named) - len(bad), windows=n_windows,
                       base_rows=len(fit), concepts=dict(per_concept.most_common()), skipped=skipped,
                       seconds=time.perf_counter() - t0)
