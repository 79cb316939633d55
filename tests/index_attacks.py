"""Re-run issue 12's and issue 18's attack cases against a real `jetwheel index.serve` on loopback
(not collected by pytest: each case also has a test; this is the whole attack in one go, with numbers).

    python3 tests/index_attacks.py SCRATCH_DIR     # needs root for the tmpfs of the full-disk case
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wheelmaker import make_wheel, zeros_wheel

from jetwheel.index.server.config import add_user
from jetwheel.workflow.serve import wait_ready

TMP = Path(sys.argv[1])
results: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    results.append((name, ok, detail))
    print(f"{'HELD' if ok else 'FAIL'}  {name}  {detail}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def req(
    url: str,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    method: str | None = None,
    timeout: float = 30,
) -> tuple[int, bytes]:
    r = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(r, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def basic(u: str | bytes, p: str | bytes) -> str:
    raw = (u if isinstance(u, bytes) else u.encode()) + b":" + (p if isinstance(p, bytes) else p.encode())
    return "Basic " + base64.b64encode(raw).decode()


def multipart(fields: dict[str, str], filename: str | bytes, content: bytes) -> bytes:
    b = "xXx"
    body = b"".join(
        f'--{b}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    )
    name = filename if isinstance(filename, bytes) else filename.encode()
    body += (
        f'--{b}\r\nContent-Disposition: form-data; name="content"; filename="'.encode()
        + name
        + b'"\r\nContent-Type: application/octet-stream\r\n\r\n'
        + content
        + b"\r\n"
    )
    return body + f"--{b}--\r\n".encode()


def rss(pid: int) -> int:
    total = 0
    for p in [
        pid,
        *[int(c) for c in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()],
    ]:
        try:
            with open(f"/proc/{p}/status") as f:
                total += sum(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
        except OSError:
            pass
    return total


def serve(root: Path, *extra: str, nofile: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    ht = TMP / "htpasswd"
    if not ht.exists():
        add_user(ht, "admin", "admin-pw")
        add_user(ht, "up", "up-pw")
        add_user(ht, "builder", "builder-pw")
        (TMP / "config.toml").write_text(
            '[index]\nowned = ["torch", "pytorch-triton"]\n[index.roles]\nadmin = "admin"\nbuilder = "builder"\n'
        )
    port = free_port()

    def limit() -> None:
        if nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "jetwheel", "index.serve", "--config", str(TMP / "config.toml")),
            *("--root", str(root), "--host", "127.0.0.1", "--port", str(port), "--htpasswd", str(ht)),
            *("--upstream", "", *extra),
        ],
        preexec_fn=limit,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc)
    return proc, url


UP = basic("up", "up-pw")
ADMIN = basic("admin", "admin-pw")
CT = "multipart/form-data; boundary=xXx"


def upload(url: str, filename: str | bytes, data: bytes, auth: str = UP, **fields: str) -> tuple[int, bytes]:
    f = {":action": "file_upload", "sha256_digest": hashlib.sha256(data).hexdigest(), **fields}
    return req(url + "/", multipart(f, filename, data), {"Authorization": auth, "Content-Type": CT}, "POST")


def main() -> None:
    root = TMP / "packages"
    proc, url = serve(root, "--workers", "1", nofile=1024)
    good = make_wheel(TMP, "demo-pkg", "1.0").read_bytes()

    # 1. /profiles/<name> with a Host pointing at a tarpit: the server connects nowhere
    tarpit = socket.socket()
    tarpit.bind(("127.0.0.1", 0))
    tarpit.listen(100)
    tarpit.settimeout(0.1)
    tp = tarpit.getsockname()[1]
    for name in ("mini", "triton-25.04", "nope"):
        req(url + f"/profiles/{name}", headers={"Host": f"127.0.0.1:{tp}"})
    time.sleep(3)
    try:
        tarpit.accept()
        connected = True
    except TimeoutError:
        connected = False
    check("profiles page: no connection to the Host header's address", not connected)
    t0 = time.monotonic()
    st, _ = upload(url, "demo_pkg-1.0-py3-none-any.whl", good)
    check(
        "upload not stalled by profile requests",
        st == 200 and time.monotonic() - t0 < 5,
        f"{st} {time.monotonic() - t0:.2f}s",
    )

    # 2. 3,000 different Host headers: caches do not grow
    before = rss(proc.pid)
    for i in range(3000):
        req(url + ("/", "/profiles/mini", "/simple/")[i % 3], headers={"Host": f"h{i}.example.com"})
    grew = rss(proc.pid) - before
    check("3,000 Host headers: memory flat", grew < 5000, f"+{grew} kB")

    # 3. six password guessers: /health stays fast
    stop = threading.Event()

    def guess(n: int) -> None:
        while not stop.is_set():
            req(url + "/", b"x", {"Authorization": basic("admin", f"g{n}{time.time()}"), "Content-Type": CT}, "POST")

    guessers = [threading.Thread(target=guess, args=(n,)) for n in range(6)]
    for g in guessers:
        g.start()
    time.sleep(1)
    lat = []
    for _ in range(100):
        t = time.monotonic()
        req(url + "/health")
        lat.append(time.monotonic() - t)
    stop.set()
    for g in guessers:
        g.join()
    extra = 0
    while True:
        st, body = req(url + "/", b"x", {"Authorization": basic("admin", "guess"), "Content-Type": CT}, "POST")
        if st == 429 or extra > 12:
            break
        extra += 1
    st2, _ = req(url + "/", b"x", {"Authorization": ADMIN, "Content-Type": CT}, "POST")
    check(
        "six guessers: /health fast, guessing throttled (429)",
        max(lat) < 0.3 and st == 429 and st2 == 429,
        f"health max {max(lat) * 1000:.0f} ms, median {statistics.median(lat) * 1000:.1f} ms; "
        f"429 after {extra} more guesses, right password too: {st2}",
    )

    # 4. timing does not tell which users exist (fresh server: no throttle state)
    proc.terminate()
    proc.wait()
    proc, url = serve(root, "--workers", "1", nofile=1024)

    def t_of(user: str) -> float:
        t = time.monotonic()
        req(url + "/", b"x", {"Authorization": basic(user, "wrong"), "Content-Type": CT}, "POST")
        return time.monotonic() - t

    known, unknown = [], []
    for i in range(4):  # interleaved, so that the machine's load hits both alike
        known.append(t_of("admin"))
        unknown.append(t_of(f"nobody{i}"))
    ratio = statistics.median(unknown) / statistics.median(known)
    check(
        "unknown vs known user: same time",
        0.6 < ratio < 1.6,
        f"known {statistics.median(known) * 1000:.0f} ms, unknown {statistics.median(unknown) * 1000:.0f} ms",
    )

    # 5-6. long names; a 250-character .metadata path
    statuses = []
    for n in range(236, 256):
        fn = "a" * (n - len("-1.0-py3-none-any.whl")) + "-1.0-py3-none-any.whl"
        w = make_wheel(TMP, fn.split("-")[0], "1.0").read_bytes()
        statuses.append(upload(url, fn, w)[0])
    check(
        "wheel names of 236-255 bytes: 200 up to 240, then 400",
        statuses == [200] * 5 + [400] * 15,
        str(sorted(set(statuses))),
    )
    st, _ = req(url + "/packages/" + "m" * 241 + ".metadata")
    check("250-character .metadata path: 400", st == 400, str(st))

    # 7-8. NUL / 5,000-byte password
    for label, pw in (("NUL", "a\x00b"), ("5,000-byte", "p" * 5000)):
        st, _ = upload(url, "demo_pkg-1.1-py3-none-any.whl", good, auth=basic("up", pw))
        check(f"{label} password: 400", st == 400, str(st))

    # 9. 100,000-deep JSON provenance
    st, _ = upload(url, "demo_pkg-1.0-py3-none-any.whl", good, jetwheel_provenance="[" * 100_000 + "]" * 100_000)
    check("100,000-deep JSON: 400", st == 400, str(st))

    # 11. METADATA inflating to 1 GiB
    buf = io.BytesIO()
    with (
        zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf,
        zf.open("bomb-1.0.dist-info/METADATA", "w", force_zip64=True) as f,
    ):
        f.write(b"Metadata-Version: 2.1\nName: bomb\nVersion: 1.0\nSummary: ")
        for _ in range(1024):
            f.write(b" " * (1 << 20))
    before = rss(proc.pid)
    st, _ = upload(url, "bomb-1.0-py3-none-any.whl", buf.getvalue())
    grew = rss(proc.pid) - before
    listed = b"bomb" in req(url + "/simple/")[1]
    check(
        "METADATA inflating to 1 GiB: refused, not stored, memory flat",
        st == 413 and not listed and grew < 50_000,
        f"{st}, +{grew} kB",
    )

    # 12. non-UTF-8 artifact name
    st, _ = upload(url, b"nvpl_\xff.tar", b"x" * 100, jetwheel_artifact="1")
    stored = any(not n.isascii() for n in os.listdir(os.fsencode(root)) if isinstance(n, bytes) and b"\xff" in n)
    home = req(url + "/")[0]
    check(
        "non-UTF-8 artifact name: 400, not stored, home page 200",
        st == 400 and not stored and home == 200,
        f"{st} home {home}",
    )

    # 13. symlinks in the root
    os.symlink("/etc/passwd", root / "passwd.tar")
    st, body = req(url + "/packages/passwd.tar")
    check("symlink in the root: not served", st == 404 and b"root:" not in body, str(st))

    # 15. an upload user may not delete; an admin may
    st1 = req(
        url + "/api/files/demo_pkg-1.0-py3-none-any.whl",
        b"{}",
        {"Authorization": UP, "Content-Type": "application/json"},
        "DELETE",
    )[0]
    st2 = req(
        url + "/api/files/demo_pkg-1.0-py3-none-any.whl",
        b"{}",
        {"Authorization": ADMIN, "Content-Type": "application/json"},
        "DELETE",
    )[0]
    check("delete: upload role 403, admin 200", (st1, st2) == (403, 200), f"{st1} {st2}")

    # 14. 1,100 idle connections under a 1,024 open-file limit
    socks = []
    for _ in range(1100):
        try:
            socks.append(socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=5))
        except OSError:
            break
    time.sleep(1)
    for s in socks:
        s.close()
    time.sleep(1)
    st, _ = req(url + "/health", timeout=10)
    check(
        "1,100 idle connections (ulimit -n 1024): server still answers",
        st == 200 and proc.poll() is None,
        f"opened {len(socks)}",
    )
    proc.terminate()
    proc.wait()

    # 17. .tmp leftovers cleaned at start-up (an unlocked upload at once, other staged files once old)
    (root / ".jetwheel" / "tmp" / "upload-left.part").write_bytes(b"x")
    (root / ".jetwheel" / "tmp" / "derived-left").write_bytes(b"x")
    os.utime(root / ".jetwheel" / "tmp" / "derived-left", (time.time() - 3600,) * 2)
    (root / ".jetwheel" / "meta" / "gone.whl.json").write_bytes(b"{}")
    proc, url = serve(root, "--workers", "1")
    left = list((root / ".jetwheel" / "tmp").iterdir()) + list((root / ".jetwheel" / "meta").glob("gone*"))
    check("leftovers removed at start-up", not left, str(left))
    proc.terminate()
    proc.wait()

    # 10. full disk: a 2 MiB tmpfs
    small = TMP / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)], check=True)
    try:
        proc, url = serve(small / "p", "--workers", "1")
        big = make_wheel(TMP, "big-pkg", "1.0", extra={"big_pkg/blob": os.urandom(3 << 20)}).read_bytes()
        st, body = upload(url, "big_pkg-1.0-py3-none-any.whl", big)
        listed = b"big-pkg" in req(url + "/simple/")[1]
        st2, _ = upload(url, "demo_pkg-1.0-py3-none-any.whl", good)
        check(
            "full disk: 507 with a message, not listed, next upload fits",
            st == 507 and not listed and st2 == 200,
            f"{st} {body[:60]!r} then {st2}",
        )
        proc.terminate()
        proc.wait()
    finally:
        subprocess.run(["umount", str(small)])

    issue_18(root)
    issue_29(TMP / "packages29")
    held = sum(ok for _, ok, _ in results)
    print(f"\nattack cases: {len(results)} tried, {held} held")


BUILDER = basic("builder", "builder-pw")


def wheel(name: str, version: str, **kw: Any) -> Path:
    d = TMP / "w18" / f"{name}-{version}"
    d.mkdir(parents=True, exist_ok=True)
    return make_wheel(d, name, version, **kw)


def issue_18(root: Path) -> None:
    proc, url = serve(root, "--workers", "2")
    # 1. direct-URL Requires-Dist: refused, and nothing connects to the URL it names
    tarpit = socket.socket()
    tarpit.bind(("127.0.0.1", 0))
    tarpit.listen(10)
    tarpit.settimeout(5)
    evil = wheel("evil-dep", "1.0", requires=(f"evil @ http://127.0.0.1:{tarpit.getsockname()[1]}/evil-1.0.tar.gz",))
    st, body = upload(url, evil.name, evil.read_bytes())
    try:
        tarpit.accept()
        connected = True
    except TimeoutError:
        connected = False
    check("direct-URL Requires-Dist: 400, no connection", st == 400 and not connected, f"{st} {body[:90]!r}")

    # 2. owned names and cache keys: builders only; the listing names the role
    torch = wheel("torch", "2.7.0").read_bytes()
    claim = '{"cache_key": "k18"}'
    st1, _ = upload(url, "torch-2.7.0-py3-none-any.whl", torch, jetwheel_provenance=claim)
    st2, _ = upload(
        url, "demo_pkg-1.8-py3-none-any.whl", wheel("demo-pkg", "1.8").read_bytes(), jetwheel_provenance=claim
    )
    st3 = req(url + "/api/cache/k18")[0]
    st4, _ = upload(url, "torch-2.7.0-py3-none-any.whl", torch, auth=BUILDER, jetwheel_provenance=claim)
    st5, found = req(url + "/api/cache/k18")
    page = req(url + "/simple/torch/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})[1]
    check(
        "owned name by upload role 403, key claimed by upload role 404, builder 200, listing names the role",
        (st1, st2, st3, st4, st5) == (403, 200, 404, 200, 200)
        and b"torch-2.7.0" in found
        and b'"_jetwheel-published-by": "builder"' in page,
        f"{st1} {st2} {st3} {st4} {st5}",
    )

    # 4-5. look-alikes and disguised artifacts
    cyr = "t\u043erch"
    st1, b1 = upload(url, f"{cyr}-2.7.0-py3-none-any.whl", wheel(cyr, "2.7.0").read_bytes(), auth=BUILDER)
    st2, b2 = upload(
        url, "pytorch_triton-3.3.0-cp312-cp312-linux_aarch64.whl", b"PK\x05\x06" + bytes(18), jetwheel_artifact="1"
    )
    st3, _ = upload(url, "torch-2.7.0-src.tar.gz", b"x" * 100, jetwheel_artifact="1")
    check(
        "look-alike torch 400, wheel as artifact 400, owned artifact by upload role 403",
        (st1, st2, st3) == (400, 400, 403),
        f"{st1} {b1[:70]!r} {st2} {b2[:60]!r} {st3}",
    )

    # 3/8. tokens: a non-ASCII signature 401; --expires 36500d refused
    st = req(
        url + "/", b"x", {"Authorization": basic("x", "jw3.read.eA.99999999999.\u00e9"), "Content-Type": CT}, "POST"
    )[0]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "jetwheel",
            "index.token",
            "--read",
            "--root",
            str(root),
            "--user",
            "up",
            "--expires",
            "36500d",
        ],
        capture_output=True,
        text=True,
    )
    check(
        "non-ASCII token 401; --expires 36500d refused",
        st == 401 and out.returncode != 0 and "366d" in out.stderr,
        f"{st} {out.stderr.strip()[:80]}",
    )

    # 8. /packages/ serves distributions only; yank racing delete never 500
    (root / "htpasswd").write_text("admin:$2b$leak\n")
    st = req(url + "/packages/htpasswd", headers={"Authorization": ADMIN})[0]
    (root / "htpasswd").unlink()
    statuses = set()
    for i in range(20):
        fn = f"race_pkg-1.{i}-py3-none-any.whl"
        upload(url, fn, wheel("race-pkg", f"1.{i}").read_bytes())
        hdr = {"Authorization": ADMIN, "Content-Type": "application/json"}
        t = threading.Thread(
            target=lambda fn=fn, hdr=hdr: statuses.add(req(url + f"/api/files/{fn}/yank", b"{}", hdr, "POST")[0])
        )
        t.start()
        statuses.add(req(url + f"/api/files/{fn}", b"{}", hdr, "DELETE")[0])
        t.join()
    check(
        "/packages/htpasswd 404; yank racing delete: no 500",
        st == 404 and 500 not in statuses,
        f"{st} {sorted(statuses)}",
    )

    # 7. a second server starting on the store does not cut an upload in flight
    big = wheel("inflight", "1.0", payload=4_000_000).read_bytes()
    body = multipart(
        {":action": "file_upload", "sha256_digest": hashlib.sha256(big).hexdigest()},
        "inflight-1.0-py3-none-any.whl",
        big,
    )
    conn = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
    conn.sendall(
        f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: {UP}\r\nContent-Type: {CT}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[: len(body) // 2]
    )
    time.sleep(2)
    proc2, _ = serve(root, "--workers", "1")
    conn.sendall(body[len(body) // 2 :])
    answer = conn.recv(200)
    conn.close()
    proc2.terminate()
    proc2.wait()
    check("start-up cleanup spares an upload in flight", answer.startswith(b"HTTP/1.1 200"), repr(answer[:40]))

    # 8. a demoted admin loses yank at the next request
    cfg = TMP / "config.toml"
    saved = cfg.read_text()
    cfg.write_text(saved.replace('admin = "admin"', 'admin = "upload"'))
    os.utime(cfg, (time.time() + 2,) * 2)
    st = req(
        url + "/api/files/demo_pkg-1.8-py3-none-any.whl/yank",
        b"{}",
        {"Authorization": ADMIN, "Content-Type": "application/json"},
        "POST",
    )[0]
    cfg.write_text(saved)
    check("role change counts without a restart", st == 403, str(st))

    # issue 29: the NVPL tarball and source archives are the builders'; a user's project is theirs
    nv1, b1 = upload(url, "nvpl_slim_24.04.tar", b"evil" * 25, jetwheel_artifact="1")
    nv2, _ = upload(url, "nvpl_slim_24.04.tar", b"real" * 25, auth=BUILDER, jetwheel_artifact="1")
    src, _ = upload(url, "pytorch-triton-3.2.0-src.tar.gz", b"x" * 100, jetwheel_artifact="1")
    sub, _ = upload(url, "cutlass-3.8.0.tar.gz", b"x" * 100, auth=ADMIN, jetwheel_artifact="1")
    check(
        "issue 29: upload user's NVPL 403 and the builder's 200; src archive 403; admin's cutlass archive 200",
        (nv1, nv2, src, sub) == (403, 200, 403, 200),
        f"{nv1} {b1[:80]!r} {nv2} {src} {sub}",
    )
    proc.terminate()
    proc.wait()

    # 3. four workers creating the token key at once agree on one whole key
    fresh = TMP / "fresh18"
    proc, url = serve(fresh, "--workers", "4")
    key = (fresh / ".jetwheel" / "token.key").read_bytes()
    proc.terminate()
    proc.wait()
    (fresh / ".jetwheel" / "token.key").write_bytes(b"")
    bad = subprocess.run(
        [sys.executable, "-m", "jetwheel", "index.serve", "--root", str(fresh), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    check(
        "token key: 32 bytes from 4 workers; an empty one refused at start",
        len(key) == 32 and bad.returncode != 0 and "fewer than 32" in bad.stderr,
        bad.stderr.strip()[:100],
    )

    # 6. behind --nginx, one client's failed logins lock out that client only
    if shutil.which("nginx"):
        proc, url = serve(TMP / "front18", "--workers", "1", "--nginx")
        port = int(url.rsplit(":", 1)[1])

        def from_addr(src: str, password: str, forged: str = "") -> int:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(src, 0))
            h = {"Authorization": basic("up", password), "Content-Type": CT}
            if forged:
                h.update({"X-Real-IP": forged, "X-Jetwheel-Front": "guess"})
            c.request("POST", "/", b"x", h)
            st = c.getresponse().status
            c.close()
            return st

        for _ in range(10):
            from_addr("127.0.0.2", "wrong", forged="10.9.9.9")
        locked = from_addr("127.0.0.2", "up-pw")
        other = from_addr("127.0.0.3", "up-pw")
        check(
            "behind nginx: the guesser gets 429, another client does not (and forged X-Real-IP is ignored)",
            locked == 429 and other != 429,
            f"{locked} {other}",
        )
        proc.terminate()
        proc.wait()


def issue_29(root: Path) -> None:
    proc, url = serve(root, "--workers", "1")
    served = wheel("served", "1.0")
    upload(url, served.name, served.read_bytes(), auth=BUILDER)
    upload(url, "x-1.0-py3-none-any.whl", b"x")  # each user logs in once: remembered from then on
    # 1. a wheel declaring 1 GiB: 413 from its headers, one line
    data = zeros_wheel("bomb", 1 << 30)
    t = time.monotonic()
    st, body = upload(url, "bomb-1.0-py3-none-any.whl", data)
    took = time.monotonic() - t
    check("1 GiB bomb: 413 at once, one line", st == 413 and body.count(b"\n") == 1 and took < 2, f"{st} {took:.2f}s")
    # 2. six bombers at the most an upload buys: a download and a builder's upload answer within 0.5 s
    until = time.monotonic() + 12

    def bomb(n: int) -> None:
        data = zeros_wheel(f"bomb{n}", 63 << 20)
        while time.monotonic() < until:
            try:
                upload(url, f"bomb{n}-1.0-py3-none-any.whl", data)
            except OSError:  # the server was stopped under it (case 3)
                return

    bombers = [threading.Thread(target=bomb, args=(n,)) for n in range(6)]
    for b in bombers:
        b.start()
    time.sleep(2)
    gets, ups = [], []
    for i in range(5):
        t = time.monotonic()
        st_get = req(url + f"/packages/{served.name}")[0]
        gets.append(time.monotonic() - t)
        w = wheel(f"fine{i}", "1.0")
        t = time.monotonic()
        st_up = upload(url, w.name, w.read_bytes(), auth=BUILDER)[0]
        ups.append(time.monotonic() - t)
        time.sleep(1)
    # 3. SIGTERM while the bombs are being checked: gone within 5 s
    t = time.monotonic()
    proc.terminate()
    proc.wait(timeout=30)
    stopped = time.monotonic() - t
    for b in bombers:
        b.join()
    check(
        "six bombers: GET /packages/<file> and a builder's upload within 0.5 s",
        max(gets) < 0.5 and max(ups) < 0.5 and st_get == 200 and st_up == 200,
        f"GET max {max(gets) * 1000:.0f} ms, builder upload max {max(ups) * 1000:.0f} ms",
    )
    check("SIGTERM while six bombs are checked: stopped within 5 s", stopped < 5, f"{stopped:.2f}s")
    # 4. two workers share one throttle: 10 guesses, not 20, before 429
    proc, url = serve(root, "--workers", "2")
    statuses = [
        req(url + "/", b"x", {"Authorization": basic("up", f"g{i}"), "Content-Type": CT}, "POST")[0] for i in range(25)
    ]
    check("--workers 2: one throttle (401 x10, then 429)", statuses.count(401) == 10, f"401 x{statuses.count(401)}")
    proc.terminate()
    proc.wait()


main()
