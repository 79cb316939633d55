"""The runtime the wheels meet: a policy read from a real image's files (podman image mount) and
verify judging wheels against it, exactly, instead of the profile's hand-written patterns."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from wheelmaker import make_wheel

from jetwheel.errors import JetwheelError
from jetwheel.recipe import load_profile
from jetwheel.runtime import policy_from_image
from jetwheel.target import Target
from jetwheel.verify import read_wheels, retarget, verify_wheel
from jetwheel.verify.policy import Policy, apply, load, save

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
BUILDER = "localhost/jetwheel-builder:bookworm"
needs_podman = pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")


def shared_object(tmp: Path, name: str, code: str, *link: str, soname: str = "", cc: str = "gcc") -> Path:
    """A real shared object compiled from `code`, linked with `link` (-L/-l flags, kept even if unused)."""
    src = tmp / f"{name}.c"
    src.write_text(code)
    out = tmp / name
    flags = [f"-Wl,-soname,{soname}"] if soname else []
    cmd = [cc, "-shared", "-fPIC", "-o", str(out), str(src), *flags, "-Wl,--no-as-needed", *link]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


def ext_wheel(tmp: Path, name: str, so: Path, tag: str = "cp312-cp312-linux_x86_64", **extra: Path) -> Path:
    files = {f"{name}/_ext.so": so.read_bytes(), **{f"{name}/{k}": p.read_bytes() for k, p in extra.items()}}
    return make_wheel(tmp, name, "1.0", extra=files, tag=tag)


@pytest.fixture(scope="module")
def builder_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The policy of the project's local builder image, read once (~1 s; the image is the suite's)."""
    from jetwheel.runners.baseimage import ensure_base_image

    ensure_base_image()
    path = tmp_path_factory.mktemp("policy") / "bookworm.policy.json"
    save(policy_from_image(BUILDER), path)
    return path


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Libraries to link against: a libz.so.1 with a symbol no real zlib has, a libcusparseLt.so.0."""
    d = tmp_path_factory.mktemp("libs")
    shared_object(
        d,
        "libz.so.1",
        "int deflate(void){return 0;} int deflate_from_the_future(void){return 1;}\n",
        soname="libz.so.1",
    )
    (d / "libz.so").symlink_to("libz.so.1")
    shared_object(d, "libcusparseLt.so.0", "int cusparseLtInit(void){return 0;}\n", soname="libcusparseLt.so.0")
    (d / "libcusparseLt.so").symlink_to("libcusparseLt.so.0")
    return d


def x86_triton(policy: Path | None = None) -> Target:
    target = retarget(load_profile("triton-25.04", RECIPES).target(), "linux_x86_64")
    return apply(target, load(policy)) if policy else target


@needs_podman
def test_policy_from_the_local_image_lists_its_libraries_symbols_and_digest(builder_policy: Path) -> None:
    policy = load(builder_policy)
    doc = json.loads(builder_policy.read_text())
    assert policy.machine == "x86_64" and policy.sources[0].startswith(f"{BUILDER}@sha256:")
    counts = policy.counts()
    assert counts["names"] > 100 and counts["symbols"] > 10_000, counts
    libc = doc["files"][doc["names"]["libc.so.6"]]
    assert libc["soname"] == "libc.so.6" and "GLIBC_2.36" in libc["verdefs"]
    assert "memcpy@@GLIBC_2.14" in libc["exports"] and "deflate@@ZLIB_1.2.0" not in libc["exports"]
    assert policy.provides("libz.so.1") and policy.provides("libstdc++.so.6")
    # Debian's debootstrap image has no OpenBLAS, no CUDA, no cuSPARSELt
    assert not any(policy.provides(n) for n in ("libopenblas.so.0", "libcudart.so.12", "libcusparseLt.so.0"))


@needs_podman
def test_verify_uses_the_image_policy_exactly(builder_policy: Path, fakes: Path, tmp_path: Path) -> None:
    """A wheel needing only what the image has passes; one needing a library it lacks, or a symbol
    its library does not export, fails, where the hand-written patterns would have passed it."""
    ok = shared_object(tmp_path, "ok.so", "int deflate(void); int f(void){return deflate();}\n", f"-L{fakes}", "-lz")
    future = shared_object(
        tmp_path,
        "future.so",
        "int deflate_from_the_future(void); int f(void){return deflate_from_the_future();}\n",
        f"-L{fakes}",
        "-lz",
    )
    sparse = shared_object(
        tmp_path,
        "sparse.so",
        "int cusparseLtInit(void); int f(void){return cusparseLtInit();}\n",
        f"-L{fakes}",
        "-lcusparseLt",
    )
    wheels = read_wheels(
        [ext_wheel(tmp_path, n, so) for n, so in (("okpkg", ok), ("future", future), ("sparse", sparse))]
    )
    by_policy = [verify_wheel(w, x86_triton(builder_policy)) for w in wheels]
    assert by_policy[0].passed, by_policy[0].to_json()
    assert not by_policy[1].passed
    assert "undefined symbol deflate_from_the_future" in " ".join(f.detail for f in by_policy[1].findings)
    assert not by_policy[2].passed
    assert any("needs libcusparseLt.so.0" in f.detail for f in by_policy[2].findings)
    # the hand-written table's "deflate*" pattern passes what the image does not export
    assert verify_wheel(wheels[1], x86_triton()).passed


def test_triton_profile_fails_a_wheel_needing_cusparselt_unless_something_ships_it(fakes: Path, tmp_path: Path) -> None:
    sparse = shared_object(
        tmp_path,
        "sparse.so",
        "int cusparseLtInit(void); int f(void){return cusparseLtInit();}\n",
        f"-L{fakes}",
        "-lcusparseLt",
    )
    alone, shipped = read_wheels(
        [
            ext_wheel(tmp_path, "sparse", sparse),
            ext_wheel(tmp_path, "shipsit", sparse, **{"libcusparseLt.so.0": fakes / "libcusparseLt.so.0"}),
        ]
    )
    report = verify_wheel(alone, x86_triton())
    assert not report.passed
    assert any("needs libcusparseLt.so.0" in f.detail for f in report.findings)
    assert verify_wheel(shipped, x86_triton()).passed
    assert "libcusparseLt.so.0" not in load_profile("triton-25.04", RECIPES).system_libs


def test_a_policy_file_that_is_not_one_is_one_clean_error(tmp_path: Path) -> None:
    bad = tmp_path / "p.json"
    bad.write_text('{"format": 1, "names": {"libx.so": "/lib/libx.so"}, "files": {}, "sources": [], "machine": "x"}')
    with pytest.raises(JetwheelError, match="names point at files the policy lacks"):
        load(bad)
    bad.write_text('{"format": 9}')
    with pytest.raises(JetwheelError, match="policy format 9, this jetwheel reads 1"):
        load(bad)
    bad.write_text("[]")
    with pytest.raises(JetwheelError, match="not a jetwheel policy file"):
        load(bad)
    with pytest.raises(JetwheelError, match="cannot read the policy"):
        load(tmp_path / "none.json")
    with pytest.raises(JetwheelError, match="is for aarch64, not x86_64"):
        apply(x86_triton(), Policy(("img",), "aarch64", {}))
