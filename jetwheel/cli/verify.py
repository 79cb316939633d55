"""The checking tasks: `verify` (wheels against a target) and `doctor` (an installed environment)."""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from jetwheel.cli.edge import clean_errors, dumps
from jetwheel.errors import ExitCode


@task(
    help={
        "paths": "wheel files to verify (repeat: -p a.whl -p b.whl), or names to fetch from the index",
        "profile": "profile giving the target (python, platform, GPU arch, system policy)",
        "index": "index URL: dependency wheels are fetched from it, and --resolve runs against it",
        "with_": "extra wheels pip would install with them (repeatable)",
        "arch": "GPU compute capability to check fatbins for (default: the profile's, e.g. 8.7)",
        "resolve": "also check that the profile's top requirement resolves from the index",
        "json": "print the reports as JSON",
        "platform": "check for this platform instead of the profile's, with its pins and system policy "
        "(e.g. linux_x86_64 for PyPI's x86_64 wheels)",
        "facts": "the fact cache directory (default ~/.cache/jetwheel/facts, or $JETWHEEL_FACTS)",
        "policy": "the runtime's libraries read from its image (inv policy.from-image), instead of the "
        "profile's hand-written [system] libs",
        "runtime_tarball": "the runtime tarball (inv runtime.tarball) whose libraries Triton adds to that image",
    },
    iterable=["paths", "with_"],
)
@clean_errors
def verify(
    c: Context,
    paths: list[str],
    profile: str = "triton-25.04",
    index: str = "",
    with_: list[str] | None = None,
    arch: str = "",
    resolve: bool = False,
    json: bool = False,
    platform: str = "",
    facts: str = "",
    policy: str = "",
    runtime_tarball: str = "",
) -> None:
    """Check wheels for missing sm_87 code, missing extensions, unresolved symbols, pins, resolution."""
    from jetwheel.verify.report import render
    from jetwheel.workflow.verify import verify_wheels

    reports = verify_wheels(paths, profile, index, with_ or [], arch, resolve, platform, facts, policy, runtime_tarball)
    print(dumps([r.to_json() for r in reports]) if json else render(reports))
    if not all(r.passed for r in reports):
        raise Exit(code=ExitCode.CHECK_FAILED)


@task(
    help={
        "python": "the interpreter whose environment to examine (default: this one)",
        "image": "examine inside this OCI image (nothing is installed into it)",
        "image_python": "the interpreter inside the image (default python3)",
        "engine": "podman or docker (default: the one installed)",
        "arch": "GPU compute capability to check fatbins for, e.g. 8.7 (default: the GPU present)",
        "driver": "the driver's CUDA version, e.g. 12.6 (default: the GPU's; else the profile's)",
        "profile": "take --arch and --driver from this profile (e.g. triton-25.04)",
        "json": "print the findings and the scan as JSON",
        "facts": "the fact cache directory (default ~/.cache/jetwheel/facts, or $JETWHEEL_FACTS)",
    }
)
@clean_errors
def doctor(
    c: Context,
    python: str = "",
    image: str = "",
    image_python: str = "python3",
    engine: str = "",
    arch: str = "",
    driver: str = "",
    profile: str = "",
    json: bool = False,
    facts: str = "",
) -> None:
    """Say which installed package fails here and why, one line each with its fix. Exit 0: healthy;
    1: something is broken; 5: could not check (all or part)."""
    from jetwheel.workflow.doctor import examine

    found = examine(python, image, image_python, engine, arch, driver, profile, facts)  # CannotCheck: exit 5
    if json:
        print(dumps({"lines": [vars(x) for x in found.lines], "scan": found.scan}))
    else:
        print("\n".join(x.render() for x in found.lines) or "ok: nothing broken")
    if found.exit_code:
        raise Exit(code=found.exit_code)
