"""The checker as a zipapp: the scan, the ELF and fatbin readers and `packaging`, built once per
content and cached, so another interpreter or an image runs it without anything installed."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

import packaging

from jetwheel.verify.factcache import default_root, write_atomically

PKG = Path(__file__).resolve().parents[1]
MEMBERS = (
    "__init__.py",
    "errors.py",
    "digest.py",
    "doctor/__init__.py",
    "doctor/scan.py",
    "doctor/facts.py",
    "doctor/loads.py",
    "doctor/kernels.py",
    "doctor/gpu.py",
    *(
        "verify/elf.py",
        "verify/ldso.py",
        "verify/fatbin.py",
        "verify/wheel.py",
        "verify/compress.py",
        "verify/factcache.py",
    ),
)
MAIN = b"from jetwheel.doctor.scan import main\nmain()\n"
# verify's own __init__ gathers every check (recipes, the index's sources): the scan needs none of it
VERIFY_INIT = b'"""The readers the doctor\'s scan needs, carried without the rest of verify."""\n'


def zipapp(cache: Path | None = None) -> Path:
    """The zipapp's path (made if absent; named after its content)."""
    files: dict[str, bytes] = {f"jetwheel/{m}": (PKG / m).read_bytes() for m in MEMBERS}
    files["jetwheel/verify/__init__.py"] = VERIFY_INIT
    files["__main__.py"] = MAIN
    root = Path(packaging.__file__).parent
    for f in sorted(root.rglob("*.py")):
        files[f"packaging/{f.relative_to(root).as_posix()}"] = f.read_bytes()
    digest = hashlib.sha256(b"".join(k.encode() + v for k, v in sorted(files.items()))).hexdigest()[:16]
    out = (cache or default_root()) / "doctor" / f"jetwheel-doctor-{digest}.pyz"
    if not out.exists():
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in sorted(files.items()):
                z.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), data)
        write_atomically(out, buf.getvalue())
        os.chmod(out, 0o644)
    return out
