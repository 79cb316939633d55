"""Whether the upstream index (the one the index was started with, e.g. https://pypi.org/simple) has
a project: a name it has may be created here only by an admin or a mirror run, or pip, told to look
here first, would take a stranger's `numpy` over the real one (dependency confusion).

Asked per upload of a *new* name, never per request: one GET of the configured upstream's page for
that name (the address is the configuration's; the request supplies only the name, canonicalized
and quoted into the path), bounded by a timeout, the answer cached. Asking beats the mirror's
records here: the mirror records only the names it fetched, and the point is every name the
upstream has. An upstream that cannot answer refuses the upload (503): failing open would let a
squatter in whenever the upstream is slow.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections import OrderedDict

import aiohttp

from jetwheel import wire
from jetwheel.errors import Unavailable

TIMEOUT = 5.0  # seconds for one look
TTL = 600.0  # seconds an answer is kept
KEPT = 10_000  # answers kept at most (the oldest are forgotten first)


class UpstreamNames:
    def __init__(self, upstream: str, timeout: float = TIMEOUT, ttl: float = TTL) -> None:
        self.upstream = upstream.rstrip("/")
        self.timeout, self.ttl = timeout, ttl
        self._known: OrderedDict[str, tuple[bool, float]] = OrderedDict()

    async def has(self, name: str) -> bool:
        """True when the upstream has a project of this canonical name; Unavailable (503) when it
        cannot tell within the timeout."""
        now = time.monotonic()
        seen = self._known.get(name)
        if seen is not None and seen[1] > now:
            return seen[0]
        found = await self._look(name)
        self._known[name] = (found, now + self.ttl)
        self._known.move_to_end(name)
        while len(self._known) > KEPT:
            self._known.popitem(last=False)
        return found

    async def _look(self, name: str) -> bool:
        url = f"{self.upstream}/{urllib.parse.quote(name, safe='')}/"
        headers = {"Accept": f"{wire.JSON_V1}, {wire.HTML_V1};q=0.5, text/html;q=0.1"}
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url, headers=headers, allow_redirects=False) as r,
            ):
                status = r.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise Unavailable(
                f"{name}: cannot tell whether the upstream index has this project ({type(e).__name__}); "
                "a new name is created only once it can: try again later"
            ) from None
        if status in (404, 410):
            return False
        if status < 400:  # 200, or a redirect (never followed): the upstream knows the name
            return True
        raise Unavailable(f"{name}: the upstream index answered {status}; try again later")
