"""A plain install works: the wheel built from this tree, installed (not editable) into a fresh venv
with its dependencies from PyPI, plans the real stack from any directory with its bundled recipes,
and puts the index's data under the XDG data directory, not site-packages."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest
from conftest import pip_env

ROOT = Path(__file__).resolve().parents[1]
ROOT_OF_RUN = "from jetwheel.workflow.context import context; print(context().root)"  # where recipes are read


@pytest.mark.slow
def test_wheel_installed_into_a_fresh_venv_plans_vllm_from_any_directory(tmp_path: Path) -> None:
    env = {k: v for k, v in pip_env().items() if k not in ("JETWHEEL_RECIPES", "PYTHONPATH")}
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = dist.glob("jetwheel-*.whl")
    venv.EnvBuilder(with_pip=True).create(tmp_path / "venv")
    bin_ = tmp_path / "venv" / "bin"
    done = subprocess.run(
        [str(bin_ / "python"), "-m", "pip", "install", "-q", str(wheel)], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run_env = {**env, "XDG_DATA_HOME": str(tmp_path / "xdg")}

    def elsewhere_run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, capture_output=True, text=True, cwd=elsewhere, env=run_env)

    where = elsewhere_run(str(bin_ / "python"), "-c", ROOT_OF_RUN)
    assert where.stdout.strip().startswith(str(tmp_path / "venv")), where.stdout + where.stderr
    plan = elsewhere_run(str(bin_ / "jetwheel"), "build-wheel", "vllm", "--profile", "triton-25.04", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    for name in ("torch", "pytorch-triton", "torchvision", "torchaudio", "xgrammar", "vllm"):
        assert name in plan.stdout
    assert "TORCH_CUDA_ARCH_LIST=8.7" in plan.stdout and "cp312" in plan.stdout
    # the recipes' patches ship too, nested ones included (recipes/patches/vllm-0.8.1/)
    assert "patches=flash-attention-sm87.patch" in plan.stdout
    home = elsewhere_run(
        str(bin_ / "python"),
        "-c",
        "from jetwheel.index.server.config import load_config\n"
        "from jetwheel.workflow.context import context\n"
        "print(load_config(context().config_path).root)",
    )
    assert home.stdout.strip() == str(tmp_path / "xdg" / "jetwheel" / "index" / "packages"), home.stderr
    # a user's own recipes come first: --recipes DIR, then $JETWHEEL_RECIPES, then ./recipes
    mine = elsewhere / "recipes"
    (mine / "profiles").mkdir(parents=True)
    (mine / "profiles" / "only-mine.toml").write_text("[profile]\n")
    ours = elsewhere_run(str(bin_ / "python"), "-c", ROOT_OF_RUN)
    assert ours.stdout.strip() == str(mine)


def test_recipes_are_found_in_order_given_env_cwd_bundled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jetwheel.model.schema import DEFAULT_RECIPES, recipes_root

    monkeypatch.delenv("JETWHEEL_RECIPES", raising=False)
    monkeypatch.chdir(tmp_path)
    assert recipes_root() == DEFAULT_RECIPES and (DEFAULT_RECIPES / "profiles" / "triton-25.04.toml").is_file()
    (tmp_path / "recipes" / "profiles").mkdir(parents=True)
    assert recipes_root() == tmp_path / "recipes"
    # $JETWHEEL_RECIPES is the run's setting: the workflow's context gives it as the explicit root
    # (tests/test_settings.py); below the workflow the environment is not read
    monkeypatch.setenv("JETWHEEL_RECIPES", str(tmp_path / "env"))
    assert recipes_root() == tmp_path / "recipes"
    assert recipes_root(tmp_path / "given") == tmp_path / "given"


def test_every_package_of_the_tree_ships_in_the_wheel() -> None:
    """setuptools' package list is written out by hand: a new package left off it (jetwheel.doctor
    was, until the door's split added jetwheel.cli and jetwheel.workflow) is missing from a plain install."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    tree = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "jetwheel").rglob("__init__.py")}
    assert tree <= listed, f"add to pyproject.toml's packages: {sorted(tree - listed)}"
