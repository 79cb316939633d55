"""The CUDA toolchain image's inputs, in-process (the image itself: tests/test_vllm_cuda.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from jetwheel.errors import RunnerError
from jetwheel.runners.cudaimage import find_python, inputs, install_script


def test_the_profiles_python_is_found_by_its_command_and_copied_at_its_own_prefix() -> None:
    python = find_python(sys.executable)
    assert python.prefix == Path(sys.base_prefix) and python.version == sys.version.split()[0]
    script = install_script(python)
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert f"| tar -C {sys.base_prefix} -x" in script  # its rpath and sysconfig name that prefix
    assert f"ln -sf {sys.base_prefix}/bin/python{ver} /usr/local/bin/python{ver}" in script
    assert "grep 'not found'" in script  # its shared libraries resolve in trixie, or no image
    assert f"python {python.version} at {sys.base_prefix}" in inputs(python)  # another Python: another image


def test_a_missing_python_is_one_line_naming_it() -> None:
    with pytest.raises(RunnerError, match=r"^python9\.9 is not on this host's PATH"):
        find_python("python9.9")
