"""Who may do what on the index: users (htpasswd, bcrypt) with roles, expiring read-only tokens,
and a per-address throttle on failed logins.

Roles are ordered: read < upload < builder < admin. Uploading needs `upload`; the names the recipes
own, cache keys and the facts other machines' verifies trust need `builder`; yank, delete and
overwrite need `admin`. A user the htpasswd file knows and the config gives no role has `upload`.

Tokens name their user and carry the user's stamp (a digest of the user's htpasswd entry, whose
bcrypt salt is new each time a password is set): one is worth no more than what that user may do
now, nothing once the user is gone, and nothing after the user is removed and added again or the
password changes (a new entry, a new stamp). No token is minted for a name that is not a user.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
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

from jetwheel.errors import StoreError
from jetwheel.index.store.durable import create_once
from jetwheel.wire import ADMIN, BUILDER, PUBLIC, READ, UPLOAD

RANK = {PUBLIC: 0, READ: 1, UPLOAD: 2, BUILDER: 3, ADMIN: 4}
ROLES = (READ, UPLOAD, BUILDER, ADMIN)
TOKEN_PREFIX = "jw3."  # jw2 tokens carried no stamp: they are refused
KEY_BYTES = 32  # the signing key; a shorter one (an empty file a full disk left) is refused
MAX_TOKEN_DAYS = 366
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
class BadKey(StoreError):
    """The token key on disk cannot sign anything safely (empty or short)."""


TOKEN_KEY = "token.key"


def token_key(path: Path) -> bytes:
    """The index's secret for signing tokens, created on first use (mode 0600) at `path`, in the
    store's state directory (`Store.state_path(TOKEN_KEY)`).

    Created whole or not at all: the key is written and synced under a temporary name, then linked
    to its name (link fails if another worker got there first: both then read the winner's key).
    A short key on disk is refused, never used: a token signed with an empty key is anyone's."""
    if not path.exists():
        create_once(path, secrets.token_bytes(KEY_BYTES))
    key = path.read_bytes()
    if len(key) < KEY_BYTES:
        raise BadKey(f"{path} holds {len(key)} bytes, fewer than {KEY_BYTES}: remove it and restart to make a new key")
    return key


@dataclass(frozen=True)
class Token:
    user: str
    role: str
    stamp: str  # the user's stamp when the token was issued (Users.stamp)


def issue_token(key: bytes, expires_at: int, user: str, stamp: str, role: str = READ) -> str:
    """A token that grants `user` at most `role` until `expires_at` (Unix time), while the user's
    stamp is `stamp` (Users.stamp). Stateless: signed."""
    if not USER_NAME.fullmatch(user):
        raise StoreError(f"invalid user name {user!r}")
    if not re.fullmatch(r"[A-Za-z0-9_-]{8,64}", stamp):
        raise StoreError(f"no token for {user!r} without the user's stamp")
    body = f"{check_role(role)}.{_b64(user.encode())}.{expires_at}.{stamp}"
    return TOKEN_PREFIX + body + "." + _sign(key, body)


def check_token(key: bytes, token: str, now: float) -> Token | None:
    """The user, role and stamp of a validly signed, unexpired token; None otherwise (also for any
    garbage). Whether the stamp is still the user's is the caller's check."""
    role, user, expires, stamp, sig = [*token[len(TOKEN_PREFIX) :].split("."), "", "", "", ""][:5]
    body = f"{role}.{user}.{expires}.{stamp}"
    if role not in ROLES or not expires.isdigit() or not hmac.compare_digest(sig.encode(), _sign(key, body).encode()):
        return None
    try:
        name = base64.urlsafe_b64decode(user + "=" * (-len(user) % 4)).decode()
    except (binascii.Error, ValueError):
        return None
    return Token(name, role, stamp) if int(expires) > now else None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _sign(key: bytes, body: str) -> str:
    return _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())


# -- users -------------------------------------------------------------------------------------------
class Users:
    """Password checks against the htpasswd file. Slow on purpose (bcrypt): `verify` runs in a thread.

    A login is looked up first (`recall`, cheap enough for the event loop): one verified a moment
    ago is remembered (bounded), so a client sending its credentials with every request does not pay
    bcrypt each time, and never waits behind others' bcrypt. An unknown user costs no bcrypt at all:
    its answer waits `unknown_cost` seconds (the time a known user's check has been taking), so the
    time of an answer does not tell which names exist, and strangers' guesses occupy no thread."""

    REMEMBER = 300.0
    REMEMBERED = 256

    def __init__(self, htpasswd: Path | None, roles: Mapping[str, str]) -> None:
        self.roles = {u: check_role(r) for u, r in roles.items()}
        self._ht: HtpasswdFile | None = None
        self.unknown_cost = 0.0
        if htpasswd is not None:
            if not htpasswd.is_file():
                raise StoreError(f"htpasswd file {htpasswd} does not exist")
            self._ht = HtpasswdFile(str(htpasswd))
            # the scheme add_user writes: one hash costs what one check does
            start = time.monotonic()
            bcrypt.hash(secrets.token_hex(16))
            self.unknown_cost = time.monotonic() - start
        self._lock = threading.Lock()
        self._ok: OrderedDict[tuple[str, bytes], float] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self._ht is not None

    def _reload(self, ht: HtpasswdFile) -> None:
        """Re-read the htpasswd file if it changed: then every remembered login is forgotten
        (a password changed or a user removed counts at once). Call with the lock held."""
        if ht.load_if_changed():
            self._ok.clear()

    def current_role(self, user: str) -> str | None:
        """The role the user has now; None when the htpasswd file no longer knows them."""
        if self._ht is None:
            return None
        with self._lock:
            self._reload(self._ht)
            known = self._ht.get_hash(user) is not None
        return self.roles.get(user, UPLOAD) if known else None

    def stamp(self, user: str) -> str | None:
        """The user's stamp: a digest of their htpasswd entry, new whenever the entry is (the user
        added again, a password set); None when the htpasswd file does not know them."""
        if self._ht is None:
            return None
        with self._lock:
            self._reload(self._ht)
            entry = self._ht.get_hash(user)
        if entry is None:
            return None
        raw = entry if isinstance(entry, bytes) else str(entry).encode()
        return _b64(hashlib.sha256(b"jetwheel-token-stamp\0" + raw).digest())[:22]

    def _key(self, creds: Credentials) -> tuple[str, bytes]:
        return creds.user, hashlib.sha256(creds.password.encode()).digest()

    def recall(self, creds: Credentials) -> tuple[str | None, str | None]:
        """(role, None) for a login verified a moment ago; (None, stored hash) for a known user
        whose password must be checked (`verify`); (None, None) for a user nobody knows."""
        if self._ht is None:
            return None, None
        with self._lock:
            self._reload(self._ht)
            until = self._ok.get(self._key(creds))
            stored = self._ht.get_hash(creds.user)
        if until is not None and until > time.monotonic() and stored is not None:
            return self.roles.get(creds.user, UPLOAD), None
        return None, None if stored is None else stored.decode() if isinstance(stored, bytes) else str(stored)

    def verify(self, creds: Credentials, stored: str) -> str | None:
        """bcrypt: the role of a user whose password matches `stored`; None otherwise."""
        assert self._ht is not None
        start = time.monotonic()
        ok = self._ht.context.verify(creds.password, stored)
        # what an unknown user's answer waits: follows what known users' checks take
        self.unknown_cost = 0.8 * self.unknown_cost + 0.2 * (time.monotonic() - start)
        if not ok:
            return None
        with self._lock:
            key = self._key(creds)
            self._ok[key] = time.monotonic() + self.REMEMBER
            self._ok.move_to_end(key)
            while len(self._ok) > self.REMEMBERED:
                self._ok.popitem(last=False)
        return self.roles.get(creds.user, UPLOAD)

    def role(self, creds: Credentials) -> str | None:
        """The role of a user whose password is right; None otherwise (recall, then verify: in a thread)."""
        role, stored = self.recall(creds)
        if role is not None or stored is None:
            if role is None:
                time.sleep(self.unknown_cost)
            return role
        return self.verify(creds, stored)
