"""The Profile model: per-section, per-opcode and per-unit tables built from per-pc counters.

Input is a `Counters` (the per-pc arrays of a `RunResult`, or of a static estimate); every table
is an exact integer sum over pcs, so section, opcode and unit totals add up to the run totals by
construction (tests check it).

Derived rates and their peaks (documented in SCHEMA.md):

* Units.  The reference executes strictly in order with no overlap, so a unit is busy exactly
  while one of its instructions runs: busy cycles of a unit = the cycles of its instructions, and
  the utilisations of the six units (isa_specs.UNITS) sum to 1 for any section.
* Matrix MACs.  Multiply-accumulates per matrix instruction follow from the operand shapes
  (matrix-vector-machines.md §5): M_MM/M_TMM ``BLEN*MLEN*BLEN``, M_MV/M_TMV ``MLEN*BLEN``,
  M_BMM/M_BTMM ``BROADCAST_AMOUNT*MLEN*HLEN*MLEN`` (MLEN^3 when BROADCAST_AMOUNT*HLEN = MLEN),
  M_BMV/M_BTMV ``BROADCAST_AMOUNT*HLEN*MLEN``.  *Peak* MACs per cycle is the highest rate any matrix
  instruction reaches under the timing model with the given settings: max over those opcodes of
  MACs / latency (isa_specs latency expressions).  With the shipped settings (MLEN 64, BLEN 4,
  overhead 0) that is MLEN^2 = 4096 MACs/cycle (M_BMM, M_BTMM, M_BTMV), while M_MM reaches
  BLEN^2 = 16: a kernel built on M_MM can use at most 0.4% of the peak.  A different peak can be
  passed explicitly (`peak_macs_per_cycle=`).
* HBM bandwidth.  Peak = 128 bytes per cycle: the reference's HBM2 model has 8 channels, each
  accepting one 16-byte read or write transfer per cycle (one command per channel per cycle; the
  two pseudochannels alternate under the 2-cycle same-pseudochannel RD->RD spacing), and one
  cycle is one ns, i.e. 128 GB/s at the 1 GHz reference clock.  Bytes are counted per 64-byte
  block access, like the reference.  Achieved bandwidth is given over the whole run/section and
  over the DMA unit's busy cycles.
* Time.  seconds = cycles / clock_hz (default 1 GHz, the reference's implicit clock: 1 cycle =
  1 ns).  Changing the clock relabels time only; cycle counts (including HBM timing) stay those
  of the 1 ns model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emulator.program import Program
from emulator.result import RunResult
from emulator.settings import Settings
from isa_specs import UNITS, eval_latency, load_isa

from .heat import MAX_HEAT_PCS, source_heat
from .sections import Normalization, SectionMap, build_sections

DEFAULT_CLOCK_HZ = 1e9
HBM2_CHANNELS = 8
HBM2_TRANSFER_BYTES = 16
HBM_PEAK_BYTES_PER_CYCLE = HBM2_CHANNELS * HBM2_TRANSFER_BYTES
HBM_PEAK_DEFINITION = (
    "8 HBM2 channels x one 16-byte transfer per channel per cycle (1 cycle = 1 ns): 128 B/cycle")

# MACs per matrix instruction as expressions over the settings (evaluated like latency expressions).
MATRIX_MACS = {
    "M_MM": "BLEN * MLEN * BLEN",
    "M_TMM": "BLEN * MLEN * BLEN",
    "M_BMM": "BROADCAST_AMOUNT * MLEN * HLEN * MLEN",
    "M_BTMM": "BROADCAST_AMOUNT * MLEN * HLEN * MLEN",
    "M_MV": "MLEN * BLEN",
    "M_TMV": "MLEN * BLEN",
    "M_BMV": "BROADCAST_AMOUNT * HLEN * MLEN",
    "M_BTMV": "BROADCAST_AMOUNT * HLEN * MLEN",
}
DEFAULT_HOT_PCS = 20


# ----------------------------------------------------------------------------------- per-pc input

@dataclass
class Counters:
    """Per-pc counters of one run or estimate (int64 arrays of the program's length) and totals."""

    pc_count: np.ndarray
    pc_cycles: np.ndarray
    pc_hbm_read: np.ndarray
    pc_hbm_written: np.ndarray
    cycles: int
    instructions: int
    hbm_bytes_read: int
    hbm_bytes_written: int
    # Overlapped timing (emulator/timing), None for sequential runs: per pc its share of the
    # critical path, the cycles its unit waited on hazards / the HBM port, and the cycles the
    # front end waited to issue it.
    pc_critical: np.ndarray | None = None
    pc_stall: np.ndarray | None = None
    pc_issue_stall: np.ndarray | None = None

    @classmethod
    def from_result(cls, result: RunResult) -> Counters:
        o = result.overlap
        return cls(
            np.asarray(result.pc_count, dtype=np.int64), np.asarray(result.pc_cycles, dtype=np.int64),
            np.asarray(result.pc_hbm_read, dtype=np.int64), np.asarray(result.pc_hbm_written, dtype=np.int64),
            int(result.cycles), int(result.instructions), int(result.hbm_bytes_read),
            int(result.hbm_bytes_written),
            pc_critical=None if o is None else o.pc_critical, pc_stall=None if o is None else o.pc_stall,
            pc_issue_stall=None if o is None else o.pc_issue_stall)

    def consistency_problems(self) -> list[str]:
        """Per-pc sums that do not equal the totals (the tables would then not add up)."""
        out = []
        for name, arr, total in (("cycles", self.pc_cycles, self.cycles),
                                 ("instructions", self.pc_count, self.instructions),
                                 ("hbm_bytes_read", self.pc_hbm_read, self.hbm_bytes_read),
                                 ("hbm_bytes_written", self.pc_hbm_written, self.hbm_bytes_written)):
            s = int(arr.sum())
            if s != total:
                out.append(f"per-pc {name} sum to {s}, the run reports {total}")
        return out


@dataclass(frozen=True)
class Decoded:
    """Static per-pc facts: opcode, mnemonic, unit index and MACs per execution."""

    opcode: np.ndarray        # int64[n]
    unit: np.ndarray          # int64[n], index into UNITS
    macs: np.ndarray          # int64[n], MACs per execution
    mnemonics: dict[int, str]
    unit_of_opcode: dict[int, int]

    def mnemonic(self, pc: int) -> str:
        return self.mnemonics[int(self.opcode[pc])]


def mnemonic_of(opcode: int) -> str:
    op = load_isa().by_opcode.get(opcode)
    return op.mnemonic if op is not None else f"INVALID_0x{opcode:02X}"


def decode_program(program: Program, settings: Settings) -> Decoded:
    spec = load_isa()
    f = spec.fields["opcode"]
    opcode = ((program.words.astype(np.int64) >> f.lsb) & f.mask)
    names = settings.cost_names()
    unit_of = {}
    macs_of = {}
    mnemonics = {}
    for code in np.unique(opcode).tolist():
        op = spec.by_opcode.get(code)
        mnemonics[code] = mnemonic_of(code)
        # Words that decode to no instruction abort when executed; the control unit "owns" them.
        unit_of[code] = UNITS.index(op.unit) if op is not None else UNITS.index("control")
        expr = MATRIX_MACS.get(op.mnemonic) if op is not None else None
        macs_of[code] = eval_latency(expr, names) if expr else 0
    unit = np.array([unit_of[c] for c in opcode.tolist()], dtype=np.int64) if len(opcode) else \
        np.zeros(0, dtype=np.int64)
    macs = np.array([macs_of[c] for c in opcode.tolist()], dtype=np.int64) if len(opcode) else \
        np.zeros(0, dtype=np.int64)
    return Decoded(opcode, unit, macs, mnemonics, unit_of)


def peak_macs(settings: Settings) -> tuple[float, str]:
    """The highest MAC rate any matrix instruction reaches under the timing model (see module doc)."""
    spec = load_isa()
    names = settings.cost_names()
    zero_fields = {name: 0 for name in spec.fields}
    best, best_ops = 0.0, []
    for mnemonic, expr in MATRIX_MACS.items():
        op = spec.by_mnemonic[mnemonic]
        latency = eval_latency(op.latency, {**names, **zero_fields})
        if latency <= 0:
            continue
        rate = eval_latency(expr, names) / latency
        if rate > best:
            best, best_ops = rate, [mnemonic]
        elif rate == best:
            best_ops.append(mnemonic)
    definition = (f"highest MAC rate of any matrix instruction under the timing model: "
                  f"{'/'.join(best_ops)} ({best:g} MACs/cycle with these settings)")
    return best, definition


# ----------------------------------------------------------------------------------- model

@dataclass
class Stats:
    instructions: int = 0
    cycles: int = 0
    hbm_bytes_read: int = 0
    hbm_bytes_written: int = 0
    macs: int = 0
    unit_cycles: dict[str, int] = field(default_factory=lambda: {u: 0 for u in UNITS})
    # overlapped timing: critical-path cycles, hazard/port stall cycles, front-end stall cycles
    critical_cycles: int = 0
    stall_cycles: int = 0
    issue_stall_cycles: int = 0

    def add(self, other: Stats) -> None:
        self.instructions += other.instructions
        self.cycles += other.cycles
        self.hbm_bytes_read += other.hbm_bytes_read
        self.hbm_bytes_written += other.hbm_bytes_written
        self.macs += other.macs
        self.critical_cycles += other.critical_cycles
        self.stall_cycles += other.stall_cycles
        self.issue_stall_cycles += other.issue_stall_cycles
        for u, c in other.unit_cycles.items():
            self.unit_cycles[u] = self.unit_cycles.get(u, 0) + c

    def copy(self) -> Stats:
        s = Stats()
        s.add(self)
        return s


@dataclass
class OpStats:
    unit: str
    instructions: int = 0
    cycles: int = 0
    hbm_bytes_read: int = 0
    hbm_bytes_written: int = 0
    macs: int = 0

    def add(self, other: OpStats) -> None:
        self.instructions += other.instructions
        self.cycles += other.cycles
        self.hbm_bytes_read += other.hbm_bytes_read
        self.hbm_bytes_written += other.hbm_bytes_written
        self.macs += other.macs


@dataclass
class SectionNode:
    name: str
    path: tuple[str, ...]
    stats: Stats = field(default_factory=Stats)           # inclusive of children
    self_stats: Stats = field(default_factory=Stats)      # instructions directly in this section
    by_opcode: dict[str, OpStats] = field(default_factory=dict)   # inclusive
    children: list[SectionNode] = field(default_factory=list)
    first_pc: int = -1                                    # lowest pc in the section (-1: none)
    static_instructions: int = 0                          # pcs in the section (inclusive)

    def walk(self):
        yield self
        for c in self.children:
            yield from c.walk()


@dataclass
class HotPc:
    pc: int
    opcode: str
    unit: str
    count: int
    cycles: int
    hbm_bytes_read: int
    hbm_bytes_written: int
    section: tuple[str, ...]
    line: int | None = None
    text: str | None = None


@dataclass
class Profile:
    """A profile of one run (kind "dynamic") or one static estimate (kind "static")."""

    kind: str
    program_name: str | None
    program_sha256: str
    program_words: int
    has_source: bool
    settings: dict[str, Any]
    clock_hz: float
    totals: Stats
    sections: list[SectionNode]
    by_opcode: dict[str, OpStats]
    hot_pcs: list[HotPc]
    peak_macs_per_cycle: float
    peak_macs_definition: str
    peak_hbm_bytes_per_cycle: float
    peak_hbm_definition: str
    hbm_model: str
    sections_mode: str
    section_normalization: str
    error: dict | None = None
    estimate: dict | None = None        # static profiles: what is exact and what is estimated
    warnings: list[str] = field(default_factory=list)
    wall_seconds: float | None = None
    source: dict[str, Any] | None = None  # per-line heat table (profiler.heat), None when too long
    timing: str = "sequential"
    overlapped: dict[str, Any] | None = None  # run-level overlapped figures (SCHEMA.md "overlapped")

    # ------------------------------------------------------------------ derived numbers
    @property
    def cycles(self) -> int:
        return self.totals.cycles

    def seconds(self, cycles: int | None = None) -> float:
        return (self.totals.cycles if cycles is None else cycles) / self.clock_hz

    def share(self, cycles: int) -> float:
        return cycles / self.totals.cycles if self.totals.cycles else 0.0

    def iter_sections(self):
        for s in self.sections:
            yield from s.walk()

    def find(self, *path: str) -> SectionNode | None:
        nodes = self.sections
        found = None
        for name in path:
            found = next((n for n in nodes if n.name == name), None)
            if found is None:
                return None
            nodes = found.children
        return found


# ----------------------------------------------------------------------------------- building

def _group_sum(ids: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros(size, dtype=np.int64)
    np.add.at(out, ids, values)
    return out


def _settings_summary(settings: Settings) -> dict[str, Any]:
    keys = ("MLEN", "VLEN", "BLEN", "HLEN", "BROADCAST_AMOUNT", "DC_EN", "MAX_LOOP_INSTRUCTIONS",
            "HBM_M_Prefetch_Amount", "HBM_V_Prefetch_Amount", "HBM_V_Writeback_Amount")
    out: dict[str, Any] = {k: getattr(settings, k) for k in keys}
    out["hbm_model"] = settings.hbm_model
    out["source"] = settings.source
    return out


def build_profile(program: Program, settings: Settings, counters: Counters, *, kind: str = "dynamic",
                  sections: SectionMap | None = None, section_mode: str | None = None,
                  normalization: Normalization | None = None, clock_hz: float = DEFAULT_CLOCK_HZ,
                  peak_macs_per_cycle: float | None = None,
                  peak_hbm_bytes_per_cycle: float | None = None,
                  hot_pcs: int = DEFAULT_HOT_PCS, error: dict | None = None,
                  estimate: dict | None = None, hbm_model: str | None = None,
                  warnings: list[str] | None = None, wall_seconds: float | None = None,
                  overlapped: dict | None = None) -> Profile:
    """Aggregate per-pc counters into a Profile."""
    if not clock_hz > 0:
        raise ValueError(f"clock must be positive, got {clock_hz}")
    n = len(program)
    for name in ("pc_count", "pc_cycles", "pc_hbm_read", "pc_hbm_written"):
        if len(getattr(counters, name)) != n:
            raise ValueError(f"{name} has {len(getattr(counters, name))} entries for a {n}-word program")
    smap = sections or build_sections(program, section_mode, normalization)
    dec = decode_program(program, settings)
    count, cyc = counters.pc_count, counters.pc_cycles
    hr, hw = counters.pc_hbm_read, counters.pc_hbm_written
    macs = count * dec.macs
    n_paths = len(smap.paths)
    sid = smap.pc_section.astype(np.int64)
    n_units = len(UNITS)

    # Per (section path) sums.
    s_count = _group_sum(sid, count, n_paths)
    s_cyc = _group_sum(sid, cyc, n_paths)
    s_hr = _group_sum(sid, hr, n_paths)
    s_hw = _group_sum(sid, hw, n_paths)
    s_macs = _group_sum(sid, macs, n_paths)
    s_static = _group_sum(sid, np.ones(n, dtype=np.int64), n_paths)
    s_unit = _group_sum(sid * n_units + dec.unit, cyc, n_paths * n_units).reshape(n_paths, n_units)
    has_overlap = counters.pc_critical is not None
    if has_overlap:
        s_crit = _group_sum(sid, counters.pc_critical, n_paths)
        s_stall = _group_sum(sid, counters.pc_stall, n_paths)
        s_issue = _group_sum(sid, counters.pc_issue_stall, n_paths)
    first_pc = np.full(n_paths, n, dtype=np.int64)
    np.minimum.at(first_pc, sid, np.arange(n, dtype=np.int64))
    # Per (section path, opcode) sums.
    width = load_isa().fields["opcode"].mask + 1
    key = sid * width + dec.opcode
    ukeys, inverse = np.unique(key, return_inverse=True)
    k_count = _group_sum(inverse, count, len(ukeys))
    k_cyc = _group_sum(inverse, cyc, len(ukeys))
    k_hr = _group_sum(inverse, hr, len(ukeys))
    k_hw = _group_sum(inverse, hw, len(ukeys))
    k_macs = _group_sum(inverse, macs, len(ukeys))

    # Build the tree.
    roots: dict[str, SectionNode] = {}
    nodes: dict[tuple[str, ...], SectionNode] = {}

    def node_for(path: tuple[str, ...]) -> SectionNode:
        got = nodes.get(path)
        if got is not None:
            return got
        node = SectionNode(name=path[-1], path=path)
        nodes[path] = node
        if len(path) == 1:
            roots[path[0]] = node
        else:
            node_for(path[:-1]).children.append(node)
        return node

    for p, path in enumerate(smap.paths):
        node = node_for(path)
        st = node.self_stats
        st.instructions += int(s_count[p])
        st.cycles += int(s_cyc[p])
        st.hbm_bytes_read += int(s_hr[p])
        st.hbm_bytes_written += int(s_hw[p])
        st.macs += int(s_macs[p])
        if has_overlap:
            st.critical_cycles += int(s_crit[p])
            st.stall_cycles += int(s_stall[p])
            st.issue_stall_cycles += int(s_issue[p])
        for u in range(n_units):
            st.unit_cycles[UNITS[u]] += int(s_unit[p, u])
        node.static_instructions += int(s_static[p])
        if s_static[p]:
            node.first_pc = int(first_pc[p]) if node.first_pc < 0 else min(node.first_pc, int(first_pc[p]))
    for i, k in enumerate(ukeys.tolist()):
        p, code = divmod(k, width)
        if k_count[i] == 0 and k_cyc[i] == 0:
            continue
        mn = dec.mnemonics[code]
        node = nodes[smap.paths[p]]
        row = node.by_opcode.setdefault(mn, OpStats(unit=UNITS[dec.unit_of_opcode[code]]))
        row.add(OpStats(row.unit, int(k_count[i]), int(k_cyc[i]), int(k_hr[i]), int(k_hw[i]), int(k_macs[i])))

    def finish(node: SectionNode) -> None:
        node.stats = node.self_stats.copy()
        for child in node.children:
            finish(child)
            node.stats.add(child.stats)
            node.static_instructions += child.static_instructions
            if child.first_pc >= 0:
                node.first_pc = child.first_pc if node.first_pc < 0 else min(node.first_pc, child.first_pc)
            for mn, row in child.by_opcode.items():
                node.by_opcode.setdefault(mn, OpStats(unit=row.unit)).add(row)
        node.children.sort(key=_section_order)
        node.by_opcode = dict(sorted(node.by_opcode.items(), key=lambda kv: (-kv[1].cycles, kv[0])))

    top = list(roots.values())
    for node in top:
        finish(node)
    top.sort(key=_section_order)

    # Whole-program tables.
    totals = Stats()
    for node in top:
        totals.add(node.stats)
    by_opcode: dict[str, OpStats] = {}
    for node in top:
        for mn, row in node.by_opcode.items():
            by_opcode.setdefault(mn, OpStats(unit=row.unit)).add(row)
    by_opcode = dict(sorted(by_opcode.items(), key=lambda kv: (-kv[1].cycles, kv[0])))

    problems = counters.consistency_problems()
    heat = source_heat(program, smap, count, cyc, hr + hw)
    if heat is None:
        problems.append(f"no source heat table: the program has {n:,} instructions (limit {MAX_HEAT_PCS:,})")
    hot = []
    order = np.lexsort((np.arange(n), -count, -cyc))  # cycles desc, then count desc, then pc
    for pc in order[:max(hot_pcs, 0)].tolist():
        if count[pc] == 0 and cyc[pc] == 0:
            break
        src = program.source[pc] if program.source is not None else None
        hot.append(HotPc(pc=pc, opcode=dec.mnemonic(pc), unit=UNITS[int(dec.unit[pc])], count=int(count[pc]),
                         cycles=int(cyc[pc]), hbm_bytes_read=int(hr[pc]), hbm_bytes_written=int(hw[pc]),
                         section=smap.path_of(pc), line=src.line_no if src else None,
                         text=src.text if src else None))

    if peak_macs_per_cycle is None:
        peak, peak_def = peak_macs(settings)
    else:
        if not peak_macs_per_cycle > 0:
            raise ValueError(f"peak MACs per cycle must be positive, got {peak_macs_per_cycle}")
        peak, peak_def = float(peak_macs_per_cycle), "given by the user"
    if peak_hbm_bytes_per_cycle is None:
        hbm_peak, hbm_def = float(HBM_PEAK_BYTES_PER_CYCLE), HBM_PEAK_DEFINITION
    else:
        if not peak_hbm_bytes_per_cycle > 0:
            raise ValueError(f"peak HBM bytes per cycle must be positive, got {peak_hbm_bytes_per_cycle}")
        hbm_peak, hbm_def = float(peak_hbm_bytes_per_cycle), "given by the user"

    return Profile(
        kind=kind, program_name=program.name, program_sha256=program.sha256, program_words=n,
        has_source=program.source is not None, settings=_settings_summary(settings), clock_hz=float(clock_hz),
        totals=totals, sections=top, by_opcode=by_opcode, hot_pcs=hot,
        peak_macs_per_cycle=float(peak), peak_macs_definition=peak_def,
        peak_hbm_bytes_per_cycle=hbm_peak, peak_hbm_definition=hbm_def,
        hbm_model=hbm_model or settings.hbm_model, sections_mode=smap.mode,
        section_normalization=smap.normalization.describe(), error=error, estimate=estimate,
        warnings=list(smap.warnings) + problems + list(warnings or []), wall_seconds=wall_seconds,
        source=heat, timing="overlapped" if overlapped is not None else "sequential", overlapped=overlapped)


def _section_order(node: SectionNode):
    return (-node.stats.cycles, node.first_pc if node.first_pc >= 0 else 1 << 62, node.name)


def profile_run(result: RunResult, **kwargs) -> Profile:
    """Profile of a finished (or aborted) run."""
    error = result.error.to_dict() if result.error is not None else None
    warnings = list(kwargs.pop("warnings", None) or [])
    return build_profile(result.program, result.settings, Counters.from_result(result), kind="dynamic",
                         error=error, hbm_model=result.hbm_model, warnings=warnings,
                         wall_seconds=result.wall_seconds, overlapped=overlapped_summary(result), **kwargs)


MAX_PROFILE_STALLS = 50


def overlapped_summary(result: RunResult) -> dict | None:
    """The profile's run-level `overlapped` object (None for sequential runs)."""
    o = result.overlap
    if o is None:
        return None

    def where(pc: int) -> dict:
        src = result.program.source_ref(pc)
        return {"line": src.line_no if src else None, "text": src.text if src else None}

    return {
        "cycles": o.cycles,
        "sequential_cycles": result.cycles,
        "speedup": result.cycles / o.cycles if o.cycles else None,
        "dependency_bound": o.dependency_bound,
        "critical_instructions": o.critical_instructions,
        "front_end_stall_cycles": o.front_end_stall,
        "dma_extra_cycles": o.dma_extra,
        "units": {u.name: {"instructions": u.instructions, "busy_cycles": u.busy, "stalled_cycles": u.stalled,
                           "idle_cycles": u.idle} for u in o.units},
        "stalls": [{"unit": st.unit, "cause": st.cause, "resource": st.resource, "blocker_pc": st.blocker_pc,
                    **{f"blocker_{k}": v for k, v in where(st.blocker_pc).items()}, "cycles": st.cycles}
                   for st in o.stalls[:MAX_PROFILE_STALLS]],
        "model": o.model,
    }
