"""The index's own settings (index/config.toml) and its demo credentials."""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from passlib.apache import HtpasswdFile

from ..errors import StoreError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_HOME = Path(__file__).resolve().parents[2] / "index"


@dataclass(frozen=True)
class IndexConfig:
    home: Path
    root: Path
    host: str
    port: int
    htpasswd: Path | None
    upstream: str
    allow_overwrite: bool

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


def load_config(home: Path = DEFAULT_HOME) -> IndexConfig:
    path = home / "config.toml"
    try:
        # no config file (the index image, a pip install): the defaults below
        data = tomllib.loads(path.read_text()).get("index", {}) if path.exists() else {}
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise StoreError(f"{path}: cannot read index config ({e})") from None
    htpasswd = data.get("htpasswd", "")
    return IndexConfig(
        home=home,
        root=(home / data.get("root", "packages")).resolve(),
        host=data.get("host", "127.0.0.1"),
        port=int(data.get("port", 8080)),
        htpasswd=(home / htpasswd).resolve() if htpasswd else None,
        upstream=data.get("upstream", ""),
        allow_overwrite=bool(data.get("allow_overwrite", False)),
    )


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
    # bcrypt: what pypiserver (through passlib) accepts too
    ht = HtpasswdFile(str(htpasswd), new=not htpasswd.is_file(), default_scheme="bcrypt")
    ht.set_password(user, password)
    ht.save()
