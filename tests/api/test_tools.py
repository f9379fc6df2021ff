"""POST /v1/assemble, /v1/disassemble, /v1/estimate."""

from __future__ import annotations

from emulator.asm import assemble, disassemble
from profiler.static import estimate
from tests.api.test_runs import LOAD_ASM, load_request, x_values

LOOP_ASM = "; outer\nC_LOOP_START gp2, 7\n; inner\nC_LOOP_START gp3, 5\nS_ADDI_INT gp1, gp1, 1\nC_LOOP_END gp3\nC_LOOP_END gp2\n"


def test_assemble_matches_the_assembler(client):
    r = client.post("/v1/assemble", json={"asm": LOAD_ASM})
    assert r.status_code == 200, r.text
    body = r.json()
    program = assemble(LOAD_ASM)
    assert body["words"] == program.words.tolist()
    assert body["mem"] == program.to_mem_text()
    assert body["sha256"] == program.sha256
    assert [(s["pc"], s["line"], s["section"]) for s in body["source"]] == [(0, 2, "load x"), (1, 3, "load x"),
                                                                            (2, 4, "load x")]


def test_assemble_reports_warnings_and_errors(client):
    # A non-zero mask on V_EXP_V lands in a field the hardware ignores: a warning, not an error.
    warned = client.post("/v1/assemble", json={"asm": "V_EXP_V gp1, gp2, 1\n"}).json()
    assert warned["warnings"] and warned["warnings"][0]["line"] == 1
    bad = client.post("/v1/assemble", json={"asm": "S_ADDI_INT gp1, gp0, 1\nS_ADDI_INT gp1, gp0\n"})
    assert bad.status_code == 422
    issue = bad.json()["detail"][0]
    assert issue["loc"] == ["body", "asm"] and issue["type"] == "assembler_error" and issue["ctx"]["line"] == 2


def test_disassemble_round_trip(client):
    program = assemble(LOAD_ASM)
    by_words = client.post("/v1/disassemble", json={"words": program.words.tolist()}).json()
    by_mem = client.post("/v1/disassemble", json={"mem": program.to_mem_text()}).json()
    assert by_words == by_mem
    assert by_words["asm"] == disassemble(program)
    assert assemble(by_words["asm"]).words.tolist() == program.words.tolist()
    bad = client.post("/v1/disassemble", json={"mem": "0x12\nnothex\n"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "mem"]
    assert client.post("/v1/disassemble", json={"words": []}).status_code == 422


def test_estimate_equals_the_run_for_a_deterministic_program(client):
    r = client.post("/v1/estimate", json={"program": {"asm": LOOP_ASM}})
    assert r.status_code == 200, r.text
    est = r.json()
    ran = client.post("/v1/runs", json={"program": {"asm": LOOP_ASM}}).json()
    assert est["exact"] is True
    assert est["cycles"] == ran["cycles"] == estimate(assemble(LOOP_ASM)).cycles
    assert est["instructions"] == ran["instructions"] == 1 + 7 * (1 + 5 * 2 + 1)
    assert [s["name"] for s in est["profile"]["sections"]] == [s["name"] for s in ran["profile"]["sections"]]
    with_dma = client.post("/v1/estimate", json={"program": {"asm": LOAD_ASM}}).json()
    dma_run = client.post("/v1/runs", json=load_request(x_values())).json()
    assert with_dma["hbm_bytes_read"] == dma_run["hbm_bytes_read"]


def test_estimate_input_errors(client):
    r = client.post("/v1/estimate", json={"program": {"asm": "NOPE\n"}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "program", "asm"]
    r = client.post("/v1/estimate", json={"program": {"asm": LOOP_ASM}, "int_sram": "@@"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "int_sram"]
