"""The one model of ld.so (jetwheel/verify/ldso.py, verify's and the doctor's) against the real
loader, on tiny libraries compiled here: found through DT_RUNPATH $ORIGIN, a DT_NEEDED found
nowhere, an undefined symbol after its provider was rebuilt without it (the first in relocation
order), a stale RPATH; and where DT_RPATH and DT_RUNPATH differ: RPATH inherited by what the object
loads, RUNPATH not, an object's own RUNPATH hiding its loader's RPATH, RPATH before LD_LIBRARY_PATH
before RUNPATH, a soname already loaded, a symbol version the library no longer defines."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jetwheel.doctor import report
from jetwheel.doctor.facts import FactStore
from jetwheel.verify.ldso import Process, ld_cache

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")


def cc(out: Path, source: str, *flags: str) -> Path:
    src = out.with_suffix(".c")
    src.write_text(source)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(out), str(src), *flags], check=True)
    return out


@pytest.fixture(scope="module")
def libs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("libs")
    (d / "sub").mkdir()
    cc(
        d / "sub" / "libbase.so",
        "int base_one(void){return 1;} int base_two(void){return 2;}",
        "-Wl,-soname,libbase.so",
    )
    cc(
        d / "libok.so",
        "int base_one(void); int ok(void){return base_one();}",
        f"-L{d / 'sub'}",
        "-lbase",
        "-Wl,--enable-new-dtags,-rpath,$ORIGIN/sub",
    )
    cc(
        d / "libnodep.so",
        "int base_one(void); int f(void){return base_one();}",
        f"-L{d / 'sub'}",
        "-lbase",
        "-Wl,--enable-new-dtags,-rpath,$ORIGIN/elsewhere",
    )
    cc(
        d / "libsym.so",
        "int base_two(void); int base_one(void); int g(void){return base_two()+base_one();}",
        f"-L{d / 'sub'}",
        "-lbase",
        "-Wl,--enable-new-dtags,-rpath,$ORIGIN/sub2",
    )
    (d / "sub2").mkdir()
    cc(d / "sub2" / "libbase.so", "int base_one(void){return 1;}", "-Wl,-soname,libbase.so")
    return d


def model(path: Path, tmp: Path, env: dict[str, str] | None = None, first: Path | None = None) -> tuple[str, str]:
    """The model's answer in a process like `real`'s: the interpreter, `first` dlopened, then `path`."""
    proc = Process(FactStore(tmp), os.uname().machine, env or {}, ld_cache())
    proc.dlopen(os.path.realpath(sys.executable), global_=True)
    if first is not None:
        assert proc.dlopen(str(first))[1] is None
    _closure, fail = proc.dlopen(str(path))
    return ("ok", "") if fail is None else ("fails", fail.name)


REAL = """import ctypes, os, sys
try:
    for p in sys.argv[1:]:
        ctypes.CDLL(p, os.RTLD_NOW)
except OSError as e:
    print(e)"""


def real(path: Path, env: dict[str, str] | None = None, first: Path | None = None) -> tuple[str, str]:
    """What dlopen says in a fresh process (in this one, an earlier test's libbase.so would be reused)."""
    args = [sys.executable, "-c", REAL, *([str(first)] if first else []), str(path)]
    msg = subprocess.run(args, capture_output=True, text=True, env=dict(os.environ, **(env or {}))).stdout.strip()
    if not msg:
        return "ok", ""
    if "undefined symbol: " in msg:
        return "fails", msg.rsplit("undefined symbol: ", 1)[1].split()[0]
    if "version `" in msg:
        return "fails", msg.split("version `", 1)[1].split("'", 1)[0]
    return "fails", msg.split(": cannot open shared object file")[0].rsplit(": ", 1)[-1]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("libok.so", ("ok", "")),
        ("libnodep.so", ("fails", "libbase.so")),
        ("libsym.so", ("fails", "base_two")),
    ],
)
def test_the_model_names_what_the_loader_names(
    libs: Path, tmp_path: Path, name: str, expected: tuple[str, str]
) -> None:
    assert model(libs / name, tmp_path) == expected == real(libs / name)


def test_a_second_look_reads_only_the_cache(libs: Path, tmp_path: Path) -> None:
    first = FactStore(tmp_path)
    assert first.get(str(libs / "libok.so")) is not None and first.read == 1
    second = FactStore(tmp_path)
    assert second.get(str(libs / "libok.so")) is not None and (second.read, second.cached) == (0, 1)


def test_exit_codes_tell_broken_from_unchecked() -> None:
    broken = report.Line("broken", "x", "y", "z")
    unchecked = report.Line("unchecked", "fatbins", "n", "")
    assert report.exit_code([]) == report.OK == 0
    assert report.exit_code([unchecked]) == report.UNCHECKED == 5
    assert report.exit_code([unchecked, broken]) == report.BROKEN == 1


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """a/ and b/ each hold a libleaf.so (b's also defines leaf_b); the users differ only in how they
    say where to look: DT_RPATH (--disable-new-dtags) or DT_RUNPATH (--enable-new-dtags)."""
    d = tmp_path_factory.mktemp("paths")
    for sub in ("a", "b"):
        (d / sub).mkdir()
    cc(d / "a" / "libleaf.so", "int leaf(void){return 1;}", "-Wl,-soname,libleaf.so")
    cc(d / "b" / "libleaf.so", "int leaf(void){return 2;} int leaf_b(void){return 3;}", "-Wl,-soname,libleaf.so")
    link_b = (f"-L{d / 'b'}", "-lleaf")
    cc(d / "libmid.so", "int leaf(void); int mid(void){return leaf();}", *link_b, "-Wl,-soname,libmid.so")
    cc(
        d / "libmid_rp.so",
        "int leaf(void); int mid(void){return leaf();}",
        *link_b,
        "-Wl,--enable-new-dtags,-rpath,$ORIGIN/none",
    )
    for tag, dtags in (("rpath", "--disable-new-dtags"), ("runpath", "--enable-new-dtags")):
        cc(
            d / f"libtop_{tag}.so",
            "int mid(void); int top(void){return mid();}",
            f"-L{d}",
            "-lmid",
            f"-Wl,{dtags},-rpath,$ORIGIN:$ORIGIN/a",
        )
        cc(
            d / f"libwant_b_{tag}.so",
            "int leaf_b(void); int w(void){return leaf_b();}",
            *link_b,
            f"-Wl,{dtags},-rpath,$ORIGIN/a",
        )
    cc(
        d / "libtop_rp.so",
        "int mid(void); int top(void){return mid();}",
        f"-L{d}",
        "-lmid_rp",
        "-Wl,--disable-new-dtags,-rpath,$ORIGIN:$ORIGIN/a",
    )
    (d / "v").mkdir()
    script = d / "v2.map"
    script.write_text("VER_1 { global: v1; local: *; }; VER_2 { global: v2; } VER_1;")
    cc(
        d / "v" / "libver.so",
        "int v1(void){return 1;} int v2(void){return 2;}",
        f"-Wl,--version-script,{script},-soname,libver.so",
    )
    cc(d / "libneedver.so", "int v2(void); int n(void){return v2();}", f"-L{d / 'v'}", "-lver", "-Wl,-rpath,$ORIGIN/v")
    script.write_text("VER_1 { global: v1; v2; local: *; };")
    cc(
        d / "v" / "libver.so",
        "int v1(void){return 1;} int v2(void){return 2;}",
        f"-Wl,--version-script,{script},-soname,libver.so",
    )
    return d


@pytest.mark.parametrize(
    ("name", "ld_library_path", "first", "expected"),
    [
        # the loader's DT_RPATH serves what its dependency needs (libmid has no paths of its own) ...
        ("libtop_rpath.so", "", "", ("ok", "")),
        # ... its DT_RUNPATH serves only its own DT_NEEDED
        ("libtop_runpath.so", "", "", ("fails", "libleaf.so")),
        # an object with a RUNPATH of its own never uses its loader's RPATH
        ("libtop_rp.so", "", "", ("fails", "libleaf.so")),
        # RPATH before LD_LIBRARY_PATH: a/libleaf.so, without leaf_b
        ("libwant_b_rpath.so", "b", "", ("fails", "leaf_b")),
        # LD_LIBRARY_PATH before RUNPATH: b/libleaf.so
        ("libwant_b_runpath.so", "b", "", ("ok", "")),
        # no path names libleaf.so, but a library of that soname is already loaded
        ("libmid.so", "", "", ("fails", "libleaf.so")),
        ("libmid.so", "", "a/libleaf.so", ("ok", "")),
        # libver.so was rebuilt without the version the user was linked against
        ("libneedver.so", "", "", ("fails", "VER_2")),
    ],
)
def test_rpath_runpath_and_what_is_loaded_as_the_loader_has_them(
    paths: Path, tmp_path: Path, name: str, ld_library_path: str, first: str, expected: tuple[str, str]
) -> None:
    env = {"LD_LIBRARY_PATH": str(paths / ld_library_path)} if ld_library_path else {}
    pre = paths / first if first else None
    assert real(paths / name, env, pre) == expected
    assert model(paths / name, tmp_path, env, pre) == expected
