"""The doctor's model of ld.so (jetwheel/doctor/ldso.py) against the real loader, on tiny libraries
compiled here: found through DT_RUNPATH $ORIGIN, a DT_NEEDED found nowhere, an undefined symbol
after its provider was rebuilt without it (the first in relocation order), a stale RPATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jetwheel.doctor import report
from jetwheel.doctor.facts import FactStore
from jetwheel.doctor.ldso import Process, ld_cache

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


def model(path: Path, tmp: Path) -> tuple[str, str]:
    proc = Process(FactStore(tmp), os.uname().machine, {}, ld_cache())
    _closure, fail = proc.dlopen(str(path))
    return ("ok", "") if fail is None else ("fails", fail.name)


def real(path: Path) -> tuple[str, str]:
    """What dlopen says in a fresh process (in this one, an earlier test's libbase.so would be reused)."""
    code = "import ctypes, os, sys\ntry:\n    ctypes.CDLL(sys.argv[1], os.RTLD_NOW)\nexcept OSError as e:\n    print(e)"
    msg = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True).stdout.strip()
    if not msg:
        return "ok", ""
    if "undefined symbol: " in msg:
        return "fails", msg.rsplit("undefined symbol: ", 1)[1].split()[0]
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
