"""Audio front end: any sound file -> mono float32 at ``AudioConfig.sample_rate``, cut into 1-second windows.

Decoding
    libsndfile (``soundfile``: wav, flac, ogg/vorbis/opus, mp3 with libsndfile >= 1.1, aiff, caf, ...) first; when
    libsndfile does not know the file, PyAV/FFmpeg (m4a, aac, wma, the audio track of a video, ...). Channels are
    averaged to mono and resampled with soxr (``"HQ"``). Only the span asked for is read: a window one hour into a
    two-hour file costs one seek, not a full decode; files longer than :data:`FULL_READ_SECONDS` are read window
    by window (:func:`stream_windows`), so memory stays bounded by the window count. libsndfile's MP3 decoder
    (mpg123) prints a line per damaged frame straight to the process's stderr; those lines are kept off it
    (:mod:`soundlib.native_stderr`) and summed up in :attr:`AudioInfo.warning` (:func:`mp3_damage`), which ingest
    reports as one ``warning`` line naming the file.

Lengths
    ``load_audio`` returns ``round(seconds * sample_rate)`` samples: the whole file, or ``duration`` seconds from
    ``offset`` (fewer when the file ends first). A span is resampled with 20 ms of neighbouring audio on each side
    so its edges match a resample of the whole file.

Errors (:class:`soundlib.errors.AudioError`, one reason each; checked in this order)
    - ``"file not found"``, ``"is a folder"``, ``"permission denied"``, ``"empty file (0 bytes)"``.
    - ``"not an audio file (format not recognised)"``: neither libsndfile nor FFmpeg recognises the content
      (a text file named ``.wav``), or FFmpeg sees only a still image.
    - ``"no audio stream"``: a container (e.g. a video) without an audio track.
    - ``"truncated or corrupt (<detail>)"``: a decoder error; a recognised file libsndfile calls malformed and
      FFmpeg cannot open either; a WAV/AIFF whose data chunk is larger than the file; or a decode that yields fewer
      samples than the header promises by more than 1 % + 50 ms. MP3 headers (without a Xing tag) and some
      FFmpeg containers only *estimate* the length: there the decoded length wins (it is counted when the
      estimate is at most :data:`FULL_READ_SECONDS`; longer files lose windows past the real end silently), so a
      cut MP3 loads as a shorter sound (with a warning when it keeps a Xing tag: :func:`mp3_damage`). libsndfile
      never reads past its estimate, so an MP3 without a tag whose decode stops exactly there (a variable bitrate
      that opens high) is read by FFmpeg when FFmpeg decodes more.
      An MP4/M4A cut before its index cannot be told from a non-audio file.
    - ``"unsupported audio codec"``: FFmpeg sees an audio stream it has no decoder for.
    - ``"no audio samples (0 frames)"``: a valid header with nothing after it.
    - ``"contains NaN or infinite samples"``: any non-finite sample in the span read (float WAVs can hold them).
    - ``"silent (all samples zero)"``: the peak of the span read (``load_audio``) or of all windows read
      (``load_windows``) is below :data:`SILENCE_PEAK` (1e-5, a third of one 16-bit step: digital silence or
      dither-level noise). :func:`stream_windows` yields silent windows without complaint (a silent second inside
      a sound is legitimate).
    - ``"offset ... is past the end ..."`` / ``"window start ... is past the end ..."`` for spans outside the file.

Windows
    :func:`window_starts` puts a window every ``hop_seconds`` while a full window fits; when the audio after the
    last full window is at least half a hop (``min(hop, window) / 2``) long, one more window *ending at the end of
    the file* is added (real audio rather than padding). A file no longer than one window gives ``[0.0]``; its
    window is wrap-padded (the clip repeated, as the paper's reference code does). More than ``max_windows``
    windows are sampled evenly, keeping the first and the last.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from encoders.config import AudioConfig
from soundlib.errors import AudioError
from soundlib.media import check_file, decoded_frames
from soundlib.native_stderr import captured

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: Peak absolute amplitude below which audio counts as silent (a third of one 16-bit LSB, ~ -100 dBFS).
SILENCE_PEAK: float = 1e-5
#: Files up to this long (seconds) are decoded once and cut; longer ones are read window by window.
FULL_READ_SECONDS: float = 120.0
#: Lower bound of the per-band standard deviation returned by :func:`band_stats` (log-mel units).
STD_FLOOR: float = 1e-2
#: soxr quality used for every resample.
RESAMPLE_QUALITY: str = "HQ"
#: Context (seconds) read on each side of a span before resampling it.
_MARGIN_SECONDS = 0.02
#: A decode may fall short of the header's length by this fraction plus _SHORT_SECONDS before it is "truncated".
_SHORT_FRACTION, _SHORT_SECONDS = 0.01, 0.05
_EPS = 1e-6
#: FFmpeg seeks land this much before a span: decoders (AAC overlap, MP3 bit reservoir) need a frame to settle.
_SEEK_PREROLL_SECONDS = 0.25
_DEFAULT = AudioConfig()


@dataclass(frozen=True)
class AudioInfo:
    """What :func:`probe_audio` learns without decoding the samples.

    Attributes:
        path: the file, as given.
        duration: length in seconds (``frames / sample_rate``).
        sample_rate: native sampling rate in Hz.
        channels: native channel count.
        frames: native samples per channel: from the header (FFmpeg: the stream's duration); where that is only an
            estimate (MP3 without a Xing tag, some containers) and under ``FULL_READ_SECONDS``, counted by decoding.
        format: libsndfile format (``"WAV"``, ``"FLAC"``, ``"MP3"``...) or FFmpeg codec name (``"aac"``...).
        backend: ``"soundfile"`` or ``"pyav"``.
        warning: one line on damage the decoder worked around while the samples were read so far (an MP3's damaged
            frames: :func:`mp3_damage`), else ``None``. The file is still usable.
    """

    path: str
    duration: float
    sample_rate: int
    channels: int
    frames: int
    format: str
    backend: str
    warning: str | None = None


# --- file checks and readers -----------------------------------------------------------------------------------

def _truncated(detail: str, path: str | Path) -> AudioError:
    return AudioError(f"truncated or corrupt ({detail.strip().rstrip('.')})", path)


def _check_complete(got: int, want: int, sample_rate: int, path: str | Path) -> None:
    """Raise "truncated" when a decode of ``want`` samples delivered clearly fewer."""
    if want - got > _SHORT_FRACTION * want + _SHORT_SECONDS * sample_rate:
        raise _truncated(
            f"header promises {want / sample_rate:.3f} s from here, the file holds {got / sample_rate:.3f} s", path
        )


_CHUNK_TOO_BIG = re.compile(r"^\s*(data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


class _SoundfileReader:
    """libsndfile reader: sample-accurate seeks; frame counts exact except MP3's (an estimate without a Xing tag)."""

    backend = "soundfile"

    def __init__(self, f: Any, path: str | Path, decoder_lines: Sequence[str] = ()) -> None:
        self.f, self.path = f, path
        self.sample_rate = int(f.samplerate)
        self.channels = int(f.channels)
        self.frames = int(f.frames)
        self.format = str(f.format)
        self.exact = self.format != "MP3"
        #: the length an MP3's Xing / Info / VBRI tag states (``None``: no such tag, so its length is an estimate)
        self.header_frames: int | None = self.frames if self.format != "MP3" or _has_length_tag(path) else None
        #: what mpg123 printed about damaged frames while this file was opened and read (kept off the terminal)
        self.decoder_lines: list[str] = list(decoder_lines)
        #: the whole file, mono, once :meth:`count_frames` has decoded it (``None``: read from the file)
        self.decoded: np.ndarray | None = None
        self.cut_at_estimate = False
        m = _CHUNK_TOO_BIG.search(f.extra_info or "")
        if m:
            declared, actual = int(m.group(2)), int(m.group(3))
            if actual < declared < 0xFFFFFFF0:  # 0xFFFFFFFF & co: streaming placeholders, not truncation
                raise _truncated(
                    f"{m.group(1)} chunk declares {declared} bytes, the file holds {actual}", path
                )

    def read(self, start: int, n: int) -> np.ndarray:
        """``n`` native samples from ``start``, mono float32 (fewer only at the end of the file)."""
        if self.decoded is not None:  # counted by decoding: serve from that decode
            return self.decoded[start:start + n].copy()
        try:
            with self._quiet():
                self.f.seek(start)
                data = self.f.read(n, dtype="float32", always_2d=True)
        except RuntimeError as e:  # soundfile.LibsndfileError
            raise _truncated(str(getattr(e, "error_string", None) or e), self.path) from None
        if self.exact:
            _check_complete(len(data), min(n, self.frames - start), self.sample_rate, self.path)
        return _downmix(data)

    def count_frames(self) -> None:
        """Replace an estimated frame count by the decoded one; the decoded audio is kept for :meth:`read`
        while it is at most :data:`FULL_READ_SECONDS` x 2 long (so an MP3 is decoded once, not twice)."""
        total, estimate = 0, self.frames
        keep: list[np.ndarray] | None = []
        limit = int(2 * FULL_READ_SECONDS * self.sample_rate)
        try:
            with self._quiet():
                self.f.seek(0)
                while True:
                    block = self.f.read(1 << 16, dtype="float32", always_2d=True)
                    total += len(block)
                    if keep is not None and total <= limit:
                        keep.append(_downmix(block))
                    else:
                        keep = None
                    if len(block) < 1 << 16:
                        break
        except RuntimeError as e:
            raise _truncated(str(getattr(e, "error_string", None) or e), self.path) from None
        self.frames, self.exact = total, True
        #: libsndfile never reads past its estimate: an untagged MP3 whose decode ends exactly there may go on
        self.cut_at_estimate = self.header_frames is None and 0 < total == estimate
        if keep is not None:
            self.decoded = np.concatenate(keep) if keep else np.zeros(0, np.float32)

    @contextlib.contextmanager
    def _quiet(self) -> Iterator[None]:
        """Decode with mpg123's lines kept off the terminal and on :attr:`decoder_lines` (MP3 only)."""
        if self.format != "MP3":
            yield
            return
        with captured(_MPG123_LINE) as lines:
            yield
        self.decoder_lines += lines

    def warning(self) -> str | None:
        """:func:`mp3_damage` of what was decoded so far."""
        return mp3_damage(self.decoder_lines, self.frames, self.header_frames, self.sample_rate)

    def close(self) -> None:
        self.f.close()


#: A line mpg123 (libsndfile's MP3 decoder) prints about damaged input: ``[src/libmpg123/...] error: ...`` for a
#: frame it cannot decode, ``Note: ...`` when it loses the frame sync and searches for the next header,
#: ``Warning: ...`` when the file is shorter than its Xing tag says (a cut file).
_MPG123_LINE = re.compile(r"^(?:\[src/libmpg123/|Note: |Warning: )[^\n]*\n?", re.MULTILINE)
_MPG123_PREFIX = re.compile(r"^\[src/libmpg123/[^\]]*\]\s*(?:error:\s*|warning:\s*)?|^(?:Note|Warning):\s*")


def mp3_damage(lines: Sequence[str], frames: int, header_frames: int | None, sample_rate: int) -> str | None:
    """One line on an MP3 that decoded with damage, from what its decoder printed; ``None`` if it printed nothing.

    Args:
        lines: mpg123's lines, in order (``"[src/libmpg123/layer3.c:...] error: dequantization failed!"``).
        frames: samples per channel decoded (or the header's estimate when the file was not counted).
        header_frames: samples per channel the file's Xing / Info / VBRI tag states (``None`` without one: an MP3's
            length is then only estimated from its bitrate, and a shortfall says nothing).
        sample_rate: Hz, to say how much of the stated length decoded when decoding stopped short of it.

    Returns:
        e.g. ``damaged MP3 (decoder: "dequantization failed!" and 2 more messages); decoded 1.65 s of the 3.00 s
        its header gives``.
    """
    if not lines:
        return None
    first = _MPG123_PREFIX.sub("", lines[0]).strip() or lines[0]
    more = len(lines) - 1
    text = f'damaged MP3 (decoder: "{first[:120]}"'
    text += f" and {more} more message{'s' if more > 1 else ''})" if more else ")"
    if header_frames and frames < header_frames - (0.01 * header_frames + 0.05 * sample_rate):
        text += f"; decoded {frames / sample_rate:.2f} s of the {header_frames / sample_rate:.2f} s its header gives"
    return text


def _has_length_tag(path: str | Path) -> bool:
    """True if an MP3's first frame is a Xing / Info / VBRI tag (which states the length; without one, libsndfile
    estimates it from the bitrate). The ID3v2 tag in front, if any, is skipped by its stated size."""
    try:
        with open(path, "rb") as f:
            head = f.read(10)
            start = 0
            if head[:3] == b"ID3" and len(head) == 10:
                size = (head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | (head[9] & 0x7F)
                start = 10 + size + (10 if head[5] & 0x10 else 0)  # a footer follows when flagged
            f.seek(start)
            frame = f.read(256)
    except OSError:
        return False
    return any(tag in frame for tag in (b"Xing", b"Info", b"VBRI"))


def _downmix(data: np.ndarray) -> np.ndarray:
    """``(n, channels)`` float32 -> ``(n,)`` mono mean, by column adds (``mean(axis=1)`` over the short, strided
    channel axis is much slower: ``bench/README.md``)."""
    channels = data.shape[1]
    out = data[:, 0].copy()
    for c in range(1, channels):
        out += data[:, c]
    if channels > 1:
        out *= np.float32(1.0 / channels)
    return out


_SAMPLE_SCALE = {"s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}


def _frame_to_mono(frame: Any) -> np.ndarray:
    """An ``av.AudioFrame`` of any sample format -> mono float32 in [-1, 1]."""
    arr = frame.to_ndarray()
    fmt = frame.format.name.rstrip("p")
    channels = len(frame.layout.channels) or 1
    if not frame.format.is_planar:
        arr = arr.reshape(-1, channels).T
    if fmt == "u8":
        x = (arr.astype(np.float32) - 128.0) / 128.0
    else:
        x = arr.astype(np.float32)
        if fmt in _SAMPLE_SCALE:
            x /= _SAMPLE_SCALE[fmt]
    return x.mean(axis=0, dtype=np.float32) if x.shape[0] > 1 else x[0]


class _NoDecoder(Exception):
    """FFmpeg found an audio stream but has no decoder for it."""


class _PyAVReader:
    """FFmpeg reader for what libsndfile does not know.

    Decoded frames are laid end to end (timestamps only anchor the first frame and real discontinuities). Seeks
    land on a packet a little before the target, so a span starts within the container's timestamp resolution of
    where it should (0.5 ms in Matroska/WebM, exact in MP4). Packets that fail to decode
    (e.g. the first one after a seek in an MPEG program stream) are skipped; more than a tenth failing is an error.
    """

    backend = "pyav"

    def __init__(self, container: Any, path: str | Path) -> None:
        self.c, self.path = container, path
        streams = container.streams.audio
        if not streams:
            name = container.format.name
            if name.endswith("_pipe") or name.startswith("image2"):
                raise AudioError("not an audio file (format not recognised)", path)
            raise AudioError("no audio stream", path)
        self.s = s = streams[0]
        cc = s.codec_context
        if cc is None:
            raise _NoDecoder()
        self.sample_rate = int(cc.sample_rate or 0)
        if self.sample_rate <= 0:
            raise _truncated("audio stream without a sample rate", path)
        self.channels = int(cc.channels or 1)
        self.format = str(cc.name)
        tb = s.time_base
        self.t0 = float(s.start_time * tb) if (s.start_time is not None and tb) else 0.0
        self.used = False
        if s.duration and tb:
            self.frames, self.exact = int(round(float(s.duration * tb) * self.sample_rate)), True
        elif container.duration:
            self.frames, self.exact = int(round(container.duration / 1_000_000 * self.sample_rate)), False
        else:  # no duration anywhere (raw streams): count by decoding once
            self.frames, self.exact = 0, False
            self.count_frames()

    def _frames(self, seek_to: float | None) -> Iterator[tuple[int | None, np.ndarray]]:
        """Decoded ``(first sample index or None, mono samples)`` from ``seek_to`` seconds (``None``: the start)."""
        import av

        if seek_to is not None:
            s = self.s
            target = seek_to + self.t0
            self.c.seek(int(math.floor(target / s.time_base)) if s.time_base else 0, stream=s, backward=True)
        elif self.used:  # from the start again: reopen, since a seek to 0 skips the container's priming trim
            index = self.s.index
            self.c.close()
            self.c = av.open(str(self.path), "r")
            self.s = self.c.streams[index]
        s = self.s
        self.used = True
        sr = self.sample_rate
        # Frames are laid end to end; a timestamp only re-anchors the next frame when it disagrees by more than
        # its own resolution (Matroska's 1 ms would otherwise misplace every AAC/Vorbis frame by up to 24 samples).
        tol = max(2, math.ceil(2 * float(s.time_base) * sr)) if s.time_base else 2
        expected: int | None = None
        for frame in decoded_frames(self.c, s, lambda detail: _truncated(detail, self.path)):
            ts = None
            if frame.pts is not None and frame.time_base:
                ts = int(round((float(frame.pts * frame.time_base) - self.t0) * sr))
            if expected is None:
                idx = ts if (ts is not None or seek_to is not None) else 0
            elif ts is None or abs(ts - expected) <= tol:
                idx = expected
            else:  # a real gap or overlap (e.g. a packet lost to damage)
                idx = ts
            mono = _frame_to_mono(frame)
            if idx is not None:
                expected = idx + len(mono)
            yield idx, mono

    def _decode(self, start: int, n: int, seek: bool) -> tuple[np.ndarray, bool]:
        """Native samples [start, start + n) -> (buffer, seek_failed); the buffer is short only at the end."""
        end = start + n
        chunks: list[tuple[int, np.ndarray]] = []
        reached, first = start, True
        for idx, mono in self._frames(max(0.0, start / self.sample_rate - _SEEK_PREROLL_SECONDS) if seek else None):
            if idx is None:
                return np.zeros(0, np.float32), True  # no timestamps after a seek: it cannot be placed
            if first:
                first = False
                if seek and idx > start + 1:  # landed after the target
                    return np.zeros(0, np.float32), True
            if idx >= end:
                break
            if idx + len(mono) > start:
                chunks.append((idx, mono))
                reached = max(reached, min(end, idx + len(mono)))
            if reached >= end:
                break
        out = np.zeros(reached - start, np.float32)
        for idx, mono in chunks:
            lo, hi = max(idx, start), min(idx + len(mono), reached)
            if hi > lo:
                out[lo - start:hi - start] = mono[lo - idx:hi - idx]
        return out, False

    def read(self, start: int, n: int) -> np.ndarray:
        """``n`` native samples from ``start``, mono float32 (fewer only at the end of the stream)."""
        out, failed = self._decode(start, n, seek=start > 0)
        if failed:  # decode from the beginning instead
            out, _ = self._decode(start, n, seek=False)
        if self.exact:
            _check_complete(len(out), min(n, self.frames - start), self.sample_rate, self.path)
        return out

    def count_frames(self) -> None:
        """Replace an estimated frame count by the decoded one."""
        end = 0
        for idx, mono in self._frames(None):
            end = max(end, (idx or 0) + len(mono))
        self.frames, self.exact = end, True

    def close(self) -> None:
        self.c.close()


#: Suffixes libsndfile decodes as MPEG audio by the name alone (MPEG has no magic number).
_MPEG_SUFFIXES = frozenset({".mp1", ".mp2", ".mp3", ".mpga"})


class _NotForLibsndfile(Exception):
    """Leave this file to FFmpeg."""


def _starts_like_mpeg(path: Path) -> bool:
    """True if the file opens with an ID3v2 tag or a valid MPEG audio frame header (as MP3 encoders write).

    Anything else named ``.mp3`` goes to FFmpeg: given to libsndfile, its mpg123 decoder prints "Note: Illegal
    Audio-MPEG-Header ..." lines straight to the process's stderr, around our one-line error.
    """
    try:
        with open(path, "rb") as f:
            h = f.read(4)
    except OSError:
        return True  # let the normal path report it
    if h[:3] == b"ID3":
        return True
    return (len(h) == 4 and h[0] == 0xFF and h[1] & 0xE0 == 0xE0 and (h[1] >> 3) & 3 != 1  # sync, version
            and (h[1] >> 1) & 3 != 0 and h[2] >> 4 != 15 and (h[2] >> 2) & 3 != 3)  # layer, bitrate, rate


def _open_pyav(p: Path, path: str | Path, sf_error: RuntimeError | None) -> _PyAVReader:
    """FFmpeg's reader of a file libsndfile did not open (``sf_error``: why, or ``None`` when it was not asked)."""
    import av

    sf_code = getattr(sf_error, "code", 1)
    sf_detail = str(getattr(sf_error, "error_string", None) or sf_error)
    try:
        container = av.open(str(p), "r")
    except PermissionError:
        raise AudioError("permission denied", path) from None
    except (av.error.FFmpegError, OSError, ValueError):
        if sf_code == 1:
            raise AudioError("not an audio file (format not recognised)", path) from None
        raise _truncated(sf_detail, path) from None
    try:
        return _PyAVReader(container, path)
    except _NoDecoder:  # FFmpeg sees an audio stream it cannot decode: a codec question, whatever libsndfile said
        container.close()
        raise AudioError("unsupported audio codec", path) from None
    except BaseException:
        container.close()
        raise


def _longer_with_ffmpeg(reader: _SoundfileReader, p: Path, path: str | Path) -> _SoundfileReader | _PyAVReader:
    """FFmpeg's reader instead of libsndfile's when FFmpeg decodes more of the file.

    Without a Xing / Info / VBRI tag libsndfile estimates an MP3's length from its first frame's bitrate and never
    reads past the estimate: a variable-bitrate file whose first frame has a high bitrate reads as a fraction of
    itself (a 3.03-s sound as 0.46 s). FFmpeg decodes to the end. Any FFmpeg failure keeps libsndfile's reading."""
    try:
        other = _open_pyav(p, path, None)
    except Exception:  # noqa: BLE001 - a second opinion only: libsndfile's reading stands
        return reader
    try:
        other.count_frames()
    except Exception:  # noqa: BLE001 - as above
        other.close()
        return reader
    if other.frames <= reader.frames:
        other.close()
        return reader
    reader.close()
    return other


@contextlib.contextmanager
def _open_reader(path: str | Path) -> Iterator[_SoundfileReader | _PyAVReader]:
    """Open ``path`` with libsndfile, else FFmpeg; map every failure to one :class:`AudioError`.

    An estimated length (MP3 without a Xing tag, some FFmpeg containers) is replaced by a decoded count when the
    estimate is at most :data:`FULL_READ_SECONDS` (milliseconds for such files); an MP3 libsndfile cut at its own
    estimate goes to FFmpeg (:func:`_longer_with_ffmpeg`).
    """
    p = check_file(path, AudioError)
    import soundfile as sf

    reader: _SoundfileReader | _PyAVReader | None = None
    sf_error: RuntimeError | None = None
    opened: list[str] = []
    try:
        if p.suffix.lower() in _MPEG_SUFFIXES:
            if not _starts_like_mpeg(p):
                raise _NotForLibsndfile()  # libsndfile would try MPEG by the name, and mpg123 prints to stderr
            with captured(_MPG123_LINE) as opened:  # opening reads the first frames
                f = sf.SoundFile(str(p))
        else:
            f = sf.SoundFile(str(p))
    except _NotForLibsndfile:
        pass  # FFmpeg decides (it decodes an MP3 with junk in front too, quietly)
    except RuntimeError as e:  # LibsndfileError: code 1 = format not recognised
        sf_error = e
    except PermissionError:
        raise AudioError("permission denied", path) from None
    else:
        try:
            reader = _SoundfileReader(f, path, opened)
        except BaseException:
            f.close()
            raise
    if reader is None:
        reader = _open_pyav(p, path, sf_error)
    try:
        if not reader.exact and reader.frames <= FULL_READ_SECONDS * reader.sample_rate:
            reader.count_frames()
            if isinstance(reader, _SoundfileReader) and reader.cut_at_estimate:
                reader = _longer_with_ffmpeg(reader, p, path)
        if reader.frames <= 0:
            raise AudioError("no audio samples (0 frames)", path)
        yield reader
    finally:
        reader.close()


def _read_span(reader: _SoundfileReader | _PyAVReader, offset: float, duration: float | None, sample_rate: int,
               path: str | Path) -> np.ndarray:
    """Seconds ``[offset, offset + duration)`` (``None``: to the end) as mono float32 at ``sample_rate``."""
    import soxr

    nsr, total = reader.sample_rate, reader.frames
    a = int(round(offset * nsr))
    if a >= total:
        raise AudioError(f"offset {offset:.3f} s is past the end ({total / nsr:.3f} s)", path)
    if duration is None:
        b = total
        out_len = int(round(total * sample_rate / nsr))
    else:
        want = int(round(duration * nsr))
        b = min(total, a + want)
        out_len = int(round(duration * sample_rate)) if b == a + want else int(round((b - a) * sample_rate / nsr))
    if nsr == sample_rate:
        y = reader.read(a, b - a)
    else:
        margin = int(math.ceil(_MARGIN_SECONDS * nsr))
        a0, b0 = max(0, a - margin), min(total, b + margin)
        x = reader.read(a0, b0 - a0)
        if not np.isfinite(x).all():
            raise AudioError("contains NaN or infinite samples", path)
        z = soxr.resample(np.ascontiguousarray(x), nsr, sample_rate, quality=RESAMPLE_QUALITY)
        lead = int(round((a - a0) * sample_rate / nsr))
        y = z[lead:lead + out_len]
    if not np.isfinite(y).all():
        raise AudioError("contains NaN or infinite samples", path)
    if 0 < out_len - len(y) <= 2:  # resampler rounding at the very end
        y = np.concatenate([y, np.zeros(out_len - len(y), np.float32)])
    return np.ascontiguousarray(y, dtype=np.float32)


def _info(path: str | Path, r: _SoundfileReader | _PyAVReader) -> AudioInfo:
    warning = r.warning() if isinstance(r, _SoundfileReader) else None
    return AudioInfo(path=str(path), duration=r.frames / r.sample_rate, sample_rate=r.sample_rate,
                     channels=r.channels, frames=r.frames, format=r.format, backend=r.backend, warning=warning)


def _check_not_silent(y: np.ndarray, path: str | Path, where: str = "") -> None:
    if y.size == 0 or float(np.max(np.abs(y))) < SILENCE_PEAK:
        raise AudioError(f"silent (all samples zero{where})", path)


# --- public API --------------------------------------------------------------------------------------------------

def probe_audio(path: str | Path) -> AudioInfo:
    """Read a sound file's header: duration, rate, channels, frames (no full decode).

    Args:
        path: any file libsndfile or FFmpeg decodes (a video's audio track too).

    Returns:
        info (AudioInfo)

    Raises:
        AudioError: missing, folder, empty, not audio, no audio stream, truncated (WAV/AIFF data chunk), 0 frames.
    """
    with _open_reader(path) as r:
        return _info(path, r)


def load_audio(path: str | Path, sample_rate: int | None = None, offset: float = 0.0,
               duration: float | None = None) -> np.ndarray:
    """Decode a sound file (or a span of it) to mono float32 at ``sample_rate``.

    Args:
        path: sound file or video with an audio track.
        sample_rate: (int > 0) output rate in Hz; default ``AudioConfig().sample_rate``.
        offset: (float >= 0) start of the span in seconds. Past the end of the file -> :class:`AudioError`.
        duration: (float > 0) length of the span in seconds; ``None`` reads to the end. Only this span is decoded
            (seek).

    Returns:
        y (np.ndarray, float32, shape (samples,)): ``round(duration * sample_rate)`` samples (the whole file:
            ``round(frames * sample_rate / native_rate)``); fewer when the file ends before ``offset + duration``.
            Channels are averaged.

    Raises:
        AudioError: see the module docstring (silence is judged on the span read).
    """
    sr = int(sample_rate or _DEFAULT.sample_rate)
    if offset < 0 or not math.isfinite(offset):
        raise ValueError(f"offset must be a finite number >= 0, got {offset}")
    if duration is not None and not (duration > 0 and math.isfinite(duration)):
        raise ValueError(f"duration must be a finite number > 0, got {duration}")
    with _open_reader(path) as r:
        y = _read_span(r, offset, duration, sr, path)
        if y.size == 0:  # only with an estimated length (long MP3s): the real end came first
            raise AudioError(f"offset {offset:.3f} s is past the end", path)
    where = f" in {offset:.3f}-{offset + duration:.3f} s" if duration is not None else ""
    _check_not_silent(y, path, where)
    return y


def window_starts(duration: float, cfg: AudioConfig | None = None, max_windows: int | None = None) -> list[float]:
    """Start times (seconds) of the analysis windows covering ``duration`` seconds of audio.

    Args:
        duration: (float >= 0) length of the audio in seconds.
        cfg: ``window_seconds`` and ``hop_seconds``; default ``AudioConfig()``.
        max_windows: cap on the count; ``None`` means ``cfg.max_windows``, ``0`` means no cap. Over the cap, windows
            are sampled evenly (indices ``round(linspace(0, n - 1, max_windows))``), keeping the first and
            the last.

    Returns:
        starts (list of float): ``[0, hop, 2 hop, ...]`` while a full window fits, plus one window ending at
            ``duration`` when the rest is at least ``min(hop, window) / 2`` long; ``[0.0]`` for audio no longer than
            one window.
    """
    cfg = cfg or _DEFAULT
    if not (duration >= 0 and math.isfinite(duration)):
        raise ValueError(f"duration must be a finite number >= 0, got {duration}")
    win, hop = cfg.window_seconds, cfg.hop_seconds
    if duration <= win + _EPS:
        starts = [0.0]
    else:
        n_full = int(math.floor((duration - win) / hop + _EPS)) + 1
        starts = [round(k * hop, 6) for k in range(n_full)]
        tail = duration - (starts[-1] + win)
        if tail >= min(hop, win) / 2 - _EPS:
            starts.append(round(duration - win, 6))
    cap = cfg.max_windows if max_windows is None else int(max_windows)
    if cap > 0 and len(starts) > cap:
        idx = np.round(np.linspace(0, len(starts) - 1, cap)).astype(int)
        starts = [starts[i] for i in idx]
    return starts


def cut_windows(y: np.ndarray, starts: Sequence[float], cfg: AudioConfig | None = None) -> np.ndarray:
    """Cut windows of ``cfg.window_samples`` from a clip; windows that run past the end are wrap-padded.

    Args:
        y: (np.ndarray, shape (samples,)) mono audio at ``cfg.sample_rate``.
        starts: (sequence of float) window starts in seconds; each must fall inside the clip (``ValueError``
            otherwise).
        cfg: the audio front end (window, hop, sample rate).

    Returns:
        windows (np.ndarray, float32, shape (len(starts), cfg.window_samples)): a window with fewer than
            ``window_samples`` samples left repeats them (``np.resize``), so a 0.3 s clip becomes 0.3 s + 0.3 s + 0.3
            s + 0.1 s.
    """
    cfg = cfg or _DEFAULT
    n = cfg.window_samples
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    out = np.empty((len(starts), n), np.float32)
    for k, s in enumerate(starts):
        i = int(round(float(s) * cfg.sample_rate))
        seg = y[i:i + n] if i >= 0 else y[:0]
        if seg.size == 0:
            raise ValueError(f"window start {s} s is outside a clip of {len(y) / cfg.sample_rate:.3f} s")
        out[k] = seg if seg.size == n else np.resize(seg, n)
    return out


def _validate_starts(starts: Sequence[float], duration: float, path: str | Path) -> list[float]:
    out = []
    for s in starts:
        s = float(s)
        if not (s >= 0 and math.isfinite(s)) or s >= duration - _EPS:
            raise AudioError(f"window start {s:.3f} s is past the end ({duration:.3f} s)", path)
        out.append(s)
    return out


def _iter_windows(r: _SoundfileReader | _PyAVReader, starts: list[float], cfg: AudioConfig,
                  path: str | Path) -> Iterator[tuple[float, np.ndarray]]:
    """Read each window; with an estimated length (long MP3s), windows past the real end are dropped."""
    n = cfg.window_samples
    for s in starts:
        y = _read_span(r, s, cfg.window_seconds, cfg.sample_rate, path)
        if y.size == 0:
            if not r.exact:
                return
            raise AudioError(f"window start {s:.3f} s is past the end", path)
        yield s, (y if y.size == n else np.resize(y, n).astype(np.float32))


def stream_windows(path: str | Path, starts: Sequence[float] | None = None, cfg: AudioConfig | None = None,
                   max_windows: int | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(start, window)`` one window at a time, seeking to each (memory: one window).

    Args:
        path: the file.
        starts: (sequence of float) window starts in seconds; default :func:`window_starts` of the file's duration.
        cfg: the audio front end (window, hop, sample rate).
        max_windows: as in :func:`window_starts` (used only when ``starts`` is None).

    Yields:
        start: seconds.
        window (np.ndarray, float32, shape (cfg.window_samples,)): wrap-padded when the file ends inside the
            window. Silent windows are yielded as they are.
    """
    cfg = cfg or _DEFAULT
    with _open_reader(path) as r:
        duration = r.frames / r.sample_rate
        todo = window_starts(duration, cfg, max_windows) if starts is None else _validate_starts(starts, duration, path)
        yield from _iter_windows(r, todo, cfg, path)


def load_windows(path: str | Path, cfg: AudioConfig | None = None, max_windows: int | None = None,
                 starts: Sequence[float] | None = None) -> tuple[list[float], np.ndarray]:
    """Decode a file into its analysis windows.

    Files up to :data:`FULL_READ_SECONDS` are decoded once and cut (:func:`cut_windows`); longer ones, and files
    whose windows cover less than half of them (a 60-s file capped at 30 windows), are read window by window
    (:func:`stream_windows`), so a two-hour file costs ``max_windows`` seeks, not a full decode.

    Args:
        path: the file.
        cfg: the audio front end (window, hop, sample rate).
        max_windows: as in :func:`window_starts` (used only when ``starts`` is None).
        starts: (sequence of float) explicit window starts in seconds (e.g. a pair list's ``start``); each must lie
            inside the file.

    Returns:
        starts (list of float): seconds, one per row of ``windows``.
        windows (np.ndarray, float32, shape (len(starts), cfg.window_samples))

    Raises:
        AudioError: any reason in the module docstring; "silent" when every window read is silent.
    """
    _, todo, windows = load_windows_and_info(path, cfg, max_windows, starts)
    return todo, windows


def load_windows_and_info(path: str | Path, cfg: AudioConfig | None = None, max_windows: int | None = None,
                          starts: Sequence[float] | None = None) -> tuple[AudioInfo, list[float], np.ndarray]:
    """:func:`load_windows` plus the file's :class:`AudioInfo` (as :func:`probe_audio` gives it), from one open
    of the file: an MP3's length is counted by decoding it, so probing separately would decode it again."""
    cfg = cfg or _DEFAULT
    with _open_reader(path) as r:
        duration = r.frames / r.sample_rate
        todo = window_starts(duration, cfg, max_windows) if starts is None else _validate_starts(starts, duration, path)
        if duration <= FULL_READ_SECONDS and len(todo) * cfg.window_seconds >= duration / 2:
            y = _read_span(r, 0.0, None, cfg.sample_rate, path)
            try:
                windows = cut_windows(y, todo, cfg)
            except ValueError as e:
                raise AudioError(str(e), path) from None
        else:
            pairs = list(_iter_windows(r, todo, cfg, path))
            todo = [s for s, _ in pairs]
            windows = np.stack([w for _, w in pairs]) if pairs else np.zeros((0, cfg.window_samples), np.float32)
        info = _info(path, r)  # after the reads: the damage they met is in its warning
    _check_not_silent(windows, path)
    return info, todo, windows


@functools.lru_cache(maxsize=4)
def _logmel_module(cfg: AudioConfig) -> "torch.nn.Module":
    from encoders.frontend import LogMel

    return LogMel(cfg).eval()


def log_mel_batch(windows: "np.ndarray | torch.Tensor", cfg: AudioConfig | None = None,
                  batch_size: int = 256) -> "torch.Tensor":
    """Log-mel spectrograms of many windows with :class:`encoders.frontend.LogMel` (module cached per config).

    Args:
        windows: (np.ndarray or torch.Tensor, shape (N, cfg.window_samples) or (samples,)) mono audio at
            ``cfg.sample_rate``.
        cfg: the audio front end (window, hop, sample rate).
        batch_size: windows per STFT call (bounds memory: about 1 MB per window in flight).

    Returns:
        mels (torch.Tensor, float32, shape (N, cfg.n_mels, cfg.frames)): natural-log mel power (``log(mel +
            cfg.log_offset)``), not normalised.
    """
    import torch

    cfg = cfg or _DEFAULT
    x = torch.as_tensor(np.asarray(windows) if not isinstance(windows, torch.Tensor) else windows,
                        dtype=torch.float32)
    if x.dim() == 1:
        x = x.unsqueeze(0)
    module = _logmel_module(cfg)
    if x.shape[0] == 0:
        return torch.zeros((0, cfg.n_mels, cfg.frames), dtype=torch.float32)
    with torch.no_grad():
        return torch.cat([module(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])


class RunningBandStats:
    """Per-band mean and standard deviation of log-mel spectrograms, accumulated batch by batch (float64).

    ``update(mels)`` with ``(N, n_mels, frames)`` (or ``(n_mels, frames)``); ``result()`` -> ``(mean, std)``,
    each a float32 ``torch.Tensor`` of shape ``(n_mels,)``, std (population, ddof 0) floored at ``floor``.
    """

    def __init__(self, floor: float = STD_FLOOR) -> None:
        self.floor = floor
        self.count = 0
        self._sum: np.ndarray | None = None
        self._sumsq: np.ndarray | None = None
        self._shift: np.ndarray | None = None

    def update(self, mels: "np.ndarray | torch.Tensor") -> None:
        m = mels.detach().cpu().numpy() if hasattr(mels, "detach") else np.asarray(mels)
        m = m.astype(np.float64, copy=False)
        if m.ndim == 2:
            m = m[None]
        if m.ndim != 3:
            raise ValueError(f"expected (N, n_mels, frames), got shape {m.shape}")
        if m.shape[0] == 0:
            return
        per_band = m.transpose(1, 0, 2).reshape(m.shape[1], -1)  # (n_mels, N * frames)
        if self._shift is None:  # shifting by the first batch's mean keeps the sums well conditioned
            self._shift = per_band.mean(axis=1)
            self._sum = np.zeros(m.shape[1])
            self._sumsq = np.zeros(m.shape[1])
        elif per_band.shape[0] != self._shift.shape[0]:
            raise ValueError(f"band count changed from {self._shift.shape[0]} to {per_band.shape[0]}")
        d = per_band - self._shift[:, None]
        self._sum += d.sum(axis=1)
        self._sumsq += np.square(d).sum(axis=1)
        self.count += per_band.shape[1]

    def result(self) -> tuple["torch.Tensor", "torch.Tensor"]:
        import torch

        if self.count == 0 or self._shift is None:
            raise ValueError("no spectrograms were added")
        mean_d = self._sum / self.count
        var = np.maximum(self._sumsq / self.count - mean_d**2, 0.0)
        std = np.maximum(np.sqrt(var), self.floor)
        return (torch.from_numpy((self._shift + mean_d).astype(np.float32)),
                torch.from_numpy(std.astype(np.float32)))


def band_stats(mels: "np.ndarray | torch.Tensor", floor: float = STD_FLOOR) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Per-band mean and standard deviation over windows and frames (the model's audio normalisation).

    Args:
        mels: (np.ndarray or torch.Tensor, shape (N, n_mels, frames)) log-mel spectrograms (e.g. from
            :func:`log_mel_batch`).
        floor: lower bound of the std, so a constant band (silence) does not divide by zero.

    Returns:
        mean, std (torch.Tensor, float32, shape (n_mels,))
    """
    acc = RunningBandStats(floor)
    acc.update(mels)
    return acc.result()
