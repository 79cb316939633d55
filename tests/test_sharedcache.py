"""The LAN's shared compiler cache: a real redis-server started as `inv cache.serve` starts it. A
reader's write is refused by the server (so readers cannot poison it), a build with the reader's
credential is unaffected (it compiles, its writes are counted as refused), a builder's compile
fills the cache, and a reader on an empty machine then hits for every compile."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port
from test_sccache import run_in, step

from jetwheel.runners.ccache import CompilerCache
from jetwheel.runners.local import LocalRunner
from jetwheel.runners.sccache import Sccache, SharedCache, read_counts
from jetwheel.workflow.context import settings
from jetwheel.workflow.sccache import checks
from jetwheel.workflow.sharedcache import READER, WRITER, CacheServer, Credentials, start

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None or shutil.which("sccache") is None, reason="needs redis-server and sccache"
)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[tuple[CacheServer, Credentials]]:
    server = CacheServer(tmp_path / "redis", port=free_port(), max_memory="64mb")
    proc, creds = start(server)
    try:
        for _ in range(100):
            if cli(server, WRITER, creds.writer, "PING") == "PONG":
                break
            time.sleep(0.1)
        yield server, creds
    finally:
        proc.terminate()
        proc.wait()


def cli(server: CacheServer, user: str, password: str, *args: str) -> str:
    argv = ["redis-cli", "-p", str(server.port), "--no-auth-warning"]
    argv += ["--user", user, "--pass", password] if user else []
    return subprocess.run([*argv, *args], capture_output=True, text=True).stdout.strip()


def test_only_the_builder_credential_writes_the_shared_cache(redis: tuple[CacheServer, Credentials]) -> None:
    server, creds = redis
    assert cli(server, READER, creds.reader, "SET", "k", "evil").startswith("NOPERM")
    assert cli(server, READER, creds.reader, "FLUSHALL").startswith("NOPERM")
    assert cli(server, "", "", "SET", "k", "evil").startswith("NOAUTH")  # no anonymous user
    assert cli(server, READER, "guess", "SET", "k", "evil").startswith(("WRONGPASS", "NOAUTH"))
    assert cli(server, WRITER, creds.writer, "FLUSHALL").startswith("NOPERM")  # no admin commands either
    assert cli(server, WRITER, creds.writer, "SET", "k", "ok") == "OK"
    assert cli(server, READER, creds.reader, "GET", "k") == "ok"
    # the config names the passwords by their hashes only
    assert creds.writer not in (server.state / "redis.conf").read_text()


def test_preflight_checks_the_builders_credential_on_the_shared_cache(
    tmp_path: Path, redis: tuple[CacheServer, Credentials]
) -> None:
    server, creds = redis
    good = Sccache(directory=tmp_path, shared=SharedCache(server.endpoint, READER, creds.reader))
    assert [(c.ok, c.detail) for c in checks(good, tmp_path)[1:]] == [(True, "+OK +PONG")]
    bad = Sccache(directory=tmp_path, shared=SharedCache(server.endpoint, WRITER, "guess", writer=True))
    [failed] = checks(bad, tmp_path)[1:]
    assert not failed.ok and "WRONGPASS" in failed.detail and "inv cache.serve" in failed.fix


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")
def test_a_reader_build_is_unaffected_and_hits_what_a_builder_wrote(
    tmp_path: Path, redis: tuple[CacheServer, Credentials]
) -> None:
    server, creds = redis

    def runner(name: str, user: str, password: str, writer: bool) -> tuple[LocalRunner, Sccache]:
        shared = SharedCache(server.endpoint, user, password, writer)
        cache = Sccache(directory=tmp_path / name, shared=shared)
        return LocalRunner(ccache=CompilerCache(enabled=False), settings=settings(), sccache=cache), cache

    # a reader that tries to write (told READ_WRITE): the server refuses, the build succeeds
    rogue, rogue_cache = runner("rogue", READER, creds.reader, True)
    run_in(tmp_path / "w", rogue, step())
    tried = read_counts(rogue_cache.directory / "stats")
    assert tried.hits == 0 and tried.write_errors == tried.misses > 0
    assert (tmp_path / "w" / "out" / "kernel.o").is_file()
    assert cli(server, WRITER, creds.writer, "DBSIZE") == "0"

    builder, builder_cache = runner("builder", WRITER, creds.writer, True)
    shutil.rmtree(tmp_path / "w")
    run_in(tmp_path / "w", builder, step())
    wrote = read_counts(builder_cache.directory / "stats")
    assert wrote.write_errors == 0 and int(cli(server, WRITER, creds.writer, "DBSIZE")) >= wrote.misses

    reader, reader_cache = runner("reader", READER, creds.reader, False)
    shutil.rmtree(tmp_path / "w")
    run_in(tmp_path / "w", reader, step())
    hit = read_counts(reader_cache.directory / "stats")
    assert hit.misses == 0 and hit.hits == wrote.misses
