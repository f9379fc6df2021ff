"""The dashboard in a real browser: headless Chromium (Debian's chromium + chromium-driver, driven
by Selenium) against the real service (`plena-serve` in a subprocess on a loopback port, with a
temporary SQLite history).

Runs are created through the API (the shipped example, the same with another HBM model, an
aborting program and, when the corpus is there, a conformance program); every page is loaded and
what it draws is checked against the API's numbers; the test clicks list -> run -> source ->
compare, uploads a program through the form and follows it to its run page, and fails on any
console error or request that leaves the service.  Screenshots of every page go to a temp dir
(printed; PLENA_SCREENSHOT_DIR overrides it).  `.ci/run` installs chromium when it is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from emulator.asm import assemble
from tests.conftest import CONFORMANCE, NO_CORPUS
from tests.service_util import serve

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "linear"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# Flags for this closed network (/work/.library/env/machines/python.md): no background requests.
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000")
ABORT_ASM = "; setup\nS_ADDI_INT gp1, gp0, 3\n; misaligned load\nH_PREFETCH_V gp1, gp0, a0, 0, 0\n"
BAD_ASM = "; broken\nS_ADDI_INT gp1, gp0, 1\nS_ADD_INTX gp1, gp2, gp3\n"
# 3,000,000+ dynamic instructions: three nested 100-trip loops around three scalar instructions.
LONG_ASM = ("; long run\nC_LOOP_START gp5, 100\nC_LOOP_START gp6, 100\nC_LOOP_START gp7, 100\n"
            "S_ADDI_INT gp1, gp1, 1\nS_ADDI_INT gp2, gp2, 2\nS_ADD_FP f1, f1, f2\n"
            "C_LOOP_END gp7\nC_LOOP_END gp6\nC_LOOP_END gp5\n")
MEM_WORDS = 2500     # a machine-code program: one `pc N` section per word, more than the view's 1000 blocks
WAIT = 60

selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[dev]')")
if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    pytest.skip("Chromium/ChromeDriver not installed (apt-get install chromium chromium-driver; .ci/run does it)",
                allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def fmt(n: int) -> str:
    return f"{n:,}"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """The real service (`plena-serve`) on a loopback port with a temporary database."""
    with serve(tmp_path_factory.mktemp("dashboard-service"), PLENA_API_RETENTION_GRACE_SECONDS="3600") as base:
        yield base


def _example_files(**extra) -> dict:
    return {"program": ("linear.asm", (EXAMPLE / "program.asm").read_bytes()),
            "hbm": ("hbm.bin", (EXAMPLE / "hbm.bin").read_bytes()),
            "fpsram": ("fp_sram.bin", (EXAMPLE / "fp_sram.bin").read_bytes()), **extra}


@pytest.fixture(scope="module")
def runs(service):
    """Runs created through the API: {name: (run, profile)}."""
    out = {}
    with httpx.Client(base_url=service, timeout=300) as api:
        def add(name, files=None, data=None, json_body=None, expect=200):
            r = api.post("/v1/runs/files", files=files, data=data) if files else api.post("/v1/runs", json=json_body)
            assert r.status_code == expect, r.text
            run = r.json() if expect == 200 else r.json()["run"]
            out[name] = (run, api.get(f"/v1/runs/{run['id']}/profile").json())

        add("hbm2", files=_example_files(), data={"tag": "example", "trace": "true"})
        add("analytic", files=_example_files(), data={"tag": "example", "trace": "true",
                                                      "overrides": json.dumps({"hbm_model": "analytic"})})
        add("abort", json_body={"program": {"asm": ABORT_ASM, "name": "abort"}, "tag": "abort"}, expect=400)
        add("long", json_body={"program": {"asm": LONG_ASM, "name": "long"}, "tag": "long", "trace": True,
                               "settings": {"overrides": {"MAX_LOOP_INSTRUCTIONS": 1 << 40}}})
        mem = assemble("".join(f"S_ADDI_INT gp1, gp1, {i % 7}\n" for i in range(MEM_WORDS))).to_mem_text()
        add("mem", files={"program": ("words.mem", mem.encode())}, data={"tag": "mem"})
        if CONFORMANCE is not None:
            case = CONFORMANCE / "aten_ffn"
            files = {"program": ("aten_ffn.asm", (case / "program.asm").read_bytes())}
            for key, name in (("settings", "settings.toml"), ("hbm", "hbm.bin"), ("fpsram", "fp_sram.bin"),
                              ("intsram", "int_sram.bin")):
                if (case / name).exists():
                    files[key] = (name, (case / name).read_bytes())
            add("corpus", files=files, data={"tag": "corpus", "trace": "true"})
    return out


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    path = Path(os.environ.get("PLENA_SCREENSHOT_DIR") or tmp_path_factory.mktemp("dashboard-screenshots"))
    path.mkdir(parents=True, exist_ok=True)
    print(f"\ndashboard screenshots: {path}")
    return path


class Browser:
    """A Chromium session that checks, after every step, that the page logged no console error
    and loaded nothing from anywhere but `origin`."""

    def __init__(self, shots: Path):
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for flag in CHROMIUM_FLAGS:
            opts.add_argument(flag)
        opts.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='plena-chromium-')}")
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        self.driver.set_page_load_timeout(WAIT)
        self.shots = shots

    def open(self, url: str) -> None:
        self.driver.get(url)
        self.wait_rendered()

    def wait_rendered(self) -> None:
        WebDriverWait(self.driver, WAIT).until(
            lambda d: d.execute_script("return document.readyState === 'complete' && "
                                       "document.body.dataset.rendered === '1'"))

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def find(self, css: str):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def until(self, predicate, timeout: float = WAIT):
        return WebDriverWait(self.driver, timeout).until(lambda d: predicate())

    def check_clean(self, origin: str, allowed: tuple[str, ...] = (), allowed_status: tuple[int, ...] = ()) -> None:
        """No console error (but the `allowed` substrings), every resource from `origin`, and no
        request answered with an error status (but `allowed_status`)."""
        errors = [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"
                  and not any(a in e["message"] for a in allowed)]
        assert errors == [], f"console errors on {self.driver.current_url}: {errors}"
        entries = self.js("return performance.getEntriesByType('resource').map(e => [e.name, e.responseStatus || 0])")
        outside = [u for u, _ in entries if not (u.startswith(origin) or u.startswith("data:"))]
        assert outside == [], f"requests outside {origin}: {outside}"
        failed = [(u, st) for u, st in entries if st >= 400 and st not in allowed_status]
        assert failed == [], f"failed requests on {self.driver.current_url}: {failed}"

    def shot(self, name: str) -> None:
        height = self.js("return Math.min(document.documentElement.scrollHeight, 4000)")
        self.driver.set_window_size(1400, max(height, 800))
        self.driver.save_screenshot(str(self.shots / f"{name}.png"))
        self.driver.set_window_size(1400, 1000)


@pytest.fixture(scope="module")
def browser(shots):
    b = Browser(shots)
    yield b
    b.driver.quit()


def plotted(browser: Browser, div_id: str) -> list[dict]:
    """The traces Plotly drew into #div_id (its data), after checking it rendered SVG marks."""
    marks = browser.js(f"return document.querySelectorAll('#{div_id} .point path, #{div_id} g.slice, "
                       f"#{div_id} .indicatorlayer path, #{div_id} .hm image').length")
    assert marks > 0, f"#{div_id} has no drawn marks"
    return browser.js(f"return document.getElementById('{div_id}').data.map(t => "
                      "({type: t.type, name: t.name, x: Array.from(t.x || []), y: Array.from(t.y || []), "
                      "ids: Array.from(t.ids || []), values: Array.from(t.values || [])}))")


def test_runs_list_sorts_filters_and_opens_a_run(service, runs, browser):
    browser.open(f"{service}/")
    rows = browser.all("#runs-table tbody tr.run-row")
    assert len(rows) == len(runs)         # fewer than a page
    assert browser.find("#runs-count").text == f"{len(runs)} runs"
    newest = httpx.get(f"{service}/dashboard/api/runs").json()["items"]
    assert [r.get_attribute("data-id") for r in rows] == [r["id"] for r in newest]
    browser.shot("runs")
    # Sort by cycles (descending), then filter by tag.
    browser.find('th[data-sort="cycles"]').click()
    browser.until(lambda: "sort=cycles" in browser.driver.current_url)
    browser.wait_rendered()
    by_cycles = httpx.get(f"{service}/dashboard/api/runs", params={"sort": "cycles"}).json()["items"]
    browser.until(lambda: [r.get_attribute("data-id") for r in browser.all("tr.run-row")] == [r["id"] for r in by_cycles])
    assert browser.all("tr.run-row")[0].find_elements(By.CSS_SELECTOR, "td")[7].text == fmt(by_cycles[0]["cycles"])
    browser.find("#filter-tag").send_keys("example")
    browser.find("#filter-apply").click()
    browser.until(lambda: len(browser.all("tr.run-row")) == 2)
    assert {r.find_elements(By.CSS_SELECTOR, "td")[4].text for r in browser.all("tr.run-row")} == {"example"}
    assert "MLEN 64 · VLEN 64 · BLEN 4" in browser.all("tr.run-row")[0].text
    browser.check_clean(service)
    # list -> run page
    run, _ = runs["hbm2"]
    browser.find(f'tr.run-row[data-id="{run["id"]}"] a.run-link').click()
    browser.until(lambda: browser.driver.current_url.endswith(f"/runs/{run['id']}"))
    browser.wait_rendered()
    browser.check_clean(service)


def _check_run_page(browser: Browser, run: dict, profile: dict) -> None:
    cards = {c.get_attribute("data-key"): c.find_element(By.CSS_SELECTOR, ".card-value").text
             for c in browser.all(".totals .card")}
    assert cards["cycles"] == fmt(run["cycles"]) == fmt(profile["totals"]["cycles"])
    assert cards["instructions"] == fmt(run["instructions"])
    bars = plotted(browser, "chart-sections")
    top = profile["sections"][:30]
    assert [t["name"] for t in bars] == ["matrix", "vector", "scalar-int", "scalar-fp", "dma", "control"]
    assert bars[0]["y"] == [" / ".join(s["path"]) for s in reversed(top)]
    drawn = [sum(t["x"][i] for t in bars) for i in range(len(top))]
    assert drawn == [s["cycles"] for s in reversed(top)]
    sun = plotted(browser, "chart-hierarchy")[0]
    assert sun["values"][0] == profile["totals"]["cycles"]
    assert set(sun["ids"][1:]) >= {" / ".join(s["path"]) for s in profile["sections"]}
    ops = plotted(browser, "chart-opcodes")[0]
    first_op, first_row = next(iter(profile["by_opcode"].items()))
    assert ops["y"][-1] == first_op and ops["x"][-1] == first_row["cycles"]
    units = plotted(browser, "chart-units")[0]
    assert units["y"] == [profile["units"][u]["utilisation"] for u in units["x"]]
    assert len(plotted(browser, "chart-peaks")) == 2
    table = browser.all("#sections-table tbody tr")
    first = table[0].find_elements(By.CSS_SELECTOR, "td")
    assert first[0].text == profile["sections"][0]["name"] and first[1].text == fmt(profile["sections"][0]["cycles"])


def test_run_page_charts_and_click_to_source(service, runs, browser):
    run, profile = runs["hbm2"]
    browser.open(f"{service}/runs/{run['id']}")
    _check_run_page(browser, run, profile)
    assert browser.all("#run-error") == []
    browser.shot("run")
    browser.check_clean(service)
    # Click the largest section's bar: the source view opens at its lines.
    biggest = " / ".join(profile["sections"][0]["path"])
    bar = browser.js("return Array.from(document.querySelectorAll('#chart-sections .point path'))"
                     ".filter(p => p.getBoundingClientRect().width > 2)"
                     ".sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top)[0]")
    ActionChains(browser.driver).move_to_element(bar).click().perform()
    browser.until(lambda: "/source#section=" in browser.driver.current_url)
    browser.wait_rendered()
    focused = browser.until(lambda: browser.all("details.src-block.focused"))
    assert all(d.get_attribute("data-path").startswith(biggest) for d in focused)
    assert focused[0].get_attribute("open") == "true"
    browser.check_clean(service)


def test_source_view_counts_cycles_and_folds(service, runs, browser):
    run, profile = runs["hbm2"]
    src = profile["source"]
    browser.open(f"{service}/runs/{run['id']}/source")
    browser.find("#expand-all").click()
    lines = browser.all(".src-blocks .src-line")
    assert len(lines) == len(src["lines"])
    hot_pc = max(range(len(src["pc_cycles"])), key=lambda pc: (src["pc_cycles"][pc], -pc))
    hot_line = src["pc_line"][hot_pc]
    row = browser.find(f"#L{hot_line}")
    cells = row.find_elements(By.CSS_SELECTOR, "span")
    assert cells[1].text == fmt(src["pc_count"][hot_pc]) and cells[2].text == fmt(src["pc_cycles"][hot_pc])
    assert row.find_element(By.CSS_SELECTOR, "code").text == src["lines"][hot_line - 1]
    first_hot = browser.find("#hot-lines li a")
    assert first_hot.get_attribute("data-line") == str(hot_line)
    browser.shot("source")
    browser.find("#collapse-all").click()
    assert browser.all("details.src-block[open]") == []
    first_hot.click()
    browser.until(lambda: "flash" in browser.find(f"#L{hot_line}").get_attribute("class"))
    assert len(browser.all("details.src-block[open]")) == 1
    browser.check_clean(service)


def test_timeline_lanes_zoom_and_trace_download(service, runs, browser):
    run, profile = runs["hbm2"]
    browser.open(f"{service}/runs/{run['id']}/timeline")
    traces = plotted(browser, "chart-timeline")
    lanes = {y for t in traces for y in t["y"]}
    assert {"matrix", "dma", "sections 0"} <= lanes
    assert browser.find("#chart-timeline").get_attribute("data-mode") == "slices"
    browser.shot("timeline")
    # Zoom in (what a drag does): the page fetches that window.
    browser.js("Plotly.relayout('chart-timeline', {'xaxis.range[0]': 100, 'xaxis.range[1]': 400})")
    browser.until(lambda: browser.find("#timeline-info").text.startswith("cycles 100–400"))
    href = browser.find("#trace-download").get_attribute("href")
    trace = httpx.get(href).json()
    assert trace["otherData"]["cycles"] == run["cycles"]
    browser.check_clean(service)


def test_timeline_of_a_3m_instruction_run_bins_then_zooms_to_slices(service, runs, browser):
    run, profile = runs["long"]
    assert run["instructions"] > 3_000_000
    browser.open(f"{service}/runs/{run['id']}/timeline")
    assert browser.find("#chart-timeline").get_attribute("data-mode") == "bins"
    heat = next(t for t in plotted(browser, "chart-timeline") if t["type"] == "heatmap")
    assert {"scalar-int", "scalar-fp", "control"} <= set(heat["y"])
    assert "aggregated" in browser.find("#timeline-info").text        # the trace's exact prefix is named
    browser.js("Plotly.relayout('chart-timeline', {'xaxis.range[0]': 5000, 'xaxis.range[1]': 5600})")
    browser.until(lambda: browser.find("#chart-timeline").get_attribute("data-mode") == "slices")
    assert browser.find("#timeline-info").text.startswith("cycles 5,000–5,600")
    names = browser.js("return document.getElementById('chart-timeline').data"
                       ".flatMap(t => (t.customdata || []).map(c => c[0]))")
    assert {"S_ADDI_INT", "S_ADD_FP"} <= set(names)
    browser.shot("timeline-3m")
    browser.check_clean(service)


def test_machine_code_program_source_is_folded_into_line_ranges(service, runs, browser):
    run, profile = runs["mem"]
    assert profile["sections_mode"] == "pc" and len(profile["source"]["lines"]) == MEM_WORDS
    browser.open(f"{service}/runs/{run['id']}/source")
    blocks = browser.all("details.src-block")
    assert 0 < len(blocks) <= 1000
    assert blocks[0].get_attribute("data-path").startswith("lines 1–")
    target = profile["sections"][0]["path"]                     # e.g. ["pc 17"]
    browser.driver.get(f"{service}/runs/{run['id']}/source#section={'%20/%20'.join(target)}")
    browser.wait_rendered()
    line = profile["source"]["pc_line"][int(target[0].split()[1])]
    browser.until(lambda: "flash" in browser.find(f"#L{line}").get_attribute("class"))
    browser.check_clean(service)


def test_timeline_of_a_large_corpus_run_is_binned(service, runs, browser):
    if "corpus" not in runs:
        pytest.skip(NO_CORPUS)
    run, profile = runs["corpus"]
    browser.open(f"{service}/runs/{run['id']}/timeline")
    assert browser.find("#chart-timeline").get_attribute("data-mode") == "bins"
    heat = next(t for t in plotted(browser, "chart-timeline") if t["type"] == "heatmap")
    assert "matrix" in heat["y"]
    browser.open(f"{service}/runs/{run['id']}")
    _check_run_page(browser, run, profile)
    names = [n.text for n in browser.all("#sections-table a.section-link")]
    assert names[:3] == [s["name"] for s in profile["sections"][:3]]
    assert profile["sections_mode"] == "blocks"         # compiler output: first line of each comment block
    browser.shot("run-corpus")
    browser.check_clean(service)


def test_aborted_run_shows_the_error_with_pc_and_line(service, runs, browser):
    run, profile = runs["abort"]
    browser.open(f"{service}/runs/{run['id']}")
    box = browser.find("#run-error")
    err = run["error"]
    assert f"pc {err['pc']}" in box.text and f"line {err['line']}" in box.text and err["message"] in box.text
    assert box.find_element(By.CSS_SELECTOR, "pre").text == err["source"]
    browser.check_clean(service)


def test_compare_two_runs_from_the_list(service, runs, browser):
    a, _ = runs["hbm2"]
    b, _ = runs["analytic"]
    browser.open(f"{service}/?tag=example")
    for run in (a, b):
        browser.find(f'tr.run-row[data-id="{run["id"]}"] input.pick').click()
    browser.find("#compare-selected").click()
    browser.until(lambda: "/compare?" in browser.driver.current_url)
    browser.wait_rendered()
    assert browser.driver.current_url.endswith(f"/compare?a={a['id']}&b={b['id']}")   # older run is A
    expected = httpx.get(f"{service}/dashboard/api/compare", params={"a": a["id"], "b": b["id"]}).json()
    rows = browser.all("#compare-sections-table tbody tr")
    assert [r.get_attribute("data-key") for r in rows] == [s["key"] for s in expected["sections"]]
    delta = rows[0].find_elements(By.CSS_SELECTOR, "td")[3].text
    d0 = expected["sections"][0]["delta_cycles"]
    assert d0 != 0 and delta == ("+" if d0 > 0 else "") + fmt(d0)
    bars = plotted(browser, "chart-compare-sections")[0]
    assert bars["y"][-1] == expected["sections"][0]["key"] and bars["x"][-1] == d0
    cycles = browser.find('#compare-totals tr[data-key="cycles"]').text
    assert fmt(a["cycles"]) in cycles and fmt(b["cycles"]) in cycles
    browser.shot("compare")
    browser.check_clean(service)
    browser.find("a.run-B").click()
    browser.until(lambda: browser.driver.current_url.endswith(f"/runs/{b['id']}"))
    browser.wait_rendered()
    # B's run page offers the comparison with the previous run of the same program (A).
    assert browser.find("#link-previous").get_attribute("href").endswith(f"/compare?a={a['id']}&b={b['id']}")
    browser.check_clean(service)


def test_upload_a_program_and_land_on_its_run_page(service, runs, browser):
    before = httpx.get(f"{service}/v1/runs").json()["total"]
    browser.open(f"{service}/new")
    browser.find("#f-program").send_keys(str(EXAMPLE / "program.asm"))
    browser.find("#f-hbm").send_keys(str(EXAMPLE / "hbm.bin"))
    browser.find("#f-fpsram").send_keys(str(EXAMPLE / "fp_sram.bin"))
    browser.find("#f-tag").send_keys("uploaded")
    browser.find('#f-sections option[value="comments"]').click()
    browser.shot("new")
    browser.find("#upload-run").click()
    browser.until(lambda: "/runs/" in browser.driver.current_url)
    browser.wait_rendered()
    run_id = browser.driver.current_url.rsplit("/", 1)[1]
    run = httpx.get(f"{service}/v1/runs/{run_id}").json()
    assert run["tag"] == "uploaded" and run["cycles"] == runs["hbm2"][0]["cycles"]
    profile = httpx.get(f"{service}/v1/runs/{run_id}/profile").json()
    assert profile["sections_mode"] == "comments"          # the form's choice reached the service
    _check_run_page(browser, run, profile)
    assert "sections: comments" in browser.find(".settings-line").text
    assert httpx.get(f"{service}/v1/runs").json()["total"] == before + 1
    browser.check_clean(service)


def test_a_bad_upload_shows_the_service_error_and_stores_nothing(service, browser, tmp_path):
    bad = tmp_path / "bad.asm"
    bad.write_text(BAD_ASM)
    expected = httpx.post(f"{service}/v1/runs/files", files={"program": ("bad.asm", BAD_ASM.encode())})
    assert expected.status_code == 422
    before = httpx.get(f"{service}/v1/runs").json()["total"]
    browser.open(f"{service}/new")
    browser.find("#f-program").send_keys(str(bad))
    browser.find("#upload-run").click()
    slot = browser.until(lambda: browser.find('.field-error[data-field="program"]').text and
                         browser.find('.field-error[data-field="program"]'))
    assert slot.text == expected.json()["detail"][0]["msg"]
    assert "/new" in browser.driver.current_url
    assert httpx.get(f"{service}/v1/runs").json()["total"] == before
    browser.shot("new-bad-upload")
    statuses = browser.js("return performance.getEntriesByType('resource').map(e => e.responseStatus || 0)")
    assert 422 in statuses              # the failed-request check below sees statuses (422 allowed here)
    browser.check_clean(service, allowed=("status of 422",), allowed_status=(422,))


def test_run_a_shipped_example_from_the_page(service, runs, browser):
    browser.open(f"{service}/new")
    browser.until(lambda: browser.find("#example-name").get_attribute("value") == "linear")
    browser.find("#example-tag").send_keys("picked")
    browser.find("#example-run").click()
    browser.until(lambda: "/runs/" in browser.driver.current_url)
    browser.wait_rendered()
    run = httpx.get(f"{service}/v1/runs/{browser.driver.current_url.rsplit('/', 1)[1]}").json()
    assert run["tag"] == "picked" and run["program_name"] == "linear" and run["cycles"] == runs["hbm2"][0]["cycles"]
    assert browser.find('.totals .card[data-key="cycles"] .card-value').text == fmt(run["cycles"])
    browser.check_clean(service)


def test_static_estimate_page(service, browser):
    expected = httpx.post(f"{service}/v1/estimate", json={"program": {"asm": (EXAMPLE / "program.asm").read_text()}},
                          timeout=120).json()
    browser.open(f"{service}/estimate")
    browser.find("#e-program").send_keys(str(EXAMPLE / "program.asm"))
    browser.find("#estimate-run").click()
    browser.until(lambda: browser.js("return document.body.dataset.estimated === '1'"))
    banner = browser.find("#estimate-banner")
    assert banner.text.startswith("Static estimate — not a run.")
    assert browser.find('.totals .card[data-key="cycles"] .card-value').text == fmt(expected["cycles"])
    assert plotted(browser, "chart-sections")
    assert len(browser.all("#source-view .src-blocks .src-line")) > 10
    browser.shot("estimate")
    browser.check_clean(service)


def test_offline_report_renders_the_same_charts(service, runs, browser, tmp_path):
    run, profile = runs["hbm2"]
    saved = tmp_path / "profile.json"
    saved.write_text(json.dumps(profile))
    report = tmp_path / "report.html"
    out = subprocess.run([sys.executable, "-m", "profiler.cli", "html", str(saved), "-o", str(report)],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    browser.open(report.as_uri())
    _check_run_page(browser, run, profile)
    assert len(browser.all("#source .src-blocks .src-line")) == len(profile["source"]["lines"])
    biggest = " / ".join(profile["sections"][0]["path"])
    browser.find(f'#sections-table a.section-link[data-path="{biggest}"]').click()
    browser.until(lambda: browser.all("details.src-block.focused"))
    browser.shot("offline-report")
    browser.check_clean("file://")
