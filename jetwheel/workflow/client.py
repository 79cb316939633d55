"""The index client a task talks to."""

from __future__ import annotations

import os

from jetwheel.index.client.client import IndexClient


def index_client(index: str = "") -> IndexClient:
    """A client of `index` (default: the index config's URL). It logs in as $JETWHEEL_INDEX_USER
    ($JETWHEEL_INDEX_PASSWORD); failing that, on the config's own index, as the user `inv demo` wrote."""
    from jetwheel.index.server.config import load_config

    cfg = load_config()
    user = password = ""
    if not os.environ.get("JETWHEEL_INDEX_USER"):
        cred = cfg.home / ".state" / "credentials"
        if cred.is_file() and not index:
            user, _, password = cred.read_text().strip().partition(":")
    return IndexClient(
        index or cfg.url,
        user or os.environ.get("JETWHEEL_INDEX_USER", ""),
        password or os.environ.get("JETWHEEL_INDEX_PASSWORD", ""),
    )
