"""Distributed compilation on loopback, bounded: an sccache-dist scheduler and a build server
started as `inv dist.scheduler` / `inv dist.server` start them; a step's C++ and CUDA compiles (nvcc's
passes included) run on the server; a server with a token made for another address is refused by
the scheduler, and so is a client with a wrong token."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_port
from test_sccache import run_in, step

from jetwheel.errors import BuildError
from jetwheel.runners.ccache import CompilerCache
from jetwheel.runners.local import LocalRunner
from jetwheel.runners.sccache import DistClient, Sccache, read_counts
from jetwheel.workflow.context import settings
from jetwheel.workflow.dist import plan_scheduler, plan_server, scheduler_status, start, wait_for_servers
from jetwheel.workflow.sccache import checks

pytestmark = pytest.mark.skipif(
    shutil.which("sccache-dist") is None or shutil.which("bwrap") is None or os.geteuid() != 0,
    reason="needs sccache-dist, bubblewrap and root",
)


@dataclass
class Cluster:
    url: str
    token: str
    servers: list[subprocess.Popen[bytes]]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    listen, server = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    impostor = f"127.0.0.1:{free_port()}"
    plan = plan_scheduler(tmp_path / "sched", listen, [server])
    procs = [start("scheduler", plan.conf, tmp_path / "sched" / "log", nice=19)]
    try:
        conf = plan_server(tmp_path / "srv", plan.url, server, plan.servers[server])
        procs.append(start("server", conf, tmp_path / "srv" / "log", nice=19))
        # a server that holds a real token, but one made for another address
        bad = plan_server(tmp_path / "bad", plan.url, impostor, plan.servers[server])
        procs.append(start("server", bad, tmp_path / "bad" / "log", nice=19))
        wait_for_servers(plan.url, plan.client_token, 1, tmp_path / "status")
        yield Cluster(plan.url, plan.client_token, procs[1:])
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")
def test_compile_jobs_of_a_step_run_on_the_build_server(tmp_path: Path, cluster: Cluster) -> None:
    # only the named server registered: the impostor's token names another address
    assert scheduler_status(cluster.url, cluster.token, tmp_path / "status")["num_servers"] == 1
    cache = Sccache(directory=tmp_path / "sc", dist=DistClient(cluster.url, cluster.token))
    [line] = checks(cache, tmp_path / "status")[1:]  # preflight's
    assert line.ok and line.detail.startswith("1 build servers")
    run_in(tmp_path / "w", LocalRunner(ccache=CompilerCache(enabled=False), settings=settings(), sccache=cache), step())
    counts = read_counts(cache.directory / "stats")
    # g++, and nvcc's passes (cudafe++, cicc, ptxas, the host g++): every compile ran remotely
    assert counts.misses >= 5 and counts.remote_compiles == counts.misses and counts.failed_remote == 0
    assert (tmp_path / "w" / "out" / "kernel.o").is_file()


def test_the_scheduler_refuses_a_client_with_a_wrong_token(tmp_path: Path, cluster: Cluster) -> None:
    # sccache 0.16 fails the compile on the scheduler's 401 rather than compiling here: a builder
    # with a wrong token learns it at its first compile, not after hours of local compiles
    cache = Sccache(directory=tmp_path / "sc", dist=DistClient(cluster.url, "not-the-token"))
    commands = ('g++ -O2 -c "$JW_SRC/unit.cpp" -o "$JW_WORK/out/unit.o"',)
    with pytest.raises(BuildError, match="401"):
        run_in(
            tmp_path / "w",
            LocalRunner(ccache=CompilerCache(enabled=False), settings=settings(), sccache=cache),
            step(commands),
        )
    assert not (tmp_path / "w" / "out" / "unit.o").exists()
