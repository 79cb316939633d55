"""The runtime tarball: the file Triton r25.04's vLLM step fetches from $NVPL_SLIM_URL on aarch64 and
unpacks into the runtime image (`nvpl_slim_24.04/lib/*` to /usr/local/lib, `include/*` to
/usr/local/include, the step's LD_LIBRARY_PATH starting with /usr/local/lib). jetwheel fills it with
exactly the libraries the published stack needs that the runtime image lacks (OpenBLAS and its
libgfortran for torch, ...), taken from the builder image the wheels were linked in, each with its
Debian package's copyright file; NVIDIA's own nvpl_slim tarball cannot be downloaded
(triton-inference-server/server#8211) and NVPL is for Grace, not Jetson.

Reproducible: members sorted, one mtime, owner 0, plain tar (build.py runs `tar -xf`)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from jetwheel.build.indexwheels import IndexWheels
from jetwheel.errors import JetwheelError
from jetwheel.index.client.client import IndexClient
from jetwheel.model.profile import Profile
from jetwheel.runtime.image import TOP, missing_from_runtime
from jetwheel.runtime.imagefs import inspect, root_filesystem
from jetwheel.sources.archives import ARCHIVE_MTIME
from jetwheel.target import Target
from jetwheel.verify import FactCache, published_facts, read_wheels
from jetwheel.verify.loader import GLIBC
from jetwheel.verify.policy import Policy, library_dirs, load, read_library, resolve
from jetwheel.verify.wheel import Wheel

# the C runtime is the image's own, always (a copy in /usr/local/lib would shadow it)
_NEVER = (*GLIBC, "libstdc++.so.6", "libgcc_s.so.1")
LICENSES = "jetwheel-runtime"  # below include/: the manifest and the copyright files


@dataclass(frozen=True)
class Member:
    """One library of the tarball: the name ld.so looks up, and where it came from."""

    name: str
    origin: str  # its path in the builder image (symlinks followed)
    package: str  # the Debian package that installed it
    data: bytes


def _owner(root: Path, path: str) -> str:
    """The Debian package whose file list names `path` (merged-/usr spellings tried too)."""
    spellings = {path, path.removeprefix("/usr"), "/usr" + path}
    info = root / "var" / "lib" / "dpkg" / "info"
    for lst in sorted(info.glob("*.list")) if info.is_dir() else []:
        if spellings & set(lst.read_text(errors="replace").splitlines()):
            return lst.stem.split(":", 1)[0]
    return ""


def _find(root: Path, dirs: list[str], name: str) -> str | None:
    for d in dirs:
        real = resolve(root, f"{d}/{name}")
        if real is not None:
            return real
    return None


def collect(builder: Path, machine: str, names: Iterable[str], runtime: Policy, source: str) -> list[Member]:
    """The libraries `names` from the builder's root filesystem, with the ones they need in turn that
    the runtime lacks; JetwheelError naming a library the builder does not have, or has unlicensed."""
    dirs = library_dirs(builder, machine)
    todo, out, seen = [n for n in names if n not in _NEVER], [], set()
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.add(name)
        real = _find(builder, dirs, name)
        if real is None:
            raise JetwheelError(f"{name}: the runtime lacks it and the builder image ({source}) has none either")
        host = builder / real.lstrip("/")
        info = read_library(host)
        if info is None or info.machine != machine:
            raise JetwheelError(f"{name}: {real} in {source} is not a {machine} shared library")
        package = _owner(builder, real)
        if not package or not (builder / "usr/share/doc" / package / "copyright").is_file():
            raise JetwheelError(f"{name}: no Debian package with a copyright file owns {real} in {source}")
        out.append(Member(name, real, package, host.read_bytes()))
        todo += [n for n in info.needed if n not in _NEVER and not runtime.provides(n) and n not in seen]
    return sorted(out, key=lambda m: m.name)


def _add(tar: tarfile.TarFile, name: str, data: bytes | None, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode = ARCHIVE_MTIME, 0, 0, "", "", mode
    if data is None:
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def write(members: list[Member], builder: Path, out: Path, builder_source: str, runtime: Policy) -> str:
    """Write the tarball; returns its sha256. Licenses and a manifest go under include/ (build.py
    copies include/* and fails on an empty one)."""
    manifest = {
        "builder": builder_source,
        "runtime": list(runtime.sources),
        "libraries": {
            m.name: {"from": m.origin, "package": m.package, "sha256": hashlib.sha256(m.data).hexdigest()}
            for m in members
        },
    }
    files: dict[str, bytes | None] = {f"{TOP}/lib/{m.name}": m.data for m in members}
    for pkg in sorted({m.package for m in members}):
        files[f"{TOP}/include/{LICENSES}/licenses/{pkg}/copyright"] = (
            builder / "usr/share/doc" / pkg / "copyright"
        ).read_bytes()
    files[f"{TOP}/include/{LICENSES}/MANIFEST.json"] = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    dirs = {posixpath.dirname(n) for n in files}
    dirs |= {"/".join(d.split("/")[:i]) for d in list(dirs) for i in range(1, d.count("/") + 1)}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.part")
    with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
        for name in sorted([*dirs, *files], key=lambda n: n.split("/")):
            if name in dirs:
                _add(tar, name, None, 0o755)
            else:
                data = files[name]
                _add(tar, name, data, 0o755 if name.startswith(f"{TOP}/lib/") else 0o644)
    os.replace(tmp, out)
    return hashlib.sha256(out.read_bytes()).hexdigest()


def make(
    builder_image: str, policy: Path, wheels: list[Wheel], target: Target, out: Path, engine: str = "podman"
) -> tuple[list[Member], str]:
    """The runtime tarball for `wheels` meeting the runtime `policy` describes: (its members, sha256)."""
    runtime = load(policy)
    names = missing_from_runtime(wheels, target, runtime)
    if not names:
        raise JetwheelError(f"the runtime ({runtime.sources[0]}) has every library the stack needs: no tarball")
    info = inspect(engine, builder_image)
    source = f"{builder_image}@{info.digest}"
    with root_filesystem(engine, builder_image) as root:
        members = collect(root, info.machine, names, runtime, source)
        return members, write(members, root, out, source, runtime)


def stack_wheels(
    paths: list[str], profile: Profile, client: IndexClient | None, tmp: Path, cache: FactCache | None = None
) -> list[Wheel]:
    """The stack's wheels: files, or names (the profile's pins; default its [triton] runtime) on the index."""
    names = paths or list(profile.triton.runtime if profile.triton else ())
    files = [Path(p) for p in names if Path(p).is_file()]
    cache = cache or FactCache()
    wheels = read_wheels(files, cache)
    source = IndexWheels(client) if client is not None else None
    for name in (n for n in names if not Path(n).is_file()):
        found = source.find(f"{name}=={profile.pin(name)}", profile.target().tags()) if source else None
        if found is None or source is None:
            where = f"no wheel for it on {client.url}" if client else "no such file (pass --index for names)"
            raise JetwheelError(f"{name}: {where}")
        wheels.append(published_facts(found, source, cache, tmp))
    if not wheels:
        raise JetwheelError("no wheels: give wheel files, or --index with a profile that has a [triton] runtime")
    return wheels
