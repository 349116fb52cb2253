"""Take the README's screenshots of ``soundlib serve`` (docs/serve-*.png) from a real session in headless Chromium.

    soundlib ingest demo/sounds --db .demo-store --collection demo       # once
    .venv/bin/python tools/serve_screenshots.py --db .demo-store --collection demo \\
        --video /path/to/cockatoo.mp4                                    # python3-imageio's sample video

The server is the one ``soundlib serve`` runs (same app, real uvicorn on a free loopback port), with the
collection's model; the browser is Debian's chromium driven by selenium (tests/browser.py).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True)
    p.add_argument("--collection", default="demo")
    p.add_argument("--picture", default=str(ROOT / "demo" / "images" / "lion.png"))
    p.add_argument("--video", default=None, help="a short video for the frame-strip screenshot")
    p.add_argument("--misread", default=str(ROOT / "demo" / "images" / "horse.png"),
                   help="a picture the model misreads, for the 'it is' screenshot (uploaded as frame_0042 + its "
                        "extension, a name that says nothing: the correction, not the name, ranks it)")
    p.add_argument("--it-is", default="horse", help="what that picture is")
    p.add_argument("--out", default=str(ROOT / "docs"))
    args = p.parse_args()

    import torch
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from soundlib.models import load_model
    from soundlib.serve.app import background, create_app
    from soundlib.serve.engine import Engine
    from soundlib.store import open_store
    from tests.browser import start_chromium

    torch.set_num_threads(1)
    out = Path(args.out)
    tmp = Path(tempfile.mkdtemp(prefix="soundlib-shots-"))
    with open_store(db=args.db, collection=args.collection) as store:
        engine = Engine(load_model(store.recorded_model_path()), store)
        with background(create_app(engine)) as url:
            d = start_chromium(tmp / "profile", tmp / "downloads")
            wait = WebDriverWait(d, 120, poll_frequency=0.1)
            js = d.execute_script

            def upload(path: str) -> None:
                js("document.body.dataset.rows = ''; document.getElementById('files').value = ''")
                d.find_element(By.ID, "files").send_keys(str(Path(path).resolve()))
                wait.until(lambda d: js("return document.body.dataset.rows || null"))

            def settled() -> None:  # heatmap, thumbnails and waveforms loaded
                wait.until(lambda d: js("return [...document.images].every(i => !i.src || (i.complete && "
                                        "i.naturalWidth > 0))"))

            try:
                d.set_window_size(1400, 1000)
                d.get(url + "/")
                wait.until(lambda d: "sounds" in d.find_element(By.ID, "library").text)
                upload(args.picture)  # warm-up: the first query pays for loading the backbone
                upload(args.picture)
                body = d.find_element(By.TAG_NAME, "body")
                for row in d.find_elements(By.CSS_SELECTOR, "#rows .row")[:3:2]:
                    row.find_element(By.CLASS_NAME, "pick").click()
                body.send_keys(Keys.ARROW_DOWN)
                # playing (the auditioned row may be a short sound that has ended by now)
                wait.until(lambda d: js("const p = document.getElementById('player'); "
                                        "return p.played.length > 0 && p.played.end(0) > p.played.start(0)"))
                settled()
                d.save_screenshot(str(out / "serve-picture.png"))
                if args.video:
                    body.send_keys(Keys.SPACE)
                    upload(args.video)
                    settled()
                    d.save_screenshot(str(out / "serve-lacks.png"))  # the combined ranking: "none as parrot"
                    frames = d.find_elements(By.CSS_SELECTOR, "#strip .frame[data-index]")
                    frames[min(2, len(frames) - 1)].click()
                    settled()
                    d.save_screenshot(str(out / "serve-video.png"))
                body.send_keys(Keys.SPACE)
                unnamed = tmp / ("frame_0042" + Path(args.misread).suffix)
                shutil.copyfile(args.misread, unnamed)
                upload(str(unnamed))
                js("document.body.dataset.rows = ''")
                d.find_element(By.ID, "as").send_keys(args.it_is, Keys.ENTER)
                wait.until(lambda d: js("return document.body.dataset.rows || null")
                           and d.find_element(By.ID, "told").text)
                settled()
                d.save_screenshot(str(out / "serve-as.png"))
            finally:
                d.quit()
    print(f"wrote {out}/serve-*.png")


if __name__ == "__main__":
    main()
