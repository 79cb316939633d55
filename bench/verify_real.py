"""verify at the speed of the disk: vLLM 0.8.1's x86_64 wheel against torch 2.6.0's (PyPI, the
triton-25.04 pins, checked for linux_x86_64 and a desktop 8.6 GPU), cold and warm, against `unzip -p` of the same
members in the same run.

- unzip -p: one process inflating, to /dev/null, every ELF member verify reads (the peer: what
  inflating them costs on one core);
- cold: `verify_paths` in a fresh process with an empty fact cache (hashes both wheels, inflates
  their members in parallel, writes the facts);
- warm: the same again with the cache filled (reads no wheel bytes).
Targets: cold <= 0.4x unzip -p, warm <= 1 s, peak RSS < 1 GiB. Opt-in (not in the test suite): it
reads 1 GB of wheels. Run: `python bench/verify_real.py`; results go to bench/results/."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from realwheels import real_wheel  # noqa: E402

from jetwheel.verify import FactCache, compress, extract, read_wheels  # noqa: E402

CHILD = """
import json, resource, sys, time
from pathlib import Path
from jetwheel.workflow.verify import verify_paths  # noqa: E402
vllm, torch, facts = sys.argv[1:4]
started = time.perf_counter()
# PyPI's x86_64 wheels are for desktop GPUs: judged for a desktop 8.6 (for the Orin's 8.7 their sm_80/sm_86
# SASS fails the Tegra rule, as it should)
reports = verify_paths([vllm], "triton-25.04", None, [torch], "8.6", False, "linux_x86_64", facts)
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({
    "seconds": time.perf_counter() - started,
    "cpu_seconds": usage.ru_utime + usage.ru_stime,
    "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "failing": reports[0].failing_checks(),
}))
"""


def run_verify(vllm: Path, torch: Path, facts: Path) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(vllm), str(torch), str(facts)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    doc: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    doc["process_seconds"] = time.perf_counter() - started
    return doc


def unzip_p(wheel: Path, members: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of unzip -p."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(["unzip", "-p", str(wheel), *members], stdout=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - started, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def main() -> int:
    vllm = real_wheel("vllm", "0.8.1", "3.12", "x86_64")
    torch = real_wheel("torch", "2.6.0", "3.12", "x86_64")
    for w in (vllm, torch):  # both sides read from the page cache
        with open(w, "rb") as f:
            while f.read(64 << 20):
                pass
    with tempfile.TemporaryDirectory(prefix="jetwheel-bench-facts-") as tmp:
        facts = Path(tmp)
        cold = run_verify(vllm, torch, facts)
        warm = run_verify(vllm, torch, facts)
        members = {w: [e.member for e in read_wheels([w], FactCache(facts))[0].elves] for w in (vllm, torch)}
    runs = [unzip_p(w, m) for w, m in members.items()]
    unzip, unzip_cpu = sum(r[0] for r in runs), sum(r[1] for r in runs)
    ratio = float(cold["seconds"]) / unzip  # type: ignore[arg-type]
    cpu_ratio = float(cold["cpu_seconds"]) / unzip_cpu  # type: ignore[arg-type]
    rss = max(int(cold["rss_kib"]), int(warm["rss_kib"])) / 1024  # type: ignore[call-overload]
    print(f"wheels: {vllm.name} + {torch.name}, {sum(len(m) for m in members.values())} ELF members")
    print(f"inflate engine: {compress.ENGINE}, {extract.WORKERS} threads on {os.cpu_count()} CPUs")
    print(f"load average (1, 5, 15 min) at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"unzip -p of the same members: {unzip:.2f} s ({unzip_cpu:.2f} s CPU)")
    print(
        f"verify cold (empty fact cache): {cold['seconds']:.2f} s ({cold['process_seconds']:.2f} s with process start)"
        f"  ratio {ratio:.2f}x unzip -p (target <= 0.4x)"
    )
    print(
        f"verify cold CPU: {cold['cpu_seconds']:.2f} s, {cpu_ratio:.2f}x unzip -p's "
        "(the work itself, whatever the machine's load; the threads divide the wall time by the free cores)"
    )
    print(
        f"verify warm (facts cached):     {warm['seconds']:.2f} s ({warm['process_seconds']:.2f} s with process start)"
        "  (target <= 1 s)"
    )
    print(f"peak RSS: {rss:.0f} MiB (target < 1024 MiB)")
    print(f"verdict: vllm failing checks {cold['failing']} cold, {warm['failing']} warm (expected [] both)")
    ok = ratio <= 0.4 and float(warm["seconds"]) <= 1 and rss < 1024 and not cold["failing"] and not warm["failing"]  # type: ignore[arg-type]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
