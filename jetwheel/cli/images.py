"""The image tasks: `podman.base-image`, `aarch64.setup`, `cuda.setup`, `sysroot.setup`."""

from __future__ import annotations

from invoke.collection import Collection
from invoke.context import Context
from invoke.tasks import task

from jetwheel.cli.edge import clean_errors
from jetwheel.runners.baseimage import BUILDER, BUILDER_ARM64


@task(help={"name": "image name", "arch": "e.g. aarch64 (needs qemu-user-static)", "engine": "podman or docker"})
@clean_errors
def base_image(c: Context, name: str = BUILDER, arch: str = "", engine: str = "podman") -> None:
    """Build the local debootstrap base image the docker runner uses where no registry is reachable."""
    from jetwheel.runners.baseimage import ensure_base_image

    print(ensure_base_image(name, arch or None, engine))


@task(
    help={
        "arch": "architecture to emulate",
        "image": "name of the base image to build for it",
        "engine": "podman or docker",
    }
)
@clean_errors
def setup(c: Context, arch: str = "aarch64", image: str = BUILDER_ARM64, engine: str = "podman") -> None:
    """Run arm64 containers here: binfmt_misc + qemu-aarch64, and an arm64 debootstrap base image."""
    from jetwheel.workflow.images import emulated_setup

    binfmt, made = emulated_setup(arch, image, engine)
    print(f"binfmt: {binfmt}")
    print(f"image: {made}")


@task(help={"profile": "profile naming the image and its Python (python_exe)", "engine": "podman or docker"})
@clean_errors
def cuda_setup(c: Context, profile: str = "x86-cuda12", engine: str = "podman") -> None:
    """Build the CUDA 12.4 toolchain image (Debian trixie's nvidia-cuda-toolkit) that compiles a
    profile's device code on an x86_64 host, with the profile's Python copied in from this host."""
    from jetwheel.workflow.images import cuda_image

    print(cuda_image(profile, engine))


@task(help={"engine": "podman or docker"})
@clean_errors
def sysroot_setup(c: Context, engine: str = "podman") -> None:
    """Build the arm64 CUDA sysroot image (trixie's torch 2.6.0 with CUDA 12.4, x86_64 nvcc 12.4 and
    aarch64 g++-13 inside) that cross-builds the Orin's CUDA wheels as linux_aarch64; needs qemu."""
    from jetwheel.workflow.images import sysroot_image

    name, proof = sysroot_image(engine)
    print(f"image: {name}")
    print(f"proof: {proof}")


podman_ns = Collection("podman", base_image)
aarch64_ns = Collection("aarch64", setup)
cuda_ns = Collection("cuda")
cuda_ns.add_task(cuda_setup, name="setup")
sysroot_ns = Collection("sysroot")
sysroot_ns.add_task(sysroot_setup, name="setup")
