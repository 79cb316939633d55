"""The use cases behind the tasks, composed from the modules that do the work. Returns values or
yields lines; the tasks print them."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from packaging.utils import canonicalize_name

from .errors import BuildError, JetwheelError, PlanError, RecipeError
from .index.client import IndexClient
from .indexwheels import IndexWheels
from .recipe import Profile, load_profile, load_recipes, recipes_root
from .verify import FactCache, Wheel, published_facts, read_wheels, resolve_report, retarget, verify_wheel
from .verify.report import Report

PREFERRED_PROFILE = "triton-25.04"


def profile_for(name: str, profile: str = "", arch: str = "") -> Profile:
    """The named profile, or the one that pins `name` (triton-25.04 first); with `arch`, one whose
    target is that architecture (mini-aarch64 for `--arch aarch64`)."""
    if profile:
        return load_profile(profile)
    names = sorted(p.stem for p in (recipes_root() / "profiles").glob("*.toml"))
    names.sort(key=lambda n: n != PREFERRED_PROFILE)
    for n in names:
        prof = load_profile(n)
        if canonicalize_name(name) in prof.versions and (not arch or prof.arch == arch):
            return prof
    raise PlanError(f"no profile pins {name!r}; pass --profile (known: {', '.join(names)})")


def verify_paths(
    paths: list[str],
    profile: str,
    client: IndexClient | None,
    with_: list[str],
    arch: str,
    resolve: bool,
    platform: str = "",
    facts: str = "",
) -> list[Report]:
    prof = load_profile(profile)
    if not paths and not resolve:
        raise JetwheelError("nothing to verify: give wheel files (or names on the index), or --resolve")
    recipes = load_recipes()
    target = retarget(prof.target(arch), platform)
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


def serve_index(
    root: str,
    host: str,
    port: int,
    htpasswd: str,
    upstream: str | None,
    auth_reads: bool,
    allow_overwrite: bool,
    max_upload_mb: int,
    workers: int = 1,
) -> None:
    from .index.app import Settings, serve
    from .index.config import load_config

    cfg = load_config()
    try:
        owned = frozenset(load_recipes())
    except RecipeError:
        owned = frozenset()
    profiles = {}
    for path in sorted((recipes_root() / "profiles").glob("*.toml")):
        with contextlib.suppress(RecipeError):
            profiles[path.stem] = load_profile(path.stem)
    settings = Settings(
        htpasswd=Path(htpasswd) if htpasswd else cfg.htpasswd if cfg.htpasswd and cfg.htpasswd.is_file() else None,
        auth_reads=auth_reads,
        upstream=cfg.upstream if upstream is None else upstream,
        owned=owned,
        profiles=profiles,
    )
    serve(
        Path(root) if root else cfg.root,
        host or cfg.host,
        port or cfg.port,
        settings,
        allow_overwrite=allow_overwrite or cfg.allow_overwrite,
        max_upload=max_upload_mb << 20,
        workers=workers,
    )


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
