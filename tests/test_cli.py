"""The `emulate` command line: outputs, dumps, JSON, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from emulator.cli import EXIT_BUDGET, EXIT_EMULATION, EXIT_INPUT, EXIT_OK, main, parse_size
from tests.conftest import REPO, needs_corpus

EXAMPLE = REPO / "examples" / "linear"


def example_args(*extra: str) -> list[str]:
    return [str(EXAMPLE / "program.asm"), "--hbm", str(EXAMPLE / "hbm.bin"),
            "--fpsram", str(EXAMPLE / "fp_sram.bin"), *extra]


def test_example_json_and_dumps(tmp_path, capsys):
    assert main(example_args("--json", "--out", str(tmp_path / "out"), "--quiet")) == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert out["cycles"] > 0 and out["instructions"] > 0
    assert out["hbm_bytes_read"] > 0 and out["hbm_bytes_written"] == 512
    assert out["hbm_model"] == "hbm2"
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["fpsram_dump.bin", "intsram_dump.bin", "mram_dump.bin", "vram_dump.bin"]
    vram = np.frombuffer((tmp_path / "out" / "vram_dump.bin").read_bytes(), dtype="<u2").reshape(-1, 64)
    assert vram.shape[0] == 20          # trimmed after the last non-zero row (Y in rows 16..19)
    y = (vram[16:20].astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_allclose(y, np.load(EXAMPLE / "expected_y.npy"), rtol=0.02, atol=0.01)


def test_example_text_report(capsys):
    assert main(example_args("--quiet")) == EXIT_OK
    text = capsys.readouterr().out
    assert "cycles" in text and "instructions" in text and "hbm bytes read" in text


def test_full_dumps_have_reference_sizes(tmp_path, capsys):
    small = ["--set", "VECTOR_SRAM_SIZE=1024", "--set", "MATRIX_SRAM_SIZE=512"]
    assert main(example_args("--out", str(tmp_path), "--full-dumps", "--quiet", *small)) == EXIT_OK
    assert (tmp_path / "vram_dump.bin").stat().st_size == 1024 * 64 * 2
    assert (tmp_path / "mram_dump.bin").stat().st_size == (512 // 64) * 64 * 64 * 2
    assert (tmp_path / "fpsram_dump.bin").stat().st_size == 2048
    assert (tmp_path / "intsram_dump.bin").stat().st_size == 4096


def test_bad_input_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.asm"
    bad.write_text("S_ADDI_INT gp1, gp0, 1\nV_ADD_VX gp1, gp1, gp1\n")
    assert main([str(bad), "--json"]) == EXIT_INPUT
    err = json.loads(capsys.readouterr().out)["error"]
    assert err["kind"] == "input" and err["line"] == 2 and "V_ADD_VV" in err["message"]
    assert main([str(tmp_path / "missing.asm")]) == EXIT_INPUT
    assert main([str(EXAMPLE / "program.asm"), "--set", "MLEN=32"]) == EXIT_INPUT
    assert "MLEN (32) must equal VLEN (64)" in capsys.readouterr().err


def test_emulation_error_exit_3_names_pc_and_line(tmp_path, capsys):
    prog = tmp_path / "abort.asm"
    prog.write_text("; set up\nS_ADDI_INT gp1, gp0, 32\nV_ADD_VV gp1, gp1, gp1, 0\n")
    assert main([str(prog), "--json"]) == EXIT_EMULATION
    err = json.loads(capsys.readouterr().out)["error"]
    assert err == {**err, "kind": "alignment", "pc": 1, "opcode": "V_ADD_VV", "line": 3}
    assert "not a multiple of 64" in err["message"]


def test_budget_exit_4(tmp_path, capsys):
    prog = tmp_path / "long.asm"
    prog.write_text("C_LOOP_START gp1, 1000000\nS_ADDI_INT gp2, gp2, 1\nC_LOOP_END gp1\n")
    assert main([str(prog), "--json", "--max-instructions", "5000"]) == EXIT_BUDGET
    out = json.loads(capsys.readouterr().out)
    assert out["error"]["kind"] == "budget" and out["instructions"] == 5000


def test_the_emulate_command_flushes_its_outputs_and_keeps_exit_codes(tmp_path):
    """`emulate` ends its process without the interpreter's teardown (cli.console_main): stdout,
    stderr and the dumps are complete and the exit status is main()'s."""
    emulate = [sys.executable, "-m", "emulator.cli"]
    done = subprocess.run([*emulate, *example_args("--json", "--out", str(tmp_path / "out"))], capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == EXIT_OK and json.loads(done.stdout)["cycles"] == 1361
    assert (tmp_path / "out" / "vram_dump.bin").stat().st_size == 20 * 64 * 2
    bad = tmp_path / "bad.asm"
    bad.write_text("NOT_AN_OP gp1\n")
    done = subprocess.run([*emulate, str(bad)], capture_output=True, text=True, timeout=900)
    assert done.returncode == EXIT_INPUT and "NOT_AN_OP" in done.stderr and done.stdout == ""
    aborts = tmp_path / "abort.asm"
    aborts.write_text("C_BREAK\n")
    done = subprocess.run([*emulate, str(aborts), "--json"], capture_output=True, text=True, timeout=900)
    assert done.returncode == EXIT_EMULATION and json.loads(done.stdout)["error"]["kind"] == "loop"


def test_parse_size():
    assert parse_size("16G") == 16 << 30
    assert parse_size("1GiB") == 1 << 30
    assert parse_size("4096") == 4096
    with pytest.raises(Exception):
        parse_size("12X")


def test_help_documents_options():
    out = subprocess.run([sys.executable, "-m", "emulator.cli", "--help"], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout
    for flag in ("--hbm", "--fpsram", "--intsram", "--vram", "--settings", "--out", "--json", "--full-dumps",
                 "--hbm-model", "--max-instructions", "Exit status"):
        assert flag in out


@needs_corpus
def test_corpus_case_through_cli_matches_reference_dumps(corpus, tmp_path, capsys):
    d = corpus / "de_flashattn_decode"
    assert main([str(d / "program.mem"), "--hbm", str(d / "hbm.bin"), "--fpsram", str(d / "fp_sram.bin"),
                 "--settings", str(d / "settings.toml"), "--out", str(tmp_path), "--json", "--quiet"]) == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    expected = json.loads((d / "case.json").read_text())["expected"]
    assert out["cycles"] == expected["cycles"]
    assert (tmp_path / "fpsram_dump.bin").read_bytes() == (d / "expected" / "fpsram_dump.bin").read_bytes()
    assert (tmp_path / "intsram_dump.bin").read_bytes() == (d / "expected" / "intsram_dump.bin").read_bytes()
    rows = np.load(d / "expected" / "vram_rows.npy")
    assert (tmp_path / "vram_dump.bin").read_bytes() == rows.astype("<u2").tobytes()


def _case_args(d, *names):
    flags = {"hbm.bin": "--hbm", "fp_sram.bin": "--fpsram", "int_sram.bin": "--intsram", "vram_preload.bin": "--vram"}
    args = [str(d / "program.mem"), "--settings", str(d / "settings.toml")]
    for name in names:
        if (d / name).exists():
            args += [flags[name], str(d / name)]
    return args


@needs_corpus
@pytest.mark.parametrize("case", ["bmm_accumulate", "int_ld_st"])
def test_vram_and_intsram_preloads_through_cli(corpus, tmp_path, capsys, case):
    d = corpus / "ops" / case
    expected = json.loads((d / "case.json").read_text())
    args = _case_args(d, "hbm.bin", "fp_sram.bin", "int_sram.bin", "vram_preload.bin")
    args += ["--hbm-size", str(expected["hbm_size"]), "--out", str(tmp_path), "--json", "--quiet"]
    assert main(args) == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert out["cycles"] in {expected["expected"]["cycles"], *map(int, expected["expected"].get("cycles_observed") or {})}
    assert (tmp_path / "intsram_dump.bin").read_bytes() == (d / "expected" / "intsram_dump.bin").read_bytes()
    rows = np.load(d / "expected" / "vram_rows.npy")
    assert (tmp_path / "vram_dump.bin").read_bytes() == rows.astype("<u2").tobytes()


@needs_corpus
def test_reference_fallback_flag(corpus, capsys):
    d = corpus / "ops" / "timing_missing_key_fallback"
    args = _case_args(d, "hbm.bin", "fp_sram.bin", "vram_preload.bin") + ["--json"]
    assert main(args) == EXIT_INPUT
    assert "TRANSACTIONAL.LATENCY.VECTOR_SHIFT_CYCLES" in json.loads(capsys.readouterr().out)["error"]["message"]
    assert main(args + ["--reference-fallback"]) == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert out["cycles"] == json.loads((d / "case.json").read_text())["expected"]["cycles"]


def test_hbm_size_limits_capacity(tmp_path, capsys):
    # Y is stored at HBM 16384: with a 16 KiB HBM the store is beyond the capacity and aborts.
    assert main(example_args("--json", "--hbm-size", "16K")) == EXIT_EMULATION
    err = json.loads(capsys.readouterr().out)["error"]
    assert err["kind"] == "out_of_range" and err["opcode"] == "H_STORE_V"
