"""A local base image for the docker runner where no registry is reachable: a Debian root
filesystem made by debootstrap and imported into the engine. Cached: the rootfs on disk, the image
in the engine's store."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ..errors import RunnerError

# ccache: every runner gives compilers a persistent cache (runners/ccache.py)
PACKAGES = "python3,python3-venv,python3-pip,python3-dev,g++,patch,ca-certificates,wget,ccache"
LABEL = "jetwheel.packages"  # an image made from another package list is rebuilt
CACHE = Path("/var/cache/jetwheel")


def image_exists(engine: str, name: str) -> bool:
    """The image exists and was made from today's package list."""
    done = subprocess.run(
        [engine, "image", "inspect", "--format", f'{{{{ index .Config.Labels "{LABEL}" }}}}', name],
        capture_output=True,
        text=True,
    )
    return done.returncode == 0 and done.stdout.strip() == PACKAGES


def debootstrap(suite: str, arch: str, cache: Path, packages: str = PACKAGES, components: str = "") -> Path:
    """A Debian root filesystem of `suite` with `packages`, made once and kept under `cache`."""
    if shutil.which("debootstrap") is None:
        raise RunnerError("debootstrap is not installed (apt-get install debootstrap)")
    rootfs = cache / f"rootfs-{suite}-{arch or 'native'}"
    stamp = rootfs / ".jetwheel-packages"
    made_from = packages + (f" [{components}]" if components else "")
    if not stamp.exists() or stamp.read_text() != made_from:
        shutil.rmtree(rootfs, ignore_errors=True)
        rootfs.parent.mkdir(parents=True, exist_ok=True)
        cmd = ["debootstrap", "--variant=minbase", f"--include={packages}"]
        cmd += [f"--components={components}"] if components else []
        if arch:
            cmd.append(f"--arch={'arm64' if arch == 'aarch64' else arch}")
        done = subprocess.run(
            [*cmd, suite, str(rootfs), "http://deb.debian.org/debian"], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RunnerError(f"debootstrap failed: {(done.stdout + done.stderr).strip().splitlines()[-1:]}")
        stamp.write_text(made_from)
    return rootfs


def ensure_base_image(
    name: str = "localhost/jetwheel-builder:bookworm",
    arch: str = "",
    engine: str = "podman",
    suite: str = "bookworm",
    cache: Path = CACHE,
) -> str:
    """Make sure `name` exists in the engine; build it with debootstrap if not. Returns the name."""
    if image_exists(engine, name):
        return name
    rootfs = debootstrap(suite, arch, cache)
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    imp = [engine, "import", "--change", f"LABEL {LABEL}={PACKAGES}"]
    imp += (["--arch", "arm64" if arch == "aarch64" else arch] if arch else []) + ["-", name]
    done = subprocess.run(imp, stdin=tar.stdout, capture_output=True, text=True)
    tar.wait()
    if done.returncode != 0:
        raise RunnerError(f"{engine} import failed: {done.stderr.strip()}")
    return name
