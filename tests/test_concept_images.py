"""train.concept_images: drawings rendered (real SVG files), classified by the real EfficientNet-Lite0, kept only
where the classifier agrees with their folder, and read back by the catalog through concept:NAME."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from soundlib.errors import ImageError
from soundlib.images import load_image, render_drawing
from soundlib.lists import read_list
from tests.conftest import tone, write_audio
from train.catalog import TRAIN_LIST, build_catalog
from train.concept_images import (
    CANDIDATES_CSV, SOURCE, FolderRule, FolderTableError, allowed_concepts, keep_drawings, name_tokens,
    read_drawing_words, read_folder_concepts, rule_for,
)

pytest.importorskip("cairosvg")


def clock_svg(hour: int = 10, minute: int = 10) -> str:
    """A wall clock: rim, 12 ticks, two hands (EfficientNet-Lite0 calls it a clock with p > 0.98)."""
    ticks = "".join(
        f'<line x1="{100 + 80 * math.sin(a):.1f}" y1="{100 - 80 * math.cos(a):.1f}" '
        f'x2="{100 + 90 * math.sin(a):.1f}" y2="{100 - 90 * math.cos(a):.1f}" stroke="black" '
        f'stroke-width="{6 if k % 3 == 0 else 3}"/>' for k in range(12) for a in [k * math.pi / 6])
    ha, ma = (hour % 12 + minute / 60) * math.pi / 6, minute * math.pi / 30
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="200" height="200" viewBox="0 0 200 200">'
            f'<circle cx="100" cy="100" r="95" fill="white" stroke="#2030c0" stroke-width="8"/>{ticks}'
            f'<line x1="100" y1="100" x2="{100 + 45 * math.sin(ha):.1f}" y2="{100 - 45 * math.cos(ha):.1f}" '
            f'stroke="black" stroke-width="8" stroke-linecap="round"/>'
            f'<line x1="100" y1="100" x2="{100 + 75 * math.sin(ma):.1f}" y2="{100 - 75 * math.cos(ma):.1f}" '
            f'stroke="black" stroke-width="5" stroke-linecap="round"/><circle cx="100" cy="100" r="6"/></svg>')


WIDE_BAR = ('<svg xmlns="http://www.w3.org/2000/svg" width="300" height="100">'
            '<rect x="0" y="0" width="300" height="100" fill="#ff0000"/></svg>')
EMPTY = '<svg xmlns="http://www.w3.org/2000/svg" width="50" height="50"></svg>'


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_render_drawing_fits_centres_and_fills_the_margins(tmp_path: Path) -> None:
    src = _write(tmp_path / "bar.svg", WIDE_BAR)
    white = render_drawing(src, tmp_path / "white.png", 64, background=(255, 255, 255))
    img = load_image(white)
    assert tuple(img.shape) == (3, 64, 64)
    assert img[0, 32, 32] > 0.95 and img[1, 32, 32] < 0.05  # the red bar fills the width, centred
    assert float(img[:, 2, 32].min()) > 0.95  # white margin above it
    from PIL import Image

    with Image.open(white) as im:
        assert im.mode == "RGB"
    with Image.open(render_drawing(src, tmp_path / "clear.png", 64)) as im:
        assert im.mode == "RGBA" and im.getpixel((32, 2))[3] == 0  # transparent margin by default
    for bad, reason in ((EMPTY, "empty"), ("<svg", "cannot render")):
        with pytest.raises(ImageError, match=reason) as e:
            render_drawing(_write(tmp_path / "bad.svg", bad), tmp_path / "bad.png", 64)
        assert str(e.value).startswith(str(tmp_path / "bad.svg"))
    assert not (tmp_path / "bad.png").exists()


def test_tables_rules_and_names() -> None:
    rules = read_folder_concepts()
    words = read_drawing_words()
    dogs = rule_for("animals/mammals/dogs", rules)
    assert dogs is not None and dogs.concepts == ("dog",)
    assert rule_for("animals/mammals/bears", rules).concepts == ()  # type: ignore[union-attr]
    assert rule_for("animals/mammals/foo", rules).folder == "animals/mammals"  # type: ignore[union-attr]
    assert rule_for("shapes/stars", rules) is None
    assert name_tokens("bee1_mimooh_01") == {"bee1", "bee", "mimooh", "01"}
    mammals = rule_for("animals/mammals", rules)
    assert allowed_concepts("gatto_cat_architetto_fra_01", mammals, words) == ("cat",)
    assert allowed_concepts("contour_giraffe", mammals, words) == ()  # no concept named
    assert allowed_concepts("cavallo_architetto_franc_01", mammals, words) == ("horse",)
    assert allowed_concepts("dog_on_leash_gerald_g._01", dogs, words) == ("dog",)  # one-concept folder: no name
    bugs = rule_for("animals/bugs", rules)
    assert allowed_concepts("ape_architetto_01", bugs, words) == ("bee",)  # Italian 'ape' is a bee here
    assert allowed_concepts("contour_orangutan", mammals, words) == ()
    assert allowed_concepts("x", FolderRule("x", ("cat", "dog"), 2), {}) == ()


def test_bad_tables_are_one_clear_error(tmp_path: Path) -> None:
    t = _write(tmp_path / "folders.csv", "folder,concepts,notes\nanimals,unicorn,nope\n")
    with pytest.raises(FolderTableError, match="unknown concept.*unicorn") as e:
        read_folder_concepts(t)
    assert str(e.value).startswith(str(t))
    _write(t, "folder,concepts,notes\nanimals,dog,a\nanimals/,cat,b\n")
    with pytest.raises(FolderTableError, match="line 3: want a new folder"):
        read_folder_concepts(t)
    w = _write(tmp_path / "words.csv", "concept,words,notes\ndog,,no words\n")
    with pytest.raises(FolderTableError, match="line 2"):
        read_drawing_words(w)


def test_keep_only_what_the_classifier_agrees_with_and_the_catalog_reads_it(tmp_path: Path, one_torch_thread) -> None:
    svg = tmp_path / "svg"
    _write(svg / "clocks" / "clock_one.svg", clock_svg(10, 10))
    _write(svg / "clocks" / "red_bar.svg", WIDE_BAR)  # a clock folder, but no clock: rejected
    _write(svg / "clocks" / "blank.svg", EMPTY)  # unrenderable: skipped with its reason
    _write(svg / "stuff" / "clock_copy.svg", clock_svg(10, 10))  # the same file again: used once
    _write(svg / "stuff" / "orologio_two.svg", clock_svg(3, 40))  # named (Italian) in a folder of several
    _write(svg / "stuff" / "thing.svg", clock_svg(7, 5))  # unnamed in a folder of several concepts: not used
    _write(svg / "ignored" / "clock_three.svg", clock_svg(1, 0))  # folder not listed
    folders = _write(tmp_path / "folders.csv", "folder,concepts,notes\nclocks,clock,clocks\n"
                                                "stuff,clock;telephone,a mix\n")
    out = tmp_path / "dest"
    rep = keep_drawings(svg, out, folders)
    d = rep.to_dict()
    assert (d["candidates"], d["unnamed"], d["duplicates"], d["kept"]) == (4, 1, 1, 2)
    assert d["kept_by_concept"] == {"clock": 2} and [s["file"] for s in d["skipped"]] == [str(svg / "clocks/blank.svg")]
    assert sorted(p.relative_to(out).as_posix() for p in (out / SOURCE).rglob("*.png")) == [
        "openclipart/clock/clock_one.png", "openclipart/clock/orologio_two.png"]
    with (out / CANDIDATES_CSV).open(newline="") as f:
        rows = {r["svg"]: r for r in csv.DictReader(f)}
    assert rows["clocks/red_bar.svg"]["kept"] == "no" and rows["clocks/red_bar.svg"]["predicted"] != "clock"
    assert rows["clocks/clock_one.svg"]["kept"] == "yes" and float(rows["clocks/clock_one.svg"]["probability"]) > 0.5
    assert rows["stuff/orologio_two.svg"]["allowed"] == "clock"
    kept = load_image(out / SOURCE / "clock" / "clock_one.png")
    assert tuple(kept.shape) == (3, 512, 512) and float(kept[:, 3, 3].min()) > 0.99  # on white

    # a second run renders nothing again and gives the same result
    again = keep_drawings(svg, out, folders)
    assert again.rendered == 0 and again.to_dict()["kept_by_concept"] == d["kept_by_concept"]

    # the catalog picks the kept drawings up through concept:clock
    snd = tmp_path / "sfx" / "clock" / "tick.wav"
    snd.parent.mkdir(parents=True)
    write_audio(snd, tone(1000, 0.3, 16_000), 16_000)
    m = _write(tmp_path / "map.csv", "concept,sound_patterns,image_patterns,notes\nclock,clock/*,concept:clock,ticks\n")
    build_catalog(m, [tmp_path / "sfx"], [out / SOURCE], tmp_path / "lists", val_fraction=0.0)
    frames = {r.frame.name for r in read_list(tmp_path / "lists" / TRAIN_LIST).rows}
    assert frames == {"clock_one.png", "orologio_two.png"}


def test_command_line_json_and_bad_input(tmp_path: Path) -> None:
    from tests.cli_process import run_cli

    svg = tmp_path / "svg"
    _write(svg / "clocks" / "bar.svg", WIDE_BAR)
    folders = _write(tmp_path / "folders.csv", "folder,concepts,notes\nclocks,clock,clocks\n")
    res = run_cli("drawings", "--svg", svg, "--out", tmp_path / "d", "--folders", folders, "--json")
    assert res.exit_code == 0, res.stderr
    d = json.loads(res.stdout)  # exactly one JSON document
    assert d["candidates"] == 1 and d["kept"] == 0
    shown = run_cli("drawings", "--svg", svg, "--out", tmp_path / "d", "--folders", folders)
    assert shown.exit_code == 0 and "0 of 1 drawings kept" in shown.stdout
    res = run_cli("drawings", "--svg", tmp_path / "nope", "--out", tmp_path / "d")
    assert res.exit_code == 2 and res.stderr.strip() == f"error: {tmp_path / 'nope'}: folder not found"
