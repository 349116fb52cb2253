"""soundlib.scan: which files an ingest sees and what they are called (real folders, links, hidden files)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from soundlib.errors import SoundlibError
from soundlib.scan import category_of, file_sha256, plan_roots, scan
from tests.fixtures_library import GOOD, build_library


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_library(tmp_path_factory.mktemp("scan") / "lib")


def test_scan_finds_audio_files_with_categories_and_skips_hidden_and_loops(lib: Path) -> None:
    skipped: list[tuple[str, str]] = []
    files = list(scan([lib], on_skip=lambda p, r: skipped.append((p, r))))
    rels = [f.rel for f in files]
    # every audio-extension file once (the corrupt and the text-named-.wav ones too: decoding judges them later)
    assert sorted(rels) == sorted(list(GOOD) + ["dogs/notes.wav", "rain/broken.wav"])
    assert len(rels) == len(set(rels))  # the dogs/loop -> .. link did not walk the library twice
    assert not any("secret" in r or ".hidden" in r or r.endswith(".txt") for r in rels)
    assert skipped == []
    by_rel = {f.rel: f for f in files}
    for rel, exp in GOOD.items():
        f = by_rel[rel]
        assert (f.category, f.folder) == (exp.category, exp.folder), rel
        assert f.root == str(lib.resolve())
        assert Path(f.path) == lib.resolve() / rel
        assert f.size == (lib / rel).stat().st_size
        assert f.mtime_ns == (lib / rel).stat().st_mtime_ns and f.mtime == (lib / rel).stat().st_mtime


def test_scan_order_is_sorted_depth_first(lib: Path) -> None:
    rels = [f.rel for f in scan([lib])]  # a folder's files (sorted by name), then its subfolders (sorted)
    assert rels == ["loose.wav", "cars/blip.wav", "cars/engine long.wav", "dogs/bark 1.wav", "dogs/notes.wav",
                    "dogs/nested/deep/growl.flac", "rain/Sturm über Nacht (ß).wav",
                    "rain/broken.wav", "rain/drizzle.wav"]


def test_extension_case_and_links(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "LOUD.WAV").write_bytes(b"x")
    (tmp_path / "a" / "song.mp3").write_bytes(b"x")
    (tmp_path / "a" / "pic.jpg").write_bytes(b"x")
    os.symlink(tmp_path / "a" / "LOUD.WAV", tmp_path / "a" / "same.wav")  # a second name for the same file
    os.symlink(tmp_path / "nowhere.wav", tmp_path / "a" / "dangling.wav")
    skipped: list[tuple[str, str]] = []
    files = list(scan([tmp_path], on_skip=lambda p, r: skipped.append((p, r))))
    assert [f.rel for f in files] == ["a/LOUD.WAV", "a/song.mp3"]
    assert len(skipped) == 1 and skipped[0][0].endswith("dangling.wav") and "broken link" in skipped[0][1]


def test_linked_folder_is_followed_once(tmp_path: Path) -> None:
    (tmp_path / "real" / "x").mkdir(parents=True)
    (tmp_path / "real" / "x" / "a.wav").write_bytes(b"x")
    lib = tmp_path / "lib"
    lib.mkdir()
    os.symlink(tmp_path / "real", lib / "linked")
    os.symlink(tmp_path / "real", lib / "linked-again")
    files = list(scan([lib]))
    assert [(f.rel, f.category) for f in files] == [("linked/x/a.wav", "linked")]


def test_root_files_take_the_root_name_and_single_files(tmp_path: Path) -> None:
    (tmp_path / "dogs" / "sub").mkdir(parents=True)
    (tmp_path / "dogs" / "a.wav").write_bytes(b"x")
    (tmp_path / "dogs" / "sub" / "b.wav").write_bytes(b"x")
    files = list(scan([tmp_path / "dogs"]))
    assert [(f.rel, f.category, f.folder) for f in files] == [("a.wav", "dogs", ""), ("sub/b.wav", "sub", "sub")]
    single = list(scan([tmp_path / "dogs" / "sub" / "b.wav"]))
    sub = str((tmp_path / "dogs" / "sub").resolve())
    assert [(f.rel, f.category, f.root) for f in single] == [("b.wav", "sub", sub)]
    assert category_of("x/y/z.wav", "/lib") == ("x", "x/y")
    assert category_of("z.wav", "/some/lib") == ("lib", "")


def test_known_roots_keep_names_stable(tmp_path: Path) -> None:
    (tmp_path / "sfx" / "dogs" / "deep").mkdir(parents=True)
    (tmp_path / "sfx" / "dogs" / "deep" / "a.wav").write_bytes(b"x")
    root = str((tmp_path / "sfx").resolve())
    # ingesting a subfolder of a library root that is already in the store names files from that root
    files = list(scan([tmp_path / "sfx" / "dogs"], known_roots=[root]))
    assert [(f.root, f.rel, f.category) for f in files] == [(root, "dogs/deep/a.wav", "dogs")]
    # ...and a stored root inside a walked folder stays a root
    inner = str((tmp_path / "sfx" / "dogs").resolve())
    files = list(scan([tmp_path / "sfx"], known_roots=[inner]))
    assert [(f.root, f.rel, f.category) for f in files] == [(inner, "deep/a.wav", "deep")]
    plan = plan_roots([tmp_path / "sfx" / "dogs"], [root])[0]
    assert plan.covers(root, "dogs/deep/a.wav") and not plan.covers(root, "cats/a.wav")
    assert not plan.covers(root, "dogsled/a.wav")


def test_missing_root_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SoundlibError, match="no such file or folder"):
        list(scan([tmp_path, tmp_path / "nope"]))


def test_file_sha256(tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc")
    assert file_sha256(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_nested_arguments_and_links_to_ancestors(lib: Path) -> None:
    whole = [f.rel for f in scan([lib])]
    # a subfolder given with its parent is walked as part of the parent (and the dogs/loop -> .. link is not)
    assert [f.rel for f in scan([lib / "dogs", lib, lib / "loose.wav"])] == whole
    assert len(plan_roots([lib / "dogs", lib, lib / "cars" / "blip.wav", lib])) == 1
    # walking only dogs/ inside the known root: the link back up to the root is a loop, not a way out
    inside = [f.rel for f in scan([lib / "dogs"], known_roots=[str(lib.resolve())])]
    assert inside == ["dogs/bark 1.wav", "dogs/notes.wav", "dogs/nested/deep/growl.flac"]


def test_a_name_that_is_not_utf8_is_skipped_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "ok.wav").write_bytes(b"x")
    try:
        with open(os.fsencode(tmp_path) + b"/bad\xff.wav", "wb") as f:
            f.write(b"x")
    except OSError:
        pytest.skip("this file system refuses non-UTF-8 names")
    skipped: list[tuple[str, str]] = []
    files = list(scan([tmp_path], on_skip=lambda p, r: skipped.append((p, r))))
    assert [f.rel for f in files] == ["ok.wav"]
    assert len(skipped) == 1 and "not valid UTF-8" in skipped[0][1]
    skipped[0][0].encode("utf-8")  # the reported path itself is printable
