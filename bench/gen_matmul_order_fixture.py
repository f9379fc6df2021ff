"""Record libtorch results for the M_TMM / M_TMV / M_BTMV summation-order tests.

Writes tests/data/matmul_order_cases.npz. tests/test_matmul_order.py checks
emulator.core.matmul_order against it without torch. The reference itself is not needed, and
neither is anything else outside this repository.

Needs torch (2.13.0 CPU, the reference's libtorch; its wheel bundles MKL 2024.2) and numpy, for
example in a separate venv:

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 numpy
    /tmp/torchenv/bin/python bench/gen_matmul_order_fixture.py

How it works. The parent process draws the inputs from a fixed seed. Each op group then runs in
a child process whose MKL environment is set before torch loads:

* M_TMM (sgemm): MKL_CBWR=COMPATIBLE;
* M_TMV / M_BTMV (gemv): MKL_ENABLE_INSTRUCTIONS=SSE4_2.

On an Intel host, these are the settings that reproduce the reference's AMD EPYC results. See
the emulator/core/matmul_order docstring. `--native` leaves the environment alone. Use it on a
host like the reference's (AMD, MKL's non-Intel path) to check that its defaults give the same
bits: regenerate with `--native --out /tmp/x.npz` and compare the `*_out` arrays.

Each child makes the reference's own libtorch calls (transactional_emulator matrix_machine.rs),
on fresh 64-byte-aligned f32 tensors, as the reference does:

* M_TMM:  X[B,M] @ T.view(M,M).transpose(-1,-2)[:, c:c+B]
* M_TMV:  x.unsqueeze(0) @ T.view(M,M).transpose(-1,-2)[:, 0:B]
* M_BTMV: q_a[1,H] @ T.view(M,M)[0:M, ho:ho+H].transpose(-1,-2)   (unscaled; the *0.25 is exact)

The "generic" sections test the general rules with odd lengths K and a matrix base that is a
floats past a 16-byte boundary.

Inputs are bf16 values, stored as uint16 bits. Tiles hold E4M3*2^k values (exact in bf16), or
bf16 values. Only the tile entries that reach the outputs are stored (`*_t`: rows c..c+B for
M_TMM, rows 0..B for M_TMV, columns ho..ho+H for M_BTMV); the rest of the tile is zero. Outputs
are f32, stored as uint32 bits.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "tests" / "data" / "matmul_order_cases.npz"
SEED = 20240605
GENERIC_KMAX = 67
MODES = {"gemm": {"MKL_CBWR": "COMPATIBLE"}, "gemv": {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}}

# (section, op, M, B, H, cases)
SHAPES = [
    ("tmm_64", "tmm", 64, 4, 16, 40),
    ("tmv_64", "tmv", 64, 4, 16, 64),
    ("btmv_64", "btmv", 64, 4, 16, 14),
    ("tmm_32", "tmm", 32, 4, 16, 8),
    ("tmv_32", "tmv", 32, 4, 16, 8),
    ("btmv_32", "btmv", 32, 4, 16, 4),
    ("tmm_128", "tmm", 128, 8, 16, 3),
    ("tmv_128", "tmv", 128, 8, 16, 4),
    ("btmv_128", "btmv", 128, 8, 16, 2),
]
GENERIC_GEMV_CASES = 28
GENERIC_GEMM_CASES = 12


def _bf16_bits(v: np.ndarray) -> np.ndarray:
    """f32 values that are exact in bf16 -> their uint16 bf16 bits."""
    bits = np.ascontiguousarray(v, dtype=np.float32).view(np.uint32)
    assert not np.any(bits & 0xFFFF), "value not exact in bf16"
    return (bits >> 16).astype(np.uint16)


def _from_bf16_bits(b: np.ndarray) -> np.ndarray:
    return (b.astype(np.uint32) << 16).view(np.float32)


class _Draw:
    """Random operands whose products are exact in f32 and whose sums round often."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def _range(self) -> tuple[int, int]:
        return [(-3, 3), (-8, 8), (-20, 20), (-40, 40)][int(self.rng.integers(0, 4))]

    def bf16(self, shape, lo, hi, pzero) -> np.ndarray:
        r = self.rng
        e = r.integers(lo, hi + 1, size=shape)
        bits = (r.integers(0, 2, size=shape) << 15) | ((e + 127) << 7) | r.integers(0, 128, size=shape)
        v = (bits.astype(np.uint32) << 16).view(np.float32).reshape(shape)
        v[r.random(shape) < pzero] = 0.0
        return v

    def e4m3_scaled(self, shape, lo, hi, pzero) -> np.ndarray:
        r = self.rng
        v = (r.choice([-1.0, 1.0], size=shape) * (1 + r.integers(0, 8, size=shape) / 8)
             * np.exp2(r.integers(lo, hi + 1, size=shape))).astype(np.float32)
        v[r.random(shape) < pzero] = 0.0
        return v

    def pair(self, xshape, tshape):
        lo, hi = self._range()
        pz = float(self.rng.choice([0.0, 0.05, 0.5]))
        x = self.bf16(xshape, lo, hi, pz)
        t = (self.e4m3_scaled if self.rng.random() < 0.5 else self.bf16)(tshape, lo, hi, pz)
        return x, t


def make_inputs(seed: int) -> dict[str, np.ndarray]:
    d = _Draw(seed)
    arrays: dict[str, np.ndarray] = {}
    for name, op, m, b, h, n in SHAPES:
        # Only the tile entries that reach the outputs are stored; the rest of the tile is zero.
        if op == "tmm":
            x, rows = d.pair((n, b, m), (n, b, m))
            arrays[f"{name}_c"] = (d.rng.integers(0, m // b, size=n) * b).astype(np.int64)
        elif op == "tmv":
            x, rows = d.pair((n, m), (n, b, m))
        else:
            x, rows = d.pair((n, m), (n, m, h))
            arrays[f"{name}_ho"] = (d.rng.integers(0, m // h, size=n) * h).astype(np.int64)
        arrays[f"{name}_x"] = _bf16_bits(x)
        arrays[f"{name}_t"] = _bf16_bits(rows)
    kk = GENERIC_KMAX
    for name, n, rows in (("generic_gemv", GENERIC_GEMV_CASES, 1), ("generic_gemm", GENERIC_GEMM_CASES, 4)):
        x, t = d.pair((n, rows, kk), (n, 4, kk))
        ks = d.rng.choice([2, 3, 4, 5, 6, 7, 8, 9, 11, 13, 16, 17, 19, 31, 33, 48, 64, 65, 66, 67], size=n)
        arrays[f"{name}_x"] = _bf16_bits(x)
        arrays[f"{name}_t"] = _bf16_bits(t)
        arrays[f"{name}_k"] = ks.astype(np.int64)
        arrays[f"{name}_a"] = d.rng.integers(0, 4, size=n).astype(np.int64)
    return arrays


def _worker(group: str, inp: Path, out: Path) -> None:
    import torch  # noqa: PLC0415  (only the children need torch)

    # The reference host has many cores. With a single thread, MKL's sgemm for B=8, M=128 uses
    # another order (k 0..111 and 112..127 in two sequential runs); 2..128 threads all agree.
    torch.set_num_threads(max(2, torch.get_num_threads()))
    a = dict(np.load(inp))
    res: dict[str, np.ndarray] = {}

    def tensor(bits: np.ndarray, offset: int = 0) -> torch.Tensor:
        """A fresh aligned f32 tensor, optionally `offset` floats into its storage."""
        flat = torch.zeros(bits.size + offset, dtype=torch.float32)
        view = flat[offset:]
        view.copy_(torch.from_numpy(_from_bf16_bits(bits.reshape(-1))))
        return view

    for name, op, m, b, h, n in SHAPES:
        if (op == "tmm") != (group == "gemm"):
            continue
        outs = []
        for i in range(n):
            tile = np.zeros((m, m), dtype=np.uint16)
            rows = a[f"{name}_t"][i]
            if op == "tmm":
                c = int(a[f"{name}_c"][i])
                tile[c:c + b] = rows
                t = tensor(tile).view(m, m)
                r = tensor(a[f"{name}_x"][i]).view(b, m) @ t.transpose(-1, -2)[:, c:c + b]
            elif op == "tmv":
                tile[0:b] = rows
                t = tensor(tile).view(m, m)
                r = (tensor(a[f"{name}_x"][i]).unsqueeze(0) @ t.transpose(-1, -2)[:, 0:b]).squeeze(0)
            else:
                ho = int(a[f"{name}_ho"][i])
                tile[:, ho:ho + h] = rows
                t = tensor(tile).view(m, m)
                q = tensor(a[f"{name}_x"][i]).view(1, m // h, h)
                mat = t[0:m, ho:ho + h]
                r = torch.stack([q[:, k, :].squeeze(1) @ mat.transpose(-1, -2) for k in range(m // h)], 0).squeeze(1)
            outs.append(r.numpy().astype(np.float32).view(np.uint32))
        res[f"{name}_out"] = np.stack(outs)
    gname = "generic_gemm" if group == "gemm" else "generic_gemv"
    outs = []
    for i in range(len(a[f"{gname}_k"])):
        k = int(a[f"{gname}_k"][i])
        off = int(a[f"{gname}_a"][i])
        x = a[f"{gname}_x"][i][:, :k]
        t = tensor(np.ascontiguousarray(a[f"{gname}_t"][i][:, :k]), off).view(4, k)
        r = tensor(np.ascontiguousarray(x)).view(x.shape[0], k) @ t.transpose(-1, -2)
        outs.append(r.numpy().astype(np.float32).view(np.uint32))
    res[f"{gname}_out"] = np.stack(outs)
    res[f"meta_{group}"] = np.array(json.dumps({
        "torch": torch.__version__,
        "mkl_available": bool(torch.backends.mkl.is_available()),
        "blas": [ln.strip() for ln in torch.__config__.show().splitlines() if "Math Kernel" in ln],
        "threads": torch.get_num_threads(),
        "env": {k: os.environ.get(k) for k in ("MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY")},
    }))
    np.savez(out, **res)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--native", action="store_true", help="keep the host's MKL defaults (no env overrides)")
    ap.add_argument("--worker", choices=sorted(MODES), help=argparse.SUPPRESS)
    ap.add_argument("--inp", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--res", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        _worker(args.worker, args.inp, args.res)
        return 0
    arrays = make_inputs(SEED)
    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "inputs.npz"
        np.savez(inp, **arrays)
        for group, env_over in MODES.items():
            env = dict(os.environ)
            for k in ("MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS"):
                env.pop(k, None)
            if not args.native:
                env.update(env_over)
            res = Path(tmp) / f"{group}.npz"
            subprocess.run([sys.executable, __file__, "--worker", group, "--inp", str(inp), "--res", str(res)],
                           env=env, check=True)
            arrays.update(dict(np.load(res)))
    arrays["meta_generator"] = np.array(json.dumps({"seed": SEED, "native": args.native}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
