"""The installed libraries' kernel images against the GPU (runs inside the examined interpreter:
standard library and verify's fatbin reader).

A library with no kernel image for the GPU fails only when it launches one of its kernels (CUDA
loads a module at the first launch of one of its kernels, lazy loading, the default on Linux since
CUDA 12.2): which kernels it launches is not in the file. So a distribution none of whose libraries
has an image for the GPU is broken (it was built for other GPUs); a library without one beside
libraries of its distribution that have one (cuFFTW's sm_52/sm_75-only helpers beside cuFFT) is
unchecked, with that reason."""

from __future__ import annotations

import re
from typing import Any

from jetwheel.doctor.facts import FactStore
from jetwheel.verify import fatbin

_SHARED = re.compile(r"\.so(\.\d+)*$")


def items(dists: dict[str, list[str]], store: FactStore, cc: int, driver: str) -> list[dict[str, Any]]:
    """The scan's fatbin items: per distribution (name -> its files), the libraries without an image."""
    out: list[dict[str, Any]] = []
    unchecked = 0
    for name, files in dists.items():
        bad: list[tuple[str, list[str], str]] = []
        runs = False
        for f in files:
            facts = store.get(f) if _SHARED.search(f) else None
            if facts is None or not facts.elf.fatbin:
                continue
            if not cc:
                unchecked += 1
                continue
            ok, how = fatbin.runs_on(list(facts.elf.fatbin), cc, driver)
            runs |= ok
            if not ok:
                bad.append((f, sorted({e.label() for e in facts.elf.fatbin}), how))
        for f, labels, how in bad:
            item = {"kind": "fatbin", "dist": name, "subject": f, "has": labels, "why": how}
            out.append(item if not runs else dict(item, kind="fatbin-unused"))
    if unchecked:
        out.append({"kind": "unchecked", "subject": "fatbins", "detail": f"{unchecked} files with CUDA code"})
    return out
