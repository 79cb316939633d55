"""The doctor against the real loader on any Python environment (issue 26): every shared object the
doctor examined is dlopened in a fresh interpreter of that environment, alone, and when that fails, after its
package's top-level import and the package's modules that name it (an extension module imported
as `from parent import leaf`, as its users import it, and judged by that import); the doctor's
verdict (loads or not) must be the real one.

    python bench/doctor_differential.py --python VENV/bin/python [--jobs 4] [--json out.json]

prints objects / agreements / disagreements / time, and each disagreement. Exit 1 on any."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# one object in a fresh interpreter: dlopen it alone; if that fails, import its package's top level
# and then it (an extension module through its parent, so a package's __getattr__ preloading runs)
REAL = r"""
import ctypes, importlib, json, os, sys
path, module, top = sys.argv[1], sys.argv[2], sys.argv[3]
def dl():
    ctypes.CDLL(path, os.RTLD_NOW)
try:
    lib = ctypes.CDLL(path, os.RTLD_NOW)
except OSError as e:
    alone = str(e)
else:
    # an extension module maps on its own: it loads if importing it does (its init may import a
    # sibling module that fails: cupyx._cutensor)
    parent, _, leaf = module.rpartition(".")
    if module and hasattr(lib, "PyInit_" + leaf):
        try:
            importlib.import_module(top)
            exec(f"from {parent} import {leaf}" if parent else f"import {module}")
            print(json.dumps({"loads": True, "how": "imported"}))
        except ImportError as e:
            # only the loader's own messages count: a module's init failing for its own reasons
            # (functorch._C imported a second way) is not the loader's to judge
            loader = any(m in str(e) for m in ("cannot open shared object", "undefined symbol", "version `"))
            print(json.dumps({"loads": not loader, "error": f"import: {e}"[:300]}))
    else:
        print(json.dumps({"loads": True, "how": "alone"}))
    raise SystemExit
def users():
    # the package's Python modules that name this object (the code that loads or imports it)
    stem = os.path.basename(path).split(".")[0]
    root = os.path.dirname(importlib.import_module(top).__file__ or "")
    for d, _dirs, files in os.walk(root):
        for f in sorted(files):
            if f.endswith(".py") and stem in open(os.path.join(d, f), errors="replace").read():
                rel = os.path.relpath(os.path.join(d, f), os.path.dirname(root))[:-3].replace(os.sep, ".")
                yield rel[: -len(".__init__")] if rel.endswith(".__init__") else rel
try:
    importlib.import_module(top)
    steps = []
    if module:
        parent, _, leaf = module.rpartition(".")
        steps.append(f"from {parent} import {leaf}" if parent else f"import {module}")
    steps += [f"import {m}" for m in list(users())[:8]]
    for step in steps:
        try:
            exec(step)
        except Exception:
            pass
        try:
            dl()
            print(json.dumps({"loads": True, "how": f"after import {top}; {step}"}))
            raise SystemExit
        except OSError:
            pass
    dl()
    print(json.dumps({"loads": True, "how": "after import " + top}))
except (OSError, ImportError) as e:
    print(json.dumps({"loads": False, "error": alone, "after": f"{type(e).__name__}: {e}"[:300]}))
"""


def doctor(python: str) -> tuple[dict[str, Any], float]:
    """The doctor's scan of the environment (`jetwheel doctor --python P --json`), and its wall time."""
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "jetwheel", "doctor", "--python", python, "--json"],
        capture_output=True,
        text=True,
        # this checkout's jetwheel by the working directory, not PYTHONPATH: the examined interpreter
        # inherits the environment, and the checkout's jetwheel.egg-info would join what it examines
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    took = time.monotonic() - start
    try:
        doc: dict[str, Any] = json.loads(done.stdout)["scan"]
    except (ValueError, KeyError):
        raise SystemExit(f"the doctor printed no report (exit {done.returncode}): {done.stderr[-400:]}") from None
    return doc, took


def names(doc: dict[str, Any]) -> dict[str, str]:
    """path -> module name, for the extension modules."""
    return {v["path"]: m for m, v in doc["modules"].items()}


def top_of(path: str, module: str) -> str:
    if module:
        return module.split(".")[0]
    for marker in ("/site-packages/", "/dist-packages/"):
        if marker in path:
            return path.split(marker, 1)[1].split("/", 1)[0]
    return "sys"


def real(python: str, path: str, module: str, env: dict[str, str]) -> dict[str, Any]:
    args = [python, "-c", REAL, path, module, top_of(path, module)]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    lines = [x for x in done.stdout.splitlines() if x.startswith("{")]
    if not lines:
        return {"loads": False, "error": f"crashed (exit {done.returncode}): {done.stderr[-200:]}"}
    out: dict[str, Any] = json.loads(lines[-1])
    return out


def compare(python: str, jobs: int = 2, skip: str = "") -> dict[str, Any]:
    """Each object's verdict, the doctor's and the real loader's; the disagreements. Objects whose
    path contains `skip` (when given) are left out: compared already in another environment."""
    doc, took = doctor(python)
    mods = names(doc)
    objects = {p: v for p, v in doc["objects"].items() if not skip or skip not in p}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    start = time.monotonic()
    with ThreadPoolExecutor(jobs) as pool:
        got = dict(zip(objects, pool.map(lambda p: real(python, p, mods.get(p, ""), env), objects), strict=True))
    wrong = {
        p: {"doctor": objects[p]["failure"], "real": got[p]}
        for p in objects
        if (objects[p]["failure"] is None) != got[p]["loads"]
    }
    return {
        "objects": len(objects),
        "agreements": len(objects) - len(wrong),
        "disagreements": wrong,
        "doctor_seconds": round(took, 2),
        "real_seconds": round(time.monotonic() - start, 2),
        "loads": sum(1 for g in got.values() if g["loads"]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--python", required=True, help="the environment's interpreter")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    p.add_argument("--json", default="", help="write the whole comparison here")
    p.add_argument("--skip", default="", help="leave out objects whose path contains this (e.g. /nvidia/)")
    args = p.parse_args()
    found = compare(args.python, args.jobs, args.skip)
    for path, d in sorted(found["disagreements"].items()):
        print(f"DISAGREE {path}: doctor {d['doctor']}, real {d['real']}")
    print(
        f"objects {found['objects']} / agreements {found['agreements']} / disagreements "
        f"{len(found['disagreements'])} / time: doctor {found['doctor_seconds']} s, real loader "
        f"{found['real_seconds']} s ({found['loads']} load)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(found, indent=1))
    raise SystemExit(1 if found["disagreements"] else 0)


if __name__ == "__main__":
    main()
