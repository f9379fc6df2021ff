"""Batch manifests: expansion into jobs (programs x grid) and rejection of bad manifests, naming
the key and its line, before anything runs (no Dask here)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from batch.manifest import ManifestError, build_plan, load_manifest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SWEEP = EXAMPLES / "sweep" / "manifest.toml"


@pytest.fixture
def case(tmp_path: Path) -> Path:
    """A directory with the linear example's program and inputs."""
    for name in ("program.asm", "hbm.bin", "fp_sram.bin"):
        shutil.copy(EXAMPLES / "linear" / name, tmp_path / name)
    return tmp_path


def write(d: Path, text: str) -> Path:
    p = d / "m.toml"
    p.write_text(text)
    return p


def test_shipped_sweep_expands_to_the_cross_product():
    plan = load_manifest(SWEEP)
    assert len(plan.jobs) == 24
    assert sorted({j.name for j in plan.jobs}) == ["linear", "matmul", "reload", "scale"]
    assert plan.grid_keys == ["hbm_model", "LATENCY.VECTOR_MUL_CYCLES"]
    points = {(j.name, j.overrides["hbm_model"], j.overrides["LATENCY.VECTOR_MUL_CYCLES"]) for j in plan.jobs}
    assert len(points) == 24
    assert len({j.job_id for j in plan.jobs}) == 24
    assert len({j.settings_key for j in plan.jobs}) == 6     # one per grid point
    # Stable ids: the same manifest gives the same jobs (what --resume relies on).
    assert [j.job_id for j in load_manifest(SWEEP).jobs] == [j.job_id for j in plan.jobs]


def test_nested_grid_tables_and_templates(case: Path):
    m = write(case, """
[[jobs]]
program = "*.asm"
hbm = "{dir}/hbm.bin"
fpsram = "{dir}/fp_sram.bin"
overrides = { HBM_V_Prefetch_Amount = 4 }
[grid.LATENCY]
VECTOR_MUL_CYCLES = [1, 2]
""")
    plan = load_manifest(m)
    assert [j.overrides for j in plan.jobs] == [
        {"HBM_V_Prefetch_Amount": 4, "LATENCY.VECTOR_MUL_CYCLES": 1},
        {"HBM_V_Prefetch_Amount": 4, "LATENCY.VECTOR_MUL_CYCLES": 2}]
    assert plan.jobs[0].images["hbm"].path == case / "hbm.bin"


def test_case_dir_picks_up_test_bench_files(case: Path):
    (case / "settings.toml").write_text((REPO / "isa_specs" / "plena_settings.toml").read_text())
    plan = load_manifest(write(case, '[[jobs]]\nprogram = "program.asm"\ncase_dir = true\n'))
    job = plan.jobs[0]
    assert set(job.images) == {"hbm", "fpsram"}
    assert job.settings is not None and job.settings.path == case / "settings.toml"
    assert job.name == case.name          # program.asm is labelled by its directory


@pytest.mark.parametrize("text, key, line, words", [
    ('[[jobs]]\nprogram = "program.asm"\nhbm_file = "hbm.bin"\n', "jobs[0].hbm_file", 3, "unknown key 'hbm_file'"),
    ('[batch]\nname = "x"\nworkers = 3\n[[jobs]]\nprogram = "program.asm"\n', "batch.workers", 3, "unknown key"),
    ('[[jobs]]\nprogram = "program.asm"\n[[jobs]]\nprogram = "program.asm"\nhbm = "nope.bin"\n',
     "jobs[1].hbm", 5, "does not exist"),
    ('[[jobs]]\nprogram = "*.mem"\n', "jobs[0].program", 2, "matches no file"),
    ('[[jobs]]\nprogram = "program.asm"\n\n[grid]\nhbm_model = ["hbm2"]\nNOT_A_KNOB = [1, 2]\n',
     "grid.NOT_A_KNOB", 6, "NOT_A_KNOB"),
    ('[[jobs]]\nprogram = "program.asm"\n[grid]\nhbm_model = ["hbm2", "hbm9"]\n', "grid.hbm_model", 4, "hbm9"),
    ('[[jobs]]\nprogram = "program.asm"\n[grid]\nMLEN = [32]\n', "grid.MLEN", 4, "MLEN"),
    ('[[jobs]]\nprogram = "program.asm"\noverrides = { BLEN = 3 }\n', "jobs[0].overrides.BLEN", 3, "power of two"),
    ('[[jobs]]\nprogram = "program.asm"\n[grid]\nhbm_model = []\n', "grid.hbm_model", 4, "at least one value"),
    ('[[jobs]]\nprogram = "program.asm"\nsettings = "hbm.bin"\n', "jobs[0].settings", 3, "settings"),
    ('[[jobs]]\nprogram = "*.asm"\nname = "one"\n', None, None, None),
    ('[batch]\nmax_seconds = -1\n[[jobs]]\nprogram = "program.asm"\n', "batch.max_seconds", 2, "greater than 0"),
    ("[batch]\n", "jobs", None, "missing key 'jobs'"),
])
def test_bad_manifests_name_the_key_and_line(case: Path, text, key, line, words):
    if key is None:   # a single-program name on a glob that matches one file is fine
        assert len(load_manifest(write(case, text)).jobs) == 1
        return
    with pytest.raises(ManifestError) as info:
        load_manifest(write(case, text))
    err = info.value
    assert err.key == key
    assert err.line == line
    assert words in str(err)
    if line is not None:
        assert f"line {line}" in str(err) and key in str(err)


def test_invalid_toml_names_the_line(case: Path):
    with pytest.raises(ManifestError) as info:
        load_manifest(write(case, '[[jobs]]\nprogram = "program.asm"\nhbm = \n'))
    assert info.value.line == 3
    assert "not valid TOML" in str(info.value)


def test_name_on_a_multi_file_glob_is_rejected(case: Path):
    shutil.copy(case / "program.asm", case / "other.asm")
    with pytest.raises(ManifestError, match="'name' needs a single program"):
        load_manifest(write(case, '[[jobs]]\nprogram = "*.asm"\nname = "one"\n'))


def test_the_same_job_twice_is_rejected(case: Path):
    with pytest.raises(ManifestError, match="listed twice"):
        load_manifest(write(case, '[[jobs]]\nprogram = "program.asm"\n[[jobs]]\nprogram = "program.asm"\n'))


def test_relation_between_grid_keys_is_checked_per_point(case: Path):
    # MLEN and VLEN must stay equal: each value alone is fine with the other at its default only
    # when it equals it, so the mixed points are rejected.
    text = '[[jobs]]\nprogram = "program.asm"\n[grid]\nMLEN = [64, 128]\nVLEN = [64, 128]\n'
    with pytest.raises(ManifestError) as info:
        load_manifest(write(case, text))
    assert info.value.key in ("grid.MLEN", "grid.VLEN")


def test_root_confines_paths(case: Path, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    shutil.copy(case / "hbm.bin", outside / "hbm.bin")
    data = {"jobs": [{"program": "program.asm", "hbm": str(outside / "hbm.bin")}]}
    with pytest.raises(ManifestError, match="relative to the service's batch root"):
        build_plan(data, base_dir=case, root=case)
    data = {"jobs": [{"program": "program.asm", "hbm": "../" + outside.name + "/hbm.bin"}]}
    with pytest.raises(ManifestError, match="outside the service's batch root"):
        build_plan(data, base_dir=case, root=case)
    data = {"jobs": [{"program": "program.asm", "hbm": "hbm.bin"}]}
    assert len(build_plan(json.loads(json.dumps(data)), base_dir=case, root=case).jobs) == 1


def test_grid_keys_that_only_work_together(case: Path):
    # MLEN = VLEN = 128 is valid, though neither value is valid with the other key at its default.
    plan = load_manifest(write(case, '[[jobs]]\nprogram = "program.asm"\noverrides = { MLEN = 128 }\n'
                                     '[grid]\nVLEN = [128]\n'))
    assert plan.jobs[0].overrides == {"MLEN": 128, "VLEN": 128}


def test_unusable_paths_are_manifest_errors(case: Path):
    with pytest.raises(ManifestError, match="cannot use this manifest|does not exist"):
        build_plan({"jobs": [{"program": "program.asm", "hbm": "a\x00b"}]}, base_dir=case)
