"""The LAN's shared compiler cache: Debian's redis-server, started by `inv cache.serve`, with two ACL
users and no anonymous access.

Why Redis and not WebDAV on the index's nginx: nginx's WebDAV module authorizes by location and
method with basic-auth files, and sccache's WebDAV backend needs PROPFIND/MKCOL, which Debian's
nginx-light lacks (dav_ext is a separate module); Redis has users with command permissions built in
(ACL, Redis 6+), one package, no module, and sccache speaks it natively. The trust boundary is the
ACL: `builder` may read and write; `reader` may only read (GET and friends; SET, DEL, FLUSH* are
refused by the server, whatever the client is told to do). A shared compile cache can put code into
every wheel: only builders hold the writer's password; every other machine gets the reader's.

The passwords are made once and kept in the state directory, mode 0600; the config names them only
by their SHA-256 (Redis's `#<hash>` form), so the config file can be read without giving them away."""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from jetwheel.errors import RunnerError, UsageError

WRITER = "builder"
READER = "reader"


@dataclass(frozen=True)
class Credentials:
    writer: str  # the builder role's password
    reader: str


@dataclass(frozen=True)
class CacheServer:
    """Where the cache listens and keeps its state; how much memory it may use (least recently
    used entries go first when full)."""

    state: Path
    bind: str = "127.0.0.1"
    port: int = 6379
    max_memory: str = "8gb"

    @property
    def endpoint(self) -> str:
        host = "127.0.0.1" if self.bind in ("0.0.0.0", "*") else self.bind
        return f"redis://{host}:{self.port}"


def credentials(state: Path) -> Credentials:
    """The two passwords, made on the first call and kept (0600) in `state`."""
    path = state / "credentials.json"
    if path.is_file():
        data = json.loads(path.read_text())
        return Credentials(data[WRITER], data[READER])
    state.mkdir(parents=True, exist_ok=True)
    made = Credentials(secrets.token_urlsafe(24), secrets.token_urlsafe(24))
    path.touch(mode=0o600)
    path.write_text(json.dumps({WRITER: made.writer, READER: made.reader}))
    return made


def _hash(password: str) -> str:
    return "#" + hashlib.sha256(password.encode()).hexdigest()


def redis_conf(server: CacheServer, creds: Credentials) -> str:
    """The whole redis.conf: no default user, a writer without admin commands, a reader of keys only."""
    if not server.max_memory[:1].isdigit():
        raise UsageError(f"--max-memory {server.max_memory!r}: give a size such as 8gb")
    return "\n".join(
        [
            f"bind {server.bind}",
            f"port {server.port}",
            "protected-mode no",  # the ACL below is the protection: no user without a password
            "daemonize no",
            f"dir {server.state}",
            "save 900 1",  # the cache survives a restart; losing the last minutes costs only recompiles
            "appendonly no",
            f"maxmemory {server.max_memory}",
            "maxmemory-policy allkeys-lru",
            "user default off",
            f"user {WRITER} on {_hash(creds.writer)} ~* &* +@read +@write +@connection +@keyspace -@dangerous",
            f"user {READER} on {_hash(creds.reader)} ~* +@read +@connection -@write -@dangerous",
            "",
        ]
    )


def write_conf(server: CacheServer) -> tuple[Path, Credentials]:
    creds = credentials(server.state)
    conf = server.state / "redis.conf"
    conf.touch(mode=0o600)
    conf.write_text(redis_conf(server, creds))
    return conf, creds


def start(server: CacheServer) -> tuple[subprocess.Popen[bytes], Credentials]:
    """redis-server in the foreground of a child process (the caller waits on it or stops it)."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RunnerError("redis-server is not installed (apt-get install redis-server)")
    conf, creds = write_conf(server)
    log = open(server.state / "redis.log", "ab")  # noqa: SIM115 - the child keeps it
    return subprocess.Popen([exe, str(conf)], stdout=log, stderr=subprocess.STDOUT), creds


def builder_settings(server: CacheServer, creds: Credentials, writer: bool) -> dict[str, str]:
    """The variables a builder (writer) or any other machine (reader) sets to use this cache."""
    user, password = (WRITER, creds.writer) if writer else (READER, creds.reader)
    env = {
        "JETWHEEL_SCCACHE_REDIS": server.endpoint,
        "JETWHEEL_SCCACHE_REDIS_USER": user,
        "JETWHEEL_SCCACHE_REDIS_PASSWORD": password,
    }
    if writer:
        env["JETWHEEL_SCCACHE_REDIS_WRITER"] = "1"
    return env
