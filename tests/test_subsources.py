"""Sub-sources: the trees vLLM's CMake would fetch from GitHub (CUTLASS, flash-attention, FlashMLA),
pinned by the vllm recipe, taken from a local source directory or the index, checked, unpacked,
patched and exported to the build; planned, preflighted, fetched and recorded. The real archives
are the project's shared/sources."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import pytest
from conftest import Server
from shared_sources import SHARED
from test_sources import cli

from jetwheel.build.engine import prepare_work, provenance
from jetwheel.build.plan import Plan, make_plan, render_plan
from jetwheel.build.preflight_source import sub_checks
from jetwheel.digest import sha256_file
from jetwheel.errors import RecipeError, SourceError
from jetwheel.machine import Machine
from jetwheel.model.recipe import load_profile, load_recipe, load_recipes
from jetwheel.model.step import BuildStep
from jetwheel.runners import LocalRunner, StepLog
from jetwheel.sources.fetch import Lookup
from jetwheel.sources.subsources import fetch_sub
from jetwheel.workflow.context import settings

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
SOURCES = SHARED
# shared/sources/README.md
PINS = {
    "cutlass": ("VLLM_CUTLASS_SRC_DIR", "afa1772203677c5118fcd82537a9c8fefbcc7008", "eaea5e3c7a2cf842"),
    "flash-attention": ("VLLM_FLASH_ATTN_SRC_DIR", "9bfa9869829d8c593527eb34c5271d0090f7ccc9", "864dd153d77e944c"),
    "FlashMLA": ("FLASH_MLA_SRC_DIR", "575f7724b9762f265bbee5889df9c7d630801845", "b362d3b7e8c50bb6"),
}


def vllm_plan() -> Plan:
    return make_plan(load_recipes(RECIPES), load_profile("triton-25.04", RECIPES), "vllm", "docker", Machine(4, 16))


def vllm_step() -> BuildStep:
    return vllm_plan().steps[-1]


def test_vllm_plan_pins_three_sub_sources_with_the_patch_and_reaches_no_github() -> None:
    plan = vllm_plan()
    step = plan.steps[-1]
    subs = {s.name: s for s in step.source.subs}
    assert {n: (s.env, s.commit, s.sha256[:16]) for n, s in subs.items()} == PINS
    assert [Path(p).name for p in subs["flash-attention"].patches] == [
        "flash-attention-sm87.patch",
        "flash-attention-python-3.13.patch",
    ]
    assert not subs["cutlass"].patches and not any(s.url for s in subs.values())
    exports = (
        'export VLLM_CUTLASS_SRC_DIR="$JW_WORK/sub/cutlass" VLLM_FLASH_ATTN_SRC_DIR="$JW_WORK/sub/flash-attention" '
        'FLASH_MLA_SRC_DIR="$JW_WORK/sub/FlashMLA"'
    )
    patch = (
        'patch -p1 --forward -d "$JW_WORK/sub/flash-attention" '
        '-i "$JW_WORK/patches/flash-attention/flash-attention-sm87.patch"'
    )
    # exported before the pre-steps and the build, patched after unpacking
    assert step.commands.index(exports) + 1 == step.commands.index(patch) < len(step.commands) - 4
    assert not any("github" in c for c in step.commands) and step.source.url.startswith("https://files.pythonhosted")
    text = render_plan(plan)
    assert "sub-source flash-attention: env=VLLM_FLASH_ATTN_SRC_DIR" in text
    assert "patches=flash-attention-sm87.patch" in text
    # the patch is part of the cache key (through the recipe's digest)
    assert step.to_json()["source"]["subs"][1]["patches"] == [
        "flash-attention-sm87.patch",
        "flash-attention-python-3.13.patch",
    ]


def test_a_sub_source_table_is_validated(tmp_path: Path) -> None:
    base = '[package]\nname = "x"\n[source]\npath = "."\n[[source.sub]]\nname = "cutlass"\nenv = "CUTLASS_DIR"\n'
    base += 'repo = "https://github.com/NVIDIA/cutlass"\narchive = "cutlass-3.8.0.tar.gz"\n'
    good = f'commit = "{"a" * 40}"\nsha256 = "{"b" * 64}"\n'
    recipe = tmp_path / "x.toml"
    recipe.write_text(base + good)
    assert load_recipe(recipe).source.subs[0].archive == "cutlass-3.8.0.tar.gz"
    for extra, message in (
        (f'commit = "{"a" * 40}"\nsha256 = "abc"\n', "source.sub[0].sha256 must be 64 lowercase hex digits"),
        (good + 'patches = ["nope.patch"]\n', "source.sub[0].patches names 'nope.patch'"),
        (good + 'mirror = "x"\n', "source.sub[0].mirror: unknown key"),
    ):
        recipe.write_text(base + extra)
        with pytest.raises(RecipeError, match=re.escape(message)):
            load_recipe(recipe)


@pytest.mark.real
def test_sub_sources_come_from_the_local_dir_checked_and_patch_applies(tmp_path: Path) -> None:
    """About 10 s (30-45 s on a loaded 2-core machine): the three real archives unpacked (13,300
    files), the flash-attention patch applied to the real tree."""
    subs = {s.name: s for s in vllm_step().source.subs}
    got = {n: fetch_sub(s, tmp_path / n, Lookup(SOURCES)) for n, s in subs.items()}
    assert {n: g.origin for n, g in got.items()} == {n: str(SOURCES / s.archive) for n, s in subs.items()}
    assert (tmp_path / "cutlass" / "include" / "cutlass" / "cutlass.h").is_file()
    assert (tmp_path / "FlashMLA" / "csrc").is_dir()
    fa = tmp_path / "flash-attention"
    subprocess.run(["patch", "-p1", "--forward", "-d", str(fa), "-i", subs["flash-attention"].patches[0]], check=True)
    cmake = (fa / "CMakeLists.txt").read_text()
    assert 'set(CUDA_SUPPORTED_ARCHS "8.0;8.6;8.7;8.9;9.0")' in cmake and "add_custom_target(_vllm_fa3_C)" in cmake
    # a wrong pin names both hashes; an archive nowhere names where to put it
    wrong = dataclasses.replace(subs["FlashMLA"], sha256="0" * 64)
    with pytest.raises(SourceError, match=f"has sha256 {subs['FlashMLA'].sha256}, the recipe pins {'0' * 64}"):
        fetch_sub(wrong, tmp_path / "x", Lookup(SOURCES))
    with pytest.raises(SourceError, match="names no upstream URL for it; put it in the source directory"):
        fetch_sub(subs["FlashMLA"], tmp_path / "y", Lookup(tmp_path / "empty"))
    # where a recipe names an upstream URL for the very archive, it is the last resort, checked too
    upstream = dataclasses.replace(subs["FlashMLA"], url=(SOURCES / "FlashMLA-575f7724.tar.gz").as_uri())
    got_up = fetch_sub(upstream, tmp_path / "z", Lookup(tmp_path / "empty", cache=tmp_path / "cache"))
    assert got_up.origin == upstream.url and (tmp_path / "z" / "csrc").is_dir()
    with pytest.raises(SourceError, match=f"the recipe pins {'0' * 64}"):
        fetch_sub(dataclasses.replace(upstream, sha256="0" * 64), tmp_path / "w", Lookup(cache=tmp_path / "cache"))


@pytest.mark.real
def test_preflight_checks_sub_sources_and_their_patches_from_a_local_dir(tmp_path: Path, server: Server) -> None:
    """About 2 s: archives are hashed, not unpacked; only the files a patch touches are."""
    step = vllm_step()
    checks = sub_checks(step, Lookup(SOURCES, server.client()), tmp_path)
    assert [(c.check, c.ok) for c in checks] == [
        ("vllm: sub-source cutlass", True),
        ("vllm: sub-source cutlass patches", True),
        ("vllm: sub-source flash-attention", True),
        ("vllm: sub-source flash-attention patches", True),
        ("vllm: sub-source FlashMLA", True),
        ("vllm: sub-source FlashMLA patches", True),
    ]
    assert checks[3].detail == "2 apply cleanly" and str(SOURCES / "cutlass-3.8.0.tar.gz") in checks[0].detail
    assert not (tmp_path / "sub" / "cutlass").exists()  # nothing to patch: hashed only
    assert [p.name for p in (tmp_path / "sub" / "flash-attention").iterdir()] == ["CMakeLists.txt"]
    # a patch that does not apply, and an archive the source directory lacks, each fail naming the fix
    stale = tmp_path / "stale.patch"
    stale.write_text("--- a/CMakeLists.txt\n+++ b/CMakeLists.txt\n@@ -1,1 +1,1 @@\n-no such line\n+x\n")
    subs = tuple(dataclasses.replace(s, patches=(str(stale),)) for s in step.source.subs if s.name == "flash-attention")
    broken = dataclasses.replace(step, source=dataclasses.replace(step.source, subs=subs))
    bad = [c for c in sub_checks(broken, Lookup(SOURCES, server.client()), tmp_path / "2") if not c.ok]
    assert len(bad) == 1 and "stale.patch does not apply" in bad[0].detail and "rebase" in bad[0].fix
    bad = [c for c in sub_checks(step, Lookup(tmp_path / "empty", server.client()), tmp_path / "3") if not c.ok]
    assert [c.check for c in bad] == [f"vllm: sub-source {n}" for n in PINS]
    assert "inv sources.upload" in bad[0].detail


@pytest.mark.real
def test_sources_fetch_packs_the_sub_sources_upload_serves_them_and_a_build_takes_them_from_the_index(
    tmp_path: Path, server: Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """About 5 s, plus PyPI's vLLM 0.8.1 sdist (6.4 MB) once, cached in ~/.cache/jetwheel/sources."""
    out = tmp_path / "out"
    code = cli("sources.fetch", "vllm", "--profile", "triton-25.04", "--out", str(out), "--sources", str(SOURCES))
    printed = capsys.readouterr().out.splitlines()
    assert code == 0, printed
    assert printed[0] == str(out / "vllm-0.8.1-src.tar.gz")
    for name, archive in (("cutlass", "cutlass-3.8.0.tar.gz"), ("FlashMLA", "FlashMLA-575f7724.tar.gz")):
        at = printed.index(str(out / archive))
        assert printed[at + 1] == f"sha256 {sha256_file(SOURCES / archive)}"
        assert printed[at + 2] == f"commit {PINS[name][1]}"
        assert (out / archive).read_bytes() == (SOURCES / archive).read_bytes()
    monkeypatch.setenv("JETWHEEL_INDEX_USER", "ci")
    monkeypatch.setenv("JETWHEEL_INDEX_PASSWORD", "s3cret-pass")
    assert cli("sources.upload", str(out / "FlashMLA-575f7724.tar.gz"), "--index", server.url) == 0
    sub = next(s for s in vllm_step().source.subs if s.name == "FlashMLA")
    got = fetch_sub(sub, tmp_path / "from-index", Lookup(tmp_path / "empty", server.client()))
    assert got.origin == f"{server.url}/packages/FlashMLA-575f7724.tar.gz" and (got.tree / "csrc").is_dir()


@pytest.mark.real
def test_the_runner_sees_each_sub_source_unpacked_patched_and_exported(tmp_path: Path, server: Server) -> None:
    """A recipe with a sub-source (the real FlashMLA archive and a patch of its own) through the
    engine's work directory and the local runner: the variable names the patched tree; provenance
    records name, repository, commit, sha256 and where it was taken from. About 2 s."""
    root = tmp_path / "recipes"
    (root / "patches").mkdir(parents=True)
    (root / "tree").mkdir()
    (root / "tree" / "setup.py").write_text("")
    (root / "patches" / "mark.patch").write_text(
        "--- a/jetwheel-mark.txt\n+++ b/jetwheel-mark.txt\n@@ -0,0 +1 @@\n+patched\n"
    )
    sub = next(s for s in vllm_step().source.subs if s.name == "FlashMLA")
    (root / "x.toml").write_text(
        f'[package]\nname = "x"\n[source]\npath = "tree"\n[[source.sub]]\nname = "FlashMLA"\n'
        f'env = "FLASH_MLA_SRC_DIR"\nrepo = "{sub.repo}"\ncommit = "{sub.commit}"\narchive = "{sub.archive}"\n'
        f'sha256 = "{sub.sha256}"\npatches = ["mark.patch"]\n'
    )
    (root / "profiles").mkdir()
    (root / "profiles" / "p.toml").write_text(
        '[profile]\npython = "current"\nplatform = "current"\ntop = "x"\n[versions]\nx = "1.0"\n'
        '[system.versions]\nGLIBC = "2.35"\n'
    )
    recipes = load_recipes(root)
    step = make_plan(recipes, load_profile("p", root), "x", "local", Machine(2, 4)).steps[0]
    work = tmp_path / "work"
    _resumed, fetched = prepare_work(step, recipes["x"], work, Lookup(SOURCES, server.client()))
    check = 'test "$FLASH_MLA_SRC_DIR" = "$JW_WORK/sub/FlashMLA" && cat "$FLASH_MLA_SRC_DIR/jetwheel-mark.txt"'
    exports = [c for c in step.commands if c.startswith("export FLASH_MLA")]
    patches = [c for c in step.commands if "/sub/FlashMLA" in c and c.startswith("patch ")]
    log = StepLog(tmp_path / "log")
    LocalRunner(settings=settings()).run(
        dataclasses.replace(step, commands=(*exports, *patches, check)), work, server.simple, log
    )
    log.close()
    assert list(log.tail)[-1] == "patched"
    assert (work / "sub" / "FlashMLA" / "csrc").is_dir()
    recorded = provenance(step, recipes["x"], load_profile("p", root), LocalRunner(settings=settings()), fetched)[
        "source"
    ]["subs"]
    assert recorded == [
        {
            "name": "FlashMLA",
            "env": "FLASH_MLA_SRC_DIR",
            "repo": "https://github.com/vllm-project/FlashMLA",
            "commit": PINS["FlashMLA"][1],
            "archive": "FlashMLA-575f7724.tar.gz",
            "sha256": sub.sha256,
            "patches": ["mark.patch"],
            "from": str(SOURCES / "FlashMLA-575f7724.tar.gz"),
        }
    ]
