"""A CUDA 12 toolchain image for x86_64 hosts, made here without a registry: Debian trixie by
debootstrap, its non-free `nvidia-cuda-toolkit` (CUDA 12.4.1, the CUDA PyPI's torch 2.6.0 x86_64
was built with; contrib too, the toolkit pulls the driver's userspace packages), and the host's own
CPython of the profile's version copied in (trixie's python3 is 3.13, the profile builds cp312).

Device code for sm_87 does not depend on the host, so this compiles the Orin's kernels on any
x86_64 machine; the driver's JIT on JetPack 6 (CUDA 12.6) takes PTX up to ISA 8.5, which 12.4's
8.4 is under (the machine's nvcc 13 writes ISA 9.0, refused there)."""

from __future__ import annotations

import fcntl
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from jetwheel.errors import RunnerError
from jetwheel.runners.baseimage import CACHE, debootstrap, image_label

SUITE = "trixie"
COMPONENTS = "main,contrib,non-free"
# nvcc 12.4 supports host GCC up to 13: trixie's toolkit names its own (NVCC_CCBIN, see below)
TOOLS = "nvidia-cuda-toolkit g++ cmake ninja-build ccache git patch ca-certificates wget"
# what a CPython built with the default modules links beyond libc (checked with ldd after the copy)
PYTHON_LIBS = (
    "libssl3t64 libffi8 libsqlite3-0 libbz2-1.0 liblzma5 zlib1g libreadline8t64 libncursesw6 libuuid1 "
    "libnsl2 libtirpc3t64"
)
LABEL = "jetwheel.inputs"  # an image made from other inputs is rebuilt
CUDA_HOME = "/usr/local/cuda"


@dataclass(frozen=True)
class HostPython:
    """A CPython installation on this host, copied into the image at the same prefix (its rpath
    and sysconfig name that prefix)."""

    exe: str  # the command the profile names, e.g. python3.12
    version: str  # e.g. 3.12.1
    prefix: Path  # sys.base_prefix


def find_python(exe: str) -> HostPython:
    """The installation behind `exe` on this host (a venv's base, never the venv)."""
    code = "import sys;print(sys.version.split()[0]);print(sys.base_prefix)"
    try:
        done = subprocess.run([exe, "-c", code], capture_output=True, text=True)
    except FileNotFoundError:
        raise RunnerError(
            f"{exe} is not on this host's PATH: the CUDA image copies the profile's Python from here"
        ) from None
    if done.returncode != 0:
        raise RunnerError(f"{exe} does not run here: {(done.stderr.strip().splitlines() or ['?'])[0]}")
    version, prefix = done.stdout.split()
    if prefix in ("/usr", "/usr/local"):
        raise RunnerError(f"{exe} is the system's Python ({prefix}); give one installed under its own prefix (pyenv)")
    return HostPython(exe, version, Path(prefix))


def inputs(python: HostPython) -> str:
    """What the image is made from, as its label says."""
    return f"{SUITE} {COMPONENTS}; {TOOLS}; {PYTHON_LIBS}; python {python.version} at {python.prefix}"


def install_script(python: HostPython) -> str:
    """Run in the container made from the bare rootfs: the toolkit, the Python copy (mounted at
    /host-python), and a CUDA_HOME tree where CMake and torch look (Debian spreads the toolkit
    over /usr)."""
    prefix = shlex.quote(str(python.prefix))
    ver = ".".join(python.version.split(".")[:2])
    return " && ".join(
        [
            "export DEBIAN_FRONTEND=noninteractive",
            "apt-get update -q",
            f"apt-get install -y -q --no-install-recommends {TOOLS} {PYTHON_LIBS}",
            "apt-get clean && rm -rf /var/lib/apt/lists/*",
            # the math libraries' static archives (GBs): builds link them shared; cudart_static stays,
            # CMake's CUDA language links it by default
            "find /usr/lib/x86_64-linux-gnu -name 'lib*_static*.a' ! -name libcudart_static.a -delete",
            f"mkdir -p {prefix}",
            # the host's site-packages are the host's business (venvs bring their own); tkinter
            # would pull X11 into a compiler image
            f"tar -C /host-python --exclude=./lib/python{ver}/site-packages --exclude=./lib/python{ver}/test "
            f"--exclude='./lib/python{ver}/lib-dynload/_tkinter*' -c . | tar -C {prefix} -x",
            f"mkdir -p {prefix}/lib/python{ver}/site-packages",
            f"ln -sf {prefix}/bin/python{ver} /usr/local/bin/python{ver}",
            f"! ldd {prefix}/bin/python{ver} {prefix}/lib/python{ver}/lib-dynload/*.so | grep 'not found'",
            f"python{ver} -m venv /tmp/v && /tmp/v/bin/python -c 'import ssl, ctypes, sqlite3, lzma, bz2'",
            "rm -rf /tmp/v",
            f"mkdir -p {CUDA_HOME} && ln -s /usr/lib/nvidia-cuda-toolkit/bin {CUDA_HOME}/bin",
            f"ln -s /usr/include {CUDA_HOME}/include && ln -s /usr/lib/x86_64-linux-gnu {CUDA_HOME}/lib64",
            f"ln -s /usr/lib/nvidia-cuda-toolkit/libdevice {CUDA_HOME}/libdevice",
            "nvcc --version | tail -2",
        ]
    )


def ensure_cuda_image(
    python_exe: str,
    name: str = "localhost/jetwheel-cuda:12.4-trixie",
    engine: str = "podman",
    cache: Path = CACHE,
) -> str:
    """Make sure `name` exists in the engine, made from today's inputs; build it if not. Returns the name."""
    python = find_python(python_exe)
    want = inputs(python)
    if image_label(engine, name, LABEL) == want:
        return name
    cache.mkdir(parents=True, exist_ok=True)
    # a second caller (another test run, the background build) waits, then finds the image made
    with open(cache / f".{SUITE}-cuda.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if image_label(engine, name, LABEL) == want:
            return name
        return _make(name, engine, cache, python, want)


def _make(name: str, engine: str, cache: Path, python: HostPython, want: str) -> str:
    rootfs = debootstrap(SUITE, "", cache, "ca-certificates", COMPONENTS)
    bare = f"{name}-rootfs"
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    done = subprocess.run([engine, "import", "-", bare], stdin=tar.stdout, capture_output=True, text=True)
    tar.wait()
    if done.returncode != 0:
        raise RunnerError(f"{engine} import failed: {done.stderr.strip()}")
    box = f"jetwheel-cuda-setup-{os.getpid()}"
    try:
        run = [engine, "run", "--name", box, "--network=host", "-v", f"{python.prefix}:/host-python:ro"]
        done = subprocess.run([*run, bare, "bash", "-c", install_script(python)], capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
            raise RunnerError(f"installing the CUDA toolchain into {name} failed: {' | '.join(tail)}")
        change = ["--change", f"LABEL {LABEL}={want}", "--change", f"ENV CUDA_HOME={CUDA_HOME}"]
        done = subprocess.run([engine, "commit", "-q", *change, box, name], capture_output=True, text=True)
        if done.returncode != 0:
            raise RunnerError(f"{engine} commit failed: {done.stderr.strip()}")
    finally:
        subprocess.run([engine, "rm", "-f", box], capture_output=True)
        subprocess.run([engine, "rmi", "-f", bare], capture_output=True)
    return name
