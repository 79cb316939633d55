"""The door: Invoke tasks (also the `jetwheel` console script). Each task parses its arguments,
calls one function, and turns typed errors into one clean line and an exit code. No logic here."""

from __future__ import annotations

import functools
import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit, ParseError
from invoke.program import Program
from invoke.tasks import task

from . import __version__
from .errors import ExitCode, JetwheelError, exit_code
from .runners.baseimage import BUILDER, BUILDER_ARM64

F = TypeVar("F", bound=Callable[..., Any])


def clean_errors(fn: F) -> F:
    """Typed errors and Ctrl-C become one line on stderr and a non-zero exit, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except JetwheelError as e:
            raise Exit(f"jetwheel: error: {' '.join(str(e).split())}", code=exit_code(e)) from None
        except KeyboardInterrupt:
            raise Exit("jetwheel: interrupted", code=ExitCode.INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def _client(index: str, user: str = "", password: str = "") -> Any:
    from .index.client import IndexClient
    from .index.config import load_config

    cfg = load_config()
    if not user and not os.environ.get("JETWHEEL_INDEX_USER"):
        cred = cfg.home / ".state" / "credentials"
        if cred.is_file() and not index:
            user, _, password = cred.read_text().strip().partition(":")
    return IndexClient(
        index or cfg.url,
        user or os.environ.get("JETWHEEL_INDEX_USER", ""),
        password or os.environ.get("JETWHEEL_INDEX_PASSWORD", ""),
    )


@task(
    help={
        "name": "package to build (its build-time dependencies are built first)",
        "profile": "version set to build (default: the profile pinning NAME, triton-25.04 first)",
        "runner": "local (this host / already in a JetPack container), docker (docker or podman) or cross "
        "(default: local; for another machine's profile, cross where every recipe allows it, else docker)",
        "dry_run": "print the plan (steps, env, commands, wheel names, cache keys) and build nothing",
        "json": "with --dry-run: the plan as JSON",
        "force": "rebuild steps whose cache key is already published",
        "index": "index URL (default: index/config.toml's)",
        "publish_failing": "publish a wheel that failed verify, marked failing on the index (loudly)",
        "keep_work": "keep each step's work directory (source, env, raw wheel) to debug a build",
        "engine": "container engine for --runner docker (podman or docker)",
        "connection": "remote engine: podman connection or docker context",
        "arch": "container architecture for --runner docker (e.g. aarch64)",
        "gpu": "give the container the GPU (--runtime nvidia on a Jetson)",
        "memory_gb": "build host memory to derive MAX_JOBS from (default: this machine's)",
        "cores": "build host cores (default: this machine's)",
        "recipes": "directory of recipes and profiles (default: $JETWHEEL_RECIPES, ./recipes, the bundled ones)",
        "sources": "directory of source archives (inv sources.fetch), tried before the index and upstream "
        "(default: $JETWHEEL_SOURCES)",
        "preflight": "only check, in minutes, what would fail hours later (one line per check, with the fix)",
        "no_preflight": "skip the checks that run before a real build",
        "disk_gb": "free disk a step needs where it builds (preflight)",
        "no_oom_retry": "a step killed for memory fails at once (default: retried once with half MAX_JOBS)",
        "container_memory": "memory limit for the build containers, e.g. 12g (--runner docker)",
        "engines": "build on several engines at once: podman connections, docker contexts or engine URLs, "
        "comma-separated, or a file listing them (engines = [...] in TOML, or one a line)",
    },
    # twenty options: only long flags (automatic short ones collide and give --no-preflight a "-")
    auto_shortflags=False,
)
@clean_errors
def build_wheel(
    c: Context,
    name: str,
    profile: str = "",
    runner: str = "",
    dry_run: bool = False,
    json: bool = False,
    force: bool = False,
    index: str = "",
    publish_failing: bool = False,
    engine: str = "",
    connection: str = "",
    arch: str = "",
    gpu: bool = False,
    memory_gb: float = 0.0,
    cores: int = 0,
    keep_work: bool = False,
    recipes: str = "",
    sources: str = "",
    preflight: bool = False,
    no_preflight: bool = False,
    disk_gb: float = 20.0,
    no_oom_retry: bool = False,
    container_memory: str = "",
    engines: str = "",
) -> None:
    """Build NAME and its dependency chain, repair, verify and publish each wheel to the index.
    A step that failed or was interrupted resumes in its kept work directory when run again."""
    from .machine import Machine, this_machine
    from .plan import default_runner, make_plan, render_plan
    from .recipe import load_recipes, recipes_root
    from .workflow import profile_for

    root = recipes_root(recipes)
    known = load_recipes(root)
    prof = profile_for(name, profile, arch, root)
    here = this_machine()
    machine = Machine(cores or here.cores, memory_gb or here.memory_gb)
    runner = "docker" if engines else runner or default_runner(known, prof, name, platform.machine())
    plan = make_plan(known, prof, name, runner, machine)
    if dry_run:
        print(_dumps(plan.to_json()) if json else render_plan(plan))
        return
    from .engine import Options, run_plan
    from .progress import make_listener
    from .runners import make_runner

    # a profile for another machine runs its containers emulated for that machine
    run_arch = arch or (prof.arch if prof.arch != platform.machine() else "")
    client = _client(index)
    fleet = None
    if engines:
        from .schedule import connect, engine_names, run_fleet

        fleet, down = connect(engine_names(engines), plan, engine, gpu, arch, container_memory)
        for line in down:
            print(f"jetwheel: WARNING: {line}; building without it", file=sys.stderr)
    # preflight checks the engine the first step runs on (with --engines: the first that answered)
    the_runner = fleet[0].runner if fleet else make_runner(runner, engine, connection, gpu, run_arch, container_memory)
    if preflight or not no_preflight:
        facts = fleet[0].facts if fleet else None  # a fleet's engine was probed by connect: not asked again
        _preflight(plan, known, prof, the_runner, client, disk_gb, sources, gpu, verbose=preflight, facts=facts)
        if preflight:
            return
    if publish_failing:
        print(
            "jetwheel: WARNING: --publish-failing: wheels that fail verify will be published, marked failing",
            file=sys.stderr,
        )
    options = Options(
        force=force,
        publish_failing=publish_failing,
        keep_work=keep_work,
        oom_retry=not no_oom_retry,
        **_sources_option(sources),
    )
    if fleet:
        results = run_fleet(plan, known, prof, fleet, client, options, make_listener(), gpu, arch)
    else:
        results = run_plan(plan, known, prof, the_runner, client, options, make_listener())
    for r in results:
        print(f"{r.status:>9}  {r.wheel}")


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
    from .verify.report import render
    from .workflow import verify_paths

    client = _client(index) if index or resolve else None
    reports = verify_paths(paths, profile, client, with_ or [], arch, resolve, platform, facts, policy, runtime_tarball)
    print(_dumps([r.to_json() for r in reports]) if json else render(reports))
    if not all(r.passed for r in reports):
        raise Exit(code=ExitCode.CHECK_FAILED)


@task(help={"no_serve": "stop the index at the end instead of serving until Ctrl-C", "runner": "local or docker"})
@clean_errors
def demo(c: Context, no_serve: bool = False, runner: str = "local") -> None:
    """Start the index under index/, build the mini stack into it, install it from the index in a
    fresh venv, and print the pip install line."""
    from .workflow import run_demo

    for line in run_demo(serve_after=not no_serve, runner=runner):
        print(line, flush=True)


@task(help={"index": "index URL (default: index/config.toml's)", "json": "print JSON"})
@clean_errors
def status(c: Context, index: str = "", json: bool = False) -> None:
    """Summarize the index: projects, files, bytes, failing verify reports, disk free."""
    doc = _client(index).status()
    if json:
        print(_dumps(doc))
        return
    print(
        f"{doc['projects']} projects, {doc['files']} files, {doc['bytes'] / 1e6:.1f} MB; "
        f"disk free {doc['disk_free'] / 1e9:.1f} of {doc['disk_total'] / 1e9:.1f} GB"
    )
    print(f"verify: {len(doc['failing_verify'])} failing, {doc['unverified']} not verified; {doc['yanked']} yanked")
    for f in doc["failing_verify"]:
        print(f"  FAIL {f}")


def _preflight(
    plan: Any,
    recipes: Any,
    profile: Any,
    runner: Any,
    client: Any,
    disk_gb: float,
    sources: str,
    gpu: bool,
    verbose: bool,
    facts: Any = None,
) -> None:
    """Every check's line with --preflight or when one fails; before a build that passes, one line."""
    import time

    from .preflight import Needs, failures, preflight, render

    started = time.monotonic()
    needs = Needs(disk_gb=disk_gb, **_sources_option(sources))
    checks = preflight(plan, recipes, profile, runner, client, needs, gpu, facts)
    failed = failures(checks)
    if verbose or failed:
        print(render(checks), file=sys.stdout if verbose else sys.stderr, flush=True)
    else:
        print(f"preflight: {len(checks)} checks passed in {time.monotonic() - started:.0f}s", file=sys.stderr)
    if failed:
        raise Exit(
            f"jetwheel: error: preflight: {len(failed)} of {len(checks)} checks failed "
            f"(first: {failed[0].check}); fix them or pass --no-preflight",
            code=ExitCode.CHECK_FAILED,
        )


def _sources_option(sources: str) -> dict[str, Any]:
    return {"sources": Path(sources)} if sources else {}


def _dumps(doc: Any) -> str:
    return json.dumps(doc, indent=2, sort_keys=False)


# --- index -----------------------------------------------------------------------------------------
@task(
    help={
        "config": "index config file (default: ./index/config.toml in a checkout, else the XDG data dir's)",
        "root": "directory of distribution files (default: the config's, ./index/packages in a checkout)",
        "host": "address to bind",
        "port": "port",
        "htpasswd": "htpasswd file for uploads (bcrypt; pypiserver's format); roles are in the config",
        "upstream": "simple index for names no recipe builds ('' = air-gapped)",
        "auth_reads": "require a login or a token (inv index.token) for reads too",
        "allow_overwrite": "let admins replace files",
        "max_upload_mb": "largest accepted upload",
        "workers": "server processes sharing the port (default: one per core)",
        "certfile": "serve HTTPS with this certificate chain (PEM)",
        "keyfile": "the certificate's private key (PEM)",
        "public_url": "the index's address as people and pip reach it (shown on its pages)",
        "max_connections": "open connections at most (default: from the open-file limit)",
        "client_timeout": "seconds a client may take to send a request's headers, and an idle connection "
        "stays open (default 15 and 30)",
        "nginx": "nginx answers the reads from a tree kept rendered on every change; the app behind it",
    }
)
@clean_errors
def serve(
    c: Context,
    config: str = "",
    root: str = "",
    host: str = "",
    port: int = 0,
    htpasswd: str = "",
    upstream: str | None = None,
    auth_reads: bool = False,
    allow_overwrite: bool = False,
    max_upload_mb: int = 8192,
    workers: int = 0,
    certfile: str = "",
    keyfile: str = "",
    public_url: str = "",
    max_connections: int = 0,
    client_timeout: float = 0.0,
    nginx: bool = False,
) -> None:
    """Serve the index (PEP 503/691/658, uploads, yank) until Ctrl-C."""
    from .workflow import ServeOptions, serve_index

    serve_index(
        ServeOptions(
            config,
            root,
            host,
            port,
            htpasswd,
            upstream,
            auth_reads,
            allow_overwrite,
            max_upload_mb,
            workers or os.cpu_count() or 1,
            certfile,
            keyfile,
            public_url,
            max_connections,
            client_timeout,
            nginx,
        )
    )


@task(
    help={
        "filename": "file on the index",
        "reason": "why (PEP 592: shown by pip)",
        "undo": "unyank",
        "index": "index URL",
    }
)
@clean_errors
def yank(c: Context, filename: str, reason: str = "", undo: bool = False, index: str = "") -> None:
    """Yank (or unyank) a file: pip skips it unless pinned exactly."""
    _client(index).yank(filename, reason, undo)
    print(f"{'unyanked' if undo else 'yanked'} {filename}")


@task(
    help={
        "dest": "directory to write the static tree to",
        "root": "store directory (default: index/packages)",
        "port": "port written into the sample nginx.conf",
        "bucket": "also upload the tree to this S3 bucket",
        "endpoint": "S3 endpoint URL (MinIO, Ceph, ...)",
        "prefix": "key prefix in the bucket",
        "public_read": "set a public-read ACL on each object (else the bucket policy must allow reads)",
    }
)
@clean_errors
def export(
    c: Context,
    dest: str,
    root: str = "",
    port: int = 8080,
    bucket: str = "",
    endpoint: str = "",
    prefix: str = "",
    public_read: bool = False,
) -> None:
    """Write the index as a static tree (HTML, JSON, .metadata, files) for nginx or an S3 bucket."""
    from .workflow import export_index

    for line in export_index(Path(dest), root, port, bucket, endpoint, prefix, public_read):
        print(line)


@task(
    help={
        "user": "user name",
        "password": "password",
        "role": "read, upload (the default) or admin (may also yank, delete and overwrite)",
        "htpasswd": "file (default: the index config's)",
        "config": "index config file that gets the role (default: the index's)",
    }
)
@clean_errors
def adduser(c: Context, user: str, password: str, role: str = "upload", htpasswd: str = "", config: str = "") -> None:
    """Add or change a user of the index: the password in the htpasswd file, the role in the config."""
    from .index.auth import check_role
    from .index.config import add_user, load_config, set_role

    check_role(role)
    cfg = load_config(Path(config) if config else None)
    path = Path(htpasswd) if htpasswd else cfg.htpasswd
    if path is None:
        raise Exit("jetwheel: error: the index config sets no htpasswd; pass --htpasswd", code=ExitCode.USAGE)
    add_user(path, user, password)
    set_role(cfg.path, user, role)
    print(f"user {user} ({role}) written to {path} and {cfg.path}")


@task(
    help={
        "read": "a read-only token (the only kind there is: say so)",
        "expires": "how long it is valid: 30m, 2h, 7d (at most 366d)",
        "root": "store directory (default: the index config's)",
        "user": "the index user the token stands for: it dies when the user is removed",
    }
)
@clean_errors
def token(c: Context, read: bool = False, expires: str = "2h", root: str = "", user: str = "") -> None:
    """Print a read-only token that expires: use it as the password of any user name, e.g.
    https://token:TOKEN@index.lan/simple/ (safe in an image's build history once expired)."""
    from .workflow import issue_token

    if not read:
        raise Exit("jetwheel: error: only read-only tokens are issued: pass --read", code=ExitCode.USAGE)
    if not user:
        raise Exit("jetwheel: error: name the index user the token stands for: --user NAME", code=ExitCode.USAGE)
    print(issue_token(root, expires, user))


@task(help={"root": "store directory (default: the index config's)"})
@clean_errors
def check_profiles(c: Context, root: str = "") -> None:
    """Check now whether each profile resolves from the index, and record it for the pages (the
    server does this by itself a few seconds after its files change)."""
    from .workflow import check_profiles as check

    for name, result in check(root).items():
        print(f"{'pass' if result['passed'] else 'FAIL'}  {name}: {result['detail']}")


@task(help={"name": "image name", "arch": "e.g. aarch64 (needs qemu-user-static)", "engine": "podman or docker"})
@clean_errors
def base_image(c: Context, name: str = BUILDER, arch: str = "", engine: str = "podman") -> None:
    """Build the local debootstrap base image the docker runner uses where no registry is reachable."""
    from .runners.baseimage import ensure_base_image

    print(ensure_base_image(name, arch or None, engine))


@task(help={"path": "the file (e.g. nvpl_slim_24.04.tar; a wheel goes up as a wheel)", "index": "index URL"})
@clean_errors
def upload_artifact(c: Context, path: str, index: str = "") -> None:
    """Put a file on the index at a stable URL (/packages/NAME) without listing it as a project."""
    _client(index).upload(Path(path), artifact=True)
    print(f"{_client(index).url}/packages/{Path(path).name}")


# --- sources ---------------------------------------------------------------------------------------
@task(
    help={
        "name": "recipe whose pinned source to fetch",
        "profile": "profile giving the version (default: the profile pinning NAME, triton-25.04 first)",
        "from_": "a local git checkout, directory or source archive to pack instead of cloning upstream",
        "out": "directory to write <name>-<version>-src.tar.gz to",
        "sources": "where the sub-sources' archives are taken from first (default $JETWHEEL_SOURCES)",
        "index": "index URL: sub-source archives not in the sources directory are taken from it",
    }
)
@clean_errors
def fetch(
    c: Context, name: str, profile: str = "", from_: str = "", out: str = ".", sources: str = "", index: str = ""
) -> None:
    """Make the reproducible source archive of NAME's pinned source (submodules included), and copy
    its sub-sources' pinned archives beside it; print each path, sha256 and commit."""
    from .source_fetch import local_sources_dir
    from .workflow import source_archive, sub_archives

    archive = source_archive(name, profile, Path(out), Path(from_) if from_ else None)
    print(archive.path)
    print(f"sha256 {archive.sha256}")
    if archive.commit:
        print(f"commit {archive.commit}")
    local = Path(sources) if sources else local_sources_dir()
    for sub in sub_archives(name, profile, Path(out), local, _client(index) if index else None):
        print(f"{sub.path}\nsha256 {sub.sha256}\ncommit {sub.commit}")


@task(help={"path": "a source archive made by inv sources.fetch", "index": "index URL"})
@clean_errors
def upload(c: Context, path: str, index: str = "") -> None:
    """Put a source archive on the index, where builds look for it before upstream."""
    from .digest import sha256_file

    client = _client(index)
    client.upload(Path(path), artifact=True)
    print(f"{client.url}/packages/{Path(path).name}  sha256 {sha256_file(Path(path))}")


# --- triton ----------------------------------------------------------------------------------------
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
    from .recipe import load_profile
    from .triton import requirements as make

    text = make(load_profile(profile), _client(index_url) if index_url else None, require_hashes)
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
    from .workflow import triton_command

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
    from .recipe import load_profile
    from .triton import check as run_check
    from .triton import smoke_check
    from .verify.report import render

    if not index_url and not image:
        raise Exit(
            "jetwheel: error: give --index-url (check the index) or --image (smoke-test an image)", code=ExitCode.USAGE
        )
    prof, passed = load_profile(profile), True
    if index_url:
        report = run_check(prof, _client(index_url), Path(policy) if policy else None)
        print(_dumps(report.to_json()) if json else render([report]))
        passed = report.passed
    if image:
        outcomes = smoke_check(prof, image, gpu, engine)
        print("\n".join(o.line() for o in outcomes))
        passed = passed and all(o.ok for o in outcomes)
    if not passed:
        raise Exit(code=ExitCode.CHECK_FAILED)


@task(
    help={
        "requirements": "requirements file (-r)",
        "platform": "target platform tag, e.g. linux_aarch64",
        "python_version": "target Python, e.g. 3.12",
        "glibc": "target glibc (default 2.35: JetPack 6)",
        "index": "the index (it must have upstream fallback on while mirroring)",
    }
)
@clean_errors
def mirror(
    c: Context,
    requirements: str,
    platform: str = "linux_aarch64",
    python_version: str = "3.12",
    glibc: str = "2.35",
    index: str = "",
) -> None:
    """Pull the dependencies jetwheel does not build into the store, for an air-gapped LAN."""
    from .workflow import mirror_requirements

    added = mirror_requirements(_client(index), Path(requirements), platform, python_version, glibc)
    print(f"mirrored {len(added)} files" + "".join(f"\n  {f}" for f in added))


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
    from .runners.baseimage import ensure_base_image
    from .runners.emulation import ensure_emulation

    print(f"binfmt: {ensure_emulation(arch)}")
    print(f"image: {ensure_base_image(image, arch, engine)}")


# --- CUDA toolchain (x86_64 hosts) ------------------------------------------------------------------
@task(help={"profile": "profile naming the image and its Python (python_exe)", "engine": "podman or docker"})
@clean_errors
def cuda_setup(c: Context, profile: str = "x86-cuda12", engine: str = "podman") -> None:
    """Build the CUDA 12.4 toolchain image (Debian trixie's nvidia-cuda-toolkit) that compiles a
    profile's device code on an x86_64 host, with the profile's Python copied in from this host."""
    from .recipe import load_profile
    from .runners.cudaimage import ensure_cuda_image

    prof = load_profile(profile)
    print(ensure_cuda_image(prof.python_exe, prof.image, engine))


cuda_ns = Collection("cuda")
cuda_ns.add_task(cuda_setup, name="setup")


# --- cache ------------------------------------------------------------------------------------------
_CACHE_HELP = {
    "runner": "local (the directory JETWHEEL_CCACHE_DIR, default ~/.cache/jetwheel/ccache) or docker "
    "(the engine's volume JETWHEEL_CCACHE_VOLUME, default jetwheel-ccache)",
    "engine": "podman or docker",
    "connection": "remote engine: podman connection or docker context",
    "profile": "profile whose image runs ccache (--runner docker)",
}


def _ccache(runner: str, engine: str, connection: str, profile: str, args: str) -> str:
    from .recipe import load_profile
    from .runners import make_runner
    from .runners.ccache import CompilerCache, run_ccache

    the_runner = make_runner(runner, engine, connection)
    image = load_profile(profile).image if runner == "docker" else "host"
    return run_ccache(the_runner.probe_argv(image), CompilerCache.from_env(), args)


@task(help=_CACHE_HELP)
@clean_errors
def stats(c: Context, runner: str = "local", engine: str = "", connection: str = "", profile: str = "mini") -> None:
    """Show the compiler cache's size, limit and hits (JETWHEEL_CCACHE_SIZE sets the limit)."""
    print(_ccache(runner, engine, connection, profile, "--show-stats --verbose"))


@task(help=_CACHE_HELP)
@clean_errors
def clear(c: Context, runner: str = "local", engine: str = "", connection: str = "", profile: str = "mini") -> None:
    """Empty the compiler cache (a step's work directory kept for resuming is not touched)."""
    _ccache(runner, engine, connection, profile, "--clear")
    print("compiler cache cleared")


# --- the runtime the wheels meet (jetwheel/runtime.py) ---------------------------------------------
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
    from .runtime import default_policy_path, policy_from_image
    from .verify.policy import save

    policy = policy_from_image(image, engine)
    path = Path(out) if out else default_policy_path(image)
    save(policy, path)
    counts = policy.counts()
    print(
        f"{path}: {counts['names']} library names, {counts['files']} files, {counts['symbols']} exported symbols "
        f"({policy.machine}, {policy.sources[0]})"
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
    import tempfile

    from .recipe import load_profile
    from .runtimetar import make, stack_wheels

    prof = load_profile(profile)
    client = _client(index) if index or upload else None
    path = Path(out or (prof.triton.nvpl_slim if prof.triton and prof.triton.nvpl_slim else "runtime.tar"))
    with tempfile.TemporaryDirectory(prefix="jetwheel-tarball-") as tmp:
        wheels = stack_wheels(paths, prof, client, Path(tmp))
        members, sha = make(builder, Path(policy), wheels, prof.target(), path, engine)
    for m in members:
        print(f"  lib/{m.name}  ({m.package}: {m.origin})")
    print(f"{path}  sha256 {sha}")
    if upload and client is not None:
        client.upload(path, artifact=True)
        print(f"{client.url}/packages/{path.name}")


policy_ns = Collection("policy", from_image)
runtime_ns = Collection("runtime", tarball)


# --- doctor (issue 20): examine an installed environment; logic in jetwheel/doctor/ ---
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
    from .doctor import report, run

    if profile:
        from .recipe import load_profile

        target = load_profile(profile).target()
        arch, driver = arch or target.cuda_arch, driver or target.cuda
    root = Path(facts) if facts else None
    try:
        if image:
            doc = run.image(image, engine, image_python, arch, driver, root)
        elif python:
            doc = run.python(python, arch, driver, root)
        else:
            doc = run.here(arch, driver, root)
    except run.CannotCheck as e:
        raise Exit(f"jetwheel: could not check: {e}", code=report.UNCHECKED) from None
    found = report.lines(doc)
    if json:
        print(_dumps({"lines": [vars(x) for x in found], "scan": doc}))
    else:
        print("\n".join(x.render() for x in found) or "ok: nothing broken")
    if code := report.exit_code(found):
        raise Exit(code=code)


index_ns = Collection("index", serve, export, mirror, yank, adduser, token, check_profiles, upload_artifact)
triton_ns = Collection("triton", requirements, command, check)
podman_ns = Collection("podman", base_image)
aarch64_ns = Collection("aarch64", setup)
sources_ns = Collection("sources", fetch, upload)
cache_ns = Collection("cache", stats, clear)
namespace = Collection(
    build_wheel,
    verify,
    doctor,
    demo,
    status,
    index_ns,
    podman_ns,
    triton_ns,
    aarch64_ns,
    sources_ns,
    cache_ns,
    policy_ns,
    runtime_ns,
    cuda_ns,
)


class Door(Program):
    """Invoke's Program whose argument errors exit with ExitCode.USAGE (Invoke's own answer is 1,
    the code of a failed check)."""

    def parse_core(self, argv: list[str] | None) -> None:
        try:
            super().parse_core(argv)
        except ParseError as e:
            raise Exit(str(e), code=ExitCode.USAGE) from None

    def parse_tasks(self) -> None:
        try:
            super().parse_tasks()
        except ParseError as e:
            raise Exit(str(e), code=ExitCode.USAGE) from None


def program() -> Program:
    return Door(namespace=namespace, version=__version__, name="jetwheel", binary="jetwheel")


def main() -> None:
    program().run()
