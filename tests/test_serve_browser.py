"""The page of ``soundlib serve`` in headless Chromium against a real uvicorn server on a free port.

One browser session for the module; every wait is on a DOM condition (WebDriverWait), never a sleep.
"""

from __future__ import annotations

import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.browser import chromium_or_skip, start_chromium

chromium_or_skip()

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from tests.conftest import halves, write_image, write_video  # noqa: E402
from tests.fixtures_serve import serve_world  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("one_torch_thread")]
WAIT = 45


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint):
    w = serve_world(tmp_path_factory.mktemp("serve-browser"), tiny_checkpoint)
    yield w
    w.close()


@pytest.fixture(scope="module")
def page(world, tmp_path_factory: pytest.TempPathFactory):
    """(driver, base URL, downloads folder) with the page loaded."""
    from soundlib.serve.app import background, create_app

    base = tmp_path_factory.mktemp("chromium")
    downloads = base / "downloads"
    downloads.mkdir()
    with background(create_app(world.engine)) as url:
        driver = start_chromium(base / "profile", downloads)
        try:
            driver.get(url + "/")
            wait(driver, lambda d: "sounds" in d.find_element(By.ID, "library").text)
            yield driver, url, downloads
        finally:
            driver.quit()


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("page-uploads")
    broken = d / "notes.jpg"
    broken.write_text("not a picture\n")
    return {"picture": write_image(d / "red-blue.png", halves(80, 60, (255, 0, 0), (0, 0, 255))),
            "video": write_video(d / "clip.mp4", seconds=2.4, fps=10), "broken": broken}


def wait(driver, condition, timeout: float = WAIT):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def js(driver, script: str, *args):
    return driver.execute_script(script, *args)


@contextmanager
def served_page(tmp_path: Path, checkpoint: Path):
    """The test library ingested with ``checkpoint`` behind a live server, and a Chromium showing its page (the
    header loaded): yields ``(world, driver)``; closes everything after."""
    from soundlib.serve.app import background, create_app

    w = serve_world(tmp_path / "world", checkpoint)
    try:
        with background(create_app(w.engine)) as url:
            (tmp_path / "dl").mkdir()
            driver = start_chromium(tmp_path / "profile", tmp_path / "dl")
            try:
                driver.get(url + "/")
                wait(driver, lambda d: "sounds" in d.find_element(By.ID, "library").text)
                yield w, driver
            finally:
                driver.quit()
    finally:
        w.close()


def body(driver, key: str):
    return js(driver, f"return document.body.dataset.{key} ?? null")


def rows(driver) -> list:
    return driver.find_elements(By.CSS_SELECTOR, "#rows .row")


def query(driver, path: Path, k: int = 4) -> None:
    """Set k, upload ``path`` through the file input and wait for the answer (rows drawn, or an error)."""
    box = driver.find_element(By.ID, "k")
    js(driver, "arguments[0].value = arguments[1]", box, str(k))
    js(driver, "document.body.dataset.rows = ''; document.getElementById('error').hidden = true;"
               "document.getElementById('files').value = ''")
    driver.find_element(By.ID, "files").send_keys(str(path))
    wait(driver, lambda d: body(d, "busy") is None and (body(d, "rows") or d.find_element(By.ID, "error")
                                                         .is_displayed()))


def texts(driver, selector: str) -> list[str]:
    """Text of every element matching ``selector``, read in one script (no stale elements while rows redraw)."""
    return js(driver, "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)", selector)


def current_time(driver) -> float:
    return float(js(driver, "return document.getElementById('player').currentTime"))


def playing_from(driver, start: float) -> float:
    """Wait until the audio plays past ``start``; returns the time seen."""
    wait(driver, lambda d: not js(d, "return document.getElementById('player').paused")
         and current_time(d) > start + 0.05)
    return current_time(driver)


def test_a_picture_gives_k_rows_with_waveforms(page, media) -> None:
    driver, _, _ = page
    query(driver, media["picture"], k=4)
    assert len(rows(driver)) == 4
    assert "red-blue.png" in driver.find_element(By.ID, "title").text
    names = [r.find_element(By.CLASS_NAME, "name").text for r in rows(driver)]
    assert all(n.endswith((".wav", ".flac")) for n in names)
    # the waveforms are drawn from the server's peaks: some pixel of each canvas is not background
    wait(driver, lambda d: all(js(d, """const c = arguments[0]; const g = c.getContext('2d');
        const a = g.getImageData(0, 0, c.width, c.height).data; for (let i = 3; i < a.length; i += 4)
        if (a[i] > 0) return true; return false;""", r.find_element(By.CLASS_NAME, "wave")) for r in rows(d)))
    assert not driver.find_element(By.ID, "read-as").is_displayed()  # a model without concept columns
    assert not driver.find_element(By.ID, "as-form").is_displayed()  # so nothing to say it is
    assert not driver.find_element(By.ID, "words-form").is_displayed()  # nor words alone
    src = driver.find_element(By.ID, "view").get_attribute("src")
    assert "/api/explain?" in src  # the heatmap of the selected sound over the picture
    wait(driver, lambda d: js(d, "return document.getElementById('view').naturalWidth") == 448)


def test_play_starts_at_the_window_and_advances(page, media) -> None:
    driver, _, _ = page
    query(driver, media["picture"], k=4)
    first = rows(driver)[0]
    start = float(first.get_attribute("data-start"))
    first.find_element(By.CLASS_NAME, "play").click()
    seen = playing_from(driver, start)
    assert start <= seen < start + 5
    # clicking the waveform seeks: three quarters into the file
    wave = first.find_element(By.CLASS_NAME, "wave")
    duration = float(js(driver, "return document.getElementById('player').duration"))
    width = wave.size["width"]
    from selenium.webdriver import ActionChains

    ActionChains(driver).move_to_element_with_offset(wave, int(width * 0.25), 0).click().perform()
    target = duration * 0.75
    wait(driver, lambda d: abs(current_time(d) - target) < max(0.6, duration * 0.1))
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.SPACE)
    wait(driver, lambda d: js(d, "return document.getElementById('player').paused"))


def test_arrow_keys_audition_the_next_row(page, media) -> None:
    driver, _, _ = page
    query(driver, media["picture"], k=4)
    page_body = driver.find_element(By.TAG_NAME, "body")
    page_body.send_keys(Keys.ARROW_DOWN)
    wait(driver, lambda d: body(d, "selected") == "1" and body(d, "playing") == "1")
    second = rows(driver)[1]
    assert "selected" in second.get_attribute("class")
    src = js(driver, "return document.getElementById('player').src")
    assert src.endswith("/audio/" + second.get_attribute("data-file"))
    playing_from(driver, float(second.get_attribute("data-start")))
    page_body.send_keys(Keys.ARROW_UP)
    wait(driver, lambda d: body(d, "selected") == "0" and body(d, "playing") == "0")
    page_body.send_keys(Keys.SPACE)
    wait(driver, lambda d: js(d, "return document.getElementById('player').paused"))


def test_more_like_this_ranks_by_that_sound(page, media) -> None:
    driver, _, _ = page
    query(driver, media["picture"], k=4)
    row = rows(driver)[2]
    name, fid = row.find_element(By.CLASS_NAME, "name").text, row.get_attribute("data-file")
    row.find_element(By.CLASS_NAME, "like").click()
    wait(driver, lambda d: d.find_element(By.ID, "title").text == f"More like {name}")
    assert rows(driver)[0].get_attribute("data-file") == fid  # the sound itself first


def test_the_category_filter_reruns_the_query(page, media) -> None:
    driver, _, _ = page
    query(driver, media["picture"], k=2)
    Select(driver.find_element(By.ID, "category")).select_by_value("rain")
    wait(driver, lambda d: texts(d, "#rows .row .category") == ["rain", "rain"])
    Select(driver.find_element(By.ID, "category")).select_by_value("")
    wait(driver, lambda d: len(set(texts(d, "#rows .row .category"))) > 1)


def test_a_video_shows_its_frame_strip(page, media) -> None:
    driver, _, _ = page
    query(driver, media["video"], k=3)
    frames = driver.find_elements(By.CSS_SELECTOR, "#strip .frame[data-index]")
    assert [f.text for f in frames] == ["0 s", "1 s", "2 s"]
    assert "Combined ranking of 3 frames" in driver.find_element(By.ID, "title").text
    frames[1].click()
    wait(driver, lambda d: d.find_element(By.ID, "title").text.startswith("Frame 1"))
    assert len(rows(driver)) == 3
    wait(driver, lambda d: all(js(d, "return arguments[0].complete && arguments[0].naturalWidth > 0", img)
                               for img in d.find_elements(By.CSS_SELECTOR, "#strip img")))


def test_export_downloads_a_zip_of_the_picks(page, media, world) -> None:
    driver, _, downloads = page
    query(driver, media["picture"], k=3)
    picked = []
    for row in rows(driver)[:2]:
        row.find_element(By.CLASS_NAME, "pick").click()
        picked.append(row.find_element(By.CLASS_NAME, "name").text)
    assert driver.find_element(By.ID, "pick-count").text == "2"
    driver.find_element(By.ID, "export").click()
    zip_path = downloads / "soundlib-picks.zip"
    wait(driver, lambda d: zip_path.exists() and zipfile.is_zipfile(zip_path))
    with zipfile.ZipFile(zip_path) as z:
        names = set(z.namelist())
    assert set(picked) | {"picks.csv", "picks.json", "picks.m3u"} == names


def test_a_broken_picture_shows_its_error(page, media) -> None:
    driver, _, _ = page
    query(driver, media["broken"])
    error = driver.find_element(By.ID, "error")
    assert error.is_displayed()
    assert error.text == "notes.jpg: not an image (format not recognised)"


def test_the_default_model_says_what_each_picture_was_read_as(tmp_path: Path) -> None:
    """The bundled default (concept columns): under the title, what the picture, each video frame and the
    combined ranking were read as."""
    from soundlib.models import DEFAULT_MODEL_PATH

    demo = Path(__file__).resolve().parents[1] / "demo" / "images"
    with served_page(tmp_path, DEFAULT_MODEL_PATH) as (w, driver):
        # the words fields offer the model's concepts as you type
        names = js(driver, "return [...document.querySelectorAll('#concept-names option')].map(o => o.value)")
        assert len(names) == 116 and "drum kit" in names
        assert driver.find_element(By.ID, "words-form").is_displayed()
        query(driver, demo / "dog-photo.png", k=3)
        seen = driver.find_element(By.ID, "read-as")
        assert seen.is_displayed() and seen.text.startswith("read as: dog ")
        assert seen.text.endswith(" · named: dog")  # its file name (dog-photo.png) is mixed in too
        video = write_video(tmp_path / "clip.mp4", seconds=2.4, fps=10)
        query(driver, video, k=3)
        wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#strip .frame")) >= 3)
        combined = driver.find_element(By.ID, "read-as").text
        assert combined.startswith("read as: ")
        driver.find_elements(By.CSS_SELECTOR, "#strip .frame")[1].click()  # frame 0
        wait(driver, lambda d: d.find_element(By.ID, "title").text.startswith("Frame 0"))
        assert driver.find_element(By.ID, "read-as").text.startswith("read as: ")

        # "it is ...": the words' concepts rank the library (its rain/ folder), the reading stays said
        query(driver, demo / "drum.png", k=2)
        assert driver.find_element(By.ID, "as-form").is_displayed()
        # untold, the ranking is checked against what the picture was read as: no drums in this library
        told = driver.find_element(By.ID, "told")
        assert told.text == "none of these 2 is named or heard as drum kit: your library may lack it"
        assert "warn" in told.get_attribute("class")
        field = driver.find_element(By.ID, "as")
        field.send_keys("rain", Keys.ENTER)
        wait(driver, lambda d: d.find_element(By.ID, "told").text.startswith("ranked as: rain"))
        assert driver.find_element(By.ID, "told").text == "ranked as: rain · 2 of 2 named or heard as it"
        assert texts(driver, "#rows .row .category") == ["rain", "rain"]
        assert texts(driver, "#rows .row .told-hit") == ["✓ rain", "✓ rain"]  # named rain/
        assert driver.find_element(By.ID, "read-as").text.startswith("read as: drum kit")
        # a concept the library lacks (nothing named or heard as it): the page says so
        from soundlib.concept_coverage import concept_coverage

        absent = concept_coverage(w.store, w.loaded.model).absent[0]
        field.clear()
        field.send_keys(absent, Keys.ENTER)
        wait(driver, lambda d: "may lack it" in d.find_element(By.ID, "told").text)
        told = driver.find_element(By.ID, "told")
        assert told.text == f"ranked as: {absent} · none of these 2 is named or heard as it: your library " \
            "may lack it" and "warn" in told.get_attribute("class")
        assert texts(driver, "#rows .row .told-hit") == []
        field.clear()
        field.send_keys("fax machine", Keys.ENTER)
        wait(driver, lambda d: d.find_element(By.ID, "error").is_displayed())
        assert "names none of this model's" in driver.find_element(By.ID, "error").text
        query(driver, demo / "dog-photo.png", k=2)  # a new picture: the words do not carry over
        assert driver.find_element(By.ID, "as").get_attribute("value") == ""
        told = driver.find_element(By.ID, "told")
        assert told.text == "2 of 2 named or heard as dog" and "warn" not in told.get_attribute("class")
        assert texts(driver, "#rows .row .told-hit") == ["✓ dog", "✓ dog"]  # the library's dogs/ folder
        query(driver, demo / "cockatoo-photo.png", k=2)  # read as a dog, named a parrot: none here
        told = driver.find_element(By.ID, "told")
        assert told.text == "2 of 2 named or heard as dog · none as parrot: your library may lack it"
        assert "warn" in told.get_attribute("class")

        # words alone: no picture, the library's rain first
        js(driver, "document.body.dataset.rows = ''")
        driver.find_element(By.ID, "words").send_keys("rain", Keys.ENTER)
        wait(driver, lambda d: body(d, "busy") is None and body(d, "rows"))
        wait(driver, lambda d: d.find_element(By.ID, "title").text == 'Sounds for "rain"')
        assert texts(driver, "#rows .row .category") == ["rain", "rain"]
        assert driver.find_element(By.ID, "read-as").text == "ranked as: rain · 2 of 2 named or heard as it"
        assert not driver.find_element(By.ID, "picture").is_displayed()
        assert not driver.find_element(By.ID, "as-form").is_displayed()
        driver.find_element(By.CSS_SELECTOR, "#rows .row .pick").click()  # a pick remembers the words
        wait(driver, lambda d: d.find_element(By.ID, "pick-count").text == "1")


def test_the_header_says_when_the_model_was_adapted_to_the_library(tmp_path: Path) -> None:
    """A collection ingested with a `soundlib adapt` model: the page's header says the ear was adapted, and to how
    many named files; the API says the same."""
    from tests.fixtures_library import build_library
    from train.adapt import adapt_model

    report = adapt_model(None, [build_library(tmp_path / "named")], tmp_path / "ear.pt")
    assert report.named_files >= 2
    with served_page(tmp_path, Path(report.out)) as (w, driver):
        assert w.engine.info()["adapted"] == {"named_files": report.named_files, "concepts": len(report.concepts)}
        assert driver.find_element(By.ID, "library").text.endswith(
            f"· ear adapted to {report.named_files} named files")
