"""The CUDA 12.4 toolchain image with a venv of PyPI's torch 2.6.0 (cp312 x86_64, CUDA 12.4) beside
it: what tests/test_vllm_cuda.py compiles vLLM's units against, and what tests/prefetch.py makes in
the background while earlier tests run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from podman_layer import filled_dir
from pythons import python312
from realwheels import CACHE as WHEELS
from realwheels import real_wheel

from jetwheel.digest import sha256_file
from jetwheel.model.recipe import load_profile
from jetwheel.runners.cudaimage import ensure_cuda_image

PROFILE = "x86-cuda12"
TORCH_VENVS = Path.home() / ".cache" / "jetwheel" / "test-torch-venvs"
CA = "/etc/ssl/certs/ca-certificates.crt"  # the host's trust (a TLS-inspecting proxy's CA included)


def torch_image() -> tuple[str, ...]:
    """`podman run` arguments: the toolchain image with the torch venv mounted at /v, the headers
    and CMake files vLLM compiles against. The venv is kept between runs in ~/.cache/jetwheel,
    named by the wheel and the toolchain image it was made in."""
    base = ensure_cuda_image(python312(), load_profile(PROFILE).image)
    wheel = real_wheel("torch", "2.6.0", "3.12", "x86_64")
    base_id = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Id}}", base], capture_output=True, text=True
    )
    key = f"2.6.0-{sha256_file(wheel)[:12]}-{base_id.stdout.strip()[:12]}"
    # torch's own dependencies (the nvidia-* libraries its import loads) from PyPI
    mount: tuple[str, ...] = ("--network=host", "-v", f"{WHEELS}:/wheels:ro")
    mount += ("-v", f"{CA}:/ca.crt:ro", "-e", "PIP_CERT=/ca.crt") if os.path.exists(CA) else ()
    script = f"python3.12 -m venv /v && /v/bin/pip install -q --find-links /wheels /wheels/{wheel.name}"
    venv = filled_dir(TORCH_VENVS / key, base, script, "/v", mount, shell="bash")
    return ("-v", f"{venv}:/v:ro", base)
