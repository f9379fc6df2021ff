"""The reference's runtime stage profiler (`--stage-profile-asm`), byte-identical JSON.

What the reference does (scalar-control-timing-profilers.md §5.1):

* Labels come from the ASM text: a trimmed line starting with ``;`` updates the current stage
  (`classify`) and routed-pair id (`extract_pair_id`); a line whose first character is an ASCII
  upper-case letter is an instruction and gets the current (stage, pair) label; label index = pc.
  pcs beyond the labels are stage ``other`` without a pair.
* Per executed instruction it adds 1 instruction, the seconds it took and the HBM bytes it moved
  to its stage, to the grand totals and, with a pair, to pair[pair][stage].  Seconds are
  ``end_ps/1e12 - start_ps/1e12`` in f64, summed in execution order, so the sums are taken in the
  core (`run(..., seconds_labels=...)`) with one label map per accumulator: stage, pair x stage
  and grand total.  Counts and bytes are integers and come from the per-pc counters.
* JSON: serde_json pretty printing (2-space indent) with a fixed key order, f64 numbers in ryu's
  shortest-digit layout (`format_f64`), and a trailing newline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np

from emulator.errors import InputError
from emulator.outputs import write_text
from emulator.program import Program
from emulator.result import RunResult

SCHEMA_VERSION = 1
STAGES = (
    "router_topk", "accumulator_init", "gather", "expert_weight_address", "expert_weight_prefetch",
    "expert_projection", "expert_activation", "expert_bias", "expert_route_weight", "scatter_combine", "other",
)
OTHER = STAGES.index("other")
CAVEAT = (
    "Stage and routed-pair labels are derived from generated ASM comments. Time and HBM bytes are "
    "attributed by dynamically executed opcode. Bytes are measured from the global HBM stats delta "
    "before/after each opcode. Pair labels identify static routed pair slots, not necessarily unique "
    "expert IDs without joining the routing dump."
)
U32_MAX = 0xFFFFFFFF
PS_PER_CYCLE = 1000


class StageProfileError(InputError):
    """No ASM to take labels from, or a run that did not record the execution-order seconds."""


# ----------------------------------------------------------------------------------- labels

def classify(comment: str, current: str) -> str:
    """Stage of a comment line, given the current stage (rules in the reference's order)."""
    c = comment.lower()
    if "gpt-oss router" in c or "router token" in c or "router dot token" in c:
        return "router_topk"
    if "gpt-oss vram scatter-add" in c or "_scatter" in c:
        return "scatter_combine"
    if "allocate vram matrix step6_pair" in c and "_route" in c:
        return "expert_route_weight"
    if ("materialize route weight" in c or "vram matrix mul" in c
            or ("true-zero vram rows" in c and current == "expert_route_weight")):
        return "expert_route_weight"
    if "step6_device_routing_acc" in c or "true-zero vram rows" in c:
        return "accumulator_init"
    if ("gpt-oss gather token rows" in c or "gather pair" in c or "clear gather padding" in c
            or ("allocate vram matrix step6_pair" in c and "_gather" in c)):
        return "gather"
    if "dynamic expert bias add" in c:
        return "expert_bias"
    if "allocate vram matrix step6_pair" in c and "_sigmoid" in c:
        return "expert_activation"
    if ("tile row min fp" in c or "tile row max fp" in c
            or (current == "expert_activation"
                and ("vram fill zero" in c or "vram matrix add" in c or "vram matrix mul" in c))):
        return "expert_activation"
    if "dynamic hbm weight prefetch" in c or "expert_id_to_weight_base" in c:
        return "expert_weight_address"
    if "subblock [" in c:
        return "expert_weight_prefetch"
    if ("sub projection" in c or "vram block add" in c or "vram block" in c
            or ("allocate vram matrix step6_pair" in c and "_gather" not in c)):
        return "expert_projection"
    return current


def _digits_after(line: str, needle: str) -> int | None:
    start = 0
    while True:
        i = line.find(needle, start)
        if i < 0:
            return None
        j = i + len(needle)
        k = j
        while k < len(line) and "0" <= line[k] <= "9":
            k += 1
        if k > j and int(line[j:k]) <= U32_MAX:
            return int(line[j:k])
        start = i + 1


def extract_pair_id(line: str) -> int | None:
    """First `step6_pair<digits>` (u32), else first `pair=<digits>`, else None."""
    found = _digits_after(line, "step6_pair")
    return found if found is not None else _digits_after(line, "pair=")


@dataclass(frozen=True)
class StageLabels:
    stage: tuple[int, ...]              # per label (= pc): index into STAGES
    pair: tuple[int | None, ...]        # per label: routed-pair id or None

    @property
    def label_count(self) -> int:
        return len(self.stage)


def build_labels(asm_text: str) -> StageLabels:
    stage = "other"
    pair: int | None = None
    stages: list[int] = []
    pairs: list[int | None] = []
    for raw in asm_text.split("\n"):
        line = raw.strip()
        if not line:
            continue
        if line.startswith(";"):
            stage = classify(line, stage)
            new_pair = extract_pair_id(line)
            if new_pair is not None:
                pair = new_pair
            elif stage in ("router_topk", "accumulator_init"):
                pair = None
        elif "A" <= line[0] <= "Z":
            stages.append(STAGES.index(stage))
            pairs.append(pair)
    return StageLabels(tuple(stages), tuple(pairs))


@dataclass(frozen=True)
class LabelMaps:
    """int32 label maps for `run(seconds_labels=...)` and the pair ids they index."""

    stage: np.ndarray        # [n_words] stage index
    pair_stage: np.ndarray   # [n_words] pair_slot * len(STAGES) + stage, or -1 without a pair
    total: np.ndarray        # [n_words] all 0: the grand total in execution order
    pair_ids: tuple[int, ...]  # pair slot -> pair id (ascending)

    def as_list(self) -> list[np.ndarray]:
        return [self.stage, self.pair_stage, self.total]


def label_maps(labels: StageLabels, n_words: int) -> LabelMaps:
    stage = np.full(n_words, OTHER, dtype=np.int32)
    pair_stage = np.full(n_words, -1, dtype=np.int32)
    m = min(n_words, labels.label_count)
    stage[:m] = labels.stage[:m]
    pair_ids = tuple(sorted({p for p in labels.pair[:m] if p is not None}))
    slot = {p: i for i, p in enumerate(pair_ids)}
    for pc in range(m):
        p = labels.pair[pc]
        if p is not None:
            pair_stage[pc] = slot[p] * len(STAGES) + labels.stage[pc]
    return LabelMaps(stage, pair_stage, np.zeros(n_words, dtype=np.int32), pair_ids)


def seconds_from_trace(result: RunResult, maps: LabelMaps) -> list[np.ndarray]:
    """The execution-order f64 sums computed from a complete `result.trace` (for runs made
    without `seconds_labels`)."""
    tr = result.trace
    if tr is None or tr.truncated or len(tr.pc) != result.instructions:
        raise StageProfileError("the stage profile needs the run's execution-order seconds: run with "
                                "seconds_labels=label_maps(...).as_list() or with a complete trace")
    out = []
    for m in maps.as_list():
        size = int(m.max()) + 1 if len(m) and m.max() >= 0 else 1
        sums = np.zeros(size, dtype=np.float64)
        secs = (tr.end.astype(np.int64) * PS_PER_CYCLE).astype(np.float64) / 1e12 - \
               (tr.start.astype(np.int64) * PS_PER_CYCLE).astype(np.float64) / 1e12
        labs = m[tr.pc]
        for lab, s in zip(labs.tolist(), secs.tolist()):  # sequential: f64 sums depend on the order
            if lab >= 0:
                sums[lab] += s
        out.append(sums)
    return out


# ----------------------------------------------------------------------------------- document

def _sum_by(ids: np.ndarray, values: np.ndarray, size: int) -> list[int]:
    out = np.zeros(size, dtype=np.int64)
    valid = ids >= 0
    np.add.at(out, ids[valid], values[valid])
    return [int(v) for v in out]


def _secs(arr: np.ndarray | None, i: int) -> float:
    return float(arr[i]) if arr is not None and i < len(arr) else 0.0


def stage_profile_document(result: RunResult, labels: StageLabels, maps: LabelMaps | None = None,
                           seconds: list[np.ndarray] | None = None) -> dict:
    """The stage-profile JSON document as an ordered dict (values are Python ints/floats)."""
    n = len(result.program)
    maps = maps or label_maps(labels, n)
    if seconds is None:
        seconds = list(result.label_seconds[:3]) if len(result.label_seconds) >= 3 else \
            seconds_from_trace(result, maps)
    stage_secs, pair_secs, total_secs = seconds
    count = np.asarray(result.pc_count, dtype=np.int64)
    read = np.asarray(result.pc_hbm_read, dtype=np.int64)
    written = np.asarray(result.pc_hbm_written, dtype=np.int64)
    ns = len(STAGES)
    s_count = _sum_by(maps.stage, count, ns)
    s_read = _sum_by(maps.stage, read, ns)
    s_written = _sum_by(maps.stage, written, ns)
    total_count = int(count.sum())
    total_seconds = _secs(total_secs, 0)
    stages = {}
    for i, name in enumerate(STAGES):
        sec = _secs(stage_secs, i)
        stages[name] = {
            "instructions": s_count[i],
            "seconds": sec,
            "instruction_fraction": s_count[i] / total_count if total_count else 0.0,
            "time_fraction": sec / total_seconds if total_seconds != 0.0 else 0.0,
            "hbm_bytes_read": s_read[i],
            "hbm_bytes_written": s_written[i],
        }
    size = len(maps.pair_ids) * ns
    p_count = _sum_by(maps.pair_stage, count, size)
    p_read = _sum_by(maps.pair_stage, read, size)
    p_written = _sum_by(maps.pair_stage, written, size)
    executed = np.zeros(size + 1, dtype=np.int64)
    np.add.at(executed, np.where(maps.pair_stage >= 0, maps.pair_stage, size), count)
    pairs = {}
    for slot, pid in enumerate(maps.pair_ids):
        base = slot * ns
        if not executed[base:base + ns].any():
            continue  # the reference creates a pair entry when one of its instructions executes
        per_stage = {}
        tot_i, tot_s, tot_r, tot_w = 0, 0.0, 0, 0
        for i, name in enumerate(STAGES):
            k = base + i
            sec = _secs(pair_secs, k)
            per_stage[name] = {"instructions": p_count[k], "seconds": sec, "hbm_bytes_read": p_read[k],
                               "hbm_bytes_written": p_written[k]}
            tot_i += p_count[k]
            tot_s += sec
            tot_r += p_read[k]
            tot_w += p_written[k]
        pairs[str(pid)] = {"instructions": tot_i, "seconds": tot_s, "hbm_bytes_read": tot_r,
                           "hbm_bytes_written": tot_w, "stages": per_stage}
    return {
        "schema_version": SCHEMA_VERSION,
        "label_count": labels.label_count,
        "total_instructions_executed": total_count,
        "total_profiled_seconds": total_seconds,
        "total_hbm_bytes_read": int(read.sum()),
        "total_hbm_bytes_written": int(written.sum()),
        "stages": stages,
        "pairs": pairs,
        "caveat": CAVEAT,
    }


# ----------------------------------------------------------------------------------- formatting

def format_f64(x: float) -> str:
    """An f64 the way serde_json writes it (ryu): shortest round-trip digits, with 0.0 -> `0.0`,
    1234.0, 12.34, 0.001234 for exponents -5 < kk <= 16 and `1e-6`, `1.5e-7`, `1e16`, `1.2345e20`
    (no `+`, no zero padding) otherwise; non-finite values are `null`."""
    if not math.isfinite(x):
        return "null"
    sign = "-" if math.copysign(1.0, x) < 0 else ""
    if x == 0.0:
        return sign + "0.0"
    _, digits_t, exp = Decimal(repr(abs(x))).as_tuple()
    digits = "".join(map(str, digits_t))
    # Normalise: move trailing zeros into the exponent (the Decimal of "1230.0" keeps them).
    stripped = digits.rstrip("0")
    exp += len(digits) - len(stripped)
    digits = stripped
    length = len(digits)
    kk = length + exp          # 10^(kk-1) <= |x| < 10^kk
    if 0 <= exp and kk <= 16:
        out = digits + "0" * (kk - length) + ".0"
    elif 0 < kk <= 16:
        out = digits[:kk] + "." + digits[kk:]
    elif -5 < kk <= 0:
        out = "0." + "0" * (-kk) + digits
    elif length == 1:
        out = f"{digits}e{kk - 1}"
    else:
        out = f"{digits[0]}.{digits[1:]}e{kk - 1}"
    return sign + out


def _escape(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _pretty(value, indent: int) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_f64(value)
    if isinstance(value, str):
        return _escape(value)
    if value is None:
        return "null"
    if isinstance(value, dict):
        if not value:
            return "{}"
        pad = "  " * (indent + 1)
        items = [f"{pad}{_escape(str(k))}: {_pretty(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        pad = "  " * (indent + 1)
        return "[\n" + ",\n".join(pad + _pretty(v, indent + 1) for v in value) + "\n" + "  " * indent + "]"
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def to_json_text(document: dict) -> str:
    """serde_json::to_string_pretty + the trailing newline the reference appends."""
    return _pretty(document, 0) + "\n"


# ----------------------------------------------------------------------------------- entry points

def stage_profile_json(result: RunResult, asm_text: str | None = None, maps: LabelMaps | None = None) -> str:
    asm = asm_text if asm_text is not None else result.program.asm_text
    if asm is None:
        raise StageProfileError("the stage profile needs the program's ASM text (labels come from its comments)")
    return to_json_text(stage_profile_document(result, build_labels(asm), maps))


def labels_for(program: Program, asm_text: str | None = None) -> tuple[StageLabels, LabelMaps]:
    asm = asm_text if asm_text is not None else program.asm_text
    if asm is None:
        raise StageProfileError("the stage profile needs the program's ASM text (labels come from its comments)")
    labels = build_labels(asm)
    return labels, label_maps(labels, len(program))


def run_with_stage_profile(program: Program, asm_text: str | None = None, **run_kwargs) -> tuple[RunResult, str]:
    """Run `program` with the stage profiler's label maps; returns (result, JSON text)."""
    from emulator.runner import run

    labels, maps = labels_for(program, asm_text)
    if run_kwargs.get("seconds_labels"):
        raise StageProfileError("run_with_stage_profile sets seconds_labels itself")
    result = run(program, seconds_labels=maps.as_list(), **run_kwargs)
    return result, to_json_text(stage_profile_document(result, labels, maps, list(result.label_seconds[:3])))


def write_stage_profile(path: str | Path, text: str) -> None:
    write_text(path, text)
