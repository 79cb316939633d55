"""jetwheel doctor against the real loader: PyPI's wheels installed into real venvs (doctorenvs.py);
for every extension module the doctor's verdict (loads, or the first library or symbol ld.so names)
must equal what a fresh interpreter gets importing it there, one subprocess per module.

The machine has no NVIDIA driver, so vLLM's modules that link libcuda.so.1 would all stop there.
A driver stub (a libcuda.so.1 defining the driver API names the environment's libraries import, as
the CUDA toolkit's stubs/libcuda.so does) goes on LD_LIBRARY_PATH for the doctor and the imports
alike: both see the same files, and the failures behind it (the c10 symbols) show."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from doctorenvs import ENVS, venv

from jetwheel.doctor import report
from jetwheel.doctor.facts import read_facts

pytestmark = [pytest.mark.real, pytest.mark.slow]

ENVIRONMENTS = {
    "vllm-torch260": [("vllm", "0.8.1"), ("torch", "2.6.0")],
    "vllm-torch270": [("vllm", "0.8.1"), ("torch", "2.7.0")],
    "tv021-torch270": [("torchvision", "0.21.0"), ("torch", "2.7.0")],
}
REPO = Path(__file__).resolve().parents[1]
# The import's loading step, as Python's import does it (dlopen with sys.getdlopenflags(), RTLD_NOW)
# and torch.ops.load_library (torchvision's _C), after importing what the package imports first;
# PyInit_* is not run: a module initialised twice (torch._C after `import torch`) says nothing of the loader.
IMPORT = """
import ctypes, json, sys
module, path, deps = sys.argv[1], sys.argv[2], sys.argv[3:]
for top in deps:
    try:
        __import__(top)
    except BaseException as e:
        print(json.dumps({"dep": top, "error": str(e)}))
        raise SystemExit
try:
    ctypes.CDLL(path, sys.getdlopenflags())
    print(json.dumps({"error": None}))
except OSError as e:
    print(json.dumps({"error": str(e)}))
"""


def driver_stub(python: Path) -> Path:
    """A directory holding libcuda.so.1 that defines every cu* name the venv's CUDA users import."""
    out = python.parents[1] / "driver-stub"
    if (out / "libcuda.so.1").exists():
        return out
    site = next((python.parents[1] / "lib").glob("python3*/site-packages"))
    names: set[str] = set()
    for f in site.rglob("*.so*"):
        facts = read_facts(str(f)) if f.is_file() and not f.is_symlink() else None
        if facts is not None and "libcuda.so.1" in facts.info.needed:
            names |= {n for n, _v, _f, _w in facts.imports if n.startswith("cu")}
    out.mkdir(exist_ok=True)
    (out / "stub.c").write_text("".join(f"int {n}(void) {{ return 999; }}\n" for n in sorted(names)))
    subprocess.run(
        ["cc", "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", str(out / "libcuda.so.1"), str(out / "stub.c")],
        check=True,
    )
    return out


def run_doctor(*where: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """The doctor as a user runs it (`--python P` or `--image I`), with --json: its exit code and report."""
    done = subprocess.run(
        [sys.executable, "-m", "jetwheel", "doctor", *where, "--json"],
        capture_output=True,
        text=True,
        env=env if env is not None else dict(os.environ, PYTHONPATH=str(REPO)),
        cwd=REPO,
    )
    assert done.returncode in (report.OK, report.BROKEN, report.UNCHECKED), done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, found


def doctor(python: Path, env: dict[str, str]) -> dict[str, Any]:
    return run_doctor("--python", str(python), env=env)[1]


def real_import(python: Path, module: str, path: str, deps: list[str], env: dict[str, str]) -> tuple[str, str]:
    """("ok", "") or ("fails", the library or symbol the loader named) for one fresh interpreter."""
    done = subprocess.run([str(python), "-c", IMPORT, module, path, *deps], capture_output=True, text=True, env=env)
    got = json.loads(done.stdout.strip().splitlines()[-1])
    return ("ok", "") if got["error"] is None else ("fails", first_named(got["error"]))


def first_named(error: str) -> str:
    if "undefined symbol: " in error:
        return error.rsplit("undefined symbol: ", 1)[1].split()[0].rstrip(",")
    if "cannot open shared object file" in error:
        return error.split(": cannot open shared object file")[0].rsplit(" ", 1)[-1].rsplit(":", 1)[-1].strip()
    if "version `" in error:
        return error.split("version `", 1)[1].split("'", 1)[0]
    return error


def predicted(verdict: dict[str, Any]) -> tuple[str, str]:
    failure = verdict["failure"] or (verdict["via"] or {}).get("failure")
    if failure is not None and failure["kind"] == "sibling-import":
        return "ok", ""  # the module maps (what IMPORT checks); its init's import of a sibling fails
    return ("ok", "") if failure is None else ("fails", failure["name"])


@pytest.mark.parametrize("name", sorted(ENVIRONMENTS))
def test_the_doctor_agrees_with_the_real_loader(name: str) -> None:
    python = venv(name, ENVIRONMENTS[name])
    env = dict(os.environ, PYTHONPATH=str(REPO), LD_LIBRARY_PATH=str(driver_stub(python)))
    doc = doctor(python, env)["scan"]
    table, disagreements = [], []
    for module, verdict in sorted(doc["modules"].items()):
        deps = [m.split(".")[0] for m in verdict["after"]]  # import torch, which loads torch._C
        real = real_import(python, module, verdict["path"], deps, env)
        table.append(f"{name}  {module}  doctor={predicted(verdict)}  real={real}")
        if real != predicted(verdict):
            disagreements.append(table[-1])
    (ENVS / f"{name}.table").write_text("\n".join(table) + "\n")
    assert not disagreements, "\n".join(disagreements)
    assert doc["modules"], "no extension modules found"


def test_vllm_081_on_torch_270_fails_on_a_torch_symbol_and_the_doctor_says_so_first() -> None:
    python = venv("vllm-torch270", ENVIRONMENTS["vllm-torch270"])
    env = dict(os.environ, PYTHONPATH=str(REPO), LD_LIBRARY_PATH=str(driver_stub(python)))
    out = doctor(python, env)
    v = out["scan"]["modules"]["vllm._C"]
    # the loader names the first unbound reference in relocation order: torch::jit::parseSchemaOrName
    # for _C (c10::ListType::get is among the others), the same for the doctor
    assert v["failure"]["name"].startswith(("_ZN5torch", "_ZN3c10")), v
    assert any("vllm._C" in x["subject"] and "libtorch_cpu.so" in x["problem"] for x in out["lines"])
    real = real_import(python, "vllm._C", v["path"], ["torch"], env)
    assert real == ("fails", v["failure"]["name"])


def test_torchvision_021_on_torch_270_loses_its_operators() -> None:
    python = venv("tv021-torch270", ENVIRONMENTS["tv021-torch270"])
    env = dict(os.environ, PYTHONPATH=str(REPO), LD_LIBRARY_PATH=str(driver_stub(python)))
    out = doctor(python, env)
    assert out["scan"]["modules"]["torchvision._C"]["failure"] is not None
    ops = next(x for x in out["lines"] if x["subject"] == "torchvision._C operators")
    assert "torchvision::nms" in ops["problem"]
    assert "torchvision::nms" in next(i["ops"] for i in out["scan"]["items"] if i["kind"] == "ops")
    done = subprocess.run([str(python), "-c", "import torchvision"], capture_output=True, text=True, env=env)
    assert "operator torchvision::nms does not exist" in done.stderr
    assert report.exit_code([report.Line(**x) for x in out["lines"]]) == report.BROKEN


def test_in_an_image_the_doctor_names_the_missing_cusparselt_as_the_loader_does() -> None:
    from doctorenvs import broken_image

    name = broken_image()
    status, found = run_doctor("--image", name)
    assert status == report.BROKEN, found["lines"]
    v = found["scan"]["modules"]["torch._C"]
    assert v["failure"]["name"] == "libcusparseLt.so.0"
    code = "import ctypes, os, sys\ntry:\n    ctypes.CDLL(sys.argv[1], os.RTLD_NOW)\nexcept OSError as e:\n    print(e)"
    real = subprocess.run(
        ["podman", "run", "--rm", "--network=none", name, "python3", "-c", code, v["path"]],
        capture_output=True,
        text=True,
    ).stdout
    assert first_named(real.strip()) == "libcusparseLt.so.0"


# In one container, a fresh interpreter per module (container start-up under qemu costs seconds).
IN_IMAGE = """
import json, subprocess, sys
code, out = sys.argv[1], []
for module, path, deps in json.loads(sys.argv[2]):
    done = subprocess.run([sys.executable, "-c", code, module, path, *deps], capture_output=True, text=True)
    out.append(json.loads(done.stdout.strip().splitlines()[-1]))
print(json.dumps(out))
"""


@pytest.mark.parametrize("torchvision", ["0.21.0", "0.22.0"])
def test_in_arm64_images_the_doctor_agrees_with_the_real_loader(torchvision: str) -> None:
    from doctorenvs import arm64_image

    name = arm64_image(torchvision)
    status, found = run_doctor("--image", name)
    assert status in (report.BROKEN, report.UNCHECKED), found["lines"]
    mods = sorted(found["scan"]["modules"].items())
    todo = [(m, v["path"], [a.split(".")[0] for a in v["after"]]) for m, v in mods]
    ran = subprocess.run(
        ["podman", "run", "--rm", "--network=none", name, "python3", "-c", IN_IMAGE, IMPORT, json.dumps(todo)],
        capture_output=True,
        text=True,
    )
    reals = json.loads(ran.stdout)
    table, disagreements = [], []
    for (module, verdict), got in zip(mods, reals, strict=True):
        real = ("ok", "") if got["error"] is None else ("fails", first_named(got["error"]))
        table.append(
            f"arm64 torch 2.6.0 + torchvision {torchvision}  {module}  doctor={predicted(verdict)}  real={real}"
        )
        if real != predicted(verdict):
            disagreements.append(table[-1])
    (ENVS / f"arm64-tv{torchvision}.table").write_text("\n".join(table) + "\n")
    assert not disagreements, "\n".join(disagreements)
