"""The use cases behind the tasks, composed from the modules that do the work. Returns values or
yields lines; the tasks print them."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from .errors import BuildError, JetwheelError, PlanError, RecipeError, StoreError
from .index.client import IndexClient
from .indexwheels import IndexWheels
from .profile import Profile
from .recipe import Recipe, load_profile, load_recipes, recipes_root
from .source_archives import Archive
from .source_fetch import Lookup, make_archive
from .stepsource import StepSource
from .subsources import sub_archive
from .target import Target
from .verify import FactCache, Wheel, published_facts, read_wheels, resolve_report, retarget, verify_wheel
from .verify.policy import apply as apply_policy
from .verify.report import Report

PREFERRED_PROFILE = "triton-25.04"


def profile_for(name: str, profile: str = "", arch: str = "", root: Path | None = None) -> Profile:
    """The named profile, or the one that pins `name` (triton-25.04 first); with `arch`, one whose
    target is that architecture (mini-aarch64 for `--arch aarch64`)."""
    root = root or recipes_root()
    if profile:
        return load_profile(profile, root)
    names = sorted(p.stem for p in (root / "profiles").glob("*.toml"))
    names.sort(key=lambda n: n != PREFERRED_PROFILE)
    for n in names:
        prof = load_profile(n, root)
        if canonicalize_name(name) in prof.versions and (not arch or prof.arch == arch):
            return prof
    raise PlanError(f"no profile pins {name!r}; pass --profile (known: {', '.join(names)})")


def source_archive(name: str, profile: str, out: Path, from_path: Path | None) -> Archive:
    """`inv sources.fetch`: the recipe's pinned source as a reproducible archive in `out`."""
    recipe, spec, pin = _pinned_source(name, profile)
    return make_archive(recipe.name, pin, spec, out, from_path)


def sub_archives(
    name: str, profile: str, out: Path, local_dir: Path | None, client: IndexClient | None
) -> list[Archive]:
    """`inv sources.fetch`: each sub-source's archive in `out`, taken from where a build takes it
    (the source directory, the index, the upstream URL) and checked against its sha256."""
    _recipe, spec, _pin = _pinned_source(name, profile)
    return [sub_archive(sub, out, Lookup(local_dir, client)) for sub in spec.subs]


def _pinned_source(name: str, profile: str) -> tuple[Recipe, StepSource, str]:
    from .plan import source_spec, wheel_version

    recipes = load_recipes()
    recipe = recipes.get(canonicalize_name(name))
    if recipe is None:
        raise PlanError(f"unknown package {name!r}; recipes exist for: {', '.join(sorted(recipes))}")
    prof = profile_for(name, profile)
    pin = prof.pin(name)
    return recipe, source_spec(recipe, wheel_version(recipe, prof), pin), pin


def runtime_target(target: Target, policy: str, runtime_tarball: str) -> Target:
    """The target with the runtime read from its image (`inv policy.from-image`) in place of the
    profile's hand-written table, and the runtime tarball's libraries added to it."""
    from .runtime import runtime_policy

    if not policy:
        if runtime_tarball:
            raise JetwheelError("--runtime-tarball needs --policy: the tarball completes a runtime read from its image")
        return target
    return apply_policy(target, runtime_policy(Path(policy), Path(runtime_tarball) if runtime_tarball else None))


def verify_paths(
    paths: list[str],
    profile: str,
    client: IndexClient | None,
    with_: list[str],
    arch: str,
    resolve: bool,
    platform: str = "",
    facts: str = "",
    policy: str = "",
    runtime_tarball: str = "",
) -> list[Report]:
    prof = load_profile(profile)
    if not paths and not resolve:
        raise JetwheelError("nothing to verify: give wheel files (or names on the index), or --resolve")
    recipes = load_recipes()
    target = runtime_target(retarget(prof.target(arch), platform), policy, runtime_tarball)
    source = IndexWheels(client) if client is not None else None
    cache = FactCache(Path(facts) if facts else None)
    with tempfile.TemporaryDirectory(prefix="jetwheel-verify-") as tmp:
        wanted: list[Path | Wheel] = []  # in the order given: files, or the facts of published wheels
        for p in paths:
            if Path(p).is_file():
                wanted.append(Path(p))
            elif source is not None:
                found = source.find(
                    f"{p}=={prof.pin(p)}" if canonicalize_name(p) in prof.versions else p, target.tags()
                )
                if found is None:
                    raise JetwheelError(f"{p}: no such file, and no wheel for it on {source.url}")
                # the index's facts for that very file, when it has them: no download
                wanted.append(published_facts(found, source, cache, Path(tmp)))
            else:
                raise JetwheelError(f"{p}: no such file (pass --index to verify a name on the index)")
        # every wheel is read once, all in one parallel pass: each is both checked and part of the
        # set the others resolve against
        files = [w for w in wanted if isinstance(w, Path)]
        read = iter(read_wheels([*files, *(Path(w) for w in with_)], cache))
        opened = [w if isinstance(w, Wheel) else next(read) for w in wanted]
        given = [*read, *opened]
        reports = [
            verify_wheel(w, target, recipes.get(w.name), given, source, cache, Path(tmp) / "deps") for w in opened
        ]
        if resolve and client is not None:
            reports.append(resolve_report(prof.top, client.simple_url, target))
    return reports


def profile_views() -> dict[str, Any]:
    """Every profile as the plain data the index's pages show (the server reads no recipes)."""
    from .index.profiles import ProfileView

    views = {}
    for path in sorted((recipes_root() / "profiles").glob("*.toml")):
        with contextlib.suppress(RecipeError):
            p = load_profile(path.stem)
            views[p.name] = ProfileView(
                p.name, p.top, {str(k): v for k, v in p.versions.items()}, p.target(), p.jetpack, p.l4t
            )
    return views


@dataclass(frozen=True)
class ServeOptions:
    """What `inv index.serve` was asked for; empty values fall back to the index config."""

    config: str = ""
    root: str = ""
    host: str = ""
    port: int = 0
    htpasswd: str = ""
    upstream: str | None = None
    auth_reads: bool = False
    allow_overwrite: bool = False
    max_upload_mb: int = 8192
    workers: int = 1
    certfile: str = ""
    keyfile: str = ""
    public_url: str = ""
    max_connections: int = 0
    client_timeout: float = 0.0
    nginx: bool = False  # nginx serves reads from a tree kept rendered; the app takes the rest


def serve_index(opts: ServeOptions) -> None:
    from .index.app import Settings
    from .index.config import load_config
    from .index.server import Limits, Tls, serve

    cfg = load_config(Path(opts.config) if opts.config else None)
    try:
        owned = frozenset(load_recipes())
    except RecipeError:
        owned = frozenset()
    host, port = opts.host or cfg.host, opts.port or cfg.port
    certfile = Path(opts.certfile) if opts.certfile else cfg.certfile
    keyfile = Path(opts.keyfile) if opts.keyfile else cfg.keyfile
    if bool(certfile) != bool(keyfile):
        raise JetwheelError("TLS needs both --certfile and --keyfile")
    tls = Tls(certfile, keyfile) if certfile and keyfile else None
    scheme = "https" if tls else "http"
    shown = socket.getfqdn() if host in ("0.0.0.0", "::") else host
    htpasswd = Path(opts.htpasswd) if opts.htpasswd else cfg.htpasswd
    settings = Settings(
        htpasswd=htpasswd if htpasswd and htpasswd.is_file() else None,
        roles=cfg.roles,
        config=Path(opts.config).resolve() if opts.config else cfg.path,
        auth_reads=opts.auth_reads,
        upstream=cfg.upstream if opts.upstream is None else opts.upstream,
        owned=owned | cfg.owned,
        allow_overwrite=opts.allow_overwrite or cfg.allow_overwrite,
        profiles=profile_views(),
        url=(opts.public_url or cfg.public_url or f"{scheme}://{shown}:{port}").rstrip("/"),
        check_profiles=True,
    )
    store_root = Path(opts.root) if opts.root else cfg.root
    limits = (
        Limits(max_connections=opts.max_connections)
        if not opts.client_timeout
        else Limits(opts.client_timeout, opts.client_timeout, opts.max_connections)
    )

    def run_app(on_host: str, on_port: int, front_secret: str = "") -> None:
        serve(
            store_root,
            on_host,
            on_port,
            dataclasses.replace(settings, front_secret=front_secret),
            max_upload=opts.max_upload_mb << 20,
            workers=opts.workers,
            tls=tls,
            limits=limits,
        )

    if not opts.nginx:
        run_app(host, port)
        return
    if settings.auth_reads:
        raise JetwheelError("--nginx serves reads without a login; drop --auth-reads or serve without --nginx")
    if tls is not None:
        raise JetwheelError("--nginx serves plain HTTP; put TLS in front of it, or serve with TLS without --nginx")
    from .index.front import serve_front

    serve_front(store_root, host, port, run_app, opts.max_upload_mb << 20)


def check_profiles(root: str) -> dict[str, Any]:
    """Check now whether each profile resolves from the index's store, and record it there as the
    server does after a change."""
    from .index import profiles
    from .index.config import load_config
    from .index.store import Store

    cfg = load_config()
    store = Store(Path(root) if root else cfg.root)
    views = profile_views()
    got = asyncio.run(profiles.refresh(store, views))
    if got is None:
        raise StoreError("the index is checking its profiles right now; try again in a minute")
    return {name: vars(c) for name, c in got.items()}


def issue_token(root: str, expires: str, user: str) -> str:
    """A read-only token of `user` for the index's store, valid for `expires` (e.g. 90m, 2h, 7d)."""
    from .index.auth import MAX_TOKEN_DAYS, token_key
    from .index.auth import issue_token as issue
    from .index.config import load_config
    from .index.store import Store

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if not expires or expires[-1] not in units or not expires[:-1].isdigit() or int(expires[:-1]) <= 0:
        raise JetwheelError(f"--expires {expires!r}: a number and a unit (s, m, h, d), e.g. 2h")
    seconds = int(expires[:-1]) * units[expires[-1]]
    if seconds > MAX_TOKEN_DAYS * 86400:
        raise JetwheelError(f"--expires {expires}: at most {MAX_TOKEN_DAYS}d; issue a new token when it runs out")
    store = Store(Path(root) if root else load_config().root)
    return issue(token_key(store.state), int(time.time()) + seconds, user)


def export_index(
    dest: Path, root: str, port: int, bucket: str, endpoint: str, prefix: str, public_read: bool = False
) -> Iterator[str]:
    from .index.config import load_config
    from .index.export import export, upload_to_bucket
    from .index.store import Store

    store = Store(Path(root) if root else load_config().root)
    written = export(store, dest, port)
    yield f"wrote {len(written)} files to {dest} (nginx: include {dest / 'nginx.conf'})"
    if bucket:
        yield f"uploaded {upload_to_bucket(dest, bucket, endpoint, prefix, public_read)} objects to s3://{bucket}/{prefix}"


def triton_command(index_url: str, profile: str, requirements_file: str, pytorch_triton_url: str = "") -> str:
    """The build.py command, with the wheel URL looked up on the index when it is reachable."""
    from .triton import build_command, nvpl_slim_url
    from .triton import pytorch_triton_url as lookup

    prof = load_profile(profile)
    client = IndexClient(index_url)
    if not pytorch_triton_url:
        try:
            pytorch_triton_url = lookup(prof, client)
        except JetwheelError:
            # not reachable from here (the command is often written before the index is up):
            # the URL the index will serve once pytorch-triton is published
            from .plan import wheel_name, wheel_version

            recipe = load_recipes()["pytorch-triton"]
            pytorch_triton_url = f"{client.url}/packages/{wheel_name(recipe, prof, wheel_version(recipe, prof))}"
    cmd = build_command(prof, index_url, pytorch_triton_url, nvpl_slim_url(prof, client), requirements_file)
    return cmd.render()


def mirror_requirements(client: IndexClient, requirements: Path, platform: str, python: str, glibc: str) -> list[str]:
    from .index.mirror import mirror

    if not requirements.is_file():
        raise JetwheelError(f"{requirements}: no such requirements file")
    # owned: what a recipe builds or the store already holds (the index's own rule)
    owned = {str(n) for n in load_recipes()} | set(client.projects())
    return mirror(client, requirements, platform, python, glibc, owned)


def wait_ready(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise JetwheelError(f"the index exited at start-up (code {proc.returncode})")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/health", timeout=2):
            return
        time.sleep(0.1)
    raise JetwheelError(f"the index at {url} did not become ready in {timeout:.0f}s")


@contextlib.contextmanager
def running_index(args: list[str], url: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run `jetwheel index.serve ARGS` as a child process for the duration of the block."""
    proc = subprocess.Popen([sys.executable, "-m", "jetwheel", "index.serve", *args])
    try:
        wait_ready(url, proc)
        yield proc
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()


def run_demo(serve_after: bool = True, runner: str = "local") -> Iterator[str]:
    from .engine import Options, run_plan
    from .index.config import ensure_user, load_config
    from .machine import this_machine
    from .pipcmd import clean_pip_env
    from .plan import make_plan
    from .progress import make_listener
    from .runners import make_runner

    cfg = load_config()
    assert cfg.htpasswd is not None
    cfg.root.mkdir(parents=True, exist_ok=True)
    user, password = ensure_user(cfg.htpasswd, cfg.home / ".state" / "credentials")
    yield f"index: {cfg.url}/simple/  (storage {cfg.root}, uploads as {user!r}, password in index/.state/credentials)"
    with running_index([], cfg.url) as proc:
        client = IndexClient(cfg.url, user, password)
        recipes, profile = load_recipes(), load_profile("mini")
        top = canonicalize_name(profile.top.split("==")[0])
        plan = make_plan(recipes, profile, top, runner, this_machine())
        started = time.monotonic()
        for r in run_plan(plan, recipes, profile, make_runner(runner), client, Options(), make_listener()):
            yield f"{r.status:>9}  {r.wheel}"
        yield f"built the mini stack in {time.monotonic() - started:.1f}s"
        with tempfile.TemporaryDirectory(prefix="jetwheel-demo-venv-") as venv:
            subprocess.run([sys.executable, "-m", "venv", venv], check=True)
            py = os.path.join(venv, "bin", "python")
            install = [
                py,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--index-url",
                client.simple_url,
                profile.top,
            ]
            done = subprocess.run(install, capture_output=True, text=True, env=clean_pip_env())
            if done.returncode != 0:
                raise BuildError(f"installing {profile.top} from the index failed: {done.stderr.strip()[-300:]}")
            probe = (
                "import mini_torch, mini_vision, mini_cuda; "
                "print('mini_vision.boxes(3) =', mini_vision.boxes(3), '| torchvision-like op registered:', "
                "mini_torch.has_op('mini_vision::nms'), '| mini_cuda links', mini_cuda.torch_version())"
            )
            out = subprocess.run([py, "-c", probe], capture_output=True, text=True)
            if out.returncode != 0:
                raise BuildError(f"the installed mini stack failed to import: {out.stderr.strip()[-300:]}")
            yield f"fresh venv: {out.stdout.strip()}"
        yield f"install it anywhere on the LAN:  pip install --index-url {client.simple_url} {profile.top}"
        if serve_after:
            yield "serving; Ctrl-C to stop"
            with contextlib.suppress(KeyboardInterrupt):
                proc.wait()
