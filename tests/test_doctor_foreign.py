"""Issue 26: the doctor on environments nobody here built, made as a user makes them (pip install
from PyPI, cached in ~/.cache/jetwheel/doctor-envs), against the real loader: every shared object
dlopened in a fresh interpreter, alone and after its package's import (bench/doctor_differential.py).

- torch 2.7.0 + torchaudio 2.7.0 (x86_64, no GPU): no BROKEN line; torchaudio's libraries load
  after torch the way torchaudio loads them; without torch/lib/libc10.so torchaudio is broken and
  the line names libc10.so.
- mpi4py 4.x (two run-time builds, MPICH and Open MPI) and cupy-cuda12x without cuTENSOR, beside
  the NVIDIA libraries of the torch venv: with no MPI installed one line names both builds; with
  Debian's Open MPI (libopenmpi3, .ci/run) its build loads and nothing about MPI is broken."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from doctorenvs import pip_venv

from jetwheel.verify.ldso import ld_cache

pytestmark = [pytest.mark.real, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
TORCH = ["torch==2.7.0", "torchaudio==2.7.0"]
OTHERS = ["mpi4py==4.1.2", "cupy-cuda12x==14.2.0"]


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("doctor_differential", REPO / "bench" / "doctor_differential.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def torch_venv() -> Path:
    return pip_venv("torchaudio270", TORCH)


@pytest.fixture(scope="module")
def others_venv(torch_venv: Path) -> Path:
    return pip_venv("cupympi", OTHERS, nvidia_from=torch_venv)


def doctor(python: Path) -> tuple[int, list[dict[str, str]]]:
    done = subprocess.run(
        [sys.executable, "-m", "jetwheel", "doctor", "--python", str(python), "--json"],
        capture_output=True,
        text=True,
        # this checkout's jetwheel by the working directory, not PYTHONPATH: the examined interpreter
        # inherits the environment, and the checkout's jetwheel.egg-info would join what it examines
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    lines: list[dict[str, str]] = json.loads(done.stdout)["lines"]
    return done.returncode, lines


def test_torch_and_torchaudio_from_pypi_have_no_broken_line(torch_venv: Path) -> None:
    code, lines = doctor(torch_venv)
    assert [x for x in lines if x["status"] == "broken"] == []
    assert code in (0, 5)
    notes = " ".join(x["subject"] for x in lines if x["status"] == "note")
    assert "libtorchaudio_sox" in notes and "libtorio_ffmpeg6" in notes
    # cuFile's RDMA plugin loads where libmlx5.so.1 is (rdma-core, which Open MPI brings in CI)
    assert ("libcufile_rdma" in notes) == ("libmlx5.so.1" not in ld_cache())
    driver = [x for x in lines if x["status"] == "unchecked" and "libcuda.so.1" in x["problem"]]
    assert driver and "libcaffe2_nvrtc" in driver[0]["problem"]


def test_without_libc10_torchaudio_is_broken_and_the_line_names_it(torch_venv: Path) -> None:
    lib = next((torch_venv.parents[1] / "lib").glob("python3*/site-packages")) / "torch" / "lib" / "libc10.so"
    aside = lib.with_name("libc10.so.aside")
    lib.rename(aside)
    try:
        code, lines = doctor(torch_venv)
    finally:
        aside.rename(lib)
    audio = [x for x in lines if x["status"] == "broken" and "torchaudio" in x["subject"]]
    assert code == 1 and audio and all("libc10.so" in x["problem"] for x in audio)


def test_the_doctor_agrees_with_the_real_loader_on_torch_and_torchaudio(torch_venv: Path) -> None:
    found = _bench().compare(str(torch_venv), os.cpu_count() or 2)
    assert found["disagreements"] == {} and found["objects"] == found["agreements"] > 60  # torch + torchaudio 2.7.0: 68


def test_mpi_builds_and_cupy_without_cutensor_as_the_real_loader_has_them(others_venv: Path) -> None:
    # the NVIDIA libraries are the torch venv's (linked), compared there
    found = _bench().compare(str(others_venv), os.cpu_count() or 2, skip="/nvidia/")
    assert found["disagreements"] == {} and found["objects"] == found["agreements"] > 20
    _code, lines = doctor(others_venv)
    mpi = [x for x in lines if x["status"] == "broken" and "mpi4py" in x["subject"]]
    if "libmpi.so.40" in ld_cache() or "libmpi.so.12" in ld_cache():
        assert mpi == []
    else:  # one line naming both builds
        assert len(mpi) == 1 and "MPI.mpich" in mpi[0]["problem"] and "MPI.openmpi" in mpi[0]["problem"]
    assert any(x["status"] == "note" and "libcutensor.so.2" in x["problem"] for x in lines)
