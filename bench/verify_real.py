"""verify on real wheels (opt-in, not in the test suite): PyPI's torchvision against PyPI's torch.

A matching pair (torchvision 0.29.1 + torch 2.14.1) must pass abi; a mismatched pair
(torchvision 0.28.0, built for torch 2.13, + torch 2.14.1) must fail naming the missing c10/at
symbols. Times verify against `nm -D` over the same .so files (target <= 2x) and reports verify's
peak RSS (target < 1 GB). Wheels come through pip (`pip download`), from whatever index pip is
configured with."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path.home() / ".cache" / "jetwheel" / "bench-wheels"


def fetch(spec: str) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    name, version = spec.split("==")
    found = sorted(CACHE.glob(f"{name}-{version}-*.whl"))
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(CACHE), spec],
            check=True,
            capture_output=True,
        )
        found = sorted(CACHE.glob(f"{name}-{version}-*.whl"))
    return found[0]


def verify(vision: Path, torch: Path) -> tuple[float, int, dict[str, object]]:
    wrapper = (
        "import resource, subprocess, sys, json;"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "sys.stdout.write(r.stdout);"
        "print(json.dumps({'rss_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}), file=sys.stderr)"
    )
    cmd = [
        sys.executable,
        "-c",
        wrapper,
        sys.executable,
        "-m",
        "jetwheel",
        "verify",
        "--profile",
        str(HERE / "pypi-cu13-x86_64.toml"),
        "--json",
        "-p",
        str(vision),
        "--with",
        str(torch),
    ]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    rss = json.loads(done.stderr.strip().splitlines()[-1])["rss_kib"]
    return elapsed, rss, json.loads(done.stdout)[0]


def nm_time(wheels: list[Path]) -> tuple[float, float]:
    """(seconds to unzip the .so files, seconds of nm -D over them)."""
    with tempfile.TemporaryDirectory(prefix="jetwheel-nm-") as tmp:
        started = time.perf_counter()
        files = []
        for w in wheels:
            with zipfile.ZipFile(w) as zf:
                for m in zf.namelist():
                    if re.search(r"\.so(\.\d+)*$", m):
                        files.append(zf.extract(m, tmp))
        unzip = time.perf_counter() - started
        started = time.perf_counter()
        for f in files:
            subprocess.run(["nm", "-D", "--defined-only", f], stdout=subprocess.DEVNULL, check=True)
            subprocess.run(["nm", "-D", "--undefined-only", f], stdout=subprocess.DEVNULL, check=True)
        return unzip, time.perf_counter() - started


def main() -> int:
    torch = fetch("torch==2.14.1")
    good_tv, bad_tv = fetch("torchvision==0.29.1"), fetch("torchvision==0.28.0")
    t_good, rss_good, good = verify(good_tv, torch)
    _, rss_bad, bad = verify(bad_tv, torch)
    unzip, nm = nm_time([good_tv, torch])
    abi_good = [f for f in good["findings"] if f["check"] == "abi"]  # type: ignore[index, union-attr]
    abi_bad = [f for f in bad["findings"] if f["check"] == "abi"]  # type: ignore[index, union-attr]
    print(
        f"matching pair  torchvision 0.29.1 + torch 2.14.1: abi {'PASS' if not abi_good else 'FAIL'}"
        + ("" if not abi_good else f" ({abi_good[0]['detail'][:150]})")
    )
    print(
        f"mismatched     torchvision 0.28.0 + torch 2.14.1: abi {'FAIL' if abi_bad else 'PASS (wrong!)'}, "
        f"{len(abi_bad)} findings"
    )
    for f in abi_bad[:3]:
        print(f"    {f['file']}: {f['detail'][:160]}")
    print(
        f"verify time (open both wheels, all checks): {t_good:.2f} s; nm -D over the same .so: {nm:.2f} s "
        f"(+{unzip:.2f} s to unzip them)"
    )
    print(
        f"ratio verify / nm -D: {t_good / nm:.2f}x   "
        f"verify / (unzip + nm -D): {t_good / (unzip + nm):.2f}x  (target <= 2x)"
    )
    print(f"verify peak RSS: {max(rss_good, rss_bad) / 1024:.0f} MiB (target < 1024 MiB)")
    return 0 if not abi_good and abi_bad else 1


if __name__ == "__main__":
    sys.exit(main())
