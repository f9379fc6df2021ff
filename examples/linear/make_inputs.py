"""Build the example's inputs: hbm.bin (X and W as MXFP8), fp_sram.bin (f16), expected_y.npy.

    python examples/linear/make_inputs.py      # rewrites the files next to this script

expected_y.npy is a plain float64 numpy reference of the program's maths on the dequantised
inputs (what the emulator's bf16 result should be close to).
"""

from pathlib import Path

import numpy as np

from emulator.tensors import HbmTensor, build_hbm_image, read_mx_tensor

HERE = Path(__file__).resolve().parent


def main() -> None:
    rng = np.random.default_rng(2026)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    w = (rng.standard_normal((64, 64)) / 8).astype(np.float32)
    image = build_hbm_image([HbmTensor("X", x, 0), HbmTensor("W", w, 4096)])
    (HERE / "hbm.bin").write_bytes(image)
    fp = np.zeros(16, dtype=np.float16)
    fp[1] = 0.125
    (HERE / "fp_sram.bin").write_bytes(fp.tobytes())
    xq = read_mx_tensor(image, 0, (4, 64)).astype(np.float64)
    wq = read_mx_tensor(image, 4096, (64, 64)).astype(np.float64)
    np.save(HERE / "expected_y.npy", 0.125 * (xq @ wq))


if __name__ == "__main__":
    main()
