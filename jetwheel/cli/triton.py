"""The Triton tasks (`triton.*`) and the runtime the wheels meet (`policy.from-image`,
`runtime.tarball`)."""

from __future__ import annotations

from pathlib import Path

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from jetwheel.cli.edge import clean_errors, dumps
from jetwheel.errors import ExitCode


@task(
    help={
        "profile": "profile with a [triton] table",
        "out": "write to this file instead of stdout",
        "require_hashes": "pin every package with the index's sha256 (pip's hash-checking mode)",
        "index_url": "the index (needed for --require-hashes)",
    }
)
@clean_errors
def requirements(
    c: Context, profile: str = "triton-25.04", out: str = "", require_hashes: bool = False, index_url: str = ""
) -> None:
    """Write the requirements file for build.py's `req` secret."""
    from jetwheel.workflow.triton import requirements as make

    text = make(profile, require_hashes, index_url)
    if out:
        Path(out).write_text(text)
        print(f"wrote {out}")
    else:
        print(text, end="")


@task(
    help={
        "index_url": "the index as the Jetson building the image reaches it",
        "profile": "profile",
        "requirements_file": "path of the req secret file (inv triton.requirements --out)",
        "pytorch_triton_url": "override the wheel URL (default: looked up on the index)",
    }
)
@clean_errors
def command(
    c: Context,
    index_url: str,
    profile: str = "triton-25.04",
    requirements_file: str = "jetwheel-requirements.txt",
    pytorch_triton_url: str = "",
) -> None:
    """Print Triton's build.py command for a Jetson (igpu) image with the vLLM backend from our index."""
    from jetwheel.workflow.triton import triton_command

    print(triton_command(index_url, profile, requirements_file, pytorch_triton_url))


@task(
    help={
        "index_url": "the index to check",
        "profile": "profile",
        "json": "print the report as JSON",
        "image": "instead (or as well): run the smoke test inside this image build.py made",
        "gpu": "with --image: run one CUDA operation too (on the Jetson)",
        "engine": "podman or docker (--image)",
        "policy": "with --index-url: judge the stack against this runtime policy (inv policy.from-image) "
        "plus the runtime tarball the index serves",
    }
)
@clean_errors
def check(
    c: Context,
    index_url: str = "",
    profile: str = "triton-25.04",
    json: bool = False,
    image: str = "",
    gpu: bool = False,
    engine: str = "podman",
    policy: str = "",
) -> None:
    """Dry-run Triton's vLLM install step against the index (--index-url), and/or smoke-test the image
    it built (--image): exit 0 only if everything passed."""
    from jetwheel.verify.report import render
    from jetwheel.workflow.triton import check as run_check

    done = run_check(index_url, profile, image, gpu, engine, policy)
    if done.report is not None:
        print(dumps(done.report.to_json()) if json else render([done.report]))
    if done.smoke:
        print("\n".join(o.line() for o in done.smoke))
    if not done.passed:
        raise Exit(code=ExitCode.CHECK_FAILED)


triton_ns = Collection("triton", requirements, command, check)


# --- the runtime the wheels meet (jetwheel/runtime/) ---------------------------------------------
@task(
    help={
        "image": "the runtime image (e.g. nvcr.io/nvidia/tritonserver:25.04-py3-igpu-min)",
        "engine": "podman or docker",
        "out": "the policy file (default: IMAGE-TAG.policy.json here)",
    }
)
@clean_errors
def from_image(c: Context, image: str, engine: str = "podman", out: str = "") -> None:
    """Read the libraries an image provides (names, exported symbols and versions, its digest) into a
    policy file for verify --policy."""
    from jetwheel.workflow.runtime import policy_from_image

    saved = policy_from_image(image, engine, out)
    counts = saved.policy.counts()
    print(
        f"{saved.path}: {counts['names']} library names, {counts['files']} files, {counts['symbols']} exported symbols "
        f"({saved.policy.machine}, {saved.policy.sources[0]})"
    )


@task(
    help={
        "builder": "the builder image the wheels were linked in (the libraries are taken from it)",
        "policy": "the runtime's policy (inv policy.from-image on igpu-min)",
        "paths": "the stack's wheels (files, or names on --index; default: the profile's [triton] runtime)",
        "profile": "profile",
        "index": "the index to take names from, and to upload to with --upload",
        "out": "the tarball (default: the profile's NVPL file name, nvpl_slim_24.04.tar)",
        "upload": "put it on the index at /packages/NAME, where build.py's NVPL_SLIM_URL points",
        "engine": "podman or docker",
    },
    iterable=["paths"],
)
@clean_errors
def tarball(
    c: Context,
    paths: list[str],
    builder: str,
    policy: str,
    profile: str = "triton-25.04",
    index: str = "",
    out: str = "",
    upload: bool = False,
    engine: str = "podman",
) -> None:
    """Make the runtime tarball Triton's vLLM step unpacks on aarch64: exactly the libraries the stack
    needs that the runtime lacks, from the builder image, with their licenses."""
    from jetwheel.workflow.runtime import runtime_tarball

    made = runtime_tarball(paths, builder, policy, profile, index, out, upload, engine)
    for m in made.members:
        print(f"  lib/{m.name}  ({m.package}: {m.origin})")
    print(f"{made.path}  sha256 {made.sha256}")
    if made.url:
        print(made.url)


policy_ns = Collection("policy", from_image)
runtime_ns = Collection("runtime", tarball)
