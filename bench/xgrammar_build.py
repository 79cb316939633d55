"""Real xgrammar 0.1.16 through its recipe: build times for cp312 x86_64 (local runner) and for
aarch64 crossed (`cross` runner) and emulated (docker runner under qemu), each step as the engine
runs it: source archive from the index, venv, build requirements, compile, auditwheel, verify,
publish. Prints each time and the emulated / cross ratio, measured in the same run.

    python bench/xgrammar_build.py [--only x86,cross,emulated] [--timeout-emulated SECONDS]

An emulated run past its time box is stopped and reported as "> N s (stopped)", never as a result."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from conftest import start_server, stop_server  # noqa: E402
from realwheels import real_wheel  # noqa: E402
from test_sources import XGRAMMAR  # noqa: E402

from jetwheel.build.engine import Event, Options, run_plan  # noqa: E402
from jetwheel.build.plan import make_plan  # noqa: E402
from jetwheel.machine import this_machine  # noqa: E402
from jetwheel.model.recipe import load_profile, load_recipes  # noqa: E402
from jetwheel.model.stepsource import StepSource  # noqa: E402
from jetwheel.runners import DockerRunner, make_runner  # noqa: E402
from jetwheel.sources.fetch import make_archive  # noqa: E402
from jetwheel.workflow.context import settings  # noqa: E402

CA = "/etc/ssl/certs/ca-certificates.crt"
RUNS = {
    "x86": ("host-cp312", "local"),
    "cross": ("bookworm-aarch64", "cross"),
    "emulated": ("bookworm-aarch64", "docker"),
}


def build_once(kind: str, tmp: Path, box: float) -> tuple[float, str]:
    """Seconds for one full step and its wheel; ("", stopped) if the time box ran out."""
    profile_name, runner_name = RUNS[kind]
    server = start_server(tmp / kind / "packages")
    try:
        src = StepSource("git", sha256=load_recipes()["xgrammar"].source.sha256)
        server.client().upload(make_archive("xgrammar", "0.1.16", src, tmp / kind, XGRAMMAR).path, artifact=True)
        recipes, profile = load_recipes(), load_profile(profile_name)
        plan = make_plan(recipes, profile, "xgrammar", runner_name, this_machine())
        if kind == "emulated":
            runner = DockerRunner(engine="podman", arch="aarch64", ca_bundle=CA if os.path.exists(CA) else "")
        else:
            runner = make_runner(runner_name, settings(), arch="aarch64" if profile.arch == "aarch64" else "")
        if profile.arch == "aarch64":
            # verify reads the closure's torch (xgrammar requires it) from the index: PyPI's aarch64 one
            server.client().upload(real_wheel("torch", "2.6.0", "3.11", "aarch64"))
        stop = threading.Event()

        def listen(e: Event) -> None:
            if stop.is_set() and e.kind == "line":
                raise KeyboardInterrupt  # the engine stops the step and publishes nothing
            if e.kind in ("start", "published", "failed"):
                print(f"  [{kind}] {e.kind} {e.message[:150]}", flush=True)

        timer = threading.Timer(box, stop.set)
        timer.start()
        started = time.monotonic()
        try:
            [result] = run_plan(
                plan, recipes, profile, runner, server.client(), Options(force=True, work_root=tmp / kind / "w"), listen
            )
        except Exception as e:  # the time box, or a failed build: reported, not timed
            if stop.is_set():
                return time.monotonic() - started, "stopped"
            raise SystemExit(f"{kind}: {e}") from None
        finally:
            timer.cancel()
        return time.monotonic() - started, result.wheel
    finally:
        stop_server(server)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="x86,cross,emulated")
    ap.add_argument("--timeout-emulated", type=float, default=2400)
    args = ap.parse_args()
    if shutil.which("pyenv") and subprocess.run(["python3.12", "--version"], capture_output=True).returncode != 0:
        os.environ["PYENV_VERSION"] = "3.12.1"  # the host profile's python3.12: pyenv's on these machines
    times: dict[str, float] = {}
    print(f"xgrammar 0.1.16, one full engine step each, {os.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory(prefix="jetwheel-bench-xgrammar-") as tmp:
        for kind in args.only.split(","):
            seconds, wheel = build_once(kind, Path(tmp), args.timeout_emulated if kind == "emulated" else 3600)
            if wheel == "stopped":
                print(f"{kind:>9}: > {seconds:.0f} s (stopped at the time box; no wheel)", flush=True)
                times[kind] = -seconds
            else:
                print(f"{kind:>9}: {seconds:.0f} s  {wheel}", flush=True)
                times[kind] = seconds
    if "cross" in times and "emulated" in times:
        e, c = times["emulated"], times["cross"]
        print(f"emulated / cross: {'>' if e < 0 else ''}{abs(e) / c:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
