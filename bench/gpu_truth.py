"""GPU truth for the fatbin check (run on a machine with an NVIDIA GPU, nvcc and cuobjdump).

Builds the same kernel several ways, runs each on the GPU, lists each with cuobjdump, and prints
what jetwheel's fatbin reader predicts for this GPU. The prediction must match the run:
SASS for sm_87 only -> "no kernel image is available"; compute_87 PTX -> runs through the JIT.

    python3 bench/gpu_truth.py [OUTDIR]
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("fatbin", HERE.parent / "jetwheel" / "verify" / "fatbin.py")
assert spec and spec.loader
fatbin = importlib.util.module_from_spec(spec)
sys.modules["fatbin"] = fatbin  # dataclasses look their module up there
spec.loader.exec_module(fatbin)

PROGRAM = r"""
#include <cstdio>
#include <cuda_runtime.h>
__global__ void add_one(float* x) { x[threadIdx.x] += 1.0f; }
int main() {
  float* d; cudaMalloc(&d, 32 * sizeof(float)); cudaMemset(d, 0, 32 * sizeof(float));
  add_one<<<1, 32>>>(d);
  cudaError_t e = cudaGetLastError(); if (e == cudaSuccess) e = cudaDeviceSynchronize();
  float h[32]; if (e == cudaSuccess) e = cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
  if (e != cudaSuccess) { printf("CUDA error: %s\n", cudaGetErrorString(e)); return 1; }
  printf("ok: x[0] = %.1f\n", h[0]); return 0;
}
"""

VARIANTS = {
    "sass_sm87": ["-gencode", "arch=compute_87,code=sm_87"],
    "ptx_compute87": ["-gencode", "arch=compute_87,code=compute_87"],
    "sass_sm80_sm87": ["-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_87,code=sm_87"],
    "sass_sm90": ["-gencode", "arch=compute_90,code=sm_90"],
}


def gpu_cc() -> int:
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    return int(out.replace(".", ""))


def main() -> int:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".")
    out_dir.mkdir(parents=True, exist_ok=True)
    cc = gpu_cc()
    results = {
        "gpu_cc": cc,
        "nvcc": subprocess.run(["nvcc", "--version"], capture_output=True, text=True).stdout.split("\n")[-2],
    }
    ok_all = True
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.cu"
        src.write_text(PROGRAM)
        for name, flags in VARIANTS.items():
            exe = Path(tmp) / name
            subprocess.run(["nvcc", *flags, "-o", str(exe), str(src)], check=True)
            run = subprocess.run([str(exe)], capture_output=True, text=True)
            listing = subprocess.run(
                ["cuobjdump", "--list-elf", "--list-ptx", str(exe)], capture_output=True, text=True
            )
            with open(exe, "rb") as f:
                entries = fatbin.scan(f)
            predicted, how = fatbin.runs_on(entries, cc)
            labels = {e.label() for e in entries}
            ran = run.returncode == 0
            ok_all &= predicted == ran
            results[name] = {
                "flags": flags,
                "run": run.stdout.strip(),
                "ran": ran,
                "cuobjdump": listing.stdout.strip(),
                "jetwheel_entries": sorted({e.label() for e in entries}),
                "jetwheel_predicts_runs": predicted,
                "how": how,
                "prediction_matches": predicted == ran,
            }
            print(
                f"{name:16} GPU sm_{cc}: {run.stdout.strip():55}  jetwheel: "
                f"{'runs' if predicted else 'no kernel image'} ({how or ', '.join(sorted(labels))})"
                f"  {'MATCH' if predicted == ran else 'MISMATCH'}"
            )
            print("    cuobjdump: " + " | ".join(listing.stdout.split("\n")))
    (out_dir / "gpu_truth.json").write_text(json.dumps(results, indent=2))
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
