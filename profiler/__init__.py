"""PLENA profiler: where the cycles of a program go, and what bounds it.

    from profiler import profile_run, print_report, build_trace, static_profile
    result = emulator.run(program, trace_limit=200_000, ...)
    profile = profile_run(result)            # per section / opcode / unit tables (aggregate.py)
    print_report(profile)                    # terminal table (report.py); write_json / write_csv
    write_trace(build_trace(result), "t.json")   # Chrome-trace / Perfetto timeline (trace.py)
    static_profile(program, settings)        # estimate without executing the data path (static.py)

`stage_profile.py` writes the reference's `--stage-profile-asm` JSON byte for byte; `cli.py` is
`plena-profile` and the profiling flags of `emulate`.  JSON schema: profiler/SCHEMA.md.
"""

from .aggregate import Counters, Profile, build_profile, profile_run
from .report import load_profile, print_report, profile_to_dict, render_text, write_csv, write_json
from .sections import Normalization, SectionMap, build_sections
from .static import estimate, static_profile
from .trace import build_trace, validate_trace, write_trace

__all__ = [
    "Counters", "Profile", "build_profile", "profile_run", "load_profile", "print_report", "profile_to_dict",
    "render_text", "write_csv", "write_json", "Normalization", "SectionMap", "build_sections", "estimate",
    "static_profile", "build_trace", "validate_trace", "write_trace",
]
