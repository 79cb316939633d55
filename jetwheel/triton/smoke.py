"""The smoke test inside the image Triton's build.py made: import the stack, load its compiled
modules, look up an operator, and (on the Jetson, --gpu) run one CUDA operation, with the image's
own Python, environment and libraries (`podman/docker run`, nothing installed into it). Each
failure is named with its fix, one line each.

The module names come from the profile's [triton.smoke] table, so the stand-in stack of the tests
and the real one are tried alike."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from jetwheel.errors import JetwheelError, RunnerError
from jetwheel.model.profile import Smoke

# Runs in the image: one JSON line per step; later steps run even when earlier ones fail, so one
# run names every failure.
_PROBE = r"""
import importlib, json, sys
spec = json.loads(sys.argv[1])
ns = {}
def step(kind, what, fn):
    try:
        ok = fn()
        print(json.dumps({"kind": kind, "what": what, "ok": bool(ok), "error": "" if ok else "is false"}), flush=True)
    except BaseException as e:
        print(json.dumps({"kind": kind, "what": what, "ok": False, "error": f"{type(e).__name__}: {e}"}), flush=True)
def imp(name):
    ns[name.split(".")[0]] = importlib.import_module(name.split(".")[0])
    return importlib.import_module(name)
for m in spec["imports"]:
    step("import", m, lambda m=m: imp(m) is not None)
for m in spec["extensions"]:
    step("extension", m, lambda m=m: importlib.import_module(m) is not None)
for expr in spec["lookups"]:
    step("lookup", expr, lambda expr=expr: (lambda v: v is not None and v is not False)(eval(expr, dict(ns))))
if spec["gpu"]:
    step("gpu", spec["gpu"], lambda: eval(spec["gpu"], dict(ns)))
"""


@dataclass(frozen=True)
class Outcome:
    kind: str  # import | extension | lookup | gpu
    what: str
    ok: bool
    error: str
    fix: str

    def line(self) -> str:
        if self.ok:
            return f"ok    {self.kind} {self.what}"
        return f"FAIL  {self.kind} {self.what}: {self.error} -- fix: {self.fix}"


def fix_for(kind: str, error: str) -> str:
    """What to do about a failure, from what the interpreter said."""
    lib = re.search(r"([\w.+-]+\.so[\w.]*): cannot open shared object file", error)
    if lib:
        return (
            f"the image lacks {lib.group(1)}: ship it in the runtime tarball (inv runtime.tarball, "
            "published as the NVPL_SLIM_URL file) or in the wheel that needs it; inv verify --policy finds these first"
        )
    if "undefined symbol" in error:
        return "a wheel was built against another torch: rebuild it from the index's pins (inv verify names it)"
    if error.startswith("ModuleNotFoundError"):
        return "not installed in the image: the req secret must name it (inv triton.requirements)"
    if error.startswith("NameError"):
        return "its module did not import: fix the import failure above first"
    if kind == "lookup":
        return "the operator's library did not register: build torchvision against the very torch on the index"
    if kind == "gpu":
        if re.search(r"no kernel image|sm_\d+ is not compatible", error):
            return "rebuild with TORCH_CUDA_ARCH_LIST=8.7 (the profile sets it; inv verify checks the fatbins)"
        if re.search(r"forward compatibility|compat", error, re.I):
            return "the image is the dGPU server image: build it from igpu-min (inv triton.command names it)"
        return (
            "no GPU in the container: on the Jetson run with --runtime nvidia (docker) or --device "
            "nvidia.com/gpu=all (podman, CDI), and build the image from igpu-min (inv triton.command)"
        )
    return "see the error; inv verify --policy judges the wheels against the image before a build"


def run(image: str, smoke: Smoke, gpu: bool = False, engine: str = "podman") -> list[Outcome]:
    """Run the smoke test in a throwaway container of `image`; the steps' outcomes, in order."""
    spec = {
        "imports": list(smoke.imports),
        "extensions": list(smoke.extensions),
        "lookups": list(smoke.lookups),
        "gpu": smoke.gpu if gpu else "",
    }
    device = (
        (["--runtime", "nvidia"] if Path(engine).name == "docker" else ["--device", "nvidia.com/gpu=all"])
        if gpu
        else []
    )
    cmd = [
        engine,
        "run",
        "--rm",
        "--network=none",
        *device,
        "--entrypoint",
        "python3",
        image,
        "-c",
        _PROBE,
        json.dumps(spec),
    ]
    try:
        done = subprocess.run([*cmd, "-c", _PROBE, json.dumps(spec)], capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise RunnerError(f"{engine} is not installed") from None
    except subprocess.TimeoutExpired:
        raise RunnerError(f"the smoke test in {image} did not finish in 600 s") from None
    out = []
    for line in done.stdout.splitlines():
        try:
            got = json.loads(line)
        except ValueError:
            continue  # the stack's own prints
        out.append(
            Outcome(
                got["kind"],
                got["what"],
                got["ok"],
                got["error"],
                "" if got["ok"] else fix_for(got["kind"], got["error"]),
            )
        )
    if not out:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise JetwheelError(f"the smoke test could not run in {image}: {tail}")
    return out
