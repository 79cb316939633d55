"""The index client a task talks to (kept for callers of `index_client`; a run's own client is its
context's, workflow/context.py, made once)."""

from __future__ import annotations

from jetwheel.index.client.client import IndexClient
from jetwheel.workflow.context import context


def index_client(index: str = "") -> IndexClient:
    """A client of `index` (default: the index config's URL), logged in as the run's settings say
    (Context.client)."""
    return context(index=index).client
