"""Small but real wheels for index tests: a zip with METADATA, WHEEL and RECORD, as bdist_wheel writes;
and zip bombs of one member of zeros."""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from pathlib import Path


def make_wheel(
    dest: Path,
    name: str = "demo-pkg",
    version: str = "1.0",
    *,
    meta_name: str | None = None,
    meta_version: str | None = None,
    requires: tuple[str, ...] = (),
    payload: int = 0,
    extra: dict[str, bytes] | None = None,
    metadata: bytes | None = None,
    tag: str = "py3-none-any",
) -> Path:
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    meta = (
        metadata
        if metadata is not None
        else (
            f"Metadata-Version: 2.1\nName: {meta_name or name}\nVersion: {meta_version or version}\n"
            + "".join(f"Requires-Dist: {r}\n" for r in requires)
            + "Requires-Python: >=3.8\n"
        ).encode()
    )
    files = {
        f"{dist}/__init__.py": f"VALUE = {version!r}\n".encode() + b"#" * payload,
        f"{info}/METADATA": meta,
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: wheelmaker\nRoot-Is-Purelib: true\nTag: {tag}\n".encode(),
    }
    files.update(extra or {})
    record = (
        "".join(
            f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(b).digest()).rstrip(b'=').decode()},{len(b)}\n"
            for n, b in files.items()
        )
        + f"{info}/RECORD,,\n"
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, b in files.items():
            zf.writestr(n, b)
        zf.writestr(f"{info}/RECORD", record)
    path = dest / f"{dist}-{version}-{tag}.whl"
    path.write_bytes(buf.getvalue())
    return path


def zeros_wheel(name: str, inflated: int, *, tag: str | None = None) -> bytes:
    """NAME 1.0 as a zip bomb: METADATA and one member of `inflated` zero bytes (rounded down to
    whole MiB), deflated about 1,000x, its size declared in zip64 headers. With `tag`, a WHEEL file
    too (a wheel that passes the checks when under the budget); the index's checks need none."""
    dist = name.replace("-", "_")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{dist}-1.0.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        if tag is not None:
            zf.writestr(f"{dist}-1.0.dist-info/WHEEL", f"Wheel-Version: 1.0\nTag: {tag}\n")
        with zf.open(f"{dist}/zeros.bin", "w", force_zip64=True) as f:
            block = bytes(1 << 20)
            for _ in range(inflated >> 20):
                f.write(block)
    return buf.getvalue()
