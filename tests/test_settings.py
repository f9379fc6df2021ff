"""Settings: the [TRANSACTIONAL] table as a validated, immutable model."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from emulator.settings import (
    CONFIG_KEYS, LATENCY_KEYS, PRECISION_KEYS, SettingsError, default_settings, load_settings,
)
from isa_specs import DEFAULT_SETTINGS_TOML, REFERENCE_BUILTIN_TOML
from tests.conftest import needs_corpus

DEFAULT_TEXT = DEFAULT_SETTINGS_TOML.read_text()


def without(text: str, table: str) -> str:
    """TOML text with one [table] and its sub-tables ([table.X]) removed."""
    pattern = re.compile(rf"^\[{re.escape(table)}(?:\.[A-Z_]+)*\]\n(?:[^\[\n][^\n]*\n|\n)*", re.MULTILINE)
    out, n = pattern.subn("", text)
    assert n >= 1, table
    return out


def test_defaults_are_the_shipped_table():
    s = default_settings()
    assert (s.MLEN, s.VLEN, s.BLEN, s.HLEN, s.BROADCAST_AMOUNT) == (64, 64, 4, 16, 4)
    assert s.HBM_SIZE == 16 * 2**30 and s.VECTOR_SRAM_SIZE == 4194304 and s.MATRIX_SRAM_SIZE == 4096
    assert s.MAX_LOOP_INSTRUCTIONS == 100000 and s.DC_EN == 1
    assert s.latency("VECTOR_ADD_CYCLES") == 1 and s.latency("VECTOR_SUM_CYCLES") == 8
    assert s.hbm_model == "hbm2" and s.mram_tiles == 64
    assert set(s.latency_table) == set(LATENCY_KEYS) and set(s.precision) == set(PRECISION_KEYS)
    assert s.precision["HBM_M_WEIGHT_TYPE"].is_mxfp8_e4m3 and s.precision["VECTOR_SRAM_TYPE"].is_bf16


def test_settings_are_immutable():
    s = default_settings()
    with pytest.raises(ValidationError):
        s.MLEN = 32


def test_dc_en_selects_the_latency_column():
    s = load_settings(overrides={"DC_EN": 0})
    assert s.latency("VECTOR_ADD_CYCLES") == 2 and s.latency("VECTOR_SUM_CYCLES") == 20
    assert s.latency("SCALAR_FP_EXP_CYCLES") == 2


@pytest.mark.parametrize("amount, mlen, rows", [(64, 64, 64), (16, 64, 64), (100, 64, 128), (128, 64, 128),
                                                (256, 64, 256), (0, 64, 64)])
def test_prefetch_m_rounding(amount, mlen, rows):
    s = load_settings(overrides={"HBM_M_Prefetch_Amount": amount})
    assert s.prefetch_m_rows == rows


@pytest.mark.parametrize("key", [f"CONFIG.{k}" for k in CONFIG_KEYS] + [f"LATENCY.{k}" for k in LATENCY_KEYS]
                         + [f"PRECISION.{k}" for k in PRECISION_KEYS])
def test_each_missing_key_is_named(key):
    text = without(DEFAULT_TEXT, f"TRANSACTIONAL.{key}")
    with pytest.raises(SettingsError, match=re.escape(f"TRANSACTIONAL.{key}")):
        load_settings(text=text)


def test_missing_key_can_fall_back_like_the_reference():
    text = without(DEFAULT_TEXT, "TRANSACTIONAL.LATENCY.VECTOR_SHIFT_CYCLES")
    s = load_settings(text=text, missing="reference-defaults")
    builtin = load_settings(REFERENCE_BUILTIN_TOML)
    assert s == builtin
    assert (s.MLEN, s.VLEN, s.BLEN, s.VECTOR_SRAM_SIZE) == (32, 32, 32, 1024)
    assert s.latency("VECTOR_ADD_CYCLES") == 2 and s.prefetch_m_rows == 32


def test_mistyped_values_are_named():
    with pytest.raises(SettingsError, match=r"CONFIG\.MLEN\.value must be an integer, got str"):
        load_settings(text=DEFAULT_TEXT.replace("[TRANSACTIONAL.CONFIG.MLEN]\nvalue = 64",
                                                '[TRANSACTIONAL.CONFIG.MLEN]\nvalue = "64"'))
    with pytest.raises(SettingsError, match=r"sign must be true/false"):
        load_settings(text=DEFAULT_TEXT.replace("sign = true", "sign = 1", 1))
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(text="[TRANSACTIONAL\n")
    with pytest.raises(SettingsError, match="must be a table"):
        load_settings(text="TRANSACTIONAL = 5")
    with pytest.raises(SettingsError, match="cannot read settings file"):
        load_settings("/nonexistent/plena_settings.toml")


def test_overrides_by_path_and_bare_name():
    s = default_settings().with_overrides({
        "CONFIG.MLEN": 32, "VLEN": 32, "TRANSACTIONAL.CONFIG.BROADCAST_AMOUNT.value": 2,
        "LATENCY.VECTOR_ADD_CYCLES.dc_lib_en": 7, "VECTOR_MUL_CYCLES": [3, 9], "hbm_model": "analytic"})
    assert (s.MLEN, s.VLEN, s.BROADCAST_AMOUNT) == (32, 32, 2)
    assert s.latency("VECTOR_ADD_CYCLES") == 7 and s.latency_table["VECTOR_MUL_CYCLES"] == (3, 9)
    assert s.hbm_model == "analytic"
    assert default_settings().MLEN == 64  # the original is untouched
    for bad in ({"NOPE": 1}, {"CONFIG.NOPE": 1}, {"TRANSACTIONAL": 1}, {"LATENCY.VECTOR_ADD_CYCLES.x": 1},
                {"hbm_model": "ramulator"}, {"VECTOR_ADD_CYCLES": -1}):
        with pytest.raises(SettingsError):
            default_settings().with_overrides(bad)


@pytest.mark.parametrize("overrides, message", [
    ({"MLEN": 32}, "MLEN (32) must equal VLEN (64)"),
    ({"BLEN": 3}, "must be a multiple of BLEN (3)"),
    ({"HLEN": 12, "BROADCAST_AMOUNT": 4}, "HLEN (12) must be a power of two"),
    ({"VLEN": 0}, "CONFIG.VLEN must be > 0"),
    ({"HBM_SIZE": 100}, "multiple of 64 bytes"),
])
def test_relations_are_checked(overrides, message):
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_settings(overrides=overrides)


def test_unsupported_precision_is_reported():
    text = DEFAULT_TEXT.replace("[TRANSACTIONAL.PRECISION.HBM_V_ACT_TYPE.ELEM]\ntype = \"Fp\"\nsign = true\nexponent = 4\n"
                                "mantissa = 3", "[TRANSACTIONAL.PRECISION.HBM_V_ACT_TYPE.ELEM]\ntype = \"Fp\"\nsign = true\n"
                                "exponent = 5\nmantissa = 2")
    with pytest.raises(SettingsError, match="HBM_V_ACT_TYPE: only MXFP8"):
        load_settings(text=text)


def test_broadcast_relation_is_a_warning_not_an_error():
    s = load_settings(overrides={"BROADCAST_AMOUNT": 2})
    assert any("BROADCAST_AMOUNT*HLEN" in w for w in s.warnings)


def test_other_tables_are_ignored():
    text = "[MODE]\nactive = \"analytic\"\n[ANALYTIC.CONFIG.MLEN]\nvalue = 2048\n" + DEFAULT_TEXT
    assert load_settings(text=text).MLEN == 64


def test_round_trip_through_toml_table():
    s = load_settings(overrides={"DC_EN": 0, "HBM_V_Prefetch_Amount": 16})
    assert s.with_overrides({}) == s.model_copy(update={"source": s.with_overrides({}).source})


@needs_corpus
def test_every_corpus_settings_file_loads(corpus):
    paths = sorted(corpus.glob("*/settings.toml")) + sorted(corpus.glob("dma/*/settings.toml"))
    assert paths
    for p in paths:
        s = load_settings(p)
        assert s.MLEN == s.VLEN
