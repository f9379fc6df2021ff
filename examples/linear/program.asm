; Example: Y[4, 64] = 0.125 * (X[4, 64] @ W[64, 64]), then Y is stored back to HBM as MXFP8.
; HBM layout (written by make_inputs.py): X at 0 (elements 256 B, scales 32 B at 256),
; W at 4096 (elements 4096 B, scales 512 B at 8192), Y is stored at 16384 (scales at 16640).
; FP SRAM entry 1 holds the 0.125 scale.  VRAM: X in rows 0-3, Y in rows 16-19.
; @section load
; Load X: 4 rows of 64 activations into VRAM rows 0..3
S_ADDI_INT gp1, gp0, 256
C_SET_SCALE_REG gp1
S_ADDI_INT gp1, gp0, 64
C_SET_STRIDE_REG gp1
C_SET_ADDR_REG a0, gp0, gp0
H_PREFETCH_V gp0, gp0, a0, 1, 0
; Load W: one 64x64 weight tile into MRAM tile 0
S_ADDI_INT gp1, gp0, 4096
C_SET_SCALE_REG gp1
S_ADDI_INT gp2, gp0, 4096
C_SET_ADDR_REG a1, gp0, gp2
H_PREFETCH_M gp0, gp0, a1, 1, 0
; @end
; @section matmul
; Y[:, 4j:4j+4] = X @ W[:, 4j:4j+4] for the 16 column blocks j
S_ADDI_INT gp3, gp0, 0
S_ADDI_INT gp4, gp0, 1024
C_LOOP_START gp5, 16
M_MM 0, gp3, gp0
M_MM_WO gp4, gp0, 0
S_ADDI_INT gp3, gp3, 256
S_ADDI_INT gp4, gp4, 4
C_LOOP_END gp5
; @end
; @section scale
; Y *= FP_SRAM[1]
S_LD_FP f1, gp0, 1
S_ADDI_INT gp4, gp0, 1024
C_LOOP_START gp5, 4
V_MUL_VF gp4, gp4, f1, 0
S_ADDI_INT gp4, gp4, 64
C_LOOP_END gp5
; @end
; @section store
; Store Y (VRAM rows 16..19) to HBM 16384 as MXFP8
S_ADDI_INT gp1, gp0, 256
C_SET_SCALE_REG gp1
S_LUI_INT gp2, 4
C_SET_ADDR_REG a2, gp0, gp2
S_ADDI_INT gp4, gp0, 1024
H_STORE_V gp4, gp0, a2, 1, 0
; @end
