"""`index.serve`: the index server in this process (behind nginx with --nginx), or as a child
process for the length of a block (the demo, tests, benches)."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from jetwheel.errors import JetwheelError, RecipeError
from jetwheel.workflow.context import context
from jetwheel.workflow.profiles import consumed_artifacts, profile_views

if TYPE_CHECKING:
    from jetwheel.index.server.server import Limits


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


def _limits(opts: ServeOptions) -> Limits:
    from jetwheel.index.server.server import Limits

    if not opts.client_timeout:
        return Limits(max_connections=opts.max_connections)
    return Limits(opts.client_timeout, opts.client_timeout, opts.max_connections)


def serve_index(opts: ServeOptions) -> None:
    from jetwheel.index.front import static
    from jetwheel.index.server.app import Settings
    from jetwheel.index.server.config import load_config
    from jetwheel.index.server.server import Tls, serve

    ctx = context()
    cfg = load_config(Path(opts.config) if opts.config else ctx.config_path)
    try:
        owned = frozenset(ctx.recipes)
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
        artifacts=consumed_artifacts(ctx.root),
        allow_overwrite=opts.allow_overwrite or cfg.allow_overwrite,
        profiles=profile_views(ctx.root),
        url=(opts.public_url or cfg.public_url or f"{scheme}://{shown}:{port}").rstrip("/"),
        check_profiles=True,
        followers=(static.follow,),  # the nginx front's tree follows each change (when a front serves)
    )
    store_root = Path(opts.root) if opts.root else cfg.root
    limits = _limits(opts)

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
    from jetwheel.index.front.front import serve_front

    serve_front(store_root, host, port, run_app, opts.max_upload_mb << 20)


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
