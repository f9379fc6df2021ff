"""The reference's --stage-profile-asm JSON: labels, classifier, pair ids, float format, layout."""

from __future__ import annotations

import json
import math
import random
import struct
from pathlib import Path

import pytest

from profiler.stage_profile import (
    CAVEAT, STAGES, StageProfileError, build_labels, classify, extract_pair_id, format_f64, label_maps,
    stage_profile_document, stage_profile_json, to_json_text,
)
from tests.test_profiler_support import synthetic_result

DATA = Path(__file__).resolve().parent / "data" / "profiler"


@pytest.mark.parametrize("value, text", [
    (0.0, "0.0"), (-0.0, "-0.0"), (1.0, "1.0"), (123.0, "123.0"), (-2.5, "-2.5"), (0.1, "0.1"),
    (1e-5, "0.00001"), (1.5e-5, "0.000015"), (1e-4, "0.0001"), (0.00012, "0.00012"),
    (1e-6, "1e-6"), (1.5e-7, "1.5e-7"), (1e-9, "1e-9"), (9.99999999999999e-10, "9.99999999999999e-10"),
    (1e15, "1000000000000000.0"), (9007199254740993.0, "9007199254740992.0"), (1e16, "1e16"),
    (1.2345e20, "1.2345e20"), (12345678901234567.0, "1.2345678901234568e16"),
    (5e-324, "5e-324"), (1.7976931348623157e308, "1.7976931348623157e308"),
    (0.1 + 0.2, "0.30000000000000004"), (2 / 3, "0.6666666666666666"), (1234.5678, "1234.5678"),
    (float("inf"), "null"), (float("nan"), "null"),
])
def test_ryu_float_layout(value, text):
    assert format_f64(value) == text


def test_float_digits_round_trip():
    rng = random.Random(7)
    for _ in range(2000):
        x = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
        if not math.isfinite(x):
            continue
        text = format_f64(x)
        assert float(text) == x
        assert "+" not in text and "e-0" not in text and "e0" not in text
        mantissa = text.lstrip("-").split("e")[0].replace(".", "").lstrip("0").rstrip("0")
        assert len(mantissa) <= 17


@pytest.mark.parametrize("comment, current, stage", [
    ("; GPT-OSS router dot token", "other", "router_topk"),
    ("; router token 3", "gather", "router_topk"),
    ("; gpt-oss VRAM scatter-add", "other", "scatter_combine"),
    ("; buf_scatter", "other", "scatter_combine"),
    ("; Allocate VRAM Matrix step6_pair0_route", "other", "expert_route_weight"),
    ("; materialize route weight", "other", "expert_route_weight"),
    ("; VRAM Matrix Mul: a *= b", "expert_activation", "expert_route_weight"),
    ("; true-zero VRAM rows", "expert_route_weight", "expert_route_weight"),
    ("; true-zero VRAM rows", "other", "accumulator_init"),
    ("; step6_device_routing_acc", "other", "accumulator_init"),
    ("; gpt-oss gather token rows", "other", "gather"),
    ("; gather pair 3", "other", "gather"),
    ("; clear gather padding", "other", "gather"),
    ("; Allocate VRAM Matrix step6_pair1_gather", "other", "gather"),
    ("; dynamic expert bias add", "other", "expert_bias"),
    ("; Allocate VRAM Matrix step6_pair1_sigmoid", "other", "expert_activation"),
    ("; Tile Row Max FP on VRAM[8192]", "other", "expert_activation"),
    ("; VRAM Fill Zero: x", "expert_activation", "expert_activation"),
    ("; VRAM Matrix Add: x", "expert_activation", "expert_activation"),
    ("; VRAM Matrix Add: x", "gather", "gather"),
    ("; dynamic HBM weight prefetch", "other", "expert_weight_address"),
    ("; expert_id_to_weight_base", "other", "expert_weight_address"),
    ("; SubBlock [0][1]: HBM offset = 64", "other", "expert_weight_prefetch"),
    ("; VRAM Sub Projection: X @ W", "other", "expert_projection"),
    ("; VRAM Block Add", "other", "expert_projection"),
    ("; Allocate VRAM Matrix step6_pair2_up", "other", "expert_projection"),
    ("; Preload Activation Generation", "expert_bias", "expert_bias"),
])
def test_classify(comment, current, stage):
    assert classify(comment, current) == stage


@pytest.mark.parametrize("line, pair", [
    ("; Allocate VRAM Matrix step6_pair12_gather", 12),
    ("; step6_pair_x step6_pair7", 7),
    ("; step6_pair99999999999 then pair=5", 5),        # u32 overflow: keep scanning
    ("; step6_pair4294967295", 4294967295),
    ("; pair=", None), ("; PAIR=3", None), ("; repair=9", 9), ("; nothing", None),
])
def test_extract_pair_id(line, pair):
    assert extract_pair_id(line) == pair


def test_labels_follow_the_reference_line_rules():
    asm = """\
; router token
S_ADDI_INT gp1, gp0, 1
    ; Allocate VRAM Matrix step6_pair4_gather
// not a label
s_lower_case_is_not_an_opcode_line
S_ADDI_INT gp1, gp0, 1 ; gpt-oss router (inline comments are ignored)
; SubBlock [0]
M_MM 0, gp1, gp2
; step6_device_routing_acc
C_BREAK
"""
    labels = build_labels(asm)
    assert labels.label_count == 4
    assert [STAGES[s] for s in labels.stage] == ["router_topk", "gather", "expert_weight_prefetch", "accumulator_init"]
    assert labels.pair == (None, 4, 4, None)
    maps = label_maps(labels, 6)  # more words than labels: the rest is `other`, no pair
    assert maps.stage.tolist()[4:] == [STAGES.index("other")] * 2
    assert maps.pair_stage.tolist() == [-1, STAGES.index("gather"), STAGES.index("expert_weight_prefetch"), -1, -1, -1]
    assert maps.pair_ids == (4,)


def _example():
    asm = (DATA / "stage_example.asm").read_text()
    # pcs 0..4; V_MUL_VV (pc 3) takes 5 cycles, the rest 1; pc 2 reads one 64-byte block each time.
    result = synthetic_result(asm, [0, 1, 2, 3, 2, 3, 4], {3: 5}, hbm={2: (64, 0)})
    return asm, result


def test_golden_stage_profile_json():
    """stage_example.json was typed out by hand from the rules (scalar-control-timing-profilers.md §5.1):
    stages router_topk, gather (pair 3), expert_weight_prefetch (pair 3 kept), expert_route_weight
    (pair=12), accumulator_init (pair reset); per-instruction seconds end_ps/1e12 - start_ps/1e12
    summed in execution order; pair totals summed over the stages in ALL order."""
    asm, result = _example()
    assert stage_profile_json(result, asm) == (DATA / "stage_example.json").read_text()


def test_sums_are_taken_in_execution_order():
    asm, result = _example()
    doc = stage_profile_document(result, build_labels(asm))
    total = 0.0
    for s, e in zip(result.trace.start.tolist(), result.trace.end.tolist()):
        total += (e * 1000) / 1e12 - (s * 1000) / 1e12
    assert doc["total_profiled_seconds"] == total
    assert doc["total_instructions_executed"] == result.instructions
    assert sum(v["instructions"] for v in doc["stages"].values()) == result.instructions
    assert list(doc) == ["schema_version", "label_count", "total_instructions_executed", "total_profiled_seconds",
                         "total_hbm_bytes_read", "total_hbm_bytes_written", "stages", "pairs", "caveat"]
    assert list(doc["stages"]) == list(STAGES)
    assert list(doc["pairs"]) == ["3", "12"]
    assert doc["caveat"] == CAVEAT


def test_needs_execution_order_seconds():
    asm, result = _example()
    result.trace.truncated = True
    with pytest.raises(StageProfileError, match="seconds_labels"):
        stage_profile_document(result, build_labels(asm))


def test_pretty_printer_matches_serde_layout():
    doc = {"a": 1, "b": {}, "c": {"d": [1, 2.5], "e": "x\"\n\u0001é"}, "f": None, "g": True}
    assert to_json_text(doc) == (
        '{\n  "a": 1,\n  "b": {},\n  "c": {\n    "d": [\n      1,\n      2.5\n    ],\n'
        '    "e": "x\\"\\n\\u0001é"\n  },\n  "f": null,\n  "g": true\n}\n')
    assert json.loads(to_json_text(doc)) == doc
