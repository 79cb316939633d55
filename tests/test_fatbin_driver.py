"""verify's kernel-image rule against the real CUDA driver. Each fatbin container is handed to
cuModuleLoadData on the GPU at hand, and the driver's answer (a kernel image found, or
CUDA_ERROR_NO_BINARY_FOR_GPU) is compared with what `fatbin.runs_on` says for that GPU and driver.

The containers are nvcc's for a spread of targets (desktop and Tegra SASS of the GPU's major and of
others, PTX of lower and higher compute capability), plus every container of the files named by
$JETWHEEL_FATBIN_FILES (e.g. the libraries of a real vLLM wheel built for sm_87). Needs a GPU, its
driver and nvcc: skipped elsewhere. It runs on the device machine (an H200, sm_90), which checks
the desktop half of the rule and the PTX JIT rule; the Tegra half needs an Orin."""

from __future__ import annotations

import ctypes
import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from jetwheel.verify import fatbin

KERNEL = '__global__ void add(float *x, float y) { x[threadIdx.x] += y; }\nextern "C" void keep() {}\n'
# (name, nvcc -gencode values): SASS-only, PTX-only and both, around the GPU's own SM
TARGETS = [
    ("sm_80", ["arch=compute_80,code=sm_80"]),
    ("sm_86", ["arch=compute_86,code=sm_86"]),
    ("sm_87", ["arch=compute_87,code=sm_87"]),
    ("sm_89", ["arch=compute_89,code=sm_89"]),
    ("sm_90", ["arch=compute_90,code=sm_90"]),
    ("sm_90a", ["arch=compute_90a,code=sm_90a"]),
    ("sm_100", ["arch=compute_100,code=sm_100"]),
    ("compute_80", ["arch=compute_80,code=compute_80"]),
    ("compute_87", ["arch=compute_87,code=compute_87"]),
    ("sm_87+compute_87", ["arch=compute_87,code=[sm_87,compute_87]"]),
    ("compute_100", ["arch=compute_100,code=compute_100"]),
]
NO_BINARY_FOR_GPU = 209


class Driver:
    """The CUDA driver API, just enough to load a module on device 0."""

    def __init__(self) -> None:
        self.lib = ctypes.CDLL("libcuda.so.1")
        self._ok(self.lib.cuInit(0), "cuInit")
        dev, ctx = ctypes.c_int(), ctypes.c_void_p()
        self._ok(self.lib.cuDeviceGet(ctypes.byref(dev), 0), "cuDeviceGet")
        major, minor, version = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        self._ok(self.lib.cuDeviceGetAttribute(ctypes.byref(major), 75, dev), "compute capability major")
        self._ok(self.lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev), "compute capability minor")
        self._ok(self.lib.cuDriverGetVersion(ctypes.byref(version)), "cuDriverGetVersion")
        self._ok(self.lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), "cuDevicePrimaryCtxRetain")
        self._ok(self.lib.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
        self.cc = major.value * 10 + minor.value
        self.cuda = f"{version.value // 1000}.{version.value % 1000 // 10}"

    def _ok(self, result: int, what: str) -> None:
        assert result == 0, f"{what}: CUresult {result}"

    def loads(self, image: bytes) -> int:
        """cuModuleLoadData's CUresult for `image` (the module is unloaded again)."""
        module = ctypes.c_void_p()
        result = int(self.lib.cuModuleLoadData(ctypes.byref(module), ctypes.c_char_p(image)))
        if result == 0:
            self.lib.cuModuleUnload(module)
        return result


def containers(data: bytes) -> list[bytes]:
    """Each fatbin container in a file's bytes, as its own image."""
    scanner = fatbin.Scanner()
    scanner.feed(data)
    scanner.finish()
    return [data[a:b] for a, b in scanner.spans]


@pytest.fixture(scope="module")
def driver() -> Driver:
    if not Path("/dev/nvidiactl").exists() or shutil.which("nvcc") is None:
        pytest.skip("needs an NVIDIA GPU, its driver and nvcc")
    return Driver()


def nvcc_fatbin(tmp: Path, name: str, gencodes: list[str]) -> bytes | None:
    """nvcc's fatbin of KERNEL for `gencodes`, or None where this nvcc does not know the target."""
    src = tmp / "k.cu"
    src.write_text(KERNEL)
    out = tmp / f"{name}.fatbin"
    flags = [f"-gencode={g}" for g in gencodes]
    done = subprocess.run(["nvcc", "-fatbin", *flags, "-o", str(out), str(src)], capture_output=True, text=True)
    return out.read_bytes() if done.returncode == 0 else None


def verdicts(driver: Driver, images: dict[str, bytes]) -> list[tuple[str, str, bool, int]]:
    """(name, entries, verify's verdict, the driver's CUresult) for each image."""
    rows = []
    for name, image in images.items():
        entries = fatbin.scan(io.BytesIO(image))
        runs, _why = fatbin.runs_on(entries, driver.cc, driver.cuda)
        rows.append((name, ", ".join(e.label() for e in entries), runs, driver.loads(image)))
    return rows


def test_verify_finds_a_kernel_image_exactly_when_the_driver_does(driver: Driver, tmp_path: Path) -> None:
    images = {name: nvcc_fatbin(tmp_path, name, codes) for name, codes in TARGETS}
    made = {name: image for name, image in images.items() if image is not None}
    for path in filter(None, os.environ.get("JETWHEEL_FATBIN_FILES", "").split(":")):
        for n, image in enumerate(containers(Path(path).read_bytes())):
            made[f"{Path(path).name}#{n}"] = image
    rows = verdicts(driver, made)
    for name, entries, runs, result in rows:
        print(f"sm_{driver.cc} CUDA {driver.cuda}: {name:<40} [{entries}] verify={runs} driver={result}")
    assert all(result in (0, NO_BINARY_FOR_GPU) for *_, result in rows), rows
    wrong = [row for row in rows if row[2] != (row[3] == 0)]
    assert not wrong, f"verify and the driver disagree: {wrong}"
    # the spread really has both answers for this GPU, or the comparison proves little
    assert {runs for _n, _e, runs, _r in rows} == {True, False}
