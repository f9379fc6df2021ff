"""The profiler's dashboard data: the source heat table, A/B comparison and the offline report."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from emulator.asm import assemble, parse_mem
from emulator.runner import run
from profiler.aggregate import profile_run
from profiler.cli import main
from profiler.compare import compare_profiles
from profiler.heat import heat_problems
from profiler.html import render_report, script_safe_json
from profiler.report import ProfileFormatError, profile_from_dict, profile_to_dict

ASM = """\
; kernel: two sections
S_ADDI_INT gp1, gp0, 5

; Row loop
; detail line the blocks mode skips
C_LOOP_START gp2, 4
S_ADDI_INT gp3, gp3, 1
C_LOOP_END gp2
"""


def _doc(asm: str = ASM, **kwargs) -> dict:
    return profile_to_dict(profile_run(run(assemble(asm, name="k")), **kwargs))


def test_heat_table_joins_counters_to_every_source_line():
    result = run(assemble(ASM, name="k"))
    doc = profile_to_dict(profile_run(result))
    src = doc["source"]
    assert src["lines"] == ASM.rstrip("\n").split("\n")
    assert src["pc_line"] == [2, 6, 7, 8]
    assert src["pc_count"] == result.pc_count.tolist() == [1, 1, 4, 4]
    assert src["pc_cycles"] == result.pc_cycles.tolist()
    assert sum(src["pc_cycles"]) == doc["totals"]["cycles"]
    paths = [src["section_paths"][i] for i in src["pc_section"]]
    assert paths[0] == ["kernel: two sections"] and paths[2] == ["Row loop"]
    assert heat_problems(src) == []
    assert profile_from_dict(json.loads(json.dumps(doc))).source == src


def test_heat_table_of_machine_code_is_its_disassembly():
    program = parse_mem(assemble(ASM).to_mem_text(), name="m")
    src = profile_to_dict(profile_run(run(program)))["source"]
    assert src["pc_line"] == [1, 2, 3, 4]
    assert src["lines"][0].startswith("S_ADDI_INT")


def test_a_broken_heat_table_is_rejected_by_name():
    doc = _doc()
    doc["source"]["pc_line"][0] = 999
    with pytest.raises(ProfileFormatError, match="pc_line"):
        profile_from_dict(doc)
    doc = _doc()
    doc["source"]["pc_count"].pop()
    with pytest.raises(ProfileFormatError, match="pc_count has 3 entries for 4 pcs"):
        profile_from_dict(doc)


def test_compare_matches_sections_by_path_and_sorts_by_change():
    a = _doc()
    b = _doc(ASM.replace("C_LOOP_START gp2, 4", "C_LOOP_START gp2, 9").replace("; kernel: two sections", "; renamed"))
    c = compare_profiles(a, b)
    assert c["totals"]["cycles"] == {"a": a["totals"]["cycles"], "b": b["totals"]["cycles"],
                                     "delta": b["totals"]["cycles"] - a["totals"]["cycles"],
                                     "ratio": b["totals"]["cycles"] / a["totals"]["cycles"]}
    (loop,) = c["sections"]
    assert loop["key"] == "Row loop" and loop["delta_instructions"] == 10   # 2 more per trip, 5 more trips
    assert [r["key"] for r in c["only_a"]] == ["kernel: two sections"]
    assert [r["key"] for r in c["only_b"]] == ["renamed"]
    deltas = [abs(r["delta_cycles"]) for r in c["opcodes"]]
    assert deltas == sorted(deltas, reverse=True)
    by_op = {r["key"]: r for r in c["opcodes"]}
    assert by_op["S_ADDI_INT"]["instructions_b"] - by_op["S_ADDI_INT"]["instructions_a"] == 5


def test_compare_walks_nested_sections():
    nested = "; @section outer\n; inner\nS_ADDI_INT gp1, gp0, 1\n; @end\n"
    c = compare_profiles(_doc(nested), _doc(nested.replace("gp0, 1", "gp0, 2")))
    assert sorted(r["key"] for r in c["sections"]) == ["outer", "outer / inner"]
    assert all(r["delta_cycles"] == 0 for r in c["sections"])


def test_script_safe_json_cannot_close_the_script_element():
    text = script_safe_json({"x": "</script><!-- & \u2028"})
    assert "</" not in text and "<!--" not in text and "\u2028" not in text
    assert json.loads(text) == {"x": "</script><!-- & \u2028"}


def test_offline_report_is_one_self_contained_file(tmp_path):
    doc = _doc(ASM.replace("; Row loop", "; Row loop </script>"))
    html = render_report(doc)
    assert html.count("<script") == html.count("</script>")
    markup = re.sub(r"<(script|style)[^>]*>.*?</\1>", "", html, flags=re.S)
    # nothing is loaded from elsewhere (the favicon is an empty data: URL)
    assert not re.search(r"""<(script|link|img)[^>]*(src|href)=["'](?!data:)""", markup)
    data = re.search(r'<script id="profile-data" type="application/json">(.*?)</script>', html, re.S).group(1)
    assert json.loads(data) == json.loads(json.dumps(doc))


def test_plena_profile_html_and_emulate_html(tmp_path, capsys):
    from emulator.cli import main as emulate_main

    asm = tmp_path / "k.asm"
    asm.write_text(ASM)
    saved, direct, via_html = tmp_path / "p.json", tmp_path / "direct.html", tmp_path / "report.html"
    assert emulate_main([str(asm), "--html", str(direct), "--profile-json", str(saved), "-q"]) == 0
    assert main(["html", str(saved), "-o", str(via_html), "--title", "my kernel"]) == 0
    for path in (direct, via_html):
        text = path.read_text()
        assert "Plotly" in text and "PlenaView" in text and len(text) > 1_000_000
    assert "<title>my kernel</title>" in via_html.read_text()
    assert main(["html", str(tmp_path / "missing.json"), "-o", str(tmp_path / "x.html")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_heat_table_counters_equal_the_run_for_a_loop():
    result = run(assemble(ASM))
    src = profile_to_dict(profile_run(result))["source"]
    per_line = np.zeros(len(src["lines"]) + 1, dtype=np.int64)
    np.add.at(per_line, src["pc_line"], src["pc_cycles"])
    assert per_line.sum() == result.cycles
