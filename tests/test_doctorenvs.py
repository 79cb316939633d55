"""The cached doctor environments are trusted only while whole (tests/doctorenvs.py)."""

from __future__ import annotations

from pathlib import Path

from doctorenvs import ready


def test_a_cached_venv_whose_links_point_nowhere_is_made_again(tmp_path: Path) -> None:
    # a venv moved from another HOME: marked done, but its python links into a HOME that is gone
    root = tmp_path / "venv"
    (root / "bin").mkdir(parents=True)
    site = root / "lib" / "python3.12" / "site-packages"
    site.mkdir(parents=True)
    (root / ".done").touch()
    (root / "bin" / "python").symlink_to(tmp_path / "gone" / "python3.12")
    assert not ready(root)
    (tmp_path / "gone").mkdir()
    (tmp_path / "gone" / "python3.12").touch()
    assert ready(root)
    (site / "nvidia").symlink_to(tmp_path / "gone" / "nvidia")  # the shared CUDA libraries, gone
    assert not ready(root)


def test_an_unfinished_venv_is_not_ready(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    assert not ready(tmp_path)
