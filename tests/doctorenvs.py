"""Real x86_64 environments for the doctor's differential test, made from PyPI's wheels and cached
between runs under ~/.cache/jetwheel/doctor-envs (or $JETWHEEL_DOCTOR_ENVS).

What is installed, and why that little: the stack's wheels come from the real-wheel corpus
(realwheels.py) and are installed `--no-deps`; the CUDA libraries torch loads at import (the
nvidia-*-cu12 wheels, ~2.5 GB) are installed once, for torch 2.7.0's pins, into one shared
directory that every venv links as site-packages/nvidia (and their .dist-info), so three venvs cost
one download and one unpacking. torch 2.6.0 loads them as well: it asks for the same SONAMEs
(libcudnn.so.9, libcublas.so.12, libcusparseLt.so.0, ...), and its pins on the 12.4 builds show up
as the doctor's pin findings, not as load failures. Beside them only the pure-Python modules that
`import torch` / `import torchvision` execute (sympy, numpy, pillow, ...)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from pythons import python312
from realwheels import CACHE as WHEELS
from realwheels import PYPI, real_wheel

from jetwheel.pipcmd import clean_pip_env, target_args
from jetwheel.runners.baseimage import BUILDER_ARM64
from jetwheel.target import Target

ENVS = Path(os.environ.get("JETWHEEL_DOCTOR_ENVS", Path.home() / ".cache" / "jetwheel" / "doctor-envs"))
DEPS = WHEELS / "doctor-deps"
PYTHON = "3.12"
NVIDIA = [
    *("nvidia-cuda-nvrtc-cu12==12.6.77", "nvidia-cuda-runtime-cu12==12.6.77", "nvidia-cuda-cupti-cu12==12.6.80"),
    *("nvidia-cudnn-cu12==9.5.1.17", "nvidia-cublas-cu12==12.6.4.1", "nvidia-cufft-cu12==11.3.0.4"),
    *("nvidia-curand-cu12==10.3.7.77", "nvidia-cusolver-cu12==11.7.1.2", "nvidia-cusparse-cu12==12.5.4.2"),
    *("nvidia-cusparselt-cu12==0.6.3", "nvidia-nccl-cu12==2.26.2", "nvidia-nvtx-cu12==12.6.77"),
    *("nvidia-nvjitlink-cu12==12.6.85", "nvidia-cufile-cu12==1.11.1.6"),
]
PURE = [
    *("filelock==3.16.1", "typing-extensions==4.12.2", "sympy==1.13.1", "mpmath==1.3.0", "networkx==3.4.2"),
    *("jinja2==3.1.4", "markupsafe==3.0.2", "fsspec==2024.10.0", "setuptools==75.6.0", "numpy==2.1.3"),
    "pillow==11.0.0",
]
TARGET = Target(PYTHON, "linux_x86_64", "", "", glibc="2.28")


def _pip(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, env=clean_pip_env(os.environ)
    )
    if done.returncode != 0:
        raise RuntimeError(f"pip {' '.join(args[:3])} ... failed: {done.stderr[-600:]}")


def _install(site: Path, reqs: list[str], *wheels: Path) -> None:
    DEPS.mkdir(parents=True, exist_ok=True)
    if reqs:
        _pip("download", "-q", "--no-deps", "-d", str(DEPS), "--index-url", PYPI, *target_args(TARGET), *reqs)
    names = [str(w) for w in wheels] + reqs
    _pip(
        "install",
        "-q",
        "--no-deps",
        "--no-compile",
        "--no-index",
        "--find-links",
        str(DEPS),
        "--target",
        str(site),
        *target_args(TARGET),
        *names,
    )


def _shared_nvidia() -> Path:
    site = ENVS / "nvidia-cu126"
    if not (site / ".done").exists():
        shutil.rmtree(site, ignore_errors=True)
        _install(site, NVIDIA)
        (site / ".done").touch()
    return site


def ready(root: Path) -> bool:
    """A cached venv made whole and still whole: one copied or moved from another HOME keeps
    absolute links (its python, the shared CUDA libraries) that point nowhere."""
    if not (root / ".done").exists():
        return False
    links = [*root.glob("bin/*"), *root.glob("lib/python3*/site-packages/*")]
    return all(p.exists() for p in links if p.is_symlink())


def venv(name: str, stack: list[tuple[str, str]]) -> Path:
    """The python of a cached venv holding `stack` (name, version) from PyPI, the shared CUDA
    libraries, and the pure-Python modules the imports run."""
    root = ENVS / name
    python = root / "bin" / "python"
    if ready(root):
        return python
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run([python312(), "-m", "venv", "--without-pip", str(root)], check=True)
    site = root / "lib" / f"python{PYTHON}" / "site-packages"
    nvidia = _shared_nvidia()
    for entry in nvidia.iterdir():
        if entry.name != ".done":
            (site / entry.name).symlink_to(entry)
    _install(site, PURE, *(real_wheel(n, v, PYTHON) for n, v in stack))
    (root / ".done").touch()
    return python


BROKEN_IMAGE = "localhost/jetwheel-doctor-broken:torch270-no-cusparselt"


def broken_image(engine: str = "podman") -> str:
    """The project's bookworm builder image with a broken stack pip-installed into a derived image:
    torch 2.7.0 + torchvision 0.21.0 (cp311, the image's Python) with the CUDA runtime and cuDNN
    but not nvidia-cusparselt-cu12, so `import torch` stops at libcusparseLt.so.0."""
    from jetwheel.runners.baseimage import ensure_base_image, image_exists

    if image_exists(engine, BROKEN_IMAGE):
        return BROKEN_IMAGE
    base = ensure_base_image(engine=engine)
    _pip(
        "download",
        "-q",
        "--no-deps",
        "-d",
        str(DEPS),
        "--index-url",
        PYPI,
        *target_args(TARGET),
        "nvidia-cuda-runtime-cu12==12.6.77",
        "nvidia-cudnn-cu12==9.5.1.17",
    )
    wheels = [real_wheel("torch", "2.7.0", "3.11"), real_wheel("torchvision", "0.21.0", "3.11")]
    wheels += [next(DEPS.glob(f"{n}-*.whl")) for n in ("nvidia_cuda_runtime_cu12", "nvidia_cudnn_cu12")]
    name = "jetwheel-doctor-broken-build"
    subprocess.run([engine, "rm", "-f", name], capture_output=True)
    mounts = [a for w in wheels for a in ("-v", f"{w}:/w/{w.name}:ro")]
    pip = ["python3", "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--break-system-packages"]
    subprocess.run(
        [engine, "run", "--name", name, "--network=none", *mounts, base, *pip, *(f"/w/{w.name}" for w in wheels)],
        check=True,
        capture_output=True,
    )
    subprocess.run([engine, "commit", "-q", name, BROKEN_IMAGE], check=True, capture_output=True)
    subprocess.run([engine, "rm", "-f", name], capture_output=True)
    return BROKEN_IMAGE


ARM_BASE = BUILDER_ARM64
PURE_FOR_TORCH = ("filelock", "typing_extensions", "sympy", "mpmath", "networkx", "jinja2", "markupsafe", "fsspec")


def arm64_image(torchvision: str, engine: str = "podman") -> str:
    """An arm64 image (run under qemu) with PyPI's torch 2.6.0 and torchvision `torchvision` (cp311,
    the image's Python) and the pure-Python modules `import torch` runs, pip-installed --no-deps."""
    from jetwheel.runners.baseimage import ensure_base_image, image_exists

    name = f"localhost/jetwheel-doctor-arm64:torch260-tv{torchvision}"
    if image_exists(engine, name):
        return name
    base = ensure_base_image(ARM_BASE, "aarch64", engine=engine)
    wheels = [
        real_wheel("torch", "2.6.0", "3.11", "aarch64"),
        real_wheel("torchvision", torchvision, "3.11", "aarch64"),
    ]
    _pip("download", "-q", "--no-deps", "-d", str(DEPS), "--index-url", PYPI, *target_args(TARGET), *PURE)
    wheels += [w for w in DEPS.glob("*-py3-none-any.whl") if w.name.split("-")[0].lower() in PURE_FOR_TORCH]
    build = "jetwheel-doctor-arm64-build"
    subprocess.run([engine, "rm", "-f", build], capture_output=True)
    mounts = [a for w in wheels for a in ("-v", f"{w}:/w/{w.name}:ro")]
    pip = [
        "python3",
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--no-index",
        "--no-compile",
        "--break-system-packages",
    ]
    subprocess.run(
        [
            engine,
            "run",
            "--arch",
            "arm64",
            "--name",
            build,
            "--network=none",
            *mounts,
            base,
            *pip,
            *(f"/w/{w.name}" for w in wheels),
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run([engine, "commit", "-q", build, name], check=True, capture_output=True)
    subprocess.run([engine, "rm", "-f", build], capture_output=True)
    return name


def pip_venv(name: str, reqs: list[str], nvidia_from: Path | None = None) -> Path:
    """The python of a cached venv made as a user makes one: `pip install reqs` from PyPI (issue 26's
    environments); with `nvidia_from` (another such venv's python) its site-packages/nvidia* are
    linked in, not downloaded again."""
    root = ENVS / name
    python = root / "bin" / "python"
    if ready(root):
        return python
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run([python312(), "-m", "venv", str(root)], check=True)
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--index-url", PYPI, *reqs], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"pip install {' '.join(reqs)} failed: {done.stderr[-600:]}")
    if nvidia_from is not None:
        site = next((root / "lib").glob("python3*/site-packages"))
        other = next((nvidia_from.parents[1] / "lib").glob("python3*/site-packages"))
        for entry in [*other.glob("nvidia"), *other.glob("nvidia_*.dist-info")]:
            (site / entry.name).symlink_to(entry)
    (root / ".done").touch()
    return python
