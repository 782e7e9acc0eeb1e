"""Tier 4: the dashboard in a real browser (issue 17).  Headless Chromium
(Debian's, driven by Selenium through ChromeDriver) loads the page of a
running LocalCluster and shows what the cluster does: both engines busy,
the tasks that ran, the failed task's traceback, the task plot; its
screenshot is not blank.  (The docs' picture is made by
scripts/docs/dashboard_picture.py, after a minute of work.)"""
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from awaiting import wait_for as poll
from tier4 import require_chromium

pytestmark = [pytest.mark.tier4, pytest.mark.timeout(240)]

WORK = Path(__file__).with_name("browser_work.py")
WAIT = 60


def wait_for(check, what):
    return poll(check, what, WAIT, interval=0.1)


def png_colours(png):
    """How many distinct byte values the image data of ``png`` holds (a blank
    page compresses to one or two)."""
    data, pos = b"", 8
    while pos < len(png):
        length = int.from_bytes(png[pos:pos + 4], "big")
        kind = png[pos + 4:pos + 8]
        if kind == b"IDAT":
            data += png[pos + 8:pos + 8 + length]
        pos += 12 + length
    return len(set(zlib.decompress(data)))


@pytest.fixture
def browser():
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})   # the page's console
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def busy_cluster(tmp_path):
    url_file, release = tmp_path / "url", tmp_path / "release"
    work = subprocess.Popen([sys.executable, str(WORK), str(url_file), str(release)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = work.stdout.readline()
        assert line.strip() == "BUSY", line + work.stdout.read()
        yield url_file.read_text().strip(), release, work
    finally:
        release.write_text("go")
        Path(f"{release}.stop").write_text("stop")
        try:
            work.wait(timeout=60)
        except subprocess.TimeoutExpired:
            work.kill()
            work.wait()
        work.stdout.close()


def test_the_page_shows_the_cluster_at_work(browser, busy_cluster, tmp_path):
    from selenium.webdriver.common.by import By

    url, release, work = busy_cluster
    browser.get(url)

    def text(css):
        found = browser.find_elements(By.CSS_SELECTOR, css)
        return found[0].text if found else None

    busy = wait_for(lambda: len(browser.find_elements(
        By.CSS_SELECTOR, 'tr.engine-row[data-state="busy"]')) == 2 or None,
        "both engine rows to show busy")
    assert busy
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.engine-row")
    assert [r.get_attribute("data-engine-id") for r in rows] == ["0", "1"]
    assert all("execute(" in r.find_element(By.CSS_SELECTOR, "td.command").text for r in rows)
    wait_for(lambda: text("#tasks-succeeded") == "30" and text("#tasks-failed") == "1",
             "the task counts 30 succeeded, 1 failed")
    tracebacks = wait_for(lambda: [e.text for e in browser.find_elements(
        By.CSS_SELECTOR, "li.error pre.traceback") if "the browser sees me" in e.text],
        "the failed task's traceback")
    assert "ValueError" in tracebacks[0] and "Traceback" in tracebacks[0]
    where = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "li.error .error-where")]
    assert where == ["[task 30]"], where   # once, as the task (not again as its engine's apply)

    def usage_shown():
        cells = [(r.find_element(By.CSS_SELECTOR, "td.rss").text,
                  r.find_element(By.CSS_SELECTOR, "td.cpu").text)
                 for r in browser.find_elements(By.CSS_SELECTOR, "tr.engine-row")]
        return len(cells) == 2 and all("iB" in m and "%" in c for m, c in cells) and cells
    usage = wait_for(usage_shown, "each engine's memory and CPU")
    assert all(float(c.split()[0]) >= 0 for _, c in usage)
    assert browser.find_elements(By.CSS_SELECTOR, "#task-plot canvas")

    def samples():
        return [int(browser.find_element(By.CSS_SELECTOR, plot).get_attribute("data-samples")
                    or 0) for plot in ("#task-plot", "#channel-plot")]
    before = samples()
    # a sample a second comes in the updates; the plots add them to what they hold
    wait_for(lambda: all(n >= b + 2 for n, b in zip(samples(), before)),
             "the plots to grow by two samples")
    uses = wait_for(lambda: [e.text for e in browser.find_elements(
        By.CSS_SELECTOR, "tr.client-row td.uses")] or None, "the clients' rows")
    assert {"multi-engine", "tasks"} <= {u for cell in uses for u in cell.split(", ")}, uses
    snapshots = int(browser.find_element(By.TAG_NAME, "body").get_attribute("data-snapshots"))
    assert snapshots >= 1

    png = browser.get_screenshot_as_png()
    (tmp_path / "dashboard.png").write_bytes(png)
    assert png.startswith(b"\x89PNG") and png_colours(png) > 40

    release.write_text("go")   # the engines finish their command: the page shows them idle
    wait_for(lambda: len(browser.find_elements(
        By.CSS_SELECTOR, 'tr.engine-row[data-state="idle"]')) == 2 or None,
        "both engine rows to show idle")
    # the failed task came in the first snapshot; the updates since keep it
    where = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "li.error .error-where")]
    assert where == ["[task 30]"], where
    errors = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert not errors, errors   # no script or loading error on the page all along
    Path(f"{release}.stop").write_text("stop")
    assert work.wait(timeout=60) == 0
