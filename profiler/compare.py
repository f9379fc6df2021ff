"""A/B comparison of two plena-profile documents (profiler/SCHEMA.md).

Sections are matched by their path (outermost name first), at every depth of the hierarchy;
opcodes by mnemonic.  Each matched row carries A's and B's cycles and instructions and the delta
B - A; rows are sorted by the absolute cycle change (largest first).  Sections present on one side
only are listed separately (`only_a`, `only_b`), so a renamed section is visible as such instead
of hiding inside a delta.
"""

from __future__ import annotations

from typing import Any

PATH_SEPARATOR = " / "


def _flat_sections(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every section of the document (nested ones included) by its joined path."""
    out: dict[str, dict[str, Any]] = {}
    stack = list(doc.get("sections") or [])
    while stack:
        node = stack.pop()
        out[PATH_SEPARATOR.join(node["path"])] = node
        stack.extend(node.get("sections") or [])
    return out


def _ratio(b: int, a: int) -> float | None:
    return b / a if a else None


def _row(key: str, a: dict[str, Any], b: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    return {**extra, "key": key,
            "cycles_a": a["cycles"], "cycles_b": b["cycles"], "delta_cycles": b["cycles"] - a["cycles"],
            "ratio": _ratio(b["cycles"], a["cycles"]),
            "instructions_a": a["instructions"], "instructions_b": b["instructions"],
            "delta_instructions": b["instructions"] - a["instructions"]}


def _by_change(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (-abs(r["delta_cycles"]), -max(r["cycles_a"], r["cycles_b"]), r["key"]))


def _one_side(nodes: dict[str, dict[str, Any]], keys: set[str]) -> list[dict[str, Any]]:
    rows = [{"key": k, "path": list(nodes[k]["path"]), "cycles": nodes[k]["cycles"],
             "instructions": nodes[k]["instructions"]} for k in keys]
    return sorted(rows, key=lambda r: (-r["cycles"], r["key"]))


def compare_profiles(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The comparison of profile `a` (before) and `b` (after); see the module docstring."""
    ta, tb = a["totals"], b["totals"]
    totals = {}
    for key in ("cycles", "instructions", "hbm_bytes_read", "hbm_bytes_written", "macs"):
        totals[key] = {"a": ta[key], "b": tb[key], "delta": tb[key] - ta[key], "ratio": _ratio(tb[key], ta[key])}
    sa, sb = _flat_sections(a), _flat_sections(b)
    sections = _by_change([_row(k, sa[k], sb[k], {"path": list(sa[k]["path"]), "depth": len(sa[k]["path"]) - 1})
                           for k in sa.keys() & sb.keys()])
    oa, ob = a.get("by_opcode") or {}, b.get("by_opcode") or {}
    zero = {"cycles": 0, "instructions": 0}
    opcodes = _by_change([_row(mn, oa.get(mn, zero), ob.get(mn, zero),
                               {"unit": (oa.get(mn) or ob.get(mn))["unit"]})
                          for mn in oa.keys() | ob.keys()])
    return {
        "totals": totals,
        "sections": sections,
        "only_a": _one_side(sa, sa.keys() - sb.keys()),
        "only_b": _one_side(sb, sb.keys() - sa.keys()),
        "opcodes": opcodes,
        "sections_mode": {"a": a.get("sections_mode"), "b": b.get("sections_mode")},
        "settings": {"a": a.get("settings"), "b": b.get("settings")},
    }
