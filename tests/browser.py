"""Headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by selenium, for the page's tests.

:func:`chromium_or_skip` skips with one line when the browser is missing, and fails instead when ``CI`` is set
(CI installs it: ``.ci/run``). :func:`start_chromium` starts a session with a fresh profile and a download folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: Flags for a root, offline, headless machine (without the network ones Chromium stalls on a closed network).
FLAGS = ("--headless", "--no-sandbox", "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-gpu", "--mute-audio", "--window-size=1400,900")


def chromium_or_skip() -> None:
    """Skip (one line) when Chromium, chromedriver or selenium is missing; under ``CI`` fail instead."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (os.path.exists(p) or shutil.which(Path(p).name))]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if missing:
        why = f"browser tests need {', '.join(missing)} (apt-get install -y chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(why, pytrace=False)
        pytest.skip(why, allow_module_level=True)


def start_chromium(profile: Path, downloads: Path) -> Any:
    """A headless Chromium session with the profile folder ``profile`` (new, empty) and downloads to
    ``downloads`` (no prompt)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile}")
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    return driver
