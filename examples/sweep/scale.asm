; Sweep example: Y = 0.125^8 * X on the vector unit (X[4, 64] from the linear example's HBM image).
; Eight passes of V_MUL_VF over 4 VRAM rows: cycles follow LATENCY.VECTOR_MUL_CYCLES.
; @section load
S_ADDI_INT gp1, gp0, 256
C_SET_SCALE_REG gp1
S_ADDI_INT gp1, gp0, 64
C_SET_STRIDE_REG gp1
C_SET_ADDR_REG a0, gp0, gp0
H_PREFETCH_V gp0, gp0, a0, 1, 0
; @end
; @section scale
S_LD_FP f1, gp0, 1
C_LOOP_START gp6, 8
S_ADDI_INT gp4, gp0, 0
C_LOOP_START gp5, 4
V_MUL_VF gp4, gp4, f1, 0
S_ADDI_INT gp4, gp4, 64
C_LOOP_END gp5
C_LOOP_END gp6
; @end
