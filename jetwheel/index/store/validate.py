"""Upload validation: everything an uploaded distribution must satisfy before it may become visible."""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import json
import re
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from jetwheel.errors import Abandoned, TooLarge, UploadRejected
from jetwheel.index.store.records import JsonObject

# Files that are not Python distributions but that Triton's Dockerfile fetches by URL (the NVPL slim
# tarball behind NVPL_SLIM_URL): stored and served, never listed as a project.
ARTIFACT_SUFFIXES = (".tar", ".tar.gz", ".tar.xz", ".tgz", ".zip")
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")
# The store keeps derived files named <filename>.metadata beside a 255-byte file-system limit
MAX_NAME = 240
MAX_METADATA = 4 << 20  # a wheel's METADATA; real ones (vLLM's, with its README) are well under 100 kB
MAX_INFLATED = 64 << 30  # all members of a wheel together, as their headers declare them
# The work an upload buys: a wheel may inflate to INFLATE_RATIO times its own size, or INFLATE_FLOOR
# when that is more (a small wheel of text). Real wheels inflate 2-5x (torch's ~3x); a 2 kB zip
# bomb declaring 1 GiB cost 8.7 s of CPU before this bound and is now refused from its headers.
INFLATE_RATIO = 50
INFLATE_FLOOR = 64 << 20
# Members of one wheel: torch's has ~11,000. zipfile holds ~570 bytes per member it lists, so the
# count is taken from the central directory's own bytes before zipfile lists anything.
MAX_MEMBERS = 50_000
MAX_JSON_DEPTH = 64  # a JSON object sent along with a file (provenance, verify report)
MAX_CENTRAL_DIRECTORY = 32 << 20
READ_CHUNK = 1 << 20
# bzip2 and lzma inflate far more per byte sent, and far slower, than deflate; no wheel tool uses them
WHEEL_COMPRESSION = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_CD_ENTRY = 46  # a central directory entry's fixed part; its name, extra and comment lengths at 28


DistKind = Literal["wheel", "sdist"]


@dataclass(frozen=True)
class Distribution:
    filename: str
    project: NormalizedName
    version: Version
    kind: DistKind
    metadata: bytes | None  # the wheel's METADATA (PEP 658 serves it), None for an sdist
    requires_python: str


def check_filename(filename: str) -> str:
    """Refuse names that could escape the store or confuse a client; return the name unchanged."""
    if (
        not filename
        or filename in (".", "..")
        or ".." in filename
        or _BAD_NAME.search(filename)
        or filename.startswith(".")
    ):
        raise UploadRejected(
            f"invalid filename {filename!r}: no path separators, '..', control characters or leading dot"
        )
    try:
        size = len(filename.encode("utf-8"))
    except UnicodeEncodeError:
        raise UploadRejected(f"invalid filename {filename!r}: not UTF-8") from None
    if size > MAX_NAME:
        raise UploadRejected(f"filename too long: {size} bytes, at most {MAX_NAME}")
    return filename


def parse_filename(filename: str) -> tuple[NormalizedName, Version, DistKind]:
    check_filename(filename)
    try:
        if filename.endswith(".whl"):
            name, version, _build, _tags = parse_wheel_filename(filename)
            return name, version, "wheel"
        if filename.endswith((".tar.gz", ".zip")):
            name, version = parse_sdist_filename(filename)
            return name, version, "sdist"
    except (InvalidWheelFilename, InvalidSdistFilename) as e:
        raise UploadRejected(f"invalid distribution filename {filename!r}: {e}") from None
    raise UploadRejected(f"unsupported file type {filename!r}: upload a .whl or an sdist (.tar.gz)")


def check_artifact_name(filename: str, sdist_like: bool = False) -> str:
    """An artifact is a file that is not a Python distribution (the NVPL tarball, a source archive):
    one named like a wheel is refused, and one named like an sdist unless `sdist_like` (a builder's
    or admin's: a sub-source archive such as cutlass-3.8.0.tar.gz is one), since it lies where pip
    and build scripts fetch distributions, without the metadata check a distribution passes."""
    check_filename(filename)
    if not filename.endswith(ARTIFACT_SUFFIXES) or filename.endswith(".whl"):
        raise UploadRejected(f"artifact {filename!r} must be a .tar, .tar.gz, .tar.xz, .tgz or .zip")
    if sdist_like:
        return filename
    try:
        parse_sdist_filename(filename)
    except (InvalidSdistFilename, ValueError):
        return filename
    raise UploadRejected(
        f"artifact {filename!r} is named like an sdist: upload it as a distribution (or as a builder or admin)"
    )


def check_requirements(msg: email.message.Message, where: str) -> None:
    """Every Requires-Dist must name a project, never a URL: pip fetches (and builds) a direct URL
    wherever it reads one, so an index that serves such metadata makes its clients, and its own
    compatibility check, open any address and run any sdist's build backend. PyPI refuses them too."""
    for value in msg.get_all("Requires-Dist") or []:
        try:
            req = Requirement(str(value))
        except InvalidRequirement as e:
            raise UploadRejected(f"{where}: invalid Requires-Dist {str(value)[:200]!r}: {e}") from None
        try:  # one that parses but compares what cannot be compared (python_version ~= "3")
            if req.marker is not None:
                req.marker.evaluate({"extra": ""})
        except ValueError as e:
            why = f"its marker cannot be evaluated: {e}"
            raise UploadRejected(f"{where}: Requires-Dist {str(value)[:200]!r}: {why}") from None
        if req.url:
            raise UploadRejected(
                f"{where}: Requires-Dist {str(value)[:200]!r} is a direct URL reference; "
                "the index refuses them (as PyPI does): require a project name and version",
            )


def _parse_metadata(raw: bytes, where: str) -> tuple[str, str, str]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UploadRejected(f"{where} is not valid UTF-8 (core metadata must be UTF-8)") from None
    msg = email.parser.Parser(policy=email.policy.compat32).parsestr(text)
    name, version = msg.get("Name"), msg.get("Version")
    if not name or not version:
        raise UploadRejected(f"{where} lacks Name or Version")
    check_requirements(msg, where)
    return str(name), str(version), str(msg.get("Requires-Python") or "")


def _read_capped(zf: zipfile.ZipFile, member: str, cap: int) -> bytes:
    """A member's bytes, read in bounded chunks: one that inflates past `cap` is refused, never held."""
    out = bytearray()
    with zf.open(member) as f:
        while chunk := f.read(1 << 16):
            out += chunk
            if len(out) > cap:
                raise TooLarge(f"{member} inflates to more than {cap >> 20} MiB")
    return bytes(out)


def inflate_budget(size: int) -> int:
    """How many bytes a wheel of `size` bytes may inflate to."""
    return min(MAX_INFLATED, max(INFLATE_FLOOR, INFLATE_RATIO * size))


def count_members(path: Path) -> int:
    """The number of entries in the zip's central directory, counted from its bytes (located as
    zipfile locates it: right before the end record); refused past MAX_MEMBERS before zipfile
    builds an object for each. 0 when there is no end record (zipfile then refuses the file)."""
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        f.seek(max(0, size - _EOCD.size - 0xFFFF))
        tail = f.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < _EOCD.size:
            return 0
        end = size - len(tail) + at
        cd_size = _EOCD.unpack_from(tail, at)[5]
        z64 = at - _ZIP64_LOCATOR.size
        if z64 >= 0 and tail[z64 : z64 + 4] == b"PK\x06\x07":
            end = end - _ZIP64_LOCATOR.size - _ZIP64_EOCD.size
            f.seek(max(0, end))
            record = f.read(_ZIP64_EOCD.size)
            if len(record) == _ZIP64_EOCD.size and record[:4] == b"PK\x06\x06":
                cd_size = _ZIP64_EOCD.unpack(record)[8]
        if cd_size > MAX_CENTRAL_DIRECTORY:
            raise TooLarge(f"wheel's member list is over {MAX_CENTRAL_DIRECTORY >> 20} MiB")
        f.seek(max(0, end - cd_size))
        directory = f.read(cd_size)
    count = pos = 0
    while pos + _CD_ENTRY <= len(directory) and directory[pos : pos + 4] == b"PK\x01\x02":
        count += 1
        if count > MAX_MEMBERS:
            raise TooLarge(f"wheel has more than {MAX_MEMBERS} members")
        pos += _CD_ENTRY + sum(struct.unpack_from("<3H", directory, pos + 28))
    return count


def _check_members(zf: zipfile.ZipFile, budget: int, stop: Callable[[], bool]) -> None:
    """Inflate every member once (zipfile checks each one's CRC at its end), within `budget` bytes
    in all, and stop as soon as `stop()` says the upload is no longer wanted."""
    inflated = 0
    for info in zf.infolist():
        with zf.open(info) as member:
            while chunk := member.read(READ_CHUNK):
                inflated += len(chunk)
                if inflated > budget:
                    raise TooLarge(f"wheel inflates to more than {budget} bytes")
                if stop():
                    raise Abandoned("the upload was abandoned while it was checked")


def inspect_wheel(path: Path, filename: str, stop: Callable[[], bool] = lambda: False) -> Distribution:
    """Open the uploaded file as a wheel and check that its METADATA agrees with its filename.
    The work is bounded by the upload's own size (inflate_budget, MAX_MEMBERS) and ends when
    `stop()` turns true (the client hung up, the server is stopping)."""
    name, version, kind = parse_filename(filename)
    if kind != "wheel":
        return Distribution(filename, name, version, kind, None, "")
    size = path.stat().st_size
    budget = inflate_budget(size)
    try:
        count_members(path)
        with zipfile.ZipFile(path) as zf:
            declared = sum(i.file_size for i in zf.infolist())
            if declared > budget:
                raise TooLarge(
                    f"wheel of {size} bytes declares {declared} bytes inflated; the index inflates at most "
                    f"{INFLATE_RATIO}x the bytes it receives (or {INFLATE_FLOOR >> 20} MiB)",
                )
            if any(i.compress_type not in WHEEL_COMPRESSION for i in zf.infolist()):
                raise UploadRejected("wheel members must be stored or deflated (as every wheel tool writes them)")
            dist_info = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
            for member in zf.namelist():
                if member.startswith("/") or ".." in member.split("/"):
                    raise UploadRejected(f"wheel member {member!r} escapes the install directory")
            if len(dist_info) != 1:
                raise UploadRejected("wheel must contain exactly one *.dist-info/METADATA")
            raw = _read_capped(zf, dist_info[0], MAX_METADATA)
            _check_members(zf, budget, stop)
    except zipfile.BadZipFile as e:
        if "CRC" in str(e):
            raise UploadRejected(f"corrupt wheel: {e}") from None
        raise UploadRejected(f"not a valid zip archive (corrupt or truncated wheel): {e}") from None
    except (zlib.error, EOFError, NotImplementedError) as e:
        raise UploadRejected(f"not a valid zip archive (corrupt or truncated wheel): {e}") from None
    meta_name, meta_version, requires_python = _parse_metadata(raw, dist_info[0])
    if canonicalize_name(meta_name) != name:
        raise UploadRejected(f"METADATA Name {meta_name!r} does not match filename project {name!r}")
    try:
        same_version = Version(meta_version) == version
    except ValueError:
        same_version = False
    if not same_version:
        raise UploadRejected(f"METADATA Version {meta_version!r} does not match filename version {version}")
    return Distribution(filename, name, version, kind, raw, requires_python)


def json_object(text: str | None, key: str) -> JsonObject:
    """The form field `key`, sent as `text`, as a JSON object ({} when it was not sent)."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise UploadRejected(f"form field {key!r} is not valid JSON (or nested too deeply)") from None
    if not isinstance(value, dict):
        raise UploadRejected(f"form field {key!r} must be a JSON object")
    if _depth(value) > MAX_JSON_DEPTH:
        raise UploadRejected(f"form field {key!r} is nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _depth(value: object) -> int:
    """Nesting depth, without recursion (the parser already bounded it by its own stack)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        v, d = todo.pop()
        deepest = max(deepest, d)
        if isinstance(v, dict):
            todo += [(x, d + 1) for x in v.values()]
        elif isinstance(v, list):
            todo += [(x, d + 1) for x in v]
    return deepest
