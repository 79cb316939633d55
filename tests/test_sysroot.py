"""The sysroot's pieces that are code, in-process: the plan of a profile whose image provides torch,
how the root's packages are merged across architectures, the alternatives read from postinst
scripts, and preflight's list of what an image lacks."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

from test_runtime import ext_wheel, shared_object

from jetwheel.build.plan import make_plan, render_plan
from jetwheel.build.preflight_source import backend_check
from jetwheel.build.preflight_sysroot import sysroot_checks
from jetwheel.machine import Machine
from jetwheel.model.recipe import load_profile, load_recipes
from jetwheel.runners import debroot
from jetwheel.runners.sysroot import NEEDS, Need
from jetwheel.target import Target
from jetwheel.verify import read_wheels, verify_wheel
from jetwheel.verify.policy import apply, read_dirs

MACHINE = Machine(cores=2, memory_gb=24)


def test_sysroot_plan_builds_nothing_the_image_provides_and_says_so() -> None:
    plan = make_plan(load_recipes(), load_profile("sysroot-trixie-arm64"), "torchvision", "docker", MACHINE)
    assert [s.name for s in plan.steps] == ["torchvision"]
    step = plan.steps[0]
    assert step.deps == () and step.wheel == "torchvision-0.21.0+cu124-cp313-cp313-linux_aarch64.whl"
    assert step.env["TORCH_CUDA_ARCH_LIST"] == "8.7"
    assert step.commands[0] == 'python3 -m venv --clear --system-site-packages "$JW_WORK/env"'
    assert "torch==" not in step.commands[2] and "numpy" not in step.commands[2]
    # Debian's torch pins sympy==1.13.1 in its metadata and ships 1.13.3: build must not check it
    assert any("-m build --wheel --no-isolation --skip-dependency-check" in c for c in step.commands)
    assert "provided by the image, not built: numpy, torch" in render_plan(plan)


def test_other_profiles_keep_isolated_venvs() -> None:
    plan = make_plan(load_recipes(), load_profile("x86-cuda12"), "torchvision", "docker", MACHINE)
    assert [s.name for s in plan.steps] == ["torch", "torchvision"]
    assert "--system-site-packages" not in plan.steps[1].commands[0]
    assert not any("--skip-dependency-check" in c for c in plan.steps[1].commands)


def test_merge_keeps_both_arches_of_multiarch_same_and_prefers_the_host_tool() -> None:
    arm = [debroot.Deb("libc6", "2.41", "arm64"), debroot.Deb("binutils-aarch64-linux-gnu", "2.44", "arm64")]
    x86 = [
        debroot.Deb("libc6", "2.41", "amd64"),
        debroot.Deb("binutils-aarch64-linux-gnu", "2.44", "amd64"),
        debroot.Deb("gcc-13-cross-base", "13.3", "all"),
    ]
    merged = debroot.merge(arm, x86, same={"libc6"})
    assert sorted(d.spec for d in merged) == [
        "binutils-aarch64-linux-gnu:amd64=2.44",
        "gcc-13-cross-base=13.3",
        "libc6:amd64=2.41",
        "libc6:arm64=2.41",
    ]


def fake_deb(tmp: Path, name: str, postinst: str) -> Path:
    """A .deb with only a control archive holding `postinst` (dpkg-deb --build needs a tree)."""
    tree = tmp / name
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: 1\nArchitecture: arm64\nMaintainer: t <t@t>\nDescription: t\n"
    )
    (tree / "DEBIAN" / "postinst").write_text(postinst)
    (tree / "DEBIAN" / "postinst").chmod(0o755)
    subprocess.run(["dpkg-deb", "--build", str(tree), str(tmp / f"{name}.deb")], check=True, capture_output=True)
    return tmp / f"{name}.deb"


def test_alternatives_from_postinst_pick_the_highest_priority_and_join_continued_lines(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for lib in ("blas/libblas.so.3", "openblas-pthread/libblas.so.3"):
        (root / "usr/lib/aarch64-linux-gnu" / lib).parent.mkdir(parents=True, exist_ok=True)
        (root / "usr/lib/aarch64-linux-gnu" / lib).write_text("")
    ref = fake_deb(
        tmp_path,
        "libblas3",
        "#!/bin/sh\nupdate-alternatives --install /usr/lib/aarch64-linux-gnu/libblas.so.3 \\\n"
        "    libblas.so.3-aarch64-linux-gnu /usr/lib/aarch64-linux-gnu/blas/libblas.so.3 10\n",
    )
    fast = fake_deb(
        tmp_path,
        "libopenblas0",
        "update-alternatives --install /usr/lib/${DEB_HOST_MULTIARCH}/libblas.so.3 libblas.so.3-x "
        "/usr/lib/${DEB_HOST_MULTIARCH}/openblas-pthread/libblas.so.3 100\n",
    )
    links = debroot.alternatives([ref, fast], root, "aarch64-linux-gnu")
    target = "/usr/lib/aarch64-linux-gnu/openblas-pthread/libblas.so.3"
    assert links == {"/usr/lib/aarch64-linux-gnu/libblas.so.3": target}
    assert (root / "usr/lib/aarch64-linux-gnu/libblas.so.3").readlink() == Path(target)


def test_preflight_names_each_thing_the_sysroot_lacks_with_its_fix() -> None:
    needs = (Need("true thing", "true", "nothing"), Need("pybind11 headers", "false", "apt-get install pybind11-dev"))
    checks = sysroot_checks("img", ["bash", "-c"], needs)
    assert [(c.check, c.ok, c.fix) for c in checks] == [
        ("img: sysroot lacks pybind11 headers", False, "apt-get install pybind11-dev")
    ]
    assert [c.ok for c in sysroot_checks("img", ["bash", "-c"], needs[:1])] == [True]
    assert "did not run" in sysroot_checks("img", ["false"], needs)[0].detail


def test_preflight_asks_nothing_of_the_index_that_the_image_provides(tmp_path: Path) -> None:
    """torchvision's pyproject.toml build-system needs torch, and its recipe numpy<2: in the sysroot
    both are the image's, so neither is a missing backend requirement nor asked of the index."""
    profile = load_profile("sysroot-trixie-arm64")
    recipes = load_recipes()
    step = make_plan(recipes, profile, "torchvision", "docker", MACHINE).steps[0]
    (tmp_path / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools", "torch", "numpy<2"]\n')
    assert profile.provides("numpy<2") and profile.provides("torch ; python_version>'3'")
    assert not profile.provides("pillow")
    ok = backend_check(step, recipes["torchvision"], tmp_path, profile.provided)
    assert ok is not None and ok.ok, ok
    bad = backend_check(step, recipes["torchvision"], tmp_path)
    assert bad is not None and not bad.ok and "torch" in bad.detail


def test_preflight_asks_for_the_compilers_pythons_sysconfig_names(tmp_path: Path) -> None:
    # setuptools links an extension with sysconfig's LDSHARED (aarch64-linux-gnu-gcc in Debian's
    # arm64 Python): an image with only cc/c++ compiled torchvision whole, then failed at its link
    need = next(n for n in NEEDS if "sysconfig" in n.what)
    python3 = tmp_path / "python3"
    for named, ok in (("sh", True), ("aarch64-linux-gnu-gcc-none", False)):
        python3.write_text(f"#!/bin/sh\necho {named}\n")
        python3.chmod(0o755)
        done = subprocess.run(["bash", "-c", need.test], env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
        assert (done.returncode == 0) is ok, named


class NoWheels:
    """An index that has nothing; verify must not ask it for what the system provides."""

    url = "http://index.test"

    def __init__(self) -> None:
        self.asked: list[str] = []

    def find(self, requirement: str, tags: object) -> None:
        self.asked.append(requirement)
        return None

    def download(self, filename: str, dest: Path) -> Path:
        raise AssertionError(filename)

    def facts(self, filename: str) -> None:
        return None


def test_verify_binds_a_wheel_built_on_the_sysroot_against_the_images_own_libtorch(tmp_path: Path) -> None:
    """torch is the image's (Debian's libtorch.so.2.6, no wheel on any index): verify takes the
    image's libraries as the system (workflow/verify.image_target reads them from the image) and
    passes the extension whose symbols that libtorch exports; one built against a torch whose
    symbol is gone still fails, naming it; and with the image unread nothing passes by default."""

    def policy_of(code: str, name: str) -> Target:
        lib = tmp_path / name
        lib.mkdir()
        shared_object(lib, "libtorch.so.2.6", code, soname="libtorch.so.2.6")
        dirs = [str(lib), "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"]
        return apply(target, read_dirs(Path("/"), dirs, "x86_64", f"{name}@sha256:0"))

    pins = {"torch": "2.6.0", "torchvision": "1.0"}
    target = Target("3.12", "linux_x86_64", "", "", pins=pins, glibc="2.36", provided=("torch",))
    built = tmp_path / "built"
    built.mkdir()
    shared_object(built, "libtorch.so.2.6", "int _ZN3c108ListType3getEv(void){return 0;}\n", soname="libtorch.so.2.6")
    ext = shared_object(
        tmp_path,
        "ext.so",
        "int _ZN3c108ListType3getEv(void); int f(void){return _ZN3c108ListType3getEv();}\n",
        f"-L{built}",
        "-l:libtorch.so.2.6",
    )
    whl = read_wheels([ext_wheel(tmp_path, "torchvision", ext)])[0]
    whl = dataclasses.replace(whl, requires=("torch==2.6.0",))

    index = NoWheels()
    same = verify_wheel(whl, policy_of("int _ZN3c108ListType3getEv(void){return 0;}\n", "image"), source=index)
    assert same.passed, [f.detail for f in same.findings]
    assert index.asked == []  # torch is never looked for on the index

    other = verify_wheel(whl, policy_of("int _ZN3c104Type3getEv(void){return 0;}\n", "other"), source=NoWheels())
    assert "abi" in other.failing_checks()
    assert any("c10::ListType::get" in f.detail for f in other.errors()), [f.detail for f in other.errors()]

    unread = verify_wheel(whl, target, source=NoWheels())
    assert "abi" in unread.failing_checks() and not any("has no wheel" in f.detail for f in unread.findings)


def test_the_sysroot_profiles_target_says_what_the_image_provides() -> None:
    assert load_profile("sysroot-trixie-arm64").target().provided == ("torch", "numpy")
    assert load_profile("triton-25.04").target().provided == ()
