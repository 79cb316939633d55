"""vLLM 0.8.1's CUDA kernels for the Orin (sm_87), whole, through the real vllm recipe on the
x86-cuda12 profile: PyPI's sdist, the three sub-sources from the source directory, the CUDA 12.4
toolchain image (`inv cuda.setup`), the owned torch 2.6.0 (PyPI's x86_64 cp312 wheels, with
torchvision 0.21.0, torchaudio 2.6.0 and a pytorch-triton 3.2.0 stand-in requiring PyPI's triton)
served by a local index, xgrammar 0.1.16 built by its recipe from the shared source archive. Then
the wheel from the index into a fresh venv (with torch from the index) and imported.

Hours on 2 cores: it runs in the background, niced, and resumes when run again with the same
--state (the step's kept container holds its build directory; ccache is a volume of the state's
own podman storage). State lives outside ~/.cache/jetwheel and the default podman storage, so a
wipe of those (a fresh-machine CI run) leaves it alone. Start or resume:

    cd JETWHEEL_CHECKOUT && S=/var/lib/jetwheel-bg && mkdir -p $S/home && \\
    setsid nohup nice -n 19 env HOME=$S/home CONTAINERS_STORAGE_CONF=$S/storage.conf \\
      PYENV_ROOT=/root/.pyenv PYENV_VERSION=3.11.7:3.12.1 PYTHONPATH=$PWD:$PWD/tests \\
      JETWHEEL_REAL_WHEELS=$S/wheels JETWHEEL_SOURCES=/work/shared/sources \\
      python3 bench/vllm_cuda.py --state $S --label cold >> $S/build.log 2>&1 < /dev/null &

(--label resumed after a kill; --label warm builds again although the index has the wheel, ccache
warm: `podman rm -f` the step's container first, so the work directory is new.) Progress: `grep -o '\\[[0-9]*/[0-9]*\\]'
$S/build.log | tail -1`. Each finished run appends its record to bench/results/vllm_cuda.jsonl:
wall time, MAX_JOBS, peak memory per compile process, the SASS/PTX of every library, the wheel's
size and facts (not the wheel); verify against torch 2.7.0 (abi must fail); the install-and-import
result. Nothing is written for a run that did not finish.

To stop it (to measure a resume): kill the bench's process group (it was started with setsid),
then `podman stop` the step's container (CONTAINERS_STORAGE_CONF as above; it is named
jetwheel-vllm-<cache key>), which is kept for the next run."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from conftest import start_server, stop_server  # noqa: E402
from realwheels import real_wheel  # noqa: E402
from test_sources import XGRAMMAR  # noqa: E402
from wheelmaker import make_wheel  # noqa: E402

from jetwheel.build.engine import Event, Options, run_plan  # noqa: E402
from jetwheel.build.plan import make_plan  # noqa: E402
from jetwheel.machine import this_machine  # noqa: E402
from jetwheel.model.recipe import load_profile, load_recipes  # noqa: E402
from jetwheel.model.stepsource import StepSource  # noqa: E402
from jetwheel.runners import DockerRunner  # noqa: E402
from jetwheel.runners.cudaimage import ensure_cuda_image  # noqa: E402
from jetwheel.sources.fetch import make_archive  # noqa: E402
from jetwheel.verify import fatbin, read_wheels, verify_wheel  # noqa: E402

PROFILE = "x86-cuda12"
OWNED = [("torch", "2.6.0"), ("torchvision", "0.21.0"), ("torchaudio", "2.6.0")]
CA = "/etc/ssl/certs/ca-certificates.crt"  # the host's trust (a TLS-inspecting proxy's CA included)
COMPILERS = ("cicc", "ptxas", "cc1plus", "cudafe++", "nvcc", "fatbinary", "nvlink")
IMPORT = (
    "import torch, vllm._C, vllm._moe_C, vllm.vllm_flash_attn._vllm_fa2_C, vllm.cumem_allocator; "
    "print(torch.__version__, [op for op in ('rms_norm', 'silu_and_mul', 'paged_attention_v1') "
    "if hasattr(torch.ops._C, op)])"
)


def storage_conf(state: Path) -> None:
    """The state's own podman storage (the caller points CONTAINERS_STORAGE_CONF at it)."""
    conf = state / "storage.conf"
    if not conf.exists():
        conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{state}/storage"\nrunroot = "{state}/run"\n')


class PeakMemory:
    """Peak resident memory of each compiler process (one compile job's cicc, ptxas, cc1plus...),
    sampled from /proc every 2 s: rootful podman's processes are the host's. With `cwd`, only
    processes working under that directory (a build container's work directory: another bench's
    compiles on the same host are not this build's); with `container`, also every compiler in a
    container whose name starts so (a compiler that sccache's server starts works in a directory
    of its own, not the build's: the whole aarch64 builds' records had no cicc before this)."""

    def __init__(self, cwd: str = "", container: str = "") -> None:
        self.peaks: dict[str, int] = {}  # "exe source" -> peak RSS in MiB
        self.cwd = cwd
        self.container = container
        self.names: dict[str, str] = {}  # container id -> name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def ours(self, proc: Path) -> bool:
        if os.readlink(proc / "cwd").startswith(self.cwd):
            return True
        found = re.search(r"libpod-([0-9a-f]{64})", (proc / "cgroup").read_text()) if self.container else None
        if found is None:
            return False
        if found.group(1) not in self.names:  # a container started since the last look
            listed = subprocess.run(
                ["podman", "ps", "--all", "--no-trunc", "--format", "{{.ID}} {{.Names}}"],
                capture_output=True,
                text=True,
            )
            pairs = (line.split(" ", 1) for line in listed.stdout.splitlines() if " " in line)
            self.names.update({cid: name for cid, name in pairs})
            self.names.setdefault(found.group(1), "")  # not ours to list (another storage): asked once
        return self.names.get(found.group(1), "").startswith(self.container)

    def _run(self) -> None:
        while not self._stop.wait(2):
            for proc in Path("/proc").iterdir():
                try:
                    exe = (proc / "comm").read_text().strip()
                    if exe not in COMPILERS or not self.ours(proc):
                        continue
                    argv = (proc / "cmdline").read_bytes().split(b"\0")
                    status = (proc / "status").read_text().splitlines()
                    rss = next(int(x.split()[1]) for x in status if x.startswith("VmRSS"))
                except (OSError, StopIteration, ValueError):
                    continue
                sources = (a for a in argv if a.endswith((b".cu", b".cpp", b".ii", b".ptx")))
                src = next((a.decode(errors="replace").rsplit("/", 1)[-1] for a in sources), "?")
                key = f"{exe} {src}"
                self.peaks[key] = max(self.peaks.get(key, 0), rss // 1024)


def libraries(wheel: Path) -> dict[str, list[str]]:
    """Each shared library in the wheel and the SASS/PTX its fatbins hold."""
    out = {}
    with zipfile.ZipFile(wheel) as zf, tempfile.TemporaryDirectory() as tmp:
        for name in (n for n in zf.namelist() if n.endswith(".so")):
            path = Path(zf.extract(name, tmp))
            with path.open("rb") as f:
                out[name] = sorted({e.label() for e in fatbin.scan(f)})
    return out


def against_torch_270(wheel: Path) -> dict[str, list[str]]:
    """verify against PyPI's torch 2.7.0 instead of 2.6.0: the abi check must name what breaks
    (c10::ListType::get), as the loader would."""
    torch27 = read_wheels([real_wheel("torch", "2.7.0", "3.12", "x86_64")])[0]
    report = verify_wheel(read_wheels([wheel])[0], load_profile(PROFILE).target(), load_recipes()["vllm"], [torch27])
    out: dict[str, list[str]] = {}
    for f in report.findings:
        if f.severity == "error":
            out.setdefault(f.check, []).append(f.detail[:300])
    return out


def install_and_import(image: str, simple: str) -> str:
    """The published wheel into a fresh venv of the toolchain image, torch from the index."""
    cert = ["-v", f"{CA}:/ca.crt:ro", "-e", "PIP_CERT=/ca.crt"] if os.path.exists(CA) else []
    script = (
        f'python3.12 -m venv /v && /v/bin/pip install -q --index-url {simple} vllm==0.8.1 && /v/bin/python -c "$CODE"'
    )
    done = subprocess.run(
        ["podman", "run", "--rm", "--network=host", "-e", f"CODE={IMPORT}", *cert, image, "bash", "-c", script],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return f"FAILED: {done.stderr[-800:]}"
    # the import's own line is stdout's last; pip's notices go to stderr
    return done.stdout.strip().splitlines()[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--state", type=Path, required=True, help="work dir, index, logs, podman storage")
    ap.add_argument("--label", choices=["cold", "resumed", "warm"], required=True)
    args = ap.parse_args()
    state: Path = args.state.resolve()
    storage_conf(state)
    if os.environ.get("CONTAINERS_STORAGE_CONF") != str(state / "storage.conf"):
        sys.exit(f"set CONTAINERS_STORAGE_CONF={state / 'storage.conf'} (the state's own podman storage)")
    recipes, profile = load_recipes(), load_profile(PROFILE)
    t0 = time.monotonic()
    image = ensure_cuda_image(profile.python_exe, profile.image, cache=state / "rootfs")
    image_s = time.monotonic() - t0
    print(f"image {image} ready in {image_s:.0f} s", flush=True)
    server = start_server(state / "index" / "packages")
    try:
        client = server.client()
        for name, version in OWNED:
            wheel = real_wheel(name, version, "3.12", "x86_64")
            if client.file_info(wheel.name) is None:
                client.upload(wheel)
        standin = make_wheel(state, "pytorch-triton", "3.2.0", requires=("triton==3.2.0",))
        if client.file_info(standin.name) is None:
            client.upload(standin)
        src = StepSource("git", sha256=recipes["xgrammar"].source.sha256)
        archive = make_archive("xgrammar", "0.1.16", src, state / "sources", XGRAMMAR)
        if client.file_info(archive.path.name) is None:
            client.upload(archive.path, artifact=True)
        plan = make_plan(recipes, profile, "vllm", "docker", this_machine())
        owned = {"torch", "torchvision", "torchaudio", "pytorch-triton"}
        steps = [s for s in plan.steps if s.name not in owned]
        if args.label == "warm":  # only vLLM is built again; xgrammar stays as the index has it
            steps = [s for s in steps if s.name == "vllm"]
        plan = dataclasses.replace(plan, steps=tuple(steps))
        vllm_step = plan.steps[-1]
        print(f"vllm step: {vllm_step.wheel}, cache key {vllm_step.cache_key[:12]}", flush=True)
        sources = Path(os.environ["JETWHEEL_SOURCES"])
        # warm: built again (not taken from the index's cache) in a new work directory, ccache warm
        warm = args.label == "warm"
        options = Options(work_root=state / "work", log_root=state / "logs", sources=sources, force=warm)

        def show(e: Event) -> None:
            if e.kind != "bytes":
                print(f"[{e.kind}] {e.step} {e.message}", flush=True)

        t0 = time.monotonic()
        with PeakMemory() as peaks:
            results = run_plan(
                plan,
                recipes,
                profile,
                DockerRunner(engine="podman", ca_bundle=CA if os.path.exists(CA) else ""),
                client,
                options,
                show,
            )
        wall = time.monotonic() - t0
        result = results[-1]
        wheel = server.root / result.wheel
        record = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "label": args.label,
            "image_seconds": round(image_s),
            "wall_seconds": round(wall),
            "vllm_step_seconds": round(result.seconds),
            "max_jobs": vllm_step.env.get("MAX_JOBS"),
            "nvcc_threads": vllm_step.env.get("NVCC_THREADS"),
            "peak_rss_mib": dict(sorted(peaks.peaks.items(), key=lambda kv: -kv[1])[:40]),
            "wheel": result.wheel,
            "wheel_bytes": wheel.stat().st_size,
            "libraries": libraries(wheel),
            "verify_passed": result.report.passed if result.report else None,
            "facts": result.report.facts if result.report else None,
            "against_torch_2_7_0": against_torch_270(wheel),
            "import": install_and_import(image, server.simple),
        }
    finally:
        stop_server(server)
    out = ROOT / "bench" / "results" / "vllm_cuda.jsonl"
    with out.open("a") as f:
        f.write(json.dumps(record, default=str) + "\n")
    print(json.dumps(record, indent=1, default=str))


if __name__ == "__main__":
    main()
