"""Single `emulate` CLI runs as the reference for batch rows (same cycles, HBM bytes, dump hashes)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tempfile
from pathlib import Path
from typing import Any

from emulator import cli
from emulator.images import FPSRAM_DUMP, INTSRAM_DUMP, MRAM_DUMP, VRAM_DUMP

DUMP_FILES = {"vram": VRAM_DUMP, "mram": MRAM_DUMP, "fpsram": FPSRAM_DUMP, "intsram": INTSRAM_DUMP}
IMAGE_FLAGS = {"hbm": "--hbm", "fpsram": "--fpsram", "intsram": "--intsram", "vram": "--vram"}


def cli_run(job: Any) -> dict[str, Any]:
    """Run a batch.manifest.Job through `emulate --json --out DIR`; the row's comparable columns."""
    with tempfile.TemporaryDirectory() as out:
        argv = [str(job.program.path), "--json", "--quiet", "--out", out]
        for kind, f in job.images.items():
            argv += [IMAGE_FLAGS[kind], str(f.path)]
        if job.settings is not None:
            argv += ["--settings", str(job.settings.path)]
        if job.settings_missing == "reference-defaults":
            argv.append("--reference-fallback")
        for key, value in job.overrides.items():
            if key == "hbm_model":
                argv += ["--hbm-model", value]
            else:
                argv += ["--set", f"{key}={value}"]
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            code = cli.main(argv)
        doc = json.loads(stdout.getvalue())
        out_row: dict[str, Any] = {"exit": code, "cycles": doc.get("cycles"),
                                   "hbm_bytes_read": doc.get("hbm_bytes_read"),
                                   "hbm_bytes_written": doc.get("hbm_bytes_written"),
                                   "error_kind": (doc.get("error") or {}).get("kind"),
                                   "error_pc": (doc.get("error") or {}).get("pc")}
        for name, fname in DUMP_FILES.items():
            p = Path(out) / fname
            out_row[f"{name}_sha256"] = hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None
        return out_row


def row_view(row: dict[str, Any]) -> dict[str, Any]:
    """The columns of a batch row that a CLI run also gives."""
    keys = ["cycles", "hbm_bytes_read", "hbm_bytes_written", "error_kind", "error_pc",
            *[f"{d}_sha256" for d in DUMP_FILES]]
    return {k: row[k] for k in keys}
