"""The engine end to end on the mini stack: build, publish, install from the index in a fresh venv,
cache, and failures that must publish nothing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Server, install_and_run

from jetwheel.build.engine import Options, _built_wheel, run_plan
from jetwheel.build.plan import make_plan
from jetwheel.build.steplock import hold_step
from jetwheel.errors import BuildError
from jetwheel.machine import this_machine
from jetwheel.model.recipe import load_profile, load_recipes
from jetwheel.runners import LocalRunner
from jetwheel.workflow.context import settings

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def test_mini_stack_installs_from_the_index_and_calls_across_the_library(stack_server: Server, tmp_path: Path) -> None:
    code = (
        "import mini_torch, mini_vision, mini_cuda; print(mini_vision.boxes(4), "
        "mini_torch.has_op('mini_vision::nms'), mini_cuda.torch_version())"
    )
    out = install_and_run(stack_server.simple, "mini-cuda==0.1.0", code, tmp_path / "venv").split()
    assert out[:2] == ["4.0", "True"] and out[2:] == ["mini-torch", "abi", "1"]


def test_published_wheels_carry_provenance_and_verify_report(stack_server: Server) -> None:
    info = stack_server.client().file_info(next(p.name for p in stack_server.root.glob("mini_cuda-*.whl")))
    assert info is not None
    assert info["provenance"]["recipe"] == "mini-cuda" and info["provenance"]["env"]["TORCH_CUDA_ARCH_LIST"] == "8.7"
    assert info["verify"]["passed"] is True and info["verify"]["facts"]["fatbin"]


def test_everything_cached_rebuilds_nothing(stack_server: Server, tmp_path: Path) -> None:
    recipes, profile = load_recipes(), load_profile("mini")
    plan = make_plan(recipes, profile, "mini-cuda", "local", this_machine())
    started = time.monotonic()
    results = run_plan(
        plan, recipes, profile, LocalRunner(settings=settings()), stack_server.client(), Options(work_root=tmp_path)
    )
    assert [r.status for r in results] == ["cached"] * 3
    assert time.monotonic() - started < 5


def _broken_recipes(tmp_path: Path, pre: str) -> Path:
    root = tmp_path / "recipes"
    shutil.copytree(RECIPES, root, ignore=shutil.ignore_patterns("build", "*.egg-info", "*.so"))
    recipe = root / "examples" / "mini-vision.toml"
    recipe.write_text(recipe.read_text().replace("env = {", f"pre = [{pre!r}]\nenv = {{"))
    return root


def test_failing_build_publishes_nothing_and_leaves_no_temp_files(stack_server: Server, tmp_path: Path) -> None:
    root = _broken_recipes(tmp_path, "echo half-way; exit 3")
    recipes, profile = load_recipes(root), load_profile("mini", root)
    plan = make_plan(recipes, profile, "mini-vision", "local", this_machine())
    before = stack_server.snapshot()
    work = tmp_path / "work"
    with pytest.raises(BuildError, match=r"mini-vision: command 4/\d+: .*exit 3"):
        run_plan(
            plan,
            recipes,
            profile,
            LocalRunner(settings=settings()),
            stack_server.client(),
            Options(work_root=work, log_root=tmp_path / "logs"),
        )
    assert stack_server.snapshot() == before
    # only the failed step's work directory is left, named by its cache key: a rerun resumes in it
    # the kept work directory, beside the step locks (dot files), nothing else
    assert [p.name for p in work.iterdir() if not p.name.startswith(".")] == [
        f"mini-vision-{plan.steps[-1].cache_key[:16]}"
    ]
    assert "half-way" in next((tmp_path / "logs").glob("mini-vision-*.log")).read_text()


def test_ctrl_c_during_a_build_is_one_line_and_publishes_nothing(stack_server: Server, tmp_path: Path) -> None:
    root = _broken_recipes(tmp_path, "sleep 30")
    before = stack_server.snapshot()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jetwheel",
            "build-wheel",
            "mini-vision",
            "--profile",
            "mini",
            "--index",
            stack_server.url,
        ],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # its own HOME: the interrupted build's work directory is kept, and not in the user's cache
        env=dict(os.environ, JETWHEEL_RECIPES=str(root), HOME=str(tmp_path / "home")),
        # Ctrl-C at a terminal: a test run started in the background (`cmd &` in a script) inherits
        # SIGINT ignored, and Python then never raises KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(8)
    os.killpg(proc.pid, signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "Traceback" not in err
    assert "interrupted" in err.strip().splitlines()[-1]
    assert stack_server.snapshot() == before


def test_a_second_build_of_a_running_step_is_refused_naming_the_first(tmp_path: Path) -> None:
    # two runs of one step would share its work directory (or delete each other's kept one)
    first = hold_step(tmp_path, "mini-vision")
    with pytest.raises(BuildError, match=rf"mini-vision: another build of it is running .*pid {os.getpid()}"):
        hold_step(tmp_path, "mini-vision")
    hold_step(tmp_path, "mini-torch").close()  # other steps go on at once (a fleet runs them in threads)
    first.close()
    hold_step(tmp_path, "mini-vision").close()


def test_a_wheel_with_other_python_or_abi_tags_than_the_plan_is_refused(tmp_path: Path) -> None:
    plan = make_plan(load_recipes(), load_profile("triton-25.04"), "vllm", "docker", this_machine())
    step = plan.steps[-1]
    assert "-cp38-abi3-" in step.wheel
    out = tmp_path / "out"
    out.mkdir()
    # the platform tag is the repair's to choose: another one passes
    (out / step.wheel.replace("linux_aarch64", "manylinux_2_35_aarch64")).touch()
    assert _built_wheel(step, out).name.endswith("cp38-abi3-manylinux_2_35_aarch64.whl")
    # what setuptools makes of vLLM when nobody asks for the limited API
    next(out.iterdir()).unlink()
    (out / step.wheel.replace("cp38-abi3", "cp312-cp312")).touch()
    with pytest.raises(
        BuildError, match=r"\(cp312-cp312\), but the plan expects .* \(cp38-abi3\); a limited-API wheel"
    ):
        _built_wheel(step, out)
