"""Distributed compilation and the shared compiler cache: `dist.scheduler`, `dist.server`,
`cache.serve`. Each runs its service in the foreground until Ctrl-C."""

from __future__ import annotations

from pathlib import Path

from invoke.collection import Collection
from invoke.context import Context
from invoke.tasks import task

from jetwheel.cli.edge import clean_errors

STATE = Path.home() / ".local" / "state" / "jetwheel"


@task(
    help={
        "listen": "address the scheduler listens on, which servers and clients reach (HOST[:PORT], default "
        "127.0.0.1:10600)",
        "servers": "the build servers' addresses (HOST[:PORT], comma-separated): only these may register",
        "state": f"where its config and secrets are kept (default {STATE}/dist)",
    }
)
@clean_errors
def scheduler(c: Context, servers: str, listen: str = "127.0.0.1", state: str = "") -> None:
    """Start an sccache-dist scheduler; print each server's command and the clients' token."""
    from jetwheel.workflow.dist import plan_scheduler, start

    where = Path(state) if state else STATE / "dist"
    plan = plan_scheduler(where, listen, [s for s in servers.split(",") if s])
    for server, token in plan.servers.items():
        print(
            f"on {server.rpartition(':')[0]}: inv dist.server --scheduler {plan.url} --listen {server} --token {token}"
        )
    print(f"builders: export JETWHEEL_SCCACHE_DIST_TOKEN={plan.client_token}; inv build-wheel ... --dist {plan.url}")
    start("scheduler", plan.conf, where / "scheduler.log").wait()


@task(
    help={
        "scheduler": "the scheduler (HOST[:PORT] or URL)",
        "listen": "this server's address as the scheduler named it (HOST[:PORT])",
        "token": "the token `inv dist.scheduler` printed for this address",
        "cpus": "confine the server and its jobs to these cores (taskset list, e.g. 2-7)",
        "state": f"where toolchains and sandboxes live (default {STATE}/dist-server)",
    }
)
@clean_errors
def server(c: Context, scheduler: str, listen: str, token: str, cpus: str = "", state: str = "") -> None:
    """Start an sccache-dist build server (needs root and bubblewrap)."""
    from jetwheel.workflow.dist import plan_server, start

    where = Path(state) if state else STATE / "dist-server"
    conf = plan_server(where, scheduler, listen, token)
    print(f"build server {listen} for {scheduler}; log: {where / 'server.log'}")
    start("server", conf, where / "server.log", cpus).wait()


@task(
    help={
        "bind": "address Redis listens on (default 127.0.0.1; the LAN's address to share it)",
        "port": "port (default 6379)",
        "max_memory": "memory for entries; least recently used go first (default 8gb)",
        "state": f"where its config, data and passwords are kept (default {STATE}/sccache-redis)",
    }
)
@clean_errors
def serve(c: Context, bind: str = "127.0.0.1", port: int = 6379, max_memory: str = "8gb", state: str = "") -> None:
    """Start the LAN's shared compiler cache (Redis): print what builders (writers) and other
    machines (readers) set, then serve until Ctrl-C."""
    from jetwheel.workflow.sharedcache import CacheServer, builder_settings, start

    cache = CacheServer(Path(state) if state else STATE / "sccache-redis", bind, port, max_memory)
    proc, creds = start(cache)
    for role, writer in (("builders (may write)", True), ("every other machine (reads only)", False)):
        env = " ".join(f"{k}={v}" for k, v in builder_settings(cache, creds, writer).items())
        print(f"{role}: export {env}")
    proc.wait()


dist_ns = Collection("dist", scheduler, server)
