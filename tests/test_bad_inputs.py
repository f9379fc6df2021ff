"""Hostile input to the command line, the Python API, the settings loader and the assembler:
every bad input is exit 2 with one clear line (or an InputError), never a traceback, a huge
allocation, a half-written output or a silently wrong number (issue 15, items 2, 7-10, 12)."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import emulator.outputs
import emulator.runner
from emulator.asm import assemble, load_program, parse_mem
from emulator.cli import EXIT_INPUT, EXIT_INTERRUPTED, EXIT_OK, main
from emulator.errors import AssemblerError, ImageError, InputError, ResourceError
from emulator.program import MAX_LABEL_CHARS, Program
from emulator.runner import run
from emulator.settings import MAX_LATENCY_CYCLES, SettingsError, load_settings
from profiler.cli import main as profile_main
from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "linear"
DUMPS = ["fpsram_dump.bin", "intsram_dump.bin", "mram_dump.bin", "vram_dump.bin"]
SMALL = "S_ADDI_INT gp1, gp0, 5\nS_ADDI_INT gp2, gp1, 1\n"


def example_args(*extra: str) -> list[str]:
    return [str(EXAMPLE / "program.asm"), "--hbm", str(EXAMPLE / "hbm.bin"),
            "--fpsram", str(EXAMPLE / "fp_sram.bin"), "--quiet", *extra]


def one_error_line(capsys, prog: str = "emulate") -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"{prog}: error:"), err
    assert "Traceback" not in err
    return err


# ------------------------------------------------------------------------------------ settings (2, 9)

@pytest.mark.parametrize("overrides, words", [
    ({"VECTOR_ADD_CYCLES": 2**63}, "cycle counts must be 0..1,000,000"),
    ({"VECTOR_ADD_CYCLES": 2**62}, "cycle counts must be 0..1,000,000"),        # would wrap the cycle counter
    ({"LATENCY.VECTOR_SUM_CYCLES.dc_lib_dis": -1}, "cycle counts must be 0..1,000,000"),
    ({"HBM_SIZE": 2**50}, "up to 2**48"),
    ({"DC_EN": 2}, "DC_EN must be 0 or 1"),
    ({"VECTOR_SRAM_SIZE": 2**40}, "VECTOR_SRAM_SIZE (1099511627776) rows"),
    ({"MATRIX_SRAM_SIZE": 2**40}, "MATRIX_SRAM_SIZE (1099511627776) makes"),
    ({"HBM_M_Prefetch_Amount": 2**40}, "HBM_M_Prefetch_Amount must be at most 65536"),
    ({"HBM_V_Prefetch_Amount": 2**40}, "HBM_V_Prefetch_Amount must be at most 65536"),
    ({"HBM_V_Writeback_Amount": 2**40}, "HBM_V_Writeback_Amount must be at most 65536"),
    ({"MAX_LOOP_INSTRUCTIONS": 2**63}, "MAX_LOOP_INSTRUCTIONS must be at most 2**62"),
    ({"BROADCAST_AMOUNT": 2**20}, "BROADCAST_AMOUNT must be at most 1024"),
    ({"MLEN": 8192, "VLEN": 8192}, "MLEN above 4096"),
    ({"OVERLAP.UNITS.vector.initiation_interval": 2**62}, "OVERLAP.UNITS.vector.initiation_interval"),
    ({"OVERLAP.OCCUPANCY.V_ADD_VV": 2**62}, "OVERLAP.OCCUPANCY.V_ADD_VV must be an integer 0..1,000,000"),
])
def test_every_numeric_setting_has_a_range(overrides, words):
    with pytest.raises(SettingsError, match=re.escape(words)):
        load_settings(overrides=overrides)


def test_latency_bound_is_inclusive():
    assert load_settings(overrides={"VECTOR_ADD_CYCLES": MAX_LATENCY_CYCLES}).latency("VECTOR_ADD_CYCLES") == \
        MAX_LATENCY_CYCLES


def test_cycle_counter_is_checked_between_chunks(monkeypatch):
    # Settings keep one chunk far below the int64 limit; the accumulator is still checked.
    monkeypatch.setattr(emulator.runner, "CHUNK_INSTRUCTIONS", 1000)
    monkeypatch.setattr(emulator.runner, "CYCLE_LIMIT", 5000)
    result = run("C_LOOP_START gp1, 100000\nS_ADDI_INT gp2, gp2, 1\nC_LOOP_END gp1\n")
    assert result.error is not None and result.error.kind == "resources"
    assert "cycle counter" in result.error.reason and 5000 <= result.cycles < 10000


def test_non_utf8_settings_file_is_a_settings_error(tmp_path):
    bad = tmp_path / "settings.toml"
    bad.write_bytes(b"[TRANSACTIONAL]\n\xff\xfe = 1\n")
    with pytest.raises(SettingsError, match="not UTF-8"):
        load_settings(bad)


# ------------------------------------------------------------------------------------ CLI (7, 8, 10)

@pytest.mark.parametrize("extra, words", [
    (["--hbm-size", "1024T"], "up to 2**48"),
    (["--set", f"VECTOR_ADD_CYCLES={2**63}"], "cycle counts"),
    (["--set", f"VECTOR_SRAM_SIZE={2**40}"], "VECTOR_SRAM_SIZE"),
    (["--set", f"MATRIX_SRAM_SIZE={2**40}"], "MATRIX_SRAM_SIZE"),
    (["--set", f"HBM_V_Prefetch_Amount={2**40}"], "HBM_V_Prefetch_Amount"),
    (["--set", f"HBM_M_Prefetch_Amount={2**40}"], "HBM_M_Prefetch_Amount"),
])
def test_cli_huge_settings_exit_2(extra, words, capsys):
    assert main(example_args(*extra)) == EXIT_INPUT
    assert words in one_error_line(capsys)


@pytest.mark.parametrize("flag, value", [("--max-seconds", "nan"), ("--max-seconds", "-1"), ("--max-seconds", "0"),
                                         ("--max-seconds", "inf"), ("--max-instructions", "-1"),
                                         ("--max-instructions", "0")])
def test_cli_rejects_meaningless_budgets(flag, value, capsys):
    with pytest.raises(SystemExit) as exc:
        main(example_args(flag, value))
    assert exc.value.code == EXIT_INPUT
    assert "expected a" in capsys.readouterr().err


def test_help_says_how_to_bound_a_run(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "no default budget" in out and "--max-seconds" in out


def test_cli_non_utf8_settings_exit_2(tmp_path, capsys):
    bad = tmp_path / "s.toml"
    bad.write_bytes(b"\xff\xfe\x00")
    assert main(example_args("--settings", str(bad))) == EXIT_INPUT
    assert "not UTF-8" in one_error_line(capsys)


def test_cli_dump_name_taken_by_a_directory_fails_before_the_run(tmp_path, capsys, monkeypatch):
    (tmp_path / "o" / "mram_dump.bin").mkdir(parents=True)
    monkeypatch.setattr(emulator.runner, "new_machine", lambda *a, **k: pytest.fail("ran although an output is bad"))
    assert main(example_args("--out", str(tmp_path / "o"))) == EXIT_INPUT
    assert "is a directory" in one_error_line(capsys)
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["mram_dump.bin"]


def test_cli_unwritable_trace_leaves_no_dumps(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(example_args("--out", str(out), "--trace", str(tmp_path / "nodir" / "t.json"))) == EXIT_INPUT
    assert "does not exist" in one_error_line(capsys)
    assert not out.exists() or not any(out.iterdir())


def test_failing_dump_write_leaves_no_partial_files(tmp_path, capsys, monkeypatch):
    real_replace = os.replace
    calls = []

    def full_disk(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_replace(src, dst)

    monkeypatch.setattr(emulator.outputs.os, "replace", full_disk)
    out = tmp_path / "o"
    assert main(example_args("--out", str(out))) == EXIT_INPUT
    assert "No space left on device" in one_error_line(capsys)
    leftovers = sorted(p.name for p in out.iterdir())
    assert not any(name.endswith(".tmp") for name in leftovers), leftovers


def test_dumps_are_written_whole_on_success(tmp_path, capsys):
    assert main(example_args("--out", str(tmp_path / "o"))) == EXIT_OK
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == DUMPS


def test_cli_hbm_preload_is_sized_before_it_is_read(tmp_path, capsys):
    big = tmp_path / "big.bin"
    with big.open("wb") as f:          # a sparse 20 GB file: reading it whole would take 20 GB
        f.truncate(20 * 10**9)
    assert main([str(EXAMPLE / "program.asm"), "--hbm", str(big), "--quiet"]) == EXIT_INPUT
    assert "holds 20000000000 bytes" in one_error_line(capsys)
    t = time.perf_counter()
    assert main([str(EXAMPLE / "program.asm"), "--hbm", "/dev/zero", "--hbm-size", "1M", "--quiet"]) == EXIT_INPUT
    assert "HBM capacity is 1048576" in one_error_line(capsys)
    assert time.perf_counter() - t < 30
    assert main([str(EXAMPLE / "program.asm"), "--fpsram", "/dev/zero", "--quiet"]) == EXIT_INPUT
    assert "FP SRAM has 1024" in one_error_line(capsys)


def test_cli_empty_program_runs_like_the_reference(tmp_path, capsys):
    prog = tmp_path / "empty.asm"
    prog.write_text("; nothing here\n\n")
    assert main([str(prog), "--json", "--quiet"]) == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert out["cycles"] == 0 and out["instructions"] == 0


def test_ctrl_c_is_exit_130_with_one_line(tmp_path):
    code = ("import sys, emulator.cli as c; print('ready', flush=True); "
            "sys.exit(c.main(sys.argv[1:] + ['--quiet', '--max-seconds', '120']))")
    prog = "C_LOOP_START gp1, 4000000\nC_LOOP_START gp2, 4000\nS_ADDI_INT gp3, gp3, 1\nC_LOOP_END gp2\nC_LOOP_END gp1\n"
    path = tmp_path / "spin.asm"
    path.write_text(prog)
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED, err
    # (A cold numba cache adds its one-line notice before the run.)
    assert err.strip().splitlines()[-1] == "emulate: interrupted" and "Traceback" not in err, err


# ------------------------------------------------------------------------------------ plena-profile (7)

def test_plena_profile_checks_outputs_and_budgets(tmp_path, capsys):
    args = ["run", str(EXAMPLE / "program.asm"), "--hbm", str(EXAMPLE / "hbm.bin"), "--quiet"]
    assert profile_main(args + ["--profile-json", str(tmp_path / "nodir" / "p.json")]) == 2
    assert "does not exist" in one_error_line(capsys, "plena-profile")
    assert profile_main(args + ["--max-seconds", "60", "--profile-json", str(tmp_path / "p.json")]) == 0
    assert json.loads((tmp_path / "p.json").read_text())["totals"]["cycles"] > 0
    with pytest.raises(SystemExit):
        profile_main(args + ["--max-seconds", "nan"])
    assert "finite number of seconds" in capsys.readouterr().err
    bad = tmp_path / "s.toml"
    bad.write_bytes(b"\xff")
    assert profile_main(args + ["--settings", str(bad)]) == 2
    assert "not UTF-8" in one_error_line(capsys, "plena-profile")
    assert profile_main(["run", str(EXAMPLE / "program.asm"), "--hbm-size", "1024T"]) == 2
    assert "2**48" in one_error_line(capsys, "plena-profile")


# ------------------------------------------------------------------------------------ Python API (10)

@pytest.mark.parametrize("kwargs", [{"max_wall_seconds": 0}, {"max_wall_seconds": -1.0},
                                    {"max_wall_seconds": float("nan")}, {"max_wall_seconds": float("inf")},
                                    {"max_instructions": -1}, {"max_instructions": 0}, {"max_instructions": 2.5},
                                    {"trace_limit": 10**12}, {"trace_limit": -1}])
def test_run_rejects_meaningless_budgets(kwargs):
    with pytest.raises(InputError):
        run(SMALL, **kwargs)


def test_tensor_of_strings_is_an_image_error():
    with pytest.raises(ImageError, match="tensor 'x'"):
        run(SMALL, tensors={"x": (np.array([["a"] * 8]), 0)})


@pytest.mark.parametrize("words", [np.array([2**40]), [2**32], [-1], np.array([1.5]), ["0x1"]])
def test_program_words_must_fit_32_bits(words):
    with pytest.raises(InputError):
        Program(words)


def test_str_naming_a_program_file_is_read_as_a_path(tmp_path):
    path = tmp_path / "prog.asm"
    path.write_text(SMALL)
    assert run(str(path)).state.gp[2] == 6
    mem = tmp_path / "prog.mem"
    mem.write_text(assemble(SMALL).to_mem_text())
    assert run(str(mem)).state.gp[2] == 6
    with pytest.raises(InputError, match="no program file"):
        run(str(tmp_path / "missing.asm"))
    assert run(SMALL).instructions == 2          # ASM text stays ASM text


def test_empty_program_runs_nothing():
    result = run("; only a comment\n")
    assert (result.cycles, result.instructions, result.error) == (0, 0, None)


def test_memory_budget_before_and_during_the_run():
    with pytest.raises(ResourceError, match="memory budget"):
        run(SMALL, max_memory_bytes=1 << 20)          # the default VRAM alone is 512 MiB
    s = load_settings(overrides={"VECTOR_SRAM_SIZE": 64})
    # H_STORE_V to 64 addresses 1 MiB apart: 64+ HBM pages; a budget that leaves 16 KiB for HBM.
    prog = ("S_LUI_INT gp5, 256\nC_LOOP_START gp2, 64\nH_STORE_V gp0, gp1, a0, 0, 0\n"
            "S_ADD_INT gp1, gp1, gp5\nC_LOOP_END gp2\n")
    from emulator.runner import state_bytes
    fixed = sum(state_bytes(s, len(assemble(prog))).values())
    result = run(prog, settings=s, max_memory_bytes=fixed + 16 * 1024)
    assert result.error is not None and result.error.kind == "resources"
    assert "memory budget" in result.error.reason and result.error.opcode == "H_STORE_V"
    assert run(prog, settings=s, max_memory_bytes=fixed + (1 << 20)).error is None


def test_loop_error_names_the_opcode_once():
    # Machine code: no source line in the message, so every mention comes from the message itself.
    err = run(Program(assemble("C_LOOP_END gp1\n").words)).error
    assert err.kind == "loop" and str(err).count("C_LOOP_END") == 1, str(err)
    err = run(Program(assemble("C_BREAK\n").words)).error
    assert err.kind == "loop" and str(err).count("C_BREAK") == 1, str(err)


# ------------------------------------------------------------------------------------ assembler (12, 4)

@pytest.mark.parametrize("line", ["S_ADDI_INT gp\u0661, gp0, 1", "S_ADDI_INT gp1, gp0, \uff15",
                                  "S_ADDI_INT gp1, gp\u00b2, 1", "S_ADDI_INT gp1, gp0, \u0661\u0662"])
def test_only_ascii_digits_are_numbers(line):
    with pytest.raises(AssemblerError):
        assemble(line + "\n")


def test_utf8_bom_is_skipped(tmp_path):
    asm = tmp_path / "p.asm"
    asm.write_bytes(b"\xef\xbb\xbf" + SMALL.encode())
    mem = tmp_path / "p.mem"
    mem.write_bytes(b"\xef\xbb\xbf" + assemble(SMALL).to_mem_text().encode())
    expected = assemble(SMALL).words.tolist()
    assert load_program(asm).words.tolist() == expected
    assert load_program(mem).words.tolist() == expected
    assert assemble("\ufeff" + SMALL).words.tolist() == expected
    assert parse_mem("\ufeff0x00000001\n").words.tolist() == [1]


def test_long_comments_become_clipped_labels():
    comment = "x" * 1_000_000
    program = assemble(f"; {comment}\nS_ADDI_INT gp1, gp0, 1 ; {comment}\n")
    assert len(program.source[0].comment) == MAX_LABEL_CHARS and program.source[0].comment.endswith("\u2026")
    assert len(program.source[0].text) == MAX_LABEL_CHARS
    from profiler.aggregate import profile_run
    prof = profile_run(run(program))
    assert all(len(s.name) <= MAX_LABEL_CHARS for s in prof.sections)
