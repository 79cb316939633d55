"""Root filesystems made of Debian bookworm's real arm64 packages, unpacked as dpkg would (file lists
in /var/lib/dpkg/info), without emulation: for tests of what an arm64 image holds. Downloads are
checked against the archive's SHA256 and cached (~/.cache/jetwheel/debian-arm64; ~17 MB once)."""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import tarfile
import urllib.request
from pathlib import Path

MIRROR = "http://deb.debian.org/debian"
CACHE = Path(os.environ.get("JETWHEEL_DEBIAN_CACHE", Path.home() / ".cache" / "jetwheel" / "debian-arm64"))


def _fetch(url: str, dest: Path, sha256: str = "") -> bytes:
    if dest.is_file() and (not sha256 or hashlib.sha256(dest.read_bytes()).hexdigest() == sha256):
        return dest.read_bytes()
    with urllib.request.urlopen(url, timeout=300) as r:
        data: bytes = r.read()
    if sha256 and hashlib.sha256(data).hexdigest() != sha256:
        raise RuntimeError(f"{url}: sha256 differs from the archive's Packages index")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    return data


def _index() -> dict[str, dict[str, str]]:
    data = _fetch(f"{MIRROR}/dists/bookworm/main/binary-arm64/Packages.xz", CACHE / "Packages.xz")
    out = {}
    for stanza in lzma.decompress(data).decode().split("\n\n"):
        fields = dict(ln.split(": ", 1) for ln in stanza.splitlines() if ": " in ln and not ln.startswith(" "))
        if "Package" in fields:
            out[fields["Package"]] = fields
    return out


def _data_tar(deb: bytes) -> tarfile.TarFile:
    """The data.tar.* member of a .deb (an ar archive)."""
    at = 8  # "!<arch>\n"
    while at < len(deb):
        name, size = deb[at : at + 16].decode().strip().rstrip("/"), int(deb[at + 48 : at + 58].decode())
        if name.startswith("data.tar"):
            return tarfile.open(fileobj=io.BytesIO(deb[at + 60 : at + 60 + size]))
        at += 60 + size + (size & 1)
    raise RuntimeError("no data.tar in the .deb")


def unpack(root: Path, packages: list[str]) -> Path:
    """Unpack the packages' files into `root` and write dpkg's file list of each."""
    index = _index()
    info = root / "var" / "lib" / "dpkg" / "info"
    info.mkdir(parents=True, exist_ok=True)
    for pkg in packages:
        fields = index[pkg]
        deb = _fetch(f"{MIRROR}/{fields['Filename']}", CACHE / Path(fields["Filename"]).name, fields["SHA256"])
        with _data_tar(deb) as tf:
            tf.extractall(root, filter="tar")
            names = ["/" + m.name.removeprefix("./").rstrip("/") for m in tf.getmembers()]
        (info / f"{pkg}:arm64.list").write_text("\n".join(n for n in names if n != "/") + "\n")
    return root
