"""Embedded metadata (soundlib/tags.py) from real files: BWF bext / iXML / RIFF INFO, Vorbis, FLAC, ID3, MP4."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import soundfile as sf

from soundlib.tags import CHUNK_CAP, DESCRIPTION_CAP, TagError, loudness, read_tags
from tests.conftest import WRITABLE_AUDIO, tone, write_audio
from tests.fixtures_tags import chunk, ucs_ixml, write_bwf


def test_bwf_bext_ixml_and_info(tmp_path):
    p = write_bwf(tmp_path / "DOORWood_Creak Long_JD_Foley.wav", tone(440, 0.5, 48_000), 48_000,
                  description="Old oak door, long creak", originator="Jane Doe",
                  ixml=ucs_ixml(catid="DOORWood", fxname="Creak Long", keywords="door; oak; creak", library="Foley"),
                  info={"INAM": "Creak long", "ICMT": "take 3", "IART": "JD"})
    tags = read_tags(p)
    assert tags == {"description": "Old oak door, long creak", "artist": "Jane Doe", "cat_id": "DOORWood",
                    "title": "Creak Long", "keywords": "door; oak; creak", "library": "Foley", "comment": "take 3"}
    assert sf.info(p).frames == 24_000  # still a good WAV for libsndfile


def test_latin1_control_characters_and_caps(tmp_path):
    p = write_bwf(tmp_path / "a.wav", tone(), 48_000, description="Caf\xe9 ambience\r\n\tnight".encode("latin-1"),
                  info={"ICMT": "x" * 5000})
    tags = read_tags(p)
    assert tags["description"] == "Café ambience night"
    assert len(tags["comment"]) == 200 and tags["comment"].endswith("…")
    long = write_bwf(tmp_path / "b.wav", tone(), 48_000, ixml=ucs_ixml(description="word " * 1000))
    assert len(read_tags(long)["description"]) == DESCRIPTION_CAP


def test_garbage_and_hostile_chunks_are_one_clear_error(tmp_path):
    bad_xml = write_bwf(tmp_path / "bad.wav", tone(), 48_000, ixml=b"<BWFXML><USER><DESCRIPTION>oops")
    with pytest.raises(TagError, match="bad.wav: iXML chunk is not valid XML") as caught:
        read_tags(bad_xml)
    assert caught.value.partial == {}
    partial = write_bwf(tmp_path / "partial.wav", tone(), 48_000, description="kept", ixml=b"<BWFXML><USER>")
    with pytest.raises(TagError) as caught:
        read_tags(partial)
    assert caught.value.partial == {"description": "kept"}  # the bext before the broken iXML
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><BWFXML>&b;</BWFXML>'
    with pytest.raises(TagError, match="entities"):
        read_tags(write_bwf(tmp_path / "bomb.wav", tone(), 48_000, ixml=bomb))
    huge = write_bwf(tmp_path / "huge.wav", tone(), 48_000, ixml=b"<BWFXML>" + b" " * (CHUNK_CAP + 10) + b"</BWFXML>")
    with pytest.raises(TagError, match="larger than"):
        read_tags(huge)
    # a chunk whose size runs past the end of the file, and random bytes after the header: no tags, no crash
    lying = write_bwf(tmp_path / "lying.wav", tone(), 48_000, extra=[(b"junk", b"\x01" * 8)])
    data = bytearray(lying.read_bytes())
    i = data.index(b"junk")
    data[i + 4:i + 8] = struct.pack("<I", 0xFFFFFFF0)
    lying.write_bytes(bytes(data))
    assert read_tags(lying) == {}
    noise = tmp_path / "noise.wav"
    noise.write_bytes(b"RIFF\x10\x00\x00\x00WAVE" + np.random.default_rng(0).bytes(4000))
    assert read_tags(noise) == {}
    noise.write_bytes(np.random.default_rng(1).bytes(4000))  # not even RIFF: mutagen's error, as one line
    with pytest.raises(TagError, match="noise.wav: cannot read tags"):
        read_tags(noise)


def test_oversized_id3_is_skipped_not_read(tmp_path):
    p = tmp_path / "big.mp3"
    size = CHUNK_CAP * 4
    syncsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    p.write_bytes(b"ID3\x04\x00\x00" + syncsafe + b"\x00" * 64)
    with pytest.raises(TagError, match="ID3 tag larger than"):
        read_tags(p)


@pytest.mark.parametrize("ext", ["flac", "ogg"])
def test_vorbis_comments_through_mutagen(tmp_path, ext):
    import mutagen

    p = write_audio(tmp_path / f"s.{ext}", tone(300, 1.0, 22_050), 22_050)
    f = mutagen.File(p)
    f["TITLE"] = "Rain on tin roof"
    f["DESCRIPTION"] = "Heavy rain, close"
    f["KEYWORDS"] = "rain, roof, metal"
    f["ARTIST"] = "Field"
    f["ALBUM"] = "Weather Vol 1"
    f.save()
    assert read_tags(p) == {"title": "Rain on tin roof", "description": "Heavy rain, close",
                            "keywords": "rain, roof, metal", "artist": "Field", "library": "Weather Vol 1"}


@pytest.mark.skipif("mp3" not in WRITABLE_AUDIO, reason="this libsndfile cannot write MP3")
def test_id3_through_mutagen(tmp_path):
    from mutagen.id3 import COMM, ID3, TALB, TIT2, TPE1

    p = write_audio(tmp_path / "s.mp3", tone(300, 1.0, 44_100), 44_100)
    tags = ID3()
    tags.add(TIT2(encoding=3, text="Glass shatter"))
    tags.add(TPE1(encoding=3, text="Someone"))
    tags.add(TALB(encoding=3, text="Breaks"))
    tags.add(COMM(encoding=3, lang="eng", desc="", text="bottle on concrete"))
    tags.save(p)
    assert read_tags(p) == {"title": "Glass shatter", "artist": "Someone", "library": "Breaks",
                            "comment": "bottle on concrete"}


def test_wav_with_an_id3_chunk(tmp_path):
    from mutagen.id3 import TIT2
    from mutagen.wave import WAVE

    p = write_bwf(tmp_path / "a.wav", tone(), 48_000, description="from bext")
    w = WAVE(p)
    w.add_tags()
    w.tags.add(TIT2(encoding=3, text="from id3"))
    w.save()
    assert read_tags(p) == {"description": "from bext", "title": "from id3"}


def test_loudness_of_a_sine():
    y = tone(997, 3.0, 48_000, amplitude=0.5)
    got = loudness(y.reshape(3, 48_000), 48_000)
    assert got["peak_dbfs"] == pytest.approx(-6.02, abs=0.01)
    assert got["loudness_lufs"] == pytest.approx(-3.01 - 6.02, abs=0.3)  # BS.1770: 0 dBFS 997 Hz sine = -3.01 LUFS
    assert loudness(np.zeros((1, 48_000), np.float32), 48_000) == {"peak_dbfs": -120.0, "loudness_lufs": -120.0}
