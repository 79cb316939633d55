"""Check, in minutes, what would otherwise fail hours into a build: for every step of a plan, its
source and patches, its build requirements and dependency wheels, the engine, image, GPU, Python
and CUDA it will build with, and the disk, memory and swap its MAX_JOBS needs.

Each check returns a Check; none raises for what it checks. Checks of one step run in parallel
with the other steps' (pip resolutions and container probes are the slow part)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .engine import CACHE
from .errors import JetwheelError
from .index.client import IndexClient
from .machine import Machine
from .plan import BUILD_TOOLS, BuildStep, Plan, tree_digest
from .profile import Profile
from .recipe import Recipe
from .runners import DockerRunner, Runner
from .runners.baseimage import image_fix
from .source_archives import unpack_members
from .source_fetch import fetch_source, local_sources_dir, locate
from .stepsource import StepSource, SubSource
from .subsources import pinned_sub, sub_archive
from .verify.fatbin import PTX_ISA_OF_CUDA
from .verify.resolve import resolve

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

PROBE_TIMEOUT = 120  # a container start on a cold engine; an engine that does not answer fails faster
ANSWER_TIMEOUT = 15
GIT_TIMEOUT = 30


@dataclass(frozen=True)
class Check:
    check: str  # what was checked: "vllm: source", "engine", "image jetwheel/builder:r36.4.0-py3.12"
    ok: bool
    detail: str
    fix: str = ""  # what to do about a failure


@dataclass(frozen=True)
class Needs:
    """What a step needs from the machine beyond its MAX_JOBS' memory."""

    disk_gb: float = 20.0  # free space for the work directory (source, env, build tree) and outputs
    work_root: Path = CACHE / "work"
    sources: Path | None = field(default_factory=local_sources_dir)  # the engine's first place to look


@dataclass(frozen=True)
class Probe:
    """What a bash command saw where the runner builds (in the image, or on this host)."""

    ok: bool
    error: str
    facts: dict[str, str]


# One shell command gathers every fact; each line is key=value. $1: the interpreter, $2: a path
# whose free space counts.
PROBE = r"""py="$1"; dir="$2"
echo "python=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)"
nv="$(command -v nvcc || echo "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc")"
echo "nvcc=$("$nv" --version 2>/dev/null | sed -n 's/.*release \([0-9][0-9.]*\).*/\1/p')"
echo "gpu=$(ls /dev/nvidia0 /dev/nvhost-ctrl-gpu /dev/nvgpu/igpu0/ctrl /dev/dri/renderD128 2>/dev/null | head -1)"
echo "mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
echo "swap_kb=$(awk '/^SwapTotal:/ {print $2}' /proc/meminfo)"
echo "cgroup_mem=$(cat /sys/fs/cgroup/memory.max 2>/dev/null)"
echo "cores=$(nproc)"
mkdir -p "$dir" 2>/dev/null
echo "disk_kb=$(df -Pk "$dir" 2>/dev/null | awk 'NR==2 {print $4}')"
echo "ccache=$(command -v ccache)"
"""


def probe(argv: list[str], python: str, path: str, timeout: float = PROBE_TIMEOUT) -> Probe:
    try:
        done = subprocess.run([*argv, PROBE, "probe", python, path], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Probe(False, f"no answer in {timeout:.0f}s", {})
    except OSError as e:
        return Probe(False, str(e), {})
    facts = dict(line.partition("=")[::2] for line in done.stdout.splitlines() if "=" in line)
    if done.returncode != 0 or "python" not in facts:
        return Probe(False, (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1], facts)
    return Probe(True, "", facts)


# --- sources ---------------------------------------------------------------------------------------
def source_check(
    step: BuildStep, client: IndexClient, local_dir: Path | None, scratch: Path
) -> tuple[Check, Path | None]:
    """Reachable where the engine will take it from (local source dir, index, upstream) and matching
    its pin; returns the laid-out tree to try the patches on. A git source that only upstream has is
    checked with ls-remote instead of a clone (torch's takes longer than a whole preflight)."""
    src, name = step.source, f"{step.name}: source"
    if src.kind == "path":
        root = Path(src.path)
        if not root.is_dir():
            return Check(name, False, f"{root} does not exist", "fix the recipe's source.path"), None
        if tree_digest(root) != src.digest:
            return Check(name, False, f"{root} changed since the plan was made", "plan again"), None
        return Check(name, True, f"{root} (tree digest {src.digest[:12]})"), root
    if src.kind == "git" and locate(step.name, step.pin, src, client, local_dir) is None:
        return _git_check(name, src), None
    try:
        got = fetch_source(step.name, step.pin, src, scratch / step.name, client, local_dir)
    except JetwheelError as e:
        return Check(
            name, False, str(e), "fix the recipe's source.sha256, or replace the archive (inv sources.fetch)"
        ), None
    return Check(name, True, f"{got.origin}: sha256 {got.sha256[:12]}... matches the pin"), got.tree


def sub_checks(step: BuildStep, client: IndexClient, local_dir: Path | None, scratch: Path) -> list[Check]:
    """Each sub-source: its archive where the build will take it from, matching its sha256, and its
    patches applying to the files they touch (CUTLASS and flash-attention are thousands of files:
    only those are unpacked)."""
    out = []
    for sub in step.source.subs:
        name = f"{step.name}: sub-source {sub.name}"
        try:
            origin = pinned_sub(sub, client, local_dir)
        except JetwheelError as e:
            fix = "put the pinned archive there (inv sources.fetch, inv sources.upload), or fix the recipe's sha256"
            out.append(Check(name, False, str(e), fix))
            continue
        where = f"{sub.repo} @ {sub.commit[:12]}; ${sub.env}"
        out.append(Check(name, True, f"{origin}: sha256 {sub.sha256[:12]}... matches the pin ({where})"))
        out.append(_sub_patches_check(sub, f"{name} patches", client, local_dir, scratch))
    return out


def _sub_patches_check(sub: SubSource, name: str, client: IndexClient, local_dir: Path | None, scratch: Path) -> Check:
    if not sub.patches:
        return patches_check(name, [], None)
    local = local_dir / sub.archive if local_dir is not None else None
    try:
        archive = local if local is not None and local.is_file() else None
        archive = archive or sub_archive(sub, scratch / "archives", client, local_dir).path
        tree = unpack_members(archive, _patched_files(sub.patches), scratch / "sub" / sub.name)
    except JetwheelError as e:
        return Check(name, False, f"not tried: {e}", "fix the archive first")
    return patches_check(name, [Path(p) for p in sub.patches], tree)


def _patched_files(patches: Iterable[str]) -> set[str]:
    """The files (below the tree's top) that -p1 patches name."""
    names = set()
    for p in patches:
        for line in Path(p).read_text(errors="replace").splitlines():
            if line.startswith(("--- ", "+++ ")):
                path = line[4:].split("\t")[0].strip()
                if path != "/dev/null":
                    names.add(path.split("/", 1)[1] if "/" in path else path)
    return names


def _git_check(name: str, src: StepSource) -> Check:
    try:
        done = subprocess.run(
            ["git", "ls-remote", "--exit-code", src.url, src.ref, f"{src.ref}^{{}}"],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin:/usr/local/bin"},
        )
    except subprocess.TimeoutExpired:
        return Check(name, False, f"{src.url}: no answer in {GIT_TIMEOUT}s", _GIT_FIX)
    if done.returncode == 2:
        return Check(name, False, f"{src.url} has no ref {src.ref}", "fix the recipe's source.ref")
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["?"])[-1]
        return Check(name, False, f"{src.url} unreachable: {why}", _GIT_FIX)
    return Check(name, True, f"{src.url} has {src.ref} ({done.stdout.split()[0][:12]})")


_GIT_FIX = (
    "check the network to the git host, or put the source archive in the sources directory or on the index "
    "(inv sources.fetch --from CHECKOUT, inv sources.upload)"
)


def patches_check(name: str, patches: list[Path], tree: Path | None) -> Check:
    """The patches apply, in order, to the laid-out tree (a dry run each: a later patch of the same
    file is tried against the unpatched file)."""
    if not patches:
        return Check(name, True, "none")
    if tree is None:
        return Check(name, True, f"{len(patches)} not tried: the source is a git ref, cloned at build time")
    for p in patches:
        done = subprocess.run(
            ["patch", "--dry-run", "-p1", "--forward", "-d", str(tree), "-i", str(p)], capture_output=True, text=True
        )
        if done.returncode != 0:
            why = next((ln for ln in done.stdout.splitlines() if "FAILED" in ln or "can't" in ln), "")
            return Check(
                name,
                False,
                f"{p.name} does not apply: {why or done.stdout.strip()[-200:]}",
                f"rebase {p} on the pinned source",
            )
    return Check(name, True, f"{len(patches)} apply cleanly")


def backend_requires(tree: Path, subdir: str) -> list[str] | None:
    """[build-system].requires of the project in a source tree; None if there is none."""
    try:
        text = (tree / subdir / "pyproject.toml").read_text()
        return [str(r) for r in tomllib.loads(text).get("build-system", {}).get("requires", [])]
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None


def backend_check(step: BuildStep, recipe: Recipe, tree: Path | None) -> Check | None:
    """The build runs without isolation: everything the project's build backend requires must be
    among what the step installs (xgrammar 0.1.16 needs pybind11, not nanobind)."""
    if tree is None or recipe.frontend == "cibuildwheel":
        return None
    wanted = backend_requires(tree, recipe.subdir or ".")
    if wanted is None:
        return None
    installed = {canonicalize_name(Requirement(r).name) for r in [*BUILD_TOOLS, *recipe.requires]}
    installed |= {canonicalize_name(d) for d in step.deps}
    missing = [r for r in wanted if canonicalize_name(Requirement(r).name) not in installed]
    name = f"{step.name}: build backend requires"
    if missing:
        return Check(
            name,
            False,
            f"pyproject.toml's build-system needs {', '.join(missing)}, which the step does not install "
            "(the build runs without isolation)",
            f"add {', '.join(missing)} to the recipe's build.requires",
        )
    return Check(name, True, ", ".join(wanted) or "nothing")


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
    reqs = ["cibuildwheel"] if recipe.frontend == "cibuildwheel" else [*BUILD_TOOLS, *recipe.requires, *deps]
    findings, got = resolve(reqs, index_url, profile.target())
    if findings:
        return Check(name, False, findings[0].detail, findings[0].fix)
    return Check(name, True, f"{len(got)} packages resolve for cp{profile.python_version.replace('.', '')}")


# --- engine, image, Python, CUDA, GPU, resources ---------------------------------------------------
def engine_check(runner: DockerRunner) -> Check:
    name = f"engine {' '.join(runner.base())}"
    try:
        done = subprocess.run([*runner.base(), "info"], capture_output=True, text=True, timeout=ANSWER_TIMEOUT)
    except subprocess.TimeoutExpired:
        return Check(name, False, f"no answer in {ANSWER_TIMEOUT}s", "start the engine / check the connection")
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["?"])[-1]
        return Check(
            name, False, f"does not answer: {why}", "start the engine (systemctl start podman.socket / docker)"
        )
    return Check(name, True, "answers")


def image_check(runner: DockerRunner, image: str) -> Check:
    name = f"image {image}"
    done = subprocess.run(
        [*runner.base(), "image", "inspect", "--format", "{{.Id}}", image], capture_output=True, text=True
    )
    if done.returncode == 0:
        return Check(name, True, f"present ({done.stdout.strip()[:12]})")
    return Check(name, False, f"not on the engine {' '.join(runner.base())}", image_fix(image, runner.engine))


def ptx_isa(nvcc: str) -> str:
    """The PTX ISA an nvcc release writes, which a driver of an older CUDA cannot JIT."""
    isa = PTX_ISA_OF_CUDA.get(".".join(nvcc.split(".")[:2]))
    return f"PTX ISA {isa[0]}.{isa[1]}" if isa else "PTX ISA unknown"


def environment_checks(image: str, found: Probe, profile: Profile, gpu: bool, cuda_steps: list[str]) -> list[Check]:
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


def resource_checks(step: BuildStep, recipe: Recipe, found: Probe, needs: Needs) -> list[Check]:
    """Disk for the work directory; memory and swap against MAX_JOBS (how many jobs fit)."""
    f, out = found.facts, []
    if f.get("disk_kb", "").isdigit():
        free = int(f["disk_kb"]) / 2**20
        out.append(
            Check(f"{step.name}: disk", True, f"{free:.1f} GB free, {needs.disk_gb:.0f} GB needed")
            if free >= needs.disk_gb
            else Check(
                f"{step.name}: disk",
                False,
                f"{free:.1f} GB free where it builds, {needs.disk_gb:.0f} GB needed",
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


def preflight(
    plan: Plan,
    recipes: dict[str, Recipe],
    profile: Profile,
    runner: Runner,
    client: IndexClient,
    needs: Needs = Needs(),
    gpu: bool = False,
) -> list[Check]:
    """Every check for every step of the plan, in plan order; steps run concurrently."""
    docker = runner if isinstance(runner, DockerRunner) else None
    head: list[Check] = []
    if docker is not None:
        head.append(engine_check(docker))
        if not head[0].ok:  # nothing that needs the engine can be checked
            return head + _step_checks(plan, recipes, profile, client, {}, needs, None)

    def argv(image: str) -> list[str]:
        # a step planned for the host (cibuildwheel starts its own containers) is probed here
        return ["bash", "-c"] if image == "host" or docker is None else docker.probe_argv(image)

    probes: dict[str, Probe] = {}
    for image in sorted({s.image for s in plan.steps}):
        if docker is not None and image != "host":
            head.append(image_check(docker, image))
            if not head[-1].ok:
                continue
        where = str(needs.work_root) if image == "host" else "/jw"
        probes[image] = probe(argv(image), _python(profile, image), where)
        cuda_steps = [s.name for s in plan.steps if s.image == image and recipes[canonicalize_name(s.name)].cuda]
        head += environment_checks(image, probes[image], profile, gpu and image != "host", cuda_steps)
    return head + _step_checks(plan, recipes, profile, client, probes, needs, argv if docker else None)


def _step_checks(
    plan: Plan,
    recipes: dict[str, Recipe],
    profile: Profile,
    client: IndexClient,
    probes: dict[str, Probe],
    needs: Needs,
    probe_argv: Callable[[str], list[str]] | None,
) -> list[Check]:
    lock = threading.Lock()

    def nvcc(image: str) -> str:
        """nvcc's release in an image (probed once; the plan's images are probed already)."""
        with lock:
            if image not in probes and probe_argv is not None:
                probes[image] = probe(probe_argv(image), "true", "/")
            return probes[image].facts.get("nvcc", "") if image in probes else ""

    def one(step: BuildStep) -> list[Check]:
        recipe = recipes[canonicalize_name(step.name)]
        with tempfile.TemporaryDirectory(prefix="jetwheel-preflight-") as scratch:
            src, tree = source_check(step, client, needs.sources, Path(scratch))
            checks = [src, patches_check(f"{step.name}: patches", list(recipe.patches), tree and tree / recipe.subdir)]
            checks += sub_checks(step, client, needs.sources, Path(scratch))
            if backend := backend_check(step, recipe, tree):
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


def render(checks: Iterable[Check]) -> str:
    """One line per check: `ok` or `FAIL`, what, detail, and the fix of a failure."""
    return "\n".join(
        f"{'  ok' if c.ok else 'FAIL'}  {c.check}: {c.detail}" + (f"  -> fix: {c.fix}" if c.fix else "") for c in checks
    )


def failures(checks: Iterable[Check]) -> list[Check]:
    return [c for c in checks if not c.ok]
