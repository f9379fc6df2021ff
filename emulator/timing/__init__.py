"""Timing modes besides the reference's sequential one: the overlapped model (decoupled units,
DMA in parallel with compute, stall attribution).  model.py: parameters; footprint.py: what an
instruction reads and writes; overlap.py: the jitted scheduler; scheduler.py: its driver and
OverlapResult."""
