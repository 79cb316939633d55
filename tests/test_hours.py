"""Builds that take hours: a compile killed part-way resumes where it stopped, the compiler cache
survives across container runs without changing the cache key or the wheel, and a step killed
for memory is named as such and retried with half the jobs."""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Server, start_server, stop_server
from invoke.program import Program

from jetwheel.build.engine import Event, Options, prepare_work, run_plan
from jetwheel.build.plan import make_plan
from jetwheel.build.progress import CompileProgress, PlainProgress
from jetwheel.cli import namespace
from jetwheel.errors import BuildError, OutOfMemory
from jetwheel.machine import Machine, this_machine
from jetwheel.model.recipe import load_profile, load_recipes
from jetwheel.runners import DockerRunner, LocalRunner
from jetwheel.runners.base import MARK, StepLog, failed
from jetwheel.runners.baseimage import ensure_base_image
from jetwheel.runners.ccache import CompilerCache
from jetwheel.sources.fetch import Lookup
from jetwheel.workflow.context import settings

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
PARTS = 12  # translation units ninja compiles, one at a time
# the containers trust the host's CA (a TLS-inspecting proxy on the way to PyPI)
CA = "/etc/ssl/certs/ca-certificates.crt" if Path("/etc/ssl/certs/ca-certificates.crt").exists() else ""

NINJA_SETUP = f'''
import os, subprocess
from pathlib import Path
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent.resolve()
OUT = HERE / "build" / "ninja"


class NinjaBuild(build_ext):
    """Compiles the parts with ninja in a build directory that outlives an interrupted build."""

    def run(self):
        OUT.mkdir(parents=True, exist_ok=True)
        lines = ["rule cc", "  command = gcc -O2 -fPIC -c $in -o $out && sleep 0.5", "rule ar",
                 "  command = ar rcs $out $in"]
        for i in range({PARTS}):
            src = OUT / f"part{{i}}.c"
            if not src.exists():
                src.write_text(f"int part{{i}}(int x) {{{{ return x + {{i}}; }}}}\\n")
            lines.append(f"build part{{i}}.o: cc part{{i}}.c")
        lines.append("build libparts.a: ar " + " ".join(f"part{{i}}.o" for i in range({PARTS})))
        manifest = "\\n".join(lines) + "\\n"
        if not (OUT / "build.ninja").exists() or (OUT / "build.ninja").read_text() != manifest:
            (OUT / "build.ninja").write_text(manifest)
        subprocess.check_call(["ninja", "-j1"], cwd=OUT)
        super().run()


setup(
    name="mini-ninja",
    version=os.environ["MINI_NINJA_BUILD_VERSION"],
    ext_modules=[Extension("mini_ninja", ["module.c"], extra_objects=[str(OUT / "libparts.a")])],
    cmdclass={{"build_ext": NinjaBuild}},
)
'''

NINJA_MODULE = (
    "#include <Python.h>\n"
    + "".join(f"int part{i}(int);\n" for i in range(PARTS))
    + "static PyObject *total(PyObject *s, PyObject *a) { return PyLong_FromLong(0"
    + "".join(f" + part{i}(0)" for i in range(PARTS))
    + "); }\n"
    'static PyMethodDef m[] = {{"total", total, METH_NOARGS, ""}, {0}};\n'
    'static struct PyModuleDef d = {PyModuleDef_HEAD_INIT, "mini_ninja", 0, -1, m};\n'
    "PyMODINIT_FUNC PyInit_mini_ninja(void) { return PyModule_Create(&d); }\n"
)

NINJA_RECIPE = """[package]
name = "mini-ninja"
summary = "an extension whose parts ninja compiles: a build to kill part-way"

[source]
path = "mini-ninja"

[build]
requires = ["setuptools>=68", "ninja"]
env = { MINI_NINJA_BUILD_VERSION = "{version}" }

[repair]
manylinux = false
reason = "a test wheel"

[verify]
extensions = ["mini_ninja"]
"""


def recipes_with(tmp_path: Path) -> Path:
    root = tmp_path / "recipes"
    shutil.copytree(RECIPES, root, ignore=shutil.ignore_patterns("build", "*.egg-info", "*.so"))
    project = root / "examples" / "mini-ninja"
    project.mkdir()
    (project / "setup.py").write_text(NINJA_SETUP)
    (project / "module.c").write_text(NINJA_MODULE)
    (root / "examples" / "mini-ninja.toml").write_text(NINJA_RECIPE)
    profile = root / "profiles" / "mini.toml"
    profile.write_text(profile.read_text().replace("[versions]\n", '[versions]\nmini-ninja = "0.1.0"\n'))
    return root


def ninja_totals(log: str) -> list[int]:
    return [int(m) for m in re.findall(r"^\[\d+/(\d+)\]", log, re.M)]


def test_a_compile_killed_part_way_resumes_where_it_stopped(server: Server, tmp_path: Path) -> None:
    root = recipes_with(tmp_path)
    recipes, profile = load_recipes(root), load_profile("mini", root)
    plan = make_plan(recipes, profile, "mini-ninja", "local", this_machine())
    options = Options(work_root=tmp_path / "work", log_root=tmp_path / "logs")
    runner = LocalRunner(
        settings=settings(), ccache=CompilerCache(enabled=False)
    )  # what resumes is the build directory
    events: list[Event] = []

    def kill_at_half(e: Event) -> None:
        events.append(e)
        if e.kind == "line" and re.match(rf"\[{PARTS // 2}/", e.message):
            raise KeyboardInterrupt  # as Ctrl-C: the whole build's process group is killed

    with pytest.raises(BuildError, match=r"interrupted; nothing was published \(a rerun resumes from"):
        run_plan(plan, recipes, profile, runner, server.client(), options, kill_at_half)
    first = next((tmp_path / "logs").glob("mini-ninja-*.log")).read_text()
    assert ninja_totals(first)[0] == PARTS + 1 and f"[{PARTS // 2 + 1}/" not in first
    (tmp_path / "logs" / "first.log").write_text(first)
    next(p for p in (tmp_path / "logs").glob("mini-ninja-*.log")).unlink()

    events.clear()
    results = run_plan(plan, recipes, profile, runner, server.client(), options, events.append)
    assert [r.status for r in results] == ["published"]
    assert [e.message for e in events if e.kind == "resume"] == [
        f"continuing the interrupted build in {options.work_root / f'mini-ninja-{plan.steps[0].cache_key[:16]}'}"
    ]
    second = next((tmp_path / "logs").glob("mini-ninja-*.log")).read_text()
    # the venv and installs were not redone, and ninja compiled only what was left
    assert "command 1/" not in second and "command 3/" not in second
    # ninja prints [6/13] as the sixth compile starts: it may or may not have finished when killed
    assert ninja_totals(second)[0] <= PARTS + 2 - PARTS // 2
    assert [p.name for p in (tmp_path / "work").iterdir() if not p.name.startswith(".")] == []  # cleaned on success


def test_a_build_killed_outright_still_resumes(tmp_path: Path) -> None:
    # a session's end or a power cut kills the process with no cleanup run: its work directory
    # must resume all the same (an hours-long vLLM build was once redone from nothing this way)
    root = recipes_with(tmp_path)
    recipes, profile = load_recipes(root), load_profile("mini", root)
    step = make_plan(recipes, profile, "mini-ninja", "local", this_machine()).steps[0]
    work = tmp_path / "work" / "mini-ninja"
    resumed, _ = prepare_work(step, recipes["mini-ninja"], work, Lookup())
    assert not resumed
    (work / "src" / "build").mkdir()
    (work / "src" / "build" / "part0.o").write_text("compiled before the kill")
    # the killed run never returned: the next run prepares the same directory
    resumed, _ = prepare_work(step, recipes["mini-ninja"], work, Lookup())
    assert resumed and (work / "src" / "build" / "part0.o").read_text() == "compiled before the kill"


@pytest.fixture
def volume() -> Iterator[str]:
    name = f"jetwheel-ccache-test-{secrets.token_hex(4)}"
    yield name
    subprocess.run(["podman", "volume", "rm", "--force", name], capture_output=True)


def ccache_stats(image: str, volume: str) -> dict[str, int]:
    done = subprocess.run(
        [
            "podman",
            "run",
            "--rm",
            "-v",
            f"{volume}:/ccache",
            "-e",
            "CCACHE_DIR=/ccache",
            image,
            "ccache",
            "--print-stats",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return {k: int(v) for k, v in (line.split("\t") for line in done.stdout.splitlines())}


def wheel_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


@pytest.mark.slow
def test_compiler_cache_survives_across_container_runs(volume: str, tmp_path: Path) -> None:
    image = ensure_base_image()
    recipes, profile = load_recipes(), load_profile("mini")
    plan = make_plan(recipes, profile, "mini-torch", "docker", this_machine())
    runner = DockerRunner(engine="podman", ca_bundle=CA, ccache=CompilerCache(volume=volume))
    wheels, seen = [], []
    for run in ("cold", "warm"):
        server = start_server(tmp_path / run / "packages")
        try:
            opts = Options(work_root=tmp_path / "work", log_root=tmp_path / "logs", force=True)
            assert [r.status for r in run_plan(plan, recipes, profile, runner, server.client(), opts)] == ["published"]
            wheels.append(next(server.root.glob("*.whl")))
        finally:
            stop_server(server)
        stats = ccache_stats(image, volume)
        seen.append((stats["direct_cache_hit"] + stats["preprocessed_cache_hit"], stats["cache_miss"]))
    # module.cpp compiled in the first container, came from the cache in the second (minitorch.cpp is
    # compiled and linked in one command, which ccache does not cache)
    assert seen[0] == (0, 1) and seen[1] == (1, 1), seen
    # the cache is no input of the step: the same key, with or without it, and the same wheel
    assert (
        make_plan(recipes, profile, "mini-torch", "docker", this_machine()).steps[0].cache_key
        == plan.steps[0].cache_key
    )
    assert wheels[0].name == wheels[1].name and wheel_members(wheels[0]) == wheel_members(wheels[1])


@pytest.mark.slow
def test_a_step_killed_for_memory_is_named_and_retried_with_half_the_jobs(server: Server, tmp_path: Path) -> None:
    ensure_base_image()
    root = tmp_path / "recipes"
    shutil.copytree(RECIPES, root, ignore=shutil.ignore_patterns("build", "*.egg-info", "*.so"))
    recipe = root / "examples" / "mini-torch.toml"
    # a compile whose peak memory grows with MAX_JOBS, as nvcc/cicc's do: 120 MB a job, touched
    hungry = "python3 -c 'import os; b = bytes([1]) * (int(os.environ[\"MAX_JOBS\"]) * 120 * 2**20)'"
    recipe.write_text(recipe.read_text().replace("[build]\n", f"[build]\npre = [{json.dumps(hungry)}]\n"))
    recipes, profile = load_recipes(root), load_profile("mini", root)
    plan = make_plan(recipes, profile, "mini-torch", "docker", Machine(cores=4, memory_gb=64))
    assert plan.steps[0].env["MAX_JOBS"] == "4"
    runner = DockerRunner(engine="podman", ca_bundle=CA, memory="300m", ccache=CompilerCache(enabled=False))
    opts = Options(work_root=tmp_path / "work", log_root=tmp_path / "logs", oom_retry=False)

    with pytest.raises(OutOfMemory, match=r"mini-torch: killed for memory with MAX_JOBS=4; container limit 300m"):
        run_plan(plan, recipes, profile, runner, server.client(), opts)

    events: list[Event] = []
    opts = Options(work_root=tmp_path / "work", log_root=tmp_path / "logs")
    results = run_plan(plan, recipes, profile, runner, server.client(), opts, events.append)
    assert [r.status for r in results] == ["published"]  # 2 jobs x 120 MB fit in 300 MB
    assert [e.message.split(";")[0] for e in events if e.kind == "oom"] == [
        "mini-torch: killed for memory with MAX_JOBS=4"
    ]
    assert any(e.kind == "oom" and "retrying once with MAX_JOBS=2" in e.message for e in events)
    assert isinstance(OutOfMemory("x"), BuildError)


def test_compile_progress_from_ninja_lines_gives_rate_and_eta() -> None:
    p = CompileProgress()
    assert p.feed("[3363/6576] Building CXX object caffe2/CMakeFiles/torch_cpu.dir/x.cpp.o", now=100.0)
    assert not p.feed("/usr/bin/c++ -O2 -c x.cpp", now=101.0)
    p.feed("  [3463/6576] Building CUDA object y.cu.o", now=150.0)  # 100 steps in 50 s; pip -v indents
    assert p.fraction == pytest.approx(3463 / 6576)
    assert p.rate(150.0) == 2.0 and p.eta(150.0) == (6576 - 3463) / 2
    assert p.describe(150.0) == "53% (3463/6576), 2.0/s, ETA 25m56s"
    p.feed("[1/40] Building CXX object z.o", now=200.0)  # resumed: ninja counts what is left
    assert (p.done, p.total, p.rate(200.0)) == (1, 40, 0.0)
    p.feed("[ 45%] Building CXX object a.o", now=210.0)  # CMake's Makefiles
    assert p.describe(210.0).startswith("45%")


def test_setuptools_extensions_are_counted() -> None:
    p = CompileProgress()
    p.feed("building 'vllm._C' extension", now=1.0)
    p.feed("building 'vllm._moe_C' extension", now=2.0)
    assert p.describe(2.0) == "extension 2: vllm._moe_C"


def test_plain_progress_prints_one_line_per_tenth_of_the_compile() -> None:
    out = io.StringIO()
    view = PlainProgress(out)
    view(Event("start", "vllm", 6, 6, "vllm-0.8.1.whl"))
    for i in range(1, 501):
        view(Event("line", "vllm", 6, 6, f"[{i}/500] Building CUDA object k{i}.cu.o"))
    lines = [ln for ln in out.getvalue().splitlines() if " compile " in ln]
    assert [ln.split(" compile ")[1].split("%")[0] for ln in lines] == [str(10 * k) for k in range(11)]


def test_cache_tasks_show_and_clear_the_local_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JETWHEEL_CCACHE_DIR", str(tmp_path / "cc"))
    monkeypatch.setenv("JETWHEEL_CCACHE_SIZE", "3G")
    src = tmp_path / "a.c"
    src.write_text("int f(void) { return 1; }\n")
    for _ in range(2):  # one miss, one hit, through the same masquerade the step script sets up
        subprocess.run(
            ["ccache", "gcc", "-c", str(src), "-o", str(tmp_path / "a.o")],
            check=True,
            env={**os.environ, "CCACHE_DIR": str(tmp_path / "cc")},
        )
    program = Program(namespace=namespace, name="jetwheel", binary="jetwheel")
    program.run(["jetwheel", "cache.stats", "--ccache"], exit=False)
    out = capsys.readouterr().out
    assert f"Cache directory: {tmp_path / 'cc'}" in " ".join(out.split()) and re.search(r"Hits:\s+1 /\s+2", out)
    program.run(["jetwheel", "cache.clear"], exit=False)
    assert capsys.readouterr().out.strip() == "compiler cache cleared"
    program.run(["jetwheel", "cache.stats", "--ccache"], exit=False)
    assert "Cache size (GB): 0.00 / 3.00" in " ".join(capsys.readouterr().out.split())


def test_a_compiler_killed_for_memory_under_pip_is_named(tmp_path: Path) -> None:
    plan = make_plan(load_recipes(), load_profile("mini"), "mini-torch", "local", Machine(cores=6, memory_gb=64))
    log = StepLog(tmp_path / "step.log")
    log.write(f"{MARK}4/7: pip wheel ...")
    log.write("[412/1030] Building CXX object csrc/ops.cpp.o")
    log.write("g++: fatal error: Killed signal terminated program cc1plus")
    for line in ["compilation terminated.", "ninja: build stopped: subcommand failed."] + ["pip noise"] * 12:
        log.write(line)
    err = failed(plan.steps[0], 1, log, memory="64 GB RAM, 0 swap")
    assert isinstance(err, OutOfMemory) and err.jobs == 6
    assert str(err).startswith("mini-torch: killed for memory with MAX_JOBS=6; 64 GB RAM, 0 swap (in command 4/7")
    plain = StepLog(tmp_path / "other.log")
    plain.write("error: ops.cpp:3: expected ';'")
    assert type(failed(plan.steps[0], 1, plain)) is BuildError
