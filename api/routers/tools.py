"""/v1/assemble, /v1/disassemble, /v1/estimate: the assembler and the static profiler as a service."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ..deps import ServiceDep
from ..schemas import (
    AssembleRequest,
    AssembleResponse,
    AsmWarningOut,
    DisassembledLine,
    DisassembleRequest,
    DisassembleResponse,
    EmulationErrorResponse,
    EstimateOut,
    EstimateRequest,
    InputErrorResponse,
    MessageResponse,
    SourceLineOut,
)
from ..service import RequestInvalid
from ..worker import input_issue
from .runs import RETRY_AFTER, json_response

router = APIRouter(prefix="/v1", tags=["tools"])

INVALID: dict[int | str, dict[str, Any]] = {422: {"model": InputErrorResponse, "description": "invalid input"}}


@router.post("/assemble", response_model=AssembleResponse, responses=INVALID, summary="Assemble ASM")
def assemble_asm(body: AssembleRequest) -> AssembleResponse:
    """ASM text -> machine code, byte-identical to the PLENA compiler's assembler, with the source
    map (pc -> line, section comment) and the assembler's warnings."""
    from emulator.asm import assemble
    from emulator.errors import InputError

    try:
        program = assemble(body.asm)
    except InputError as exc:
        raise RequestInvalid([input_issue(exc, ["body", "asm"])]) from None
    return AssembleResponse(
        words=program.words.tolist(), mem=program.to_mem_text(), sha256=program.sha256,
        warnings=[AsmWarningOut(line=w.line_no, text=w.line, message=w.message) for w in program.warnings],
        source=[SourceLineOut(pc=pc, line=s.line_no, text=s.text, section=s.comment)
                for pc, s in enumerate(program.source or ())])


@router.post("/disassemble", response_model=DisassembleResponse, responses=INVALID, summary="Disassemble")
def disassemble_words(body: DisassembleRequest) -> DisassembleResponse:
    """Machine code -> canonical ASM, one line per word; words that are not instructions become
    `.word 0x…` with a comment saying why."""
    from emulator.asm import disassemble_word, parse_mem
    from emulator.errors import InputError

    if body.mem is not None:
        try:
            words = parse_mem(body.mem).words.tolist()
        except InputError as exc:
            raise RequestInvalid([input_issue(exc, ["body", "mem"])]) from None
    else:
        words = list(body.words or [])
    lines = [DisassembledLine(pc=pc, word=w, text=disassemble_word(w)) for pc, w in enumerate(words)]
    return DisassembleResponse(asm="".join(line.text + "\n" for line in lines), lines=lines)


@router.post("/estimate", response_model=EstimateOut, summary="Static estimate (no emulation)",
             responses={**INVALID,
                        400: {"model": EmulationErrorResponse, "description": "the estimate could not finish"},
                        429: {"model": MessageResponse, "description": "too many jobs queued", "headers": RETRY_AFTER}})
async def estimate(body: EstimateRequest, service: ServiceDep) -> Response:
    """Cycles, instructions and HBM bytes of the program without emulating its data: loops are
    expanded by following only what decides control flow and DMA (profiler.static).  `exact`
    says whether the numbers equal those of a run.  Runs in the worker pool, like runs."""
    payload = await run_in_threadpool(service.prepare_estimate, body)
    job = await run_in_threadpool(service.submit_estimate, payload)
    outcome = await asyncio.wrap_future(job.future)
    if outcome["status"] == "succeeded":
        return json_response(EstimateOut(**outcome["estimate"], profile=outcome["profile"]))
    if outcome["status"] == "invalid":
        return json_response(InputErrorResponse(detail=outcome["issues"]), 422)
    error = outcome["error"]
    code = 500 if error["kind"] == "internal" else 400
    return json_response(EmulationErrorResponse(detail=error, run_id=job.id), code)
