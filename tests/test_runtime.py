"""The runtime the wheels meet: a policy read from a real image's files (podman image mount) and
verify judging wheels against it, exactly, instead of the profile's hand-written patterns."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from wheelmaker import make_wheel

from jetwheel.errors import JetwheelError
from jetwheel.model.recipe import load_profile
from jetwheel.runtime.image import policy_from_image
from jetwheel.target import Target
from jetwheel.verify import read_wheels, retarget, verify_wheel
from jetwheel.verify.policy import Policy, apply, load, read_dirs, save

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


def cusparselt_user(tmp_path: Path, fakes: Path) -> Path:
    """A library needing libcusparseLt.so.0, as torch built with USE_CUSPARSELT=1 does."""
    return shared_object(
        tmp_path,
        "sparse.so",
        "int cusparseLtInit(void); int f(void){return cusparseLtInit();}\n",
        f"-L{fakes}",
        "-lcusparseLt",
    )


def ext_wheel(
    tmp: Path, name: str, so: Path, tag: str = "cp312-cp312-linux_x86_64", extra: dict[str, Path] | None = None
) -> Path:
    files = {f"{name}/_ext.so": so.read_bytes(), **{f"{name}/{k}": p.read_bytes() for k, p in (extra or {}).items()}}
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
def test_the_export_path_reads_the_same_policy_as_the_mount(builder_policy: Path) -> None:
    """docker has no image mount: a created container's export is read instead (podman's export
    here, the same format; ~5-10 s to stream the 0.7 GB image)."""
    assert policy_from_image(BUILDER, mount=False).to_json() == load(builder_policy).to_json()


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
    sparse = cusparselt_user(tmp_path, fakes)
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
    # a versioned reference the image's library does not define (a zlib from the future)
    vers = tmp_path / "vers"
    vers.mkdir()
    (vers / "v.map").write_text("ZLIB_9.9 { global: deflate; };\n")
    shared_object(
        vers,
        "libz.so.1",
        "int deflate(void){return 0;}\n",
        f"-Wl,--version-script={vers / 'v.map'}",
        soname="libz.so.1",
    )
    (vers / "libz.so").symlink_to("libz.so.1")
    newer = shared_object(
        tmp_path, "newer.so", "int deflate(void); int f(void){return deflate();}\n", f"-L{vers}", "-lz"
    )
    report = verify_wheel(read_wheels([ext_wheel(tmp_path, "newer", newer)])[0], x86_triton(builder_policy))
    assert any("deflate@ZLIB_9.9 is not exported by libz.so.1 of the runtime" in f.detail for f in report.findings)
    # the same through the CLI: exit 0 / 1, the failure naming the library
    base = [sys.executable, "-m", "jetwheel", "verify", "--profile", "triton-25.04", "--platform", "linux_x86_64"]
    base += ["--policy", str(builder_policy), "--facts", str(tmp_path / "facts"), "-p"]
    assert subprocess.run([*base, str(tmp_path / "okpkg-1.0-cp312-cp312-linux_x86_64.whl")]).returncode == 0
    done = subprocess.run(
        [*base, str(tmp_path / "sparse-1.0-cp312-cp312-linux_x86_64.whl")], capture_output=True, text=True
    )
    assert done.returncode == 1 and "needs libcusparseLt.so.0" in done.stdout


def test_a_symbol_binds_through_a_runtime_librarys_own_dependencies(tmp_path: Path) -> None:
    """As vLLM's _C against the sysroot's torch: it links libtorch_cuda (the runtime's) but not
    libcublas, and binds cublasGemmEx all the same, through libtorch_cuda's DT_NEEDED: ld.so searches
    the whole breadth-first closure. A policy without the runtime's DT_NEEDED failed that wheel."""
    root = tmp_path / "root"
    lib = root / "usr" / "lib"
    lib.mkdir(parents=True)
    shutil.copy2("/lib/x86_64-linux-gnu/libc.so.6", lib)  # the C library every runtime has
    shared_object(lib, "libgemm.so.12", "int gemm_ex(void){return 0;}\n", soname="libgemm.so.12")
    shared_object(
        lib, "libtorchy.so.2", "int torchy(void){return 1;}\n", f"-L{lib}", "-l:libgemm.so.12", soname="libtorchy.so.2"
    )
    ext = shared_object(
        tmp_path, "ext.so", "int gemm_ex(void); int f(void){return gemm_ex();}\n", f"-L{lib}", "-l:libtorchy.so.2"
    )
    policy = read_dirs(root, ["/usr/lib"], "x86_64", "a runtime root")
    assert policy.files["/usr/lib/libtorchy.so.2"].needed[0] == "libgemm.so.12"
    wheel = read_wheels([ext_wheel(tmp_path, "binds", ext)])[0]
    assert verify_wheel(wheel, apply(x86_triton(), policy)).passed
    # the same runtime with no libgemm: the reference binds nowhere, and verify says so
    (lib / "libgemm.so.12").unlink()
    report = verify_wheel(wheel, apply(x86_triton(), read_dirs(root, ["/usr/lib"], "x86_64", "a runtime root")))
    assert any("undefined symbol gemm_ex" in f.detail for f in report.findings), report.to_json()


@needs_podman
def test_the_gpu_driver_is_the_hosts_even_with_an_image_policy(builder_policy: Path, tmp_path: Path) -> None:
    """libcuda.so.1 is mounted into the container by the NVIDIA runtime, never in the image's files:
    it keeps the profile's entry; a CUDA runtime library the image lacks does not."""
    libs = tmp_path / "libs"
    libs.mkdir()
    shared_object(libs, "libcuda.so.1", "int cuInit(int f){return f;}\n", soname="libcuda.so.1")
    shared_object(libs, "libcudart.so.12", "int cudaFree(void*p){return 0;}\n", soname="libcudart.so.12")
    drv = shared_object(
        tmp_path, "drv.so", "int cuInit(int); int f(void){return cuInit(0);}\n", str(libs / "libcuda.so.1")
    )
    rt = shared_object(
        tmp_path, "rt.so", "int cudaFree(void*); int f(void){return cudaFree(0);}\n", str(libs / "libcudart.so.12")
    )
    wheels = read_wheels([ext_wheel(tmp_path, "drvpkg", drv), ext_wheel(tmp_path, "rtpkg", rt)])
    assert verify_wheel(wheels[0], x86_triton(builder_policy)).passed
    assert not verify_wheel(wheels[1], x86_triton(builder_policy)).passed


def test_triton_profile_fails_a_wheel_needing_cusparselt_unless_something_ships_it(fakes: Path, tmp_path: Path) -> None:
    sparse = cusparselt_user(tmp_path, fakes)
    alone, shipped = read_wheels(
        [
            ext_wheel(tmp_path, "sparse", sparse),
            ext_wheel(tmp_path, "shipsit", sparse, extra={"libcusparseLt.so.0": fakes / "libcusparseLt.so.0"}),
        ]
    )
    report = verify_wheel(alone, x86_triton())
    assert not report.passed
    assert any("needs libcusparseLt.so.0" in f.detail for f in report.findings)
    assert verify_wheel(shipped, x86_triton()).passed
    assert "libcusparseLt.so.0" not in load_profile("triton-25.04", RECIPES).system_libs


def test_a_policy_file_that_is_not_one_is_one_clean_error(tmp_path: Path) -> None:
    bad = tmp_path / "p.json"
    bad.write_text('{"format": 2, "names": {"libx.so": "/lib/libx.so"}, "files": {}, "sources": [], "machine": "x"}')
    with pytest.raises(JetwheelError, match="names point at files the policy lacks"):
        load(bad)
    bad.write_text('{"format": 9}')
    with pytest.raises(JetwheelError, match="policy format 9, this jetwheel reads 2"):
        load(bad)
    bad.write_text("[]")
    with pytest.raises(JetwheelError, match="not a jetwheel policy file"):
        load(bad)
    with pytest.raises(JetwheelError, match="cannot read the policy"):
        load(tmp_path / "none.json")
    with pytest.raises(JetwheelError, match="is for aarch64, not x86_64"):
        apply(x86_triton(), Policy(("img",), "aarch64", {}))


@needs_podman
def test_runtime_tarball_from_the_local_builder_image(builder_policy: Path, fakes: Path, tmp_path: Path) -> None:
    """The tarball logic without emulation (~2 s): a runtime lacking zlib, a wheel needing libz.so.1;
    the tarball takes zlib from the builder image with its package's copyright file."""
    import tarfile

    from jetwheel.runtime.tarball import make

    full = load(builder_policy)
    names = {n: p for n, p in full.names.items() if not n.startswith("libz.so")}
    save(Policy(full.sources, full.machine, full.files, names), tmp_path / "nozlib.policy.json")
    ok = shared_object(tmp_path, "ok.so", "int deflate(void); int f(void){return deflate();}\n", f"-L{fakes}", "-lz")
    wheel = read_wheels([ext_wheel(tmp_path, "okpkg", ok)])[0]
    out = tmp_path / "nvpl_slim_24.04.tar"
    members, _sha = make(BUILDER, tmp_path / "nozlib.policy.json", [wheel], x86_triton(), out)
    assert [(m.name, m.package) for m in members] == [("libz.so.1", "zlib1g")]
    with tarfile.open(out) as tf:
        assert sorted(n for n in tf.getnames() if not tf.getmember(n).isdir()) == [
            "nvpl_slim_24.04/include/jetwheel-runtime/MANIFEST.json",
            "nvpl_slim_24.04/include/jetwheel-runtime/licenses/zlib1g/copyright",
            "nvpl_slim_24.04/lib/libz.so.1",
        ]
    # nothing missing: no tarball, one clean line
    with pytest.raises(JetwheelError, match="has every library the stack needs"):
        make(BUILDER, builder_policy, [wheel], x86_triton(), tmp_path / "none.tar")


needs_cross = pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None, reason="no aarch64 cross compiler")
RUNTIME_PACKAGES = ["libc6", "libgcc-s1", "libstdc++6", "gcc-12-base"]  # gcc-12-base: their doc dirs link to it


@pytest.fixture(scope="module")
def arm64_roots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(runtime, builder) root filesystems of Debian bookworm's real arm64 packages: the C and C++
    runtime; the same with OpenBLAS and its libgfortran, its alternatives symlink laid as the
    package's postinst (update-alternatives) lays it. Standing in for igpu-min and the JetPack
    builder with libopenblas-dev; no emulation (~1 s once the ~8 MB of packages are cached)."""
    from debian_arm64 import unpack

    runtime = unpack(tmp_path_factory.mktemp("runtime"), RUNTIME_PACKAGES)
    builder = unpack(tmp_path_factory.mktemp("builder"), [*RUNTIME_PACKAGES, "libopenblas0-pthread", "libgfortran5"])
    alt = "libopenblas.so.0-aarch64-linux-gnu"
    (builder / "etc" / "alternatives").mkdir(parents=True, exist_ok=True)
    (builder / "etc" / "alternatives" / alt).symlink_to("/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0")
    (builder / "usr" / "lib" / "aarch64-linux-gnu" / "libopenblas.so.0").symlink_to(f"/etc/alternatives/{alt}")
    return runtime, builder


@pytest.mark.real
@needs_cross
def test_runtime_tarball_carries_exactly_what_the_runtime_lacks(arm64_roots: tuple[Path, Path], tmp_path: Path) -> None:
    """A torch-like aarch64 wheel linking OpenBLAS, a runtime without it: the tarball holds
    libopenblas.so.0 and what it needs that the runtime lacks (libgfortran.so.5), each with its
    Debian copyright file, reproducibly; verify fails the wheel against the runtime alone and passes
    it with the tarball."""
    import tarfile

    from jetwheel.runtime.image import missing_from_runtime, runtime_policy
    from jetwheel.runtime.tarball import collect, write
    from jetwheel.verify.policy import read_tree

    runtime_root, builder = arm64_roots
    runtime = read_tree(runtime_root, "aarch64", "debian-arm64-runtime")
    assert runtime.provides("libc.so.6") and not runtime.provides("libopenblas.so.0")
    save(runtime, tmp_path / "runtime.policy.json")
    stub = shared_object(
        tmp_path,
        "libopenblas.so.0",
        "void cblas_sgemm(void){}\n",
        soname="libopenblas.so.0",
        cc="aarch64-linux-gnu-gcc",
    )
    ext = shared_object(
        tmp_path,
        "blas.so",
        "void cblas_sgemm(void); void f(void){cblas_sgemm();}\n",
        str(stub),
        cc="aarch64-linux-gnu-gcc",
    )
    wheel = read_wheels([ext_wheel(tmp_path, "blaspkg", ext, tag="cp312-cp312-linux_aarch64")])[0]
    target = load_profile("triton-25.04", RECIPES).target()

    names = missing_from_runtime([wheel], target, runtime)
    assert names == ["libopenblas.so.0"]
    members = collect(builder, "aarch64", names, runtime, "debian-arm64-builder")
    assert [(m.name, m.package, m.origin) for m in members] == [
        ("libgfortran.so.5", "libgfortran5", "/usr/lib/aarch64-linux-gnu/libgfortran.so.5.0.0"),
        (
            "libopenblas.so.0",
            "libopenblas0-pthread",
            "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so",
        ),
    ]
    out = tmp_path / "nvpl_slim_24.04.tar"
    sha = write(members, builder, out, "debian-arm64-builder", runtime)
    assert write(members, builder, tmp_path / "again.tar", "debian-arm64-builder", runtime) == sha  # reproducible
    with tarfile.open(out) as tf:
        files = sorted(n for n in tf.getnames() if not tf.getmember(n).isdir())
    assert files == [
        "nvpl_slim_24.04/include/jetwheel-runtime/MANIFEST.json",
        "nvpl_slim_24.04/include/jetwheel-runtime/licenses/libgfortran5/copyright",
        "nvpl_slim_24.04/include/jetwheel-runtime/licenses/libopenblas0-pthread/copyright",
        "nvpl_slim_24.04/lib/libgfortran.so.5",
        "nvpl_slim_24.04/lib/libopenblas.so.0",
    ]
    alone = verify_wheel(wheel, apply(target, runtime_policy(tmp_path / "runtime.policy.json")))
    assert not alone.passed and any("needs libopenblas.so.0" in f.detail for f in alone.findings)
    assert "inv runtime.tarball" in " ".join(f.fix for f in alone.findings)
    assert verify_wheel(wheel, apply(target, runtime_policy(tmp_path / "runtime.policy.json", out))).passed
