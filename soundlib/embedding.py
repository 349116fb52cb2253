"""Embedding many sound files fast: decode in a background thread while model workers run on batches of windows.

:func:`embed_windows_batched` keeps file boundaries: it yields one result per input file, in input order, only once
all of that file's windows are embedded, so the caller can write each file to the store as a whole (and does so
while the workers compute the next batches).

Workers: with ``workers`` > 1, that many threads each run whole batches with **one** torch thread, instead of one
batch at a time on all torch threads. A batch of 1-s windows is too little work to split well: on this 2-core CPU,
two workers on one thread each took half the CPU time of one call on two threads (the threads' barrier waits spin)
and, with other jobs on the machine, ~1.5-2x less wall time (bench/ingest.py).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from encoders.config import AudioConfig
from soundlib.config import INFERENCE_BATCH
from soundlib.errors import SoundlibError
from soundlib.progress import ProgressFn
from soundlib.scan import SoundFile, file_sha256

#: Decoded files waiting for the model (bounds memory: each holds up to max_windows windows).
PREFETCH_FILES = 16
_DONE = object()


@dataclass
class DecodedFile:
    """A file cut into windows (output of the background decoder).

    Attributes:
        sound: the file.
        starts: window starts in seconds, length ``N``.
        windows: ``(N, window_samples)`` float32 mono audio at the model's sample rate.
        duration: file length in seconds.
        sample_rate: the file's own sample rate in Hz.
        sha256: hex hash of the file's bytes.
        info: what describes the file (:func:`describe`; empty when metadata is not read).
        warning: one line on what went wrong short of losing the file (an MP3's damaged frames decoded around;
            embedded tags that could not be read), else ``None``. The file is still used.
    """

    sound: SoundFile
    starts: list[float]
    windows: np.ndarray
    duration: float
    sample_rate: int
    sha256: str
    info: dict[str, Any] = field(default_factory=dict)
    warning: str | None = None


@dataclass
class EmbeddedFile:
    """A file with one embedding per window: ``vectors`` is ``(N, D)`` float32, row ``i`` for ``starts[i]``."""

    sound: SoundFile
    starts: list[float]
    vectors: np.ndarray
    duration: float
    sample_rate: int
    sha256: str
    info: dict[str, Any] = field(default_factory=dict)
    warning: str | None = None


@dataclass
class FailedFile:
    """A file that could not be decoded, with the one-line reason."""

    sound: SoundFile
    reason: str


def describe(path: str, windows: np.ndarray, cfg: AudioConfig, channels: int) -> tuple[dict[str, Any], str | None]:
    """What describes a sound file besides its sound: embedded tags (:func:`soundlib.tags.read_tags`), channel
    count, and peak / loudness of the decoded ``windows`` (:func:`soundlib.tags.loudness`; no second decode).

    Returns:
        ``(info, warning)``: ``warning`` is the one-line reason the tags could not be read (``info`` then holds
        the rest).
    """
    from soundlib.tags import loudness, read_tags_partial

    tags, warning = read_tags_partial(path)
    return {"channels": int(channels), **loudness(windows, cfg.sample_rate), **tags}, warning


def decode_file(sound: SoundFile, cfg: AudioConfig, max_windows: int | None, metadata: bool = False) -> DecodedFile:
    """Probe, hash and cut one file into windows; with ``metadata``, also :func:`describe` it.

    Raises:
        AudioError: the file cannot be used (reasons in :mod:`soundlib.audio`).
    """
    from soundlib.audio import load_windows_and_info
    from soundlib.errors import AudioError

    info, starts, windows = load_windows_and_info(sound.path, cfg, max_windows=max_windows)
    try:
        sha = file_sha256(sound.path)
    except OSError as e:
        raise AudioError(f"cannot read ({e.strerror or e})", sound.path) from None
    facts, tag_warning = describe(sound.path, windows, cfg, info.channels) if metadata else ({}, None)
    warning = "; ".join(w for w in (info.warning, tag_warning) if w) or None
    return DecodedFile(sound, list(starts), windows, float(info.duration), int(info.sample_rate), sha, facts, warning)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (``None``: leave the setting alone), then restore it.

    The setting is process-wide: it holds for every thread while the block runs.
    """
    import torch

    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def default_workers() -> int:
    """Model workers of :func:`embed_windows_batched` by default: torch's intra-op thread count (all cores unless
    the caller set fewer), so ``torch.set_num_threads(1)`` still means one core."""
    import torch

    return max(1, int(torch.get_num_threads()))


def embed_windows(model: Any, windows: np.ndarray, batch_size: int = INFERENCE_BATCH) -> np.ndarray:
    """``(N, samples)`` float32 windows at the model's rate -> ``(N, D)`` float32 embeddings, ``batch_size`` windows
    per model call (memory stays bounded for any ``N``)."""
    import torch

    outs = [model.embed_audio(torch.as_tensor(windows[lo:lo + batch_size], dtype=torch.float32))
            .detach().float().cpu().numpy() for lo in range(0, len(windows), batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0, int(model.embed_dim)), np.float32)


@dataclass
class _Pending:
    item: DecodedFile | FailedFile
    vectors: np.ndarray | None = None
    done: int = 0
    n: int = 0

    @property
    def ready(self) -> bool:
        return self.done >= self.n


def embed_windows_batched(model: Any, files: Iterable[SoundFile], batch_size: int = INFERENCE_BATCH,
                          progress: ProgressFn | None = None, max_windows: int | None = None,
                          total: int | None = None, stop: threading.Event | None = None,
                          prefetch: int = PREFETCH_FILES, metadata: bool = False, workers: int | None = None
                          ) -> Iterator[EmbeddedFile | FailedFile]:
    """Embed every window of every file, decoding in a background thread while model workers run.

    Args:
        model: an ``AVModel`` (anything with ``embed_audio(waves[B, samples]) -> [B, D]`` and ``config.audio``).
        files: the files, in the order results are wanted.
        batch_size: windows per model call (windows of several files share a batch).
        progress: called as ``progress("embed", files_done, total, windows=..., windows_per_s=...)``.
        max_windows: cap of windows per file (``None``: ``AudioConfig.max_windows``; 0: no cap).
        total: number of files, for the progress bar.
        stop: when set, no new batch is started; files whose windows are all embedded are still yielded.
        prefetch: decoded files kept ready ahead of the model.
        metadata: also read each file's tags and measure its loudness (in the decoding thread, :func:`describe`).
        workers: threads running model calls, each on one torch thread (torch's thread count is 1 while the
            generator runs); ``None``: :func:`default_workers`; 1: one call at a time on all torch threads.
            Results do not depend on it (up to the bfloat16 kernels' choice of blocking).

    Yields:
        :class:`EmbeddedFile` or :class:`FailedFile`, one per input file, in input order.
    """
    cfg: AudioConfig = model.config.audio
    stop = stop or threading.Event()
    workers = default_workers() if workers is None else max(1, int(workers))
    q: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    quit_worker = threading.Event()

    def put(item: Any) -> bool:
        while not quit_worker.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def worker() -> None:
        try:
            for sf in files:
                if quit_worker.is_set() or stop.is_set():
                    break
                try:
                    item: DecodedFile | FailedFile = decode_file(sf, cfg, max_windows, metadata)
                except SoundlibError as e:
                    item = FailedFile(sf, e.reason)
                except Exception as e:  # noqa: BLE001 - one bad file must not stop the library
                    item = FailedFile(sf, f"unexpected {type(e).__name__}: {e}")
                if not put(item):
                    return
        finally:
            put(_DONE)

    thread = threading.Thread(target=worker, name="soundlib-decode", daemon=True)
    waiting: deque[_Pending] = deque()
    todo: deque[tuple[_Pending, int]] = deque()
    in_flight: deque[tuple[Future, list[tuple[_Pending, int]]]] = deque()
    n_files = n_windows = 0
    t0 = time.perf_counter()

    def submit(pool: ThreadPoolExecutor | None, n: int) -> None:
        chunk = [todo.popleft() for _ in range(n)]
        windows = np.stack([p.item.windows[i] for p, i in chunk])  # type: ignore[union-attr]
        fut: Future = Future()
        if pool is None:
            fut.set_result(embed_windows(model, windows, n))
        else:
            fut = pool.submit(embed_windows, model, windows, n)
        in_flight.append((fut, chunk))

    def collect(block: bool) -> None:
        """Store the vectors of finished batches (in submission order); ``block``: wait for all in flight."""
        nonlocal n_windows
        while in_flight and (block or in_flight[0][0].done()):
            fut, chunk = in_flight.popleft()
            vecs = fut.result()
            for (p, i), v in zip(chunk, vecs):
                if p.vectors is None:
                    p.vectors = np.empty((p.n, vecs.shape[1]), np.float32)
                p.vectors[i] = v
                p.done += 1
            n_windows += len(chunk)

    def ready() -> Iterator[EmbeddedFile | FailedFile]:
        nonlocal n_files
        while waiting and waiting[0].ready:
            p = waiting.popleft()
            n_files += 1
            item = p.item
            if isinstance(item, FailedFile):
                yield item
            else:
                yield EmbeddedFile(item.sound, item.starts, p.vectors, item.duration, item.sample_rate, item.sha256,
                                   item.info, item.warning)
        if progress is not None:
            dt = time.perf_counter() - t0
            progress("embed", n_files, total, windows=n_windows,
                     windows_per_s=round(n_windows / dt, 1) if dt > 0 else 0.0)

    pool = ThreadPoolExecutor(workers, thread_name_prefix="soundlib-embed") if workers > 1 else None
    threads = torch_threads(1) if pool is not None else contextlib.nullcontext()
    thread.start()
    try:
        with threads:
            finished = False
            while not finished and not stop.is_set():
                try:
                    item = q.get(timeout=0.05 if in_flight else None)
                except queue.Empty:  # nothing decoded yet: hand over what the workers finished meanwhile
                    collect(block=False)
                    yield from ready()
                    continue
                if item is _DONE:
                    finished = True
                else:
                    n = 0 if isinstance(item, FailedFile) else len(item.starts)
                    p = _Pending(item, n=n)
                    waiting.append(p)
                    todo.extend((p, i) for i in range(n))
                while todo and (len(todo) >= batch_size or finished) and not stop.is_set():
                    if len(in_flight) >= workers:
                        fut = in_flight[0][0]
                        fut.exception()  # wait for the oldest batch
                    collect(block=False)
                    submit(pool, min(batch_size, len(todo)))
                collect(block=False)
                yield from ready()
            collect(block=True)  # batches in flight finish (also after stop)
            yield from ready()
    finally:
        quit_worker.set()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        thread.join(timeout=5)
