; Sweep example: Y[4, 64] = X[4, 64] @ W[64, 64] on the systolic array, stored to HBM as MXFP8
; (inputs: the linear example's HBM image).
; @section load
S_ADDI_INT gp1, gp0, 256
C_SET_SCALE_REG gp1
S_ADDI_INT gp1, gp0, 64
C_SET_STRIDE_REG gp1
C_SET_ADDR_REG a0, gp0, gp0
H_PREFETCH_V gp0, gp0, a0, 1, 0
S_ADDI_INT gp1, gp0, 4096
C_SET_SCALE_REG gp1
S_ADDI_INT gp2, gp0, 4096
C_SET_ADDR_REG a1, gp0, gp2
H_PREFETCH_M gp0, gp0, a1, 1, 0
; @end
; @section matmul
S_ADDI_INT gp3, gp0, 0
S_ADDI_INT gp4, gp0, 1024
C_LOOP_START gp5, 16
M_MM 0, gp3, gp0
M_MM_WO gp4, gp0, 0
S_ADDI_INT gp3, gp3, 256
S_ADDI_INT gp4, gp4, 4
C_LOOP_END gp5
; @end
; @section store
S_ADDI_INT gp1, gp0, 256
C_SET_SCALE_REG gp1
S_LUI_INT gp2, 4
C_SET_ADDR_REG a2, gp0, gp2
S_ADDI_INT gp4, gp0, 1024
H_STORE_V gp4, gp0, a2, 1, 0
; @end
