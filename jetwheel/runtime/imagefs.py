"""An image's root filesystem, readable on this machine without running the image: podman as root
mounts it (`podman image mount`, nothing copied); docker (and rootless podman) cannot, so a
container is created (never started) and the library directories of its export are unpacked."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from jetwheel.errors import RunnerError

# what docker export keeps: the library directories and ld.so's configuration (the rest is not read)
_EXPORTED = ("etc/ld.so.*", "lib", "lib64", "usr/lib", "usr/lib64", "usr/local")
_ARCH = {"arm64": "aarch64", "amd64": "x86_64", "aarch64": "aarch64", "x86_64": "x86_64"}


@dataclass(frozen=True)
class ImageInfo:
    name: str
    digest: str
    machine: str  # aarch64, x86_64
    env: dict[str, str]


def _run(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError:
        raise RunnerError(f"{cmd[0]} is not installed") from None
    if done.returncode != 0:
        raise RunnerError(f"{' '.join(cmd[:3])} failed: {(done.stderr.strip() or done.stdout.strip())[-300:]}")
    return done.stdout


def inspect(engine: str, image: str) -> ImageInfo:
    """The image's digest, machine and environment; RunnerError naming the image if it is not there."""
    fmt = "{{json .Digest}} {{json .Architecture}} {{json .Config.Env}}"
    try:
        out = _run([engine, "image", "inspect", "--format", fmt, image])
    except RunnerError:
        raise RunnerError(f"no image {image} in {engine} (pull or load it first)") from None
    digest, arch, env = (json.loads(part) for part in out.strip().split(" ", 2))
    pairs = (e.partition("=") for e in env or [])
    return ImageInfo(image, str(digest), _ARCH.get(str(arch), str(arch)), {k: v for k, _, v in pairs})


@contextmanager
def root_filesystem(engine: str, image: str, mount: bool = True) -> Iterator[Path]:
    """The image's files at a directory of this machine, for as long as the context lasts: mounted
    where podman can (as root), else the export's library directories unpacked."""
    if mount and Path(engine).name == "podman":
        done = subprocess.run([engine, "image", "mount", image], capture_output=True, text=True)
        if done.returncode == 0:
            try:
                yield Path(done.stdout.strip())
            finally:
                subprocess.run([engine, "image", "unmount", image], capture_output=True)
            return
    with _exported(engine, image) as root:
        yield root


@contextmanager
def _exported(engine: str, image: str) -> Iterator[Path]:
    container = _run([engine, "create", image, "/bin/true"]).strip()
    try:
        with tempfile.TemporaryDirectory(prefix="jetwheel-image-") as tmp:
            export = subprocess.Popen([engine, "export", container], stdout=subprocess.PIPE)
            untar = subprocess.run(
                ["tar", "-x", "-C", tmp, "--wildcards", "--no-same-owner", *_EXPORTED],
                stdin=export.stdout,
                capture_output=True,
                text=True,
            )
            if export.wait() != 0 or untar.returncode not in (0, 2):  # 2: a pattern the image lacks
                raise RunnerError(f"{engine} export {image} failed: {untar.stderr.strip()[-300:]}")
            yield Path(tmp)
    finally:
        subprocess.run([engine, "rm", "-f", container], capture_output=True)
