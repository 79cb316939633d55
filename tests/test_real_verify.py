"""verify on PyPI's real wheels of the triton-25.04 stack: what each set fails, as a table.

Matched sets pass extensions, abi and pins (zero false alarms: the rules are ld.so's and CPython's,
no stricter); PyPI's aarch64 torch family is CPU-only and fails fatbin saying so; sets that mix
torch 2.6.0 with torchvision 0.22.0 or torchaudio 2.7.0 (built for torch 2.7) fail abi and pins,
naming the missing symbols demangled. x86_64 wheels are checked for their own machine
(`--platform linux_x86_64`) with the profile's pins. Facts are cached in ~/.cache/jetwheel/facts
like every verify, so a second run reads no wheel bytes."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest
from conftest import door
from realwheels import real_wheel

from jetwheel.model.recipe import load_profile, load_recipes
from jetwheel.verify import ERROR, FactCache, Report, read_wheels, retarget, verify_wheel
from jetwheel.verify.extract import member_facts

pytestmark = [pytest.mark.real, pytest.mark.slow]

X86, ARM = "x86_64", "aarch64"
STACK_X86 = [
    ("vllm", "0.8.1"),
    ("torch", "2.6.0"),
    ("torchvision", "0.21.0"),
    ("torchaudio", "2.6.0"),
    ("triton", "3.2.0"),
]
TORCH_FAMILY = [("torch", "2.6.0"), ("torchvision", "0.21.0"), ("torchaudio", "2.6.0")]
TORCH = [("torch", "2.6.0")]

# (set, machine, wheels verified, wheels only installed with them, wheel name -> failing checks)
CORPUS = [
    # PyPI's x86_64 torch and vLLM carry no sm_87 SASS (sm_80, sm_86 do not run on the Tegra Orin)
    ("x86_64 stack", X86, STACK_X86, [], {n: ["fatbin"] if n in ("vllm", "torch") else [] for n, _v in STACK_X86}),
    ("aarch64 torch family, CPU-only", ARM, TORCH_FAMILY, [], {n: ["fatbin"] for n, _v in TORCH_FAMILY}),
    (
        "x86_64 torchvision 0.22.0 + torch 2.6.0",
        X86,
        [("torchvision", "0.22.0")],
        TORCH,
        {"torchvision": ["abi", "pins"]},
    ),
    ("x86_64 torchaudio 2.7.0 + torch 2.6.0", X86, [("torchaudio", "2.7.0")], TORCH, {"torchaudio": ["abi", "pins"]}),
    (
        "aarch64 torchvision 0.22.0 + torch 2.6.0",
        ARM,
        [("torchvision", "0.22.0")],
        TORCH,
        {"torchvision": ["abi", "fatbin", "pins"]},
    ),
    (
        "aarch64 torchaudio 2.7.0 + torch 2.6.0",
        ARM,
        [("torchaudio", "2.7.0")],
        TORCH,
        {"torchaudio": ["abi", "fatbin", "pins"]},
    ),
]


def verify_set(
    machine: str, checked: list[tuple[str, str]], others: list[tuple[str, str]], arch: str = ""
) -> dict[str, Report]:
    target = retarget(load_profile("triton-25.04").target(arch), f"linux_{machine}")
    recipes = load_recipes()
    paths = [real_wheel(n, v, "3.12", machine) for n, v in [*checked, *others]]
    wheels = read_wheels(paths)
    return {
        w.name: verify_wheel(w, target, recipes.get(w.name) or recipes.get(f"pytorch-{w.name}"), wheels)
        for w in wheels[: len(checked)]
    }


@pytest.mark.parametrize(("name", "machine", "checked", "others", "expected"), CORPUS, ids=[c[0] for c in CORPUS])
def test_corpus_fails_exactly_the_expected_checks(
    name: str,
    machine: str,
    checked: list[tuple[str, str]],
    others: list[tuple[str, str]],
    expected: dict[str, list[str]],
) -> None:
    reports = verify_set(machine, checked, others)
    assert {n: r.failing_checks() for n, r in reports.items()} == expected, name
    for r in reports.values():
        errors = [f for f in r.findings if f.severity == ERROR]
        if "fatbin" in r.failing_checks():
            assert any(
                "no CUDA code at all: this is a CPU-only build" in f.detail
                or "SASS does not run on the Tegra sm_87 (Orin): Tegra GPUs run only SASS built for their exact SM"
                in f.detail
                for f in errors
            )
        if "abi" in r.failing_checks():
            # demangled, as the user will read them in the ImportError
            assert any("undefined symbol torch::dynamo::autograd::getPyCompilerInterface()" in f.detail for f in errors)
        if "pins" in r.failing_checks():
            assert any("requires torch==2.7.0, but torch 2.6.0 is in the set" in f.detail for f in errors)


def test_the_x86_64_stack_passes_for_a_desktop_gpu() -> None:
    """The desktop rule is unchanged: the same wheels have kernels for an sm_86 GPU (no false alarm)."""
    reports = verify_set(X86, STACK_X86, [], arch="8.6")
    assert {n: r.failing_checks() for n, r in reports.items()} == {n: [] for n, _v in STACK_X86}


def test_libraries_from_wheels_outside_the_set_are_reported_unchecked() -> None:
    """x86_64 torch loads cuDNN & co. from the nvidia-*-cu12 wheels through its RPATH; they are not
    downloaded, and the report says so instead of passing them as checked."""
    torch = verify_set(X86, TORCH, [])["torch"]
    unchecked = [f for f in torch.findings if f.check == "abi" and f.detail.startswith("not checked:")]
    assert len(unchecked) == 1 and "libcudnn.so.9" in unchecked[0].detail
    assert "nvidia-cudnn-cu12" in unchecked[0].detail


def test_the_elf_reader_agrees_with_nm(tmp_path: Path) -> None:
    """The streaming reader (which keeps only the ranges ld.so reads) sees what binutils sees."""
    wheel = real_wheel("torchvision", "0.21.0", "3.12", X86)
    member = "torchvision/_C.so"
    with zipfile.ZipFile(wheel) as zf:
        elf = member_facts(wheel, zf.getinfo(member))
        zf.extract(member, tmp_path)
    assert elf is not None
    so = str(tmp_path / member)

    def nm(*flags: str) -> set[str]:
        out = subprocess.run(["nm", "-D", *flags, so], capture_output=True, text=True, check=True).stdout
        return {line.split()[-1].replace("@@", "@") for line in out.splitlines() if line.strip()}

    imports = {f"{n}@{v}" if v else n for n, v, _f, _w in elf.imports}
    exports = {line.replace("@@", "@") for line in elf.info.exports.split("\n") if line}
    assert imports == nm("--undefined-only")
    assert exports == nm("--defined-only")
    readelf = subprocess.run(["readelf", "-dW", so], capture_output=True, text=True, check=True).stdout
    assert [ln.split("[")[1].rstrip("]") for ln in readelf.splitlines() if "(NEEDED)" in ln] == list(elf.info.needed)


def test_a_second_verify_reads_no_wheel_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = FactCache(tmp_path / "facts")
    path = real_wheel("torchvision", "0.21.0", "3.12", X86)
    first = read_wheels([path], cache)[0]

    def no_reading(*_args: object) -> None:
        raise AssertionError("a cached wheel was read")

    monkeypatch.setattr("jetwheel.verify.extract.member_facts", no_reading)
    monkeypatch.setattr("jetwheel.verify.extract.zipfile.ZipFile", no_reading)
    monkeypatch.setattr("jetwheel.verify.factcache.sha256_file", no_reading)
    assert read_wheels([path], cache)[0] == first


def test_the_command_line_verifies_for_another_platform(capsys: pytest.CaptureFixture[str]) -> None:
    vision = real_wheel("torchvision", "0.22.0", "3.12", X86)
    torch = real_wheel("torch", "2.6.0", "3.12", X86)
    argv = ["verify", "--platform", "linux_x86_64", "--json", "-p", str(vision), "--with", str(torch)]
    assert door(*argv) == 1
    (report,) = json.loads(capsys.readouterr().out)
    assert report["failing"] == ["abi", "pins"]
