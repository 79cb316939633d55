"""A local base image for the docker runner where no registry is reachable: a Debian root
filesystem made by debootstrap and imported into the engine. Cached: the rootfs on disk, the image
in the engine's store."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from jetwheel.errors import RunnerError

# ccache: every runner gives compilers a persistent cache (runners/ccache.py)
PACKAGES = "python3,python3-venv,python3-pip,python3-dev,g++,patch,ca-certificates,wget,ccache"
LABEL = "jetwheel.packages"  # an image made from another package list is rebuilt
CACHE = Path("/var/cache/jetwheel")

# The images this project makes itself (debootstrap, no registry), by name -> the arch they are for
# ("" = this machine's). Every bundled profile, test and bench script names one of these or one of
# BRING_YOUR_OWN: an image name nothing makes passes only on a machine where an earlier run left it.
BUILDER = "localhost/jetwheel-builder:bookworm"
BUILDER_ARM64 = "localhost/jetwheel-builder:bookworm-arm64"
LOCAL_IMAGES: dict[str, str] = {BUILDER: "", BUILDER_ARM64: "aarch64"}

# The images the user brings (README, "Triton Inference Server with vLLM on Jetson"), or makes with a
# task of their own, with the command for each: the JetPack images come from NVIDIA's registry, which
# only the Jetson reaches; the CUDA 12.4 toolchain for x86_64 hosts is runners/cudaimage.py's.
BRING_YOUR_OWN: dict[str, str] = {
    "localhost/jetwheel-cuda:12.4-trixie": "inv cuda.setup --profile x86-cuda12",
    "localhost/jetwheel-sysroot:trixie-arm64-cuda12.4": "inv sysroot.setup",
    "jetwheel/builder:r36.4.0-py3.12": "{engine} build -t jetwheel/builder:r36.4.0-py3.12 docker/builder",
    "nvcr.io/nvidia/l4t-jetpack:r36.4.0": "{engine} pull nvcr.io/nvidia/l4t-jetpack:r36.4.0 (on the Jetson)",
}


def image_fix(image: str, engine: str = "podman") -> str:
    """The command that makes or brings `image`, for a message naming a missing one."""
    if image in LOCAL_IMAGES:
        arch = LOCAL_IMAGES[image]
        return f"inv podman.base-image --name {image}" + (f" --arch {arch}" if arch else "")
    if image in BRING_YOUR_OWN:
        return BRING_YOUR_OWN[image].format(engine=engine)
    return f"{engine} build -t {image} docker/builder (see README)"


def image_label(engine: str, name: str, label: str) -> str:
    """The value of `label` on the image `name`; "" when the image or the label is missing."""
    done = subprocess.run(
        [engine, "image", "inspect", "--format", f'{{{{ index .Config.Labels "{label}" }}}}', name],
        capture_output=True,
        text=True,
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def image_exists(engine: str, name: str) -> bool:
    """The image exists and was made from today's package list."""
    return image_label(engine, name, LABEL) == PACKAGES


def debootstrap(suite: str, arch: str, cache: Path, packages: str = PACKAGES, components: str = "") -> Path:
    """A Debian root filesystem of `suite` with `packages`, made once and kept under `cache`. Callers
    hold the rootfs's lock; the tree is made beside it and renamed into place whole, so a run killed
    (or raced by a caller without the lock) half-way never leaves a tree the next run extracts into."""
    if shutil.which("debootstrap") is None:
        raise RunnerError("debootstrap is not installed (apt-get install debootstrap)")
    rootfs = cache / f"rootfs-{suite}-{arch or 'native'}"
    stamp = rootfs / ".jetwheel-packages"
    made_from = packages + (f" [{components}]" if components else "")
    if stamp.exists() and stamp.read_text() == made_from:
        return rootfs
    for stale in cache.glob(f"{rootfs.name}.*"):  # what a killed run left: the lock says none is live
        shutil.rmtree(stale, ignore_errors=True)
    partial = Path(tempfile.mkdtemp(prefix=f"{rootfs.name}.partial-", dir=cache))
    try:
        cmd = ["debootstrap", "--variant=minbase", f"--include={packages}"]
        cmd += [f"--components={components}"] if components else []
        if arch:
            cmd.append(f"--arch={'arm64' if arch == 'aarch64' else arch}")
        done = subprocess.run(
            [*cmd, suite, str(partial), "http://deb.debian.org/debian"], capture_output=True, text=True
        )
        if done.returncode != 0:
            log = partial / "debootstrap" / "debootstrap.log"
            tail = log.read_text(errors="replace") if log.is_file() else done.stdout + done.stderr
            raise RunnerError(
                f"debootstrap {suite} {arch or 'native'} failed: {' | '.join(tail.strip().splitlines()[-3:])}"
            )
        (partial / ".jetwheel-packages").write_text(made_from)
        if rootfs.exists():
            rootfs.rename(cache / f"{rootfs.name}.old-{os.getpid()}")
        partial.rename(rootfs)
    finally:
        for leftover in (partial, cache / f"{rootfs.name}.old-{os.getpid()}"):
            shutil.rmtree(leftover, ignore_errors=True)
    return rootfs


def ensure_base_image(
    name: str = BUILDER,
    arch: str | None = None,
    engine: str = "podman",
    suite: str = "bookworm",
    cache: Path = CACHE,
) -> str:
    """Make sure `name` exists in the engine; build it with debootstrap if not. Returns the name.
    `arch` defaults to the one LOCAL_IMAGES gives the name (this machine's for other names)."""
    if arch is None:
        arch = LOCAL_IMAGES.get(name, "")
    if image_exists(engine, name):
        return name
    cache.mkdir(parents=True, exist_ok=True)
    # Two builds (or test runs) on one machine share the rootfs: the second waits for the first,
    # then finds the image made, instead of debootstrapping into the same directory at once.
    with open(cache / f".{suite}-{arch or 'native'}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if image_exists(engine, name):
            return name
        return _make(name, arch, engine, suite, cache)


def _make(name: str, arch: str, engine: str, suite: str, cache: Path) -> str:
    rootfs = debootstrap(suite, arch, cache)
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    imp = [engine, "import", "--change", f"LABEL {LABEL}={PACKAGES}"]
    imp += (["--arch", "arm64" if arch == "aarch64" else arch] if arch else []) + ["-", name]
    done = subprocess.run(imp, stdin=tar.stdout, capture_output=True, text=True)
    tar.wait()
    if done.returncode != 0:
        raise RunnerError(f"{engine} import failed: {done.stderr.strip()}")
    return name
