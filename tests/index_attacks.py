"""Re-run issue 12's attack cases against a real `jetwheel index.serve` on loopback (not collected
by pytest: each case also has a test; this is the whole attack in one go, with numbers).

    python3 tests/index_attacks.py SCRATCH_DIR     # needs root for the tmpfs of the full-disk case
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import resource
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wheelmaker import make_wheel

from jetwheel.index.config import add_user

TMP = Path(sys.argv[1])
results: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    results.append((name, ok, detail))
    print(f"{'HELD' if ok else 'FAIL'}  {name}  {detail}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def req(url, data=None, headers=None, method=None, timeout=30):
    r = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(r, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def basic(u, p):
    raw = (u if isinstance(u, bytes) else u.encode()) + b":" + (p if isinstance(p, bytes) else p.encode())
    return "Basic " + base64.b64encode(raw).decode()


def multipart(fields, filename, content):
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


def rss(pid):
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


def serve(root: Path, *extra: str, nofile: int | None = None):
    ht = TMP / "htpasswd"
    if not ht.exists():
        add_user(ht, "admin", "admin-pw")
        add_user(ht, "up", "up-pw")
        (TMP / "config.toml").write_text('[index.roles]\nadmin = "admin"\n')
    port = free_port()

    def limit():
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
    for _ in range(150):
        try:
            urllib.request.urlopen(url + "/health", timeout=1).close()
            return proc, url
        except OSError:
            time.sleep(0.2)
    raise SystemExit("server did not start")


UP = basic("up", "up-pw")
ADMIN = basic("admin", "admin-pw")
CT = "multipart/form-data; boundary=xXx"


def upload(url, filename, data, auth=UP, **fields):
    f = {":action": "file_upload", "sha256_digest": hashlib.sha256(data).hexdigest(), **fields}
    return req(url + "/", multipart(f, filename, data), {"Authorization": auth, "Content-Type": CT}, "POST")


def main():
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

    def guess(n):
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

    def t_of(user):
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

    # 17. .tmp leftovers cleaned at start-up
    (root / ".jetwheel" / "tmp" / "upload-left.part").write_bytes(b"x")
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

    held = sum(ok for _, ok, _ in results)
    print(f"\nattack cases: {len(results)} tried, {held} held")


main()
