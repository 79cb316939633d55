"""The `index.*` tasks that work on the store or talk to the index: users, tokens, the static
export, the mirror, yanks, artifacts, the status summary."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jetwheel import wire
from jetwheel.errors import JetwheelError, StoreError, UsageError
from jetwheel.workflow.context import context
from jetwheel.workflow.profiles import profile_views


def add_user(user: str, password: str, role: str, htpasswd: str = "", config: str = "") -> tuple[Path, Path]:
    """The user's password in the htpasswd file, the role in the index config; returns both paths."""
    from jetwheel.index.server.auth import check_role
    from jetwheel.index.server.config import add_user as add
    from jetwheel.index.server.config import load_config, set_role

    check_role(role)
    cfg = load_config(Path(config) if config else context().config_path)
    path = Path(htpasswd) if htpasswd else cfg.htpasswd
    if path is None:
        raise UsageError("the index config sets no htpasswd; pass --htpasswd")
    add(path, user, password)
    set_role(cfg.path, user, role)
    return path, cfg.path


def index_status(index: str) -> wire.Status:
    """The index's summary (`/api/status`): projects, files, bytes, failing verify reports, disk."""
    return context(index=index).client.status()


def yank(index: str, filename: str, reason: str, undo: bool) -> None:
    context(index=index).client.yank(filename, reason, undo)


def upload_artifact(index: str, path: Path) -> str:
    """Put a file on the index at a stable URL without listing it as a project; returns the URL."""
    client = context(index=index).client
    client.upload(path, artifact=True)
    return client.package_url(path.name)


def check_profiles(root: str) -> dict[str, Any]:
    """Check now whether each profile resolves from the index's store, and record it there as the
    server does after a change."""
    from jetwheel.index.server import profiles
    from jetwheel.index.server.config import load_config
    from jetwheel.index.store.store import Store

    ctx = context()
    cfg = load_config(ctx.config_path)
    store = Store(Path(root) if root else cfg.root)
    views = profile_views(ctx.root)
    got = asyncio.run(profiles.refresh(store, views))
    if got is None:
        raise StoreError("the index is checking its profiles right now; try again in a minute")
    return {name: vars(c) for name, c in got.items()}


def issue_token(root: str, expires: str, user: str, config: str = "") -> str:
    """A read-only token of `user` for the index's store, valid for `expires` (e.g. 90m, 2h, 7d)."""
    from jetwheel.index.server.auth import MAX_TOKEN_DAYS, TOKEN_KEY, Users, token_key
    from jetwheel.index.server.auth import issue_token as issue
    from jetwheel.index.server.config import load_config
    from jetwheel.index.store.store import Store

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if not expires or expires[-1] not in units or not expires[:-1].isdigit() or int(expires[:-1]) <= 0:
        raise JetwheelError(f"--expires {expires!r}: a number and a unit (s, m, h, d), e.g. 2h")
    seconds = int(expires[:-1]) * units[expires[-1]]
    if seconds > MAX_TOKEN_DAYS * 86400:
        raise JetwheelError(f"--expires {expires}: at most {MAX_TOKEN_DAYS}d; issue a new token when it runs out")
    cfg = load_config(Path(config) if config else context().config_path)
    stamp = Users(cfg.htpasswd, {}).stamp(user) if cfg.htpasswd is not None and cfg.htpasswd.is_file() else None
    if stamp is None:  # a token minted for a name that is not a user would come alive when it is made one
        raise UsageError(f"--user {user!r}: no such index user in {cfg.htpasswd} (add it first: inv index.adduser)")
    store = Store(Path(root) if root else cfg.root)
    return issue(token_key(store.state_path(TOKEN_KEY)), int(time.time()) + seconds, user, stamp)


def export_index(  # params: one per flag of index.export
    dest: Path, root: str, port: int, bucket: str, endpoint: str, prefix: str, public_read: bool = False
) -> Iterator[str]:
    from jetwheel.index.front.export import export, upload_to_bucket
    from jetwheel.index.server.config import load_config
    from jetwheel.index.store.store import Store

    store = Store(Path(root) if root else load_config(context().config_path).root)
    written = export(store, dest, port)
    yield f"wrote {len(written)} files to {dest} (nginx: include {dest / 'nginx.conf'})"
    if bucket:
        yield f"uploaded {upload_to_bucket(dest, bucket, endpoint, prefix, public_read)} objects to s3://{bucket}/{prefix}"


def mirror_requirements(index: str, requirements: Path, platform: str, python: str, glibc: str) -> list[str]:
    """Pull into the store the files `requirements` needs for the target that no recipe builds and
    the store lacks; returns their names."""
    from jetwheel.index.client.mirror import mirror

    ctx = context(index=index)
    client = ctx.client
    if not requirements.is_file():
        raise JetwheelError(f"{requirements}: no such requirements file")
    # owned: what a recipe builds or the store already holds (the index's own rule)
    owned = {str(n) for n in ctx.recipes} | set(client.projects())
    return mirror(client, requirements, platform, python, glibc, owned)
