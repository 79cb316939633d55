"""Every image a bundled profile, test or bench script names is one the project makes itself or one
the README tells the user to bring: a name nothing makes passes only where an earlier run left it."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from jetwheel.model.recipe import load_profile
from jetwheel.runners.baseimage import BRING_YOUR_OWN, BUILDER, LOCAL_IMAGES, image_fix

ROOT = Path(__file__).resolve().parents[1]
PROFILES = sorted(p.stem for p in (ROOT / "recipes" / "profiles").glob("*.toml"))
# a builder image named in code, profiles or Containerfiles (images a test derives and names
# itself, like localhost/jetwheel-test-torch:..., are made by that test)
NAMED = re.compile(r"""["'=]((?:localhost/jetwheel-(?:builder|base)|jetwheel/builder):[\w.-]+)""")


def test_every_profile_image_is_made_here_or_brought_by_the_user() -> None:
    for name in PROFILES:
        profile = load_profile(name)
        for image in {profile.image, profile.base_image} - {"host", ""}:
            assert image in LOCAL_IMAGES or image in BRING_YOUR_OWN, f"profile {name}: nothing makes {image}"


def test_every_image_named_in_the_tree_is_made_here_or_brought() -> None:
    files = [
        *ROOT.glob("jetwheel/**/*.py"),
        *ROOT.glob("tests/**/*"),
        *ROOT.glob("bench/*.py"),
        *ROOT.glob("recipes/**/*.toml"),
    ]
    for path in files:
        if not path.is_file() or path.suffix in {".whl", ".gz", ".so", ".o"}:
            continue
        for image in NAMED.findall(path.read_text(errors="replace")):
            # tests may name throwaway tags of their own (localhost/jetwheel-builder:test), made in the test
            if image.endswith(":test"):
                continue
            assert image in LOCAL_IMAGES or image in BRING_YOUR_OWN, f"{path.relative_to(ROOT)}: nothing makes {image}"


def test_the_readme_tells_how_to_bring_each_user_image() -> None:
    readme = (ROOT / "README.md").read_text()
    for image in BRING_YOUR_OWN:
        assert image in readme, f"README does not say how to bring {image}"


def test_a_missing_image_names_the_command_that_makes_it() -> None:
    assert image_fix(BUILDER) == f"inv podman.base-image --name {BUILDER}"
    arm = next(i for i, a in LOCAL_IMAGES.items() if a == "aarch64")
    assert image_fix(arm).endswith("--arch aarch64")
    assert image_fix("jetwheel/builder:r36.4.0-py3.12", "docker").startswith("docker build -t jetwheel/builder")


def test_concurrent_callers_make_a_missing_image_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jetwheel.runners import baseimage

    made: list[str] = []

    def make(name: str, *_args: object) -> str:
        time.sleep(0.2)  # debootstrap's minutes, shortened: long enough for the others to arrive
        made.append(name)
        return name

    monkeypatch.setattr(baseimage, "image_exists", lambda _engine, _name: bool(made))
    monkeypatch.setattr(baseimage, "_make", make)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: baseimage.ensure_base_image(BUILDER, cache=tmp_path), range(4)))
    assert got == [BUILDER] * 4 and made == [BUILDER]


def test_a_failed_debootstrap_leaves_the_kept_rootfs_and_no_partial_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    from jetwheel.errors import RunnerError
    from jetwheel.runners import baseimage

    fails = [False]

    def fake(cmd: list[str], **_kw: object) -> subprocess.CompletedProcess[str]:
        target = Path(cmd[-2])  # debootstrap ... SUITE TARGET MIRROR
        (target / "usr").mkdir(parents=True)  # half a tree, as a failed or killed run leaves it
        (target / "usr" / "half").write_text("x")
        return subprocess.CompletedProcess(cmd, 1 if fails[0] else 0, "", "E: no network")

    monkeypatch.setattr("jetwheel.runners.baseimage.subprocess.run", fake)
    monkeypatch.setattr("jetwheel.runners.baseimage.shutil.which", lambda _name: "/usr/sbin/debootstrap")
    kept = baseimage.debootstrap("bookworm", "", tmp_path, packages="old")
    assert (kept / ".jetwheel-packages").read_text() == "old"
    fails[0] = True
    with pytest.raises(RunnerError, match="no network"):
        baseimage.debootstrap("bookworm", "", tmp_path, packages="new")
    # the kept tree is still whole and nothing half-made lies beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rootfs-bookworm-native"]
    assert (kept / ".jetwheel-packages").read_text() == "old"
    fails[0] = False
    assert (baseimage.debootstrap("bookworm", "", tmp_path, packages="new") / ".jetwheel-packages").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rootfs-bookworm-native"]
