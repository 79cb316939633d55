"""Who may do what on the index: users (htpasswd, bcrypt) with roles, expiring read-only tokens,
and a per-address throttle on failed logins.

Roles are ordered: read < upload < admin. Uploading needs `upload`; yank, delete and overwrite need
`admin`. A user the htpasswd file knows and the config gives no role has `upload`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from passlib.apache import HtpasswdFile
from passlib.hash import bcrypt

from ..errors import StoreError

PUBLIC, READ, UPLOAD, ADMIN = "public", "read", "upload", "admin"
RANK = {PUBLIC: 0, READ: 1, UPLOAD: 2, ADMIN: 3}
ROLES = (READ, UPLOAD, ADMIN)
TOKEN_PREFIX = "jw1."
MAX_PASSWORD = 1024  # bytes; bcrypt reads 72 of them, but a longer one must not be an error
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


class BadCredentials(StoreError):
    """The Authorization header cannot be a login at all (400, not counted as a guess)."""


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str


def parse_basic(header: str) -> Credentials | None:
    """The user and password of a Basic Authorization header; None when there is none."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise BadCredentials("only Basic authorization is supported")
    if len(value) > 4 * MAX_PASSWORD:
        raise BadCredentials(f"credentials too long (a password has at most {MAX_PASSWORD} bytes)")
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, ValueError):
        raise BadCredentials("Basic credentials must be base64 of UTF-8 'user:password'") from None
    if not sep or "\x00" in user or "\x00" in password:
        raise BadCredentials("Basic credentials must be 'user:password' without NUL characters")
    if len(password.encode()) > MAX_PASSWORD or len(user) > 256:
        raise BadCredentials(f"credentials too long (a password has at most {MAX_PASSWORD} bytes)")
    return Credentials(user, password)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise StoreError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    return role


# -- tokens ------------------------------------------------------------------------------------------
def token_key(state: Path) -> bytes:
    """The index's secret for signing tokens, created on first use (mode 0600) in its state dir."""
    path = state / "token.key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(32))
    return path.read_bytes()


def issue_token(key: bytes, expires_at: int, role: str = READ) -> str:
    """A token that grants `role` until `expires_at` (Unix time). Stateless: signed with the key."""
    body = f"{check_role(role)}.{expires_at}"
    return TOKEN_PREFIX + body + "." + _sign(key, body)


def check_token(key: bytes, token: str, now: float) -> str | None:
    """The role a valid, unexpired token grants; None otherwise."""
    role, _, rest = token[len(TOKEN_PREFIX) :].partition(".")
    expires, _, sig = rest.partition(".")
    if role not in ROLES or not expires.isdigit() or not hmac.compare_digest(sig, _sign(key, f"{role}.{expires}")):
        return None
    return role if int(expires) > now else None


def _sign(key: bytes, body: str) -> str:
    return base64.urlsafe_b64encode(hmac.new(key, body.encode(), hashlib.sha256).digest()).decode().rstrip("=")


# -- users -------------------------------------------------------------------------------------------
class Users:
    """Password checks against the htpasswd file. Slow on purpose (bcrypt): call from a thread.

    An unknown user costs one bcrypt verification too, so the time of an answer does not tell which
    names exist. Verified logins are remembered for a while (bounded) so that a client sending its
    credentials with every request does not pay bcrypt each time."""

    REMEMBER = 300.0
    REMEMBERED = 256

    def __init__(self, htpasswd: Path | None, roles: Mapping[str, str]) -> None:
        self.roles = {u: check_role(r) for u, r in roles.items()}
        self._ht: HtpasswdFile | None = None
        if htpasswd is not None:
            if not htpasswd.is_file():
                raise StoreError(f"htpasswd file {htpasswd} does not exist")
            self._ht = HtpasswdFile(str(htpasswd))
            # the scheme add_user writes: an unknown user costs what a known one does
            self._dummy = bcrypt.hash(secrets.token_hex(16))
        self._lock = threading.Lock()
        self._ok: OrderedDict[tuple[str, bytes], float] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self._ht is not None

    def role(self, creds: Credentials) -> str | None:
        """The role of a user whose password is right; None otherwise."""
        if self._ht is None:
            return None
        key = (creds.user, hashlib.sha256(creds.password.encode()).digest())
        now = time.monotonic()
        with self._lock:
            if self._ht.load_if_changed():
                self._ok.clear()
            known = self._ok.get(key)
            stored = self._ht.get_hash(creds.user)
        if known is not None and known > now:
            return self.roles.get(creds.user, UPLOAD)
        if stored is None:
            self._ht.context.verify(creds.password, self._dummy)
            return None
        if not self._ht.context.verify(creds.password, stored):
            return None
        with self._lock:
            self._ok[key] = now + self.REMEMBER
            self._ok.move_to_end(key)
            while len(self._ok) > self.REMEMBERED:
                self._ok.popitem(last=False)
        return self.roles.get(creds.user, UPLOAD)


# -- throttle ----------------------------------------------------------------------------------------
class Throttle:
    """Failed logins per client address: past `limit` within `window` seconds, the address must wait
    until the window ends. Holds at most `clients` addresses (the oldest are forgotten first)."""

    def __init__(self, limit: int = 10, window: float = 60.0, clients: int = 10_000) -> None:
        self.limit, self.window, self.clients = limit, window, clients
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def wait(self, address: str, now: float) -> float:
        """Seconds the address must wait before its next login attempt (0: it may try now)."""
        count, start = self._failures.get(address, (0, now))
        if now >= start + self.window:
            self._failures.pop(address, None)
            return 0.0
        return start + self.window - now if count >= self.limit else 0.0

    def failed(self, address: str, now: float) -> None:
        count, start = self._failures.pop(address, (0, now))
        if now >= start + self.window:
            count, start = 0, now
        self._failures[address] = (count + 1, start)
        while len(self._failures) > self.clients:
            self._failures.popitem(last=False)
