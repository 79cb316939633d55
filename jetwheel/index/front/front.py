"""The index behind nginx: nginx answers the reads (simple pages in HTML or JSON by the Accept
header, files and .metadata, with its own ETags, Range and sendfile) from the tree static.py keeps
rendered; everything else (uploads, the API, the pages for people, a project that is not here, an
Accept header only the app can weigh) goes to the aiohttp app on a loopback port behind it.

`serve_front` runs both, and repairs the tree when the store changed behind the hook's back (a file
copied in by hand), until interrupted or until either process dies."""

from __future__ import annotations

import contextlib
import grp
import logging
import multiprocessing
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from jetwheel.errors import StoreError
from jetwheel.index.front import static
from jetwheel.index.server.guard import FRONT_HEADER
from jetwheel.index.server.server import die_with_parent
from jetwheel.index.store.catalog import Catalog

log = logging.getLogger("jetwheel.index.front")
WORKER_USER = "nobody"

# Accept -> which rendering answers. An empty value hands the request to the app, which weighs
# q-values exactly (pages.negotiate) and answers 406; the fast cases are the clients' usual headers:
# pip and uv put JSON first without a q-value, browsers and curl send text/html or */*.
ACCEPT_MAP = r"""map $http_accept $jetwheel_form {
    default                                                    "";
    ""                                                         v1html;
    "*/*"                                                      v1html;
    "~*application/vnd\.pypi\.simple\.v1\+json\s*(,|$)"        json;
    "~;"                                                       "";
    "~*application/\*"                                         json;
    "~*(application/vnd\.pypi\.simple\.v1\+html|\*/\*|text/\*)" v1html;
    "~*text/html"                                              html;
}
"""

# how both locations that reach the app pass a request on: the real client named, and the secret
# by which the app knows it is its own front that names it
TO_APP = """\
            proxy_pass http://jetwheel_app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header {front_header} "{secret}";"""
TEMP_DIRS = ("body", "proxy", "fastcgi", "uwsgi", "scgi")  # nginx's, under the front's run directory

CONF = """\
# written by jetwheel index.serve --nginx; rewritten at each start
{user}worker_processes auto;
daemon off;
pid {run}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    server_tokens off;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
{accept_map}
    upstream jetwheel_app {{
        server 127.0.0.1:{app_port};
        keepalive 32;
    }}
    server {{
        listen {listen};
        root {tree};
        location ~ "^/simple/(?:[^/]+/)?$" {{
            types {{
                application/vnd.pypi.simple.v1+json json;
                application/vnd.pypi.simple.v1+html v1html;
                text/html html;
            }}
            add_header Vary Accept;
            add_header Cache-Control "max-age=60";
            error_page 418 = @app;
            if ($jetwheel_form = "") {{ return 418; }}
            try_files ${{uri}}index.$jetwheel_form @app;
        }}
        location /packages/ {{
            types {{ }}
            default_type application/octet-stream;
            try_files $uri @app;
        }}
        location / {{
            client_max_body_size {max_body};
            proxy_request_buffering off;
{to_app}
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }}
        location @app {{
{to_app}
        }}
    }}
}}
"""


def nginx_conf(store: Catalog, listen: str, app_port: int, max_upload: int, secret: str) -> Path:
    """Write the front's nginx.conf under the store's state directory (mode 0600: it holds the
    secret by which the app knows its front); returns its path."""
    run = store.state_path("nginx")
    for d in TEMP_DIRS:
        (run / d).mkdir(parents=True, exist_ok=True)
    user = ""
    worker = worker_user(store)
    if worker is not None:
        user = f"user {worker.pw_name} {grp.getgrgid(worker.pw_gid).gr_name};\n"
        for d in TEMP_DIRS:
            os.chown(run / d, worker.pw_uid, worker.pw_gid)
    conf = run / "nginx.conf"
    conf.unlink(missing_ok=True)
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(
            CONF.format(
                user=user,
                to_app=TO_APP.format(front_header=FRONT_HEADER, secret=secret),
                run=run,
                accept_map="\n".join("    " + line for line in ACCEPT_MAP.splitlines()),
                app_port=app_port,
                listen=listen,
                tree=static.tree(store),
                max_body=f"{(max_upload >> 20) + 1}m",
            )
        )
    return conf


def worker_user(store: Catalog) -> pwd.struct_passwd | None:
    """Who nginx's workers run as when the front is started as root (None otherwise): never root.
    The store's owner when that is not root; else nobody, who must be able to reach the tree
    (its files are world-readable; every directory on the way must be searchable by others)."""
    if os.geteuid() != 0:
        return None
    owner = store.root.stat().st_uid
    if owner != 0:
        return pwd.getpwuid(owner)
    for d in (static.tree(store).parent, *static.tree(store).parent.parents):
        if not d.stat().st_mode & 0o001:
            raise StoreError(
                f"--nginx as root: nginx's workers run as {WORKER_USER}, who cannot reach the store "
                f"({d} is not searchable by others); serve as a non-root user, or chmod o+x {d}"
            )
    return pwd.getpwnam(WORKER_USER)


def _loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, alive: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise StoreError(f"{what} exited at start-up")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2):
            return
        time.sleep(0.1)
    raise StoreError(f"{what} did not answer {url} in {timeout:.0f}s")


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM (podman stop) ends the front like Ctrl-C: children stopped


def serve_front(
    root: Path, host: str, port: int, run_app: Callable[[str, int, str], None], max_upload: int, poll: float = 1.0
) -> None:
    """Serve `root` with nginx on host:port in front of `run_app(host, port, secret)` on a loopback
    port; nginx sends `secret` with every request, and the app believes its X-Real-IP for those alone."""
    nginx = shutil.which("nginx")
    if nginx is None:
        raise StoreError("--nginx needs nginx (apt-get install nginx-light)")
    store = Catalog(root)
    with store.lock():
        static.sync(store)
    app_port = _loopback_port()
    listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    secret = secrets.token_urlsafe(32)
    conf = nginx_conf(store, listen, app_port, max_upload, secret)

    def app_main() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        die_with_parent()
        run_app("127.0.0.1", app_port, secret)

    # forked before this process starts any thread; the app forks its own workers
    app = multiprocessing.get_context("fork").Process(target=app_main, name="jetwheel index app")
    proxy: subprocess.Popen[bytes] | None = None
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        app.start()
        _wait(f"http://127.0.0.1:{app_port}/health", app.is_alive, "the index app")
        # -e stderr: unprivileged (the image), nginx cannot open its compiled-in log file
        proxy = subprocess.Popen(
            [nginx, "-e", "stderr", "-c", str(conf), "-p", str(conf.parent)], preexec_fn=die_with_parent
        )
        front = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"
        _wait(f"{front}/health", lambda: proxy is not None and proxy.poll() is None, "nginx")
        log.info("nginx on %s, the app on 127.0.0.1:%d", listen, app_port)
        while app.is_alive() and proxy.poll() is None:
            static.repair(store)
            time.sleep(poll)
        raise StoreError(f"{'the index app' if not app.is_alive() else 'nginx'} stopped; the front stops too")
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proxy is not None and proxy.poll() is None:
            proxy.send_signal(signal.SIGQUIT)  # graceful: transfers in flight finish
            try:
                proxy.wait(10)
            except subprocess.TimeoutExpired:
                proxy.kill()
        if app.is_alive():
            app.terminate()
            app.join(10)
            if app.is_alive():
                app.kill()
        static.stop(store)
