"""``soundlib serve`` at scale: one-picture queries through the HTTP API of a real server, and in the browser.

The library is bench/query.py's synthetic 200,000-window collection (``--windows N``; built once and cached under
``bench/.cache/query-N``), with the pretrained default family (untrained seeded heads: weights do not change
speed) and bench/query.py's 640 x 480 JPEG as the picture.

Measured in one run, the two interleaved query by query so load spikes hit both alike:

- **API**: ``POST /api/query`` (multipart upload of the JPEG, k = 10) to a real uvicorn server on a free loopback
  port (``soundlib.serve.app.background``: the same app and server ``soundlib serve`` runs), from an ``httpx``
  client in the same process; p50 / p95 wall time from request to parsed JSON. Goal: p50 < 100 ms warm.
- **baseline**: the library call ``soundlib.recommend.recommend([jpeg], model, store, k=10)`` in the same process
  on the same store (what ``soundlib query`` does once the model is loaded).
- the server's own split of an API query (decode + upload handling vs embed + search), from its answer.
- **browser**: headless Chromium (Debian's ``chromium``) on the page: from choosing the file in the file input to
  the result rows drawn (``performance.now()`` in the page around upload, answer and DOM update; waveforms are
  fetched afterwards and are not included: the synthetic library has no sound files). Baseline: the API p50 of
  the same run. Skipped (with a note) when Chromium is missing.

Run: ``.venv/bin/python bench/serve.py [--quick] [--windows N]`` -> ``bench/results/serve.json``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import CACHE_DIR, PRETRAINED, ROOT, Result, median, parser, percentile, saved_model

GOAL_P50_MS = 100.0


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--windows", type=int, default=200_000, help="library size in windows (default 200,000)")
    args = p.parse_args()
    windows = 20_000 if args.quick and args.windows == 200_000 else args.windows
    n_api, n_browser = (10, 3) if args.quick else (60, 15)
    res = Result("serve", args.quick, params={"windows": windows, "k": 10, "api_queries": n_api,
                                              "browser_queries": n_browser, "picture": "640x480 JPEG",
                                              "vectors": "synthetic clustered unit vectors (bench/query.py)"})
    import query as qb

    from soundlib.serve.app import background, create_app
    from soundlib.serve.config import ServeConfig
    from soundlib.serve.engine import Engine
    from soundlib.store import open_store

    loaded = saved_model(PRETRAINED[0], CACHE_DIR / "models", **PRETRAINED[1])
    folder = CACHE_DIR / f"query-{windows}"
    _, built = qb.open_library(windows, loaded, folder)
    res.details["collection"] = built
    image = qb.write_image(CACHE_DIR / "query-image.jpg")
    with open_store(db=folder / "chroma", collection=qb.COLLECTION) as store:
        engine = Engine(loaded, store, ServeConfig(cache_dir=CACHE_DIR / "serve-cache"))
        with background(create_app(engine)) as url:
            api = bench_api(res, url, store, loaded, image, n_api)
            bench_browser(res, url, image, n_browser, api)
    res.finish()


def bench_api(res: Result, url: str, store: Any, loaded: Any, image: Path, n: int) -> float:
    """API p50/p95 vs the library call, interleaved; returns the API p50 in ms."""
    import httpx

    from soundlib.recommend import recommend

    data = image.read_bytes()
    api, lib, split = [], [], []
    with httpx.Client(base_url=url, timeout=60) as client:
        def post() -> dict:
            r = client.post("/api/query", files={"files": (image.name, data, "image/jpeg")}, data={"k": "10"})
            r.raise_for_status()
            return r.json()

        for _ in range(3):  # warm-up: index loaded, model paths taken once
            post()
            recommend([image], loaded, store, k=10)
        for _ in range(n):
            a = time.perf_counter()
            doc = post()
            api.append(time.perf_counter() - a)
            split.append(doc["seconds"])
            a = time.perf_counter()
            want = recommend([image], loaded, store, k=10)
            lib.append(time.perf_counter() - a)
        same = [r["window"] for r in doc["results"]] == [h.id for h in want.results]
    a50, l50 = median(api) * 1000, median(lib) * 1000
    res.add("API one-picture query p50 (POST /api/query, k=10)", a50, "ms", baseline="recommend() library call",
            baseline_value=l50, ratio=a50 / l50, goal=f"< {GOAL_P50_MS:.0f} ms", met=a50 < GOAL_P50_MS,
            note=f"p95 {percentile(api, 95) * 1000:.1f} ms vs library p95 {percentile(lib, 95) * 1000:.1f} ms; "
                 f"real uvicorn server on loopback, httpx client; server split: decode "
                 f"{median([s['decode'] for s in split]) * 1000:.1f} ms, embed + search "
                 f"{median([s['rank'] for s in split]) * 1000:.1f} ms; same ranking as the library call: {same}")
    res.add("API one-picture query p95", percentile(api, 95) * 1000, "ms", baseline="recommend() p95",
            baseline_value=percentile(lib, 95) * 1000, ratio=percentile(api, 95) / percentile(lib, 95))
    res.details["api_ms"] = [x * 1000 for x in api]
    res.details["library_ms"] = [x * 1000 for x in lib]
    res.details["server_split_s"] = split
    return a50


def bench_browser(res: Result, url: str, image: Path, n: int, api_p50: float) -> None:
    """Upload-to-rows in headless Chromium (file input -> rows in the DOM), measured by the page itself."""
    sys.path.insert(0, str(ROOT))
    from tests.browser import CHROMEDRIVER, CHROMIUM, start_chromium

    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        res.add("browser upload-to-rows p50", float("nan"), "ms", note="skipped: chromium / chromedriver missing")
        return
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base = Path(tempfile.mkdtemp(prefix="soundlib-bench-chromium-"))
    driver = start_chromium(base / "profile", base / "downloads")
    times: list[float] = []
    try:
        driver.get(url + "/")
        WebDriverWait(driver, 60).until(lambda d: "sounds" in d.find_element(By.ID, "library").text)
        for i in range(n + 2):
            driver.execute_script("delete document.body.dataset.lastQueryMs; document.getElementById('files').value=''")
            driver.find_element(By.ID, "files").send_keys(str(image))
            WebDriverWait(driver, 60, poll_frequency=0.02).until(
                lambda d: d.execute_script("return document.body.dataset.lastQueryMs ?? null") is not None)
            ms = float(driver.execute_script("return document.body.dataset.lastQueryMs"))
            rows = len(driver.find_elements(By.CSS_SELECTOR, "#rows .row"))
            if rows != 10:
                raise RuntimeError(f"the page drew {rows} rows, expected 10")
            if i >= 2:  # two warm-up uploads
                times.append(ms)
    finally:
        driver.quit()
    b50 = median(times)
    res.add("browser upload-to-rows p50 (headless Chromium)", b50, "ms", baseline="API p50 (this run)",
            baseline_value=api_p50, ratio=b50 / api_p50,
            note=f"p95 {percentile(times, 95):.1f} ms; from the file input's change event to 10 rows in the DOM "
                 "(performance.now() in the page); the browser's part is the difference to the API")
    res.details["browser_ms"] = times


if __name__ == "__main__":
    main()
