"""The bottom layer's target: what a set of wheels must run on (Python, platform, glibc, GPU,
what the OS provides) and the wheel tags and marker environment that follow from it.

Everything else (the build side, verify, the index server) imports this module; it imports
nothing of jetwheel but errors."""

from __future__ import annotations

from dataclasses import dataclass, field

from packaging.markers import default_environment
from packaging.tags import Tag, compatible_tags, cpython_tags


@dataclass(frozen=True)
class Target:
    """What the wheels must run on: from a profile (Profile.target()), or overridden on the command line."""

    python: str  # "3.12"
    platform: str  # wheel platform tag, e.g. linux_aarch64
    cuda_arch: str  # "8.7"; "" when the stack carries no device code
    cuda: str  # the driver's CUDA version (which PTX ISA it can JIT)
    system_libs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    system_versions: dict[str, str] = field(default_factory=dict)
    pins: dict[str, str] = field(default_factory=dict)
    glibc: str = "2.35"
    # read from a runtime image (verify/policy.py), in place of system_libs' patterns when given:
    # library file name -> (its exported symbols a line each, "name@@VER"/"name@VER"; its version
    # names; its DT_NEEDED, which ld.so searches too: _C finds cublasGemmEx through libtorch_cuda's)
    system_provided: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = field(default_factory=dict)
    system_policy: str = ""  # what system_provided was read from (image@digest, runtime tarball)
    # projects the target's system provides rather than wheels (a sysroot image's torch): their
    # libraries are the system's (system_provided), and no wheel of them is looked for
    provided: tuple[str, ...] = ()

    @property
    def machine(self) -> str:
        """The machine part of the platform tag: aarch64, x86_64."""
        return self.platform.split("_", 1)[1]

    def platform_tags(self) -> list[str]:
        return platform_tags(self.platform, self.glibc)

    def tags(self) -> list[Tag]:
        """What pip accepts on the target, best first: cp3X-specific, abi3, then py3*-none (pure) tags."""
        major, minor = (int(x) for x in self.python.split(".")[:2])
        plats = self.platform_tags()
        return [
            *cpython_tags((major, minor), platforms=plats),
            *compatible_tags((major, minor), f"cp{major}{minor}", plats),
        ]

    def environment(self) -> dict[str, str]:
        """PEP 508 marker environment of the target (extra="" so extra markers evaluate false)."""
        return dict(marker_environment(self.python, self.machine), extra="")


def platform_tags(platform_tag: str, glibc: str) -> list[str]:
    """Every platform tag the target accepts, best first: manylinux levels down from its glibc.
    (pip's --platform takes exact tags, so they are spelled out.)"""
    arch = platform_tag.split("_", 1)[1]
    major, minor = (int(x) for x in glibc.split(".")[:2])
    # as packaging.tags does: glibc 2.5 is the oldest manylinux on x86, 2.17 elsewhere
    oldest = 5 if arch in ("x86_64", "i686") else 17
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, oldest - 1, -1)]
    tags += [f"{alias}_{arch}" for level, alias in _LEGACY if level >= oldest and level <= minor]
    return [*tags, platform_tag]


# PEP 600's aliases for the PEP 513/571/599 tags: (glibc 2.x, alias)
_LEGACY = ((17, "manylinux2014"), (12, "manylinux2010"), (5, "manylinux1"))


def marker_environment(python: str, machine: str) -> dict[str, str]:
    env: dict[str, str] = {k: str(v) for k, v in default_environment().items()}
    env.update(
        python_version=python,
        python_full_version=f"{python}.0",
        platform_machine=machine,
        sys_platform="linux",
        platform_system="Linux",
        os_name="posix",
        implementation_name="cpython",
        platform_python_implementation="CPython",
    )
    return env
