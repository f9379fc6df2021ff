"""HBM timing models: the cycle-exact HBM2 model (`hbm2`) and a closed-form estimate (`analytic`).

The executor uses `emulator.hbm.timing` (new_timing_state / read_batch / write_block)."""
