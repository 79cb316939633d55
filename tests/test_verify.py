"""verify on real binaries: nvcc-compiled fatbins and mini-stack wheels built by the real engine,
good and broken."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import shutil
import struct
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import Server
from packaging.requirements import Requirement
from packaging.tags import Tag
from packaging.utils import canonicalize_name

from jetwheel.build.indexwheels import IndexWheels
from jetwheel.build.plan import make_plan
from jetwheel.machine import this_machine
from jetwheel.model.recipe import load_profile, load_recipes
from jetwheel.runners import LocalRunner, StepLog
from jetwheel.verify import FactCache, Published, extract, read_wheels, resolve_report, verify_wheel
from jetwheel.verify.extract import member_facts
from jetwheel.verify.fatbin import MAGIC, Scanner, runs_on, scan
from jetwheel.verify.wheel import FORMAT, from_bytes
from jetwheel.workflow.context import settings
from jetwheel.workflow.verify import verify_paths

KERNEL = "__global__ void k(float* x) { x[threadIdx.x] += 1.0f; }\n"
needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")


def nvcc(tmp: Path, *gencode: str) -> Path:
    src = tmp / "k.cu"
    src.write_text(KERNEL)
    out = tmp / f"k-{abs(hash(gencode))}.so"
    subprocess.run(["nvcc", "-shared", "-Xcompiler", "-fPIC", *gencode, "-o", str(out), str(src)], check=True)
    return out


@needs_nvcc
def test_fatbin_lists_sass_and_ptx_and_predicts_where_kernels_run(tmp_path: Path) -> None:
    sm87 = nvcc(tmp_path, "-gencode", "arch=compute_87,code=sm_87")
    ptx87 = nvcc(tmp_path, "-gencode", "arch=compute_87,code=compute_87")
    sm80 = nvcc(tmp_path, "-gencode", "arch=compute_80,code=sm_80")
    with open(sm87, "rb") as f:
        e87 = scan(f)
    with open(ptx87, "rb") as f:
        p87 = scan(f)
    with open(sm80, "rb") as f:
        e80 = scan(f)
    assert {x.label() for x in e87} == {"sm_87"}
    assert [(x.kind, x.arch) for x in p87] == [("ptx", 87)]
    assert runs_on(e87, 87)[0] and not runs_on(e87, 90)[0]  # SASS is not forward compatible across majors
    assert runs_on(p87, 90) == (True, "PTX compute_87 (JIT)")  # PTX is JIT-compiled
    assert not runs_on(p87, 86)[0]
    # sm_80 SASS runs on the desktop 8.6 (same major, lower minor), not on the Tegra 8.7 (test_tegra.py) ...
    assert runs_on(e80, 86) == (True, "SASS sm_80") and not runs_on(e80, 87)[0]
    # ... but PTX from CUDA 13 (ISA 9.0) cannot be JIT-ed by JetPack 6.2's CUDA 12.6 driver
    ok, why = runs_on(p87, 87 + 3, "12.6")
    assert not ok and "PTX ISA 9.0" in why


def test_the_built_mini_stack_passes(stack_wheels: dict[str, Path]) -> None:
    target = load_profile("mini").target()
    recipes = load_recipes()
    wheels = read_wheels(list(stack_wheels.values()))
    for name, path in stack_wheels.items():
        report = verify_wheel(path, target, recipes[name.replace("_", "-")], wheels)
        assert report.passed, report.to_json()
    cuda = verify_wheel(stack_wheels["mini_cuda"], target, recipes["mini-cuda"], wheels)
    [(member, archs)] = cuda.facts["fatbin"].items()
    assert member.startswith("mini_cuda/_C.cpython-") and archs == ["sm_87"]


def build_variant(tmp: Path, server: Server, name: str, **env: str) -> Path:
    """Build one mini recipe for real with the local runner, with env overrides, not publishing it."""
    recipes, profile = load_recipes(), load_profile("mini")
    step = next(s for s in make_plan(recipes, profile, name, "local", this_machine()).steps if s.name == name)
    step = dataclasses.replace(step, env={**step.env, **env})
    work = tmp / f"{name}-{len(list(tmp.iterdir()))}"
    shutil.copytree(step.source.path, work / "src", ignore=shutil.ignore_patterns("build", "*.egg-info", "*.so"))
    log = StepLog(work / "log")
    LocalRunner(settings=settings()).run(step, work, server.simple, log)
    log.close()
    return next((work / "out").glob("*.whl"))


@needs_nvcc
def test_mini_cuda_built_for_sm80_only_fails_fatbin(
    tmp_path: Path, stack_server: Server, stack_wheels: dict[str, Path]
) -> None:
    wheel = build_variant(tmp_path, stack_server, "mini-cuda", TORCH_CUDA_ARCH_LIST="8.0")
    target = dataclasses.replace(load_profile("mini").target(), cuda_arch="8.6")
    source = IndexWheels(stack_server.client())
    assert verify_wheel(wheel, target, load_recipes()["mini-cuda"], source=source).passed  # sm_80 SASS runs on 8.6 ...
    for arch, why in (("9.0", ""), ("8.7", "; sm_80 SASS does not run on the Tegra sm_87 (Orin)")):
        report = verify_wheel(
            wheel, dataclasses.replace(target, cuda_arch=arch), load_recipes()["mini-cuda"], source=source
        )
        assert report.failing_checks() == ["fatbin"]  # ... but not on 9.0 or the Orin: "no kernel image"
        cc = arch.replace(".", "")
        assert report.findings[0].detail.startswith(f"no kernel image for sm_{cc}: it carries sm_80{why}")


def test_vision_against_a_torch_whose_symbol_changed_fails_abi_with_demangled_name(
    tmp_path: Path, stack_server: Server, stack_wheels: dict[str, Path]
) -> None:
    torch2 = build_variant(tmp_path, stack_server, "mini-torch", MINITORCH_ABI="2")
    target = load_profile("mini").target()
    report = verify_wheel(stack_wheels["mini_vision"], target, load_recipes()["mini-vision"], read_wheels([torch2]))
    assert report.failing_checks() == ["abi"]
    detail = next(f.detail for f in report.findings if f.check == "abi")
    assert (
        "minitorch::ListType::get(std::__cxx11::basic_string<char, std::char_traits<char>, "
        "std::allocator<char> > const&, int)" in detail
    )
    assert "libminitorch.so (mini-torch 1.0.0)" in detail


def test_wheel_without_its_extension_fails_extensions(tmp_path: Path, stack_server: Server) -> None:
    wheel = build_variant(tmp_path, stack_server, "mini-vision", MINI_VISION_SKIP_EXT="1")
    report = verify_wheel(
        wheel,
        load_profile("mini").target(),
        load_recipes()["mini-vision"],
        source=IndexWheels(stack_server.client()),
    )
    assert "extensions" in report.failing_checks()
    assert any("extension mini_vision._C cannot be imported by CPython" in f.detail for f in report.findings)


def test_pin_mismatch_fails_pins(tmp_path: Path, stack_server: Server, stack_wheels: dict[str, Path]) -> None:
    torch11 = build_variant(tmp_path, stack_server, "mini-torch", MINI_TORCH_BUILD_VERSION="1.1.0")
    target = load_profile("mini").target()
    report = verify_wheel(stack_wheels["mini_vision"], target, load_recipes()["mini-vision"], read_wheels([torch11]))
    assert "pins" in report.failing_checks()
    assert any("requires mini-torch==1.0.0, but mini-torch 1.1.0 is in the set" in f.detail for f in report.findings)


def test_resolve_names_what_the_index_lacks(stack_server: Server) -> None:
    target = load_profile("mini").target()
    ok = resolve_report("mini-cuda==0.1.0", stack_server.simple, target)
    assert ok.passed and "mini-torch==1.0.0" in ok.facts["resolve"]
    missing = resolve_report("mini-cuda==9.9", stack_server.simple, target)
    assert not missing.passed
    assert (
        f"mini-cuda==9.9: no cp{target.python.replace('.', '')} {target.platform} wheel" in missing.findings[0].detail
    )


def test_verify_cli_exit_code_and_report(stack_wheels: dict[str, Path], tmp_path: Path) -> None:
    args = [sys.executable, "-m", "jetwheel", "verify", "--profile", "mini"]
    for p in stack_wheels.values():
        args += ["-p", str(p)]
    good = subprocess.run(args, capture_output=True, text=True)
    assert good.returncode == 0 and good.stdout.count("PASS") == 3, good.stdout + good.stderr
    alone = subprocess.run(
        [sys.executable, "-m", "jetwheel", "verify", "--profile", "mini", "-p", str(stack_wheels["mini_vision"])],
        capture_output=True,
        text=True,
    )
    assert alone.returncode == 1 and "needs libminitorch.so" in alone.stdout and "fix:" in alone.stdout


REFERENCE = Path(__file__).parent / "data" / "cuobjdump-reference.txt"


def cuobjdump_reference() -> dict[str, list[tuple[str, int]]]:
    """cuobjdump --list-elf --list-ptx, run on the device machine over the binaries nvcc 13 builds
    here with the same flags: per file, the (kind, arch) of each embedded image in file order."""
    out: dict[str, list[tuple[str, int]]] = {}
    current = ""
    for line in REFERENCE.read_text().splitlines():
        if line.startswith("== "):
            current = line[3:]
            out[current] = []
        elif line.startswith(("ELF file", "PTX file")):
            arch = int(line.rsplit(".sm_", 1)[1].split(".")[0])
            out[current].append(("sass" if line.startswith("ELF") else "ptx", arch))
    return out


@needs_nvcc
@pytest.mark.parametrize(
    "name, flags",
    [
        ("sm87.so", ["-gencode", "arch=compute_87,code=sm_87"]),
        ("ptx87.so", ["-gencode", "arch=compute_87,code=compute_87"]),
        (
            "multi.so",
            [
                "-gencode",
                "arch=compute_80,code=sm_80",
                "-gencode",
                "arch=compute_87,code=sm_87",
                "-gencode",
                "arch=compute_87,code=compute_87",
            ],
        ),
    ],
)
def test_fatbin_reader_agrees_with_cuobjdump(tmp_path: Path, name: str, flags: list[str]) -> None:
    with open(nvcc(tmp_path, *flags), "rb") as f:
        ours = [(e.kind, e.arch) for e in scan(f)]
    assert ours == cuobjdump_reference()[name]


def test_fatbin_reader_agrees_with_cuobjdump_on_the_mini_cuda_wheel(stack_wheels: dict[str, Path]) -> None:
    [wheel] = read_wheels([stack_wheels["mini_cuda"]])
    [ext] = [e for e in wheel.elves if e.fatbin]
    reference = next(v for k, v in cuobjdump_reference().items() if k.startswith("_C.cpython-"))
    assert [(x.kind, x.arch) for x in ext.fatbin] == reference


def test_fatbin_scanner_finds_the_same_entries_whatever_the_chunking(stack_wheels: dict[str, Path]) -> None:
    """Members stream out of the wheel in chunks of any size; containers and entry headers straddle them."""
    with zipfile.ZipFile(stack_wheels["mini_cuda"]) as zf:
        data = next(zf.read(m) for m in zf.namelist() if m.startswith("mini_cuda/_C.cpython-"))
    whole = Scanner()
    whole.feed(data)
    expected = whole.finish()
    assert [e.label() for e in expected] == ["sm_87"]
    for size in (1, 7, 48, 4096):
        scanner = Scanner()
        for at in range(0, len(data), size):
            scanner.feed(data[at : at + size])
        assert scanner.finish() == expected, size
        assert scanner.spans == whole.spans


@dataclasses.dataclass
class Index:
    """A WheelSource over files, publishing facts for some of them."""

    files: dict[str, Path]
    published_facts: dict[str, bytes]
    downloaded: list[str] = dataclasses.field(default_factory=list)
    url: str = "test-index"
    trusted: bool = True  # the listing says a builder published the files

    def find(self, requirement: str, tags: Sequence[Tag]) -> Published | None:
        name = canonicalize_name(Requirement(requirement).name)
        path = next((p for p in self.files.values() if p.name.startswith(name.replace("-", "_") + "-")), None)
        return Published(path.name, hashlib.sha256(path.read_bytes()).hexdigest(), self.trusted) if path else None

    def download(self, filename: str, dest: Path) -> Path:
        self.downloaded.append(filename)
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(self.files[filename], dest / filename))

    def facts(self, filename: str) -> bytes | None:
        return self.published_facts.get(filename)


def test_dependency_facts_from_the_index_are_used_only_for_the_file_pip_would_install(
    tmp_path: Path, stack_wheels: dict[str, Path]
) -> None:
    target, recipe = load_profile("mini").target(), load_recipes()["mini-vision"]
    torch_path = stack_wheels["mini_torch"]
    [torch] = read_wheels([torch_path], FactCache(tmp_path / "here"))
    files = {torch_path.name: torch_path}
    # the index's facts are for this very file: nothing is downloaded
    index = Index(files, {torch_path.name: torch.to_bytes()})
    report = verify_wheel(stack_wheels["mini_vision"], target, recipe, source=index, cache=FactCache(tmp_path / "a"))
    assert report.passed and report.facts["closure"] == ["mini-torch==1.0.0"] and index.downloaded == []
    # facts for another file of that name (another sha256) are not trusted: the wheel is read instead
    stale = dataclasses.replace(torch, sha256="0" * 64).to_bytes()
    index = Index(files, {torch_path.name: stale})
    report = verify_wheel(stack_wheels["mini_vision"], target, recipe, source=index, cache=FactCache(tmp_path / "b"))
    assert report.passed and index.downloaded == [torch_path.name]
    # facts for the very file, but the file is not a builder's: the wheel is read instead
    index = Index(files, {torch_path.name: torch.to_bytes()}, trusted=False)
    report = verify_wheel(stack_wheels["mini_vision"], target, recipe, source=index, cache=FactCache(tmp_path / "c"))
    assert report.passed and index.downloaded == [torch_path.name]


def test_facts_of_another_format_are_never_read(tmp_path: Path, stack_wheels: dict[str, Path]) -> None:
    cache = FactCache(tmp_path)
    [wheel] = read_wheels([stack_wheels["mini_torch"]], cache)
    assert from_bytes(wheel.to_bytes()) == wheel
    doc = json.loads(gzip.decompress(wheel.to_bytes()))
    doc["format"] = FORMAT + 1
    with pytest.raises(ValueError, match="facts format"):
        from_bytes(gzip.compress(json.dumps(doc).encode()))
    assert [p.relative_to(tmp_path).parts[0] for p in tmp_path.rglob("*.json.gz")] == [f"v{FORMAT}"]


def test_a_member_whose_tables_lie_outside_the_kept_ranges_is_read_again(
    stack_wheels: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first pass keeps what the usual layouts need; an unusual one is streamed again, keeping
    what its section headers name, and gives the same facts."""
    path = stack_wheels["mini_torch"]
    with zipfile.ZipFile(path) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("libminitorch.so"))
    usual = member_facts(path, info)
    passes = []
    real_chunks = extract._chunks

    def counted(*args: object) -> object:
        passes.append(1)
        return real_chunks(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(extract, "_chunks", counted)
    monkeypatch.setattr("jetwheel.verify.elf.kept_ranges", lambda h, segs: [])  # keep only the headers
    assert member_facts(path, info) == usual and usual is not None and usual.info.exports
    assert len(passes) == 3  # headers only, then the section headers, then the tables they name


LAYOUTS = [
    # (machine, assembler command, linker command, source): 32-bit little-endian, 64-bit big-endian
    ("i686", ["as", "--32"], ["ld", "-m", "elf_i386"], ".globl f\n.type f,@function\nf:\n call g@PLT\n ret\n"),
    (
        "aarch64",
        ["aarch64-linux-gnu-as", "-EB"],
        ["aarch64-linux-gnu-ld", "-EB"],
        ".globl f\n.type f,%function\nf:\n bl g\n ret\n",
    ),
]


@pytest.mark.parametrize(("machine", "asm", "ld", "source"), LAYOUTS, ids=["elf32-le", "elf64-be"])
def test_the_elf_reader_reads_32_bit_and_big_endian_files(
    tmp_path: Path, machine: str, asm: list[str], ld: list[str], source: str
) -> None:
    if not (shutil.which(asm[0]) and shutil.which(ld[0])):
        pytest.skip(f"{asm[0]} is not installed")
    (tmp_path / "t.s").write_text(source)
    subprocess.run([*asm, str(tmp_path / "t.s"), "-o", str(tmp_path / "t.o")], check=True)
    so = tmp_path / "libt.so"
    subprocess.run([*ld, "-shared", "-soname", "libt.so.1", str(tmp_path / "t.o"), "-o", str(so)], check=True)
    wheel = tmp_path / "t-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(so, "t/libt.so")
    with zipfile.ZipFile(wheel) as zf:
        facts = member_facts(wheel, zf.getinfo("t/libt.so"))
    assert facts is not None
    assert (facts.info.machine, facts.info.soname, facts.info.exports) == (machine, "libt.so.1", "f")
    assert facts.imports == (("g", "", "", False),)


def test_verify_names_on_the_index(stack_server: Server, tmp_path: Path) -> None:
    """`inv verify -p mini-vision --index URL`: the published wheel and its pinned dependency come
    from the index (their facts, where it keeps them; else the files)."""
    reports = verify_paths(["mini-vision"], "mini", stack_server.client(), [], "", False, facts=str(tmp_path))
    assert [(r.wheel.split("-")[0], r.passed, r.facts["closure"]) for r in reports] == [
        ("mini_vision", True, ["mini-torch==1.0.0"])
    ]


def test_verify_imports_nothing_of_the_index() -> None:
    """verify reaches an index only through the WheelSource protocol (verify/source.py)."""
    import ast

    import jetwheel.verify

    for path in Path(jetwheel.verify.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [f"{'.' * node.level}{node.module or ''}"]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            assert not any(n.startswith(("..index", "jetwheel.index")) for n in names), (path.name, names)


def test_fatbin_scanner_waits_for_a_long_container_header_and_skips_non_containers() -> None:
    # an entry: kind 2 (SASS), header 64 bytes, payload 8; arch 87 at +24, flags at +40
    head = struct.pack("<HHIQ", 2, 0x101, 64, 8) + bytes(8) + struct.pack("<HHI", 0, 8, 87) + bytes(32)
    entry = head + bytes(8)
    # a container whose header is 32 bytes long, after a magic that starts no container
    container = MAGIC + struct.pack("<HHQ", 1, 32, len(entry)) + bytes(16) + entry
    data = b"x" * 5 + MAGIC + b"\x02\x00" + b"y" * 40 + container + MAGIC[:2]
    start = data.index(container)
    for size in (1, 3, 17, len(data)):
        scanner = Scanner()
        for at in range(0, len(data), size):
            scanner.feed(data[at : at + size])
        assert [e.label() for e in scanner.finish()] == ["sm_87"], size
        assert scanner.spans == [(start, start + 32 + len(entry))]
