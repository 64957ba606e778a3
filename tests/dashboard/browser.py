"""A real headless Chromium for the dashboard tests: Debian's packages, no downloads.

`make browser` (run by `make test`) installs `chromium` and `chromium-driver` with apt when
the driver is missing. The driver's path is passed explicitly, so Selenium never asks its
selenium-manager for one (which would try to download a browser on a fresh machine), and
Chromium starts with every background fetch off, so a test talks to the devnet alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM: Final = Path(os.environ.get("FLUX_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER: Final = Path(os.environ.get("FLUX_CHROMEDRIVER", "/usr/bin/chromedriver"))
WINDOW: Final = (1366, 1000)  # wide enough for the two-column pages in a screenshot
PAGE_LOAD_TIMEOUT_S: Final = 30
ARTIFACTS: Final = Path(__file__).resolve().parents[2] / "artifacts" / "dashboard"

CHROMIUM_FLAGS: Final = (
    "--headless",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
)


def start_chromium(profile: Path) -> webdriver.Chrome:
    """Headless Chromium with a fresh profile in `profile`; the caller must `quit()` it."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        raise RuntimeError(
            f"{', '.join(missing)} missing: run `make browser` "
            "(apt-get install -y chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    # Console messages (CSP violations among them) for the tests to read.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
    return driver


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    """Save the current page as artifacts/dashboard/<name>.png (gitignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
