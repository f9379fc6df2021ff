; Sweep example: HBM traffic only.  X[4, 64] and the W tile are loaded four times each, then X is
; scaled once and stored: cycles follow the HBM model (hbm2 / analytic).
; @section load
S_ADDI_INT gp1, gp0, 64
C_SET_STRIDE_REG gp1
C_SET_ADDR_REG a0, gp0, gp0
S_ADDI_INT gp2, gp0, 4096
C_SET_ADDR_REG a1, gp0, gp2
C_LOOP_START gp5, 4
S_ADDI_INT gp1, gp0, 256
C_SET_SCALE_REG gp1
H_PREFETCH_V gp0, gp0, a0, 1, 0
S_ADDI_INT gp1, gp0, 4096
C_SET_SCALE_REG gp1
H_PREFETCH_M gp0, gp0, a1, 1, 0
C_LOOP_END gp5
; @end
; @section scale
S_LD_FP f1, gp0, 1
S_ADDI_INT gp4, gp0, 0
V_MUL_VF gp4, gp4, f1, 0
; @end
; @section store
S_ADDI_INT gp1, gp0, 256
C_SET_SCALE_REG gp1
S_LUI_INT gp2, 4
C_SET_ADDR_REG a2, gp0, gp2
H_STORE_V gp0, gp0, a2, 1, 0
; @end
