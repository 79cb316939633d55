"""Hand-made upload requests (twine's form, with every field under the test's control) and the
index app run in-process: shared by the index, hostile-input and auth tests and the attack script."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from jetwheel.index.server.app import Settings, make_app
from jetwheel.index.store.store import Store


def basic(user: str | bytes, password: str | bytes) -> str:
    """An Authorization header value; bytes let a test send what no client would (NUL, non-UTF-8)."""
    raw = (user.encode() if isinstance(user, str) else user) + b":"
    raw += password.encode() if isinstance(password, str) else password
    return "Basic " + base64.b64encode(raw).decode()


def multipart(fields: dict[str, str], filename: str | bytes | None, content: bytes, boundary: str = "xXx") -> bytes:
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    )
    if filename is not None:
        name = filename.encode() if isinstance(filename, str) else filename
        body += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="'.encode()
            + name
            + b'"\r\nContent-Type: application/octet-stream\r\n\r\n'
            + content
            + b"\r\n"
        )
    return body + f"--{boundary}--\r\n".encode()


def upload_fields(data: bytes, name: str = "demo-pkg", version: str = "1.0") -> dict[str, str]:
    return {
        ":action": "file_upload",
        "protocol_version": "1",
        "name": name,
        "version": version,
        "sha256_digest": hashlib.sha256(data).hexdigest(),
        "md5_digest": hashlib.md5(data).hexdigest(),
    }


def upload_request(
    content: bytes, filename: str, auth: str, name: str = "demo-pkg", version: str = "1.0"
) -> tuple[bytes, dict[str, str]]:
    """One upload's `POST /` body and headers, as `auth`: what aiohttp's test client (`data=`,
    `headers=`) and http.client (`body`, `headers`) send alike."""
    headers = {"Content-Type": "multipart/form-data; boundary=xXx", "Authorization": auth}
    return multipart(upload_fields(content, name, version), filename, content), headers


def run_app(store: Store, settings: Settings, body: Callable[[TestClient[Any, Any]], Awaitable[None]]) -> None:
    """Run `body` against the app serving `store`, in this process (aiohttp's test client)."""

    async def main() -> None:
        async with TestClient(TestServer(make_app(store, settings))) as client:
            await body(client)

    asyncio.run(main())
