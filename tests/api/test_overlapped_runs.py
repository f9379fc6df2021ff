"""POST /v1/runs with "timing": "overlapped": the overlapped figures come back with the run, are
kept in the run history and the stored profile, and match a direct `emulator.run`."""

from __future__ import annotations

import base64

from emulator.runner import run
from emulator.settings import default_settings
from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "linear"


def test_overlapped_run_returns_and_records_the_model(client):
    asm = (EXAMPLE / "program.asm").read_text()
    req = {"program": {"asm": asm, "name": "linear"}, "timing": "overlapped", "tag": "overlapped-test"}
    req["images"] = {"hbm": base64.b64encode((EXAMPLE / "hbm.bin").read_bytes()).decode(),
                     "fp_sram": base64.b64encode((EXAMPLE / "fp_sram.bin").read_bytes()).decode()}
    r = client.post("/v1/runs", json=req)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "succeeded", body
    direct = run(EXAMPLE / "program.asm", settings=default_settings().with_overrides({"timing": "overlapped"}),
                 hbm=EXAMPLE / "hbm.bin", fp_sram=EXAMPLE / "fp_sram.bin")
    assert body["timing"] == "overlapped"
    assert body["cycles"] == direct.cycles   # the sequential (reference) total is unchanged
    ov = body["profile"]["overlapped"]
    assert body["profile"]["timing"] == "overlapped"
    assert ov["cycles"] == direct.overlap.cycles < direct.cycles
    assert ov["units"]["matrix"]["busy_cycles"] == next(u.busy for u in direct.overlap.units if u.name == "matrix")
    assert ov["stalls"][0]["cycles"] == direct.overlap.stalls[0].cycles
    again = client.get(f"/v1/runs/{body['id']}").json()
    assert again["timing"] == "overlapped" and again["profile"]["overlapped"]["cycles"] == ov["cycles"]
    full = client.get(f"/v1/runs/{body['id']}/profile").json()
    assert full["schema_version"] == 2 and full["overlapped"]["cycles"] == ov["cycles"]


def test_overlap_unit_overrides_are_accepted_and_applied(client):
    asm = (EXAMPLE / "program.asm").read_text()
    images = {"hbm": base64.b64encode((EXAMPLE / "hbm.bin").read_bytes()).decode(),
              "fp_sram": base64.b64encode((EXAMPLE / "fp_sram.bin").read_bytes()).decode()}
    # The example is dependency-bound: deeper DMA queues leave its cycles alone, a longer M_MM does not.
    overrides = {"OVERLAP.UNITS.dma-load.queue_depth": 4, "OVERLAP.OCCUPANCY.M_MM": 1000}
    r = client.post("/v1/runs", json={"program": {"asm": asm}, "images": images, "timing": "overlapped",
                                      "settings": {"overrides": overrides}})
    assert r.status_code == 200, r.text
    direct = run(EXAMPLE / "program.asm",
                 settings=default_settings().with_overrides({"timing": "overlapped", **overrides}),
                 hbm=EXAMPLE / "hbm.bin", fp_sram=EXAMPLE / "fp_sram.bin")
    plain = run(EXAMPLE / "program.asm", settings=default_settings().with_overrides({"timing": "overlapped"}),
                hbm=EXAMPLE / "hbm.bin", fp_sram=EXAMPLE / "fp_sram.bin")
    assert r.json()["profile"]["overlapped"]["cycles"] == direct.overlap.cycles != plain.overlap.cycles
    assert direct.settings.overlap.UNITS["dma-load"].queue_depth == 4
    bad = client.post("/v1/runs", json={"program": {"asm": asm}, "timing": "overlapped",
                                        "settings": {"overrides": {"OVERLAP.UNITS.dma-load.queue_depth": 0}}})
    assert bad.status_code == 422 and "queue_depth" in bad.text


def test_sequential_is_the_default_and_bad_timing_is_a_422(client):
    r = client.post("/v1/runs", json={"program": {"asm": "S_ADDI_INT gp1, gp0, 1\n"}})
    assert r.status_code == 200 and r.json()["timing"] == "sequential"
    assert r.json()["profile"]["overlapped"] is None
    bad = client.post("/v1/runs", json={"program": {"asm": "S_ADDI_INT gp1, gp0, 1\n"}, "timing": "parallel"})
    assert bad.status_code == 422
    via_settings = client.post("/v1/runs", json={"program": {"asm": "S_ADDI_INT gp1, gp0, 1\n"},
                                                 "settings": {"overrides": {"timing": "overlapped"}}})
    assert via_settings.status_code == 200 and via_settings.json()["timing"] == "overlapped"
