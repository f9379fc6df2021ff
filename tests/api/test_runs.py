"""POST /v1/runs (JSON and multipart), GET /v1/runs/{id} and its trace/profile/dumps, the history,
and the error mapping — checked against direct `emulator.run` calls and the conformance corpus."""

from __future__ import annotations

import base64
import contextlib
import io
import json

import numpy as np
import pytest

from emulator.asm import assemble
from emulator.cli import main as cli_main
from emulator.images import fpsram_dump_bytes, intsram_dump_bytes, mram_dump_bytes, vram_dump_bytes
from emulator.runner import run
from emulator.tensors import read_vram_tensor
from profiler.trace import validate_trace
from tests.api.conftest import LONG_ASM, LONG_SETTINGS
from tests.conftest import needs_corpus

LOAD_ASM = """; load x
S_ADDI_INT gp1, gp0, 256
C_SET_SCALE_REG gp1
H_PREFETCH_V gp0, gp0, a0, 0, 0
"""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def values_of(tensor: dict) -> np.ndarray:
    return np.array(tensor["values"], dtype=np.float64).astype(np.float32).reshape(tensor["shape"])


def x_values(scale: float = 1.0) -> np.ndarray:
    return (np.linspace(-2.0, 2.0, 256, dtype=np.float32) * scale).reshape(4, 64)


def load_request(x: np.ndarray, **extra) -> dict:
    return {"program": {"asm": LOAD_ASM, "name": "load_x"},
            "tensors": [{"name": "x", "hbm_addr": 0, "shape": list(x.shape), "values": x.tolist()}],
            "outputs": {"vram_regions": [{"name": "x", "start_row": 0, "num_rows": 4, "row_dim": 64}],
                        "hbm_regions": [{"name": "x_hbm", "addr": 0, "shape": [4, 64]}]},
            **extra}


# --------------------------------------------------------------------------------- small runs

def test_run_returns_outputs_and_totals_of_the_emulator(client):
    x = x_values()
    r = client.post("/v1/runs", json=load_request(x, tag="small"))
    assert r.status_code == 200, r.text
    body = r.json()
    direct = run(assemble(LOAD_ASM), tensors={"x": (x, 0)})
    assert body["status"] == "succeeded"
    assert body["cycles"] == direct.cycles
    assert body["instructions"] == direct.instructions == 3
    assert body["hbm_bytes_read"] == direct.hbm_bytes_read > 0
    assert body["program_sha256"] == assemble(LOAD_ASM).sha256
    outs = {o["name"]: o for o in body["outputs"]}
    want = read_vram_tensor(direct.state.vram[:direct.state.vram_rows_used], 0, 4, 64)
    np.testing.assert_array_equal(values_of(outs["x"]), want)
    # The MXFP8 read-back of HBM equals what the DMA loaded into VRAM (both exact in bf16 here).
    np.testing.assert_array_equal(values_of(outs["x_hbm"]), want)
    np.testing.assert_allclose(want, x, rtol=0.125)   # E4M3: 3 mantissa bits
    prof = body["profile"]
    assert prof["totals"]["cycles"] == body["cycles"]
    assert sum(s["cycles"] for s in prof["sections"]) == body["cycles"]
    assert prof["sections"][0]["name"] == "load x"
    # GET returns the same run.
    again = client.get(body["links"]["self"]).json()
    assert again["cycles"] == body["cycles"] and again["outputs"] == body["outputs"]


def test_npy_tensors_in_and_out(client):
    x = x_values(0.5)
    buf = io.BytesIO()
    np.save(buf, x)
    req = load_request(x)
    req["tensors"] = [{"name": "x", "hbm_addr": 0, "npy_base64": b64(buf.getvalue())}]
    req["outputs"]["format"] = "npy"
    r = client.post("/v1/runs", json=req)
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}["x"]
    assert out["values"] is None
    arr = np.load(io.BytesIO(base64.b64decode(out["npy_base64"])), allow_pickle=False)
    direct = run(assemble(LOAD_ASM), tensors={"x": (x, 0)})
    np.testing.assert_array_equal(arr, read_vram_tensor(direct.state.vram[:4], 0, 4, 64))
    # The same run read back as JSON numbers.
    as_json = client.get(f"/v1/runs/{r.json()['id']}?format=json").json()
    np.testing.assert_array_equal(values_of({o["name"]: o for o in as_json["outputs"]}["x"]), arr)


def test_non_finite_values_travel_as_strings(client):
    # A VRAM preload with bf16 NaN, +inf and -inf read back through a VRAM region.
    row = np.zeros(64, dtype="<u2")
    row[:4] = [0x7FC0, 0x7F80, 0xFF80, 0x3F80]
    req = {"program": {"asm": "S_ADDI_INT gp1, gp0, 1\n"}, "images": {"vram": b64(row.tobytes())},
           "outputs": {"vram_regions": [{"name": "row", "start_row": 0, "num_rows": 1, "row_dim": 64}]}}
    r = client.post("/v1/runs", json=req)
    assert r.status_code == 200, r.text
    values = r.json()["outputs"][0]["values"]
    assert values[:4] == ["NaN", "Infinity", "-Infinity", 1.0]
    assert values[4:] == [0.0] * 60


def test_dumps_equal_the_reference_file_formats(client):
    x = x_values()
    req = load_request(x)
    req["outputs"]["dumps"] = ["vram", "mram", "fpsram", "intsram"]
    fp = np.arange(8, dtype=np.float16)
    req["images"] = {"fp_sram": b64(fp.tobytes()), "int_sram": b64(np.arange(5, dtype="<u4").tobytes())}
    r = client.post("/v1/runs", json=req)
    assert r.status_code == 200, r.text
    body = r.json()
    direct = run(assemble(LOAD_ASM), tensors={"x": (x, 0)}, fp_sram=fp.tobytes(),
                 int_sram=np.arange(5, dtype="<u4").tobytes())
    st, s = direct.state, direct.settings
    want = {"vram": vram_dump_bytes(st.vram[:st.vram_rows_used], s.VECTOR_SRAM_SIZE, trim=True),
            "mram": mram_dump_bytes(st.mram, total_tiles=s.mram_tiles),
            "fpsram": fpsram_dump_bytes(st.fp_sram), "intsram": intsram_dump_bytes(st.int_sram)}
    listed = {d["name"]: d for d in body["dumps"]}
    assert set(listed) == set(want)
    for name, data in want.items():
        got = client.get(listed[name]["url"])
        assert got.status_code == 200
        assert got.headers["content-type"] == "application/octet-stream"
        assert got.content == data, name
        assert listed[name]["bytes"] == len(data)
    assert client.get(f"/v1/runs/{body['id']}/dumps/nope").status_code == 422


def test_trace_and_full_profile(client):
    r = client.post("/v1/runs", json={**load_request(x_values()), "trace": True})
    assert r.status_code == 200, r.text
    body = r.json()
    trace = client.get(body["links"]["trace"])
    assert trace.status_code == 200
    doc = trace.json()
    assert validate_trace(doc) == []
    assert any(e.get("name") == "H_PREFETCH_V" for e in doc["traceEvents"])
    profile = client.get(body["links"]["profile"]).json()
    assert profile["schema"] == "plena-profile"
    assert profile["totals"]["cycles"] == body["cycles"]
    # Without trace: true there is no trace.
    plain = client.post("/v1/runs", json=load_request(x_values())).json()
    assert plain["links"]["trace"] is None
    assert client.get(f"/v1/runs/{plain['id']}/trace").status_code == 404


def test_machine_code_program(client):
    words = assemble(LOAD_ASM).words.tolist()
    x = x_values()
    by_words = client.post("/v1/runs", json={**load_request(x), "program": {"words": words}}).json()
    by_mem = client.post("/v1/runs", json={**load_request(x), "program": {"mem": assemble(LOAD_ASM).to_mem_text()}}).json()
    by_asm = client.post("/v1/runs", json=load_request(x)).json()
    assert by_words["cycles"] == by_mem["cycles"] == by_asm["cycles"]
    assert by_words["program_sha256"] == by_mem["program_sha256"] == by_asm["program_sha256"]
    assert by_words["outputs"] == by_asm["outputs"]
    assert by_words["profile"]["sections_mode"] == "pc"


# --------------------------------------------------------------------------------- errors

def test_emulation_error_is_400_with_pc_and_line(client):
    asm = "; misaligned\nS_ADDI_INT gp1, gp0, 3\nH_PREFETCH_V gp1, gp0, a0, 0, 0\n"
    r = client.post("/v1/runs", json={"program": {"asm": asm}})
    assert r.status_code == 400, r.text
    body = r.json()
    direct = run(assemble(asm))
    assert body["detail"] == direct.error.to_dict()
    assert body["detail"]["kind"] == "alignment"
    assert body["detail"]["pc"] == 1 and body["detail"]["line"] == 3
    assert body["detail"]["opcode"] == "H_PREFETCH_V"
    assert body["run"]["status"] == "failed" and body["run"]["cycles"] == direct.cycles
    stored = client.get(f"/v1/runs/{body['run_id']}").json()
    assert stored["status"] == "failed" and stored["error"] == body["detail"]


def test_instruction_budget_is_400_budget(client):
    r = client.post("/v1/runs", json={"program": {"asm": LONG_ASM}, "settings": LONG_SETTINGS,
                                      "max_instructions": 1000})
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert detail["kind"] == "budget"
    assert r.json()["run"]["instructions"] == 1000


@pytest.mark.parametrize("body, loc", [
    ({"program": {}}, ["body", "program"]),
    ({"program": {"asm": "X", "words": [1]}}, ["body", "program"]),
    ({"program": {"words": [1 << 32]}}, ["body", "program", "words", 0]),
    ({"program": {"asm": "S_ADDI_INT gp1, gp0, 1\n"}, "images": {"hbm": "not base64!"}}, ["body", "images", "hbm"]),
    ({"program": {"asm": "S_ADDI_INT gp1, gp0, 1\n"}, "tensors": [{"name": "x", "hbm_addr": 0, "shape": [2, 8],
                                                                   "values": [1.0, 2.0]}]},
     ["body", "tensors", 0, "values"]),
    ({"program": {"asm": "S_ADDI_INT gp1, gp0, 1\n"}, "tensors": [{"name": "x", "hbm_addr": 0, "npy_base64": b64(b"junk")}]},
     ["body", "tensors", 0, "npy_base64"]),
    ({"program": {"asm": "S_ADDI_INT gp1, gp0, 1\n"}, "surprise": 1}, ["body", "surprise"]),
    ({"program": {"asm": "S_ADDI_INT gp1, gp0, 1\n"},
      "outputs": {"vram_regions": [{"name": "a", "start_row": 0, "num_rows": 3, "row_dim": 64, "num_batches": 2}]}},
     ["body", "outputs", "vram_regions", 0]),
])
def test_validation_errors_name_the_field(client, body, loc):
    r = client.post("/v1/runs", json=body)
    assert r.status_code == 422, r.text
    locs = [d["loc"] for d in r.json()["detail"]]
    assert any(l[:len(loc)] == loc for l in locs), locs


@pytest.mark.parametrize("body, loc, kind", [
    ({"program": {"asm": "S_ADDI_INT gp1, gp0, 1\nBOGUS gp1\n"}}, ["body", "program", "asm"], "assembler_error"),
    ({"program": {"mem": "0x1\nzz\n"}}, ["body", "program", "mem"], "mem_error"),
    ({"program": {"asm": "S_ADDI_INT gp1, gp0, 1\n"}, "settings": {"toml": "[TRANSACTIONAL\n"}},
     ["body", "settings"], "settings_error"),
    ({"program": {"asm": "S_ADDI_INT gp1, gp0, 1\n"}, "settings": {"overrides": {"NO_SUCH_KNOB": 1}}},
     ["body", "settings"], "settings_error"),
    ({"program": {"asm": "S_ADDI_INT gp1, gp0, 1\n"}, "images": {"fp_sram": b64(bytes(4096))}},
     ["body", "images", "fp_sram"], "image_error"),
    ({"program": {"asm": "S_ADDI_INT gp1, gp0, 1\n"}, "settings": {"overrides": {"HBM_SIZE": 1024}},
      "tensors": [{"name": "x", "hbm_addr": 1000, "shape": [1, 64], "values": [0.0] * 64}]},
     ["body", "tensors", 0, "hbm_addr"], "image_error"),
    ({"program": {"asm": "S_ADDI_INT gp1, gp0, 1\n"},
      "tensors": [{"name": "a", "hbm_addr": 0, "shape": [1, 64], "values": [0.0] * 64},
                  {"name": "b", "hbm_addr": 32, "shape": [1, 64], "values": [0.0] * 64}]},
     ["body", "tensors"], "image_error"),
    ({"program": {"asm": "S_ADDI_INT gp1, gp0, 1\n"}, "max_instructions": 1 << 62},
     ["body", "max_instructions"], "value_error"),
])
def test_input_errors_are_422_with_the_field_path(client, body, loc, kind):
    r = client.post("/v1/runs", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail[0]["loc"] == loc, detail
    assert detail[0]["type"] == kind
    assert detail[0]["msg"]


def test_assembler_error_names_the_line(client):
    r = client.post("/v1/runs", json={"program": {"asm": "; a\nS_ADDI_INT gp1, gp0, 1\nS_ADDI_INT gp99, gp0, 1\n"}})
    assert r.status_code == 422
    issue = r.json()["detail"][0]
    assert issue["ctx"]["line"] == 3
    assert "gp99" in issue["ctx"]["text"]


def test_unknown_and_malformed_run_ids(client):
    assert client.get("/v1/runs/" + "0" * 32).status_code == 404
    assert client.get("/v1/runs/not-a-run-id").status_code == 422
    assert client.get("/v1/runs/../../etc/passwd").status_code == 404
    assert client.delete("/v1/runs/" + "0" * 32).status_code == 404


# --------------------------------------------------------------------------------- history

def test_history_filters_by_tag_and_program_hash(client):
    tag = "history-test"
    x = x_values()
    ids = [client.post("/v1/runs", json=load_request(x, tag=tag)).json()["id"] for _ in range(2)]
    other = client.post("/v1/runs", json={"program": {"asm": "S_ADDI_INT gp1, gp0, 7\n"}, "tag": tag}).json()["id"]
    listed = client.get("/v1/runs", params={"tag": tag}).json()
    assert listed["total"] == 3
    assert [i["id"] for i in listed["items"]] == [other, *reversed(ids)]   # newest first
    sha = assemble(LOAD_ASM).sha256
    by_hash = client.get("/v1/runs", params={"tag": tag, "program_sha256": sha}).json()
    assert sorted(i["id"] for i in by_hash["items"]) == sorted(ids)
    page = client.get("/v1/runs", params={"tag": tag, "limit": 1, "offset": 1}).json()
    assert [i["id"] for i in page["items"]] == [ids[1]]
    assert client.get("/v1/runs", params={"program_sha256": "xyz"}).status_code == 422


# --------------------------------------------------------------------------------- the corpus

def _linear_request(case) -> tuple[dict, dict]:
    meta = json.loads((case / "case.json").read_text())
    inputs = np.load(case / "inputs.npz")
    layout = meta["hbm_layout"]["tensors"]
    cmp = meta["compare"]
    region = {"name": "linear_out", "start_row": cmp["start_row_idx"], "num_rows": cmp["num_rows"],
              "row_dim": cmp["row_dim"], "num_batches": cmp["num_batches"],
              "elements_per_batch": cmp["elements_per_batch"]}
    body = {
        "program": {"asm": (case / "program.asm").read_text(), "name": "aten_linear"},
        "settings": {"toml": (case / "settings.toml").read_text()},
        "images": {"fp_sram": b64((case / "fp_sram.bin").read_bytes()),
                   "int_sram": b64((case / "int_sram.bin").read_bytes())},
        "tensors": [{"name": n, "hbm_addr": layout[n]["hbm_addr"], "shape": list(inputs[n].shape),
                     "values": inputs[n].tolist()} for n in ("X", "W")],
        "outputs": {"vram_regions": [region]},
        "tag": "aten_linear",
    }
    return body, meta


def _cli_cycles(case) -> int:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli_main([str(case / "program.asm"), "--hbm", str(case / "hbm.bin"), "--fpsram",
                         str(case / "fp_sram.bin"), "--intsram", str(case / "int_sram.bin"),
                         "--settings", str(case / "settings.toml"), "--json", "-q"])
    assert code == 0
    return json.loads(out.getvalue())["cycles"]


@needs_corpus
def test_aten_linear_asm_plus_two_tensors(client, corpus):
    """The issue's done-criterion: one POST of ASM + two tensors returns the linear layer's output
    tensor (the reference's VRAM rows) and the CLI's cycles."""
    case = corpus / "aten_linear"
    body, meta = _linear_request(case)
    r = client.post("/v1/runs", json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["cycles"] == meta["expected"]["cycles"] == _cli_cycles(case)
    assert got["hbm_bytes_read"] == meta["expected"]["hbm_bytes_read"]
    assert got["hbm_bytes_written"] == meta["expected"]["hbm_bytes_written"]
    region = body["outputs"]["vram_regions"][0]
    want = read_vram_tensor(np.load(case / "expected" / "vram_rows.npy"), region["start_row"], region["num_rows"],
                            region["row_dim"], region["num_batches"], region["elements_per_batch"])
    out = got["outputs"][0]
    assert out["shape"] == list(meta["golden_shape"])
    np.testing.assert_array_equal(values_of(out), want)
    golden = np.load(case / "golden.npy")
    assert np.mean(np.abs(values_of(out) - golden) <= 0.2 + 0.2 * np.abs(golden)) >= 0.9


@needs_corpus
def test_aten_linear_from_the_reference_files(client, corpus):
    """The multipart variant with the reference's own files gives the same tensor and cycles."""
    case = corpus / "aten_linear"
    body, meta = _linear_request(case)
    files = {"program": ("program.mem", (case / "program.mem").read_bytes()),
             "settings": ("settings.toml", (case / "settings.toml").read_bytes()),
             "hbm": ("hbm.bin", (case / "hbm.bin").read_bytes()),
             "fpsram": ("fp_sram.bin", (case / "fp_sram.bin").read_bytes()),
             "intsram": ("int_sram.bin", (case / "int_sram.bin").read_bytes())}
    r = client.post("/v1/runs/files", files=files,
                    data={"outputs": json.dumps(body["outputs"]), "tag": "aten_linear_files"})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["cycles"] == meta["expected"]["cycles"]
    assert got["program_name"] == "program"
    assert got["profile"]["sections_mode"] == "pc"    # machine code has no comments
    by_json = client.post("/v1/runs", json=body).json()
    assert got["outputs"] == by_json["outputs"]
    assert got["program_sha256"] == by_json["program_sha256"]


def test_multipart_errors_are_422(client):
    r = client.post("/v1/runs/files", files={"program": ("p.asm", b"S_ADDI_INT gp1, gp0, 1\n")},
                    data={"outputs": "{not json"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "outputs"]
    r = client.post("/v1/runs/files", files={"program": ("p.asm", b"\xff\xfe")})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "program"]
    r = client.post("/v1/runs/files", files={"program": ("p.asm", b"S_ADDI_INT gp1, gp0, 1\n")},
                    data={"outputs": json.dumps({"dumps": ["disk"]})})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][:3] == ["body", "outputs", "dumps"]
    r = client.post("/v1/runs/files", files={"program": ("../../etc/passwd.asm", b"S_ADDI_INT gp1, gp0, 1\n")})
    assert r.status_code == 200
    assert r.json()["program_name"] == "passwd"


def test_nan_tensor_values_are_rejected_with_the_field(client):
    body = load_request(x_values())
    body["tensors"][0]["values"] = ["NaN"] + [0.0] * 255
    body["tensors"][0]["shape"] = [4, 64]
    r = client.post("/v1/runs", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "tensors", 0, "values"]
    # Infinities have an encoding (the writer saturates): they run.
    body["tensors"][0]["values"] = ["Infinity", "-Infinity"] + [0.0] * 254
    assert client.post("/v1/runs", json=body).status_code == 200
