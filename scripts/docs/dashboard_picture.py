"""Make the dashboard picture of the docs (docs/images/dashboard.png).

    python scripts/docs/dashboard_picture.py [PNG] [--seconds S]

Starts a LocalCluster of four engines and gives it a minute of mixed work
(waves of load-balanced tasks, arrays pushed and pulled on the data channel,
one task that fails), then, with two engines busy on a long command, opens
the dashboard in headless Chromium (Debian's chromium and chromium-driver,
scripts/ci/chromium.sh) and saves a screenshot of the whole page.
"""
import argparse
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def work(cluster, seconds, stop):
    """Tasks in waves and data both ways, for ``seconds`` or until ``stop``."""
    import numpy

    from ipkernel.task import StringTask

    mec = cluster.multiengine_client(progress=False)
    tc = cluster.task_client()
    tc.run(StringTask("raise ValueError('a task that fails, shown with its traceback')"))
    deadline = time.monotonic() + seconds
    wave = 0
    while time.monotonic() < deadline and not stop.is_set():
        wave += 1
        size = 200 if wave % 3 else 1200
        tc.barrier(tc.run_many([StringTask("x = sum(range(20000))") for _ in range(size)]))
        if wave % 2:
            mec.push({"block": numpy.ones(2_000_000)}, targets=[0, 1])
            mec.pull("block", targets=0)
        time.sleep(0.5)
    # two engines busy computing for a while, as the picture shows them
    mec.execute("import time\nend = time.time() + 60\nwhile time.time() < end:\n"
                "    sum(range(10000))", targets=[0, 1], block=False)
    return mec, tc


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1400,1100",
                     "--hide-scrollbars"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("png", nargs="?", default=str(ROOT / "docs" / "images" / "dashboard.png"))
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="how long the cluster works before the picture")
    args = parser.parse_args()

    from selenium.webdriver.common.by import By

    from ipkernel.cluster import LocalCluster

    with LocalCluster(n=4) as cluster:
        driver = browser()
        try:
            driver.get(cluster.dashboard_url)   # open all along, as a user would
            stop = threading.Event()
            mec, tc = work(cluster, args.seconds, stop)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(driver.find_elements(
                    By.CSS_SELECTOR, 'tr.engine-row[data-state="busy"]')) < 2:
                time.sleep(0.2)
            time.sleep(3)   # usage samples of the busy engines
            Path(args.png).write_bytes(driver.get_screenshot_as_png())
            print(f"wrote {args.png}")
            mec.close()
            tc.close()
        finally:
            driver.quit()


if __name__ == "__main__":
    main()
