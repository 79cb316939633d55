"""Distributed compiles and the shared cache, on loopback: xgrammar 0.1.16's C++ (its static library,
CMake + ninja, from ../shared/sources) built

1. locally on one core alone (taskset -c 0, ninja -j1, plain g++): the baseline;
2. through sccache-dist: a scheduler and two build servers started as `inv dist.*` starts them, each
   server confined to one core (taskset -c 0 / -c 1); ninja -j4; the client fills the shared Redis
   cache (`inv cache.serve`'s) as the builder role: the first builder;
3. by a second builder (the reader's credential, an empty local cache, the same paths): every unit
   must hit, counted from `sccache --show-stats`;
4. through sccache-dist again with a fresh cache, one server killed part-way: the build must finish;
   the jobs that failed remotely and ran locally are counted.

The objects of (2) are compared with (1)'s: the same exported symbols (nm -g --defined-only), and
whether the bytes are the same. A tiny CUDA unit compiled remotely and locally is compared by its SASS
per kernel (cuobjdump -sass). The machine's load average before and after is printed with the times:
this machine is shared. Results: bench/results/sccache_dist-<date>.txt."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import free_port
from shared_sources import SHARED

from jetwheel.runners.sccache import DistClient, client_config, counts_of
from jetwheel.workflow.dist import plan_scheduler, plan_server, start, wait_for_servers
from jetwheel.workflow.sharedcache import READER, WRITER, CacheServer
from jetwheel.workflow.sharedcache import start as start_redis

TARGET = "xgrammar"  # the static library: every C++ unit of the default build


@dataclass
class Run:
    label: str
    seconds: float
    stats: dict[str, object]


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def sccache_env(root: Path, name: str, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCCACHE_")}
    env.update(
        SCCACHE_DIR=str(root / name / "cache"),
        SCCACHE_SERVER_UDS=str(root / f"{name}.sock"),
        SCCACHE_IDLE_TIMEOUT="0",
        SCCACHE_ERROR_LOG=str(root / f"{name}.err"),
        SCCACHE_LOG="info",
    )
    env.update(extra)
    return env


def build(src: Path, out: Path, jobs: int, env: dict[str, str], launcher: bool, cpus: str = "") -> float:
    """Configure and build xgrammar's library in `out` (made afresh); the build's wall time."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    # upstream's cmake/config.cmake (RelWithDebInfo) without the Python bindings (they need pybind11)
    config = (src / "cmake" / "config.cmake").read_text()
    (out / "config.cmake").write_text(config.replace("BINDINGS ON", "BINDINGS OFF"))
    cmake = ["cmake", "-S", str(src), "-B", str(out), "-G", "Ninja", "-DCMAKE_CXX_COMPILER=/usr/bin/g++"]
    cmake += ["-DCMAKE_EXPORT_COMPILE_COMMANDS=ON"]
    cmake += ["-DCMAKE_CXX_COMPILER_LAUNCHER=sccache"] if launcher else []
    subprocess.run(cmake, check=True, capture_output=True, env=env)
    ninja = ["nice", "-n", "19", "ninja", "-C", str(out), f"-j{jobs}", TARGET]
    started = time.monotonic()
    subprocess.run(["taskset", "-c", cpus, *ninja] if cpus else ninja, check=True, capture_output=True, env=env)
    return time.monotonic() - started


def with_sccache(label: str, root: Path, src: Path, out: Path, jobs: int, extra: dict[str, str]) -> Run:
    env = sccache_env(root, label, extra)
    subprocess.run(["sccache", "--start-server"], check=True, capture_output=True, env=env)
    try:
        seconds = build(src, out, jobs, env, launcher=True)
        stats = json.loads(
            subprocess.run(
                ["sccache", "--show-stats", "--stats-format", "json"], check=True, capture_output=True, env=env
            ).stdout
        )
    finally:
        subprocess.run(["sccache", "--stop-server"], capture_output=True, env=env)
    return Run(label, seconds, stats)


def symbols(out: Path) -> dict[str, tuple[str, bytes]]:
    """Each object's exported (defined, global) symbols, and its bytes."""
    found = {}
    for obj in sorted(out.rglob("*.o")):
        nm = subprocess.run(["nm", "-g", "--defined-only", str(obj)], capture_output=True, text=True, check=True)
        names = "\n".join(sorted(line.split()[-1] for line in nm.stdout.splitlines() if line.strip()))
        found[str(obj.relative_to(out))] = (names, obj.read_bytes())
    return found


def local_twice(out: Path) -> bool:
    """One unit compiled twice here with the build's own command: are the two objects the same bytes?
    (What "byte-identical" between remote and local can mean at all for this build.)"""
    entry = json.loads((out / "compile_commands.json").read_text())[0]
    argv = shlex.split(entry["command"])
    objs = []
    for i in range(2):
        target = out / f"twice-{i}.o"
        at = argv.index("-o")
        subprocess.run(
            ["nice", "-n", "19", *argv[:at], "-o", str(target), *argv[at + 2 :]], check=True, cwd=entry["directory"]
        )
        objs.append(target.read_bytes())
    return objs[0] == objs[1]


def cluster(root: Path, redis_env: dict[str, str]) -> tuple[list[subprocess.Popen[bytes]], dict[str, str]]:
    """A scheduler and two build servers (one core each) on loopback; the client's settings."""
    listen = f"127.0.0.1:{free_port()}"
    servers = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    plan = plan_scheduler(root / "sched", listen, servers)
    procs = [start("scheduler", plan.conf, root / "sched" / "log", nice=19)]
    for i, server in enumerate(servers):
        conf = plan_server(root / f"srv{i}", plan.url, server, plan.servers[server])
        procs.append(start("server", conf, root / f"srv{i}" / "log", cpus=str(i), nice=19))
    wait_for_servers(plan.url, plan.client_token, 2, root / "status")
    conf = root / "client.toml"
    conf.write_text(client_config(DistClient(plan.url, plan.client_token), str(root / "client-toolchains")))
    return procs, {"SCCACHE_CONF": str(conf), **redis_env}


def killed_mid_build(
    root: Path, src: Path, out: Path, jobs: int, dist: dict[str, str], victim: int, after: float
) -> Run:
    """The dist build with a fresh cache and no shared cache; the server `victim` killed `after` s in."""
    plain = {k: v for k, v in dist.items() if not k.startswith("SCCACHE_REDIS")}
    timer = threading.Timer(after, lambda: subprocess.run(["kill", "-9", str(victim)]))
    timer.start()
    try:
        return with_sccache("killed", root, src, out, jobs, plain)
    finally:
        timer.cancel()


def fatbin(obj: Path) -> bytes:
    """The object's .nv_fatbin section: every kernel's SASS (and PTX) the CUDA driver loads."""
    from elftools.elf.elffile import ELFFile

    with obj.open("rb") as f:
        section = ELFFile(f).get_section_by_name(".nv_fatbin")
        return bytes(section.data()) if section is not None else b""


def cuda_sass(root: Path, dist: dict[str, str]) -> tuple[bool, bool]:
    """A small CUDA unit (sm_87) compiled through sccache-dist and locally: (the device code, the
    whole object) byte-identical. (No cuobjdump here: the fatbin is compared whole, which holds the
    SASS of every kernel.)"""
    unit = root / "k.cu"
    unit.write_text(
        "__global__ void scale(float* x, float a) { x[blockIdx.x * blockDim.x + threadIdx.x] *= a; }\n"
        "__global__ void axpy(float* y, const float* x, float a, int n) {\n"
        "  int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) y[i] += a * x[i]; }\n"
    )
    objs = []
    for label, extra in (("cuda-local", {}), ("cuda-dist", {k: v for k, v in dist.items() if "REDIS" not in k})):
        env = sccache_env(root, label, {**extra, "NVCC_CCBIN": "/usr/bin/g++"})
        obj = root / f"{label}.o"
        subprocess.run(["sccache", "--start-server"], check=True, capture_output=True, env=env)
        try:
            nvcc = ["sccache", shutil.which("nvcc") or "nvcc", "-c", str(unit), "-o", str(obj)]
            subprocess.run([*nvcc, "-gencode", "arch=compute_87,code=sm_87"], check=True, env=env)
            stats = subprocess.run(["sccache", "--show-stats", "--stats-format", "json"], capture_output=True, env=env)
            print(label, "remote compiles:", counts_of([json.loads(stats.stdout)]).remote_compiles)
        finally:
            subprocess.run(["sccache", "--stop-server"], capture_output=True, env=env)
        objs.append(obj)
    device = fatbin(objs[0])
    return bool(device) and device == fatbin(objs[1]), objs[0].read_bytes() == objs[1].read_bytes()


def report(
    runs: dict[str, Run], same_symbols: bool, same_bytes: int, units: int, cuda: tuple[bool, bool], loads: list[str]
) -> str:
    base, first, second, killed = (runs[k] for k in ("local-1core", "first", "second", "killed"))
    c1, c2, ck = (counts_of([r.stats]) for r in (first, second, killed))
    return "\n".join(
        [
            f"sccache_dist: xgrammar 0.1.16 libxgrammar ({units} C++ units), loopback, {time.strftime('%Y-%m-%d')}",
            f"load average (1/5/15 min) before and after: {' -> '.join(loads)} (2 cores shared with other work)",
            f"one core alone, plain g++ -j1:             {base.seconds:7.1f} s",
            f"sccache-dist, 2 servers x 1 core, -j4:     {first.seconds:7.1f} s  "
            f"ratio {base.seconds / first.seconds:.2f}x "
            f"(remote compiles {c1.remote_compiles}, failed remotely {c1.failed_remote}, misses {c1.misses})",
            f"remote objects vs local: exported symbols {'identical' if same_symbols else 'DIFFER'} in all {units}; "
            f"byte-identical {same_bytes} of {units}",
            f"second builder (reader, shared Redis):     {second.seconds:7.1f} s  "
            f"= {second.seconds / first.seconds:.2f} "
            f"of the first (hits {c2.hits}, misses {c2.misses}, of {c1.misses} units)",
            f"server killed mid-build:                   {killed.seconds:7.1f} s  finished; jobs failed remotely and "
            f"rerun locally: {ck.failed_remote}; remote compiles {ck.remote_compiles}; misses {ck.misses}",
            f"CUDA unit (sm_87, 2 kernels) via sccache-dist vs local: device code (.nv_fatbin, the SASS of every "
            f"kernel) {'identical' if cuda[0] else 'DIFFERS'}; whole object {'identical' if cuda[1] else 'differs'}",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kill-after", type=float, default=0.3, help="kill a server at this share of the first build")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="jw-sccache-dist-"))
    with tarfile.open(SHARED / "xgrammar-0.1.16.tar.gz") as tar:
        tar.extractall(root, filter="data")
    src, out = root / "xgrammar-0.1.16", root / "build"
    redis = CacheServer(root / "redis", port=free_port(), max_memory="1gb")
    redis_proc, creds = start_redis(redis)
    shared = {"SCCACHE_REDIS_ENDPOINT": redis.endpoint}
    writer = {**shared, "SCCACHE_REDIS_USERNAME": WRITER, "SCCACHE_REDIS_PASSWORD": creds.writer}
    reader = {**shared, "SCCACHE_REDIS_USERNAME": READER, "SCCACHE_REDIS_PASSWORD": creds.reader}
    reader["SCCACHE_REDIS_RW_MODE"] = "READ_ONLY"
    procs, dist = cluster(root, writer)
    loads, runs = [load()], {}
    try:
        cuda = cuda_sass(root, dist)  # first: minutes of builds must not end in a missing tool
        print(f"cuda: device code identical, whole object identical: {cuda}", flush=True)
        plain = {k: v for k, v in os.environ.items() if not k.startswith("SCCACHE_")}
        runs["local-1core"] = Run("local-1core", build(src, out, 1, plain, launcher=False, cpus="0"), {})
        local = symbols(out)
        deterministic = local_twice(out)
        print(f"local one core: {runs['local-1core'].seconds:.1f} s", flush=True)
        runs["first"] = with_sccache("first", root, src, out, 4, dist)
        remote = symbols(out)
        print(f"first (dist): {runs['first'].seconds:.1f} s {counts_of([runs['first'].stats])}", flush=True)
        # the second builder has the first's settings but the reader's credential (an entry made by a
        # distributed compile is keyed apart from one made locally: sccache 0.16 preprocesses differently)
        runs["second"] = with_sccache("second", root, src, out, 4, {**dist, **reader})
        print(f"second (shared hits): {runs['second'].seconds:.1f} s {counts_of([runs['second'].stats])}", flush=True)
        after = args.kill_after * runs["first"].seconds
        runs["killed"] = killed_mid_build(root, src, out, 4, dist, procs[2].pid, after)
        print(f"killed: {runs['killed'].seconds:.1f} s {counts_of([runs['killed'].stats])}", flush=True)
        loads.append(load())
    finally:
        for proc in [*procs, redis_proc]:
            proc.terminate()
            proc.wait()
    same_symbols = local.keys() == remote.keys() and all(local[k][0] == remote[k][0] for k in local)
    same_bytes = sum(1 for k in local if k in remote and local[k][1] == remote[k][1])
    text = report(runs, same_symbols, same_bytes, len(local), cuda, loads)
    text += f"\none unit compiled twice locally (same command): {'same' if deterministic else 'different'} bytes"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"sccache_dist-{time.strftime('%Y-%m-%d')}.txt").write_text(text + "\n")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
