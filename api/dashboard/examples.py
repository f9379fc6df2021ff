"""The shipped example programs (the repository's `examples/`) as runs the dashboard can start.

An example is a folder holding `program.asm` (or `program.mem`) and any of the reference's input
files under their usual names; the dashboard offers them in its "new run" form.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_settings import BaseSettings, SettingsConfigDict

# The reference's file names -> the `images` / `settings` fields of a run request.
IMAGE_FILES = {"hbm.bin": "hbm", "fp_sram.bin": "fp_sram", "int_sram.bin": "int_sram", "vram_preload.bin": "vram",
               "vram.bin": "vram"}
SETTINGS_FILE = "settings.toml"
EXAMPLE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$")


class DashboardSettings(BaseSettings):
    """`PLENA_API_EXAMPLES_DIR`: where the shipped examples are (default: the repository's)."""

    model_config = SettingsConfigDict(env_prefix="PLENA_API_", env_file=".env", extra="ignore")
    examples_dir: Path = Path(__file__).resolve().parents[2] / "examples"


class ExampleOut(BaseModel):
    name: str
    program: str
    inputs: list[str]
    description: str


def _program_file(folder: Path) -> Path | None:
    for name in ("program.asm", "program.mem"):
        if (folder / name).is_file():
            return folder / name
    return None


def _description(program: Path) -> str:
    if program.suffix != ".asm":
        return "machine code"
    for line in program.read_text(encoding="utf-8", errors="replace").splitlines():
        text = line.strip()
        if text.startswith(";"):
            return text.lstrip("; ").strip()
        if text:
            break
    return ""


def list_examples(root: Path | None = None) -> list[ExampleOut]:
    root = root or DashboardSettings().examples_dir
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and EXAMPLE_NAME.match(p.name)):
        program = _program_file(folder)
        if program is None:
            continue
        inputs = [n for n in [*IMAGE_FILES, SETTINGS_FILE] if (folder / n).is_file()]
        out.append(ExampleOut(name=folder.name, program=program.name, inputs=inputs,
                              description=_description(program)))
    return out


def example_request(name: str, root: Path | None = None) -> dict[str, Any] | None:
    """The run request body (program, images, settings) of example `name`, or None if unknown.
    `name` is matched against the listed folders, never joined into a path."""
    root = root or DashboardSettings().examples_dir
    known = {e.name: e for e in list_examples(root)}
    if name not in known:
        return None
    folder = root / known[name].name
    program = folder / known[name].program
    kind = "asm" if program.suffix == ".asm" else "mem"
    body: dict[str, Any] = {"program": {kind: program.read_text(encoding="utf-8"), "name": name}}
    images = {field: (folder / f).read_bytes() for f, field in IMAGE_FILES.items() if (folder / f).is_file()}
    if images:
        body["images"] = images
    if (folder / SETTINGS_FILE).is_file():
        body["settings"] = {"toml": (folder / SETTINGS_FILE).read_text(encoding="utf-8")}
    return body
