"""Request-path CPU of the index server (issue 28's evidence): this checkout's server against an older
commit's, measured in the same run, on the same requests, in alternation.

Each tree serves its own copy of one store (the same wheels; each derives its records with its own
code) from one worker process, started from that tree with `python -m jetwheel index.serve`. Per
round and tree, the same workload is sent over one keep-alive connection, and the CPU time the
server's process spent (user + system, /proc/<pid>/stat) is read before and after it. Two workloads:
- reads: the simple pages (root and project, PEP 691 JSON and HTML), METADATA, a file's record, the
  status summary and the home page, READS times each;
- uploads: UPLOADS new wheels (twine's multipart with its name and digests, tests/uploads.py; an
  admin's), each one committed and then its project page read (rendered anew after every change).
CPU time, not wall time: the ratio holds on a busy machine (this one shares its cores).

    PYTHONPATH=$PWD python3 bench/index_cpu.py [--rounds N] [BEFORE_TREE ...]

BEFORE_TREE defaults to /tmp/h28-before (git worktree add /tmp/h28-before b778d8d). Name it twice for
a null control: its second server (before1) against its first shows what the noise alone gives.
"""

from __future__ import annotations

import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
AFTER = HERE.parent
sys.path.insert(0, str(HERE.parent / "tests"))

from conftest import free_port  # noqa: E402
from uploads import basic, upload_request  # noqa: E402
from wheelmaker import make_wheel  # noqa: E402

from jetwheel.errors import JetwheelError  # noqa: E402
from jetwheel.index.server.config import add_user  # noqa: E402
from jetwheel.workflow.serve import wait_ready  # noqa: E402

USER, PASSWORD = "bench", "bench"
ROUNDS = 9
READS = 400  # of each read request, per round
UPLOADS = 30  # per round
PROJECTS = 40  # with FILES versions each
FILES = 5
TICK = os.sysconf("SC_CLK_TCK")
AUTH = basic(USER, PASSWORD)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (threads included)


class Served:
    def __init__(self, tree: Path, root: Path, work: Path) -> None:
        htpasswd, config = work / f"{root.name}.htpasswd", work / f"{root.name}.toml"
        add_user(htpasswd, USER, PASSWORD)
        config.write_text(f'[index.roles]\n{USER} = "admin"\n')
        self.port = free_port()
        cmd = [sys.executable, "-m", "jetwheel", "index.serve", "--config", str(config), "--root", str(root)]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port), "--htpasswd", str(htpasswd), "--upstream", ""]
        env = {**os.environ, "PYTHONPATH": str(tree)}
        self.proc = subprocess.Popen(
            [*cmd, "--workers", "1"], cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_ready(f"http://127.0.0.1:{self.port}", self.proc, timeout=60)
        except JetwheelError as e:  # its output goes nowhere: say which tree's server it was
            raise RuntimeError(f"the server of {tree} did not start: {e}") from None
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def get(self, path: str, accept: str = "*/*") -> bytes:
        self.conn.request("GET", path, headers={"Accept": accept})
        r = self.conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError(f"GET {path}: {r.status} {body[:200]!r}")
        return body

    def upload(self, wheel: Path) -> None:
        name, version = wheel.name.split("-")[:2]
        body, headers = upload_request(wheel.read_bytes(), wheel.name, AUTH, name, version)
        self.conn.request("POST", "/", body=body, headers=headers)
        r = self.conn.getresponse()
        text = r.read()
        if r.status != 200:
            raise RuntimeError(f"upload {wheel.name}: {r.status} {text[:200]!r}")

    def stop(self) -> None:
        self.conn.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def reads(s: Served, files: list[str]) -> None:
    json_v1, html_v1 = "application/vnd.pypi.simple.v1+json", "application/vnd.pypi.simple.v1+html"
    for i in range(READS):
        project = f"bench-p{i % PROJECTS}"
        s.get("/simple/", json_v1)
        s.get(f"/simple/{project}/", json_v1)
        s.get(f"/simple/{project}/", html_v1)
        f = files[i % len(files)]
        s.get(f"/packages/{f}.metadata")
        s.get(f"/api/files/{f}")
        if i % 10 == 0:
            s.get("/api/status")
            s.get("/")


def uploads(s: Served, wheels: list[Path]) -> None:
    for w in wheels:
        s.upload(w)
        s.get("/simple/bench-up/", "application/vnd.pypi.simple.v1+json")


def main() -> None:
    global ROUNDS
    args = sys.argv[1:]
    if args[:1] == ["--rounds"]:
        ROUNDS, args = int(args[1]), args[2:]
    befores = [Path(a).resolve() for a in args] or [Path("/tmp/h28-before")]
    trees = {"before": befores[0], **{f"before{i + 1}": t for i, t in enumerate(befores[1:])}, "after": AFTER}
    for name, tree in trees.items():
        git = ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"]
        commit = subprocess.run(git, capture_output=True, text=True)
        print(f"{name}: {tree} at {commit.stdout.strip()}")
    with tempfile.TemporaryDirectory(prefix="jetwheel-cpu-") as tmp:
        work = Path(tmp)
        seed, up = work / "seed", work / "up"
        seed.mkdir()
        up.mkdir()
        files = [
            make_wheel(seed, f"bench-p{p}", f"1.{v}", requires=("numpy>=1",)).name
            for p in range(PROJECTS)
            for v in range(FILES)
        ]
        batches = []  # each store gets the same new files
        for r in range(ROUNDS):
            (up / str(r)).mkdir()
            batches.append([make_wheel(up / str(r), "bench-up", f"{r}.{i}") for i in range(UPLOADS)])
        served = {}
        for name, tree in trees.items():
            root = work / f"store-{name}"
            shutil.copytree(seed, root)
            served[name] = Served(tree, root, work)
        try:
            for s in served.values():  # warm: records derived, pages rendered once
                reads(s, files)
            cpu: dict[tuple[str, str], list[float]] = {}
            for r in range(ROUNDS):
                order = list(trees)[r % len(trees) :] + list(trees)[: r % len(trees)]  # each goes first in turn
                for name in order:
                    s = served[name]
                    t0 = cpu_seconds(s.proc.pid)
                    reads(s, files)
                    t1 = cpu_seconds(s.proc.pid)
                    uploads(s, batches[r])
                    cpu.setdefault(("reads", name), []).append(t1 - t0)
                    cpu.setdefault(("uploads", name), []).append(cpu_seconds(s.proc.pid) - t1)
        finally:
            for s in served.values():
                s.stop()
    nreads = READS * 5 + 2 * (READS // 10)
    controls = [name for name in trees if name not in ("before", "after")]  # before1...: the same tree again
    pairs = [("after", "before"), *(("after", c) for c in controls), *((c, "before") for c in controls)]
    for load, n in (("reads", nreads), ("uploads", UPLOADS)):
        means = ", ".join(f"{name} {statistics.mean(cpu[load, name]):.3f} s" for name in trees)
        print(f"{load} ({n} requests/round, {ROUNDS} rounds), server CPU per round: {means}")
        for x, y in pairs:
            a, b = cpu[load, x], cpu[load, y]
            ratios = [p / q for p, q in zip(a, b, strict=True) if q]
            print(
                f"  {x}/{y} {sum(a) / sum(b):.3f}, median of the rounds' ratios {statistics.median(ratios):.3f} "
                f"({', '.join(f'{r:.2f}' for r in ratios)})"
            )


if __name__ == "__main__":
    main()
