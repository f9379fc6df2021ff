"""Profiler on the conformance corpus: section totals add up, static == dynamic, valid trace files,
stage-profile JSON structure.  Skipped when the corpus is absent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emulator.asm import load_program
from emulator.runner import run
from emulator.settings import SettingsError, load_settings
from isa_specs import load_isa
from profiler.aggregate import profile_run
from profiler.report import profile_from_dict, profile_to_dict, profile_to_json
from profiler.stage_profile import (
    STAGES, build_labels, label_maps, seconds_from_trace, stage_profile_document, to_json_text,
)
from profiler.static import estimate
from profiler.trace import build_trace, validate_trace
from tests.conftest import CONFORMANCE, corpus_cases, needs_corpus, sub_corpus_cases

pytestmark = [pytest.mark.conformance, needs_corpus]

PROFILED = ["aten_ffn", "de_gelu", "aten_layer_norm", "moe_topk", "moe_expert", "de_linear_loop",
            "aten_flash_attention_gqa"]


def _case_dir(name: str) -> Path:
    top = CONFORMANCE / name
    return top if (top / "case.json").is_file() else CONFORMANCE / "ops" / name


def _inputs(name: str, source: str = "mem"):
    d = _case_dir(name)
    case = json.loads((d / "case.json").read_text())
    try:
        settings = load_settings(d / "settings.toml")
    except SettingsError:  # the corpus case that omits a key on purpose: the reference's fallback
        settings = load_settings(d / "settings.toml", missing="reference-defaults")
    if "hbm_size" in case:
        settings = settings.with_overrides({"HBM_SIZE": case["hbm_size"]})
    program = load_program(d / f"program.{source}")
    files = {key: d / f for key, f in (("hbm", "hbm.bin"), ("fp_sram", "fp_sram.bin"), ("int_sram", "int_sram.bin"),
                                        ("vram", "vram_preload.bin")) if (d / f).is_file()}
    return case, program, settings, files


def _has_dma(program) -> bool:
    spec = load_isa()
    opcodes = {spec.fields["opcode"].extract(int(w)) for w in program.words}
    return any(spec.by_opcode[o].is_dma for o in opcodes if o in spec.by_opcode)


def _completing_cases() -> list[str]:
    names = []
    for name in corpus_cases() + sub_corpus_cases("ops"):
        case = json.loads((_case_dir(name) / "case.json").read_text())
        if "error" not in case["expected"]:
            names.append(name)
    return names


def _dma_free(names: list[str]) -> list[str]:
    return [n for n in names if not _has_dma(load_program(_case_dir(n) / "program.mem"))]


COMPLETING = _completing_cases()
DMA_FREE = _dma_free(COMPLETING)
WITH_DMA = sorted(set(COMPLETING) - set(DMA_FREE))


def test_corpus_selection_is_meaningful():
    assert "moe_topk" in DMA_FREE
    assert len(DMA_FREE) > 100 and len(WITH_DMA) > 20


@pytest.mark.parametrize("name", DMA_FREE)
def test_static_estimate_equals_the_run_without_dma(name):
    case, program, settings, files = _inputs(name)
    est = estimate(program, settings, int_sram=files.get("int_sram"))
    result = run(program, settings=settings, **files)
    assert result.error is None
    assert est.exact and est.error is None
    assert est.counters.cycles == result.cycles == case["expected"]["cycles"]
    np.testing.assert_array_equal(est.counters.pc_count, result.pc_count)
    np.testing.assert_array_equal(est.counters.pc_cycles, result.pc_cycles)


@pytest.mark.parametrize("name", WITH_DMA)
def test_static_estimate_equals_the_run_with_dma(name):
    """DMA goes through the same HBM timing model with the same access sequence, so the estimate
    equals the run (and both equal the reference where the reference itself is deterministic)."""
    case, program, settings, files = _inputs(name)
    est = estimate(program, settings, int_sram=files.get("int_sram"))
    result = run(program, settings=settings, **files)
    assert result.error is None
    assert est.counters.cycles == result.cycles
    assert est.counters.hbm_bytes_read == result.hbm_bytes_read == case["expected"]["hbm_bytes_read"]
    assert est.counters.hbm_bytes_written == result.hbm_bytes_written == case["expected"]["hbm_bytes_written"]
    np.testing.assert_array_equal(est.counters.pc_cycles, result.pc_cycles)


@pytest.mark.parametrize("name", PROFILED)
def test_profile_of_a_corpus_run(name):
    case, program, settings, files = _inputs(name, "asm")
    labels = build_labels(program.asm_text)
    maps = label_maps(labels, len(program))
    result = run(program, settings=settings, trace_limit=1_000_000, seconds_labels=maps.as_list(), **files)
    assert result.error is None

    # Sections and opcodes add up to the run exactly.
    p = profile_run(result)
    d = profile_to_dict(p)
    assert d["totals"]["cycles"] == result.cycles
    for key, total in (("cycles", result.cycles), ("instructions", result.instructions),
                       ("hbm_bytes_read", result.hbm_bytes_read), ("hbm_bytes_written", result.hbm_bytes_written)):
        assert sum(s[key] for s in d["sections"]) == total
        assert sum(r[key] for r in d["by_opcode"].values()) == total
    assert sum(u["busy_cycles"] for u in d["units"].values()) == result.cycles
    assert profile_to_json(profile_from_dict(json.loads(profile_to_json(p)))) == profile_to_json(p)

    # The timeline is valid trace-event JSON and covers the run.
    doc = build_trace(result)
    assert validate_trace(json.loads(json.dumps(doc))) == []
    assert doc["otherData"]["exact_instructions"] == result.instructions
    end = max(e["ts"] + e["dur"] for e in doc["traceEvents"] if e["ph"] == "X")
    assert round(end * 1000) == result.cycles

    # The stage profile: structure, totals, and execution-order sums from the core.
    stage = stage_profile_document(result, labels, maps)
    text = to_json_text(stage)
    parsed = json.loads(text)
    assert list(parsed) == ["schema_version", "label_count", "total_instructions_executed",
                            "total_profiled_seconds", "total_hbm_bytes_read", "total_hbm_bytes_written",
                            "stages", "pairs", "caveat"]
    assert parsed["label_count"] == len(program)
    assert parsed["total_instructions_executed"] == result.instructions
    assert parsed["total_hbm_bytes_read"] == result.hbm_bytes_read
    assert list(parsed["stages"]) == list(STAGES)
    assert sum(s["instructions"] for s in parsed["stages"].values()) == result.instructions
    assert parsed["total_profiled_seconds"] == pytest.approx(result.cycles * 1e-9, rel=1e-12)
    assert stage_profile_document(result, labels, maps, seconds_from_trace(result, maps)) == stage
    assert text.endswith("}\n") and '\n  "stages": {\n    "router_topk": {\n      "instructions": ' in text
