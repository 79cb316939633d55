"""The index app's guard: one middleware that lets a request in only with the role its route needs
(a login, a token, or none for a public route), throttles an address's failed logins, and is the
edge where typed errors become one-line HTTP answers: never a traceback, never a 500.

It also knows the index config, re-read when it changes: the roles it gives users and the names
it says the recipes own count from the next request on.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from jetwheel.errors import (
    Abandoned,
    AlreadyExists,
    DiskFull,
    NotFound,
    RefusedByPolicy,
    StoreError,
    TooLarge,
    Unavailable,
    UploadRejected,
)
from jetwheel.index.server.auth import (
    RANK,
    TOKEN_PREFIX,
    BadCredentials,
    Credentials,
    Users,
    check_token,
    parse_basic,
)
from jetwheel.index.server.config import load_config
from jetwheel.index.server.throttle import SharedThrottle
from jetwheel.index.store.durable import FULL, disk_full
from jetwheel.wire import PUBLIC, READ

log = logging.getLogger("jetwheel.index")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ROLE = web.RequestKey("role", str)  # the role the request was let in with
USER = web.RequestKey("user", str)  # the user it was let in as (the owner of what it creates)
FRONT_HEADER = "X-Jetwheel-Front"  # the nginx front's per-start secret (front.py): its X-Real-IP is true
LOOPBACK = ("127.0.0.1", "::1")
CHALLENGE = {"WWW-Authenticate": 'Basic realm="jetwheel"'}


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """The one form of every refusal: the status and one line of text saying what was wrong."""
    return web.Response(status=status, text=" ".join(str(message).split())[:500] + "\n", headers=headers)


# the store's refusals as HTTP: the one mapping (the store and its validation name no status)
STATUS: Mapping[type[StoreError], int] = {
    UploadRejected: 400,
    RefusedByPolicy: 403,
    NotFound: 404,
    AlreadyExists: 409,
    TooLarge: 413,
    DiskFull: 507,
    Unavailable: 503,
    Abandoned: 499,  # nginx's "client closed request": nobody reads it, the log does
}


def refused(e: UploadRejected | NotFound | Unavailable) -> web.Response:
    """The answer to a refusal of the store's: the status of its kind (a refinement of a kind, that
    kind's), and its one line."""
    return error(next(STATUS[k] for k in type(e).__mro__ if k in STATUS), str(e))


class Guard:
    def __init__(  # params: the users, the token key and how the server was started, each its own
        self,
        users: Users,
        token_key: bytes,
        throttle: SharedThrottle,
        *,
        config: Path | None = None,
        owned: frozenset[str] = frozenset(),
        auth_reads: bool = False,
        front_secret: str = "",
    ) -> None:
        self.users = users
        self.token_key = token_key
        self.config = config
        self.auth_reads = auth_reads
        self.front_secret = front_secret
        self.started_owned = owned
        self.config_owned: frozenset[str] = frozenset()
        self._config_seen: int | None = None
        self.throttle = throttle  # one count for all worker processes (throttle.py)
        # bcrypt runs here, not on the event loop nor in the threads that check uploads; a login
        # remembered or for an unknown user never enters it (Users.recall)
        self.auth_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="jetwheel-auth")
        self.levels: dict[tuple[object, str], str] = {}  # (resource, method) -> who may use it
        # called when a request is done, with its transport (the connection guard re-arms its timer)
        self.on_done: Callable[[Any], None] = lambda transport: None

    def owned(self) -> frozenset[str]:
        """The names the recipes own: given at the start, and listed in the config."""
        return self.started_owned | self.config_owned

    def _reread_config(self) -> None:
        """A role changed in the config counts from the next request on (one stat per request)."""
        if self.config is None:
            return
        try:
            seen = self.config.stat().st_mtime_ns
        except OSError:
            seen = 0
        if seen == self._config_seen:
            return
        try:
            cfg = load_config(self.config)
        except StoreError as e:  # half-edited: keep what was read last, and try again next time
            log.warning("%s", e)
            return
        self._config_seen = seen
        self.users.roles = dict(cfg.roles)
        self.config_owned = cfg.owned

    def client_address(self, request: web.Request) -> str:
        """The client's address: the peer's, or the one our own nginx front names (X-Real-IP from
        its $remote_addr) when the request comes from loopback with the front's per-start secret."""
        peer = request.remote or "unknown"
        if self.front_secret and peer in LOOPBACK:
            told = request.headers.get(FRONT_HEADER, "")
            if hmac.compare_digest(told.encode(), self.front_secret.encode()):
                return request.headers.get("X-Real-IP", peer)
        return peer

    def _token_role(self, token: str) -> tuple[str, str] | None:
        """The user and role of a valid token: never more than its user may do now; None once the
        user is gone or their entry is not the one the token was issued for (removed and re-added)."""
        found = check_token(self.token_key, token, time.time())
        if found is None or self.users.stamp(found.user) != found.stamp:
            return None
        now = self.users.current_role(found.user)
        if now is None:
            return None
        return found.user, min(found.role, now, key=RANK.__getitem__)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            method = "GET" if request.method == "HEAD" else request.method
            level = self.levels.get((request.match_info.route.resource, method), READ)
            denied = await self._authorize(request, level)
            if denied is not None:
                return denied
            return await handler(request)
        except BadCredentials as e:
            return error(400, str(e))
        except (UploadRejected, NotFound, Unavailable) as e:
            return refused(e)
        except OSError as e:
            if e.errno in FULL:
                return refused(disk_full(e))
            if e.errno == errno.ENAMETOOLONG:
                return error(400, "name too long")
            raise
        finally:
            self.on_done(request.transport)

    async def _authorize(self, request: web.Request, level: str) -> web.StreamResponse | None:
        if level == PUBLIC or (level == READ and not self.auth_reads):
            return None
        if level != READ and not self.users.enabled:
            return error(403, "uploads are disabled: start the index with --htpasswd FILE")
        self._reread_config()
        address = self.client_address(request)
        now = time.time()
        wait = self.throttle.wait(address, now)
        if wait > 0:
            return error(429, "too many failed logins from this address", {"Retry-After": str(math.ceil(wait))})
        creds = parse_basic(request.headers.get("Authorization", ""))
        if creds is None:
            return error(401, "authentication required", CHALLENGE)
        who = await self._who(creds)
        if who is None:
            self.throttle.failed(address, now)
            log.warning("failed login for %r from %s", creds.user[:64], address)
            return error(401, "wrong user name, password or token", CHALLENGE)
        user, role = who
        if RANK[role] < RANK[level]:
            return error(403, f"user {creds.user!r} has the role {role}; this needs {level}")
        request[ROLE], request[USER] = role, user
        return None

    async def _who(self, creds: Credentials) -> tuple[str, str] | None:
        """The user and role these credentials log in as; None for a wrong login."""
        loop = asyncio.get_running_loop()
        if creds.password.startswith(TOKEN_PREFIX):
            return await loop.run_in_executor(self.auth_pool, self._token_role, creds.password)
        role, stored = self.users.recall(creds)
        if role is None and stored is None:  # nobody by that name: as long as a check takes, in no thread
            await asyncio.sleep(self.users.unknown_cost)
            return None
        if role is None and stored is not None:
            role = await loop.run_in_executor(self.auth_pool, self.users.verify, creds, stored)
        return None if role is None else (creds.user, role)
