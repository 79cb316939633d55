"""What six upload users' zip bombs cost everyone else (issue 29), against a real `index.serve` on
127.0.0.1, every number against a peer measured in the same run:

- `GET /packages/<file>` (a 1 MiB wheel) and a builder's 1 kB upload: latency with nobody else on
  the server, then while six upload users keep uploading bombs; the ratio of the two.
- one bomb of the issue's kind (a few kB declaring 1 GiB): its answer and the server CPU it costs,
  and one wheel at the most an upload may inflate (64 MiB of zeros from ~65 kB): the same.

    python bench/index_bombs.py [SECONDS_PER_PHASE]
"""

from __future__ import annotations

import http.client
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from conftest import free_port  # noqa: E402
from uploads import basic, upload_request  # noqa: E402
from wheelmaker import make_wheel, zeros_wheel  # noqa: E402

from jetwheel.index.server.config import add_user  # noqa: E402
from jetwheel.workflow.serve import wait_ready  # noqa: E402

BOMBERS = 6
SAMPLES = 20
PHASE = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
TMP = Path(tempfile.mkdtemp(prefix="jw-bombs-"))


def request(
    port: int, method: str, path: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, float]:
    start = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request(method, path, data, headers or {})
    r = c.getresponse()
    r.read()
    c.close()
    return r.status, time.monotonic() - start


def upload(port: int, user: str, filename: str, data: bytes) -> tuple[int, float]:
    body, headers = upload_request(data, filename, basic(user, f"{user}-pw"), filename.split("-")[0])
    return request(port, "POST", "/", body, headers)


def cpu_seconds(pid: int) -> float:
    """CPU seconds of the process and its children (the CLI may run the server in one)."""
    total = 0.0
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    for p in (pid, *map(int, children)):
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks
    return total


def measure(port: int, tag: str, served: str) -> tuple[list[float], list[float]]:
    gets, ups = [], []
    for i in range(SAMPLES):
        st, t = request(port, "GET", f"/packages/{served}")
        assert st == 200, st
        gets.append(t)
        if i % 4 == 0:
            name = f"fine_{tag}_{i}"
            w = make_wheel(TMP / "w", name.replace("_", "-"), "1.0")
            st, t = upload(port, "builder", w.name, w.read_bytes())
            assert st == 200, st
            ups.append(t)
        time.sleep(PHASE / SAMPLES)
    return gets, ups


def bomber(port: int, n: int, until: float, statuses: list[int]) -> None:
    data = zeros_wheel(f"bomb{n}", 63 << 20)  # the first is stored, the rest refused as existing: checked alike
    while time.monotonic() < until:
        statuses.append(upload(port, "up", f"bomb{n}-1.0-py3-none-any.whl", data)[0])


def start(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    ht = tmp / "htpasswd"
    for user in ("up", "builder"):
        add_user(ht, user, f"{user}-pw")
    (tmp / "config.toml").write_text('[index]\n[index.roles]\nbuilder = "builder"\n')
    port = free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "jetwheel", "index.serve", "--config", str(tmp / "config.toml")),
            *("--root", str(tmp / "packages"), "--host", "127.0.0.1", "--port", str(port), "--htpasswd", str(ht)),
        ]
    )
    wait_ready(f"http://127.0.0.1:{port}", proc)
    return proc, port


def ms(xs: list[float]) -> str:
    return f"median {statistics.median(xs) * 1000:.0f} ms, max {max(xs) * 1000:.0f} ms"


def main() -> None:
    proc, port = start(TMP)
    try:
        (TMP / "w").mkdir()
        served = make_wheel(TMP / "w", "served", "1.0", payload=1 << 20)
        assert upload(port, "builder", served.name, served.read_bytes())[0] == 200
        upload(port, "up", "login-1.0-py3-none-any.whl", b"x")  # log in once: remembered from now on
        issue_bomb = zeros_wheel("bomb", 1 << 30)
        cpu = cpu_seconds(proc.pid)
        st, t = upload(port, "up", "bomb-1.0-py3-none-any.whl", issue_bomb)
        print(
            f"a {len(issue_bomb)}-byte wheel declaring 1 GiB: {st} in {t * 1000:.0f} ms, "
            f"server CPU {cpu_seconds(proc.pid) - cpu:.2f} s"
        )
        most = zeros_wheel("most", 63 << 20)
        cpu = cpu_seconds(proc.pid)
        st, t = upload(port, "up", "most-1.0-py3-none-any.whl", most)
        print(
            f"a {len(most)}-byte wheel inflating to 63 MiB (about the most an upload buys): {st} in {t * 1000:.0f} ms, "
            f"server CPU {cpu_seconds(proc.pid) - cpu:.2f} s"
        )
        quiet_gets, quiet_ups = measure(port, "quiet", served.name)
        statuses: list[int] = []
        until = time.monotonic() + PHASE + 2
        threads = [threading.Thread(target=bomber, args=(port, n, until, statuses)) for n in range(BOMBERS)]
        for th in threads:
            th.start()
        time.sleep(1)
        busy_gets, busy_ups = measure(port, "busy", served.name)
        for th in threads:
            th.join()
        print(f"GET /packages/<1 MiB wheel>, alone: {ms(quiet_gets)}; with {BOMBERS} bombers: {ms(busy_gets)}")
        print(f"builder's 1 kB upload, alone: {ms(quiet_ups)}; with {BOMBERS} bombers: {ms(busy_ups)}")
        counts = ", ".join(f"{s}: {statuses.count(s)}" for s in sorted(set(statuses)))
        print(f"bomb uploads answered meanwhile: {len(statuses)} ({counts})")
        ratio = statistics.median(busy_gets) / statistics.median(quiet_gets)
        print(
            f"ratio GET median with bombs / without: {ratio:.2f}x; "
            f"worst GET {max(busy_gets) * 1000:.0f} ms, worst builder upload {max(busy_ups) * 1000:.0f} ms "
            "(target < 500 ms)"
        )
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    try:
        main()
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
