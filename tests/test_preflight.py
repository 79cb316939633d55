"""Preflight: the mini stack passes, and each broken setup fails its own check, naming the fix,
before anything is built."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Server, door

from jetwheel.build.plan import make_plan
from jetwheel.build.preflight import Check, Needs, failures, preflight, render
from jetwheel.machine import this_machine
from jetwheel.model.recipe import load_profile, load_recipes
from jetwheel.runners import DockerRunner, LocalRunner, Runner
from jetwheel.runners.baseimage import ensure_base_image
from jetwheel.sources.archives import archive_name, pack
from jetwheel.workflow.context import context, settings

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
SMALL = Needs(disk_gb=1)


def run(
    server: Server,
    runner: Runner,
    target: str = "mini-cuda",
    root: Path | None = None,
    needs: Needs = SMALL,
    image: str = "",
) -> list[Check]:
    recipes, profile = load_recipes(root), load_profile("mini", root)
    plan = make_plan(recipes, profile, target, runner.name, this_machine())
    if image:
        from dataclasses import replace

        plan = replace(plan, steps=tuple(replace(s, image=image) for s in plan.steps))
    started = time.monotonic()
    checks = preflight(plan, recipes, profile, runner, server.client(), needs)
    print(f"{time.monotonic() - started:.1f}s\n{render(checks)}")
    return checks


def edited_recipes(tmp_path: Path, name: str, old: str, new: str) -> Path:
    root = tmp_path / "recipes"
    if not root.exists():
        shutil.copytree(RECIPES, root, ignore=shutil.ignore_patterns("build", "*.egg-info", "*.so"))
    recipe = root / "examples" / f"{name}.toml"
    text = recipe.read_text()
    assert old in text
    recipe.write_text(text.replace(old, new, 1))
    return root


def only_failure(checks: list[Check]) -> Check:
    bad = failures(checks)
    assert len(bad) == 1, render(bad)
    return bad[0]


def test_mini_stack_passes_preflight(stack_server: Server) -> None:
    checks = run(stack_server, LocalRunner(settings=settings()))
    assert failures(checks) == []
    names = {c.check for c in checks}
    for step in ("mini-torch", "mini-vision", "mini-cuda"):
        assert {f"{step}: {k}" for k in ("source", "patches", "dependency wheels", "build requirements")} <= names
        assert {f"{step}: disk", f"{step}: memory"} <= names
    assert "host: python" in names and "host: nvcc" in names  # mini-cuda needs CUDA: nvcc checked
    assert any("jobs fit" in c.detail for c in checks)


def test_wrong_sha256_fails_the_source_check(stack_server: Server, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(RECIPES / "examples" / "mini-torch", arcname="mini-torch-1.0.0")
    archive = tmp_path / "mini-torch-1.0.0.tar.gz"
    archive.write_bytes(buf.getvalue())
    wrong = hashlib.sha256(b"not this file").hexdigest()
    root = edited_recipes(
        tmp_path, "mini-torch", 'path = "mini-torch"', f'url = "{archive.as_uri()}"\nsha256 = "{wrong}"'
    )
    bad = only_failure(run(stack_server, LocalRunner(settings=settings()), "mini-torch", root))
    assert bad.check == "mini-torch: source" and wrong in bad.detail and "sha256" in bad.fix


def test_patch_that_does_not_apply_fails(stack_server: Server, tmp_path: Path) -> None:
    root = edited_recipes(
        tmp_path,
        "mini-vision",
        'requires = ["setuptools>=68"]',
        'requires = ["setuptools>=68"]\npatches = ["stale.patch"]',
    )
    (root / "examples" / "patches").mkdir()
    (root / "examples" / "patches" / "stale.patch").write_text(
        "--- a/setup.py\n+++ b/setup.py\n@@ -1,2 +1,2 @@\n-this line is not in setup.py\n+nor is this one\n context\n"
    )
    bad = only_failure(run(stack_server, LocalRunner(settings=settings()), "mini-vision", root))
    assert bad.check == "mini-vision: patches" and "stale.patch does not apply" in bad.detail
    assert "rebase" in bad.fix


def test_unresolvable_build_requirement_fails(stack_server: Server, tmp_path: Path) -> None:
    root = edited_recipes(tmp_path, "mini-vision", 'requires = ["setuptools>=68"]', 'requires = ["setuptools>=999"]')
    bad = only_failure(run(stack_server, LocalRunner(settings=settings()), "mini-vision", root))
    assert bad.check == "mini-vision: build requirements" and "setuptools>=999" in bad.detail


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def test_too_little_disk_fails_naming_what_the_recipe_needs(stack_server: Server, tiny_disk: Path) -> None:
    # no --disk-gb: mini-torch's recipe sets no disk_gb, so the default of 2 GB applies
    checks = run(
        stack_server, LocalRunner(settings=settings()), "mini-torch", needs=Needs(work_root=tiny_disk / "work")
    )
    bad = only_failure(checks)
    assert bad.check == "mini-torch: disk" and "0.0 GB free" in bad.detail and "2 GB needed" in bad.detail


@pytest.mark.slow
def test_docker_mini_stack_passes_and_a_missing_image_fails(stack_server: Server) -> None:
    image = ensure_base_image()
    runner = DockerRunner(engine="podman")
    checks = run(stack_server, runner, "mini-vision")
    assert failures(checks) == []
    assert f"{image}: python" in {c.check for c in checks}
    bad = only_failure(run(stack_server, runner, "mini-vision", image="localhost/jetwheel-nope:1"))
    assert bad.check == "image localhost/jetwheel-nope:1" and "build -t localhost/jetwheel-nope:1" in bad.fix


def test_engine_not_answering_fails_first(stack_server: Server, tmp_path: Path) -> None:
    runner = DockerRunner(engine="podman", connection=f"unix://{tmp_path}/no-engine.sock")
    checks = run(stack_server, runner, "mini-torch")
    bad = only_failure(checks)
    assert bad.check.startswith("engine podman --remote") and "does not answer" in bad.detail
    assert "start the engine" in bad.fix


def test_backend_requirement_the_step_does_not_install_fails(stack_server: Server, tmp_path: Path) -> None:
    root = edited_recipes(tmp_path, "mini-vision", "[build]", "[build]")
    pyproject = root / "examples" / "mini-vision" / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('requires = ["setuptools', 'requires = ["pybind11>=2.11", "setuptools')
    )
    bad = only_failure(run(stack_server, LocalRunner(settings=settings()), "mini-vision", root))
    assert bad.check == "mini-vision: build backend requires" and "pybind11>=2.11" in bad.detail
    assert bad.fix == "add pybind11>=2.11 to the recipe's build.requires"


def test_build_wheel_preflight_prints_one_line_per_check_and_builds_nothing(
    stack_server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["build-wheel", "mini-cuda", "--profile", "mini", "--index", stack_server.url]
    before = stack_server.snapshot()
    assert door(*argv, "--preflight", "--disk-gb", "1") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) > 10 and all(line.startswith("  ok  ") for line in lines)
    assert stack_server.snapshot() == before
    root = edited_recipes(tmp_path, "mini-vision", 'requires = ["setuptools>=68"]', 'requires = ["setuptools>=999"]')
    monkeypatch.setenv("JETWHEEL_RECIPES", str(root))
    assert door(*argv, "--preflight", "--disk-gb", "1") == 1
    out, err = capsys.readouterr()
    assert "FAIL  mini-vision: build requirements" in out
    assert "preflight: 1 of" in err and "(first: mini-vision: build requirements)" in err


def test_git_source_comes_from_the_sources_dir_the_engine_uses(
    stack_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$JETWHEEL_SOURCES is where an air-gapped LAN keeps archives: preflight looks there, as the
    engine does, before asking a git host it cannot reach."""
    sources = tmp_path / "sources"
    sources.mkdir()
    archive = pack(
        RECIPES / "examples" / "mini-torch", "mini-torch-1.0.0", sources / archive_name("mini-torch", "1.0.0")
    )
    pinned = f'git = "https://git.invalid/mini-torch"\nref = "v1.0.0"\nsha256 = "{archive.sha256}"'
    root = edited_recipes(tmp_path, "mini-torch", 'path = "mini-torch"', pinned)
    monkeypatch.setenv("JETWHEEL_SOURCES", str(sources))
    # the run's context reads it once; preflight and the engine both take it from the same options
    needs = Needs(disk_gb=1, sources=context().options().sources)
    checks = run(stack_server, LocalRunner(settings=settings()), "mini-torch", root, needs=needs)
    assert failures(checks) == [], render(failures(checks))
    assert str(sources) in next(c.detail for c in checks if c.check == "mini-torch: source")
    monkeypatch.delenv("JETWHEEL_SOURCES")
    needs = Needs(disk_gb=1, sources=context().options().sources)
    bad = only_failure(run(stack_server, LocalRunner(settings=settings()), "mini-torch", root, needs=needs))
    assert bad.check == "mini-torch: source" and "git.invalid" in bad.detail and "sources.fetch" in bad.fix


def test_nvcc_check_names_the_ptx_isa_nvcc_writes() -> None:
    """The machine's nvcc 13 writes PTX ISA 9.0, which JetPack 6's driver (CUDA 12.6) cannot JIT;
    the x86-cuda12 profile's image has nvcc 12.4 (ISA 8.4)."""
    from jetwheel.build.preflight import environment_checks
    from jetwheel.runners.probe import BuildFacts

    profile = load_profile("x86-cuda12")
    facts = {"python": "3.12", "nvcc": "12.4"}
    [_, ok] = environment_checks(profile.image, BuildFacts(True, "", facts), profile, False, ["vllm"])
    assert ok.ok and ok.detail == "CUDA 12.4 (PTX ISA 8.4) for vllm"
    [_, bad] = environment_checks(
        profile.image, BuildFacts(True, "", dict(facts, nvcc="13.0")), profile, False, ["vllm"]
    )
    assert not bad.ok and "nvcc is 13.0 (PTX ISA 9.0), the profile's CUDA is 12.4" in bad.detail
    assert "inv cuda.setup" in bad.fix


# A docker-CLI engine that only answers what preflight and the scheduler ask: `info`, `image
# inspect` (every image is there), `run ... bash -c SCRIPT ARGS` (run here, its disk path moved under
# $FAKE_ENGINE_ROOT), `version`; anything else (`create`: a build) fails. Every call is logged.
FAKE_ENGINE = r"""#!/bin/bash
echo "$*" >> "$FAKE_ENGINE_ROOT/calls"
args=("$@")
while [[ "${args[0]}" == --* ]]; do
  case "${args[0]}" in --url|--connection|--host|--context) args=("${args[@]:2}") ;; *) args=("${args[@]:1}") ;; esac
done
case "${args[0]}" in
  info) echo '{"host": {"cpus": 4, "memTotal": 8589934592, "arch": "'"$(uname -m)"'"}}' ;;
  image) echo sha256:0123456789abcdef0123 ;;
  version) echo fake ;;
  run)
    for ((i = 0; i < ${#args[@]}; i++)); do
      if [[ "${args[i]}" == bash && "${args[i+1]}" == -c ]]; then
        n=${#args[@]}
        exec bash -c "${args[i+2]}" "${args[@]:i+3:n-i-4}" "$FAKE_ENGINE_ROOT/jw"
      fi
    done ;;
  *) echo "fake engine: ${args[0]} is not offered" >&2; exit 125 ;;
esac
"""


@pytest.mark.parametrize("engines", [[], ["--engines", "jetson1"]], ids=["one engine", "fleet"])
def test_build_wheel_asks_the_engine_once_through_preflight_and_build(
    stack_server: Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    engines: list[str],
) -> None:
    """The engine's `info` and each image's `image inspect` are asked once per run: a fleet's engines
    by schedule.connect, whose facts preflight then takes, a single engine by preflight. About 5 s
    each (a pip resolve); the build fails at `create`, which the fake engine does not offer."""
    fake = tmp_path / "podman"
    fake.write_text(FAKE_ENGINE)
    fake.chmod(0o755)
    monkeypatch.setenv("FAKE_ENGINE_ROOT", str(tmp_path))
    # work and logs under another home: not another run's (the run's settings put them under ~/.cache)
    moved = dataclasses.replace(settings(), home=tmp_path / "home")
    monkeypatch.setattr("jetwheel.workflow.context.settings", lambda: moved)
    argv = ["build-wheel", "mini-torch", "--profile", "mini", "--index", stack_server.url, "--force"]
    code = door(*argv, "--runner", "docker", "--engine", str(fake), "--disk-gb", "1", *engines)
    calls = (tmp_path / "calls").read_text().splitlines()
    # preflight passed; the build failed asking for `create`
    assert code == 3 and any(" create " in f" {c} " for c in calls), capsys.readouterr().err
    asked = [c for c in calls if " info" in f" {c}" or "image inspect" in c]
    assert len([c for c in asked if "info" in c]) == 1, asked
    assert len([c for c in asked if "image inspect" in c]) == 1, asked  # the plan's one image
