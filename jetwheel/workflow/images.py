"""The images and caches builds use: the local base images, arm64 emulation, the CUDA toolchain
image, the compiler cache."""

from __future__ import annotations

from jetwheel.exhaustive import assert_never
from jetwheel.model.runnerkind import RunnerKind
from jetwheel.workflow.context import context


def cuda_image(profile: str, engine: str) -> str:
    """The CUDA toolchain image of `profile`, built if missing, with the profile's Python copied in."""
    from jetwheel.runners.cudaimage import ensure_cuda_image

    prof = context(profile=profile).profile
    return ensure_cuda_image(prof.python_exe, prof.image, engine)


def sysroot_image(engine: str) -> tuple[str, str]:
    """The arm64 CUDA sysroot image, built if missing (arm64 emulation registered first), and what
    it printed when made."""
    from jetwheel.runners.emulation import ensure_emulation
    from jetwheel.runners.sysrootimage import ensure_sysroot_image, proof

    ensure_emulation("aarch64")
    name = ensure_sysroot_image(engine=engine)
    return name, proof(name, engine)


def ccache(runner: RunnerKind, engine: str, connection: str, profile: str, args: str) -> str:
    """Run ccache with `args` where `runner` builds: this host's cache directory, or the engine's volume
    (in the profile's image)."""
    from jetwheel.runners import make_runner
    from jetwheel.runners.ccache import CompilerCache, run_ccache

    ctx = context(profile=profile)
    match runner:
        case "docker":
            image = ctx.profile.image
        case "local" | "cross":
            image = "host"
        case _:
            assert_never(runner)
    argv = make_runner(runner, ctx.settings, engine, connection).probe_argv(image)
    return run_ccache(argv, CompilerCache.of(ctx.settings), args, ctx.settings.environ)


def emulated_setup(arch: str, image: str, engine: str) -> tuple[str, str]:
    """binfmt_misc + qemu for `arch`, and a debootstrap base image of it: what each now is."""
    from jetwheel.runners.baseimage import ensure_base_image
    from jetwheel.runners.emulation import ensure_emulation

    return ensure_emulation(arch), ensure_base_image(image, arch, engine)
