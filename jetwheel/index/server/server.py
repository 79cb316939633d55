"""Run the index as a process: worker processes sharing the port, TLS, and the limits that keep
idle or slow clients from taking the server down (a header timeout, an idle timeout, a cap on open
connections)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from jetwheel.errors import StoreError
from jetwheel.index.server.app import INDEX, Settings, make_app
from jetwheel.index.server.auth import TOKEN_KEY, token_key
from jetwheel.index.store.store import Store

log = logging.getLogger("jetwheel.index")
BACKLOG = 100
# Stopping: in-flight requests get GRACE seconds, checks in threads are told to end (they stop at
# their next chunk); whatever still runs at STOP_LIMIT is cut off (os._exit) so that the process
# is gone within 5 s of SIGINT/SIGTERM (podman stop waits 10). The store commits by rename, so a
# cut-off upload leaves only a staged file, which the next start cleans.
GRACE = 2.0
STOP_LIMIT = 4.5
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 5\r\nContent-Length: 30\r\n\r\n"
    b"too many connections; retry.\r\n"
)


@dataclass(frozen=True)
class Limits:
    header_timeout: float = 15.0  # a request's headers, from its first byte to the blank line
    idle_timeout: float = 30.0  # a connection with no request in flight
    max_connections: int = 0  # 0: from the open-file limit, leaving room for the files it serves


@dataclass(frozen=True)
class Tls:
    certfile: Path
    keyfile: Path

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ctx.load_cert_chain(self.certfile, self.keyfile)
        except (OSError, ssl.SSLError) as e:
            raise StoreError(f"cannot load TLS certificate {self.certfile} / key {self.keyfile}: {e}") from None
        return ctx


class _Guarded(asyncio.Protocol):
    """aiohttp's protocol for one connection, behind a watch on how long its headers take."""

    def __init__(self, guard: Connections) -> None:
        self.guard = guard
        self.inner: Any = guard.factory()
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.in_header = True  # the next bytes start a request's headers
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if len(self.guard.live) >= self.guard.cap:
            transport.write(BUSY)
            transport.close()
            return
        self.transport = transport
        self.guard.live[transport] = self
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.in_header:
            seen = self.tail + data
            if b"\r\n\r\n" in seen:
                self.in_header, self.tail = False, b""
                self._disarm()
            else:
                self.tail = seen[-3:]
                if self.timer is None:
                    self.timer = asyncio.get_running_loop().call_later(self.guard.limits.header_timeout, self._expired)
        self.inner.data_received(data)

    def request_done(self) -> None:
        self.in_header, self.tail = True, b""
        self._disarm()

    def _expired(self) -> None:
        self.timer = None
        if self.in_header and self.transport is not None:
            self.transport.close()

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def eof_received(self) -> bool | None:
        return bool(self.inner.eof_received())

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.transport is not None:
            self.guard.live.pop(self.transport, None)
            self.inner.connection_lost(exc)


class Connections:
    """The protocol factory: every connection goes through a _Guarded, at most `cap` at a time."""

    def __init__(self, factory: Any, limits: Limits) -> None:
        self.factory, self.limits = factory, limits
        self.cap = limits.max_connections or default_cap()
        self.live: dict[asyncio.BaseTransport, _Guarded] = {}

    def protocol(self) -> _Guarded:
        return _Guarded(self)

    def request_done(self, transport: Any) -> None:
        guarded = self.live.get(transport)
        if guarded is not None:
            guarded.request_done()


def default_cap() -> int:
    """Raise the open-file limit as far as allowed; leave room under it for the files being served."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return max(16, min(soft - 2 * BACKLOG, soft * 3 // 4, 16384))


async def _serve(
    app: web.Application, host: str, port: int, tls: Tls | None, limits: Limits, children: tuple[int, ...] = ()
) -> None:
    runner = web.AppRunner(
        app, access_log=None, keepalive_timeout=limits.idle_timeout, handle_signals=False, shutdown_timeout=GRACE
    )
    await runner.setup()
    guard = Connections(runner.server, limits)
    app[INDEX].guard.on_done = guard.request_done
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # asyncio accepts up to `backlog` connections before it runs anything else (closing those over
    # the cap among them): the cap leaves that much room under the open-file limit
    server = await loop.create_server(
        guard.protocol, host, port, ssl=tls.context() if tls else None, reuse_port=True, backlog=BACKLOG
    )
    try:
        await stop.wait()
    finally:
        cut_off_after(STOP_LIMIT)
        _signal(children, signal.SIGTERM)  # the workers stop at the same time, not after this one
        server.close()
        await runner.cleanup()


def cut_off_after(seconds: float) -> None:
    """End this process in `seconds` whatever it is still doing (a daemon thread: a clean exit
    before then is not delayed)."""

    def cut() -> None:
        log.warning("still stopping after %.1f s: exiting now", seconds)
        logging.shutdown()
        os._exit(0)

    timer = threading.Timer(seconds, cut)
    timer.daemon = True
    timer.start()


def serve(  # params: index.serve's flags for the store, the address, the limits and TLS
    root: Path,
    host: str,
    port: int,
    settings: Settings,
    max_upload: int = 8 << 30,
    workers: int = 1,
    tls: Tls | None = None,
    limits: Limits | None = None,
) -> None:
    """Run the index until interrupted. Cleans what a killed predecessor left first.

    With workers > 1, that many processes share the port (SO_REUSEPORT) and the kernel spreads
    connections over them; the store's lock and generation file keep them consistent."""
    store = Store(root, max_upload=max_upload)
    removed = store.clean()
    if removed:
        log.info("removed %d leftovers of an interrupted run from %s", removed, store.state)
    if tls is not None:
        tls.context()  # a bad certificate is a start-up error, not one per worker
    token_key(store.state_path(TOKEN_KEY))  # made (or a short one refused) once, before the workers read it
    children: list[int] = []
    for _ in range(max(1, workers) - 1):
        pid = os.fork()
        if pid == 0:
            die_with_parent()
            _run(root, host, port, settings, max_upload, tls, limits or Limits())
            os._exit(0)
        children.append(pid)
    try:
        _run(root, host, port, settings, max_upload, tls, limits or Limits(), tuple(children))
    finally:
        _signal(children, signal.SIGTERM)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _signal(pids: tuple[int, ...] | list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def die_with_parent() -> None:
    """A worker must not outlive a parent that died without stopping it (kill -9): die the same way.
    A parent that exits cleanly sends SIGTERM itself."""
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _run(  # params: serve's, less the worker count, and the workers it stops with it
    root: Path,
    host: str,
    port: int,
    settings: Settings,
    max_upload: int,
    tls: Tls | None,
    limits: Limits,
    children: tuple[int, ...] = (),
) -> None:
    store = Store(root, max_upload=max_upload)
    for follower in settings.followers:
        store.on_change(follower)
    app = make_app(store, settings)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(app, host, port, tls, limits, children))
