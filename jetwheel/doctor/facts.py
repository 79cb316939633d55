"""The facts of the installed files the doctor reads (ELF dynamic section, symbols, fatbin entries),
kept in verify's fact cache directory under each file's (path, size, mtime, inode, device), as pip
and make trust a file's stat: a second look at an unchanged environment reads only the cache."""

from __future__ import annotations

import contextlib
import gzip
import json
import multiprocessing
import os
import stat
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from jetwheel.verify import elf, fatbin
from jetwheel.verify.factcache import default_root, stat_key, write_atomically
from jetwheel.verify.ldso import Facts
from jetwheel.verify.wheel import WheelElf

FORMAT = 1
_SCAN = 16 << 20


def _ranges(h: elf.Header, f: elf.Sparse, fd: int, wanted: list[tuple[int, int]]) -> None:
    have = f.ranges()
    for off, size in sorted(wanted):
        if size > 0 and not any(a <= off and off + size <= b for a, b in have):
            f.add(off, os.pread(fd, size, off))
            have = f.ranges()


def _sparse(fd: int) -> tuple[elf.Header, elf.Sparse]:
    head = os.pread(fd, 64, 0)
    h = elf.header(head)
    f = elf.Sparse()
    f.add(0, head)
    _ranges(h, f, fd, [(h.phoff, h.phnum * h.phentsize), (h.shoff, h.shnum * h.shentsize)])
    _ranges(h, f, fd, elf.needed_ranges(h, f))
    return h, f


def read_facts(path: str) -> WheelElf | None:
    """The file's ELF facts and fatbin entries; None if it is not an ELF file we can read."""
    try:
        with open(path, "rb") as fh:
            fd = fh.fileno()
            if not elf.is_elf(os.pread(fd, 4, 0)):
                return None
            h, f = _sparse(fd)
            info = elf.read_elf(h, f)
            entries = tuple(fatbin.scan(fh))
    except (OSError, ValueError, elf.Missing):
        return None
    return WheelElf(path, info, entries)


class FactStore:
    """Facts by path, from the cache when the file's stat is unchanged (None: not a usable ELF file)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or default_root()) / f"doctor-v{FORMAT}"
        self._memo: dict[str, Facts | None] = {}
        self.read = self.cached = 0
        self.prefetched: set[str] = set()

    def get(self, path: str) -> Facts | None:
        if path in self._memo:
            return self._memo[path]
        self._memo[path] = got = self._get(path)
        return got

    def prefetch(self, paths: list[str]) -> None:
        """Read the files the cache lacks in parallel processes, largest first (cold, reading the
        ELF and fatbin sections is most of the scan's time); the scan then finds them cached."""
        todo = []
        for path in dict.fromkeys(paths):
            found = _entry(self.root, path)
            if found is not None and not found[0].exists():
                todo.append((found[1].st_size, path))
        jobs = min(len(os.sched_getaffinity(0)), 16, len(todo))
        if jobs < 2:
            return
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            done = list(pool.map(_fill, [str(self.root)] * len(todo), [p for _s, p in sorted(todo, reverse=True)]))
        self.read += sum(done)
        self.prefetched |= {p for (_s, p), ok in zip(sorted(todo, reverse=True), done, strict=True) if ok}

    def _get(self, path: str) -> Facts | None:
        found = _entry(self.root, path)
        if found is None:
            return None
        entry, st = found
        fid = (st.st_dev, st.st_ino)
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            doc = json.loads(gzip.decompress(entry.read_bytes()))
            self.cached += path not in self.prefetched
            if doc is None:
                return None
            fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in doc["info"].items()}
            info = elf.Symbols(**fields)
            entries = tuple(fatbin.Entry(k, a, (ma, mi), c) for k, a, ma, mi, c in doc["fatbin"])
            return Facts(WheelElf(path, info, entries), fid)
        self.read += 1
        got = _write(entry, path)
        return None if got is None else Facts(got, fid)

    def relocation_order(self, path: str) -> list[str]:
        """The dynamic symbols the file's relocations use, in ld.so's order (read afresh: only failing
        objects need it)."""
        try:
            with open(path, "rb") as fh:
                h, f = _sparse(fh.fileno())
                _ranges(h, f, fh.fileno(), elf.relocation_ranges(h, f))
                return elf.relocated_symbols(h, f)
        except (OSError, ValueError, elf.Missing):
            return []


def _entry(root: Path, path: str) -> tuple[Path, os.stat_result] | None:
    """The cache entry of a regular file and its stat; None when it is not one."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):  # os.stat followed links, as isfile would
        return None
    key = stat_key(os.path.realpath(path), st)
    return root / key[:2] / f"{key}.json.gz", st


def _write(entry: Path, path: str) -> WheelElf | None:
    """Read the file's facts and keep them in the cache (None: not a usable ELF file)."""
    found = read_facts(path)
    doc = (
        None
        if found is None
        else {
            "info": asdict(found.info),
            "fatbin": [[e.kind, e.arch, e.version[0], e.version[1], e.compressed] for e in found.fatbin],
        }
    )
    with contextlib.suppress(OSError):  # a read-only cache costs the next run its time only
        write_atomically(entry, gzip.compress(json.dumps(doc).encode(), 1))
    return found


def _fill(root: str, path: str) -> bool:
    """In a worker process: the file's facts into the cache; whether they are there now."""
    found = _entry(Path(root), path)
    if found is None:
        return False
    _write(found[0], path)
    return found[0].exists()
