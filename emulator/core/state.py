"""Layout of the machine state arrays shared by the jitted kernels, declared once.

The run loop takes a handful of arrays; the integer slots of `ctrl`, `params` and `err` are named
here.  Status and error codes are small integers the Python façade turns into typed exceptions.
"""

# ctrl: int64[CTRL_SIZE] — scalar machine state that survives between run-loop chunks.
SCALE, STRIDE, V_MASK, NOW, INSTRUCTIONS, PC, HBM_READ, HBM_WRITTEN, VRAM_ROWS_USED, MRAM_TILES_USED, \
    LOOP_SP, HBM_PAGES_USED, TRACE_USED = range(13)
CTRL_SIZE = 16

# params: int64[PARAMS_SIZE] — hardware parameters (passed at run time, never module globals).
# P_MM_ORDER / P_TMM_ORDER: the summation-order codes of core/matmul_order.py, chosen by shape.
P_MLEN, P_VLEN, P_BLEN, P_HLEN, P_BROADCAST, P_MAX_LOOP, P_PREFETCH_M_ROWS, P_PREFETCH_V_ROWS, \
    P_WRITEBACK_ROWS, P_VRAM_DEPTH, P_MRAM_TILES, P_HBM_CAPACITY, P_MX_BLOCK, P_MM_ORDER, P_TMM_ORDER = range(15)
PARAMS_SIZE = 16

# Decoded program: int64[n, DEC_SIZE], one row per static instruction.  D_STOP holds the
# debugger's stop flags for that pc (emulator/core/stops.py); the decoder leaves it 0.
D_HANDLER, D_RD, D_RS1, D_RS2, D_RS3, D_FUNCT1, D_IMM22, D_IMM18, D_COST, D_STOP = range(10)
DEC_SIZE = 10

# Operand log for the overlapped timing model: int64[n, OPLOG_SIZE], one row per dynamic
# instruction: its pc and the register values its resource footprint depends on, read before it ran,
# and the cycles it took in the sequential timing.
OPLOG_PC, OPLOG_RD, OPLOG_RS1, OPLOG_RS2, OPLOG_AREG_RS2, OPLOG_SCALE, OPLOG_STRIDE, \
    OPLOG_TOP_LOOP_REG, OPLOG_SEQ_CYCLES = range(9)
OPLOG_SIZE = 9

# Loop stack entries: int64[cap, LOOP_SIZE].
L_START_PC, L_COUNT, L_CURRENT, L_INSTR_COUNT, L_REG = range(5)
LOOP_SIZE = 5
LOOP_STACK_CAP = 65536

# Counters per static instruction: int64[n, COUNTER_SIZE].
C_COUNT, C_CYCLES, C_HBM_READ, C_HBM_WRITTEN = range(4)
COUNTER_SIZE = 4

# Run-loop status.  ST_STOP: a debugger stop (breakpoint, condition or watchpoint) fired.
ST_DONE, ST_CHUNK, ST_ERROR, ST_NEED_PAGES, ST_STOP = range(5)

# err: int64[ERR_SIZE] = [kind, pc, a, b, c, d]; messages are rendered in Python (emulator/runner.py).
ERR_SIZE = 8
E_NONE = 0
(E_INVALID_OPCODE, E_VRAM_ALIGN, E_VRAM_RANGE, E_MRAM_ALIGN, E_MRAM_RANGE, E_MM_ROW_GRANULAR,
 E_BLOCK_ALIGN, E_MV_OFFSET_RANGE, E_BROADCAST_ASSERT, E_HEAD_ALIGN, E_NARROW, E_WO_ALIGN,
 E_BMV_SHAPE, E_FP_REGISTER, E_FPSRAM_RANGE, E_INTSRAM_RANGE, E_MAP_WINDOW, E_TOPK_POLICY,
 E_LOOP_ZERO, E_LOOP_NO_MATCH, E_BREAK_EMPTY, E_MAX_LOOP, E_LOOP_STACK, E_HBM_WRITE_RANGE,
 E_PREFETCH_ALIGN, E_PREFETCH_TILE_RANGE, E_BWO_ALIGN) = range(1, 28)
