"""How a package loads its own libraries, read from its own Python code (runs inside the examined
interpreter: standard library only).

- Libraries it loads itself: a .py file of the package that calls `load_library` (torch.ops),
  `CDLL`/`LoadLibrary` (ctypes) or `dlopen` and names, as a string, the stem of one of the package's
  own shared objects (torchaudio's `_load_lib("libtorchaudio")`, `"libctc_prefix_decoder"`): loaded
  after the packages it requires, before its extension modules, so their DT_NEEDED on that soname
  is met by the object already loaded.
- Libraries it finds by name: a package calling cuda-pathfinder's `load_nvidia_dynamic_lib` (cupy)
  loads an NVIDIA library from the environment's `nvidia/*/lib` before the module that needs it.
- Run-time variants: `MPI.mpich.cpython-312-...so` and `MPI.openmpi...so` beside no `MPI...so`:
  the package imports whichever loads (mpi4py 4.x), so only all of them failing is a failure.
- Optional parts (OPTIONAL): a library its package probes and skips when its dependency is absent."""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable

_LOADERS = re.compile(rb"load_library|CDLL|LoadLibrary|dlopen|_load_lib")
_MARKS = (b"load_library", b"CDLL", b"LoadLibrary", b"dlopen", b"_load_lib", b"load_nvidia_dynamic_lib")
_STRING = re.compile(rb"""["']([A-Za-z0-9_.+-]{2,80})["']""")
_SHARED = re.compile(r"\.so(\.\d+)*$")
# a variant build of one extension module: <stem>.<variant>.<extension suffix>
_VARIANT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z0-9_]+)\.(cpython-[^/]*|abi3)\.so$")

# (package, the library's path glob, the missing soname glob, why its absence is not a failure):
# what the package's code cannot tell us (it probes inside try/except), kept as data, each with its reason.
OPTIONAL: tuple[tuple[str, str, str, str], ...] = (
    ("torchaudio", "*/torchaudio/lib/*sox*", "libsox.so*", "torchaudio's sox backend, skipped when libsox is absent"),
    (
        "torchaudio",
        "*/torio/lib/*ffmpeg*",
        "libav*.so.*",
        "torio tries FFmpeg 6, 5 and 4 and uses the one whose libraries load",
    ),
    ("nvidia-cufile-cu*", "*/libcufile_rdma.so*", "libmlx5.so*", "cuFile's RDMA path, used only with Mellanox NICs"),
    ("cupy-cuda*", "*cutensor*", "libcutensor.so*", "cuTENSOR is an optional accelerator of cupy (CUPY_ACCELERATORS)"),
)


def optional(dist: str, path: str, missing: str) -> str:
    """Why `missing` absent from `path` of `dist` is a note, not a failure; "" when it is a failure."""
    for pkg, where, name, why in OPTIONAL:
        if fnmatch.fnmatch(dist, pkg) and fnmatch.fnmatch(path, where) and fnmatch.fnmatch(missing, name):
            return why
    return ""


def sources(files: Iterable[str]) -> list[bytes]:
    """The package's .py files that load libraries themselves."""
    out = []
    for f in files:
        if f.endswith(".py"):
            try:
                with open(f, "rb") as fh:
                    data = fh.read()
            except OSError:
                continue
            if any(m in data for m in _MARKS):  # `in` on bytes: a regex over torch's 3,000 files is seconds
                out.append(data)
    return out


def own_loads(files: list[str], code: list[bytes]) -> list[str]:
    """The package's own shared objects its code names for loading, in file order."""
    by_stem: dict[str, str] = {}
    for f in files:
        if _SHARED.search(f):
            base = os.path.basename(f)
            by_stem.setdefault(base.split(".so", 1)[0], f)
            by_stem.setdefault(base, f)
    out: list[str] = []
    for data in code:
        if not _LOADERS.search(data):
            continue
        for m in _STRING.finditer(data):
            hit = by_stem.get(m[1].decode())
            if hit is not None and hit not in out:
                out.append(hit)
    return out


_BY_NAME = re.compile(rb"""load_nvidia_dynamic_lib\(\s*["']([A-Za-z0-9_]+)["']""")


def named_nvidia(code: list[bytes]) -> set[str]:
    """The NVIDIA libraries the package's code loads by a literal name (`load_nvidia_dynamic_lib('nvrtc')`)."""
    return {m[1].decode().lower() for data in code for m in _BY_NAME.finditer(data)}


def finds_nvidia_by_name(code: list[bytes]) -> bool:
    return any(b"load_nvidia_dynamic_lib" in data for data in code)


def variants(files: Iterable[str]) -> dict[str, list[str]]:
    """base (directory/stem) -> its variant files, where no plain module of that stem exists."""
    found: dict[str, list[str]] = {}
    plain: set[str] = set()
    for f in files:
        d, base = os.path.split(f)
        m = _VARIANT.match(base)
        if m:
            found.setdefault(os.path.join(d, m[1]), []).append(f)
        elif base.endswith(".so"):
            plain.add(os.path.join(d, base.split(".", 1)[0]))
    return {k: sorted(v) for k, v in found.items() if len(v) > 1 and k not in plain}
