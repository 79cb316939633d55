"""The index's own settings (config.toml in its home directory), its users' roles, and its demo
credentials.

The home directory is ./index when run from a checkout (it has index/config.toml), else the user's
data directory ($XDG_DATA_HOME/jetwheel/index, ~/.local/share/jetwheel/index by default).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name
from passlib.apache import HtpasswdFile

from jetwheel.errors import StoreError
from jetwheel.index.server.auth import USER_NAME, check_role

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG = "config.toml"


def default_home(share: Path | None = None) -> Path:
    """./index in a checkout that has its config, else SHARE/jetwheel/index: `share` is $XDG_DATA_HOME
    from the run's settings (default ~/.local/share)."""
    checkout = Path("index")
    if (checkout / CONFIG).is_file():
        return checkout.resolve()
    return (share or Path.home() / ".local" / "share") / "jetwheel" / "index"


@dataclass(frozen=True)
class IndexConfig:
    home: Path
    root: Path
    host: str
    port: int
    htpasswd: Path | None
    upstream: str
    allow_overwrite: bool
    roles: Mapping[str, str] = field(default_factory=dict)  # user -> read | upload | builder | admin
    owned: frozenset[str] = frozenset()  # names only a builder may publish, besides the recipes' own
    certfile: Path | None = None
    keyfile: Path | None = None
    public_url: str = ""  # the address people and pip use, shown on the pages

    @property
    def scheme(self) -> str:
        return "https" if self.certfile else "http"

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def path(self) -> Path:
        return self.home / CONFIG


def load_config(path: Path | None = None) -> IndexConfig:
    """The config at `path` (default: config.toml in the default home); defaults where it is absent."""
    path = path or default_home() / CONFIG
    home = path.parent.resolve()
    try:
        # no config file (the index image, a pip install): the defaults below
        data = tomllib.loads(path.read_text()).get("index", {}) if path.exists() else {}
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise StoreError(f"{path}: cannot read index config ({e})") from None
    roles = data.get("roles", {})
    if not isinstance(roles, dict):
        raise StoreError(f"{path}: [index.roles] must map user names to read, upload, builder or admin")
    try:
        roles = {str(u): check_role(str(r)) for u, r in roles.items()}
    except StoreError as e:
        raise StoreError(f"{path}: [index.roles]: {e}") from None

    owned = data.get("owned", [])
    if not isinstance(owned, list) or not all(isinstance(n, str) for n in owned):
        raise StoreError(f"{path}: [index] owned must be a list of project names")

    def file(key: str, default: str = "") -> Path | None:
        value = data.get(key, default)
        return (home / value).resolve() if value else None

    return IndexConfig(
        home=home,
        root=(home / data.get("root", "packages")).resolve(),
        host=data.get("host", "127.0.0.1"),
        port=int(data.get("port", 8080)),
        htpasswd=file("htpasswd", "htpasswd"),
        upstream=data.get("upstream", ""),
        allow_overwrite=bool(data.get("allow_overwrite", False)),
        roles=roles,
        owned=frozenset(canonicalize_name(n) for n in owned),
        certfile=file("certfile"),
        keyfile=file("keyfile"),
        public_url=str(data.get("public_url", "")),
    )


def set_role(path: Path, user: str, role: str) -> None:
    """Write `user = "role"` into the config's [index.roles] table, keeping the rest of the file."""
    check_role(role)
    lines = path.read_text().splitlines() if path.exists() else ["[index]"]
    entry = f"{json.dumps(user)} = {json.dumps(role)}"
    try:
        start = lines.index("[index.roles]")
    except ValueError:
        lines += ["", "[index.roles]", entry]
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
        key = re.compile(rf'^\s*("{re.escape(user)}"|{re.escape(user)})\s*=')
        at = next((i for i in range(start + 1, end) if key.match(lines[i])), None)
        if at is None:
            lines.insert(end, entry)
        else:
            lines[at] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    load_config(path)  # what was written must read back


def ensure_user(htpasswd: Path, credentials: Path, user: str = "demo") -> tuple[str, str]:
    """Create the htpasswd file with one generated user if missing; return (user, password)."""
    if credentials.is_file() and htpasswd.is_file():
        u, _, p = credentials.read_text().strip().partition(":")
        return u, p
    password = secrets.token_urlsafe(18)
    add_user(htpasswd, user, password)
    credentials.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(credentials, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{user}:{password}\n")
    return user, password


def add_user(htpasswd: Path, user: str, password: str) -> None:
    if not USER_NAME.fullmatch(user):
        raise StoreError(f"invalid user name {user!r}: letters, digits and . _ @ - (at most 64)")
    # bcrypt: what pypiserver (through passlib) accepts too
    htpasswd.parent.mkdir(parents=True, exist_ok=True)
    ht = HtpasswdFile(str(htpasswd), new=not htpasswd.is_file(), default_scheme="bcrypt")
    ht.set_password(user, password)
    ht.save()
