"""Index benchmarks, every ratio against a peer started in the same run, 127.0.0.1 only, bounded.

- /simple/<project>/ requests/s at 50 connections, 200 files: ours vs pypiserver (gunicorn, its best server) and vs
  nginx serving `index.export` output (wrk, 5 s each).
- 1 GiB download throughput: ours vs nginx; our server's RSS before and after.
- the same page and download through `index.serve --nginx` (nginx in front, reading the tree the store keeps
  rendered) vs plain nginx serving a copy of the same files: both up at once, measured in alternation, ROUNDS
  rounds each, means compared.
- a 500 MB twine upload: our server's RSS growth (streamed, never buffered whole).
- bytes on the wire for `pip install --dry-run --report` of a 3-package stack: ours (PEP 658) vs
  pypiserver (which has no metadata files, so pip downloads the wheels).

    python bench/index.py
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from wheelmaker import make_wheel  # noqa: E402

from jetwheel.index.front.export import export  # noqa: E402
from jetwheel.index.server.config import add_user  # noqa: E402
from jetwheel.index.store.store import Store  # noqa: E402
from jetwheel.pipcmd import clean_pip_env  # noqa: E402

USER, PASSWORD = "bench", "bench"
ROUNDS = 3
PIP_ENV = clean_pip_env(os.environ)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url, timeout=2).close()
            return
        time.sleep(0.2)
    raise TimeoutError(url)


@contextlib.contextmanager
def process(cmd: list[str], url: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(url)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def rss_kib(pid: int) -> int:
    """RSS of a process and its children (our server's workers)."""
    total = 0
    pids = [pid] + [
        int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    ]
    for p in pids:
        with contextlib.suppress(OSError), open(f"/proc/{p}/status") as f:
            total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return total


def wrk(url: str, seconds: int = 5) -> float:
    out = subprocess.run(
        ["wrk", "-t2", "-c50", f"-d{seconds}s", "-H", "Accept: text/html", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{url}: {non2xx.group(1)} error responses")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def download_mb_s(url: str) -> float:
    started = time.perf_counter()
    n = 0
    with urllib.request.urlopen(url) as r:
        while chunk := r.read(4 << 20):
            n += len(chunk)
    return n / (time.perf_counter() - started) / 1e6


def big_wheel(dest: Path, name: str, size: int, requires: tuple[str, ...] = ()) -> Path:
    """A valid wheel whose payload is `size` random bytes, stored (incompressible), written streaming."""
    dest.mkdir(parents=True, exist_ok=True)
    small = make_wheel(dest, name, "1.0", requires=requires)
    path = dest / f"{name.replace('-', '_')}-1.0-py3-none-any.whl"
    tmp = dest / "big.tmp"
    with zipfile.ZipFile(small) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as out:
        for item in src.namelist():
            out.writestr(item, src.read(item))
        with out.open(f"{name.replace('-', '_')}/blob.bin", "w", force_zip64=True) as blob:
            left = size
            while left > 0:
                chunk = os.urandom(min(left, 8 << 20))
                blob.write(chunk)
                left -= len(chunk)
    os.replace(tmp, path)
    return path


class CountingProxy:
    """Forwards one port to another and counts the bytes sent back to the client."""

    def __init__(self, target_port: int) -> None:
        self.target, self.port, self.down = target_port, free_port(), 0
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result()

    async def _start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, count: bool) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await r.read(1 << 16):
                if count:
                    self.down += len(data)
                w.write(data)
                await w.drain()
        w.close()

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection("127.0.0.1", self.target)
        await asyncio.gather(self._pipe(r, uw, False), self._pipe(ur, w, True))


def pip_dry_run_bytes(port: int, tmp: Path) -> int:
    proxy = CountingProxy(port)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--no-cache-dir",
            "--report",
            str(tmp / "r.json"),
            "--index-url",
            f"http://127.0.0.1:{proxy.port}/simple/",
            "stack-top",
        ],
        check=True,
        env=PIP_ENV,
    )
    return proxy.down


def serve_cmd(root: Path, htpasswd: Path, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "jetwheel",
        "index.serve",
        "--root",
        str(root),
        "--port",
        str(port),
        "--htpasswd",
        str(htpasswd),
        "--upstream",
        "",
    ]


def main() -> int:
    if not shutil.which("wrk") or not shutil.which("nginx"):
        sys.exit("bench/index.py needs wrk and nginx (apt-get install wrk nginx-light)")
    with tempfile.TemporaryDirectory(prefix="jetwheel-bench-") as t:
        tmp = Path(t)
        tmp.chmod(0o755)  # as root, the front's nginx workers run as nobody, who must reach the store
        root, ht = tmp / "packages", tmp / "htpasswd"
        add_user(ht, USER, PASSWORD)
        store = Store(root)
        wheels = tmp / "wheels"
        wheels.mkdir()
        for i in range(200):
            store.add_file(make_wheel(wheels, "busy-project", f"1.{i}"))
        # a 3-package stack of 5 MB wheels for the bytes-on-the-wire comparison
        for name, req in (("stack-top", ("stack-mid",)), ("stack-mid", ("stack-base",)), ("stack-base", ())):
            store.add_file(big_wheel(wheels / name, name, 5 << 20, req))
        gib = big_wheel(tmp, "gib-blob", 1 << 30)
        store.add_file(gib)
        ours_port, pps_port, nginx_port, front_port = free_port(), free_port(), free_port(), free_port()
        ours_cmd, front_cmd = serve_cmd(root, ht, ours_port), [*serve_cmd(root, ht, front_port), "--nginx"]
        pps_cmd = [
            sys.executable,
            "-m",
            "pypiserver",
            "run",
            "-p",
            str(pps_port),
            "-i",
            "127.0.0.1",
            "-a",
            ".",
            "-P",
            ".",
            "--server",
            "gunicorn",
            str(root),
        ]
        export(store, tmp / "export", nginx_port)
        conf = tmp / "nginx-main.conf"
        conf.write_text(
            f"user root; daemon off; worker_processes auto; pid {tmp}/nginx.pid; error_log {tmp}/e.log;\n"
            f"events {{}}\nhttp {{ access_log off; include /etc/nginx/mime.types;\n"
            f"client_body_temp_path {tmp}; include {tmp}/export/nginx.conf; }}\n"
        )
        page = "/simple/busy-project/"
        results: dict[str, float] = {}
        with process(ours_cmd, f"http://127.0.0.1:{ours_port}/health") as ours:
            results["ours_rps"] = wrk(f"http://127.0.0.1:{ours_port}{page}")
            idle = rss_kib(ours.pid)
            results["ours_gib"] = download_mb_s(f"http://127.0.0.1:{ours_port}/packages/{gib.name}")
            after_dl = rss_kib(ours.pid)
            half = big_wheel(tmp / "up", "upload-blob", 500 << 20)
            peak = [idle]
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    peak.append(rss_kib(ours.pid))
                    time.sleep(0.05)

            sampler = threading.Thread(target=sample)
            sampler.start()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "twine",
                    "upload",
                    "--non-interactive",
                    "--disable-progress-bar",
                    "--repository-url",
                    f"http://127.0.0.1:{ours_port}/",
                    "-u",
                    USER,
                    "-p",
                    PASSWORD,
                    str(half),
                ],
                check=True,
                capture_output=True,
            )
            done.set()
            sampler.join()
            results["ours_bytes"] = pip_dry_run_bytes(ours_port, tmp)
        with process(pps_cmd, f"http://127.0.0.1:{pps_port}/simple/"):
            results["pps_rps"] = wrk(f"http://127.0.0.1:{pps_port}{page}")
            results["pps_bytes"] = pip_dry_run_bytes(pps_port, tmp)
        with (
            process(["nginx", "-c", str(conf), "-p", str(tmp)], f"http://127.0.0.1:{nginx_port}/simple/"),
            process(front_cmd, f"http://127.0.0.1:{front_port}/health"),
        ):
            peers = (("nginx", nginx_port), ("front", front_port))
            for key in ("nginx_rps", "front_rps", "nginx_gib", "front_gib"):
                results[key] = 0.0
            for _ in range(ROUNDS):
                for name, port in peers:
                    results[f"{name}_rps"] += wrk(f"http://127.0.0.1:{port}{page}") / ROUNDS
                for name, port in peers:
                    results[f"{name}_gib"] += download_mb_s(f"http://127.0.0.1:{port}/packages/{gib.name}") / ROUNDS
    r = results
    print(
        f"/simple/<project>/ (200 files), 50 conns: ours {r['ours_rps']:.0f} req/s, pypiserver(gunicorn) "
        f"{r['pps_rps']:.0f}, nginx {r['nginx_rps']:.0f}"
    )
    print(
        f"  ratio ours/pypiserver: {r['ours_rps'] / r['pps_rps']:.1f}x   "
        f"ours/nginx: {r['ours_rps'] / r['nginx_rps']:.2f}x (target >= 0.5x)"
    )
    print(
        f"1 GiB download: ours {r['ours_gib']:.0f} MB/s, nginx {r['nginx_gib']:.0f} MB/s, ratio "
        f"{r['ours_gib'] / r['nginx_gib']:.2f}x (target >= 0.9x); server RSS {idle / 1024:.0f} -> "
        f"{after_dl / 1024:.0f} MiB"
    )
    print(
        f"nginx front (index.serve --nginx) vs plain nginx, same files, {ROUNDS} alternating rounds: page "
        f"{r['front_rps']:.0f} vs {r['nginx_rps']:.0f} req/s = {r['front_rps'] / r['nginx_rps']:.2f}x; 1 GiB "
        f"{r['front_gib']:.0f} vs {r['nginx_gib']:.0f} MB/s = {r['front_gib'] / r['nginx_gib']:.2f}x "
        "(target >= 0.9x both)"
    )
    print(f"500 MB twine upload: server RSS peak +{(max(peak) - idle) / 1024:.0f} MiB over idle (target < 100 MiB)")
    print(
        f"pip --dry-run --report, 3-package stack: ours {r['ours_bytes'] / 1e3:.0f} kB on the wire, pypiserver "
        f"{r['pps_bytes'] / 1e3:.0f} kB, ratio {r['ours_bytes'] / r['pps_bytes']:.3f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
