"""Issue 13: the explorer in a real browser (headless Chromium from Debian, driven by selenium)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .system import headless_chromium
from .web_library import AIFF_RELPATH, ThreadServer, explorer_library

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def _chromium(download_dir: Path):
    driver = headless_chromium(
        "--window-size=1400,1000",
        "--autoplay-policy=no-user-gesture-required",
        prefs={"download.default_directory": str(download_dir), "download.prompt_for_download": False},
    )
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)})
    return driver


def _playing(driver, key: str, beyond: float = 0.5) -> bool:
    """The page's <audio> plays this track's URL and its clock has moved past ``beyond`` seconds."""
    return driver.execute_script(
        "const a = document.getElementById('player');"
        "return a.src.endsWith('/audio/' + encodeURIComponent(arguments[0])) && !a.paused && a.error === null && a.currentTime > arguments[1];",
        key,
        beyond,
    )


def _click(driver, css: str) -> bool:
    """Click the element now matching ``css`` (False, to be retried, while the page redraws it)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        driver.find_element(By.CSS_SELECTOR, css).click()
        return True
    except (NoSuchElementException, StaleElementReferenceException):
        return False


def test_search_open_play_click_the_map_and_download_a_playlist(styled_library, tmp_path_factory):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from music_pipeline.web.app import create_app
    from music_pipeline.web.explorer import LiveExplorer

    library, data = explorer_library(styled_library, tmp_path_factory.mktemp("web_ui"))
    downloads = tmp_path_factory.mktemp("downloads")
    live = LiveExplorer(data)
    tracks = live.current.tracks
    aiff_key = tracks.loc[tracks["relpath"] == AIFF_RELPATH, "key"].item()
    drone_key = tracks.loc[tracks["relpath"] == "drone/drone_03.wav", "key"].item()
    ARTIFACTS.mkdir(exist_ok=True)
    t0 = time.time()
    with ThreadServer(create_app(live)) as server:
        driver = _chromium(downloads)
        wait = WebDriverWait(driver, 30, poll_frequency=0.2)
        try:
            # 1. type a query; the results appear as you type; open one
            driver.get(server.url + "/")
            box = wait.until(lambda d: d.find_element(By.ID, "search"))
            box.send_keys("aiff_pro")
            result = wait.until(
                lambda d: d.find_element(By.CSS_SELECTOR, f"#search-results li.result[data-track='{aiff_key}']")
            )
            result.click()
            wait.until(
                lambda d: (
                    d.find_elements(By.CSS_SELECTOR, "#genre")
                    and "pulse_aiff_probe" in d.find_element(By.CSS_SELECTOR, ".track-head h2").text
                )
            )
            assert "Predicted" in driver.find_element(By.ID, "genre").text
            assert any(level in driver.find_element(By.ID, "difficulty").text for level in ("Easy", "Medium", "Hard"))
            assert len(driver.find_elements(By.CSS_SELECTOR, "#similar ol.tracks li")) == 5
            # 2. press play: the AIFF reaches the browser transcoded, and the audio clock advances
            driver.find_element(By.CSS_SELECTOR, ".track-head button.play").click()
            wait.until(lambda d: _playing(d, aiff_key))
            driver.save_screenshot(str(ARTIFACTS / "explorer_track.png"))

            # 3. the map: click a point = play it and open its page
            driver.get(server.url + "/#/")
            canvas = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "canvas#map"))
            point = wait.until(
                lambda d: d.execute_script("return window.mapPoint && window.mapPoint(arguments[0])", drone_key)
            )
            ActionChains(driver).move_to_element_with_offset(
                canvas, round(point["x"] - point["width"] / 2), round(point["y"] - point["height"] / 2)
            ).click().perform()
            wait.until(lambda d: d.execute_script("return location.hash") == f"#/track/{drone_key}")
            wait.until(lambda d: _playing(d, drone_key, 0.3))
            wait.until(lambda d: "drone_03" in d.find_element(By.CSS_SELECTOR, ".track-head h2").text)

            # 4. a radio from that track, downloaded as M3U8
            driver.get(f"{server.url}/#/radio?seed={drone_key}")
            wait.until(lambda d: _click(d, "a.dl-m3u8"))
            deadline = time.time() + 20
            files = []
            while time.time() < deadline and not files:
                files = [p for p in downloads.iterdir() if p.suffix == ".m3u8"]
                time.sleep(0.2)
            assert files, f"no playlist downloaded: {list(downloads.iterdir())}"
            driver.save_screenshot(str(ARTIFACTS / "explorer_radio.png"))
        finally:
            driver.quit()
    lines = files[0].read_text(encoding="utf-8").splitlines()
    paths = [line for line in lines if not line.startswith("#")]
    assert lines[0] == "#EXTM3U" and len(paths) == 16  # the seed + the page's default 15
    assert paths[0] == str(library / "drone/drone_03.wav") and all(
        Path(p).is_absolute() and Path(p).is_file() for p in paths
    )
    print(f"browser walk-through in {time.time() - t0:.1f} s")
