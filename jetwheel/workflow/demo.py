"""`demo`: a fresh index, the mini stack built into it and installed from it in a fresh venv."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

from packaging.utils import canonicalize_name

from jetwheel.build.engine import Listener, run_plan
from jetwheel.errors import BuildError
from jetwheel.index.client.client import IndexClient
from jetwheel.model.runnerkind import RunnerKind
from jetwheel.workflow.context import context
from jetwheel.workflow.serve import running_index


def run_demo(listener: Listener, serve_after: bool = True, runner: RunnerKind = "local") -> Iterator[str]:
    """Lines to show as the demo goes; the build's progress goes to `listener`."""
    from jetwheel.build.plan import make_plan
    from jetwheel.index.server.config import ensure_user, load_config, set_role
    from jetwheel.machine import this_machine
    from jetwheel.pipcmd import clean_pip_env
    from jetwheel.runners import make_runner
    from jetwheel.wire import BUILDER, TRUSTED

    ctx = context(profile="mini")
    cfg = load_config(ctx.config_path)
    assert cfg.htpasswd is not None
    cfg.root.mkdir(parents=True, exist_ok=True)
    user, password = ensure_user(cfg.htpasswd, cfg.home / ".state" / "credentials")
    if cfg.roles.get(user) not in TRUSTED:
        # the mini stack's names are the recipes' own: only a builder may publish them
        set_role(cfg.path, user, BUILDER)
        cfg = load_config(ctx.config_path)
    yield f"index: {cfg.url}/simple/  (storage {cfg.root}, uploads as {user!r}, password in index/.state/credentials)"
    with running_index([], cfg.url) as proc:
        client = IndexClient(cfg.url, user, password)
        recipes, profile, settings = ctx.recipes, ctx.profile, ctx.settings
        top = canonicalize_name(profile.top.split("==")[0])
        plan = make_plan(recipes, profile, top, runner, this_machine())
        started = time.monotonic()
        for r in run_plan(plan, recipes, profile, make_runner(runner, settings), client, ctx.options(), listener):
            yield f"{r.status:>9}  {r.wheel}"
        yield f"built the mini stack in {time.monotonic() - started:.1f}s"
        with tempfile.TemporaryDirectory(prefix="jetwheel-demo-venv-") as venv:
            subprocess.run([sys.executable, "-m", "venv", venv], check=True)
            py = os.path.join(venv, "bin", "python")
            install = [
                py,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--index-url",
                client.simple_url,
                profile.top,
            ]
            done = subprocess.run(install, capture_output=True, text=True, env=clean_pip_env(settings.environ))
            if done.returncode != 0:
                raise BuildError(f"installing {profile.top} from the index failed: {done.stderr.strip()[-300:]}")
            probe = (
                "import mini_torch, mini_vision, mini_cuda; "
                "print('mini_vision.boxes(3) =', mini_vision.boxes(3), '| torchvision-like op registered:', "
                "mini_torch.has_op('mini_vision::nms'), '| mini_cuda links', mini_cuda.torch_version())"
            )
            out = subprocess.run([py, "-c", probe], capture_output=True, text=True)
            if out.returncode != 0:
                raise BuildError(f"the installed mini stack failed to import: {out.stderr.strip()[-300:]}")
            yield f"fresh venv: {out.stdout.strip()}"
        yield f"install it anywhere on the LAN:  pip install --index-url {client.simple_url} {profile.top}"
        if serve_after:
            yield "serving; Ctrl-C to stop"
            with contextlib.suppress(KeyboardInterrupt):
                proc.wait()
