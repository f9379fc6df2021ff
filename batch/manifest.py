"""Batch manifests: a TOML file (or the same structure as JSON) -> a validated list of jobs.

    [batch]                       # all optional
    name = "nightly"
    max_instructions = 100_000_000   # per job
    max_seconds = 60                 # per job, wall time
    profile = true                   # write each job's plena-profile JSON
    dumps = false                    # write each job's four reference dumps
    inputs = "travel"                # "travel": the client reads inputs and ships them with the
                                     # tasks; "shared": workers read the paths (a shared file system)
    format = "parquet"               # or "csv"

    [[jobs]]
    program = "programs/*.asm"       # a path or glob, relative to the manifest
    hbm = "{dir}/hbm.bin"            # {dir} = the program's directory, {stem} = its file name stem
    fpsram = "fp_sram.bin"
    intsram = "int_sram.bin"
    vram = "vram.bin"
    settings = "plena_settings.toml"
    settings_fallback = "error"      # or "reference": the reference's whole-table fallback
    case_dir = false                 # true: take hbm.bin, fp_sram.bin, int_sram.bin,
                                     # vram_preload.bin, settings.toml from the program's directory
    overrides = { MLEN = 64 }
    tensors.X = { npy = "x.npy", hbm_addr = 0 }

    [grid]                           # cross product over every job
    hbm_model = ["hbm2", "analytic"]
    "LATENCY.VECTOR_ADD_CYCLES" = [1, 2, 4]

Everything is checked before anything runs: unknown keys, files that do not exist, globs that
match nothing, settings files, overrides and grid keys/values that are not settings (every grid
point is built into a Settings once).  A ManifestError names the key and, for a TOML file, its line.
"""

from __future__ import annotations

import glob as globmod
import hashlib
import itertools
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emulator.settings import SettingsError, default_settings, load_settings

IMAGE_KINDS = ("hbm", "fpsram", "intsram", "vram")
# The reference test benches' file names, used by `case_dir = true`.
CASE_FILES = {"hbm": "hbm.bin", "fpsram": "fp_sram.bin", "intsram": "int_sram.bin", "vram": "vram_preload.bin"}
CASE_SETTINGS = "settings.toml"
PROGRAM_SUFFIXES = (".asm", ".mem", ".hex")


class ManifestError(ValueError):
    """A manifest that cannot be run; `key` is the dotted key path, `line` its line in the TOML text."""

    def __init__(self, message: str, key: str | None = None, line: int | None = None, source: str = "manifest",
                 loc: tuple = ()):
        self.reason = message
        self.key = key
        self.loc = loc
        self.line = line
        self.source = source
        where = source
        if line is not None:
            where += f", line {line}"
        if key:
            where += f", key {key}"
        super().__init__(f"{where}: {message}")


# ---------------------------------------------------------------------------------- the schema

_STRICT = ConfigDict(extra="forbid")


class TensorInput(BaseModel):
    model_config = _STRICT
    npy: str = Field(description="a .npy file of float values (leading dimensions are rows)")
    hbm_addr: int = Field(ge=0, description="HBM byte address of the MXFP8 tensor (elements, then scales)")


class JobEntry(BaseModel):
    model_config = _STRICT
    program: str = Field(min_length=1)
    name: str | None = None
    hbm: str | None = None
    fpsram: str | None = None
    intsram: str | None = None
    vram: str | None = None
    tensors: dict[str, TensorInput] = Field(default_factory=dict)
    settings: str | None = None
    settings_fallback: Literal["error", "reference"] = "error"
    case_dir: bool = False
    overrides: dict[str, Any] = Field(default_factory=dict)


class BatchOptions(BaseModel):
    model_config = _STRICT
    name: str | None = None
    max_instructions: int | None = Field(None, ge=1)
    max_seconds: float | None = Field(None, gt=0)
    profile: bool = True
    dumps: bool = False
    inputs: Literal["travel", "shared"] = "travel"
    format: Literal["parquet", "csv"] = "parquet"


class ManifestModel(BaseModel):
    model_config = _STRICT
    batch: BatchOptions = Field(default_factory=BatchOptions)
    jobs: list[JobEntry] = Field(min_length=1)
    grid: dict[str, list[Any]] = Field(default_factory=dict)


# ---------------------------------------------------------------------------------- expanded jobs

@dataclass(frozen=True)
class InputFile:
    path: Path
    sha256: str


@dataclass
class Job:
    """One run of the batch: a program with its inputs and one point of the grid."""

    job_id: str                           # stable across runs of the same manifest (resume)
    name: str                             # program label (file stem or the entry's name)
    program: InputFile
    images: dict[str, InputFile]          # hbm / fpsram / intsram / vram
    tensors: dict[str, tuple[InputFile, int]]
    settings: InputFile | None
    settings_missing: str                 # "error" | "reference-defaults"
    overrides: dict[str, Any]             # the entry's overrides, then the grid point's
    settings_key: str                     # settings file + policy + overrides (for compare)

    def overrides_json(self) -> str:
        return canonical_json(self.overrides)


@dataclass
class Plan:
    """A validated manifest, expanded into jobs."""

    options: BatchOptions
    jobs: list[Job]
    grid_keys: list[str]
    source: str                           # the manifest's path (or "<json>")
    base_dir: Path
    manifest_sha256: str = ""

    @property
    def name(self) -> str:
        return self.options.name or Path(self.source).stem


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------- locating keys

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_\-.]+)\s*=""")


def _unquote(key: str) -> str:
    return key[1:-1] if key[:1] in "\"'" else key


def key_line(text: str | None, path: tuple) -> int | None:
    """Best-effort 1-based line of a key path such as ("jobs", 2, "hbm") or ("grid", "MLEN")
    in TOML text (tables, arrays of tables, dotted keys and inline tables on one line)."""
    if not text or not path:
        return None
    lines = text.splitlines()
    table: list[str] = []
    counts: dict[str, int] = {}
    best: int | None = None
    for no, raw in enumerate(lines, 1):
        m = _HEADER.match(raw)
        if m:
            name = m.group(2).strip()
            table = [_unquote(p.strip()) for p in name.split(".")]
            if m.group(1) == "[[":
                counts[name] = counts.get(name, -1) + 1
                table = table[:-1] + [table[-1], counts[name]]
            if _matches(table, path) and best is None:
                best = no
            continue
        k = _KEY.match(raw)
        if not k:
            continue
        key = [_unquote(p.strip()) for p in re.split(r"\.(?=(?:[^\"']*[\"'][^\"']*[\"'])*[^\"']*$)", k.group(1))]
        full = table + key
        if _matches(full, path):
            return no
        # an inline table or array on this line holding the rest of the path
        if _matches(full, path[: len(full)]) and len(full) < len(path):
            rest = path[len(full):]
            if all(isinstance(p, str) and re.search(rf"\b{re.escape(p)}\s*=", raw) for p in rest if isinstance(p, str)):
                return no
            best = best or no
    return best


def _matches(have: list, want: tuple) -> bool:
    return len(have) == len(want) and all(str(a) == str(b) for a, b in zip(have, want))


# ---------------------------------------------------------------------------------- loading

def load_manifest(path: str | Path) -> Plan:
    """Read and validate a TOML manifest file; paths in it are relative to its directory."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ManifestError(f"cannot read the manifest: {exc.strerror or exc}", source=str(p)) from None
    except UnicodeDecodeError as exc:
        raise ManifestError(f"the manifest is not UTF-8 text ({exc.reason})", source=str(p)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        if line is None:
            m = re.search(r"line (\d+)", str(exc))
            line = int(m.group(1)) if m else None
        raise ManifestError(f"not valid TOML: {getattr(exc, 'msg', exc)}", line=line, source=str(p)) from None
    plan = build_plan(data, base_dir=p.resolve().parent, source=str(p), text=text)
    plan.manifest_sha256 = hashlib.sha256(text.encode()).hexdigest()
    return plan


def build_plan(data: Mapping[str, Any], *, base_dir: Path, source: str = "<manifest>", text: str | None = None,
               root: Path | None = None) -> Plan:
    """Validate a manifest's data and expand it into jobs.  `root`, when given, confines every
    file the manifest names to that directory (the service's server-side paths)."""

    def fail(message: str, loc: tuple = ()) -> ManifestError:
        key = _dotted(loc) if loc else None
        return ManifestError(message, key=key, line=key_line(text, loc) if loc else None, source=source, loc=loc)

    if not isinstance(data, Mapping):
        raise fail("a manifest is a table with [[jobs]] (and optionally [batch], [grid])")
    try:
        model = ManifestModel.model_validate(_flatten_grid(data))
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {loc[-1]!r}" + _allowed_hint(loc)
        elif err["type"] == "missing":
            msg = f"missing key {loc[-1]!r}"
        raise fail(msg, loc) from None
    for key, values in model.grid.items():
        if not values:
            raise fail("a grid key needs at least one value", ("grid", key))
    grid_keys = list(model.grid)
    grid_points = [dict(zip(grid_keys, combo)) for combo in itertools.product(*model.grid.values())] or [{}]

    base_dir = base_dir.resolve()
    try:
        jobs = _expand(model, base_dir, root, fail, grid_points)
    except ManifestError:
        raise
    except (OSError, ValueError, TypeError) as exc:   # e.g. a path with a NUL byte, an unreadable file
        raise fail(f"cannot use this manifest: {type(exc).__name__}: {exc}") from None
    seen: dict[str, Job] = {}
    for job in jobs:
        if job.job_id in seen:
            raise fail(f"the program {job.program.path} with the same inputs and settings is listed twice "
                       f"(as {seen[job.job_id].name!r} and {job.name!r})", ("jobs",))
        seen[job.job_id] = job
    return Plan(options=model.batch, jobs=jobs, grid_keys=grid_keys, source=source, base_dir=base_dir)



def _expand(model: ManifestModel, base_dir: Path, root: Path | None, fail, grid_points: list[dict]) -> list[Job]:
    """Every job of the manifest: programs of each entry (globs expanded) x grid points, checked."""
    resolver = _Resolver(base_dir, root, fail)
    settings_cache: dict[tuple, Any] = {}
    checked: set[str] = set()
    jobs: list[Job] = []
    for i, entry in enumerate(model.jobs):
        loc = ("jobs", i)
        programs = resolver.programs(entry.program, loc + ("program",))
        if entry.name is not None and len(programs) > 1:
            raise fail(f"'name' needs a single program; {entry.program!r} matches {len(programs)} files",
                       loc + ("name",))
        for prog in programs:
            images: dict[str, InputFile] = {}
            settings_file: InputFile | None = None
            if entry.case_dir:
                for kind, fname in CASE_FILES.items():
                    if (prog.parent / fname).is_file():
                        images[kind] = resolver.input(str(prog.parent / fname), prog, loc + ("case_dir",))
                if (prog.parent / CASE_SETTINGS).is_file():
                    settings_file = resolver.input(str(prog.parent / CASE_SETTINGS), prog, loc + ("case_dir",))
            for kind in IMAGE_KINDS:
                value = getattr(entry, kind)
                if value is not None:
                    images[kind] = resolver.input(value, prog, loc + (kind,))
            if entry.settings is not None:
                settings_file = resolver.input(entry.settings, prog, loc + ("settings",))
            tensors = {name: (resolver.input(t.npy, prog, loc + ("tensors", name, "npy")), t.hbm_addr)
                       for name, t in entry.tensors.items()}
            missing = "reference-defaults" if entry.settings_fallback == "reference" else "error"
            base = _settings(settings_cache, settings_file, missing, fail, loc + ("settings",))
            for point in grid_points:
                overrides = {**entry.overrides, **point}
                _check_settings(base, overrides, fail,
                                lambda k, point=point, loc=loc: ("grid", k) if k in point else loc + ("overrides", k),
                                checked)
                name = entry.name or _program_label(prog, base_dir)
                settings_key = hashlib.sha256(canonical_json(
                    {"settings": settings_file.sha256 if settings_file else None, "missing": missing,
                     "overrides": overrides}).encode()).hexdigest()[:16]
                identity = {"program": os.path.relpath(prog, base_dir), "program_sha256": resolver.sha(prog),
                            "images": {k: v.sha256 for k, v in images.items()},
                            "tensors": {k: [v[0].sha256, v[1]] for k, v in tensors.items()},
                            "settings_key": settings_key}
                job_id = hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:20]
                jobs.append(Job(job_id=job_id, name=name, program=InputFile(prog, identity["program_sha256"]),
                                images=images, tensors=tensors, settings=settings_file, settings_missing=missing,
                                overrides=overrides, settings_key=settings_key))
    return jobs

def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _allowed_hint(loc: tuple) -> str:
    parent = {"batch": BatchOptions, "jobs": JobEntry}.get(str(loc[0])) if len(loc) > 1 else ManifestModel
    if len(loc) > 3 and loc[0] == "jobs" and loc[2] == "tensors":
        parent = TensorInput
    if parent is None:
        return ""
    return f" (allowed: {', '.join(parent.model_fields)})"


def _flatten_grid(data: Mapping[str, Any]) -> dict[str, Any]:
    """`[grid.LATENCY] VECTOR_ADD_CYCLES = [...]` is the same as `"LATENCY.VECTOR_ADD_CYCLES" = [...]`."""
    out = dict(data)
    grid = data.get("grid")
    if isinstance(grid, Mapping):
        flat: dict[str, Any] = {}

        def walk(prefix: str, node: Mapping) -> None:
            for k, v in node.items():
                key = f"{prefix}.{k}" if prefix else str(k)
                if isinstance(v, Mapping):
                    walk(key, v)
                else:
                    flat[key] = v
        walk("", grid)
        out["grid"] = flat
    return out


def _program_label(prog: Path, base_dir: Path) -> str:
    """The file stem, or its directory's name for a test-bench layout (`case/program.mem`)."""
    if prog.stem == "program":
        return prog.parent.name
    return prog.stem


class _Resolver:
    """Paths of a manifest: relative to its directory, `{dir}`/`{stem}` templates, an optional root."""

    def __init__(self, base_dir: Path, root: Path | None, fail):
        self.base_dir = base_dir
        self.root = root.resolve() if root is not None else None
        self.fail = fail
        self.hashes: dict[Path, str] = {}

    def _absolute(self, pattern: str, loc: tuple) -> Path:
        p = Path(pattern).expanduser()
        if self.root is not None and p.is_absolute():
            raise self.fail(f"{pattern!r}: give paths relative to the service's batch root", loc)
        p = p if p.is_absolute() else self.base_dir / p
        return p

    def _confined(self, p: Path, pattern: str, loc: tuple) -> Path:
        resolved = p.resolve()
        if self.root is not None and not resolved.is_relative_to(self.root):
            raise self.fail(f"{pattern!r} is outside the service's batch root", loc)
        return resolved

    def programs(self, pattern: str, loc: tuple) -> list[Path]:
        p = self._absolute(pattern, loc)
        if globmod.has_magic(str(p)):
            found = sorted(Path(x) for x in globmod.glob(str(p), recursive=True) if Path(x).is_file())
            if not found:
                raise self.fail(f"the glob {pattern!r} matches no file", loc)
        else:
            if not p.is_file():
                raise self.fail(f"program file {pattern!r} does not exist", loc)
            found = [p]
        out = []
        for f in found:
            if f.suffix.lower() not in PROGRAM_SUFFIXES:
                raise self.fail(f"{f.name}: a program is .asm (ASM) or .mem/.hex (machine code)", loc)
            out.append(self._confined(f, pattern, loc))
        return out

    def input(self, pattern: str, program: Path, loc: tuple) -> InputFile:
        try:
            filled = pattern.format(dir=str(program.parent), stem=program.stem)
        except (KeyError, IndexError, ValueError) as exc:
            raise self.fail(f"{pattern!r}: only {{dir}} and {{stem}} can be filled in ({exc})", loc) from None
        p = self._confined(self._absolute(filled, loc), pattern, loc)
        if not p.is_file():
            raise self.fail(f"input file {filled!r} does not exist", loc)
        return InputFile(p, self.sha(p))

    def sha(self, p: Path) -> str:
        if p not in self.hashes:
            self.hashes[p] = sha256_file(p)
        return self.hashes[p]


def _settings(cache: dict, settings_file: InputFile | None, missing: str, fail, loc: tuple):
    key = (settings_file.path if settings_file else None, missing)
    if key not in cache:
        try:
            cache[key] = load_settings(settings_file.path, missing=missing) if settings_file else \
                default_settings()
        except UnicodeDecodeError as exc:
            raise fail(f"the settings file is not UTF-8 text ({exc.reason})", loc) from None
        except (SettingsError, ValueError) as exc:
            raise fail(str(exc), loc) from None
    return cache[key]


def _check_settings(base, items: dict, fail, loc_of, checked: set) -> None:
    """The overrides `items` must make valid settings.  When they do not, name the key whose value
    is wrong on its own, else the first one (a relation between keys, e.g. MLEN and VLEN)."""
    memo = canonical_json([id(base), items])
    if memo in checked or not items:
        return
    try:
        base.with_overrides(items)
    except (SettingsError, ValueError) as exc:
        for k, v in items.items():
            try:
                base.with_overrides({k: v})
            except (SettingsError, ValueError) as one:
                raise fail(f"{k} = {v!r} is not a valid setting: {one}", loc_of(k)) from None
        raise fail(f"{canonical_json(items)} together are not valid settings: {exc}",
                   loc_of(next(iter(items)))) from None
    checked.add(memo)
