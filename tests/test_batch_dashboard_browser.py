"""The dashboard's batch pages in a real browser (headless Chromium via Selenium) against the real
service (`plena-serve` in a subprocess, PLENA_API_BATCH_ROOT set): the batches list, a batch's
result table (numbers equal to the API's rows, rows linked to their runs) and the comparison of
two batches picked in the list's form (deltas equal to the API's numbers, regressions flagged)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest

from tests.service_util import serve
from tests.test_dashboard_browser import Browser  # skips when Chromium is missing

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "linear"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """plena-serve with a batch root holding two versions of the linear example's program."""
    root = tmp_path_factory.mktemp("batch-dashboard")
    inputs = root / "inputs"
    for version in ("base", "new"):
        (inputs / version).mkdir(parents=True)
    asm = (EXAMPLE / "program.asm").read_text()
    (inputs / "base" / "linear.asm").write_text(asm)
    # The "new compiler" scales 8 rows instead of 4: more V_MUL_VF, more cycles.
    slower = asm.replace("C_LOOP_START gp5, 4\nV_MUL_VF", "C_LOOP_START gp5, 8\nV_MUL_VF")
    assert slower != asm
    (inputs / "new" / "linear.asm").write_text(slower)
    for name in ("hbm.bin", "fp_sram.bin"):
        shutil.copy(EXAMPLE / name, inputs / name)
    with serve(root, PLENA_API_BATCH_ROOT=str(inputs)) as base:
        yield base


def _run_batch(api: httpx.Client, version: str) -> dict:
    manifest = {"batch": {"name": version},
                "jobs": [{"program": f"{version}/linear.asm", "hbm": "hbm.bin", "fpsram": "fp_sram.bin"}],
                "grid": {"hbm_model": ["hbm2", "analytic"]}}
    r = api.post("/v1/batches", json={"manifest": manifest})
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 120
    while (body := api.get(f"/v1/batches/{r.json()['id']}").json())["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert body["state"] == "finished" and body["ok"] == 2
    return body


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path)
    try:
        yield b
    finally:
        b.driver.quit()


def _loaded(browser: Browser, url: str | None = None) -> None:
    if url is not None:
        browser.driver.get(url)
    browser.until(lambda: browser.js("return document.readyState") == "complete")


def _follow(browser: Browser, element) -> None:
    """Click a link or submit button and wait for the next page: the old page is marked first, since
    its readyState is already "complete" while the browser is still fetching the new one."""
    browser.js("window.__leaving = true")
    element.click()
    browser.until(lambda: browser.js("return window.__leaving !== true && document.readyState === 'complete'"))


def test_batch_pages(service, browser):
    with httpx.Client(base_url=service, timeout=60) as api:
        old = _run_batch(api, "base")
        new = _run_batch(api, "new")
    # The list: both batches, newest first, with their counts.
    _loaded(browser, f"{service}/batches")
    rows = browser.all("#batches-table tbody tr")
    assert [r.get_attribute("data-batch-id") for r in rows] == [new["id"], old["id"]]
    assert [c.text for c in rows[1].find_elements(By.CSS_SELECTOR, "td")][3:7] == ["finished", "2", "2", "2"]
    browser.check_clean(service)
    # A batch's table: the API's numbers, each row linked to its run page.
    _follow(browser, browser.find(f'a[href="/batches/{old["id"]}"]'))
    table = {r.get_attribute("data-job-id"): r for r in browser.all("#batch-rows tbody tr")}
    assert set(table) == {row["job_id"] for row in old["rows"]}
    for row in old["rows"]:
        assert table[row["job_id"]].find_element(By.CSS_SELECTOR, "td.cycles").text == f"{row['cycles']:,}"
    browser.check_clean(service)
    run_id = old["rows"][0]["run_id"]
    table[old["rows"][0]["job_id"]].find_element(By.CSS_SELECTOR, f'a[href="/runs/{run_id}"]').click()
    browser.wait_rendered()
    assert run_id in browser.driver.current_url
    # Compare the two from the list's form, programs matched by name (the code changed).
    _loaded(browser, f"{service}/batches")
    Select(browser.find("#compare-base")).select_by_value(old["id"])
    Select(browser.find("#compare-new")).select_by_value(new["id"])
    Select(browser.find("#compare-match")).select_by_value("name")
    threshold = browser.find("#compare-threshold")
    threshold.clear()
    threshold.send_keys("0.1%")      # four more V_MUL_VF: a few cycles of ~1,400
    _follow(browser, browser.find("#compare-submit"))
    assert browser.find("#regressions").text == "2 regressions"
    deltas = sorted(b["cycles"] - a["cycles"] for a in old["rows"] for b in new["rows"]
                    if a["settings_key"] == b["settings_key"])
    shown = sorted(int(td.text.replace(",", "")) for td in browser.all("#batch-deltas td.delta"))
    assert shown == deltas and all(d > 0 for d in deltas)
    browser.check_clean(service)
    browser.shot("batch-compare")
    # By machine-code sha256 nothing matches: every job is added or removed.
    _loaded(browser, f"{service}/batches/compare?base={old['id']}&new={new['id']}")
    assert browser.find("#regressions").text == "0 regressions"
    assert len(browser.all("#jobs-added li")) == len(browser.all("#jobs-removed li")) == 2
    browser.check_clean(service)
