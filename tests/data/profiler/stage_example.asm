; gpt-oss router token scores
S_ADDI_INT gp1, gp0, 1
; Allocate VRAM Matrix step6_pair3_gather rows
S_ADDI_INT gp2, gp0, 2
; SubBlock [0][0]: HBM offset = 0
S_ADDI_INT gp3, gp0, 3
; === VRAM Matrix Mul: route pair=12 ===
V_MUL_VV gp1, gp1, gp1, 0
; step6_device_routing_acc init
S_ADDI_INT gp4, gp0, 4
