"""Batch jobs in-process (no Dask): rows equal single CLI runs, job problems are rows, the results
directory resumes and never duplicates a row, and `plena-batch compare` gates on regressions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from batch import cli as batch_cli
from batch.compare import compare_tables, parse_threshold
from batch.job import base_row, run_task, task_for
from batch.manifest import load_manifest
from batch.results import COLUMNS, ResultsError, ResultWriter, read_rows
from tests.batch_util import cli_run, row_view

REPO = Path(__file__).resolve().parents[1]
SWEEP = REPO / "examples" / "sweep" / "manifest.toml"


def _row(job, options) -> dict:
    out = run_task(task_for(job, options))
    return {**base_row(job), **out["row"]}, out


@pytest.mark.parametrize("inputs", ["travel", "shared"])
def test_job_row_equals_the_cli(inputs):
    plan = load_manifest(SWEEP)
    options = plan.options.model_copy(update={"inputs": inputs})
    for job in [j for j in plan.jobs if j.overrides["LATENCY.VECTOR_MUL_CYCLES"] == 16][:4]:
        row, out = _row(job, options)
        assert row["status"] == "ok"
        assert row_view(row) == {k: v for k, v in cli_run(job).items() if k != "exit"}
        profile = json.loads(out["profile_json"])
        assert profile["totals"]["cycles"] == row["cycles"]
        assert row["program_sha256"] == profile["program"]["sha256"]


def _plan(tmp_path: Path, asm: str, extra: str = "") -> object:
    (tmp_path / "p.asm").write_text(asm)
    (tmp_path / "m.toml").write_text(f'{extra}\n[[jobs]]\nprogram = "p.asm"\n')
    return load_manifest(tmp_path / "m.toml")


def test_problems_of_a_job_are_rows(tmp_path):
    plan = _plan(tmp_path, "S_ADDI_INT gp1, gp0, 1\nNOT_AN_OPCODE gp1\n")
    row, _ = _row(plan.jobs[0], plan.options)
    assert row["status"] == "invalid" and row["error_kind"] == "input" and row["error_line"] == 2
    # An abort: V_ADD_VV on a VRAM address that is not a multiple of VLEN.
    plan = _plan(tmp_path, "S_ADDI_INT gp1, gp0, 3\nV_ADD_VV gp1, gp0, gp0, 0\n")
    row, _ = _row(plan.jobs[0], plan.options)
    assert row["status"] == "failed" and row["error_kind"] == "alignment" and row["error_pc"] == 1
    assert row["error_opcode"] == "V_ADD_VV" and row["cycles"] is not None
    assert row_view(row) == {k: v for k, v in cli_run(plan.jobs[0]).items() if k != "exit"}
    # The per-job instruction budget.
    plan = _plan(tmp_path, "C_LOOP_START gp5, 1000\nS_ADDI_INT gp4, gp4, 1\nC_LOOP_END gp5\n",
                 "[batch]\nmax_instructions = 100")
    row, _ = _row(plan.jobs[0], plan.options)
    assert row["status"] == "failed" and row["error_kind"] == "budget" and row["instructions"] == 100


def test_the_per_run_memory_budget_applies_to_jobs(tmp_path):
    """The service passes PLENA_API_MAX_RUN_BYTES with every batch task (api/batches.py)."""
    plan = _plan(tmp_path, "S_ADDI_INT gp1, gp0, 1\n")
    task = task_for(plan.jobs[0], plan.options)
    assert run_task(task)["row"]["status"] == "ok"
    task["max_run_bytes"] = 1 << 20   # smaller than the default settings' VRAM and MRAM
    row = run_task(task)["row"]
    assert row["status"] == "invalid" and row["error_kind"] == "resources" and "bytes" in row["error_message"]


def _rows(n: int, **kw) -> list[dict]:
    return [{c: None for c in COLUMNS} | {"job_id": f"j{i}", "program": f"p{i}", "program_sha256": f"s{i}",
                                          "settings_key": "k", "overrides": "{}", "status": "ok",
                                          "cycles": 1000 + i, "program_path": f"p{i}.asm",
                                          **{f"{d}_sha256": "h" for d in ("vram", "mram", "fpsram", "intsram")}} | kw
            for i in range(n)]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_results_are_incremental_and_resumable(tmp_path, fmt):
    out = tmp_path / "out"
    w = ResultWriter(out, fmt, resume=False)
    rows = _rows(5)
    for r in rows[:3]:
        assert w.add(r)
    w.flush()                                   # as after a kill: parts (parquet) / lines (csv) on disk
    assert read_rows(out).num_rows == 3
    with pytest.raises(ResultsError, match="--resume"):
        ResultWriter(out, fmt, resume=False)
    if fmt == "csv":                            # a torn last line from a killed writer
        with open(out / "results.csv", "a") as f:
            f.write("j9,p9,par")
    w2 = ResultWriter(out, fmt, resume=True)
    assert w2.done == {"j0", "j1", "j2"}
    assert not w2.add(rows[1])                  # never a duplicate row
    for r in rows[3:]:
        assert w2.add(r)
    path = w2.finish()
    table = read_rows(out)
    assert sorted(table.column("job_id").to_pylist()) == [f"j{i}" for i in range(5)]
    assert read_rows(path).num_rows == 5
    assert table.schema.field("cycles").type == pa.int64()
    if fmt == "parquet":
        assert not (out / "parts").exists()


def test_compare_tables():
    base = pa.Table.from_pylist(_rows(4))
    new_rows = _rows(4)
    new_rows[0]["cycles"] = 1100                # +10 %: slower
    new_rows[1]["cycles"] = 1001 + 5            # +0.4 %: below the threshold
    new_rows[2]["vram_sha256"] = "other"        # changed outputs
    new_rows[3] |= {"job_id": "jx", "program_sha256": "sx"}    # a new program (and j3 removed)
    cmp = compare_tables(base, pa.Table.from_pylist(new_rows), threshold=0.01)
    assert [d.program for d in cmp.matched] == ["p0", "p1", "p2"]       # largest delta first
    assert [d.program for d in cmp.regressions] == ["p0", "p2"]
    assert cmp.matched[2].outputs_changed == ["vram"]
    assert [r["job_id"] for r in cmp.added] == ["jx"] and [r["job_id"] for r in cmp.removed] == ["j3"]
    assert compare_tables(base, base).regressions == []
    by_name = compare_tables(base, pa.Table.from_pylist(new_rows), match="name")
    assert len(by_name.matched) == 4 and not by_name.added
    assert parse_threshold("1%") == 0.01 and parse_threshold("0.5%") == 0.005 and parse_threshold("0.02") == 0.02
    with pytest.raises(ValueError):
        parse_threshold("fast")


def test_compare_cli_exit_codes(tmp_path, capsys):
    for name, rows in (("base", _rows(3)), ("same", _rows(3)), ("slow", _rows(3, cycles=5000))):
        w = ResultWriter(tmp_path / name, "parquet", resume=False)
        for r in rows:
            w.add(r)
        w.finish()
    assert batch_cli.main(["compare", str(tmp_path / "base"), str(tmp_path / "same")]) == 0
    assert batch_cli.main(["compare", str(tmp_path / "base"), str(tmp_path / "slow"), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["regressions"] == 3 and doc["jobs"][0]["slower"]
    assert batch_cli.main(["compare", str(tmp_path / "base"), str(tmp_path / "slow"), "--threshold", "1000%"]) == 0
    assert batch_cli.main(["compare", str(tmp_path / "base"), str(tmp_path / "nope")]) == 2
    assert batch_cli.main(["compare", str(tmp_path / "base"), str(tmp_path / "same"), "--threshold", "x"]) == 2


def test_run_cli_rejects_a_bad_manifest_before_running(tmp_path, capsys):
    shutil.copy(REPO / "examples" / "linear" / "program.asm", tmp_path / "p.asm")
    (tmp_path / "m.toml").write_text('[[jobs]]\nprogram = "p.asm"\n\n[grid]\nFOO = [1]\n')
    assert batch_cli.main(["run", str(tmp_path / "m.toml"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "line 5" in err and "grid.FOO" in err
    assert not (tmp_path / "out").exists()
    assert batch_cli.main(["run", str(SWEEP), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 24


def test_tensor_inputs_are_quantised_into_hbm(tmp_path):
    """`tensors.NAME = {npy, hbm_addr}` places float arrays into HBM as MXFP8, as run(tensors=...) does."""
    import hashlib

    import numpy as np

    from batch.job import dump_payloads
    from emulator import run
    from emulator.asm import assemble

    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    w = (rng.standard_normal((64, 64)) / 8).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", w)
    shutil.copy(REPO / "examples" / "linear" / "program.asm", tmp_path / "p.asm")
    shutil.copy(REPO / "examples" / "linear" / "fp_sram.bin", tmp_path / "fp.bin")
    (tmp_path / "m.toml").write_text('[[jobs]]\nprogram = "p.asm"\nfpsram = "fp.bin"\n'
                                     'tensors.X = { npy = "x.npy", hbm_addr = 0 }\n'
                                     'tensors.W = { npy = "w.npy", hbm_addr = 4096 }\n')
    plan = load_manifest(tmp_path / "m.toml")
    row, _ = _row(plan.jobs[0], plan.options)
    ref = run(assemble((tmp_path / "p.asm").read_text()), fp_sram=tmp_path / "fp.bin",
              tensors={"X": (x, 0), "W": (w, 4096)})
    assert row["status"] == "ok" and row["cycles"] == ref.cycles
    assert row["vram_sha256"] == hashlib.sha256(dump_payloads(ref)["vram"]).hexdigest()
    # Not the example's own image (other values): the tensors really were used.
    example = run(assemble((tmp_path / "p.asm").read_text()), fp_sram=tmp_path / "fp.bin",
                  hbm=REPO / "examples" / "linear" / "hbm.bin")
    assert row["vram_sha256"] != hashlib.sha256(dump_payloads(example)["vram"]).hexdigest()
