"""A static copy of the index that nginx or an S3-compatible bucket can serve: the scale-out path
for a fleet larger than one box.

Layout (relative links, so it works under any prefix):
    simple/index.html, simple/index.json
    simple/<project>/index.html, simple/<project>/index.json
    packages/<file>, packages/<file>.metadata
Content negotiation (PEP 691) is the web server's job: `nginx.conf` written beside the tree maps
the Accept header to index.json or index.html.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from jetwheel.index.server import pages
from jetwheel.index.store.catalog import Catalog
from jetwheel.wire import JSON_V1

NGINX_CONF = """\
# Serve a jetwheel export with nginx: include this in an http {{}} block.
map $http_accept $jetwheel_index {{
    default                                 index.html;
    "~application/vnd\\.pypi\\.simple\\.v1\\+json" index.json;
}}
server {{
    listen {port};
    root {root};
    sendfile on;
    tcp_nopush on;
    # a directory URL (/simple/, /simple/<project>/) becomes its index.html or index.json, and the
    # rewrite re-matches so the JSON location can set its content type
    location /simple/ {{
        rewrite "^(?<jwdir>/simple/(?:[^/]+/)?)$" $jwdir$jetwheel_index last;  # named: the map resets $1
        types {{ }}
        default_type text/html;
        add_header Vary Accept;
    }}
    location ~ ^/simple/.*\\.json$ {{
        types {{ }}
        default_type application/vnd.pypi.simple.v1+json;
        add_header Vary Accept;
    }}
    location /packages/ {{ default_type application/octet-stream; }}
}}
"""


def place(src: Path, dst: Path) -> None:
    """Put src at dst, replacing what is there: a hard link on the same file system (no copy of a
    multi-GB wheel), else a copy. Nothing is done when dst is src already, or a copy of it (same
    size and modification time: copies keep src's)."""
    if dst.exists():
        old, new = dst.stat(), src.stat()
        if os.path.samestat(old, new) or (old.st_size, old.st_mtime_ns) == (new.st_size, new.st_mtime_ns):
            return
    tmp = dst.with_name(f".{dst.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def export(store: Catalog, dest: Path, port: int = 8080) -> list[Path]:
    """Write the static tree; returns every file written. Existing files of removed projects stay
    until the next full export into an empty directory (object stores have no atomic swap)."""
    dest = dest.resolve()
    written: list[Path] = []
    rendered = pages.render_all(store.projects())
    for (project, form), body in rendered.items():
        page = dest / "simple" / (f"{project}/" if project else "") / f"index.{form}"
        # the rendered pages link ../../packages/ relative to /simple/<project>/: valid here as is
        _write(page, body)
        written.append(page)
    (dest / "packages").mkdir(parents=True, exist_ok=True)
    for f in store.files().values():
        place(store.path(f.filename), dest / "packages" / f.filename)
        written.append(dest / "packages" / f.filename)
        meta = store.metadata_path(f.filename)
        if meta.exists():
            place(meta, dest / "packages" / f"{f.filename}.metadata")
            written.append(dest / "packages" / f"{f.filename}.metadata")
    conf = dest / "nginx.conf"
    _write(conf, NGINX_CONF.format(port=port, root=dest).encode())
    return written


def object_keys(dest: Path) -> Iterator[tuple[str, Path, str]]:
    """(key, file, content type) for uploading the tree to a bucket. Each page is stored both as
    <dir>/index.html and under the bare directory key <dir>/, which is what pip requests."""
    for path in sorted(dest.rglob("*")):
        if not path.is_file() or path.name.startswith(".") or path.name == "nginx.conf":
            continue
        key = path.relative_to(dest).as_posix()
        if key.startswith("simple/"):
            if path.name == "index.json":
                yield key, path, JSON_V1
                continue
            yield key, path, "text/html"
            yield key[: -len("index.html")], path, "text/html"
        else:
            yield key, path, "application/octet-stream"


def upload_to_bucket(dest: Path, bucket: str, endpoint: str = "", prefix: str = "", public_read: bool = False) -> int:
    """Upload an export to an S3-compatible bucket (boto3, from the [s3] extra). Returns the count.

    pip reads anonymously: either the bucket's policy allows s3:GetObject, or `public_read` sets
    each object's ACL (for stores that honour ACLs)."""
    import boto3  # optional dependency: only this path needs it

    s3 = boto3.client("s3", endpoint_url=endpoint or None)
    n = 0
    for key, path, ctype in object_keys(dest):
        extra = {"ContentType": ctype, **({"ACL": "public-read"} if public_read else {})}
        s3.upload_file(str(path), bucket, prefix + key, ExtraArgs=extra)
        n += 1
    return n
