"""The conformance corpus (main programs, dma/, ops/) in overlapped timing: the dumps stay the
reference's bit for bit, the sequential figures are unchanged, and with decoupling switched off
the overlapped total equals the sequential one exactly."""

from __future__ import annotations

import json

import pytest

from emulator.errors import InputError
from tests.conftest import CONFORMANCE, corpus_cases, needs_corpus, sub_corpus_cases
from tests.corpus_util import compare_dumps, run_case

pytestmark = [needs_corpus, pytest.mark.conformance]

OVERLAPPED = {"timing": "overlapped"}
SHARED_UNIT = {"timing": "overlapped", "OVERLAP.decoupled": False}


def _expected(name: str) -> dict:
    return json.loads((CONFORMANCE / name / "case.json").read_text())["expected"]


def _check_bounds(seq, ov):
    o = ov.overlap
    assert ov.cycles == seq.cycles and (ov.pc_cycles == seq.pc_cycles).all()
    assert o.instructions == seq.instructions
    assert o.cycles <= seq.cycles + o.dma_extra
    assert o.cycles >= max(o.busiest_unit_busy, o.dependency_bound)
    assert int(o.pc_critical.sum()) == o.cycles


@pytest.mark.parametrize("name", corpus_cases())
def test_corpus_case_overlapped(name):
    d = CONFORMANCE / name
    seq = run_case(d)
    ov = run_case(d, overlap=OVERLAPPED)
    if "error" in _expected(name):
        assert ov.error is not None and seq.error is not None
        assert (ov.error.pc, ov.error.kind) == (seq.error.pc, seq.error.kind)
        return
    assert ov.error is None, str(ov.error)
    assert compare_dumps(ov, d).identical
    _check_bounds(seq, ov)
    shared = run_case(d, overlap=SHARED_UNIT)
    assert compare_dumps(shared, d).identical
    assert shared.overlap.cycles == seq.cycles


@pytest.mark.parametrize("name", sub_corpus_cases("dma"))
def test_dma_case_overlapped(name):
    d = CONFORMANCE / "dma" / name
    seq = run_case(d)
    ov = run_case(d, overlap=OVERLAPPED)
    assert ov.error is None, str(ov.error)
    _check_bounds(seq, ov)
    assert run_case(d, overlap=SHARED_UNIT).overlap.cycles == seq.cycles


def _load_error_case(name: str) -> bool:
    err = json.loads((CONFORMANCE / "ops" / name / "case.json").read_text())["expected"].get("error")
    return err is not None and err["phase"] == "before_execution" and err["kind"] == "load"


@pytest.mark.parametrize("name", sub_corpus_cases("ops"))
def test_ops_case_overlapped(name):
    d = CONFORMANCE / "ops" / name
    if _load_error_case(name):  # the inputs are rejected before anything runs, whatever the timing
        with pytest.raises(InputError):
            run_case(d, overlap=OVERLAPPED)
        return
    seq = run_case(d)
    ov = run_case(d, overlap=OVERLAPPED)
    assert (ov.error is None) == (seq.error is None)
    if seq.error is not None:
        assert (ov.error.pc, ov.error.kind, ov.error.opcode) == (seq.error.pc, seq.error.kind, seq.error.opcode)
    assert ov.cycles == seq.cycles and ov.instructions == seq.instructions
    if (d / "expected").is_dir() and seq.error is None:
        assert compare_dumps(ov, d).identical == compare_dumps(seq, d).identical
    if seq.error is None:
        _check_bounds(seq, ov)
        assert run_case(d, overlap=SHARED_UNIT).overlap.cycles == seq.cycles
