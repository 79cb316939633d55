"""How the doctor reads a package's own loading (jetwheel/doctor/loads.py) and says what it found
(report.py), in-process on made-up files and scans: libraries named by the package's loader calls,
run-time variants, optional parts, and the lines for each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jetwheel.doctor import loads, report

SITE = "/v/lib/python3.12/site-packages"


def test_the_libraries_a_package_loads_are_the_ones_its_code_names_in_a_loader_call() -> None:
    files = [f"{SITE}/ta/lib/libta.so", f"{SITE}/ta/lib/libctc.so", f"{SITE}/ta/lib/_ta.so"]
    code = [b'def f():\n    _load_lib("libta")\n', b'torch.ops.load_library("libctc")\n', b'print("_ta")\n']
    assert loads.own_loads(files, code) == files[:2]  # "_ta" is named, but by no loader call
    assert loads.own_loads(files, [b'x = "libta"\n']) == []


def test_sources_are_the_py_files_with_a_loader_call(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("import ctypes\nctypes.CDLL('libx.so')\n")
    (tmp_path / "b.py").write_text("print('libx')\n")
    found = loads.sources([str(tmp_path / "a.py"), str(tmp_path / "b.py"), str(tmp_path / "gone.py")])
    assert found == [(tmp_path / "a.py").read_bytes()]


def test_variants_are_builds_of_one_module_with_no_plain_one() -> None:
    d = f"{SITE}/mpi4py"
    files = [f"{d}/MPI.mpich.cpython-312-x86_64-linux-gnu.so", f"{d}/MPI.openmpi.cpython-312-x86_64-linux-gnu.so"]
    assert loads.variants(files) == {f"{d}/MPI": files}
    assert loads.variants([*files, f"{d}/MPI.cpython-312-x86_64-linux-gnu.so"]) == {}


def test_optional_parts_are_known_with_their_reason_and_nothing_else_is() -> None:
    assert "sox" in loads.optional("torchaudio", f"{SITE}/torchaudio/lib/libtorchaudio_sox.so", "libsox.so")
    assert loads.optional("torchaudio", f"{SITE}/torchaudio/lib/libtorchaudio.so", "libc10.so") == ""
    assert loads.optional("other", f"{SITE}/torchaudio/lib/libtorchaudio_sox.so", "libsox.so") == ""


def test_names_loaded_through_pathfinder_are_read_from_the_call() -> None:
    assert loads.named_nvidia([b"load_nvidia_dynamic_lib('nvrtc')\nload_nvidia_dynamic_lib(name)\n"]) == {"nvrtc"}


def _missing(name: str, obj: str) -> dict[str, Any]:
    return {"kind": "missing-library", "name": name, "object": obj, "candidates": [], "expected": ""}


def _doc(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"modules": {}, "objects": objects, "items": [], "cc": 0, "driver": ""}


def test_no_variant_loading_is_one_broken_line_naming_both() -> None:
    a, b = f"{SITE}/m/MPI.mpich.cpython-312.so", f"{SITE}/m/MPI.openmpi.cpython-312.so"
    group = {"base": f"{SITE}/m/MPI", "files": [a, b], "loads": []}
    doc = _doc(
        {
            a: {"dist": "mpi4py", "path": a, "failure": _missing("libmpi.so.12", a), "variants": group},
            b: {"dist": "mpi4py", "path": b, "failure": _missing("libmpi.so.40", b), "variants": group},
        }
    )
    lines = report.lines(doc)
    assert [x.status for x in lines] == ["broken"]
    assert "MPI.mpich" in lines[0].problem and "MPI.openmpi" in lines[0].problem
    doc["objects"][b]["failure"] = None
    for v in doc["objects"].values():
        v["variants"] = dict(group, loads=[b])
    assert report.lines(doc) == [] and report.exit_code(report.lines(doc)) == report.OK


def test_an_optional_part_is_a_note_naming_its_failing_sibling_and_changes_no_exit_code() -> None:
    lib, mod = f"{SITE}/ta/lib/libta_sox.so", f"{SITE}/ta/lib/_ta_sox.so"
    doc = _doc(
        {
            lib: {"dist": "ta", "path": lib, "failure": _missing("libsox.so", lib), "optional": "sox backend"},
            mod: {
                "dist": "ta",
                "path": mod,
                "failure": _missing("libta_sox.so", mod),
                "cause": lib,
                "optional": "sox backend",
            },
        }
    )
    lines = report.lines(doc)
    assert [x.status for x in lines] == ["note", "note"]
    assert "its sibling ta/lib/libta_sox.so cannot load: libsox.so" in lines[0].problem
    assert report.exit_code(lines) == report.OK
