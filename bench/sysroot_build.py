"""The Orin's CUDA wheels as linux_aarch64, whole (issue 25): `jetwheel build-wheel NAME --profile
sysroot-trixie-arm64 --runner docker` for torchvision 0.21.0, torchaudio 2.6.0 and vLLM 0.8.1
against an index, each timed (wall) with the peak memory of every compile process; then each
published wheel taken back from the index and read (every .so an aarch64 ELF, the SASS and PTX of
each library's fatbins), and the stack installed from the index into a venv of the sysroot image
in an arm64 container under qemu (its torch 2.6.0 built with CUDA 12.4, libcuda1; no GPU: the
libraries are loaded, their kernels not run). PyPI's CPU-only torchvision 0.21.0 (cp313 aarch64)
is tried beside the same torch for comparison.

Usage (vLLM takes hours on 2 cores; a build resumes in its kept work directory when run again):

    cd JETWHEEL_CHECKOUT && setsid nohup nice -n 19 env JETWHEEL_INDEX_USER=U \\
      JETWHEEL_INDEX_PASSWORD=P JETWHEEL_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \\
      python3 bench/sysroot_build.py --index http://127.0.0.1:8725 --sources DIR torchvision torchaudio \\
      >> LOG 2>&1 < /dev/null &

`--sources DIR` holds the reproducible archives (`inv sources.fetch torchvision --from
shared/sources/vision-0.21.0.tar.gz --out DIR`, the same for torchaudio; vLLM's sub-sources as
they are in shared/sources). `--import-only` skips the builds (the published wheels are still read
back). Each build appends a record to bench/results/sysroot_build.jsonl, the import check one of its
own."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from vllm_cuda import PeakMemory, libraries  # noqa: E402

from jetwheel.runners.docker import WORK  # noqa: E402
from jetwheel.runners.sysrootimage import NAME as IMAGE  # noqa: E402

PROFILE = "sysroot-trixie-arm64"
RESULTS = ROOT / "bench" / "results" / "sysroot_build.jsonl"
CA = "/etc/ssl/certs/ca-certificates.crt"  # the host's trust (a TLS-inspecting proxy's CA included)
AARCH64 = 183  # e_machine
# vLLM's wheel carries no local label: its version is setuptools-scm's, pinned by the recipe
PINS = {"torchvision": "0.21.0+cu124", "torchaudio": "2.6.0+cu124", "vllm": "0.8.1"}
# what each check prints, one line each; a failure prints its exception and goes on
CHECKS = {
    "torchvision": (
        "import torch, torchvision; print('torchvision', torchvision.__version__, 'beside torch', torch.__version__, "
        "torch.version.cuda, 'nms:', torch.ops.torchvision.nms.default._schema, 'CUDA kernel:', "
        "torch._C._dispatch_has_kernel_for_dispatch_key('torchvision::nms', 'CUDA'))"
    ),
    "torchaudio": (
        "import torch, torchaudio; from torchaudio import _extension as x; print('torchaudio', torchaudio.__version__, "
        "'libtorchaudio loaded:', x._IS_TORCHAUDIO_EXT_AVAILABLE, 'align:', x._IS_ALIGN_AVAILABLE, 'CUDA:', "
        "torchaudio.lib._torchaudio.cuda_version(), 'forced_align CUDA kernel:', "
        "torch._C._dispatch_has_kernel_for_dispatch_key('torchaudio::forced_align', 'CUDA'))"
    ),
    "vllm": (
        "import glob, os, torch, importlib.util as u; d = os.path.dirname(u.find_spec('vllm').origin); "
        "[torch.ops.load_library(p) for p in ['_C.abi3.so', '_moe_C.abi3.so', 'vllm_flash_attn/_vllm_fa2_C.abi3.so', "
        "'cumem_allocator.abi3.so'] for p in [os.path.join(d, p)]]; print('vllm libraries loaded; rms_norm:', "
        "torch.ops._C.rms_norm.default._schema)"
    ),
}


def build(name: str, index: str, sources: str) -> dict[str, object]:
    """One whole build through the door, timed, with every compile process's peak memory."""
    argv = [sys.executable, "-m", "jetwheel", "build-wheel", name, "--profile", PROFILE, "--runner", "docker"]
    argv += ["--index", index, "--sources", sources]
    start = time.monotonic()
    with PeakMemory(cwd=WORK, container=f"jetwheel-{name}-") as peaks:
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - start
    record: dict[str, object] = {"build": name, "exit": done.returncode, "wall_seconds": round(wall)}
    record["said"] = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("jetwheel")][-6:]
    top = sorted(peaks.peaks.items(), key=lambda kv: -kv[1])
    record["compile_processes"] = len(top)
    record["peak_rss_mib"] = dict(top[:25])
    return record


def wheel_url(index: str, name: str) -> str:
    """The linux_aarch64 wheel of `name` the index lists (PEP 691 JSON): cp313, or abi3 (vLLM's)."""
    req = urllib.request.Request(f"{index}/simple/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        files = json.load(r)["files"]
    found = [f["url"] for f in files if re.search(r"-(cp313-cp313|cp3\d+-abi3)-linux_aarch64\.whl$", f["filename"])]
    if not found:
        raise LookupError(f"{index} lists no cp313 or abi3 linux_aarch64 wheel of {name}")
    url: str = found[-1]
    return urllib.parse.urljoin(f"{index}/simple/{name}/", url)  # PEP 691: relative to the page


def read_wheel(index: str, name: str) -> dict[str, object]:
    """The published wheel taken back: each .so's ELF machine, each library's SASS/PTX."""
    with tempfile.TemporaryDirectory() as tmp:
        url = wheel_url(index, name)
        path = Path(tmp) / urllib.parse.unquote(url.rsplit("/", 1)[-1].split("#")[0])
        urllib.request.urlretrieve(url, path)
        kernels = libraries(path)
        with zipfile.ZipFile(path) as zf:
            machines = {n: int.from_bytes(zf.read(n)[18:20], "little") for n in zf.namelist() if n.endswith(".so")}
        return {
            "wheel": path.name,
            "bytes": path.stat().st_size,
            "all_aarch64": all(m == AARCH64 for m in machines.values()),
            "libraries": kernels,
        }


def import_check(index: str, names: list[str]) -> dict[str, object]:
    """The built wheels from the index into a venv (system site-packages: the image's torch) of the
    sysroot image, in an arm64 container under qemu; then PyPI's own torchvision beside that torch."""
    pins = " ".join(f"{n}=={PINS[n]}" for n in names)
    code = "\n".join(f"try:\n    {CHECKS[n]}\nexcept Exception as e:\n    print({n!r}, 'FAILED:', e)" for n in names)
    host = re.sub(r"^https?://", "", index).split("/")[0].split(":")[0]
    script = (
        "set -e; python3 -m venv --system-site-packages /v; "
        f"/v/bin/pip install -q --no-deps --index-url {index}/simple/ --trusted-host {host} {pins}; "
        # torchvision imports PIL (its one runtime requirement the image lacks), from PyPI in both venvs
        "/v/bin/pip install -q pillow; "
        'echo "$OURS" > /o.py; /v/bin/python /o.py; '
        "python3 -m venv --system-site-packages /p; "
        "/p/bin/pip install -q --no-deps --index-url https://pypi.org/simple/ torchvision==0.21.0 pillow; "
        "/p/bin/pip list 2>/dev/null | grep -i torchvision; "
        'echo "$PYPI" > /p.py; /p/bin/python /p.py'
    )
    pypi = f"try:\n    {CHECKS['torchvision']}\nexcept Exception as e:\n    print('PyPI torchvision FAILED:', e)"
    cert = ["-v", f"{CA}:/ca.crt:ro", "-e", "PIP_CERT=/ca.crt"] if os.path.exists(CA) else []
    argv = ["podman", "run", "--rm", "--arch", "arm64", "--network=host", *cert, "-e", f"OURS={code}"]
    argv += ["-e", f"PYPI={pypi}", IMAGE, "bash", "-c", script]
    start = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True)
    printed = [x for x in done.stdout.splitlines() if x.strip() and not x.startswith("  ")]
    # pip's complaints go to stderr (vLLM installed without its dependency tree: dozens of lines);
    # what the checks print is stdout, kept whole
    errors = [x for x in done.stderr.splitlines() if x.strip() and not x.startswith("  ")]
    seconds = round(time.monotonic() - start)
    return {"import": names, "exit": done.returncode, "seconds": seconds, "said": printed, "stderr_tail": errors[-5:]}


def record(entry: dict[str, object]) -> None:
    entry = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **entry}
    with RESULTS.open("a") as f:
        f.write(json.dumps(entry) + "\n")
    print(json.dumps(entry, indent=1), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="+", choices=sorted(PINS))
    ap.add_argument("--index", required=True, help="the index the builds publish to (its URL)")
    ap.add_argument("--sources", default="", help="the source archives' directory")
    ap.add_argument("--import-only", action="store_true")
    args = ap.parse_args()
    index = args.index.rstrip("/")
    built = []
    for name in args.names:
        entry = {"build": name, "exit": 0, "built_now": False} if args.import_only else build(name, index, args.sources)
        if entry["exit"] == 0:
            try:  # the build's record is written whatever reading its wheel back does
                entry.update(read_wheel(index, name))
                built.append(name)
            except (OSError, LookupError) as e:
                entry["read_error"] = str(e)
        record(entry)
    if built:
        record(import_check(index, built))


if __name__ == "__main__":
    main()
