"""The paper's reference-code layout, read by hand-made miniatures: lists, frame choice, audio lookup, vid2aud
pairs and the mean/variance file (real JPEG, WAV, FLAC and MP4 files written here; ids as in the real lists)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from soundlib.errors import ListError, SoundlibError
from soundlib.evaluation.correlation import vid2aud_pairs
from soundlib.lists import read_list
from soundlib.norm_stats import check_accepts_norm_stats, read_norm_stats, write_norm_stats
from soundlib.reference_lists import (ReferenceRoots, read_vid2aud, split_clip_id, vid2aud, write_reference_list)
from tests.conftest import tone, write_audio, write_image, write_video

SR = 48_000


@pytest.mark.parametrize("clip_id, video, second", [
    ("-0jeONf82dE_21", "-0jeONf82dE", 21),     # the example
    ("---g-f_I2yQ_1", "---g-f_I2yQ", 1),       # leading dashes, an underscore inside the video id
    ("-Q_UXiwWR_c_30", "-Q_UXiwWR_c", 30),     # two underscores inside: the LAST one separates the second
    ("0Br877mW7_c_10", "0Br877mW7_c", 10),
])
def test_split_clip_id_on_real_ids(clip_id: str, video: str, second: int) -> None:
    assert split_clip_id(clip_id) == (video, second)


@pytest.mark.parametrize("bad", ["abc", "abc_", "_12", "abc_1.5", "abc_x", "abc_-3", "abc_ 3"])
def test_split_clip_id_refuses(bad: str) -> None:
    with pytest.raises(ValueError, match="expected <video id>_<second>"):
        split_clip_id(bad)


def _frames(root: Path, clip_id: str, n: int) -> None:
    (root / "frames_1fps" / clip_id).mkdir(parents=True)
    for i in range(1, n + 1):
        write_image(root / "frames_1fps" / clip_id / f"image_{i:03d}.jpg", (24, 16), color=(10 * i, 50, 90))


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """A miniature: lists/ next to frames_1fps/ and audio/ (wav, flac, an mp4, a stray .npy)."""
    _frames(tmp_path, "-0jeONf82dE_21", 10)     # image_005 exists
    _frames(tmp_path, "---g-f_I2yQ_1", 3)       # only image_001..003: falls back to image_001
    _frames(tmp_path, "-Q_UXiwWR_c_30", 6)
    _frames(tmp_path, "twice_5", 6)
    _frames(tmp_path, "noaudio_7", 6)
    _frames(tmp_path, "vid-only_2", 6)
    audio = tmp_path / "audio"
    audio.mkdir()
    write_audio(audio / "-0jeONf82dE_21.wav", tone(300, 6.0, SR), SR)
    write_audio(audio / "---g-f_I2yQ_1.flac", tone(500, 3.0, SR), SR)
    write_audio(audio / "-Q_UXiwWR_c_30.wav", tone(700, 6.0, SR), SR)
    write_audio(audio / "twice_5.wav", tone(900, 6.0, SR), SR)
    write_audio(audio / "twice_5.flac", tone(900, 6.0, SR), SR)
    write_audio(audio / "-Q_UXiwWR_c_30_feat.wav", tone(100, 1.0, SR), SR)  # another id, not a match
    np.save(audio / "noaudio_7.npy", np.zeros((100, 64), np.float32))    # reference features: not audio
    write_video(audio / "vid-only_2.mp4", seconds=6.0, fps=5, size=(32, 32), freq=400.0)
    (tmp_path / "lists").mkdir()
    return tmp_path


def _write(layout: Path, text: str, name: str = "vggsound_test.txt") -> Path:
    path = layout / "lists" / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reference_rows_frame_choice_audio_and_labels(layout: Path) -> None:
    path = _write(layout, "-0jeONf82dE_21|horse neighing\n"
                          "---g-f_I2yQ_1|people marching\n"
                          "\n"
                          "-Q_UXiwWR_c_30|horse neighing\n"
                          "vid-only_2|dog barking\n")
    pl = read_list(path)  # roots found next to lists/
    assert not pl.errors
    got = [(r.line, r.frame.relative_to(layout).as_posix(), r.audio.name, r.start, r.sample, r.category, r.video)
           for r in pl.rows]
    assert got == [
        (1, "frames_1fps/-0jeONf82dE_21/image_005.jpg", "-0jeONf82dE_21.wav", 4.0, "-0jeONf82dE_21",
         "horse neighing", "-0jeONf82dE"),
        (2, "frames_1fps/---g-f_I2yQ_1/image_001.jpg", "---g-f_I2yQ_1.flac", 0.0, "---g-f_I2yQ_1",
         "people marching", "---g-f_I2yQ"),
        (4, "frames_1fps/-Q_UXiwWR_c_30/image_005.jpg", "-Q_UXiwWR_c_30.wav", 4.0, "-Q_UXiwWR_c_30",
         "horse neighing", "-Q_UXiwWR_c"),
        (5, "frames_1fps/vid-only_2/image_005.jpg", "vid-only_2.mp4", 4.0, "vid-only_2", "dog barking", "vid-only"),
    ]
    assert all(r.frame.is_absolute() and r.audio.is_absolute() for r in pl.rows)


def test_bad_lines_are_skipped_with_their_line_number(layout: Path) -> None:
    path = _write(layout, "-0jeONf82dE_21|horse neighing\n"      # 1 ok
                          "no pipe on this line\n"                # 2
                          "a|b|c\n"                               # 3 two pipes
                          "nosecond|dog\n"                        # 4 no _<second>
                          "abc_x|dog\n"                           # 5 bad second
                          "-0jeONf82dE_21|horse neighing\n"       # 6 duplicate
                          "missing_9|dog\n"                       # 7 no frames
                          "noaudio_7|dog\n"                       # 8 no audio (only a .npy)
                          "twice_5|dog\n")                        # 9 two audio files
    pl = read_list(path)
    assert [r.sample for r in pl.rows] == ["-0jeONf82dE_21"]
    reasons = {e.line: str(e) for e in pl.errors}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 8, 9]
    for line, reason in reasons.items():
        assert f"vggsound_test.txt:{line}:" in reason and "\n" not in reason
    assert "expected <video id>_<second>|<label>" in reasons[2] and "expected" in reasons[3]
    assert "bad clip id 'nosecond'" in reasons[4] and "bad clip id 'abc_x'" in reasons[5]
    assert "duplicate clip id" in reasons[6]
    assert "frame file not found" in reasons[7] and "image_005.jpg" in reasons[7] and "image_001.jpg" in reasons[7]
    assert "audio file not found" in reasons[8] and "noaudio_7.*" in reasons[8]
    assert "several audio files for twice_5: twice_5.flac, twice_5.wav" in reasons[9]


def test_roots_given_or_missing(layout: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "test.txt"
    elsewhere.write_text("-0jeONf82dE_21|horse\n", encoding="utf-8")
    with pytest.raises(ListError, match="needs --frames-root DIR"):
        read_list(elsewhere)
    with pytest.raises(ListError, match="needs --audio-root DIR"):
        read_list(elsewhere, roots=ReferenceRoots(frames=layout / "frames_1fps"))
    with pytest.raises(ListError, match="--audio-root: not a folder"):
        read_list(elsewhere, roots=ReferenceRoots(layout / "frames_1fps", layout / "nothere"))
    pl = read_list(elsewhere, roots=ReferenceRoots.of(layout / "frames_1fps", layout / "audio"))
    assert [r.frame.name for r in pl.rows] == ["image_005.jpg"] and not pl.errors


def test_csv_with_a_pipe_stays_csv(layout: Path, tmp_path: Path) -> None:
    write_image(tmp_path / "f.png", (20, 20))
    write_audio(tmp_path / "a.wav", tone(440, 1.0, SR), SR)
    path = tmp_path / "pipes.csv"
    path.write_text("frame,audio,category\nf.png,a.wav,rain|wind\n", encoding="utf-8")
    pl = read_list(path)
    assert [(r.frame.name, r.category, r.start) for r in pl.rows] == [("f.png", "rain|wind", None)]


def test_write_reference_list_roundtrip_and_refusals(tmp_path: Path) -> None:
    path = tmp_path / "l.txt"
    write_reference_list(path, [("-a_b_3", "x, y"), ("c_0", "")])
    assert path.read_text(encoding="utf-8") == "-a_b_3|x, y\nc_0|\n"
    with pytest.raises(ValueError):
        write_reference_list(path, [("c_0", "a|b")])
    with pytest.raises(ValueError):
        write_reference_list(path, [("nosecond", "a")])


# --- vid2aud -------------------------------------------------------------------------------------------------------

def test_vid2aud_table_as_the_reference_builds_it() -> None:
    doc = vid2aud([("a_1", "dog"), ("b_2", "cat"), ("c_3", "dog")])
    assert doc == {"a_1": {"label": "dog", "pos_aud": ["a_1", "c_3"], "neg_aud": ["b_2"]},
                   "b_2": {"label": "cat", "pos_aud": ["b_2"], "neg_aud": ["a_1", "c_3"]},
                   "c_3": {"label": "dog", "pos_aud": ["a_1", "c_3"], "neg_aud": ["b_2"]}}


def test_vid2aud_pairs_from_a_json(tmp_path: Path) -> None:
    path = tmp_path / "vid2aud_test.json"
    doc = vid2aud([("a_1", "dog"), ("b_2", "cat"), ("c_3", "dog"), ("d_4", "bird")])
    doc["zz_9"] = {"label": "dog", "pos_aud": ["zz_9"], "neg_aud": ["a_1"]}  # names no row of the list
    path.write_text(json.dumps(doc), encoding="utf-8")
    table = read_vid2aud(path)
    samples = ["b_2", "a_1", "c_3", "d_4"]  # rows of a list, in list order
    pairs, left_out = vid2aud_pairs(table, samples, seed=3)
    assert left_out == ["zz_9"]
    assert len(pairs) == 8 and [p[2] for p in pairs] == [1, 0] * 4  # balanced, one of each per clip id
    for i, j, y in pairs:
        entry = table[samples[i]]
        assert samples[j] in (entry.pos_aud if y == 1 else entry.neg_aud)
    assert pairs == vid2aud_pairs(table, samples, seed=3)[0]  # seeded
    assert {samples[j] for i, j, y in pairs if y == 1 and samples[i] == "a_1"} <= {"a_1", "c_3"}


@pytest.mark.parametrize("text, why", [("{not json", "not JSON"), ("[]", "expected"), ("{}", "expected"),
                                       ('{"a_1": {"label": "x", "pos_aud": "a_1", "neg_aud": []}}', "entry 'a_1'")])
def test_read_vid2aud_refuses(tmp_path: Path, text: str, why: str) -> None:
    path = tmp_path / "vid2aud_x.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ListError, match=why) as e:
        read_vid2aud(path)
    assert str(path) in str(e.value)


# --- the mean/variance file ------------------------------------------------------------------------------------------

def test_norm_stats_roundtrip_std_is_sqrt_of_variance(tmp_path: Path) -> None:
    mean = np.linspace(-8, -2, 64)
    var = np.linspace(0.5, 9.0, 64)
    path = tmp_path / "vggsound_train_mean_var.npy"
    write_norm_stats(path, mean, var)
    raw = np.load(path)
    assert raw.shape == (2, 64) and raw.dtype == np.float32
    m, s = read_norm_stats(path)
    np.testing.assert_allclose(m, mean, rtol=1e-6)
    np.testing.assert_allclose(s, np.sqrt(var) + 1e-8, rtol=1e-6)
    np.save(tmp_path / "nested.npy", raw[:, None, :])  # (2, 1, 64) squeezes to (2, 64)
    np.testing.assert_allclose(read_norm_stats(tmp_path / "nested.npy")[1], s)


@pytest.mark.parametrize("arr, why", [
    (np.zeros((3, 64)), r"expected shape \(2, 64\).*got \(3, 64\)"),
    (np.zeros((64, 2)), r"got \(64, 2\)"),
    (np.zeros(128), r"got \(128,\)"),
    (np.stack([np.zeros(64), -np.ones(64)]), "negative variance"),
    (np.stack([np.full(64, np.nan), np.ones(64)]), "non-finite"),
    (np.array([{"mean": 1}], dtype=object), "not a numeric .npy"),
])
def test_norm_stats_refused_with_one_line_naming_the_file(tmp_path: Path, arr: np.ndarray, why: str) -> None:
    path = tmp_path / "stats.npy"
    np.save(path, arr, allow_pickle=True)
    with pytest.raises(SoundlibError, match=why) as e:
        read_norm_stats(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_norm_stats_apply_to_paper_models_only(tmp_path: Path, tiny_checkpoint: Path) -> None:
    from encoders.registry import get_config
    from soundlib.models import load_model

    path = tmp_path / "mv.npy"
    write_norm_stats(path, np.full(64, -5.0), np.full(64, 4.0))
    loaded = load_model(tiny_checkpoint, norm_stats=path)
    assert loaded.model.audio_mean.tolist() == [-5.0] * 64
    assert loaded.model.audio_std.tolist() == pytest.approx([2.0] * 64)
    assert load_model(tiny_checkpoint).model.audio_std.tolist() != loaded.model.audio_std.tolist()
    with pytest.raises(SoundlibError, match="paper models .* only; pt-effnet-aisfx-infonce"):
        check_accepts_norm_stats("pt-effnet-aisfx-infonce", get_config("pt-effnet-aisfx-infonce"))


def test_norm_stats_refused_for_the_pretrained_default_model(tmp_path: Path) -> None:
    from soundlib.models import DEFAULT_MODEL_PATH, load_model

    path = tmp_path / "mv.npy"
    write_norm_stats(path, np.zeros(64), np.ones(64))
    with pytest.raises(SoundlibError, match="normalises its backbone features itself"):
        load_model(DEFAULT_MODEL_PATH, norm_stats=path)
