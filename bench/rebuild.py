"""No-op rebuild of the mini stack (everything cached on the index) against its cold build.

Target: the cached run under 1 s. Prints one line per metric and the ratio cold/cached."""

from __future__ import annotations

import socket
import sys
import tempfile
import time
from pathlib import Path

from jetwheel.build.engine import Options, run_plan
from jetwheel.build.plan import make_plan
from jetwheel.index.client.client import IndexClient
from jetwheel.index.server.config import add_user
from jetwheel.machine import this_machine
from jetwheel.model.recipe import load_profile, load_recipes
from jetwheel.runners import LocalRunner
from jetwheel.workflow.context import settings
from jetwheel.workflow.serve import running_index


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="jetwheel-bench-") as tmp:
        root, ht = Path(tmp) / "packages", Path(tmp) / "htpasswd"
        add_user(ht, "bench", "bench")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        args = [
            "--root",
            str(root),
            "--port",
            str(port),
            "--htpasswd",
            str(ht),
            "--upstream",
            "https://pypi.org/simple",
        ]
        with running_index(args, url):
            client = IndexClient(url, "bench", "bench")
            recipes, profile = load_recipes(), load_profile("mini")
            opts = Options(work_root=Path(tmp) / "work", log_root=Path(tmp) / "logs")
            timings = []
            for _ in range(2):
                started = time.perf_counter()
                plan = make_plan(recipes, profile, "mini-cuda", "local", this_machine())
                results = run_plan(plan, recipes, profile, LocalRunner(settings=settings()), client, opts)
                timings.append((time.perf_counter() - started, [r.status for r in results]))
    (cold, cold_status), (cached, cached_status) = timings
    assert cold_status == ["published"] * 3 and cached_status == ["cached"] * 3, timings
    print(f"cold build of the mini stack (3 wheels): {cold:.2f} s")
    print(
        f"no-op rebuild, all cached:               {cached:.3f} s  (target < 1 s: {'met' if cached < 1 else 'MISSED'})"
    )
    print(f"ratio cold / cached:                     {cold / cached:.0f}x")
    return 0 if cached < 1 else 1


if __name__ == "__main__":
    sys.exit(main())
