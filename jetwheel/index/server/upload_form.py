"""Reading an upload's multipart/form-data body (the legacy API twine and the client post) within
limits: the file streamed to disk and hashed on the way, never held whole; the facts streamed the
same way; every other field in memory, capped; a body that stops sending dropped after BODY_IDLE."""

from __future__ import annotations

import asyncio
from typing import IO

from aiohttp import BodyPartReader, MultipartReader

from jetwheel.errors import TooLarge, UploadRejected
from jetwheel.index.store.durable import refusing_full
from jetwheel.index.store.records import Hashes
from jetwheel.index.store.validate import check_filename

CHUNK = 1 << 16
MAX_FIELD = 8 << 20  # a form field (provenance, verify report)
MAX_FACTS = 64 << 20  # a build's facts about the file: gzip'd JSON
BODY_IDLE = 60.0  # seconds an upload may send nothing before it is dropped


async def read_parts(
    reader: MultipartReader, out: IO[bytes], hashes: Hashes, facts_out: IO[bytes], max_upload: int
) -> tuple[str, dict[str, str], bool]:
    """Stream an upload's parts: the file into `out` (hashed on the way), the facts into `facts_out`,
    the other fields into memory. (the file's name, "" when none was sent; the fields; facts sent?)"""
    fields: dict[str, str] = {}
    filename, has_facts = "", False
    while (part := await asyncio.wait_for(reader.next(), BODY_IDLE)) is not None:
        if not isinstance(part, BodyPartReader):
            raise UploadRejected("nested multipart is not supported")
        if part.name == "content":
            if filename:
                raise UploadRejected("more than one file in the upload")
            filename = part.filename or ""
            if not filename:
                raise UploadRejected("the content part has no filename")
            check_filename(filename)  # before a byte of it is written
            await _stream(part, out, hashes, max_upload, "file")
        elif part.name == "jetwheel_facts":
            has_facts = True
            await _stream(part, facts_out, Hashes(), MAX_FACTS, "jetwheel_facts")
        elif part.name:
            fields[part.name] = await _read_field(part)
    return filename, fields, has_facts


async def _stream(part: BodyPartReader, out: IO[bytes], hashes: Hashes, cap: int, what: str) -> None:
    while chunk := await asyncio.wait_for(part.read_chunk(CHUNK), BODY_IDLE):
        hashes.update(chunk)
        if hashes.size > cap:
            raise TooLarge(f"{what} too large: over the limit of {cap} bytes")
        with refusing_full():
            out.write(chunk)


async def _read_field(part: BodyPartReader) -> str:
    value = bytearray()
    while chunk := await asyncio.wait_for(part.read_chunk(CHUNK), BODY_IDLE):
        value += chunk
        if len(value) > MAX_FIELD:
            raise UploadRejected(f"form field {part.name!r} is too large (over {MAX_FIELD} bytes)")
    return value.decode("utf-8", errors="replace")
