"""aarch64 for real: the mini stack built as aarch64 wheels in an arm64 container under qemu,
published, installed from the index in a fresh arm64 container and run; and a CUDA fatbin for
sm_87 carried by an aarch64 extension, read by verify."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_in_arm64, start_server, stop_server
from wheelmaker import make_wheel

from jetwheel.build.engine import Options, run_plan
from jetwheel.build.plan import make_plan
from jetwheel.machine import this_machine
from jetwheel.model.recipe import load_profile, load_recipes
from jetwheel.runners import DockerRunner
from jetwheel.runners.baseimage import BUILDER_ARM64, CACHE, ensure_base_image
from jetwheel.runners.emulation import ensure_emulation
from jetwheel.verify import read_wheels, verify_wheel
from jetwheel.workflow.context import settings

pytestmark = pytest.mark.slow
ARM_IMAGE = BUILDER_ARM64
CA = "/etc/ssl/certs/ca-certificates.crt"
ROOTFS = CACHE / "rootfs-bookworm-aarch64"


def install_in_arm64(image: str, index: str, requirement: str, code: str) -> str:
    """pip-install from the index in a fresh arm64 container (qemu) and run `code`; return stdout."""
    script = (
        f'python3 -m venv /v && /v/bin/pip install -q --index-url {index} {requirement} && /v/bin/python -c "$CODE"'
    )
    return run_in_arm64(image, script, code)


@pytest.fixture(scope="module")
def arm64() -> str:
    ensure_emulation("aarch64")
    return ensure_base_image(ARM_IMAGE, "aarch64")


def test_mini_stack_builds_installs_and_runs_on_aarch64(arm64: str, tmp_path: Path) -> None:
    server = start_server(tmp_path / "packages")
    try:
        recipes, profile = load_recipes(), load_profile("mini-aarch64")
        plan = make_plan(recipes, profile, "mini-vision", "docker", this_machine())
        runner = DockerRunner(engine="podman", arch="aarch64", ca_bundle=CA if os.path.exists(CA) else "")
        results = run_plan(
            plan,
            recipes,
            profile,
            runner,
            server.client(),
            Options(work_root=tmp_path / "w", log_root=tmp_path / "logs"),
        )
        assert [r.wheel for r in results] == [
            "mini_torch-1.0.0-cp311-cp311-linux_aarch64.whl",
            "mini_vision-0.1.0-cp311-cp311-linux_aarch64.whl",
        ]
        for r in results:  # verified as aarch64 objects, the symbol closure against the aarch64 mini-torch
            assert r.report is not None and r.report.passed
            assert {e.info.machine for e in read_wheels([server.root / r.wheel])[0].elves} == {"aarch64"}
        code = (
            "import platform, mini_vision, mini_torch; "
            "print(platform.machine(), mini_vision.boxes(3), mini_torch.has_op('mini_vision::nms'))"
        )
        assert install_in_arm64(arm64, server.simple, "mini-vision", code).split() == ["aarch64", "3.0", "True"]
    finally:
        stop_server(server)


MODULE = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
static PyMethodDef methods[] = {{NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "mini_cuda._C", NULL, -1, methods};
PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&module); }
"""
KERNEL = "__global__ void add_one(float* x) { x[threadIdx.x] += 1.0f; }\n"


@pytest.mark.skipif(
    shutil.which("aarch64-linux-gnu-gcc") is None or shutil.which("nvcc") is None,
    reason="needs aarch64-linux-gnu-gcc and nvcc",
)
def test_aarch64_extension_carries_sm87_device_code_that_verify_reads(arm64: str, tmp_path: Path) -> None:
    """Device code does not depend on the host: nvcc on x86_64 makes the sm_87 fatbin, the aarch64
    cross compiler puts it in an aarch64 extension's .nv_fatbin section (the host-side launch code
    would need an aarch64 CUDA runtime, which only a Jetson has)."""
    (tmp_path / "k.cu").write_text(KERNEL)
    subprocess.run(
        [
            "nvcc",
            "-fatbin",
            "-gencode",
            "arch=compute_87,code=sm_87",
            "-o",
            str(tmp_path / "k.fatbin"),
            str(tmp_path / "k.cu"),
        ],
        check=True,
    )
    (tmp_path / "fatbin.S").write_text(f'.section .nv_fatbin, "a"\n.balign 8\n.incbin "{tmp_path / "k.fatbin"}"\n')
    (tmp_path / "module.c").write_text(MODULE)
    so = tmp_path / "_C.cpython-311-aarch64-linux-gnu.so"
    subprocess.run(
        [
            "aarch64-linux-gnu-gcc",
            "-shared",
            "-fPIC",
            "-O2",
            "-I",
            str(ROOTFS / "usr/include/python3.11"),
            "-idirafter",
            str(ROOTFS / "usr/include"),
            "-o",
            str(so),
            str(tmp_path / "module.c"),
            str(tmp_path / "fatbin.S"),
        ],
        check=True,
    )
    (tmp_path / "w").mkdir()
    wheel = make_wheel(
        tmp_path / "w",
        "mini-cuda",
        "0.1.0",
        tag="cp311-cp311-linux_aarch64",
        extra={"mini_cuda/_C.cpython-311-aarch64-linux-gnu.so": so.read_bytes()},
    )
    report = verify_wheel(wheel, load_profile("mini-aarch64").target(), load_recipes()["mini-cuda"])
    assert report.facts["fatbin"] == {"mini_cuda/_C.cpython-311-aarch64-linux-gnu.so": ["sm_87"]}
    assert report.failing_checks() == [], report.to_json()
    # and it is a real aarch64 extension: it imports in the arm64 container
    shutil.copy(so, tmp_path / "w" / so.name)
    out = subprocess.run(
        [
            "podman",
            "run",
            "--rm",
            "--arch",
            "arm64",
            "-v",
            f"{tmp_path / 'w'}:/m:ro",
            arm64,
            "python3",
            "-c",
            "import importlib.util as u, sys; "
            "s = u.spec_from_file_location('mini_cuda._C', '/m/" + so.name + "'); "
            "m = u.module_from_spec(s); s.loader.exec_module(m); print(m.__name__)",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and out.stdout.strip() == "mini_cuda._C", out.stderr


def test_setup_task_reports_emulation_and_image(arm64: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "jetwheel", "aarch64.setup"], capture_output=True, text=True, check=True
    ).stdout
    assert "qemu-binfmt/aarch64" in out or "qemu-aarch64" in out
    assert ARM_IMAGE in out


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None, reason="needs g++-aarch64-linux-gnu")
def test_cross_runner_builds_mini_torch_for_aarch64_without_emulation(arm64: str, tmp_path: Path) -> None:
    from jetwheel.runners import make_runner

    server = start_server(tmp_path / "packages")
    try:
        recipes, profile = load_recipes(), load_profile("mini-aarch64")
        plan = make_plan(recipes, profile, "mini-torch", "cross", this_machine())
        [result] = run_plan(
            plan,
            recipes,
            profile,
            make_runner("cross", settings(), arch="aarch64"),
            server.client(),
            Options(work_root=tmp_path / "w", log_root=tmp_path / "logs"),
        )
        assert result.wheel == "mini_torch-1.0.0-cp311-cp311-linux_aarch64.whl"
        assert result.report is not None and result.report.passed
        assert {e.info.machine for e in read_wheels([server.root / result.wheel])[0].elves} == {"aarch64"}
        code = "import mini_torch; print(mini_torch.ones_sum(5))"
        assert install_in_arm64(arm64, server.simple, "mini-torch", code).strip() == "5.0"
    finally:
        stop_server(server)
