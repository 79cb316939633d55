"""The index app's cache of what it renders from the store (simple pages, the pages for people),
kept until the store's generation changes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

from jetwheel.index.store.catalog import Catalog

T = TypeVar("T")


class PageCache:
    """Values computed from the store, dropped whenever its generation changes. Keys come from the
    server's own state only (never from a request's headers); the cap is a guard, not a policy."""

    CAP = 64

    def __init__(self, store: Catalog) -> None:
        self.store = store
        self.gen: tuple[int, ...] | None = None
        self.values: dict[tuple[str, ...], object] = {}

    def get(self, key: tuple[str, ...], compute: Callable[[], T]) -> T:
        gen = self.store.generation()
        if gen != self.gen or len(self.values) >= self.CAP:
            self.values, self.gen = {}, gen
        if key not in self.values:
            self.values[key] = compute()
        return cast(T, self.values[key])  # a key is always computed by one function
