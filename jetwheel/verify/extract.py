"""Read the facts of wheels: from the fact cache when their sha256 is known there, else by
inflating their members once, in parallel threads (inflating releases the GIL), biggest first.

Nothing is written to disk but the facts: each member streams through a fatbin scanner and an ELF
reader that keeps only the ranges the dynamic linker reads (headers, non-executable segments, the
section header table) minus fatbin payloads: 37 MiB of torch's 860 MB libtorch_cuda.so.
When a library's symbol tables lie outside those ranges (an unusual layout), that member is
streamed again keeping exactly the ranges its section headers name."""

from __future__ import annotations

import email.parser
import email.policy
import os
import struct
import zipfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from jetwheel.errors import JetwheelError
from jetwheel.verify import elf, fatbin
from jetwheel.verify.compress import raw_inflater
from jetwheel.verify.factcache import FactCache
from jetwheel.verify.wheel import Wheel, WheelElf, is_shared_object

_READ = 1 << 20
WORKERS = os.cpu_count() or 1
# Members that are never ELF objects: skipping them saves opening thousands (torch has 11k).
_NOT_ELF = (
    *(".py", ".pyi", ".pyc", ".h", ".hpp", ".cuh", ".cpp", ".c", ".txt", ".json", ".yaml", ".md"),
    *(".cmake", ".typed", "METADATA", "RECORD", "WHEEL", "LICENSE", ".html", ".js", ".css", ".png"),
)


def read_wheels(paths: Sequence[Path], cache: FactCache | None = None) -> list[Wheel]:
    """The facts of each wheel, in order. A wheel whose sha256 is remembered (by its stat) and
    cached costs no read at all; the others are hashed while their members inflate, all wheels'
    members sharing one pool of threads, biggest first (the biggest one is the critical path, so
    the hashing runs beside it); a wheel whose hash turns out cached stops inflating."""
    cache = cache or FactCache()
    out: dict[int, Wheel] = {}
    todo: dict[int, tuple[Path, str | None, zipfile.ZipFile]] = {}
    for i, path in enumerate(paths):
        sha = cache.remembered_sha256(path)
        known = cache.get(sha) if sha else None
        if known is not None:
            out[i] = _named(known, path)
            continue
        try:
            todo[i] = (path, sha, zipfile.ZipFile(path))
        except (OSError, zipfile.BadZipFile) as e:
            raise JetwheelError(f"{path}: cannot open as a wheel ({e})") from None
    tasks = [(i, info) for i, (_p, _s, zf) in todo.items() for info in zf.infolist() if _may_be_elf(info.filename)]
    tasks.sort(key=lambda t: -t[1].compress_size)
    with ThreadPoolExecutor(WORKERS) as pool:
        members = [(i, pool.submit(member_facts, todo[i][0], info)) for i, info in tasks[:1]]
        hashing = {i: pool.submit(cache.sha256, path) for i, (path, sha, _zf) in todo.items() if sha is None}
        members += [(i, pool.submit(member_facts, todo[i][0], info)) for i, info in tasks[1:]]
        shas = {i: sha or hashing[i].result() for i, (_p, sha, _zf) in todo.items()}
        for i, sha in shas.items():
            known = cache.get(sha)
            if known is not None:
                out[i] = _named(known, todo[i][0])
                for j, fut in members:
                    if j == i:
                        fut.cancel()
        elves = {
            i: [got for j, fut in members if j == i and (got := fut.result()) is not None] for i in todo if i not in out
        }
    for i, (path, _sha, zf) in todo.items():
        with zf:
            if i not in out:
                libraries = tuple(m for m in zf.namelist() if is_shared_object(m))
                found = tuple(sorted(elves[i], key=lambda e: e.member))
                out[i] = Wheel(path.name, shas[i], _requires(path, zf), libraries, found)
                cache.put(out[i])
    return [out[i] for i in range(len(paths))]


def _named(wheel: Wheel, path: Path) -> Wheel:
    """Facts found by content, under the file name they are read for."""
    return wheel if wheel.filename == path.name else replace(wheel, filename=path.name)


def _requires(path: Path, zf: zipfile.ZipFile) -> tuple[str, ...]:
    meta = next((m for m in zf.namelist() if m.count("/") == 1 and m.endswith(".dist-info/METADATA")), None)
    if meta is None:
        raise JetwheelError(f"{path.name}: no .dist-info/METADATA")
    msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(zf.read(meta))
    return tuple(str(r) for r in msg.get_all("Requires-Dist") or [])


def _may_be_elf(member: str) -> bool:
    return not member.endswith("/") and not member.endswith(_NOT_ELF)


def _chunks(path: Path, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """The member's bytes, inflated as they are read."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if local[:4] != b"PK\x03\x04":
            raise JetwheelError(f"{path.name}: {info.filename}: bad zip local header")
        name_len, extra_len = struct.unpack_from("<HH", local, 26)
        f.seek(info.header_offset + 30 + name_len + extra_len)
        left = info.compress_size
        if info.compress_type == zipfile.ZIP_STORED:
            while left > 0 and (block := f.read(min(_READ * 4, left))):
                left -= len(block)
                yield block
            return
        if info.compress_type != zipfile.ZIP_DEFLATED:
            raise JetwheelError(f"{path.name}: {info.filename}: compression {info.compress_type} is not deflate")
        d = raw_inflater()
        while left > 0 and (block := f.read(min(_READ, left))):
            left -= len(block)
            yield d.decompress(block)
        yield d.flush()


@dataclass
class _Reader:
    """One pass over a member: scans for fatbins and keeps what the ELF reader needs."""

    keep: list[tuple[int, int]] | None = None  # None: decide from the program headers
    scan: bool = True

    def __post_init__(self) -> None:
        self.sparse = elf.Sparse()
        self.scanner = fatbin.Scanner()
        self.header: elf.Header | None = None
        self._head = b""
        self._pos = 0
        self._spans = 0

    def feed(self, chunk: bytes) -> bool:
        """False once the member turns out not to be an ELF file."""
        start, self._pos = self._pos, self._pos + len(chunk)
        if self.scan:
            self.scanner.feed(chunk)
        if self.keep is None:
            self._head += chunk
            if len(self._head) < 64:
                return True
            try:
                self.header = elf.header(self._head)
            except ValueError:
                return False
            h = self.header
            if len(self._head) < h.phoff + h.phnum * h.phentsize:
                return True
            head = elf.Sparse()
            head.add(0, self._head)
            self.keep = elf.merged_ranges(
                [
                    (0, 64),
                    (h.phoff, h.phoff + h.phnum * h.phentsize),
                    *elf.kept_ranges(h, elf.segments(h, head)),
                ]
            )
            chunk, start, self._head = self._head, 0, b""
        for lo, hi in self.keep:
            lo, hi = max(lo, start), min(hi, start + len(chunk))
            if lo < hi:
                self.sparse.add(lo, chunk[lo - start : hi - start])
        for lo, hi in self.scanner.spans[max(self._spans - 1, 0) :]:
            self.sparse.drop(lo, hi)
        self._spans = len(self.scanner.spans)
        return True


def member_facts(path: Path, info: zipfile.ZipInfo) -> WheelElf | None:
    """The facts of one member of the wheel at `path`, inflated once (twice only for an unusual
    layout); None if it is not an ELF file."""
    reader = _Reader()
    for chunk in _chunks(path, info):
        if not reader.feed(chunk):
            return None
    if reader.header is None:
        return None  # shorter than an ELF header, or one whose program headers are cut off
    entries = tuple(reader.scanner.finish())
    h = reader.header
    for _attempt in range(3):
        try:
            return WheelElf(info.filename, elf.read_elf(h, reader.sparse), entries)
        except elf.Missing as m:
            # stream it again keeping exactly what was missing, plus what the pass before kept
            again = _Reader(
                keep=elf.merged_ranges([(o, o + n) for o, n in m.ranges] + reader.sparse.ranges()), scan=False
            )
            again.header = h
            for chunk in _chunks(path, info):
                again.feed(chunk)
            reader = again
        except ValueError:
            return None  # starts like ELF but is not one a dynamic linker would load
    return None
