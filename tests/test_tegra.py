"""The Tegra rule: a Jetson GPU runs only SASS built for its exact SM (sm_80 or sm_86 SASS does not
run on the Orin's sm_87), while desktop GPUs keep minor-version binary compatibility. Checked on
real nvcc-compiled libraries, through `inv verify` as a user runs it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from test_sources import cli
from wheelmaker import make_wheel

from jetwheel.verify.fatbin import runs_on, scan

pytestmark = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
KERNEL = "__global__ void k(float* x) { x[threadIdx.x] += 1.0f; }\n"


@pytest.fixture(scope="module")
def libs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """One shared library per SM, each holding only that SM's SASS (about 3 s each with nvcc 13)."""
    tmp = tmp_path_factory.mktemp("tegra")
    (tmp / "k.cu").write_text(KERNEL)
    out = {}
    for sm in (80, 86, 87):
        out[sm] = tmp / f"libk{sm}.so"
        gencode = f"arch=compute_{sm},code=sm_{sm}"
        subprocess.run(
            ["nvcc", "-shared", "-Xcompiler", "-fPIC", "-gencode", gencode, "-o", str(out[sm]), str(tmp / "k.cu")],
            check=True,
        )
    return out


def entries(path: Path) -> list:  # type: ignore[type-arg]
    with open(path, "rb") as f:
        return scan(f)


def test_tegra_sass_runs_only_on_its_exact_sm_desktop_keeps_minor_compatibility(libs: dict[int, Path]) -> None:
    e80, e86, e87 = (entries(libs[sm]) for sm in (80, 86, 87))
    assert runs_on(e87, 87) == (True, "SASS sm_87")
    ok, why = runs_on(e80, 87)
    assert not ok and why == (
        "sm_80 SASS does not run on the Tegra sm_87 (Orin): Tegra GPUs run only SASS built for their exact SM"
    )
    assert not runs_on(e86, 87)[0]
    # desktop: same major, same or higher minor
    assert runs_on(e80, 86) == (True, "SASS sm_80")
    assert runs_on(e86, 89) == (True, "SASS sm_86")
    assert not runs_on(e86, 80)[0]
    # nor does Tegra SASS run on a desktop GPU of the same major
    ok, why = runs_on(e87, 89)
    assert not ok and "sm_87 SASS is Tegra (Orin) code and does not run on the desktop sm_89" in why


def test_inv_verify_arch_87_fails_sm80_and_sm86_only_libraries_and_passes_sm87(
    libs: dict[int, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wheels = {sm: make_wheel(tmp_path, f"kern{sm}", extra={f"kern{sm}/libk.so": libs[sm].read_bytes()}) for sm in libs}
    facts = str(tmp_path / "facts")

    def verify(sm: int, arch: str) -> tuple[int, str]:
        code = cli("verify", "-p", str(wheels[sm]), "--profile", "mini", "--arch", arch, "--facts", facts)
        return code, capsys.readouterr().out

    for sm in (80, 86):
        code, out = verify(sm, "8.7")
        assert code == 1, out
        assert f"no kernel image for sm_87: it carries sm_{sm}; sm_{sm} SASS does not run on the Tegra sm_87" in out
        assert "Tegra GPUs run only SASS built for their exact SM" in out
        assert "build with TORCH_CUDA_ARCH_LIST=8.7 (or ship compute_87 PTX)" in out
    code, out = verify(87, "8.7")
    assert code == 0, out
    code, out = verify(80, "8.6")  # the desktop rule is unchanged
    assert code == 0, out
