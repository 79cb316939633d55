"""The index tasks: `status` and `index.*` (serve, export, mirror, yank, users, tokens, profiles,
artifacts)."""

from __future__ import annotations

import os
from pathlib import Path

from invoke.collection import Collection
from invoke.context import Context
from invoke.tasks import task

from jetwheel.cli.edge import clean_errors, dumps
from jetwheel.cli.parsing import HelpTask
from jetwheel.errors import UsageError


@task(help={"index": "index URL (default: index/config.toml's)", "json": "print JSON"})
@clean_errors
def status(c: Context, index: str = "", json: bool = False) -> None:
    """Summarize the index: projects, files, bytes, failing verify reports, disk free."""
    from jetwheel.workflow.index import index_status

    doc = index_status(index)
    if json:
        print(dumps(doc))
        return
    print(
        f"{doc['projects']} projects, {doc['files']} files, {doc['bytes'] / 1e6:.1f} MB; "
        f"disk free {doc['disk_free'] / 1e9:.1f} of {doc['disk_total'] / 1e9:.1f} GB"
    )
    print(f"verify: {len(doc['failing_verify'])} failing, {doc['unverified']} not verified; {doc['yanked']} yanked")
    for f in doc["failing_verify"]:
        print(f"  FAIL {f}")


@task(
    klass=HelpTask,
    help={
        "config": "index config file (default: ./index/config.toml in a checkout, else the XDG data dir's)",
        "root": "directory of distribution files (default: the config's, ./index/packages in a checkout)",
        "host": "address to bind",
        "port": "port",
        "htpasswd": "htpasswd file for uploads (bcrypt; pypiserver's format); roles are in the config",
        "upstream": "simple index for names no recipe builds ('' = air-gapped)",
        "auth_reads": "require a login or a token (inv index.token) for reads too",
        "allow_overwrite": "let admins replace files",
        "max_upload_mb": "largest accepted upload",
        "workers": "server processes sharing the port (default: one per core)",
        "certfile": "serve HTTPS with this certificate chain (PEM)",
        "keyfile": "the certificate's private key (PEM)",
        "public_url": "the index's address as people and pip reach it (shown on its pages)",
        "max_connections": "open connections at most (default: from the open-file limit)",
        "client_timeout": "seconds a client may take to send a request's headers, and an idle connection "
        "stays open (default 15 and 30)",
        "nginx": "nginx answers the reads from a tree kept rendered on every change; the app behind it",
    },
)
@clean_errors
def serve(
    c: Context,
    config: str = "",
    root: str = "",
    host: str = "",
    port: int = 0,
    htpasswd: str = "",
    upstream: str | None = None,
    auth_reads: bool = False,
    allow_overwrite: bool = False,
    max_upload_mb: int = 8192,
    workers: int = 0,
    certfile: str = "",
    keyfile: str = "",
    public_url: str = "",
    max_connections: int = 0,
    client_timeout: float = 0.0,
    nginx: bool = False,
) -> None:
    """Serve the index (PEP 503/691/658, uploads, yank) until Ctrl-C."""
    from jetwheel.workflow.serve import ServeOptions, serve_index

    serve_index(
        ServeOptions(
            config,
            root,
            host,
            port,
            htpasswd,
            upstream,
            auth_reads,
            allow_overwrite,
            max_upload_mb,
            workers or os.cpu_count() or 1,
            certfile,
            keyfile,
            public_url,
            max_connections,
            client_timeout,
            nginx,
        )
    )


@task(
    help={
        "filename": "file on the index",
        "reason": "why (PEP 592: shown by pip)",
        "undo": "unyank",
        "index": "index URL",
    }
)
@clean_errors
def yank(c: Context, filename: str, reason: str = "", undo: bool = False, index: str = "") -> None:
    """Yank (or unyank) a file: pip skips it unless pinned exactly."""
    from jetwheel.workflow.index import yank as yank_file

    yank_file(index, filename, reason, undo)
    print(f"{'unyanked' if undo else 'yanked'} {filename}")


@task(
    help={
        "dest": "directory to write the static tree to",
        "root": "store directory (default: index/packages)",
        "port": "port written into the sample nginx.conf",
        "bucket": "also upload the tree to this S3 bucket",
        "endpoint": "S3 endpoint URL (MinIO, Ceph, ...)",
        "prefix": "key prefix in the bucket",
        "public_read": "set a public-read ACL on each object (else the bucket policy must allow reads)",
    }
)
@clean_errors
def export(
    c: Context,
    dest: str,
    root: str = "",
    port: int = 8080,
    bucket: str = "",
    endpoint: str = "",
    prefix: str = "",
    public_read: bool = False,
) -> None:
    """Write the index as a static tree (HTML, JSON, .metadata, files) for nginx or an S3 bucket."""
    from jetwheel.workflow.index import export_index

    for line in export_index(Path(dest), root, port, bucket, endpoint, prefix, public_read):
        print(line)


@task(
    klass=HelpTask,
    help={
        "user": "user name",
        "password": "password",
        "role": "read, upload (the default) or admin (may also yank, delete and overwrite)",
        "htpasswd": "file (default: the index config's)",
        "config": "index config file that gets the role (default: the index's)",
    },
)
@clean_errors
def adduser(c: Context, user: str, password: str, role: str = "upload", htpasswd: str = "", config: str = "") -> None:
    """Add or change a user of the index: the password in the htpasswd file, the role in the config."""
    from jetwheel.workflow.index import add_user

    written, config_path = add_user(user, password, role, htpasswd, config)
    print(f"user {user} ({role}) written to {written} and {config_path}")


@task(
    help={
        "read": "a read-only token (the only kind there is: say so)",
        "expires": "how long it is valid: 30m, 2h, 7d (at most 366d)",
        "root": "store directory (default: the index config's)",
        "user": "the index user the token stands for: it dies when the user is removed or re-added",
        "config": "the index config (default: config.toml in the index's home); its htpasswd knows the users",
    }
)
@clean_errors
def token(
    c: Context, read: bool = False, expires: str = "2h", root: str = "", user: str = "", config: str = ""
) -> None:
    """Print a read-only token that expires: use it as the password of any user name, e.g.
    https://token:TOKEN@index.lan/simple/ (safe in an image's build history once expired)."""
    from jetwheel.workflow.index import issue_token

    if not read:
        raise UsageError("only read-only tokens are issued: pass --read")
    if not user:
        raise UsageError("name the index user the token stands for: --user NAME")
    print(issue_token(root, expires, user, config))


@task(help={"root": "store directory (default: the index config's)"})
@clean_errors
def check_profiles(c: Context, root: str = "") -> None:
    """Check now whether each profile resolves from the index, and record it for the pages (the
    server does this by itself a few seconds after its files change)."""
    from jetwheel.workflow.index import check_profiles as check

    for name, result in check(root).items():
        print(f"{'pass' if result['passed'] else 'FAIL'}  {name}: {result['detail']}")


@task(help={"path": "the file (e.g. nvpl_slim_24.04.tar; a wheel goes up as a wheel)", "index": "index URL"})
@clean_errors
def upload_artifact(c: Context, path: str, index: str = "") -> None:
    """Put a file on the index at a stable URL (/packages/NAME) without listing it as a project."""
    from jetwheel.workflow.index import upload_artifact as upload

    print(upload(index, Path(path)))


@task(
    help={
        "requirements": "requirements file (-r)",
        "platform": "target platform tag, e.g. linux_aarch64",
        "python_version": "target Python, e.g. 3.12",
        "glibc": "target glibc (default 2.35: JetPack 6)",
        "index": "the index (it must have upstream fallback on while mirroring)",
    }
)
@clean_errors
def mirror(
    c: Context,
    requirements: str,
    platform: str = "linux_aarch64",
    python_version: str = "3.12",
    glibc: str = "2.35",
    index: str = "",
) -> None:
    """Pull the dependencies jetwheel does not build into the store, for an air-gapped LAN."""
    from jetwheel.workflow.index import mirror_requirements

    added = mirror_requirements(index, Path(requirements), platform, python_version, glibc)
    print(f"mirrored {len(added)} files" + "".join(f"\n  {f}" for f in added))


index_ns = Collection("index", serve, export, mirror, yank, adduser, token, check_profiles, upload_artifact)
