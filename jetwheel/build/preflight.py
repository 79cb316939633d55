"""Check, in minutes, what would otherwise fail hours into a build: for every step of a plan, its
source and patches (preflight_source.py), its build requirements and dependency wheels, the engine,
image, GPU, Python and CUDA it will build with, and the disk, memory and swap its MAX_JOBS needs.

Each check returns a Check; none raises for what it checks. Checks of one step run in parallel
with the other steps' (pip resolutions and container probes are the slow part). The engine is
asked once (runners/probe.py), or not at all when the run probed it already."""

from __future__ import annotations

import sys
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name

from jetwheel.build.check import Check, failures, render
from jetwheel.build.plan import BUILD_TOOLS, Plan
from jetwheel.build.preflight_source import backend_check, patches_check, source_check, sub_checks
from jetwheel.build.preflight_sysroot import sysroot_checks
from jetwheel.errors import RunnerError
from jetwheel.index.client.client import IndexClient
from jetwheel.machine import Machine
from jetwheel.model.profile import Profile
from jetwheel.model.recipe import Recipe
from jetwheel.model.step import BuildStep
from jetwheel.runners import DockerRunner, Runner
from jetwheel.runners.baseimage import image_fix
from jetwheel.runners.probe import BuildFacts, EngineFacts, build_facts, probe
from jetwheel.sources.fetch import Lookup
from jetwheel.verify.fatbin import PTX_ISA_OF_CUDA
from jetwheel.verify.resolve import resolve

# the door (cli.py) takes the checks' rendering from here with the checks
__all__ = ["Check", "Needs", "failures", "preflight", "render"]


@dataclass(frozen=True)
class Needs:
    """What a step needs from the machine beyond its MAX_JOBS' memory."""

    disk_gb: float = 0.0  # free space a step needs where it builds; 0: its recipe's disk_gb
    work_root: Path = field(default_factory=lambda: Path.home() / ".cache" / "jetwheel" / "work")
    sources: Path | None = None  # the engine's first place to look (--sources, $JETWHEEL_SOURCES)


# --- requirements and dependency wheels ------------------------------------------------------------
def deps_check(step: BuildStep, plan: Plan, profile: Profile, client: IndexClient) -> tuple[Check, dict[str, str]]:
    """Each dependency wheel is on the index or built by an earlier step; returns the pins on the
    index and their files (they take part in resolving the build requirements)."""
    earlier = {canonicalize_name(s.name) for s in plan.steps[: plan.steps.index(step)]}
    on_index: dict[str, str] = {}
    missing, later = [], []
    for d in step.deps:
        pin = f"{d}=={profile.pin(d)}"
        filename = client.find_wheel(pin, profile.target().tags())
        if filename:
            on_index[pin] = filename
        elif d in earlier:
            later.append(d)
        else:
            missing.append(pin)
    name = f"{step.name}: dependency wheels"
    if missing:
        return Check(
            name, False, f"not on {client.url}: {', '.join(missing)}", "build them first (inv build-wheel)"
        ), {}
    parts = [
        f"on the index: {', '.join(on_index)}" if on_index else "",
        f"built earlier: {', '.join(later)}" if later else "",
    ]
    return Check(name, True, "; ".join(p for p in parts if p) or "none"), on_index


def deps_cuda_check(
    step: BuildStep, on_index: dict[str, str], client: IndexClient, nvcc: Callable[[str], str]
) -> Check | None:
    """The CUDA the step compiles with is the CUDA its dependency wheels on the index were built
    with (torch for vLLM): same image, or the same nvcc release in the image each was built in."""
    mine = nvcc(step.image)
    for pin, filename in on_index.items():
        info = client.file_info(filename) or {}
        image = str(info.get("provenance", {}).get("image", ""))
        if not image or image == step.image:
            continue
        theirs = nvcc(image)
        if theirs != mine:
            return Check(
                f"{step.name}: CUDA of its dependencies",
                False,
                f"{pin} was built in {image} with CUDA {theirs or 'unknown (image not on the engine)'}, "
                f"{step.name} builds in {step.image} with CUDA {mine or 'none'}",
                f"rebuild {pin.split('==')[0]} in {step.image} (inv build-wheel --force), or build in {image}",
            )
    return Check(f"{step.name}: CUDA of its dependencies", True, f"CUDA {mine} throughout") if on_index else None


def requirements_check(step: BuildStep, recipe: Recipe, profile: Profile, index_url: str, deps: list[str]) -> Check:
    """What the step's `pip install` will ask the index for, resolved for the target."""
    name = f"{step.name}: build requirements"
    # a cibuildwheel step installs only cibuildwheel here; its build requirements resolve in its container
    # what the profile's image provides is not asked of the index (the plan does not install it)
    wanted = [r for r in recipe.requires if not profile.provides(r)]
    reqs = ["cibuildwheel"] if recipe.frontend == "cibuildwheel" else [*BUILD_TOOLS, *wanted, *deps]
    findings, got = resolve(reqs, index_url, profile.target())
    if findings:
        return Check(name, False, findings[0].detail, findings[0].fix)
    return Check(name, True, f"{len(got)} packages resolve for cp{profile.python_version.replace('.', '')}")


# --- engine, image, Python, CUDA, GPU, resources ---------------------------------------------------
def engine_check(
    runner: DockerRunner, images: list[str], facts: EngineFacts | None
) -> tuple[Check, EngineFacts | None]:
    """The engine answers: its facts as the run probed them, or probed now. None when it does not
    answer (nothing that needs it can be checked then)."""
    name = f"engine {' '.join(runner.base())}"
    if facts is None:
        try:
            facts = probe(runner, images)
        except RunnerError as e:
            return Check(
                name, False, f"does not answer ({e})", "start the engine (systemctl start podman.socket / docker)"
            ), None
    return Check(name, True, f"answers: {facts.describe()}"), facts


def image_check(runner: DockerRunner, facts: EngineFacts, image: str) -> Check:
    name = f"image {image}"
    if image in facts.images:
        return Check(name, True, "present")
    return Check(name, False, f"not on the engine {' '.join(runner.base())}", image_fix(image, runner.engine))


def ptx_isa(nvcc: str) -> str:
    """The PTX ISA an nvcc release writes, which a driver of an older CUDA cannot JIT."""
    isa = PTX_ISA_OF_CUDA.get(".".join(nvcc.split(".")[:2]))
    return f"PTX ISA {isa[0]}.{isa[1]}" if isa else "PTX ISA unknown"


def environment_checks(
    image: str, found: BuildFacts, profile: Profile, gpu: bool, cuda_steps: list[str]
) -> list[Check]:
    """Python, nvcc and GPU as the probe saw them, against the profile."""
    where = image  # "host" for the local runners
    if not found.ok:
        return [Check(f"{where}: probe", False, found.error, "run the image by hand to see why it does not start")]
    f = found.facts
    want = profile.python_version
    checks = [
        Check(f"{where}: python", True, f"{profile.python_exe} is {want}")
        if f["python"] == want
        else Check(
            f"{where}: python",
            False,
            f"{profile.python_exe} is {f['python'] or 'missing'}, the profile builds cp{want.replace('.', '')}",
            f"install Python {want} here"
            if image == "host"
            else "build the image with it (docker/builder PYTHON_SOURCE)",
        )
    ]
    if cuda_steps:
        nvcc = f.get("nvcc", "")
        ok = bool(profile.cuda) and nvcc.split(".")[:2] == profile.cuda.split(".")[:2]
        checks.append(
            Check(f"{where}: nvcc", True, f"CUDA {nvcc} ({ptx_isa(nvcc)}) for {', '.join(cuda_steps)}")
            if ok
            else Check(
                f"{where}: nvcc",
                False,
                f"nvcc is {nvcc or 'missing'}{f' ({ptx_isa(nvcc)})' if nvcc else ''}, the profile's CUDA is "
                f"{profile.cuda or 'unset'} ({', '.join(cuda_steps)})",
                "use the JetPack image of the profile's L4T (its /usr/local/cuda); on an x86_64 host, "
                "the CUDA 12.4 image of `inv cuda.setup`",
            )
        )
    if gpu:
        checks.append(
            Check(f"{where}: gpu", True, f"{f['gpu']} visible")
            if f.get("gpu")
            else Check(
                f"{where}: gpu",
                False,
                "--gpu given but no GPU device inside",
                "docker: --runtime nvidia (nvidia-container-toolkit); podman: nvidia-ctk cdi generate",
            )
        )
    return checks


def resource_checks(step: BuildStep, recipe: Recipe, found: BuildFacts, needs: Needs) -> list[Check]:
    """Disk for the work directory; memory and swap against MAX_JOBS (how many jobs fit)."""
    f, out = found.facts, []
    if f.get("disk_kb", "").isdigit():
        free, needed = int(f["disk_kb"]) / 2**20, needs.disk_gb or recipe.disk_gb
        out.append(
            Check(f"{step.name}: disk", True, f"{free:.1f} GB free, {needed:g} GB needed")
            if free >= needed
            else Check(
                f"{step.name}: disk",
                False,
                f"{free:.1f} GB free where it builds, {needed:g} GB needed",
                "free space, or point the work directory / engine storage at a bigger disk",
            )
        )
    if f.get("mem_kb", "").isdigit():
        mem = int(f["mem_kb"]) / 2**20
        if f.get("cgroup_mem", "max").isdigit():  # a container memory limit counts, not the host's RAM
            mem = min(mem, int(f["cgroup_mem"]) / 2**30)
        swap = int(f.get("swap_kb") or 0) / 2**20
        jobs = int(step.env.get("MAX_JOBS", "1"))
        fit = Machine(int(f.get("cores") or 1), mem).max_jobs(recipe.job_memory_gb)
        text = (
            f"MAX_JOBS={jobs} x {recipe.job_memory_gb:g} GB; {mem:.0f} GB RAM, {f'{swap:.0f} GB' if swap else '0'} "
            f"swap: {fit} jobs fit"
        )
        out.append(
            Check(f"{step.name}: memory", True, text)
            if jobs <= fit
            else Check(f"{step.name}: memory", False, text, f"pass --memory-gb {mem:.0f} (MAX_JOBS={fit}), or add swap")
        )
    return out


def _python(profile: Profile, image: str) -> str:
    """The interpreter a step's venv is made with: this one for a "current" profile on the host."""
    return sys.executable if profile.python == "current" and image == "host" else profile.python_exe


def preflight(  # params: the plan's parts as the engine will run them, and what is known of its engine
    plan: Plan,
    recipes: dict[str, Recipe],
    profile: Profile,
    runner: Runner,
    client: IndexClient,
    needs: Needs = Needs(),
    gpu: bool = False,
    facts: EngineFacts | None = None,
) -> list[Check]:
    """Every check for every step of the plan, in plan order; steps run concurrently. `facts`: the
    docker runner's engine as the run probed it already (schedule.connect), so it is not asked again."""
    docker = runner if isinstance(runner, DockerRunner) else None
    images = sorted({s.image for s in plan.steps})
    head: list[Check] = []
    if docker is not None:
        engine, facts = engine_check(docker, [i for i in images if i != "host"], facts)
        head.append(engine)
        if facts is None:  # nothing that needs the engine can be checked
            return head + _step_checks(plan, recipes, profile, client, {}, needs, None)

    def argv(image: str) -> list[str]:
        # a step planned for the host (cibuildwheel starts its own containers) is probed here
        return ["bash", "-c"] if image == "host" or docker is None else docker.probe_argv(image)

    probes: dict[str, BuildFacts] = {}
    for image in images:
        if docker is not None and facts is not None and image != "host":
            head.append(image_check(docker, facts, image))
            if not head[-1].ok:
                continue
        where = str(needs.work_root) if image == "host" else "/jw"
        probes[image] = build_facts(argv(image), _python(profile, image), where)
        cuda_steps = [s.name for s in plan.steps if s.image == image and recipes[canonicalize_name(s.name)].cuda]
        head += environment_checks(image, probes[image], profile, gpu and image != "host", cuda_steps)
        if profile.provided and image != "host":  # a sysroot image: what a cross CUDA build needs in it
            head += sysroot_checks(image, argv(image))
    return head + _step_checks(plan, recipes, profile, client, probes, needs, argv if docker else None)


def _step_checks(  # params: preflight's, less the runner, plus the probes it made
    plan: Plan,
    recipes: dict[str, Recipe],
    profile: Profile,
    client: IndexClient,
    probes: dict[str, BuildFacts],
    needs: Needs,
    probe_argv: Callable[[str], list[str]] | None,
) -> list[Check]:
    lock = threading.Lock()
    lookup = Lookup(needs.sources, client)

    def nvcc(image: str) -> str:
        """nvcc's release in an image (probed once; the plan's images are probed already)."""
        with lock:
            if image not in probes and probe_argv is not None:
                probes[image] = build_facts(probe_argv(image), "true", "/")
            return probes[image].facts.get("nvcc", "") if image in probes else ""

    def one(step: BuildStep) -> list[Check]:
        recipe = recipes[canonicalize_name(step.name)]
        with tempfile.TemporaryDirectory(prefix="jetwheel-preflight-") as scratch:
            src, tree = source_check(step, lookup, Path(scratch))
            checks = [src, patches_check(f"{step.name}: patches", list(recipe.patches), tree and tree / recipe.subdir)]
            checks += sub_checks(step, lookup, Path(scratch))
            if backend := backend_check(step, recipe, tree, profile.provided):
                checks.append(backend)
        deps, on_index = deps_check(step, plan, profile, client)
        checks.append(deps)
        checks.append(requirements_check(step, recipe, profile, client.simple_url, list(on_index)))
        if step.image in probes and probes[step.image].ok:
            checks += resource_checks(step, recipe, probes[step.image], needs)
            if recipe.cuda and (cuda := deps_cuda_check(step, on_index, client, nvcc)):
                checks.append(cuda)
        return checks

    with ThreadPoolExecutor(max_workers=4) as pool:
        return [c for checks in pool.map(one, plan.steps) for c in checks]
