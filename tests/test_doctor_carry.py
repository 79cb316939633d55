"""The doctor's zipapp runs on an interpreter that has no jetwheel: every module its scan imports
is carried (a bottom module added to verify's readers broke `jetwheel doctor --python` once)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from jetwheel.doctor.carry import zipapp


def test_the_zipapp_imports_its_whole_scan_without_jetwheel_installed(tmp_path: Path) -> None:
    app = zipapp(tmp_path)
    # -I -S: neither PYTHONPATH, the current directory nor site-packages (where the editable install is)
    done = subprocess.run([sys.executable, "-I", "-S", str(app), "--help"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout
