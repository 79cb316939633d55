"""The GPU present, read through the CUDA driver API (libcuda.so.1) with ctypes; None without one."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 75, 76


@dataclass(frozen=True)
class Gpu:
    name: str
    cc: int  # 87 for compute capability 8.7
    driver: str  # the newest CUDA version the driver supports, e.g. "12.6"


def probe() -> Gpu | None:
    try:
        return _probe(ctypes.CDLL("libcuda.so.1"))
    except (OSError, AttributeError):  # no driver, or a stub without the driver API
        return None


def _probe(cuda: ctypes.CDLL) -> Gpu | None:
    count, version, dev = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    major, minor, name = ctypes.c_int(), ctypes.c_int(), ctypes.create_string_buffer(256)
    if cuda.cuInit(0) or cuda.cuDeviceGetCount(ctypes.byref(count)) or not count.value:
        return None
    if cuda.cuDriverGetVersion(ctypes.byref(version)) or cuda.cuDeviceGet(ctypes.byref(dev), 0):
        return None
    cuda.cuDeviceGetAttribute(ctypes.byref(major), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev)
    cuda.cuDeviceGetAttribute(ctypes.byref(minor), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev)
    cuda.cuDeviceGetName(name, 256, dev)
    v = version.value
    return Gpu(name.value.decode(errors="replace"), major.value * 10 + minor.value, f"{v // 1000}.{v % 1000 // 10}")
