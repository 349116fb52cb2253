"""Audio front end on real files: decoding, resampling, spans, windows, errors, log-mel, band statistics."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from encoders.config import AudioConfig
from soundlib import audio
from soundlib.audio import (AudioInfo, RunningBandStats, band_stats, cut_windows, load_audio, load_windows,
                            log_mel_batch, probe_audio, stream_windows, window_starts)
from soundlib.errors import AudioError, SoundlibError
from tests.conftest import (WRITABLE_AUDIO, drop_length_tag, peak_frequency, tone, warbling_tone, write_audio,
                            write_tone)

CFG = AudioConfig()
SR = CFG.sample_rate
FORMATS = [f for f in ("wav", "flac", "ogg", "mp3") if f in WRITABLE_AUDIO]


def stepped(sample_rate: int, freqs: list[float], amplitude: float = 0.5) -> np.ndarray:
    """One second of each frequency in turn (so a span's content tells where it came from)."""
    return np.concatenate([tone(f, 1.0, sample_rate, amplitude=amplitude) for f in freqs])


# --- decoding ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ext", FORMATS)
@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("seconds", [0.3, 3.5])
def test_load_audio_formats_rates_channels(tmp_path, ext, rate, channels, seconds):
    path = write_tone(tmp_path / f"t.{ext}", freq=440.0, seconds=seconds, sample_rate=rate, channels=channels,
                      amplitude=0.6)
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - seconds * SR) <= SR // 1000, len(y)  # +-1 ms
    assert abs(peak_frequency(y, SR) - 440.0) < 3.0
    # channels are averaged: stereo tone has 0.6 and 0.3 amplitude -> mono 0.45; rms of a sine = amp / sqrt 2
    expected_amp = 0.6 if channels == 1 else 0.45
    mid = y[len(y) // 10: -len(y) // 10]
    rms = float(np.sqrt(np.mean(mid.astype(np.float64) ** 2)))
    assert rms == pytest.approx(expected_amp / np.sqrt(2), rel=0.12)


def test_probe_audio_reads_header(tmp_path):
    path = write_tone(tmp_path / "p.flac", seconds=2.5, sample_rate=22050, channels=2)
    info = probe_audio(path)
    assert isinstance(info, AudioInfo)
    assert (info.sample_rate, info.channels, info.frames) == (22050, 2, int(2.5 * 22050))
    assert info.duration == pytest.approx(2.5)
    assert (info.format, info.backend) == ("FLAC", "soundfile")


def test_probe_and_load_video_audio_track(test_video):
    info = probe_audio(test_video)
    assert info.backend == "pyav" and info.sample_rate == 48000 and info.channels == 1
    assert info.duration == pytest.approx(3.2, abs=0.03)
    y = load_audio(test_video)
    assert abs(len(y) - 3.2 * SR) <= SR // 1000
    assert abs(peak_frequency(y, SR) - 440.0) < 3.0
    assert float(np.sqrt(np.mean(y.astype(np.float64) ** 2))) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


def test_video_span_matches_full_decode(test_video):
    full = load_audio(test_video)
    span = load_audio(test_video, offset=1.5, duration=1.0)  # seek into the AAC stream
    assert len(span) == SR
    np.testing.assert_allclose(span, full[int(1.5 * SR): int(2.5 * SR)], atol=1e-4)


def test_matroska_audio_is_continuous(tmp_path):
    """Matroska stores 1 ms timestamps: frames must be laid end to end, not each rounded to its timestamp."""
    import av

    from tests.conftest import write_video
    path = write_video(tmp_path / "v.mkv", seconds=3.0, freq=700.0)
    y = load_audio(path)
    with av.open(str(path)) as c:
        plain = np.concatenate([f.to_ndarray()[0] for f in c.decode(audio=0)])
    assert len(y) == len(plain) and 0 <= len(y) - 3 * SR <= 1024  # Matroska keeps the last AAC frame's padding
    np.testing.assert_array_equal(y, plain)
    assert abs(peak_frequency(y, SR) - 700.0) < 2.0
    span = load_audio(path, offset=1.3, duration=1.0)  # a seek: placed within the 0.5 ms timestamp resolution
    assert len(span) == SR and abs(peak_frequency(span, SR) - 700.0) < 2.0
    ref = y[int(1.3 * SR) - 48: int(2.3 * SR) + 48]
    lags = [float(np.abs(span[1000:-1000] - ref[48 + lag + 1000: 48 + lag + SR - 1000]).max())
            for lag in range(-48, 49)]
    assert min(lags) < 1e-4 and abs(int(np.argmin(lags)) - 48) <= SR // 2000


@pytest.mark.parametrize("rate", [44100, 48000])
def test_span_reads_the_right_part(tmp_path, rate):
    path = write_audio(tmp_path / "steps.wav", stepped(rate, [300, 600, 900, 1200]), rate)
    full = load_audio(path)
    span = load_audio(path, offset=1.0, duration=1.0)
    assert len(span) == SR
    assert abs(peak_frequency(span, SR) - 600) < 3
    np.testing.assert_allclose(span, full[SR: 2 * SR], atol=2e-3)
    tail = load_audio(path, offset=3.5, duration=2.0)  # runs past the end: shorter
    assert abs(len(tail) - SR // 2) <= 1
    assert abs(peak_frequency(tail, SR) - 1200) < 5


def test_other_sample_rate(tmp_path):
    path = write_tone(tmp_path / "a.wav", freq=1000, seconds=1.0, sample_rate=44100)
    y = load_audio(path, sample_rate=16000)
    assert len(y) == 16000 and abs(peak_frequency(y, 16000) - 1000) < 3


# --- windows ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("duration, expected", [
    (0.3, [0.0]), (1.0, [0.0]), (1.3, [0.0]), (1.6, [0.0, 0.6]), (3.0, [0.0, 1.0, 2.0]),
    (3.4, [0.0, 1.0, 2.0]), (3.5, [0.0, 1.0, 2.0, 2.5]),
])
def test_window_starts(duration, expected):
    assert window_starts(duration) == pytest.approx(expected)


def test_window_starts_hop_and_cap():
    assert window_starts(2.0, AudioConfig(hop_seconds=0.5)) == pytest.approx([0.0, 0.5, 1.0])
    every = window_starts(100.0, max_windows=0)
    assert len(every) == 100 and every[-1] == 99.0
    capped = window_starts(100.0)  # default cap: cfg.max_windows
    assert len(capped) == CFG.max_windows
    assert capped[0] == 0.0 and capped[-1] == 99.0
    gaps = np.diff(capped)
    assert set(np.round(gaps, 6)) <= {3.0, 4.0}  # 99 s over 29 gaps, evenly
    assert window_starts(12.0, max_windows=4) == pytest.approx([0.0, 4.0, 7.0, 11.0])
    with pytest.raises(ValueError):
        window_starts(float("nan"))


def test_cut_windows_wrap_pads_short_clips():
    y = np.arange(14400, dtype=np.float32)  # 0.3 s at 48 kHz
    w = cut_windows(y, [0.0])
    assert w.shape == (1, SR) and w.dtype == np.float32
    np.testing.assert_array_equal(w[0, :14400], y)
    np.testing.assert_array_equal(w[0, 14400:28800], y)
    np.testing.assert_array_equal(w[0, 43200:], y[:4800])
    long = np.arange(int(2.5 * SR), dtype=np.float32)
    w = cut_windows(long, [0.0, 2.0])
    np.testing.assert_array_equal(w[0], long[:SR])
    np.testing.assert_array_equal(w[1, : SR // 2], long[2 * SR:])
    np.testing.assert_array_equal(w[1, SR // 2:], long[2 * SR:])  # the half-second tail, repeated
    with pytest.raises(ValueError):
        cut_windows(long, [3.0])


def test_load_windows_shapes_and_content(tmp_path):
    path = write_audio(tmp_path / "s.wav", stepped(SR, [300, 600, 900, 1200])[: int(3.5 * SR)], SR)
    starts, w = load_windows(path)
    assert starts == pytest.approx([0.0, 1.0, 2.0, 2.5])
    assert w.shape == (4, SR) and w.dtype == np.float32
    full = load_audio(path)
    for s, row in zip(starts, w):
        np.testing.assert_array_equal(row, full[int(round(s * SR)): int(round(s * SR)) + SR])
    starts, w = load_windows(path, starts=[0.5])
    assert starts == [0.5] and w.shape == (1, SR)
    np.testing.assert_array_equal(w[0], full[SR // 2: SR // 2 + SR])
    with pytest.raises(AudioError, match="past the end"):
        load_windows(path, starts=[3.6])


def test_load_windows_short_clip_is_wrap_padded(tmp_path):
    path = write_tone(tmp_path / "short.flac", seconds=0.3, sample_rate=44100)
    starts, w = load_windows(path)
    assert starts == [0.0] and w.shape == (1, SR)
    n = int(0.3 * SR)
    np.testing.assert_allclose(w[0, n: 2 * n], w[0, :n])


def test_load_windows_max_windows(tmp_path):
    path = write_tone(tmp_path / "long.flac", seconds=12.0, sample_rate=22050)
    starts, w = load_windows(path, max_windows=4)
    assert starts == pytest.approx([0.0, 4.0, 7.0, 11.0])
    assert w.shape == (4, SR)


def test_windowed_reading_matches_full_decode(tmp_path, monkeypatch, test_video):
    """Long files are read window by window (seeks); the windows must equal those cut from a full decode."""
    path = write_audio(tmp_path / "steps.ogg", stepped(44100, [300, 600, 900, 1200, 1500]), 44100)
    full_starts, full_w = load_windows(path)
    monkeypatch.setattr(audio, "FULL_READ_SECONDS", 1.0)  # force the per-window path
    seek_starts, seek_w = load_windows(path)
    assert seek_starts == full_starts
    np.testing.assert_allclose(seek_w, full_w, atol=1e-3)
    streamed = list(stream_windows(path))
    assert [s for s, _ in streamed] == full_starts
    np.testing.assert_allclose(np.stack([w for _, w in streamed]), full_w, atol=1e-3)
    # the same through FFmpeg (AAC in MP4)
    v_starts, v_seek = load_windows(test_video)
    monkeypatch.setattr(audio, "FULL_READ_SECONDS", 1000.0)
    v_starts2, v_full = load_windows(test_video)
    assert v_starts == v_starts2 == pytest.approx([0.0, 1.0, 2.0])
    np.testing.assert_allclose(v_seek, v_full, atol=1e-4)


# --- errors ----------------------------------------------------------------------------------------------------------

def _reason(path, fn=load_audio) -> str:
    with pytest.raises(AudioError) as info:
        fn(path)
    err = info.value
    assert isinstance(err, SoundlibError)
    assert str(err) == f"{path}: {err.reason}" and "\n" not in str(err)
    return err.reason


def test_error_missing_folder_empty(tmp_path):
    assert _reason(tmp_path / "nope.wav") == "file not found"
    assert _reason(tmp_path) == "is a folder"
    (tmp_path / "zero.wav").write_bytes(b"")
    assert _reason(tmp_path / "zero.wav") == "empty file (0 bytes)"
    assert _reason(tmp_path / "zero.wav", probe_audio) == "empty file (0 bytes)"


def test_error_not_audio(tmp_path):
    p = tmp_path / "text.wav"
    p.write_text("this is not a sound\n" * 20)
    assert _reason(p) == "not an audio file (format not recognised)"
    from tests.conftest import write_image
    assert _reason(write_image(tmp_path / "pic.png")) == "not an audio file (format not recognised)"


def test_error_truncated(tmp_path):
    full = write_tone(tmp_path / "full.wav", seconds=1.0)
    data = full.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    assert _reason(cut).startswith("truncated or corrupt (")
    assert _reason(cut, probe_audio).startswith("truncated or corrupt (")
    header_only = tmp_path / "header.wav"
    header_only.write_bytes(data[:30])
    assert _reason(header_only).startswith("truncated or corrupt (")
    flac = write_tone(tmp_path / "full.flac", seconds=2.0, freq=3000)
    cut_flac = tmp_path / "cut.flac"
    cut_flac.write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])
    assert _reason(cut_flac).startswith("truncated or corrupt (")


def test_error_silent(tmp_path):
    p = write_audio(tmp_path / "silence.wav", np.zeros(SR, np.float32), SR)
    assert _reason(p) == "silent (all samples zero)"
    assert _reason(p, load_windows) == "silent (all samples zero)"
    quiet = write_audio(tmp_path / "quiet.wav", np.full(SR, 1e-7, np.float32), SR, subtype="FLOAT")
    assert _reason(quiet) == "silent (all samples zero)"
    # a silent second inside a sound is fine for windows
    mixed = np.concatenate([np.zeros(SR, np.float32), tone(440, 1.0, SR)])
    p2 = write_audio(tmp_path / "mixed.wav", mixed, SR)
    starts, w = load_windows(p2)
    assert starts == [0.0, 1.0] and float(np.abs(w[0]).max()) == 0.0
    with pytest.raises(AudioError, match=r"silent \(all samples zero in 0.000-1.000 s\)"):
        load_audio(p2, duration=1.0)


def test_error_nan(tmp_path):
    y = tone(440, 1.0, SR)
    y[100] = np.nan
    p = write_audio(tmp_path / "nan.wav", y, SR, subtype="FLOAT")
    assert _reason(p) == "contains NaN or infinite samples"
    y[100] = np.inf
    p2 = write_audio(tmp_path / "inf.wav", y, 44100, subtype="FLOAT")  # through the resampler path
    assert _reason(p2) == "contains NaN or infinite samples"


def test_error_no_audio_stream(video_no_audio):
    assert _reason(video_no_audio) == "no audio stream"


def test_error_offset_past_end(tmp_path):
    p = write_tone(tmp_path / "a.wav", seconds=1.0)
    with pytest.raises(AudioError, match="past the end"):
        load_audio(p, offset=2.0)
    with pytest.raises(ValueError):
        load_audio(p, offset=-1.0)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_error_permission_denied(tmp_path):
    p = write_tone(tmp_path / "locked.wav")
    p.chmod(0)
    try:
        assert _reason(p) == "permission denied"
    finally:
        p.chmod(0o644)


# --- log-mel and statistics ------------------------------------------------------------------------------------------

def test_log_mel_matches_librosa():
    import librosa

    rng = np.random.default_rng(0)
    n = 8
    waves = np.stack([
        0.3 * tone(220.0 * (k + 1), 1.0, SR) + 0.05 * rng.standard_normal(SR).astype(np.float32) for k in range(n)
    ])
    mels = log_mel_batch(waves)
    assert tuple(mels.shape) == (n, CFG.n_mels, CFG.frames)

    def ref(y):
        m = librosa.feature.melspectrogram(
            y=y, sr=SR, n_fft=CFG.n_fft, hop_length=CFG.hop_length, win_length=CFG.win_length, n_mels=CFG.n_mels,
            fmin=CFG.fmin, fmax=CFG.fmax, center=True, pad_mode="constant", power=2.0,
        )
        return np.log(m + CFG.log_offset)[:, : CFG.frames]

    refs = np.stack([ref(w) for w in waves])
    np.testing.assert_allclose(mels.numpy(), refs, atol=1e-3)

    # speed: one batched call vs per-clip librosa (reported, not asserted)
    batch = np.tile(waves, (4, 1))  # 32 windows
    log_mel_batch(batch[:2])
    t0 = time.perf_counter()
    log_mel_batch(batch)
    t_batch = time.perf_counter() - t0
    t0 = time.perf_counter()
    for w in batch:
        ref(w)
    t_librosa = time.perf_counter() - t0
    print(f"\nlog-mel of {len(batch)} windows: batched LogMel {t_batch * 1e3:.1f} ms, "
          f"librosa per clip {t_librosa * 1e3:.1f} ms, ratio {t_librosa / t_batch:.1f}x")


def test_log_mel_of_loaded_windows(tmp_path):
    path = write_tone(tmp_path / "a.wav", freq=1000, seconds=2.0)
    _, w = load_windows(path)
    mels = log_mel_batch(w)
    assert tuple(mels.shape) == (2, CFG.n_mels, CFG.frames)
    band = int(np.argmax(mels[0].mean(dim=1).numpy()))
    import librosa
    centres = librosa.mel_frequencies(CFG.n_mels + 2, fmin=CFG.fmin, fmax=CFG.fmax or SR / 2)[1:-1]
    assert abs(centres[band] - 1000) < 150  # the loudest band is the tone's
    assert tuple(log_mel_batch(np.zeros((0, SR), np.float32)).shape) == (0, CFG.n_mels, CFG.frames)


def test_band_stats():
    import torch

    rng = np.random.default_rng(1)
    means = np.linspace(-5, 5, CFG.n_mels)
    stds = np.linspace(0.5, 2.0, CFG.n_mels)
    mels = (means[None, :, None] + stds[None, :, None] * rng.standard_normal((40, CFG.n_mels, CFG.frames)))
    mels[:, 0, :] = -13.0  # a constant band: std floored
    mean, std = band_stats(torch.from_numpy(mels.astype(np.float32)))
    assert mean.dtype == torch.float32 and tuple(mean.shape) == (CFG.n_mels,)
    np.testing.assert_allclose(mean.numpy(), mels.mean(axis=(0, 2)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(std.numpy()[1:], mels.std(axis=(0, 2))[1:], rtol=1e-4)
    assert float(std[0]) == pytest.approx(audio.STD_FLOOR)
    acc = RunningBandStats()
    acc.update(mels[:15])
    acc.update(mels[15:])
    m2, s2 = acc.result()
    np.testing.assert_allclose(m2.numpy(), mean.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s2.numpy(), std.numpy(), rtol=1e-5)


def test_downmix_is_the_channel_mean() -> None:
    rng = np.random.default_rng(3)
    for channels in (1, 2, 6):
        x = rng.standard_normal((5000, channels)).astype(np.float32)
        got = audio._downmix(x)
        assert got.dtype == np.float32 and got.shape == (5000,)
        np.testing.assert_allclose(got, x.mean(axis=1), atol=1e-6)
    x = rng.standard_normal((100, 1)).astype(np.float32)
    out = audio._downmix(x)
    out[0] = 99.0
    assert x[0, 0] != 99.0  # a copy, not a view


@pytest.mark.skipif("mp3" not in WRITABLE_AUDIO, reason="libsndfile cannot write MP3 here")
def test_an_mp3_is_decoded_once_and_reads_like_the_file(tmp_path) -> None:
    rng = np.random.default_rng(4)
    left = tone(330.0, 3.0, 44_100, 1, 0.4)
    y = np.stack([left, 0.3 * rng.standard_normal(len(left)).astype(np.float32)], axis=1)
    path = write_audio(tmp_path / "st.mp3", y, 44_100)
    with audio._open_reader(path) as r:  # an MP3's length is an estimate: counted by decoding, and kept
        assert r.exact and r.decoded is not None and len(r.decoded) == r.frames
        cached = r.read(1000, 50_000)
        r.decoded = None  # the same span decoded from the file again
        fresh = r.read(1000, 50_000)
    np.testing.assert_allclose(cached, fresh, atol=1e-6)
    assert len(cached) == 50_000 and float(np.abs(cached).max()) > 0.1
    starts, windows = load_windows(path)
    assert starts == [0.0, 1.0, 2.0] and windows.shape == (3, 48_000)
    info, starts2, windows2 = audio.load_windows_and_info(path)  # what ingest calls: one open, one decode
    assert info == probe_audio(path) and starts2 == starts and np.array_equal(windows2, windows)


@pytest.mark.skipif("mp3" not in WRITABLE_AUDIO, reason="libsndfile cannot write MP3 here")
def test_an_untagged_variable_bitrate_mp3_reads_to_its_end(tmp_path) -> None:
    """Without a Xing tag libsndfile estimates the length from the first frame's bitrate and reads no further:
    this 3.03-s file (the first frame 224 kb/s, the rest far less) would read as 0.46 s. FFmpeg reads it all."""
    import soundfile as sf

    y = warbling_tone()
    path = drop_length_tag(write_audio(tmp_path / "vbr.mp3", y, 44_100))
    with sf.SoundFile(str(path)) as f:
        assert f.frames < 44_100  # libsndfile's own estimate: under a second
    info, starts, windows = audio.load_windows_and_info(path)
    assert info.backend == "pyav" and abs(info.duration - 3.03) < 0.05, info
    assert starts == [0.0, 1.0, 2.0] and float(np.abs(windows[-1]).max()) > 0.1  # the last second is sound
    assert probe_audio(path).duration == info.duration
    tagged = write_audio(tmp_path / "tagged.mp3", y, 44_100)  # with its tag: libsndfile, as before
    assert audio.load_windows_and_info(tagged)[0].backend == "soundfile"


def test_a_capped_file_reads_only_its_windows(tmp_path, monkeypatch) -> None:
    """Windows covering under half the file are read one by one (not a full decode), with the same samples."""
    path = write_audio(tmp_path / "long.flac", stepped(22050, [200 + 50 * i for i in range(40)]), 22050)  # 40 s
    reads: list[int] = []
    real = audio._SoundfileReader.read

    def counting(self, start, n):  # the real read still runs
        reads.append(n)
        return real(self, start, n)

    monkeypatch.setattr(audio._SoundfileReader, "read", counting)
    starts, windows = load_windows(path, max_windows=8)  # 8 windows cover 8 of 40 s
    assert len(starts) == 8 and len(reads) == 8 and sum(reads) < 0.3 * 40 * 22050
    reads.clear()
    all_starts, all_windows = load_windows(path, max_windows=0)  # every window: one full decode
    assert len(reads) == 1 and len(all_starts) == 40
    rows = [all_starts.index(s) for s in starts]
    np.testing.assert_allclose(windows, all_windows[rows], atol=1e-3)
