"""Record the reference's NaN choices from the conformance corpus for the corpus-free tests.

Writes tests/data/nan_rules_cases.npz; tests/test_nan_rules.py replays each entry through the
emulator (its own small programs, written in the test) and compares the bits.  The fixture holds
operand bits and the reference's result bits only — facts read off the corpus's recorded runs,
no corpus program or image:

* V_ADD_VV / V_SUB_VV / V_MUL_VV: the special-value rows A and B of ops/v{add,sub,mul}_vv_special
  (NaNs of both signs and several payloads, infinities, zeros) and the reference's rows for
  A op B and B op A (verified-corrections A5);
* S_ADD_FP / S_SUB_FP / S_MUL_FP: ops/nan_payload_s_add_fp's three NaN registers (their f16
  preload bits), each (op, rs1, rs2) it runs and the bf16 the reference stored (D2);
* V_RED_SUM: ops/nan_payload_v_red_sum's five rows, the initial register values and the stored
  results (D3);
* M_MM / M_TMM with a tile of ones: the X rows and the reference's B x B outputs of
  ops/nan_payload_m_mm (BLEN 4), vlen128_tmm_b16_order (BLEN 16, K 128) and vlen256_{mm,tmm}_k_split
  (BLEN 16, K 256) (D1).

Run with the corpus present (PLENA_CONFORMANCE_DIR or ../shared/conformance):

    .venv/bin/python bench/gen_nan_rules_fixture.py
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "data" / "nan_rules_cases.npz"
FP_OPS = {"S_ADD_FP": 0, "S_SUB_FP": 1, "S_MUL_FP": 2}
MATRIX_CASES = {  # case -> (mnemonic, first VRAM output row)
    "nan_payload_m_mm": ("M_MM", 8),
    "vlen128_tmm_b16_order": ("M_TMM", 32),
    "vlen256_mm_k_split": ("M_MM", 32),
    "vlen256_tmm_k_split": ("M_TMM", 32),
}


def corpus_ops() -> Path:
    env = os.environ.get("PLENA_CONFORMANCE_DIR")
    root = Path(env) if env else REPO.parent / "shared" / "conformance"
    if not (root / "ops").is_dir():
        sys.exit(f"conformance corpus not found at {root}")
    return root / "ops"


def vram_rows(case: Path, vlen: int, n: int) -> np.ndarray:
    """The reference's VRAM dump rows 0..n-1 (rows past the stored ones are zero)."""
    stored = np.load(case / "expected" / "vram_rows.npy")
    out = np.zeros((n, vlen), dtype=np.uint16)
    out[:min(n, len(stored))] = stored[:n]
    return out


def preload_rows(case: Path, vlen: int) -> np.ndarray:
    return np.fromfile(case / "vram_preload.bin", dtype="<u2").reshape(-1, vlen)


def fp_dump(case: Path) -> np.ndarray:
    return np.fromfile(case / "expected" / "fpsram_dump.bin", dtype="<u2")


def asm_lines(case: Path) -> list[list[str]]:
    """Instructions of program.asm as [mnemonic, operand, ...] (comments dropped)."""
    out = []
    for line in (case / "program.asm").read_text().splitlines():
        code = line.split(";")[0].strip()
        if code:
            mn, _, rest = code.partition(" ")
            out.append([mn] + [t.strip() for t in rest.split(",") if t.strip()])
    return out


def main() -> None:
    ops = corpus_ops()
    data: dict[str, np.ndarray] = {}

    for mn, case in (("V_ADD_VV", "vadd_vv_special"), ("V_SUB_VV", "vsub_vv_special"), ("V_MUL_VV", "vmul_vv_special")):
        d = ops / case
        pre = preload_rows(d, 64)
        out = vram_rows(d, 64, 20)
        # program: row16 = A op B (gp5 <- gp1, gp2), row18 = B op A (gp7 <- gp2, gp1)
        data[f"vv_{mn}"] = np.stack([pre[0], pre[1], out[16], out[18]])

    d = ops / "nan_payload_s_add_fp"
    preload = np.fromfile(d / "fp_sram.bin", dtype="<u2")
    regs: dict[str, int] = {}
    fp_ops = []
    for ins in asm_lines(d):
        if ins[0] == "S_LD_FP":
            regs[ins[1]] = int(ins[3])                       # register <- FP SRAM entry
        elif ins[0] in FP_OPS:
            fp_ops.append([FP_OPS[ins[0]], int(ins[1][1:]), int(ins[2][1:]), int(ins[3][1:]), -1])
        elif ins[0] == "S_ST_FP" and fp_ops and fp_ops[-1][4] == -1:
            fp_ops[-1][4] = int(ins[3])                      # stored to FP SRAM entry
    stored = fp_dump(d)
    data["scalar_f16_preload"] = preload[:8]
    data["scalar_loads"] = np.array([[int(r[1:]), e] for r, e in regs.items()], dtype=np.int64)
    # rows: op code, rd, rs1, rs2, expected bf16 (ops whose result is not stored right away,
    # like the l*m step of the flash-attention update, have expected -1)
    data["scalar_ops"] = np.array([[o, rd, a, b, int(stored[e]) if e >= 0 else -1]
                                   for o, rd, a, b, e in fp_ops], dtype=np.int64)

    d = ops / "nan_payload_v_red_sum"
    rows = preload_rows(d, 64)[:5]
    stored = fp_dump(d)
    red, loads = [], []
    for ins in asm_lines(d):
        if ins[0] == "V_RED_SUM":
            red.append(int(ins[1][1:]))
        elif ins[0] == "S_LD_FP":                            # a register that starts as a NaN
            loads.append([int(ins[1][1:]), int(ins[3])])
    data["vredsum_rows"] = rows
    data["vredsum_f16_preload"] = np.fromfile(d / "fp_sram.bin", dtype="<u2")[:8]
    data["vredsum_registers"] = np.array(red, dtype=np.int64)   # row i is summed into this register
    data["vredsum_loads"] = np.array(loads, dtype=np.int64)
    data["vredsum_expected"] = stored[100:100 + len(red)]

    meta = {}
    for case, (mn, out_row) in MATRIX_CASES.items():
        d = ops / case
        cfg = json.loads((d / "case.json").read_text())["config"]
        m, b = cfg["MLEN"], cfg["BLEN"]
        data[f"mm_{case}_x"] = preload_rows(d, m)[:b]
        data[f"mm_{case}_out"] = vram_rows(d, m, out_row + b)[out_row:out_row + b, :b]
        meta[case] = {"mnemonic": mn, "config": {k: cfg[k] for k in (
            "MLEN", "VLEN", "BLEN", "HLEN", "BROADCAST_AMOUNT", "HBM_M_Prefetch_Amount",
            "HBM_V_Prefetch_Amount", "HBM_V_Writeback_Amount")}}
    data["meta_json"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    np.savez_compressed(OUT, **data)
    print(f"wrote {OUT.relative_to(REPO)} ({OUT.stat().st_size} bytes, {len(data)} arrays)")


if __name__ == "__main__":
    main()
