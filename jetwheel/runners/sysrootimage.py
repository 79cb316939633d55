"""The Orin's build sysroot as an arm64 image: Debian trixie's torch 2.6.0 built with CUDA 12.4
(python3-torch-cuda, libtorch-cuda-dev), the CUDA 12.4 headers and arm64 libraries, Python 3.13,
with x86_64 compilers installed beside them: Debian's amd64 nvcc 12.4 (cicc, ptxas) and the
x86_64-hosted aarch64-linux-gnu-gcc/g++-13 (nvcc 12.4 takes GCC <= 13), with the amd64 libc they
run on (multiarch). A build runs in this image under qemu (its Python, its torch, its headers, `/`
as the sysroot) while every compiler process is an x86_64 binary the kernel runs natively: only
Python and CMake pay for emulation.

The root is made on this host (runners/debroot.py: apt resolves, dpkg-deb unpacks), never by apt
under qemu. cuDNN is PyPI's `nvidia-cudnn-cu12` aarch64 wheel: Debian's `nvidia-cudnn` is an
installer that downloads it from NVIDIA, which fails offline, and `import torch` stops without it."""

from __future__ import annotations

import fcntl
import re
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

from jetwheel.errors import RunnerError
from jetwheel.runners import debroot
from jetwheel.runners.baseimage import CACHE, image_label

NAME = "localhost/jetwheel-sysroot:trixie-arm64-cuda12.4"
SUITE, COMPONENTS = "trixie", "main contrib non-free"
TRIPLET = "aarch64-linux-gnu"
GCC = "13"  # nvcc 12.4's newest host compiler
# the target's files: what the build includes and links, and the Python it runs
TARGET = (
    "python3 python3-dev python3-venv python3-pip python3-setuptools python3-wheel python3-numpy "
    "python3-torch-cuda libtorch-cuda-dev pybind11-dev nvidia-cuda-dev libcuda1 cmake ca-certificates git patch"
)
# x86_64 programs that run natively in the arm64 root (their own closure, amd64-native)
HOST_TOOLS = f"g++-{GCC}-{TRIPLET} ninja-build"
TOOLKIT = "nvidia-cuda-toolkit"  # amd64, unpacked alone: its Depends are amd64 CUDA libraries we do not link
CUDNN = "nvidia-cudnn-cu12==9.0.0.312.post1"
LABEL = "jetwheel.inputs"
PROOF_LABEL = "jetwheel.proof"  # what PROOF printed when the image was made
CUDA_HOME = "/usr/local/cuda"
PYTHON = "3.13"


def inputs() -> str:
    """What the image is made from, as its label says."""
    return f"{SUITE} [{COMPONENTS}] arm64: {TARGET}; amd64: {HOST_TOOLS} {TOOLKIT}; pypi: {CUDNN}; v4"


def ensure_sysroot_image(name: str = NAME, engine: str = "podman", cache: Path = CACHE) -> str:
    """Make sure `name` exists in the engine, made from today's inputs; build it if not. Returns the name."""
    want = inputs()
    if image_label(engine, name, LABEL) == want:
        return name
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".sysroot.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if image_label(engine, name, LABEL) == want:
            return name
        return _make(name, engine, cache, want)


def packages(cache: Path) -> list[Path]:
    """The .deb files of the root: the arm64 closure of TARGET and the essential set, and the
    amd64 closure of HOST_TOOLS, and the amd64 toolkit package itself."""
    apt = debroot.Apt(cache / "sysroot-apt", SUITE, COMPONENTS, ("arm64", "amd64"))
    apt.update()
    arm = apt.resolve("arm64", [*apt.essential("arm64"), *TARGET.split()])
    x86 = apt.resolve("amd64", HOST_TOOLS.split())
    x86 += [d for d in apt.resolve("amd64", [TOOLKIT]) if d.name == TOOLKIT]
    both = {d.name for d in arm} & {d.name for d in x86}
    debs = debroot.merge(arm, x86, apt.multiarch_same(both, "amd64") if both else set())
    return apt.download(debs, cache / "sysroot-debs")


def cudnn(cache: Path, root: Path) -> None:
    """cuDNN's libraries and headers from PyPI's aarch64 wheel, where Debian's installer puts them."""
    wheels = cache / "sysroot-wheels"
    where = ["--platform", "manylinux2014_aarch64", "--python-version", "3.13", "-d", str(wheels)]
    done = subprocess.run(
        ["python3", "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", *where, CUDNN],
        capture_output=True,
        text=True,
    )
    found = sorted(wheels.glob("nvidia_cudnn_cu12-*aarch64*.whl"))
    if done.returncode != 0 or not found:
        raise RunnerError(f"pip download {CUDNN} (aarch64) failed: {done.stderr.strip()[-300:]}")
    with zipfile.ZipFile(found[-1]) as whl:
        for member in whl.namelist():
            if member.startswith("nvidia/cudnn/lib/lib"):
                dest = root / "usr/lib" / TRIPLET / Path(member).name
            elif member.startswith("nvidia/cudnn/include/") and member.endswith(".h"):
                dest = root / "usr/include" / Path(member).name
            else:
                continue
            dest.write_bytes(whl.read(member))


def toolchain(root: Path) -> None:
    """Point the toolkit at the target: nvcc's host compiler is the cross g++, its link path the
    arm64 libraries, and CUDA_HOME a tree where torch and CMake look for bin/, include/, lib64/.
    `cc`/`c++` are the cross compilers too: nothing in the image compiles emulated."""
    bindir = root / "usr/lib/nvidia-cuda-toolkit/bin"
    for tool in ("gcc", "g++"):  # the toolkit's wrappers, first on nvcc's PATH (/etc/nvcc.profile)
        (bindir / tool).write_text(f'#!/bin/sh\nexec {TRIPLET}-{tool}-{GCC} "$@"\n')
        (bindir / tool).chmod(0o755)
    profile = root / "etc/nvcc.profile"
    profile.write_text(profile.read_text().replace("x86_64-linux-gnu", TRIPLET))
    local = root / "usr/local/bin"
    local.mkdir(parents=True, exist_ok=True)
    # and the names the root's Python was configured with (sysconfig's CC, CXX, LDSHARED:
    # aarch64-linux-gnu-gcc/g++), which setuptools links extensions with
    names = ("cc", "gcc"), ("gcc", "gcc"), ("c++", "g++"), ("g++", "g++"), (f"{TRIPLET}-gcc", "gcc")
    for link, tool in (*names, (f"{TRIPLET}-g++", "g++")):
        (local / link).unlink(missing_ok=True)
        (local / link).symlink_to(f"/usr/bin/{TRIPLET}-{tool}-{GCC}")
    cuda = root / CUDA_HOME.lstrip("/")
    (cuda / "nvvm").mkdir(parents=True, exist_ok=True)
    for link, target in (
        ("bin", "/usr/lib/nvidia-cuda-toolkit/bin"),
        ("include", "/usr/include"),
        ("lib64", f"/usr/lib/{TRIPLET}"),
        ("nvvm/libdevice", "/usr/lib/nvidia-cuda-toolkit/libdevice"),
    ):
        (cuda / link).symlink_to(target)
    libcuda = root / "usr/lib" / TRIPLET / "libcuda.so.1"
    if not libcuda.exists():  # Debian's libcuda1 keeps it under nvidia/current, linked by a postinst
        found = sorted((root / "usr/lib" / TRIPLET / "nvidia").glob("*/libcuda.so.1"))
        if found:
            libcuda.symlink_to(found[0].relative_to(libcuda.parent))


# glibc >= 2.40's aarch64 <bits/math-vector.h> types its vector math with GCC builtins
# (__Float32x4_t, __SVFloat32_t) that nvcc 12.4's front end (cudafe++, cicc) does not know: every
# .cu including <cmath> fails. Those declarations are skipped where __CUDACC__ is defined, in every
# pass of nvcc, so host and device see the same header. JetPack's glibc 2.35 has no such types.
VECTOR_GUARDS = (
    ("#if __GNUC_PREREQ(9, 0)\n", "#if __GNUC_PREREQ(9, 0) && !defined __CUDACC__\n"),
    ("#elif __glibc_clang_prereq(8, 0)\n", "#elif __glibc_clang_prereq(8, 0) && !defined __CUDACC__\n"),
    (
        "#if __GNUC_PREREQ(10, 0) || __glibc_clang_prereq(11, 0)\n",
        "#if (__GNUC_PREREQ(10, 0) || __glibc_clang_prereq(11, 0)) && !defined __CUDACC__\n",
    ),
)


def math_vector(root: Path) -> list[Path]:
    """Guard the vector math types of every copy of <bits/math-vector.h> (the cross libc's and the
    target's) against nvcc; returns the headers changed."""
    changed = []
    for header in (root / f"usr/{TRIPLET}/include/bits", root / f"usr/include/{TRIPLET}/bits"):
        path = header / "math-vector.h"
        if not path.is_file():
            continue
        text = path.read_text()
        for old, new in VECTOR_GUARDS:
            text = text.replace(old, new)
        if text != path.read_text():
            path.write_text(text)
            changed.append(path)
    return changed


def byte_compile(cache: Path, root: Path) -> None:
    """Byte-compile the target's Python (stdlib and dist-packages, torch's 2,000 modules among them)
    as Debian's postinst (py3compile) would have, natively: an x86_64 python3.13 of the same
    release, unpacked into the root's /tmp for this and removed after, writes the .pyc files (they
    are the same on every architecture). Emulated, the first `import torch` spent over a minute on
    this, in every container a build or a test starts from the image."""
    apt = debroot.Apt(cache / "sysroot-apt", SUITE, COMPONENTS, ("arm64", "amd64"))
    debs = apt.download(apt.resolve("amd64", ["python3.13-minimal", "libpython3.13-stdlib"]), cache / "sysroot-debs")
    scratch = root / "tmp" / "jetwheel-python-amd64"
    debroot.unpack(debs, scratch)
    try:
        py = f"/{scratch.relative_to(root)}"
        env = [f"PYTHONHOME={py}/usr", f"LD_LIBRARY_PATH={py}/usr/lib/x86_64-linux-gnu"]
        argv = [f"{py}/usr/bin/python3.13", "-m", "compileall", "-q"]  # one process: -j needs /dev/shm
        # a file or two of the packages' test data is not Python 3.13: compileall says so and goes on
        in_root(root, ["env", *env, *argv, f"/usr/lib/python{PYTHON}", "/usr/lib/python3/dist-packages"], check=False)
    finally:
        shutil.rmtree(scratch)
    if not (root / "usr/lib/python3/dist-packages/torch/__pycache__").is_dir():
        raise RunnerError(f"byte-compiling the target's Python in {root} left torch without .pyc files")


def in_root(root: Path, argv: list[str], check: bool = True) -> str:
    """Run `argv` chrooted into the root: its x86_64 programs natively, an arm64 one (a static
    ldconfig) under qemu's binfmt handler. Needs root, as unpacking the packages' owners does."""
    done = subprocess.run(["chroot", str(root), *argv], capture_output=True, text=True)
    if check and done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        raise RunnerError(f"{' '.join(argv[:2])} in the sysroot failed: {said[0]}")
    return done.stdout


def make_root(cache: Path, into: Path) -> dict[str, str]:
    """The whole root filesystem in `into`; returns the alternatives it set."""
    debs = packages(cache)
    debroot.unpack(debs, into)
    # the CUDA math libraries' static archives (2.3 GB of 8): builds link them shared; cudart_static
    # stays, CMake's CUDA language links it by default
    for archive in (into / "usr/lib" / TRIPLET).glob("lib*_static*.a"):
        if archive.name != "libcudart_static.a":
            archive.unlink()
    debroot.users(into)
    debroot.status(debs, into)
    links = debroot.alternatives(debs, into, TRIPLET)
    debroot.ca_bundle(into)
    cudnn(cache, into)
    toolchain(into)
    if not math_vector(into):
        raise RunnerError(f"<bits/math-vector.h> in {into} is not the one nvcc 12.4 needs guarded: look again")
    byte_compile(cache, into)
    in_root(into, ["/sbin/ldconfig"])
    return links


def proof_of(root: Path) -> str:
    """What the root holds, as its own programs say (nvcc and the cross g++ run natively) and as
    torch's version.py records; that this torch imports is the tests' and builds' to show."""
    version = (root / "usr/lib/python3/dist-packages/torch/version.py").read_text()
    found = dict(re.findall(r"^(__version__|cuda)\s*(?::\s*[^=]+)?=\s*'([^']*)'", version, re.M))
    tools = f"nvcc --version | tail -1 && {TRIPLET}-g++-{GCC} --version | head -1"
    said = in_root(root, ["env", f"PATH={PATH}", "sh", "-c", tools])
    lines = [f"torch {found.get('__version__', '?')} cuda {found.get('cuda', '?')}", *said.strip().splitlines()]
    return "; ".join(line.strip() for line in lines)


def _make(name: str, engine: str, cache: Path, want: str) -> str:
    """Made natively, then imported whole: nothing runs emulated but ldconfig (static, a second)."""
    with tempfile.TemporaryDirectory(prefix="sysroot-", dir=cache) as tmp:
        root = Path(tmp) / "root"
        make_root(cache, root)
        change = ["--change", f"LABEL {LABEL}={want}", "--change", f"LABEL {PROOF_LABEL}={proof_of(root)}"]
        change += ["--change", f"ENV CUDA_HOME={CUDA_HOME}", "--change", f"ENV PATH={PATH}"]
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        done = subprocess.run(
            [engine, "import", "-q", "--arch", "arm64", *change, "-", name],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
        )
        tar.wait()
        if done.returncode != 0:
            raise RunnerError(f"{engine} import failed: {done.stderr.strip()}")
    return name


def proof(name: str = NAME, engine: str = "podman") -> str:
    """What the image's root said of itself when it was made: its torch and CUDA, nvcc's and g++'s
    versions."""
    return image_label(engine, name, PROOF_LABEL)


PATH = f"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:{CUDA_HOME}/bin"
